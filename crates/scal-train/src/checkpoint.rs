//! Checkpoints: `runs/<name>/last` and `runs/<name>/best`, each a folder with the model
//! (`model.bpk`), its configuration (`model.json`), the training state (`state.json`) and,
//! for `last`, the optimizer (`optimizer.bpk`).
//!
//! A checkpoint is written as a whole ([`crate::folder::write_staged`]): the previous one
//! survives any failure, a crash between the two renames included ([`recover`]).

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use scal_data::SamplerPosition;
use scal_model::{ScalConfig, ScalModel};
use serde::{Deserialize, Serialize};

use crate::{TrainError, folder};

/// Where training stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub iteration: u64,
    /// The sampler's next batch.
    pub position: SamplerPosition,
    /// Best mAP evaluated so far, and the epoch (1-based count of finished epochs) it was at.
    pub best: Option<(f64, u64)>,
}

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

/// Writes checkpoint `name` of `run`.
pub fn save(
    run: &Path,
    name: &str,
    model: &ScalModel,
    model_config: &ScalConfig,
    optimizer: Option<&ModuleOptimizer>,
    state: &TrainState,
) -> Result<PathBuf, TrainError> {
    folder::write_staged(run, name, |dir| {
        model.save_dir(model_config, dir)?;
        if let Some(optimizer) = optimizer {
            optimizer
                .save(dir.join("optimizer.bpk"))
                .map_err(|e| error(&dir.join("optimizer.bpk"), format!("{e:?}")))?;
        }
        let state_json = serde_json::to_string_pretty(state).expect("serialisable");
        std::fs::write(dir.join("state.json"), state_json).map_err(|e| error(dir, e))
    })
}

/// Restores a training checkpoint (`last/`): the weights into `model` (built from the
/// run's configuration), the optimizer's state into `optim`, and the training state.
pub fn load_training(
    checkpoint: &Path,
    model: &ScalModel,
    optim: ModuleOptimizer,
) -> Result<(ScalModel, ModuleOptimizer, TrainState), TrainError> {
    let model = model.load_checkpoint(&checkpoint.join(scal_model::WEIGHTS_FILE))?;
    let optim_path = checkpoint.join("optimizer.bpk");
    let optim = optim
        .load(&optim_path)
        .map_err(|e| error(&optim_path, format!("{e:?}")))?;
    Ok((model, optim, state(checkpoint)?))
}

/// The training state of a checkpoint folder.
pub fn state(checkpoint: &Path) -> Result<TrainState, TrainError> {
    let path = checkpoint.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| error(&path, e))?;
    serde_json::from_str(&text).map_err(|e| error(&path, e))
}
