//! PATCH (scal-rs): the forward pass of an ungrouped 2-D convolution without the serial NHWC
//! copy.
//!
//! The published path copies the whole input to NHWC on one thread before its tiled im2col.
//! Here im2col runs on the NCHW image inside each worker (`conv_im2col.rs`) and gemm writes
//! its output in place: `Y = W · [col₀ | col₁ | …]`, each image's block copied out when
//! several share one product.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::{Shape, f16};

use crate::FlexTensor;
use crate::ops::conv_im2col::{
    Block, ConvElement, Geometry, Plan, im2col, matmul, scatter, tensor_from, with_scratch,
};

/// The forward pass of a group of images: `y` (`[G, C_out, OH, OW]`, overwritten) from `x`
/// (`[G, C_in, H, W]`). One image writes gemm's output in place; several share one product
/// (`W · [col₀ | col₁ | …]`) whose blocks are then copied out.
fn forward_group<T: ConvElement>(
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

fn forward_typed<T: ConvElement>(g: &Geometry, x: &[T], weight: &[T]) -> Vec<T> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv_im2col::reference::{cases, hashed, relative_error};
    use burn_backend::TensorData;

    fn tensor<E: burn_backend::Element>(values: Vec<E>, shape: [usize; 4]) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
    }

    /// Every case's output and bias against the direct sums, in f32 and in f64.
    #[test]
    fn the_forward_pass_equals_the_direct_sums() {
        for case in cases() {
            let (xs, ws, ys) = (case.x_shape(), case.w_shape(), case.y_shape());
            let x = hashed(xs.iter().product(), 1);
            let w = hashed(ws.iter().product(), 2);
            let bias = hashed(case.c_out, 3);
            let mut expected = case.forward(&x, &w);
            let plane = ys[2] * ys[3];
            for (i, v) in expected.iter_mut().enumerate() {
                *v += bias[(i / plane) % case.c_out];
            }
            let options = ConvOptions::new(case.stride, case.pad, case.dilation, case.groups);
            let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<_>>();
            let b32 = FlexTensor::from_data(TensorData::new(f32s(&bias), [case.c_out]));
            let y = conv2d_forward(
                tensor(f32s(&x), xs),
                tensor(f32s(&w), ws),
                Some(b32),
                &options,
            );
            assert_eq!(y.layout().shape().to_vec(), ys.to_vec(), "{case:?}");
            let y: Vec<f64> = y.storage::<f32>().iter().map(|&v| v as f64).collect();
            let err = relative_error(&y, &expected);
            assert!(err < 1e-5, "{case:?}: f32 relative error {err}");
            let b64 = FlexTensor::from_data(TensorData::new(bias.clone(), [case.c_out]));
            let y = conv2d_forward(tensor(x, xs), tensor(w, ws), Some(b64), &options);
            let err = relative_error(y.storage::<f64>(), &expected);
            assert!(err < 1e-12, "{case:?}: f64 relative error {err}");
        }
    }
}
