//! qdrant-edge: an in-process edge shard with one dense vector (Euclid), HNSW m = 32 and
//! ef_construct = 200. Points are upserted into the shard's appendable (plain) segment, then
//! `EdgeShard::optimize` runs qdrant's optimizers in-process: the indexing optimizer turns the
//! segment (above an indexing threshold of 1 KB) into an immutable segment with an HNSW graph.
//! The full-scan threshold is 1 KB too, so that a search never falls back to a plain scan of a
//! small segment; one segment (default_segment_number 1, no size cap) so that a search walks one
//! graph; no WAL (only the segments are stored, flushed by `save`).

use std::path::Path;

use anyhow::{Result, anyhow, bail, ensure};
use qdrant_edge::{
    DEFAULT_VECTOR_NAME, Distance, EdgeConfig, EdgeOptimizersConfig, EdgeShard, EdgeVectorParams,
    HnswIndexConfig, NamedQuery, PointId, PointInsertOperations, PointOperations, PointStruct,
    QueryEnum, QueryRequest, ScoringQuery, SearchParams, UpdateOperation, VectorInternal,
};

use crate::data::Matrix;
use crate::engines::{AnnIndex, EF_CONSTRUCTION, M};

/// Points per `update` call while loading the shard.
const UPSERT_BATCH: usize = 1000;

/// A loaded, optimized edge shard.
pub struct QdrantEdge(EdgeShard);

/// Shard configuration: the vector, its HNSW parameters, thresholds that index (and search
/// through the index) at any size, one unbounded segment, `threads` for indexing and search.
fn config(dim: usize, threads: usize) -> EdgeConfig {
    let hnsw = HnswIndexConfig {
        m: M,
        ef_construct: EF_CONSTRUCTION,
        full_scan_threshold: 1,
        max_indexing_threads: threads,
        ..HnswIndexConfig::default()
    };
    let optimizers = EdgeOptimizersConfig {
        default_segment_number: Some(1),
        max_segment_size: Some(1 << 32),
        indexing_threshold: Some(1),
        ..EdgeOptimizersConfig::default()
    };
    EdgeConfig::builder()
        .vector(
            DEFAULT_VECTOR_NAME,
            EdgeVectorParams::builder(dim, Distance::Euclid).build(),
        )
        .hnsw_config(hnsw)
        .optimizers(optimizers)
        .wal_enabled(false)
        .max_search_threads(threads)
        .build()
}

/// Creates the shard under `dir/shard`, upserts the gallery (id = row), optimizes it into an
/// HNSW segment and checks that every vector is in the index.
pub fn build(gallery: &Matrix, threads: usize, dir: &Path) -> Result<QdrantEdge> {
    let path = dir.join("shard");
    let shard = EdgeShard::new(&path, config(gallery.dim, threads)).map_err(|e| {
        anyhow!(
            "qdrant-edge: cannot create a shard in {}: {e}",
            path.display()
        )
    })?;
    for start in (0..gallery.rows).step_by(UPSERT_BATCH) {
        let end = (start + UPSERT_BATCH).min(gallery.rows);
        let points = (start..end)
            .map(|row| PointStruct::new(row as u64, gallery.row(row), serde_json::json!({})).into())
            .collect();
        let upsert = PointOperations::UpsertPoints(PointInsertOperations::PointsList(points));
        shard
            .update(UpdateOperation::PointOperation(upsert))
            .map_err(|e| anyhow!("qdrant-edge: upsert of rows {start}..{end}: {e}"))?;
    }
    shard
        .optimize()
        .map_err(|e| anyhow!("qdrant-edge: optimize: {e}"))?;
    let info = shard
        .info()
        .map_err(|e| anyhow!("qdrant-edge: info: {e}"))?;
    eprintln!(
        "qdrant-edge: {} segments, {} points, {} vectors in an HNSW index",
        info.segments_count, info.points_count, info.indexed_vectors_count
    );
    ensure!(
        info.points_count == gallery.rows && info.indexed_vectors_count == gallery.rows,
        "qdrant-edge: {} of {} points and {} vectors in an HNSW index after optimize",
        info.points_count,
        gallery.rows,
        info.indexed_vectors_count
    );
    Ok(QdrantEdge(shard))
}

impl AnnIndex for QdrantEdge {
    fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<u64>> {
        let nearest = QueryEnum::Nearest(NamedQuery {
            query: VectorInternal::from(query.to_vec()),
            using: None,
        });
        let request = QueryRequest {
            query: Some(ScoringQuery::Vector(nearest)),
            params: Some(SearchParams {
                hnsw_ef: Some(ef),
                ..SearchParams::default()
            }),
            ..QueryRequest::new(k)
        };
        let points = self
            .0
            .query(request)
            .map_err(|e| anyhow!("qdrant-edge: query: {e}"))?;
        points
            .into_iter()
            .map(|p| match p.id {
                PointId::NumId(id) => Ok(id),
                PointId::Uuid(u) => bail!("qdrant-edge: unexpected UUID point id {u}"),
            })
            .collect()
    }

    /// The shard already lives in the scratch folder: flushing it makes the files complete.
    fn save(&self, _dir: &Path) -> Result<()> {
        self.0
            .flush()
            .map_err(|e| anyhow!("qdrant-edge: flush: {e}"))
    }
}
