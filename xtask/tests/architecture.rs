//! The workspace's architecture, checked rather than only written (docs/architecture.md,
//! "Dependencies point one way" and "Invariants"): which of our crates each crate may depend
//! on, that no library turns on a backend feature, what the inference crate and the network
//! crate must not pull in, and that no library's string literal names a command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Our crates each library crate may depend on (normal and build dependencies): the table of
/// docs/architecture.md. `xtask` may depend on any of them.
const ALLOWED: &[(&str, &[&str])] = &[
    ("scal-fs", &[]),
    ("scal-backbone", &["scal-fs"]),
    ("scal-attention", &[]),
    ("scal-critic", &[]),
    ("scal-rewards", &[]),
    ("scal-losses", &[]),
    ("scal-data", &["scal-fs"]),
    ("scal-eval", &[]),
    ("scal-eval-py", &["scal-eval"]),
    (
        "scal-model",
        &[
            "scal-attention",
            "scal-backbone",
            "scal-critic",
            "scal-fs",
            "scal-losses",
            "scal-rewards",
        ],
    ),
    (
        "scal-infer",
        &[
            "scal-attention",
            "scal-backbone",
            "scal-data",
            "scal-eval",
            "scal-fs",
            "scal-model",
        ],
    ),
    (
        "scal-run",
        &[
            "scal-attention",
            "scal-backbone",
            "scal-data",
            "scal-eval",
            "scal-fs",
            "scal-infer",
            "scal-model",
            "scal-rewards",
        ],
    ),
    (
        "scal-train",
        &[
            "scal-attention",
            "scal-backbone",
            "scal-data",
            "scal-eval",
            "scal-fs",
            "scal-infer",
            "scal-losses",
            "scal-model",
            "scal-rewards",
            "scal-run",
        ],
    ),
    (
        "scal-report",
        &[
            "scal-data",
            "scal-eval",
            "scal-fs",
            "scal-infer",
            "scal-model",
            "scal-rewards",
            "scal-run",
        ],
    ),
];

/// Burn's backend features: only xtask may turn them on (libraries take a device).
const BACKEND_FEATURES: &[&str] = &[
    "flex", "ndarray", "wgpu", "cuda", "rocm", "metal", "vulkan", "webgpu", "remote", "tch",
];

/// Crates that must not be in a library's dependency tree (normal edges only).
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "scal-infer",
        &["scal-train", "scal-report", "clap", "indicatif", "plotters"],
    ),
    (
        "scal-run",
        &["scal-train", "scal-report", "clap", "indicatif", "plotters"],
    ),
    ("scal-report", &["scal-train", "clap", "indicatif"]),
    ("scal-model", &["burn-onnx", "onnx-ir", "image", "plotters"]),
    ("scal-eval", &["burn"]),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// `cargo metadata` of the workspace's own packages (`--no-deps`: no download needed), offline.
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--locked",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

fn workspace_packages(meta: &Value) -> Vec<&Value> {
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| members.contains(p["id"].as_str().unwrap()))
        .collect()
}

/// A dependency that is not a dev-dependency.
fn is_shipped(dependency: &Value) -> bool {
    dependency["kind"].as_str() != Some("dev")
}

#[test]
fn our_crates_depend_only_on_those_the_table_allows() {
    let meta = metadata();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut checked = 0;
    for package in workspace_packages(&meta) {
        let name = package["name"].as_str().unwrap();
        if name == "xtask" {
            continue;
        }
        let Some(may) = allowed.get(name) else {
            panic!(
                "{name} is not in the dependency table: add it here and in docs/architecture.md"
            );
        };
        for dependency in package["dependencies"].as_array().unwrap() {
            let on = dependency["name"].as_str().unwrap();
            if on.starts_with("scal-") && is_shipped(dependency) {
                assert!(
                    may.contains(&on),
                    "{name} depends on {on}, which docs/architecture.md does not allow"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, ALLOWED.len(), "every library crate was checked");
}

#[test]
fn no_library_turns_on_a_backend() {
    let meta = metadata();
    for package in workspace_packages(&meta) {
        let name = package["name"].as_str().unwrap();
        if name == "xtask" {
            continue;
        }
        for dependency in package["dependencies"].as_array().unwrap() {
            let on = dependency["name"].as_str().unwrap();
            if !on.starts_with("burn") || !is_shipped(dependency) {
                continue;
            }
            for feature in dependency["features"].as_array().unwrap() {
                let feature = feature.as_str().unwrap();
                assert!(
                    !BACKEND_FEATURES.contains(&feature),
                    "{name} turns on the backend feature `{feature}` of {on}: only xtask picks backends"
                );
            }
        }
        for (feature, enables) in package["features"].as_object().unwrap() {
            for enabled in enables.as_array().unwrap() {
                let enabled = enabled.as_str().unwrap();
                let backend = enabled.split_once('/').is_some_and(|(krate, f)| {
                    krate.starts_with("burn") && BACKEND_FEATURES.contains(&f)
                });
                assert!(
                    !backend,
                    "{name}'s feature `{feature}` turns on `{enabled}`: only xtask picks backends"
                );
            }
        }
    }
}

/// The crates `root` is built with (normal dependencies, its own features only, as
/// `cargo build -p ROOT` resolves them; `cargo metadata` unifies the whole workspace's), by
/// name.
fn normal_closure(root: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree", "-p", root, "-e", "normal", "--prefix", "none", "-f", "{p}",
        ])
        .args(["--offline", "--locked"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn inference_and_the_network_pull_in_nothing_they_should_not() {
    for (root, forbidden) in FORBIDDEN {
        let closure = normal_closure(root);
        for name in *forbidden {
            assert!(
                !closure.contains(*name),
                "{root} depends on {name} (cargo tree -p {root} -e normal -i {name})"
            );
        }
    }
    // The check sees the tree: scal-infer does reach the network and Burn.
    let infer = normal_closure("scal-infer");
    assert!(infer.contains("scal-model") && infer.contains("burn"));
}

/// Whether the code part of `line` (before a `//` comment) holds `needle` inside a string
/// literal: an odd number of unescaped quotes before it.
fn in_string_literal(line: &str, needle: &str) -> bool {
    let code = line.trim_start();
    if code.starts_with("//") {
        return false;
    }
    line.match_indices(needle).any(|(at, _)| {
        let before = &line[..at];
        let quotes = before.matches('"').count() - before.matches("\\\"").count();
        quotes % 2 == 1
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_library_string_names_a_command() {
    assert!(in_string_literal(
        r#"    "run cargo xtask train""#,
        "cargo xtask"
    ));
    assert!(!in_string_literal(
        "    /// cargo xtask train",
        "cargo xtask"
    ));
    assert!(!in_string_literal(
        r#"let a = "x"; // cargo xtask"#,
        "cargo xtask"
    ));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 30, "the library sources were found");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            assert!(
                !in_string_literal(line, "cargo xtask"),
                "{}:{}: a library names a command (hints are xtask's): {line}",
                file.display(),
                i + 1
            );
        }
    }
}
