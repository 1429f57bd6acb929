//! A model folder (a run's `best/` or `last/`) loaded for inference.

use std::path::Path;

use burn::tensor::Device;
use scal_model::{CHECKSUMS_FILE, CONFIG_FILE, ScalConfig, ScalModel};

use crate::InferError;

/// A model folder, loaded.
#[derive(Debug)]
pub struct LoadedModel {
    /// The network, in inference mode on the device it was loaded on.
    pub model: ScalModel,
    /// Its `model.json`.
    pub config: ScalConfig,
    /// Whether the folder has a `checksums.sha256` (and its files matched it). A folder
    /// without one, written before checksums existed or a copy that lost the file, loads
    /// unverified: a caller should say so.
    pub verified: bool,
}

/// Loads the model folder `dir` after the checks of [`ScalModel::load_dir`] (the checksums,
/// the configuration) and the rule for input sizes that the images are resized to
/// ([`scal_data::check_input_size`] on `model.json`'s height and width).
///
/// # Errors
/// [`InferError::InputSize`] naming `model.json`; [`InferError::Model`] for a missing,
/// damaged or mismatched folder.
pub fn load_model_folder(dir: &Path, device: &Device) -> Result<LoadedModel, InferError> {
    let config = ScalModel::config_of_dir(dir)?;
    scal_data::check_input_size(config.height, config.width).map_err(|problem| {
        InferError::InputSize {
            file: dir.join(CONFIG_FILE),
            problem,
        }
    })?;
    let (model, config) = ScalModel::load_dir(dir, device)?;
    Ok(LoadedModel {
        model,
        config,
        verified: dir.join(CHECKSUMS_FILE).is_file(),
    })
}
