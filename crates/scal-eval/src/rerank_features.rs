//! k-reciprocal re-ranking from query and gallery features, in one blocked pass over the
//! (Q+G)² distances: what [`re_rank`](crate::re_rank) computes from the three matrices of
//! [`pairwise_distances`](crate::pairwise_distances), without a `Q × Q` or `G × G` matrix.
//!
//! Items are numbered queries first (`N = Q + G`). `A[r, c]` is the squared distance
//! between items `r` and `c`, computed from one dot product exactly as
//! `pairwise_distances` computes that entry (`‖x_r‖² + ‖x_c‖² − 2 x_r·x_c` with the
//! row's norm added first, clamped at 0, square-rooted for Euclidean, then squared as
//! `re_rank` does; `(1 − cos)²` for cosine). `re_rank`'s working row `i` is column `i` of
//! `A` over that column's maximum.
//!
//! The pass takes `ROWS` items at a time and computes their dot products with every later
//! item by one matrix product (`matrixmultiply`, the kernel `pairwise_distances` uses, so
//! each product is the same float). Each product serves two working rows: row `i` gets
//! `A[j, i]` and row `j` gets `A[i, j]`. Every row keeps its column maximum and its nearest
//! `keep + SLACK` items by squared distance; the query rows' gallery entries go straight to
//! the output. Dividing by the maximum afterwards keeps the order, except that two
//! distances can round to the same quotient: the kept slack settles those ties as
//! `re_rank` does (by index). Rows whose tie reaches past their kept items (only with many
//! equal distances: duplicate features) are recomputed afterwards, `ROWS` at a time, by a
//! second blocked pass over the features; with all features identical (a collapsed model)
//! that pass covers every row, and re-ranking takes about three times as long. The sparse
//! steps then take their few distances from the kept items, recomputing the rest from the
//! features with the same kernel.
//!
//! Memory: the features, the `[Q, G]` output, one `ROWS × N` block of products and
//! `keep + SLACK` items per row (`O(N · keep + Q · G + ROWS · N)`).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, s};
use rayon::prelude::*;

use crate::EvalError;
use crate::distance::{DistanceMetric, check_features, l2_normalised, squared_norms};
use crate::rerank::{ReRankParams, Sizes, check_params, nearest, sparse_steps, usable_max};

/// Items whose products are computed together (the block is `ROWS × N` floats).
const ROWS: usize = 256;
/// Items kept per row beyond the `keep` needed, to settle ties after normalising.
const SLACK: usize = 8;
/// Working rows per parallel task when a block's columns update their rows.
const COLUMNS: usize = 512;
/// `matrixmultiply` runs a product of `m·k + k·n` below `2¹⁵` on the calling thread: the
/// few products recomputed per row stay below it (they run inside rayon's threads).
const ONE_THREAD_PRODUCT: usize = 1 << 15;

/// k-reciprocal re-ranking (Zhong et al., CVPR 2017) from query and gallery features.
///
/// Gives what `re_rank(pairwise_distances(query, gallery, metric), pairwise_distances(query,
/// query, metric), pairwise_distances(gallery, gallery, metric), params)` gives (the same
/// floats: every distance is computed by the same kernel, in the same order), in one
/// blocked pass over the features: memory `O((Q+G) · keep + Q · G + 256 · (Q+G))` floats
/// beyond the inputs, never `(Q+G)²` nor `G²`. `DistanceMetric::Euclidean` is what
/// `cargo xtask evaluate --features --rerank` uses (`re_rank` squares it, as torchreid's
/// `re_ranking` squares its input).
///
/// # Shapes
/// - `query`: `[Q, D]`, `gallery`: `[G, D]`
/// - output: `[Q, G]`, `(1 − λ) · Jaccard + λ · original` as [`re_rank`](crate::re_rank)
///
/// # Errors
/// An empty input, feature widths that differ, a NaN or infinite feature (naming the input,
/// row and column), `k1 == 0`, `k2 == 0`, `lambda` outside [0, 1], or features so large
/// that their squared distances overflow `f32` ([`EvalError::DistanceOverflow`]).
pub fn re_rank_features(
    query: ArrayView2<'_, f32>,
    gallery: ArrayView2<'_, f32>,
    metric: DistanceMetric,
    params: ReRankParams,
) -> Result<Array2<f32>, EvalError> {
    check_params(params)?;
    check_features(query, gallery)?;
    let normalised;
    let items = if metric == DistanceMetric::Cosine {
        normalised = (l2_normalised(query), l2_normalised(gallery));
        Items::new(normalised.0.view(), normalised.1.view(), metric)?
    } else {
        Items::new(query, gallery, metric)?
    };
    let (n, keep) = (items.n(), Sizes::of(params).keep);
    let (mut out, rows) = scan(&items, keep);
    let col_max = column_maxima(&items, &rows)?;
    let ranks: Vec<Option<Vec<u32>>> = rows
        .par_iter()
        .enumerate()
        .map(|(i, row)| row.ranks(col_max[i], keep, n))
        .collect();
    let tied: Vec<usize> = (0..n).filter(|&i| ranks[i].is_none()).collect();
    let mut exact = exact_ranks(&items, &tied, &col_max, keep).into_iter();
    let ranks: Vec<Vec<u32>> = ranks
        .into_iter()
        .map(|r| r.unwrap_or_else(|| exact.next().expect("one per tied row")))
        .collect();
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(col_max.par_iter())
        .for_each(|(mut row, &max)| row.mapv_inplace(|v| v / max));
    let distances = |i: usize, js: &[u32]| -> Vec<f32> {
        let near = &rows[i].best;
        let kept: Vec<Option<f32>> = js
            .iter()
            .map(|&j| near.iter().find(|&&(_, c)| c == j).map(|&(a, _)| a))
            .collect();
        let missing: Vec<u32> = js
            .iter()
            .zip(&kept)
            .filter(|(_, a)| a.is_none())
            .map(|(&j, _)| j)
            .collect();
        let mut recomputed = items.column_at(i, &missing).into_iter();
        kept.into_iter()
            .map(|a| {
                a.or_else(|| recomputed.next())
                    .expect("one per missing item")
                    / col_max[i]
            })
            .collect()
    };
    sparse_steps(&ranks, params, &distances, &mut out);
    Ok(out)
}

/// The nearest `keep` items of the working rows `which` from their full rows, recomputed
/// from the features `ROWS` rows at a time: the rows whose ties reach past their kept items.
fn exact_ranks(items: &Items<'_>, which: &[usize], col_max: &[f32], keep: usize) -> Vec<Vec<u32>> {
    let mut ranks = Vec::with_capacity(which.len());
    for chunk in which.chunks(ROWS) {
        let mut columns = items.columns(chunk);
        ranks.par_extend(
            columns
                .axis_iter_mut(Axis(0))
                .into_par_iter()
                .zip(chunk.par_iter())
                .map(|(mut row, &i)| {
                    row.mapv_inplace(|v| v / col_max[i]);
                    nearest(row.as_slice().expect("contiguous"), keep)
                }),
        );
    }
    ranks
}

/// The divisors of the working rows ([`usable_max`] of each column of `A`), or, when a
/// squared distance overflowed, the error naming the item with the largest norm.
fn column_maxima(items: &Items<'_>, rows: &[Candidates]) -> Result<Vec<f32>, EvalError> {
    if rows.iter().all(|row| row.max.is_finite()) {
        return Ok(rows.iter().map(|row| usable_max(row.max)).collect());
    }
    // Only Euclidean metrics overflow (cosine distances are at most 2).
    let largest = (0..items.n())
        .max_by(|&a, &b| items.norms[a].total_cmp(&items.norms[b]))
        .expect("items are not empty");
    let q = items.q();
    Err(EvalError::DistanceOverflow {
        what: if largest < q {
            "query features"
        } else {
            "gallery features"
        }
        .into(),
        row: if largest < q { largest } else { largest - q },
    })
}

/// Which of the two items of `A[r, c]` is held fixed along a run of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Along {
    /// `A[fixed, from + t]`: a run along a row of `A`.
    Row,
    /// `A[from + t, fixed]`: a run along a column of `A` (a working row).
    Column,
}

/// The features of all items (queries first) and what turns their products into `A`.
struct Items<'a> {
    query: ArrayView2<'a, f32>,
    gallery: ArrayView2<'a, f32>,
    /// `‖x‖²` of every item, queries first (Euclidean metrics; empty for cosine).
    norms: Vec<f32>,
    metric: DistanceMetric,
}

impl<'a> Items<'a> {
    /// # Errors
    /// A squared norm so large that sums of two could overflow `f32`
    /// ([`EvalError::DistanceOverflow`]).
    fn new(
        query: ArrayView2<'a, f32>,
        gallery: ArrayView2<'a, f32>,
        metric: DistanceMetric,
    ) -> Result<Self, EvalError> {
        let mut norms = Vec::new();
        if metric != DistanceMetric::Cosine {
            for (what, x) in [("query features", query), ("gallery features", gallery)] {
                let sq = squared_norms(x);
                // |−2 x·y| ≤ ‖x‖² + ‖y‖²: every intermediate stays below 4 · max ‖x‖².
                if let Some(row) = sq
                    .iter()
                    .position(|&v| !v.is_finite() || v > f32::MAX / 4.0)
                {
                    return Err(EvalError::DistanceOverflow {
                        what: what.into(),
                        row,
                    });
                }
                norms.extend(sq);
            }
        }
        Ok(Items {
            query,
            gallery,
            norms,
            metric,
        })
    }

    fn q(&self) -> usize {
        self.query.nrows()
    }

    fn n(&self) -> usize {
        self.q() + self.gallery.nrows()
    }

    /// Items `start..end`, all queries or all gallery.
    fn rows(&self, start: usize, end: usize) -> ArrayView2<'_, f32> {
        let q = self.q();
        if end <= q {
            self.query.slice(s![start..end, ..])
        } else {
            debug_assert!(start >= q, "a block is all queries or all gallery");
            self.gallery.slice(s![start - q..end - q, ..])
        }
    }

    /// The scale of the products: `−2 x·y` (Euclidean) or `x·y` (cosine).
    fn alpha(&self) -> f32 {
        if self.metric == DistanceMetric::Cosine {
            1.0
        } else {
            -2.0
        }
    }

    /// Item `i`'s features.
    fn row(&self, i: usize) -> ArrayView1<'_, f32> {
        self.rows(i, i + 1).index_axis_move(Axis(0), 0)
    }

    /// The scaled products of the rows of `lhs` with every item from `from` on.
    ///
    /// # Shapes
    /// - `lhs`: `[B, D]`; `out`: `[B, N − from]`
    fn products_into(&self, lhs: ArrayView2<'_, f32>, from: usize, out: ArrayViewMut2<'_, f32>) {
        let (q, alpha) = (self.q(), self.alpha());
        if from < q {
            let (mut queries, mut gallery) = out.split_at(Axis(1), q - from);
            let rhs = self.query.slice(s![from.., ..]);
            general_mat_mul(alpha, &lhs, &rhs.t(), 0.0, &mut queries);
            general_mat_mul(alpha, &lhs, &self.gallery.t(), 0.0, &mut gallery);
        } else {
            let mut out = out;
            let rhs = self.gallery.slice(s![from - q.., ..]);
            general_mat_mul(alpha, &lhs, &rhs.t(), 0.0, &mut out);
        }
    }

    /// Columns `which` of `A` (working rows before normalising), recomputed from the
    /// features by one matrix product.
    ///
    /// # Shapes
    /// - output: `[which.len(), N]`, row `t` holds `A[·, which[t]]`
    fn columns(&self, which: &[usize]) -> Array2<f32> {
        let (n, d) = (self.n(), self.query.ncols());
        let mut lhs = Array2::<f32>::zeros((which.len(), d));
        for (mut row, &i) in lhs.rows_mut().into_iter().zip(which) {
            row.assign(&self.row(i));
        }
        let mut out = Array2::<f32>::zeros((which.len(), n));
        self.products_into(lhs.view(), 0, out.view_mut());
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(which.par_iter())
            .for_each(|(mut row, &i)| {
                let row = row.as_slice_mut().expect("contiguous");
                self.squared_in_place(row, i, 0, Along::Column);
            });
        out
    }

    /// `A[j, i]` for each `j` of `js`, recomputed from the features a few at a time (each
    /// product on the calling thread).
    fn column_at(&self, i: usize, js: &[u32]) -> Vec<f32> {
        let d = self.query.ncols();
        let piece = (ONE_THREAD_PRODUCT / d).saturating_sub(2).max(1);
        let lhs = self.rows(i, i + 1);
        let mut gathered = Array2::<f32>::zeros((piece.min(js.len()), d));
        let mut products = Array2::<f32>::zeros((1, gathered.nrows()));
        let mut out = Vec::with_capacity(js.len());
        for chunk in js.chunks(piece) {
            for (mut row, &j) in gathered.axis_iter_mut(Axis(0)).zip(chunk) {
                row.assign(&self.row(j as usize));
            }
            let rhs = gathered.slice(s![..chunk.len(), ..]);
            let mut p = products.slice_mut(s![.., ..chunk.len()]);
            general_mat_mul(self.alpha(), &lhs, &rhs.t(), 0.0, &mut p);
            out.extend(
                chunk
                    .iter()
                    .zip(p.iter())
                    .map(|(&j, &p)| self.squared(p, j as usize, i)),
            );
        }
        out
    }

    /// `A[r, c]` from the scaled product of items `r` and `c`.
    fn squared(&self, product: f32, r: usize, c: usize) -> f32 {
        let mut value = [product];
        self.squared_in_place(&mut value, c, r, Along::Column);
        value[0]
    }

    /// Turns the scaled products `values[t]` of the pairs `(fixed, from + t)` into
    /// `A[fixed, from + t]` ([`Along::Row`]) or `A[from + t, fixed]` ([`Along::Column`]).
    fn squared_in_place(&self, values: &mut [f32], fixed: usize, from: usize, along: Along) {
        if self.metric == DistanceMetric::Cosine {
            values.iter_mut().for_each(|v| *v = cosine(*v));
            return;
        }
        let sqrt = self.metric == DistanceMetric::Euclidean;
        let q = self.q();
        let len = values.len();
        let split = q.saturating_sub(from).min(len);
        let nf = self.norms[fixed];
        for (range, others_are_queries) in [(0..split, true), (split..len, false)] {
            let (r_query, c_query) = match along {
                Along::Row => (fixed < q, others_are_queries),
                Along::Column => (others_are_queries, fixed < q),
            };
            // pairwise_distances adds the norm of its row item first: the query of a
            // query-gallery pair, else the row of A.
            let fixed_first = (r_query || !c_query) == (along == Along::Row);
            let others = &self.norms[from + range.start..from + range.end];
            let v = &mut values[range];
            match (fixed_first, sqrt) {
                (true, true) => run2(v, others, |p, m| euclidean::<true>(p, nf, m)),
                (true, false) => run2(v, others, |p, m| euclidean::<false>(p, nf, m)),
                (false, true) => run2(v, others, |p, m| euclidean::<true>(p, m, nf)),
                (false, false) => run2(v, others, |p, m| euclidean::<false>(p, m, nf)),
            }
        }
    }
}

/// `values[t] = f(values[t], b[t])` (a loop the compiler vectorises).
#[inline(always)]
fn run2(values: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for (v, &b) in values.iter_mut().zip(b) {
        *v = f(*v, b);
    }
}

/// The squared Euclidean (`SQRT`: the Euclidean distance, squared) from `−2 x·y` and the
/// two squared norms, in `pairwise_distances`' order of operations.
#[inline(always)]
fn euclidean<const SQRT: bool>(product: f32, first: f32, second: f32) -> f32 {
    let d2 = (product + first + second).max(0.0);
    let d = if SQRT { d2.sqrt() } else { d2 };
    d * d
}

/// The cosine distance from the product of unit vectors, squared.
#[inline(always)]
fn cosine(product: f32) -> f32 {
    let d = 1.0 - product;
    d * d
}

/// One working row's nearest items by squared distance and its maximum, as the pass sees
/// its entries.
#[derive(Debug, Clone)]
struct Candidates {
    /// `(A[j, i], j)`, ascending by value then index; at most `cap`.
    best: Vec<(f32, u32)>,
    cap: usize,
    /// The value an entry must not exceed to enter (`best`'s last once full).
    worst: f32,
    /// The largest entry seen.
    max: f32,
}

impl Candidates {
    fn new(cap: usize) -> Self {
        Candidates {
            best: Vec::with_capacity(cap),
            cap,
            worst: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }

    /// Entry `j` of the row.
    #[inline]
    fn push(&mut self, value: f32, j: u32) {
        self.max = self.max.max(value);
        if value <= self.worst {
            self.insert(value, j);
        }
    }

    /// Entries `from..from + values.len()` of the row.
    fn push_run(&mut self, values: &[f32], from: usize) {
        self.max = values.iter().copied().fold(self.max, f32::max);
        for (t, &value) in values.iter().enumerate() {
            if value <= self.worst {
                self.insert(value, (from + t) as u32);
            }
        }
    }

    fn insert(&mut self, value: f32, j: u32) {
        let before = |&(v, c): &(f32, u32)| v < value || (v == value && c < j);
        if self.best.len() == self.cap {
            // Full: the entry enters only before the last kept one.
            if before(&self.best[self.cap - 1]) {
                return;
            }
            self.best.pop();
        }
        let at = self.best.partition_point(before);
        self.best.insert(at, (value, j));
        if self.best.len() == self.cap {
            self.worst = self.best[self.cap - 1].0;
        }
    }

    /// The row's nearest `keep` items (all `n` when fewer) after dividing by `max`, in
    /// `re_rank`'s order (value, then index), or `None` when a tie at the boundary may
    /// reach items that were not kept.
    fn ranks(&self, max: f32, keep: usize, n: usize) -> Option<Vec<u32>> {
        let mut normalised: Vec<(f32, u32)> =
            self.best.iter().map(|&(v, j)| (v / max, j)).collect();
        normalised.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let count = keep.min(n);
        // Items not kept have values at or above the largest kept: their quotients are at
        // least its quotient, which must exceed the last one taken.
        let complete = self.best.len() == n;
        if !complete && normalised[normalised.len() - 1].0 <= normalised[count - 1].0 {
            return None;
        }
        Some(normalised[..count].iter().map(|&(_, j)| j).collect())
    }
}

/// The blocked pass: every working row's candidates and maximum, and the query rows'
/// gallery entries of `A` (not yet normalised).
///
/// # Shapes
/// - output: `[Q, G]` and `N` candidate lists
fn scan(items: &Items<'_>, keep: usize) -> (Array2<f32>, Vec<Candidates>) {
    let (q, n) = (items.q(), items.n());
    let cap = (keep + SLACK).min(n);
    let mut rows = vec![Candidates::new(cap); n];
    let mut out = Array2::<f32>::zeros((q, n - q));
    let mut block = Array2::<f32>::zeros((ROWS.min(n), n));
    let starts = (0..q).step_by(ROWS).chain((q..n).step_by(ROWS));
    for start in starts {
        let end = (start + ROWS).min(if start < q { q } else { n });
        let mut products = block.slice_mut(s![..end - start, ..n - start]);
        items.products_into(items.rows(start, end), start, products.view_mut());
        update_columns(items, products.view(), start, &mut rows[start + 1..]);
        let out_rows: Vec<Option<ArrayViewMut1<'_, f32>>> = if start < q {
            out.axis_iter_mut(Axis(0))
                .skip(start)
                .take(end - start)
                .map(Some)
                .collect()
        } else {
            (start..end).map(|_| None).collect()
        };
        update_rows(items, products, start, &mut rows[start..end], out_rows);
    }
    (out, rows)
}

/// The block's own working rows `i` (from `start`): entries `A[j, i]` for `j ≥ i`; a query
/// row's gallery entries are also written to its row of the output. Runs after
/// [`update_columns`]: it turns the products into those entries in place.
///
/// # Shapes
/// - `products`: `[rows.len(), N − start]`, column `t` is item `start + t`
fn update_rows(
    items: &Items<'_>,
    mut products: ArrayViewMut2<'_, f32>,
    start: usize,
    rows: &mut [Candidates],
    out_rows: Vec<Option<ArrayViewMut1<'_, f32>>>,
) {
    let q = items.q();
    rows.par_iter_mut()
        .zip(products.axis_iter_mut(Axis(0)).into_par_iter())
        .zip(out_rows.into_par_iter())
        .enumerate()
        .for_each(|(t, ((row, mut p), out_row))| {
            let i = start + t;
            let values = &mut p.as_slice_mut().expect("contiguous")[t..];
            items.squared_in_place(values, i, i, Along::Column);
            row.push_run(values, i);
            if let Some(mut out_row) = out_row {
                let gallery = &values[q - i..];
                out_row
                    .as_slice_mut()
                    .expect("contiguous")
                    .copy_from_slice(gallery);
            }
        });
}

/// The later working rows `j > i` of every block item `i`: entries `A[i, j]`.
///
/// # Shapes
/// - `products`: `[B, N − start]`; `rows`: the working rows of items `start + 1..N`
fn update_columns(
    items: &Items<'_>,
    products: ArrayView2<'_, f32>,
    start: usize,
    rows: &mut [Candidates],
) {
    rows.par_chunks_mut(COLUMNS)
        .enumerate()
        .for_each_init(Vec::new, |values, (c, chunk)| {
            let j0 = start + 1 + c * COLUMNS;
            let to = j0 + chunk.len();
            for (t, p) in products.axis_iter(Axis(0)).enumerate() {
                let i = start + t;
                let from = j0.max(i + 1);
                if from >= to {
                    continue;
                }
                let p = &p.to_slice().expect("contiguous")[from - start..to - start];
                values.clear();
                values.extend_from_slice(p);
                items.squared_in_place(values, i, from, Along::Row);
                for (row, &value) in chunk[from - j0..].iter_mut().zip(values.iter()) {
                    row.push(value, i as u32);
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairwise_distances;
    use crate::synthetic::synthetic_split;

    #[test]
    fn candidates_keep_the_nearest_in_any_push_order() {
        // Values on a few levels (ties), pushed as a run from 10 on, then one by one below.
        let row: Vec<f32> = (0..40).map(|j| ((j * 17) % 7) as f32 / 3.0).collect();
        let mut c = Candidates::new(12);
        c.push_run(&row[10..], 10);
        for (j, &v) in row[..10].iter().enumerate().rev() {
            c.push(v, j as u32);
        }
        assert_eq!(c.max, 2.0);
        let kept: Vec<u32> = c.best.iter().map(|&(_, j)| j).collect();
        assert_eq!(kept, nearest(&row, 12));
        // Level 0 holds 6 items (0, 7, ...), level 1/3 six more: 8 taken leaves no tie
        // across the boundary of the 12 kept.
        assert_eq!(c.ranks(1.0, 8, 40), Some(nearest(&row, 8)));
    }

    #[test]
    fn a_tie_past_the_kept_items_asks_for_the_full_row() {
        let mut c = Candidates::new(3);
        c.push_run(&[1.0, 1.0, 1.0, 1.0, 0.5], 0);
        assert_eq!(c.best, vec![(0.5, 4), (1.0, 0), (1.0, 1)]);
        // The 2nd item ties with the last kept: a 4th item (not kept) ties too.
        assert_eq!(c.ranks(1.0, 2, 5), None);
        // All kept: nothing can be missing.
        assert_eq!(c.ranks(1.0, 2, 3), Some(vec![4, 0]));
        // Quotients that round together are ties as well: 1.5 and the next float over 10.
        let next = f32::from_bits(1.5f32.to_bits() + 1);
        assert_eq!(1.5f32 / 10.0, next / 10.0);
        let mut c = Candidates::new(3);
        c.push_run(&[next, 1.5, 10.0, 0.0], 0);
        assert_eq!(c.best, vec![(0.0, 3), (1.5, 1), (next, 0)]);
        assert_eq!(c.ranks(10.0, 2, 4), None);
        // Over 1 they differ: the 3rd kept item is beyond the 2nd.
        assert_eq!(c.ranks(1.0, 2, 4), Some(vec![3, 1]));
    }

    #[test]
    fn entries_are_the_dense_matrices_squared_bit_for_bit() {
        let s = synthetic_split(7, 11, 3, 2, 40, 4);
        for metric in [
            DistanceMetric::Euclidean,
            DistanceMetric::SquaredEuclidean,
            DistanceMetric::Cosine,
        ] {
            let d = |a: &Array2<f32>, b: &Array2<f32>| {
                pairwise_distances(a.view(), b.view(), metric).unwrap()
            };
            let (q_g, q_q, g_g) = (
                d(&s.query, &s.gallery),
                d(&s.query, &s.query),
                d(&s.gallery, &s.gallery),
            );
            let normalised = (
                l2_normalised(s.query.view()),
                l2_normalised(s.gallery.view()),
            );
            let items = if metric == DistanceMetric::Cosine {
                Items::new(normalised.0.view(), normalised.1.view(), metric)
            } else {
                Items::new(s.query.view(), s.gallery.view(), metric)
            }
            .unwrap();
            let q = 7;
            // A[r, c], read from the dense blocks as re_rank reads them.
            let a = |r: usize, c: usize| {
                let v = match (r < q, c < q) {
                    (true, true) => q_q[[r, c]],
                    (true, false) => q_g[[r, c - q]],
                    (false, true) => q_g[[c, r - q]],
                    (false, false) => g_g[[r - q, c - q]],
                };
                v * v
            };
            let which: Vec<usize> = (0..18).rev().collect();
            let columns = items.columns(&which);
            for c in 0..18 {
                let js: Vec<u32> = (0..18).rev().collect();
                let some = items.column_at(c, &js);
                for r in 0..18 {
                    let want = a(r, c).to_bits();
                    assert_eq!(columns[[17 - c, r]].to_bits(), want, "{metric:?} {r},{c}");
                    assert_eq!(some[17 - r].to_bits(), want, "{metric:?} {r},{c}");
                }
            }
        }
    }
}
