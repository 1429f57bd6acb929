//! PATCH (scal-rs): element-wise operations on large contiguous tensors split across rayon's
//! threads.
//!
//! The published element-wise kernels (`unary::unary_op`, `binary::binary_op`,
//! `binary::scalar_op`) run on one thread whatever the tensor's size. On large tensors these
//! passes are memory-bound, and one core does not saturate the memory bandwidth: splitting
//! them into chunks of [`CHUNK`] elements over rayon's pool roughly halves them on two cores.
//!
//! [`unary_op`], [`binary_op`] and [`scalar_op`] here take the same arguments as the
//! published functions, with closures that are also `Sync + Send` (what crossing threads
//! needs; the published functions keep their bounds). From [`PARALLEL_ELEMENTS`] elements,
//! for f32 and f64 tensors that are contiguous (both operands, after broadcasting), they run
//! the published fast paths' loops chunked across threads: in place into an operand that is
//! uniquely owned and starts at offset 0 (the left one first, as published), else into a new
//! buffer. Every other case (small, strided, broadcast, other dtypes) is handed to the
//! published function unchanged. Each element is computed by the same expression as in the
//! published loops, so the results are the same bit for bit.
//!
//! The crate's float and activation operations call these variants (`float.rs`,
//! `activation.rs`, and the functions of `unary.rs` such as `exp` and `sqrt`).

use alloc::vec::Vec;
use burn_backend::{DType, Element};

use crate::FlexTensor;
use crate::ops::binary::BinaryOp;

/// Elements from which a contiguous element-wise loop is split across threads.
pub(crate) const PARALLEL_ELEMENTS: usize = 64 * 1024;

/// Elements per task.
#[cfg(feature = "rayon")]
const CHUNK: usize = 16 * 1024;

/// `unary::unary_op`, split across threads on large contiguous f32 and f64 tensors.
pub(crate) fn unary_op<F32Op, F64Op>(tensor: FlexTensor, f32_op: F32Op, f64_op: F64Op) -> FlexTensor
where
    F32Op: Fn(f32) -> f32 + Copy + Sync + Send,
    F64Op: Fn(f64) -> f64 + Copy + Sync + Send,
{
    let tensor = match tensor.dtype() {
        DType::F32 => match unary_contiguous(tensor, f32_op) {
            Ok(out) => return out,
            Err(tensor) => tensor,
        },
        DType::F64 => match unary_contiguous(tensor, f64_op) {
            Ok(out) => return out,
            Err(tensor) => tensor,
        },
        _ => tensor,
    };
    crate::ops::unary::unary_op(tensor, f32_op, f64_op)
}

/// `binary::scalar_op`, split across threads on large contiguous f32 and f64 tensors.
pub(crate) fn scalar_op<F32Op, F64Op>(
    tensor: FlexTensor,
    scalar: f64,
    f32_op: F32Op,
    f64_op: F64Op,
) -> FlexTensor
where
    F32Op: Fn(f32, f32) -> f32 + Copy + Sync + Send,
    F64Op: Fn(f64, f64) -> f64 + Copy + Sync + Send,
{
    let tensor = match tensor.dtype() {
        DType::F32 => {
            let s = scalar as f32;
            match unary_contiguous(tensor, move |x| f32_op(x, s)) {
                Ok(out) => return out,
                Err(tensor) => tensor,
            }
        }
        DType::F64 => match unary_contiguous(tensor, move |x| f64_op(x, scalar)) {
            Ok(out) => return out,
            Err(tensor) => tensor,
        },
        _ => tensor,
    };
    crate::ops::binary::scalar_op(tensor, scalar, f32_op, f64_op)
}

/// `binary::binary_op`, split across threads when both operands are large and contiguous
/// (after broadcasting) f32 or f64 tensors. `simd_hint` selects the published SIMD kernels
/// for f32, applied chunk by chunk.
pub(crate) fn binary_op<F32Op, F64Op>(
    lhs: FlexTensor,
    rhs: FlexTensor,
    f32_op: F32Op,
    f64_op: F64Op,
    simd_hint: Option<BinaryOp>,
) -> FlexTensor
where
    F32Op: Fn(f32, f32) -> f32 + Copy + Sync + Send,
    F64Op: Fn(f64, f64) -> f64 + Copy + Sync + Send,
{
    debug_assert_eq!(lhs.dtype(), rhs.dtype(), "binary_op: dtype mismatch");
    let (lhs, rhs) = crate::ops::expand::broadcast_binary(lhs, rhs);
    let operands = match lhs.dtype() {
        DType::F32 => {
            // The SIMD kernels write in place; with neither operand writable, the
            // allocating loop below.
            #[cfg(feature = "simd")]
            let operands = match simd_hint {
                Some(op) => binary_simd_f32(lhs, rhs, op),
                None => Err((lhs, rhs)),
            };
            #[cfg(not(feature = "simd"))]
            let operands = Err((lhs, rhs));
            operands.or_else(|(lhs, rhs)| binary_contiguous(lhs, rhs, f32_op))
        }
        DType::F64 => binary_contiguous(lhs, rhs, f64_op),
        _ => Err((lhs, rhs)),
    };
    match operands {
        Ok(out) => out,
        Err((lhs, rhs)) => crate::ops::binary::binary_op(lhs, rhs, f32_op, f64_op, simd_hint),
    }
}

/// `op` on every element of a large tensor whose storage is exactly its contiguous view
/// (in place when it is uniquely owned), as `unary_op_typed`'s first two paths; `Err` hands
/// the tensor back otherwise.
fn unary_contiguous<E, Op>(mut tensor: FlexTensor, op: Op) -> Result<FlexTensor, FlexTensor>
where
    E: Element + bytemuck::Pod,
    Op: Fn(E) -> E + Sync + Send,
{
    let n = tensor.layout().num_elements();
    if n < PARALLEL_ELEMENTS || tensor.layout().contiguous_offsets() != Some((0, n)) {
        return Err(tensor);
    }
    if tensor.is_unique() {
        let storage: &mut [E] = tensor.storage_mut();
        chunks_mut(&mut storage[..n], |chunk| {
            for x in chunk.iter_mut() {
                *x = op(*x);
            }
        });
        return Ok(tensor);
    }
    let result = map(&tensor.storage::<E>()[..n], op);
    let shape = tensor.layout().shape().clone();
    Ok(contiguous_tensor(result, shape, E::dtype()))
}

/// `lhs op rhs` on large operands of one shape, both contiguous: written over `lhs` when it is
/// uniquely owned at offset 0, else over `rhs` likewise, else into a new buffer; `Err` hands
/// both back otherwise.
fn binary_contiguous<E, Op>(
    mut lhs: FlexTensor,
    mut rhs: FlexTensor,
    op: Op,
) -> Result<FlexTensor, (FlexTensor, FlexTensor)>
where
    E: Element + bytemuck::Pod,
    Op: Fn(E, E) -> E + Sync + Send,
{
    let n = lhs.layout().num_elements();
    let (Some((l_start, l_end)), Some((r_start, r_end))) = (
        lhs.layout().contiguous_offsets(),
        rhs.layout().contiguous_offsets(),
    ) else {
        return Err((lhs, rhs));
    };
    if n < PARALLEL_ELEMENTS || l_end - l_start != n || r_end - r_start != n {
        return Err((lhs, rhs));
    }
    if lhs.is_unique() && l_start == 0 {
        let r_slice: &[E] = &rhs.storage()[r_start..r_end];
        let l_slice: &mut [E] = &mut lhs.storage_mut()[..n];
        zip_chunks_mut(l_slice, r_slice, |l, r| {
            for (l, &r) in l.iter_mut().zip(r) {
                *l = op(*l, r);
            }
        });
        return Ok(lhs);
    }
    if rhs.is_unique() && r_start == 0 {
        let l_slice: &[E] = &lhs.storage()[l_start..l_end];
        let r_slice: &mut [E] = &mut rhs.storage_mut()[..n];
        zip_chunks_mut(r_slice, l_slice, |r, l| {
            for (r, &l) in r.iter_mut().zip(l) {
                *r = op(l, *r);
            }
        });
        return Ok(rhs);
    }
    let result = map2(
        &lhs.storage::<E>()[l_start..l_end],
        &rhs.storage::<E>()[r_start..r_end],
        op,
    );
    let shape = lhs.layout().shape().clone();
    Ok(contiguous_tensor(result, shape, E::dtype()))
}

/// [`binary_contiguous`] for f32 with the published SIMD kernels of `simd_op`, in place
/// only (as the published SIMD paths): into `lhs`, else into `rhs` with the reversed
/// kernels for sub and div (`src OP dst`, so the result is still `lhs OP rhs`).
#[cfg(feature = "simd")]
fn binary_simd_f32(
    mut lhs: FlexTensor,
    mut rhs: FlexTensor,
    simd_op: BinaryOp,
) -> Result<FlexTensor, (FlexTensor, FlexTensor)> {
    use crate::simd;
    let n = lhs.layout().num_elements();
    let (Some((l_start, l_end)), Some((r_start, r_end))) = (
        lhs.layout().contiguous_offsets(),
        rhs.layout().contiguous_offsets(),
    ) else {
        return Err((lhs, rhs));
    };
    if n < PARALLEL_ELEMENTS || l_end - l_start != n || r_end - r_start != n {
        return Err((lhs, rhs));
    }
    if lhs.is_unique() && l_start == 0 {
        let r_slice: &[f32] = &rhs.storage()[r_start..r_end];
        let l_slice: &mut [f32] = &mut lhs.storage_mut()[..n];
        zip_chunks_mut(l_slice, r_slice, |l, r| match simd_op {
            BinaryOp::Add => simd::add_inplace_f32(l, r),
            BinaryOp::Sub => simd::sub_inplace_f32(l, r),
            BinaryOp::Mul => simd::mul_inplace_f32(l, r),
            BinaryOp::Div => simd::div_inplace_f32(l, r),
        });
        return Ok(lhs);
    }
    if rhs.is_unique() && r_start == 0 {
        let l_slice: &[f32] = &lhs.storage()[l_start..l_end];
        let r_slice: &mut [f32] = &mut rhs.storage_mut()[..n];
        zip_chunks_mut(r_slice, l_slice, |r, l| match simd_op {
            BinaryOp::Add => simd::add_inplace_f32(r, l),
            BinaryOp::Sub => simd::rsub_inplace_f32(r, l),
            BinaryOp::Mul => simd::mul_inplace_f32(r, l),
            BinaryOp::Div => simd::rdiv_inplace_f32(r, l),
        });
        return Ok(rhs);
    }
    Err((lhs, rhs))
}

/// A contiguous tensor of `shape` holding `data`.
fn contiguous_tensor<E: bytemuck::Pod + Send + Sync>(
    data: Vec<E>,
    shape: burn_std::Shape,
    dtype: DType,
) -> FlexTensor {
    let bytes = burn_std::Bytes::from_elems(data);
    FlexTensor::new(bytes, crate::Layout::contiguous(shape), dtype)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{binary, unary};
    use alloc::vec::Vec;
    use burn_backend::TensorData;

    /// Above the threshold and not a multiple of the chunk size.
    const LEN: usize = PARALLEL_ELEMENTS * 3 + 1234;

    fn values(seed: u32) -> Vec<f32> {
        (0..LEN as u32)
            .map(|i| {
                let h = (i ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(2_654_435_761);
                (h >> 8) as f32 / (1 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn tensor(v: Vec<f32>) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(v, [LEN / 2, 2].to_vec()))
    }

    fn bits(t: &FlexTensor) -> Vec<u32> {
        let n = t.layout().num_elements();
        let (start, _) = t.layout().contiguous_offsets().expect("contiguous result");
        t.storage::<f32>()[start..start + n]
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    /// Every binary path (written into the left operand, into the right one, into a new
    /// tensor; with and without a SIMD kernel) gives the published function's bits, and an
    /// operand that is not written keeps its values.
    #[test]
    fn binary_operations_equal_the_published_loops_on_every_path() {
        let (a, b) = (values(1), values(2));
        let published = |hint| {
            binary::binary_op(
                tensor(a.clone()),
                tensor(b.clone()),
                |x, y| x - y,
                |x, y| x - y,
                hint,
            )
        };
        for hint in [None, Some(BinaryOp::Sub)] {
            let expected = bits(&published(hint));
            // The left operand owned: written in place.
            let out = binary_op(
                tensor(a.clone()),
                tensor(b.clone()),
                |x, y| x - y,
                |x, y| x - y,
                hint,
            );
            assert_eq!(bits(&out), expected);
            // Only the right one owned: written into it, the left one kept.
            let shared = tensor(a.clone());
            let keep = shared.clone();
            let out = binary_op(shared, tensor(b.clone()), |x, y| x - y, |x, y| x - y, hint);
            assert_eq!(bits(&out), expected);
            assert_eq!(keep.storage::<f32>(), &a[..]);
            // Neither owned: a new tensor, both kept.
            let (l, r) = (tensor(a.clone()), tensor(b.clone()));
            let (kl, kr) = (l.clone(), r.clone());
            let out = binary_op(l, r, |x, y| x - y, |x, y| x - y, hint);
            assert_eq!(bits(&out), expected);
            assert_eq!(kl.storage::<f32>(), &a[..]);
            assert_eq!(kr.storage::<f32>(), &b[..]);
        }
    }

    /// Unary and scalar operations, in place and into a new tensor, give the published
    /// functions' bits; f64 too.
    #[test]
    fn unary_and_scalar_operations_equal_the_published_loops() {
        let a = values(3);
        let relu = |x: f32| x.max(0.0);
        let expected = bits(&unary::unary_op(tensor(a.clone()), relu, |x: f64| {
            x.max(0.0)
        }));
        assert_eq!(
            bits(&unary_op(tensor(a.clone()), relu, |x: f64| x.max(0.0))),
            expected
        );
        let shared = tensor(a.clone());
        let keep = shared.clone();
        assert_eq!(bits(&unary_op(shared, relu, |x: f64| x.max(0.0))), expected);
        assert_eq!(keep.storage::<f32>(), &a[..]);

        let expected = bits(&binary::scalar_op(
            tensor(a.clone()),
            0.3,
            |x, s| x * s,
            |x, s| x * s,
        ));
        assert_eq!(
            bits(&scalar_op(
                tensor(a.clone()),
                0.3,
                |x, s| x * s,
                |x, s| x * s
            )),
            expected
        );
        let shared = tensor(a.clone());
        let _keep = shared.clone();
        assert_eq!(
            bits(&scalar_op(shared, 0.3, |x, s| x * s, |x, s| x * s)),
            expected
        );

        let a64: Vec<f64> = a.iter().map(|&v| v as f64 * 1.5).collect();
        let t64 = || FlexTensor::from_data(TensorData::new(a64.clone(), [LEN].to_vec()));
        let ours = unary_op(t64(), |x: f32| x.sqrt(), |x: f64| x.abs().sqrt());
        let published = unary::unary_op(t64(), |x: f32| x.sqrt(), |x: f64| x.abs().sqrt());
        assert_eq!(ours.storage::<f64>(), published.storage::<f64>());
    }

    /// Small, strided and broadcast operands go to the published functions unchanged.
    #[test]
    fn other_layouts_are_the_published_functions() {
        let a = values(4);
        let t = tensor(a.clone()).transpose(0, 1);
        assert!(!t.layout().is_contiguous());
        let ours = unary_op(t.clone(), |x: f32| x * 2.0, |x: f64| x * 2.0);
        let published = unary::unary_op(t, |x: f32| x * 2.0, |x: f64| x * 2.0);
        assert_eq!(
            ours.into_data().as_slice::<f32>().unwrap(),
            published.into_data().as_slice::<f32>().unwrap()
        );
        let row =
            FlexTensor::from_data(TensorData::new(alloc::vec![0.5f32, -2.0], [1, 2].to_vec()));
        let ours = binary_op(
            tensor(a.clone()),
            row.clone(),
            |x, y| x * y,
            |x, y| x * y,
            Some(BinaryOp::Mul),
        );
        let published = binary::binary_op(
            tensor(a),
            row,
            |x, y| x * y,
            |x, y| x * y,
            Some(BinaryOp::Mul),
        );
        assert_eq!(bits(&ours), bits(&published));
    }
}
