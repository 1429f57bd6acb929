//! `cargo xtask bench`, `parity`, `devices` and (without its feature) `serve` through the
//! command line.

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `--json` prints one object per measure with the fields users' scripts read, and
/// `--out` appends the same rows to a file.
#[test]
fn bench_json_rows_have_backend_batch_throughput_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows.jsonl");
    let o = xtask(&[
        "bench",
        "--json",
        "--measures",
        "backbone_inference,data_pipeline",
        "--inference-batch",
        "2",
        "--height",
        "64",
        "--width",
        "32",
        "--iterations",
        "1",
        "--warmup",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert_eq!(rows[0]["measure"], "backbone_inference");
    assert_eq!(rows[0]["backend"], "flex");
    assert_eq!(rows[0]["batch"], 2);
    assert_eq!(rows[0]["input"], "64x32");
    assert_eq!(rows[1]["measure"], "data_pipeline");
    assert_eq!(rows[1]["batch"], 64);
    for r in &rows {
        let t = r["throughput"].as_f64().unwrap();
        let s = r["seconds_per_iteration"].as_f64().unwrap();
        assert!(
            t > 0.0 && (t * s - r["batch"].as_f64().unwrap()).abs() < 1e-6,
            "{r}"
        );
        assert_eq!(r["unit"], "img/s");
        if cfg!(target_os = "linux") {
            assert!(r["peak_rss_mib"].as_f64().unwrap() > 1.0, "{r}");
        }
        assert!(r["date"].as_str().unwrap().ends_with('Z'));
        assert!(r.get("params").is_none(), "{r}");
    }
    let saved = std::fs::read_to_string(&out).unwrap();
    assert_eq!(saved.lines().count(), 2);
}

/// `--profile quick` measures the quick profile's backbone at its input size, and its rows
/// carry the parameter count; --height and --width cannot be set beside it.
#[test]
fn bench_profile_quick_measures_the_quick_model() {
    let o = xtask(&[
        "bench",
        "--json",
        "--profile",
        "quick",
        "--measures",
        "backbone_inference",
        "--inference-batch",
        "2",
        "--iterations",
        "1",
        "--warmup",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8(o.stdout).unwrap().trim()).unwrap();
    assert_eq!(row["input"], "128x64", "{row}");
    assert_eq!(row["batch"], 2);
    assert_eq!(row["params"], 2_798_880, "ResNet-18 of base width 32");
    let o = xtask(&["bench", "--profile", "quick", "--height", "64"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--height"), "{}", stderr(&o));
    let o = xtask(&["bench", "--profile", "paper"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("quick"), "{}", stderr(&o));
}

#[test]
fn bench_refuses_unknown_measures_and_bad_batches() {
    let o = xtask(&["bench", "--measures", "backbone_inference,warp_speed"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("warp_speed") && e.contains("scal_train_step"),
        "{e}"
    );
    let o = xtask(&["bench", "--measures", "scal_train_step", "--batch", "6"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--batch 6"), "{}", stderr(&o));
}

/// Without the wgpu feature, parity and devices say which feature to build with.
#[test]
fn parity_and_devices_name_the_missing_feature() {
    if cfg!(feature = "wgpu") {
        return;
    }
    for args in [
        &["parity", "--backend", "wgpu"][..],
        &["devices", "--backend", "wgpu"][..],
    ] {
        let o = xtask(args);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("--features wgpu"), "{}", stderr(&o));
    }
    let o = xtask(&["devices"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("0: cpu"));
}

/// Without the `remote` feature, `serve` and `--backend remote` say how to get it.
#[test]
fn serve_and_remote_name_the_missing_feature() {
    if cfg!(feature = "remote") {
        return;
    }
    for args in [
        &["serve", "--port", "0", "--bind", "127.0.0.1"][..],
        &["devices", "--backend", "remote", "--hosts", "127.0.0.1:1"][..],
        &["parity", "--backend", "remote", "--hosts", "127.0.0.1:1"][..],
    ] {
        let o = xtask(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains("--features remote"), "{}", stderr(&o));
    }
}
