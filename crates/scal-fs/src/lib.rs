//! # scal-fs
//!
//! Files and folders replaced whole, the workspace's one way to write them: the new content
//! goes into a staging file or folder beside the destination and is renamed into place only
//! once complete, so a failure, a full disk or a killed process never leaves a half-written
//! file where a good one was, and the previous file survives any failure.
//!
//! - [`write_atomically`]: a file, written by a closure on the staging path (weights, model
//!   folders' files, figures, the gallery cache, pages);
//! - [`staging_builder`]: `tempfile`'s builder for the staging files and folders of writers
//!   that stream into a file or fill a folder before the rename (`extract`'s features, a
//!   dataset being extracted or generated, a checkpoint, the run report).
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
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = staging_builder(".staging-", false)
        .suffix(".tmp")
        .tempfile_in(dir)
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
