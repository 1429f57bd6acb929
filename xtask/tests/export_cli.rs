//! `cargo xtask export --format onnx`: ONNX Runtime on the exported graph gives the features
//! `extract --checkpoint` writes, for channel, spatial and no-attention models; bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array4;
use ndarray_npy::WriteNpyExt;

use crate::common;

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn fails(o: &Output) -> String {
    assert!(!o.status.success(), "unexpected success");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Python with `onnxruntime` and `numpy`: `SCAL_ONNX_PYTHON`, else `python3` when it has
/// them. `None` when there is none, unless `SCAL_REQUIRE_ONNXRUNTIME` is set (CI), which
/// makes its absence a failure.
fn onnx_python() -> Option<String> {
    let python = std::env::var("SCAL_ONNX_PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(&python)
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("SCAL_REQUIRE_ONNXRUNTIME").is_some() {
        panic!("SCAL_REQUIRE_ONNXRUNTIME is set but {python} cannot import onnxruntime and numpy");
    }
    found.then_some(python)
}

/// A tiny run (one epoch) with `attention`, its `last/` and the dataset's folder.
fn trained(dir: &Path, attention: &str) -> (PathBuf, PathBuf) {
    let (data, config) = common::tiny_setup(
        dir,
        serde_json::json!({
            "model": {"attention": attention},
            "step": {"critic": attention != "none"},
            "optim": {"epochs": 1, "milestones": []},
            "eval": {"every_epochs": 1}
        }),
    );
    let runs = dir.join("runs");
    ok(&xtask(&[
        "train",
        "--config",
        &config,
        "--runs",
        runs.to_str().unwrap(),
        "--name",
        attention,
        "--no-progress",
    ]));
    (runs.join(attention).join("last"), PathBuf::from(data))
}

/// The normalised images `extract` feeds the network, as `[N, 3, 64, 32]` float32 `.npy`.
fn write_inputs(images: &[PathBuf], out: &Path) {
    let pixels = scal_data::TestTransform::new(64, 32)
        .load_batch(images)
        .unwrap();
    let array = Array4::from_shape_vec((images.len(), 3, 64, 32), pixels).unwrap();
    array
        .write_npy(std::fs::File::create(out).unwrap())
        .unwrap();
}

fn check_with_onnxruntime(python: &str, onnx: &Path, inputs: &Path, expected: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/onnx-check.py");
    let o = Command::new(python)
        .arg(script)
        .args([onnx, inputs, expected])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "ONNX Runtime disagrees with extract for {}:\n{stdout}\n{}",
        onnx.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

#[test]
fn onnx_export_matches_extract() {
    let python = onnx_python();
    if python.is_none() {
        eprintln!(
            "onnxruntime not found (set SCAL_ONNX_PYTHON): exporting without the runtime check"
        );
    }
    for attention in ["channel", "spatial", "none"] {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, data) = trained(dir.path(), attention);
        let onnx = dir.path().join("scal.onnx");
        let out = ok(&xtask(&[
            "export",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--format",
            "onnx",
            "--out",
            onnx.to_str().unwrap(),
        ]));
        assert!(out.contains("[batch, 3, 64, 32]"), "{out}");
        let bytes = std::fs::read(&onnx).unwrap();
        assert!(
            bytes.windows(4).any(|w| w == b"Conv"),
            "{attention}: no Conv node in the exported graph"
        );
        if attention != "none" {
            assert!(
                bytes.windows(7).any(|w| w == b"Sigmoid"),
                "{attention}: the attention modules' sigmoid is not in the graph"
            );
        }
        // Three images: neither batch size the capture saw (1 and 2).
        let gallery = data.join("bounding_box_test");
        let mut images: Vec<PathBuf> = std::fs::read_dir(&gallery)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        images.sort();
        let folder = dir.path().join("three");
        std::fs::create_dir(&folder).unwrap();
        for (i, image) in images.iter().take(3).enumerate() {
            std::fs::copy(image, folder.join(format!("{i}.jpg"))).unwrap();
        }
        let expected = dir.path().join("features.npy");
        ok(&xtask(&[
            "extract",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--images",
            folder.to_str().unwrap(),
            "--out",
            expected.to_str().unwrap(),
        ]));
        let inputs = dir.path().join("inputs.npy");
        let copies: Vec<PathBuf> = (0..3).map(|i| folder.join(format!("{i}.jpg"))).collect();
        write_inputs(&copies, &inputs);
        if let Some(python) = &python {
            let report = check_with_onnxruntime(python, &onnx, &inputs, &expected);
            assert!(report.contains("3 rows"), "{report}");
            assert!(
                report.contains("input images ['batch', 3, 64, 32]")
                    && report.contains("output features ['batch', 32]"),
                "{report}"
            );
            eprintln!("{attention}: {report}");
        }
    }
}

#[test]
fn onnx_export_refuses_what_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, data) = trained(dir.path(), "spatial");
    let checkpoint_s = checkpoint.to_str().unwrap();
    let export = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "export",
            "--checkpoint",
            checkpoint_s,
            "--format",
            "onnx",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        xtask(&args)
    };
    // Spatial attention is sized by the input: another size is refused, naming both.
    let onnx = dir.path().join("scal.onnx");
    let err = fails(&export(&onnx, &["--height", "128", "--width", "64"]));
    assert!(err.contains("128 x 64") && err.contains("spatial"), "{err}");
    // A wrong extension, a missing folder, a folder as the output.
    let err = fails(&export(&dir.path().join("scal.safetensors"), &[]));
    assert!(err.contains(".onnx"), "{err}");
    let err = fails(&export(&dir.path().join("no/such/scal.onnx"), &[]));
    assert!(err.contains("does not exist"), "{err}");
    std::fs::create_dir(dir.path().join("taken.onnx")).unwrap();
    let err = fails(&export(&dir.path().join("taken.onnx"), &[]));
    assert!(err.contains("is a folder"), "{err}");
    // A folder that is not a checkpoint (the dataset's) and a file.
    let err = fails(&xtask(&[
        "export",
        "--checkpoint",
        data.to_str().unwrap(),
        "--format",
        "onnx",
        "--out",
        onnx.to_str().unwrap(),
    ]));
    assert!(err.contains("not a checkpoint folder"), "{err}");
    let err = fails(&xtask(&[
        "export",
        "--checkpoint",
        checkpoint.join("model.bpk").to_str().unwrap(),
        "--format",
        "onnx",
        "--out",
        onnx.to_str().unwrap(),
    ]));
    assert!(err.contains("not a checkpoint folder"), "{err}");
    // Nothing was left behind by the failures: no output, no temporary file.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| (n.ends_with(".onnx") && n != "taken.onnx") || n.contains(".scal-partial-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // An export replaces its own earlier graph, never another file of that name (B2).
    let other = dir.path().join("notes.onnx");
    std::fs::write(&other, b"my notes").unwrap();
    let err = fails(&export(&other, &[]));
    assert!(
        err.contains("notes.onnx") && err.contains("would be replaced"),
        "{err}"
    );
    assert_eq!(std::fs::read(&other).unwrap(), b"my notes");
    for _ in 0..2 {
        let out = export(&onnx, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
