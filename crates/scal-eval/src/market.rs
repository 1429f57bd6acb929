//! CMC, mAP and mINP: the Market-1501 protocol and the classic CUHK03 single-gallery-shot
//! protocol.

use std::collections::HashMap;

use ndarray::{ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use crate::EvalError;

/// A distance value: `f32` or `f64`. Only comparisons are used, so no precision is lost.
pub trait Distance: Copy + PartialOrd + Send + Sync + std::fmt::Display + 'static {
    /// Whether the value is neither NaN nor infinite.
    fn is_finite(self) -> bool;
    /// `self²` in the input precision, rounded to `f32` (what numpy's
    /// `np.power(d, 2).astype(np.float32)` gives).
    fn square_to_f32(self) -> f32;
}

impl Distance for f32 {
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn square_to_f32(self) -> f32 {
        self * self
    }
}

impl Distance for f64 {
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn square_to_f32(self) -> f32 {
        (self * self) as f32
    }
}

/// The result of an evaluation. Fractions in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// `cmc[k]` = share of valid queries with a correct match within the first `k + 1`.
    pub cmc: Vec<f64>,
    /// Mean average precision.
    pub map: f64,
    /// Mean inverse negative penalty (hits / position of the last hit).
    pub minp: f64,
    /// Queries that had at least one valid match and were counted.
    pub num_valid_queries: usize,
}

impl Metrics {
    /// Rank-k accuracy (k ≥ 1), or `None` beyond the computed ranks.
    pub fn rank(&self, k: usize) -> Option<f64> {
        k.checked_sub(1).and_then(|i| self.cmc.get(i).copied())
    }
}

/// Checks the shapes of a distance matrix against the id vectors and that every value is
/// finite.
pub(crate) fn validate<T: Distance>(
    distmat: ArrayView2<'_, T>,
    what: &str,
    q_pids: &[i64],
    g_pids: &[i64],
    q_camids: &[i64],
    g_camids: &[i64],
) -> Result<(), EvalError> {
    let (q, g) = distmat.dim();
    if q == 0 || g == 0 {
        return Err(EvalError::Empty { what: what.into() });
    }
    for (name, len, expected) in [
        (
            "q_pids length (rows of the distance matrix)",
            q_pids.len(),
            q,
        ),
        (
            "q_camids length (rows of the distance matrix)",
            q_camids.len(),
            q,
        ),
        (
            "g_pids length (columns of the distance matrix)",
            g_pids.len(),
            g,
        ),
        (
            "g_camids length (columns of the distance matrix)",
            g_camids.len(),
            g,
        ),
    ] {
        if len != expected {
            return Err(EvalError::ShapeMismatch {
                what: name.into(),
                expected,
                found: len,
            });
        }
    }
    check_finite(distmat, what)
}

pub(crate) fn check_finite<T: Distance>(m: ArrayView2<'_, T>, what: &str) -> Result<(), EvalError> {
    let bad = m
        .axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .find_first(|(_, row)| row.iter().any(|v| !v.is_finite()));
    match bad {
        None => Ok(()),
        Some((row, values)) => {
            let (col, value) = values
                .iter()
                .enumerate()
                .find(|(_, v)| !v.is_finite())
                .expect("found above");
            Err(EvalError::NonFinite {
                what: what.into(),
                row,
                col,
                value: value.to_string(),
            })
        }
    }
}

/// 1-based positions of the correct matches in one query's ranking, after removing the
/// gallery items with the query's identity and camera. Empty when there is none.
///
/// The ranking is the stable sort of the distances: equal distances keep gallery index
/// order, so a wrong match at the distance of a correct one ranks ahead of it exactly when
/// its index is lower (a constant distance matrix does not score as perfect).
///
/// Runs in O(G log m) for m correct matches without sorting the gallery: a correct match's
/// position is its rank among the correct matches plus the number of kept wrong matches
/// before it in that order.
fn hit_positions<T: Distance>(
    row: ArrayView1<'_, T>,
    q_pid: i64,
    q_cam: i64,
    g_pids: &[i64],
    g_camids: &[i64],
) -> Vec<usize> {
    // (distance, gallery index) of the correct matches, in ranking order.
    let mut positives: Vec<(T, usize)> = row
        .iter()
        .zip(g_pids.iter().zip(g_camids))
        .enumerate()
        .filter(|(_, (_, (p, c)))| **p == q_pid && **c != q_cam)
        .map(|(j, (d, _))| (*d, j))
        .collect();
    if positives.is_empty() {
        return Vec::new();
    }
    positives.sort_by(|a, b| a.0.partial_cmp(&b.0).expect("finite distances"));
    // before[k] = wrong matches ranked after exactly k correct matches.
    let mut before = vec![0usize; positives.len() + 1];
    for (j, (d, p)) in row.iter().zip(g_pids).enumerate() {
        if *p != q_pid {
            before[positives.partition_point(|&(x, i)| x < *d || (x == *d && i < j))] += 1;
        }
    }
    let mut wrong_ahead = 0;
    (0..positives.len())
        .map(|j| {
            wrong_ahead += before[j];
            j + 1 + wrong_ahead
        })
        .collect()
}

/// Average precision and inverse negative penalty from the hit positions.
fn ap_and_inp(positions: &[usize]) -> (f64, f64) {
    let m = positions.len() as f64;
    let ap = positions
        .iter()
        .enumerate()
        .map(|(j, &pos)| (j + 1) as f64 / pos as f64)
        .sum::<f64>()
        / m;
    let inp = m / *positions.last().expect("non-empty") as f64;
    (ap, inp)
}

/// The Market-1501 evaluation used by torchreid, FastReID and reid-strong-baseline
/// (single query).
///
/// For each query the gallery is ranked by distance (smaller first); gallery items with the
/// query's identity **and** camera are removed; queries with no remaining correct match are
/// skipped. CMC is cut at `max_rank` (or at the gallery size if smaller). AP is the
/// non-interpolated average precision; INP = hits / position of the last hit.
///
/// # Shapes
/// - `distmat`: `[Q, G]`; `q_pids`, `q_camids`: `[Q]`; `g_pids`, `g_camids`: `[G]`
///
/// # Errors
/// Shapes that disagree, an empty matrix, a non-finite distance, `max_rank == 0`, or no
/// valid query at all.
pub fn evaluate_market1501<T: Distance>(
    distmat: ArrayView2<'_, T>,
    q_pids: &[i64],
    g_pids: &[i64],
    q_camids: &[i64],
    g_camids: &[i64],
    max_rank: usize,
) -> Result<Metrics, EvalError> {
    if max_rank == 0 {
        return Err(EvalError::InvalidParameter {
            name: "max_rank",
            problem: "must be at least 1".into(),
        });
    }
    validate(
        distmat,
        "distance matrix",
        q_pids,
        g_pids,
        q_camids,
        g_camids,
    )?;
    let max_rank = max_rank.min(distmat.ncols());
    // Per query: (position of the first hit, AP, INP), or None when skipped.
    let per_query: Vec<Option<(usize, f64, f64)>> = distmat
        .axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .map(|(q, row)| {
            let positions = hit_positions(row, q_pids[q], q_camids[q], g_pids, g_camids);
            if positions.is_empty() {
                return None;
            }
            let (ap, inp) = ap_and_inp(&positions);
            Some((positions[0], ap, inp))
        })
        .collect();
    summarise(per_query.into_iter().flatten(), max_rank)
}

/// The Market-1501 evaluation of each query's nearest gallery rows only (an index's answer,
/// `lists[q]` nearest first, at most `depth` of them after the protocol's exclusions): the
/// gallery items with the query's identity **and** camera are removed from each list, the
/// correct matches of the whole gallery are counted from the labels, and a correct match
/// missing from a list counts as not found. So AP, INP and the CMC are those of the exact
/// ranking when every correct match lies in the list (and the list is the exact one), and
/// lower bounds otherwise: AP sums precision at the hits found over all correct matches, INP
/// is 0 for a query whose last correct match is not in its list, CMC at k ≤ depth is exact
/// for an exact list. Queries without a correct match in the gallery are skipped.
///
/// # Shapes
/// - `lists`: `[Q]` lists of gallery rows; `q_pids`, `q_camids`: `[Q]`; `g_pids`, `g_camids`: `[G]`
///
/// # Errors
/// Lengths that disagree, a row outside the gallery, `max_rank == 0`, or no valid query.
pub fn evaluate_top_lists(
    lists: &[Vec<usize>],
    (q_pids, q_camids): (&[i64], &[i64]),
    (g_pids, g_camids): (&[i64], &[i64]),
    max_rank: usize,
) -> Result<Metrics, EvalError> {
    if max_rank == 0 {
        return Err(EvalError::InvalidParameter {
            name: "max_rank",
            problem: "must be at least 1".into(),
        });
    }
    for (what, len, expected) in [
        ("q_pids length (queries' lists)", q_pids.len(), lists.len()),
        (
            "q_camids length (queries' lists)",
            q_camids.len(),
            lists.len(),
        ),
        (
            "g_camids length (g_pids length)",
            g_camids.len(),
            g_pids.len(),
        ),
    ] {
        if len != expected {
            return Err(EvalError::ShapeMismatch {
                what: what.into(),
                expected,
                found: len,
            });
        }
    }
    if let Some(&row) = lists.iter().flatten().find(|&&r| r >= g_pids.len()) {
        return Err(EvalError::InvalidParameter {
            name: "lists",
            problem: format!("row {row} is outside the gallery of {} rows", g_pids.len()),
        });
    }
    // Correct matches of a query = its identity's gallery rows less those of its camera.
    let mut per_identity: HashMap<i64, usize> = HashMap::new();
    let mut per_identity_camera: HashMap<(i64, i64), usize> = HashMap::new();
    for (&p, &c) in g_pids.iter().zip(g_camids) {
        *per_identity.entry(p).or_default() += 1;
        *per_identity_camera.entry((p, c)).or_default() += 1;
    }
    let per_query = lists.iter().enumerate().filter_map(|(q, list)| {
        let (pid, cam) = (q_pids[q], q_camids[q]);
        let matches = per_identity.get(&pid).copied().unwrap_or(0)
            - per_identity_camera.get(&(pid, cam)).copied().unwrap_or(0);
        if matches == 0 {
            return None;
        }
        let kept = list
            .iter()
            .filter(|&&r| !(g_pids[r] == pid && g_camids[r] == cam));
        let positions: Vec<usize> = kept
            .enumerate()
            .filter(|&(_, &r)| g_pids[r] == pid)
            .map(|(i, _)| i + 1)
            .collect();
        let ap = positions
            .iter()
            .enumerate()
            .map(|(j, &pos)| (j + 1) as f64 / pos as f64)
            .sum::<f64>()
            / matches as f64;
        let inp = match positions.last() {
            Some(&last) if positions.len() == matches => matches as f64 / last as f64,
            _ => 0.0,
        };
        Some((positions.first().copied().unwrap_or(usize::MAX), ap, inp))
    });
    summarise(per_query, max_rank)
}

/// Each query's average precision under the Market-1501 protocol (as
/// [`evaluate_market1501`] computes it), `None` for a query without a valid match. For
/// picking the best and worst queries of a report.
///
/// # Shapes
/// - `distmat`: `[Q, G]`; `q_pids`, `q_camids`: `[Q]`; `g_pids`, `g_camids`: `[G]`
///
/// # Errors
/// As [`evaluate_market1501`], except that no valid query is not an error.
pub fn average_precision_per_query<T: Distance>(
    distmat: ArrayView2<'_, T>,
    q_pids: &[i64],
    g_pids: &[i64],
    q_camids: &[i64],
    g_camids: &[i64],
) -> Result<Vec<Option<f64>>, EvalError> {
    validate(
        distmat,
        "distance matrix",
        q_pids,
        g_pids,
        q_camids,
        g_camids,
    )?;
    Ok(distmat
        .axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .map(|(q, row)| {
            let positions = hit_positions(row, q_pids[q], q_camids[q], g_pids, g_camids);
            (!positions.is_empty()).then(|| ap_and_inp(&positions).0)
        })
        .collect())
}

/// The indices of the `k` nearest gallery items of one query, nearest first, after removing
/// the items with the query's identity and camera (the ranking the metric scores).
///
/// # Shapes
/// - `row`: `[G]`; `g_pids`, `g_camids`: `[G]`
pub fn top_k_gallery<T: Distance>(
    row: ArrayView1<'_, T>,
    q_pid: i64,
    q_cam: i64,
    g_pids: &[i64],
    g_camids: &[i64],
    k: usize,
) -> Vec<usize> {
    assert_eq!(row.len(), g_pids.len(), "one distance per gallery item");
    let mut kept: Vec<usize> = (0..row.len())
        .filter(|&j| !(g_pids[j] == q_pid && g_camids[j] == q_cam))
        .collect();
    kept.sort_by(|&a, &b| row[a].partial_cmp(&row[b]).expect("finite distances"));
    kept.truncate(k);
    kept
}

/// Sums per-query results in query order (deterministic whatever the thread count).
fn summarise(
    per_query: impl Iterator<Item = (usize, f64, f64)>,
    max_rank: usize,
) -> Result<Metrics, EvalError> {
    let mut first_hit = vec![0usize; max_rank + 1];
    let (mut ap_sum, mut inp_sum, mut valid) = (0.0, 0.0, 0usize);
    for (first, ap, inp) in per_query {
        first_hit[(first - 1).min(max_rank)] += 1;
        ap_sum += ap;
        inp_sum += inp;
        valid += 1;
    }
    if valid == 0 {
        return Err(EvalError::NoValidQuery);
    }
    let mut cumulative = 0;
    let cmc = first_hit[..max_rank]
        .iter()
        .map(|n| {
            cumulative += n;
            cumulative as f64 / valid as f64
        })
        .collect();
    Ok(Metrics {
        cmc,
        map: ap_sum / valid as f64,
        minp: inp_sum / valid as f64,
        num_valid_queries: valid,
    })
}

/// Number of random gallery samplings per query in [`evaluate_cuhk03_classic`].
pub const CUHK03_CLASSIC_REPEATS: usize = 10;

/// SplitMix64: the documented random stream of [`evaluate_cuhk03_classic`], easy to
/// reproduce in any language.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The classic CUHK03 protocol (old 20-split benchmark): single-gallery-shot CMC.
///
/// For each query, the gallery is ranked and the query's identity-and-camera items removed
/// as in [`evaluate_market1501`]; then, [`CUHK03_CLASSIC_REPEATS`] times, one image of each
/// gallery identity is drawn at random and the CMC of that reduced ranking is taken; the
/// query's CMC is the mean of the repeats. mAP and mINP use the full ranking.
///
/// The draws are reproducible: query `q` uses a SplitMix64 stream started at
/// `seed + q * 0x9E3779B97F4A7C15` (wrapping); identities are visited in the order of their
/// first appearance in the ranking (ties broken by gallery index), and each draw picks item
/// `next() % n` of the identity's `n` items in ranking order.
///
/// The CMC has one rank per gallery identity (distractor and junk labels included), at most
/// `max_rank`, as torchreid's `eval_cuhk03`: the reduced ranking holds one image per
/// identity. (Every query with a correct match sees every gallery identity: the removal
/// takes only images of its own identity, which keeps an image in another camera.)
///
/// # Errors
/// As [`evaluate_market1501`].
pub fn evaluate_cuhk03_classic<T: Distance>(
    distmat: ArrayView2<'_, T>,
    q_pids: &[i64],
    g_pids: &[i64],
    q_camids: &[i64],
    g_camids: &[i64],
    max_rank: usize,
    seed: u64,
) -> Result<Metrics, EvalError> {
    if max_rank == 0 {
        return Err(EvalError::InvalidParameter {
            name: "max_rank",
            problem: "must be at least 1".into(),
        });
    }
    validate(
        distmat,
        "distance matrix",
        q_pids,
        g_pids,
        q_camids,
        g_camids,
    )?;
    let identities = g_pids
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let max_rank = max_rank.min(identities);
    let per_query: Vec<Option<(Vec<f64>, f64, f64)>> = distmat
        .axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .map(|(q, row)| {
            let query = (q_pids[q], q_camids[q]);
            let rng = SplitMix64(seed.wrapping_add((q as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            cuhk03_query(row, query, (g_pids, g_camids), max_rank, rng)
        })
        .collect();
    averaged(per_query.into_iter().flatten(), max_rank)
}

/// One query of [`evaluate_cuhk03_classic`]: its single-gallery-shot CMC (the mean over
/// the draws, of `max_rank` ranks), AP and INP; `None` when it has no correct match.
fn cuhk03_query<T: Distance>(
    row: ArrayView1<'_, T>,
    (q_pid, q_cam): (i64, i64),
    (g_pids, g_camids): (&[i64], &[i64]),
    max_rank: usize,
    mut rng: SplitMix64,
) -> Option<(Vec<f64>, f64, f64)> {
    let mut order: Vec<usize> = (0..row.len())
        .filter(|&g| !(g_pids[g] == q_pid && g_camids[g] == q_cam))
        .collect();
    order.sort_by(|&a, &b| {
        row[a]
            .partial_cmp(&row[b])
            .expect("finite distances")
            .then(a.cmp(&b))
    });
    let hits: Vec<bool> = order.iter().map(|&g| g_pids[g] == q_pid).collect();
    let positions: Vec<usize> = hits
        .iter()
        .enumerate()
        .filter(|(_, h)| **h)
        .map(|(i, _)| i + 1)
        .collect();
    if positions.is_empty() {
        return None;
    }
    let (ap, inp) = ap_and_inp(&positions);
    // Identities in order of first appearance, each with its positions in `order`.
    let mut group_of: HashMap<i64, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (pos, &g) in order.iter().enumerate() {
        let next = groups.len();
        let k = *group_of.entry(g_pids[g]).or_insert(next);
        if k == groups.len() {
            groups.push(Vec::new());
        }
        groups[k].push(pos);
    }
    let mut cmc = vec![0.0f64; max_rank];
    for _ in 0..CUHK03_CLASSIC_REPEATS {
        let mut chosen: Vec<usize> = groups
            .iter()
            .map(|items| items[(rng.next() % items.len() as u64) as usize])
            .collect();
        chosen.sort_unstable();
        let first = chosen
            .iter()
            .position(|&pos| hits[pos])
            .expect("the query's identity is one of the groups");
        for value in cmc.iter_mut().skip(first) {
            *value += 1.0;
        }
    }
    for value in &mut cmc {
        *value /= CUHK03_CLASSIC_REPEATS as f64;
    }
    Some((cmc, ap, inp))
}

/// The mean CMC, mAP and mINP over the valid queries' `(CMC, AP, INP)`.
fn averaged(
    per_query: impl Iterator<Item = (Vec<f64>, f64, f64)>,
    max_rank: usize,
) -> Result<Metrics, EvalError> {
    let mut cmc = vec![0.0f64; max_rank];
    let (mut ap_sum, mut inp_sum, mut valid) = (0.0, 0.0, 0usize);
    for (query_cmc, ap, inp) in per_query {
        for (total, v) in cmc.iter_mut().zip(query_cmc) {
            *total += v;
        }
        ap_sum += ap;
        inp_sum += inp;
        valid += 1;
    }
    if valid == 0 {
        return Err(EvalError::NoValidQuery);
    }
    for v in &mut cmc {
        *v /= valid as f64;
    }
    Ok(Metrics {
        cmc,
        map: ap_sum / valid as f64,
        minp: inp_sum / valid as f64,
        num_valid_queries: valid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn hand_computed_example() {
        // One query (pid 1, camera 0). Gallery ranked by distance:
        // g2 (pid 1, cam 0: removed), g0 (pid 2), g3 (pid 1, cam 1: hit), g1 (pid 3),
        // g4 (pid 1, cam 2: hit).
        let d = array![[0.2f32, 0.4, 0.1, 0.3, 0.5]];
        let m = evaluate_market1501(d.view(), &[1], &[2, 3, 1, 1, 1], &[0], &[1, 1, 0, 1, 2], 5)
            .unwrap();
        // Kept ranking: g0, g3, g1, g4 -> hits at positions 2 and 4.
        assert_eq!(m.cmc, vec![0.0, 1.0, 1.0, 1.0, 1.0]);
        assert!((m.map - (1.0 / 2.0 + 2.0 / 4.0) / 2.0).abs() < 1e-12);
        assert!((m.minp - 2.0 / 4.0).abs() < 1e-12);
        assert_eq!(m.num_valid_queries, 1);
        assert_eq!(m.rank(2), Some(1.0));
        assert_eq!(m.rank(0), None);
    }

    #[test]
    fn ties_rank_in_gallery_order() {
        // One query (pid 1, camera 0); every distance 1: the ranking is the gallery order,
        // so the correct matches (g1, g3) are at positions 2 and 4, not 1 and 2.
        let d = array![[1.0f32; 5]];
        let m = evaluate_market1501(d.view(), &[1], &[2, 1, 3, 1, 4], &[0], &[1, 1, 1, 2, 1], 5)
            .unwrap();
        assert_eq!(m.cmc, vec![0.0, 1.0, 1.0, 1.0, 1.0]);
        assert!((m.map - (1.0 / 2.0 + 2.0 / 4.0) / 2.0).abs() < 1e-12);
        assert!((m.minp - 2.0 / 4.0).abs() < 1e-12);
        // A correct match before the wrong one of equal distance ranks first.
        let d = array![[0.5f64, 0.5, 0.2]];
        let m = evaluate_market1501(d.view(), &[1], &[1, 2, 3], &[0], &[1, 1, 1], 3).unwrap();
        assert_eq!(m.cmc, vec![0.0, 1.0, 1.0]);
        let ap = average_precision_per_query(d.view(), &[1], &[1, 2, 3], &[0], &[1, 1, 1]);
        assert_eq!(ap.unwrap(), vec![Some(0.5)]);
        assert_eq!(
            top_k_gallery(d.row(0), 1, 0, &[1, 2, 3], &[1, 1, 1], 3),
            vec![2, 0, 1]
        );
    }

    #[test]
    fn queries_without_valid_match_are_skipped_and_all_skipped_is_an_error() {
        // Query 1's only same-pid image is in its own camera.
        let d = array![[0.1f64, 0.2], [0.3, 0.4]];
        let m = evaluate_market1501(d.view(), &[1, 2], &[1, 2], &[0, 0], &[1, 0], 50).unwrap();
        assert_eq!(m.num_valid_queries, 1);
        assert_eq!(m.cmc.len(), 2, "max_rank is cut to the gallery size");
        let err =
            evaluate_market1501(d.view(), &[1, 2], &[1, 2], &[0, 0], &[0, 0], 50).unwrap_err();
        assert_eq!(err, EvalError::NoValidQuery);
    }

    #[test]
    fn bad_shapes_and_values_are_errors() {
        let d = array![[0.1f32, f32::NAN]];
        let err = evaluate_market1501(d.view(), &[1], &[1, 2], &[0], &[1, 1], 5).unwrap_err();
        assert!(
            matches!(err, EvalError::NonFinite { row: 0, col: 1, .. }),
            "{err}"
        );
        let d = array![[0.1f32, 0.2]];
        let err = evaluate_market1501(d.view(), &[1], &[1, 2, 3], &[0], &[1, 1], 5).unwrap_err();
        assert!(matches!(
            err,
            EvalError::ShapeMismatch {
                expected: 2,
                found: 3,
                ..
            }
        ));
        assert!(evaluate_market1501(d.view(), &[1], &[1, 2], &[0], &[1, 1], 0).is_err());
    }

    /// torchreid's single-gallery-shot CMC has one rank per gallery identity (issue 29, W23):
    /// 20 queries against 60 images of 10 identities give 10 ranks, not 50.
    #[test]
    fn cuhk03_cmc_has_one_rank_per_gallery_identity() {
        let g_pids: Vec<i64> = (0..60).map(|g| g % 10).collect();
        let g_cams: Vec<i64> = (0..60).map(|g| 1 + g / 10).collect();
        let q_pids: Vec<i64> = (0..20).map(|q| q % 10).collect();
        let q_cams = vec![0i64; 20];
        let d = ndarray::Array2::from_shape_fn((20, 60), |(q, g)| {
            ((q * 7 + g * 13) % 17) as f32 + (g as f32) * 1e-3
        });
        let m =
            evaluate_cuhk03_classic(d.view(), &q_pids, &g_pids, &q_cams, &g_cams, 50, 0).unwrap();
        assert_eq!(m.cmc.len(), 10);
        assert!((m.cmc[9] - 1.0).abs() < 1e-12, "{:?}", m.cmc);
        // A distractor (0) and a junk label (-1) count as identities, as in torchreid; a
        // max_rank below the identity count still cuts.
        let d = array![[0.3f32, 0.1, 0.2, 0.4]];
        let metrics = |max_rank| {
            evaluate_cuhk03_classic(
                d.view(),
                &[1],
                &[1, 0, -1, 2],
                &[0],
                &[1, 1, 1, 1],
                max_rank,
                0,
            )
            .unwrap()
        };
        assert_eq!(metrics(50).cmc, vec![0.0, 0.0, 1.0, 1.0]);
        assert_eq!(metrics(2).cmc, vec![0.0, 0.0]);
    }

    #[test]
    fn splitmix64_reference_values() {
        // First outputs for seed 0, as published with the algorithm.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next(), 0x6E78_9E6A_A1B9_65F4);
    }
}
