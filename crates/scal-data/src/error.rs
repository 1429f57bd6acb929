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
    /// A file with an image extension could not be decoded.
    #[error("cannot decode image {}: {message}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
}
