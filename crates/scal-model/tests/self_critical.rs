//! The self-critical reference (issue 38, stage 3): the antithetic estimator's cosine with
//! the true gradient matches its theory, `1/√(1 + (D + 1)/M)`, on a linear score and on the
//! model's own `log p_y` through the step's passes; a step with it trains no critic.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Tensor};
use scal_model::objective::{StepConfig, antithetic_gradient, scal_loss, self_critical_gradients};
use scal_model::probe::{probe_batch, probe_config};
use scal_model::{AttentionKind, ScalModel};

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [n, d] = t.dims();
    let v: Vec<f32> = t.into_data().try_into_vec().unwrap();
    (0..n).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
}

/// Per sample, the modules' blocks joined into one vector.
fn joined(blocks: Vec<Tensor<2>>) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f32>> = Vec::new();
    for block in blocks {
        for (i, row) in rows(block).into_iter().enumerate() {
            if out.len() <= i {
                out.push(Vec::new());
            }
            out[i].extend(row);
        }
    }
    out
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// The cosine in expectation's ratio, `mean ⟨ĝ, ∇̂⟩ / √(mean ‖ĝ‖²/‖∇‖²)` over samples (`∇̂`
/// the unit true gradient, each sample's `ĝ` in units of its `‖∇‖`): the quantity
/// `1/√(1 + (D + 1)/M)` is exact for; and the mean of the per-sample cosines.
fn cosines(estimates: &[Vec<f32>], truths: &[Vec<f32>]) -> (f64, f64) {
    let (mut along, mut energy, mut mean) = (0.0, 0.0, 0.0);
    for (g, t) in estimates.iter().zip(truths) {
        let norm = dot(t, t).sqrt();
        along += dot(g, t) / (norm * norm);
        energy += dot(g, g) / (norm * norm);
        mean += dot(g, t) / (norm * dot(g, g).sqrt());
    }
    let n = estimates.len() as f64;
    ((along / n) / (energy / n).sqrt(), mean / n)
}

fn theory(d: usize, m: usize) -> f64 {
    1.0 / (1.0 + (d as f64 + 1.0) / m as f64).sqrt()
}

/// A linear score `S(z) = ⟨a_i, z⟩` per sample over two blocks (D = 40): the estimate's
/// cosine with `a_i` is the theory's, and pairing it with another sample's `a` gives none.
#[test]
fn the_antithetic_estimate_of_a_linear_score_has_the_theorys_cosine() {
    let device = Device::flex();
    let (n, widths, m, sigma) = (2000, [24, 16], 4, 0.5);
    let truth: Vec<Tensor<2>> = widths
        .iter()
        .map(|&d| Tensor::random([n, d], Distribution::Normal(0.0, 1.0), &device))
        .collect();
    let (mut differences, mut noise) = (Vec::new(), Vec::new());
    for _ in 0..m {
        let eps: Vec<Tensor<2>> = widths
            .iter()
            .map(|&d| Tensor::random([n, d], Distribution::Normal(0.0, 1.0), &device))
            .collect();
        // S(z + σε) − S(z − σε) = 2σ ⟨a, ε⟩ for a linear S.
        let difference = eps
            .iter()
            .zip(&truth)
            .map(|(e, a)| (e.clone() * a.clone()).sum_dim(1).reshape([n]))
            .reduce(|x, y| x + y)
            .unwrap()
            .mul_scalar(2.0 * sigma);
        differences.push(difference);
        noise.push(eps);
    }
    let estimate = joined(antithetic_gradient(&differences, &noise, sigma));
    let truth = joined(truth);
    let (ratio, mean) = cosines(&estimate, &truth);
    let expected = theory(40, m);
    println!(
        "linear score, D = 40, M = {m}: ratio cosine {ratio:.4}, mean cosine {mean:.4}, theory {expected:.4}"
    );
    assert!(
        (ratio - expected).abs() < 0.02,
        "{ratio} against {expected}"
    );
    let shifted: Vec<Vec<f32>> = truth[1..].iter().chain(&truth[..1]).cloned().collect();
    let (unpaired, _) = cosines(&estimate, &shifted);
    assert!(
        unpaired.abs() < 0.03,
        "another sample's gradient: {unpaired}"
    );
}

/// Each sample's true `∂ log p_y/∂z_l` on the probe model's no-attention copy (batch
/// statistics, as the estimator's passes), one backward pass per sample: its own block
/// (`∂S_i/∂z_i`, joined over modules) and the squared norm of its whole row
/// (`Σ_j ‖∂S_i/∂z_j‖²`: batch statistics make `S_i` depend on the other samples' maps too).
fn true_gradients(model: &ScalModel, images: Tensor<4>, labels: &[i64]) -> Vec<(Vec<f32>, f64)> {
    let copy = model.no_attention_copy();
    let n = labels.len();
    let out = copy.forward(images.clone(), scal_model::Gating::On);
    let widths: Vec<usize> = out
        .maps
        .iter()
        .map(|a| a.dims()[1..].iter().product())
        .collect();
    let device = images.device();
    (0..n)
        .map(|i| {
            let zeros: Vec<Tensor<2>> = widths
                .iter()
                .map(|&d| Tensor::<2>::zeros([n, d], &device).require_grad())
                .collect();
            let pass = copy.forward_noised(images.clone(), &zeros);
            let y = labels[i] as usize;
            let log_p = log_softmax(pass.logits, 1)
                .slice([i..i + 1, y..y + 1])
                .sum();
            let grads = log_p.backward();
            let rows: Vec<Vec<Vec<f32>>> = zeros
                .iter()
                .map(|z| rows(z.grad(&grads).expect("the noise's gradient")))
                .collect();
            let own = rows.iter().flat_map(|r| r[i].clone()).collect();
            let whole = rows.iter().flatten().map(|r| dot(r, r)).sum();
            (own, whole)
        })
        .collect()
}

/// On the probe model (five channel modules, D = 244 logits per sample), the step's
/// estimator at a σ small enough for `log p_y` to be linear (this untrained probe bends
/// within σ = 0.01) points along each sample's own true gradient as the theory says for
/// M = 128 pairs, once the theory counts the other samples' noise that reaches `S_i`
/// through the batch statistics: `E‖ĝ_i‖² = ‖a_i‖²(1 + 1/M) + D‖A_i‖²/M`, `a_i = ∂S_i/∂z_i`,
/// `A_i` the whole row (`1/√(1 + (D + 1)/M)` when `A_i = a_i`); along another sample's
/// gradient it points far less.
#[test]
fn the_self_critical_estimate_on_the_model_has_the_theorys_cosine() {
    let device = Device::flex().autodiff();
    let model = probe_config(AttentionKind::Channel).init(&device);
    model.initialize_parameters();
    let (images, labels) = probe_batch(&device);
    let ids: Vec<i64> = labels.clone().into_data().iter::<i64>().collect();
    let m = 128;
    let config = StepConfig::new()
        .with_exploration(1e-4)
        .with_self_critical_pairs(m);
    let estimate = joined(self_critical_gradients(
        &model,
        images.clone(),
        &labels,
        &config,
    ));
    let (truth, whole): (Vec<Vec<f32>>, Vec<f64>) =
        true_gradients(&model, images, &ids).into_iter().unzip();
    let d = truth[0].len();
    // The stem's 4 channels and the four bottleneck stages' 4·4, 8·4, 16·4, 32·4.
    assert_eq!(
        d,
        4 + 16 + 32 + 64 + 128,
        "the probe's five channel modules"
    );
    let (ratio, mean) = cosines(&estimate, &truth);
    let m_f = m as f64;
    let spread: f64 = truth
        .iter()
        .zip(&whole)
        .map(|(own, whole)| 1.0 + 1.0 / m_f + d as f64 * whole / (dot(own, own) * m_f))
        .sum::<f64>()
        / truth.len() as f64;
    let expected = 1.0 / spread.sqrt();
    println!(
        "probe model, D = {d}, M = {m}, σ = 1e-4: ratio cosine {ratio:.4}, mean cosine {mean:.4}, \
         theory {expected:.4} (without the batch's coupling {:.4})",
        theory(d, m)
    );
    assert!((ratio - expected).abs() < 0.1, "{ratio} against {expected}");
    let shifted: Vec<Vec<f32>> = truth[2..].iter().chain(&truth[..2]).cloned().collect();
    let (unpaired, _) = cosines(&estimate, &shifted);
    assert!(
        unpaired < ratio - 0.1,
        "another identity's gradient: {unpaired}"
    );
}

/// A step with the estimator: no `J_mse` (no critic learns), a push on each of the five
/// agents, and no gradient on any critic's parameter.
#[test]
fn a_self_critical_step_trains_the_agents_and_no_critic() {
    let device = Device::flex().autodiff();
    let model = probe_config(AttentionKind::Channel).init(&device);
    let (images, labels) = probe_batch(&device);
    let config = StepConfig::new()
        .with_exploration(0.5)
        .with_self_critical_pairs(2);
    let loss = scal_loss(&model, images, labels, &config);
    assert!(loss.critic_mse.is_none());
    assert_eq!(loss.bounded_critic_objectives.len(), 5);
    let push = loss
        .bounded_critic_objectives
        .iter()
        .cloned()
        .reduce(|a, b| a + b)
        .unwrap();
    let grads = GradientsParams::from_grads(push.backward(), &model);
    let mut agents = 0;
    model.attention.visit(&mut Count(&grads, &mut agents));
    let mut critics = 0;
    model.critics.visit(&mut Count(&grads, &mut critics));
    assert!(agents > 0, "the push reaches the agents");
    assert_eq!(critics, 0, "no critic learns");
    let total = GradientsParams::from_grads(loss.total.backward(), &model);
    let mut critics = 0;
    model.critics.visit(&mut Count(&total, &mut critics));
    assert_eq!(critics, 0, "nor from the ReID losses");
}

struct Count<'a>(&'a GradientsParams, &'a mut usize);

impl burn::module::ModuleVisitor for Count<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if self.0.get::<D>(param.id).is_some() {
            *self.1 += 1;
        }
    }
}
