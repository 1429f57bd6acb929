//! The training loop end to end on a tiny configuration: exact resume after SIGKILL,
//! NaN handling, configuration mismatch on resume, missing dataset.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use scal_backbone::ResNetArch;
use scal_trainer::config::Profile;
use scal_trainer::{RunOutcome, TrainError, TrainingConfig, train};
use serde_json::Value;

mod common;

/// A configuration small enough to train in a second or two.
fn tiny_config(root: &Path) -> TrainingConfig {
    TrainingConfig::resolve(
        Profile::Quick,
        None,
        &common::tiny_overrides(
            root,
            &[
                ("data.padding", "3"),
                ("optim.epochs", "3"),
                ("optim.milestones", "[2]"),
                ("eval.every_epochs", "2"),
                ("checkpoint_every", "4"),
            ],
        ),
    )
    .unwrap()
}

/// `metrics.jsonl` without the fields that measure time.
fn log_without_timings(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("images_per_s");
            o.remove("seconds");
            v
        })
        .collect()
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

fn saved_iteration(run: &Path) -> u64 {
    scal_trainer::checkpoint::state(&run.join("last")).map_or(0, |s| s.iteration)
}

/// Not a test of its own: the process the kill-and-resume test starts and kills.
#[test]
#[ignore = "started by killed_and_resumed_run_matches_an_uninterrupted_one"]
fn child_training_process() {
    let Ok(run) = std::env::var("SCAL_TEST_CHILD_RUN") else {
        return;
    };
    let root = std::env::var("SCAL_TEST_CHILD_DATA").unwrap();
    let config = tiny_config(Path::new(&root));
    train(
        &config,
        Path::new(&run),
        false,
        &AtomicBool::new(false),
        false,
    )
    .unwrap();
}

#[test]
fn killed_and_resumed_run_matches_an_uninterrupted_one() {
    let root = common::tiny_dataset();
    let config = tiny_config(&root);
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let outcome = train(&config, &straight, false, &AtomicBool::new(false), false).unwrap();
    let RunOutcome::Finished { iterations, .. } = outcome else {
        panic!("not finished: {outcome:?}")
    };
    assert!(
        iterations > 12,
        "the test needs a run of several checkpoints, got {iterations} iterations"
    );

    // Same run in a child process, killed with SIGKILL between two checkpoints.
    let killed = dir.path().join("killed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_training_process",
            "--ignored",
            "--nocapture",
        ])
        .env("SCAL_TEST_CHILD_RUN", &killed)
        .env("SCAL_TEST_CHILD_DATA", &root)
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if saved_iteration(&killed) >= 4 && train_lines(&killed) >= 6 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child finished before it could be killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the child made no progress"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let at_kill = train_lines(&killed);
    assert!(
        (at_kill as u64) < iterations,
        "killed after the end ({at_kill} lines)"
    );

    let outcome = train(&config, &killed, true, &AtomicBool::new(false), false).unwrap();
    assert!(matches!(outcome, RunOutcome::Finished { iterations: i, .. } if i == iterations));

    // Every logged loss, rate and evaluation is the same, bit for bit, and so are the weights
    // (compared tensor by tensor: the files also hold random parameter ids).
    assert_eq!(log_without_timings(&killed), log_without_timings(&straight));
    for checkpoint in ["last", "best"] {
        let a = weights(&straight.join(checkpoint));
        let b = weights(&killed.join(checkpoint));
        assert_eq!(a.len(), b.len());
        for ((name_a, bytes_a), (name_b, bytes_b)) in a.iter().zip(&b) {
            assert_eq!(name_a, name_b);
            assert!(
                bytes_a == bytes_b,
                "{checkpoint}: {name_a} differs after resume"
            );
        }
    }
}

/// Every tensor of a checkpoint's model: name and raw bytes.
fn weights(checkpoint: &Path) -> Vec<(String, Vec<u8>)> {
    use burn::store::ModuleSnapshot;
    let device = burn::tensor::Device::flex();
    let (model, _) = scal_model::ScalModel::load_dir(checkpoint, &device).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = model
        .collect(None, None, false)
        .into_iter()
        .map(|t| (t.name.clone(), t.to_bytes().unwrap().to_vec()))
        .collect();
    out.sort();
    assert!(out.len() > 50, "{} tensors", out.len());
    out
}

#[test]
fn nan_loss_stops_naming_the_iteration_and_keeps_the_last_good_checkpoint() {
    let root = common::tiny_dataset();
    let config = tiny_config(&root)
        .overlaid(
            None,
            &[
                ("optim.lr".into(), "1e30".into()),
                ("checkpoint_every".into(), "1".into()),
            ],
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("nan");
    let err = train(&config, &run, false, &AtomicBool::new(false), false).unwrap_err();
    let TrainError::NonFiniteLoss { iteration, .. } = err else {
        panic!("expected a non-finite loss, got {err}")
    };
    assert!(
        err.to_string().contains(&format!("iteration {iteration}")),
        "{err}"
    );
    assert_eq!(
        saved_iteration(&run),
        iteration - 1,
        "the checkpoint before the failing step is kept"
    );
    assert_eq!(
        train_lines(&run) as u64,
        iteration - 1,
        "the failing step is not logged"
    );
}

#[test]
fn resume_refuses_another_configuration_and_a_run_folder_is_not_overwritten() {
    let root = common::tiny_dataset();
    let config = tiny_config(&root)
        .overlaid(None, &[("optim.epochs".into(), "1".into())])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let stop = AtomicBool::new(true); // stops after the first iteration
    let outcome = train(&config, &run, false, &stop, false).unwrap();
    assert_eq!(outcome, RunOutcome::Interrupted { iterations: 1 });
    assert_eq!(saved_iteration(&run), 1, "Ctrl-C saves the last checkpoint");

    let other = config
        .overlaid(None, &[("optim.lr".into(), "0.5".into())])
        .unwrap();
    let err = train(&other, &run, true, &AtomicBool::new(false), false).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, TrainError::ResumeMismatch { .. }),
        "{message}"
    );
    assert!(message.contains("optim.lr: 0.001 -> 0.5"), "{message}");

    let err = train(&config, &run, false, &AtomicBool::new(false), false).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");

    let outcome = train(&config, &run, true, &AtomicBool::new(false), false).unwrap();
    assert!(
        matches!(outcome, RunOutcome::Finished { .. }),
        "{outcome:?}"
    );
    let err = train(&config, &run, true, &AtomicBool::new(false), false).unwrap_err();
    assert!(err.to_string().contains("finished all 1 epochs"), "{err}");
}

#[test]
fn a_missing_dataset_suggests_download_or_synth() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(&dir.path().join("nowhere"));
    let err = train(
        &config,
        &dir.path().join("run"),
        false,
        &AtomicBool::new(false),
        false,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("nowhere"), "{message}");
    assert!(
        message.contains("cargo xtask download") && message.contains("cargo xtask synth"),
        "{message}"
    );
    assert_eq!(config.model.arch, ResNetArch::ResNet18);
}

#[test]
fn missing_pretrained_weights_say_where_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(&common::tiny_dataset())
        .overlaid(
            None,
            &[(
                "model.pretrained".into(),
                "weights/absent-resnet18.pth".into(),
            )],
        )
        .unwrap();
    let err = train(
        &config,
        &dir.path().join("run"),
        false,
        &AtomicBool::new(false),
        false,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("model.pretrained") && message.contains("weights/absent-resnet18.pth"),
        "{message}"
    );
    assert!(
        message.contains("https://download.pytorch.org/models/resnet18-f37072fd.pth"),
        "{message}"
    );
    assert!(
        !dir.path().join("run").exists(),
        "nothing is created before the inputs are checked"
    );
    let paper = TrainingConfig::profile(Profile::Paper);
    assert_eq!(
        paper.model.pretrained.as_deref(),
        Some(scal_trainer::config::PAPER_WEIGHTS)
    );
}

/// The `src` of every `<img>` of a page.
fn image_sources(html: &str) -> Vec<String> {
    html.split("<img src=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// `data-figures-loaded` as headless Chromium sees the page, or None without Chromium.
/// With `SCAL_REQUIRE_CHROMIUM=1` (CI) a missing Chromium fails the test.
fn figures_loaded_in_chromium(index: &Path) -> Option<String> {
    let run = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--dump-dom",
        ])
        .arg(format!(
            "file://{}",
            index.canonicalize().unwrap().display()
        ))
        .output();
    let output = match run {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var("SCAL_REQUIRE_CHROMIUM").is_err(),
                "SCAL_REQUIRE_CHROMIUM is set but chromium cannot run: {e}"
            );
            eprintln!(
                "chromium not found: the headless page check is skipped (Debian: apt-get install chromium)"
            );
            return None;
        }
    };
    let dom = String::from_utf8_lossy(&output.stdout);
    let value = dom
        .split("data-figures-loaded=\"")
        .nth(1)
        .map(|r| r.split('"').next().unwrap().to_string());
    Some(value.unwrap_or_else(|| panic!("the page's load script did not run; DOM:\n{dom}")))
}

#[test]
fn report_of_a_tiny_run_has_every_figure() {
    let root = common::tiny_dataset();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = tiny_config(&root);
    train(&config, &run, false, &AtomicBool::new(false), false).unwrap();
    let index = scal_trainer::report::build_report(&run, &Default::default()).unwrap();
    assert_eq!(index, run.join("report/index.html"));
    let html = std::fs::read_to_string(&index).unwrap();
    let sources = image_sources(&html);
    for figure in [
        "losses.svg",
        "lr.svg",
        "rewards.svg",
        "accuracy.svg",
        "attention.png",
        "ranked_best.png",
        "ranked_worst.png",
    ] {
        assert!(
            sources.iter().any(|s| s == figure),
            "{figure} not on the page: {sources:?}"
        );
    }
    for source in &sources {
        let path = run.join("report").join(source);
        if source.ends_with(".svg") {
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("<polyline"),
                "{source} has no curve"
            );
        } else {
            let img = image::open(&path).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert!(
                img.width() > 100 && img.height() > 100,
                "{source}: {}x{}",
                img.width(),
                img.height()
            );
        }
    }
    // Attention figure: one row per sample image, the image and five modules per row
    // (64 x 32 inputs drawn at twice their size, 4-pixel gaps).
    let attention = image::open(run.join("report/attention.png")).unwrap();
    assert_eq!(attention.width(), 6 * (64 + 4) + 4);
    assert_eq!(attention.height(), 6 * (128 + 4) + 4);
    // The attention-quality table: a row per epoch, a column per module.
    let table = html
        .split("<table id=\"attention-quality\">")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(table.matches("<tr><td>").count(), 3, "{table}");
    assert_eq!(table.matches("module ").count(), 10, "{table}");
    // Evaluated epochs (2 and 3) carry each module's amelioration rate, the others do not.
    let rows: Vec<&str> = table.split("<tr><td>").skip(1).collect();
    assert!(
        rows[0].starts_with("1</td>") && rows[0].matches("<td>–</td>").count() == 6,
        "{}",
        rows[0]
    );
    assert!(
        rows[1].starts_with("2</td>") && !rows[1].contains("<td>–</td>"),
        "{}",
        rows[1]
    );
    // The final metrics are those of the log.
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: Value =
        serde_json::from_str(log.lines().rev().find(|l| l.contains("\"eval\"")).unwrap()).unwrap();
    let map = format!(
        "<td>{:.1}</td>",
        100.0 * last["plain"]["mAP"].as_f64().unwrap()
    );
    let final_table = html
        .split("<table id=\"final-metrics\">")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert!(final_table.contains(&map), "{map} not in {final_table}");
    assert!(html.contains("<pre id=\"config\">"));

    // In a browser, every figure loads; with one missing, the check sees it.
    if let Some(loaded) = figures_loaded_in_chromium(&index) {
        assert_eq!(loaded, format!("{0}/{0}", sources.len()));
        std::fs::remove_file(run.join("report/lr.svg")).unwrap();
        let loaded = figures_loaded_in_chromium(&index).unwrap();
        assert_eq!(loaded, format!("{}/{}", sources.len() - 1, sources.len()));
    }

    // A run without attention: no attention figure, and the page says why.
    let plain = dir.path().join("plain");
    let config = config
        .overlaid(None, &[("model.attention".into(), "none".into())])
        .unwrap();
    train(&config, &plain, false, &AtomicBool::new(false), false).unwrap();
    let html = std::fs::read_to_string(
        scal_trainer::report::build_report(&plain, &Default::default()).unwrap(),
    )
    .unwrap();
    assert!(
        !html.contains("attention.png") && html.contains("no attention modules"),
        "{html}"
    );
    assert!(html.contains("no attention-quality measure"));
}
