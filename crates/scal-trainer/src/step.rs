//! One SCAL training step.
//!
//! ```text
//! forward with attention ──► f, logits, X_l, A_l, V_l = C_l(X_l⊥, A_l⊥)
//! forward without attention (copy: no gradient, same BN mode, running stats untouched) ──► logits₀
//! R = R_c + R_a from (logits, logits₀, labels)                 constant
//! J_tri(f) + J_cls(logits)                                     → ψ, θ, head (never φ)
//! λ · J_cri = −λ Σ mean C_l⊥φ(X_l⊥, A_l(X_l⊥))                → θ only (critic frozen, X detached)
//! J_mse = Σ mean (V_l − R)²                                    → φ only (X, A detached)
//! ```
//! (`⊥` = detached; `⊥φ` = a frozen copy of the critics.) The four terms are summed and
//! back-propagated once; one optimizer step updates every parameter from its own terms.

use burn::config::Config;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor};
use scal_attention::Gating;
use scal_losses::{
    TripletLossConfig, batch_hard_triplet, critic_mse, critic_objective,
    label_smoothed_cross_entropy,
};
use scal_model::ScalModel;
use scal_rewards::{RewardKind, Rewards, rewards};

/// The losses of a step.
#[derive(Config, Debug, PartialEq)]
pub struct StepConfig {
    /// Weight λ of the critic objective `J_cri` for the agents.
    #[config(default = 1.0)]
    pub lambda: f64,
    /// Label smoothing ε of the classification loss.
    #[config(default = 0.1)]
    pub label_smoothing: f32,
    /// The batch-hard triplet loss.
    #[config(default = "TripletLossConfig::new()")]
    pub triplet: TripletLossConfig,
    /// Train critics and the agents through them (`--critic on|off`). Without it the agents
    /// learn from `J_tri + J_cls` alone and no reward is computed.
    #[config(default = true)]
    pub critic: bool,
    /// What makes up the reward `R`.
    #[config(default = "RewardKind::Both")]
    pub reward: RewardKind,
}

/// The terms of one step's loss, before the backward pass.
#[derive(Debug)]
pub struct ScalLoss {
    /// `J_tri + J_cls + λ J_cri + J_mse`.
    pub total: Tensor<1>,
    /// `J_tri`.
    pub triplet: Tensor<1>,
    /// `J_cls`.
    pub classification: Tensor<1>,
    /// `J_cri` (unweighted), when the critic is on.
    pub critic_objective: Option<Tensor<1>>,
    /// `J_mse`, when the critic is on.
    pub critic_mse: Option<Tensor<1>>,
    /// The rewards, when the critic is on.
    pub rewards: Option<Rewards>,
    /// The critics' estimates `V_l` (detached inputs).
    pub values: Vec<Tensor<1>>,
    /// The logits with attention.
    pub logits: Tensor<2>,
}

/// Builds the step's loss (forward passes, rewards, the four terms) without back-propagating.
///
/// # Shapes
/// - `images`: `[N, 3, H, W]` (a P × K batch), `labels`: `[N]`
pub fn scal_loss(
    model: &ScalModel,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    config: &StepConfig,
) -> ScalLoss {
    let out = model.forward(images.clone(), Gating::On);
    let triplet = batch_hard_triplet(out.global.clone(), labels.clone(), &config.triplet);
    let classification =
        label_smoothed_cross_entropy(out.logits.clone(), labels.clone(), config.label_smoothing);
    let mut total = triplet.clone() + classification.clone();
    let (mut j_cri, mut j_mse, mut reward) = (None, None, None);
    if model.has_attention() && config.critic {
        let plain = model.no_attention_copy().forward(images, Gating::Ones);
        let r = rewards(out.logits.clone(), plain.logits, labels, config.reward);
        // The agents' path: maps recomputed from detached inputs, critics frozen.
        let frozen = model.critics.clone().no_grad();
        let detached: Vec<Tensor<4>> = out
            .stage_inputs
            .iter()
            .map(|x| x.clone().detach())
            .collect();
        let maps: Vec<Tensor<4>> = detached
            .iter()
            .enumerate()
            .map(|(l, x)| {
                model
                    .attention
                    .attention_map(l, x.clone())
                    .expect("an agent per stage")
            })
            .collect();
        let cri = critic_objective(&frozen.forward(detached, maps));
        let mse = critic_mse(&out.values, r.total.clone());
        total = total + cri.clone().mul_scalar(config.lambda) + mse.clone();
        j_cri = Some(cri);
        j_mse = Some(mse);
        reward = Some(r);
    }
    ScalLoss {
        total,
        triplet,
        classification,
        critic_objective: j_cri,
        critic_mse: j_mse,
        rewards: reward,
        values: out.values,
        logits: out.logits,
    }
}

/// What a step measured (all means over the batch).
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The summed loss.
    pub loss: f32,
    /// `J_tri`.
    pub triplet: f32,
    /// `J_cls`.
    pub classification: f32,
    /// `J_cri` (unweighted), with the critic on.
    pub critic_objective: Option<f32>,
    /// `J_mse`, with the critic on.
    pub critic_mse: Option<f32>,
    /// Share of samples whose attention-based prediction is correct (`R_c = 1`).
    pub correct_rate: Option<f32>,
    /// Share of samples where attention raised the true class's probability (`R_a = 1`).
    pub amelioration_rate: Option<f32>,
    /// Mean critic estimate over modules and samples.
    pub mean_value: Option<f32>,
    /// Mean |V − R| over modules and samples.
    pub critic_error: Option<f32>,
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar()
}

impl StepReport {
    /// Reads the scalars of a step's loss (synchronises with the device).
    pub fn from_loss(loss: &ScalLoss) -> StepReport {
        let values =
            (!loss.values.is_empty()).then(|| Tensor::stack::<2>(loss.values.clone(), 0).detach());
        let (mean_value, critic_error) = match (&values, &loss.rewards) {
            (Some(v), Some(r)) => {
                let [modules, n] = v.dims();
                let r = r.total.clone().reshape([1, n]).expand([modules, n]);
                (
                    Some(v.clone().mean().into_scalar()),
                    Some((v.clone() - r).abs().mean().into_scalar()),
                )
            }
            (Some(v), None) => (Some(v.clone().mean().into_scalar()), None),
            _ => (None, None),
        };
        StepReport {
            loss: scalar(loss.total.clone().detach()),
            triplet: scalar(loss.triplet.clone().detach()),
            classification: scalar(loss.classification.clone().detach()),
            critic_objective: loss.critic_objective.clone().map(|t| scalar(t.detach())),
            critic_mse: loss.critic_mse.clone().map(|t| scalar(t.detach())),
            correct_rate: loss
                .rewards
                .as_ref()
                .map(|r| scalar(r.correct.clone().mean())),
            amelioration_rate: loss
                .rewards
                .as_ref()
                .map(|r| scalar(r.amelioration.clone().mean())),
            mean_value,
            critic_error,
        }
    }
}

/// One step: loss, one backward pass, one optimizer step at learning rate `lr`.
pub fn scal_step(
    model: ScalModel,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    config: &StepConfig,
) -> (ScalModel, StepReport) {
    let loss = scal_loss(&model, images, labels, config);
    let report = StepReport::from_loss(&loss);
    let grads = GradientsParams::from_grads(loss.total.backward(), &model);
    (optimizer.step(lr, model, grads), report)
}
