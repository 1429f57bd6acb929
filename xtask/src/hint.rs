//! What to do next after an error: the commands that help, which the libraries do not know.
//! Their errors carry the data (the dataset, the run folder); this module turns it into a
//! line naming the command.

use std::path::Path;

use scal_data::{DataError, DatasetName};
use scal_run::{Backend, Checkpoint, RunDir, TrainError, TrainingConfig};

/// The hint for the first error of `error`'s chain that has one.
pub fn for_error(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<TrainError>() {
            return for_train_error(e);
        }
        if let Some(scal_infer::InferError::Data(e)) =
            cause.downcast_ref::<scal_infer::InferError>()
        {
            return for_data_error(e);
        }
        cause.downcast_ref::<DataError>().and_then(for_data_error)
    })
}

/// The hint for a training error.
pub fn for_train_error(error: &TrainError) -> Option<String> {
    match error {
        TrainError::Data(e) => for_data_error(e),
        TrainError::RunExists { run } => Some(format!(
            "Resume it with `cargo xtask train --resume {}`, or choose another --name",
            run.display()
        )),
        TrainError::DeviceFailed { run, .. } => Some(resume_hint(run)),
        TrainError::CheckpointNotRun {
            checkpoint,
            run: Some(run),
        } => Some(checkpoint_not_run_hint(checkpoint, run)),
        TrainError::DatasetMoved { run, .. } => Some(format!(
            "If the dataset moved: cargo xtask train --resume {} --root NEW_FOLDER",
            run.display()
        )),
        TrainError::RunFinished { run, .. }
            if !run.join(scal_run::run_dir::REPORT_DIR).is_dir() =>
        {
            Some(format!(
                "Its report was not written (the run was stopped after its last epoch): cargo xtask report {}",
                run.display()
            ))
        }
        TrainError::CheckpointMissing { run, .. } => Some(format!(
            "To start it again from iteration 0: cargo xtask train --resume {} --restart",
            run.display()
        )),
        TrainError::Model(scal_model::ModelError::Damaged { path, .. }) => damaged_last_hint(path),
        TrainError::InvalidField { field, .. } if field == "hosts" => Some(
            "Start a server on each machine with `cargo xtask serve --backend cuda --port 3000` \
             and name them with --hosts ws://HOST:3000,…"
                .into(),
        ),
        _ => None,
    }
}

/// For a run's checkpoint folder given to `--resume`: the run, and `--from best` for `best/`.
fn checkpoint_not_run_hint(checkpoint: &Path, run: &Path) -> String {
    let from = if RunDir::checkpoint_name(checkpoint) == Some(Checkpoint::Best) {
        " --from best"
    } else {
        ""
    };
    format!(
        "Resume the run itself: cargo xtask train --resume {}{from}",
        run.display()
    )
}

/// For a damaged file of a run's `last/` checkpoint: how to continue from `best/`.
fn damaged_last_hint(file: &Path) -> Option<String> {
    let checkpoint = file.parent()?;
    let run = checkpoint.parent()?;
    let run_dir = RunDir::new(run);
    (RunDir::checkpoint_name(checkpoint)? == Checkpoint::Last
        && run_dir.checkpoint(Checkpoint::Best).is_dir())
    .then(|| {
        format!(
            "To continue from the best checkpoint instead (the optimizer starts afresh): \
             cargo xtask train --resume {} --from best",
            run.display()
        )
    })
}

/// The hint for a data error.
pub fn for_data_error(error: &DataError) -> Option<String> {
    match error {
        DataError::DatasetNotFound { path, dataset } => Some(dataset_hint(path, *dataset)),
        DataError::MissingSplit { .. } => Some(
            "Get the dataset with `cargo xtask download`, or generate the synthetic one with \
             `cargo xtask synth`"
                .into(),
        ),
        DataError::InvalidSynth {
            setting: "preset", ..
        } => Some(
            "`--dataset synth-hard` without --root reads (or generates) datasets/synth-hard; \
             `cargo xtask synth --preset hard --out DIR` writes it elsewhere"
                .into(),
        ),
        _ => None,
    }
}

/// How to get `dataset` into the missing folder `root`.
fn dataset_hint(root: &Path, dataset: DatasetName) -> String {
    let parent = root
        .parent()
        .map(|p| p.display().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".into());
    let synth = format!(
        "generate the synthetic dataset there with `cargo xtask synth --out {}`",
        root.display()
    );
    match dataset {
        DatasetName::Custom => {
            format!("Fill it as docs/datasets.md describes (train/, query/, gallery/), or {synth}")
        }
        other => format!(
            "Get {other} with `cargo xtask download {} --root {parent}`, or {synth}",
            scal_data::download::source(other).folder
        ),
    }
}

/// How to go on after a device failure in the run at `run`: resume, and for a run on
/// remote devices, check the servers first.
pub fn resume_hint(run: &Path) -> String {
    let resume = format!("cargo xtask train --resume {}", run.display());
    match TrainingConfig::load_json(&RunDir::new(run).config()) {
        Ok(config) if config.backend == Backend::Remote => format!(
            "Check that `cargo xtask serve` still runs at {} (restart it if not), then continue \
             with `{resume}` (add --hosts ws://… to use other servers)",
            config.hosts.join(", ")
        ),
        _ => format!("Continue with `{resume}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_last_checkpoint_points_to_best_only_when_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let damaged = |file: &str| {
            TrainError::Model(scal_model::ModelError::Damaged {
                path: run.join(file),
                problem: "SHA-256 differs".into(),
            })
        };
        assert_eq!(for_train_error(&damaged("last/model.bpk")), None);
        std::fs::create_dir_all(run.join("best")).unwrap();
        let hint = for_train_error(&damaged("last/model.bpk")).unwrap();
        assert!(
            hint.contains(&format!("--resume {} --from best", run.display())),
            "{hint}"
        );
        assert_eq!(for_train_error(&damaged("best/model.bpk")), None);
    }

    #[test]
    fn a_missing_dataset_names_download_and_synth() {
        let err = anyhow::Error::from(TrainError::Data(DataError::DatasetNotFound {
            path: "datasets/market1501".into(),
            dataset: DatasetName::Market1501,
        }));
        let hint = for_error(&err).unwrap();
        assert!(
            hint.contains("cargo xtask download market1501 --root datasets")
                && hint.contains("cargo xtask synth --out datasets/market1501"),
            "{hint}"
        );
        let err = anyhow::Error::from(DataError::DatasetNotFound {
            path: "mine".into(),
            dataset: DatasetName::Cuhk03Detected,
        });
        let hint = for_error(&err).unwrap();
        assert!(hint.contains("download cuhk03 --root ."), "{hint}");
        let custom = dataset_hint(Path::new("d/x"), DatasetName::Custom);
        assert!(custom.contains("docs/datasets.md"), "{custom}");
    }

    #[test]
    fn a_device_failure_says_how_to_resume_and_remote_runs_name_their_servers() {
        let dir = tempfile::tempdir().unwrap();
        let hint = resume_hint(dir.path());
        assert!(
            hint.contains(&format!("--resume {}", dir.path().display())) && !hint.contains("serve"),
            "{hint}"
        );
        let config = TrainingConfig::resolve(
            scal_run::Profile::Quick,
            None,
            &[
                ("backend".into(), "remote".into()),
                ("hosts".into(), r#"["ws://gpu1:3000"]"#.into()),
            ],
        )
        .unwrap();
        burn::config::Config::save(&config, dir.path().join("config.json")).unwrap();
        let hint = resume_hint(dir.path());
        assert!(
            hint.contains("cargo xtask serve") && hint.contains("ws://gpu1:3000"),
            "{hint}"
        );
    }

    #[test]
    fn other_errors_have_no_hint() {
        let err = anyhow::anyhow!("something else");
        assert!(for_error(&err).is_none());
    }
}
