//! # scal-attention
//!
//! ```
//! # use burn::tensor::{Device, Tensor};
//! use scal_attention::ChannelAttentionConfig;
//! # let device = Device::flex();
//! # let x = Tensor::<4>::ones([2, 64, 16, 8], &device);
//! let module = ChannelAttentionConfig::new(64).init(&device);
//! let a = module.forward(x.clone()); // [N, C, H, W] → the map A, [N, C, 1, 1], in (0, 1)
//! let gated = x * a; // X ⊙ A
//! # assert_eq!(gated.dims(), [2, 64, 16, 8]);
//! ```
//!
//! The attention agent of SCAL (`docs/scal-method.md`): a channel module (squeeze-and-excitation:
//! `sigmoid(W2 relu(W1 GAP(X)))`, no biases, hidden width 8) or a spatial module
//! (`sigmoid(W2 relu(W1 mean_c(X)))` over the flattened H × W map, reduction 16, with
//! biases), and [`StackedAttention`]: one module after each of the five backbone stages,
//! gating `X ← X ⊙ A` and returning the maps, or passing `X` through unchanged (every map
//! replaced by ones) for SCAL's no-attention pass.

#![warn(missing_docs)]

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

/// Which attention module sits after each stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// No attention: the plain backbone.
    None,
    /// Spatial attention over the H × W map, broadcast over channels.
    Spatial,
    /// Channel attention (squeeze-and-excitation), broadcast over H × W.
    Channel,
}

impl std::str::FromStr for AttentionKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(AttentionKind::None),
            "spatial" => Ok(AttentionKind::Spatial),
            "channel" => Ok(AttentionKind::Channel),
            _ => Err(format!(
                "unknown attention `{s}`: expected none, spatial or channel"
            )),
        }
    }
}

impl std::fmt::Display for AttentionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttentionKind::None => "none",
            AttentionKind::Spatial => "spatial",
            AttentionKind::Channel => "channel",
        })
    }
}

/// Configuration of a [`ChannelAttention`].
#[derive(Config, Debug)]
pub struct ChannelAttentionConfig {
    /// Channels of the feature map it gates.
    pub channels: usize,
    /// Width of the hidden layer (8 at every stage in the reference code).
    #[config(default = 8)]
    pub hidden: usize,
}

impl ChannelAttentionConfig {
    /// Builds the module.
    ///
    /// # Panics
    /// If `channels` or `hidden` is 0.
    pub fn init(&self, device: &Device) -> ChannelAttention {
        assert!(
            self.channels > 0 && self.hidden > 0,
            "ChannelAttentionConfig: channels and hidden must be > 0, got {} and {}",
            self.channels,
            self.hidden
        );
        ChannelAttention {
            fc1: LinearConfig::new(self.channels, self.hidden)
                .with_bias(false)
                .init(device),
            fc2: LinearConfig::new(self.hidden, self.channels)
                .with_bias(false)
                .init(device),
        }
    }
}

/// Channel attention: `A = sigmoid(W2 relu(W1 GAP(X)))`, one weight per channel.
#[derive(Module, Debug)]
pub struct ChannelAttention {
    /// `C → hidden`, no bias.
    pub fc1: Linear,
    /// `hidden → C`, no bias.
    pub fc2: Linear,
}

impl ChannelAttention {
    /// The map before its sigmoid, one value per channel.
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`
    /// - output: `[N, C]`
    ///
    /// # Panics
    /// If `C` is not the configured channel count.
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let [n, c, h, w] = x.dims();
        let expected = self.fc1.weight.dims()[0];
        assert_eq!(
            c, expected,
            "ChannelAttention built for {expected} channels got a [{n}, {c}, {h}, {w}] map"
        );
        // sum / count, not `mean_dim`: see `scal_backbone::global_average_pool`.
        let pooled = x
            .reshape([n, c, h * w])
            .sum_dim(2)
            .div_scalar((h * w) as f64)
            .reshape([n, c]);
        self.fc2.forward(relu(self.fc1.forward(pooled)))
    }

    /// The attention map: the sigmoid of [`ChannelAttention::logits`].
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`
    /// - output: `[N, C, 1, 1]`, values in (0, 1)
    ///
    /// # Panics
    /// If `C` is not the configured channel count.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, _, _] = x.dims();
        let a = sigmoid(self.logits(x));
        // Two steps, one new axis each: burn-onnx 0.22's dynamic-batch export cannot place two
        // new unit axes at once.
        a.reshape([n, c, 1]).reshape([n, c, 1, 1])
    }
}

/// Configuration of a [`SpatialAttention`].
#[derive(Config, Debug)]
pub struct SpatialAttentionConfig {
    /// Height of the feature map it gates (fixed: the layers are sized by H × W).
    pub height: usize,
    /// Width of the feature map it gates.
    pub width: usize,
    /// Hidden width = H·W / reduction (at least 1).
    #[config(default = 16)]
    pub reduction: usize,
}

impl SpatialAttentionConfig {
    /// Builds the module.
    ///
    /// # Panics
    /// If a size or the reduction is 0.
    pub fn init(&self, device: &Device) -> SpatialAttention {
        assert!(
            self.height > 0 && self.width > 0 && self.reduction > 0,
            "SpatialAttentionConfig: height, width and reduction must be > 0, got {}, {}, {}",
            self.height,
            self.width,
            self.reduction
        );
        let hw = self.height * self.width;
        let hidden = (hw / self.reduction).max(1);
        SpatialAttention {
            fc1: LinearConfig::new(hw, hidden).init(device),
            fc2: LinearConfig::new(hidden, hw).init(device),
            height: self.height,
            width: self.width,
        }
    }
}

/// Spatial attention: `A = sigmoid(W2 relu(W1 mean_c(X)))` over the flattened map, one
/// weight per position.
#[derive(Module, Debug)]
pub struct SpatialAttention {
    /// `H·W → H·W / r`, with bias.
    pub fc1: Linear,
    /// `H·W / r → H·W`, with bias.
    pub fc2: Linear,
    /// Map height it was built for.
    pub height: usize,
    /// Map width it was built for.
    pub width: usize,
}

impl SpatialAttention {
    /// The map before its sigmoid, one value per position (row-major over `H × W`).
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]` with the configured `H × W`
    /// - output: `[N, H·W]`
    ///
    /// # Panics
    /// If the map is not the configured size (the module's layers are sized by it: build the
    /// model for the input size you train and test at).
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let [n, c, h, w] = x.dims();
        assert!(
            h == self.height && w == self.width,
            "SpatialAttention built for {}x{} maps got a [{n}, {c}, {h}, {w}] map: its layers are \
             sized by the input size, so build the model for the height and width it is run at",
            self.height,
            self.width
        );
        // sum / count, not `mean_dim`: see `scal_backbone::global_average_pool`.
        let mean = x.sum_dim(1).div_scalar(c as f64).reshape([n, h * w]);
        self.fc2.forward(relu(self.fc1.forward(mean)))
    }

    /// The attention map: the sigmoid of [`SpatialAttention::logits`].
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]` with the configured `H × W`
    /// - output: `[N, 1, H, W]`, values in (0, 1)
    ///
    /// # Panics
    /// As [`SpatialAttention::logits`].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, _, h, w] = x.dims();
        sigmoid(self.logits(x)).reshape([n, 1, h, w])
    }
}

/// One attention module.
#[derive(Module, Debug)]
pub enum Agent {
    /// Spatial attention.
    Spatial(SpatialAttention),
    /// Channel attention.
    Channel(ChannelAttention),
}

impl Agent {
    /// The attention map (`[N, 1, H, W]` spatial, `[N, C, 1, 1]` channel).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Agent::Spatial(m) => m.forward(x),
            Agent::Channel(m) => m.forward(x),
        }
    }

    /// An exploring map: the sigmoid of the logits plus independent Gaussian noise of
    /// standard deviation `std` (drawn from the device's generator), shaped as
    /// [`Agent::forward`]'s map. `std = 0` gives the map itself.
    pub fn perturbed(&self, x: Tensor<4>, std: f64) -> Tensor<4> {
        let logits = self.logits(x.clone());
        let noise = Tensor::random(logits.dims(), Distribution::Normal(0.0, std), &x.device());
        self.map_of(logits + noise, x.dims())
    }

    /// The pre-sigmoid logits of the map, one per map element.
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`; output: `[N, H·W]` (spatial) or `[N, C]` (channel)
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Agent::Spatial(m) => m.logits(x),
            Agent::Channel(m) => m.logits(x),
        }
    }

    /// The map with `noise` added to its logits, `sigmoid(logits(x) + noise)`, shaped as
    /// [`Agent::forward`]'s map (the same noise given twice gives the same map: antithetic
    /// exploration passes `+σε` and `−σε`).
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`; `noise`: as [`Agent::logits`]'s output
    pub fn noised(&self, x: Tensor<4>, noise: Tensor<2>) -> Tensor<4> {
        let dims = x.dims();
        self.map_of(self.logits(x) + noise, dims)
    }

    /// `sigmoid(logits)` in the map's shape for an input of `dims`.
    fn map_of(&self, logits: Tensor<2>, [n, c, h, w]: [usize; 4]) -> Tensor<4> {
        let shape = match self {
            Agent::Spatial(_) => [n, 1, h, w],
            Agent::Channel(_) => [n, c, 1, 1],
        };
        sigmoid(logits).reshape(shape)
    }
}

/// Configuration of a [`StackedAttention`].
#[derive(Config, Debug)]
pub struct StackedAttentionConfig {
    /// Module kind at every stage.
    pub kind: AttentionKind,
    /// Channels of the five gated maps (stem, layer1..layer4).
    pub channels: [usize; 5],
    /// `[height, width]` of the five gated maps.
    pub sizes: [[usize; 2]; 5],
    /// Hidden width of channel modules.
    #[config(default = 8)]
    pub channel_hidden: usize,
    /// Reduction of spatial modules.
    #[config(default = 16)]
    pub spatial_reduction: usize,
}

impl StackedAttentionConfig {
    /// Builds the five modules (none for [`AttentionKind::None`]).
    pub fn init(&self, device: &Device) -> StackedAttention {
        let agents = match self.kind {
            AttentionKind::None => Vec::new(),
            AttentionKind::Spatial => self
                .sizes
                .iter()
                .map(|[h, w]| {
                    Agent::Spatial(
                        SpatialAttentionConfig::new(*h, *w)
                            .with_reduction(self.spatial_reduction)
                            .init(device),
                    )
                })
                .collect(),
            AttentionKind::Channel => self
                .channels
                .iter()
                .map(|c| {
                    Agent::Channel(
                        ChannelAttentionConfig::new(*c)
                            .with_hidden(self.channel_hidden)
                            .init(device),
                    )
                })
                .collect(),
        };
        StackedAttention { agents }
    }
}

/// Five attention modules, one after each backbone stage (none when the kind is `none`).
#[derive(Module, Debug)]
pub struct StackedAttention {
    /// The modules, stage 0 (stem) to 4 (layer4); empty without attention.
    pub agents: Vec<Agent>,
}

/// Whether a forward pass gates the maps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gating {
    /// `X ← X ⊙ A`.
    On,
    /// Every map replaced by ones: `X` passes unchanged (SCAL's no-attention pass).
    Ones,
    /// `X ← X ⊙ A'`, an exploring map: `A' = sigmoid(logits + ε)`, `ε ~ N(0, std²)` drawn
    /// per element from the device's generator ([`Agent::perturbed`]).
    Perturbed {
        /// Standard deviation of the noise on the pre-sigmoid logits.
        std: f64,
    },
    /// `X ← X ⊙ Ā`, a counterfactual map that ignores `X`: every element drawn uniformly
    /// from `[0, 1)` (the device's generator), shaped as the module's map (the intervention
    /// `do(A = Ā)` of counterfactual attention learning).
    Uniform,
}

impl StackedAttention {
    /// Whether there are modules at all.
    pub fn is_active(&self) -> bool {
        !self.agents.is_empty()
    }

    /// The map of stage `stage` for `x`, or `None` without attention.
    ///
    /// # Shapes
    /// - `x`: `[N, C_l, H_l, W_l]`
    /// - output: `[N, 1, H_l, W_l]` (spatial) or `[N, C_l, 1, 1]` (channel)
    pub fn attention_map(&self, stage: usize, x: Tensor<4>) -> Option<Tensor<4>> {
        self.agents.get(stage).map(|agent| agent.forward(x))
    }

    /// Gates `x` with stage `stage`'s map: returns `(X ⊙ A, A)` (with [`Gating::Perturbed`],
    /// `(X ⊙ A', A')`), or `(X, None)` when gating is [`Gating::Ones`] or there is no
    /// attention.
    ///
    /// # Shapes
    /// - `x`: `[N, C_l, H_l, W_l]`; output: the same, and the map as in [`StackedAttention::attention_map`]
    pub fn gate(
        &self,
        stage: usize,
        x: Tensor<4>,
        gating: Gating,
    ) -> (Tensor<4>, Option<Tensor<4>>) {
        let map = match gating {
            Gating::Ones => return (x, None),
            Gating::On => self.attention_map(stage, x.clone()),
            Gating::Perturbed { std } => self
                .agents
                .get(stage)
                .map(|agent| agent.perturbed(x.clone(), std)),
            Gating::Uniform => self.agents.get(stage).map(|agent| {
                let [n, c, h, w] = x.dims();
                let shape = match agent {
                    Agent::Spatial(_) => [n, 1, h, w],
                    Agent::Channel(_) => [n, c, 1, 1],
                };
                Tensor::random(shape, Distribution::Uniform(0.0, 1.0), &x.device())
            }),
        };
        match map {
            Some(a) => (x * a.clone(), Some(a)),
            None => (x, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn channel_maps_are_one_weight_per_channel_in_the_open_unit_interval() {
        let device = Device::flex();
        let module = ChannelAttentionConfig::new(12).init(&device);
        assert_eq!(
            module.fc1.weight.dims(),
            [12, 8],
            "hidden width 8 by default"
        );
        assert!(module.fc1.bias.is_none() && module.fc2.bias.is_none());
        let a = module.forward(random([3, 12, 5, 4], &device));
        assert_eq!(a.dims(), [3, 12, 1, 1]);
        assert!(values(a).iter().all(|v| *v > 0.0 && *v < 1.0));
    }

    #[test]
    fn a_channel_map_depends_only_on_the_pooled_feature() {
        // Two maps with the same per-channel mean give the same attention.
        let device = Device::flex();
        let module = ChannelAttentionConfig::new(2).with_hidden(3).init(&device);
        let flat = Tensor::<4>::from_data(TensorData::new(vec![1.0f32; 8], [1, 2, 2, 2]), &device);
        let spread = Tensor::<4>::from_data(
            TensorData::new(
                vec![0.0f32, 2.0, 2.0, 0.0, 3.0, -1.0, 1.0, 1.0],
                [1, 2, 2, 2],
            ),
            &device,
        );
        let (a, b) = (values(module.forward(flat)), values(module.forward(spread)));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn spatial_maps_cover_the_map_they_were_built_for_and_refuse_others() {
        let device = Device::flex();
        let module = SpatialAttentionConfig::new(8, 4).init(&device);
        assert_eq!(module.fc1.weight.dims(), [32, 2], "H·W / 16 hidden units");
        let a = module.forward(random([2, 6, 8, 4], &device));
        assert_eq!(a.dims(), [2, 1, 8, 4]);
        assert!(values(a).iter().all(|v| *v > 0.0 && *v < 1.0));
        let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            module.forward(random([1, 6, 4, 4], &device))
        }));
        let message = *wrong.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("built for 8x4"), "{message}");
    }

    #[test]
    fn gating_multiplies_by_the_map_and_ones_pass_the_input_through() {
        let device = Device::flex();
        let channels = [3, 4, 5, 6, 7];
        let sizes = [[4, 2]; 5];
        for kind in [AttentionKind::Channel, AttentionKind::Spatial] {
            let stack = StackedAttentionConfig::new(kind, channels, sizes).init(&device);
            assert!(stack.is_active());
            assert_eq!(stack.agents.len(), 5);
            for (stage, &c) in channels.iter().enumerate() {
                let x = random([2, c, 4, 2], &device);
                let (gated, map) = stack.gate(stage, x.clone(), Gating::On);
                let expected = x.clone() * map.expect("a map with attention");
                assert_eq!(values(gated), values(expected), "{kind} stage {stage}");
                let (passed, none) = stack.gate(stage, x.clone(), Gating::Ones);
                assert!(none.is_none());
                assert_eq!(values(passed), values(x));
            }
        }
        let none = StackedAttentionConfig::new(AttentionKind::None, channels, sizes).init(&device);
        assert!(
            !none.is_active()
                && none
                    .attention_map(0, random([1, 3, 4, 2], &device))
                    .is_none()
        );
    }

    #[test]
    fn kinds_parse_and_print_their_names() {
        for kind in [
            AttentionKind::None,
            AttentionKind::Spatial,
            AttentionKind::Channel,
        ] {
            assert_eq!(kind.to_string().parse::<AttentionKind>().unwrap(), kind);
        }
        assert_eq!(
            "Channel".parse::<AttentionKind>().unwrap(),
            AttentionKind::Channel
        );
        let err = "both".parse::<AttentionKind>().unwrap_err();
        assert!(err.contains("`both`"), "{err}");
    }

    #[test]
    fn a_perturbed_map_is_the_sigmoid_of_the_logits_plus_noise_of_the_given_spread() {
        let device = Device::flex();
        let logit = |p: f32| (p / (1.0 - p)).ln();
        for kind in [AttentionKind::Channel, AttentionKind::Spatial] {
            let stack = StackedAttentionConfig::new(kind, [16; 5], [[8, 4]; 5]).init(&device);
            let x = random([64, 16, 8, 4], &device);
            let clean = values(stack.attention_map(2, x.clone()).unwrap());
            let (_, same) = stack.gate(2, x.clone(), Gating::Perturbed { std: 0.0 });
            let same = values(same.unwrap());
            assert!(clean.iter().zip(&same).all(|(a, b)| (a - b).abs() < 1e-6));
            let (gated, noisy) = stack.gate(2, x.clone(), Gating::Perturbed { std: 0.5 });
            let noisy = noisy.unwrap();
            assert_eq!(values(gated), values(x * noisy.clone()), "{kind}: X ⊙ A'");
            let shifts: Vec<f64> = clean
                .iter()
                .zip(values(noisy))
                .map(|(&a, b)| (logit(b) - logit(a)) as f64)
                .collect();
            let n = shifts.len() as f64;
            let mean = shifts.iter().sum::<f64>() / n;
            let std = (shifts.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n).sqrt();
            assert!(
                mean.abs() < 0.05 && (std - 0.5).abs() < 0.05,
                "{kind}: {mean} ± {std}"
            );
        }
    }
}
