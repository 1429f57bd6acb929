//! Exact search: every gallery row compared with the query. The reference every approximate
//! engine's recall is measured against, and the engine of a gallery small enough to scan.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use super::{Engine, NearestNeighbours, Neighbour};

/// Rows compared per task: large enough that a task outweighs rayon's hand-off.
const ROWS_PER_TASK: usize = 4096;

/// The gallery's features as they are, searched by a full scan.
#[derive(Debug, Clone)]
pub struct ExactSearch {
    rows: Array2<f32>,
}

impl ExactSearch {
    /// An empty gallery of `dim`-dimensional features.
    pub fn new(dim: usize) -> ExactSearch {
        ExactSearch {
            rows: Array2::zeros((0, dim)),
        }
    }

    /// The engine's payload read back (`count` rows of `dim` little-endian `f32`).
    pub(super) fn from_payload(payload: &[u8], count: usize, dim: usize) -> Result<Self, String> {
        let expected = count
            .checked_mul(dim)
            .and_then(|n| n.checked_mul(4))
            .ok_or("its row count and dimension overflow")?;
        if payload.len() != expected {
            return Err(format!(
                "its exact engine's payload holds {} bytes where {count} x {dim} features take {expected}",
                payload.len()
            ));
        }
        let values: Vec<f32> = payload
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let rows = Array2::from_shape_vec((count, dim), values).map_err(|e| e.to_string())?;
        Ok(ExactSearch { rows })
    }
}

/// Squared Euclidean distance.
fn squared_distance(a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>) -> f32 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The `top` nearest of `candidates` (row, squared distance), nearest first, ties in row
/// order.
fn nearest(mut candidates: Vec<(usize, f32)>, top: usize) -> Vec<(usize, f32)> {
    let order = |a: &(usize, f32), b: &(usize, f32)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
    if candidates.len() > top && top > 0 {
        candidates.select_nth_unstable_by(top - 1, order);
        candidates.truncate(top);
    }
    candidates.sort_by(order);
    candidates.truncate(top);
    candidates
}

impl NearestNeighbours for ExactSearch {
    fn engine(&self) -> Engine {
        Engine::Exact
    }

    fn dim(&self) -> usize {
        self.rows.ncols()
    }

    fn len(&self) -> usize {
        self.rows.nrows()
    }

    fn add(&mut self, rows: ArrayView2<'_, f32>) -> Result<(), String> {
        self.rows.append(Axis(0), rows).map_err(|e| e.to_string())
    }

    fn search(
        &self,
        query: ArrayView1<'_, f32>,
        top: usize,
        keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Vec<Neighbour> {
        let keep = |r: usize| keep.is_none_or(|keep| keep(r));
        let found = self
            .rows
            .axis_chunks_iter(Axis(0), ROWS_PER_TASK)
            .into_par_iter()
            .enumerate()
            .map(|(chunk, rows)| {
                let first = chunk * ROWS_PER_TASK;
                let scored = rows
                    .rows()
                    .into_iter()
                    .enumerate()
                    .map(|(i, row)| (first + i, row))
                    .filter(|(r, _)| keep(*r))
                    .map(|(r, row)| (r, squared_distance(query, row)))
                    .collect();
                nearest(scored, top)
            })
            .reduce(Vec::new, |mut a, b| {
                a.extend(b);
                nearest(a, top)
            });
        found
            .into_iter()
            .map(|(row, d)| Neighbour {
                row,
                distance: d.max(0.0).sqrt(),
            })
            .collect()
    }

    fn payload(&self) -> Vec<u8> {
        self.rows.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}
