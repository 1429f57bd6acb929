//! # scal-losses
//!
//! The losses SCAL trains with (`scal-method.md`):
//!
//! - [`batch_hard_triplet`]: the batch-hard triplet loss of reid-strong-baseline (hardest
//!   positive and hardest negative per anchor over a P × K batch; Euclidean distances by
//!   default, squared as an option; margin 0.3 or soft margin);
//! - [`label_smoothed_cross_entropy`]: cross-entropy against `(1 − ε) y + ε / K`;
//! - [`critic_objective`] `J_cri = −Σ_l mean V_l` and [`critic_mse`]
//!   `J_mse = Σ_l mean (V_l − R)²`.
//!
//! Each returns a one-element tensor, to be summed into one loss.

use burn::config::Config;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

/// The distance the triplet loss compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TripletDistance {
    /// `‖a − b‖₂` (reid-strong-baseline; the default).
    Euclidean,
    /// `‖a − b‖₂²` (as written in the SCAL paper).
    Squared,
}

/// Configuration of [`batch_hard_triplet`].
#[derive(Config, Debug, PartialEq)]
pub struct TripletLossConfig {
    /// Margin `m` of `max(0, d(a, p) − d(a, n) + m)`.
    #[config(default = 0.3)]
    pub margin: f64,
    /// Distance between features.
    #[config(default = "TripletDistance::Euclidean")]
    pub distance: TripletDistance,
    /// Use `log(1 + exp(d(a, p) − d(a, n)))` instead of the margin.
    #[config(default = false)]
    pub soft_margin: bool,
}

/// Pairwise distances within a batch, as reid-strong-baseline computes them
/// (`‖a‖² + ‖b‖² − 2 a·b`, clamped at 1e-12 before the square root).
///
/// # Shapes
/// - `features`: `[N, D]`; output: `[N, N]`
pub fn pairwise_distances(features: Tensor<2>, distance: TripletDistance) -> Tensor<2> {
    let [n, _] = features.dims();
    let squares = features.clone().powi_scalar(2).sum_dim(1); // [N, 1]
    let gram = features.clone().matmul(features.transpose());
    let d2 =
        squares.clone().expand([n, n]) + squares.transpose().expand([n, n]) - gram.mul_scalar(2.0);
    match distance {
        TripletDistance::Euclidean => d2.clamp_min(1e-12).sqrt(),
        TripletDistance::Squared => d2.clamp_min(0.0),
    }
}

/// Batch-hard triplet loss: for each anchor, its farthest same-identity sample (itself
/// included, as in reid-strong-baseline) and its closest other-identity sample; mean over
/// anchors. An anchor without any other identity in the batch contributes 0.
///
/// # Shapes
/// - `features`: `[N, D]`, `labels`: `[N]`
/// - output: `[1]`
///
/// # Panics
/// If `labels` does not have `N` entries.
pub fn batch_hard_triplet(
    features: Tensor<2>,
    labels: Tensor<1, Int>,
    config: &TripletLossConfig,
) -> Tensor<1> {
    let [n, _] = features.dims();
    assert_eq!(
        labels.dims(),
        [n],
        "batch_hard_triplet: {n} features but {:?} labels",
        labels.dims()
    );
    let dist = pairwise_distances(features, config.distance);
    let rows = labels.clone().reshape([n, 1]).expand([n, n]);
    let cols = labels.reshape([1, n]).expand([n, n]);
    let same = rows.equal(cols);
    // Distances are >= 0: -1 never wins a max, and 1e9 never wins a min unless there is
    // no negative at all.
    let hardest_positive = dist
        .clone()
        .mask_fill(same.clone().bool_not(), -1.0)
        .max_dim(1);
    let hardest_negative = dist.mask_fill(same, 1e9).min_dim(1);
    let gap = (hardest_positive - hardest_negative).reshape([n]);
    let per_anchor = if config.soft_margin {
        softplus(gap, 1.0)
    } else {
        relu(gap.add_scalar(config.margin))
    };
    per_anchor.mean()
}

/// Cross-entropy with label smoothing: target `(1 − ε) one_hot(y) + ε / K`, mean over the
/// batch (Burn's `CrossEntropyLoss` with smoothing).
///
/// # Shapes
/// - `logits`: `[N, K]`, `labels`: `[N]` in `0..K`
/// - output: `[1]`
pub fn label_smoothed_cross_entropy(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    epsilon: f32,
) -> Tensor<1> {
    let device = logits.device();
    let smoothing = (epsilon > 0.0).then_some(epsilon);
    CrossEntropyLossConfig::new()
        .with_smoothing(smoothing)
        .init(&device)
        .forward(logits, labels)
}

/// `J_cri = −Σ_l mean(V_l)`: the agents maximise the critics' estimates.
///
/// # Shapes
/// - `values[l]`: `[N]`; output: `[1]`
///
/// # Panics
/// If `values` is empty.
pub fn critic_objective(values: &[Tensor<1>]) -> Tensor<1> {
    assert!(
        !values.is_empty(),
        "critic_objective needs at least one critic value"
    );
    values
        .iter()
        .map(|v| v.clone().mean())
        .reduce(|a, b| a + b)
        .expect("non-empty")
        .neg()
}

/// `J_mse = Σ_l mean((V_l − R)²)`: the critics regress the reward (a constant).
///
/// # Shapes
/// - `values[l]`: `[N]`, `reward`: `[N]`; output: `[1]`
///
/// # Panics
/// If `values` is empty or shapes differ.
pub fn critic_mse(values: &[Tensor<1>], reward: Tensor<1>) -> Tensor<1> {
    assert!(
        !values.is_empty(),
        "critic_mse needs at least one critic value"
    );
    let reward = reward.detach();
    values
        .iter()
        .map(|v| {
            assert_eq!(
                v.dims(),
                reward.dims(),
                "critic_mse: values {:?} vs reward {:?}",
                v.dims(),
                reward.dims()
            );
            (v.clone() - reward.clone()).powi_scalar(2).mean()
        })
        .reduce(|a, b| a + b)
        .expect("non-empty")
}
