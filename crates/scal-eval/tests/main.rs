//! scal-eval's integration tests, in one binary (each test binary links its dependencies).

mod npy;
mod per_query;
mod properties;
mod reference;
mod rerank_features;

/// The largest absolute difference between two matrices of one shape (asserted).
fn max_abs_difference(got: &ndarray::Array2<f32>, want: &ndarray::Array2<f32>) -> f32 {
    assert_eq!(got.dim(), want.dim());
    got.iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
}
