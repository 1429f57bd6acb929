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
//!
//! Also beyond the paper, [`CriticKind::Compatible`]: a critic linear in the action's
//! deviation, as the compatible critics of deterministic policy gradients,
//! `Q_l = ⟨A′_l − A_l, G_l(X_l, y)⟩ + b_l(X_l, y)` ([`CompatibleCritic`]). Its action-gradient
//! `∂Q/∂A′ = G` is computed per sample from the sample's features and label, so it can point
//! in a different direction for every sample, which the paper's critic (whose `∂V/∂A`
//! varies only through which hidden units are active) measured did not.

#![warn(missing_docs)]

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};
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
        2 * self.map_size()
    }

    /// Elements of the attention map (and of the summary of `X` the critic reads): `C` for a
    /// channel map, `H·W` for a spatial one.
    pub fn map_size(&self) -> usize {
        match *self {
            CriticInput::Channel { channels } => channels,
            CriticInput::Spatial { height, width } => height * width,
        }
    }
}

/// Which critic a model trains (`paper`, `compatible` in configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CriticKind {
    /// `V_l = C_l(X_l, A_l)` regressing the reward ([`Critic`], the paper's).
    #[serde(rename = "paper")]
    Paper,
    /// `Q_l = ⟨A′_l − A_l, G_l(X_l, y)⟩ + b_l(X_l, y)`, linear in the action's deviation
    /// ([`CompatibleCritic`], beyond the paper).
    #[serde(rename = "compatible")]
    Compatible,
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

/// Configuration of a [`CompatibleCritic`].
#[derive(Config, Debug)]
pub struct CompatibleCriticConfig {
    /// What the critic reads (fixes the map's size `D`).
    pub input: CriticInput,
    /// Training identities (rows of the label embedding).
    pub classes: usize,
    /// Hidden width.
    #[config(default = 256)]
    pub hidden: usize,
}

impl CompatibleCriticConfig {
    /// Builds the critic, its output layer at zero (`G = 0`, `b = 0`: it starts by saying
    /// nothing, and pushes no agent).
    ///
    /// # Panics
    /// If `hidden` or `classes` is 0.
    pub fn init(&self, device: &Device) -> CompatibleCritic {
        assert!(self.hidden > 0, "CompatibleCriticConfig.hidden must be > 0");
        assert!(
            self.classes > 0,
            "CompatibleCriticConfig.classes must be > 0"
        );
        let d = self.input.map_size();
        CompatibleCritic {
            fc1: LinearConfig::new(d, self.hidden).init(device),
            label: EmbeddingConfig::new(self.classes, self.hidden).init(device),
            fc2: LinearConfig::new(self.hidden, d + 1)
                .with_initializer(Initializer::Zeros)
                .init(device),
            spatial: matches!(self.input, CriticInput::Spatial { .. }),
        }
    }
}

/// A compatible critic for one attention module: from the summary of `X_l` the paper's
/// critic reads (`GAP(X_l)`, or `mean_c X_l` for a spatial module), standardised over the
/// batch (statistics detached), and the sample's label `y`,
/// `[G_l, b_l] = fc2(relu(fc1(s) + E[y]))`, where `E` is a learned label embedding (the
/// same as concatenating a one-hot label to `fc1`'s input). Its estimate of what a
/// deviation `A′ − A` of the map earns is `Q = ⟨A′ − A, G⟩ + b`: `G` is the estimated
/// gradient of the sample's score along the map, `b` a baseline for what the deviation's
/// size alone costs or earns.
#[derive(Module, Debug)]
pub struct CompatibleCritic {
    /// Standardised summary → hidden.
    pub fc1: Linear,
    /// Label → hidden (added to `fc1`'s output).
    pub label: Embedding,
    /// Hidden → `D + 1`: the direction `G` (`D` = the map's `C·H·W`) and the baseline `b`.
    pub fc2: Linear,
    /// Whether it reads spatial (`true`) or channel maps.
    pub spatial: bool,
}

/// What a [`CompatibleCritic`] says about a batch.
#[derive(Debug, Clone)]
pub struct CompatibleOutput {
    /// `G`, one row per sample, in the map's element order. `[N, D]`
    pub direction: Tensor<2>,
    /// `b`. `[N]`
    pub baseline: Tensor<1>,
}

impl CompatibleOutput {
    /// `Q = ⟨Δ, G⟩ + b` per sample for map deviations `Δ = A′ − A`.
    ///
    /// # Shapes
    /// - `deviation`: `[N, C, 1, 1]` or `[N, 1, H, W]` (`C·H·W` = `D`); output: `[N]`
    pub fn value(&self, deviation: Tensor<4>) -> Tensor<1> {
        let [n, d] = self.direction.dims();
        (deviation.reshape([n, d]) * self.direction.clone())
            .sum_dim(1)
            .reshape([n])
            + self.baseline.clone()
    }
}

impl CompatibleCritic {
    /// `G` and `b` per sample.
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`, the feature map the attention module read; `labels`: `[N]`
    /// - output: `direction` `[N, D]`, `baseline` `[N]`
    ///
    /// # Panics
    /// If the summary of `x` does not have the critic's width, or a label is not below its
    /// number of classes.
    pub fn forward(&self, x: Tensor<4>, labels: Tensor<1, Int>) -> CompatibleOutput {
        let [n, c, h, w] = x.dims();
        let summary = if self.spatial {
            x.mean_dim(1).reshape([n, h * w])
        } else {
            x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
        };
        let d = self.fc1.weight.dims()[0];
        assert_eq!(
            summary.dims()[1],
            d,
            "CompatibleCritic built for maps of {d} elements got a [{n}, {c}, {h}, {w}] input"
        );
        let hidden = self.fc1.weight.dims()[1];
        let label = self
            .label
            .forward(labels.reshape([n, 1]))
            .reshape([n, hidden]);
        let out = self
            .fc2
            .forward(relu(self.fc1.forward(standardize(summary)) + label));
        CompatibleOutput {
            direction: out.clone().slice([0..n, 0..d]),
            baseline: out.slice([0..n, d..d + 1]).reshape([n]),
        }
    }

    /// `G` in the shape of the map: `[N, C, 1, 1]` (channel) or `[N, 1, H, W]` (spatial).
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`, `labels`: `[N]`; output as described
    pub fn direction_map(&self, x: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let direction = self.forward(x, labels).direction;
        if self.spatial {
            direction.reshape([n, 1, h, w])
        } else {
            direction.reshape([n, c, 1, 1])
        }
    }
}

/// Configuration of [`Critics`]: one critic per attention module.
#[derive(Config, Debug)]
pub struct CriticsConfig {
    /// What each module's critic reads, module 0 (stem) first.
    pub inputs: Vec<CriticInput>,
    /// Hidden width of every critic.
    #[config(default = 256)]
    pub hidden: usize,
    /// How every critic scales its input (the paper's kind; a compatible critic always
    /// standardises its summary).
    #[config(default = "CriticScaling::Raw")]
    pub scaling: CriticScaling,
    /// Which critics.
    #[config(default = "CriticKind::Paper")]
    pub kind: CriticKind,
    /// Training identities, for the label embedding of [`CriticKind::Compatible`] (unused by
    /// the paper's critics).
    #[config(default = 0)]
    pub classes: usize,
}

impl CriticsConfig {
    /// Builds one critic of `kind` per input description (none for no input: a model
    /// without attention).
    ///
    /// # Panics
    /// If `hidden` is 0 and there is an input, or `classes` is 0 for compatible critics.
    pub fn init(&self, device: &Device) -> Critics {
        let paper = self.kind == CriticKind::Paper;
        Critics {
            critics: self
                .inputs
                .iter()
                .filter(|_| paper)
                .map(|input| {
                    CriticConfig::new(*input)
                        .with_hidden(self.hidden)
                        .with_scaling(self.scaling)
                        .init(device)
                })
                .collect(),
            compatible: self
                .inputs
                .iter()
                .filter(|_| !paper)
                .map(|input| {
                    CompatibleCriticConfig::new(*input, self.classes)
                        .with_hidden(self.hidden)
                        .init(device)
                })
                .collect(),
        }
    }
}

/// One critic per attention module: the paper's, or compatible ones.
#[derive(Module, Debug)]
pub struct Critics {
    /// The paper's critic of module 0 (stem) to 4 (layer4) (empty with compatible critics).
    pub critics: Vec<Critic>,
    /// The compatible critic of module 0 to 4 (empty with the paper's).
    pub compatible: Vec<CompatibleCritic>,
}

impl Critics {
    /// Which critics these are ([`CriticKind::Paper`] when there are none).
    pub fn kind(&self) -> CriticKind {
        if self.compatible.is_empty() {
            CriticKind::Paper
        } else {
            CriticKind::Compatible
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

    fn labels(values: &[i64], device: &Device) -> Tensor<1, Int> {
        Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
    }

    fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn a_compatible_critic_gives_one_direction_per_sample_and_starts_silent() {
        let device = Device::flex();
        let channel = CompatibleCriticConfig::new(CriticInput::Channel { channels: 6 }, 5)
            .with_hidden(8)
            .init(&device);
        assert_eq!(channel.fc1.weight.dims(), [6, 8]);
        assert_eq!(channel.label.weight.dims(), [5, 8]);
        assert_eq!(channel.fc2.weight.dims(), [8, 7]);
        let x = random([3, 6, 2, 2], &device);
        let said = channel.forward(x.clone(), labels(&[0, 4, 2], &device));
        assert_eq!(said.direction.dims(), [3, 6]);
        assert_eq!(said.baseline.dims(), [3]);
        // The output layer starts at zero: no direction, no baseline, no push.
        assert!(floats(said.direction).iter().all(|v| *v == 0.0));
        assert!(floats(said.baseline).iter().all(|v| *v == 0.0));
        let map = channel.direction_map(x, labels(&[0, 4, 2], &device));
        assert_eq!(map.dims(), [3, 6, 1, 1]);
        let spatial = CompatibleCriticConfig::new(
            CriticInput::Spatial {
                height: 4,
                width: 2,
            },
            5,
        )
        .with_hidden(8)
        .init(&device);
        let x = random([3, 6, 4, 2], &device);
        let said = spatial.forward(x.clone(), labels(&[1, 1, 3], &device));
        assert_eq!(said.direction.dims(), [3, 8]);
        assert_eq!(
            spatial.direction_map(x, labels(&[1, 1, 3], &device)).dims(),
            [3, 1, 4, 2]
        );
        let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            spatial.forward(random([1, 6, 2, 2], &device), labels(&[0], &device))
        }));
        assert!(wrong.is_err(), "a 2x2 map for a critic built for 4x2");
    }

    #[test]
    fn a_compatible_critics_estimate_is_linear_in_the_maps_deviation() {
        let device = Device::flex();
        let mut critic = CompatibleCriticConfig::new(CriticInput::Channel { channels: 4 }, 3)
            .with_hidden(8)
            .init(&device);
        critic.fc2 = LinearConfig::new(8, 5).init(&device);
        // A fixed X whose two samples' channel means differ by at least 0.5, so that the
        // batch standardisation's epsilon is negligible at every scale below (a random X,
        // drawn from the process-wide generator in whatever order tests run, could put two
        // means close enough for the epsilon to move the direction by 2e-3).
        let values: Vec<f32> = (0..72)
            .map(|i| {
                let (sample, channel) = (i / 36, i / 9 % 4);
                let spread = ((i * 7) % 9) as f32 / 9.0 - 0.5;
                (channel as f32 - 1.5) * if sample == 0 { 1.0 } else { -0.5 } + 0.2 * spread
            })
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [2, 4, 3, 3]), &device);
        let said = critic.forward(x.clone(), labels(&[0, 2], &device));
        let (d1, d2) = (random([2, 4, 1, 1], &device), random([2, 4, 1, 1], &device));
        // At A' = A the estimate is the baseline alone; beyond it, linear in A' − A.
        let b = floats(said.baseline.clone());
        assert_eq!(floats(said.value(d1.zeros_like())), b);
        let q1 = floats(said.value(d1.clone()));
        let q2 = floats(said.value(d2.clone()));
        let both = floats(said.value(d1 + d2.mul_scalar(2.0)));
        for i in 0..2 {
            let linear = (q1[i] - b[i]) + 2.0 * (q2[i] - b[i]);
            assert!(
                (both[i] - b[i] - linear).abs() < 1e-4,
                "{both:?} {q1:?} {q2:?} {b:?}"
            );
        }
        // The direction depends on the label, and on X only through its batch-standardised
        // summary.
        let other = critic.forward(x.clone(), labels(&[1, 2], &device));
        let (g, h) = (floats(said.direction.clone()), floats(other.direction));
        assert!(
            g[..4]
                .iter()
                .zip(&h[..4])
                .any(|(p, q)| (p - q).abs() > 1e-4)
        );
        assert!(
            g[4..]
                .iter()
                .zip(&h[4..])
                .all(|(p, q)| (p - q).abs() < 1e-5)
        );
        let rescaled = critic.forward(
            x.mul_scalar(50.0).add_scalar(-2.0),
            labels(&[0, 2], &device),
        );
        let r = floats(rescaled.direction);
        assert!(
            g.iter().zip(&r).all(|(p, q)| (p - q).abs() < 1e-3),
            "{g:?} {r:?}"
        );
    }

    #[test]
    fn critics_of_either_kind() {
        let device = Device::flex();
        let inputs = vec![CriticInput::Channel { channels: 3 }; 2];
        let paper = CriticsConfig::new(inputs.clone())
            .with_hidden(4)
            .init(&device);
        assert_eq!((paper.critics.len(), paper.compatible.len()), (2, 0));
        assert_eq!(paper.kind(), CriticKind::Paper);
        let compatible = CriticsConfig::new(inputs)
            .with_hidden(4)
            .with_kind(CriticKind::Compatible)
            .with_classes(7)
            .init(&device);
        assert_eq!(
            (compatible.critics.len(), compatible.compatible.len()),
            (0, 2)
        );
        assert_eq!(compatible.kind(), CriticKind::Compatible);
        assert_eq!(compatible.compatible[1].label.weight.dims(), [7, 4]);
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
