//! What `J_cri` tells the agents, measured on a trained model: for each attention module
//! `l`, on training batches drawn as training draws them,
//!
//! - the cosine, per sample, between `∂V_l/∂A_l` (the direction in which `λ·J_cri = −λ V`
//!   moves the map) and `∂ log p_k/∂A_l` (the direction that raises the true class's
//!   log-probability, through every later stage), with a bootstrap 95 % interval of its mean;
//! - the correlation between what the critic says the map is worth, `V_l(X, A) − V_l(X, 1)`,
//!   and what it realised, `p_k(A) − p_k(A with map l replaced by ones)`;
//! - the norms of `λ·∇J_cri` and of the ReID losses' gradient on the agent's parameters;
//! - how much the samples' directions agree, for `∂V_l/∂A_l` and for `∂ log p_k/∂A_l` (the
//!   length of the mean of their unit vectors): a critic can point where each sample's reward
//!   improves only if its action-gradient varies between samples as that direction does;
//! - in a run with the planted reward of the positive control, at its module, the cosine
//!   between `∂V_l/∂A_l` and the planted direction `w` (the reward rises along `w` and along
//!   nothing else): the same instrument on a reward whose gradient is known.
//!
//! For compatible critics (`Q_l = ⟨A′_l − A_l, G_l⟩ + b_l`) the action-gradient is
//! `∂Q_l/∂A′_l = G_l`, what their `J_cri` pushes the agents along; what they say a map is
//! worth against ones is the first-order `⟨A_l − 1, G_l⟩`; and the step bounds their push on
//! each agent, so the scale it would apply is reported too.
//!
//! Passes run as the training step's no-attention pass does (batch statistics, running
//! statistics untouched), so the model is not changed. Batch norm couples the samples of a
//! batch, so a sample's log-probability gradient holds a small share (order 1/N) from the
//! other samples' maps.

use std::collections::HashSet;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor};
use rand::{RngExt, SeedableRng};
use scal_backbone::global_average_pool;
use scal_data::{SamplerPosition, TrainLoader};
use scal_model::objective::{StepConfig, scal_loss};
use scal_model::{Gating, ScalModel, ScalOutput};
use serde::Serialize;

use crate::TrainError;

/// A mean with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The mean.
    pub mean: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// The measurements of one module.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleGradient {
    /// The module (0: after the stem).
    pub module: usize,
    /// Samples measured.
    pub samples: usize,
    /// Mean cosine between `∂V_l/∂A_l` and `∂ log p_k/∂A_l` over samples, with the
    /// percentile bootstrap's 95 % interval (2,000 resamples of the samples).
    pub cosine: Interval,
    /// `‖mean over samples of ∂V_l/∂A_l / ‖∂V_l/∂A_l‖‖`: 1 when the critic's action-gradient
    /// points the same way for every sample, about `1/√samples` when the directions are
    /// unrelated.
    pub value_gradient_coherence: f64,
    /// The same for `∂ log p_k/∂A_l`, the direction that raises each sample's true class.
    pub class_gradient_coherence: f64,
    /// Pearson correlation of `V_l(X, A) − V_l(X, 1)` with `p_k(A) − p_k(A, map l = 1)`
    /// (`None` when either is constant).
    pub value_gain_correlation: Option<f64>,
    /// Mean over batches of `‖λ·∇J_cri‖` on the agent's parameters.
    pub critic_gradient_norm: f64,
    /// Mean over batches of `‖∇(J_tri + J_cls)‖` on the agent's parameters.
    pub reid_gradient_norm: f64,
    /// With a planted reward, at its module only: the mean cosine between `∂V_l/∂A_l` and
    /// the planted direction `w`, with the bootstrap's 95 % interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planted_cosine: Option<Interval>,
    /// With compatible critics: the mean over batches of the scale a training step applies
    /// to `λ·∇J_cri` on this agent, `min(1, ‖∇ReID‖ / ‖λ∇J_cri‖)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critic_push_scale: Option<f64>,
}

/// Sums of squared gradients of a set of parameters.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    ids: &'a HashSet<ParamId>,
    sum: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.ids.contains(&param.id) {
            return;
        }
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.sum += g
                .into_data()
                .iter::<f32>()
                .map(|v| (v as f64).powi(2))
                .sum::<f64>();
        }
    }
}

/// The parameter ids of a module.
struct Ids(HashSet<ParamId>);

impl ModuleVisitor for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.insert(param.id);
    }
}

fn norm_on(model: &ScalModel, grads: &GradientsParams, ids: &HashSet<ParamId>) -> f64 {
    let mut visitor = SquaredNorm {
        grads,
        ids,
        sum: 0.0,
    };
    model.visit(&mut visitor);
    visitor.sum.sqrt()
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Per-module accumulators over batches.
#[derive(Default, Clone)]
struct Accumulated {
    cosines: Vec<f64>,
    value_directions: UnitSum,
    class_directions: UnitSum,
    planted_cosines: Vec<f64>,
    value_gains: Vec<f64>,
    realised_gains: Vec<f64>,
    critic_norms: Vec<f64>,
    reid_norms: Vec<f64>,
    push_scales: Vec<f64>,
}

/// The sum of the unit vectors of the rows of `[N, D]` matrices, and how many rows were added
/// (a zero row adds nothing to the sum but counts).
#[derive(Default, Clone)]
struct UnitSum {
    sum: Vec<f64>,
    rows: usize,
}

impl UnitSum {
    fn add_rows(&mut self, rows: &[f32], n: usize) {
        if n == 0 {
            return;
        }
        let d = rows.len() / n;
        if self.sum.is_empty() {
            self.sum = vec![0.0; d];
        }
        assert_eq!(d, self.sum.len(), "rows of one width");
        for row in rows.chunks_exact(d.max(1)) {
            let norm = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            if norm > 0.0 {
                self.sum
                    .iter_mut()
                    .zip(row)
                    .for_each(|(s, v)| *s += *v as f64 / norm);
            }
            self.rows += 1;
        }
    }

    /// The length of the mean unit vector (0 with no rows).
    fn coherence(&self) -> f64 {
        let n = self.rows.max(1) as f64;
        self.sum.iter().map(|s| (s / n).powi(2)).sum::<f64>().sqrt()
    }
}

/// The logits with module `module`'s map replaced by `map` (every other module computing
/// its own map from its input).
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`, `map`: module `module`'s map shape; output `[N, K]`
fn logits_with_map(
    model: &ScalModel,
    images: Tensor<4>,
    module: usize,
    map: Tensor<4>,
) -> Tensor<2> {
    let last = model.backbone.forward_staged(images, |stage, x| {
        if stage == module {
            x * map.clone()
        } else {
            model.attention.gate(stage, x, Gating::On).0
        }
    });
    model
        .classifier
        .forward(model.neck.forward(global_average_pool(last)))
}

/// Per-sample cosine between the rows of two `[N, D]` matrices (0 for a zero row).
fn row_cosines(a: &[f32], b: &[f32], n: usize) -> Vec<f64> {
    let d = a.len() / n.max(1);
    (0..n)
        .map(|i| {
            let (x, y) = (&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|q| (*q as f64).powi(2)).sum::<f64>().sqrt();
            if nx > 0.0 && ny > 0.0 {
                dot / (nx * ny)
            } else {
                0.0
            }
        })
        .collect()
}

/// The cosines and the value/realised gains of module `l` on one batch; with `planted`
/// (the directions of a planted reward on this module, one row per sample), also the
/// cosines against them.
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`, `labels`: `[N]`; `out`: the copy's unperturbed pass on `images`;
///   `planted`: `N` rows of the map's `C·H·W` elements
fn measure_module(
    copy: &ScalModel,
    (images, labels): (&Tensor<4>, &Tensor<1, Int>),
    out: &ScalOutput,
    (l, planted): (usize, Option<&[f32]>),
    acc: &mut Accumulated,
) {
    let n = labels.dims()[0];
    let index = labels.clone().reshape([n, 1]);
    let (x, map) = (
        out.stage_inputs[l].clone().detach(),
        out.maps[l].clone().detach(),
    );
    let leaf = map.clone().require_grad();
    let log_p = log_softmax(logits_with_map(copy, images.clone(), l, leaf.clone()), 1)
        .gather(1, index.clone())
        .sum();
    let toward_class = floats(leaf.grad(&log_p.backward()).expect("the map's gradient"));
    let (toward_value, value_gain) = action_gradient(copy, l, (x, map), labels);
    acc.cosines
        .extend(row_cosines(&toward_value, &toward_class, n));
    acc.value_directions.add_rows(&toward_value, n);
    acc.class_directions.add_rows(&toward_class, n);
    if let Some(rows) = planted {
        acc.planted_cosines
            .extend(row_cosines(&toward_value, rows, n));
    }
    acc.value_gains.extend(value_gain);
    let p = |logits: Tensor<2>| {
        softmax(logits.detach(), 1)
            .gather(1, index.clone())
            .reshape([n])
    };
    let realised = p(out.logits.clone()) - p(copy.logits_without_module(images.clone(), l));
    acc.realised_gains
        .extend(floats(realised).iter().map(|v| *v as f64));
}

/// Module `l`'s critic's action-gradient per sample (`N` rows of the map's `C·H·W`
/// elements) and what it says the map is worth against ones: `∂V/∂A` and
/// `V(X, A) − V(X, 1)` for the paper's critic, `G` and `⟨A − 1, G⟩` for a compatible one.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`, `map`: module `l`'s map (both detached), `labels`: `[N]`
fn action_gradient(
    copy: &ScalModel,
    l: usize,
    (x, map): (Tensor<4>, Tensor<4>),
    labels: &Tensor<1, Int>,
) -> (Vec<f32>, Vec<f64>) {
    let n = labels.dims()[0];
    if let Some(critic) = copy.critics.compatible.get(l) {
        let said = critic.forward(x, labels.clone());
        let d = said.direction.dims()[1];
        let gain = ((map.clone() - map.ones_like()).reshape([n, d]) * said.direction.clone())
            .sum_dim(1)
            .reshape([n]);
        let gain = floats(gain).iter().map(|v| *v as f64).collect();
        return (floats(said.direction), gain);
    }
    let critic = &copy.critics.critics[l];
    let leaf = map.clone().require_grad();
    let value = critic.forward(x.clone(), leaf.clone());
    let toward_value = floats(
        leaf.grad(&value.clone().sum().backward())
            .expect("V's gradient"),
    );
    let with_ones = critic.forward(x, map.ones_like());
    let gain = floats(value.detach() - with_ones)
        .iter()
        .map(|v| *v as f64)
        .collect();
    (toward_value, gain)
}

/// The critic-gradient measurements of `model` (which has attention and critics) on the
/// first `batches` batches `loader` gives from the start of epoch 0 (as
/// [`crate::critic_data::critic_samples`]), with the step configuration `step` (its λ
/// weighs `J_cri`).
///
/// # Errors
/// An unreadable training image (with `strict` loading), or a model without attention.
pub fn critic_gradients(
    model: &ScalModel,
    loader: &TrainLoader,
    batches: usize,
    step: &StepConfig,
    device: &Device,
) -> Result<Vec<ModuleGradient>, TrainError> {
    let start = SamplerPosition { epoch: 0, batch: 0 };
    let epochs = batches.div_ceil(loader.batches_in_epoch(0).max(1)) as u64;
    let batches = loader
        .iter_from(start, epochs)
        .take(batches)
        .map(|batch| Ok(batch?.to_tensors(device)));
    critic_gradients_of(model, batches, step)
}

/// [`critic_gradients`] on given batches of images `[N, 3, H, W]` and labels `[N]` (on an
/// autodiff device).
///
/// # Errors
/// The first error of `batches`, or a model without attention.
pub fn critic_gradients_of(
    model: &ScalModel,
    batches: impl IntoIterator<Item = Result<(Tensor<4>, Tensor<1, Int>), TrainError>>,
    step: &StepConfig,
) -> Result<Vec<ModuleGradient>, TrainError> {
    if !model.has_attention() {
        return Err(TrainError::InvalidField {
            field: "model.attention".into(),
            problem: "a model without attention has no critics to measure".into(),
        });
    }
    if step.self_critical_pairs > 0 {
        return Err(TrainError::InvalidField {
            field: "step.self_critical_pairs".into(),
            problem: "a self-critical run trains no critic whose action-gradient could be \
                      measured (its estimator's cosine with the true gradient is \
                      scal_model::objective::self_critical_gradients')"
                .into(),
        });
    }
    model.initialize_parameters();
    let copy = model.no_attention_copy();
    let modules = copy.attention.agents.len();
    let compatible = !copy.critics.compatible.is_empty();
    let agent_ids: Vec<HashSet<ParamId>> = model
        .attention
        .agents
        .iter()
        .map(|agent| {
            let mut ids = Ids(HashSet::new());
            agent.visit(&mut ids);
            ids.0
        })
        .collect();
    let mut acc = vec![Accumulated::default(); modules];
    let step = step.clone().with_critic(true);
    for batch in batches {
        let (images, labels) = batch?;
        // One unperturbed pass serves every module (the copy tracks no gradient).
        let out = copy.forward(images.clone(), Gating::On);
        let label_values: Vec<i64> = labels.clone().into_data().iter::<i64>().collect();
        for (l, acc) in acc.iter_mut().enumerate() {
            let planted = planted_directions_at(&step, &out, l, &label_values);
            measure_module(
                &copy,
                (&images, &labels),
                &out,
                (l, planted.as_deref()),
                acc,
            );
        }
        let loss = scal_loss(model, images, labels, &step);
        let reid =
            GradientsParams::from_grads((loss.triplet + loss.classification).backward(), model);
        let critic = loss
            .critic_objective
            .expect("the critic is on")
            .mul_scalar(step.lambda);
        let critic = GradientsParams::from_grads(critic.backward(), model);
        for (l, acc) in acc.iter_mut().enumerate() {
            let (reid, critic) = (
                norm_on(model, &reid, &agent_ids[l]),
                norm_on(model, &critic, &agent_ids[l]),
            );
            acc.reid_norms.push(reid);
            acc.critic_norms.push(critic);
            acc.push_scales.push(if critic > 0.0 {
                (reid / critic).min(1.0)
            } else {
                1.0
            });
        }
    }
    Ok(acc
        .into_iter()
        .enumerate()
        .map(|(module, a)| ModuleGradient {
            module,
            samples: a.cosines.len(),
            cosine: bootstrap_mean(&a.cosines, 2000, module as u64),
            value_gradient_coherence: a.value_directions.coherence(),
            class_gradient_coherence: a.class_directions.coherence(),
            value_gain_correlation: pearson(&a.value_gains, &a.realised_gains),
            critic_gradient_norm: mean(&a.critic_norms),
            reid_gradient_norm: mean(&a.reid_norms),
            planted_cosine: (!a.planted_cosines.is_empty())
                .then(|| bootstrap_mean(&a.planted_cosines, 2000, module as u64)),
            critic_push_scale: compatible.then(|| mean(&a.push_scales)),
        })
        .collect())
}

/// The planted reward's direction of each sample when `step`'s reward is planted on module
/// `l`: the one `w`, or each sample's identity's `w_y` with `planted-per-identity`.
///
/// # Shapes
/// - `out.maps[l]`: `[N, C, H, W]`, `labels`: `N` values; output: `N · C·H·W` values
fn planted_directions_at(
    step: &StepConfig,
    out: &ScalOutput,
    l: usize,
    labels: &[i64],
) -> Option<Vec<f32>> {
    if !step.reward.is_planted() || step.planted.module != l {
        return None;
    }
    let [_, c, h, w] = out.maps[l].dims();
    Some(scal_rewards::planted_directions(
        step.reward,
        c * h * w,
        step.planted.seed,
        labels,
    ))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The mean of `values` with the percentile bootstrap's 95 % interval from `resamples`
/// resamples (ChaCha8 from `seed`).
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Interval {
    let n = values.len();
    let centre = mean(values);
    if n < 2 {
        return Interval {
            mean: centre,
            low: centre,
            high: centre,
        };
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * resamples as f64) as usize).min(resamples - 1)];
    Interval {
        mean: centre,
        low: at(0.025),
        high: at(0.975),
    }
}

/// Pearson's correlation (`None` when either side is constant or there are fewer than two
/// pairs).
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n < 2 {
        return None;
    }
    let (ma, mb) = (mean(&a[..n]), mean(&b[..n]));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_intervals_hold_the_mean_and_shrink_with_more_samples() {
        let few: Vec<f64> = (0..20).map(|i| (i % 5) as f64).collect();
        let many: Vec<f64> = (0..2000).map(|i| (i % 5) as f64).collect();
        let (a, b) = (
            bootstrap_mean(&few, 2000, 0),
            bootstrap_mean(&many, 2000, 0),
        );
        assert!((a.mean - 2.0).abs() < 1e-12 && (b.mean - 2.0).abs() < 1e-12);
        assert!(a.low < 2.0 && a.high > 2.0);
        assert!(b.high - b.low < (a.high - a.low) / 5.0, "{a:?} {b:?}");
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), Some(1.0));
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[1.0, 1.0, 1.0]), None);
        let c = row_cosines(&[1.0, 0.0, 1.0, 1.0], &[1.0, 0.0, -1.0, -1.0], 2);
        assert!((c[0] - 1.0).abs() < 1e-12 && (c[1] + 1.0).abs() < 1e-12);

        // Coherence: the same direction at any length is 1; opposite directions cancel; two
        // orthogonal ones give 1/√2.
        let mut same = UnitSum::default();
        same.add_rows(&[3.0, 4.0, 0.6, 0.8], 2);
        same.add_rows(&[30.0, 40.0], 1);
        assert!((same.coherence() - 1.0).abs() < 1e-12 && same.rows == 3);
        let mut opposite = UnitSum::default();
        opposite.add_rows(&[1.0, 0.0, -2.0, 0.0], 2);
        assert!(opposite.coherence().abs() < 1e-12);
        let mut orthogonal = UnitSum::default();
        orthogonal.add_rows(&[1.0, 0.0, 0.0, 5.0], 2);
        assert!((orthogonal.coherence() - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(UnitSum::default().coherence(), 0.0);
    }
}
