//! The query/gallery evaluation: features of a split, Euclidean distances, CMC / mAP / mINP
//! under the Market-1501 protocol, and optionally k-reciprocal re-ranking.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use ndarray::Array2;
use scal_data::{ImageRecord, ReidDataset};
use scal_eval::io::Labels;
use scal_eval::{
    DistanceMetric, Metrics, ReRankParams, evaluate_market1501, pairwise_distances, re_rank,
};
use scal_model::ScalModel;
use serde::{Deserialize, Serialize};

use crate::{EmbedOptions, Embedder, InferError, embed_paths};

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

/// The identities and cameras of a query and a gallery, in order.
pub fn labels_of(query: &[ImageRecord], gallery: &[ImageRecord]) -> Labels {
    let ids = |r: &[ImageRecord], f: fn(&ImageRecord) -> i64| r.iter().map(f).collect();
    Labels {
        q_pids: ids(query, |x| x.pid),
        g_pids: ids(gallery, |x| x.pid),
        q_camids: ids(query, |x| x.camid),
        g_camids: ids(gallery, |x| x.camid),
    }
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
    /// Embeds the images of `query` and `gallery` with `model` (a [`ScalModel`] in inference
    /// mode, a [`crate::ForeignModel`]) on its non-autodiff `device`; `progress` is called
    /// per batch with its number of images (see [`embed_paths`]).
    pub fn embed<E: Embedder + ?Sized>(
        model: &E,
        (query, gallery): (&[ImageRecord], &[ImageRecord]),
        options: EmbedOptions,
        device: &Device,
        progress: &mut dyn FnMut(usize),
    ) -> Result<QueryGallery, InferError> {
        let paths = |r: &[ImageRecord]| -> Vec<std::path::PathBuf> {
            r.iter().map(|x| x.path.clone()).collect()
        };
        Ok(QueryGallery {
            query: embed_paths(model, &paths(query), options, device, progress)?,
            gallery: embed_paths(model, &paths(gallery), options, device, progress)?,
            labels: labels_of(query, gallery),
        })
    }

    /// Query × gallery distances.
    pub fn distances(&self, metric: DistanceMetric) -> Result<Array2<f32>, InferError> {
        Ok(pairwise_distances(
            self.query.view(),
            self.gallery.view(),
            metric,
        )?)
    }

    /// CMC / mAP / mINP of `distances` (query × gallery) under the Market-1501 protocol,
    /// CMC up to rank 50.
    pub fn metrics(&self, distances: &Array2<f32>) -> Result<Metrics, InferError> {
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

    /// k-reciprocal re-ranking with `params` of the query × gallery distances `q_g`, the
    /// query × query and gallery × gallery distances computed with `metric`.
    pub fn reranked_with(
        &self,
        q_g: &Array2<f32>,
        metric: DistanceMetric,
        params: ReRankParams,
    ) -> Result<Array2<f32>, InferError> {
        let q_q = pairwise_distances(self.query.view(), self.query.view(), metric)?;
        let g_g = pairwise_distances(self.gallery.view(), self.gallery.view(), metric)?;
        Ok(re_rank(q_g.view(), q_q.view(), g_g.view(), params)?)
    }

    /// k-reciprocal re-ranking (k1 20, k2 6, λ 0.3) of the Euclidean distances `q_g`.
    pub fn reranked(&self, q_g: &Array2<f32>) -> Result<Array2<f32>, InferError> {
        self.reranked_with(q_g, DistanceMetric::Euclidean, ReRankParams::default())
    }
}

/// Evaluates `model` (training or inference mode, on any device) on the dataset's query and
/// gallery: its inference copy embeds them on `device` without autodiff, then plain and (with
/// `rerank`) re-ranked scores.
pub fn evaluate_model(
    model: &ScalModel,
    dataset: &ReidDataset,
    options: EmbedOptions,
    rerank: bool,
    device: &Device,
) -> Result<Evaluation, InferError> {
    let start = Instant::now();
    let split = (dataset.query.as_slice(), dataset.gallery.as_slice());
    let device = device.clone().without_autodiff();
    let qg = QueryGallery::embed(&model.valid(), split, options, &device, &mut |_| {})?;
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
