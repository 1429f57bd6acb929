//! Several machines from the command line: `cargo xtask serve` in two processes (two
//! "machines" on localhost, one requiring a token), then `devices` and `train --backend remote
//! --hosts … --devices 0,1` driving both.
use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const TOKEN: &str = "test-token-7f3a";

/// A `serve` process on a free port; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cargo xtask serve --port 0 --bind 127.0.0.1` (with `SCAL_REMOTE_TOKEN` if given)
/// and reads the address it prints.
fn serve(token: Option<&str>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["serve", "--port", "0", "--bind", "127.0.0.1"])
        .env_remove("SCAL_REMOTE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(t) = token {
        cmd.env("SCAL_REMOTE_TOKEN", t);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("serve exited before listening: {printed:?}"))
            .unwrap();
        if let Some(rest) = line.strip_prefix("serving ") {
            assert!(rest.starts_with("1 flex device(s)"), "{line}");
            if token.is_some() {
                assert!(
                    line.contains("clients must set SCAL_REMOTE_TOKEN"),
                    "{line}"
                );
            }
            let url = rest.split_whitespace().find(|w| w.starts_with("ws://"));
            break url.expect("the address is printed").to_string();
        }
        printed.push(line);
    };
    assert!(
        printed.iter().any(|l| l.starts_with("device 0: cpu")),
        "{printed:?}"
    );
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

fn xtask(args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).env_remove("SCAL_REMOTE_TOKEN");
    if let Some(t) = token {
        cmd.env("SCAL_REMOTE_TOKEN", t);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The tests' synthetic dataset and a configuration training on it for `epochs`, saving the
/// last checkpoint every `checkpoint_every` iterations (0: at epoch ends).
fn tiny(dir: &std::path::Path, epochs: usize, checkpoint_every: usize) -> String {
    common::tiny_setup(
        dir,
        serde_json::json!({
            "optim": {"epochs": epochs, "milestones": []},
            "eval": {"every_epochs": 0, "rerank": false, "amelioration_samples": 0},
            "checkpoint_every": checkpoint_every
        }),
    )
    .1
}

#[test]
fn two_servers_train_one_model_and_a_missing_token_is_named() {
    let open = serve(None);
    let guarded = serve(Some(TOKEN));
    let hosts = format!("{},{}", open.url, guarded.url.trim_start_matches("ws://"));

    // Without the token the guarded server refuses, and the error says what to set.
    let o = xtask(&["devices", "--backend", "remote", "--hosts", &hosts], None);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&guarded.url) && err.contains("SCAL_REMOTE_TOKEN"),
        "{err}"
    );

    // With it, both servers' devices are listed in --hosts order.
    let o = xtask(
        &["devices", "--backend", "remote", "--hosts", &hosts],
        Some(TOKEN),
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let indices: Vec<&str> = out.lines().filter_map(|l| l.split(':').next()).collect();
    assert_eq!(indices, ["0", "1"], "{out}");

    // One model trained on the two servers' devices.
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(dir.path(), 1, 0);
    let runs = dir.path().join("runs");
    let o = xtask(
        &[
            "train",
            "--config",
            &config,
            "--runs",
            runs.to_str().unwrap(),
            "--name",
            "two-machines",
            "--no-progress",
            "--backend",
            "remote",
            "--hosts",
            &hosts,
            "--devices",
            "0,1",
        ],
        Some(TOKEN),
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("finished 1 epochs") && out.contains("mAP"),
        "{out}"
    );
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("two-machines/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["backend"], "remote");
    assert_eq!(saved["devices"], serde_json::json!([0, 1]));
    assert_eq!(saved["hosts"].as_array().map(Vec::len), Some(2));
    assert!(
        !std::fs::read_to_string(runs.join("two-machines/config.json"))
            .unwrap()
            .contains(TOKEN),
        "the token is never written to the run folder"
    );
}

/// Without `--bind`, `serve` listens on this machine only.
#[test]
fn serve_listens_on_loopback_by_default() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["serve", "--port", "0"])
        .env_remove("SCAL_REMOTE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .map(Result::unwrap)
        .find(|l| l.starts_with("serving "));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("serve exited before listening");
    assert!(line.contains(" on ws://127.0.0.1:"), "{line}");
}

#[test]
fn remote_without_hosts_and_serving_remote_are_refused() {
    let o = xtask(&["devices", "--backend", "remote"], None);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("--hosts"), "{err}");
    let o = xtask(&["serve", "--backend", "remote", "--port", "0"], None);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("flex, wgpu or cuda"),
        "{err}"
    );
    let o = xtask(
        &["train", "--backend", "flex", "--hosts", "ws://a:3000"],
        None,
    );
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("hosts"), "{err}");
}

/// The server is killed in the middle of a run: the run stops with an error that says how to
/// go on, its last checkpoint survives, and `--resume` with a new server (another address)
/// finishes the run from that checkpoint.
#[test]
#[allow(clippy::too_many_lines)] // one story: train, kill the server, resume elsewhere
fn a_run_whose_server_dies_resumes_on_a_new_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(dir.path(), 20, 1);
    let runs = dir.path().join("runs");
    let run = runs.join("killed");
    let server = serve(None);
    let mut training = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "train",
            "--config",
            &config,
            "--runs",
            runs.to_str().unwrap(),
            "--name",
            "killed",
            "--no-progress",
            "--backend",
            "remote",
            "--hosts",
            &server.url,
        ])
        .env_remove("SCAL_REMOTE_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = || {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while lines() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not start"
        );
        assert!(
            training.try_wait().unwrap().is_none(),
            "the run ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(server);
    let out = training.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run went on without its server");
    assert!(
        err.contains("the last checkpoint is kept") || err.contains("checkpoint"),
        "{err}"
    );
    assert!(
        err.contains("--resume") && err.contains("cargo xtask serve"),
        "{err}"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("last/state.json")).unwrap())
            .unwrap();
    let saved_at = state["iteration"].as_u64().unwrap();
    assert!(saved_at >= 4, "checkpoint at {saved_at}");

    let new_server = serve(None);
    let o = xtask(
        &[
            "train",
            "--resume",
            run.to_str().unwrap(),
            "--no-progress",
            "--hosts",
            &new_server.url,
        ],
        None,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    let total: u64 = out
        .split_once("finished 20 epochs (")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        total > saved_at,
        "{total} iterations, checkpoint at {saved_at}"
    );
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let iterations: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(
        iterations,
        (1..=total).collect::<Vec<_>>(),
        "one line per iteration"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        saved["hosts"],
        serde_json::json!([new_server.url]),
        "config.json names the servers the run continued on"
    );
}
