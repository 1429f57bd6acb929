//! Checkpoints: `runs/<name>/last` and `runs/<name>/best`, each a folder with the model
//! (`model.bpk`), its configuration (`model.json`), the training state (`state.json`) and,
//! for `last`, the optimizer (`optimizer.bpk`).
//!
//! A checkpoint is written completely into a temporary folder, then swapped in with two
//! renames (`last` → `.last.old`, temporary → `last`); a crash between them leaves
//! `.last.old`, which [`recover`] puts back. The previous checkpoint survives any failure.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use scal_data::SamplerPosition;
use scal_model::{ScalConfig, ScalModel};
use serde::{Deserialize, Serialize};

use crate::TrainError;

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

/// Puts `.NAME.old` back as `NAME` if a swap was interrupted, and removes staging folders
/// a killed process left behind.
pub fn recover(run: &Path, name: &str) -> Result<(), TrainError> {
    if let Ok(entries) = std::fs::read_dir(run) {
        let prefix = format!(".{name}.tmp-");
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(|e| error(&path, e))?;
            }
        }
    }
    let current = run.join(name);
    let old = run.join(format!(".{name}.old"));
    if !current.exists() && old.exists() {
        std::fs::rename(&old, &current).map_err(|e| error(&current, e))?;
    } else if current.exists() && old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| error(&old, e))?;
    }
    Ok(())
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
    save_with(run, name, |dir| {
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

/// Fills a staging folder with `write`, then swaps it in as `run/name`. On any failure
/// (a full disk included) the staging folder is removed and the previous checkpoint stays.
fn save_with(
    run: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    recover(run, name)?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempdir_in(run)
        .map_err(|e| error(run, e))?;
    write(staging.path())?;
    let staged = staging.keep();
    let current = run.join(name);
    let old = run.join(format!(".{name}.old"));
    if current.exists() {
        std::fs::rename(&current, &old).map_err(|e| error(&current, e))?;
    }
    std::fs::rename(&staged, &current).map_err(|e| error(&current, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| error(&old, e))?;
    }
    Ok(current)
}

/// The training state of a checkpoint folder.
pub fn state(checkpoint: &Path) -> Result<TrainState, TrainError> {
    let path = checkpoint.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| error(&path, e))?;
    serde_json::from_str(&text).map_err(|e| error(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_marker(text: &'static str) -> impl FnOnce(&Path) -> Result<(), TrainError> {
        move |dir| std::fs::write(dir.join("state.json"), text).map_err(|e| error(dir, e))
    }

    fn entries(run: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_write_keeps_the_previous_checkpoint() {
        let run = tempfile::tempdir().unwrap();
        save_with(run.path(), "last", write_marker("first")).unwrap();
        // The disk fills up half-way through the next checkpoint.
        let err = save_with(run.path(), "last", |dir| {
            std::fs::write(dir.join("model.bpk"), vec![0u8; 1024]).unwrap();
            Err(error(
                &dir.join("optimizer.bpk"),
                std::io::Error::from_raw_os_error(28), // ENOSPC
            ))
        })
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.bpk"), "{err}");
        let kept = std::fs::read_to_string(run.path().join("last/state.json")).unwrap();
        assert_eq!(kept, "first");
        assert_eq!(
            entries(run.path()),
            vec!["last"],
            "no staging folder left behind"
        );
        save_with(run.path(), "last", write_marker("second")).unwrap();
        assert_eq!(
            std::fs::read_to_string(run.path().join("last/state.json")).unwrap(),
            "second"
        );
        assert_eq!(entries(run.path()), vec!["last"]);
    }

    #[test]
    fn an_interrupted_swap_is_recovered() {
        let run = tempfile::tempdir().unwrap();
        save_with(run.path(), "last", write_marker("first")).unwrap();
        // Killed between the two renames: only `.last.old` exists.
        std::fs::rename(run.path().join("last"), run.path().join(".last.old")).unwrap();
        recover(run.path(), "last").unwrap();
        assert_eq!(
            std::fs::read_to_string(run.path().join("last/state.json")).unwrap(),
            "first"
        );
        // Killed after the second rename: both exist, the new one wins; a killed write
        // left its staging folder.
        save_with(run.path(), "last", write_marker("second")).unwrap();
        std::fs::create_dir(run.path().join(".last.old")).unwrap();
        std::fs::create_dir(run.path().join(".last.tmp-abc123")).unwrap();
        recover(run.path(), "last").unwrap();
        assert_eq!(
            std::fs::read_to_string(run.path().join("last/state.json")).unwrap(),
            "second"
        );
        assert_eq!(entries(run.path()), vec!["last"]);
    }
}
