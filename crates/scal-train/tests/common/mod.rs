//! Helpers shared by the integration tests (each test binary uses some of them).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor};
use scal_data::synth::{SynthConfig, generate};

/// The tests' synthetic dataset (8 training and 6 test identities, 3 cameras), generated
/// once under the target's temporary folder and reused by every test and test binary.
pub fn tiny_dataset() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scal-train-synth-8x6");
        if !root.exists() {
            generate(
                &SynthConfig {
                    train_ids: 8,
                    test_ids: 6,
                    cameras: 3,
                    seed: 1,
                    preset: scal_data::synth::SynthPreset::Easy,
                },
                &root,
            )
            .unwrap();
        }
        root
    })
    .clone()
}

/// `field=value` overrides of the quick profile that train on [`tiny_dataset`] in a second or
/// two (64 × 32 inputs, P × K = 4 × 2, width-4 backbone), followed by `extra` (later
/// overrides win).
pub fn tiny_overrides(root: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let base = [
        ("data.synthesize_if_missing", "false"),
        ("data.height", "64"),
        ("data.width", "32"),
        ("data.p", "4"),
        ("data.k", "2"),
        ("model.base_width", "4"),
        ("model.critic_hidden", "8"),
        ("optim.warmup_epochs", "1"),
        ("eval.batch", "16"),
    ];
    std::iter::once(("data.root".to_string(), root.display().to_string()))
        .chain(
            base.iter()
                .chain(extra)
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .collect()
}

/// Shard `i` of the fixed 8-image parity batch (4 identities × 2): rows `4i..4i+4`.
pub fn shard(i: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let (images, labels) = scal_model::probe::probe_batch(device);
    (images.narrow(0, 4 * i, 4), labels.narrow(0, 4 * i, 4))
}

/// Trains on flex, observing nothing.
pub fn train_flex(
    config: &scal_train::TrainingConfig,
    run: &Path,
    resume: bool,
) -> Result<scal_train::RunOutcome, scal_train::TrainError> {
    let start = if resume {
        scal_train::Start::Resume
    } else {
        scal_train::Start::New
    };
    scal_train::train(config, run, start, &[Device::flex()], &mut ())
}

/// An observer that asks the run to stop after its first iteration (as Ctrl-C does).
#[derive(Debug, Default)]
pub struct StopAtOnce;

impl scal_train::TrainObserver for StopAtOnce {
    fn should_stop(&mut self) -> bool {
        true
    }
}

/// Runs the ignored test `name` of this binary alone in a child process, with `env` set to 1
/// (the test does its work only when it sees it), and says whether it passed. Burn's flex
/// backend draws every random number from one process-wide generator, so a test whose
/// assertions depend on its draws runs this way, where its draws are its seed's and not
/// whatever the tests beside it left.
pub fn passes_alone(name: &str, env: &str) -> bool {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, "1")
        .status()
        .unwrap()
        .success()
}
