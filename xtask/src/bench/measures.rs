//! The measures of the benchmark set behind `cargo xtask bench` (the vocabulary is the
//! parent module's): one [`BenchRow`] per measure, with the backend, the device, the batch,
//! the throughput and the peak memory.
//!
//! Measures ([`Measure`]):
//! - `backbone_inference`: ResNet-50 (last stride 1) pooled features, eval mode (the backbone
//!   alone: no attention, no BN neck);
//! - `backbone_train_step`: the no-attention BN-neck baseline step (ResNet-50, batch-hard
//!   triplet + label-smoothed cross-entropy over 751 classes, one backward, Adam);
//! - `scal_train_step`: the SCAL step (channel attention, critics, both passes, Adam);
//! - `evaluation`: 2048-d features → Euclidean distances → CMC / mAP / mINP at Market-1501
//!   size (3,368 × 15,913), on the CPU;
//! - `rerank`: k-reciprocal re-ranking (k1 20, k2 6, λ 0.3) at Market-1501 size, on the CPU;
//! - `rerank_msmt17` (not in the default set: minutes, several GB): re-ranking from the
//!   features (`re_rank_features`, the path of `evaluate --features --rerank`) at MSMT17 size
//!   (11,659 × 82,161, generated `--rerank-dim`-d features with identity structure), or of a
//!   features folder given by `--rerank-features`, on the CPU; one timed run;
//! - `data_pipeline`: JPEG decoding and training augmentation (128 × 64 synthetic images
//!   → 256 × 128, flip, pad-crop, erasing) in P × K batches of 64, on all cores;
//! - `ops` (not in the default set): the operation-level profile of the BN-neck step on
//!   flex, one row per operation and a last row for the whole step (`super::ops`, which the
//!   parent module runs).
//!
//! With a [`BenchProfile`](super::BenchProfile) (`--profile quick`), the model measures (`backbone_inference`,
//! `backbone_train_step`, `scal_train_step`, `ops`) build that training profile's network
//! instead of ResNet-50, at its input size and batch, for its dataset's identities, and the
//! training steps use its optimizer and losses: the values come from scal-run's profile
//! ([`scal_run::TrainingConfig::profile`]), the optimizer from the trainer
//! ([`scal_train::optim::optimizer`]). Their rows then carry the model's parameter count.
//!
//! Timing: `warmup` untimed iterations (on a GPU they include kernel compilation and
//! autotuning), then the mean wall time of `iterations`, the device synchronised at the end
//! of each. Memory: the process's peak resident set size during the measure (Linux `VmHWM`,
//! reset before it; `None` elsewhere) and, on GPU backends, the most memory the device's
//! allocator had reserved after any iteration.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Distribution, Tensor};
use scal_backbone::ResNetConfig;
use scal_data::synth::{SynthConfig, generate};
use scal_data::{
    DatasetName, LoaderOptions, ReadOptions, SamplerPosition, TrainLoader, TrainTransform,
    read_dataset,
};
use scal_eval::io::read_features;
use scal_eval::synthetic::{market_sized_split, msmt17_sized_split};
use scal_eval::{
    DistanceMetric, ReRankParams, evaluate_market1501, pairwise_distances, re_rank,
    re_rank_features,
};
use scal_model::AttentionKind;

use super::{
    BenchOptions, BenchRow, Measure, TrainStep, network, now_utc, parameter_count, peak_rss_mib,
    reset_peak_rss,
};
use crate::backend::Backend;
use crate::backend::device_name;

/// What [`time`] measured.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Mean seconds of the timed iterations.
    seconds: f64,
    /// Seconds of the first call (the first warm-up one, when there is a warm-up).
    first: Option<f64>,
    /// Most memory the device's allocator reserved, MiB.
    device_mib: Option<f64>,
}

/// Times `iteration` after `warmup` untimed calls; returns the mean seconds and the most
/// device memory reserved after any call. The first error stops the measure.
fn time<F: FnMut() -> Result<()>>(
    device: Option<&Device>,
    warmup: usize,
    iterations: usize,
    mut iteration: F,
) -> Result<Timing> {
    let sync = |d: Option<&Device>| {
        if let Some(d) = d {
            let _ = d.sync();
        }
    };
    let mut reserved: Option<u64> = None;
    let mut observe = |d: Option<&Device>| {
        if let Some(usage) = d.and_then(|d| d.memory_pool_usage()) {
            reserved = Some(reserved.unwrap_or(0).max(usage.bytes_reserved));
        }
    };
    let mut first = None;
    for _ in 0..warmup {
        let start = Instant::now();
        iteration()?;
        sync(device);
        first.get_or_insert(start.elapsed().as_secs_f64());
        observe(device);
    }
    let start = Instant::now();
    for _ in 0..iterations.max(1) {
        iteration()?;
        sync(device);
        observe(device);
    }
    Ok(Timing {
        seconds: start.elapsed().as_secs_f64() / iterations.max(1) as f64,
        first,
        device_mib: reserved.map(|b| b as f64 / (1024.0 * 1024.0)),
    })
}

#[allow(clippy::too_many_arguments)]
fn row(
    measure: Measure,
    backend: String,
    device: String,
    batch: usize,
    input: String,
    unit: &'static str,
    timing: Timing,
    iterations: usize,
) -> BenchRow {
    BenchRow {
        measure: measure.name(),
        backend,
        device,
        batch,
        input,
        throughput: batch as f64 / timing.seconds,
        unit,
        seconds_per_iteration: timing.seconds,
        iterations,
        peak_rss_mib: peak_rss_mib(),
        device_memory_mib: timing.device_mib,
        first_iteration_seconds: timing.first,
        date: now_utc(),
        op: None,
        count: None,
        step_ms: None,
        explained: None,
        params: None,
    }
}

pub(super) fn backbone_inference(
    backend: Backend,
    device: &Device,
    o: &BenchOptions,
) -> Result<BenchRow> {
    let n = network(o, AttentionKind::None);
    let model = ResNetConfig::new(n.arch)
        .with_base_width(n.base_width)
        .with_last_stride(n.last_stride)
        .with_stem_relu(n.stem_relu)
        .init(device);
    let params = parameter_count(&model);
    let images = Tensor::<4>::random(
        [o.inference_batch, 3, o.height, o.width],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let timing = time(Some(device), o.warmup, o.iterations, || {
        let _ = model.forward_pooled(images.clone());
        Ok(())
    })?;
    let mut row = row(
        Measure::BackboneInference,
        backend.to_string(),
        device_name(backend, device),
        o.inference_batch,
        format!("{}x{}", o.height, o.width),
        "img/s",
        timing,
        o.iterations,
    );
    row.params = o.profile.map(|_| params);
    Ok(row)
}

pub(super) fn train_step(
    backend: Backend,
    device: &Device,
    o: &BenchOptions,
    measure: Measure,
) -> Result<BenchRow> {
    let attention = if measure == Measure::ScalTrainStep {
        AttentionKind::Channel
    } else {
        AttentionKind::None
    };
    let mut step = TrainStep::new(o, device, attention);
    let params = step.params();
    let timing = time(Some(device), o.warmup, o.iterations, || {
        step.run();
        Ok(())
    })?;
    let mut row = row(
        measure,
        backend.to_string(),
        device_name(backend, device),
        o.train_batch,
        format!("{}x{}", o.height, o.width),
        "img/s",
        timing,
        o.iterations,
    );
    row.params = o.profile.map(|_| params);
    Ok(row)
}

pub(super) fn evaluation(o: &BenchOptions, measure: Measure) -> Result<BenchRow> {
    let s = market_sized_split();
    let input = format!("{}x{} 2048-d", s.query.nrows(), s.gallery.nrows());
    let iterations = o.iterations.min(3);
    let timing = if measure == Measure::Evaluation {
        time(None, 0, iterations, || {
            let d =
                pairwise_distances(s.query.view(), s.gallery.view(), DistanceMetric::Euclidean)?;
            evaluate_market1501(d.view(), &s.q_pids, &s.g_pids, &s.q_cams, &s.g_cams, 50)?;
            Ok(())
        })?
    } else {
        let q_g = pairwise_distances(s.query.view(), s.gallery.view(), DistanceMetric::Euclidean)?;
        let q_q = pairwise_distances(s.query.view(), s.query.view(), DistanceMetric::Euclidean)?;
        let g_g = pairwise_distances(
            s.gallery.view(),
            s.gallery.view(),
            DistanceMetric::Euclidean,
        )?;
        time(None, 0, iterations, || {
            re_rank(q_g.view(), q_q.view(), g_g.view(), ReRankParams::default())?;
            Ok(())
        })?
    };
    Ok(row(
        measure,
        "cpu".into(),
        format!("cpu ({} threads)", rayon::current_num_threads()),
        s.query.nrows(),
        input,
        "queries/s",
        timing,
        iterations,
    ))
}

/// Re-ranking from the features (Euclidean, k1 20, k2 6, λ 0.3), one timed run: the
/// generated MSMT17-sized split, or `--rerank-features DIR`. The peak RSS includes the
/// features and the `[Q, G]` result.
///
/// # Shapes
/// - features: query `[Q, D]`, gallery `[G, D]`; re-ranked distances `[Q, G]`
pub(super) fn rerank_msmt17(o: &BenchOptions) -> Result<BenchRow> {
    let (query, gallery, source) = match &o.rerank_features {
        Some(dir) => {
            let query = read_features(&dir.join("query.npy"))?;
            let gallery = read_features(&dir.join("gallery.npy"))?;
            (query, gallery, format!("{}: ", dir.display()))
        }
        None => {
            if o.rerank_dim == 0 {
                bail!("--rerank-dim must be positive");
            }
            let s = msmt17_sized_split(o.rerank_dim);
            (s.query, s.gallery, String::new())
        }
    };
    let input = format!(
        "{source}{}x{} {}-d",
        query.nrows(),
        gallery.nrows(),
        query.ncols()
    );
    let timing = time(None, 0, 1, || {
        re_rank_features(
            query.view(),
            gallery.view(),
            DistanceMetric::Euclidean,
            ReRankParams::default(),
        )
        .with_context(|| format!("re-ranking {input}"))?;
        Ok(())
    })?;
    Ok(row(
        Measure::RerankMsmt17,
        "cpu".into(),
        format!("cpu ({} threads)", rayon::current_num_threads()),
        query.nrows(),
        input,
        "queries/s",
        timing,
        1,
    ))
}

pub(super) fn data_pipeline(o: &BenchOptions) -> Result<BenchRow> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("synth");
    generate(&SynthConfig::default(), &root)?;
    let train = read_dataset(DatasetName::Market1501, &root, ReadOptions::default())?.train;
    let loader = TrainLoader::new(
        train,
        TrainTransform::new(o.height as u32, o.width as u32),
        LoaderOptions {
            p: 16,
            k: 4,
            ..LoaderOptions::default()
        },
    )?;
    let batches = loader.sampler().epoch(0);
    let iterations = (o.iterations * 4).clamp(8, batches.len().max(1));
    let mut i = 0;
    reset_peak_rss();
    let timing = time(None, 1, iterations, || {
        let position = SamplerPosition {
            epoch: 0,
            batch: i % batches.len(),
        };
        loader.load(&batches[i % batches.len()], position, position)?;
        i += 1;
        Ok(())
    })?;
    Ok(row(
        Measure::DataPipeline,
        "cpu".into(),
        format!("cpu ({} threads)", rayon::current_num_threads()),
        64,
        format!("128x64 JPEG -> {}x{}", o.height, o.width),
        "img/s",
        Timing {
            first: None,
            ..timing
        },
        iterations,
    ))
}
