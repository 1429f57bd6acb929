//! The training-time diagnostic of what each attention module adds ([`ModuleAmelioration`]).
//! The query/gallery evaluation itself is scal-infer's ([`scal_infer::evaluate_model`]).

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use scal_data::{ImageRecord, TestTransform};
use scal_model::ScalModel;

use crate::TrainError;
pub use scal_run::ModuleAmelioration;

/// Seed of the sampler that picks the diagnostic's batches: the same images at every
/// evaluation of every run on a dataset.
const AMELIORATION_SEED: u64 = 0x5CA1;

/// The true class's probability per sample (softmax of the logits).
///
/// # Shapes
/// - `logits`: `[N, K]`; `labels`: N class indices; output: N values
pub(crate) fn true_class_probability(logits: Tensor<2>, labels: &[i64]) -> Vec<f32> {
    let p: Vec<f32> = burn::tensor::activation::softmax(logits, 1)
        .into_data()
        .try_to_vec::<f32>()
        .expect("float probabilities");
    let k = p.len() / labels.len().max(1);
    labels
        .iter()
        .enumerate()
        .map(|(i, &y)| p[i * k + y as usize])
        .collect()
}

/// Counts, on one batch, the images where all modules together (`.0`) and each module `l`
/// (`.1[l]`) raised the true class's probability: with all maps against all maps replaced
/// by ones, and against module `l`'s map replaced by ones. The passes run as the training
/// step's no-attention pass does ([`ScalModel::no_attention_copy`]): batch statistics on an
/// autodiff device, no gradients, running statistics and parameters untouched.
///
/// # Shapes
/// - `images`: `[N, 3, H, W]` on the model's device; `labels`: N class indices
pub fn amelioration_on_batch(
    model: &ScalModel,
    images: Tensor<4>,
    labels: &[i64],
) -> (usize, [usize; 5]) {
    use scal_model::Gating;
    let true_class = |logits: Tensor<2>| true_class_probability(logits, labels);
    let copy = model.no_attention_copy();
    let full = true_class(copy.forward(images.clone(), Gating::On).logits);
    let none = true_class(copy.forward(images.clone(), Gating::Ones).logits);
    let raised = |other: &[f32]| full.iter().zip(other).filter(|(a, b)| a > b).count();
    let mut per_module = [0usize; 5];
    for (l, count) in per_module.iter_mut().enumerate() {
        *count = raised(&true_class(copy.logits_without_module(images.clone(), l)));
    }
    (raised(&none), per_module)
}

/// [`ModuleAmelioration`] of `model` (on its training device, autodiff, so that batch norms
/// use batch statistics as in training) on fixed P × K batches of `train` (labels =
/// relabelled pids) drawn by a sampler of fixed seed, enough batches for `samples` images.
/// `None` for a model without attention. Undecodable images follow the training data's
/// policy: an error with `strict`, otherwise left out and counted in
/// [`ModuleAmelioration::skipped`].
pub fn module_amelioration(
    model: &ScalModel,
    train: &[ImageRecord],
    (height, width): (usize, usize),
    (samples, p, k): (usize, usize, usize),
    strict: bool,
) -> Result<Option<ModuleAmelioration>, TrainError> {
    if !model.has_attention() || train.is_empty() || samples == 0 {
        return Ok(None);
    }
    let device = model.devices().into_iter().next().expect("a device");
    let pids: Vec<i64> = train.iter().map(|r| r.pid).collect();
    let batches = scal_data::PkSampler::new(&pids, p, k, AMELIORATION_SEED)?.epoch(0);
    let wanted = samples.div_ceil(p * k).max(1);
    let transform = TestTransform::new(height as u32, width as u32);
    let (mut n, mut all, mut per_module, mut skipped) = (0usize, 0usize, [0usize; 5], 0usize);
    for batch in batches.iter().take(wanted) {
        let paths: Vec<&Path> = batch.iter().map(|&i| train[i].path.as_path()).collect();
        let (pixels, left_out) = transform.load_batch_with(&paths, strict)?;
        skipped += left_out.len();
        let labels: Vec<i64> = batch
            .iter()
            .enumerate()
            .filter(|(j, _)| !left_out.iter().any(|(l, _)| l == j))
            .map(|(_, &i)| train[i].pid)
            .collect();
        if labels.len() < 2 {
            continue;
        }
        let images = Tensor::<4>::from_data(
            TensorData::new(pixels, [labels.len(), 3, height, width]),
            &device,
        );
        let (batch_all, batch_modules) = amelioration_on_batch(model, images, &labels);
        n += labels.len();
        all += batch_all;
        for (total, c) in per_module.iter_mut().zip(batch_modules) {
            *total += c;
        }
    }
    let measured = n;
    if measured == 0 {
        return Ok(None);
    }
    Ok(Some(ModuleAmelioration {
        samples: measured,
        all_modules: all as f64 / measured as f64,
        per_module: per_module
            .iter()
            .map(|&c| c as f64 / measured as f64)
            .collect(),
        skipped,
    }))
}
