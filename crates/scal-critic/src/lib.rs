//! # scal-critic
//!
//! ```
//! # use burn::tensor::{Device, Tensor};
//! use scal_critic::{CriticConfig, CriticInput};
//! # let device = Device::flex();
//! # let (x, a) = (Tensor::<4>::ones([2, 64, 16, 8], &device), Tensor::<4>::ones([2, 64, 1, 1], &device));
//! let critic = CriticConfig::new(CriticInput::Channel { channels: 64 }).init(&device);
//! let v = critic.forward(x, a); // X_l [N, C, H, W], A_l [N, C, 1, 1] → V [N], the expected R
//! # assert_eq!(v.dims(), [2]);
//! ```
//!
//! The critic of SCAL (`docs/scal-method.md`): for each attention module `l`, a small network
//! `V_l = C_l(X_l, A_l)` that estimates the reward `R ∈ {0, 1, 2}` the attention earns.
//! Input: `concat(GAP(X_l), A_l)` for channel attention, `concat(flatten(mean_c X_l),
//! flatten(A_l))` for spatial attention; then `FC → ReLU → FC → 1`, linear output.
//! No batch norm: a frozen clone of the critic (used on the agent's gradient path) must not
//! share running statistics with the live one.
//!
//! Beyond the paper, [`CriticScaling::BatchStandardized`] centres and scales each input
//! feature by its mean and standard deviation over the batch (taken as constants, no running
//! statistics): attention maps vary across samples by hundredths, a spread at which a critic
//! initialised and trained at the usual scale learns its dependence on `A` only after
//! thousands of steps.

#![warn(missing_docs)]

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

/// How a critic scales what it reads before its first layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CriticScaling {
    /// As read (the paper's critic).
    #[serde(rename = "raw")]
    Raw,
    /// Each input feature minus its batch mean, over its batch standard deviation (+ 1e-5),
    /// mean and deviation detached: a per-sample function of the input given the batch's
    /// constants. A batch of one reads zeros.
    #[serde(rename = "batch-standardized")]
    BatchStandardized,
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
    /// How the input is scaled.
    #[config(default = "CriticScaling::Raw")]
    pub scaling: CriticScaling,
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
            standardized: self.scaling == CriticScaling::BatchStandardized,
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
    /// Whether it standardises its input over the batch ([`CriticScaling::BatchStandardized`]).
    pub standardized: bool,
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
        let mut input = self.input(x, a);
        let n = input.dims()[0];
        if self.standardized {
            input = standardize(input);
        }
        self.fc2.forward(relu(self.fc1.forward(input))).reshape([n])
    }

    /// What the critic reads: the summary of `x` (its global average per channel, or its
    /// channel mean per position for a spatial critic) concatenated with the flattened map.
    ///
    /// # Shapes
    /// - `x`, `a`: as [`Critic::forward`]
    /// - output: `[N, 2C]` (channel) or `[N, 2HW]` (spatial)
    ///
    /// # Panics
    /// If the shapes do not fit the critic's input width.
    pub fn input(&self, x: Tensor<4>, a: Tensor<4>) -> Tensor<2> {
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
        input
    }
}

/// Each column minus its mean over the rows, over its standard deviation (+ 1e-5); the
/// statistics detached.
///
/// # Shapes
/// - `input`: `[N, D]`; output: `[N, D]`
fn standardize(input: Tensor<2>) -> Tensor<2> {
    let mean = input.clone().detach().mean_dim(0);
    let centred = input - mean;
    let deviation = centred
        .clone()
        .detach()
        .powi_scalar(2)
        .mean_dim(0)
        .sqrt()
        .add_scalar(1e-5);
    centred / deviation
}

/// Configuration of [`Critics`]: one critic per attention module.
#[derive(Config, Debug)]
pub struct CriticsConfig {
    /// What each module's critic reads, module 0 (stem) first.
    pub inputs: Vec<CriticInput>,
    /// Hidden width of every critic.
    #[config(default = 256)]
    pub hidden: usize,
    /// How every critic scales its input.
    #[config(default = "CriticScaling::Raw")]
    pub scaling: CriticScaling,
}

impl CriticsConfig {
    /// Builds one critic per input description (none for no input: a model without
    /// attention).
    ///
    /// # Panics
    /// If `hidden` is 0 and there is an input.
    pub fn init(&self, device: &Device) -> Critics {
        Critics {
            critics: self
                .inputs
                .iter()
                .map(|input| {
                    CriticConfig::new(*input)
                        .with_hidden(self.hidden)
                        .with_scaling(self.scaling)
                        .init(device)
                })
                .collect(),
        }
    }
}

/// One critic per attention module.
#[derive(Module, Debug)]
pub struct Critics {
    /// Critic of module 0 (stem) to 4 (layer4).
    pub critics: Vec<Critic>,
}

impl Critics {
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn input_widths_follow_what_the_critic_reads() {
        let device = Device::flex();
        let channel = CriticConfig::new(CriticInput::Channel { channels: 6 }).init(&device);
        assert_eq!(channel.fc1.weight.dims(), [12, 256]);
        assert_eq!(channel.fc2.weight.dims(), [256, 1]);
        let spatial = CriticConfig::new(CriticInput::Spatial {
            height: 4,
            width: 3,
        })
        .with_hidden(5)
        .init(&device);
        assert_eq!(spatial.fc1.weight.dims(), [24, 5]);
    }

    #[test]
    fn a_critic_reads_the_pooled_feature_and_the_map() {
        // Channel critic: the input is [GAP(X), A]; with fc1 = identity-like weights picked
        // by hand, V is a known linear function of them.
        let device = Device::flex();
        let mut critic = CriticConfig::new(CriticInput::Channel { channels: 2 })
            .with_hidden(4)
            .init(&device);
        let eye = TensorData::new(
            vec![
                1.0f32, 0.0, 0.0, 0.0, //
                0.0, 1.0, 0.0, 0.0, //
                0.0, 0.0, 1.0, 0.0, //
                0.0, 0.0, 0.0, 1.0,
            ],
            [4, 4],
        );
        critic.fc1.weight = burn::module::Param::from_tensor(Tensor::from_data(eye, &device));
        critic.fc1.bias = Some(burn::module::Param::from_tensor(Tensor::zeros(
            [4],
            &device,
        )));
        critic.fc2.weight = burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [4, 1]),
            &device,
        ));
        critic.fc2.bias = Some(burn::module::Param::from_tensor(Tensor::zeros(
            [1],
            &device,
        )));
        // X: channel means 2 and 4; A: 0.5 and 0.25 (all positive: ReLU passes them).
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 3.0, 4.0, 4.0], [1, 2, 2, 1]),
            &device,
        );
        let a = Tensor::<4>::from_data(TensorData::new(vec![0.5f32, 0.25], [1, 2, 1, 1]), &device);
        let v = critic
            .forward(x, a)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(v, vec![2.0 + 2.0 * 4.0 + 3.0 * 0.5 + 4.0 * 0.25]);
    }

    #[test]
    fn a_standardizing_critic_reads_each_feature_in_batch_units() {
        let device = Device::flex();
        let input = CriticInput::Channel { channels: 3 };
        let critic = CriticConfig::new(input)
            .with_hidden(4)
            .with_scaling(CriticScaling::BatchStandardized)
            .init(&device);
        let x = random([6, 3, 2, 2], &device);
        let a = random([6, 3, 1, 1], &device);
        let standardized = standardize(critic.input(x.clone(), a.clone()));
        let rows: Vec<f32> = standardized.into_data().try_into_vec().unwrap();
        for column in 0..6 {
            let values: Vec<f64> = (0..6).map(|row| rows[row * 6 + column] as f64).collect();
            let mean = values.iter().sum::<f64>() / 6.0;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 6.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
                "{mean} {var}"
            );
        }
        // A shifted and scaled batch reads the same: V depends on where a sample stands in
        // its batch, at any scale. (Scaled up, not down: the 1e-5 added to each feature's
        // deviation must stay negligible for the unseeded draw of six samples.)
        let v = critic.forward(x.clone(), a.clone());
        let w = critic.forward(
            x.mul_scalar(100.0).add_scalar(3.0),
            a.mul_scalar(10.0).add_scalar(-2.0),
        );
        let (v, w): (Vec<f32>, Vec<f32>) = (
            v.into_data().try_into_vec().unwrap(),
            w.into_data().try_into_vec().unwrap(),
        );
        assert!(
            v.iter().zip(&w).all(|(p, q)| (p - q).abs() < 1e-3),
            "{v:?} {w:?}"
        );
        let raw = CriticConfig::new(input).with_hidden(4).init(&device);
        assert!(!raw.standardized, "raw by default");
    }

    #[test]
    fn one_value_per_sample_and_module_and_mismatches_are_refused() {
        let device = Device::flex();
        let inputs = vec![
            CriticInput::Spatial {
                height: 4,
                width: 2,
            };
            5
        ];
        let critics = CriticsConfig::new(inputs).with_hidden(8).init(&device);
        assert_eq!(critics.critics.len(), 5);
        let xs: Vec<Tensor<4>> = (0..5).map(|_| random([3, 6, 4, 2], &device)).collect();
        let maps: Vec<Tensor<4>> = (0..5).map(|_| random([3, 1, 4, 2], &device)).collect();
        let values = critics.forward(xs.clone(), maps);
        assert_eq!(values.len(), 5);
        assert!(values.iter().all(|v| v.dims() == [3]));
        let too_few = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            critics.forward(xs, Vec::new())
        }));
        assert!(too_few.is_err(), "five feature maps and no attention map");
        let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            critics.critics[0].forward(random([1, 6, 2, 2], &device), random([1, 1, 2, 2], &device))
        }));
        assert!(wrong.is_err(), "a 2x2 map for a critic built for 4x2");
        assert!(
            CriticsConfig::new(Vec::new())
                .init(&device)
                .critics
                .is_empty()
        );
    }
}
