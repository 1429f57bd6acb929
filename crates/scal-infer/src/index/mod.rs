//! A gallery index: nearest-neighbour search over a gallery's features behind one trait
//! ([`NearestNeighbours`]), with ReID's protocol built in (a query's own identity seen by its
//! own camera is left out where the labels are known), kept in one checked file.
//!
//! # The index file (`.scalidx`, this module is its one owner)
//! ```text
//! b"SCALIDX\0"                      magic, 8 bytes
//! u32 LE                            format (1)
//! u64 LE, then that many bytes      the header, JSON (IndexHeader)
//! u64 LE, then that many bytes      the engine's payload (its own serialisation)
//! 32 bytes                          SHA-256 of everything before it
//! ```
//! Opening checks the magic, the lengths, the checksum, the header against the payload and,
//! when asked, the model and the feature dimension; writing goes through
//! [`scal_fs::write_atomically`], so an interrupted build or `add` leaves the previous file
//! (or none), never half of one.

mod exact;
mod hnsw;

use std::path::{Path, PathBuf};

use ndarray::{ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use exact::ExactSearch;
pub use hnsw::{
    CONNECTIVITY, DEFAULT_EXPANSION_SEARCH, EXPANSION_ADD, HnswSearch, Storage as HnswStorage,
};

use crate::InferError;

/// An index file's first bytes.
pub const INDEX_MAGIC: &[u8; 8] = b"SCALIDX\0";
const MAGIC: &[u8; 8] = INDEX_MAGIC;
/// The file format this code writes and reads.
pub const INDEX_FORMAT: u32 = 1;

/// A gallery row near a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// The gallery row (the order the features were added in).
    pub row: usize,
    /// Euclidean distance to the query.
    pub distance: f32,
}

/// The search engines an index can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Engine {
    /// Every row compared ([`ExactSearch`]): the reference.
    Exact,
    /// An HNSW graph with the vectors as `f32` ([`HnswSearch`]): approximate.
    Hnsw,
    /// An HNSW graph with the vectors as `f16`: approximate, half the vectors' memory.
    HnswF16,
}

impl Engine {
    /// The engine's name in the header and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Exact => "exact",
            Engine::Hnsw => "hnsw",
            Engine::HnswF16 => "hnsw-f16",
        }
    }

    /// Every engine, by name.
    pub const ALL: [Engine; 3] = [Engine::Exact, Engine::Hnsw, Engine::HnswF16];

    /// How an HNSW engine stores its vectors (`None` for exact search).
    fn hnsw_storage(self) -> Option<hnsw::Storage> {
        match self {
            Engine::Exact => None,
            Engine::Hnsw => Some(hnsw::Storage::F32),
            Engine::HnswF16 => Some(hnsw::Storage::F16),
        }
    }

    /// A new, empty engine for `dim`-dimensional features. `Err` says why it cannot be made.
    pub fn create(self, dim: usize) -> Result<Box<dyn NearestNeighbours>, String> {
        Ok(match self.hnsw_storage() {
            None => Box::new(ExactSearch::new(dim)),
            Some(storage) => Box::new(HnswSearch::new(dim, storage)?),
        })
    }

    fn read_payload(
        self,
        payload: &[u8],
        count: usize,
        dim: usize,
    ) -> Result<Box<dyn NearestNeighbours>, String> {
        Ok(match self.hnsw_storage() {
            None => Box::new(ExactSearch::from_payload(payload, count, dim)?),
            Some(storage) => Box::new(HnswSearch::from_payload(payload, count, dim, storage)?),
        })
    }

    /// Bytes of memory a build of `count` × `dim` features needs at its peak, estimated
    /// (the features, the engine's structure and the file's bytes while it is written).
    pub fn build_memory_estimate(self, count: usize, dim: usize) -> u64 {
        let features = count as u64 * dim as u64 * 4;
        match self.hnsw_storage() {
            // The rows, plus the payload and the file's buffer while it is written.
            None => 3 * features,
            // The features given, then the graph, its payload and the file's buffer. Per
            // row: its stored vector, the bottom layer's 2 M neighbour slots (4 bytes each),
            // the upper layers' share and usearch's bookkeeping (about 64 bytes).
            Some(storage) => {
                let per_row = (dim * storage.bytes() + 2 * CONNECTIVITY * 4 + 64) as u64;
                features + 3 * count as u64 * per_row
            }
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Engine::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown engine {s:?}"))
    }
}

/// Nearest-neighbour search over gallery features, exact or approximate: what a
/// [`GalleryIndex`] holds. Rows are numbered in the order they were added.
pub trait NearestNeighbours: Send + Sync {
    /// Which engine this is.
    fn engine(&self) -> Engine;
    /// The feature dimension.
    fn dim(&self) -> usize;
    /// Rows held.
    fn len(&self) -> usize;
    /// Whether no row is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends rows (numbered after the ones held). `Err` says why the engine refused.
    ///
    /// # Shapes
    /// - `rows`: `[N, dim]`
    fn add(&mut self, rows: ArrayView2<'_, f32>) -> Result<(), String>;
    /// The `top` rows nearest `query` (among those `keep` accepts, when given), nearest
    /// first. An approximate engine may miss some of the true nearest rows.
    ///
    /// # Shapes
    /// - `query`: `[dim]`
    fn search(
        &self,
        query: ArrayView1<'_, f32>,
        top: usize,
        keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Vec<Neighbour>;
    /// Sets how many candidates an approximate engine considers per search (HNSW's
    /// efSearch): more finds more of the true neighbours and takes longer. Exact search
    /// ignores it.
    fn set_search_expansion(&mut self, _expansion: usize) {}
    /// The engine's own serialisation, read back by [`GalleryIndex::open`].
    fn payload(&self) -> Vec<u8>;
}

/// Identities and cameras of the gallery rows, where known: the protocol's exclusion and the
/// evaluation need them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GalleryLabels {
    /// Identity of each row.
    pub pids: Vec<i64>,
    /// Camera of each row.
    pub camids: Vec<i64>,
}

/// What made an index's features: a checkpoint (its digest, input size and flip setting),
/// or a features folder whose model is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FeatureSource {
    /// A trained model folder's features.
    Checkpoint {
        /// SHA-256 of the model folder's `checksums.sha256` (its weights and configuration).
        sha256: String,
        /// Input height and width.
        size: (usize, usize),
        /// Whether features were averaged with the mirrored image's.
        flip: bool,
    },
    /// Features read from `.npy` files (the model that made them is not recorded).
    Features,
}

impl FeatureSource {
    /// The source of features embedded by the model folder `checkpoint` with `options`.
    ///
    /// # Errors
    /// [`InferError::Io`] when the folder's `checksums.sha256` (or weights) cannot be read.
    pub fn checkpoint(
        checkpoint: &Path,
        options: &crate::EmbedOptions,
    ) -> Result<Self, InferError> {
        Ok(FeatureSource::Checkpoint {
            sha256: crate::gallery::checkpoint_digest(checkpoint)?,
            size: (options.height, options.width),
            flip: options.flip,
        })
    }
}

impl std::fmt::Display for FeatureSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeatureSource::Checkpoint { sha256, size, flip } => write!(
                f,
                "the checkpoint with checksums sha256 {}… at {}x{}{}",
                &sha256[..sha256.len().min(12)],
                size.0,
                size.1,
                if *flip { ", flip-averaged" } else { "" }
            ),
            FeatureSource::Features => write!(f, "features read from .npy files"),
        }
    }
}

/// The header of an index file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexHeader {
    /// The search engine.
    pub engine: Engine,
    /// Feature dimension.
    pub dim: usize,
    /// Rows.
    pub count: usize,
    /// What made the features.
    pub source: FeatureSource,
    /// Identities and cameras, when known for every row.
    pub labels: Option<GalleryLabels>,
    /// The gallery file of each row, when built from images (empty otherwise).
    pub files: Vec<PathBuf>,
}

/// A gallery index: an engine, what made its features, and the rows' labels and files.
pub struct GalleryIndex {
    header: IndexHeader,
    engine: Box<dyn NearestNeighbours>,
}

impl std::fmt::Debug for GalleryIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GalleryIndex")
            .field("engine", &self.header.engine)
            .field("dim", &self.header.dim)
            .field("count", &self.header.count)
            .finish()
    }
}

/// The labels and files of rows being added; each either empty or one per row.
#[derive(Debug, Clone, Default)]
pub struct NewRows {
    /// Identities and cameras of the rows (all of the index's rows need them, or none).
    pub labels: Option<GalleryLabels>,
    /// The rows' gallery files.
    pub files: Vec<PathBuf>,
}

fn index_error(path: &Path, problem: impl Into<String>) -> InferError {
    InferError::Index {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

impl GalleryIndex {
    /// An empty index of `dim`-dimensional features from `source`, searched by `engine`.
    ///
    /// # Errors
    /// [`InferError::IndexInput`] when the engine cannot be made (a dimension of 0, or the
    /// engine's own refusal).
    pub fn new(
        engine: Engine,
        dim: usize,
        source: FeatureSource,
    ) -> Result<GalleryIndex, InferError> {
        if dim == 0 {
            return Err(InferError::IndexInput {
                problem: "the features have no values (dimension 0)".into(),
            });
        }
        let made = engine
            .create(dim)
            .map_err(|problem| InferError::IndexInput { problem })?;
        Ok(GalleryIndex {
            header: IndexHeader {
                engine,
                dim,
                count: 0,
                source,
                labels: Some(GalleryLabels {
                    pids: Vec::new(),
                    camids: Vec::new(),
                }),
                files: Vec::new(),
            },
            engine: made,
        })
    }

    /// The header: engine, dimension, rows, source, labels and files.
    pub fn header(&self) -> &IndexHeader {
        &self.header
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.header.count
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.header.count == 0
    }

    /// Appends `features` in chunks of `chunk` rows, calling `progress(rows added so far)`
    /// after each. Labels are kept only while every row has them; files likewise.
    ///
    /// # Shapes
    /// - `features`: `[N, dim]`; `rows.labels`' vectors and `rows.files`: `[N]` or empty
    ///
    /// # Errors
    /// [`InferError::IndexInput`] for features of another width, labels or files of another
    /// length, a non-finite feature, or the engine's refusal.
    pub fn add(
        &mut self,
        features: ArrayView2<'_, f32>,
        rows: NewRows,
        chunk: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(), InferError> {
        let refuse = |problem: String| InferError::IndexInput { problem };
        let n = features.nrows();
        if features.ncols() != self.header.dim {
            return Err(refuse(format!(
                "they are {}-d; the index holds {}-d features",
                features.ncols(),
                self.header.dim
            )));
        }
        if let Some(l) = &rows.labels
            && (l.pids.len() != n || l.camids.len() != n)
        {
            return Err(refuse(format!(
                "{} identities and {} cameras for {n} rows",
                l.pids.len(),
                l.camids.len()
            )));
        }
        if !rows.files.is_empty() && rows.files.len() != n {
            return Err(refuse(format!("{} files for {n} rows", rows.files.len())));
        }
        let bad = features
            .rows()
            .into_iter()
            .position(|r| !r.iter().all(|v| v.is_finite()));
        if let Some(r) = bad {
            return Err(refuse(format!("row {r} is not finite (NaN or infinite)")));
        }
        for (i, block) in features
            .axis_chunks_iter(ndarray::Axis(0), chunk.max(1))
            .enumerate()
        {
            self.engine.add(block).map_err(refuse)?;
            progress((i * chunk.max(1) + block.nrows()).min(n));
        }
        let before = self.header.count;
        self.header.count += n;
        self.header.labels = match (self.header.labels.take(), rows.labels) {
            (Some(mut all), Some(new)) => {
                all.pids.extend(new.pids);
                all.camids.extend(new.camids);
                Some(all)
            }
            _ => None,
        };
        if self.header.files.len() == before && rows.files.len() == n {
            self.header.files.extend(rows.files);
        } else {
            self.header.files.clear();
        }
        Ok(())
    }

    /// The `top` gallery rows nearest `query`, nearest first. With the query's identity and
    /// camera (`own`) and an index that knows its rows' labels, rows of that identity seen by
    /// that camera are left out, as the ReID protocol does.
    ///
    /// # Shapes
    /// - `query`: `[dim]`
    pub fn search(
        &self,
        query: ArrayView1<'_, f32>,
        top: usize,
        own: Option<(i64, i64)>,
    ) -> Vec<Neighbour> {
        match (own, &self.header.labels) {
            (Some((pid, cam)), Some(labels)) => {
                let keep = |r: usize| !(labels.pids[r] == pid && labels.camids[r] == cam);
                self.engine.search(query, top, Some(&keep))
            }
            _ => self.engine.search(query, top, None),
        }
    }

    /// Sets how many candidates an approximate engine considers per search (HNSW's
    /// efSearch; [`DEFAULT_EXPANSION_SEARCH`] unless set): more finds more of the true
    /// neighbours and takes longer. Exact search ignores it.
    pub fn set_search_expansion(&mut self, expansion: usize) {
        self.engine.set_search_expansion(expansion);
    }

    /// Writes the index to `path` whole (a staging file renamed into place).
    ///
    /// # Errors
    /// [`InferError::Write`] naming `path` when it cannot be written (the previous file, if
    /// any, stays).
    pub fn write(&self, path: &Path) -> Result<(), InferError> {
        let header =
            serde_json::to_vec(&self.header).map_err(|e| index_error(path, e.to_string()))?;
        let payload = self.engine.payload();
        let mut bytes = Vec::with_capacity(8 + 4 + 16 + header.len() + payload.len() + 32);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&INDEX_FORMAT.to_le_bytes());
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        drop(payload);
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        scal_fs::write_atomically(path, |tmp| {
            std::fs::write(tmp, &bytes).map_err(|e| e.to_string())
        })?;
        Ok(())
    }

    /// Reads and checks the index file `path`: magic, format, lengths, checksum, the header
    /// against the payload.
    ///
    /// # Errors
    /// [`InferError::Io`] when it cannot be read, [`InferError::NotAnIndex`] for another kind
    /// of file, [`InferError::Index`] for a damaged, truncated or inconsistent one.
    pub fn open(path: &Path) -> Result<GalleryIndex, InferError> {
        let bytes = std::fs::read(path).map_err(|source| InferError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(InferError::NotAnIndex {
                path: path.to_path_buf(),
            });
        }
        let (header, payload) = sections(&bytes).map_err(|p| index_error(path, p))?;
        let header: IndexHeader = serde_json::from_slice(header)
            .map_err(|e| index_error(path, format!("its header cannot be read: {e}")))?;
        check_header(&header).map_err(|p| index_error(path, p))?;
        let engine = header
            .engine
            .read_payload(payload, header.count, header.dim)
            .map_err(|p| index_error(path, p))?;
        if engine.len() != header.count || engine.dim() != header.dim {
            return Err(index_error(
                path,
                "its engine disagrees with its header on the row count or dimension",
            ));
        }
        Ok(GalleryIndex { header, engine })
    }

    /// Refuses features of another model or width than the index's, naming both.
    ///
    /// # Errors
    /// [`InferError::IndexSource`] or [`InferError::IndexDimension`] naming `path` (the index).
    pub fn check_compatible(
        &self,
        path: &Path,
        source: &FeatureSource,
        dim: usize,
    ) -> Result<(), InferError> {
        if dim != self.header.dim {
            return Err(InferError::IndexDimension {
                path: path.to_path_buf(),
                index: self.header.dim,
                given: dim,
            });
        }
        if *source != self.header.source {
            return Err(InferError::IndexSource {
                path: path.to_path_buf(),
                index: self.header.source.to_string(),
                given: source.to_string(),
            });
        }
        Ok(())
    }
}

/// The header and payload of a file's bytes, after checking the format, the lengths and the
/// checksum. `Err` says what is wrong.
fn sections(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let total = bytes.len();
    if total < MAGIC.len() + 4 + 8 + 8 + 32 {
        return Err(format!("it is truncated ({total} bytes)"));
    }
    let (body, digest) = bytes.split_at(total - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err("its checksum differs from its content (a damaged or truncated copy)".into());
    }
    let format = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    if format != INDEX_FORMAT {
        return Err(format!(
            "its format is {format}; this build reads format {INDEX_FORMAT}"
        ));
    }
    let mut at = 12;
    let mut section = |what: &str| -> Result<&[u8], String> {
        let len = body
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| format!("its {what} length is missing"))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| at.checked_add(8)?.checked_add(l))
            .filter(|&e| e <= body.len())
            .ok_or_else(|| format!("its {what} claims {len} bytes, more than the file holds"))?;
        let out = &body[at + 8..end];
        at = end;
        Ok(out)
    };
    let header = section("header")?;
    let payload = section("payload")?;
    if at != body.len() {
        return Err(format!("{} bytes follow its payload", body.len() - at));
    }
    Ok((header, payload))
}

/// The header's own consistency: labels and files one per row.
fn check_header(h: &IndexHeader) -> Result<(), String> {
    if let Some(l) = &h.labels
        && (l.pids.len() != h.count || l.camids.len() != h.count)
    {
        return Err(format!(
            "its header has {} identities and {} cameras for {} rows",
            l.pids.len(),
            l.camids.len(),
            h.count
        ));
    }
    if !h.files.is_empty() && h.files.len() != h.count {
        return Err(format!(
            "its header names {} files for {} rows",
            h.files.len(),
            h.count
        ));
    }
    if h.dim == 0 {
        return Err("its feature dimension is 0".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
