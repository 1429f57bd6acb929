use std::path::PathBuf;

/// Why an evaluation could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// An input file is not there.
    #[error("{} does not exist", path.display())]
    MissingFile {
        /// The expected path.
        path: PathBuf,
    },
    /// An input file could not be read or parsed.
    #[error("cannot read {}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An input file holds an unsupported element type.
    #[error("{} has dtype {found}; expected {expected}", path.display())]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The numpy descriptor found.
        found: String,
        /// What is accepted.
        expected: String,
    },
    /// Two inputs disagree in size.
    #[error("{what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// Which input and which dimension.
        what: String,
        /// The size implied by the other inputs.
        expected: usize,
        /// The size found.
        found: usize,
    },
    /// An input has no entries.
    #[error("{what} is empty")]
    Empty {
        /// Which input.
        what: String,
    },
    /// A distance is NaN or infinite.
    #[error("{what} has a non-finite value ({value}) at row {row}, column {col}")]
    NonFinite {
        /// Which matrix.
        what: String,
        /// Row index (0-based).
        row: usize,
        /// Column index (0-based).
        col: usize,
        /// The value, as text (`NaN`, `inf`, `-inf`).
        value: String,
    },
    /// Features so large that the squared distances computed from them overflow `f32`.
    #[error(
        "{what}: the squared distances of row {row} overflow float32; scale the features down (e.g. L2-normalise them)"
    )]
    DistanceOverflow {
        /// Which input (`query features`, `gallery features`).
        what: String,
        /// Row index in that input (0-based).
        row: usize,
    },
    /// No query has a correct match in the gallery (after removing same-camera matches).
    #[error(
        "no query has a valid match in the gallery (same identity, other camera): check that query and gallery ids and cameras are the right files"
    )]
    NoValidQuery,
    /// A parameter is out of range.
    #[error("{name}: {problem}")]
    InvalidParameter {
        /// The parameter (`max_rank`, `k1`, `lambda`).
        name: &'static str,
        /// What is accepted.
        problem: String,
    },
}
