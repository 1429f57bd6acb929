//! # scal-fs
//!
//! Files and folders replaced whole, the workspace's one way to write them: the new content
//! goes into a staging file or folder beside the destination and is renamed into place only
//! once complete, so a failure, a full disk or a killed process never leaves a half-written
//! file where a good one was, and the previous file survives any failure.
//!
//! - [`write_atomically`]: a file, written by a closure on the staging path (weights, model
//!   folders' files, figures, the gallery cache, pages);
//! - [`write_folder_atomically`]: a folder, filled by a closure in a staging folder, then
//!   swapped in (checkpoints, the run report, attention figures, the critics' data), with
//!   [`recover_folder`] for a swap a killed process interrupted, and [`read_folder_whole`]
//!   for a reader of such a folder while another process may swap it;
//! - [`StagedFile`]: a file streamed into beside its destination, then renamed onto it (a
//!   download, `extract`'s features, `export`'s ONNX graph, the log cut back on resume);
//! - [`StagedFolder`]: a folder filled beside a destination that does not exist yet, then
//!   renamed to it (a dataset being extracted or generated);
//! - [`set_aside`]: a file or folder moved out of the way under a free name (a checkpoint
//!   that cannot be resumed from);
//! - [`staging_builder`]: `tempfile`'s builder for the staging files and folders above.
//!
//! No other crate of the workspace renames a file or makes a staging file itself
//! (`xtask/tests/architecture.rs` checks the sources).
//!
//! Both create what they stage with the permissions the process's umask leaves (`0666` /
//! `0777` less the umask), as other tools create files, not `tempfile`'s private `0600` /
//! `0700`: what is renamed into place can be read by the user's group like their other files.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// The destination could not be written: its folder is missing or read-only, the disk
    /// is full, or the writer failed.
    #[error("cannot write {}: {message}", path.display())]
    Write {
        /// The destination.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A folder being swapped in (or its staging or set-aside copy) could not be created,
    /// renamed or removed.
    #[error("cannot write {}: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

fn folder_error(path: &Path) -> impl Fn(std::io::Error) -> FsError + '_ {
    // tempfile's errors end in `at path "…/.NAME.tmp-XXXXXX"`, naming a staging folder that
    // never existed: the system's error alone, with the folder it concerns.
    move |source| FsError::Folder {
        path: path.to_path_buf(),
        source: source
            .raw_os_error()
            .map_or(source, std::io::Error::from_raw_os_error),
    }
}

/// Puts `.NAME.old` back as `NAME` if a swap of [`write_folder_atomically`] in `parent` was
/// interrupted between its two renames, and removes the staging folders a killed process
/// left behind (`.NAME.tmp-*`).
///
/// # Errors
/// [`FsError::Folder`] naming the folder that could not be renamed or removed.
pub fn recover_folder(parent: &Path, name: &str) -> Result<(), FsError> {
    if let Ok(entries) = std::fs::read_dir(parent) {
        let prefix = format!(".{name}.tmp-");
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(folder_error(&path))?;
            }
        }
    }
    let current = parent.join(name);
    let old = parent.join(format!(".{name}.old"));
    if !current.exists() && old.exists() {
        std::fs::rename(&old, &current).map_err(folder_error(&current))?;
    } else if current.exists() && old.exists() {
        std::fs::remove_dir_all(&old).map_err(folder_error(&old))?;
    }
    Ok(())
}

/// Fills a staging folder in `parent` with `write`, then swaps it in as `parent/name` with
/// two renames (`NAME` → `.NAME.old`, staging → `NAME`; a crash between them leaves
/// `.NAME.old`, which [`recover_folder`] puts back). On any failure (a full disk included)
/// the staging folder is removed and the previous folder stays. Returns `parent/name`.
///
/// # Errors
/// `write`'s error, or [`FsError::Folder`] when the staging folder cannot be made or a
/// rename fails.
pub fn write_folder_atomically<E: From<FsError>>(
    parent: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<PathBuf, E> {
    recover_folder(parent, name)?;
    let prefix = format!(".{name}.tmp-");
    let staging = staging_builder(&prefix, true)
        .tempdir_in(parent)
        .map_err(folder_error(parent))?;
    write(staging.path())?;
    let staged = staging.keep();
    let current = parent.join(name);
    let old = parent.join(format!(".{name}.old"));
    if current.exists() {
        std::fs::rename(&current, &old).map_err(folder_error(&current))?;
    }
    std::fs::rename(&staged, &current).map_err(folder_error(&current))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(folder_error(&old))?;
    }
    Ok(current)
}

/// Runs `read` on the folder `dir` again while `dir` was replaced (swapped in by
/// [`write_folder_atomically`] in another process: a training run saving `last/`) during the
/// read, at most 5 times: a reader that took one file of the old folder and the next of the
/// new one would report a consistent checkpoint as damaged (issue 42, F18). Returns the first
/// result read while the folder stayed the same (on Unix: the same device and inode), or the
/// last one.
pub fn read_folder_whole<T>(dir: &Path, mut read: impl FnMut() -> T) -> T {
    let mut tries = 1;
    loop {
        let before = folder_identity(dir);
        let result = read();
        if tries == 5 || before.is_none() || folder_identity(dir) == before {
            return result;
        }
        tries += 1;
    }
}

/// The device and inode of the folder `dir`: a folder swapped in has other ones.
#[cfg(unix)]
fn folder_identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// No identity to compare off Unix: the folder is read once.
#[cfg(not(unix))]
fn folder_identity(_dir: &Path) -> Option<(u64, u64)> {
    None
}

/// A builder of staging files (`folder = false`) or folders (`true`) whose names start with
/// `prefix`, created with the permissions the umask leaves rather than `tempfile`'s private
/// ones.
pub fn staging_builder(prefix: &str, folder: bool) -> tempfile::Builder<'_, '_> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if folder { 0o777 } else { 0o666 };
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = folder;
    builder
}

/// The folder a staging file or folder for `destination` is made in: its parent, or `.`.
fn folder_of(destination: &Path) -> &Path {
    match destination.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A file being written beside its destination, for writers that stream into an open file
/// (a download, `extract`'s features, a rewritten log): [`StagedFile::install`] renames it
/// onto the destination once complete; dropped before that, it is removed and the
/// destination is untouched.
#[derive(Debug)]
pub struct StagedFile {
    file: tempfile::NamedTempFile,
    destination: PathBuf,
}

impl StagedFile {
    /// A new empty staging file `PREFIX…SUFFIX` in `destination`'s folder (made now, so that
    /// an unwritable destination fails before any work).
    ///
    /// # Errors
    /// The system's error when the file cannot be created (a missing or read-only folder).
    pub fn beside(destination: &Path, prefix: &str, suffix: &str) -> std::io::Result<StagedFile> {
        let file = staging_builder(prefix, false)
            .suffix(suffix)
            .tempfile_in(folder_of(destination))?;
        Ok(StagedFile {
            file,
            destination: destination.to_path_buf(),
        })
    }

    /// The open staging file, to write into.
    pub fn file(&self) -> &std::fs::File {
        self.file.as_file()
    }

    /// The destination it will be renamed onto.
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// Renames the staging file onto the destination (replacing any file there).
    ///
    /// # Errors
    /// The system's error when the rename fails (the staging file is then removed).
    pub fn install(self) -> std::io::Result<()> {
        self.file
            .persist(&self.destination)
            .map(drop)
            .map_err(|e| e.error)
    }
}

/// A folder being filled beside its destination, which must not exist yet (a dataset being
/// extracted or generated): [`StagedFolder::install`] renames it to the destination once
/// complete; dropped before that, it is removed with what it holds, so an interrupted
/// writer never leaves a complete-looking destination.
#[derive(Debug)]
pub struct StagedFolder {
    dir: tempfile::TempDir,
    destination: PathBuf,
}

impl StagedFolder {
    /// A new empty staging folder `PREFIX…` in `destination`'s folder, which must exist.
    ///
    /// # Errors
    /// The system's error when the folder cannot be created.
    pub fn beside(destination: &Path, prefix: &str) -> std::io::Result<StagedFolder> {
        let dir = staging_builder(prefix, true).tempdir_in(folder_of(destination))?;
        Ok(StagedFolder {
            dir,
            destination: destination.to_path_buf(),
        })
    }

    /// The staging folder, to fill.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Renames the staging folder to the destination.
    ///
    /// # Errors
    /// The system's error when the rename fails (the destination appeared meanwhile, or
    /// another file system); the staging folder is then removed.
    pub fn install(self) -> std::io::Result<()> {
        let staged = self.dir.keep();
        std::fs::rename(&staged, &self.destination).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&staged);
        })
    }
}

/// Moves `path` (a file or folder, if it exists) out of the way, to `NAME.TAG` or, when that
/// is taken, `NAME.TAG.2`, `NAME.TAG.3`, …; returns where it went (`None`: nothing there).
///
/// # Errors
/// The system's error when the rename fails.
pub fn set_aside(path: &Path, tag: &str) -> std::io::Result<Option<PathBuf>> {
    if !path.exists() {
        return Ok(None);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = (1..)
        .map(|i| match i {
            1 => path.with_file_name(format!("{name}.{tag}")),
            i => path.with_file_name(format!("{name}.{tag}.{i}")),
        })
        .find(|p| !p.exists())
        .expect("an unused name");
    std::fs::rename(path, &target)?;
    Ok(Some(target))
}

/// Runs `write` on a staging path in `path`'s folder, then renames it to `path`: a failure
/// (or a killed process) never leaves a half-written `path`, and any previous file at `path`
/// survives it. The staging file is removed on failure. `write`'s `Err` says what failed.
///
/// # Errors
/// [`FsError::Write`] naming `path`, when the staging file cannot be made (a missing or
/// read-only folder), `write` fails, or the rename fails.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), FsError> {
    let error = |message: String| FsError::Write {
        path: path.to_path_buf(),
        message,
    };
    let tmp = staging_builder(".staging-", false)
        .suffix(".tmp")
        .tempfile_in(folder_of(path))
        .map_err(|e| error(e.to_string()))?;
    write(tmp.path()).map_err(error)?;
    tmp.persist(path).map_err(|e| error(e.error.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_folder_swapped_while_it_is_read_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &'static str| {
            write_folder_atomically::<FsError>(dir.path(), "last", |staging| {
                std::fs::write(staging.join("a"), text).unwrap();
                std::fs::write(staging.join("b"), text).unwrap();
                Ok(())
            })
            .unwrap()
        };
        let last = write("1");
        let mut reads = 0;
        let pair = read_folder_whole(&last, || {
            reads += 1;
            let a = std::fs::read_to_string(last.join("a")).unwrap();
            if reads == 1 {
                // Another process saves the next checkpoint between the reader's two files.
                write("2");
            }
            let b = std::fs::read_to_string(last.join("b")).unwrap();
            (a, b)
        });
        assert_eq!(reads, 2, "the mixed read is done again");
        assert_eq!(pair, ("2".to_string(), "2".to_string()));
        let once = read_folder_whole(&last, || std::fs::read_to_string(last.join("a")).unwrap());
        assert_eq!(once, "2");
    }

    #[test]
    fn a_file_is_replaced_only_when_the_new_one_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "old").unwrap();
        let err = write_atomically(&path, |tmp| {
            std::fs::write(tmp, "half").unwrap();
            Err("the writer failed".into())
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot write {}: the writer failed", path.display())
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(names(dir.path()), ["out.txt"], "the staging file is gone");
        write_atomically(&path, |tmp| {
            std::fs::write(tmp, "new").map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(names(dir.path()), ["out.txt"]);
    }

    #[test]
    fn a_folder_is_swapped_in_whole_and_an_interrupted_swap_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &'static str| {
            move |d: &Path| -> Result<(), FsError> {
                std::fs::write(d.join("f.txt"), text).unwrap();
                Ok(())
            }
        };
        write_folder_atomically(dir.path(), "out", write("first")).unwrap();
        let failed: Result<PathBuf, FsError> = write_folder_atomically(dir.path(), "out", |d| {
            std::fs::write(d.join("half.txt"), "half").unwrap();
            Err(FsError::Write {
                path: d.join("g.txt"),
                message: "no space left".into(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(names(dir.path()), ["out"], "the staging folder is gone");
        assert_eq!(names(&dir.path().join("out")), ["f.txt"]);
        // Killed between the two renames: `.out.old` is put back.
        std::fs::rename(dir.path().join("out"), dir.path().join(".out.old")).unwrap();
        recover_folder(dir.path(), "out").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/f.txt")).unwrap(),
            "first"
        );
        write_folder_atomically(dir.path(), "out", write("second")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/f.txt")).unwrap(),
            "second"
        );
        assert_eq!(names(dir.path()), ["out"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_read_only_folder_is_named_without_the_staging_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Root writes into read-only folders: nothing to check then.
        if std::fs::write(ro.join("probe"), "x").is_ok() {
            return;
        }
        let err = write_folder_atomically(&ro, "out", |_| Ok::<(), FsError>(())).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("cannot write {}: ", ro.display()))
                && !message.contains(".out.tmp-"),
            "{message}"
        );
    }

    #[test]
    fn a_staged_file_replaces_its_destination_only_when_installed() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zip");
        std::fs::write(&path, "old").unwrap();
        let staged = StagedFile::beside(&path, ".a.zip.", ".part").unwrap();
        staged.file().write_all(b"half").unwrap();
        drop(staged);
        assert_eq!(
            names(dir.path()),
            ["a.zip"],
            "a dropped staging file is gone"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        let staged = StagedFile::beside(&path, ".a.zip.", ".part").unwrap();
        assert_eq!(staged.destination(), path);
        staged.file().write_all(b"new").unwrap();
        staged.install().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(names(dir.path()), ["a.zip"]);
        let err = StagedFile::beside(&dir.path().join("absent/x"), ".x", "").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_staged_folder_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("data");
        let staged = StagedFolder::beside(&out, ".data-").unwrap();
        std::fs::write(staged.path().join("f.txt"), "x").unwrap();
        drop(staged);
        assert!(
            names(dir.path()).is_empty(),
            "a dropped staging folder is gone"
        );
        let staged = StagedFolder::beside(&out, ".data-").unwrap();
        std::fs::write(staged.path().join("f.txt"), "x").unwrap();
        staged.install().unwrap();
        assert_eq!(names(dir.path()), ["data"]);
        assert_eq!(names(&out), ["f.txt"]);
        // A destination that appeared meanwhile (not empty) is kept, the staging removed.
        let staged = StagedFolder::beside(&out, ".data-").unwrap();
        assert!(staged.install().is_err());
        assert_eq!(names(dir.path()), ["data"]);
        assert_eq!(names(&out), ["f.txt"]);
    }

    #[test]
    fn set_aside_takes_the_first_free_name() {
        let dir = tempfile::tempdir().unwrap();
        let last = dir.path().join("last");
        assert_eq!(set_aside(&last, "set-aside").unwrap(), None);
        for expected in ["last.set-aside", "last.set-aside.2", "last.set-aside.3"] {
            std::fs::create_dir(&last).unwrap();
            let moved = set_aside(&last, "set-aside").unwrap().unwrap();
            assert_eq!(moved, dir.path().join(expected));
            assert!(moved.is_dir() && !last.exists());
        }
    }

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("out.txt");
        let err = write_atomically(&path, |_| Ok(())).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot write {}: ", path.display())),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn staged_files_and_folders_take_the_umask_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomically(&path, |tmp| {
            std::fs::write(tmp, "x").map_err(|e| e.to_string())
        })
        .unwrap();
        let folder = staging_builder(".f-", true).tempdir_in(dir.path()).unwrap();
        // The umask can only remove bits: read it back from a file made the usual way.
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let usual = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), usual, "as a file made with File::create");
        assert_eq!(
            mode(folder.path()) & 0o666,
            usual,
            "a folder: the same bits, and x"
        );
    }
}
