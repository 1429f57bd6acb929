use std::path::PathBuf;

/// What can go wrong while reading images.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The folder to read does not exist.
    #[error("image folder {} does not exist", path.display())]
    FolderNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path exists but is a file.
    #[error("{} is not a folder", path.display())]
    NotAFolder {
        /// The path given.
        path: PathBuf,
    },
    /// The folder holds no image file.
    #[error(
        "no images in {} ({skipped} other entries skipped; images are files ending in .jpg, .jpeg, .png, .bmp or .webp)",
        path.display()
    )]
    NoImages {
        /// The folder.
        path: PathBuf,
        /// Entries that were not image files.
        skipped: usize,
    },
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A dataset name the readers do not know.
    #[error(
        "unknown dataset `{name}`: expected market1501, dukemtmc, cuhk03-labeled, cuhk03-detected, msmt17 or custom"
    )]
    UnknownDataset {
        /// The name given.
        name: String,
    },
    /// A split folder or list file of a dataset is missing.
    #[error(
        "{} not found; expected layout: {layout}. Get the dataset with `cargo xtask download`, or generate the synthetic one with `cargo xtask synth`",
        path.display()
    )]
    MissingSplit {
        /// The expected path.
        path: PathBuf,
        /// A description of the layout.
        layout: String,
    },
    /// A split has no image.
    #[error("the {split} split ({}) has no images", path.display())]
    EmptySplit {
        /// train, query or gallery.
        split: String,
        /// Where it was read from.
        path: PathBuf,
    },
    /// A file name does not carry identity and camera.
    #[error("cannot parse identity and camera from {}: {reason}", path.display())]
    BadFileName {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A line of an MSMT17 list file is malformed.
    #[error("{} line {line}: {reason}", path.display())]
    BadListLine {
        /// The list file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The P x K sampler cannot be built.
    #[error("{0}")]
    InvalidSampler(String),
    /// The synthetic dataset cannot be generated with these settings.
    #[error("{0}")]
    InvalidSynth(String),
    /// A file with an image extension could not be decoded.
    #[error("cannot decode image {}: {message}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
}
