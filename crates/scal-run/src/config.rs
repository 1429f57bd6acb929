//! The training configuration: profiles, JSON files and command-line overrides, checked
//! field by field.

use std::path::Path;

use burn::config::Config;
use scal_attention::AttentionKind;
use scal_backbone::ResNetArch;
use scal_data::synth::SynthPreset;
use scal_data::{DatasetName, LoaderOptions, RandomErasing, TrainTransform};
use scal_model::{CriticKind, CriticScaling, ScalConfig};
use serde_json::Value;

use crate::TrainError;
use crate::backend::Backend;
use crate::step::{CriticScore, CriticTarget, StepOptions, UpdateOrder};

/// The defaults of the crates that use each hyper-parameter, which the sections below take
/// as theirs: one default per hyper-parameter (the network's in `scal-model`, the
/// augmentation's and the loader's in `scal-data`).
mod leaf {
    use scal_data::{LoaderOptions, RandomErasing, TrainTransform};
    use scal_model::ScalConfig;

    pub fn network() -> ScalConfig {
        ScalConfig::new(1)
    }

    pub fn loader() -> LoaderOptions {
        LoaderOptions::default()
    }

    pub fn transform() -> TrainTransform {
        let n = network();
        TrainTransform::new(n.height as u32, n.width as u32)
    }

    pub fn erasing() -> RandomErasing {
        RandomErasing::default()
    }
}

/// The network.
#[derive(Config, Debug, PartialEq)]
pub struct ModelOptions {
    /// Backbone depth.
    #[config(default = "leaf::network().arch")]
    pub arch: ResNetArch,
    /// Backbone base width (64 = torchvision).
    #[config(default = "leaf::network().base_width")]
    pub base_width: usize,
    /// Stride of the last stage.
    #[config(default = "leaf::network().last_stride")]
    pub last_stride: usize,
    /// ReLU after the stem's batch norm.
    #[config(default = "leaf::network().stem_relu")]
    pub stem_relu: bool,
    /// Attention modules: none, spatial or channel.
    #[config(default = "leaf::network().attention")]
    pub attention: AttentionKind,
    /// Hidden width of channel modules.
    #[config(default = "leaf::network().channel_hidden")]
    pub channel_hidden: usize,
    /// Reduction of spatial modules.
    #[config(default = "leaf::network().spatial_reduction")]
    pub spatial_reduction: usize,
    /// Hidden width of the critics.
    #[config(default = "leaf::network().critic_hidden")]
    pub critic_hidden: usize,
    /// How the critics scale their inputs: `raw` (the paper's) or `batch-standardized`
    /// (each input feature in units of its batch's spread; beyond the paper).
    #[config(default = "CriticScaling::Raw")]
    pub critic_scaling: CriticScaling,
    /// Which critics: `paper` (`V(X, A)` regressing the reward) or `compatible` (linear in
    /// the map's deviation, `Q = ⟨A′ − A, G(X, y)⟩ + b`, learning `S(A′) − S(A)` under
    /// exploration: needs `step.exploration > 0`; beyond the paper).
    #[config(default = "CriticKind::Paper")]
    pub critic_kind: CriticKind,
    /// torchvision weights for the backbone (.pth/.safetensors), or none (from scratch).
    #[config(default = "None")]
    pub pretrained: Option<String>,
}

impl ModelOptions {
    /// The network of these options for `num_classes` identities and `height × width`
    /// inputs.
    pub fn network(&self, num_classes: usize, height: usize, width: usize) -> ScalConfig {
        ScalConfig::new(num_classes)
            .with_arch(self.arch)
            .with_base_width(self.base_width)
            .with_last_stride(self.last_stride)
            .with_stem_relu(self.stem_relu)
            .with_height(height)
            .with_width(width)
            .with_attention(self.attention)
            .with_channel_hidden(self.channel_hidden)
            .with_spatial_reduction(self.spatial_reduction)
            .with_critic_hidden(self.critic_hidden)
            // Raw as `None`: the paper's model.json stays as it was before the field existed.
            .with_critic_scaling(
                (self.critic_scaling != CriticScaling::Raw).then_some(self.critic_scaling),
            )
            // The paper's as `None`, likewise.
            .with_critic_kind((self.critic_kind != CriticKind::Paper).then_some(self.critic_kind))
    }
}

/// The data.
#[derive(Config, Debug, PartialEq)]
pub struct DataOptions {
    /// Dataset reader.
    #[config(default = "DatasetName::Market1501")]
    pub dataset: DatasetName,
    /// Dataset folder.
    #[config(default = "String::from(\"datasets/synth\")")]
    pub root: String,
    /// Generate the synthetic dataset at `root` when it is missing (quick profile).
    #[config(default = false)]
    pub synthesize_if_missing: bool,
    /// The synthetic generator (and its version) `root` holds: `easy` (`datasets/synth`;
    /// also any real dataset) or `hard-v1` (`synth-hard`). Used to generate a missing
    /// folder, and checked against the folder's `synth.json`.
    #[config(default = "SynthPreset::Easy")]
    pub synth_preset: SynthPreset,
    /// Model input height.
    #[config(default = "leaf::network().height")]
    pub height: usize,
    /// Model input width.
    #[config(default = "leaf::network().width")]
    pub width: usize,
    /// Identities per batch.
    #[config(default = "leaf::loader().p")]
    pub p: usize,
    /// Images per identity per batch.
    #[config(default = "leaf::loader().k")]
    pub k: usize,
    /// Zero padding before the random crop.
    #[config(default = "leaf::transform().padding as usize")]
    pub padding: usize,
    /// Probability of a horizontal flip.
    #[config(default = "leaf::transform().flip_probability as f64")]
    pub flip_probability: f64,
    /// Probability of random erasing.
    #[config(default = "leaf::erasing().probability as f64")]
    pub erasing_probability: f64,
    /// Keep decoded, resized images in memory.
    #[config(default = "leaf::loader().cache")]
    pub cache: bool,
    /// Batches prepared ahead.
    #[config(default = "leaf::loader().prefetch")]
    pub prefetch: usize,
    /// Stop on an undecodable image instead of replacing it.
    #[config(default = "leaf::loader().strict")]
    pub strict: bool,
    /// MSMT17: train on list_train + list_val.
    #[config(default = false)]
    pub msmt17_combine_val: bool,
}

impl DataOptions {
    /// The training augmentation of these options (the rest of [`RandomErasing`] as its
    /// defaults).
    pub fn transform(&self) -> TrainTransform {
        let mut transform = TrainTransform::new(self.height as u32, self.width as u32);
        transform.padding = self.padding as u32;
        transform.flip_probability = self.flip_probability as f32;
        transform.erasing = (self.erasing_probability > 0.0).then(|| RandomErasing {
            probability: self.erasing_probability as f32,
            ..RandomErasing::default()
        });
        transform
    }

    /// The loader options of these options, seeded with `seed`.
    pub fn loader(&self, seed: u64) -> LoaderOptions {
        LoaderOptions {
            p: self.p,
            k: self.k,
            seed,
            prefetch: self.prefetch,
            cache: self.cache,
            strict: self.strict,
        }
    }
}

/// Adam and the learning-rate schedule (epoch-based, as reid-strong-baseline's
/// `WarmupMultiStepLR`).
#[derive(Config, Debug, PartialEq)]
pub struct OptimOptions {
    /// Base learning rate.
    #[config(default = 3.5e-4)]
    pub lr: f64,
    /// L2 weight decay (Adam's, as in PyTorch) of every parameter but the critics'.
    #[config(default = 5e-4)]
    pub weight_decay: f64,
    /// L2 weight decay of the critics' parameters (none in the method: the critics regress
    /// the reward, and decay would pull their estimates toward zero).
    #[config(default = 0.0)]
    pub critic_weight_decay: f64,
    /// The critics' learning rate as a multiple of the schedule's (which the agents, the
    /// backbone and the head follow): 1 trains them at the same rate.
    #[config(default = 1.0)]
    pub critic_lr_factor: f64,
    /// Adam's epsilon (PyTorch's default).
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Epochs of linear warm-up.
    #[config(default = 10)]
    pub warmup_epochs: usize,
    /// Learning-rate factor at the start of the warm-up.
    #[config(default = 0.01)]
    pub warmup_factor: f64,
    /// Epochs after which the rate is multiplied by `gamma`.
    #[config(default = "vec![40, 70]")]
    pub milestones: Vec<usize>,
    /// Decay factor at each milestone.
    #[config(default = 0.1)]
    pub gamma: f64,
    /// Training epochs.
    #[config(default = 120)]
    pub epochs: usize,
}

impl OptimOptions {
    /// The learning rate of `epoch` (0-based): linear warm-up from `warmup_factor`, then ×`gamma`
    /// at each milestone passed. A pure function of the epoch, so a resumed run needs no
    /// scheduler state.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let warmup = if epoch < self.warmup_epochs {
            let alpha = epoch as f64 / self.warmup_epochs as f64;
            self.warmup_factor * (1.0 - alpha) + alpha
        } else {
            1.0
        };
        let decays = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.lr * warmup * self.gamma.powi(decays as i32)
    }
}

/// Evaluation during and after training.
#[derive(Config, Debug, PartialEq)]
pub struct EvalOptions {
    /// Evaluate every this many epochs (0: only at the end). The last epoch is always
    /// evaluated.
    #[config(default = 10)]
    pub every_epochs: usize,
    /// Average each feature with its mirror's.
    #[config(default = true)]
    pub flip: bool,
    /// Also report k-reciprocal re-ranking (k1 20, k2 6, λ 0.3).
    #[config(default = true)]
    pub rerank: bool,
    /// Images per forward pass.
    #[config(default = 64)]
    pub batch: usize,
    /// Training images on which each attention module's amelioration rate is measured at
    /// every evaluation (0: not measured).
    #[config(default = 256)]
    pub amelioration_samples: usize,
}

/// Everything a training run needs; saved as `config.json` in the run folder.
#[derive(Config, Debug, PartialEq)]
pub struct TrainingConfig {
    /// The profile this configuration started from.
    #[config(default = "String::from(\"quick\")")]
    pub profile: String,
    /// Seed of the model initialisation, the sampler and the augmentation.
    #[config(default = 0)]
    pub seed: u64,
    /// Compute backend.
    #[config(default = "Backend::Flex")]
    pub backend: Backend,
    /// The network.
    #[config(default = "ModelOptions::new()")]
    pub model: ModelOptions,
    /// The data.
    #[config(default = "DataOptions::new()")]
    pub data: DataOptions,
    /// Optimizer and schedule.
    #[config(default = "OptimOptions::new()")]
    pub optim: OptimOptions,
    /// The losses of a step (λ, critic on/off, reward kind, triplet, smoothing).
    #[config(default = "StepOptions::new()")]
    pub step: StepOptions,
    /// Epochs with the critic objective off (the critics learn first).
    #[config(default = 0)]
    pub critic_warmup_epochs: usize,
    /// Evaluation.
    #[config(default = "EvalOptions::new()")]
    pub eval: EvalOptions,
    /// Also save the last checkpoint every this many iterations (0: only at epoch ends).
    #[config(default = 0)]
    pub checkpoint_every: usize,
    /// Data-parallel training: indices into the backend's devices, in the order the backend
    /// enumerates them. Each step's P × K batch is split into equal
    /// shards of whole identities, one per device; the gradients are averaged on the first
    /// device, which holds the model and the optimizer. `[0]`: one device. An index may
    /// repeat (several replicas on one device: only useful to exercise the path on a
    /// one-device machine).
    #[config(default = "vec![0]")]
    pub devices: Vec<usize>,
    /// `backend: remote` only: the device servers, `ws://HOST:PORT` (or
    /// `HOST:PORT`), whose devices `devices` indexes in this order. Where the run computes,
    /// not what: a resumed run may name other hosts.
    #[config(default = "Vec::new()")]
    pub hosts: Vec<String>,
}

/// The version of `config.json`'s format this crate writes (and the newest it reads): the
/// file's first key, `"format"`. A file without it (written before the field existed) is
/// format 1; a configuration file given with `--config` may carry it too (a run's
/// `config.json` reused).
pub const FORMAT: u32 = 1;

/// `config.json` as written: the format's version, then the configuration's fields (each
/// number formatted by its own type, as `Config::save` does).
#[derive(serde::Serialize)]
struct Written<'a> {
    format: u32,
    #[serde(flatten)]
    config: &'a TrainingConfig,
}

/// Takes `"format"` out of a configuration file's top level (absent: format 1), refusing a
/// format this version does not read; `origin` is `PATH: `.
fn take_format(value: &mut Value, origin: &str) -> Result<(), TrainError> {
    let Some(format) = value.as_object_mut().and_then(|m| m.shift_remove("format")) else {
        return Ok(());
    };
    match format.as_u64() {
        Some(f) if (1..=u64::from(FORMAT)).contains(&f) => Ok(()),
        _ => Err(TrainError::FieldValue {
            origin: origin.to_string(),
            field: "format".into(),
            problem: format!(
                "{format} is not a format of config.json this version of scal reads (1 to {FORMAT}): read it with the version that wrote it, or a later one"
            ),
        }),
    }
}

/// The most epochs a run may have: the sampler draws each epoch's batches before the first
/// iteration, so a mistyped count (`--epochs 10000000`) would spend hours there silently.
pub const MAX_EPOCHS: usize = 100_000;

/// Where the `paper` profile expects torchvision's ImageNet ResNet-50 weights.
pub const PAPER_WEIGHTS: &str = "weights/resnet50-0676ba61.pth";

/// torchvision's download address of the ImageNet weights of `arch`.
pub fn torchvision_weights_url(arch: ResNetArch) -> &'static str {
    match arch {
        ResNetArch::ResNet18 => "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        ResNetArch::ResNet34 => "https://download.pytorch.org/models/resnet34-b627a593.pth",
        ResNetArch::ResNet50 => "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        ResNetArch::ResNet101 => "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    }
}

/// The named starting points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The default: the synthetic dataset on the CPU, finished within 15 minutes on 2 cores.
    Quick,
    /// The paper's recipe for Market-1501 on a GPU (`docs/scal-method.md`).
    Paper,
}

impl std::str::FromStr for Profile {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "quick" => Ok(Profile::Quick),
            "paper" => Ok(Profile::Paper),
            other => Err(TrainError::UnknownName {
                what: "profile",
                name: other.to_string(),
                expected: "quick or paper",
            }),
        }
    }
}

impl TrainingConfig {
    /// The configuration of a profile.
    pub fn profile(profile: Profile) -> TrainingConfig {
        match profile {
            Profile::Paper => TrainingConfig::new()
                .with_profile("paper".into())
                .with_model(ModelOptions::new().with_pretrained(Some(PAPER_WEIGHTS.into())))
                .with_data(
                    DataOptions::new()
                        .with_root("datasets/market1501".into())
                        .with_cache(false),
                ),
            Profile::Quick => TrainingConfig::new()
                .with_profile("quick".into())
                .with_model(
                    ModelOptions::new()
                        .with_arch(ResNetArch::ResNet18)
                        .with_base_width(32)
                        .with_critic_hidden(64),
                )
                .with_data(
                    DataOptions::new()
                        .with_synthesize_if_missing(true)
                        .with_height(128)
                        .with_width(64)
                        .with_p(16)
                        .with_k(4)
                        .with_padding(5)
                        .with_cache(true),
                )
                .with_optim(
                    OptimOptions::new()
                        .with_lr(1e-3)
                        .with_warmup_epochs(3)
                        .with_milestones(vec![24, 32])
                        .with_epochs(36),
                )
                .with_eval(EvalOptions::new().with_every_epochs(12)),
        }
    }

    /// Checks values that serde cannot: sizes, probabilities, schedule, devices.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.validate_data()?;
        self.validate_training()?;
        self.validate_devices()
    }

    fn validate_data(&self) -> Result<(), TrainError> {
        let d = &self.data;
        if d.p < 2 {
            return invalid(
                "data.p",
                format!(
                    "the triplet loss needs at least 2 identities per batch, got {}",
                    d.p
                ),
            );
        }
        if d.k < 2 {
            return invalid(
                "data.k",
                format!(
                    "the triplet loss needs at least 2 images per identity, got {}",
                    d.k
                ),
            );
        }
        if let Err(problem) = scal_data::check_input_size(d.height, d.width) {
            return invalid("data.height/width", problem);
        }
        if d.padding > d.height.min(d.width) {
            return invalid(
                "data.padding",
                format!(
                    "at most the input's smaller side ({}), got {}: the random crops would be mostly padding",
                    d.height.min(d.width),
                    d.padding
                ),
            );
        }
        for (field, v) in [
            ("data.flip_probability", d.flip_probability),
            ("data.erasing_probability", d.erasing_probability),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return invalid(field, format!("a probability in [0, 1], got {v}"));
            }
        }
        Ok(())
    }

    fn validate_training(&self) -> Result<(), TrainError> {
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return invalid("optim.lr", format!("must be positive, got {}", o.lr));
        }
        if o.epochs == 0 || o.epochs > MAX_EPOCHS {
            return invalid(
                "optim.epochs",
                format!("between 1 and {MAX_EPOCHS}, got {}", o.epochs),
            );
        }
        for (field, v) in [
            ("optim.weight_decay", o.weight_decay),
            ("optim.critic_weight_decay", o.critic_weight_decay),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return invalid(field, format!("must be zero or positive, got {v}"));
            }
        }
        if !(o.critic_lr_factor > 0.0 && o.critic_lr_factor.is_finite()) {
            return invalid(
                "optim.critic_lr_factor",
                format!("must be positive, got {}", o.critic_lr_factor),
            );
        }
        if o.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return invalid(
                "optim.milestones",
                format!("must increase, got {:?}", o.milestones),
            );
        }
        if !(0.0..=1.0).contains(&self.step.label_smoothing) {
            return invalid(
                "step.label_smoothing",
                format!("in [0, 1], got {}", self.step.label_smoothing),
            );
        }
        if !(self.step.lambda >= 0.0 && self.step.lambda.is_finite()) {
            return invalid(
                "step.lambda",
                format!("must be >= 0, got {}", self.step.lambda),
            );
        }
        self.validate_critic_study()?;
        self.validate_sizes()?;
        if !matches!(self.model.last_stride, 1 | 2) {
            return invalid(
                "model.last_stride",
                format!("1 or 2, got {}", self.model.last_stride),
            );
        }
        if self.eval.batch == 0 {
            return invalid("eval.batch", "must be at least 1".into());
        }
        Ok(())
    }

    /// Widths that make a layer of zero units, and the numbers of the losses and the
    /// optimizer that would make the step meaningless or divide by zero.
    fn validate_sizes(&self) -> Result<(), TrainError> {
        let m = &self.model;
        for (field, v) in [
            ("model.base_width", m.base_width),
            ("model.channel_hidden", m.channel_hidden),
            ("model.spatial_reduction", m.spatial_reduction),
            ("model.critic_hidden", m.critic_hidden),
        ] {
            if v == 0 {
                return invalid(field, "a layer width: must be at least 1, got 0".into());
            }
        }
        let o = &self.optim;
        for (field, v) in [
            ("optim.epsilon", o.epsilon),
            ("optim.warmup_factor", o.warmup_factor),
            ("optim.gamma", o.gamma),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return invalid(field, format!("must be positive, got {v}"));
            }
        }
        let margin = self.step.triplet.margin;
        if !(margin >= 0.0 && margin.is_finite()) {
            return invalid(
                "step.triplet.margin",
                format!("the triplet margin must be zero or positive, got {margin}"),
            );
        }
        if self.step.counterfactual && self.model.attention == AttentionKind::None {
            return invalid(
                "step.counterfactual",
                "the counterfactual effect loss intervenes on attention maps, and model.attention = none has none: choose an attention".into(),
            );
        }
        if self.step.critic && self.model.attention == AttentionKind::None {
            return invalid(
                "step.critic",
                "the critics judge attention maps, and model.attention = none has none: set step.critic = false (--critic off), or choose an attention".into(),
            );
        }
        Ok(())
    }

    /// The opt-in fields for studying the critic (planted reward, exploration, per-module
    /// targets) need a critic to act on: without one they would change nothing, silently.
    fn validate_critic_study(&self) -> Result<(), TrainError> {
        let step = &self.step;
        let critic = step.critic && self.model.attention != AttentionKind::None;
        if step.critic_target == CriticTarget::PerModule {
            let problem = if !critic {
                Some(
                    "per-module targets train critics, which need step.critic = true and attention",
                )
            } else if step.exploration > 0.0 {
                Some("per-module targets compare unperturbed passes: set step.exploration = 0")
            } else if step.reward.is_planted() {
                Some("the planted reward has no share per module: use ra or both")
            } else if step.reward == scal_rewards::RewardKind::Correct {
                Some(
                    "with step.reward = rc every module's reward is R_c, the shared one: use ra or both",
                )
            } else {
                None
            };
            if let Some(problem) = problem {
                return invalid("step.critic_target", problem.into());
            }
        }
        self.validate_compatible_critic(critic)?;
        self.validate_self_critical(critic)?;
        if !(step.exploration >= 0.0 && step.exploration.is_finite()) {
            return invalid(
                "step.exploration",
                format!("a standard deviation >= 0, got {}", step.exploration),
            );
        }
        if step.exploration > 0.0 && !critic {
            return invalid(
                "step.exploration",
                "explores for the critics, which need step.critic = true and attention".into(),
            );
        }
        if !step.reward.is_planted() {
            return Ok(());
        }
        if !critic {
            return invalid(
                "step.reward",
                "the planted reward trains critics, which need step.critic = true and attention"
                    .into(),
            );
        }
        let planted = &step.planted;
        if planted.module >= 5 {
            return invalid(
                "step.planted.module",
                format!("one of the five modules 0..=4, got {}", planted.module),
            );
        }
        if !(0.0..=1.0).contains(&planted.flip_probability) {
            return invalid(
                "step.planted.flip_probability",
                format!("a probability in [0, 1], got {}", planted.flip_probability),
            );
        }
        if planted.threshold.is_some_and(|c| !c.is_finite()) {
            return invalid("step.planted.threshold", "must be finite".into());
        }
        Ok(())
    }

    /// Compatible critics learn from exploration, jointly with the agents, one target for
    /// all modules, standardising their own inputs; their score is theirs alone.
    fn validate_compatible_critic(&self, critic: bool) -> Result<(), TrainError> {
        let step = &self.step;
        if self.model.critic_kind == CriticKind::Paper {
            if step.critic_score != CriticScore::LogProb && step.self_critical_pairs == 0 {
                return invalid(
                    "step.critic_score",
                    "the score of compatible critics or of the self-critical estimator: set model.critic_kind = compatible or step.self_critical_pairs > 0, or leave it at log-prob".into(),
                );
            }
            return Ok(());
        }
        let problem = if !critic {
            Some((
                "model.critic_kind",
                "compatible critics need step.critic = true and attention",
            ))
        } else if step.exploration <= 0.0 || step.exploration.is_nan() {
            Some((
                "step.exploration",
                "compatible critics learn S(A') − S(A) from exploring maps: set step.exploration > 0 (e.g. 0.5)",
            ))
        } else if step.update_order != UpdateOrder::Joint {
            Some((
                "step.update_order",
                "compatible critics step jointly with the agents: use joint",
            ))
        } else if step.critic_target != CriticTarget::Shared {
            Some((
                "step.critic_target",
                "compatible critics regress one target for all modules: use shared",
            ))
        } else if self.model.critic_scaling != CriticScaling::Raw {
            Some((
                "model.critic_scaling",
                "compatible critics always standardise their inputs: leave it at raw",
            ))
        } else {
            None
        };
        match problem {
            Some((field, problem)) => invalid(field, problem.into()),
            None => Ok(()),
        }
    }

    /// The self-critical estimator explores (antithetic pairs on the logits), replaces the
    /// paper's critics (which it leaves untrained) and steps jointly, one score for all
    /// modules.
    fn validate_self_critical(&self, critic: bool) -> Result<(), TrainError> {
        let step = &self.step;
        if step.self_critical_pairs == 0 {
            return Ok(());
        }
        let problem = if !critic {
            Some((
                "step.self_critical_pairs",
                "the self-critical estimator trains the agents, which needs step.critic = true and attention",
            ))
        } else if step.exploration <= 0.0 || step.exploration.is_nan() {
            Some((
                "step.exploration",
                "the self-critical estimator explores z ± σε: set step.exploration > 0 (its σ, e.g. 0.5)",
            ))
        } else if self.model.critic_kind != CriticKind::Paper {
            Some((
                "model.critic_kind",
                "the self-critical estimator replaces the critics: leave it at paper",
            ))
        } else if step.update_order != UpdateOrder::Joint {
            Some((
                "step.update_order",
                "the self-critical estimator has no critic to step first: use joint",
            ))
        } else if step.critic_target != CriticTarget::Shared {
            Some((
                "step.critic_target",
                "the self-critical estimator scores every module together: use shared",
            ))
        } else {
            None
        };
        match problem {
            Some((field, problem)) => invalid(field, problem.into()),
            None => Ok(()),
        }
    }

    fn validate_devices(&self) -> Result<(), TrainError> {
        if self.devices.is_empty() {
            return invalid("devices", "name at least one device, e.g. [0]".into());
        }
        if !self.data.p.is_multiple_of(self.devices.len()) {
            return invalid(
                "devices",
                format!(
                    "{} devices cannot share {} identities per batch equally: data.p must be a multiple of the number of devices",
                    self.devices.len(),
                    self.data.p
                ),
            );
        }
        if self.devices.len() > 1 && self.step.update_order == UpdateOrder::CriticFirst {
            return invalid(
                "step.update_order",
                format!(
                    "critic_first runs on one device, but {} devices are named: use joint or one device",
                    self.devices.len()
                ),
            );
        }
        if self.backend == Backend::Remote && self.hosts.is_empty() {
            return invalid(
                "hosts",
                "backend remote needs the servers' addresses: ws://HOST:PORT, one per machine"
                    .into(),
            );
        }
        if self.backend != Backend::Remote && !self.hosts.is_empty() {
            return invalid(
                "hosts",
                format!(
                    "only read by backend remote, but backend is {}: set backend to remote or leave hosts empty",
                    self.backend
                ),
            );
        }
        for host in &self.hosts {
            crate::backend::host_url(host)?;
        }
        Ok(())
    }

    /// Loads a configuration: the profile's, overlaid with a JSON file (partial: only the
    /// fields it names) and then with `path=value` overrides (`model.attention=spatial`,
    /// `optim.epochs=5`). Unknown fields and ill-typed values are errors that name them.
    pub fn resolve(
        profile: Profile,
        file: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<TrainingConfig, TrainError> {
        TrainingConfig::profile(profile).overlaid(file, overrides)
    }

    /// This configuration overlaid with a JSON file and `path=value` overrides (see
    /// [`TrainingConfig::resolve`]).
    pub fn overlaid(
        &self,
        file: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<TrainingConfig, TrainError> {
        self.edited(file, |_| {}, overrides)
    }

    /// This configuration overlaid with a JSON file (only the fields it names), then changed
    /// by `edit` (the command line's typed flags), then by `field=value` overrides (`--set`),
    /// and validated. An override's value is read by its field's own type: a text field
    /// (a path, a name) takes the text as it is (`data.root=2024` is the folder `2024`), a
    /// number, a switch or a list is read as JSON (`data.p=8`, `step.critic=false`,
    /// `devices=[0,1]`), and `null` empties an optional field. A value the field cannot
    /// take is an error naming the field and what it expects.
    pub fn edited(
        &self,
        file: Option<&Path>,
        edit: impl FnOnce(&mut TrainingConfig),
        overrides: &[(String, String)],
    ) -> Result<TrainingConfig, TrainError> {
        let mut config = self.with_file(file)?;
        edit(&mut config);
        let mut value = serde_json::to_value(&config).expect("serialisable");
        for (key, raw) in overrides {
            value = with_override(value, key, raw)?;
        }
        let config: TrainingConfig =
            serde_path_to_error::deserialize(value).map_err(|e| TrainError::FieldValue {
                origin: String::new(),
                field: e.path().to_string(),
                problem: e.inner().to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// This configuration overlaid with a JSON file's fields (not validated yet).
    fn with_file(&self, file: Option<&Path>) -> Result<TrainingConfig, TrainError> {
        let mut value = serde_json::to_value(self).expect("serialisable");
        if let Some(path) = file {
            let file_error = |problem: String| TrainError::ConfigFile {
                path: path.to_path_buf(),
                problem,
            };
            let text = read_config_text(path).map_err(file_error)?;
            let mut patch: Value = serde_json::from_str(&text)
                .map_err(|e| file_error(format!("not valid JSON: {e}")))?;
            if !patch.is_object() {
                return Err(file_error(format!(
                    "holds {}, not a JSON object of fields such as {{\"optim\": {{\"epochs\": 3}}}}",
                    json_kind(&patch)
                )));
            }
            take_format(&mut patch, &format!("{}: ", path.display()))?;
            overlay(&mut value, &patch, "", &path.display().to_string())?;
        }
        let origin = file.map_or_else(String::new, |p| format!("{}: ", p.display()));
        serde_path_to_error::deserialize(value).map_err(|e| TrainError::FieldValue {
            origin,
            field: e.path().to_string(),
            problem: e.inner().to_string(),
        })
    }

    /// `config.json`'s text: pretty JSON, `"format"` ([`FORMAT`]) first, then the fields.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&Written {
            format: FORMAT,
            config: self,
        })
        .expect("serialisable")
    }

    /// Writes `config.json` ([`TrainingConfig::to_json`]); the caller stages it when it
    /// replaces one.
    ///
    /// # Errors
    /// The system's error when the file cannot be written.
    pub fn save_json(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_json())
    }

    /// Reads a configuration saved by a run (`config.json`), naming the file on error. A
    /// file without `"format"` is format 1 (written before the field existed); a later
    /// format is refused. A field the file lacks (saved by a version before the field
    /// existed) takes its default, which is what that version did; an unknown field is an
    /// error.
    pub fn load_json(path: &Path) -> Result<TrainingConfig, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = format!("{}: ", path.display());
        let mut de = serde_json::Deserializer::from_str(&text);
        let mut saved: Value =
            serde_path_to_error::deserialize(&mut de).map_err(|e| TrainError::FieldValue {
                origin: origin.clone(),
                field: e.path().to_string(),
                problem: e.inner().to_string(),
            })?;
        take_format(&mut saved, &origin)?;
        let mut value = serde_json::to_value(TrainingConfig::new()).expect("serialisable");
        overlay(&mut value, &saved, "", &path.display().to_string())?;
        serde_path_to_error::deserialize(value).map_err(|e| TrainError::FieldValue {
            origin,
            field: e.path().to_string(),
            problem: e.inner().to_string(),
        })
    }

    /// Lines `field: old -> new` for the fields that differ: what the run computes. Where it
    /// computes (`hosts`) and where its dataset lies (`data.root`) are not part of it: a
    /// resumed run may reach other servers, and read its dataset from where it moved (the
    /// trainer checks that the splits hold the same images).
    pub fn differences(&self, other: &TrainingConfig) -> Vec<String> {
        let mut a = serde_json::to_value(self).expect("serialisable");
        let mut b = serde_json::to_value(other).expect("serialisable");
        for v in [&mut a, &mut b] {
            if let Some(map) = v.as_object_mut() {
                map.remove("hosts");
                if let Some(data) = map.get_mut("data").and_then(Value::as_object_mut) {
                    data.remove("root");
                }
            }
        }
        let mut out = Vec::new();
        diff(&a, &b, "", &mut out);
        out
    }

    /// The same configuration with `data.root` made absolute against the working folder (not
    /// following links), so that the run can be resumed from any folder.
    ///
    /// # Errors
    /// An I/O error when the working folder cannot be read.
    pub fn with_absolute_root(&self) -> std::io::Result<TrainingConfig> {
        let mut config = self.clone();
        config.data.root = std::path::absolute(&self.data.root)?
            .to_string_lossy()
            .into_owned();
        Ok(config)
    }
}

/// The largest configuration file read (a configuration is a few kilobytes; `--config
/// /dev/zero` would read until memory ran out).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A configuration file's text: at most [`MAX_CONFIG_BYTES`], UTF-8, without the byte-order
/// mark some editors write (Windows Notepad).
fn read_config_text(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "larger than {MAX_CONFIG_BYTES} bytes: not a configuration file"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    Ok(text
        .strip_prefix('\u{feff}')
        .map_or(text.clone(), str::to_string))
}

/// `value` (a whole configuration) with field `key` set from the command-line text `raw`,
/// read by the field's own type (see [`TrainingConfig::edited`]).
fn with_override(value: Value, key: &str, raw: &str) -> Result<Value, TrainError> {
    let with = |v: Value| -> Result<Value, TrainError> {
        let mut patch = v;
        for part in key.split('.').rev() {
            patch = Value::Object([(part.to_string(), patch)].into_iter().collect());
        }
        let mut out = value.clone();
        overlay(&mut out, &patch, "", "the command line")?;
        Ok(out)
    };
    // What the field says of a candidate: None when it takes it (another field's problem,
    // which the final check reports, does not count), else its parser's complaint.
    let refusal = |candidate: &Value| -> Option<String> {
        match serde_path_to_error::deserialize::<_, TrainingConfig>(candidate.clone()) {
            Ok(_) => None,
            Err(e) => {
                let path = e.path().to_string();
                let here = path == key
                    || path.starts_with(&format!("{key}["))
                    || path.starts_with(&format!("{key}."));
                here.then(|| e.inner().to_string())
            }
        }
    };
    let json: Result<Value, serde_json::Error> = serde_json::from_str(raw);
    if raw.trim() == "null" {
        let candidate = with(Value::Null)?;
        if refusal(&candidate).is_none() {
            return Ok(candidate);
        }
    }
    let text = with(Value::String(raw.to_string()))?;
    let Some(text_refusal) = refusal(&text) else {
        return Ok(text);
    };
    let problem = match json {
        Ok(parsed) if !parsed.is_string() => {
            let candidate = with(parsed)?;
            match refusal(&candidate) {
                None => return Ok(candidate),
                Some(problem) => problem,
            }
        }
        Err(e) if e.to_string().starts_with("number out of range") => {
            format!("{raw} is out of the range of the field's number type")
        }
        _ => text_refusal,
    };
    Err(TrainError::FieldValue {
        origin: String::new(),
        field: key.to_string(),
        problem,
    })
}

/// What kind of JSON value `v` is, for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The error of a field whose value cannot be taken.
fn invalid(field: &str, problem: String) -> Result<(), TrainError> {
    Err(TrainError::InvalidField {
        field: field.to_string(),
        problem,
    })
}

/// Writes `patch` into `base`, refusing keys `base` does not have.
fn overlay(base: &mut Value, patch: &Value, path: &str, source: &str) -> Result<(), TrainError> {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => {
                        overlay(slot, v, &here, source)?
                    }
                    Some(slot) => *slot = v.clone(),
                    None => {
                        return Err(TrainError::UnknownField {
                            field: here,
                            origin: source.to_string(),
                            known: b.keys().cloned().collect(),
                        });
                    }
                }
            }
            Ok(())
        }
        (slot, v) => {
            *slot = v.clone();
            Ok(())
        }
    }
}

fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match y.get(k) {
                    Some(vb) => diff(va, vb, &here, out),
                    None => out.push(format!("{here}: {va} -> (absent)")),
                }
            }
        }
        _ if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_follows_warmup_multistep() {
        let o = OptimOptions::new();
        assert!((o.lr_at(0) - 3.5e-6).abs() < 1e-12);
        assert!((o.lr_at(5) - 3.5e-4 * (0.01 * 0.5 + 0.5)).abs() < 1e-12);
        assert!((o.lr_at(10) - 3.5e-4).abs() < 1e-12);
        assert!((o.lr_at(40) - 3.5e-5).abs() < 1e-12);
        assert!((o.lr_at(70) - 3.5e-6).abs() < 1e-12);
        assert!((o.lr_at(119) - 3.5e-6).abs() < 1e-12);
    }

    #[test]
    fn sections_turn_into_the_leaf_configurations_they_default_to() {
        let t = TrainingConfig::new();
        let network = t.model.network(751, t.data.height, t.data.width);
        let leaf = ScalConfig::new(751);
        assert_eq!(
            serde_json::to_value(&network).unwrap(),
            serde_json::to_value(&leaf).unwrap()
        );
        assert_eq!(t.data.loader(0), LoaderOptions::default());
        let (a, b) = (t.data.transform(), TrainTransform::new(256, 128));
        assert_eq!(
            (a.padding, a.flip_probability, a.erasing, a.height, a.width),
            (b.padding, b.flip_probability, b.erasing, b.height, b.width)
        );
    }

    #[test]
    fn profiles_are_valid_and_round_trip() {
        for p in [Profile::Quick, Profile::Paper] {
            let c = TrainingConfig::profile(p);
            c.validate().unwrap();
            let json = serde_json::to_string(&c).unwrap();
            let back: TrainingConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back, c);
        }
        assert_eq!(TrainingConfig::profile(Profile::Paper).optim.epochs, 120);
    }

    /// `config.json` as written before the format field (`testdata/run-2026-12-07`).
    const OLD_CONFIG: &str = include_str!("../testdata/run-2026-12-07/config.json");

    #[test]
    fn a_config_written_before_the_format_field_reads_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("config.json");
        std::fs::write(&old, OLD_CONFIG).unwrap();
        let config = TrainingConfig::load_json(&old).unwrap();
        assert_eq!(config.model.attention, AttentionKind::Channel);
        assert_eq!((config.optim.epochs, config.eval.every_epochs), (2, 1));
        // Byte for byte: written now, it is the old file with the format's line first and
        // the fields added since at their defaults (issue 38's `model.critic_kind`,
        // `step.critic_score`, `step.self_critical_pairs` and `step.counterfactual`).
        let text = config.to_json();
        assert_eq!(
            text,
            OLD_CONFIG
                .trim_end()
                .replacen("{\n", "{\n  \"format\": 1,\n", 1)
                .replacen(
                    "\"critic_scaling\": \"raw\",\n",
                    "\"critic_scaling\": \"raw\",\n    \"critic_kind\": \"paper\",\n",
                    1
                )
                .replacen(
                    "\"critic_target\": \"shared\"\n",
                    "\"critic_target\": \"shared\",\n    \"critic_score\": \"log-prob\",\n    \"self_critical_pairs\": 0,\n    \"counterfactual\": false\n",
                    1
                )
        );
        let new = dir.path().join("new.json");
        config.save_json(&new).unwrap();
        assert_eq!(TrainingConfig::load_json(&new).unwrap(), config);
        // A run's config.json (with its format) is a valid --config file.
        assert_eq!(config.overlaid(Some(&new), &[]).unwrap(), config);
    }

    #[test]
    fn a_config_of_a_later_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let text = TrainingConfig::profile(Profile::Quick).to_json();
        std::fs::write(&path, text.replacen("\"format\": 1", "\"format\": 2", 1)).unwrap();
        let err = TrainingConfig::load_json(&path).unwrap_err().to_string();
        assert!(
            err.contains("config.json: field `format`: 2 is not a format of config.json"),
            "{err}"
        );
        let err = TrainingConfig::resolve(Profile::Quick, Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `format`"), "{err}");
    }

    #[test]
    fn a_saved_configuration_without_a_newer_field_loads_with_its_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let mut saved = serde_json::to_value(TrainingConfig::profile(Profile::Quick)).unwrap();
        saved["data"]
            .as_object_mut()
            .unwrap()
            .remove("synth_preset")
            .unwrap();
        // Runs saved before issue 38's compatible critics: the paper's critics.
        saved["model"]
            .as_object_mut()
            .unwrap()
            .remove("critic_kind")
            .unwrap();
        saved["step"]
            .as_object_mut()
            .unwrap()
            .remove("critic_score")
            .unwrap();
        std::fs::write(&path, saved.to_string()).unwrap();
        let loaded = TrainingConfig::load_json(&path).unwrap();
        assert_eq!(loaded, TrainingConfig::profile(Profile::Quick));
        // An unknown field and a wrong type are still errors that name the field.
        saved["data"]["colour"] = serde_json::json!(1);
        std::fs::write(&path, saved.to_string()).unwrap();
        let err = TrainingConfig::load_json(&path).unwrap_err().to_string();
        assert!(err.contains("data.colour"), "{err}");
        saved["data"].as_object_mut().unwrap().remove("colour");
        saved["data"]["synth_preset"] = serde_json::json!("medium");
        std::fs::write(&path, saved.to_string()).unwrap();
        let err = TrainingConfig::load_json(&path).unwrap_err().to_string();
        assert!(err.contains("data.synth_preset"), "{err}");
    }

    #[test]
    fn files_and_overrides_overlay_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.json");
        std::fs::write(
            &file,
            r#"{"optim": {"epochs": 3}, "model": {"attention": "spatial"}}"#,
        )
        .unwrap();
        let c = TrainingConfig::resolve(
            Profile::Quick,
            Some(&file),
            &[
                ("step.lambda".into(), "0.5".into()),
                ("data.root".into(), "somewhere".into()),
            ],
        )
        .unwrap();
        assert_eq!(c.optim.epochs, 3);
        assert_eq!(c.model.attention, AttentionKind::Spatial);
        assert_eq!(c.step.lambda, 0.5);
        assert_eq!(c.data.root, "somewhere");
        assert_eq!(
            c.model.arch,
            ResNetArch::ResNet18,
            "the rest stays the profile's"
        );
        let d = TrainingConfig::profile(Profile::Quick).differences(&c);
        assert!(
            d.iter().any(|l| l.starts_with("optim.epochs: 36 -> 3")),
            "{d:?}"
        );
    }

    /// The configuration resolved from the quick profile with `pairs` set.
    fn quick_with(pairs: &[(&str, &str)]) -> Result<TrainingConfig, TrainError> {
        let overrides: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TrainingConfig::resolve(Profile::Quick, None, &overrides)
    }

    /// Issue 38's critic-free references: the self-critical estimator and the
    /// counterfactual effect loss parse, and refuse what they cannot run with.
    #[test]
    fn the_critic_free_references_parse_and_refuse_what_they_cannot_run_with() {
        let set = quick_with;
        let refused = |pairs: &[(&str, &str)], field: &str| {
            let err = set(pairs).unwrap_err().to_string();
            assert!(err.contains(field), "{pairs:?}: {err}");
        };
        refused(
            &[
                ("step.counterfactual", "true"),
                ("model.attention", "none"),
                ("step.critic", "false"),
            ],
            "step.counterfactual",
        );
        assert!(
            set(&[("step.counterfactual", "true")])
                .unwrap()
                .step
                .counterfactual
        );
        let self_critical = [
            ("step.self_critical_pairs", "2"),
            ("step.exploration", "0.5"),
        ];
        let c = set(&[
            self_critical[0],
            self_critical[1],
            ("step.critic_score", "batch-ap"),
        ])
        .unwrap();
        assert_eq!(c.step.self_critical_pairs, 2);
        for (other, field) in [
            (("step.exploration", "0"), "step.exploration"),
            (("model.critic_kind", "compatible"), "model.critic_kind"),
            (("step.update_order", "critic_first"), "step.update_order"),
            (("step.critic_target", "per-module"), "step.critic_target"),
            (("step.critic", "false"), "step.self_critical_pairs"),
        ] {
            let mut pairs = self_critical.to_vec();
            pairs.push(other);
            refused(&pairs, field);
        }
    }

    #[test]
    fn the_critic_study_fields_parse_and_refuse_what_would_change_nothing() {
        let set = |pairs: &[(&str, &str)]| {
            let overrides: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            TrainingConfig::resolve(Profile::Quick, None, &overrides)
        };
        let c = set(&[
            ("step.reward", "planted-noisy"),
            ("step.exploration", "0.5"),
            ("model.critic_scaling", "batch-standardized"),
        ])
        .unwrap();
        assert_eq!(c.step.reward, scal_rewards::RewardKind::PlantedNoisy);
        assert_eq!(c.model.critic_scaling, CriticScaling::BatchStandardized);
        assert_eq!(c.step.planted.flip_probability, 0.34);
        let refused = |pairs: &[(&str, &str)], field: &str| {
            let err = set(pairs).unwrap_err().to_string();
            assert!(err.contains(field), "{pairs:?}: {err}");
        };
        refused(&[("step.exploration", "-1")], "step.exploration");
        refused(
            &[("step.exploration", "0.5"), ("step.critic", "false")],
            "step.exploration",
        );
        refused(
            &[("step.reward", "planted"), ("model.attention", "none")],
            "step.reward",
        );
        refused(
            &[("step.reward", "planted"), ("step.planted.module", "5")],
            "step.planted.module",
        );
        refused(
            &[
                ("step.reward", "planted-noisy"),
                ("step.planted.flip_probability", "1.5"),
            ],
            "step.planted.flip_probability",
        );
        let c = set(&[
            ("model.critic_kind", "compatible"),
            ("step.exploration", "0.5"),
            ("step.critic_score", "batch-ap"),
        ])
        .unwrap();
        assert_eq!(c.model.critic_kind, CriticKind::Compatible);
        assert_eq!(c.step.critic_score, CriticScore::BatchAp);
        assert_eq!(
            c.model.network(10, 128, 64).critic_kind,
            Some(CriticKind::Compatible)
        );
        assert_eq!(
            TrainingConfig::new().model.network(10, 128, 64).critic_kind,
            None
        );
        let compatible = [
            ("model.critic_kind", "compatible"),
            ("step.exploration", "0.5"),
        ];
        for (other, field) in [
            (("step.exploration", "0"), "step.exploration"),
            (("step.update_order", "critic_first"), "step.update_order"),
            (("step.critic_target", "per-module"), "step.critic_target"),
            (
                ("model.critic_scaling", "batch-standardized"),
                "model.critic_scaling",
            ),
            (("step.critic", "false"), "model.critic_kind"),
        ] {
            let mut pairs = compatible.to_vec();
            pairs.push(other);
            refused(&pairs, field);
        }
        refused(&[("step.critic_score", "batch-ap")], "step.critic_score");
        let c = set(&[("step.critic_target", "per-module")]).unwrap();
        assert_eq!(c.step.critic_target, CriticTarget::PerModule);
        for other in [
            ("step.critic", "false"),
            ("model.attention", "none"),
            ("step.exploration", "0.5"),
            ("step.reward", "planted"),
            ("step.reward", "rc"),
        ] {
            refused(
                &[("step.critic_target", "per-module"), other],
                "configuration: step.critic_target",
            );
        }
    }

    #[test]
    fn wrong_names_and_values_are_named() {
        let err =
            TrainingConfig::resolve(Profile::Quick, None, &[("optim.epoch".into(), "3".into())])
                .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `optim.epoch`")
                && err.to_string().contains("epochs"),
            "{err}"
        );
        let err = TrainingConfig::resolve(
            Profile::Quick,
            None,
            &[("optim.epochs".into(), "many".into())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("optim.epochs"), "{err}");
        let err = TrainingConfig::resolve(
            Profile::Quick,
            None,
            &[("model.attention".into(), "both".into())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("model.attention"), "{err}");
        let err = TrainingConfig::resolve(Profile::Quick, None, &[("data.p".into(), "1".into())])
            .unwrap_err();
        assert!(err.to_string().contains("data.p"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.json");
        std::fs::write(&file, "{ not json").unwrap();
        let err = TrainingConfig::resolve(Profile::Quick, Some(&file), &[]).unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
        for (text, kind) in [("[1, 2]", "an array"), ("null", "null"), ("3", "a number")] {
            std::fs::write(&file, text).unwrap();
            let err = TrainingConfig::resolve(Profile::Quick, Some(&file), &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("bad.json") && err.contains(kind) && err.contains("not a JSON object"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_config_file_with_a_byte_order_mark_loads_and_a_huge_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bom.json");
        std::fs::write(&file, "\u{feff}{\"optim\": {\"epochs\": 3}}").unwrap();
        let c = TrainingConfig::resolve(Profile::Quick, Some(&file), &[]).unwrap();
        assert_eq!(c.optim.epochs, 3);
        let huge = dir.path().join("huge.json");
        std::fs::write(&huge, vec![b' '; (MAX_CONFIG_BYTES + 1) as usize]).unwrap();
        let err = TrainingConfig::resolve(Profile::Quick, Some(&huge), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("huge.json") && err.contains("larger than"),
            "{err}"
        );
    }

    #[test]
    fn a_set_value_is_read_by_its_fields_type() {
        let set = |k: &str, v: &str| {
            TrainingConfig::resolve(Profile::Quick, None, &[(k.into(), v.into())])
        };
        for root in ["2024", "null", "true", "1e5", "[1]", "\"q\""] {
            assert_eq!(
                set("data.root", root).unwrap().data.root,
                root,
                "a path is text"
            );
        }
        assert_eq!(
            set("model.pretrained", "null").unwrap().model.pretrained,
            None
        );
        assert_eq!(
            set("model.pretrained", "2024")
                .unwrap()
                .model
                .pretrained
                .as_deref(),
            Some("2024")
        );
        assert_eq!(set("data.p", "8").unwrap().data.p, 8);
        assert!(!set("step.critic", "false").unwrap().step.critic);
        assert_eq!(set("devices", "[0,0]").unwrap().devices, [0, 0]);
        let planted = |v: &str| set("step.planted.threshold", v).map(|c| c.step.planted.threshold);
        assert_eq!(planted("null").unwrap(), None);
        assert_eq!(planted("0.5").unwrap(), Some(0.5));
        assert_eq!(
            set("model.attention", "spatial").unwrap().model.attention,
            AttentionKind::Spatial
        );
        for (field, value, expected) in [
            ("data.p", "abc", "usize"),
            ("data.p", "4.5", "usize"),
            ("optim.lr", "\"0.001\"", "f64"),
            ("step.critic", "yes", "bool"),
            ("optim.lr", "1e400", "out of the range"),
        ] {
            let err = set(field, value).unwrap_err().to_string();
            assert!(
                err.contains(&format!("field `{field}`")) && err.contains(expected),
                "{field}={value}: {err}"
            );
        }
    }

    #[test]
    fn hosts_go_with_the_remote_backend_and_are_not_a_resume_difference() {
        let set = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            TrainingConfig::resolve(Profile::Quick, None, &pairs)
        };
        let err = set(&[("backend", "remote")]).unwrap_err().to_string();
        assert!(
            err.starts_with("configuration: hosts:") && err.contains("ws://HOST:PORT"),
            "{err}"
        );
        let err = set(&[("hosts", r#"["ws://a:3000"]"#)])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("configuration: hosts:") && err.contains("backend is flex"),
            "{err}"
        );
        let err = set(&[("backend", "remote"), ("hosts", r#"["http://a:3000"]"#)])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("configuration: hosts:") && err.contains("http://a:3000"),
            "{err}"
        );
        let a = set(&[("backend", "remote"), ("hosts", r#"["ws://a:3000"]"#)]).unwrap();
        let b = set(&[("backend", "remote"), ("hosts", r#"["b:3000","c:3000"]"#)]).unwrap();
        assert_eq!(b.hosts, ["b:3000", "c:3000"]);
        assert!(a.differences(&b).is_empty(), "{:?}", a.differences(&b));
        let mut moved = a.clone();
        moved.data.root = "/elsewhere/synth".into();
        assert!(
            a.differences(&moved).is_empty(),
            "data.root is where, not what"
        );
        let flex = TrainingConfig::profile(Profile::Quick);
        assert!(
            a.differences(&flex)
                .iter()
                .any(|l| l.starts_with("backend:")),
            "the backend itself still counts"
        );
    }
}
