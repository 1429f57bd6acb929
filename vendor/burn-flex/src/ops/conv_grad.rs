//! PATCH (scal-rs): the gradients of a 2-D convolution as im2col / col2im and gemm.
//!
//! burn-backend's defaults compute the data gradient through `conv_transpose2d` and the
//! weight gradient as a forward convolution with batch and channel axes swapped, which for
//! a 1×1 kernel becomes one matrix-vector product per input channel. Here both are matrix
//! products on the NCHW data as it is (`conv_im2col.rs`), per group of images:
//!
//! - data gradient: `col = Wᵀ · dY` (`[C_in·kh·kw, OH·OW]`), then col2im adds each column
//!   back into the input positions it was read from. A pointwise convolution (1×1,
//!   stride 1, no padding) writes `Wᵀ · dY` straight into `dX`.
//! - weight gradient: `dW += dY · colᵀ` summed over the images, where `col` is the im2col
//!   of the input (for a pointwise convolution, the input itself). Each worker sums its
//!   share of the batch into its own buffer; the buffers are added at the end.
//!
//! Convolution groups, dilation and asymmetric padding are handled (the output size comes
//! from the gradient's shape, so only the leading padding matters). f32, f64 and f16 use
//! gemm natively; bf16 goes through f32.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::f16;

use crate::FlexTensor;
use crate::ops::conv_common::{convert_bf16_to_f32, convert_f32_to_bf16};
use crate::ops::conv_im2col::{
    Block, ConvElement, Geometry, Plan, col2im, gather, im2col, matmul, tensor_from, with_scratch,
};

/// The data gradient of a group of images: `dx` (`[G, C_in, H, W]`, overwritten) from `dy`
/// (`[G, C_out, OH, OW]`): `col = Wᵀ · [dY₀ | dY₁ | …]`, then col2im of each image's block
/// (for one pointwise image, `Wᵀ · dY` straight into `dX`).
fn x_grad_group<T: ConvElement>(
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
fn weight_grad_group<T: ConvElement>(
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

fn x_grad_typed<T: ConvElement>(g: &Geometry, weight: &[T], dy: &[T]) -> Vec<T> {
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
fn weight_grad_of<T: ConvElement>(
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

fn weight_grad_typed<T: ConvElement>(g: &Geometry, x: &[T], dy: &[T]) -> Vec<T> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv_im2col::reference::{cases, hashed, relative_error};
    use burn_backend::TensorData;

    fn tensor<E: burn_backend::Element>(values: Vec<E>, shape: [usize; 4]) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
    }

    fn f32s(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&v| v as f32).collect()
    }

    fn f64s(t: &FlexTensor) -> Vec<f64> {
        t.storage::<f32>().iter().map(|&v| v as f64).collect()
    }

    /// Every case's data and weight gradients against the direct sums, in f32 and in f64.
    #[test]
    fn the_gradients_equal_the_direct_sums() {
        for case in cases() {
            let (xs, ws, ys) = (case.x_shape(), case.w_shape(), case.y_shape());
            let x = hashed(xs.iter().product(), 4);
            let w = hashed(ws.iter().product(), 5);
            let dy = hashed(ys.iter().product(), 6);
            let (dx_ref, dw_ref) = (case.x_grad(&w, &dy), case.weight_grad(&x, &dy));
            let options = ConvOptions::new(case.stride, case.pad, case.dilation, case.groups);

            let x32 = tensor(f32s(&x), xs);
            let dx = conv2d_x_backward(&x32, tensor(f32s(&w), ws), tensor(f32s(&dy), ys), &options);
            assert_eq!(dx.layout().shape().to_vec(), xs.to_vec(), "{case:?}");
            let err = relative_error(&f64s(&dx), &dx_ref);
            assert!(
                err < 1e-5,
                "{case:?}: data gradient, f32 relative error {err}"
            );
            let w32 = tensor(f32s(&w), ws);
            let dw = conv2d_weight_backward(x32, &w32, tensor(f32s(&dy), ys), &options);
            assert_eq!(dw.layout().shape().to_vec(), ws.to_vec(), "{case:?}");
            let err = relative_error(&f64s(&dw), &dw_ref);
            assert!(
                err < 1e-5,
                "{case:?}: weight gradient, f32 relative error {err}"
            );

            let x64 = tensor(x.clone(), xs);
            let dx = conv2d_x_backward(
                &x64,
                tensor(w.clone(), ws),
                tensor(dy.clone(), ys),
                &options,
            );
            let err = relative_error(dx.storage::<f64>(), &dx_ref);
            assert!(
                err < 1e-12,
                "{case:?}: data gradient, f64 relative error {err}"
            );
            let dw = conv2d_weight_backward(x64, &tensor(w, ws), tensor(dy, ys), &options);
            let err = relative_error(dw.storage::<f64>(), &dw_ref);
            assert!(
                err < 1e-12,
                "{case:?}: weight gradient, f64 relative error {err}"
            );
        }
    }

    /// A non-contiguous output gradient (a transposed view) gives the same gradients as
    /// its contiguous copy.
    #[test]
    fn a_strided_output_gradient_gives_the_same_gradients() {
        let case = cases()[0];
        let (xs, ws, ys) = (case.x_shape(), case.w_shape(), case.y_shape());
        let options = ConvOptions::new(case.stride, case.pad, case.dilation, case.groups);
        let dy = f32s(&hashed(ys.iter().product(), 7));
        let swapped = [ys[0], ys[1], ys[3], ys[2]];
        let mut t = vec![0.0f32; dy.len()];
        for (i, v) in dy.iter().enumerate() {
            let (p, q) = ((i / ys[3]) % ys[2], i % ys[3]);
            let nc = i / (ys[2] * ys[3]);
            t[(nc * ys[3] + q) * ys[2] + p] = *v;
        }
        let view = tensor(t, swapped).transpose(2, 3);
        assert!(!view.layout().is_contiguous());
        let x = tensor(f32s(&hashed(xs.iter().product(), 8)), xs);
        let w = tensor(f32s(&hashed(ws.iter().product(), 9)), ws);
        let a = conv2d_x_backward(&x, w.clone(), view, &options);
        let b = conv2d_x_backward(&x, w, tensor(dy, ys), &options);
        assert_eq!(a.storage::<f32>(), b.storage::<f32>());
    }
}
