//! Invariants of the metrics on random inputs (proptest).

use ndarray::Array2;
use proptest::prelude::*;
use scal_eval::{EvalError, evaluate_market1501};

/// (distmat, q_pids, g_pids, q_camids, g_camids).
type Problem = (Array2<f64>, Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>);

/// A random evaluation problem with distinct distances.
fn problem() -> impl Strategy<Value = Problem> {
    (1usize..8, 2usize..40, 1i64..6, 1i64..4).prop_flat_map(|(q, g, ids, cams)| {
        (
            Just((q, g)),
            proptest::collection::vec(0i64..ids, q),
            proptest::collection::vec(0i64..ids, g),
            proptest::collection::vec(0i64..cams, q),
            proptest::collection::vec(0i64..cams, g),
            Just(()).prop_perturb(move |_, mut rng| {
                // A random permutation of 0..q*g as distances: all distinct.
                let mut values: Vec<f64> = (0..q * g).map(|v| v as f64 / 7.0).collect();
                for i in (1..values.len()).rev() {
                    let j = rng.random_range(0..=i);
                    values.swap(i, j);
                }
                values
            }),
        )
            .prop_map(|((q, g), qp, gp, qc, gc, values)| {
                (
                    Array2::from_shape_vec((q, g), values).unwrap(),
                    qp,
                    gp,
                    qc,
                    gc,
                )
            })
    })
}

/// A random evaluation problem whose distances take a few values: many ties.
fn problem_with_ties() -> impl Strategy<Value = Problem> {
    problem().prop_perturb(|(d, qp, gp, qc, gc), mut rng| {
        let levels = rng.random_range(1..4u32);
        let d = d.mapv(|_| rng.random_range(0..levels) as f64 * 0.5);
        (d, qp, gp, qc, gc)
    })
}

/// The same metric by full (stable) sorting, the way the reference tools do it: equal
/// distances keep gallery order.
fn by_sorting(
    d: &Array2<f64>,
    qp: &[i64],
    gp: &[i64],
    qc: &[i64],
    gc: &[i64],
) -> Option<(f64, f64, f64)> {
    let (mut ap_sum, mut inp_sum, mut r1, mut valid) = (0.0, 0.0, 0.0, 0.0);
    for q in 0..d.nrows() {
        let mut order: Vec<usize> = (0..d.ncols()).collect();
        order.sort_by(|&a, &b| d[[q, a]].partial_cmp(&d[[q, b]]).unwrap());
        let kept: Vec<bool> = order
            .into_iter()
            .filter(|&g| !(gp[g] == qp[q] && gc[g] == qc[q]))
            .map(|g| gp[g] == qp[q])
            .collect();
        let hits: Vec<usize> = kept
            .iter()
            .enumerate()
            .filter(|(_, h)| **h)
            .map(|(i, _)| i + 1)
            .collect();
        if hits.is_empty() {
            continue;
        }
        valid += 1.0;
        ap_sum += hits
            .iter()
            .enumerate()
            .map(|(j, &p)| (j + 1) as f64 / p as f64)
            .sum::<f64>()
            / hits.len() as f64;
        inp_sum += hits.len() as f64 / *hits.last().unwrap() as f64;
        r1 += if hits[0] == 1 { 1.0 } else { 0.0 };
    }
    (valid > 0.0).then(|| (ap_sum / valid, inp_sum / valid, r1 / valid))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn agrees_with_full_sorting_and_stays_in_range((d, qp, gp, qc, gc) in problem()) {
        let result = evaluate_market1501(d.view(), &qp, &gp, &qc, &gc, 50);
        match by_sorting(&d, &qp, &gp, &qc, &gc) {
            None => prop_assert_eq!(result.unwrap_err(), EvalError::NoValidQuery),
            Some((map, minp, r1)) => {
                let m = result.unwrap();
                prop_assert!((m.map - map).abs() < 1e-12);
                prop_assert!((m.minp - minp).abs() < 1e-12);
                prop_assert!((m.cmc[0] - r1).abs() < 1e-12);
                prop_assert_eq!(m.cmc.len(), 50.min(d.ncols()));
                for v in m.cmc.iter().chain([&m.map, &m.minp]) {
                    prop_assert!((0.0..=1.0).contains(v));
                }
                prop_assert!(m.cmc.windows(2).all(|w| w[0] <= w[1]), "CMC must not decrease");
            }
        }
    }

    #[test]
    fn ties_score_as_the_stable_full_sort((d, qp, gp, qc, gc) in problem_with_ties()) {
        let result = evaluate_market1501(d.view(), &qp, &gp, &qc, &gc, 50);
        match by_sorting(&d, &qp, &gp, &qc, &gc) {
            None => prop_assert_eq!(result.unwrap_err(), EvalError::NoValidQuery),
            Some((map, minp, r1)) => {
                let m = result.unwrap();
                prop_assert!((m.map - map).abs() < 1e-12, "{} vs {}", m.map, map);
                prop_assert!((m.minp - minp).abs() < 1e-12);
                prop_assert!((m.cmc[0] - r1).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn gallery_order_does_not_matter((d, qp, gp, qc, gc) in problem(), seed in any::<u64>()) {
        let g = d.ncols();
        let mut perm: Vec<usize> = (0..g).collect();
        let mut s = seed;
        for i in (1..g).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let d2 = Array2::from_shape_fn(d.dim(), |(r, c)| d[[r, perm[c]]]);
        let gp2: Vec<i64> = perm.iter().map(|&p| gp[p]).collect();
        let gc2: Vec<i64> = perm.iter().map(|&p| gc[p]).collect();
        let a = evaluate_market1501(d.view(), &qp, &gp, &qc, &gc, 50);
        let b = evaluate_market1501(d2.view(), &qp, &gp2, &qc, &gc2, 50);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn perfect_ranking_scores_one((d, qp, gp, qc, gc) in problem()) {
        // Put every correct match ahead of every wrong one.
        let perfect = Array2::from_shape_fn(d.dim(), |(q, g)| {
            if gp[g] == qp[q] { d[[q, g]] } else { 1e6 + d[[q, g]] }
        });
        if let Ok(m) = evaluate_market1501(perfect.view(), &qp, &gp, &qc, &gc, 50) {
            prop_assert_eq!(m.map, 1.0);
            prop_assert_eq!(m.minp, 1.0);
            prop_assert!(m.cmc.iter().all(|&v| v == 1.0));
        }
    }
}
