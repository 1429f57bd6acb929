//! # scal-backbone
//!
//! ```no_run
//! # use scal_backbone::{ResNetArch, ResNetConfig};
//! let device = burn::tensor::Device::default();
//! let resnet = ResNetConfig::new(ResNetArch::ResNet50).init(&device);
//! let resnet = resnet.with_weights("weights/resnet50-0676ba61.pth".as_ref())?; // torchvision's
//! # Ok::<(), scal_backbone::BackboneError>(())
//! ```
//!
//! ResNet-18/34/50/101 in torchvision's layout for person re-identification: the parameter
//! names are torchvision's state-dict keys, `last_stride` 1 (the ReID convention) or 2, an
//! optional stem without ReLU, and a forward pass that can be run stage by stage so that
//! attention modules can sit between the stages.
//!
//! Weights: torchvision state dicts load from `.pth`/`.pt` and `.safetensors`
//! ([`load_weights`], strict by default), native Burn weights save and load as `.bpk`
//! ([`save_native`]), and [`save_torchvision_safetensors`] writes a file PyTorch can load.
//! Training checkpoints of torchreid and FastReID load too ([`CheckpointSource`] in
//! [`LoadOptions`]; FastReID's stem pooling with `stem_pool_ceil` and its BN neck with
//! [`FastreidNeck`]).
//!
//! ```no_run
//! use burn::tensor::{Device, Tensor};
//! use scal_backbone::{ResNetArch, ResNetConfig};
//!
//! let device = Device::flex();
//! let model = ResNetConfig::new(ResNetArch::ResNet50)
//!     .with_last_stride(1)
//!     .init(&device)
//!     .with_weights("resnet50-0676ba61.pth".as_ref())
//!     .expect("torchvision weights");
//! let features = model.forward_pooled(Tensor::zeros([1, 3, 256, 128], &device));
//! assert_eq!(features.dims(), [1, 2048]);
//! ```

#![warn(missing_docs)]

mod arch;
mod fastreid;
mod resnet;
mod weights;

pub use arch::{BlockKind, ResNetArch, UnknownArch};
pub use fastreid::FastreidNeck;
pub use resnet::{Downsample, ResNet, ResNetConfig, ResidualBlock, global_average_pool};
pub use weights::{
    BackboneError, CheckpointSource, IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STD, LoadOptions,
    LoadReport, UnknownSource, WeightFormat, load_weights, save_native,
    save_torchvision_safetensors,
};
