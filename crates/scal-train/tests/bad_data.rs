//! Bad data and failed starts: a corrupt training image, a batch larger than the dataset,
//! weights of another network. A run never reaches a state that resuming cannot leave, and
//! a start that fails leaves nothing behind.

use std::path::{Path, PathBuf};

use scal_train::config::Profile;
use scal_train::log::{Record, read};
use scal_train::{RunOutcome, TrainError, TrainingConfig};

use crate::common::{self, train_flex};

/// A copy of the tiny dataset in `dir` with one training image cut off in its data.
fn dataset_with_a_truncated_training_image(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("synth");
    copy_dir(&common::tiny_dataset(), &root);
    let train = root.join("bounding_box_train");
    let mut images: Vec<PathBuf> = std::fs::read_dir(&train)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    let victim = images[3].clone();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() * 4 / 5]).unwrap();
    (root, victim)
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

fn config(root: &Path, extra: &[(&str, &str)]) -> Result<TrainingConfig, TrainError> {
    let mut overrides = vec![
        ("optim.epochs", "2"),
        ("optim.milestones", "[]"),
        ("eval.every_epochs", "1"),
        ("eval.rerank", "false"),
    ];
    overrides.extend_from_slice(extra);
    TrainingConfig::resolve(
        Profile::Quick,
        None,
        &common::tiny_overrides(root, &overrides),
    )
}

/// Training skips a truncated image, and so does every evaluation's amelioration pass
/// (which reads fixed training images): the run finishes and says what it left out.
#[test]
fn a_truncated_training_image_is_skipped_by_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (root, victim) = dataset_with_a_truncated_training_image(dir.path());
    let config = config(&root, &[("eval.amelioration_samples", "1000")]).unwrap();
    let run = dir.path().join("run");
    let outcome = train_flex(&config, &run, false).unwrap();
    assert!(
        matches!(outcome, RunOutcome::Finished { .. }),
        "{outcome:?}"
    );
    let records = read(&run.join("metrics.jsonl")).unwrap();
    let replaced = records.iter().any(|r| match r {
        Record::Train(t) => t.replaced_images.contains(&victim),
        Record::Eval(_) => false,
    });
    assert!(replaced, "training names the image it replaced");
    let evals: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Eval(e) => e.module_amelioration.clone(),
            Record::Train(_) => None,
        })
        .collect();
    assert_eq!(evals.len(), 2);
    assert!(evals.iter().all(|a| a.skipped == 1), "{evals:?}");

    // With data.strict the same image stops the run, naming it.
    let strict = config
        .overlaid(None, &[("data.strict".into(), "true".into())])
        .unwrap();
    let err = train_flex(&strict, &dir.path().join("strict"), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(victim.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
}

/// More identities per batch than the dataset has: refused before the run folder exists, so
/// the same name starts cleanly once the value is fixed.
#[test]
fn a_batch_larger_than_the_dataset_is_refused_before_the_run_folder_exists() {
    let dir = tempfile::tempdir().unwrap();
    let root = common::tiny_dataset();
    let run = dir.path().join("run");
    let too_many = config(&root, &[("data.p", "16")]).unwrap();
    let err = train_flex(&too_many, &run, false).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Data(scal_data::DataError::TooFewIdentities { p: 16, .. })
        ),
        "{err}"
    );
    assert!(!run.exists(), "nothing created");
    let fixed = config(&root, &[]).unwrap();
    assert!(matches!(
        train_flex(&fixed, &run, false).unwrap(),
        RunOutcome::Finished { .. }
    ));
}

/// A truncated gallery image, or a file there that is no image, is refused before the first
/// iteration, naming it (trial 4, F27: found at the first evaluation, after the epochs since
/// the last checkpoint had been trained for nothing); nothing is created.
#[test]
fn an_undecodable_gallery_image_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("synth");
    copy_dir(&common::tiny_dataset(), &root);
    let gallery = root.join("bounding_box_test");
    let mut images: Vec<PathBuf> = std::fs::read_dir(&gallery)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    // The last name: an identity's image (distractors and junk sort first).
    let victim = images.last().unwrap().clone();
    let good = std::fs::read(&victim).unwrap();
    let run = dir.path().join("run");
    for damaged in [good[..good.len() * 4 / 5].to_vec(), Vec::new()] {
        std::fs::write(&victim, damaged).unwrap();
        let err = train_flex(&config(&root, &[]).unwrap(), &run, false).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(victim.to_str().unwrap())
                && message.contains("a query or gallery image"),
            "{message}"
        );
        assert!(!run.exists(), "nothing created");
    }
    std::fs::write(&victim, good).unwrap();
    assert!(matches!(
        train_flex(&config(&root, &[]).unwrap(), &run, false).unwrap(),
        RunOutcome::Finished { .. }
    ));
}

/// A dataset whose query and gallery share one camera cannot be evaluated: refused before
/// training, not after the first epoch (issue 29, W28).
#[test]
fn a_dataset_no_evaluation_can_score_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("onecam");
    copy_dir(&common::tiny_dataset(), &root);
    for split in ["query", "bounding_box_test"] {
        for entry in std::fs::read_dir(root.join(split)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // 0001_c2s1_000000_00.jpg → 0001_c1s1_000000_00.jpg: every image on camera 1.
            let at = name.find("_c").expect("a Market-1501 name") + 2;
            let renamed = format!("{}1{}", &name[..at], &name[at + 1..]);
            std::fs::rename(&path, root.join(split).join(renamed)).unwrap();
        }
    }
    let run = dir.path().join("run");
    let err = train_flex(&config(&root, &[]).unwrap(), &run, false).unwrap_err();
    assert!(
        matches!(&err, TrainError::InvalidField { field, .. } if field == "data.root"),
        "{err}"
    );
    assert!(err.to_string().contains("another camera"), "{err}");
    assert!(!run.exists(), "nothing created");
}

/// A finished run on a copy of the tiny dataset: (the copy's training folder, its
/// configuration, the run folder), and the training image names, sorted.
fn finished_run_on_a_copy(dir: &Path) -> (PathBuf, TrainingConfig, PathBuf, Vec<String>) {
    let root = dir.join("changed");
    copy_dir(&common::tiny_dataset(), &root);
    let config = config(&root, &[]).unwrap();
    let run = dir.join("run");
    train_flex(&config, &run, false).unwrap();
    let train = root.join("bounding_box_train");
    let mut names: Vec<String> = std::fs::read_dir(&train)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    (train, config, run, names)
}

/// A run resumed after an identity left the training split is refused naming the dataset
/// and both counts (issue 29, W26: it said the checkpoint did not fit "this model").
#[test]
fn resuming_after_the_dataset_lost_an_identity_names_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let (train, config, run, names) = finished_run_on_a_copy(dir.path());
    let pids: std::collections::BTreeSet<&str> = names.iter().map(|n| &n[..4]).collect();
    let gone = names[0][..4].to_string();
    for name in names.iter().filter(|n| n.starts_with(&gone)) {
        std::fs::remove_file(train.join(name)).unwrap();
    }
    let err = train_flex(&config, &run, true).unwrap_err();
    match &err {
        TrainError::DatasetChanged { trained, now, .. } => {
            assert_eq!((*trained, *now), (pids.len(), pids.len() - 1));
        }
        other => panic!("expected DatasetChanged, got {other}"),
    }
    assert!(err.to_string().contains("changed"), "{err}");
}

/// A run resumed after training images were added (the same identities) is refused: the
/// resume would not be exact (issue 29, W27: it finished silently on the changed split).
#[test]
fn resuming_after_training_images_changed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (train, config, run, names) = finished_run_on_a_copy(dir.path());
    // The same split resumes as before: the finished run says so.
    let err = train_flex(&config, &run, true).unwrap_err();
    assert!(matches!(err, TrainError::RunFinished { .. }), "{err}");
    let extra = format!("{}_c6s6_999999_00.jpg", &names[0][..4]);
    std::fs::copy(train.join(&names[0]), train.join(extra)).unwrap();
    let err = train_flex(&config, &run, true).unwrap_err();
    match &err {
        TrainError::SplitChanged {
            then, now, split, ..
        } => assert_eq!((*now, *split), (*then + 1, "training split")),
        other => panic!("expected SplitChanged, got {other}"),
    }
    assert!(err.to_string().contains("changed"), "{err}");
}

/// A run whose dataset folder moved: resumed as it was, the error names the run, the
/// missing folder and --root; resumed with the new folder (the same images), it goes on and
/// config.json names the new place; a changed gallery is refused (issue 29, W29).
#[test]
fn a_run_resumes_on_its_moved_dataset_when_the_images_are_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    copy_dir(&common::tiny_dataset(), &root);
    let (config, run) = stopped_run_on(dir.path(), &root);
    let moved = dir.path().join("moved");
    std::fs::rename(&root, &moved).unwrap();
    let err = train_flex(&config, &run, true).unwrap_err();
    assert!(
        matches!(&err, TrainError::DatasetMoved { root: r, .. } if *r == root)
            && err.to_string().contains("--root"),
        "{err}"
    );
    // The gallery lost an image: refused, naming what changed.
    let mut elsewhere = config.clone();
    elsewhere.data.root = moved.to_string_lossy().into_owned();
    let gallery = moved.join("bounding_box_test");
    let first = std::fs::read_dir(&gallery)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let kept = dir.path().join("kept.jpg");
    std::fs::rename(first.path(), &kept).unwrap();
    let err = train_flex(&elsewhere, &run, true).unwrap_err();
    assert!(
        matches!(&err, TrainError::SplitChanged { split, .. } if *split == "query and gallery"),
        "{err}"
    );
    std::fs::rename(&kept, first.path()).unwrap();
    let outcome = train_flex(&elsewhere, &run, true).unwrap();
    assert!(
        matches!(outcome, RunOutcome::Finished { .. }),
        "{outcome:?}"
    );
    let saved = TrainingConfig::load_json(&run.join("config.json")).unwrap();
    assert_eq!(saved.data.root, elsewhere.data.root);
}

/// A run that never wrote a checkpoint (its first save failed: here `last/` is removed after
/// the first iteration, before any `best/`) resumes from iteration 0, its log cut back and
/// the observer told (issue 29, W25: it was refused, and a fresh start said to resume).
#[test]
fn a_run_that_never_wrote_a_checkpoint_resumes_from_the_start() {
    #[derive(Default)]
    struct Told(Option<u64>);
    impl scal_train::TrainObserver for Told {
        fn starting_over(&mut self, logged: u64) {
            self.0 = Some(logged);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (config, run) = stopped_run(dir.path());
    std::fs::remove_dir_all(run.join("last")).unwrap();
    assert!(!run.join("best").exists());
    let mut told = Told::default();
    let outcome = scal_train::train(
        &config,
        &run,
        scal_train::Start::Resume,
        &[burn::tensor::Device::flex()],
        &mut told,
    )
    .unwrap();
    assert!(
        matches!(outcome, RunOutcome::Finished { .. }),
        "{outcome:?}"
    );
    assert_eq!(told.0, Some(1));
    let iterations: Vec<u64> = read(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .filter_map(|r| match r {
            Record::Train(t) => Some(t.iteration),
            _ => None,
        })
        .collect();
    assert_eq!(iterations[0], 1, "the log starts again at iteration 1");
    assert!(
        iterations.windows(2).all(|w| w[1] == w[0] + 1),
        "{iterations:?}"
    );
}

/// Pretrained weights of another network fail the start after everything else was checked:
/// no run folder is left either.
#[test]
fn weights_that_do_not_fit_leave_no_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("other.bpk");
    let resnet50 = scal_backbone::ResNetConfig::new(scal_backbone::ResNetArch::ResNet50)
        .with_base_width(4)
        .init(&burn::tensor::Device::flex());
    scal_backbone::save_native(&resnet50, &weights).unwrap();
    let config = config(
        &common::tiny_dataset(),
        &[("model.pretrained", weights.to_str().unwrap())],
    )
    .unwrap();
    let run = dir.path().join("run");
    let err = train_flex(&config, &run, false).unwrap_err();
    assert!(matches!(err, TrainError::Model(_)), "{err}");
    assert!(!run.exists(), "nothing created");
}

/// A run stopped after its first iteration (so `last/` holds a checkpoint), on the tiny
/// dataset.
fn stopped_run(dir: &Path) -> (TrainingConfig, PathBuf) {
    stopped_run_on(dir, &common::tiny_dataset())
}

/// [`stopped_run`] on the dataset in `root`.
fn stopped_run_on(dir: &Path, root: &Path) -> (TrainingConfig, PathBuf) {
    let config = config(root, &[]).unwrap();
    let run = dir.join("run");
    let outcome = scal_train::train(
        &config,
        &run,
        scal_train::Start::New,
        &[burn::tensor::Device::flex()],
        &mut common::StopAtOnce,
    )
    .unwrap();
    assert_eq!(outcome, RunOutcome::Interrupted { iterations: 1 });
    (config, run)
}

/// Flipped bytes in a checkpoint file, a hand-edited `state.json` or `config.json`: resuming
/// refuses, naming the file; the intact run resumes.
#[test]
fn damaged_or_edited_checkpoints_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (config, run) = stopped_run(dir.path());
    let last = run.join("last");
    let listed = std::fs::read_to_string(last.join("checksums.sha256")).unwrap();
    for file in [
        "model.json",
        "model.bpk",
        "optimizer.bpk",
        "state.json",
        "config.json",
    ] {
        assert!(
            listed.contains(&format!("  {file}\n")),
            "{file} not in {listed}"
        );
    }
    let pristine = std::fs::read(last.join("model.bpk")).unwrap();
    let mut flipped = pristine.clone();
    for i in [100, pristine.len() / 2, pristine.len() - 10] {
        flipped[i] ^= 0x5A;
    }
    std::fs::write(last.join("model.bpk"), &flipped).unwrap();
    let err = train_flex(&config, &run, true).unwrap_err().to_string();
    assert!(
        err.contains("last/model.bpk") && err.contains("SHA-256"),
        "{err}"
    );
    std::fs::write(last.join("model.bpk"), &pristine).unwrap();

    let state = std::fs::read_to_string(last.join("state.json")).unwrap();
    std::fs::write(
        last.join("state.json"),
        state.replace("\"iteration\": 1", "\"iteration\": 7"),
    )
    .unwrap();
    let err = train_flex(&config, &run, true).unwrap_err().to_string();
    assert!(err.contains("last/state.json"), "{err}");
    std::fs::write(last.join("state.json"), &state).unwrap();

    // config.json edited by hand: the run's configuration is now another one.
    let edited = config
        .overlaid(None, &[("optim.lr".into(), "0.5".into())])
        .unwrap();
    burn::config::Config::save(&edited, run.join("config.json")).unwrap();
    let err = train_flex(&edited, &run, true).unwrap_err();
    assert!(
        matches!(&err, TrainError::ConfigChanged { differences, .. } if differences.iter().any(|d| d.starts_with("optim.lr"))),
        "{err}"
    );
    burn::config::Config::save(&config, run.join("config.json")).unwrap();

    assert!(matches!(
        train_flex(&config, &run, true).unwrap(),
        RunOutcome::Finished { .. }
    ));
}

/// Checkpoints written before checksums existed (no `checksums.sha256`, no configuration
/// copy) still resume.
#[test]
fn checkpoints_without_checksums_still_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (config, run) = stopped_run(dir.path());
    for file in ["checksums.sha256", "config.json"] {
        std::fs::remove_file(run.join("last").join(file)).unwrap();
    }
    assert!(matches!(
        train_flex(&config, &run, true).unwrap(),
        RunOutcome::Finished { .. }
    ));
}

/// Stops a run at the first chance after its first `best/` checkpoint was written.
struct StopOnceBestExists(PathBuf);

impl scal_train::TrainObserver for StopOnceBestExists {
    fn should_stop(&mut self) -> bool {
        self.0.join("best").is_dir()
    }
}

/// A run whose `last/` is damaged continues from `best/` when asked: the damaged folder is
/// set aside (nothing lost), the log is cut back to best's iteration and goes on from there.
#[test]
fn a_damaged_last_checkpoint_can_continue_from_best_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&common::tiny_dataset(), &[]).unwrap();
    let run = dir.path().join("run");
    let devices = [burn::tensor::Device::flex()];
    let stopped = scal_train::train(
        &config,
        &run,
        scal_train::Start::New,
        &devices,
        &mut StopOnceBestExists(run.clone()),
    )
    .unwrap();
    let RunOutcome::Interrupted {
        iterations: at_best,
    } = stopped
    else {
        panic!("{stopped:?}")
    };
    let model = run.join("last/model.bpk");
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5A;
    std::fs::write(&model, &bytes).unwrap();
    let err = train_flex(&config, &run, true).unwrap_err().to_string();
    assert!(err.contains("last/model.bpk"), "{err}");

    let finished = scal_train::train(
        &config,
        &run,
        scal_train::Start::FromBest,
        &devices,
        &mut (),
    )
    .unwrap();
    let RunOutcome::Finished { iterations, .. } = finished else {
        panic!("{finished:?}")
    };
    assert_eq!(
        iterations,
        2 * at_best,
        "two epochs of {at_best} iterations"
    );
    assert_eq!(
        std::fs::read(run.join("last.set-aside/model.bpk")).unwrap(),
        bytes,
        "the damaged checkpoint is kept aside"
    );
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let logged: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(logged, (1..=iterations).collect::<Vec<_>>());
}
