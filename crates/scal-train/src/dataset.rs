//! A run's dataset: reading it (generating the synthetic one first when configured and
//! missing), a trained run's training data as it trained on it, and the checks the trainer
//! makes on it before training (the splits a checkpoint recorded, a query that can be scored,
//! decodable query and gallery images).

use std::path::{Path, PathBuf};

use scal_data::synth::{SynthConfig, generate};
use scal_data::{ReadOptions, ReidDataset};

use crate::TrainError;
use crate::checkpoint;
use crate::config::TrainingConfig;
use crate::observer::TrainObserver;
use crate::run_dir::{Checkpoint, RunDir};

/// Reads (generating the synthetic dataset first when configured and missing) the dataset.
pub fn load_dataset(
    config: &TrainingConfig,
    observer: &mut dyn TrainObserver,
) -> Result<ReidDataset, TrainError> {
    let root = Path::new(&config.data.root);
    let preset = config.data.synth_preset;
    if !root.exists() && config.data.synthesize_if_missing {
        observer.generating_dataset(root);
        generate(
            &SynthConfig {
                preset,
                ..SynthConfig::default()
            },
            root,
        )?;
    }
    if root.exists() {
        scal_data::synth::check_preset(root, preset)?;
    }
    Ok(scal_data::read_dataset(
        config.data.dataset,
        root,
        ReadOptions {
            msmt17_combine_val: config.data.msmt17_combine_val,
        },
    )?)
}

/// A trained run's training data as it trained on it, for the tools that look at its
/// critics: its configuration (with `root` as the dataset's folder when given: the dataset
/// moved) and its dataset, whose training split must be the one checkpoint `checkpoint`
/// recorded (a changed dataset would be measured silently, or fail on labels its model does
/// not have).
///
/// # Errors
/// [`TrainError::DatasetMoved`] when the run's dataset folder is gone and no `root` is given,
/// [`TrainError::SplitChanged`] when the training split differs, and the errors of reading
/// the configuration, the checkpoint's state and the dataset.
pub fn trained_run_data(
    run_dir: &Path,
    checkpoint: Checkpoint,
    root: Option<&Path>,
) -> Result<(TrainingConfig, ReidDataset), TrainError> {
    let mut config = TrainingConfig::load_json(&RunDir::new(run_dir).config())?;
    if let Some(root) = root {
        config.data.root = root.to_string_lossy().into_owned();
        config.data.synthesize_if_missing = false;
    } else if !config.data.synthesize_if_missing && !Path::new(&config.data.root).exists() {
        return Err(TrainError::DatasetMoved {
            run: run_dir.to_path_buf(),
            root: PathBuf::from(&config.data.root),
        });
    }
    let dataset = load_dataset(&config, &mut ())?;
    let state = checkpoint::state(&RunDir::new(run_dir).checkpoint(checkpoint))?;
    let now = checkpoint::SplitDigest::of(&dataset.train, &dataset.root);
    match state.train_split {
        Some(then) if then != now => Err(TrainError::SplitChanged {
            root: dataset.root.clone(),
            split: "training split",
            then: then.images,
            now: now.images,
        }),
        _ => Ok((config, dataset)),
    }
}

/// The splits of the checkpoint must be the ones read now (issue 29, W27: a resume on a
/// changed split finished silently); a checkpoint written before splits were recorded takes
/// today's. Names are taken below the dataset folder, so a moved dataset passes.
pub(crate) fn check_splits(
    state: &mut checkpoint::TrainState,
    dataset: &ReidDataset,
) -> Result<(), TrainError> {
    let test: Vec<scal_data::ImageRecord> = dataset
        .query
        .iter()
        .chain(&dataset.gallery)
        .cloned()
        .collect();
    let train_now = checkpoint::SplitDigest::of(&dataset.train, &dataset.root);
    let test_now = checkpoint::SplitDigest::of(&test, &dataset.root);
    for (then, now, split) in [
        (&mut state.train_split, train_now, "training split"),
        (&mut state.test_split, test_now, "query and gallery"),
    ] {
        match *then {
            Some(then) if then != now => {
                return Err(TrainError::SplitChanged {
                    root: dataset.root.clone(),
                    split,
                    then: then.images,
                    now: now.images,
                });
            }
            _ => *then = Some(now),
        }
    }
    Ok(())
}

/// A dataset whose query no evaluation can score is refused before training: every
/// evaluation, the last one included, would stop the run (issue 29, W28: found after the
/// first epoch, leaving a run without a checkpoint).
pub(crate) fn check_scorable(dataset: &ReidDataset) -> Result<(), TrainError> {
    if dataset.scorable_queries() == 0 {
        return Err(TrainError::InvalidField {
            field: "data.root".into(),
            problem: format!(
                "{}: no query image has a gallery image of its identity from another camera, \
                 so the evaluation can score none (are the cameras in the file names right?)",
                dataset.root.display()
            ),
        });
    }
    Ok(())
}

/// A query or gallery image that cannot be decoded would stop every evaluation: refused
/// before training, naming it (issue 42, F27: found at the first evaluation, after the
/// epochs since the last checkpoint were trained for nothing). A training image that cannot
/// be decoded is replaced instead (`data.strict` off).
pub(crate) fn check_test_images(dataset: &ReidDataset) -> Result<(), TrainError> {
    let paths: Vec<&std::path::Path> = dataset
        .query
        .iter()
        .chain(&dataset.gallery)
        .map(|record| record.path.as_path())
        .collect();
    scal_data::check_decodable(&paths).map_err(|e| TrainError::InvalidField {
        field: "data.root".into(),
        problem: format!(
            "{e}: a query or gallery image, which every evaluation reads; replace or \
             remove it, then train"
        ),
    })
}
