//! k-reciprocal re-ranking (Zhong et al., CVPR 2017), computing what the widely used numpy
//! implementation (`re_ranking.py`, as shipped by torchreid and reid-strong-baseline)
//! computes, without its (Q+G)² matrices.
//!
//! The numpy code builds the full (Q+G) × (Q+G) matrix `A` of **squared** distances from
//! the q-q, q-g and g-g blocks (in `f32`), divides each column by its maximum and
//! transposes: row `i` of its working matrix is column `i` of `A` over that column's
//! maximum. From it, it needs only (a) each row's nearest `k1 + 1` items, (b) a few values
//! per row, and (c) the query rows' gallery columns. This module streams the columns of `A`
//! in blocks to get (a), recomputes (b) and (c) on demand, and keeps the weight vectors `V`
//! sparse (a few dozen non-zeros per row). Memory beyond the inputs and the Q × G result is
//! a few tens of MB at Market-1501 size; the arithmetic follows the numpy code's order in
//! `f32`, so results agree to float rounding.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use crate::EvalError;
use crate::market::{Distance, check_finite};

/// Re-ranking parameters: `k1` neighbours for the k-reciprocal sets, `k2` for local query
/// expansion, `lambda` the weight of the original distance in the result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReRankParams {
    /// Size of the k-reciprocal neighbourhood (default 20).
    pub k1: usize,
    /// Rows averaged in local query expansion (default 6; 1 turns it off).
    pub k2: usize,
    /// Weight of the original distance, in [0, 1] (default 0.3).
    pub lambda: f64,
}

impl Default for ReRankParams {
    fn default() -> Self {
        ReRankParams {
            k1: 20,
            k2: 6,
            lambda: 0.3,
        }
    }
}

/// Columns of `A` handled together while streaming (each thread holds `BLOCK` rows of the
/// working matrix, `BLOCK × (Q+G)` floats).
const BLOCK: usize = 32;

/// The three input blocks, read as the full matrix `A` of squared distances.
struct Blocks<'a, T> {
    q_g: ArrayView2<'a, T>,
    q_q: ArrayView2<'a, T>,
    g_g: ArrayView2<'a, T>,
    q: usize,
}

impl<T: Distance> Blocks<'_, T> {
    fn n(&self) -> usize {
        self.q + self.q_g.ncols()
    }

    /// `A[r, c]`, the squared distance between items `r` and `c` (queries first).
    fn a(&self, r: usize, c: usize) -> f32 {
        let q = self.q;
        let d = match (r < q, c < q) {
            (true, true) => self.q_q[[r, c]],
            (true, false) => self.q_g[[r, c - q]],
            (false, true) => self.q_g[[c, r - q]],
            (false, false) => self.g_g[[r - q, c - q]],
        };
        d.square_to_f32()
    }

    /// Columns `c0..c0 + out.nrows()` of `A`, written as rows of `out` (a blocked transpose:
    /// every input row is read in contiguous pieces).
    fn columns_into(&self, c0: usize, out: &mut Array2<f32>) {
        let q = self.q;
        let c_end = c0 + out.nrows();
        // Query columns: A[r, c] = q_q[r, c] for r < q, q_g[c, r - q] below.
        let (qa, qb) = (c0.min(q), c_end.min(q));
        if qa < qb {
            for r in 0..q {
                let src = self.q_q.row(r);
                for c in qa..qb {
                    out[[c - c0, r]] = src[c].square_to_f32();
                }
            }
            for c in qa..qb {
                let src = self.q_g.row(c);
                let mut dst = out.row_mut(c - c0);
                for (k, v) in src.iter().enumerate() {
                    dst[q + k] = v.square_to_f32();
                }
            }
        }
        // Gallery columns: A[r, c] = q_g[r, c - q] for r < q, g_g[r - q, c - q] below.
        let (ga, gb) = (c0.max(q), c_end.max(q));
        if ga < gb {
            for r in 0..q {
                let src = self.q_g.row(r);
                for c in ga..gb {
                    out[[c - c0, r]] = src[c - q].square_to_f32();
                }
            }
            for r in 0..self.g_g.nrows() {
                let src = self.g_g.row(r);
                for c in ga..gb {
                    out[[c - c0, q + r]] = src[c - q].square_to_f32();
                }
            }
        }
    }
}

/// The `count` smallest entries of `row` as indices, ascending by (value, index).
pub(crate) fn nearest(row: &[f32], count: usize) -> Vec<u32> {
    let count = count.min(row.len());
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(count + 1);
    for (j, &v) in row.iter().enumerate() {
        let key = (v, j as u32);
        if best.len() == count {
            let worst = best[count - 1];
            if v >= worst.0 {
                continue;
            }
        }
        let at = best.partition_point(|&(bv, bj)| bv < key.0 || (bv == key.0 && bj < key.1));
        best.insert(at, key);
        best.truncate(count);
    }
    best.into_iter().map(|(_, j)| j).collect()
}

/// Round half to even, as numpy's `np.around`.
fn round_half_even(x: f64) -> usize {
    let r = x.round();
    let r = if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    };
    r as usize
}

/// `items` of `forward` whose own first `len` neighbours contain `center`.
fn reciprocal(center: u32, forward: &[u32], ranks: &[Vec<u32>], len: usize) -> Vec<u32> {
    forward
        .iter()
        .copied()
        .filter(|&c| ranks[c as usize][..len].contains(&center))
        .collect()
}

/// k-reciprocal re-ranking of a query × gallery distance matrix.
///
/// Inputs are distances (not squared: like the numpy code, this squares them), queries as
/// rows. Returns the re-ranked `Q × G` distances: `(1 − λ) · Jaccard + λ · original`, the
/// original distance being the squared one divided by its column maximum.
///
/// [`re_rank_features`](crate::re_rank_features) computes the same from the features,
/// without the `Q × Q` and `G × G` matrices.
///
/// # Shapes
/// - `q_g`: `[Q, G]`, `q_q`: `[Q, Q]`, `g_g`: `[G, G]`
/// - output: `[Q, G]`
///
/// # Errors
/// Shapes that disagree, empty inputs, non-finite values, `k1 == 0`, `k2 == 0`, or `lambda`
/// outside [0, 1].
pub fn re_rank<T: Distance>(
    q_g: ArrayView2<'_, T>,
    q_q: ArrayView2<'_, T>,
    g_g: ArrayView2<'_, T>,
    params: ReRankParams,
) -> Result<Array2<f32>, EvalError> {
    check_params(params)?;
    let (q, g) = q_g.dim();
    if q == 0 || g == 0 {
        return Err(EvalError::Empty {
            what: "query-gallery distance matrix".into(),
        });
    }
    for (what, found, expected) in [
        ("query-query distance matrix rows", q_q.nrows(), q),
        ("query-query distance matrix columns", q_q.ncols(), q),
        ("gallery-gallery distance matrix rows", g_g.nrows(), g),
        ("gallery-gallery distance matrix columns", g_g.ncols(), g),
    ] {
        if found != expected {
            return Err(EvalError::ShapeMismatch {
                what: what.into(),
                expected,
                found,
            });
        }
    }
    check_finite(q_g, "query-gallery distance matrix")?;
    check_finite(q_q, "query-query distance matrix")?;
    check_finite(g_g, "gallery-gallery distance matrix")?;

    let blocks = Blocks { q_g, q_q, g_g, q };
    let n = blocks.n();
    let keep = Sizes::of(params).keep;

    // (a) Column maxima of A and each working row's nearest `keep` items, streaming A's
    // columns in blocks.
    let per_block: Vec<(Vec<f32>, Vec<Vec<u32>>)> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let c0 = b * BLOCK;
            let width = BLOCK.min(n - c0);
            let mut rows = Array2::<f32>::zeros((width, n));
            blocks.columns_into(c0, &mut rows);
            let mut maxima = Vec::with_capacity(width);
            let mut ranks = Vec::with_capacity(width);
            for mut row in rows.axis_iter_mut(Axis(0)) {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let max = usable_max(max);
                row.mapv_inplace(|v| v / max);
                maxima.push(max);
                ranks.push(nearest(row.as_slice().expect("contiguous"), keep));
            }
            (maxima, ranks)
        })
        .collect();
    let mut col_max = Vec::with_capacity(n);
    let mut ranks: Vec<Vec<u32>> = Vec::with_capacity(n);
    for (maxima, r) in per_block {
        col_max.extend(maxima);
        ranks.extend(r);
    }
    // The working matrix: original[i][j] = A[j, i] / max_r A[r, i].
    let original = |i: usize, j: usize| blocks.a(j, i) / col_max[i];
    let mut out = Array2::<f32>::zeros((q, g));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            for (k, value) in row.iter_mut().enumerate() {
                *value = original(i, q + k);
            }
        });
    let distances = |i: usize, items: &[u32]| -> Vec<f32> {
        items.iter().map(|&j| original(i, j as usize)).collect()
    };
    sparse_steps(&ranks, params, &distances, &mut out);
    Ok(out)
}

/// The checks on [`ReRankParams`] shared by both entry points.
pub(crate) fn check_params(params: ReRankParams) -> Result<(), EvalError> {
    let ReRankParams { k1, k2, lambda } = params;
    if k1 == 0 || k2 == 0 {
        return Err(EvalError::InvalidParameter {
            name: "k1/k2",
            problem: format!("re-ranking needs k1 >= 1 and k2 >= 1, got {k1} and {k2}"),
        });
    }
    if !(0.0..=1.0).contains(&lambda) {
        return Err(EvalError::InvalidParameter {
            name: "lambda",
            problem: format!("re-ranking lambda must be in [0, 1], got {lambda}"),
        });
    }
    Ok(())
}

/// A column's maximum as the divisor of the original distance: a column of zeros
/// (identical features) stays zeros instead of 0 / 0.
pub(crate) fn usable_max(max: f32) -> f32 {
    if max > 0.0 { max } else { 1.0 }
}

/// The neighbourhood sizes that follow from [`ReRankParams`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    /// `round_half_even(k1 / 2)`: the neighbourhood of the expansion candidates.
    pub(crate) half: usize,
    /// Nearest items each row needs: for the k-reciprocal sets, the candidates' sets and
    /// local query expansion.
    pub(crate) keep: usize,
}

impl Sizes {
    pub(crate) fn of(params: ReRankParams) -> Sizes {
        let half = round_half_even(params.k1 as f64 / 2.0);
        let keep = (params.k1 + 1).max(params.k2).max(half + 1);
        Sizes { half, keep }
    }
}

/// Sparse rows `(column, weight)`, sorted by column.
type SparseRows = Vec<Vec<(u32, f32)>>;

/// The steps after the nearest neighbours: weight rows `V` over the expanded k-reciprocal
/// sets, local query expansion, and the Jaccard distances of the queries mixed into `out`.
///
/// `ranks[i]` holds working row `i`'s nearest `keep` items (or all `N` when fewer), in
/// order; `distances(i, items)` the original distances `original[i][j]` of `items`.
///
/// # Shapes
/// - `ranks`: `N` rows (queries first); `out`: `[Q, G]`, the original distances on entry,
///   the re-ranked ones on return
pub(crate) fn sparse_steps(
    ranks: &[Vec<u32>],
    params: ReRankParams,
    distances: &(dyn Fn(usize, &[u32]) -> Vec<f32> + Sync),
    out: &mut Array2<f32>,
) {
    let n = ranks.len();
    let v = weight_rows(ranks, params, distances);
    let v = query_expansion(v, ranks, params.k2);
    let (starts, inverted) = inverted_index(&v, n);
    jaccard_into(out, &v, (&starts, &inverted), params.lambda);
}

/// (b) Sparse weight rows V: exp(-original) over the expanded k-reciprocal set, normalised.
fn weight_rows(
    ranks: &[Vec<u32>],
    params: ReRankParams,
    distances: &(dyn Fn(usize, &[u32]) -> Vec<f32> + Sync),
) -> SparseRows {
    let n = ranks.len();
    let (k1, half) = (params.k1, Sizes::of(params).half);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let forward = &ranks[i][..(k1 + 1).min(n)];
            let reciprocal_set = reciprocal(i as u32, forward, ranks, (k1 + 1).min(n));
            let mut expansion = reciprocal_set.clone();
            let mut sorted_set = reciprocal_set.clone();
            sorted_set.sort_unstable();
            for &candidate in &reciprocal_set {
                let c_forward = &ranks[candidate as usize][..(half + 1).min(n)];
                let c_set = reciprocal(candidate, c_forward, ranks, (half + 1).min(n));
                let common = c_set
                    .iter()
                    .filter(|x| sorted_set.binary_search(x).is_ok())
                    .count();
                if common as f64 > 2.0 / 3.0 * c_set.len() as f64 {
                    expansion.extend_from_slice(&c_set);
                }
            }
            expansion.sort_unstable();
            expansion.dedup();
            let weights: Vec<f32> = distances(i, &expansion)
                .into_iter()
                .map(|d| (-d).exp())
                .collect();
            let total: f32 = weights.iter().sum();
            expansion
                .into_iter()
                .zip(weights)
                .map(|(j, w)| (j, w / total))
                .collect()
        })
        .collect()
}

/// Local query expansion: each row becomes the mean of its k2 nearest rows' weights.
fn query_expansion(v: SparseRows, ranks: &[Vec<u32>], k2: usize) -> SparseRows {
    if k2 == 1 {
        return v;
    }
    let n = ranks.len();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let neighbours = &ranks[i][..k2.min(n)];
            let mut cols: Vec<u32> = neighbours
                .iter()
                .flat_map(|&r| v[r as usize].iter().map(|&(c, _)| c))
                .collect();
            cols.sort_unstable();
            cols.dedup();
            cols.into_iter()
                .map(|c| {
                    // Rows added in neighbour order, as numpy's reduction over axis 0.
                    let mut sum = 0.0f32;
                    for &r in neighbours {
                        let row = &v[r as usize];
                        if let Ok(k) = row.binary_search_by_key(&c, |&(col, _)| col) {
                            sum += row[k].1;
                        }
                    }
                    (c, sum / neighbours.len() as f32)
                })
                .collect()
        })
        .collect()
}

/// Inverted index: for each column `c`, the rows with a non-zero weight there, as
/// `inverted[starts[c]..starts[c + 1]]`.
fn inverted_index(v: &SparseRows, n: usize) -> (Vec<usize>, Vec<(u32, f32)>) {
    let mut starts = vec![0usize; n + 1];
    for row in v {
        for &(c, w) in row {
            if w != 0.0 {
                starts[c as usize + 1] += 1;
            }
        }
    }
    for c in 0..n {
        starts[c + 1] += starts[c];
    }
    let mut fill = starts.clone();
    let mut inverted = vec![(0u32, 0.0f32); starts[n]];
    for (r, row) in v.iter().enumerate() {
        for &(c, w) in row {
            if w != 0.0 {
                inverted[fill[c as usize]] = (r as u32, w);
                fill[c as usize] += 1;
            }
        }
    }
    (starts, inverted)
}

/// (c) Jaccard distances of the query rows, mixed with the original distances in `out`.
/// As numpy: `1 - lambda` in double precision, each weight then rounded to f32.
fn jaccard_into(
    out: &mut Array2<f32>,
    v: &SparseRows,
    (starts, inverted): (&[usize], &[(u32, f32)]),
    lambda: f64,
) {
    let q = out.nrows();
    let n = v.len();
    let keep_jaccard = (1.0 - lambda) as f32;
    let lambda = lambda as f32;
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut out_row)| {
            let mut shared = vec![0.0f32; n];
            for &(c, w_i) in &v[i] {
                if w_i == 0.0 {
                    continue;
                }
                for &(j, w_j) in &inverted[starts[c as usize]..starts[c as usize + 1]] {
                    shared[j as usize] += w_i.min(w_j);
                }
            }
            for (k, value) in out_row.iter_mut().enumerate() {
                let t = shared[q + k];
                let jaccard = 1.0 - t / (2.0 - t);
                *value = jaccard * keep_jaccard + *value * lambda;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_keeps_the_smallest_in_order() {
        let row = [0.5f32, 0.1, 0.9, 0.1, 0.3];
        assert_eq!(nearest(&row, 3), vec![1, 3, 4]);
        assert_eq!(nearest(&row, 10), vec![1, 3, 4, 0, 2]);
    }

    #[test]
    fn numpy_rounding() {
        assert_eq!(round_half_even(10.0), 10);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(1.4), 1);
    }

    #[test]
    fn parameters_are_checked() {
        let m = Array2::<f32>::ones((2, 3));
        let qq = Array2::<f32>::ones((2, 2));
        let gg = Array2::<f32>::ones((3, 3));
        let bad = ReRankParams {
            lambda: 1.5,
            ..ReRankParams::default()
        };
        assert!(re_rank(m.view(), qq.view(), gg.view(), bad).is_err());
        let err = re_rank(m.view(), gg.view(), gg.view(), ReRankParams::default()).unwrap_err();
        assert!(matches!(err, EvalError::ShapeMismatch { .. }), "{err}");
    }
}
