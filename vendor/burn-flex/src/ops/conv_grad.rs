//! PATCH (scal-rs): the gradients of a 2-D convolution as im2col / col2im and gemm.
//!
//! burn-backend's defaults compute the data gradient through `conv_transpose2d` and the
//! weight gradient as a forward convolution with batch and channel axes swapped, which for
//! a 1×1 kernel becomes one matrix-vector product per input channel. Here both are matrix
//! products on the NCHW data as it is, per image:
//!
//! - data gradient: `col = Wᵀ · dY` (`[C_in·kh·kw, OH·OW]`), then col2im adds each column
//!   back into the input positions it was read from. A pointwise convolution (1×1,
//!   stride 1, no padding) writes `Wᵀ · dY` straight into `dX`.
//! - weight gradient: `dW += dY · colᵀ` summed over the images, where `col` is the im2col
//!   of the input (for a pointwise convolution, the input itself). Each worker sums its
//!   share of the batch into its own buffer; the buffers are added at the end.
//!
//! Small feature maps are grouped: a product covers as many images as it takes to reach
//! 512 output positions (`[dY₀ | dY₁ | …]`, `[col₀ | col₁ | …]` side by side), since gemm
//! runs slowly on a 16 × 8 map's 128 columns. Groups run in parallel when there are at
//! least as many as worker threads; otherwise each product is parallel inside gemm.
//! Convolution groups, dilation and asymmetric padding are handled (the output size comes
//! from the gradient's shape, so only the leading padding matters). f32, f64 and f16 use
//! gemm natively; bf16 goes through f32. The forward pass (`conv2d_forward`) runs the same
//! way: `Y = W · [col₀ | col₁ | …]`, each image's block copied out.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape, f16};
use core::ops::Add;

use crate::ops::conv_common::{convert_bf16_to_f32, convert_f32_to_bf16};
use crate::{FlexTensor, Layout};

/// The element types the gradients are computed in.
trait GradElement: bytemuck::Pod + Copy + Send + Sync + Add<Output = Self> + 'static {
    const ZERO: Self;
    const ONE: Self;
}

impl GradElement for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl GradElement for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl GradElement for f16 {
    const ZERO: Self = f16::ZERO;
    const ONE: Self = f16::ONE;
}

/// Sizes of one convolution, read from the input shape, the weight shape and the output
/// gradient's shape.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    groups: usize,
    /// Input channels per group (the weight's second axis).
    c_in_g: usize,
    /// Output channels per group.
    c_out_g: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    fn new(x_shape: &Shape, w_shape: &Shape, dy_shape: &Shape, options: &ConvOptions<2>) -> Self {
        assert_eq!(x_shape.num_dims(), 4, "conv2d backward: input must be 4-D");
        assert_eq!(w_shape.num_dims(), 4, "conv2d backward: weight must be 4-D");
        assert_eq!(
            dy_shape.num_dims(),
            4,
            "conv2d backward: gradient must be 4-D"
        );
        let groups = options.groups;
        let c_out = w_shape[0];
        assert!(
            groups > 0 && c_out.is_multiple_of(groups),
            "conv2d backward: {c_out} output channels in {groups} groups"
        );
        assert_eq!(
            x_shape[1],
            w_shape[1] * groups,
            "conv2d backward: input channels"
        );
        assert_eq!(dy_shape[1], c_out, "conv2d backward: gradient channels");
        assert_eq!(dy_shape[0], x_shape[0], "conv2d backward: gradient batch");
        Geometry {
            batch: x_shape[0],
            c_in: x_shape[1],
            h: x_shape[2],
            w: x_shape[3],
            c_out,
            groups,
            c_in_g: w_shape[1],
            c_out_g: c_out / groups,
            kh: w_shape[2],
            kw: w_shape[3],
            oh: dy_shape[2],
            ow: dy_shape[3],
            stride: options.stride,
            pad: options.padding_begin(),
            dilation: options.dilation,
        }
    }

    /// Rows of one group's im2col matrix: `C_in/groups · kh · kw`.
    fn col_rows(&self) -> usize {
        self.c_in_g * self.kh * self.kw
    }

    fn out_spatial(&self) -> usize {
        self.oh * self.ow
    }

    fn in_spatial(&self) -> usize {
        self.h * self.w
    }

    /// A 1×1 kernel, stride 1, no padding, output as large as the input: the input is its
    /// own im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.oh == self.h
            && self.ow == self.w
    }

    /// Stride 1 and an output map as wide as the input (a "same" convolution, or any 1×1
    /// stride-1 one): output position `(oy, ox)` then reads input position
    /// `(oy, ox) + (i·d − p, j·d − p)` for kernel offset `(i, j)`, one constant shift of the
    /// flattened plane.
    fn is_row_shift(&self) -> bool {
        self.stride == [1, 1] && self.ow == self.w
    }

    /// For kernel offset `(i, j)` of a [`Self::is_row_shift`] convolution: the span of
    /// flattened output positions from the first valid one to the last, or `None` when no
    /// output position reads inside the input ([`Span`]).
    fn shifted_span(&self, i: usize, j: usize) -> Option<Span> {
        let (rows, columns) = (self.valid_range(0, i), self.valid_range(1, j));
        if rows.0 >= rows.1 || columns.0 >= columns.1 {
            return None;
        }
        let shift = (i * self.dilation[0]) as isize - self.pad[0] as isize;
        let shift =
            shift * self.w as isize + (j * self.dilation[1]) as isize - self.pad[1] as isize;
        let (first, last) = (
            rows.0 * self.ow + columns.0,
            (rows.1 - 1) * self.ow + columns.1,
        );
        Some(Span {
            first,
            last,
            read: (first as isize + shift) as usize,
            rows,
            columns,
        })
    }

    /// The output positions `o` in `0..out` whose input index `o·stride + k·dilation − pad`
    /// falls inside `0..size`, for kernel offset `k` along one axis (`axis` 0: rows, 1:
    /// columns).
    fn valid_range(&self, axis: usize, k: usize) -> (usize, usize) {
        let (size, out) = if axis == 0 {
            (self.h, self.oh)
        } else {
            (self.w, self.ow)
        };
        let offset = (k * self.dilation[axis]) as isize - self.pad[axis] as isize;
        let stride = self.stride[axis];
        // The first o with o·stride + offset ≥ bound.
        let first = |bound: isize| -> usize {
            let need = bound - offset;
            if need <= 0 {
                0
            } else {
                (need as usize).div_ceil(stride)
            }
        };
        let lo = first(0).min(out);
        let hi = first(size as isize).min(out);
        (lo, hi.max(lo))
    }
}

/// What one kernel offset of a [`Geometry::is_row_shift`] convolution reads: output
/// positions `first..last` (flattened) read input positions `read..read + (last − first)`
/// of the same channel, one to one. Between rows, the span also covers the columns outside
/// `columns`, which read neighbouring pixels and stand for padding
/// ([`zero_padding_columns`]).
#[derive(Clone, Copy, Debug)]
struct Span {
    first: usize,
    last: usize,
    read: usize,
    /// The valid output rows, `valid_range(0, i)`.
    rows: (usize, usize),
    /// The valid output columns, `valid_range(1, j)`.
    columns: (usize, usize),
}

/// Columns a product should at least have: images are grouped into one product until their
/// output positions reach it (a 16 × 8 map is 128 columns, too few for gemm to run at speed).
const GROUP_COLUMNS: usize = 512;

/// Images per product, and whether the groups run in parallel (one per worker) or one at
/// a time with gemm parallel inside.
#[derive(Clone, Copy, Debug)]
struct Plan {
    images: usize,
    parallel: bool,
}

impl Plan {
    fn of(g: &Geometry) -> Plan {
        let images = if g.out_spatial() >= GROUP_COLUMNS {
            1
        } else {
            GROUP_COLUMNS
                .div_ceil(g.out_spatial().max(1))
                .min(g.batch)
                .max(1)
        };
        #[cfg(feature = "rayon")]
        let parallel = g.batch.div_ceil(images) >= rayon::current_num_threads();
        #[cfg(not(feature = "rayon"))]
        let parallel = false;
        Plan { images, parallel }
    }

    /// gemm's own parallelism: none inside parallel groups, all threads otherwise.
    fn gemm(&self) -> gemm::Parallelism {
        #[cfg(feature = "rayon")]
        if !self.parallel {
            return gemm::Parallelism::Rayon(0);
        }
        gemm::Parallelism::None
    }
}

#[cfg(feature = "std")]
std::thread_local! {
    /// Each thread's scratch buffer, kept between calls (8-byte words, cast to the element
    /// type), so that repeated convolutions neither reallocate nor re-zero it.
    static SCRATCH: core::cell::RefCell<Vec<f64>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with a scratch buffer of `len` elements: this thread's kept buffer when it is
/// free (its contents are stale: every user overwrites what it reads), else a new one.
fn with_scratch<T: GradElement, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    #[cfg(feature = "std")]
    {
        let words = (len * core::mem::size_of::<T>()).div_ceil(8);
        // Taken out rather than borrowed, so that a nested call on this thread (rayon may
        // run another job here while gemm waits) gets a buffer of its own.
        let kept = SCRATCH.with(|c| {
            c.try_borrow_mut()
                .ok()
                .map(|mut v| core::mem::take(&mut *v))
        });
        if let Some(mut buffer) = kept {
            if buffer.len() < words {
                buffer.resize(words, 0.0);
            }
            let result = f(&mut bytemuck::cast_slice_mut::<f64, T>(&mut buffer)[..len]);
            SCRATCH.with(|c| {
                if let Ok(mut slot) = c.try_borrow_mut()
                    && slot.len() < buffer.len()
                {
                    *slot = buffer;
                }
            });
            return result;
        }
    }
    let mut buffer = vec![T::ZERO; len];
    f(&mut buffer)
}

/// Where one image's block sits in a column matrix shared by a group of images: every row
/// is `stride` long and the image's columns start at `offset`.
#[derive(Clone, Copy, Debug)]
struct Block {
    stride: usize,
    offset: usize,
}

/// im2col of one group of one image into its block:
/// `col[(c·kh + i)·kw + j][offset + oy·OW + ox] = x[c][oy·s + i·d − p][ox·s + j·d − p]`, zero
/// outside the input.
///
/// # Shapes
/// - `x_group`: `[C_in/groups, H, W]`
/// - `col`: `[C_in/groups · kh · kw, block.stride]`
fn im2col<T: GradElement>(g: &Geometry, x_group: &[T], col: &mut [T], block: Block) {
    if g.is_row_shift() {
        return im2col_shifted(g, x_group, col, block);
    }
    let (ow, out_sp) = (g.ow, g.out_spatial());
    // Kernel offsets outside, channels inside: the valid ranges (integer divisions) are
    // computed once per offset, not once per channel.
    for i in 0..g.kh {
        let (y_lo, y_hi) = g.valid_range(0, i);
        for j in 0..g.kw {
            let (x_lo, x_hi) = g.valid_range(1, j);
            let x_offset = (j * g.dilation[1]) as isize - g.pad[1] as isize;
            for c in 0..g.c_in_g {
                let plane = &x_group[c * g.in_spatial()..(c + 1) * g.in_spatial()];
                let row = (c * g.kh + i) * g.kw + j;
                let start = row * block.stride + block.offset;
                let out = &mut col[start..start + out_sp];
                out[..y_lo * ow].fill(T::ZERO);
                out[y_hi * ow..].fill(T::ZERO);
                for oy in y_lo..y_hi {
                    let iy = oy * g.stride[0] + i * g.dilation[0] - g.pad[0];
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    let dst = &mut out[oy * ow..(oy + 1) * ow];
                    dst[..x_lo].fill(T::ZERO);
                    dst[x_hi..].fill(T::ZERO);
                    if x_lo < x_hi {
                        let first = ((x_lo * g.stride[1]) as isize + x_offset) as usize;
                        let src = src[first..].iter().step_by(g.stride[1]);
                        for (d, &v) in dst[x_lo..x_hi].iter_mut().zip(src) {
                            *d = v;
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col`] when the output map has the input's width and stride 1
/// ([`Geometry::is_row_shift`]): each row of the column matrix is then the input plane shifted
/// by one constant, so its valid part is one copy (rather than one per output row, which
/// cost more in call overhead than in bytes on the small maps of a training step) and the
/// columns that fall into the padding are zeroed afterwards, one kernel column at a time.
///
/// # Shapes
/// - `x_group`: `[C_in/groups, H, W]`
/// - `col`: `[C_in/groups · kh · kw, block.stride]`
fn im2col_shifted<T: GradElement>(g: &Geometry, x_group: &[T], col: &mut [T], block: Block) {
    let out_sp = g.out_spatial();
    for i in 0..g.kh {
        for j in 0..g.kw {
            let span = g.shifted_span(i, j);
            for c in 0..g.c_in_g {
                let plane = &x_group[c * g.in_spatial()..(c + 1) * g.in_spatial()];
                let row = (c * g.kh + i) * g.kw + j;
                let start = row * block.stride + block.offset;
                let out = &mut col[start..start + out_sp];
                let Some(span) = &span else {
                    out.fill(T::ZERO);
                    continue;
                };
                let (first, last) = (span.first, span.last);
                out[..first].fill(T::ZERO);
                out[first..last].copy_from_slice(&plane[span.read..span.read + (last - first)]);
                out[last..].fill(T::ZERO);
                zero_padding_columns(g.ow, span, out);
            }
        }
    }
}

/// Zeroes, in one row of a column matrix (`[OH · OW]`), the entries inside `span` whose
/// column falls outside its valid columns: those read padding. One column at a time, down
/// the rows (there are only `pad` such columns; a loop along a row would become a call to
/// `memset` for one or two values).
#[inline]
fn zero_padding_columns<T: GradElement>(ow: usize, span: &Span, out: &mut [T]) {
    let ((y_lo, y_hi), (x_lo, x_hi)) = (span.rows, span.columns);
    for x in (0..x_lo).chain(x_hi..ow) {
        let column = out[y_lo * ow + x..].iter_mut().step_by(ow);
        column.take(y_hi - y_lo).for_each(|v| *v = T::ZERO);
    }
}

/// col2im of one group of one image from its block: adds each column entry back into the
/// input position [`im2col`] read it from.
///
/// # Shapes
/// - `col`: `[C_in/groups · kh · kw, block.stride]`
/// - `dx_group`: `[C_in/groups, H, W]`, accumulated into (zero it first)
fn col2im<T: GradElement>(g: &Geometry, col: &mut [T], dx_group: &mut [T], block: Block) {
    if g.is_row_shift() {
        return col2im_shifted(g, col, dx_group, block);
    }
    for (c, plane) in dx_group.chunks_exact_mut(g.in_spatial()).enumerate() {
        col2im_plane(g, c, col, plane, block);
    }
}

/// [`col2im`] when [`Geometry::is_row_shift`]: the entries that stand for padding are
/// zeroed in `col` first ([`zero_padding_columns`]; `col` is scratch), so that each kernel
/// offset adds one contiguous span into the plane in one vectorised loop, rather than one
/// short loop per output row. Each input position receives the same terms in the same order
/// as in [`col2im_plane`], plus zeros.
///
/// # Shapes
/// - `col`: `[C_in/groups · kh · kw, block.stride]`, its padding entries zeroed
/// - `dx_group`: `[C_in/groups, H, W]`, accumulated into (zero it first)
fn col2im_shifted<T: GradElement>(g: &Geometry, col: &mut [T], dx_group: &mut [T], block: Block) {
    let in_sp = g.in_spatial();
    for i in 0..g.kh {
        for j in 0..g.kw {
            let Some(span) = g.shifted_span(i, j) else {
                continue;
            };
            let len = span.last - span.first;
            for (c, plane) in dx_group.chunks_exact_mut(in_sp).enumerate() {
                let row = (c * g.kh + i) * g.kw + j;
                let start = row * block.stride + block.offset;
                let src = &mut col[start..start + g.out_spatial()];
                zero_padding_columns(g.ow, &span, src);
                let dst = &mut plane[span.read..span.read + len];
                for (d, &v) in dst.iter_mut().zip(&src[span.first..span.last]) {
                    *d = *d + v;
                }
            }
        }
    }
}

/// col2im for one input channel `c` of a group.
fn col2im_plane<T: GradElement>(g: &Geometry, c: usize, col: &[T], plane: &mut [T], block: Block) {
    let ow = g.ow;
    for i in 0..g.kh {
        let (y_lo, y_hi) = g.valid_range(0, i);
        for j in 0..g.kw {
            let (x_lo, x_hi) = g.valid_range(1, j);
            if x_lo >= x_hi {
                continue;
            }
            let row = (c * g.kh + i) * g.kw + j;
            let src = &col[row * block.stride + block.offset..];
            let x_offset = (j * g.dilation[1]) as isize - g.pad[1] as isize;
            let first = ((x_lo * g.stride[1]) as isize + x_offset) as usize;
            for oy in y_lo..y_hi {
                let iy = oy * g.stride[0] + i * g.dilation[0] - g.pad[0];
                let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                let s = &src[oy * ow + x_lo..oy * ow + x_hi];
                if g.stride[1] == 1 {
                    for (d, &v) in dst[first..first + s.len()].iter_mut().zip(s) {
                        *d = *d + v;
                    }
                } else {
                    for (k, &v) in s.iter().enumerate() {
                        let d = &mut dst[first + k * g.stride[1]];
                        *d = *d + v;
                    }
                }
            }
        }
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` with `accumulate`, for an `m × k` by `k × n`
/// product; element `(r, c)` of each matrix lives at `r·rs + c·cs` (`(rs, cs)` pairs).
///
/// # Safety
/// Every pointer must be valid for the matrix its strides describe, and `dst` must not
/// overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul<T: GradElement>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    (dst_rs, dst_cs): (isize, isize),
    accumulate: bool,
    lhs: *const T,
    (lhs_rs, lhs_cs): (isize, isize),
    rhs: *const T,
    (rhs_rs, rhs_cs): (isize, isize),
    parallelism: gemm::Parallelism,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The rows `[c0, c0 + rows)` of each of `images` consecutive `[channels, len]` images,
/// side by side: `out[r][j·len + p] = images[j][c0 + r][p]`.
fn gather<T: GradElement>(
    src: &[T],
    image_len: usize,
    (c0, rows, len): (usize, usize, usize),
    out: &mut [T],
) {
    let images = src.len() / image_len;
    for r in 0..rows {
        for j in 0..images {
            let from = j * image_len + (c0 + r) * len;
            let to = r * images * len + j * len;
            out[to..to + len].copy_from_slice(&src[from..from + len]);
        }
    }
}

/// The inverse of [`gather`]: writes each image's block back into its rows.
fn scatter<T: GradElement>(
    blocks: &[T],
    dst: &mut [T],
    image_len: usize,
    (c0, rows, len): (usize, usize, usize),
) {
    let images = dst.len() / image_len;
    for r in 0..rows {
        for j in 0..images {
            let from = r * images * len + j * len;
            let to = j * image_len + (c0 + r) * len;
            dst[to..to + len].copy_from_slice(&blocks[from..from + len]);
        }
    }
}

/// The forward pass of a group of images: `y` (`[G, C_out, OH, OW]`, overwritten) from `x`
/// (`[G, C_in, H, W]`). One image writes gemm's output in place; several share one product
/// (`W · [col₀ | col₁ | …]`) whose blocks are then copied out.
fn forward_group<T: GradElement>(
    g: &Geometry,
    x: &[T],
    weight: &[T],
    y: &mut [T],
    gemm_par: gemm::Parallelism,
) {
    let (rows, out_sp, in_sp) = (g.col_rows(), g.out_spatial(), g.in_spatial());
    let (in_len, out_len) = (g.c_in * in_sp, g.c_out * out_sp);
    let images = x.len() / in_len;
    let n = images * out_sp;
    let direct_x = g.is_pointwise() && images == 1;
    let col_len = if direct_x { 0 } else { rows * n };
    let y_len = if images == 1 { 0 } else { g.c_out_g * n };
    with_scratch(col_len + y_len, |scratch: &mut [T]| {
        let (col, y_blocks) = scratch.split_at_mut(col_len);
        for group in 0..g.groups {
            let w_group = &weight[group * g.c_out_g * rows..(group + 1) * g.c_out_g * rows];
            let cols: &[T] = if direct_x {
                &x[group * g.c_in_g * in_sp..(group + 1) * g.c_in_g * in_sp]
            } else {
                for j in 0..images {
                    let x_group = &x[j * in_len + group * g.c_in_g * in_sp..][..g.c_in_g * in_sp];
                    im2col(
                        g,
                        x_group,
                        col,
                        Block {
                            stride: n,
                            offset: j * out_sp,
                        },
                    );
                }
                &*col
            };
            let dst = if images == 1 {
                y[group * g.c_out_g * out_sp..].as_mut_ptr()
            } else {
                y_blocks.as_mut_ptr()
            };
            // Y[c_out_g, n] = W_group[c_out_g, rows] · col[rows, n].
            // SAFETY: the slices above hold these matrices; dst is a distinct buffer.
            unsafe {
                matmul(
                    (g.c_out_g, n, rows),
                    dst,
                    (n as isize, 1),
                    false,
                    w_group.as_ptr(),
                    (rows as isize, 1),
                    cols.as_ptr(),
                    (n as isize, 1),
                    gemm_par,
                );
            }
            if images > 1 {
                scatter(y_blocks, y, out_len, (group * g.c_out_g, g.c_out_g, out_sp));
            }
        }
    });
}

/// The data gradient of a group of images: `dx` (`[G, C_in, H, W]`, overwritten) from `dy`
/// (`[G, C_out, OH, OW]`): `col = Wᵀ · [dY₀ | dY₁ | …]`, then col2im of each image's block
/// (for one pointwise image, `Wᵀ · dY` straight into `dX`).
fn x_grad_group<T: GradElement>(
    g: &Geometry,
    weight: &[T],
    dy: &[T],
    dx: &mut [T],
    gemm_par: gemm::Parallelism,
) {
    let (rows, out_sp, in_sp) = (g.col_rows(), g.out_spatial(), g.in_spatial());
    let (in_len, out_len) = (g.c_in * in_sp, g.c_out * out_sp);
    let images = dx.len() / in_len;
    let n = images * out_sp;
    let direct = g.is_pointwise() && images == 1;
    if !direct {
        dx.fill(T::ZERO);
    }
    let col_len = if direct { 0 } else { rows * n };
    let dy_len = if images == 1 { 0 } else { g.c_out_g * n };
    with_scratch(col_len + dy_len, |scratch: &mut [T]| {
        let (col, dy_blocks) = scratch.split_at_mut(col_len);
        for group in 0..g.groups {
            let w_group = &weight[group * g.c_out_g * rows..(group + 1) * g.c_out_g * rows];
            let dy_group: &[T] = if images == 1 {
                &dy[group * g.c_out_g * out_sp..(group + 1) * g.c_out_g * out_sp]
            } else {
                gather(
                    dy,
                    out_len,
                    (group * g.c_out_g, g.c_out_g, out_sp),
                    dy_blocks,
                );
                &*dy_blocks
            };
            let dst = if direct {
                dx[group * g.c_in_g * in_sp..].as_mut_ptr()
            } else {
                col.as_mut_ptr()
            };
            // col[rows, n] = W_groupᵀ · dY[c_out_g, n], with W_groupᵀ[r][o] = W_group[o][r].
            // SAFETY: the slices above hold these matrices; dst is a distinct buffer.
            unsafe {
                matmul(
                    (rows, n, g.c_out_g),
                    dst,
                    (n as isize, 1),
                    false,
                    w_group.as_ptr(),
                    (1, rows as isize),
                    dy_group.as_ptr(),
                    (n as isize, 1),
                    gemm_par,
                );
            }
            if !direct {
                for j in 0..images {
                    let dx_group =
                        &mut dx[j * in_len + group * g.c_in_g * in_sp..][..g.c_in_g * in_sp];
                    col2im(
                        g,
                        col,
                        dx_group,
                        Block {
                            stride: n,
                            offset: j * out_sp,
                        },
                    );
                }
            }
        }
    });
}

/// Adds the weight gradient of a group of images into `dw` (`[C_out, C_in/groups, kh, kw]`;
/// `accumulate` false overwrites it): `dW += [dY₀ | dY₁ | …] · [col₀ | col₁ | …]ᵀ`.
fn weight_grad_group<T: GradElement>(
    g: &Geometry,
    (x, dy): (&[T], &[T]),
    dw: &mut [T],
    accumulate: bool,
    gemm_par: gemm::Parallelism,
) {
    let (rows, out_sp, in_sp) = (g.col_rows(), g.out_spatial(), g.in_spatial());
    let (in_len, out_len) = (g.c_in * in_sp, g.c_out * out_sp);
    let images = x.len() / in_len;
    let n = images * out_sp;
    let direct_x = g.is_pointwise() && images == 1;
    let col_len = if direct_x { 0 } else { rows * n };
    let dy_len = if images == 1 { 0 } else { g.c_out_g * n };
    with_scratch(col_len + dy_len, |scratch: &mut [T]| {
        let (col, dy_blocks) = scratch.split_at_mut(col_len);
        for group in 0..g.groups {
            let cols: &[T] = if direct_x {
                &x[group * g.c_in_g * in_sp..(group + 1) * g.c_in_g * in_sp]
            } else {
                for j in 0..images {
                    let x_group = &x[j * in_len + group * g.c_in_g * in_sp..][..g.c_in_g * in_sp];
                    im2col(
                        g,
                        x_group,
                        col,
                        Block {
                            stride: n,
                            offset: j * out_sp,
                        },
                    );
                }
                &*col
            };
            let dy_group: &[T] = if images == 1 {
                &dy[group * g.c_out_g * out_sp..(group + 1) * g.c_out_g * out_sp]
            } else {
                gather(
                    dy,
                    out_len,
                    (group * g.c_out_g, g.c_out_g, out_sp),
                    dy_blocks,
                );
                &*dy_blocks
            };
            let dw_group = &mut dw[group * g.c_out_g * rows..(group + 1) * g.c_out_g * rows];
            // dW_group[c_out_g, rows] (+)= dY[c_out_g, n] · colᵀ, with colᵀ[p][r] = col[r][p].
            // SAFETY: the slices above hold these matrices; dw is a distinct buffer.
            unsafe {
                matmul(
                    (g.c_out_g, rows, n),
                    dw_group.as_mut_ptr(),
                    (rows as isize, 1),
                    accumulate,
                    dy_group.as_ptr(),
                    (n as isize, 1),
                    cols.as_ptr(),
                    (1, n as isize),
                    gemm_par,
                );
            }
        }
    });
}

fn forward_typed<T: GradElement>(g: &Geometry, x: &[T], weight: &[T]) -> Vec<T> {
    let (in_len, out_len) = (g.c_in * g.in_spatial(), g.c_out * g.out_spatial());
    let mut y = vec![T::ZERO; g.batch * out_len];
    if out_len == 0 || in_len == 0 {
        return y;
    }
    let plan = Plan::of(g);
    let (x_chunk, y_chunk) = (plan.images * in_len, plan.images * out_len);
    #[cfg(feature = "rayon")]
    if plan.parallel {
        use rayon::prelude::*;
        y.par_chunks_mut(y_chunk)
            .zip(x.par_chunks(x_chunk))
            .for_each(|(y, x)| forward_group(g, x, weight, y, plan.gemm()));
        return y;
    }
    for (y, x) in y.chunks_mut(y_chunk).zip(x.chunks(x_chunk)) {
        forward_group(g, x, weight, y, plan.gemm());
    }
    y
}

fn x_grad_typed<T: GradElement>(g: &Geometry, weight: &[T], dy: &[T]) -> Vec<T> {
    let (in_len, out_len) = (g.c_in * g.in_spatial(), g.c_out * g.out_spatial());
    let mut dx = vec![T::ZERO; g.batch * in_len];
    if in_len == 0 || out_len == 0 {
        return dx;
    }
    let plan = Plan::of(g);
    let (dx_chunk, dy_chunk) = (plan.images * in_len, plan.images * out_len);
    #[cfg(feature = "rayon")]
    if plan.parallel {
        use rayon::prelude::*;
        dx.par_chunks_mut(dx_chunk)
            .zip(dy.par_chunks(dy_chunk))
            .for_each(|(dx, dy)| x_grad_group(g, weight, dy, dx, plan.gemm()));
        return dx;
    }
    for (dx, dy) in dx.chunks_mut(dx_chunk).zip(dy.chunks(dy_chunk)) {
        x_grad_group(g, weight, dy, dx, plan.gemm());
    }
    dx
}

/// Sums the weight gradient of the images `images` (a range of whole groups) into a new
/// buffer.
fn weight_grad_of<T: GradElement>(
    g: &Geometry,
    (x, dy): (&[T], &[T]),
    images: core::ops::Range<usize>,
    plan: Plan,
) -> Vec<T> {
    let (in_len, out_len) = (g.c_in * g.in_spatial(), g.c_out * g.out_spatial());
    let mut dw = vec![T::ZERO; g.c_out * g.col_rows()];
    let x = &x[images.start * in_len..images.end * in_len];
    let dy = &dy[images.start * out_len..images.end * out_len];
    let chunks = x
        .chunks(plan.images * in_len)
        .zip(dy.chunks(plan.images * out_len));
    for (i, (x, dy)) in chunks.enumerate() {
        weight_grad_group(g, (x, dy), &mut dw, i > 0, plan.gemm());
    }
    dw
}

fn weight_grad_typed<T: GradElement>(g: &Geometry, x: &[T], dy: &[T]) -> Vec<T> {
    if g.c_out * g.col_rows() == 0 || g.batch == 0 || g.out_spatial() == 0 {
        return vec![T::ZERO; g.c_out * g.col_rows()];
    }
    let plan = Plan::of(g);
    #[cfg(feature = "rayon")]
    if plan.parallel {
        use rayon::prelude::*;
        // One contiguous share of the groups per worker, each summed into its own buffer.
        let groups = g.batch.div_ceil(plan.images);
        let per_worker = groups.div_ceil(rayon::current_num_threads().min(groups));
        let share = per_worker * plan.images;
        let partials: Vec<Vec<T>> = (0..g.batch.div_ceil(share))
            .into_par_iter()
            .map(|s| weight_grad_of(g, (x, dy), s * share..((s + 1) * share).min(g.batch), plan))
            .collect();
        let mut partials = partials.into_iter();
        let mut dw = partials.next().expect("at least one share");
        for p in partials {
            dw.par_chunks_mut(4096)
                .zip(p.par_chunks(4096))
                .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| *a = *a + b));
        }
        return dw;
    }
    weight_grad_of(g, (x, dy), 0..g.batch, plan)
}

fn tensor_from<T: GradElement>(data: Vec<T>, shape: Shape, dtype: DType) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), dtype)
}

/// The gradient of `conv2d` with respect to its input, shaped like `x`.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]` (only its shape is read)
/// - `weight`: `[C_out, C_in/groups, kh, kw]`
/// - `output_grad`: `[N, C_out, OH, OW]`
pub fn conv2d_x_backward(
    x: &FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let x_shape = x.layout().shape().clone();
    let dtype = weight.dtype();
    if dtype == DType::BF16 {
        let dx = conv2d_x_backward(
            x,
            convert_bf16_to_f32(&weight),
            convert_bf16_to_f32(&output_grad),
            options,
        );
        return convert_f32_to_bf16(&dx);
    }
    let weight = weight.to_contiguous();
    let dy = output_grad.to_contiguous();
    let g = Geometry::new(
        &x_shape,
        weight.layout().shape(),
        dy.layout().shape(),
        options,
    );
    match dtype {
        DType::F32 => tensor_from(
            x_grad_typed::<f32>(&g, weight.storage(), dy.storage()),
            x_shape,
            dtype,
        ),
        DType::F64 => tensor_from(
            x_grad_typed::<f64>(&g, weight.storage(), dy.storage()),
            x_shape,
            dtype,
        ),
        DType::F16 => tensor_from(
            x_grad_typed::<f16>(&g, weight.storage(), dy.storage()),
            x_shape,
            dtype,
        ),
        other => panic!("conv2d_x_backward: unsupported dtype {other:?}"),
    }
}

/// The gradient of `conv2d` with respect to its weight, shaped like `weight`.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]`
/// - `weight`: `[C_out, C_in/groups, kh, kw]` (only its shape is read)
/// - `output_grad`: `[N, C_out, OH, OW]`
pub fn conv2d_weight_backward(
    x: FlexTensor,
    weight: &FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let w_shape = weight.layout().shape().clone();
    let dtype = x.dtype();
    if dtype == DType::BF16 {
        let dw = conv2d_weight_backward(
            convert_bf16_to_f32(&x),
            weight,
            convert_bf16_to_f32(&output_grad),
            options,
        );
        return convert_f32_to_bf16(&dw);
    }
    let x = x.to_contiguous();
    let dy = output_grad.to_contiguous();
    let g = Geometry::new(x.layout().shape(), &w_shape, dy.layout().shape(), options);
    match dtype {
        DType::F32 => tensor_from(
            weight_grad_typed::<f32>(&g, x.storage(), dy.storage()),
            w_shape,
            dtype,
        ),
        DType::F64 => tensor_from(
            weight_grad_typed::<f64>(&g, x.storage(), dy.storage()),
            w_shape,
            dtype,
        ),
        DType::F16 => tensor_from(
            weight_grad_typed::<f16>(&g, x.storage(), dy.storage()),
            w_shape,
            dtype,
        ),
        other => panic!("conv2d_weight_backward: unsupported dtype {other:?}"),
    }
}

/// `conv2d`'s forward pass on the same layout: `Y = W · im2col(X)` per image (for a
/// pointwise convolution, `W · X`), plus the bias. Symmetric padding (the caller pads an
/// asymmetric input first).
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]`, `weight`: `[C_out, C_in/groups, kh, kw]`, `bias`: `[C_out]`
/// - returns `[N, C_out, OH, OW]`
pub fn conv2d_forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let dtype = x.dtype();
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let (xs, ws) = (x.layout().shape().clone(), weight.layout().shape().clone());
    let [oh, ow] = [0, 1].map(|a| {
        burn_backend::ops::conv::calculate_conv_output_size(
            ws[2 + a],
            options.stride[a],
            options.padding_begin()[a],
            options.dilation[a],
            xs[2 + a],
        )
    });
    let y_shape = Shape::new([xs[0], ws[0], oh, ow]);
    let g = Geometry::new(&xs, &ws, &y_shape, options);
    let bias = bias.map(|b| b.to_contiguous());
    macro_rules! run {
        ($t:ty) => {{
            let mut y = forward_typed::<$t>(&g, x.storage(), weight.storage());
            if let Some(bias) = &bias {
                let bias: &[$t] = bias.storage();
                for (i, plane) in y.chunks_mut(g.out_spatial().max(1)).enumerate() {
                    let b = bias[i % g.c_out];
                    plane.iter_mut().for_each(|v| *v = *v + b);
                }
            }
            tensor_from(y, y_shape, dtype)
        }};
    }
    match dtype {
        DType::F32 => run!(f32),
        DType::F64 => run!(f64),
        DType::F16 => run!(f16),
        other => panic!("conv2d: unsupported dtype {other:?}"),
    }
}
