//! The same SCAL model on flex (CPU) and on wgpu: forward pass and one training step agree.
//!
//! Built only with `--features wgpu`:
//! `cargo test -p scal-trainer --release --features wgpu --test backend_parity`. Without a GPU
//! it runs on Mesa's software drivers (llvmpipe through EGL/GL, or lavapipe through Vulkan
//! with Debian's `mesa-vulkan-drivers`); with `SCAL_SKIP_WGPU_PARITY=1` and no adapter at all
//! it is skipped.
#![cfg(feature = "wgpu")]

use burn::optim::SgdConfig;
use burn::store::ModuleSnapshot;
use burn::tensor::{Device, Int, Tensor, TensorData};
use scal_model::{AttentionKind, Gating, ScalConfig, ScalModel};
use scal_trainer::{Backend, StepConfig, scal_step};

fn gpu() -> Option<Device> {
    match scal_trainer::backend::device(Backend::Wgpu) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("SCAL_SKIP_WGPU_PARITY").is_ok() => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => {
            panic!("{e} (set SCAL_SKIP_WGPU_PARITY=1 to skip on machines without any adapter)")
        }
    }
}

fn config(attention: AttentionKind) -> ScalConfig {
    ScalConfig::new(4)
        .with_base_width(4)
        .with_height(64)
        .with_width(32)
        .with_attention(attention)
        .with_critic_hidden(8)
}

/// Deterministic inputs: 8 images (4 identities × 2) from a fixed formula.
fn batch(device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let n = 8 * 3 * 64 * 32;
    let pixels: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.37).sin() * 1.7 + (i % 97) as f32 / 97.0) - 0.5)
        .collect();
    let images = Tensor::from_data(TensorData::new(pixels, [8, 3, 64, 32]), device);
    let labels = Tensor::from_data(
        TensorData::new(vec![0i64, 0, 1, 1, 2, 2, 3, 3], [8]),
        device,
    );
    (images, labels)
}

/// The same weights on both devices (through a checkpoint file).
fn pair(attention: AttentionKind, a: &Device, b: &Device) -> (ScalModel, ScalModel) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.bpk");
    let cfg = config(attention);
    let first = cfg.init(a);
    first.save_checkpoint(&path).unwrap();
    let second = cfg.init(b).load_checkpoint(&path).unwrap();
    (cfg.init(a).load_checkpoint(&path).unwrap(), second)
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Largest |a - b| relative to the largest |a|.
fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

fn weights(model: &ScalModel) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<(String, Vec<f32>)> = model
        .collect(None, None, false)
        .into_iter()
        .filter_map(|t| {
            let name = t.name.clone();
            let bytes = t.to_bytes().ok()?;
            (bytes.len() % 4 == 0).then(|| {
                (
                    name,
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            })
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn forward_pass_agrees_on_flex_and_wgpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = Device::flex();
    for attention in [
        AttentionKind::Channel,
        AttentionKind::Spatial,
        AttentionKind::None,
    ] {
        let (a, b) = pair(attention, &cpu, &gpu);
        let (x_a, _) = batch(&cpu);
        let (x_b, _) = batch(&gpu);
        let out_a = a.forward(x_a.clone(), Gating::On);
        let out_b = b.forward(x_b.clone(), Gating::On);
        let d = relative_difference(&host(out_a.logits), &host(out_b.logits));
        assert!(d < 1e-4, "{attention}: logits differ by {d:e} (relative)");
        let d = relative_difference(&host(out_a.feature), &host(out_b.feature));
        assert!(d < 1e-4, "{attention}: features differ by {d:e}");
        for (l, (ma, mb)) in out_a.maps.into_iter().zip(out_b.maps).enumerate() {
            let d = relative_difference(&host(ma.flatten(1, 3)), &host(mb.flatten(1, 3)));
            assert!(d < 1e-4, "{attention}: map {l} differs by {d:e}");
        }
        let d = relative_difference(&host(a.embed(x_a, true)), &host(b.embed(x_b, true)));
        assert!(d < 1e-4, "{attention}: embeddings differ by {d:e}");
    }
}

/// One SCAL step on both backends: the same losses (1e-4) and rewards (exactly), and updates
/// that point the same way (cosine of the whole-model update > 0.99). Not element-wise: on a
/// random width-4 model the batch-hard triplet's mining meets near-ties that the backends'
/// rounding can break differently, and small tensors whose gradients are differences of
/// large terms (the agents, the stem's batch norm) differ by a few percent; measured relative
/// L2 differences of the whole update were 0.3-7 %. Plain SGD with learning rate 1 makes each weight's
/// change its gradient (BN running statistics change by their momentum update), so the
/// comparison checks the gradients of every term; Adam's first step, ±lr × sign(g), would
/// turn rounding noise on near-zero gradients into full-size differences.
#[test]
fn one_training_step_agrees_on_flex_and_wgpu() {
    let Some(gpu) = gpu() else { return };
    let (cpu, gpu) = (Device::flex().autodiff(), gpu.autodiff());
    for attention in [AttentionKind::Channel, AttentionKind::Spatial] {
        let (a, b) = pair(attention, &cpu, &gpu);
        let before = weights(&a);
        let step = StepConfig::new();
        let (x_a, y_a) = batch(&cpu);
        let (x_b, y_b) = batch(&gpu);
        let mut opt_a = SgdConfig::new().init();
        let mut opt_b = SgdConfig::new().init();
        let (a, report_a) = scal_step(a, &mut opt_a, 1.0, x_a, y_a, &step);
        let (b, report_b) = scal_step(b, &mut opt_b, 1.0, x_b, y_b, &step);
        let close = |x: f32, y: f32| (x - y).abs() <= 1e-4 * x.abs().max(1.0);
        assert!(
            close(report_a.loss, report_b.loss),
            "{attention}: loss {} vs {}",
            report_a.loss,
            report_b.loss
        );
        assert!(close(report_a.triplet, report_b.triplet));
        assert!(close(report_a.classification, report_b.classification));
        assert!(close(
            report_a.critic_mse.unwrap(),
            report_b.critic_mse.unwrap()
        ));
        assert_eq!(
            report_a.correct_rate, report_b.correct_rate,
            "{attention}: rewards are decisions"
        );
        assert_eq!(
            report_a.amelioration_rate, report_b.amelioration_rate,
            "{attention}"
        );
        let (wa, wb) = (weights(&a), weights(&b));
        assert_eq!(wa.len(), wb.len());
        let delta = |w: &[(String, Vec<f32>)]| -> Vec<Vec<f32>> {
            w.iter()
                .zip(&before)
                .map(|((_, x), (_, x0))| x.iter().zip(x0).map(|(p, q)| p - q).collect())
                .collect()
        };
        let (da, db) = (delta(&wa), delta(&wb));
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let (all_a, all_b): (Vec<f32>, Vec<f32>) = (da.concat(), db.concat());
        let diff: Vec<f32> = all_a.iter().zip(&all_b).map(|(x, y)| x - y).collect();
        let overall = norm(&diff) / norm(&all_a);
        let cosine = all_a
            .iter()
            .zip(&all_b)
            .map(|(x, y)| *x as f64 * *y as f64)
            .sum::<f64>()
            / (norm(&all_a) * norm(&all_b));
        eprintln!("{attention}: update cosine {cosine:.6}, relative L2 difference {overall:.2e}");
        assert!(
            cosine > 0.99,
            "{attention}: the updates point apart (cosine {cosine})"
        );
        let changed = da.iter().filter(|g| g.iter().any(|v| *v != 0.0)).count();
        assert!(changed > 50, "{attention}: only {changed} tensors changed");
    }
}
