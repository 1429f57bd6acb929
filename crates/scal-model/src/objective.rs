//! SCAL's objective: the loss of one step, with its gradient routing, and what it measured.
//!
//! ```text
//! forward with attention ──► f, logits, X_l, A_l, V_l = C_l(X_l⊥, A_l⊥)
//! forward without attention (copy: no gradient, same BN mode, running stats untouched) ──► logits₀
//! R = R_c + R_a from (logits, logits₀, labels)                 constant
//! J_tri(f) + J_cls(logits)                                     → ψ, θ, head (never φ)
//! λ · J_cri = −λ Σ mean C_l⊥φ(X_l⊥, A_l(X_l⊥))                → θ only (critic frozen, X detached)
//! J_mse = Σ mean (V_l − R)²                                    → φ only (X, A detached)
//! ```
//! (`⊥` = detached; `⊥φ` = a frozen copy of the critics.) The four terms are summed into
//! [`ScalLoss::total`], to be back-propagated once: one optimizer step then updates every
//! parameter from its own terms ([`UpdateOrder::Joint`], the default). With
//! [`UpdateOrder::CriticFirst`] a trainer steps the critics on `J_mse` first and then the rest
//! on `J_tri + J_cls + λ J_cri` against the updated critics ([`agents_critic_objective`] on
//! [`ScalLoss::agent_inputs`]). [`StepReport`] reads the scalars a training log keeps.
//!
//! Two opt-in departures from the paper, for studying the critic: a planted reward
//! (`reward = planted`, a known function of one module's map: the positive control of the
//! loop) replaces `R`, and exploration (`exploration > 0`) adds a third forward pass with
//! perturbed maps `A'` (copy, no gradient): its logits earn `R`, the critics learn
//! `V(X', A')`, and `J_cri` still takes the agents' own maps.
//!
//! With compatible critics (`model.critic_kind = compatible`, beyond the paper; exploration
//! required) the critics' terms change ([`ScalLoss::bounded_critic_objectives`]):
//!
//! ```text
//! y = S(A') − S(A) per sample (S: log p_y, the batch AP, or a planted reward)   constant
//! J_mse = mean (Σ_l ⟨A'_l − A_l, G_l⟩ + b_l − y)²    [G_l, b_l] = critic_l(X_l⊥, y)   → φ only
//! J_cri,l = −mean ⟨G_l⊥, A_l(X_l⊥)⟩                                               → θ_l only
//! ```
//! `J_cri` is not in `total`: [`step_gradients`] adds `λ·∇J_cri,l` to agent `l`'s gradient
//! scaled down to at most the norm of that agent's gradient from `total` (the ReID losses').

use crate::{ScalModel, ScalOutput, l2_normalize};
use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Distribution, TensorData};
use burn::tensor::{Int, Tensor};
use scal_attention::Gating;
use scal_critic::CriticKind;
use scal_losses::{CriticMse, CriticObjective, LabelSmoothedCrossEntropyConfig, TripletLossConfig};
use scal_rewards::{
    PlantedRewardConfig, RewardKind, Rewards, batch_average_precision, median, planted_direction,
    planted_directions, planted_reward, planted_row_scores, planted_score, rewards,
};
use serde::{Deserialize, Serialize};

/// In which order a step updates the critics and the agents (`joint`, `critic_first` in
/// configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateOrder {
    /// One backward pass of the summed loss and one optimizer step: the agents' `J_cri` is
    /// taken against the critics as they were before the step.
    #[serde(rename = "joint")]
    Joint,
    /// Two optimizer steps: the critics on `J_mse` first, then every other parameter on
    /// `J_tri + J_cls + λ J_cri` with `J_cri` taken against the updated critics (the order of
    /// actor-critic methods that fit the value before the policy).
    #[serde(rename = "critic_first")]
    CriticFirst,
}

/// What each critic learns to estimate (`shared`, `per-module` in configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CriticTarget {
    /// Every critic the step's reward `R`, one per sample for all five modules (the paper).
    #[serde(rename = "shared")]
    Shared,
    /// Critic `l` the reward of its own module, beyond the paper: the step's reward with
    /// `R_a` replaced by `R_a^l`, 1 where the true class's probability with every module is
    /// higher than with module `l`'s map replaced by ones (`R_c + R_a^l` for the paper's
    /// `both`). Five more forward passes of the no-attention copy per step.
    #[serde(rename = "per-module")]
    PerModule,
}

/// The per-sample score `S` whose change `S(A′) − S(A)` under exploration a compatible
/// critic learns (`log-prob`, `batch-ap` in configs). With a planted reward, `S` is the
/// planted reward itself, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CriticScore {
    /// `log p_y`, the true class's log-probability from the logits (the mechanism check:
    /// its gradient along each map is what `critic-grad` compares with).
    #[serde(rename = "log-prob")]
    LogProb,
    /// The sample's average precision among the P × K batch by the distances of the
    /// L2-normalised post-BN features (ReID's own metric): the query from the pass being
    /// scored, the other samples from the unperturbed pass ([`batch_average_precision`]).
    #[serde(rename = "batch-ap")]
    BatchAp,
}

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
    /// Whether the critics and the agents learn in one optimizer step or the critics first.
    #[config(default = "UpdateOrder::Joint")]
    pub update_order: UpdateOrder,
    /// The planted reward's settings, read with `reward` = `planted` or `planted-noisy` (the
    /// positive control of the actor-critic loop, not the method).
    #[config(default = "PlantedRewardConfig::new()")]
    pub planted: PlantedRewardConfig,
    /// Exploration on the attention, beyond the paper: with a standard deviation above 0, a
    /// third forward pass (no gradient) gates with exploring maps `A' = sigmoid(logits + ε)`,
    /// `ε ~ N(0, exploration²)`; its logits earn `R` and the critics learn `V(X', A')` from
    /// it, while the ReID losses and the agents' `J_cri` stay on the unperturbed pass
    /// (deterministic policy gradient with exploration). 0: the paper's method.
    #[config(default = 0.0)]
    pub exploration: f64,
    /// What each critic learns to estimate: the shared reward (the paper's) or its own
    /// module's ([`CriticTarget::PerModule`], beyond the paper).
    #[config(default = "CriticTarget::Shared")]
    pub critic_target: CriticTarget,
    /// What compatible critics (`model.critic_kind = compatible`) learn the change of under
    /// exploration; unused by the paper's critics.
    #[config(default = "CriticScore::LogProb")]
    pub critic_score: CriticScore,
    /// The self-critical reference without a learned critic (beyond the paper): with `M > 0`
    /// antithetic pairs, the agents learn from the estimate
    /// `ĝ_l = (1/M) Σ_m (S(z + σε_m) − S(z − σε_m)) ε_m,l / 2σ` of `∂S/∂z_l` on their logits
    /// (`σ` = `exploration`, `S` by `critic_score` or the planted reward), and no critic is
    /// trained. 0: the critics (the paper's, or compatible ones).
    #[config(default = 0)]
    pub self_critical_pairs: usize,
    /// The counterfactual effect loss of counterfactual attention learning (CAL, beyond the
    /// paper; no learned judge): a pass with every map replaced by uniform noise `Ā`
    /// ([`Gating::Uniform`], running statistics untouched) and `J_eff = CE(Y(A) − Y(Ā), y)`
    /// (label-smoothed as `J_cls`) added to the loss, so that the maps earn their effect on
    /// the true class against a random intervention.
    #[config(default = false)]
    pub counterfactual: bool,
}

/// The terms of one step's loss, before the backward pass.
#[derive(Debug)]
pub struct ScalLoss {
    /// `J_tri + J_cls + λ J_cri + J_mse` (with compatible critics `J_tri + J_cls + J_mse`:
    /// their `J_cri` is [`ScalLoss::bounded_critic_objectives`]).
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
    /// The attended stages' inputs, detached: what the agents' `J_cri` reads (empty without
    /// the critic).
    pub agent_inputs: Vec<Tensor<4>>,
    /// With compatible critics: `J_cri,l = −mean ⟨G_l⊥, A_l(X_l⊥)⟩` per module
    /// (unweighted), not in `total`; [`step_gradients`] adds them, bounded (empty
    /// otherwise).
    pub bounded_critic_objectives: Vec<Tensor<1>>,
    /// With compatible critics: their target `y = S(A′) − S(A)`, `[N]` (detached).
    pub critic_targets: Option<Tensor<1>>,
    /// `J_eff`, the counterfactual effect loss, with [`StepConfig::counterfactual`].
    pub counterfactual: Option<Tensor<1>>,
}

/// The agents' critic objective `J_cri = −Σ_l mean C_l⊥φ(X_l⊥, A_l(X_l⊥))` (unweighted):
/// the maps recomputed from the detached stage inputs, the critics frozen, so its gradient
/// reaches the agents only.
///
/// # Shapes
/// - `agent_inputs[l]`: `[N, C_l, H_l, W_l]`, the input of attended stage `l`, detached
/// - returns `[1]`
pub fn agents_critic_objective(model: &ScalModel, agent_inputs: &[Tensor<4>]) -> Tensor<1> {
    let frozen = model.critics.clone().no_grad();
    let maps: Vec<Tensor<4>> = agent_inputs
        .iter()
        .enumerate()
        .map(|(l, x)| {
            model
                .attention
                .attention_map(l, x.clone())
                .expect("an agent per stage")
        })
        .collect();
    CriticObjective::new().forward(&frozen.forward(agent_inputs.to_vec(), maps))
}

/// Builds the step's loss (forward passes, rewards, the four terms) without back-propagating.
///
/// With a planted reward and no configured threshold, the threshold is this batch's median
/// score ([`planted_threshold`]); a trainer freezes it from its first batch instead.
///
/// # Shapes
/// - `images`: `[N, 3, H, W]` (a P × K batch), `labels`: `[N]`
///
/// # Panics
/// With [`CriticTarget::PerModule`] together with exploration or a planted reward: a module's
/// own reward compares unperturbed passes, and the planted reward has no module's share
/// (a trainer's configuration refuses both). With compatible critics, without exploration
/// or with per-module targets.
pub fn scal_loss(
    model: &ScalModel,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    config: &StepConfig,
) -> ScalLoss {
    let out = model.forward(images.clone(), Gating::On);
    let triplet = config
        .triplet
        .init()
        .forward(out.global.clone(), labels.clone());
    let classification = LabelSmoothedCrossEntropyConfig::new()
        .with_epsilon(config.label_smoothing)
        .init()
        .forward(out.logits.clone(), labels.clone());
    let mut total = triplet.clone() + classification.clone();
    let counterfactual = (config.counterfactual && model.has_attention())
        .then(|| counterfactual_effect(model, images.clone(), &out.logits, &labels, config));
    if let Some(effect) = &counterfactual {
        total = total + effect.clone();
    }
    let mut loss = ScalLoss {
        total: total.clone(),
        triplet,
        classification,
        critic_objective: None,
        critic_mse: None,
        rewards: None,
        values: out.values.clone(),
        logits: out.logits.clone(),
        agent_inputs: Vec::new(),
        bounded_critic_objectives: Vec::new(),
        critic_targets: None,
        counterfactual,
    };
    if model.has_attention() && config.critic {
        let terms = match model.critics.kind() {
            _ if config.self_critical_pairs > 0 => {
                self_critical_terms(model, out, images, &labels, config)
            }
            CriticKind::Paper => paper_terms(model, out, images, &labels, config),
            CriticKind::Compatible => compatible_terms(model, out, images, &labels, config),
        };
        // The compatible critics' J_cri is added in `step_gradients`, bounded per agent.
        if terms.bounded.is_empty() {
            total = total + terms.objective.clone().mul_scalar(config.lambda);
        }
        loss.total = match &terms.mse {
            Some(mse) => total + mse.clone(),
            None => total,
        };
        loss.critic_objective = Some(terms.objective);
        loss.critic_mse = terms.mse;
        loss.rewards = Some(terms.rewards);
        loss.values = terms.values;
        loss.agent_inputs = terms.agent_inputs;
        loss.bounded_critic_objectives = terms.bounded;
        loss.critic_targets = terms.targets;
    }
    loss
}

/// The counterfactual effect loss `J_eff = CE(Y(A) − Y(Ā), y)`: the logits with the
/// agents' maps minus those of a pass with uniform random maps (the same parameters, with
/// gradient; its batch norms leave the running statistics unchanged, so the intervention
/// does not leak into evaluation), label-smoothed as `J_cls`.
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`, `logits`: `[N, K]` (the attended pass), `labels`: `[N]`;
///   output: `[1]`
fn counterfactual_effect(
    model: &ScalModel,
    images: Tensor<4>,
    logits: &Tensor<2>,
    labels: &Tensor<1, Int>,
    config: &StepConfig,
) -> Tensor<1> {
    let mut intervened = model.clone();
    intervened.backbone.set_batch_norm_momentum(0.0);
    intervened.neck.momentum = 0.0;
    let random = intervened.forward(images, Gating::Uniform);
    LabelSmoothedCrossEntropyConfig::new()
        .with_epsilon(config.label_smoothing)
        .init()
        .forward(logits.clone() - random.logits, labels.clone())
}

/// The critics' terms of a step.
struct CriticTerms {
    /// `J_cri` (unweighted).
    objective: Tensor<1>,
    /// `J_mse` (none without a learned critic).
    mse: Option<Tensor<1>>,
    rewards: Rewards,
    values: Vec<Tensor<1>>,
    agent_inputs: Vec<Tensor<4>>,
    /// Compatible critics' `J_cri,l` (empty for the paper's).
    bounded: Vec<Tensor<1>>,
    targets: Option<Tensor<1>>,
}

/// The paper's critics' terms: `R` from the acting pass (this one, or an exploring one),
/// `J_cri` through the frozen critics, `J_mse` against `R` (or each module's own reward).
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`, `labels`: `[N]`; `out`: the model's pass on `images`
fn paper_terms(
    model: &ScalModel,
    out: ScalOutput,
    images: Tensor<4>,
    labels: &Tensor<1, Int>,
    config: &StepConfig,
) -> CriticTerms {
    assert!(
        config.critic_target == CriticTarget::Shared
            || (config.exploration == 0.0 && !config.reward.is_planted()),
        "per-module critic targets need the method's reward without exploration"
    );
    let copy = model.no_attention_copy();
    let plain = copy.forward(images.clone(), Gating::Ones);
    // Per-module targets run without exploration (asserted above): the acting pass is
    // this one.
    let targets = (config.critic_target == CriticTarget::PerModule)
        .then(|| module_rewards(&copy, images.clone(), &out.logits, labels, config.reward));
    // The pass whose logits earn R and whose maps the critics learn from: this one, or
    // an exploring one.
    let mut values = out.values;
    let (acting_logits, acting_maps) = if config.exploration > 0.0 {
        let std = config.exploration;
        let explored = copy.forward(images, Gating::Perturbed { std });
        values = model
            .critics
            .forward(detached(&explored.stage_inputs), detached(&explored.maps));
        (explored.logits, explored.maps)
    } else {
        (out.logits.clone(), out.maps)
    };
    let mut r = rewards(acting_logits, plain.logits, labels.clone(), config.reward);
    if config.reward.is_planted() {
        r.total = planted_total(&acting_maps, labels, config);
    }
    let agent_inputs = detached(&out.stage_inputs);
    let cri = agents_critic_objective(model, &agent_inputs);
    let mse = match &targets {
        Some(each) => CriticMse::new().forward_each(&values, each),
        None => CriticMse::new().forward(&values, r.total.clone()),
    };
    CriticTerms {
        objective: cri,
        mse: Some(mse),
        rewards: r,
        values,
        agent_inputs,
        bounded: Vec::new(),
        targets: None,
    }
}

/// The compatible critics' terms: an exploring pass `A′` (every module perturbed at once,
/// independent noise per element), the target `y = S(A′) − S(A)`, one joint regression of
/// `y` on `Σ_l Q_l` with `Q_l = ⟨A′_l − A_l, G_l⟩ + b_l` (the modules' cross terms average
/// out over the independent noise), and each module's `J_cri,l = −mean ⟨G_l⊥, A_l⟩`. `R`
/// (for the log's rates) from the exploring pass, as the paper's critics' with exploration.
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`, `labels`: `[N]`; `out`: the model's pass on `images`
fn compatible_terms(
    model: &ScalModel,
    out: ScalOutput,
    images: Tensor<4>,
    labels: &Tensor<1, Int>,
    config: &StepConfig,
) -> CriticTerms {
    assert!(
        config.exploration > 0.0 && config.critic_target == CriticTarget::Shared,
        "compatible critics learn from exploration (step.exploration > 0) with shared targets"
    );
    let n = labels.dims()[0];
    let copy = model.no_attention_copy();
    let plain = copy.forward(images.clone(), Gating::Ones);
    let std = config.exploration;
    let explored = copy.forward(images, Gating::Perturbed { std });
    let mut r = rewards(
        explored.logits.clone(),
        plain.logits,
        labels.clone(),
        config.reward,
    );
    let (target, planted) = score_change(&out, &explored, labels, config);
    if let Some(planted) = planted {
        r.total = planted;
    }
    let agent_inputs = detached(&out.stage_inputs);
    let mut estimate: Option<Tensor<1>> = None;
    let mut bounded = Vec::with_capacity(agent_inputs.len());
    for (l, critic) in model.critics.compatible.iter().enumerate() {
        let said = critic.forward(agent_inputs[l].clone(), labels.clone());
        let deviation = (explored.maps[l].clone() - out.maps[l].clone()).detach();
        let q = said.value(deviation);
        estimate = Some(match estimate {
            Some(e) => e + q,
            None => q,
        });
        let map = model
            .attention
            .attention_map(l, agent_inputs[l].clone())
            .expect("an agent per stage");
        let d = said.direction.dims()[1];
        let push = (map.reshape([n, d]) * said.direction.detach())
            .sum()
            .div_scalar(n as f64)
            .neg();
        bounded.push(push);
    }
    let estimate = estimate.expect("a compatible critic per module");
    let mse = (estimate - target.clone()).powi_scalar(2).mean();
    let objective = summed(&bounded);
    CriticTerms {
        objective,
        mse: Some(mse),
        rewards: r,
        values: Vec::new(),
        agent_inputs,
        bounded,
        targets: Some(target),
    }
}

/// The self-critical reference's terms ([`StepConfig::self_critical_pairs`] `= M`): `M`
/// antithetic pairs of passes with `z_l ± σε_m,l` on every module's logits (noise
/// independent per element and sample, the same `ε` for both passes of a pair), the
/// estimate `ĝ_l` ([`antithetic_gradient`]) of each sample's `∂S/∂z_l`, and each agent's
/// `J_l = −mean ⟨ĝ_l⊥, z_l(X_l⊥)⟩` (bounded per agent, as the compatible critics' `J_cri`).
/// No critic learns (`J_mse` absent); `R` (for the log's rates) from the unperturbed pass.
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`, `labels`: `[N]`; `out`: the model's pass on `images`
fn self_critical_terms(
    model: &ScalModel,
    out: ScalOutput,
    images: Tensor<4>,
    labels: &Tensor<1, Int>,
    config: &StepConfig,
) -> CriticTerms {
    assert!(
        config.exploration > 0.0 && config.critic_target == CriticTarget::Shared,
        "the self-critical estimator explores (step.exploration > 0) with shared targets"
    );
    let n = labels.dims()[0];
    let copy = model.no_attention_copy();
    let plain = copy.forward(images.clone(), Gating::Ones);
    let mut r = rewards(
        out.logits.clone(),
        plain.logits,
        labels.clone(),
        config.reward,
    );
    let planted = config.reward.is_planted().then(|| {
        let own = planted_scores(&out.maps, labels, config.reward, &config.planted);
        let (threshold, flips) = planted_threshold_and_flips(&own, config);
        r.total = planted_reward(own, threshold, flips.clone());
        (threshold, flips)
    });
    let gradients = explore_antithetically(&copy, &out, images, labels, config, planted.as_ref());
    let agent_inputs = detached(&out.stage_inputs);
    let bounded: Vec<Tensor<1>> = gradients
        .into_iter()
        .zip(&model.attention.agents)
        .zip(&agent_inputs)
        .map(|((g, agent), x)| {
            (agent.logits(x.clone()) * g.detach())
                .sum()
                .div_scalar(n as f64)
                .neg()
        })
        .collect();
    let objective = summed(&bounded);
    CriticTerms {
        objective,
        mse: None,
        rewards: r,
        values: Vec::new(),
        agent_inputs,
        bounded,
        targets: None,
    }
}

/// Each tensor detached (the stage inputs the agents' objectives read).
fn detached(xs: &[Tensor<4>]) -> Vec<Tensor<4>> {
    xs.iter().map(|x| x.clone().detach()).collect()
}

/// The sum of one term per module.
///
/// # Panics
/// Without terms.
fn summed(terms: &[Tensor<1>]) -> Tensor<1> {
    terms
        .iter()
        .cloned()
        .reduce(|a, b| a + b)
        .expect("one term per module")
}

/// The self-critical estimator's `ĝ_l` for each module on a batch, as a step computes it
/// ([`StepConfig::self_critical_pairs`] pairs at `σ` = [`StepConfig::exploration`], `S` by
/// [`StepConfig::critic_score`] or the planted reward, whose threshold is the configured
/// one or this batch's median): for measuring it against the true `∂S/∂z_l`. The passes
/// run on the model's no-attention copy (batch statistics, nothing trained or moved).
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`, `labels`: `[N]`; output: `[N, D_l]` per module (as
///   [`scal_attention::Agent::logits`])
///
/// # Panics
/// Without attention, pairs or exploration.
pub fn self_critical_gradients(
    model: &ScalModel,
    images: Tensor<4>,
    labels: &Tensor<1, Int>,
    config: &StepConfig,
) -> Vec<Tensor<2>> {
    assert!(
        model.has_attention() && config.self_critical_pairs > 0 && config.exploration > 0.0,
        "the self-critical estimator needs attention, pairs and exploration"
    );
    let copy = model.no_attention_copy();
    let out = copy.forward(images.clone(), Gating::On);
    let planted = config.reward.is_planted().then(|| {
        let own = planted_scores(&out.maps, labels, config.reward, &config.planted);
        planted_threshold_and_flips(&own, config)
    });
    explore_antithetically(&copy, &out, images, labels, config, planted.as_ref())
}

/// The `M` antithetic pairs of passes on `copy` and their estimate
/// ([`antithetic_gradient`]); `out` is the unperturbed pass (the batch AP's reference).
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`, `labels`: `[N]`; output: `[N, D_l]` per module
fn explore_antithetically(
    copy: &ScalModel,
    out: &ScalOutput,
    images: Tensor<4>,
    labels: &Tensor<1, Int>,
    config: &StepConfig,
    planted: Option<&(f64, Option<Tensor<1>>)>,
) -> Vec<Tensor<2>> {
    let (n, sigma, device) = (labels.dims()[0], config.exploration, images.device());
    let widths: Vec<usize> = out
        .maps
        .iter()
        .map(|a| a.dims()[1..].iter().product())
        .collect();
    let (mut differences, mut noise) = (Vec::new(), Vec::new());
    for _ in 0..config.self_critical_pairs {
        let eps: Vec<Tensor<2>> = widths
            .iter()
            .map(|&d| Tensor::random([n, d], Distribution::Normal(0.0, 1.0), &device))
            .collect();
        let scaled = |s: f64| {
            eps.iter()
                .map(|e| e.clone().mul_scalar(s))
                .collect::<Vec<_>>()
        };
        let score = |pass: ScalOutput| sample_scores(&pass, out, labels, config, planted);
        differences.push(
            score(copy.forward_noised(images.clone(), &scaled(sigma)))
                - score(copy.forward_noised(images.clone(), &scaled(-sigma))),
        );
        noise.push(eps);
    }
    antithetic_gradient(&differences, &noise, sigma)
}

/// The self-critical estimate of each sample's `∂S/∂z_l` from `M` antithetic pairs of
/// exploring passes: `ĝ_l = (1/M) Σ_m (S(z + σε_m) − S(z − σε_m)) ε_m,l / 2σ`, with `ε_m`
/// standard normal (the gradient of `S` smoothed by `N(0, σ²)`; for a linear `S` its cosine
/// with the true gradient over `D` dimensions in all is `1/√(1 + (D + 1)/M)` in expectation's
/// ratio, `E⟨ĝ, ∇⟩ / √(E‖ĝ‖² ‖∇‖²)`).
///
/// # Shapes
/// - `differences[m]`: `[N]`, `S(z + σε_m) − S(z − σε_m)`; `noise[m][l]`: `[N, D_l]`, `ε_m,l`
/// - output: `[N, D_l]` per module
///
/// # Panics
/// Without pairs, or with `differences` and `noise` of different lengths.
pub fn antithetic_gradient(
    differences: &[Tensor<1>],
    noise: &[Vec<Tensor<2>>],
    sigma: f64,
) -> Vec<Tensor<2>> {
    assert!(
        !differences.is_empty() && differences.len() == noise.len(),
        "one score difference per pair of noise draws, and at least one pair"
    );
    let m = differences.len();
    let scale = 1.0 / (2.0 * sigma * m as f64);
    let mut sum: Option<Vec<Tensor<2>>> = None;
    for (difference, eps) in differences.iter().zip(noise) {
        let n = difference.dims()[0];
        let weight = difference.clone().detach().reshape([n, 1]);
        let terms: Vec<Tensor<2>> = eps.iter().map(|e| e.clone() * weight.clone()).collect();
        sum = Some(match sum {
            Some(s) => s.into_iter().zip(terms).map(|(a, b)| a + b).collect(),
            None => terms,
        });
    }
    sum.expect("at least one pair")
        .into_iter()
        .map(|g| g.mul_scalar(scale))
        .collect()
}

/// The per-sample score `S` of a pass (detached): `log p_y` of its logits, its average
/// precision among the batch (the query's feature from `pass`, the rest of the batch from
/// `out`, the unperturbed pass), or, with `planted` (threshold and flips), the planted
/// reward of its maps.
///
/// # Shapes
/// - `pass`, `out`: passes on the same `N` images; `labels`: `[N]`; output: `[N]`
fn sample_scores(
    pass: &ScalOutput,
    out: &ScalOutput,
    labels: &Tensor<1, Int>,
    config: &StepConfig,
    planted: Option<&(f64, Option<Tensor<1>>)>,
) -> Tensor<1> {
    let n = labels.dims()[0];
    if let Some((threshold, flips)) = planted {
        let score = planted_scores(&pass.maps, labels, config.reward, &config.planted);
        return planted_reward(score, *threshold, flips.clone());
    }
    match config.critic_score {
        CriticScore::LogProb => log_softmax(pass.logits.clone().detach(), 1)
            .gather(1, labels.clone().reshape([n, 1]))
            .reshape([n]),
        CriticScore::BatchAp => {
            let rows = |f: &Tensor<2>| -> Vec<f32> {
                l2_normalize(f.clone().detach())
                    .into_data()
                    .iter::<f32>()
                    .collect()
            };
            let ids: Vec<i64> = labels.clone().into_data().iter::<i64>().collect();
            let ap: Vec<f32> =
                batch_average_precision(&rows(&pass.feature), &rows(&out.feature), &ids)
                    .into_iter()
                    .map(|a| a as f32)
                    .collect();
            Tensor::from_data(TensorData::new(ap, [n]), &labels.device())
        }
    }
}

/// The compatible critics' target `y = S(A′) − S(A)` per sample (detached), `S` by
/// `config.critic_score` or, with a planted reward, the planted reward itself (the same
/// flips for both passes with `planted-noisy`); with a planted reward also `R` of the
/// exploring pass.
///
/// # Shapes
/// - `out`, `explored`: passes on the same `N` images; `labels`: `[N]`; outputs: `[N]`
fn score_change(
    out: &ScalOutput,
    explored: &ScalOutput,
    labels: &Tensor<1, Int>,
    config: &StepConfig,
) -> (Tensor<1>, Option<Tensor<1>>) {
    if config.reward.is_planted() {
        let (acting, own) = (
            planted_scores(&explored.maps, labels, config.reward, &config.planted),
            planted_scores(&out.maps, labels, config.reward, &config.planted),
        );
        let (threshold, flips) = planted_threshold_and_flips(&acting, config);
        let acting = planted_reward(acting, threshold, flips.clone());
        let own = planted_reward(own, threshold, flips);
        return (acting.clone() - own, Some(acting));
    }
    let change = sample_scores(explored, out, labels, config, None)
        - sample_scores(out, out, labels, config, None);
    (change, None)
}

/// Each module's own reward, for [`CriticTarget::PerModule`]: the reward of `kind` with the
/// no-attention pass replaced by the pass that replaces only module `l`'s map by ones, so
/// that its `R_a` is module `l`'s amelioration `R_a^l` (its `R_c` is the step's). The passes
/// run on `copy`, the step's no-attention copy (batch statistics, no gradient).
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`, `acting_logits`: `[N, K]`, `labels`: `[N]`; output: one `[N]`
///   per module
fn module_rewards(
    copy: &ScalModel,
    images: Tensor<4>,
    acting_logits: &Tensor<2>,
    labels: &Tensor<1, Int>,
    kind: RewardKind,
) -> Vec<Tensor<1>> {
    (0..copy.attention.agents.len())
        .map(|l| {
            let without = copy.logits_without_module(images.clone(), l);
            rewards(acting_logits.clone(), without, labels.clone(), kind).total
        })
        .collect()
}

/// The planted reward of `maps[config.planted.module]`, flipped at random (the device's
/// generator) with `planted-noisy`.
///
/// # Shapes
/// - `labels`: `[N]`; output: `[N]`
fn planted_total(maps: &[Tensor<4>], labels: &Tensor<1, Int>, config: &StepConfig) -> Tensor<1> {
    let score = planted_scores(maps, labels, config.reward, &config.planted);
    let (threshold, flips) = planted_threshold_and_flips(&score, config);
    planted_reward(score, threshold, flips)
}

/// The planted reward's threshold (the configured one, or the median of `score`) and, with
/// `planted-noisy`, the flips drawn from the device's generator.
///
/// # Shapes
/// - `score`: `[N]`; flips: `[N]`
fn planted_threshold_and_flips(score: &Tensor<1>, config: &StepConfig) -> (f64, Option<Tensor<1>>) {
    let threshold = config.planted.threshold.unwrap_or_else(|| {
        median(
            &score
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .expect("float scores"),
        )
    });
    let flips = (config.reward == RewardKind::PlantedNoisy).then(|| {
        let p = config.planted.flip_probability;
        Tensor::random(score.dims(), Distribution::Bernoulli(p), &score.device())
    });
    (threshold, flips)
}

/// `⟨w_i, A_l⟩` per sample for the planted reward's module `l`: the one direction `w`, or
/// each sample's identity's `w_y` with `planted-per-identity`.
///
/// # Shapes
/// - `maps[l]`: `[N, C_l, 1, 1]` or `[N, 1, H_l, W_l]`, `labels`: `[N]`; output: `[N]`
///
/// # Panics
/// If there is no map `l`.
fn planted_scores(
    maps: &[Tensor<4>],
    labels: &Tensor<1, Int>,
    kind: RewardKind,
    planted: &PlantedRewardConfig,
) -> Tensor<1> {
    let map = maps.get(planted.module).unwrap_or_else(|| {
        panic!(
            "the planted reward reads module {}, but the model has {} attention maps",
            planted.module,
            maps.len()
        )
    });
    let [_, c, h, w] = map.dims();
    if kind != RewardKind::PlantedPerIdentity {
        return planted_score(map.clone(), &planted_direction(c * h * w, planted.seed));
    }
    let labels: Vec<i64> = labels.clone().into_data().iter::<i64>().collect();
    let rows = planted_directions(kind, c * h * w, planted.seed, &labels);
    planted_row_scores(map.clone(), &rows)
}

/// The planted reward's threshold frozen from a batch: the median of `⟨w, A_l⟩` over it, the
/// maps from an unperturbed forward pass that neither trains nor moves running statistics
/// (batch statistics, as in training).
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`
///
/// # Panics
/// If the model has no attention map `planted.module`.
pub fn planted_threshold(
    model: &ScalModel,
    (images, labels): (Tensor<4>, &Tensor<1, Int>),
    kind: RewardKind,
    planted: &PlantedRewardConfig,
) -> f64 {
    // A lazily initialised parameter shares its initialisation with the copy: draw it first,
    // or the copy's `no_grad` would reach the model's own parameters.
    model.initialize_parameters();
    let out = model.no_attention_copy().forward(images, Gating::On);
    let score = planted_scores(&out.maps, labels, kind, planted);
    median(&score.into_data().try_to_vec::<f32>().expect("float scores"))
}

/// The gradients of a step's loss on every parameter, the loss scaled by `weight` (1 for a
/// whole batch, `1/n` for one of `n` shards): the backward pass of [`ScalLoss::total`]; with
/// compatible critics also `λ·∇J_cri,l` ([`ScalLoss::bounded_critic_objectives`]) on each
/// agent `l`, scaled by `s_l = min(1, ‖∇_θl total‖ / ‖λ·∇_θl J_cri,l‖)` so that the critic
/// never pushes an agent harder than the ReID losses pull it (`J_mse` reaches only the
/// critics; `s_l = 1` where `J_cri,l` gives no gradient). The two backward passes run on
/// disjoint graphs (`J_cri` reads detached stage inputs).
///
/// Returns the gradients and the scales `s_l` (empty for the paper's critics).
pub fn step_gradients(
    model: &ScalModel,
    loss: &ScalLoss,
    lambda: f64,
    weight: f64,
) -> (GradientsParams, Vec<f32>) {
    let total = if weight == 1.0 {
        loss.total.clone()
    } else {
        loss.total.clone().mul_scalar(weight)
    };
    let mut grads = GradientsParams::from_grads(total.backward(), model);
    if loss.bounded_critic_objectives.is_empty() || lambda == 0.0 {
        return (grads, Vec::new());
    }
    let push = summed(&loss.bounded_critic_objectives).mul_scalar(lambda * weight);
    let mut push = GradientsParams::from_grads(push.backward(), model);
    let scales = model
        .attention
        .agents
        .iter()
        .map(|agent| {
            let (reid, critic) = (squared_norm(agent, &grads), squared_norm(agent, &push));
            let scale = if critic > 0.0 {
                (reid / critic).sqrt().min(1.0)
            } else {
                1.0
            };
            agent.visit(&mut AddScaled {
                into: &mut grads,
                from: &mut push,
                scale,
            });
            scale as f32
        })
        .collect();
    (grads, scales)
}

/// The squared norm of `grads` on `module`'s parameters.
fn squared_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    struct Sum<'a> {
        grads: &'a GradientsParams,
        sum: f64,
    }
    impl ModuleVisitor for Sum<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.sum += g.powi_scalar(2).sum().into_scalar::<f32>() as f64;
            }
        }
    }
    let mut sum = Sum { grads, sum: 0.0 };
    module.visit(&mut sum);
    sum.sum
}

/// Moves the visited parameters' gradients from `from` into `into`, times `scale`.
struct AddScaled<'a> {
    into: &'a mut GradientsParams,
    from: &'a mut GradientsParams,
    scale: f64,
}

impl ModuleVisitor for AddScaled<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(push) = self.from.remove::<D>(param.id) {
            let push = push.mul_scalar(self.scale);
            let sum = match self.into.remove::<D>(param.id) {
                Some(g) => g + push,
                None => push,
            };
            self.into.register(param.id, sum);
        }
    }
}

/// What a step measured (all means over the batch). Serialised as the training log's
/// fields of a step (`metrics.jsonl`, where it is flattened into the record).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// The critics' calibration: for each module `l`, the mean `V_l` over the samples whose
    /// realised reward `R` was 0, 1 and 2 (`None` where no sample had that reward).
    pub value_by_reward: Vec<[Option<f32>; 3]>,
    /// Samples with realised reward 0, 1 and 2 (empty without the critic).
    pub reward_counts: Vec<usize>,
    /// With compatible critics: the share of the variance of their target
    /// `y = S(A′) − S(A)` over the batch that their joint estimate explains,
    /// `1 − J_mse / var(y)` (absent otherwise, and from logs written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critic_fit: Option<f32>,
    /// With compatible critics: the scale `s_l ≤ 1` of `λ·∇J_cri` on each agent
    /// ([`step_gradients`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critic_push_scale: Option<Vec<f32>>,
    /// With the counterfactual effect loss: `J_eff` (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterfactual: Option<f32>,
}

/// Mean `V_l` per realised reward, per module, and the counts per reward.
///
/// # Shapes
/// - `values`: `[modules, N]`, `rewards`: `[N]` (values in {0, 1, 2})
fn calibration(values: &Tensor<2>, rewards: &Tensor<1>) -> (Vec<[Option<f32>; 3]>, Vec<usize>) {
    let [modules, n] = values.dims();
    let v = floats(values);
    let r = floats(rewards);
    assert_eq!(r.len(), n, "one reward per sample");
    let counts = counts(&r);
    let per_module = (0..modules)
        .map(|l| {
            let mut sums = [0.0f64; 3];
            for (i, &x) in r.iter().enumerate() {
                sums[reward_class(x)] += v[l * n + i] as f64;
            }
            std::array::from_fn(|k| (counts[k] > 0).then(|| (sums[k] / counts[k] as f64) as f32))
        })
        .collect();
    (per_module, counts)
}

/// The values of a float tensor.
fn floats<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("float values")
}

/// The reward a realised `R` counts as (0, 1 or 2).
fn reward_class(x: f32) -> usize {
    (x.round().clamp(0.0, 2.0)) as usize
}

/// Samples with realised reward 0, 1 and 2.
fn counts(rewards: &[f32]) -> Vec<usize> {
    let mut counts = vec![0usize; 3];
    for &x in rewards {
        counts[reward_class(x)] += 1;
    }
    counts
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar()
}

impl StepReport {
    /// Reads the scalars of a step's loss (synchronises with the device).
    pub fn from_loss(loss: &ScalLoss) -> StepReport {
        let values =
            (!loss.values.is_empty()).then(|| Tensor::stack::<2>(loss.values.clone(), 0).detach());
        let (mut value_by_reward, mut reward_counts) = (Vec::new(), Vec::new());
        let (mean_value, critic_error) = match (&values, &loss.rewards) {
            (Some(v), Some(r)) => {
                let [modules, n] = v.dims();
                (value_by_reward, reward_counts) = calibration(v, &r.total);
                let r = r.total.clone().reshape([1, n]).expand([modules, n]);
                (
                    Some(v.clone().mean().into_scalar()),
                    Some((v.clone() - r).abs().mean().into_scalar()),
                )
            }
            (Some(v), None) => (Some(v.clone().mean().into_scalar()), None),
            (None, Some(r)) => {
                reward_counts = counts(&floats(&r.total));
                (None, None)
            }
            (None, None) => (None, None),
        };
        let critic_fit = match (&loss.critic_targets, &loss.critic_mse) {
            (Some(y), Some(mse)) => {
                let spread = (y.clone() - y.clone().mean()).powi_scalar(2).mean();
                let spread: f32 = spread.into_scalar();
                let mse: f32 = mse.clone().detach().into_scalar();
                Some(if spread > 0.0 {
                    1.0 - mse / spread
                } else {
                    0.0
                })
            }
            _ => None,
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
            value_by_reward,
            reward_counts,
            critic_fit,
            critic_push_scale: None,
            counterfactual: loss.counterfactual.clone().map(|t| scalar(t.detach())),
        }
    }
}

impl StepReport {
    /// The mean of equal shards' reports: losses and rates averaged, calibration averaged
    /// with the shards' reward counts as weights, counts summed.
    ///
    /// # Panics
    /// If `reports` is empty.
    pub fn mean(reports: &[StepReport]) -> StepReport {
        assert!(!reports.is_empty(), "no reports to average");
        let n = reports.len() as f32;
        let mean = |f: &dyn Fn(&StepReport) -> f32| reports.iter().map(f).sum::<f32>() / n;
        let mean_opt = |f: &dyn Fn(&StepReport) -> Option<f32>| {
            reports
                .iter()
                .map(f)
                .collect::<Option<Vec<f32>>>()
                .map(|v| v.iter().sum::<f32>() / n)
        };
        let first = &reports[0];
        let mut reward_counts = first.reward_counts.clone();
        for r in &reports[1..] {
            for (total, c) in reward_counts.iter_mut().zip(&r.reward_counts) {
                *total += c;
            }
        }
        let value_by_reward = (0..first.value_by_reward.len())
            .map(|l| {
                std::array::from_fn(|k| {
                    let (mut sum, mut count) = (0.0f64, 0usize);
                    for r in reports {
                        if let (Some(v), Some(&c)) = (
                            r.value_by_reward.get(l).and_then(|m| m[k]),
                            r.reward_counts.get(k),
                        ) {
                            sum += v as f64 * c as f64;
                            count += c;
                        }
                    }
                    (count > 0).then(|| (sum / count as f64) as f32)
                })
            })
            .collect();
        StepReport {
            loss: mean(&|r| r.loss),
            triplet: mean(&|r| r.triplet),
            classification: mean(&|r| r.classification),
            critic_objective: mean_opt(&|r| r.critic_objective),
            critic_mse: mean_opt(&|r| r.critic_mse),
            correct_rate: mean_opt(&|r| r.correct_rate),
            amelioration_rate: mean_opt(&|r| r.amelioration_rate),
            mean_value: mean_opt(&|r| r.mean_value),
            critic_error: mean_opt(&|r| r.critic_error),
            value_by_reward,
            reward_counts,
            critic_fit: mean_opt(&|r| r.critic_fit),
            critic_push_scale: first.critic_push_scale.as_ref().map(|first| {
                (0..first.len())
                    .map(|l| {
                        let each = reports
                            .iter()
                            .filter_map(|r| r.critic_push_scale.as_ref().and_then(|s| s.get(l)));
                        each.sum::<f32>() / n
                    })
                    .collect()
            }),
            counterfactual: mean_opt(&|r| r.counterfactual),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn calibration_groups_values_by_realised_reward() {
        let device = Device::flex();
        // 2 modules, 5 samples with rewards 0, 2, 2, 1, 0.
        let values = Tensor::<2>::from_data(
            TensorData::new(
                vec![0.1f32, 1.9, 1.7, 1.0, 0.3, 0.5, 1.5, 2.5, 0.8, -0.1],
                [2, 5],
            ),
            &device,
        );
        let rewards = Tensor::<1>::from_data(
            TensorData::new(vec![0.0f32, 2.0, 2.0, 1.0, 0.0], [5]),
            &device,
        );
        let (per_module, counts) = calibration(&values, &rewards);
        assert_eq!(counts, vec![2, 1, 2]);
        let close = |a: Option<f32>, b: f32| (a.unwrap() - b).abs() < 1e-6;
        assert!(
            close(per_module[0][0], 0.2)
                && close(per_module[0][1], 1.0)
                && close(per_module[0][2], 1.8)
        );
        assert!(
            close(per_module[1][0], 0.2)
                && close(per_module[1][1], 0.8)
                && close(per_module[1][2], 2.0)
        );
        let rewards = Tensor::<1>::from_data(TensorData::new(vec![1.0f32; 5], [5]), &device);
        let (per_module, counts) = calibration(&values, &rewards);
        assert_eq!(counts, vec![0, 5, 0]);
        assert!(per_module[0][0].is_none() && per_module[0][2].is_none());
    }
}
