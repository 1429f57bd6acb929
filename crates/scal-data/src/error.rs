use std::path::PathBuf;

/// What can go wrong while reading images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The folder to read does not exist.
    #[error("image folder {} does not exist", path.display())]
    FolderNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The dataset folder does not exist.
    #[error("dataset folder {} does not exist", path.display())]
    DatasetNotFound {
        /// The path given.
        path: PathBuf,
        /// The dataset that was to be read there.
        dataset: crate::DatasetName,
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
    /// A file or folder could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An archive entry could not be written out (a name too long for the file system, a
    /// full disk).
    #[error("cannot extract {entry} from {}: {source}", archive.display())]
    Extract {
        /// The archive.
        archive: PathBuf,
        /// The entry's path in the archive.
        entry: String,
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
    #[error("{} not found; expected layout: {layout}", path.display())]
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
    /// An archive to install is not there.
    #[error("archive {} does not exist", path.display())]
    ArchiveNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// An archive to install is a folder.
    #[error("archive {} is a folder; name the archive file (.zip, .tar or .tar.gz)", path.display())]
    ArchiveIsFolder {
        /// The path given.
        path: PathBuf,
    },
    /// An archive that does not hold the dataset it was installed as.
    #[error("{} does not hold {dataset} in its layout ({problem}); nothing was installed", archive.display())]
    NotTheDataset {
        /// The archive.
        archive: PathBuf,
        /// The dataset it was to be.
        dataset: crate::DatasetName,
        /// What reading it found.
        problem: String,
    },
    /// The destination of an installation exists already.
    #[error("{} already exists; remove it to install again", path.display())]
    AlreadyExists {
        /// The destination.
        path: PathBuf,
    },
    /// An archive's digest differs from the one recorded.
    #[error("{} has {algorithm} {found}, expected {expected}: a corrupt or different archive", path.display())]
    ChecksumMismatch {
        /// The archive.
        path: PathBuf,
        /// SHA-256 or MD5.
        algorithm: &'static str,
        /// The recorded digest.
        expected: String,
        /// The archive's digest.
        found: String,
    },
    /// An archive entry would be written outside the target folder.
    #[error("{} contains an unsafe entry `{entry}`: {reason}; nothing was extracted", path.display())]
    UnsafeArchive {
        /// The archive.
        path: PathBuf,
        /// The entry's name.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// An archive could not be read.
    #[error("cannot read archive {}: {message}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A download failed.
    #[error("downloading {url} failed: {message}")]
    Download {
        /// The address.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// P or K of a P × K sampler is 0.
    #[error("P and K must be at least 1, got P = {p}, K = {k}")]
    EmptyBatch {
        /// Identities per batch.
        p: usize,
        /// Images per identity.
        k: usize,
    },
    /// The training split has fewer identities than one batch needs.
    #[error(
        "the training split has {identities} identities ({images} images), fewer than one batch of P = {p} identities: lower P"
    )]
    TooFewIdentities {
        /// Identities in the split.
        identities: usize,
        /// Images in the split.
        images: usize,
        /// Identities per batch.
        p: usize,
    },
    /// A setting of the synthetic dataset out of its range.
    #[error("synthetic dataset: {setting} {problem}")]
    InvalidSynth {
        /// The setting (`cameras`, `train_ids`, `test_ids`).
        setting: &'static str,
        /// What is accepted.
        problem: String,
    },
    /// The output folder of a generation exists already.
    #[error("{} already exists; remove it first to generate again", path.display())]
    OutputExists {
        /// The folder.
        path: PathBuf,
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
