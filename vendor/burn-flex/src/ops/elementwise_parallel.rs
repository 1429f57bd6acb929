//! PATCH (scal-rs): element-wise loops over contiguous data split across rayon's threads.
//!
//! The element-wise kernels (unary, scalar and binary operations, in place or into a new
//! buffer) ran on one thread whatever the tensor's size. On large tensors these passes are
//! memory-bound, and one core does not saturate memory bandwidth: splitting them into
//! chunks of [`CHUNK`] elements over rayon's pool roughly halves them on two cores (ReLU,
//! the residual additions, gradient accumulation, the optimizer's updates). Below
//! [`PARALLEL_ELEMENTS`] the loop stays on the calling thread.

use alloc::vec::Vec;

/// Elements from which a contiguous element-wise loop is split across threads.
pub(crate) const PARALLEL_ELEMENTS: usize = 64 * 1024;

/// Elements per task.
#[cfg(feature = "rayon")]
const CHUNK: usize = 16 * 1024;

/// Runs `f` on consecutive chunks of `dst`, in parallel when `dst` is large.
pub(crate) fn chunks_mut<D: Send>(dst: &mut [D], f: impl Fn(&mut [D]) + Sync + Send) {
    #[cfg(feature = "rayon")]
    if dst.len() >= PARALLEL_ELEMENTS {
        use rayon::prelude::*;
        dst.par_chunks_mut(CHUNK).for_each(f);
        return;
    }
    f(dst);
}

/// Runs `f` on consecutive chunks of `dst` and the matching chunks of `src` (same length),
/// in parallel when `dst` is large.
pub(crate) fn zip_chunks_mut<D: Send, S: Sync>(
    dst: &mut [D],
    src: &[S],
    f: impl Fn(&mut [D], &[S]) + Sync + Send,
) {
    debug_assert_eq!(dst.len(), src.len());
    #[cfg(feature = "rayon")]
    if dst.len() >= PARALLEL_ELEMENTS {
        use rayon::prelude::*;
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| f(d, s));
        return;
    }
    f(dst, src);
}

/// `src.map(op)` into a new vector, in parallel when `src` is large.
pub(crate) fn map<S, D>(src: &[S], op: impl Fn(S) -> D + Sync + Send) -> Vec<D>
where
    S: Copy + Sync,
    D: bytemuck::Zeroable + Copy + Send,
{
    let mut out: Vec<D> = alloc::vec![D::zeroed(); src.len()];
    zip_chunks_mut(&mut out, src, |o, s| {
        for (o, &s) in o.iter_mut().zip(s) {
            *o = op(s);
        }
    });
    out
}

/// `lhs.zip(rhs).map(op)` into a new vector (same lengths), in parallel when large.
pub(crate) fn map2<L, R, D>(lhs: &[L], rhs: &[R], op: impl Fn(L, R) -> D + Sync + Send) -> Vec<D>
where
    L: Copy + Sync,
    R: Copy + Sync,
    D: bytemuck::Zeroable + Copy + Send,
{
    debug_assert_eq!(lhs.len(), rhs.len());
    let mut out: Vec<D> = alloc::vec![D::zeroed(); lhs.len()];
    #[cfg(feature = "rayon")]
    if lhs.len() >= PARALLEL_ELEMENTS {
        use rayon::prelude::*;
        out.par_chunks_mut(CHUNK)
            .zip(lhs.par_chunks(CHUNK).zip(rhs.par_chunks(CHUNK)))
            .for_each(|(o, (l, r))| {
                for ((o, &l), &r) in o.iter_mut().zip(l).zip(r) {
                    *o = op(l, r);
                }
            });
        return out;
    }
    for ((o, &l), &r) in out.iter_mut().zip(lhs).zip(rhs) {
        *o = op(l, r);
    }
    out
}
