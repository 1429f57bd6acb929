//! Helpers shared by the command-line and in-process tests.

use std::path::Path;
use std::process::Command;

/// A tiny synthetic dataset (8 training and 6 test identities, 3 cameras) under `dir/synth`,
/// made by `cargo xtask synth`, and `dir/tiny.json`, a configuration that trains on it in
/// seconds: the base below with `patch` laid over it (objects merged field by field).
/// Returns the dataset folder and the configuration file.
pub fn tiny_setup(dir: &Path, patch: serde_json::Value) -> (String, String) {
    let data = dir.join("synth");
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "synth",
            "--train-ids",
            "8",
            "--test-ids",
            "6",
            "--cameras",
            "3",
            "--out",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut config = serde_json::json!({
        "data": {"root": data, "synthesize_if_missing": false, "height": 64, "width": 32,
                 "p": 4, "k": 2},
        "model": {"base_width": 4, "critic_hidden": 8},
        "optim": {"warmup_epochs": 1},
        "eval": {"batch": 16}
    });
    merge(&mut config, patch);
    let path = dir.join("tiny.json");
    std::fs::write(&path, config.to_string()).unwrap();
    (
        data.to_str().unwrap().to_string(),
        path.to_str().unwrap().to_string(),
    )
}

fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The in-process tests' synthetic dataset (8 training and 6 test identities, 3 cameras),
/// generated once under the target's temporary folder.
#[cfg(feature = "remote")]
pub fn tiny_dataset() -> std::path::PathBuf {
    static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask-synth-8x6");
        if !root.exists() {
            let config = scal_data::synth::SynthConfig {
                train_ids: 8,
                test_ids: 6,
                cameras: 3,
                seed: 1,
                preset: scal_data::synth::SynthPreset::Easy,
            };
            scal_data::synth::generate(&config, &root).unwrap();
        }
        root
    })
    .clone()
}

/// `field=value` overrides of the quick profile that train on [`tiny_dataset`] in a second or
/// two (64 × 32 inputs, P × K = 4 × 2, width-4 backbone), followed by `extra`.
#[cfg(feature = "remote")]
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
