//! The fourth bad-input trial's cases (issue 42, `docs/reliability.md` tags them `(trial 4,
//! ID)`), as a user meets them on the command line: outputs that must not replace what the
//! command did not write, flags typed from the command line on, and the critic tools on a
//! run whose dataset moved.

use std::path::Path;
use std::process::{Command, Output};

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
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The error of a command that must fail with exit status 1 (an error found while running).
fn fails(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The tiny dataset (at `dir/synth`), its configuration file, and one finished one-epoch
/// run `runs/scal` of it (channel attention with critics). Trained without `--no-progress`,
/// its output going to pipes, as to a log file (trial 4, C23): plain lines, no progress bar's
/// carriage returns or escape sequences.
fn trained(dir: &Path) -> (String, String) {
    let (data, config) = common::tiny_setup(
        dir,
        serde_json::json!({"optim": {"epochs": 1}, "eval": {"rerank": false}}),
    );
    let runs = dir.join("runs");
    let out = xtask(&[
        "train",
        "--config",
        &config,
        "--runs",
        s(&runs),
        "--name",
        "scal",
    ]);
    let stdout = ok(&out);
    assert!(stdout.contains("final evaluation"), "{stdout}");
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !stream.iter().any(|b| *b == b'\r' || *b == 0x1b),
            "control characters in a redirected output: {text:?}"
        );
    }
    (data, config)
}

/// O2: `train --name X` on a folder that is not a run leaves it untouched; C8/C9: `--root`
/// is a path, whatever it looks like (`2024`, `"q"`); `--set` reads a value by its field's
/// type and names the field and the type it expects.
#[test]
fn flags_are_typed_and_a_folder_that_is_not_a_run_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = common::tiny_setup(
        dir.path(),
        serde_json::json!({"optim": {"epochs": 1}, "eval": {"rerank": false}}),
    );
    let runs = dir.path().join("runs");
    let proj = runs.join("proj");
    std::fs::create_dir_all(proj.join("report")).unwrap();
    std::fs::write(proj.join("report/q3.docx"), "quarterly report").unwrap();
    let train = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--config",
            &config,
            "--runs",
            s(&runs),
            "--name",
            name,
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        xtask(&args)
    };
    let err = fails(&train("proj", &[]));
    assert!(
        err.contains("is not a run folder") && err.contains("report"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(proj.join("report/q3.docx")).unwrap(),
        "quarterly report"
    );
    let left: Vec<_> = std::fs::read_dir(&proj)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["report"], "nothing added, nothing removed");

    // A dataset folder named like a JSON value is a folder.
    for name in ["2024", "\"q\""] {
        let root = dir.path().join(name);
        copy_dir(Path::new(&data), &root);
        let run = format!("root-{}", name.replace('"', ""));
        let out = ok(&train(&run, &["--root", s(&root)]));
        assert!(out.contains("finished 1 epochs"), "{out}");
        let saved: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(runs.join(&run).join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(saved["data"]["root"], s(&root), "{saved}");
    }

    let err = fails(&train("bad-p", &["--set", "data.p=abc"]));
    assert!(
        err.contains("data.p") && err.contains("usize"),
        "the field and its type: {err}"
    );
    assert!(!runs.join("bad-p").exists());
    let o = xtask(&["train", "--attention", "both"]);
    assert_eq!(o.status.code(), Some(2), "clap refuses an unknown value");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("none") && err.contains("spatial") && err.contains("channel"),
        "the allowed values are listed: {err}"
    );
    let help = ok(&xtask(&["train", "--help"]));
    for listed in [
        "[possible values: quick, paper]",
        "planted-noisy",
        "synth-hard",
    ] {
        assert!(help.contains(listed), "{listed} in {help}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// F7, F8, F24, D15: the critic tools replace only what they wrote (critic-data's folder is
/// swapped in whole, critic-grad's JSON is checked before minutes of measuring) and know
/// their run's data: a moved dataset is named with `--root`, a changed one is refused.
#[test]
fn the_critic_tools_replace_only_their_outputs_and_check_the_runs_data() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = trained(dir.path());
    let run = dir.path().join("runs/scal");

    critic_grad_writes_only_its_own_json(dir.path(), &run, &data);
    critic_data_replaces_only_its_own_folder(dir.path(), &run);

    // C17, C18: resuming the finished run with a --root that does not exist is named as the
    // flag's folder; with one that exists, the refusal leaves config.json as it was.
    let config_before = std::fs::read_to_string(run.join("config.json")).unwrap();
    let err = fails(&xtask(&[
        "train",
        "--resume",
        s(&run),
        "--root",
        "/nonexistent/zzz",
        "--no-progress",
    ]));
    assert!(
        err.contains("--root /nonexistent/zzz: no such folder"),
        "{err}"
    );
    let elsewhere = dir.path().join("elsewhere");
    copy_dir(Path::new(&data), &elsewhere);
    let err = fails(&xtask(&[
        "train",
        "--resume",
        s(&run),
        "--root",
        s(&elsewhere),
        "--no-progress",
    ]));
    assert!(err.contains("has finished"), "{err}");
    assert_eq!(
        std::fs::read_to_string(run.join("config.json")).unwrap(),
        config_before,
        "a refused resume changes nothing"
    );

    // The dataset moves: named with the command's own flag; following it works.
    let moved = dir.path().join("moved");
    std::fs::rename(&data, &moved).unwrap();
    let err = fails(&xtask(&["critic-grad", s(&run), "--batches", "1"]));
    assert!(
        err.contains("cargo xtask critic-grad") && err.contains("--root"),
        "{err}"
    );
    ok(&xtask(&[
        "critic-grad",
        s(&run),
        "--batches",
        "1",
        "--root",
        s(&moved),
    ]));
    // Another dataset in its place (the default synthetic set, other identities): refused,
    // no panic on labels the model does not have.
    let other = dir.path().join("other");
    ok(&xtask(&[
        "synth",
        "--train-ids",
        "12",
        "--test-ids",
        "6",
        "--cameras",
        "3",
        "--out",
        s(&other),
    ]));
    for command in ["critic-grad", "critic-data"] {
        let mut args = vec![command, s(&run), "--batches", "1", "--root", s(&other)];
        let out2 = dir.path().join("cd2");
        if command == "critic-data" {
            args.extend(["--out", s(&out2)]);
        }
        let err = fails(&xtask(&args));
        assert!(
            err.contains("changed") || err.contains("identities"),
            "{command}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// critic-grad --json refuses a user's file, a link and a missing folder before measuring;
/// it measures `best`, leaves `--batches 0` to clap and names a folder that is not a run.
fn critic_grad_writes_only_its_own_json(dir: &Path, run: &Path, data: &str) {
    // critic-grad --json: a user's file, a link and a missing folder are refused up front.
    let notes = dir.join("notes.json");
    std::fs::write(&notes, "my notes").unwrap();
    let link = dir.join("link.json");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&notes, &link).unwrap();
    for target in [&notes, &link] {
        let err = fails(&xtask(&[
            "critic-grad",
            s(run),
            "--batches",
            "1",
            "--json",
            s(target),
        ]));
        assert!(err.contains("--json"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes");
    let missing = dir.join("nodir/sub/cg.json");
    let o = xtask(&[
        "critic-grad",
        s(run),
        "--batches",
        "1",
        "--json",
        s(&missing),
    ]);
    let err = fails(&o);
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        String::from_utf8_lossy(&o.stdout).is_empty(),
        "refused before measuring"
    );
    let json = dir.join("cg.json");
    ok(&xtask(&[
        "critic-grad",
        s(&run.join("last")),
        "--batches",
        "1",
        "--json",
        s(&json),
    ]));
    ok(&xtask(&[
        "critic-grad",
        s(run),
        "--batches",
        "1",
        "--json",
        s(&json),
    ]));
    // D2: the best checkpoint is measured; --batches 0 is clap's (rc 2); a dataset folder
    // given as the run is named as not a run folder.
    ok(&xtask(&[
        "critic-grad",
        s(run),
        "--checkpoint",
        "best",
        "--batches",
        "1",
    ]));
    let zero = xtask(&["critic-grad", s(run), "--batches", "0"]);
    assert_eq!(zero.status.code(), Some(2), "{zero:?}");
    let err = fails(&xtask(&["critic-grad", data, "--batches", "1"]));
    assert!(err.contains("is not a run folder"), "{err}");
}

/// critic-data --out refuses a folder holding a user's file or a checkpoint, and replaces its
/// own output whole.
fn critic_data_replaces_only_its_own_folder(dir: &Path, run: &Path) {
    // critic-data --out: a folder with a user's file is refused; its own folder is replaced
    // whole (a file of an earlier output that the new one lacks is gone).
    let out = dir.join("cd");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let err = fails(&xtask(&[
        "critic-data",
        s(run),
        "--batches",
        "1",
        "--out",
        s(&out),
    ]));
    assert!(err.contains("notes.txt"), "{err}");
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    std::fs::write(out.join("inputs_9.npy"), "stale").unwrap();
    ok(&xtask(&[
        "critic-data",
        s(run),
        "--batches",
        "1",
        "--out",
        s(&out),
    ]));
    assert!(out.join("labels.npy").is_file() && !out.join("inputs_9.npy").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cd"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // D4: a checkpoint folder is not critic-data's to replace.
    let err = fails(&xtask(&[
        "critic-data",
        s(run),
        "--batches",
        "1",
        "--out",
        s(&run.join("last")),
    ]));
    assert!(err.contains("is not one of critic-data's"), "{err}");
    assert!(run.join("last/model.json").is_file());
}

/// O1: `extract --out feats.npy` replaces `feats.names.txt` only when it is the names file of
/// the features there.
#[test]
fn extract_keeps_a_names_file_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = trained(dir.path());
    let last = dir.path().join("runs/scal/last");
    let images = Path::new(&data).join("query");
    let out_dir = dir.path().join("nm");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("feats.names.txt"), "my precious notes\n").unwrap();
    let out = out_dir.join("feats.npy");
    let err = fails(&xtask(&[
        "extract",
        "--checkpoint",
        s(&last),
        "--images",
        s(&images),
        "--out",
        s(&out),
    ]));
    assert!(err.contains("feats.names.txt"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("feats.names.txt")).unwrap(),
        "my precious notes\n"
    );
    assert!(!out.exists());
    std::fs::remove_file(out_dir.join("feats.names.txt")).unwrap();
    ok(&xtask(&[
        "extract",
        "--checkpoint",
        s(&last),
        "--images",
        s(&images),
        "--out",
        s(&out),
    ]));
    // Its own pair is replaced by the next extraction.
    ok(&xtask(&[
        "extract",
        "--checkpoint",
        s(&last),
        "--images",
        s(&images),
        "--out",
        s(&out),
        "--flip",
    ]));
}

/// M1: a decompression bomb in a gallery (a 16 × 16 JPEG whose header claims 60000 × 60000)
/// is refused naming it on the EXIF-upright path `query` takes by default, as on the others,
/// instead of a 10.8 GB allocation.
#[test]
fn query_refuses_a_declared_huge_image_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = trained(dir.path());
    let gallery = dir.path().join("g");
    std::fs::create_dir_all(&gallery).unwrap();
    let img = image::RgbImage::from_pixel(16, 16, image::Rgb([120, 60, 30]));
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    std::fs::write(gallery.join("bomb.jpg"), &bytes).unwrap();
    let query = std::fs::read_dir(Path::new(&data).join("query"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&query, gallery.join("a.jpg")).unwrap();
    let last = dir.path().join("runs/scal/last");
    for extra in [&[][..], &["--ignore-exif"]] {
        let mut args = vec![
            "query",
            "--checkpoint",
            s(&last),
            "--gallery",
            s(&gallery),
            "--image",
            s(&query),
        ];
        args.extend_from_slice(extra);
        let err = fails(&xtask(&args));
        assert!(err.contains("bomb.jpg"), "{extra:?}: {err}");
    }
}
