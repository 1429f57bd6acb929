//! A ResNet trained elsewhere (torchvision, torchreid, FastReID), with the feature that
//! toolkit evaluates with.

use std::path::Path;

use burn::tensor::{Device, Tensor};
use scal_backbone::{
    CheckpointSource, FastreidNeck, LoadOptions, ResNet, ResNetArch, ResNetConfig, load_weights,
};

use crate::{Embedder, InferError};

/// A ResNet from a weights file of torchvision, torchreid or FastReID: the globally pooled
/// backbone feature, after FastReID's BN neck for FastReID's weights.
#[derive(Debug)]
pub struct ForeignModel {
    backbone: ResNet,
    neck: Option<FastreidNeck>,
}

/// The last stage's stride each toolkit trains with: 2 for torchreid's ResNets, 1
/// (the ReID convention) for FastReID's and for torchvision weights used for ReID.
pub fn default_last_stride(source: CheckpointSource) -> u8 {
    match source {
        CheckpointSource::Torchreid => 2,
        CheckpointSource::Torchvision | CheckpointSource::Fastreid => 1,
    }
}

impl ForeignModel {
    /// Reads `weights`, written by `source`, into an `arch` backbone of `base_width` (64 for
    /// every published model) with the given last stride, or the toolkit's
    /// ([`default_last_stride`]).
    ///
    /// # Errors
    /// [`InferError::Backbone`] when the file cannot be read or does not fit the
    /// architecture (it names the file and the first parameter that differs).
    pub fn load(
        weights: &Path,
        source: CheckpointSource,
        arch: ResNetArch,
        last_stride: Option<u8>,
        base_width: usize,
        device: &Device,
    ) -> Result<ForeignModel, InferError> {
        let last_stride = last_stride.unwrap_or(default_last_stride(source));
        let model = ResNetConfig::new(arch)
            .with_last_stride(last_stride as usize)
            .with_base_width(base_width)
            .with_stem_pool_ceil(source == CheckpointSource::Fastreid)
            .init(device);
        let options = LoadOptions {
            source,
            ..LoadOptions::default()
        };
        let (backbone, _) = load_weights(&model, weights, options)?;
        let neck = match source {
            CheckpointSource::Fastreid => {
                Some(FastreidNeck::load(weights, backbone.feature_dim(), device)?)
            }
            CheckpointSource::Torchvision | CheckpointSource::Torchreid => None,
        };
        Ok(ForeignModel { backbone, neck })
    }

    /// Feature width.
    pub fn dim(&self) -> usize {
        self.backbone.feature_dim()
    }

    /// The pooled feature, after the neck when there is one.
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]`; returns `[N, D]`
    fn feature(&self, images: Tensor<4>) -> Tensor<2> {
        let pooled = self.backbone.forward_pooled(images);
        match &self.neck {
            Some(neck) => neck.forward(pooled),
            None => pooled,
        }
    }
}

/// The toolkit's own evaluation feature (not normalised: torchreid and FastReID evaluate
/// with it as it is), flip-averaged on request.
impl Embedder for ForeignModel {
    fn embed_batch(&self, images: Tensor<4>, flip: bool) -> Tensor<2> {
        let feature = self.feature(images.clone());
        if flip {
            (feature + self.feature(images.flip([3]))).div_scalar(2.0)
        } else {
            feature
        }
    }
}
