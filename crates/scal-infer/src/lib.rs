//! # scal-infer
//!
//! A trained model without the trainer: what `extract`, `evaluate`, `query`, `export` and
//! the report do with a model, as a library.
//!
//! ```no_run
//! use scal_infer::{EmbedOptions, embed_paths, load_model_folder};
//!
//! let device = burn::tensor::Device::default();
//! let loaded = load_model_folder("runs/<name>/last".as_ref(), &device)?;
//! let images = scal_data::list_images("photos".as_ref())?.images;
//! let options = EmbedOptions::new(loaded.config.height, loaded.config.width);
//! let features = embed_paths(&loaded.model, &images, options, &device, &mut |_| {})?;
//! // one L2-normalised row per image: [N, D]
//! # Ok::<(), scal_infer::InferError>(())
//! ```
//!
//! - [`load_model_folder`]: a model folder (`runs/NAME/best` or `last`), verified against its
//!   checksums, its input size checked.
//! - [`ForeignModel`]: a ResNet trained by torchvision, torchreid or FastReID, giving the
//!   feature that toolkit evaluates with.
//! - [`Embedder`] and [`embed_paths`]: either model on image files, in batches,
//!   flip-averaged on request (the one embedding loop of the workspace).
//! - [`QueryGallery`] and [`evaluate_model`]: the query/gallery evaluation (Euclidean
//!   distances, CMC / mAP / mINP, k-reciprocal re-ranking) that `evaluate --checkpoint`,
//!   `evaluate --weights` and the trainer's evaluation share.
//! - [`GalleryCache`] and [`rank`]: a folder of gallery photos ranked for query photos, its
//!   features cached outside it and recomputed when the gallery, the model or the cached
//!   file changed.
//! - `to_onnx` (cargo feature `onnx`): the inference graph as ONNX. It needs burn-onnx with
//!   the patches of this workspace's `vendor/burn-onnx` (see its README); a project outside
//!   the workspace gets them by copying that `[patch.crates-io]` entry.
//!
//! Libraries take a device and return errors with data ([`InferError`]); they never print.

#![warn(missing_docs)]

mod embed;
mod evaluation;
mod folder;
mod foreign;
mod gallery;
pub mod index;
#[cfg(feature = "onnx")]
mod onnx;

use std::path::PathBuf;

pub use embed::{EmbedOptions, Embedder, embed_paths};
pub use evaluation::{Evaluation, QueryGallery, Scores, evaluate_model, labels_of};
pub use folder::{LoadedModel, load_model_folder};
pub use foreign::{ForeignModel, default_last_stride};
pub use gallery::{CacheNote, GalleryCache, GalleryFeatures, Match, Ranking, inside_folder, rank};
#[cfg(feature = "onnx")]
pub use onnx::{OnnxError, to_onnx};

/// Why loading, embedding or evaluating failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// An image, a folder or a dataset could not be read.
    #[error(transparent)]
    Data(#[from] scal_data::DataError),
    /// The evaluation refused its inputs (sizes, labels, non-finite distances).
    #[error(transparent)]
    Eval(#[from] scal_eval::EvalError),
    /// A model folder could not be read (missing, damaged, another configuration).
    #[error(transparent)]
    Model(#[from] scal_model::ModelError),
    /// A weights file could not be read as the backbone asked for.
    #[error(transparent)]
    Backbone(#[from] scal_backbone::BackboneError),
    /// A model folder's `model.json` gives an input size the images cannot be resized to.
    #[error("{}: height and width: {problem}", file.display())]
    InputSize {
        /// The `model.json`.
        file: PathBuf,
        /// What is wrong with the size.
        problem: String,
    },
    /// A file or folder could not be read or resolved.
    #[error("reading {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A gallery-feature cache folder inside the gallery it serves (its files would be read
    /// as photos).
    #[error("the cache folder {} is inside the gallery {}", cache.display(), gallery.display())]
    CacheInsideGallery {
        /// The cache folder.
        cache: PathBuf,
        /// The gallery folder.
        gallery: PathBuf,
    },
    /// A feature holds a NaN or an infinity: the weights do (a diverged run), or a batch
    /// norm's running variance is negative. Nothing is written from such features.
    #[error(
        "the feature of {} is not finite (NaN or infinite): the model's weights hold NaN or infinite values (a diverged run?) or a batch norm has a negative running variance",
        image.display()
    )]
    NonFiniteFeature {
        /// The first image with such a feature.
        image: PathBuf,
    },
    /// A file could not be written (its previous version, if any, is kept).
    #[error(transparent)]
    Write(#[from] scal_fs::FsError),
    /// A file is not a gallery index.
    #[error("{} is not a gallery index (it does not start with the index file's magic bytes)", path.display())]
    NotAnIndex {
        /// The file.
        path: PathBuf,
    },
    /// A gallery index file is damaged, truncated or inconsistent.
    #[error("the gallery index {}: {problem}", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Features of another dimension than a gallery index's.
    #[error("the gallery index {} holds {index}-d features; these are {given}-d", path.display())]
    IndexDimension {
        /// The index file.
        path: PathBuf,
        /// The index's dimension.
        index: usize,
        /// The features' dimension.
        given: usize,
    },
    /// Features from another model than a gallery index's.
    #[error("the gallery index {} was built from {index}; these features are from {given}", path.display())]
    IndexSource {
        /// The index file.
        path: PathBuf,
        /// What made the index's features.
        index: String,
        /// What made the given features.
        given: String,
    },
    /// Features refused by an index they are being added to.
    #[error("the features to index: {problem}")]
    IndexInput {
        /// What is wrong with them.
        problem: String,
    },
    /// The device did not hand the features back as 32-bit floats.
    #[error("reading features back from the device: {problem}")]
    Readback {
        /// What Burn said.
        problem: String,
    },
}
