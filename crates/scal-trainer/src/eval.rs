//! Evaluation of a model on a dataset's query and gallery: post-BN features (flip-averaged),
//! Euclidean distances, CMC / mAP / mINP, and optionally k-reciprocal re-ranking.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array2;
use rayon::prelude::*;
use scal_data::{ImageRecord, ReidDataset, TestTransform};
use scal_eval::{
    DistanceMetric, Metrics, ReRankParams, evaluate_market1501, pairwise_distances, re_rank,
};
use scal_model::ScalModel;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Rank-k, mAP and mINP, as fractions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Rank-1.
    pub rank1: f64,
    /// Rank-5.
    pub rank5: f64,
    /// Rank-10.
    pub rank10: f64,
    /// Mean average precision.
    #[serde(rename = "mAP")]
    pub map: f64,
    /// Mean inverse negative penalty.
    #[serde(rename = "mINP")]
    pub minp: f64,
}

impl From<&Metrics> for Scores {
    fn from(m: &Metrics) -> Self {
        let rank = |k| m.rank(k).unwrap_or(1.0);
        Scores {
            rank1: rank(1),
            rank5: rank(5),
            rank10: rank(10),
            map: m.map,
            minp: m.minp,
        }
    }
}

/// One evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Plain Euclidean ranking.
    pub plain: Scores,
    /// After re-ranking, when asked.
    pub reranked: Option<Scores>,
    /// Seconds taken (features + metrics).
    pub seconds: f64,
}

/// Post-BN, L2-normalised features of the images at `paths` (one row each, in order).
///
/// `model` must be in inference mode (`model.valid()`, or loaded without autodiff),
/// `device` its (non-autodiff) device.
pub fn features(
    model: &ScalModel,
    paths: &[PathBuf],
    (height, width): (usize, usize),
    batch: usize,
    flip: bool,
    device: &Device,
) -> Result<Array2<f32>, TrainError> {
    let transform = TestTransform::new(height as u32, width as u32);
    let mut rows = Vec::new();
    let mut dim = 0;
    for chunk in paths.chunks(batch.max(1)) {
        let mut pixels = vec![0.0f32; chunk.len() * transform.len()];
        pixels
            .par_chunks_mut(transform.len())
            .zip(chunk.par_iter())
            .try_for_each(|(slot, path)| transform.load_into(path, slot))?;
        let images = Tensor::<4>::from_data(
            TensorData::new(pixels, [chunk.len(), 3, height, width]),
            device,
        );
        let f = model.embed(images, flip);
        dim = f.dims()[1];
        rows.extend(f.into_data().try_into_vec::<f32>().expect("float features"));
    }
    Ok(Array2::from_shape_vec((paths.len(), dim), rows).expect("rows x dim"))
}

/// Evaluates `model` (training or inference mode) on the dataset's query and gallery.
pub fn evaluate(
    model: &ScalModel,
    dataset: &ReidDataset,
    size: (usize, usize),
    batch: usize,
    flip: bool,
    rerank: bool,
    device: &Device,
) -> Result<Evaluation, TrainError> {
    use burn::module::Module;
    let start = Instant::now();
    let inference = model.valid();
    let device = device.clone().without_autodiff();
    let paths = |r: &[ImageRecord]| -> Vec<PathBuf> { r.iter().map(|x| x.path.clone()).collect() };
    let q = features(
        &inference,
        &paths(&dataset.query),
        size,
        batch,
        flip,
        &device,
    )?;
    let g = features(
        &inference,
        &paths(&dataset.gallery),
        size,
        batch,
        flip,
        &device,
    )?;
    let ids = |r: &[ImageRecord]| -> (Vec<i64>, Vec<i64>) {
        (
            r.iter().map(|x| x.pid).collect(),
            r.iter().map(|x| x.camid).collect(),
        )
    };
    let (q_pids, q_cams) = ids(&dataset.query);
    let (g_pids, g_cams) = ids(&dataset.gallery);
    let q_g = pairwise_distances(q.view(), g.view(), DistanceMetric::Euclidean)?;
    let plain = evaluate_market1501(q_g.view(), &q_pids, &g_pids, &q_cams, &g_cams, 50)?;
    let reranked = if rerank {
        let q_q = pairwise_distances(q.view(), q.view(), DistanceMetric::Euclidean)?;
        let g_g = pairwise_distances(g.view(), g.view(), DistanceMetric::Euclidean)?;
        let d = re_rank(q_g.view(), q_q.view(), g_g.view(), ReRankParams::default())?;
        Some(Scores::from(&evaluate_market1501(
            d.view(),
            &q_pids,
            &g_pids,
            &q_cams,
            &g_cams,
            50,
        )?))
    } else {
        None
    };
    Ok(Evaluation {
        plain: Scores::from(&plain),
        reranked,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// What each attention module adds, measured on fixed training images in inference mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleAmelioration {
    /// Images measured.
    pub samples: usize,
    /// Share of images where all modules together raised the true class's probability over
    /// the no-attention pass (the evaluation-time R_a rate).
    pub all_modules: f64,
    /// Per module `l`: share of images where the true class's probability with every module
    /// is higher than with module `l`'s map replaced by ones.
    pub per_module: Vec<f64>,
}

/// [`ModuleAmelioration`] of `model` (inference mode, non-autodiff `device`) on up to
/// `samples` training images spread evenly over `train` (labels = relabelled pids). `None`
/// for a model without attention.
pub fn module_amelioration(
    model: &ScalModel,
    train: &[ImageRecord],
    (height, width): (usize, usize),
    samples: usize,
    batch: usize,
    device: &Device,
) -> Result<Option<ModuleAmelioration>, TrainError> {
    use burn::tensor::activation::softmax;
    use scal_model::Gating;
    if !model.has_attention() || train.is_empty() || samples == 0 {
        return Ok(None);
    }
    let n = samples.min(train.len());
    let picks: Vec<&ImageRecord> = (0..n).map(|i| &train[i * train.len() / n]).collect();
    let transform = TestTransform::new(height as u32, width as u32);
    let true_class = |logits: Tensor<2>, labels: &[i64]| -> Vec<f32> {
        let p: Vec<f32> = softmax(logits, 1)
            .into_data()
            .try_to_vec::<f32>()
            .expect("float probabilities");
        let k = p.len() / labels.len();
        labels
            .iter()
            .enumerate()
            .map(|(i, &y)| p[i * k + y as usize])
            .collect()
    };
    let (mut all, mut per_module) = (0usize, [0usize; 5]);
    for chunk in picks.chunks(batch.max(1)) {
        let mut pixels = vec![0.0f32; chunk.len() * transform.len()];
        pixels
            .par_chunks_mut(transform.len())
            .zip(chunk.par_iter())
            .try_for_each(|(slot, r)| transform.load_into(&r.path, slot))?;
        let images = Tensor::<4>::from_data(
            TensorData::new(pixels, [chunk.len(), 3, height, width]),
            device,
        );
        let labels: Vec<i64> = chunk.iter().map(|r| r.pid).collect();
        let full = true_class(model.forward(images.clone(), Gating::On).logits, &labels);
        let none = true_class(model.forward(images.clone(), Gating::Ones).logits, &labels);
        all += full.iter().zip(&none).filter(|(a, b)| a > b).count();
        for (l, count) in per_module.iter_mut().enumerate() {
            let without = true_class(model.logits_without_module(images.clone(), l), &labels);
            *count += full.iter().zip(&without).filter(|(a, b)| a > b).count();
        }
    }
    Ok(Some(ModuleAmelioration {
        samples: n,
        all_modules: all as f64 / n as f64,
        per_module: per_module.iter().map(|&c| c as f64 / n as f64).collect(),
    }))
}
