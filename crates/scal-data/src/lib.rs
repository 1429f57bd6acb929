//! # scal-data
//!
//! ```no_run
//! use scal_data::{DatasetName, TestTransform, read_dataset};
//! let market = read_dataset(DatasetName::Market1501, "datasets/market1501".as_ref(), Default::default())?;
//! let pixels = TestTransform::new(256, 128).load_batch(&[&market.query[0].path])?; // [1, 3, 256, 128]
//! # Ok::<(), scal_data::DataError>(())
//! ```
//!
//! What a ReID model reads: the datasets in their distributed layouts ([`read_dataset`]:
//! Market-1501, DukeMTMC-reID, CUHK03-NP, MSMT17, a custom layout), the synthetic dataset
//! ([`synth::generate`]), image folders listed in a fixed order, and the test-time transform
//! users know from torchvision (decode → RGB → bilinear resize → [0, 1] → ImageNet
//! mean/std), producing channel-first `f32` buffers ready to become a tensor; and for
//! training, the augmentation of reid-strong-baseline ([`TrainTransform`]), the P × K
//! sampler ([`PkSampler`]) and a prefetching loader ([`TrainLoader`]).

#![warn(missing_docs)]

pub mod augment;
mod complete;
pub mod datasets;
#[cfg(feature = "download")]
pub mod download;
mod error;
mod folder;
pub mod loader;
pub mod sampler;
mod spec;
pub mod synth;
mod transform;

pub use augment::{RandomErasing, TrainTransform};
pub use datasets::{
    DatasetName, DatasetSummary, ImageRecord, ReadOptions, ReidDataset, SplitSummary,
    parse_custom_name, parse_market_name, read_dataset,
};
pub use error::DataError;
pub use folder::{IMAGE_EXTENSIONS, ImageListing, is_image_file, list_images};
pub use loader::{BatchIter, HostBatch, LoaderOptions, SkippedImage, TrainLoader};
pub use sampler::{PkSampler, SamplerPosition};
pub use spec::{DATASETS_DIR, DatasetSpec};
pub use transform::{
    IMAGENET_MEAN, IMAGENET_STD, MAX_INPUT_SIZE, MIN_INPUT_SIZE, TestTransform, check_decodable,
    check_input_size, decode, decode_upright, resize_rgb,
};
