//! The engines under comparison behind one trait: build an HNSW index of the gallery (row `i`
//! has key `i`), search one query at a time, save the index to a folder.

use std::path::Path;

use anyhow::{Context, Result, anyhow, ensure};
use hnsw_rs::prelude::{AnnT, DistL2, Hnsw};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::data::Matrix;

/// HNSW connectivity M (neighbours per node above layer 0; 2 M on layer 0) for every engine.
pub const M: usize = 32;
/// Candidate list while inserting (ef_construction / expansion_add) for every engine.
pub const EF_CONSTRUCTION: usize = 200;

/// The engine names of `--engine`, with the crate version pinned in Cargo.toml and the stored
/// vector type.
pub const ENGINES: [(&str, &str, &str); 5] = [
    ("usearch", "2.26.6", "f32"),
    ("usearch-f16", "2.26.6", "f16"),
    ("usearch-i8", "2.26.6", "i8"),
    ("hnsw_rs", "0.3.5", "f32"),
    ("qdrant-edge", "0.9.0", "f32"),
];

/// A built, searchable index.
pub trait AnnIndex {
    /// Keys (gallery rows) of the `k` approximate nearest neighbours of `query`, nearest first,
    /// searched with a candidate list of `ef`.
    fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<u64>>;
    /// Writes the index into the (empty or engine-owned) folder `dir`; its size is measured there.
    fn save(&self, dir: &Path) -> Result<()>;
}

/// Builds the named engine's index of `gallery` with `threads` threads; `dir` is a scratch
/// folder the engine may keep its data in (qdrant-edge's shard).
pub fn build(
    engine: &str,
    gallery: &Matrix,
    threads: usize,
    dir: &Path,
) -> Result<Box<dyn AnnIndex>> {
    match engine {
        "usearch" => Ok(Box::new(build_usearch(gallery, threads, ScalarKind::F32)?)),
        "usearch-f16" => Ok(Box::new(build_usearch(gallery, threads, ScalarKind::F16)?)),
        "usearch-i8" => Ok(Box::new(build_usearch(gallery, threads, ScalarKind::I8)?)),
        "hnsw_rs" => Ok(Box::new(build_hnsw_rs(gallery)?)),
        #[cfg(feature = "qdrant-edge")]
        "qdrant-edge" => Ok(Box::new(crate::qdrant::build(gallery, threads, dir)?)),
        #[cfg(not(feature = "qdrant-edge"))]
        "qdrant-edge" => {
            let _ = dir;
            Err(anyhow!(
                "qdrant-edge: built without the qdrant-edge feature (it needs Rust >= 1.96)"
            ))
        }
        other => Err(anyhow!("unknown engine {other:?}")),
    }
}

/// usearch's dense index; vectors are added as f32 and stored as `quantization`.
struct Usearch(Index);

/// usearch: reserve capacity and thread slots, then `add` (thread-safe, `&self`) from `threads`
/// scoped threads, each taking every `threads`-th row.
fn build_usearch(gallery: &Matrix, threads: usize, quantization: ScalarKind) -> Result<Usearch> {
    let options = IndexOptions {
        dimensions: gallery.dim,
        metric: MetricKind::L2sq,
        quantization,
        connectivity: M,
        expansion_add: EF_CONSTRUCTION,
        expansion_search: 64,
        multi: false,
    };
    let index = Index::new(&options).context("usearch: cannot create the index")?;
    index
        .reserve_capacity_and_threads(gallery.rows, threads)
        .context("usearch: cannot reserve")?;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let index = &index;
                scope.spawn(move || -> Result<()> {
                    for row in (t..gallery.rows).step_by(threads) {
                        index
                            .add(row as u64, gallery.row(row))
                            .with_context(|| format!("usearch: add row {row}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow!("usearch: an add thread panicked"))?
        })
    })?;
    ensure!(
        index.size() == gallery.rows,
        "usearch: {} vectors indexed of {}",
        index.size(),
        gallery.rows
    );
    eprintln!("usearch: SIMD kernels {}", index.hardware_acceleration());
    Ok(Usearch(index))
}

impl AnnIndex for Usearch {
    fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<u64>> {
        if self.0.expansion_search() != ef {
            self.0.change_expansion_search(ef);
        }
        Ok(self.0.search(query, k).context("usearch: search")?.keys)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join("index.usearch");
        let name = path
            .to_str()
            .context("usearch: the scratch path is not UTF-8")?;
        self.0
            .save(name)
            .with_context(|| format!("usearch: cannot save {name}"))
    }
}

/// hnsw_rs's index (its own copy of the vectors), L2 distance.
struct HnswRs(Hnsw<'static, f32, DistL2>);

/// hnsw_rs: `parallel_insert_slice` over rayon's global pool (sized by `--threads`), 16 layers
/// at most (its maximum).
fn build_hnsw_rs(gallery: &Matrix) -> Result<HnswRs> {
    let mut hnsw = Hnsw::<f32, DistL2>::new(M, gallery.rows, 16, EF_CONSTRUCTION, DistL2 {});
    let rows: Vec<(&[f32], usize)> = (0..gallery.rows).map(|i| (gallery.row(i), i)).collect();
    hnsw.parallel_insert_slice(&rows);
    hnsw.set_searching_mode(true);
    ensure!(
        hnsw.get_nb_point() == gallery.rows,
        "hnsw_rs: {} vectors indexed of {}",
        hnsw.get_nb_point(),
        gallery.rows
    );
    Ok(HnswRs(hnsw))
}

impl AnnIndex for HnswRs {
    fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<u64>> {
        Ok(self
            .0
            .search(query, k, ef)
            .into_iter()
            .map(|n| n.d_id as u64)
            .collect())
    }

    fn save(&self, dir: &Path) -> Result<()> {
        self.0
            .file_dump(dir, "index")
            .with_context(|| format!("hnsw_rs: cannot dump into {}", dir.display()))?;
        Ok(())
    }
}
