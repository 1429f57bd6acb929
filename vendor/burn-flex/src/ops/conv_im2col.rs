//! PATCH (scal-rs): what the convolution kernels share — a convolution's sizes, im2col and
//! col2im on NCHW data, the gemm call, and the grouping of images into products.
//!
//! The gradients (`conv_grad.rs`) and the forward pass (`conv_forward.rs`) are matrix products
//! on the NCHW data as it is: `col = im2col(x)` (`[C_in·kh·kw, OH·OW]` per image), `Y = W · col`,
//! `dW += dY · colᵀ`, `col = Wᵀ · dY` then col2im. A product whose output map has fewer than
//! [`GROUP_COLUMNS`] positions covers several images side by side (`[col₀ | col₁ | …]`), since
//! gemm runs slowly with few columns. Groups of images run in parallel when there are at least
//! as many as worker threads; otherwise each product is parallel inside gemm. Each thread keeps
//! its column buffer between calls (`with_scratch`, with `std`).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape, f16};
use core::ops::Add;

use crate::{FlexTensor, Layout};

/// The element types the gradients are computed in.
pub(crate) trait ConvElement:
    bytemuck::Pod + Copy + Send + Sync + Add<Output = Self> + 'static
{
    const ZERO: Self;
    const ONE: Self;
}

impl ConvElement for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl ConvElement for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl ConvElement for f16 {
    const ZERO: Self = f16::ZERO;
    const ONE: Self = f16::ONE;
}

/// Sizes of one convolution, read from the input shape, the weight shape and the output
/// gradient's shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub(crate) batch: usize,
    pub(crate) c_in: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) c_out: usize,
    pub(crate) groups: usize,
    /// Input channels per group (the weight's second axis).
    pub(crate) c_in_g: usize,
    /// Output channels per group.
    pub(crate) c_out_g: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) stride: [usize; 2],
    pub(crate) pad: [usize; 2],
    pub(crate) dilation: [usize; 2],
}

impl Geometry {
    pub(crate) fn new(
        x_shape: &Shape,
        w_shape: &Shape,
        dy_shape: &Shape,
        options: &ConvOptions<2>,
    ) -> Self {
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
    pub(crate) fn col_rows(&self) -> usize {
        self.c_in_g * self.kh * self.kw
    }

    pub(crate) fn out_spatial(&self) -> usize {
        self.oh * self.ow
    }

    pub(crate) fn in_spatial(&self) -> usize {
        self.h * self.w
    }

    /// A 1×1 kernel, stride 1, no padding, output as large as the input: the input is its
    /// own im2col matrix.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.oh == self.h
            && self.ow == self.w
    }

    /// The output positions `o` in `0..out` whose input index `o·stride + k·dilation − pad`
    /// falls inside `0..size`, for kernel offset `k` along one axis (`axis` 0: rows, 1:
    /// columns).
    pub(crate) fn valid_range(&self, axis: usize, k: usize) -> (usize, usize) {
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

/// Columns a product should at least have: images are grouped into one product until their
/// output positions reach it (a 16 × 8 map is 128 columns, too few for gemm to run at speed).
pub(crate) const GROUP_COLUMNS: usize = 512;

/// Images per product, and whether the groups run in parallel (one per worker) or one at
/// a time with gemm parallel inside.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) images: usize,
    pub(crate) parallel: bool,
}

impl Plan {
    pub(crate) fn of(g: &Geometry) -> Plan {
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
    pub(crate) fn gemm(&self) -> gemm::Parallelism {
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
pub(crate) fn with_scratch<T: ConvElement, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
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
pub(crate) struct Block {
    pub(crate) stride: usize,
    pub(crate) offset: usize,
}

/// im2col of one group of one image into its block:
/// `col[(c·kh + i)·kw + j][offset + oy·OW + ox] = x[c][oy·s + i·d − p][ox·s + j·d − p]`, zero
/// outside the input.
///
/// # Shapes
/// - `x_group`: `[C_in/groups, H, W]`
/// - `col`: `[C_in/groups · kh · kw, block.stride]`
pub(crate) fn im2col<T: ConvElement>(g: &Geometry, x_group: &[T], col: &mut [T], block: Block) {
    // PATCH (scal-rs): one span per kernel offset where the output is as wide as the input.
    if g.is_row_shift() {
        return crate::ops::conv_im2col_shifted::im2col_shifted(g, x_group, col, block);
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

/// col2im of one group of one image from its block: adds each column entry back into the
/// input position [`im2col`] read it from.
///
/// # Shapes
/// - `col`: `[C_in/groups · kh · kw, block.stride]`
/// - `dx_group`: `[C_in/groups, H, W]`, accumulated into (zero it first)
pub(crate) fn col2im<T: ConvElement>(
    g: &Geometry,
    col: &mut [T],
    dx_group: &mut [T],
    block: Block,
) {
    // PATCH (scal-rs): one span per kernel offset where the output is as wide as the input.
    if g.is_row_shift() {
        return crate::ops::conv_im2col_shifted::col2im_shifted(g, col, dx_group, block);
    }
    for (c, plane) in dx_group.chunks_exact_mut(g.in_spatial()).enumerate() {
        col2im_plane(g, c, col, plane, block);
    }
}

/// col2im for one input channel `c` of a group.
pub(crate) fn col2im_plane<T: ConvElement>(
    g: &Geometry,
    c: usize,
    col: &[T],
    plane: &mut [T],
    block: Block,
) {
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
pub(crate) unsafe fn matmul<T: ConvElement>(
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
pub(crate) fn gather<T: ConvElement>(
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
pub(crate) fn scatter<T: ConvElement>(
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

pub(crate) fn tensor_from<T: ConvElement>(data: Vec<T>, shape: Shape, dtype: DType) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), dtype)
}

/// Direct convolutions in f64 for the kernels' tests: every term of every sum written out.
#[cfg(test)]
pub(crate) mod reference {
    use alloc::vec;
    use alloc::vec::Vec;

    /// A convolution's sizes, as the tests give them.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Case {
        pub n: usize,
        pub c_in: usize,
        pub h: usize,
        pub w: usize,
        pub c_out: usize,
        pub k: [usize; 2],
        pub stride: [usize; 2],
        pub pad: [usize; 2],
        pub dilation: [usize; 2],
        pub groups: usize,
    }

    /// The cases every kernel is checked on: "same" 3 × 3 (one span per kernel offset),
    /// pointwise, strided and grouped, dilated, maps small enough to be grouped into one
    /// product (one group, and several groups run in parallel), and a kernel larger than the
    /// map.
    pub(crate) fn cases() -> Vec<Case> {
        let case = |n, c_in, (h, w), c_out, k, stride, pad, dilation, groups| Case {
            n,
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
            dilation,
            groups,
        };
        vec![
            case(2, 3, (7, 5), 4, [3, 3], [1, 1], [1, 1], [1, 1], 1),
            case(3, 4, (6, 6), 6, [1, 1], [1, 1], [0, 0], [1, 1], 1),
            case(2, 4, (9, 7), 4, [3, 2], [2, 1], [1, 0], [1, 1], 2),
            case(1, 2, (8, 8), 2, [3, 3], [1, 1], [2, 2], [2, 2], 1),
            case(5, 2, (3, 4), 3, [3, 3], [1, 1], [1, 1], [1, 1], 1),
            case(256, 2, (4, 2), 2, [3, 3], [1, 1], [1, 1], [1, 1], 1),
            case(96, 3, (5, 3), 4, [1, 1], [2, 2], [0, 0], [1, 1], 1),
            case(1, 1, (3, 3), 2, [5, 5], [1, 1], [2, 2], [1, 1], 1),
        ]
    }

    impl Case {
        pub(crate) fn out(&self) -> [usize; 2] {
            let size = |a: usize, input: usize| {
                (input + 2 * self.pad[a] - self.dilation[a] * (self.k[a] - 1) - 1) / self.stride[a]
                    + 1
            };
            [size(0, self.h), size(1, self.w)]
        }
        pub(crate) fn x_shape(&self) -> [usize; 4] {
            [self.n, self.c_in, self.h, self.w]
        }
        pub(crate) fn w_shape(&self) -> [usize; 4] {
            [self.c_out, self.c_in / self.groups, self.k[0], self.k[1]]
        }
        pub(crate) fn y_shape(&self) -> [usize; 4] {
            let [oh, ow] = self.out();
            [self.n, self.c_out, oh, ow]
        }

        /// Calls `f(x index, w index, y index)` for every product term of the convolution.
        fn for_each_term(&self, mut f: impl FnMut(usize, usize, usize)) {
            let [oh, ow] = self.out();
            let (cig, cog) = (self.c_in / self.groups, self.c_out / self.groups);
            for n in 0..self.n {
                for o in 0..self.c_out {
                    let group = o / cog;
                    for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                        let yi = ((n * self.c_out + o) * oh + oy) * ow + ox;
                        for c in 0..cig {
                            for (i, j) in
                                (0..self.k[0]).flat_map(|i| (0..self.k[1]).map(move |j| (i, j)))
                            {
                                let iy = (oy * self.stride[0] + i * self.dilation[0]) as isize
                                    - self.pad[0] as isize;
                                let ix = (ox * self.stride[1] + j * self.dilation[1]) as isize
                                    - self.pad[1] as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= self.h as isize
                                    || ix >= self.w as isize
                                {
                                    continue;
                                }
                                let xc = group * cig + c;
                                let xi = ((n * self.c_in + xc) * self.h + iy as usize) * self.w
                                    + ix as usize;
                                let wi = ((o * cig + c) * self.k[0] + i) * self.k[1] + j;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }

        /// `y = conv(x, w)`.
        pub(crate) fn forward(&self, x: &[f64], w: &[f64]) -> Vec<f64> {
            let mut y = vec![0.0; self.y_shape().iter().product()];
            self.for_each_term(|xi, wi, yi| y[yi] += x[xi] * w[wi]);
            y
        }

        /// `∂⟨dy, conv(x, w)⟩/∂x`.
        pub(crate) fn x_grad(&self, w: &[f64], dy: &[f64]) -> Vec<f64> {
            let mut dx = vec![0.0; self.x_shape().iter().product()];
            self.for_each_term(|xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
            dx
        }

        /// `∂⟨dy, conv(x, w)⟩/∂w`.
        pub(crate) fn weight_grad(&self, x: &[f64], dy: &[f64]) -> Vec<f64> {
            let mut dw = vec![0.0; self.w_shape().iter().product()];
            self.for_each_term(|xi, wi, yi| dw[wi] += dy[yi] * x[xi]);
            dw
        }
    }

    /// Values in [−1, 1) from an integer hash of the index, different per `seed`.
    pub(crate) fn hashed(len: usize, seed: u64) -> Vec<f64> {
        (0..len as u64)
            .map(|i| {
                let h = (i + seed * 1_000_003).wrapping_mul(2_654_435_761) % (1 << 32);
                h as f64 / (1u64 << 31) as f64 - 1.0
            })
            .collect()
    }

    /// ‖ours − reference‖ / ‖reference‖.
    pub(crate) fn relative_error(ours: &[f64], reference: &[f64]) -> f64 {
        assert_eq!(ours.len(), reference.len());
        let diff: f64 = ours
            .iter()
            .zip(reference)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        let norm: f64 = reference.iter().map(|b| b * b).sum();
        (diff / norm.max(1e-300)).sqrt()
    }
}
