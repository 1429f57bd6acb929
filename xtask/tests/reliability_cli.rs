//! What a careless user and a hostile file meet on the command line (docs/reliability.md):
//! run names that leave --runs, Ctrl-C, two processes on one run, a lost or damaged
//! checkpoint, a damaged log, a report without best/, configuration files that are not
//! objects. Each answer is a clear error with a non-zero exit, and nothing is lost.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A run of `epochs` epochs on the tiny dataset, its configuration file and its folder.
struct Tiny {
    config: String,
    runs: PathBuf,
}

impl Tiny {
    fn new(dir: &Path, epochs: u32) -> Tiny {
        let (_, config) = common::tiny_setup(
            dir,
            serde_json::json!({
                "optim": {"epochs": epochs, "milestones": []},
                "eval": {"every_epochs": 1, "rerank": false}
            }),
        );
        Tiny {
            config,
            runs: dir.join("runs"),
        }
    }

    fn train(&self, name: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(["train", "--no-progress", "--config", &self.config, "--runs"])
            .arg(&self.runs)
            .args(["--name", name])
            .args(extra);
        cmd
    }

    fn resume(&self, name: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["train", "--no-progress", "--resume"])
            .arg(self.runs.join(name))
            .args(extra)
            .output()
            .unwrap()
    }
}

fn train_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"kind\":\"train\""))
                .count()
        })
        .unwrap_or(0)
}

/// Waits until the child's run has logged `lines` iterations.
fn wait_for_lines(child: &mut Child, run: &Path, lines: usize) {
    let start = Instant::now();
    while train_lines(run) < lines {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_run_name_is_one_folder_under_runs() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::new(dir.path(), 1);
    for name in ["../../escaped", "/tmp/scal-absolute-run", "a/b", ".."] {
        let o = tiny.train(name, &[]).output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("one folder name"), "{err}");
    }
    assert!(!dir.path().parent().unwrap().join("escaped").exists());
    assert!(!Path::new("/tmp/scal-absolute-run").exists());
}

/// Exit codes (issue 29, W14): 2 for a command line that does not parse (clap's own errors:
/// an unknown flag, a value out of range or of the wrong type), 1 for an error found while
/// running, each with a message on stderr and nothing on stdout.
#[test]
fn argument_errors_exit_with_2_and_run_errors_with_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    for (args, code) in [
        (&["train", "--no-such-flag"][..], 2),
        (&["train", "--devices=-1"], 2),
        (&["train", "--epochs", "many"], 2),
        (&["query", "--top", "0"], 2),
        (
            &[
                "evaluate",
                "--checkpoint",
                missing,
                "--dataset",
                "market1501",
            ],
            1,
        ),
        (&["train", "--resume", missing, "--no-progress"], 1),
    ] {
        let o = xtask(args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            !err.trim().is_empty() && out.is_empty(),
            "{args:?}: {out} / {err}"
        );
    }
}

/// Ctrl-C saves the last checkpoint and exits with 130 (not 0), saying how to resume; a
/// second process resuming the run while the first trains is refused, naming its PID.
#[cfg(unix)]
#[test]
fn ctrl_c_exits_130_and_a_run_takes_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::new(dir.path(), 50);
    let run = tiny.runs.join("long");
    let mut child = tiny
        .train("long", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lines(&mut child, &run, 2);

    let o = tiny.resume("long", &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("being trained by another process")
            && err.contains(&format!("PID {}", child.id())),
        "{err}"
    );

    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("cargo xtask train --resume {}", run.display())),
        "{stdout}"
    );
    assert!(
        run.join("last/state.json").is_file(),
        "the checkpoint is saved"
    );
}

/// SIGTERM (what `timeout`, `docker stop`, systemd and batch schedulers send) stops a run as
/// Ctrl-C does: the iteration finishes, the checkpoint is saved at it, the command says how to
/// resume and exits with 130 (it was killed at once, losing up to an epoch; issue 42, F17).
#[cfg(unix)]
#[test]
fn sigterm_saves_like_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::new(dir.path(), 50);
    let run = tiny.runs.join("term");
    let mut child = tiny
        .train("term", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lines(&mut child, &run, 3);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stdout.contains("--resume"), "{stdout}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("last/state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["iteration"].as_u64().unwrap() as usize,
        train_lines(&run),
        "saved at the last logged iteration"
    );
}

/// A run whose last/ was deleted is refused (it would start over silently), naming
/// --restart, which then starts it again from iteration 0 with its log cut back.
#[test]
fn a_lost_checkpoint_is_refused_unless_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::new(dir.path(), 1);
    let run = tiny.runs.join("lost");
    let o = tiny.train("lost", &[]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let iterations = train_lines(&run);
    std::fs::remove_dir_all(run.join("last")).unwrap();
    let o = tiny.resume("lost", &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("last is missing") && err.contains("--restart"),
        "{err}"
    );
    assert_eq!(
        train_lines(&run),
        iterations,
        "the refused resume changed nothing"
    );
    let o = tiny.resume("lost", &["--restart"]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(
        train_lines(&run),
        iterations,
        "one log line per iteration, from 1"
    );
    assert!(run.join("last/state.json").is_file());
}

/// A damaged middle line of metrics.jsonl stops a resume naming the line; flipped bytes in
/// a checkpoint file stop it naming the file.
#[test]
fn a_damaged_log_or_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::new(dir.path(), 2);
    let run = tiny.runs.join("damaged");
    let mut child = tiny
        .train("damaged", &["--set", "checkpoint_every=1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lines(&mut child, &run, 3);
    child.kill().unwrap();
    child.wait().unwrap();

    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut lines: Vec<&str> = log.lines().collect();
    let kept = lines[1].to_string();
    lines[1] = "{\"kind\":\"train\",\"epoch\":0,\"iterat";
    std::fs::write(run.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
    let (_, err) = text(&tiny.resume("damaged", &[]));
    assert!(err.contains("metrics.jsonl line 2"), "{err}");
    lines[1] = &kept;
    std::fs::write(run.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();

    let optimizer = run.join("last/optimizer.bpk");
    let mut bytes = std::fs::read(&optimizer).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&optimizer, &bytes).unwrap();
    let (_, err) = text(&tiny.resume("damaged", &[]));
    assert!(
        err.contains("last/optimizer.bpk") && err.contains("SHA-256"),
        "{err}"
    );
    bytes[middle] ^= 0xFF;
    std::fs::write(&optimizer, &bytes).unwrap();
    let o = tiny.resume("damaged", &[]);
    assert!(o.status.success(), "{}", text(&o).1);
}

/// `report` of a run without the asked checkpoint warns and draws the model figures from the
/// other one instead of silently dropping them: `--checkpoint best` without best/, and the
/// default (`last`, the final model) without last/.
#[test]
fn a_report_without_its_checkpoint_falls_back_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::new(dir.path(), 1);
    let run = tiny.runs.join("nobest");
    let o = tiny.train("nobest", &[]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    std::fs::remove_dir_all(run.join("best")).unwrap();
    let o = xtask(&["report", run.to_str().unwrap(), "--checkpoint", "best"]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("no best/") && err.contains("last/"), "{err}");
    assert!(run.join("report/attention.png").is_file());

    let run = tiny.runs.join("nolast");
    let o = tiny.train("nolast", &[]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    std::fs::remove_dir_all(run.join("last")).unwrap();
    let o = xtask(&["report", run.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("no last/") && err.contains("best/"), "{err}");
    let page = std::fs::read_to_string(run.join("report/index.html")).unwrap();
    assert!(
        page.contains("selected on the test split"),
        "figures drawn from best/ are labelled"
    );
}

#[test]
fn a_configuration_file_must_be_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    for (content, kind) in [("[1, 2]", "an array"), ("null", "null")] {
        std::fs::write(&file, content).unwrap();
        let o = xtask(&["train", "--config", file.to_str().unwrap()]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            err.contains("c.json") && err.contains(kind) && err.contains("not a JSON object"),
            "{err}"
        );
    }
}

/// `serve` on every interface without a token is refused before it listens, naming the
/// address, the token variable and the flag that accepts the risk (docs/reliability.md).
#[test]
fn serving_every_interface_without_a_token_is_refused() {
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["serve", "--port", "0", "--bind", "0.0.0.0"])
        .env_remove("SCAL_REMOTE_TOKEN")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("--bind 0.0.0.0")
            && err.contains("SCAL_REMOTE_TOKEN")
            && err.contains("--allow-unauthenticated"),
        "{err}"
    );
}

/// A run started with a relative --root resumes from another working folder: config.json
/// names the dataset absolutely (issue 29, W30: the resume looked for the folder below the
/// new working folder, and the hint offered to generate another dataset there).
#[test]
fn a_run_started_with_a_relative_root_resumes_from_another_folder() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::new(dir.path(), 1);
    let o = tiny
        .train("rel", &["--root", "synth"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let run = tiny.runs.join("rel");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let root = saved["data"]["root"].as_str().unwrap().to_string();
    assert_eq!(Path::new(&root), dir.path().join("synth"), "{root}");
    // Resumed from another folder, the run finds its dataset (and says it has finished).
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--no-progress", "--resume"])
        .arg(&run)
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(
        err.contains("already") && !err.contains("does not exist"),
        "{err}"
    );
}
