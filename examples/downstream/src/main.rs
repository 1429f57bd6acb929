//! What a project outside the workspace does with three of its crates: generate a tiny
//! synthetic ReID dataset (scal-data), train SCAL for a few steps on the CPU (scal-model's
//! network and objective, Burn's Adam), embed the query and gallery and evaluate them
//! (scal-eval). Exits non-zero when anything fails or a number is not finite.

use std::error::Error;
use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use scal_data::synth::{SynthConfig, generate};
use scal_data::{DatasetName, ImageRecord, PkSampler, ReadOptions, TestTransform, read_dataset};
use scal_eval::{DistanceMetric, evaluate_market1501, pairwise_distances};
use scal_model::objective::{StepConfig, StepReport, scal_loss};
use scal_model::{AttentionKind, ScalConfig, ScalModel};

const SIZE: (usize, usize) = (64, 32);

/// The images at `records`, decoded and normalised: `[N, 3, H, W]` on `device`.
fn batch(records: &[&ImageRecord], device: &Device) -> Result<Tensor<4>, Box<dyn Error>> {
    let transform = TestTransform::new(SIZE.0 as u32, SIZE.1 as u32);
    let paths: Vec<&Path> = records.iter().map(|r| r.path.as_path()).collect();
    let pixels = transform.load_batch(&paths)?;
    let shape = [records.len(), 3, SIZE.0, SIZE.1];
    Ok(Tensor::from_data(TensorData::new(pixels, shape), device))
}

/// L2-normalised post-BN features of `records`, one row each: `[N, D]` as row-major values.
fn embed(
    model: &ScalModel,
    records: &[ImageRecord],
    device: &Device,
) -> Result<ndarray::Array2<f32>, Box<dyn Error>> {
    let mut rows = Vec::new();
    let mut dim = 0;
    for chunk in records.chunks(16) {
        let refs: Vec<&ImageRecord> = chunk.iter().collect();
        let features = model.embed(batch(&refs, device)?, true);
        dim = features.dims()[1];
        rows.extend(
            features
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?,
        );
    }
    Ok(ndarray::Array2::from_shape_vec((records.len(), dim), rows)?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let root = std::env::temp_dir().join(format!("scal-downstream-{}", std::process::id()));
    let config = SynthConfig {
        train_ids: 8,
        test_ids: 8,
        cameras: 2,
        ..SynthConfig::default()
    };
    generate(&config, &root)?;
    let dataset = read_dataset(DatasetName::Market1501, &root, ReadOptions::default())?;
    println!(
        "dataset: {} training, {} query, {} gallery images",
        dataset.train.len(),
        dataset.query.len(),
        dataset.gallery.len()
    );

    let device = Device::flex().autodiff();
    let classes = dataset.train.iter().map(|r| r.pid).max().unwrap_or(0) as usize + 1;
    let mut model = ScalConfig::new(classes)
        .with_base_width(8)
        .with_height(SIZE.0)
        .with_width(SIZE.1)
        .with_attention(AttentionKind::Channel)
        .init(&device);
    let mut optimizer = AdamConfig::new().init();
    let objective = StepConfig::new();
    let pids: Vec<i64> = dataset.train.iter().map(|r| r.pid).collect();
    let batches = PkSampler::new(&pids, 4, 2, 0)?.epoch(0);
    for (step, indices) in batches.iter().take(3).enumerate() {
        let records: Vec<&ImageRecord> = indices.iter().map(|&i| &dataset.train[i]).collect();
        let labels: Vec<i64> = records.iter().map(|r| r.pid).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [records.len()]), &device);
        let loss = scal_loss(&model, batch(&records, &device)?, labels, &objective);
        let report = StepReport::from_loss(&loss);
        if !report.triplet.is_finite() || !report.classification.is_finite() {
            return Err(format!("step {}: a loss is not finite: {report:?}", step + 1).into());
        }
        let grads = GradientsParams::from_grads(loss.total.backward(), &model);
        model = optimizer.step(3e-4, model, grads);
        println!(
            "step {}: triplet {:.3}, cross-entropy {:.3}",
            step + 1,
            report.triplet,
            report.classification
        );
    }

    let inference = model.valid();
    let plain = device.clone().without_autodiff();
    let query = embed(&inference, &dataset.query, &plain)?;
    let gallery = embed(&inference, &dataset.gallery, &plain)?;
    let distances = pairwise_distances(query.view(), gallery.view(), DistanceMetric::Euclidean)?;
    let ids =
        |r: &[ImageRecord], f: fn(&ImageRecord) -> i64| -> Vec<i64> { r.iter().map(f).collect() };
    let metrics = evaluate_market1501(
        distances.view(),
        &ids(&dataset.query, |r| r.pid),
        &ids(&dataset.gallery, |r| r.pid),
        &ids(&dataset.query, |r| r.camid),
        &ids(&dataset.gallery, |r| r.camid),
        10,
    )?;
    std::fs::remove_dir_all(&root)?;
    if !metrics.map.is_finite() || metrics.num_valid_queries == 0 {
        return Err(format!("evaluation gave {metrics:?}").into());
    }
    println!(
        "mAP {:.2} %, Rank-1 {:.2} % over {} queries",
        100.0 * metrics.map,
        100.0 * metrics.rank(1).unwrap_or(0.0),
        metrics.num_valid_queries
    );
    Ok(())
}
