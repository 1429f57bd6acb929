//! PATCH (scal-rs): batch normalization as per-channel passes over the data.
//!
//! burn-backend's defaults compose batch normalization from tensor primitives: a swap of
//! the batch and channel axes, reshapes, means, a centred copy, its square, and the
//! broadcast normalisation; the backward pass about twice as many. Here, with the input
//! seen as `[N, C, S]` (`S` the product of the spatial axes):
//!
//! - training forward: per channel, the mean (one pass) and the biased variance around it
//!   (a second pass), then `y = x·scale + shift` (one pass over the data);
//! - training backward: per channel, `Σ dy` and `Σ dy·(x − mean)` (one pass), then
//!   `dx = a·dy + b·x + k` (one pass);
//! - inference: `y = x·scale + shift` with the given statistics (one pass).
//!
//! The forward passes write over their input when the call owns it alone (inference, or a
//! training-mode pass without gradients); under autodiff the input is kept for the
//! backward pass, so they write a new tensor. The backward pass writes the input gradient
//! over the output gradient when it owns that alone, as the autodiff graph hands it over.
//!
//! Channels (statistics) and rows (element-wise passes) run in parallel. Sums are kept in
//! eight lanes of the element type along a row and in f64 across rows. f32 and f64 are
//! computed natively; f16 and bf16 through f32.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape, bf16, f16};
use num_traits::Float;

use crate::{FlexTensor, Layout};

/// Rows of at least this many elements in all are handed to one worker at a time.
#[cfg(feature = "rayon")]
const ROWS_PER_TASK_ELEMENTS: usize = 16 * 1024;

/// Element types the passes run in.
trait NormElement: Float + bytemuck::Pod + burn_backend::Element + Send + Sync + 'static {
    fn from_f64(v: f64) -> Self;
    fn as_f64(self) -> f64;
}

impl NormElement for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl NormElement for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
}

/// `[N, C, S]` sizes of an input of rank ≥ 2.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    n: usize,
    c: usize,
    s: usize,
}

impl Sizes {
    fn of(shape: &Shape) -> Sizes {
        assert!(
            shape.num_dims() >= 2,
            "batch_norm: the input needs a batch and a channel axis, got {shape:?}"
        );
        Sizes {
            n: shape[0],
            c: shape[1],
            s: (2..shape.num_dims()).map(|d| shape[d]).product(),
        }
    }

    /// Elements per channel.
    fn per_channel(&self) -> usize {
        self.n * self.s
    }

    /// The rows (length `s`) of channel `c`.
    fn rows<'a, T>(&self, data: &'a [T], c: usize) -> impl Iterator<Item = &'a [T]> + 'a {
        let (cs, s) = (self.c * self.s, self.s);
        (0..self.n).map(move |n| &data[n * cs + c * s..n * cs + (c + 1) * s])
    }

    /// Panics unless every per-channel tensor has `c` elements.
    fn check_channels(&self, what: &str, len: usize) {
        assert_eq!(
            len, self.c,
            "batch_norm: {what} has {len} elements for {} channels",
            self.c
        );
    }
}

/// `Σ f(v)` over a row, in eight lanes.
#[inline]
fn lane_sum<T: NormElement>(row: &[T], f: impl Fn(T) -> T) -> f64 {
    let mut lanes = [T::zero(); 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l = *l + f(v);
        }
    }
    let tail: f64 = tail.iter().map(|&v| f(v).as_f64()).sum();
    lanes.iter().map(|l| l.as_f64()).sum::<f64>() + tail
}

/// Runs `f(c)` for every channel, in parallel where available.
fn per_channel<R: Send>(channels: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..channels).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "rayon"))]
    {
        (0..channels).map(f).collect()
    }
}

/// Runs `f(c, out_row, i)` over every output row `i` (length `s`, channel `c`), in parallel
/// where available.
fn per_row<T: Send>(out: &mut [T], sizes: Sizes, f: impl Fn(usize, &mut [T], usize) + Sync + Send) {
    let s = sizes.s.max(1);
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(s)
            .with_min_len(ROWS_PER_TASK_ELEMENTS.div_ceil(s))
            .enumerate()
            .for_each(|(i, row)| f(i % sizes.c, row, i));
    }
    #[cfg(not(feature = "rayon"))]
    for (i, row) in out.chunks_mut(s).enumerate() {
        f(i % sizes.c, row, i);
    }
}

/// `y = x·scale[c] + shift[c]`.
fn affine<T: NormElement>(x: &[T], sizes: Sizes, scale: &[T], shift: &[T]) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    let s = sizes.s;
    per_row(&mut y, sizes, |c, row, i| {
        let (a, b) = (scale[c], shift[c]);
        for (o, &v) in row.iter_mut().zip(&x[i * s..(i + 1) * s]) {
            *o = v * a + b;
        }
    });
    y
}

/// `x·scale[c] + shift[c]` written over `x` when this call owns it alone (the forward pass
/// of inference, or of training without gradients), else into a new tensor.
fn affine_tensor<T: NormElement>(
    mut x: FlexTensor,
    sizes: Sizes,
    scale: &[T],
    shift: &[T],
) -> FlexTensor {
    let (shape, dtype) = (x.layout().shape().clone(), x.dtype());
    if let Some(data) = x.try_storage_mut::<T>() {
        per_row(data, sizes, |c, row, _| {
            let (a, b) = (scale[c], shift[c]);
            for v in row.iter_mut() {
                *v = *v * a + b;
            }
        });
        return x;
    }
    tensor(affine(x.storage(), sizes, scale, shift), shape, dtype)
}

/// Per-channel mean and biased variance (two passes).
fn statistics<T: NormElement>(x: &[T], sizes: Sizes) -> (Vec<T>, Vec<T>) {
    let count = sizes.per_channel().max(1) as f64;
    let stats = per_channel(sizes.c, |c| {
        let mean = sizes.rows(x, c).map(|r| lane_sum(r, |v| v)).sum::<f64>() / count;
        let m = T::from_f64(mean);
        let var = sizes
            .rows(x, c)
            .map(|r| lane_sum(r, |v| (v - m) * (v - m)))
            .sum::<f64>()
            / count;
        (m, T::from_f64(var))
    });
    stats.into_iter().unzip()
}

/// `scale = γ / √(var + ε)`, `shift = β − mean·scale`.
fn scale_shift<T: NormElement>(
    gamma: &[T],
    beta: &[T],
    mean: &[T],
    var: &[T],
    epsilon: f64,
) -> (Vec<T>, Vec<T>) {
    (0..gamma.len())
        .map(|c| {
            let inv_std = 1.0 / (var[c].as_f64() + epsilon).sqrt();
            let scale = gamma[c].as_f64() * inv_std;
            let shift = beta[c].as_f64() - mean[c].as_f64() * scale;
            (T::from_f64(scale), T::from_f64(shift))
        })
        .unzip()
}

/// Per channel: `Σ dy` and `Σ dy·(x − mean)`, in one pass over both.
fn gradient_sums<T: NormElement>(x: &[T], dy: &[T], sizes: Sizes, mean: &[T]) -> Vec<(f64, f64)> {
    per_channel(sizes.c, |c| {
        let m = mean[c];
        sizes
            .rows(x, c)
            .zip(sizes.rows(dy, c))
            .fold((0.0f64, 0.0f64), |(sd, sdx), (xr, dr)| {
                let (d, dx) = lane_sums(xr, dr, m);
                (sd + d, sdx + dx)
            })
    })
}

/// `(Σ g, Σ g·(v − m))` over two rows of one length, in eight lanes.
#[inline]
fn lane_sums<T: NormElement>(x: &[T], dy: &[T], m: T) -> (f64, f64) {
    let (mut sd, mut sdx) = ([T::zero(); 8], [T::zero(); 8]);
    let (cx, cd) = (x.chunks_exact(8), dy.chunks_exact(8));
    let (tx, td) = (cx.remainder(), cd.remainder());
    for (v, g) in cx.zip(cd) {
        for i in 0..8 {
            sd[i] = sd[i] + g[i];
            sdx[i] = sdx[i] + g[i] * (v[i] - m);
        }
    }
    let lanes = |l: [T; 8]| l.iter().map(|v| v.as_f64()).sum::<f64>();
    let tail_d: f64 = td.iter().map(|g| g.as_f64()).sum();
    let tail_dx: f64 = tx
        .iter()
        .zip(td)
        .map(|(&v, &g)| (g * (v - m)).as_f64())
        .sum();
    (lanes(sd) + tail_d, lanes(sdx) + tail_dx)
}

/// The input gradient's per-channel coefficients `(a, b, k)` of `dx = a·dy + b·x + k`, and
/// the gradients of γ and β.
#[allow(clippy::type_complexity)]
fn backward_coefficients<T: NormElement>(
    sums: &[(f64, f64)],
    sizes: Sizes,
    (gamma, mean, var): (&[T], &[T], &[T]),
    epsilon: f64,
) -> (Vec<(T, T, T)>, Vec<T>, Vec<T>) {
    let count = sizes.per_channel().max(1) as f64;
    // dx = γ·inv_std·(dy − Σdy/M − (x − mean)·inv_std²·Σdy(x − mean)/M) = a·dy + b·x + k.
    let mut coefficients = Vec::with_capacity(sizes.c);
    let (mut gamma_grad, mut beta_grad) = (Vec::with_capacity(sizes.c), Vec::new());
    for (c, &(sum_dy, sum_dy_xc)) in sums.iter().enumerate() {
        let inv_std = 1.0 / (var[c].as_f64() + epsilon).sqrt();
        let a = gamma[c].as_f64() * inv_std;
        let b = -a * inv_std * inv_std * sum_dy_xc / count;
        let k = -a * sum_dy / count - b * mean[c].as_f64();
        coefficients.push((T::from_f64(a), T::from_f64(b), T::from_f64(k)));
        gamma_grad.push(T::from_f64(sum_dy_xc * inv_std));
        beta_grad.push(T::from_f64(sum_dy));
    }
    (coefficients, gamma_grad, beta_grad)
}

/// The input, γ and β gradients; the input gradient is written over `dy` when this call
/// owns it alone (as the autodiff graph hands it over), else into a new tensor.
fn backward_typed<T: NormElement>(
    x: &FlexTensor,
    mut dy: FlexTensor,
    sizes: Sizes,
    (gamma, mean, var): (&[T], &[T], &[T]),
    epsilon: f64,
) -> (FlexTensor, Vec<T>, Vec<T>) {
    let x = x.storage::<T>();
    let sums = gradient_sums(x, dy.storage::<T>(), sizes, mean);
    let (coefficients, gamma_grad, beta_grad) =
        backward_coefficients(&sums, sizes, (gamma, mean, var), epsilon);
    let s = sizes.s;
    if let Some(d) = dy.try_storage_mut::<T>() {
        per_row(d, sizes, |c, row, i| {
            let (a, b, k) = coefficients[c];
            for (g, &v) in row.iter_mut().zip(&x[i * s..(i + 1) * s]) {
                *g = a * *g + b * v + k;
            }
        });
        return (dy, gamma_grad, beta_grad);
    }
    let (shape, dtype) = (dy.layout().shape().clone(), dy.dtype());
    let dyv = dy.storage::<T>();
    let mut dx = vec![T::zero(); x.len()];
    per_row(&mut dx, sizes, |c, row, i| {
        let (a, b, k) = coefficients[c];
        let (xr, dr) = (&x[i * s..(i + 1) * s], &dyv[i * s..(i + 1) * s]);
        for ((o, &v), &g) in row.iter_mut().zip(xr).zip(dr) {
            *o = a * g + b * v + k;
        }
    });
    (tensor(dx, shape, dtype), gamma_grad, beta_grad)
}

fn tensor<T: NormElement>(data: Vec<T>, shape: Shape, dtype: DType) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), dtype)
}

/// The type the passes run in for a tensor of `dtype`: f64 stays, the others use f32.
fn compute_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F64 => DType::F64,
        DType::F32 | DType::F16 | DType::BF16 => DType::F32,
        other => panic!("batch_norm: unsupported dtype {other:?}"),
    }
}

/// `t` contiguous and in the compute type `cd`.
fn contiguous_as(t: FlexTensor, cd: DType) -> FlexTensor {
    let t = t.into_contiguous();
    let shape = t.layout().shape().clone();
    let widened: Vec<f32> = match t.dtype() {
        d if d == cd => return t,
        DType::F16 => t.storage::<f16>().iter().map(|x| x.to_f32()).collect(),
        DType::BF16 => t.storage::<bf16>().iter().map(|x| x.to_f32()).collect(),
        other => panic!("batch_norm: operands of {other:?} with {cd:?}"),
    };
    tensor(widened, shape, DType::F32)
}

/// `t` (f32 or f64) back in the caller's `dtype`.
fn back_to(t: FlexTensor, dtype: DType) -> FlexTensor {
    let shape = t.layout().shape().clone();
    match dtype {
        DType::F16 => {
            let v: Vec<f16> = t
                .storage::<f32>()
                .iter()
                .map(|&x| f16::from_f32(x))
                .collect();
            FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(shape), dtype)
        }
        DType::BF16 => {
            let v: Vec<bf16> = t
                .storage::<f32>()
                .iter()
                .map(|&x| bf16::from_f32(x))
                .collect();
            FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(shape), dtype)
        }
        _ => t,
    }
}

/// Batch normalization with the batch's own statistics; returns the output, the mean and
/// the biased variance.
///
/// # Shapes
/// - `x`: `[N, C, ...]`; `gamma`, `beta`: `[C]`
/// - returns `[N, C, ...]`, `[C]`, `[C]`
pub fn batch_norm_train(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let dtype = x.dtype();
    let cd = compute_dtype(dtype);
    let shape = x.layout().shape().clone();
    let sizes = Sizes::of(&shape);
    let [x, gamma, beta] = [x, gamma, beta].map(|t| contiguous_as(t, cd));
    sizes.check_channels("gamma", gamma.layout().num_elements());
    sizes.check_channels("beta", beta.layout().num_elements());
    let channel = Shape::new([sizes.c]);
    macro_rules! run {
        ($t:ty) => {{
            let (mean, var) = statistics::<$t>(x.storage(), sizes);
            let (scale, shift) =
                scale_shift::<$t>(gamma.storage(), beta.storage(), &mean, &var, epsilon);
            (
                affine_tensor(x, sizes, &scale, &shift),
                tensor(mean, channel.clone(), cd),
                tensor(var, channel, cd),
            )
        }};
    }
    let (y, mean, var) = if cd == DType::F64 {
        run!(f64)
    } else {
        run!(f32)
    };
    (back_to(y, dtype), back_to(mean, dtype), back_to(var, dtype))
}

/// Gradients of [`batch_norm_train`] with respect to `x`, `gamma` and `beta`.
///
/// # Shapes
/// - `x`, `output_grad`: `[N, C, ...]`; `gamma`, `mean`, `variance`: `[C]`
/// - returns `[N, C, ...]`, `[C]`, `[C]`
pub fn batch_norm_train_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
    output_grad: FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let dtype = x.dtype();
    let cd = compute_dtype(dtype);
    let shape = x.layout().shape().clone();
    assert_eq!(
        &shape,
        output_grad.layout().shape(),
        "batch_norm backward: the gradient's shape differs from the input's"
    );
    let sizes = Sizes::of(&shape);
    let [x, gamma, mean, variance, dy] =
        [x, gamma, mean, variance, output_grad].map(|t| contiguous_as(t, cd));
    for (what, t) in [("gamma", &gamma), ("mean", &mean), ("variance", &variance)] {
        sizes.check_channels(what, t.layout().num_elements());
    }
    let channel = Shape::new([sizes.c]);
    macro_rules! run {
        ($t:ty) => {{
            let (dx, dg, db) = backward_typed::<$t>(
                &x,
                dy,
                sizes,
                (gamma.storage(), mean.storage(), variance.storage()),
                epsilon,
            );
            (dx, tensor(dg, channel.clone(), cd), tensor(db, channel, cd))
        }};
    }
    let (dx, dg, db) = if cd == DType::F64 {
        run!(f64)
    } else {
        run!(f32)
    };
    (back_to(dx, dtype), back_to(dg, dtype), back_to(db, dtype))
}

/// Batch normalization with given statistics: `(x − mean)/√(variance + ε)·γ + β`.
///
/// # Shapes
/// - `x`: `[N, C, ...]`; `gamma`, `beta`, `mean`, `variance`: `[C]`
/// - returns `[N, C, ...]`
pub fn batch_norm_inference(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    let dtype = x.dtype();
    let cd = compute_dtype(dtype);
    let shape = x.layout().shape().clone();
    let sizes = Sizes::of(&shape);
    let [x, gamma, beta, mean, variance] =
        [x, gamma, beta, mean, variance].map(|t| contiguous_as(t, cd));
    for (what, t) in [
        ("gamma", &gamma),
        ("beta", &beta),
        ("mean", &mean),
        ("variance", &variance),
    ] {
        sizes.check_channels(what, t.layout().num_elements());
    }
    macro_rules! run {
        ($t:ty) => {{
            let (scale, shift) = scale_shift::<$t>(
                gamma.storage(),
                beta.storage(),
                mean.storage(),
                variance.storage(),
                epsilon,
            );
            affine_tensor(x, sizes, &scale, &shift)
        }};
    }
    let y = if cd == DType::F64 {
        run!(f64)
    } else {
        run!(f32)
    };
    back_to(y, dtype)
}
