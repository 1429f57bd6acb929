//! Query × gallery distance matrices from feature vectors.

use ndarray::{Array1, Array2, ArrayView2, Axis, linalg::general_mat_mul};
use rayon::prelude::*;

use crate::EvalError;
use crate::market::check_finite;

/// How to compare two feature vectors (smaller = more similar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistanceMetric {
    /// `‖q − g‖₂`.
    Euclidean,
    /// `‖q − g‖₂²` (what torchreid calls "euclidean").
    SquaredEuclidean,
    /// `1 − cos(q, g)`; a zero vector is at distance 1 from everything.
    Cosine,
}

/// Distances between every query row and every gallery row.
///
/// Computed as `‖q‖² + ‖g‖² − 2 q·g` (clamped at 0) with one multi-threaded matrix product
/// (`matrixmultiply`), then transformed row by row in parallel.
///
/// # Shapes
/// - `query`: `[Q, D]`, `gallery`: `[G, D]`
/// - output: `[Q, G]`
///
/// # Errors
/// If the feature widths differ, either input is empty, or a feature is not finite.
pub fn pairwise_distances(
    query: ArrayView2<'_, f32>,
    gallery: ArrayView2<'_, f32>,
    metric: DistanceMetric,
) -> Result<Array2<f32>, EvalError> {
    check_features(query, gallery)?;
    let mut out = Array2::<f32>::zeros((query.nrows(), gallery.nrows()));
    match metric {
        DistanceMetric::Cosine => {
            let qn = l2_normalised(query);
            let gn = l2_normalised(gallery);
            general_mat_mul(1.0, &qn, &gn.t(), 0.0, &mut out);
            out.par_mapv_inplace(|s| 1.0 - s);
        }
        DistanceMetric::Euclidean | DistanceMetric::SquaredEuclidean => {
            let q_sq = squared_norms(query);
            let g_sq = squared_norms(gallery);
            general_mat_mul(-2.0, &query, &gallery.t(), 0.0, &mut out);
            let sqrt = metric == DistanceMetric::Euclidean;
            out.axis_iter_mut(Axis(0))
                .into_par_iter()
                .zip(q_sq.as_slice().expect("contiguous").par_iter())
                .for_each(|(mut row, &qs)| {
                    for (v, &gs) in row.iter_mut().zip(g_sq.iter()) {
                        let d2 = (*v + qs + gs).max(0.0);
                        *v = if sqrt { d2.sqrt() } else { d2 };
                    }
                });
        }
    }
    Ok(out)
}

/// The checks on a query and a gallery feature matrix: neither empty, equal widths, every
/// value finite. Errors name the input.
///
/// # Shapes
/// - `query`: `[Q, D]`, `gallery`: `[G, D]`
pub(crate) fn check_features(
    query: ArrayView2<'_, f32>,
    gallery: ArrayView2<'_, f32>,
) -> Result<(), EvalError> {
    let (q, d) = query.dim();
    let (g, d_g) = gallery.dim();
    if q == 0 || d == 0 {
        return Err(EvalError::Empty {
            what: "query features".into(),
        });
    }
    if g == 0 || d_g == 0 {
        return Err(EvalError::Empty {
            what: "gallery features".into(),
        });
    }
    if d != d_g {
        return Err(EvalError::ShapeMismatch {
            what: "gallery feature width (query features have that many columns)".into(),
            expected: d,
            found: d_g,
        });
    }
    check_finite(query, "query features")?;
    check_finite(gallery, "gallery features")
}

/// `‖x_i‖²` of every row, each summed in order (the same value wherever a row is used).
///
/// # Shapes
/// - `x`: `[N, D]`; output: `[N]`
pub(crate) fn squared_norms(x: ArrayView2<'_, f32>) -> Array1<f32> {
    let norms: Vec<f32> = x
        .axis_iter(Axis(0))
        .into_par_iter()
        .map(|row| row.iter().map(|v| v * v).sum())
        .collect();
    Array1::from(norms)
}

/// The rows of `x` divided by their L2 norm (zero rows stay zero).
///
/// # Shapes
/// - `x`: `[N, D]`; output: `[N, D]`
pub(crate) fn l2_normalised(x: ArrayView2<'_, f32>) -> Array2<f32> {
    let mut out = x.to_owned();
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .for_each(|mut row| {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.mapv_inplace(|v| v / norm);
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn matches_the_definitions() {
        let q = array![[1.0f32, 0.0], [3.0, 4.0]];
        let g = array![[0.0f32, 0.0], [1.0, 0.0], [0.0, 2.0]];
        let e = pairwise_distances(q.view(), g.view(), DistanceMetric::Euclidean).unwrap();
        let want = [[1.0, 0.0, 5f32.sqrt()], [5.0, 20f32.sqrt(), 13f32.sqrt()]];
        for (r, row) in want.iter().enumerate() {
            for (c, w) in row.iter().enumerate() {
                assert!(
                    (e[[r, c]] - w).abs() < 1e-5,
                    "{r},{c}: {} vs {w}",
                    e[[r, c]]
                );
            }
        }
        let s = pairwise_distances(q.view(), g.view(), DistanceMetric::SquaredEuclidean).unwrap();
        assert!((s[[1, 2]] - 13.0).abs() < 1e-4);
        let c = pairwise_distances(q.view(), g.view(), DistanceMetric::Cosine).unwrap();
        assert!((c[[0, 0]] - 1.0).abs() < 1e-6, "zero vector");
        assert!(c[[0, 1]].abs() < 1e-6);
        assert!((c[[1, 2]] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_inputs() {
        let q = array![[1.0f32, 0.0]];
        let g = array![[1.0f32, 0.0, 0.0]];
        assert!(matches!(
            pairwise_distances(q.view(), g.view(), DistanceMetric::Euclidean),
            Err(EvalError::ShapeMismatch {
                expected: 2,
                found: 3,
                ..
            })
        ));
        let bad = array![[1.0f32, f32::NAN]];
        let err = pairwise_distances(q.view(), bad.view(), DistanceMetric::Cosine).unwrap_err();
        assert!(
            matches!(err, EvalError::NonFinite { row: 0, col: 1, .. }),
            "{err}"
        );
        let empty = Array2::<f32>::zeros((0, 2));
        assert!(matches!(
            pairwise_distances(empty.view(), q.view(), DistanceMetric::Cosine),
            Err(EvalError::Empty { .. })
        ));
    }
}
