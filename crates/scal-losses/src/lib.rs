//! # scal-losses
//!
//! The losses SCAL trains with (`docs/scal-method.md`), in Burn's style (a `Config`, its
//! `init`, a `forward`):
//!
//! ```
//! # use burn::tensor::{Device, Int, Tensor};
//! use scal_losses::TripletLossConfig;
//! # let device = Device::flex();
//! # let features = Tensor::<2>::ones([4, 8], &device);
//! # let labels = Tensor::<1, Int>::from_ints([0, 0, 1, 1], &device);
//! let triplet = TripletLossConfig::new().with_margin(0.3).init();
//! let loss = triplet.forward(features, labels); // [1]
//! ```
//!
//! - [`TripletLoss`]: the batch-hard triplet loss of reid-strong-baseline (hardest
//!   positive and hardest negative per anchor over a P × K batch; Euclidean distances by
//!   default, squared as an option; margin 0.3 or soft margin);
//! - [`LabelSmoothedCrossEntropy`]: cross-entropy against `(1 − ε) y + ε / K`;
//! - [`CriticObjective`] `J_cri = −Σ_l mean V_l` and [`CriticMse`]
//!   `J_mse = Σ_l mean (V_l − R)²`.
//!
//! Each returns a one-element tensor, to be summed into one loss.

#![warn(missing_docs)]

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

/// Configuration of [`TripletLoss`].
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

impl TripletLossConfig {
    /// The loss.
    pub fn init(&self) -> TripletLoss {
        TripletLoss {
            margin: self.margin,
            distance: self.distance,
            soft_margin: self.soft_margin,
        }
    }
}

/// Batch-hard triplet loss (see [`TripletLossConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TripletLoss {
    margin: f64,
    distance: TripletDistance,
    soft_margin: bool,
}

impl TripletLoss {
    /// For each anchor, its farthest same-identity sample (itself included, as in
    /// reid-strong-baseline) and its closest other-identity sample; mean over anchors. An
    /// anchor without any other identity in the batch contributes 0.
    ///
    /// # Shapes
    /// - `features`: `[N, D]`, `labels`: `[N]`
    /// - output: `[1]`
    ///
    /// # Panics
    /// If `labels` does not have `N` entries.
    pub fn forward(&self, features: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        let [n, _] = features.dims();
        assert_eq!(
            labels.dims(),
            [n],
            "TripletLoss: {n} features but {:?} labels",
            labels.dims()
        );
        let dist = pairwise_distances(features, self.distance);
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
        let per_anchor = if self.soft_margin {
            softplus(gap, 1.0)
        } else {
            relu(gap.add_scalar(self.margin))
        };
        per_anchor.mean()
    }
}

/// Configuration of [`LabelSmoothedCrossEntropy`].
#[derive(Config, Debug, PartialEq)]
pub struct LabelSmoothedCrossEntropyConfig {
    /// Smoothing ε: the target is `(1 − ε) one_hot(y) + ε / K`.
    #[config(default = 0.1)]
    pub epsilon: f32,
}

impl LabelSmoothedCrossEntropyConfig {
    /// The loss.
    pub fn init(&self) -> LabelSmoothedCrossEntropy {
        LabelSmoothedCrossEntropy {
            epsilon: self.epsilon,
        }
    }
}

/// Cross-entropy with label smoothing, mean over the batch (Burn's `CrossEntropyLoss` with
/// smoothing; ε = 0 is plain cross-entropy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelSmoothedCrossEntropy {
    epsilon: f32,
}

impl LabelSmoothedCrossEntropy {
    /// The loss.
    ///
    /// # Shapes
    /// - `logits`: `[N, K]`, `labels`: `[N]` in `0..K`
    /// - output: `[1]`
    pub fn forward(&self, logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        let device = logits.device();
        let smoothing = (self.epsilon > 0.0).then_some(self.epsilon);
        CrossEntropyLossConfig::new()
            .with_smoothing(smoothing)
            .init(&device)
            .forward(logits, labels)
    }
}

/// `J_cri = −Σ_l mean(V_l)`: the agents maximise the critics' estimates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CriticObjective;

impl CriticObjective {
    /// The objective (it has no setting).
    pub fn new() -> Self {
        CriticObjective
    }

    /// The objective of the critics' values.
    ///
    /// # Shapes
    /// - `values[l]`: `[N]`; output: `[1]`
    ///
    /// # Panics
    /// If `values` is empty.
    pub fn forward(&self, values: &[Tensor<1>]) -> Tensor<1> {
        assert!(
            !values.is_empty(),
            "CriticObjective needs at least one critic value"
        );
        values
            .iter()
            .map(|v| v.clone().mean())
            .reduce(|a, b| a + b)
            .expect("non-empty")
            .neg()
    }
}

/// `J_mse = Σ_l mean((V_l − R)²)`: the critics regress the reward (a constant).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CriticMse;

impl CriticMse {
    /// The loss (it has no setting).
    pub fn new() -> Self {
        CriticMse
    }

    /// The loss of the critics' values against the reward (detached here).
    ///
    /// # Shapes
    /// - `values[l]`: `[N]`, `reward`: `[N]`; output: `[1]`
    ///
    /// # Panics
    /// If `values` is empty or shapes differ.
    pub fn forward(&self, values: &[Tensor<1>], reward: Tensor<1>) -> Tensor<1> {
        self.forward_each(values, &vec![reward; values.len()])
    }

    /// `Σ_l mean((V_l − R_l)²)`: each critic against a reward of its own (detached here),
    /// e.g. its module's own amelioration.
    ///
    /// # Shapes
    /// - `values[l]`, `rewards[l]`: `[N]`; output: `[1]`
    ///
    /// # Panics
    /// If `values` is empty, or the two lists or shapes differ.
    pub fn forward_each(&self, values: &[Tensor<1>], rewards: &[Tensor<1>]) -> Tensor<1> {
        assert!(
            !values.is_empty(),
            "CriticMse needs at least one critic value"
        );
        assert_eq!(
            values.len(),
            rewards.len(),
            "CriticMse: one reward per critic"
        );
        values
            .iter()
            .zip(rewards)
            .map(|(v, reward)| {
                assert_eq!(
                    v.dims(),
                    reward.dims(),
                    "CriticMse: values {:?} vs reward {:?}",
                    v.dims(),
                    reward.dims()
                );
                (v.clone() - reward.clone().detach()).powi_scalar(2).mean()
            })
            .reduce(|a, b| a + b)
            .expect("non-empty")
    }
}
