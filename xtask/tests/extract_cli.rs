//! `cargo xtask extract` end to end: the binary against torchvision's features on the same
//! images and weights (`tests/fixtures/make_fixtures.py`), and its errors on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array2;
use ndarray_npy::read_npy;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

fn backbone_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/scal-backbone/tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(fixture("expected.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensor(name).unwrap().data().to_vec()
}

fn expected_f32(name: &str) -> Vec<f32> {
    expected(name)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Runs the binary with the tiny ResNet-50 fixture at 64 x 32 plus `extra` arguments.
fn extract(images: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["extract", "--arch", "resnet50", "--base-width", "4"])
        .arg("--weights")
        .arg(backbone_fixture("tiny_resnet50.pth"))
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .args(["--height", "64", "--width", "32", "--batch", "3"])
        .args(extra);
    cmd.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Largest absolute difference per row.
fn row_errors(got: &Array2<f32>, want: &[f32]) -> Vec<f32> {
    let dim = got.ncols();
    got.rows()
        .into_iter()
        .enumerate()
        .map(|(r, row)| {
            row.iter()
                .zip(&want[r * dim..(r + 1) * dim])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max)
        })
        .collect()
}

fn check_against_torchvision(flip: bool) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("feats.npy");
    let output = extract(
        &fixture("images"),
        &out,
        if flip { &["--flip"] } else { &[] },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("1 non-image entries skipped"), "{stdout}");

    let feats: Array2<f32> = read_npy(&out).unwrap();
    assert_eq!(feats.dim(), (4, 128));
    let names = std::fs::read_to_string(dir.path().join("feats.names.txt")).unwrap();
    let want_names = String::from_utf8(expected("names")).unwrap();
    assert_eq!(names.trim_end(), want_names);

    let errors = row_errors(&feats, &expected_f32(if flip { "flip" } else { "plain" }));
    // Rows 0-2 are 64 x 32 PNGs: no resize, no lossy decode, so only float rounding differs.
    for (row, err) in errors.iter().enumerate().take(3) {
        assert!(*err < 1e-4, "row {row}: max abs error {err}");
    }
    // Row 3 is an 80 x 40 JPEG: decoders and resamplers differ by a pixel level here and
    // there (see scal-data's transform tests); the features stay within 1e-2.
    assert!(errors[3] < 1e-2, "jpeg row: max abs error {}", errors[3]);
}

#[test]
fn features_match_torchvision() {
    check_against_torchvision(false);
}

#[test]
fn flipped_features_match_torchvision() {
    check_against_torchvision(true);
}

#[test]
fn weights_of_another_architecture_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("feats.npy");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    let output = cmd
        .args([
            "extract",
            "--arch",
            "resnet50",
            "--base-width",
            "4",
            "--weights",
        ])
        .arg(backbone_fixture("tiny_resnet18.pth"))
        .arg("--images")
        .arg(fixture("images"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("resnet18") && err.contains("--arch resnet18"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn missing_weights_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("feats.npy");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["extract", "--weights", "/no/such/resnet50.pth", "--images"])
        .arg(fixture("images"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("/no/such/resnet50.pth"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unreadable_image_is_named_and_previous_output_survives() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for entry in std::fs::read_dir(fixture("images")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, images.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        images.join("0004_c1s1_000001_01.jpg"),
        b"\xff\xd8 truncated",
    )
    .unwrap();
    let out = dir.path().join("feats.npy");
    // An earlier run's output (it starts as every .npy does).
    std::fs::write(&out, b"\x93NUMPY previous features").unwrap();

    let output = extract(&images, &out, &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("0004_c1s1_000001_01.jpg"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"\x93NUMPY previous features");
    assert!(!dir.path().join("feats.names.txt").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn empty_folder_and_missing_folder_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("Thumbs.db"), b"x").unwrap();
    let out = dir.path().join("feats.npy");
    let output = extract(&empty, &out, &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("no images in") && err.contains("1 other entries"),
        "{err}"
    );

    let output = extract(&dir.path().join("absent"), &out, &[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("does not exist"));
}

#[test]
fn unwritable_output_fails_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("no-such-folder/feats.npy");
    let output = extract(&fixture("images"), &out, &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("cannot write --out") && err.contains("no-such-folder"),
        "{err}"
    );

    let output = extract(&fixture("images"), dir.path(), &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("is a folder"),
        "{}",
        stderr(&output)
    );
}

/// `--out` never replaces a file extract did not write (issue 29, B2): a checkpoint's
/// weights, or a link; its own earlier output is replaced.
#[test]
fn outputs_never_replace_what_they_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.bpk");
    std::fs::write(&weights, b"\x00\x01trained weights").unwrap();
    let output = extract(&fixture("images"), &weights, &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("model.bpk") && err.contains("not a features file"),
        "{err}"
    );
    assert_eq!(std::fs::read(&weights).unwrap(), b"\x00\x01trained weights");
    #[cfg(unix)]
    {
        let link = dir.path().join("link.npy");
        std::os::unix::fs::symlink(&weights, &link).unwrap();
        let output = extract(&fixture("images"), &link, &[]);
        assert!(!output.status.success());
        assert!(
            stderr(&output).contains("not a regular file"),
            "{}",
            stderr(&output)
        );
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
    let out = dir.path().join("feats.npy");
    for _ in 0..2 {
        let output = extract(&fixture("images"), &out, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
}

#[test]
fn backend_not_compiled_in_is_a_clear_error() {
    if cfg!(feature = "wgpu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = extract(
        &fixture("images"),
        &dir.path().join("f.npy"),
        &["--backend", "wgpu"],
    );
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("--features wgpu"), "{err}");
}

#[test]
fn bad_flag_values_are_rejected_by_the_parser() {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "extract",
            "--arch",
            "resnet152",
            "--weights",
            "w.pth",
            "--images",
            ".",
        ])
        .args(["--out", "f.npy"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("resnet152"));
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "extract",
            "--last-stride",
            "3",
            "--weights",
            "w.pth",
            "--images",
            ".",
        ])
        .args(["--out", "f.npy"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--last-stride"));
    // --batch 0 is the parser's (trial 4, M6); a huge one is a batch of the whole folder.
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "extract",
            "--batch",
            "0",
            "--weights",
            "w.pth",
            "--images",
            ".",
        ])
        .args(["--out", "f.npy"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--batch"));
}

/// Sizes outside the rule training follows (32 × 16 to 2048 × 2048) are refused before any
/// work, with the rule in the message; the 100000 × 100000 of a typo does not abort.
#[test]
fn input_sizes_follow_one_rule() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.npy");
    for (h, w, rule) in [
        ("1", "1", "at least 32 x 16"),
        ("100000", "100000", "at most 2048 x 2048"),
        ("31", "16", "at least 32 x 16"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(["extract", "--arch", "resnet50", "--base-width", "4"])
            .arg("--weights")
            .arg(backbone_fixture("tiny_resnet50.pth"))
            .arg("--images")
            .arg(fixture("images"))
            .arg("--out")
            .arg(&out)
            .args(["--height", h, "--width", w]);
        let o = cmd.output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{h}x{w}: {err}");
        assert!(
            err.contains("--height/--width") && err.contains(rule),
            "{err}"
        );
    }
    assert!(!out.exists());
}

/// Outputs are created with the permissions the umask leaves, like other tools' files (not
/// the 0600 of a private temporary file).
#[cfg(unix)]
#[test]
fn outputs_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.npy");
    let o = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(["extract", "--arch", "resnet50", "--base-width", "4"])
        .arg("--weights")
        .arg(backbone_fixture("tiny_resnet50.pth"))
        .arg("--images")
        .arg(fixture("images"))
        .arg("--out")
        .arg(&out)
        .args(["--height", "64", "--width", "32"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for file in [out.clone(), dir.path().join("f.names.txt")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", file.display());
    }
}

/// `extract --weights FILE --format torchreid|fastreid` on a folder of images at the
/// fixtures' width (2): features of the toolkit's width; the wrong format is refused.
#[test]
fn torchreid_and_fastreid_checkpoints_are_read_with_their_format() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.npy");
    let run = |weights: &str, format: &str| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["extract", "--arch", "resnet50", "--base-width", "2"])
            .arg("--weights")
            .arg(backbone_fixture(weights))
            .args(["--format", format])
            .arg("--images")
            .arg(fixture("images"))
            .arg("--out")
            .arg(&out)
            .args(["--height", "64", "--width", "32"])
            .output()
            .unwrap()
    };
    for (weights, format) in [
        ("torchreid_resnet50_w2.pth.tar", "torchreid"),
        ("fastreid_bot_r50_w2.pth", "fastreid"),
    ] {
        let o = run(weights, format);
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        let features: Array2<f32> = read_npy(&out).unwrap();
        assert_eq!(features.ncols(), 64, "{format}: 2 · 8 · 4 channels");
        assert!(features.iter().all(|v| v.is_finite()));
        std::fs::remove_file(&out).unwrap();
    }
    // Read as torchvision, a torchreid checkpoint has entries a backbone has no place for.
    let o = run("torchreid_resnet50_w2.pth.tar", "torchvision");
    assert!(
        !o.status.success() && stderr(&o).contains("unexpected"),
        "{}",
        stderr(&o)
    );
    let o = run("fastreid_ibn_r50_w2.pth", "fastreid");
    assert!(
        !o.status.success() && stderr(&o).contains("IBN") && !out.exists(),
        "{}",
        stderr(&o)
    );
    let o = run("torchreid_resnet50_fc_w2.pth", "torchreid");
    assert!(
        !o.status.success() && stderr(&o).contains("resnet50_fc512"),
        "{}",
        stderr(&o)
    );
}
