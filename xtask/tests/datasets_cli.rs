//! `cargo xtask synth`, `datasets` and `download --archive` end to end.

use std::io::Write;
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn synth_then_datasets_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    let out_s = out.to_str().unwrap();
    let o = xtask(&[
        "synth",
        "--train-ids",
        "6",
        "--test-ids",
        "5",
        "--cameras",
        "3",
        "--seed",
        "2",
        "--out",
        out_s,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = xtask(&[
        "datasets",
        "--name",
        "market1501",
        "--root",
        out_s,
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(
        stdout.contains("=> Loaded market1501") && stdout.contains("# cameras"),
        "{stdout}"
    );
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["train"]["ids"], 6);
    assert!(last["query"]["cameras"].as_u64().unwrap() <= 3);
    assert_eq!(
        last["gallery"]["ids"], 6,
        "5 identities + the distractor id"
    );
    // Again into the same folder: refused.
    let o = xtask(&["synth", "--out", out_s]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    // Unknown dataset names and missing folders.
    let o = xtask(&["datasets", "--name", "imagenet", "--root", out_s]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown dataset"));
    let o = xtask(&[
        "datasets",
        "--name",
        "dukemtmc",
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("bounding_box_train")
            && err.contains("cargo xtask download"),
        "{err}"
    );
}

fn zip_of(path: &std::path::Path, entries: &[&str]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for name in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"jpeg bytes").unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn download_with_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("datasets");
    let root_s = root.to_str().unwrap();
    // DukeMTMC-reID has no recorded digest: installed, with its SHA-256 printed.
    let duke = dir.path().join("DukeMTMC-reID.zip");
    zip_of(
        &duke,
        &[
            "DukeMTMC-reID/bounding_box_train/0001_c2_f0046182.jpg",
            "DukeMTMC-reID/query/0005_c2_f0046985.jpg",
            "DukeMTMC-reID/bounding_box_test/0005_c8_f0061234.jpg",
        ],
    );
    let o = xtask(&[
        "download",
        "dukemtmc",
        "--archive",
        duke.to_str().unwrap(),
        "--root",
        root_s,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SHA-256 is"));
    let o = xtask(&[
        "datasets",
        "--name",
        "dukemtmc",
        "--root",
        root.join("dukemtmc").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A Market-1501 archive that is not the real one fails the recorded MD5.
    let fake = dir.path().join("Market-1501-v15.09.15.zip");
    zip_of(
        &fake,
        &["Market-1501-v15.09.15/query/0001_c1s1_000001_00.jpg"],
    );
    let o = xtask(&[
        "download",
        "market1501",
        "--archive",
        fake.to_str().unwrap(),
        "--root",
        root_s,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("MD5")
            && err.contains("65005ab7d12ec1c44de4eeafe813e68a"),
        "{err}"
    );
    assert!(!root.join("market1501").exists());
    // Datasets behind a request form explain how to get them.
    let o = xtask(&["download", "msmt17", "--root", root_s]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("pkuvmc") && err.contains("--archive"),
        "{err}"
    );
}
