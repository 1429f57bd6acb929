//! The same SCAL model on flex (CPU) and on wgpu: forward pass and one training step agree
//! (the checks and their limits are documented in `xtask::parity`).
//!
//! Built only with `--features wgpu` (the README's test command has it):
//! `cargo test -p xtask --release --features wgpu --test integration -- backend_parity`. Without a GPU
//! it runs on Mesa's software drivers (lavapipe through Vulkan with Debian's
//! `mesa-vulkan-drivers`, or llvmpipe through EGL/GL). With no adapter at all the tests say
//! so and are skipped, unless `SCAL_REQUIRE_WGPU=1` (CI, which installs lavapipe) makes that a
//! failure; `SCAL_SKIP_WGPU_PARITY=1` skips them even then. `cargo xtask parity --backend wgpu`
//! runs the same checks from a release binary (what `scripts/gpu-check.sh` uses).
use burn::tensor::Device;
use xtask::backend::{self, Backend};
use xtask::parity::{ParityCheck, forward_parity, step_parity};

fn gpu() -> Option<Device> {
    match backend::device(Backend::Wgpu) {
        Ok(d) => Some(d),
        Err(e)
            if std::env::var_os("SCAL_SKIP_WGPU_PARITY").is_some()
                || std::env::var_os("SCAL_REQUIRE_WGPU").is_none() =>
        {
            eprintln!("skipped, no wgpu adapter (install mesa-vulkan-drivers to run it): {e}");
            None
        }
        Err(e) => panic!("SCAL_REQUIRE_WGPU is set but wgpu has no adapter: {e}"),
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
