//! ResNet-50 (last stride 1) at 256 x 128 on the flex CPU backend: inference at batch 64 and
//! one training step (forward, cross-entropy over 751 classes, backward, Adam) at batch 16.
//!
//! ```text
//! cargo bench -p scal-backbone --bench resnet50
//! ```
//!
//! Criterion reports the time per iteration and the throughput in images/s; the peak
//! resident memory of each measure (Linux: `VmHWM`, reset before each) is printed after it.
//! `benches/pytorch_resnet50.py` measures the same two things in PyTorch.

use std::time::Duration;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use scal_backbone::{ResNet, ResNetArch, ResNetConfig};

const HEIGHT: usize = 256;
const WIDTH: usize = 128;
const CLASSES: usize = 751;

#[derive(Module, Debug)]
struct Classifier {
    backbone: ResNet,
    fc: Linear,
}

impl Classifier {
    fn new(device: &Device) -> Self {
        Classifier {
            backbone: ResNetConfig::new(ResNetArch::ResNet50)
                .with_last_stride(1)
                .init(device),
            fc: LinearConfig::new(2048, CLASSES).init(device),
        }
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.backbone.forward_pooled(images))
    }
}

/// Resets the peak resident set size of this process (Linux `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size since the last reset, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn report_peak(name: &str) {
    match peak_rss_mib() {
        Some(mib) => println!("{name}: peak RSS {mib:.0} MiB"),
        None => println!("{name}: peak RSS unavailable on this platform"),
    }
}

fn inference(c: &mut Criterion) {
    let batch = 64;
    let device = Device::flex();
    let model = Classifier::new(&device).backbone;
    let images = Tensor::<4>::random(
        [batch, 3, HEIGHT, WIDTH],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    reset_peak_rss();
    let mut group = c.benchmark_group("resnet50_flex");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(60))
        .throughput(Throughput::Elements(batch as u64));
    group.bench_function("inference_b64_256x128", |b| {
        b.iter(|| {
            let features = model.forward_pooled(images.clone());
            // Reading back forces the computation to finish.
            features.into_data()
        })
    });
    group.finish();
    report_peak("inference_b64_256x128");
}

fn training_step(c: &mut Criterion) {
    let batch = 16;
    let device = Device::flex().autodiff();
    let images = Tensor::<4>::random(
        [batch, 3, HEIGHT, WIDTH],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let targets = Tensor::<1, Int>::from_data(
        (0..batch as i64)
            .map(|i| i * 7 % CLASSES as i64)
            .collect::<Vec<_>>()
            .as_slice(),
        &device,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut slot = Some(Classifier::new(&device));
    let mut optim = AdamConfig::new().init();
    reset_peak_rss();
    let mut group = c.benchmark_group("resnet50_flex");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(90))
        .throughput(Throughput::Elements(batch as u64));
    group.bench_function("train_step_b16_256x128", |b| {
        b.iter(|| {
            let model = slot.take().expect("model");
            let loss = loss_fn.forward(model.forward(images.clone()), targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let model = optim.step(3.5e-4, model, grads);
            slot = Some(model);
        })
    });
    group.finish();
    report_peak("train_step_b16_256x128");
}

criterion_group!(benches, inference, training_step);
criterion_main!(benches);
