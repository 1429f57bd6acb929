//! Helpers shared by the command-line tests (each test binary uses some of them).
#![allow(dead_code)]

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
