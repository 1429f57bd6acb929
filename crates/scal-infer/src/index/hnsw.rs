//! Approximate search on a hierarchical navigable small-world graph (HNSW): usearch's index,
//! embedded (C++ built by its crate, no service to run). Squared Euclidean distance; the
//! vectors kept as `f32` or, to halve the memory, as `f16`. Adding is sequential (usearch
//! 2.26.6's concurrent inserts can strand rows, unum-cloud/USearch#735); searching is safe
//! from many threads at once.
//!
//! The graph's build parameters are fixed here ([`CONNECTIVITY`], [`EXPANSION_ADD`]); the
//! search's candidate list (efSearch, `set_search_expansion`) trades recall for time and is
//! not stored in the file.

use std::borrow::Cow;

use ndarray::{ArrayView1, ArrayView2};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{Engine, NearestNeighbours, Neighbour};

/// Neighbours per node above the bottom layer (twice as many on it): HNSW's M.
pub const CONNECTIVITY: usize = 32;
/// Candidates considered while inserting a row (efConstruction).
pub const EXPANSION_ADD: usize = 200;
/// Candidates considered while searching (efSearch) unless set otherwise.
pub const DEFAULT_EXPANSION_SEARCH: usize = 256;

/// How the graph stores its vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// 4 bytes a value, as given.
    F32,
    /// 2 bytes a value (half precision): half the memory, distances rounded.
    F16,
}

impl Storage {
    fn scalar(self) -> ScalarKind {
        match self {
            Storage::F32 => ScalarKind::F32,
            Storage::F16 => ScalarKind::F16,
        }
    }

    /// Bytes of one stored value.
    pub fn bytes(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::F16 => 2,
        }
    }
}

/// An HNSW graph over the gallery's rows (row `i` has key `i`).
pub struct HnswSearch {
    index: Index,
    storage: Storage,
}

impl std::fmt::Debug for HnswSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswSearch")
            .field("storage", &self.storage)
            .field("dim", &self.index.dimensions())
            .field("rows", &self.index.size())
            .field("expansion_search", &self.index.expansion_search())
            .finish()
    }
}

fn options(dim: usize, storage: Storage) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::L2sq,
        quantization: storage.scalar(),
        connectivity: CONNECTIVITY,
        expansion_add: EXPANSION_ADD,
        expansion_search: DEFAULT_EXPANSION_SEARCH,
        multi: false,
    }
}

/// A row's values as one slice: borrowed when the view is contiguous, copied otherwise.
fn contiguous<'a>(row: &'a ArrayView1<'_, f32>) -> Cow<'a, [f32]> {
    match row.as_slice() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(row.to_vec()),
    }
}

/// Thread slots the index reserves: every rayon thread and the caller's.
fn thread_slots() -> usize {
    rayon::current_num_threads() + 1
}

impl HnswSearch {
    /// An empty graph of `dim`-dimensional features stored as `storage`.
    ///
    /// # Errors
    /// usearch's refusal (out of memory, an unsupported dimension), as text.
    pub fn new(dim: usize, storage: Storage) -> Result<HnswSearch, String> {
        let index = Index::new(&options(dim, storage)).map_err(|e| e.to_string())?;
        index
            .reserve_capacity_and_threads(0, thread_slots())
            .map_err(|e| e.to_string())?;
        Ok(HnswSearch { index, storage })
    }

    /// The engine's payload read back: usearch's own serialisation, checked against the
    /// index header's `count` rows of `dim` values stored as `storage`.
    pub(super) fn from_payload(
        payload: &[u8],
        count: usize,
        dim: usize,
        storage: Storage,
    ) -> Result<Self, String> {
        let meta = Index::metadata_from_buffer(payload)
            .map_err(|e| format!("its HNSW payload cannot be read: {e}"))?;
        let found = (
            meta.dimensions,
            meta.count_present,
            meta.count_deleted,
            meta.quantization,
            meta.metric,
            meta.multi,
        );
        let expected = (
            dim as u64,
            count as u64,
            0,
            storage.scalar(),
            MetricKind::L2sq,
            false,
        );
        if found != expected {
            return Err(format!(
                "its HNSW payload holds {} rows ({} deleted) of {} values ({:?}, {:?}, multi {}); \
                 the header says {count} rows of {dim} ({:?}, L2sq)",
                meta.count_present,
                meta.count_deleted,
                meta.dimensions,
                meta.quantization,
                meta.metric,
                meta.multi,
                storage.scalar()
            ));
        }
        let graph = HnswSearch::new(dim, storage)?;
        graph
            .index
            .load_from_buffer(payload)
            .map_err(|e| format!("its HNSW payload cannot be loaded: {e}"))?;
        graph
            .index
            .reserve_capacity_and_threads(count, thread_slots())
            .map_err(|e| e.to_string())?;
        if graph.index.size() != count {
            return Err(format!(
                "its HNSW payload loads {} rows where the header says {count}",
                graph.index.size()
            ));
        }
        Ok(graph)
    }
}

impl NearestNeighbours for HnswSearch {
    fn engine(&self) -> Engine {
        match self.storage {
            Storage::F32 => Engine::Hnsw,
            Storage::F16 => Engine::HnswF16,
        }
    }

    fn dim(&self) -> usize {
        self.index.dimensions()
    }

    fn len(&self) -> usize {
        self.index.size()
    }

    fn add(&mut self, rows: ArrayView2<'_, f32>) -> Result<(), String> {
        let first = self.index.size();
        self.index
            .reserve_capacity_and_threads(first + rows.nrows(), thread_slots())
            .map_err(|e| format!("the HNSW graph cannot grow: {e}"))?;
        let index = &self.index;
        // One row at a time: usearch 2.26.6's concurrent `add` can leave a node stored but
        // unreachable by search (unum-cloud/USearch#735, fix proposed in #772; seen here as
        // gallery rows that no query finds on tight clusters, in 5 of 40 two-thread builds
        // and none of 40 one-thread builds), and a gallery image that can never be found is
        // worse than a slower build.
        (0..rows.nrows()).try_for_each(|i| {
            let row = rows.row(i);
            index
                .add((first + i) as u64, &contiguous(&row))
                .map_err(|e| format!("the HNSW graph refused row {}: {e}", first + i))
        })?;
        if self.index.size() != first + rows.nrows() {
            return Err(format!(
                "the HNSW graph holds {} rows after adding {} to {first}",
                self.index.size(),
                rows.nrows()
            ));
        }
        Ok(())
    }

    fn search(
        &self,
        query: ArrayView1<'_, f32>,
        top: usize,
        keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Vec<Neighbour> {
        if top == 0 || self.index.size() == 0 {
            return Vec::new();
        }
        let values = contiguous(&query);
        let values: &[f32] = &values;
        let found = match keep {
            Some(keep) => self
                .index
                .filtered_search(values, top, |key| keep(key as usize)),
            None => self.index.search(values, top),
        };
        // A search fails only for a query of another width, which the caller has refused.
        let found = found.expect("an HNSW search of a query of the index's width");
        found
            .keys
            .iter()
            .zip(&found.distances)
            .map(|(&key, &d)| Neighbour {
                row: key as usize,
                distance: d.max(0.0).sqrt(),
            })
            .collect()
    }

    /// Candidates considered while searching (efSearch; usearch considers at least the
    /// results asked for).
    fn set_search_expansion(&mut self, expansion: usize) {
        self.index.change_expansion_search(expansion.max(1));
    }

    fn payload(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; self.index.serialized_length()];
        self.index
            .save_to_buffer(&mut bytes)
            .expect("usearch serialises into a buffer of its own serialized_length");
        bytes
    }
}
