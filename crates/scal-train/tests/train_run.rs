//! The training loop end to end on a tiny configuration: exact resume after SIGKILL,
//! NaN handling, configuration mismatch on resume, missing dataset.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use scal_backbone::ResNetArch;
use scal_train::config::Profile;
use scal_train::{RunOutcome, TrainError, TrainingConfig};

use crate::common::{self, StopAtOnce, train_flex};
use serde_json::Value;

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
    scal_train::checkpoint::state(&run.join("last")).map_or(0, |s| s.iteration)
}

/// A loss that grows past [`scal_run::DIVERGED_LOSS`] while staying finite (1e24 at a
/// learning rate of 1e3) stops the run like a NaN (issue 42, N2: it finished with a `best/`
/// from the diverged weights), saying that no checkpoint exists when none was written.
#[test]
fn a_loss_that_explodes_stops_the_run_before_any_best() {
    let root = common::tiny_dataset();
    let config = TrainingConfig::resolve(
        Profile::Quick,
        None,
        &common::tiny_overrides(
            &root,
            &[
                ("optim.lr", "1000"),
                ("optim.warmup_epochs", "0"),
                ("optim.epochs", "6"),
                ("eval.every_epochs", "1"),
            ],
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("exploding");
    let err = train_flex(&config, &run, false).unwrap_err();
    let TrainError::NonFiniteLoss {
        loss,
        last_checkpoint,
        ..
    } = err
    else {
        panic!("expected a diverged loss, got {err}")
    };
    assert!(!loss.is_finite() || loss > scal_run::DIVERGED_LOSS, "{err}");
    assert!(!run.join("best").exists(), "no best/ from diverged weights");
    if last_checkpoint.is_none() {
        assert!(
            err.to_string().contains("no checkpoint was written"),
            "{err}"
        );
    }
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
    train_flex(&config, Path::new(&run), false).unwrap();
}

/// A process of this test binary that trains `run` on `root` with [`tiny_config`]
/// ([`child_training_process`]). Runs that must match bit for bit start in processes of
/// their own: their initial weights come from the device's random generator, which is the
/// process's, and the tests running beside in this one draw from it too. A resumed run loads
/// its weights and optimizer state, so it may run here.
fn training_process(run: &Path, root: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "train_run::child_training_process",
            "--ignored",
            "--nocapture",
        ])
        .env("SCAL_TEST_CHILD_RUN", run)
        .env("SCAL_TEST_CHILD_DATA", root)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn killed_and_resumed_run_matches_an_uninterrupted_one() {
    let root = common::tiny_dataset();
    let config = tiny_config(&root);
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let status = training_process(&straight, &root).wait().unwrap();
    assert!(status.success(), "the uninterrupted run failed: {status}");
    let iterations = train_lines(&straight) as u64;
    assert!(
        iterations > 12,
        "the test needs a run of several checkpoints, got {iterations} iterations"
    );

    // The same run in another process, killed with SIGKILL between two checkpoints.
    let killed = dir.path().join("killed");
    let mut child = training_process(&killed, &root);
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

    let outcome = train_flex(&config, &killed, true).unwrap();
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
    let err = train_flex(&config, &run, false).unwrap_err();
    let TrainError::NonFiniteLoss {
        iteration,
        last_checkpoint,
        ..
    } = err
    else {
        panic!("expected a non-finite loss, got {err}")
    };
    assert!(
        err.to_string().contains(&format!("iteration {iteration}")),
        "{err}"
    );
    assert_eq!(last_checkpoint, Some(iteration - 1), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "the last checkpoint (iteration {})",
            iteration - 1
        )),
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
    let outcome = scal_train::train(
        &config,
        &run,
        scal_train::Start::New,
        &[burn::tensor::Device::flex()],
        &mut StopAtOnce,
    )
    .unwrap();
    assert_eq!(outcome, RunOutcome::Interrupted { iterations: 1 });
    assert_eq!(saved_iteration(&run), 1, "Ctrl-C saves the last checkpoint");

    let other = config
        .overlaid(None, &[("optim.lr".into(), "0.5".into())])
        .unwrap();
    let err = train_flex(&other, &run, true).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, TrainError::ResumeMismatch { .. }),
        "{message}"
    );
    assert!(message.contains("optim.lr: 0.001 -> 0.5"), "{message}");

    let err = train_flex(&config, &run, false).unwrap_err();
    assert!(
        matches!(&err, TrainError::RunExists { run: r } if r == &run),
        "{err}"
    );

    // A run folder written before a configuration field existed still resumes: the field
    // takes its default, which is what that version did.
    let path = run.join("config.json");
    let mut saved: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    saved["optim"]
        .as_object_mut()
        .unwrap()
        .remove("critic_lr_factor")
        .unwrap();
    std::fs::write(&path, saved.to_string()).unwrap();

    let outcome = train_flex(&config, &run, true).unwrap();
    assert!(
        matches!(outcome, RunOutcome::Finished { .. }),
        "{outcome:?}"
    );
    let err = train_flex(&config, &run, true).unwrap_err();
    assert!(err.to_string().contains("finished all 1 epochs"), "{err}");
}

#[test]
fn a_missing_dataset_is_named_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(&dir.path().join("nowhere"));
    let err = train_flex(&config, &dir.path().join("run"), false).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            TrainError::Data(scal_data::DataError::DatasetNotFound { .. })
        ),
        "{message}"
    );
    assert!(message.contains("nowhere"), "{message}");
    assert!(!dir.path().join("run").exists(), "no run folder is left");
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
    let err = train_flex(&config, &dir.path().join("run"), false).unwrap_err();
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
        Some(scal_train::config::PAPER_WEIGHTS)
    );
}

#[test]
fn a_missing_hard_dataset_is_generated_with_its_version_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("synth-hard");
    let config = TrainingConfig::resolve(
        Profile::Quick,
        None,
        &[
            ("data.root".into(), root.display().to_string()),
            ("data.synth_preset".into(), "hard".into()),
        ],
    )
    .unwrap();
    assert_eq!(
        config.data.synth_preset,
        scal_data::synth::SynthPreset::HardV1,
        "`hard` resolves to the current version"
    );
    let dataset = scal_train::dataset::load_dataset(&config, &mut ()).unwrap();
    assert_eq!(dataset.summary().train.ids, 100, "the default size");
    let manifest = scal_data::synth::read_manifest(&root).unwrap().unwrap();
    assert_eq!(manifest.preset, scal_data::synth::SynthPreset::HardV1);
    // The same folder read as the easy preset is refused: a run never records the wrong one.
    let easy = TrainingConfig::resolve(
        Profile::Quick,
        None,
        &[("data.root".into(), root.display().to_string())],
    )
    .unwrap();
    let err = scal_train::dataset::load_dataset(&easy, &mut ()).unwrap_err();
    assert!(
        err.to_string().contains("easy") && err.to_string().contains("hard-v1"),
        "{err}"
    );
}
