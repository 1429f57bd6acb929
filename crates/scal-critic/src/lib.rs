//! # scal-critic
//!
//! The critic of SCAL (`scal-method.md`): for each attention module `l`, a small network
//! `V_l = C_l(X_l, A_l)` that estimates the reward `R ∈ {0, 1, 2}` the attention earns.
//! Input: `concat(GAP(X_l), A_l)` for channel attention, `concat(flatten(mean_c X_l),
//! flatten(A_l))` for spatial attention; then `FC → ReLU → FC → 1`, linear output.
//! No batch norm: a frozen clone of the critic (used on the agent's gradient path) must not
//! share running statistics with the live one.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// What a critic reads, which fixes its input width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CriticInput {
    /// Channel attention on `channels` channels: input `2 × channels`.
    Channel {
        /// Channels of `X_l`.
        channels: usize,
    },
    /// Spatial attention on an `height × width` map: input `2 × height × width`.
    Spatial {
        /// Map height.
        height: usize,
        /// Map width.
        width: usize,
    },
}

impl CriticInput {
    fn width(&self) -> usize {
        match *self {
            CriticInput::Channel { channels } => 2 * channels,
            CriticInput::Spatial { height, width } => 2 * height * width,
        }
    }
}

/// Configuration of a [`Critic`].
#[derive(Config, Debug)]
pub struct CriticConfig {
    /// What the critic reads.
    pub input: CriticInput,
    /// Hidden width.
    #[config(default = 256)]
    pub hidden: usize,
}

impl CriticConfig {
    /// Builds the critic.
    ///
    /// # Panics
    /// If `hidden` is 0.
    pub fn init(&self, device: &Device) -> Critic {
        assert!(self.hidden > 0, "CriticConfig.hidden must be > 0");
        Critic {
            fc1: LinearConfig::new(self.input.width(), self.hidden).init(device),
            fc2: LinearConfig::new(self.hidden, 1).init(device),
            spatial: matches!(self.input, CriticInput::Spatial { .. }),
        }
    }
}

/// One critic `V_l = C_l(X_l, A_l)`.
#[derive(Module, Debug)]
pub struct Critic {
    /// Input → hidden.
    pub fc1: Linear,
    /// Hidden → 1 (linear output).
    pub fc2: Linear,
    /// Whether it reads spatial (`true`) or channel maps.
    pub spatial: bool,
}

impl Critic {
    /// The value estimate per sample.
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`, the feature map the attention module read
    /// - `a`: `[N, 1, H, W]` (spatial) or `[N, C, 1, 1]` (channel), its attention map
    /// - output: `[N]`
    ///
    /// # Panics
    /// If the shapes do not fit the critic's input width.
    pub fn forward(&self, x: Tensor<4>, a: Tensor<4>) -> Tensor<1> {
        let [n, c, h, w] = x.dims();
        let (summary, map) = if self.spatial {
            (x.mean_dim(1).reshape([n, h * w]), a.reshape([n, h * w]))
        } else {
            (
                x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c]),
                a.reshape([n, c]),
            )
        };
        let input = Tensor::cat(vec![summary, map], 1);
        let expected = self.fc1.weight.dims()[0];
        assert_eq!(
            input.dims()[1],
            expected,
            "Critic built for {expected} inputs got a [{n}, {c}, {h}, {w}] map"
        );
        self.fc2.forward(relu(self.fc1.forward(input))).reshape([n])
    }
}

/// One critic per attention module.
#[derive(Module, Debug)]
pub struct Critics {
    /// Critic of module 0 (stem) to 4 (layer4).
    pub critics: Vec<Critic>,
}

impl Critics {
    /// Builds one critic per input description.
    pub fn new(inputs: &[CriticInput], hidden: usize, device: &Device) -> Self {
        Critics {
            critics: inputs
                .iter()
                .map(|input| CriticConfig::new(*input).with_hidden(hidden).init(device))
                .collect(),
        }
    }

    /// `V_l` for each module.
    ///
    /// # Shapes
    /// - `xs[l]`: `[N, C_l, H_l, W_l]`, `maps[l]`: the module's map
    /// - output: one `[N]` per module
    ///
    /// # Panics
    /// If the numbers of inputs, maps and critics differ.
    pub fn forward(&self, xs: Vec<Tensor<4>>, maps: Vec<Tensor<4>>) -> Vec<Tensor<1>> {
        assert!(
            xs.len() == self.critics.len() && maps.len() == self.critics.len(),
            "Critics: {} critics, {} feature maps, {} attention maps",
            self.critics.len(),
            xs.len(),
            maps.len()
        );
        self.critics
            .iter()
            .zip(xs.into_iter().zip(maps))
            .map(|(critic, (x, a))| critic.forward(x, a))
            .collect()
    }
}
