//! # scal-eval
//!
//! ```
//! use scal_eval::{DistanceMetric, evaluate_market1501, pairwise_distances};
//! # let (q, g) = (ndarray::array![[1.0f32, 0.0]], ndarray::array![[0.9f32, 0.1], [0.0, 1.0]]);
//! let distances = pairwise_distances(q.view(), g.view(), DistanceMetric::Euclidean)?;
//! let metrics = evaluate_market1501(distances.view(), &[1], &[1, 2], &[0], &[1, 1], 50)?;
//! assert_eq!((metrics.map, metrics.cmc[0]), (1.0, 1.0));
//! # Ok::<(), scal_eval::EvalError>(())
//! ```
//!
//! Person re-identification evaluation, following the conventions of torchreid, FastReID and
//! reid-strong-baseline (see `docs/reid-protocols.md`):
//!
//! - [`pairwise_distances`]: query × gallery distance matrices (Euclidean, squared Euclidean,
//!   cosine) in blocks, in parallel;
//! - [`evaluate_market1501`]: CMC, mAP and mINP with same-identity-same-camera removal,
//!   skipping queries without a valid match;
//! - [`evaluate_cuhk03_classic`]: the single-gallery-shot CMC of the old CUHK03 protocol,
//!   seeded;
//! - [`re_rank`]: k-reciprocal re-ranking (Zhong et al., CVPR 2017) with sparse weight
//!   vectors, never materialising the (Q+G)² matrices;
//! - [`re_rank_features`]: the same from query and gallery features, in one blocked pass,
//!   without the `Q × Q` and `G × G` matrices (MSMT17-sized galleries);
//! - [`synthetic`]: a seeded Market-1501-sized split for benchmarks;
//! - [`measure`]: timed runs for benchmarks (re-ranking a features folder).
//!
//! Everything works on `ndarray` views and is independent of any deep-learning framework.

#![warn(missing_docs)]

mod distance;
mod error;
pub mod io;
mod market;
pub mod measure;
mod rerank;
mod rerank_features;
pub mod synthetic;

pub use distance::{DistanceMetric, pairwise_distances};
pub use error::EvalError;
pub use market::{
    CUHK03_CLASSIC_REPEATS, Distance, Metrics, average_precision_per_query,
    evaluate_cuhk03_classic, evaluate_market1501, evaluate_top_lists, top_k_gallery,
};
pub use rerank::{ReRankParams, re_rank};
pub use rerank_features::re_rank_features;
