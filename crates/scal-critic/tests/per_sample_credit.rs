//! Issue 38's per-sample positive control, tiny: every identity `y` has its own improving
//! direction `w_y` and earns `R = 2·1[⟨w_y, A⟩ > 0]`. Both critics learn from the same
//! exploration `A′ = sigmoid(z + ε)` around the agents' own maps `A = sigmoid(z)`: the paper's
//! critic regresses `R(A′)` on `(X, A′)`, the compatible one `R(A′) − R(A)` on
//! `⟨A′ − A, G(X, y)⟩ + b(X, y)`. The test reads, per sample, the cosine between what each
//! critic tells the agent (`∂V/∂A`, or `G`) and `w_y`. Measured: +0.95 for the compatible
//! critic's `G`, +0.20 for the paper's `∂V/∂A` (which stage 1 expected below 0.1).
//!
//! The directions come in antithetic pairs (`w_{y + P/2} = −w_y`), so their mean is 0 and a
//! critic whose action-gradient is one shared direction scores 0 here, however well it
//! fits `R`.

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use scal_critic::{CompatibleCriticConfig, CriticConfig, CriticInput};

/// Identities (8 antithetic pairs), samples per identity, channels (the map's size).
const IDENTITIES: usize = 16;
const PER_IDENTITY: usize = 4;
const CHANNELS: usize = 16;
const SAMPLES: usize = IDENTITIES * PER_IDENTITY;
/// The exploration's standard deviation on the logits (the project's `channel-explore`).
const EXPLORATION: f64 = 0.5;
/// Adam steps and learning rate of both critics.
const STEPS: usize = 300;
const LR: f64 = 3e-3;

/// A seeded problem: features `X` `[N, C, 2, 2]` (the identity's mean plus noise), labels
/// `[N]`, the agents' logits `z` `[N, C]` and each sample's `w_y` `[N, C]` (unit rows,
/// zero-sum, so that the threshold 0 halves the batch).
struct Problem {
    x: Tensor<4>,
    labels: Tensor<1, Int>,
    logits: Tensor<2>,
    directions: Tensor<2>,
}

fn problem(device: &Device) -> Problem {
    device.seed(38);
    let ids: Vec<i64> = (0..SAMPLES as i64)
        .map(|i| i / PER_IDENTITY as i64)
        .collect();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(ids, [SAMPLES]), device);
    let normal = |shape: [usize; 2], std: f64| {
        Tensor::<2>::random(shape, Distribution::Normal(0.0, std), device)
    };
    let means = normal([IDENTITIES, CHANNELS], 1.0).select(0, labels.clone());
    let x = (means.reshape([SAMPLES, CHANNELS, 1, 1])
        + Tensor::random(
            [SAMPLES, CHANNELS, 2, 2],
            Distribution::Normal(0.0, 0.3),
            device,
        ))
    .detach();
    let half = normal([IDENTITIES / 2, CHANNELS], 1.0);
    let half = half.clone() - half.mean_dim(1);
    let half = half.clone() / half.powi_scalar(2).sum_dim(1).sqrt();
    let directions = Tensor::cat(vec![half.clone(), half.neg()], 0).select(0, labels.clone());
    Problem {
        x,
        labels,
        logits: normal([SAMPLES, CHANNELS], 0.5),
        directions,
    }
}

impl Problem {
    /// `R = 2·1[⟨w_y, A⟩ > 0]` per sample. `maps`: `[N, C]`; output `[N]`.
    fn reward(&self, maps: Tensor<2>) -> Tensor<1> {
        (maps * self.directions.clone())
            .sum_dim(1)
            .greater_elem(0.0)
            .float()
            .mul_scalar(2.0)
            .reshape([SAMPLES])
    }

    /// The agents' maps `[N, C]` and an exploring draw `[N, C]` around them.
    fn explore(&self) -> (Tensor<2>, Tensor<2>) {
        let noise = Tensor::random(
            [SAMPLES, CHANNELS],
            Distribution::Normal(0.0, EXPLORATION),
            &self.logits.device(),
        );
        (
            sigmoid(self.logits.clone()),
            sigmoid(self.logits.clone() + noise),
        )
    }

    /// The mean over samples of the cosine between rows of `toward` `[N, C]` and `w_y`.
    fn mean_cosine(&self, toward: Tensor<2>) -> f64 {
        let (g, w): (Vec<f32>, Vec<f32>) = (
            toward.into_data().iter::<f32>().collect(),
            self.directions.clone().into_data().iter::<f32>().collect(),
        );
        let cosines = g.chunks(CHANNELS).zip(w.chunks(CHANNELS)).map(|(g, w)| {
            let dot: f64 = g
                .iter()
                .zip(w)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let norm = g.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
            if norm > 0.0 { dot / norm } else { 0.0 }
        });
        cosines.sum::<f64>() / SAMPLES as f64
    }
}

fn channel_map(maps: Tensor<2>) -> Tensor<4> {
    maps.reshape([SAMPLES, CHANNELS, 1, 1])
}

/// The paper's critic trained on the exploration; its `∂V/∂A` at the agents' maps.
fn paper_critic_gradient(p: &Problem, device: &Device) -> Tensor<2> {
    let mut critic = CriticConfig::new(CriticInput::Channel { channels: CHANNELS })
        .with_hidden(32)
        .init(device);
    let mut optimizer = AdamConfig::new().init();
    for _ in 0..STEPS {
        let (_, explored) = p.explore();
        let value = critic.forward(p.x.clone(), channel_map(explored.clone()));
        let loss = (value - p.reward(explored)).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &critic);
        critic = optimizer.step(LR, critic, grads);
    }
    let leaf = sigmoid(p.logits.clone()).detach().require_grad();
    let value = critic.forward(p.x.clone(), channel_map(leaf.clone()));
    leaf.grad(&value.sum().backward()).expect("V's gradient")
}

/// The compatible critic trained on the same exploration; its `G` per sample.
fn compatible_critic_direction(p: &Problem, device: &Device) -> Tensor<2> {
    let mut critic =
        CompatibleCriticConfig::new(CriticInput::Channel { channels: CHANNELS }, IDENTITIES)
            .with_hidden(32)
            .init(device);
    let mut optimizer = AdamConfig::new().init();
    for _ in 0..STEPS {
        let (own, explored) = p.explore();
        let target = p.reward(explored.clone()) - p.reward(own.clone());
        let said = critic.forward(p.x.clone(), p.labels.clone());
        let q = said.value(channel_map(explored - own));
        let loss = (q - target).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &critic);
        critic = optimizer.step(LR, critic, grads);
    }
    critic.forward(p.x.clone(), p.labels.clone()).direction
}

#[test]
fn a_compatible_critic_points_each_sample_along_its_own_direction_better_than_the_papers() {
    let device = Device::flex().autodiff();
    let p = problem(&device);
    // Both rewards occur, and exploring changes them for part of the batch.
    let (own, explored) = p.explore();
    let (r, r_explored): (Vec<f32>, Vec<f32>) = (
        p.reward(own).into_data().iter::<f32>().collect(),
        p.reward(explored).into_data().iter::<f32>().collect(),
    );
    let twos = r.iter().filter(|&&v| v == 2.0).count();
    let changed = r.iter().zip(&r_explored).filter(|(a, b)| a != b).count();
    assert!(
        (16..=48).contains(&twos) && changed >= 8,
        "{twos} {changed}"
    );
    let compatible = p.mean_cosine(compatible_critic_direction(&p, &device));
    let paper = p.mean_cosine(paper_critic_gradient(&p, &device));
    eprintln!("mean cos with w_y: compatible {compatible:+.3}, paper {paper:+.3}");
    // Measured (seed 38): compatible +0.95, paper +0.20. The paper's critic is not blind
    // here (this X tells the identity apart, and its hidden units can combine X with A), but
    // the compatible critic points each sample along its own direction far better.
    assert!(compatible >= 0.3, "compatible critic: {compatible}");
    assert!(
        compatible - paper >= 0.3,
        "compatible {compatible} against the paper's {paper}"
    );
}
