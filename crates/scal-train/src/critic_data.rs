//! The critics' data, read back from a trained model: for training batches drawn as training
//! draws them, each module's critic input (what `V_l` reads), its estimate `V_l` and the
//! realised rewards. With it, one can ask whether the reward is predictable from what the
//! critic sees at all (`scripts/critic-probe.py`), which tells a critic that cannot learn
//! apart from a reward that carries no learnable signal.

use burn::tensor::{Device, Tensor};
use ndarray::Array2;
use scal_data::{SamplerPosition, TrainLoader};
use scal_model::{Gating, ScalModel};
use scal_rewards::{RewardKind, rewards};

use crate::TrainError;

/// Per-sample critic data of several batches.
#[derive(Debug, Clone, PartialEq)]
pub struct CriticSamples {
    /// Per module `l`: the critic inputs, `[N, D_l]`.
    pub inputs: Vec<Array2<f32>>,
    /// Per module `l`: the critic's estimate `V_l`, `N` values.
    pub values: Vec<Vec<f32>>,
    /// `R_c` per sample (1: the attention-based prediction is right).
    pub correct: Vec<f32>,
    /// `R_a` per sample (1: attention raised the true class's probability).
    pub amelioration: Vec<f32>,
    /// Class index per sample.
    pub labels: Vec<i64>,
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// The critic data of `model` (which has attention and critics) on the first `batches`
/// batches `loader` gives from the start of epoch 0 (through the following epochs when one
/// has fewer), with the augmentation of training. Both
/// passes run as the training step's no-attention pass does (batch statistics on the
/// autodiff `device`, no gradients, running statistics untouched), so the model is not
/// changed and `R` is the reward training would have computed on these batches.
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
    let copy = model.no_attention_copy();
    let modules = copy.critics.critics.len();
    let mut inputs: Vec<Vec<f32>> = vec![Vec::new(); modules];
    let mut widths = vec![0usize; modules];
    let mut samples = CriticSamples {
        inputs: Vec::new(),
        values: vec![Vec::new(); modules],
        correct: Vec::new(),
        amelioration: Vec::new(),
        labels: Vec::new(),
    };
    let start = SamplerPosition { epoch: 0, batch: 0 };
    let epochs = batches.div_ceil(loader.batches_in_epoch(0).max(1)) as u64;
    for batch in loader.iter_from(start, epochs).take(batches) {
        let batch = batch?;
        let (images, labels) = batch.to_tensors(device);
        let out = copy.forward(images.clone(), Gating::On);
        let plain = copy.forward(images, Gating::Ones);
        let r = rewards(
            out.logits.clone(),
            plain.logits,
            labels.clone(),
            RewardKind::Both,
        );
        samples.correct.extend(floats(r.correct));
        samples.amelioration.extend(floats(r.amelioration));
        samples.labels.extend(labels.into_data().iter::<i64>());
        for (l, critic) in copy.critics.critics.iter().enumerate() {
            let input = critic.input(out.stage_inputs[l].clone(), out.maps[l].clone());
            widths[l] = input.dims()[1];
            inputs[l].extend(floats(input));
            samples.values[l].extend(floats(out.values[l].clone()));
        }
    }
    let n = samples.labels.len();
    samples.inputs = inputs
        .into_iter()
        .zip(widths)
        .map(|(v, d)| Array2::from_shape_vec((n, d), v).expect("N rows of D inputs"))
        .collect();
    Ok(samples)
}
