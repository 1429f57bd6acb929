//! The `step` section of `config.json`: the losses of a training step as the run's file
//! keeps them.
//!
//! These are scal-run's own types, as `metrics.jsonl`'s records are (issue 41): a change to
//! the library's step configuration (`scal_model::objective::StepConfig`) cannot change what
//! a `config.json` says or how an older one reads. The trainer converts them to the
//! library's in one place (`scal_train::records::step_config`), where the compiler sees every
//! field and every variant.
//!
//! Their defaults are the file format's: what a `config.json` without a field means (an
//! older run's, before the field existed). They are the paper's method, the same as the
//! library's defaults; `scal_train::records`'s tests hold the two equal, so that neither
//! moves alone.

use burn::config::Config;
use scal_losses::TripletLossConfig;
use scal_rewards::{PlantedRewardConfig, RewardKind};
use serde::{Deserialize, Serialize};

/// In which order a step updates the critics and the agents (`joint`, `critic_first`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateOrder {
    /// One backward pass of the summed loss and one optimizer step (the paper's).
    #[serde(rename = "joint")]
    Joint,
    /// The critics on `J_mse` first, then every other parameter against the updated critics.
    #[serde(rename = "critic_first")]
    CriticFirst,
}

/// What each critic learns to estimate (`shared`, `per-module`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CriticTarget {
    /// Every critic the step's reward `R` (the paper's).
    #[serde(rename = "shared")]
    Shared,
    /// Critic `l` the reward of its own module (beyond the paper).
    #[serde(rename = "per-module")]
    PerModule,
}

/// The per-sample score whose change under exploration a compatible critic learns
/// (`log-prob`, `batch-ap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CriticScore {
    /// The true class's log-probability.
    #[serde(rename = "log-prob")]
    LogProb,
    /// The sample's average precision among the P × K batch.
    #[serde(rename = "batch-ap")]
    BatchAp,
}

/// The losses of a step (`config.json`'s `step`).
#[derive(Config, Debug, PartialEq)]
pub struct StepOptions {
    /// Weight λ of the critic objective `J_cri` for the agents.
    #[config(default = 1.0)]
    pub lambda: f64,
    /// Label smoothing ε of the classification loss.
    #[config(default = 0.1)]
    pub label_smoothing: f32,
    /// The batch-hard triplet loss.
    #[config(default = "TripletLossConfig::new()")]
    pub triplet: TripletLossConfig,
    /// Train critics and the agents through them.
    #[config(default = true)]
    pub critic: bool,
    /// What makes up the reward `R`.
    #[config(default = "RewardKind::Both")]
    pub reward: RewardKind,
    /// Whether the critics and the agents learn in one optimizer step or the critics first.
    #[config(default = "UpdateOrder::Joint")]
    pub update_order: UpdateOrder,
    /// The planted reward's settings (the positive control), read with a planted `reward`.
    #[config(default = "PlantedRewardConfig::new()")]
    pub planted: PlantedRewardConfig,
    /// Standard deviation of the exploration on the attention's logits (0: the paper's
    /// method, no exploring pass).
    #[config(default = 0.0)]
    pub exploration: f64,
    /// What each critic learns to estimate.
    #[config(default = "CriticTarget::Shared")]
    pub critic_target: CriticTarget,
    /// What compatible critics learn the change of under exploration.
    #[config(default = "CriticScore::LogProb")]
    pub critic_score: CriticScore,
    /// Antithetic pairs `M` of the self-critical reference (no learned critic: the agents
    /// learn from `(S(z + σε) − S(z − σε))·ε / 2σ` on their logits, `σ` = `exploration`;
    /// beyond the paper). 0: the critics.
    #[config(default = 0)]
    pub self_critical_pairs: usize,
    /// Add the counterfactual effect loss `CE(Y(A) − Y(Ā), y)` with uniform random maps `Ā`
    /// (counterfactual attention learning; beyond the paper).
    #[config(default = false)]
    pub counterfactual: bool,
}
