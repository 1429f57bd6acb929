//! Evaluation of a model on a dataset's query and gallery: post-BN features (flip-averaged),
//! Euclidean distances, CMC / mAP / mINP, and optionally k-reciprocal re-ranking.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array2;
use scal_data::{ImageRecord, ReidDataset, TestTransform};
use scal_eval::io::Labels;
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

/// Post-BN, L2-normalised features of the images at `paths` (one row each, in order),
/// `batch` images per forward pass.
///
/// `model` must be in inference mode (`model.valid()`, or loaded without autodiff),
/// `device` its (non-autodiff) device.
pub fn features<P: AsRef<Path> + Sync>(
    model: &ScalModel,
    paths: &[P],
    (height, width): (usize, usize),
    batch: usize,
    flip: bool,
    device: &Device,
) -> Result<Array2<f32>, TrainError> {
    let transform = TestTransform::new(height as u32, width as u32);
    let mut rows = Vec::new();
    let mut dim = 0;
    for chunk in paths.chunks(batch.max(1)) {
        let pixels = transform.load_batch(chunk)?;
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

/// Features and labels of a query/gallery split.
#[derive(Debug, Clone)]
pub struct QueryGallery {
    /// Query features `[Q, D]`.
    pub query: Array2<f32>,
    /// Gallery features `[G, D]`.
    pub gallery: Array2<f32>,
    /// Identities and cameras of the query and gallery images.
    pub labels: Labels,
}

impl QueryGallery {
    /// Embeds the images of `query` and `gallery` with `model` (inference mode, on its
    /// non-autodiff `device`; see [`features`]).
    pub fn embed(
        model: &ScalModel,
        (query, gallery): (&[ImageRecord], &[ImageRecord]),
        size: (usize, usize),
        batch: usize,
        flip: bool,
        device: &Device,
    ) -> Result<QueryGallery, TrainError> {
        let paths =
            |r: &[ImageRecord]| -> Vec<PathBuf> { r.iter().map(|x| x.path.clone()).collect() };
        let ids = |r: &[ImageRecord], f: fn(&ImageRecord) -> i64| r.iter().map(f).collect();
        Ok(QueryGallery {
            query: features(model, &paths(query), size, batch, flip, device)?,
            gallery: features(model, &paths(gallery), size, batch, flip, device)?,
            labels: Labels {
                q_pids: ids(query, |x| x.pid),
                g_pids: ids(gallery, |x| x.pid),
                q_camids: ids(query, |x| x.camid),
                g_camids: ids(gallery, |x| x.camid),
            },
        })
    }

    /// Query × gallery distances.
    pub fn distances(&self, metric: DistanceMetric) -> Result<Array2<f32>, TrainError> {
        Ok(pairwise_distances(
            self.query.view(),
            self.gallery.view(),
            metric,
        )?)
    }

    /// CMC / mAP / mINP of `distances` (query × gallery) under the Market-1501 protocol.
    pub fn metrics(&self, distances: &Array2<f32>) -> Result<Metrics, TrainError> {
        let l = &self.labels;
        Ok(evaluate_market1501(
            distances.view(),
            &l.q_pids,
            &l.g_pids,
            &l.q_camids,
            &l.g_camids,
            50,
        )?)
    }

    /// k-reciprocal re-ranking (k1 20, k2 6, λ 0.3) of the Euclidean distances.
    pub fn reranked(&self, q_g: &Array2<f32>) -> Result<Array2<f32>, TrainError> {
        let q_q = pairwise_distances(
            self.query.view(),
            self.query.view(),
            DistanceMetric::Euclidean,
        )?;
        let g_g = pairwise_distances(
            self.gallery.view(),
            self.gallery.view(),
            DistanceMetric::Euclidean,
        )?;
        Ok(re_rank(
            q_g.view(),
            q_q.view(),
            g_g.view(),
            ReRankParams::default(),
        )?)
    }
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
    let split = (dataset.query.as_slice(), dataset.gallery.as_slice());
    let device = device.clone().without_autodiff();
    let qg = QueryGallery::embed(&model.valid(), split, size, batch, flip, &device)?;
    let q_g = qg.distances(DistanceMetric::Euclidean)?;
    let plain = qg.metrics(&q_g)?;
    let reranked = if rerank {
        Some(Scores::from(&qg.metrics(&qg.reranked(&q_g)?)?))
    } else {
        None
    };
    Ok(Evaluation {
        plain: Scores::from(&plain),
        reranked,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// What each attention module adds, measured as the training step measures R_a: on fixed
/// P × K batches of training images, with batch statistics, changing nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleAmelioration {
    /// Images measured.
    pub samples: usize,
    /// Share of images where all modules together raised the true class's probability over
    /// the no-attention pass (the R_a rate of training, on these images).
    pub all_modules: f64,
    /// Per module `l`: share of images where the true class's probability with every module
    /// is higher than with module `l`'s map replaced by ones.
    pub per_module: Vec<f64>,
    /// Picked images that could not be decoded and were left out (`data.strict=false`);
    /// written to the log only when not 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Seed of the sampler that picks the diagnostic's batches: the same images at every
/// evaluation of every run on a dataset.
const AMELIORATION_SEED: u64 = 0x5CA1;

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
    use burn::tensor::activation::softmax;
    use scal_model::Gating;
    let true_class = |logits: Tensor<2>| -> Vec<f32> {
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
