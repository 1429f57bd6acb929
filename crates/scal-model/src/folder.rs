//! The model folder: `model.json` (the [`ScalConfig`]), `model.bpk` (every parameter and
//! running statistic, burnpack) and `checksums.sha256` (the SHA-256 of each file, in the
//! format `sha256sum -c` checks). Run checkpoints (`runs/<name>/best`, `last`) are model
//! folders with training state beside it, listed in the same checksum file.
//!
//! Loading verifies every listed file first, so flipped bits on disk are an error naming the
//! file instead of damaged weights; folders written before checksums existed load as before.

use std::path::Path;

use burn::config::Config;
use burn::tensor::Device;

use crate::{ModelError, ScalConfig, ScalModel};

/// The configuration file of a model folder.
pub const CONFIG_FILE: &str = "model.json";
/// The weights file of a model folder.
pub const WEIGHTS_FILE: &str = "model.bpk";
/// The checksum file of a model folder (`sha256sum` format).
pub const CHECKSUMS_FILE: &str = "checksums.sha256";

/// The SHA-256 of a file, in lowercase hex.
fn sha256_of(path: &Path) -> Result<String, ModelError> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| ModelError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Writes `dir/checksums.sha256`: the SHA-256 of each of `files` (names in `dir`), one
/// `HEX  NAME` line each, atomically.
pub fn write_checksums(dir: &Path, files: &[&str]) -> Result<(), ModelError> {
    let mut text = String::new();
    for name in files {
        text.push_str(&format!("{}  {name}\n", sha256_of(&dir.join(name))?));
    }
    scal_fs::write_atomically(&dir.join(CHECKSUMS_FILE), |tmp| {
        std::fs::write(tmp, &text).map_err(|e| e.to_string())
    })?;
    Ok(())
}

/// Checks every file listed in `dir/checksums.sha256` against its recorded SHA-256. The list
/// must be whole: every line a 64-digit hexadecimal digest, two spaces and a name, and every
/// file of `required` (the files the caller will read) listed, so that an emptied or
/// truncated list cannot turn the check off. A folder without the file (written before
/// checksums existed) passes.
///
/// # Errors
/// [`ModelError::Damaged`] naming the checksum file when it is malformed or leaves out a
/// required file, or the first file that is missing or differs.
pub fn verify_checksums(dir: &Path, required: &[&str]) -> Result<(), ModelError> {
    let list = dir.join(CHECKSUMS_FILE);
    let text = match std::fs::read_to_string(&list) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(ModelError::Io {
                path: list,
                message: e.to_string(),
            });
        }
    };
    let damaged = |problem: String| ModelError::Damaged {
        path: list.clone(),
        problem,
    };
    let mut entries = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let entry = line
            .split_once("  ")
            .filter(|(digest, name)| {
                digest.len() == 64
                    && digest.bytes().all(|b| b.is_ascii_hexdigit())
                    && !name.is_empty()
            })
            .ok_or_else(|| damaged(format!("malformed line `{line}`")))?;
        entries.push(entry);
    }
    if let Some(left_out) = required
        .iter()
        .find(|file| !entries.iter().any(|(_, name)| name == *file))
    {
        return Err(damaged(format!(
            "does not list {left_out}, which this folder's loader reads: the list is incomplete (emptied or cut short), so the folder cannot be verified"
        )));
    }
    for (digest, name) in entries {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(ModelError::Damaged {
                path,
                problem: "listed in checksums.sha256 but missing".into(),
            });
        }
        let found = sha256_of(&path)?;
        if !found.eq_ignore_ascii_case(digest) {
            return Err(ModelError::Damaged {
                path,
                problem: format!(
                    "its SHA-256 is {found}, but {digest} was recorded when it was written: the file was changed or damaged on disk"
                ),
            });
        }
    }
    Ok(())
}

impl ScalModel {
    /// Writes `model.json` (from `config`, the configuration the model was built from),
    /// `model.bpk` and their `checksums.sha256` into the existing folder `dir`, each file
    /// atomically.
    pub fn save_dir(&self, config: &ScalConfig, dir: &Path) -> Result<(), ModelError> {
        self.save_checkpoint(&dir.join(WEIGHTS_FILE))?;
        let path = dir.join(CONFIG_FILE);
        scal_fs::write_atomically(&path, |tmp| config.save(tmp).map_err(|e| e.to_string()))?;
        write_checksums(dir, &[CONFIG_FILE, WEIGHTS_FILE])
    }

    /// The configuration of the model folder `dir`, checked ([`ScalConfig::check`]) but not
    /// verified against the checksums: [`ScalModel::load_dir`] does that.
    pub fn config_of_dir(dir: &Path) -> Result<ScalConfig, ModelError> {
        let path = dir.join(CONFIG_FILE);
        if !path.is_file() {
            return Err(ModelError::NotAModelFolder {
                path: dir.to_path_buf(),
            });
        }
        let config = ScalConfig::load(&path).map_err(|e| ModelError::BadConfig {
            path: path.clone(),
            message: e.to_string(),
        })?;
        config
            .check()
            .map_err(|message| ModelError::BadConfig { path, message })?;
        Ok(config)
    }

    /// Builds the model of the folder `dir` on `device` and loads its weights, after checking
    /// the folder's files against their checksums (strictly: see
    /// [`ScalModel::load_checkpoint`]).
    ///
    /// A folder swapped by a training run while it is read (`RUN/last`) is read again
    /// ([`scal_fs::read_folder_whole`]), not reported as damaged.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<(ScalModel, ScalConfig), ModelError> {
        scal_fs::read_folder_whole(dir, || -> Result<_, ModelError> {
            let config = ScalModel::config_of_dir(dir)?;
            verify_checksums(dir, &[CONFIG_FILE, WEIGHTS_FILE])?;
            let model = config
                .init(device)
                .load_checkpoint(&dir.join(WEIGHTS_FILE))?;
            Ok((model, config))
        })
    }
}
