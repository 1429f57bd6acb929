//! The model folder: `model.json` (the [`ScalConfig`]) and `model.bpk` (every parameter and
//! running statistic, burnpack). Run checkpoints (`runs/<name>/best`, `last`) are model
//! folders with training state beside it.

use std::path::Path;

use burn::config::Config;
use burn::tensor::Device;

use crate::{ModelError, ScalConfig, ScalModel};

/// The configuration file of a model folder.
pub const CONFIG_FILE: &str = "model.json";
/// The weights file of a model folder.
pub const WEIGHTS_FILE: &str = "model.bpk";

impl ScalModel {
    /// Writes `model.json` (from `config`, the configuration the model was built from) and
    /// `model.bpk` into the existing folder `dir`, each file atomically.
    pub fn save_dir(&self, config: &ScalConfig, dir: &Path) -> Result<(), ModelError> {
        self.save_checkpoint(&dir.join(WEIGHTS_FILE))?;
        let path = dir.join(CONFIG_FILE);
        scal_backbone::write_atomically(&path, |tmp| config.save(tmp).map_err(|e| e.to_string()))?;
        Ok(())
    }

    /// The configuration of the model folder `dir`.
    pub fn config_of_dir(dir: &Path) -> Result<ScalConfig, ModelError> {
        let path = dir.join(CONFIG_FILE);
        if !path.is_file() {
            return Err(ModelError::NotAModelFolder {
                path: dir.to_path_buf(),
            });
        }
        ScalConfig::load(&path).map_err(|e| ModelError::BadConfig {
            path,
            message: e.to_string(),
        })
    }

    /// Builds the model of the folder `dir` on `device` and loads its weights (strictly:
    /// see [`ScalModel::load_checkpoint`]).
    pub fn load_dir(dir: &Path, device: &Device) -> Result<(ScalModel, ScalConfig), ModelError> {
        let config = ScalModel::config_of_dir(dir)?;
        let model = config
            .init(device)
            .load_checkpoint(&dir.join(WEIGHTS_FILE))?;
        Ok((model, config))
    }
}
