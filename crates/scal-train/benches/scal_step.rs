//! One SCAL training step (attention forward, the no-attention pass, rewards, critics, one
//! backward, Adam) against a plain ResNet-50 BN-neck step (same triplet + cross-entropy,
//! no attention), on flex, batch 16 (4 identities × 4), 256 × 128, 751 classes.
//!
//! ```text
//! cargo bench -p scal-train --bench scal_step
//! ```

use std::time::Duration;

use burn::optim::AdamConfig;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use scal_model::objective::StepConfig;
use scal_model::{AttentionKind, ScalConfig};
use scal_train::scal_step;

fn step(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    let images = Tensor::<4>::random([16, 3, 256, 128], Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..16).map(|i| (i / 4) as i64 * 100).collect();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [16]), &device);
    let mut group = c.benchmark_group("train_step_flex_b16_256x128");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(100))
        .throughput(Throughput::Elements(16));
    for (name, attention) in [
        ("resnet50_bnneck", AttentionKind::None),
        ("scal_channel", AttentionKind::Channel),
        ("scal_spatial", AttentionKind::Spatial),
    ] {
        let mut slot = Some(ScalConfig::new(751).with_attention(attention).init(&device));
        let mut optimizer = AdamConfig::new().init();
        let config = StepConfig::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                let model = slot.take().expect("model");
                let (model, report) = scal_step(
                    model,
                    &mut optimizer,
                    3.5e-4,
                    images.clone(),
                    labels.clone(),
                    &config,
                );
                slot = Some(model);
                report
            })
        });
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
