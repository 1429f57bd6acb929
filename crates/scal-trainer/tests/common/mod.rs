//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use scal_data::synth::{SynthConfig, generate};

/// The tests' synthetic dataset (8 training and 6 test identities, 3 cameras), generated
/// once under the target's temporary folder and reused by every test and test binary.
pub fn tiny_dataset() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scal-trainer-synth-8x6");
        if !root.exists() {
            generate(
                &SynthConfig {
                    train_ids: 8,
                    test_ids: 6,
                    cameras: 3,
                    seed: 1,
                },
                &root,
            )
            .unwrap();
        }
        root
    })
    .clone()
}
