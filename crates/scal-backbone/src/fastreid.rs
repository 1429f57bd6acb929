//! FastReID's BN neck: the part of a FastReID checkpoint's head that its evaluation features
//! pass through (in FastReID 1.4.0, `EmbeddingHead` returns the post-BN feature at inference,
//! whatever `NECK_FEAT` says).

use std::path::Path;

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::store::{ApplyError, ModuleSnapshot, ModuleStore, PytorchStore};
use burn::tensor::{Device, Tensor};

use crate::weights::{BackboneError, CheckpointSource};

/// The head of a FastReID BoT model as far as its features go: `heads.bottleneck.0`, a
/// batch norm on the pooled feature.
#[derive(Module, Debug)]
pub struct FastreidNeck {
    /// `heads.bottleneck.0` (weight → gamma, bias → beta, running statistics).
    pub bottleneck: BatchNorm,
}

impl FastreidNeck {
    /// Reads the neck of a FastReID checkpoint (`{"model": …}` or a bare state dict) for
    /// pooled features of width `dim`.
    ///
    /// # Errors
    /// [`BackboneError::UnsupportedVariant`] when the head has no BN neck (`WITH_BNNECK:
    /// False`) or an embedding layer before it (`EMBEDDING_DIM > 0`);
    /// [`BackboneError::BrokenNeck`] when the neck has another width than `dim` or lacks
    /// entries;
    /// [`BackboneError::Read`] when the file cannot be parsed.
    pub fn load(path: &Path, dim: usize, device: &Device) -> Result<FastreidNeck, BackboneError> {
        let unsupported = |variant: &str| BackboneError::UnsupportedVariant {
            path: path.to_path_buf(),
            toolkit: CheckpointSource::Fastreid,
            variant: variant.to_string(),
        };
        let store = |top_level: Option<&str>| {
            let base = PytorchStore::from_file(path);
            match top_level {
                Some(key) => base.with_top_level_key(key),
                None => base,
            }
            .with_key_remapping(r"^(?:module\.)?heads\.bottleneck\.0\.", "bottleneck.")
            .allow_partial(true)
            .validate(false)
        };
        let mut wrapped = store(Some("model"));
        let mut store = if wrapped.keys().is_ok_and(|keys| !keys.is_empty()) {
            wrapped
        } else {
            store(None)
        };
        let read = |e: String| BackboneError::Read {
            path: path.to_path_buf(),
            message: e,
        };
        let keys = store.keys().map_err(|e| read(e.to_string()))?;
        if keys.iter().any(|k| k.starts_with("heads.bottleneck.1.")) {
            return Err(unsupported(
                "an embedding layer before the BN neck (MODEL.HEADS.EMBEDDING_DIM > 0)",
            ));
        }
        let mut neck = FastreidNeck {
            bottleneck: BatchNormConfig::new(dim).init(device),
        };
        let result = neck
            .load_from(&mut store)
            .map_err(|e| read(e.to_string()))?;
        if result.applied.is_empty() && result.errors.is_empty() {
            return Err(unsupported(
                "no BN neck (heads.bottleneck.0.*: MODEL.HEADS.WITH_BNNECK False)",
            ));
        }
        let broken = |problem: String| BackboneError::BrokenNeck {
            path: path.to_path_buf(),
            problem,
        };
        if let Some(found) = result.errors.iter().find_map(|e| match e {
            ApplyError::ShapeMismatch { found, .. } => Some(found.as_slice().to_vec()),
            _ => None,
        }) {
            // A vector's length is its channel count; any other shape is named as it is (a
            // [512, 2] entry was counted as 1024 channels: issue 42, D10).
            let holds = match found.as_slice() {
                [channels] => format!("has {channels} channels"),
                shape => format!("holds a {shape:?} tensor, not a vector of channels"),
            };
            return Err(broken(format!(
                "{holds}, but the backbone's pooled feature has {dim} (is the architecture \
                 right, or was the neck saved with another backbone?)"
            )));
        }
        if let Some(error) = result.errors.first() {
            return Err(broken(error.to_string()));
        }
        if !result.missing.is_empty() {
            let lacking: Vec<String> = result
                .missing
                .iter()
                .map(|(name, _)| {
                    let entry = name.trim_start_matches("bottleneck.");
                    match entry {
                        "gamma" => "weight",
                        "beta" => "bias",
                        other => other,
                    }
                    .to_string()
                })
                .collect();
            return Err(broken(format!(
                "lacks {} (a truncated or hand-edited checkpoint?)",
                lacking.join(", ")
            )));
        }
        let neck = crate::weights::in_f32(neck);
        crate::weights::check_finite_weights(&neck, path)?;
        Ok(neck)
    }

    /// FastReID's evaluation feature from the pooled backbone feature.
    ///
    /// # Shapes
    /// - `pooled`: `[N, D]`; output: `[N, D]`
    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        self.bottleneck.forward(pooled)
    }
}
