//! A run folder's lifecycle, beside its layout ([`crate::RunDir`]): creating a new run
//! (the lock, `config.json`, an empty `metrics.jsonl`, undone if it fails half-way), opening
//! one to continue (the lock, an interrupted checkpoint swap recovered, the same
//! configuration required), recording where a resumed run's servers and dataset are now, and
//! the checks on a folder given to continue (a run, not one of its checkpoints; a `last/`
//! that is gone). The trainer (scal-train) calls these; the model, the optimizer and the
//! training state are its own.

use std::path::Path;

use crate::TrainError;
use crate::config::TrainingConfig;
use crate::folder::RunLock;
use crate::log::{self, LogWriter, Record};
use crate::run_dir::{Checkpoint, RunDir};

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A new run: locks the folder (creating it), refuses one that holds a run, then writes
/// `config.json` and an empty `metrics.jsonl` (opened for appending). If that fails
/// half-way, what it created is removed, so the same name can be used again.
pub fn create_run(
    config: &TrainingConfig,
    run_dir: &Path,
    log_path: &Path,
) -> Result<(RunLock, LogWriter), TrainError> {
    let config_path = RunDir::new(run_dir).config();
    let existed = run_dir.exists();
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    let lock = RunLock::acquire(run_dir)?;
    if config_path.exists() {
        return Err(TrainError::RunExists {
            run: run_dir.to_path_buf(),
        });
    }
    // A folder that is not a run: its checkpoints and report would replace the user's
    // folders of the same names (`best/`, `report/`).
    let found = others_than_the_lock(run_dir)?;
    if !found.is_empty() {
        lock.remove();
        return Err(TrainError::NotARunFolder {
            run: run_dir.to_path_buf(),
            found,
        });
    }
    let created = scal_fs::write_atomically(&config_path, |tmp| {
        config.save_json(tmp).map_err(|e| e.to_string())
    })
    .map_err(TrainError::from)
    .and_then(|()| Ok(LogWriter::append(log_path)?));
    match created {
        Ok(log) => Ok((lock, log)),
        Err(e) => {
            let _ = std::fs::remove_file(&config_path);
            let _ = std::fs::remove_file(log_path);
            lock.remove();
            if !existed {
                let _ = std::fs::remove_dir(run_dir);
            }
            Err(e)
        }
    }
}

/// The entries of `dir` other than the run lock's file, sorted (the first few).
fn others_than_the_lock(dir: &Path) -> Result<Vec<String>, TrainError> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != crate::folder::LOCK_FILE)
        .collect();
    found.sort();
    found.truncate(5);
    Ok(found)
}

/// A resumed run: locks the folder, recovers an interrupted checkpoint swap and refuses
/// another configuration; returns the lock and the saved configuration.
pub fn open_run(
    config: &TrainingConfig,
    run_dir: &Path,
) -> Result<(RunLock, TrainingConfig), TrainError> {
    // The caller checked that `run_dir` is a run ([`check_run_folder`]).
    let config_path = RunDir::new(run_dir).config();
    let lock = RunLock::acquire(run_dir)?;
    crate::folder::recover(run_dir, Checkpoint::Last.as_str())?;
    // A field the saved file lacks (written before the field existed) takes its default.
    let saved = TrainingConfig::load_json(&config_path).map_err(|e| TrainError::Checkpoint {
        path: config_path.clone(),
        message: e.to_string(),
    })?;
    let differences = saved.differences(config);
    if !differences.is_empty() {
        return Err(TrainError::ResumeMismatch {
            run: run_dir.to_path_buf(),
            differences,
        });
    }
    Ok((lock, saved))
}

/// A run resumed on other servers (`hosts` differ) or on its moved dataset (`data.root`
/// differs, its splits checked): `config.json` takes the new place, so that the next resume
/// goes there too.
pub fn record_location(
    saved: &TrainingConfig,
    config: &TrainingConfig,
    run_dir: &Path,
) -> Result<(), TrainError> {
    if saved.hosts == config.hosts && saved.data.root == config.data.root {
        return Ok(());
    }
    let config_path = RunDir::new(run_dir).config();
    scal_fs::write_atomically(&config_path, |tmp| {
        config.save_json(tmp).map_err(|e| e.to_string())
    })?;
    Ok(())
}

/// A folder to continue must be a run: it holds `config.json` and is not one of a run's
/// checkpoints (which hold a copy of it beside `model.json`).
pub fn check_run_folder(run_dir: &Path) -> Result<(), TrainError> {
    if run_dir.join(scal_model::CONFIG_FILE).is_file() {
        let run = RunDir::of_checkpoint(run_dir).map(|r| r.path().to_path_buf());
        return Err(TrainError::CheckpointNotRun {
            checkpoint: run_dir.to_path_buf(),
            run,
        });
    }
    if !RunDir::new(run_dir).holds_run() {
        return Err(TrainError::NotARun {
            run: run_dir.to_path_buf(),
        });
    }
    Ok(())
}

/// A run without `last/` whose log records iterations cannot continue where it stopped:
/// refused unless the caller restarts it (scal-train's `Start::Restart`). A run that never
/// wrote a checkpoint (no `best/` either: its first save failed, or it was stopped before)
/// has nothing to lose: it starts again from iteration 0, and the iterations its log
/// records come back (`Some`) for the caller to tell; `None` when the log records none.
pub fn refuse_lost_checkpoint(run_dir: &Path, log_path: &Path) -> Result<Option<u64>, TrainError> {
    let logged = log::read(log_path)?
        .iter()
        .filter(|r| matches!(r, Record::Train(_)))
        .count() as u64;
    if logged == 0 {
        return Ok(None);
    }
    if !RunDir::new(run_dir).checkpoint(Checkpoint::Best).exists() {
        return Ok(Some(logged));
    }
    Err(TrainError::CheckpointMissing {
        run: run_dir.to_path_buf(),
        logged,
    })
}
