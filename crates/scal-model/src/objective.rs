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

use crate::ScalModel;
use burn::config::Config;
use burn::module::Module;
use burn::tensor::Distribution;
use burn::tensor::{Int, Tensor};
use scal_attention::Gating;
use scal_losses::{CriticMse, CriticObjective, LabelSmoothedCrossEntropyConfig, TripletLossConfig};
use scal_rewards::{
    PlantedRewardConfig, RewardKind, Rewards, median, planted_direction, planted_directions,
    planted_reward, planted_row_scores, planted_score, rewards,
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
    /// The attended stages' inputs, detached: what the agents' `J_cri` reads (empty without
    /// the critic).
    pub agent_inputs: Vec<Tensor<4>>,
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
/// (a trainer's configuration refuses both).
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
    let (mut j_cri, mut j_mse, mut reward) = (None, None, None);
    let mut agent_inputs = Vec::new();
    let mut values = out.values;
    if model.has_attention() && config.critic {
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
            .then(|| module_rewards(&copy, images.clone(), &out.logits, &labels, config.reward));
        // The pass whose logits earn R and whose maps the critics learn from: this one, or
        // an exploring one.
        let (acting_logits, acting_maps) = if config.exploration > 0.0 {
            let std = config.exploration;
            let explored = copy.forward(images, Gating::Perturbed { std });
            values = model.critics.forward(
                explored
                    .stage_inputs
                    .iter()
                    .map(|x| x.clone().detach())
                    .collect(),
                explored.maps.iter().map(|a| a.clone().detach()).collect(),
            );
            (explored.logits, explored.maps)
        } else {
            (out.logits.clone(), out.maps)
        };
        let mut r = rewards(acting_logits, plain.logits, labels.clone(), config.reward);
        if config.reward.is_planted() {
            r.total = planted_total(&acting_maps, &labels, config);
        }
        agent_inputs = out
            .stage_inputs
            .iter()
            .map(|x| x.clone().detach())
            .collect();
        let cri = agents_critic_objective(model, &agent_inputs);
        let mse = match &targets {
            Some(each) => CriticMse::new().forward_each(&values, each),
            None => CriticMse::new().forward(&values, r.total.clone()),
        };
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
        values,
        logits: out.logits,
        agent_inputs,
    }
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
    planted_reward(score, threshold, flips)
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
}

/// Mean `V_l` per realised reward, per module, and the counts per reward.
///
/// # Shapes
/// - `values`: `[modules, N]`, `rewards`: `[N]` (values in {0, 1, 2})
fn calibration(values: &Tensor<2>, rewards: &Tensor<1>) -> (Vec<[Option<f32>; 3]>, Vec<usize>) {
    let [modules, n] = values.dims();
    let v: Vec<f32> = values
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("float values");
    let r: Vec<f32> = rewards
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("float rewards");
    assert_eq!(r.len(), n, "one reward per sample");
    let class = |x: f32| (x.round().clamp(0.0, 2.0)) as usize;
    let mut counts = vec![0usize; 3];
    for &x in &r {
        counts[class(x)] += 1;
    }
    let per_module = (0..modules)
        .map(|l| {
            let mut sums = [0.0f64; 3];
            for (i, &x) in r.iter().enumerate() {
                sums[class(x)] += v[l * n + i] as f64;
            }
            std::array::from_fn(|k| (counts[k] > 0).then(|| (sums[k] / counts[k] as f64) as f32))
        })
        .collect();
    (per_module, counts)
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
            value_by_reward,
            reward_counts,
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
