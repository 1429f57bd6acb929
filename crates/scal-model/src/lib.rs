//! # scal-model
//!
//! ```no_run
//! let device = burn::tensor::Device::default();
//! let (model, config) = scal_model::ScalModel::load_dir("runs/<name>/last".as_ref(), &device)?;
//! # let images = burn::tensor::Tensor::<4>::zeros([1, 3, config.height, config.width], &device);
//! let features = model.embed(images, true); // [N, 3, H, W] normalised → [N, D], L2-normalised
//! # Ok::<(), scal_model::ModelError>(())
//! ```
//!
//! The SCAL network (`docs/scal-method.md`): a torchvision ResNet (last stride 1) with an attention
//! module after each of its five stages (`X ← X ⊙ A`), global average pooling, a BN neck
//! with a frozen shift, a bias-free classifier (normal init, std 0.001), and one critic per
//! attention module.
//!
//! [`ScalModel::forward`] returns the pooled feature (for the triplet loss), the post-BN
//! feature, the logits, the attention maps, the feature maps the modules read, and the
//! critics' estimates; [`Gating::Ones`] runs the same network with every map replaced by
//! ones (the no-attention pass of the reward `R_a`). [`ScalModel::embed`] gives the
//! L2-normalised post-BN ReID feature, flip-averaged on request.
//!
//! [`objective`] is SCAL's loss (`scal_loss`: the rewards, the four terms and their gradient
//! routing) and what a step measured; [`ScalModel::save_dir`] and [`ScalModel::load_dir`]
//! write and read a model folder (`model.json` + `model.bpk`). Loading a folder for
//! inference, embedding images and the ONNX export are scal-infer's.

#![warn(missing_docs)]

mod folder;
pub mod objective;
pub mod probe;

pub use folder::{CHECKSUMS_FILE, CONFIG_FILE, WEIGHTS_FILE, verify_checksums, write_checksums};

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig};
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::{Device, Tensor};
pub use scal_attention::{AttentionKind, Gating, StackedAttention, StackedAttentionConfig};
use scal_backbone::{BackboneError, ResNet, ResNetArch, ResNetConfig, global_average_pool};
pub use scal_critic::{CriticInput, CriticKind, CriticScaling, Critics, CriticsConfig};

/// How to build a [`ScalModel`].
#[derive(Config, Debug)]
pub struct ScalConfig {
    /// Training identities (classifier outputs).
    pub num_classes: usize,
    /// Backbone depth.
    #[config(default = "ResNetArch::ResNet50")]
    pub arch: ResNetArch,
    /// Backbone base width (64 = torchvision; smaller for tests).
    #[config(default = 64)]
    pub base_width: usize,
    /// Stride of the last stage (1 in SCAL and ReID baselines).
    #[config(default = 1)]
    pub last_stride: usize,
    /// ReLU after the stem's batch norm (torchvision: yes).
    #[config(default = true)]
    pub stem_relu: bool,
    /// Input height the model is built for (spatial attention is sized by it).
    #[config(default = 256)]
    pub height: usize,
    /// Input width.
    #[config(default = 128)]
    pub width: usize,
    /// Attention modules after the five stages.
    #[config(default = "AttentionKind::Channel")]
    pub attention: AttentionKind,
    /// Hidden width of channel attention modules.
    #[config(default = 8)]
    pub channel_hidden: usize,
    /// Reduction of spatial attention modules.
    #[config(default = 16)]
    pub spatial_reduction: usize,
    /// Hidden width of the critics.
    #[config(default = 256)]
    pub critic_hidden: usize,
    /// How the critics scale their inputs (`None`, as in folders written before the field
    /// existed: [`CriticScaling::Raw`], the paper's).
    #[config(default = "None")]
    pub critic_scaling: Option<CriticScaling>,
    /// Which critics the model has (`None`, as in folders written before the field existed:
    /// [`CriticKind::Paper`]).
    #[config(default = "None")]
    pub critic_kind: Option<CriticKind>,
}

impl ScalConfig {
    /// Checks what [`ScalConfig::init`] needs to build the network without panicking: at
    /// least one class, positive sizes and widths, last stride 1 or 2. The error names the
    /// field. (The bounds on the input size that the commands apply are `scal-data`'s
    /// `check_input_size`.)
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("num_classes", self.num_classes),
            ("base_width", self.base_width),
            ("height", self.height),
            ("width", self.width),
            ("channel_hidden", self.channel_hidden),
            ("spatial_reduction", self.spatial_reduction),
            ("critic_hidden", self.critic_hidden),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{field} must be > 0, got 0"));
        }
        if !matches!(self.last_stride, 1 | 2) {
            return Err(format!(
                "last_stride must be 1 or 2, got {}",
                self.last_stride
            ));
        }
        Ok(())
    }

    /// Builds the network.
    ///
    /// # Panics
    /// If `num_classes` is 0 or the backbone configuration is invalid.
    pub fn init(&self, device: &Device) -> ScalModel {
        assert!(self.num_classes > 0, "ScalConfig.num_classes must be > 0");
        let backbone = ResNetConfig::new(self.arch)
            .with_base_width(self.base_width)
            .with_last_stride(self.last_stride)
            .with_stem_relu(self.stem_relu)
            .init(device);
        let channels = backbone.stage_channels();
        let sizes = backbone.stage_sizes(self.height, self.width);
        let attention = StackedAttentionConfig::new(self.attention, channels, sizes)
            .with_channel_hidden(self.channel_hidden)
            .with_spatial_reduction(self.spatial_reduction)
            .init(device);
        let inputs: Vec<CriticInput> = match self.attention {
            AttentionKind::None => Vec::new(),
            AttentionKind::Channel => channels
                .iter()
                .map(|&channels| CriticInput::Channel { channels })
                .collect(),
            AttentionKind::Spatial => sizes
                .iter()
                .map(|&[height, width]| CriticInput::Spatial { height, width })
                .collect(),
        };
        let critics = CriticsConfig::new(inputs)
            .with_hidden(self.critic_hidden)
            .with_scaling(self.critic_scaling.unwrap_or(CriticScaling::Raw))
            .with_kind(self.critic_kind.unwrap_or(CriticKind::Paper))
            .with_classes(self.num_classes)
            .init(device);
        let dim = backbone.feature_dim();
        let mut neck = BatchNormConfig::new(dim).init(device);
        neck.beta = neck.beta.set_require_grad(false);
        let classifier = LinearConfig::new(dim, self.num_classes)
            .with_bias(false)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.001,
            })
            .init(device);
        ScalModel {
            backbone,
            attention,
            neck,
            classifier,
            critics,
        }
    }
}

/// The SCAL network.
#[derive(Module, Debug)]
pub struct ScalModel {
    /// ResNet ψ.
    pub backbone: ResNet,
    /// Attention agents θ (empty without attention).
    pub attention: StackedAttention,
    /// BN neck on the pooled feature; its shift β is frozen.
    pub neck: BatchNorm,
    /// Identity classifier on the post-BN feature, no bias.
    pub classifier: Linear,
    /// Critics φ, one per attention module (empty without attention): the paper's, or
    /// compatible ones (`critics.compatible`).
    pub critics: Critics,
}

/// Everything one forward pass produces.
#[derive(Debug, Clone)]
pub struct ScalOutput {
    /// Globally pooled last feature map (`f`, for the triplet loss). `[N, D]`
    pub global: Tensor<2>,
    /// `f` after the BN neck (the ReID feature before normalisation). `[N, D]`
    pub feature: Tensor<2>,
    /// Classifier logits. `[N, K]`
    pub logits: Tensor<2>,
    /// The five attention maps `A_l` (empty without attention or with [`Gating::Ones`]).
    pub maps: Vec<Tensor<4>>,
    /// The five feature maps `X_l` the modules read, before gating (empty when `maps` is).
    pub stage_inputs: Vec<Tensor<4>>,
    /// The critics' estimates `V_l = C_l(X_l, A_l)` on detached inputs, one `[N]` per module
    /// (empty when `maps` is, and with compatible critics, which need the exploring pass).
    /// They train the critics and estimate `R`.
    pub values: Vec<Tensor<1>>,
}

/// Errors of whole-model checkpoints and model folders.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A folder without `model.json`.
    #[error(
        "{} is not a checkpoint folder (no model.json): expected a model folder such as runs/<name>/best or runs/<name>/last",
        path.display()
    )]
    NotAModelFolder {
        /// The folder given.
        path: PathBuf,
    },
    /// A file of a model folder differs from the checksum recorded when it was written, or
    /// is missing.
    #[error("{}: {problem}", path.display())]
    Damaged {
        /// The damaged file (or the checksum file, when it is malformed).
        path: PathBuf,
        /// What was found.
        problem: String,
    },
    /// `model.json` is not a model configuration.
    #[error("{}: not a model configuration: {message}", path.display())]
    BadConfig {
        /// `model.json`.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// Reading or writing backbone weights failed.
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    /// A file of the model (weights, configuration, checksums) could not be written; the
    /// previous one is intact.
    #[error(transparent)]
    Write(#[from] scal_fs::FsError),
    /// The checkpoint file is not there.
    #[error("checkpoint {} does not exist", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The checkpoint does not fit this model (another configuration); nothing was loaded.
    #[error(
        "checkpoint {} does not fit this model (was it saved with another configuration?): {details}",
        path.display()
    )]
    Incompatible {
        /// The checkpoint.
        path: PathBuf,
        /// Missing, unexpected and mis-shaped tensors.
        details: String,
    },
    /// The checkpoint could not be read or written.
    #[error("checkpoint {}: {message}", path.display())]
    Io {
        /// The checkpoint.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl ScalModel {
    /// Whether the network has attention modules.
    pub fn has_attention(&self) -> bool {
        self.attention.is_active()
    }

    /// The forward pass.
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]` at the configured input size (spatial attention is sized
    ///   by it)
    /// - see [`ScalOutput`] for the outputs
    pub fn forward(&self, images: Tensor<4>, gating: Gating) -> ScalOutput {
        let mut maps = Vec::new();
        let mut stage_inputs = Vec::new();
        let last = self.backbone.forward_staged(images, |stage, x| {
            let (gated, map) = self.attention.gate(stage, x.clone(), gating);
            if let Some(a) = map {
                maps.push(a);
                stage_inputs.push(x);
            }
            gated
        });
        let values = if maps.is_empty() || self.critics.critics.is_empty() {
            Vec::new()
        } else {
            self.critics.forward(
                stage_inputs.iter().map(|x| x.clone().detach()).collect(),
                maps.iter().map(|a| a.clone().detach()).collect(),
            )
        };
        self.output(last, maps, stage_inputs, values)
    }

    /// A pass's outputs from its last feature map: pooled, through the neck and the
    /// classifier, with the maps, the stage inputs and the critics' values it gathered.
    ///
    /// # Shapes
    /// - `last`: `[N, D, H, W]`; see [`ScalOutput`] for the outputs
    fn output(
        &self,
        last: Tensor<4>,
        maps: Vec<Tensor<4>>,
        stage_inputs: Vec<Tensor<4>>,
        values: Vec<Tensor<1>>,
    ) -> ScalOutput {
        let global = global_average_pool(last);
        let feature = self.neck.forward(global.clone());
        let logits = self.classifier.forward(feature.clone());
        ScalOutput {
            global,
            feature,
            logits,
            maps,
            stage_inputs,
            values,
        }
    }

    /// Logits with module `module`'s map replaced by ones and the other modules applied:
    /// comparing them with [`ScalModel::forward`]'s logits measures what that one module
    /// adds.
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]`; output: `[N, K]`
    ///
    /// # Panics
    /// If `module` is not below [`scal_backbone`]'s five stages.
    pub fn logits_without_module(&self, images: Tensor<4>, module: usize) -> Tensor<2> {
        assert!(
            module < 5,
            "module {module}: there are five modules (0..=4)"
        );
        let last = self.backbone.forward_staged(images, |stage, x| {
            let gating = if stage == module {
                Gating::Ones
            } else {
                Gating::On
            };
            self.attention.gate(stage, x, gating).0
        });
        self.classifier
            .forward(self.neck.forward(global_average_pool(last)))
    }

    /// A pass whose maps have `noise[l]` added to module `l`'s logits,
    /// `A_l = sigmoid(z_l(X_l) + noise[l])`: the antithetic exploration of the self-critical
    /// estimator (the same noise, negated, for the pair's other pass). No critic runs.
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]`; `noise[l]`: as [`scal_attention::Agent::logits`]'s output
    ///   for module `l` (`[N, C_l]` channel, `[N, H_l·W_l]` spatial)
    /// - see [`ScalOutput`] for the outputs (`values` empty)
    ///
    /// # Panics
    /// If `noise` does not hold one tensor per module.
    pub fn forward_noised(&self, images: Tensor<4>, noise: &[Tensor<2>]) -> ScalOutput {
        let agents = &self.attention.agents;
        assert_eq!(noise.len(), agents.len(), "one noise tensor per module");
        let (mut maps, mut stage_inputs) = (Vec::new(), Vec::new());
        let last = self.backbone.forward_staged(images, |stage, x| {
            let map = agents[stage].noised(x.clone(), noise[stage].clone());
            maps.push(map.clone());
            stage_inputs.push(x.clone());
            x * map
        });
        self.output(last, maps, stage_inputs, Vec::new())
    }

    /// The post-BN feature `f` alone, attention applied, without the classifier and the
    /// critics: the inference graph ([`ScalModel::embed`] and the ONNX export).
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]`; output: `[N, D]`
    pub fn neck_feature(&self, images: Tensor<4>) -> Tensor<2> {
        let last = self.backbone.forward_staged(images, |stage, x| {
            self.attention.gate(stage, x, Gating::On).0
        });
        self.neck.forward(global_average_pool(last))
    }

    /// The ReID feature: post-BN, L2-normalised; with `flip`, the mean of the image's and its
    /// mirror's post-BN features, then normalised.
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]`; output: `[N, D]`
    pub fn embed(&self, images: Tensor<4>, flip: bool) -> Tensor<2> {
        let mut feature = self.neck_feature(images.clone());
        if flip {
            feature = (feature + self.neck_feature(images.flip([3]))).div_scalar(2.0);
        }
        l2_normalize(feature)
    }

    /// A copy for SCAL's no-attention pass: no parameter tracks gradients, and its batch
    /// norms keep their batch-statistics mode but leave the running statistics unchanged
    /// (momentum 0), so the second pass neither trains nor moves them.
    pub fn no_attention_copy(&self) -> ScalModel {
        let mut copy = self.clone().no_grad();
        copy.backbone.set_batch_norm_momentum(0.0);
        copy.neck.momentum = 0.0;
        copy
    }

    /// Applies the pending running-statistics updates of every batch norm (Burn records a
    /// training pass's update and applies it at the next read), so that what is saved is
    /// what the next pass would use.
    pub fn sync_running_statistics(&self) {
        for bn in self.backbone.batch_norms().into_iter().chain([&self.neck]) {
            bn.running_mean.value_sync();
            bn.running_var.value_sync();
        }
    }

    /// Draws every lazily initialised parameter now, in module order. Burn initialises a
    /// parameter on first use; the device's random generator is global, so a caller that
    /// seeds it and wants the weights to depend on the seed alone calls this right after
    /// [`ScalConfig::init`], before another thread can draw from the generator.
    pub fn initialize_parameters(&self) {
        struct Touch;
        impl burn::module::ModuleVisitor for Touch {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        self.visit(&mut Touch);
    }

    /// Loads torchvision (or native) weights into the backbone, strictly.
    pub fn with_backbone_weights(mut self, path: &Path) -> Result<ScalModel, ModelError> {
        self.backbone = self.backbone.with_weights(path)?;
        Ok(self)
    }

    /// Writes every parameter and running statistic as a burnpack file, atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), ModelError> {
        self.sync_running_statistics();
        scal_fs::write_atomically(path, |tmp| {
            let mut store = BurnpackStore::from_file(tmp)
                .auto_extension(false)
                .overwrite(true);
            self.save_into(&mut store).map_err(|e| e.to_string())
        })?;
        Ok(())
    }

    /// Writes every parameter and running statistic as safetensors with PyTorch names and
    /// layouts, atomically: the backbone under torchvision's own keys (`conv1.weight`,
    /// `layer1.0.downsample.0.weight`, …, so `torchvision.models.resnet50().load_state_dict(
    /// sd, strict=False)` takes it), then `neck.{weight,bias,running_mean,running_var}` (the
    /// BN neck), `classifier.weight` (`[K, D]`), `attention.modules.<l>.*` and
    /// `critics.critics.<l>.*` (linear weights `[out, in]` as in `torch.nn.Linear`).
    pub fn save_torchvision_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        self.sync_running_statistics();
        scal_fs::write_atomically(path, |tmp| {
            let mut store = burn::store::SafetensorsStore::from_file(tmp)
                .with_to_adapter(burn::store::BurnToPyTorchAdapter)
                .overwrite(true)
                .with_key_remapping(r"^backbone\.", "")
                .with_key_remapping(r"\.downsample\.conv\.", ".downsample.0.")
                .with_key_remapping(r"\.downsample\.bn\.", ".downsample.1.");
            self.save_into(&mut store).map_err(|e| e.to_string())
        })?;
        Ok(())
    }

    /// Loads a checkpoint written by [`ScalModel::save_checkpoint`] into a model of the same
    /// configuration. Strict: any missing, unexpected or mis-shaped tensor is an error and
    /// `self` is returned unchanged to nobody (the load happens on a clone).
    pub fn load_checkpoint(&self, path: &Path) -> Result<ScalModel, ModelError> {
        if !path.is_file() {
            return Err(ModelError::NotFound {
                path: path.to_path_buf(),
            });
        }
        // Read into memory: a file-backed store reads tensor data lazily, and a checkpoint
        // folder may be replaced (or deleted) while the model lives on.
        let bytes = std::fs::read(path).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut store = BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)))
            .allow_partial(true)
            .validate(false);
        let mut loaded = self.clone();
        let result = loaded.load_from(&mut store).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if !result.missing.is_empty() || !result.unused.is_empty() || !result.errors.is_empty() {
            let mut details = Vec::new();
            if !result.missing.is_empty() {
                let names: Vec<&str> = result
                    .missing
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .take(10)
                    .collect();
                details.push(format!(
                    "{} missing ({}…)",
                    result.missing.len(),
                    names.join(", ")
                ));
            }
            if !result.unused.is_empty() {
                let names: Vec<&str> = result.unused.iter().map(String::as_str).take(10).collect();
                details.push(format!(
                    "{} unexpected ({}…)",
                    result.unused.len(),
                    names.join(", ")
                ));
            }
            if !result.errors.is_empty() {
                let names: Vec<String> = result
                    .errors
                    .iter()
                    .take(10)
                    .map(|e| e.to_string())
                    .collect();
                details.push(format!(
                    "{} mismatched ({}…)",
                    result.errors.len(),
                    names.join("; ")
                ));
            }
            return Err(ModelError::Incompatible {
                path: path.to_path_buf(),
                details: details.join("; "),
            });
        }
        // The neck's shift stays frozen after a load.
        loaded.neck.beta = loaded.neck.beta.set_require_grad(false);
        Ok(loaded)
    }
}

/// Rows divided by their Euclidean norm, the norm floored at 1e-12 (PyTorch's
/// `F.normalize`). Written with operations the ONNX export lowers: `x · x` for the square,
/// and the floor as `(n + ε + |n − ε|) / 2`, which is `max(n, ε)` exactly in f32 for any norm
/// above 1e-5 (adding or subtracting 1e-12 leaves it unchanged) and ε for a zero row.
///
/// # Shapes
/// - `x`: `[N, D]`; output: `[N, D]`
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    const EPSILON: f64 = 1e-12;
    let norm = (x.clone() * x.clone()).sum_dim(1).sqrt();
    let floored =
        (norm.clone().add_scalar(EPSILON) + norm.sub_scalar(EPSILON).abs()).div_scalar(2.0);
    x / floored
}
