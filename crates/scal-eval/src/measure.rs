//! Timed runs for benchmarks: what `cargo xtask bench` and the examples measure.

use std::path::Path;
use std::time::Instant;

use ndarray::Array2;

use crate::io::read_features;
use crate::{DistanceMetric, EvalError, ReRankParams, re_rank_features};

/// One timed [`re_rank_features`] of a features folder.
#[derive(Debug, Clone)]
pub struct FeatureReRankRun {
    /// Queries (`Q`).
    pub queries: usize,
    /// Gallery items (`G`).
    pub gallery: usize,
    /// Feature dimension (`D`).
    pub dim: usize,
    /// Seconds spent reading `query.npy` and `gallery.npy`.
    pub read_seconds: f64,
    /// Seconds spent in [`re_rank_features`].
    pub seconds: f64,
    /// The re-ranked distances, `[Q, G]`.
    pub distances: Array2<f32>,
}

/// Reads `query.npy` `[Q, D]` and `gallery.npy` `[G, D]` from `dir` (the layout of `cargo
/// xtask evaluate --features`) and times [`re_rank_features`] on them.
///
/// # Shapes
/// - output `distances`: `[Q, G]`
///
/// # Errors
/// A missing or unreadable file, feature widths that differ between the two files
/// ([`EvalError::ShapeMismatch`] naming both), or any error of [`re_rank_features`].
pub fn re_rank_features_folder(
    dir: &Path,
    metric: DistanceMetric,
    params: ReRankParams,
) -> Result<FeatureReRankRun, EvalError> {
    let start = Instant::now();
    let (q_path, g_path) = (dir.join("query.npy"), dir.join("gallery.npy"));
    let query = read_features(&q_path)?;
    let gallery = read_features(&g_path)?;
    if query.ncols() != gallery.ncols() {
        return Err(EvalError::ShapeMismatch {
            what: format!(
                "{}: feature width (columns of {})",
                g_path.display(),
                q_path.display()
            ),
            expected: query.ncols(),
            found: gallery.ncols(),
        });
    }
    let read_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let distances = re_rank_features(query.view(), gallery.view(), metric, params)?;
    Ok(FeatureReRankRun {
        queries: query.nrows(),
        gallery: gallery.nrows(),
        dim: query.ncols(),
        read_seconds,
        seconds: start.elapsed().as_secs_f64(),
        distances,
    })
}
