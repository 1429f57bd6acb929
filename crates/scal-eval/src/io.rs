//! Reading evaluation inputs from `.npy` files (the layout of `cargo xtask evaluate`).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use ndarray::{Array1, Array2};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyError, ReadNpyExt};

use crate::EvalError;

/// A distance matrix as stored: `float32` or `float64`.
#[derive(Debug, Clone, PartialEq)]
pub enum DistanceMatrix {
    /// A `float32` (`<f4`) file.
    F32(Array2<f32>),
    /// A `float64` (`<f8`) file.
    F64(Array2<f64>),
}

impl DistanceMatrix {
    /// `(rows, columns)`.
    pub fn dim(&self) -> (usize, usize) {
        match self {
            DistanceMatrix::F32(m) => m.dim(),
            DistanceMatrix::F64(m) => m.dim(),
        }
    }

    /// The values as `f64` (a copy for `f32` files).
    pub fn into_f64(self) -> Array2<f64> {
        match self {
            DistanceMatrix::F32(m) => m.mapv(f64::from),
            DistanceMatrix::F64(m) => m,
        }
    }
}

/// Opens a `.npy` file after checking that its data holds what its header claims: a header
/// that lies about the shape (10⁸ × 10⁸ over a few bytes) is an error naming the file, not
/// an allocation that aborts the process.
fn open(path: &Path) -> Result<BufReader<File>, EvalError> {
    use std::io::{Seek, SeekFrom};
    if !path.exists() {
        return Err(EvalError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    let read_error = |message: String| EvalError::Read {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = File::open(path)
        .map(BufReader::new)
        .map_err(|e| read_error(e.to_string()))?;
    let total = reader
        .get_ref()
        .metadata()
        .map_err(|e| read_error(e.to_string()))?
        .len();
    let header = Header::from_reader(&mut reader).map_err(|e| read_error(e.to_string()))?;
    let data = total.saturating_sub(
        reader
            .stream_position()
            .map_err(|e| read_error(e.to_string()))?,
    );
    // `'<f4'` → 4 bytes per element (descriptors end with the element size).
    let descriptor = header.type_descriptor.to_string();
    let digits: String = descriptor
        .trim_matches(|c| c == '\'' || c == '"')
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    let element = digits.chars().rev().collect::<String>().parse::<u64>().ok();
    let claimed = header
        .shape
        .iter()
        .try_fold(element.unwrap_or(0), |n, &d| n.checked_mul(d as u64));
    if element.is_some() && claimed.is_none_or(|c| c > data) {
        return Err(read_error(format!(
            "the header claims a {:?} array ({}), but the file holds {data} bytes of data",
            header.shape,
            claimed.map_or("more bytes than can be counted".to_string(), |c| format!(
                "{c} bytes"
            ))
        )));
    }
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| read_error(e.to_string()))?;
    Ok(reader)
}

fn npy_error(path: &Path, expected: &str, error: ReadNpyError) -> EvalError {
    let path = path.to_path_buf();
    match error {
        ReadNpyError::WrongDescriptor(found) => EvalError::UnsupportedDtype {
            path,
            found: found.to_string(),
            expected: expected.into(),
        },
        ReadNpyError::WrongNdim(want, found) => EvalError::Read {
            path,
            message: format!(
                "expected a {}-dimensional array, found {found} dimensions",
                want.map_or("?".to_string(), |w| w.to_string())
            ),
        },
        other => EvalError::Read {
            path,
            message: other.to_string(),
        },
    }
}

/// Reads a 2-D `float32` or `float64` array as it is stored.
pub fn read_distance_matrix(path: &Path) -> Result<DistanceMatrix, EvalError> {
    const EXPECTED: &str = "float32 or float64";
    match Array2::<f32>::read_npy(open(path)?) {
        Ok(m) => Ok(DistanceMatrix::F32(m)),
        Err(ReadNpyError::WrongDescriptor(_)) => Array2::<f64>::read_npy(open(path)?)
            .map(DistanceMatrix::F64)
            .map_err(|e| npy_error(path, EXPECTED, e)),
        Err(e) => Err(npy_error(path, EXPECTED, e)),
    }
}

/// Reads a 2-D feature array (`float32`; `float64` is converted).
pub fn read_features(path: &Path) -> Result<Array2<f32>, EvalError> {
    match read_distance_matrix(path)? {
        DistanceMatrix::F32(m) => Ok(m),
        DistanceMatrix::F64(m) => Ok(m.mapv(|v| v as f32)),
    }
}

/// Reads a 1-D `int32` or `int64` array of identities or camera ids.
pub fn read_ids(path: &Path) -> Result<Vec<i64>, EvalError> {
    const EXPECTED: &str = "int32 or int64";
    match Array1::<i64>::read_npy(open(path)?) {
        Ok(v) => Ok(v.to_vec()),
        Err(ReadNpyError::WrongDescriptor(_)) => Array1::<i32>::read_npy(open(path)?)
            .map(|v| v.iter().map(|&x| x as i64).collect())
            .map_err(|e| npy_error(path, EXPECTED, e)),
        Err(e) => Err(npy_error(path, EXPECTED, e)),
    }
}

/// The identity and camera vectors of an evaluation folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// Query identities (`q_pids.npy`).
    pub q_pids: Vec<i64>,
    /// Gallery identities (`g_pids.npy`).
    pub g_pids: Vec<i64>,
    /// Query cameras (`q_camids.npy`).
    pub q_camids: Vec<i64>,
    /// Gallery cameras (`g_camids.npy`).
    pub g_camids: Vec<i64>,
}

impl Labels {
    /// Reads `q_pids.npy`, `g_pids.npy`, `q_camids.npy`, `g_camids.npy` from `dir` and
    /// checks that the query files agree with each other, as do the gallery files.
    pub fn read_dir(dir: &Path) -> Result<Labels, EvalError> {
        let labels = Labels {
            q_pids: read_ids(&dir.join("q_pids.npy"))?,
            g_pids: read_ids(&dir.join("g_pids.npy"))?,
            q_camids: read_ids(&dir.join("q_camids.npy"))?,
            g_camids: read_ids(&dir.join("g_camids.npy"))?,
        };
        for (a, b, na, nb) in [
            (
                &labels.q_pids,
                &labels.q_camids,
                "q_pids.npy",
                "q_camids.npy",
            ),
            (
                &labels.g_pids,
                &labels.g_camids,
                "g_pids.npy",
                "g_camids.npy",
            ),
        ] {
            if a.is_empty() {
                return Err(EvalError::Empty {
                    what: dir.join(na).display().to_string(),
                });
            }
            if a.len() != b.len() {
                return Err(EvalError::ShapeMismatch {
                    what: format!(
                        "{} length ({} has that many entries)",
                        dir.join(nb).display(),
                        na
                    ),
                    expected: a.len(),
                    found: b.len(),
                });
            }
        }
        Ok(labels)
    }

    /// Checks that a matrix has one row per query and one column per gallery item.
    pub fn check_matrix(&self, path: &Path, dim: (usize, usize)) -> Result<(), EvalError> {
        check_dim(
            path,
            dim,
            (self.q_pids.len(), self.g_pids.len()),
            "q_pids.npy",
            "g_pids.npy",
        )
    }
}

/// Checks `dim` against `(rows, cols)`, naming the file and what set the expectation.
pub fn check_dim(
    path: &Path,
    dim: (usize, usize),
    expected: (usize, usize),
    rows_from: &str,
    cols_from: &str,
) -> Result<(), EvalError> {
    if dim.0 != expected.0 {
        return Err(EvalError::ShapeMismatch {
            what: format!(
                "{} rows ({rows_from} has that many entries)",
                path.display()
            ),
            expected: expected.0,
            found: dim.0,
        });
    }
    if dim.1 != expected.1 {
        return Err(EvalError::ShapeMismatch {
            what: format!(
                "{} columns ({cols_from} has that many entries)",
                path.display()
            ),
            expected: expected.1,
            found: dim.1,
        });
    }
    Ok(())
}
