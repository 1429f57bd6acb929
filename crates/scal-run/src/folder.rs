//! Writing a folder as a whole (scal-fs's swap, with the run's error type): its contents go
//! into a staging folder beside it, which is then swapped in with two renames (`NAME` →
//! `.NAME.old`, staging → `NAME`). A crash between the renames leaves `.NAME.old`, which
//! [`recover`] puts back; a failure while writing removes the staging folder. Either way the
//! previous folder survives until the new one is complete. Checkpoints, the run report and
//! attention figures are written so. And the run folder's lock.

use std::path::{Path, PathBuf};

use crate::TrainError;

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Puts `.NAME.old` back as `NAME` if a swap in `parent` was interrupted, and removes the
/// staging folders a killed process left behind ([`scal_fs::recover_folder`]).
pub fn recover(parent: &Path, name: &str) -> Result<(), TrainError> {
    Ok(scal_fs::recover_folder(parent, name)?)
}

/// Fills a staging folder in `parent` with `write`, then swaps it in as `parent/name`
/// ([`scal_fs::write_folder_atomically`]). On any failure (a full disk included) the
/// staging folder is removed and the previous folder stays. Returns `parent/name`.
pub fn write_staged<E: From<scal_fs::FsError>>(
    parent: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<PathBuf, E> {
    scal_fs::write_folder_atomically(parent, name, write)
}

pub use crate::run_dir::LOCK_FILE;

/// An exclusive lock on a run folder (`RUN/.lock`, holding the PID of the process that has
/// it): a second process training the same run is refused, naming the holder. The operating
/// system releases the lock when the process ends, however it ends; the file stays.
#[derive(Debug)]
pub struct RunLock {
    file: std::fs::File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `run` (an existing folder), or fails at once if another process
    /// holds it.
    pub fn acquire(run: &Path) -> Result<RunLock, TrainError> {
        use std::io::{Read, Seek, Write};
        let path = run.join(LOCK_FILE);
        // A link planted at the lock's place would have its target overwritten with the PID.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(io(&path)(std::io::Error::other(
                "is a symbolic link, not the run's lock file: remove it",
            )));
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(TrainError::RunInUse {
                    run: run.to_path_buf(),
                    pid: holder.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        file.set_len(0).map_err(io(&path))?;
        file.rewind().map_err(io(&path))?;
        write!(file, "{}", std::process::id()).map_err(io(&path))?;
        file.flush().map_err(io(&path))?;
        Ok(RunLock { file, path })
    }

    /// Releases the lock and removes its file (a start that failed leaves nothing).
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_marker(text: &'static str) -> impl FnOnce(&Path) -> Result<(), TrainError> {
        move |dir| std::fs::write(dir.join("state.json"), text).map_err(io(dir))
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
    fn a_failed_write_keeps_the_previous_folder() {
        let run = tempfile::tempdir().unwrap();
        write_staged(run.path(), "last", write_marker("first")).unwrap();
        // The disk fills up half-way through the next checkpoint.
        let err = write_staged(run.path(), "last", |dir| {
            std::fs::write(dir.join("model.bpk"), vec![0u8; 1024]).unwrap();
            Err(io(&dir.join("optimizer.bpk"))(
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
        write_staged(run.path(), "last", write_marker("second")).unwrap();
        assert_eq!(
            std::fs::read_to_string(run.path().join("last/state.json")).unwrap(),
            "second"
        );
        assert_eq!(entries(run.path()), vec!["last"]);
    }

    #[test]
    fn a_run_folder_is_locked_by_one_holder_at_a_time() {
        let run = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(run.path()).unwrap();
        let pid = std::fs::read_to_string(run.path().join(LOCK_FILE)).unwrap();
        assert_eq!(pid, std::process::id().to_string());
        let err = RunLock::acquire(run.path()).unwrap_err();
        assert!(
            matches!(&err, TrainError::RunInUse { pid: Some(p), .. } if *p == std::process::id()),
            "{err}"
        );
        drop(lock);
        let again = RunLock::acquire(run.path()).unwrap();
        again.remove();
        assert!(!run.path().join(LOCK_FILE).exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_at_the_locks_place_is_refused_and_its_target_kept() {
        let run = tempfile::tempdir().unwrap();
        let victim = run.path().join("victim.txt");
        std::fs::write(&victim, "victim data").unwrap();
        std::os::unix::fs::symlink(&victim, run.path().join(LOCK_FILE)).unwrap();
        let err = RunLock::acquire(run.path()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim data");
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_or_a_fifo_at_the_locks_place_is_an_error_not_a_hang() {
        use std::os::unix::fs::FileTypeExt as _;
        let run = tempfile::tempdir().unwrap();
        std::fs::create_dir(run.path().join(LOCK_FILE)).unwrap();
        let err = RunLock::acquire(run.path()).unwrap_err().to_string();
        assert!(
            err.contains(LOCK_FILE) && err.contains("os error 21"),
            "{err}"
        );
        let run = tempfile::tempdir().unwrap();
        let fifo = run.path().join(LOCK_FILE);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let err = RunLock::acquire(run.path()).unwrap_err().to_string();
            assert!(err.contains(LOCK_FILE), "{err}");
            assert!(
                std::fs::symlink_metadata(&fifo)
                    .unwrap()
                    .file_type()
                    .is_fifo(),
                "the FIFO is left as it was"
            );
        }
    }

    #[test]
    fn an_interrupted_swap_is_recovered() {
        let run = tempfile::tempdir().unwrap();
        write_staged(run.path(), "last", write_marker("first")).unwrap();
        // Killed between the two renames: only `.last.old` exists.
        std::fs::rename(run.path().join("last"), run.path().join(".last.old")).unwrap();
        recover(run.path(), "last").unwrap();
        assert_eq!(
            std::fs::read_to_string(run.path().join("last/state.json")).unwrap(),
            "first"
        );
        // Killed after the second rename: both exist, the new one wins; a killed write
        // left its staging folder.
        write_staged(run.path(), "last", write_marker("second")).unwrap();
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
