//! The critics' data, read back from a trained model: for training batches drawn as training
//! draws them, each module's critic input (what `V_l` reads), its estimate `V_l`, the
//! realised rewards, and what a critic could know beyond its inputs: each module's own
//! amelioration `R_a^l` and the module's feature map and gated map pooled on a 4 × 2 grid.
//! With it, one can ask whether the reward is predictable from what the critic sees at all
//! (`scripts/critic-probe.py`), which tells a critic that cannot learn apart from a reward
//! that carries no learnable signal.

use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};
use ndarray::Array2;
use scal_data::{SamplerPosition, TrainLoader};
use scal_model::{Gating, ScalModel};
use scal_rewards::{RewardKind, rewards};

use crate::TrainError;
use crate::eval::true_class_probability;

/// The grid the pooled inputs average each module's maps over: `[rows, columns]`, the
/// person's body in four bands and two halves.
pub const POOL_GRID: [usize; 2] = [4, 2];

/// Per-sample critic data of several batches.
#[derive(Debug, Clone, PartialEq)]
pub struct CriticSamples {
    /// Per module `l`: the critic inputs, `[N, D_l]`.
    pub inputs: Vec<Array2<f32>>,
    /// Per module `l`: the module's input `X_l` and its gated map `X_l ⊙ A_l`, each averaged
    /// over a [`POOL_GRID`] grid, `[N, 2 · C_l · 8]` (the `X_l` cells first, channel-major).
    pub pooled: Vec<Array2<f32>>,
    /// Per module `l`: the critic's estimate `V_l`, `N` values.
    pub values: Vec<Vec<f32>>,
    /// Per module `l`: the true class's probability with every module on minus that with
    /// module `l`'s map replaced by ones (the realised gain of module `l`), `N` values.
    pub module_gain: Vec<Vec<f32>>,
    /// `R_c` per sample (1: the attention-based prediction is right).
    pub correct: Vec<f32>,
    /// `R_a` per sample (1: attention raised the true class's probability).
    pub amelioration: Vec<f32>,
    /// Class index per sample.
    pub labels: Vec<i64>,
}

impl CriticSamples {
    /// `R_a^l` per module and sample: 1 where module `l` raised the true class's probability
    /// (its gain is positive), as `R_a` is for all modules together.
    pub fn module_amelioration(&self) -> Vec<Vec<f32>> {
        self.module_gain
            .iter()
            .map(|g| g.iter().map(|&d| f32::from(d > 0.0)).collect())
            .collect()
    }
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// `X` and `X ⊙ A` averaged over [`POOL_GRID`], one row per sample.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`; `map`: broadcastable to it; output: `[N, 2 · C · 8]`
fn pooled_maps(x: Tensor<4>, map: Tensor<4>) -> Tensor<2> {
    let gated = x.clone() * map;
    let pool = |t: Tensor<4>| adaptive_avg_pool2d(t, POOL_GRID).flatten::<2>(1, 3);
    Tensor::cat(vec![pool(x), pool(gated)], 1)
}

/// Rows of `N` samples as an `[N, D]` array.
fn rows(values: Vec<f32>, n: usize) -> Array2<f32> {
    let d = values.len() / n.max(1);
    Array2::from_shape_vec((n, d), values).expect("N rows of D values")
}

/// The critic data of `model` (which has attention and critics) on the first `batches`
/// batches `loader` gives from the start of epoch 0 (through the following epochs when one
/// has fewer), with the augmentation of training. Every pass runs as the training step's
/// no-attention pass does (batch statistics on the autodiff `device`, no gradients, running
/// statistics untouched), so the model is not changed and `R` is the reward training would
/// have computed on these batches.
///
/// # Errors
/// An unreadable training image (with `strict` loading), or a model without attention.
pub fn critic_samples(
    model: &ScalModel,
    loader: &TrainLoader,
    batches: usize,
    device: &Device,
) -> Result<CriticSamples, TrainError> {
    if !model.has_attention() {
        return Err(TrainError::InvalidField {
            field: "model.attention".into(),
            problem: "a model without attention has no critics to read".into(),
        });
    }
    if !model.critics.compatible.is_empty() {
        return Err(TrainError::InvalidField {
            field: "model.critic_kind".into(),
            problem: "critic-data reads the paper's critics V(X, A); compatible critics have no value to read (use critic-grad)".into(),
        });
    }
    let copy = model.no_attention_copy();
    let modules = copy.critics.critics.len();
    let mut inputs: Vec<Vec<f32>> = vec![Vec::new(); modules];
    let mut pooled: Vec<Vec<f32>> = vec![Vec::new(); modules];
    let mut samples = CriticSamples {
        inputs: Vec::new(),
        pooled: Vec::new(),
        values: vec![Vec::new(); modules],
        module_gain: vec![Vec::new(); modules],
        correct: Vec::new(),
        amelioration: Vec::new(),
        labels: Vec::new(),
    };
    let start = SamplerPosition { epoch: 0, batch: 0 };
    let epochs = batches.div_ceil(loader.batches_in_epoch(0).max(1)) as u64;
    for batch in loader.iter_from(start, epochs).take(batches) {
        let batch = batch?;
        let (images, labels) = batch.to_tensors(device);
        let label_values: Vec<i64> = labels.clone().into_data().iter::<i64>().collect();
        let out = copy.forward(images.clone(), Gating::On);
        let plain = copy.forward(images.clone(), Gating::Ones);
        let r = rewards(out.logits.clone(), plain.logits, labels, RewardKind::Both);
        samples.correct.extend(floats(r.correct));
        samples.amelioration.extend(floats(r.amelioration));
        let full = true_class_probability(out.logits.clone(), &label_values);
        for (l, critic) in copy.critics.critics.iter().enumerate() {
            let x = out.stage_inputs[l].clone();
            let map = out.maps[l].clone();
            inputs[l].extend(floats(critic.input(x.clone(), map.clone())));
            pooled[l].extend(floats(pooled_maps(x, map)));
            samples.values[l].extend(floats(out.values[l].clone()));
            let without = true_class_probability(
                copy.logits_without_module(images.clone(), l),
                &label_values,
            );
            samples.module_gain[l].extend(full.iter().zip(&without).map(|(a, b)| a - b));
        }
        samples.labels.extend(label_values);
    }
    let n = samples.labels.len();
    samples.inputs = inputs.into_iter().map(|v| rows(v, n)).collect();
    samples.pooled = pooled.into_iter().map(|v| rows(v, n)).collect();
    Ok(samples)
}
