//! The same SCAL model on flex (CPU) and on wgpu: forward pass and one training step agree
//! (the checks and their limits are documented in `xtask::parity`).
//!
//! Built only with `--features wgpu`:
//! `cargo test -p xtask --release --features wgpu --test integration -- backend_parity`. Without a GPU
//! it runs on Mesa's software drivers (lavapipe through Vulkan with Debian's
//! `mesa-vulkan-drivers`, or llvmpipe through EGL/GL); with `SCAL_SKIP_WGPU_PARITY=1` and no
//! adapter at all it is skipped. `cargo xtask parity --backend wgpu` runs the same checks
//! from a release binary (what `scripts/gpu-check.sh` uses).
use burn::tensor::Device;
use xtask::backend::{self, Backend};
use xtask::parity::{ParityCheck, forward_parity, step_parity};

fn gpu() -> Option<Device> {
    match backend::device(Backend::Wgpu) {
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

fn assert_all_pass(checks: &[ParityCheck]) {
    for c in checks {
        eprintln!(
            "{:<40} {:>12.3e} (limit {:?} {:e})",
            c.name, c.value, c.criterion, c.limit
        );
    }
    let failed: Vec<&ParityCheck> = checks.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "failed: {failed:#?}");
}

#[test]
fn forward_pass_agrees_on_flex_and_wgpu() {
    let Some(gpu) = gpu() else { return };
    let checks = forward_parity(&Device::flex(), &gpu).unwrap();
    assert_eq!(
        checks.len(),
        8 + 8 + 3,
        "channel and spatial: 8 outputs each; none: no maps"
    );
    assert_all_pass(&checks);
}

#[test]
fn one_training_step_agrees_on_flex_and_wgpu() {
    let Some(gpu) = gpu() else { return };
    let checks = step_parity(&Device::flex(), &gpu).unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c.name == "step/channel/update_cosine"),
        "{checks:?}"
    );
    assert_all_pass(&checks);
}
