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
    // The run's files are scal-run's own types: no scal-infer, no scal-train (issue 41).
    (
        "scal-run",
        &[
            "scal-attention",
            "scal-backbone",
            "scal-data",
            "scal-eval",
            "scal-fs",
            "scal-losses",
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
        &[
            "scal-infer",
            "scal-train",
            "scal-report",
            "clap",
            "indicatif",
            "plotters",
        ],
    ),
    ("scal-report", &["scal-train", "clap", "indicatif"]),
    (
        "scal-model",
        &[
            "burn-onnx",
            "onnx-ir",
            "image",
            "plotters",
            "indicatif",
            "burn-flex",
            "burn-ndarray",
            "burn-wgpu",
            "burn-cuda",
            "burn-remote",
        ],
    ),
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

// ---------------------------------------------------------------------------------------
// Source scans: the invariants `cargo metadata` cannot see, read from the code itself
// (test modules left out: a test may rename a folder to play a crash).

/// A source file read as tokens: its code with comments removed and string literals
/// emptied (`""`), and its string literals with their line numbers.
struct Source {
    path: PathBuf,
    code: String,
    strings: Vec<(usize, String)>,
}

impl Source {
    /// Reads `path`, without its test module (`mod tests`, which ends our files).
    fn read(path: &Path) -> Source {
        let text = std::fs::read_to_string(path).unwrap();
        // `#[cfg(test)]` or `#[cfg(all(test, …))]`, then `mod tests {`.
        let text = match text.find("\nmod tests {") {
            Some(at) => {
                let attribute = text[..at].rfind('\n').map_or(0, |l| l + 1);
                if text[attribute..at].starts_with("#[cfg(") {
                    &text[..attribute]
                } else {
                    &text[..at]
                }
            }
            None => &text[..],
        };
        let (code, strings) = lex(text);
        Source {
            path: path.to_path_buf(),
            code,
            strings,
        }
    }

    /// The code's lines (comments and literals out), numbered from 1.
    fn code_lines(&self) -> impl Iterator<Item = (usize, &str)> {
        self.code.lines().enumerate().map(|(i, l)| (i + 1, l))
    }
}

/// Splits Rust source into code (comments removed, string literals emptied, lines kept)
/// and string literals (`"…"`, `r#"…"#`, with the line they start on). Char literals are
/// kept as code, so a `'"'` does not open a string.
fn lex(text: &str) -> (String, Vec<(usize, String)>) {
    let chars: Vec<char> = text.chars().collect();
    let (mut code, mut strings, mut line, mut i) = (String::new(), Vec::new(), 1, 0);
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                if chars[i] == '\n' {
                    code.push('\n');
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal: 'x' or '\n', '\'', '\u{…}'.
            let end = (i + 1..chars.len())
                .find(|&j| chars[j] == '\'' && (j > i + 2 || next != Some('\\')))
                .unwrap_or(chars.len() - 1);
            code.extend(&chars[i..=end]);
            i = end + 1;
        } else if c == '"'
            || (c == 'r'
                && (i == 0 || !ident(chars[i - 1]) || chars[i - 1] == 'b')
                && matches!(next, Some('"' | '#'))
                && chars[i + 1..].iter().find(|&&x| x != '#') == Some(&'"'))
        {
            let raw = c == 'r';
            let hashes = if raw {
                chars[i + 1..].iter().take_while(|&&x| x == '#').count()
            } else {
                0
            };
            i += if raw { 2 + hashes } else { 1 };
            let (start, mut literal) = (line, String::new());
            while let Some(&x) = chars.get(i) {
                if !raw && x == '\\' {
                    literal.push(x);
                    literal.extend(chars.get(i + 1));
                    if chars.get(i + 1) == Some(&'\n') {
                        line += 1;
                        code.push('\n');
                    }
                    i += 2;
                    continue;
                }
                if x == '"' && chars[i + 1..].iter().take(hashes).all(|&h| h == '#') {
                    i += 1 + hashes;
                    break;
                }
                if x == '\n' {
                    line += 1;
                    code.push('\n');
                }
                literal.push(x);
                i += 1;
            }
            code.push_str("\"\"");
            strings.push((start, literal));
        } else {
            if c == '\n' {
                line += 1;
            }
            code.push(c);
            i += 1;
        }
    }
    (code, strings)
}

/// Every `.rs` file under each `crates/*/src` (but `except`'s) and `xtask/src`.
fn sources(except: &[&str]) -> Vec<Source> {
    let root = workspace_root();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if dir.join("src").is_dir() && !except.contains(&name.as_str()) {
            rust_files(&dir.join("src"), &mut files);
        }
    }
    if !except.contains(&"xtask") {
        rust_files(&root.join("xtask/src"), &mut files);
    }
    files.sort();
    files.iter().map(|f| Source::read(f)).collect()
}

/// xtask's sources (`xtask/src`, but the two-line `main.rs`).
fn xtask_sources() -> Vec<Source> {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("xtask/src"), &mut files);
    files.sort();
    files
        .iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| Source::read(f))
        .collect()
}

/// The library crates' sources (`crates/*/src`).
fn library_sources() -> Vec<Source> {
    sources(&["xtask"])
}

#[test]
fn the_lexer_tells_code_from_comments_and_strings() {
    let (code, strings) =
        lex("let a = \"x // y\"; // rename(\nlet b = r#\"say \"hi\"\"#; /* persist( */ c('\"');\n");
    assert_eq!(
        code, "let a = \"\"; \nlet b = \"\";  c('\"');\n",
        "comments out, literals emptied"
    );
    assert_eq!(
        strings,
        [(1, "x // y".to_string()), (2, "say \"hi\"".to_string())]
    );
    let (code, strings) = lex("f(\"a\\\"b\", 'x', '\\n', x.rename(y))");
    assert_eq!(code, "f(\"\", 'x', '\\n', x.rename(y))");
    assert_eq!(strings, [(1, "a\\\"b".to_string())]);
}

/// What only scal-fs may call: renaming into place and making staging files or folders
/// beside a destination (`tempfile::tempdir()` in the system's temporary folder, a scratch
/// folder that nothing is renamed from, is not one).
const STAGING_CALLS: &[&str] = &[
    "rename(",
    ".persist(",
    "persist_noclobber(",
    "tempfile_in(",
    "tempdir_in(",
    "staging_builder(",
    "tempfile::Builder",
    "NamedTempFile",
];

/// Invariant: scal-fs is the one way a file or folder is replaced whole (docs/architecture.md,
/// "Below everything sits scal-fs").
#[test]
fn only_scal_fs_renames_or_stages_files() {
    let sources = sources(&["scal-fs"]);
    assert!(sources.len() > 60, "the sources were found");
    let mut found = Vec::new();
    for source in &sources {
        for (n, line) in source.code_lines() {
            for call in STAGING_CALLS {
                if line.contains(call) {
                    found.push(format!("{}:{n}: {}", source.path.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "renames or staging files outside scal-fs (use scal_fs::write_atomically, \
         write_folder_atomically, StagedFile, StagedFolder or set_aside):\n{}",
        found.join("\n")
    );
    // The scan sees what it looks for: scal-fs itself does rename.
    let fs = Source::read(&workspace_root().join("crates/scal-fs/src/lib.rs"));
    assert!(fs.code.contains("std::fs::rename(") && fs.code.contains(".persist("));
}

/// The file and folder names of a run folder (`scal_run::run_dir`'s constants).
const RUN_FOLDER_NAMES: &[&str] = &[
    "config.json",
    "metrics.jsonl",
    "state.json",
    "optimizer.bpk",
    ".lock",
    "last",
    "best",
    "report",
];

/// Whether a string literal spells a run folder's file as a path: the name itself, or a path
/// ending in it (`runs/x/config.json`); a sentence that mentions one is not a path.
fn names_a_run_file(literal: &str) -> Option<&'static str> {
    if literal.chars().any(char::is_whitespace) {
        return None;
    }
    RUN_FOLDER_NAMES
        .iter()
        .copied()
        .find(|name| literal == *name || literal.ends_with(&format!("/{name}")))
}

/// Invariant 4: one type knows a run folder's layout (`scal_run::RunDir`); the commands, the
/// trainer and the report ask it for paths instead of spelling names or joining a
/// checkpoint's name themselves.
#[test]
fn only_scal_run_spells_a_run_folders_names() {
    assert_eq!(names_a_run_file("config.json"), Some("config.json"));
    assert_eq!(names_a_run_file("runs/quick/last"), Some("last"));
    assert_eq!(names_a_run_file("no config.json here"), None);
    assert_eq!(names_a_run_file("lastly"), None);
    let sources = sources(&["scal-run"]);
    let mut found = Vec::new();
    for source in &sources {
        for (n, literal) in &source.strings {
            if let Some(name) = names_a_run_file(literal) {
                found.push(format!(
                    "{}:{n}: \"{literal}\" spells {name}",
                    source.path.display()
                ));
            }
        }
        for (n, line) in source.code_lines() {
            let joins_a_checkpoint = line.match_indices("join(").any(|(at, _)| {
                let argument = &line[at..];
                let argument = &argument[..argument.find(')').map_or(argument.len(), |e| e + 1)];
                argument.contains("heckpoint") && argument.contains("as_str(")
            });
            if joins_a_checkpoint {
                found.push(format!(
                    "{}:{n}: joins a checkpoint's name: {}",
                    source.path.display(),
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "run folder names outside scal-run (ask scal_run::RunDir):\n{}",
        found.join("\n")
    );
    // The scan sees what it looks for: scal-run spells them.
    let run_dir = Source::read(&workspace_root().join("crates/scal-run/src/run_dir.rs"));
    for name in RUN_FOLDER_NAMES {
        assert!(
            run_dir.strings.iter().any(|(_, s)| s == name),
            "scal_run::run_dir names {name}"
        );
    }
}

/// Invariant 4: the run's files are scal-run's own serde types, converted from the
/// trainer's and the evaluator's in one place (`scal_train::records`): scal-run's code names
/// no training type of scal-model (the step's report, the loss), nor scal-infer or
/// scal-train (which the dependency table keeps out too).
#[test]
fn the_run_files_are_scal_runs_own_types() {
    let training_types = [
        "StepReport",
        "ScalLoss",
        "StepConfig",
        "scal_model::objective",
        "scal_infer",
        "scal_train",
    ];
    let run = sources(&[])
        .into_iter()
        .filter(|s| s.path.to_string_lossy().contains("crates/scal-run/src"))
        .collect::<Vec<_>>();
    assert!(run.len() >= 5, "the scan sees scal-run's sources");
    for source in &run {
        for (n, line) in source.code_lines() {
            for name in training_types {
                assert!(
                    !line.contains(name),
                    "{}:{n}: scal-run names {name}: the run's files are its own types",
                    source.path.display()
                );
            }
        }
    }
}

/// Invariant 2: libraries take `&Device` and never pick one.
#[test]
fn no_library_picks_a_device() {
    for source in library_sources() {
        for (n, line) in source.code_lines() {
            assert!(
                !line.contains("Device::default()") && !line.contains("default_device("),
                "{}:{n}: a library picks a device: {}",
                source.path.display(),
                line.trim()
            );
        }
    }
}

/// Invariant 3: only xtask prints; libraries return errors and report progress through
/// callbacks and observers.
#[test]
fn no_library_prints() {
    for source in library_sources() {
        for (n, line) in source.code_lines() {
            for print in ["println!", "print!", "eprintln!", "eprint!", "dbg!"] {
                let at_word = line.match_indices(print).any(|(at, _)| {
                    !line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                assert!(
                    !at_word,
                    "{}:{n}: a library prints ({print}): {}",
                    source.path.display(),
                    line.trim()
                );
            }
        }
    }
}

/// Invariant 6: scal-fs sits below every crate with two dependencies.
#[test]
fn scal_fs_depends_on_tempfile_and_thiserror_only() {
    let meta = metadata();
    let fs = workspace_packages(&meta)
        .into_iter()
        .find(|p| p["name"] == "scal-fs")
        .expect("scal-fs is a member");
    let shipped: BTreeSet<&str> = fs["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| is_shipped(d))
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(shipped, BTreeSet::from(["tempfile", "thiserror"]));
}

/// Invariant 1: the ONNX exporter is an option of scal-infer (its `onnx` feature), not a
/// dependency every user of inference builds.
#[test]
fn the_onnx_exporter_is_optional() {
    let meta = metadata();
    let infer = workspace_packages(&meta)
        .into_iter()
        .find(|p| p["name"] == "scal-infer")
        .expect("scal-infer is a member");
    let mut seen = 0;
    for dependency in infer["dependencies"].as_array().unwrap() {
        let name = dependency["name"].as_str().unwrap();
        if is_shipped(dependency) && matches!(name, "burn-onnx" | "onnx-ir") {
            assert_eq!(dependency["optional"], true, "scal-infer's {name}");
            seen += 1;
        }
    }
    assert_eq!(seen, 2, "scal-infer depends on burn-onnx and onnx-ir");
    assert!(
        !infer["features"]["default"]
            .as_array()
            .is_some_and(|d| d.iter().any(|f| f == "onnx")),
        "onnx is not a default feature"
    );
}

/// Invariant 7: every library crate documents everything (`#![warn(missing_docs)]`), has
/// its error enums `#[non_exhaustive]`, at most one integration-test binary (`tests/main.rs`;
/// none for scal-fs and scal-run, which test with unit tests), and takes the workspace's
/// lints (functions under 100 lines: `clippy::too_many_lines`); scal-eval-py, the one user
/// of `unsafe` (PyO3's generated code), keeps its own lints.
#[test]
fn library_crates_keep_the_house_rules() {
    let root = workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("too_many_lines = \"warn\""),
        "the workspace lints functions over 100 lines"
    );
    let meta = metadata();
    for package in workspace_packages(&meta) {
        let name = package["name"].as_str().unwrap();
        if name == "xtask" {
            continue;
        }
        let dir = Path::new(package["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .to_path_buf();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(
            lib.contains("#![warn(missing_docs)]"),
            "{name}: src/lib.rs lacks #![warn(missing_docs)]"
        );
        let tests: Vec<&str> = package["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "test"))
            .map(|t| t["src_path"].as_str().unwrap())
            .collect();
        let unit_tests_only = matches!(name, "scal-fs" | "scal-run");
        assert!(
            tests.len() <= usize::from(!unit_tests_only)
                && tests.iter().all(|t| t.ends_with("tests/main.rs")),
            "{name}: integration-test binaries {tests:?} (at most tests/main.rs, with a module per topic)"
        );
        let own = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        if name != "scal-eval-py" {
            assert!(
                own.contains("[lints]\nworkspace = true"),
                "{name}: Cargo.toml does not take the workspace's lints"
            );
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if !(line.starts_with("#[derive(") && line.contains("thiserror::Error")) {
                    continue;
                }
                let item = lines[i + 1..]
                    .iter()
                    .position(|l| l.starts_with("pub "))
                    .map(|p| i + 1 + p)
                    .unwrap();
                if lines[item].starts_with("pub enum") {
                    assert!(
                        lines[i + 1..item].contains(&"#[non_exhaustive]"),
                        "{}: {} is not #[non_exhaustive]",
                        file.display(),
                        lines[item]
                    );
                }
            }
        }
    }
}

/// xtask's modules (`bench`, `bench::measures`, …) and the modules each one names
/// (`crate::cli::…`, `super::ops::…`, `use crate::{a, b}`), from the sources.
fn xtask_module_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = workspace_root().join("xtask/src");
    let mut graph = BTreeMap::new();
    for source in xtask_sources() {
        let relative = source.path.strip_prefix(&src).unwrap().with_extension("");
        let mut module: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
            module.pop();
        }
        let mut named = BTreeSet::new();
        for prefix in ["crate::", "super::"] {
            for (at, _) in source.code.match_indices(prefix) {
                let rest = &source.code[at + prefix.len()..];
                let base: Vec<String> = if prefix == "crate::" {
                    Vec::new()
                } else {
                    module[..module.len().saturating_sub(1)].to_vec()
                };
                // `crate::{a, b::c}` names a and b; `crate::a::…` names a.
                let heads: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group[..group.find('}').unwrap_or(group.len())]
                        .split(',')
                        .map(str::trim)
                        .collect(),
                    None => vec![rest],
                };
                for head in heads {
                    let first: String = head
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if first.is_empty() || first == "super" || first == "self" {
                        continue;
                    }
                    let mut target = base.clone();
                    target.push(first);
                    named.insert(target);
                }
            }
        }
        graph.insert(module, named);
    }
    // An item's name (`super::BenchRow`, `crate::error_chain`) names the module holding it.
    let modules: BTreeSet<Vec<String>> = graph.keys().cloned().collect();
    for named in graph.values_mut() {
        *named = named
            .iter()
            .map(|m| {
                if modules.contains(m) {
                    m.clone()
                } else {
                    m[..m.len() - 1].to_vec()
                }
            })
            .collect();
    }
    graph
}

/// The dependency `from` → `to` seen between siblings: the children of their deepest common
/// ancestor that hold each (a module naming its own ancestor or descendant is not one).
fn sibling_edge(from: &[String], to: &[String]) -> Option<(Vec<String>, Vec<String>)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((from[..=common].to_vec(), to[..=common].to_vec()))
}

/// xtask's commands: one module (or one file) each. Modules that several commands share
/// are not commands: `cli`, `backend`, `hint`, `progress`.
const XTASK_COMMAND_MODULES: &[&str] = &[
    "ablate",
    "bench",
    "critic_data",
    "critic_grad",
    "datasets",
    "devices",
    "evaluate",
    "export",
    "extract",
    "index",
    "parity",
    "query",
    "report",
    "serve",
    "setup_cuda",
    "train",
];

/// docs/architecture.md, xtask: command modules never import each other (what several
/// commands share is in `cli`), and no module depends on a module that depends back on it:
/// xtask's modules read from top to bottom, the shared ones below the commands.
#[test]
fn xtask_modules_form_no_circle() {
    let graph = xtask_module_graph();
    let module = |path: &str| path.split("::").map(str::to_string).collect::<Vec<_>>();
    assert!(
        graph[&module("bench::ops")].contains(&module("bench")),
        "the graph sees `super::` names"
    );
    assert!(graph[&module("train")].contains(&module("cli")));
    let shared: BTreeSet<Vec<String>> = graph
        .keys()
        .filter(|m| m.len() == 1 && !XTASK_COMMAND_MODULES.contains(&m[0].as_str()))
        .cloned()
        .collect();
    assert_eq!(
        shared,
        ["backend", "cli", "hint", "progress"]
            .map(module)
            .into_iter()
            .collect(),
        "xtask's shared modules (a new command belongs in XTASK_COMMAND_MODULES)"
    );
    let mut edges = Edges::new();
    for (from, named) in &graph {
        edges.extend(named.iter().filter_map(|to| sibling_edge(from, to)));
    }
    for (from, to) in &edges {
        let command = |m: &Vec<String>| m.len() == 1 && !shared.contains(m);
        assert!(
            !(command(from) && command(to)),
            "the command module {} uses the command module {}: move what they share to cli",
            from.join("::"),
            to.join("::")
        );
    }
    if let Some(circle) = circle(&edges) {
        panic!("a circle in xtask: {circle}");
    }
}

type Edges = BTreeSet<(Vec<String>, Vec<String>)>;

/// A circle of `edges` (`a -> b -> a`), found by a depth-first search that meets a module on
/// its own path.
fn circle(edges: &Edges) -> Option<String> {
    fn visit(
        node: &[String],
        edges: &Edges,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<String> {
        if done.contains(node) {
            return None;
        }
        if let Some(at) = path.iter().position(|m| m.as_slice() == node) {
            let mut circle: Vec<String> = path[at..].iter().map(|m| m.join("::")).collect();
            circle.push(node.join("::"));
            return Some(circle.join(" -> "));
        }
        path.push(node.to_vec());
        for (_, to) in edges.iter().filter(|(from, _)| from.as_slice() == node) {
            if let Some(found) = visit(to, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_vec());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .iter()
        .find_map(|(from, _)| visit(from, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_module_graph_checks_see_siblings_and_circles() {
    let m = |path: &str| path.split("::").map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        sibling_edge(&m("bench::measures"), &m("bench::ops")),
        Some((m("bench::measures"), m("bench::ops")))
    );
    assert_eq!(
        sibling_edge(&m("bench::ops"), &m("cli")),
        Some((m("bench"), m("cli")))
    );
    assert_eq!(sibling_edge(&m("bench::ops"), &m("bench")), None);
    assert_eq!(sibling_edge(&m("bench"), &m("bench::ops")), None);
    let edges: Edges = [
        (m("a"), m("b")),
        (m("b"), m("c")),
        (m("c"), m("a")),
        (m("c"), m("d")),
    ]
    .into_iter()
    .collect();
    assert_eq!(circle(&edges).as_deref(), Some("a -> b -> c -> a"));
    let edges: Edges = [(m("a"), m("b")), (m("a"), m("c")), (m("b"), m("c"))]
        .into_iter()
        .collect();
    assert_eq!(circle(&edges), None);
}

/// xtask's dispatcher is one arm per command, each `args.run()`: every command has the same
/// shape, and what they share (Ctrl-C, hints) is installed once, beside it.
#[test]
fn every_command_runs_through_its_arguments() {
    let lib = std::fs::read_to_string(workspace_root().join("xtask/src/lib.rs")).unwrap();
    let enum_body = &lib[lib.find("enum Command {").unwrap()..];
    let enum_body = &enum_body[..enum_body.find("\n}").unwrap()];
    let variants: Vec<&str> = enum_body
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()) && l.contains('('))
        .map(|l| &l[..l.find('(').unwrap()])
        .collect();
    assert!(variants.len() >= 18, "{variants:?}");
    for variant in &variants {
        let arm = format!("Command::{variant}(args) => args.run(),");
        assert_eq!(
            lib.matches(&format!("Command::{variant}(")).count(),
            1 + usize::from(lib.contains(&format!("Command::{variant}(_)"))),
            "Command::{variant} appears once in the dispatch"
        );
        assert!(lib.contains(&arm), "the dispatch lacks `{arm}`");
    }
    assert_eq!(
        lib.matches("install_ctrl_c()").count(),
        1,
        "Ctrl-C is installed in one place"
    );
    for source in xtask_sources() {
        let file = source.path.file_name().unwrap();
        if file != "lib.rs" && file != "cli.rs" {
            assert!(
                !source.code.contains("install_ctrl_c"),
                "{}: Ctrl-C is installed by the dispatcher (lib.rs) only",
                source.path.display()
            );
        }
    }
}

/// docs/architecture.md: only the commands that train or measure training, the progress
/// observer, the benchmarks, backend parity and what they share (`cli`) use scal-train; the
/// other commands reach a model through scal-infer.
#[test]
fn only_the_training_commands_use_the_trainer() {
    const MAY: &[&str] = &[
        "ablate.rs",
        "train.rs",
        "critic_data.rs",
        "critic_grad.rs",
        "progress.rs",
        "cli.rs",
        "parity.rs",
        "bench/mod.rs",
        "bench/measures.rs",
        "bench/ops.rs",
    ];
    let src = workspace_root().join("xtask/src");
    let mut uses = Vec::new();
    for source in xtask_sources() {
        if source.code.contains("scal_train") {
            let relative = source
                .path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            uses.push(relative);
        }
    }
    assert!(uses.contains(&"train.rs".to_string()), "{uses:?}");
    for file in &uses {
        assert!(
            MAY.contains(&file.as_str()),
            "xtask/src/{file} uses scal-train: docs/architecture.md lists who may"
        );
    }
}
