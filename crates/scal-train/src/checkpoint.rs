//! Checkpoints: `runs/<name>/last` and `runs/<name>/best`, each a folder with the model
//! (`model.bpk`), its configuration (`model.json`), the training state (`state.json`) and,
//! for `last`, the optimizer (`optimizer.bpk`).
//!
//! A checkpoint is written as a whole ([`crate::folder::write_staged`]): the previous one
//! survives any failure, a crash between the two renames included ([`recover`]).

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use scal_model::{ScalConfig, ScalModel};

use crate::config::TrainingConfig;
use crate::{TrainError, folder};

/// `state.json`'s types are `scal-run`'s (the run's files), re-exported here under the
/// paths they always had.
pub use scal_run::state::{SplitDigest, TrainState};

fn error(path: &Path, message: impl ToString) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Puts `.NAME.old` back as `NAME` if a checkpoint swap was interrupted (see
/// [`crate::folder::recover`]).
pub fn recover(run: &Path, name: &str) -> Result<(), TrainError> {
    folder::recover(run, name)
}

/// The training configuration's copy in a checkpoint (what it was trained with).
pub const CONFIG_COPY: &str = crate::run_dir::CONFIG_FILE;
/// The optimizer's state in a training checkpoint.
pub const OPTIMIZER_FILE: &str = crate::run_dir::OPTIMIZER_FILE;
/// The training state of a checkpoint.
pub const STATE_FILE: &str = crate::run_dir::STATE_FILE;

/// Writes checkpoint `name` of `run`: the model folder, the optimizer (when given), the
/// training state and a copy of the configuration, all listed with their SHA-256 in
/// `checksums.sha256`.
pub fn save(
    run: &Path,
    name: &str,
    (model, model_config): (&ScalModel, &ScalConfig),
    optimizer: Option<&ModuleOptimizer>,
    state: &TrainState,
    config: &TrainingConfig,
) -> Result<PathBuf, TrainError> {
    folder::write_staged(run, name, |dir| {
        model.save_dir(model_config, dir)?;
        let mut files = vec![scal_model::CONFIG_FILE, scal_model::WEIGHTS_FILE];
        if let Some(optimizer) = optimizer {
            let path = dir.join(OPTIMIZER_FILE);
            optimizer
                .save(&path)
                .map_err(|e| error(&path, format!("{e:?}")))?;
            files.push(OPTIMIZER_FILE);
        }
        std::fs::write(dir.join(STATE_FILE), state.to_json()).map_err(|e| error(dir, e))?;
        let copy = dir.join(CONFIG_COPY);
        config.save_json(&copy).map_err(|e| error(&copy, e))?;
        files.extend([STATE_FILE, CONFIG_COPY]);
        Ok(scal_model::write_checksums(dir, &files)?)
    })
}

/// Restores a training checkpoint (`last/`) after checking its files against their
/// checksums and the run's configuration `config` against the copy the checkpoint was
/// trained with: the weights into `model` (built from the run's configuration), the
/// optimizer's state into `optim`, and the training state.
pub fn load_training(
    checkpoint: &Path,
    config: &TrainingConfig,
    model: &ScalModel,
    optim: ModuleOptimizer,
) -> Result<(ScalModel, ModuleOptimizer, TrainState), TrainError> {
    let (model, state) = load_verified(checkpoint, config, model, &[OPTIMIZER_FILE])?;
    let optim_path = checkpoint.join(OPTIMIZER_FILE);
    let optim = optim
        .load(&optim_path)
        .map_err(|e| error(&optim_path, format!("{e:?}")))?;
    Ok((model, optim, state))
}

/// Restores the weights and training state of any checkpoint (`last/` or `best/`), after
/// the same checks as [`load_training`]. A missing folder is an error naming it.
pub fn load_weights(
    checkpoint: &Path,
    config: &TrainingConfig,
    model: &ScalModel,
) -> Result<(ScalModel, TrainState), TrainError> {
    load_verified(checkpoint, config, model, &[])
}

/// [`load_weights`], with the checksum list required to cover `also` (files the caller reads
/// next) besides the weights, the state and the configuration copy.
fn load_verified(
    checkpoint: &Path,
    config: &TrainingConfig,
    model: &ScalModel,
    also: &[&str],
) -> Result<(ScalModel, TrainState), TrainError> {
    if !checkpoint.is_dir() {
        return Err(error(checkpoint, "no such checkpoint folder"));
    }
    // Read again if a training run swaps the folder meanwhile (issue 42, F18).
    scal_fs::read_folder_whole(checkpoint, || {
        read_verified(checkpoint, config, model, also)
    })
}

/// [`load_verified`]'s reading, once.
fn read_verified(
    checkpoint: &Path,
    config: &TrainingConfig,
    model: &ScalModel,
    also: &[&str],
) -> Result<(ScalModel, TrainState), TrainError> {
    let copy = checkpoint.join(CONFIG_COPY);
    let mut required = vec![scal_model::WEIGHTS_FILE, STATE_FILE];
    if copy.is_file() {
        required.push(CONFIG_COPY);
    }
    required.extend_from_slice(also);
    scal_model::verify_checksums(checkpoint, &required)?;
    if copy.is_file() {
        let trained = TrainingConfig::load_json(&copy)?;
        let differences = trained.differences(config);
        if !differences.is_empty() {
            return Err(TrainError::ConfigChanged {
                checkpoint: checkpoint.to_path_buf(),
                differences,
            });
        }
    }
    check_identities(checkpoint, config, model)?;
    let model = model.load_checkpoint(&checkpoint.join(scal_model::WEIGHTS_FILE))?;
    Ok((model, state(checkpoint)?))
}

/// A checkpoint whose classifier has another number of identities than the dataset now
/// gives `model` was trained on another training split: the dataset changed (issue 29, W26;
/// it was reported as a checkpoint that does not fit this model).
fn check_identities(
    checkpoint: &Path,
    config: &TrainingConfig,
    model: &ScalModel,
) -> Result<(), TrainError> {
    let saved = ScalModel::config_of_dir(checkpoint)?;
    let now = model.classifier.weight.dims()[1];
    if saved.num_classes != now {
        return Err(TrainError::DatasetChanged {
            checkpoint: checkpoint.to_path_buf(),
            root: PathBuf::from(&config.data.root),
            trained: saved.num_classes,
            now,
        });
    }
    Ok(())
}

/// Moves the checkpoint folder `checkpoint` (if it exists) out of the way, to
/// `NAME.set-aside` or, if that is taken, `NAME.set-aside.2`, `.3`, …; returns where it went.
pub fn set_aside(checkpoint: &Path) -> Result<Option<PathBuf>, TrainError> {
    scal_fs::set_aside(checkpoint, "set-aside").map_err(|e| error(checkpoint, e))
}

/// The training state of a checkpoint folder.
pub fn state(checkpoint: &Path) -> Result<TrainState, TrainError> {
    let path = checkpoint.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| error(&path, e))?;
    TrainState::from_json(&text).map_err(|e| error(&path, e))
}
