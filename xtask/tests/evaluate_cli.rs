//! `cargo xtask evaluate` end to end: its JSON against the numpy reference
//! (crates/scal-eval/tests/fixtures), and its errors on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{Array1, Array2};
use ndarray_npy::write_npy;
use serde_json::Value;

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/scal-eval/tests/fixtures")
        .join(name)
}

fn evaluate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("evaluate")
        .args(args)
        .output()
        .unwrap()
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    serde_json::from_str(stdout.trim()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn expected(name: &str, key: &str) -> Value {
    let text = std::fs::read_to_string(case(name).join("expected.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()[key].clone()
}

fn assert_same(got: &Value, want: &Value) {
    for key in ["mAP", "mINP"] {
        let (a, b) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
        assert!((a - b).abs() < 1e-12, "{key}: {a} vs {b}");
    }
    assert_eq!(got["num_valid_queries"], want["num_valid_queries"]);
    let (a, b) = (
        got["cmc"].as_array().unwrap(),
        want["cmc"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-12);
    }
}

#[test]
fn json_matches_the_numpy_reference() {
    for name in ["case_small_f32", "case_f64_int32", "case_tiny_gallery"] {
        let dir = case(name);
        let d = dir.to_str().unwrap();
        let got = json(&evaluate(&["--distmat", d, "--json"]));
        assert_same(&got, &expected(name, "market1501"));
        // The keys in the order the contract shows them.
        let stdout = String::from_utf8(evaluate(&["--distmat", d, "--json"]).stdout).unwrap();
        assert!(stdout.starts_with("{\"mAP\":"), "{stdout}");
        let got = json(&evaluate(&["--distmat", d, "--rerank", "--json"]));
        assert_same(&got, &expected(name, "rerank_market1501"));
        let got = json(&evaluate(&["--distmat", d, "--metric", "cuhk03", "--json"]));
        assert_same(&got, &expected(name, "cuhk03_seed0"));
    }
    let d = case("case_small_f32");
    let got = json(&evaluate(&[
        "--features",
        d.to_str().unwrap(),
        "--distance",
        "cosine",
        "--json",
    ]));
    assert_same(
        &got,
        &expected("case_small_f32", "features_cosine_market1501"),
    );
    // Re-ranking from the features (no distmat_qq.npy / distmat_gg.npy read): the numpy
    // re-ranking of the Euclidean distance matrices.
    for name in ["case_small_f32", "case_tiny_gallery"] {
        let d = case(name);
        let got = json(&evaluate(&[
            "--features",
            d.to_str().unwrap(),
            "--rerank",
            "--json",
        ]));
        assert_same(&got, &expected(name, "rerank_market1501"));
    }
}

#[test]
fn table_shows_ranks_and_map() {
    let output = evaluate(&["--distmat", case("case_small_f32").to_str().unwrap()]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    for label in [
        "Rank-1",
        "Rank-5",
        "Rank-10",
        "Rank-20",
        "mAP",
        "mINP",
        "22 valid queries",
    ] {
        assert!(stdout.contains(label), "{label} missing from:\n{stdout}");
    }
}

/// A copy of a fixture case in a temporary folder, to break.
fn broken_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(case(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn fails_with(dir: &Path, extra: &[&str], needles: &[&str]) {
    let mut args = vec!["--distmat", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = evaluate(&args);
    assert!(!output.status.success(), "should fail: {needles:?}");
    let err = stderr(&output);
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
}

#[test]
fn missing_files_are_named() {
    let dir = broken_copy("case_small_f32");
    std::fs::remove_file(dir.path().join("distmat_gg.npy")).unwrap();
    fails_with(dir.path(), &["--rerank"], &["distmat_gg.npy", "--rerank"]);
    std::fs::remove_file(dir.path().join("g_camids.npy")).unwrap();
    fails_with(dir.path(), &[], &["g_camids.npy", "does not exist"]);
}

#[test]
fn shapes_that_disagree_are_named() {
    let dir = broken_copy("case_small_f32");
    write_npy(dir.path().join("q_pids.npy"), &Array1::<i64>::zeros(7)).unwrap();
    fails_with(
        dir.path(),
        &[],
        &["q_camids.npy", "q_pids.npy", "expected 7, found 25"],
    );
    let dir = broken_copy("case_small_f32");
    write_npy(
        dir.path().join("distmat.npy"),
        &Array2::<f32>::zeros((25, 119)),
    )
    .unwrap();
    fails_with(
        dir.path(),
        &[],
        &[
            "distmat.npy columns",
            "g_pids.npy",
            "expected 120, found 119",
        ],
    );
    let dir = broken_copy("case_small_f32");
    write_npy(
        dir.path().join("distmat_qq.npy"),
        &Array2::<f32>::zeros((25, 24)),
    )
    .unwrap();
    fails_with(
        dir.path(),
        &["--rerank"],
        &["distmat_qq.npy columns", "expected 25, found 24"],
    );
}

#[test]
fn non_finite_distances_are_located() {
    let dir = broken_copy("case_small_f32");
    let mut d = Array2::<f32>::ones((25, 120));
    d[[3, 17]] = f32::NAN;
    write_npy(dir.path().join("distmat.npy"), &d).unwrap();
    fails_with(dir.path(), &[], &["distmat.npy", "NaN", "row 3, column 17"]);
    d[[3, 17]] = f32::INFINITY;
    write_npy(dir.path().join("distmat.npy"), &d).unwrap();
    fails_with(dir.path(), &["--rerank"], &["inf", "row 3, column 17"]);
}

#[test]
fn unsupported_dtypes_and_empty_arrays_are_errors() {
    let dir = broken_copy("case_small_f32");
    write_npy(
        dir.path().join("distmat.npy"),
        &Array2::<i32>::zeros((25, 120)),
    )
    .unwrap();
    fails_with(dir.path(), &[], &["distmat.npy", "float32 or float64"]);
    let dir = broken_copy("case_small_f32");
    write_npy(dir.path().join("g_pids.npy"), &Array1::<f32>::zeros(120)).unwrap();
    fails_with(dir.path(), &[], &["g_pids.npy", "int32 or int64"]);
    let dir = broken_copy("case_small_f32");
    write_npy(dir.path().join("q_pids.npy"), &Array1::<i64>::zeros(0)).unwrap();
    write_npy(dir.path().join("q_camids.npy"), &Array1::<i64>::zeros(0)).unwrap();
    fails_with(dir.path(), &[], &["q_pids.npy", "empty"]);
    let dir = broken_copy("case_small_f32");
    std::fs::write(dir.path().join("distmat.npy"), b"\x93NUMPY garbage").unwrap();
    fails_with(dir.path(), &[], &["cannot read", "distmat.npy"]);
}

#[test]
fn no_valid_query_is_an_error() {
    let dir = broken_copy("case_small_f32");
    // Every gallery image in the query's camera: nothing left to match.
    write_npy(dir.path().join("q_camids.npy"), &Array1::<i64>::zeros(25)).unwrap();
    write_npy(dir.path().join("g_camids.npy"), &Array1::<i64>::zeros(120)).unwrap();
    fails_with(dir.path(), &[], &["no query has a valid match"]);
}

#[test]
fn feature_files_that_disagree_are_named() {
    let dir = broken_copy("case_small_f32");
    write_npy(
        dir.path().join("gallery.npy"),
        &Array2::<f32>::zeros((120, 5)),
    )
    .unwrap();
    for rerank in [&[][..], &["--rerank"][..]] {
        let mut args = vec!["--features", dir.path().to_str().unwrap()];
        args.extend(rerank);
        let output = evaluate(&args);
        assert!(!output.status.success(), "{args:?}");
        let err = stderr(&output);
        assert!(
            err.contains("query.npy has 16-d features") && err.contains("gallery.npy has 5-d"),
            "{args:?}: {err}"
        );
    }
}

/// The tiny torchreid fixture's flags, at 64 × 32.
const TORCHREID_MODEL: [&str; 10] = [
    "--format",
    "torchreid",
    "--arch",
    "resnet50",
    "--base-width",
    "2",
    "--height",
    "64",
    "--width",
    "32",
];

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap()
}

/// What `evaluate --weights` does, by hand: the Market reader's images of `data` (junk `-1`
/// left out) copied to folders, their ids from the names, `extract` of each into `features`.
fn features_by_hand(data: &Path, work: &Path, features: &Path, weights: &str) {
    std::fs::create_dir(features).unwrap();
    for (folder, side, out) in [
        ("query", "q", "query.npy"),
        ("bounding_box_test", "g", "gallery.npy"),
    ] {
        let kept = work.join(side);
        std::fs::create_dir(&kept).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(data.join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("-1"))
            .collect();
        names.sort();
        for name in &names {
            std::fs::copy(data.join(folder).join(name), kept.join(name)).unwrap();
        }
        let pids: Array1<i64> = names.iter().map(|n| n[..4].parse().unwrap()).collect();
        let cams: Array1<i64> = names.iter().map(|n| n[6..7].parse().unwrap()).collect();
        write_npy(features.join(format!("{side}_pids.npy")), &pids).unwrap();
        write_npy(features.join(format!("{side}_camids.npy")), &cams).unwrap();
        let out = features.join(out);
        let mut args = vec![
            "extract",
            "--weights",
            weights,
            "--images",
            kept.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(TORCHREID_MODEL);
        let o = xtask(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

/// `evaluate --weights FILE --format torchreid --dataset …` gives what `extract --format
/// torchreid` of the query and gallery folders followed by `evaluate --features` gives.
#[test]
fn a_torchreid_checkpoint_evaluates_as_its_extracted_features_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    let o = xtask(&[
        "synth",
        "--train-ids",
        "8",
        "--test-ids",
        "6",
        "--cameras",
        "3",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let weights = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/scal-backbone/tests/fixtures/torchreid_resnet50_w2.pth.tar");
    let weights = weights.to_str().unwrap();
    let mut args = vec![
        "--weights",
        weights,
        "--dataset",
        "synth",
        "--root",
        data.to_str().unwrap(),
        "--no-flip",
        "--json",
    ];
    args.extend(TORCHREID_MODEL);
    let direct = json(&evaluate(&args));

    let features = dir.path().join("features");
    features_by_hand(&data, dir.path(), &features, weights);
    let by_hand = json(&evaluate(&[
        "--features",
        features.to_str().unwrap(),
        "--json",
    ]));
    for key in ["mAP", "mINP", "num_valid_queries"] {
        let (a, b) = (
            direct[key].as_f64().unwrap(),
            by_hand[key].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-6, "{key}: {a} against {b}");
    }
    assert!(direct["num_valid_queries"].as_f64().unwrap() > 0.0);
    // --format without --weights is a usage error.
    let o = evaluate(&[
        "--features",
        features.to_str().unwrap(),
        "--format",
        "torchreid",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--weights"),
        "{}",
        stderr(&o)
    );
}
