//! `re_rank_features` against `re_rank` on the three distance matrices of the same features:
//! identity-structured random features at several sizes (blocks of the pass, the query /
//! gallery boundary inside and between blocks), the fixtures' features, ties (duplicate,
//! quantised, identical and all-zero features), `k1` beyond the item count, and the errors.

use std::path::Path;

use ndarray::{Array2, s};
use ndarray_npy::write_npy;
use scal_eval::io::{Labels, read_features};
use scal_eval::measure::re_rank_features_folder;
use scal_eval::synthetic::synthetic_split;
use scal_eval::{
    DistanceMetric, EvalError, Metrics, ReRankParams, evaluate_market1501, pairwise_distances,
    re_rank, re_rank_features,
};

const METRICS: [DistanceMetric; 3] = [
    DistanceMetric::Euclidean,
    DistanceMetric::Cosine,
    DistanceMetric::SquaredEuclidean,
];

fn params(k1: usize, k2: usize, lambda: f64) -> ReRankParams {
    ReRankParams { k1, k2, lambda }
}

/// `re_rank` on the `Q × G`, `Q × Q` and `G × G` distances of the features.
fn dense(
    query: &Array2<f32>,
    gallery: &Array2<f32>,
    metric: DistanceMetric,
    params: ReRankParams,
) -> Array2<f32> {
    let q_g = pairwise_distances(query.view(), gallery.view(), metric).unwrap();
    let q_q = pairwise_distances(query.view(), query.view(), metric).unwrap();
    let g_g = pairwise_distances(gallery.view(), gallery.view(), metric).unwrap();
    re_rank(q_g.view(), q_q.view(), g_g.view(), params).unwrap()
}

/// Checks that both paths agree within 1e-4 and returns the largest difference.
fn assert_same(
    query: &Array2<f32>,
    gallery: &Array2<f32>,
    metric: DistanceMetric,
    params: ReRankParams,
    what: &str,
) -> (Array2<f32>, Array2<f32>) {
    let want = dense(query, gallery, metric, params);
    let got = re_rank_features(query.view(), gallery.view(), metric, params).unwrap();
    assert_eq!(got.dim(), want.dim(), "{what}");
    let max_err = crate::max_abs_difference(&got, &want);
    assert!(
        max_err <= 1e-4,
        "{what} {metric:?} {params:?}: max abs difference {max_err}"
    );
    (got, want)
}

fn market(d: &Array2<f32>, l: (&[i64], &[i64], &[i64], &[i64])) -> Metrics {
    evaluate_market1501(d.view(), l.0, l.1, l.2, l.3, 50).unwrap()
}

#[test]
fn matches_re_rank_on_identity_features() {
    let cases = [
        (60, 300, 20, 16, 1),  // one block of queries, one of gallery
        (300, 700, 60, 32, 2), // several blocks; the query count is not a block multiple
        (5, 12, 3, 4, 3),      // fewer items than k1
        (257, 255, 40, 24, 4), // blocks of 256 and one item
    ];
    for (q, g, ids, dim, seed) in cases {
        let s = synthetic_split(q, g, ids, 6, dim, seed);
        let labels = (&s.q_pids[..], &s.g_pids[..], &s.q_cams[..], &s.g_cams[..]);
        for metric in METRICS {
            for p in [
                ReRankParams::default(),
                params(7, 1, 0.5),
                params(30, 9, 0.0),
                params(3, 2, 1.0),
            ] {
                let what = format!("{q} x {g}, {dim}-d");
                let (got, want) = assert_same(&s.query, &s.gallery, metric, p, &what);
                assert_eq!(market(&got, labels), market(&want, labels), "{what}");
            }
        }
    }
}

#[test]
fn matches_re_rank_at_a_larger_size() {
    // 1,200 + 5,000 items, 128-d: 25 blocks; the dense inputs (G × G) take 100 MB. Each
    // identity also gets two strong coordinates, so that its images cluster.
    let mut s = synthetic_split(1200, 5000, 300, 6, 128, 11);
    for (features, pids) in [(&mut s.query, &s.q_pids), (&mut s.gallery, &s.g_pids)] {
        for (mut row, &p) in features.rows_mut().into_iter().zip(pids) {
            let p = p as usize;
            row[p % 128] += 6.0;
            row[(p * 7 + 1) % 128] += 6.0;
        }
    }
    let labels = (&s.q_pids[..], &s.g_pids[..], &s.q_cams[..], &s.g_cams[..]);
    for metric in [DistanceMetric::Euclidean, DistanceMetric::Cosine] {
        let (got, want) = assert_same(
            &s.query,
            &s.gallery,
            metric,
            ReRankParams::default(),
            "larger",
        );
        let (a, b) = (market(&got, labels), market(&want, labels));
        assert_eq!(a, b, "{metric:?}");
        assert!(a.map > 0.5, "identities cluster: mAP {}", a.map);
    }
}

#[test]
fn matches_re_rank_at_market_size() {
    // Market-1501's test sizes (3,368 + 15,913 items, 751 identities, 6 cameras), 64-d: 76
    // blocks; the dense path's G × G input alone takes 1 GB.
    let s = synthetic_split(3368, 15913, 751, 6, 64, 0x5CA1);
    let labels = (&s.q_pids[..], &s.g_pids[..], &s.q_cams[..], &s.g_cams[..]);
    let (got, want) = assert_same(
        &s.query,
        &s.gallery,
        DistanceMetric::Euclidean,
        ReRankParams::default(),
        "Market-1501 size",
    );
    let (a, b) = (market(&got, labels), market(&want, labels));
    assert_eq!(a, b, "CMC, mAP and mINP");
    // Re-ranking changed the ranking, and it agrees everywhere.
    let plain =
        pairwise_distances(s.query.view(), s.gallery.view(), DistanceMetric::Euclidean).unwrap();
    assert_ne!(market(&plain, labels), a, "re-ranking changes the metrics");
}

#[test]
fn matches_re_rank_on_the_fixtures_features() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in [
        "case_small_f32",
        "case_tiny_gallery",
        "case_ties_zero_features",
    ] {
        let dir = fixtures.join(name);
        let query = read_features(&dir.join("query.npy")).unwrap();
        let gallery = read_features(&dir.join("gallery.npy")).unwrap();
        let l = Labels::read_dir(&dir).unwrap();
        let labels = (
            &l.q_pids[..],
            &l.g_pids[..],
            &l.q_camids[..],
            &l.g_camids[..],
        );
        for metric in METRICS {
            for p in [ReRankParams::default(), params(7, 1, 0.5)] {
                let (got, want) = assert_same(&query, &gallery, metric, p, name);
                assert_eq!(market(&got, labels), market(&want, labels), "{name}");
            }
        }
    }
}

#[test]
fn ties_are_ranked_as_re_rank_ranks_them() {
    // Duplicates: 12 distinct vectors, each 30 times (ties wider than the kept slack).
    let s = synthetic_split(12, 12, 12, 2, 8, 5);
    let gallery = Array2::from_shape_fn((360, 8), |(i, d)| s.gallery[[i % 12, d]]);
    // Quantised: three levels per dimension, many equal distances.
    let quantised = |n: usize, seed: usize| {
        Array2::from_shape_fn((n, 6), |(i, d)| ((i * 7 + d * 3 + seed) % 3) as f32)
    };
    // Zero columns: half of the dimensions unused.
    let mut zero_cols = synthetic_split(20, 80, 10, 2, 16, 6);
    zero_cols.query.slice_mut(s![.., ..8]).fill(0.0);
    zero_cols.gallery.slice_mut(s![.., ..8]).fill(0.0);
    let cases = [
        ("duplicates", s.query.clone(), gallery),
        ("quantised", quantised(40, 1), quantised(150, 2)),
        ("zero columns", zero_cols.query, zero_cols.gallery),
        ("identical", Array2::ones((10, 4)), Array2::ones((50, 4))),
        ("all zero", Array2::zeros((10, 4)), Array2::zeros((50, 4))),
    ];
    for (what, query, gallery) in cases {
        for metric in METRICS {
            for p in [
                ReRankParams::default(),
                params(2, 3, 0.3),
                params(7, 1, 0.5),
            ] {
                let (got, want) = assert_same(&query, &gallery, metric, p, what);
                // Ties are settled exactly as re_rank settles them: the same floats.
                assert!(
                    got.iter()
                        .zip(want.iter())
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{what} {metric:?} {p:?}"
                );
            }
        }
    }
}

#[test]
fn k1_beyond_the_item_count() {
    let s = synthetic_split(3, 5, 2, 2, 4, 9);
    for metric in METRICS {
        for p in [params(20, 6, 0.3), params(100, 100, 0.3), params(1, 1, 0.3)] {
            assert_same(&s.query, &s.gallery, metric, p, "8 items");
        }
    }
}

#[test]
fn bad_inputs_are_errors_naming_the_input() {
    let s = synthetic_split(4, 10, 2, 2, 8, 3);
    let run = |q: &Array2<f32>, g: &Array2<f32>, p: ReRankParams| {
        re_rank_features(q.view(), g.view(), DistanceMetric::Euclidean, p).unwrap_err()
    };
    let p = ReRankParams::default();

    let mut nan = s.gallery.clone();
    nan[[7, 3]] = f32::NAN;
    let err = run(&s.query, &nan, p);
    assert_eq!(
        err,
        EvalError::NonFinite {
            what: "gallery features".into(),
            row: 7,
            col: 3,
            value: "NaN".into()
        }
    );
    assert!(err.to_string().contains("gallery features"), "{err}");
    let mut inf = s.query.clone();
    inf[[2, 0]] = f32::NEG_INFINITY;
    assert!(matches!(
        run(&inf, &s.gallery, p),
        EvalError::NonFinite { ref what, row: 2, col: 0, .. } if what == "query features"
    ));

    let narrow = s.gallery.slice(s![.., ..5]).to_owned();
    assert!(matches!(
        run(&s.query, &narrow, p),
        EvalError::ShapeMismatch {
            expected: 8,
            found: 5,
            ..
        }
    ));
    let empty = Array2::<f32>::zeros((0, 8));
    assert!(matches!(
        run(&empty, &s.gallery, p),
        EvalError::Empty { ref what } if what == "query features"
    ));
    assert!(matches!(
        run(&s.query, &empty, p),
        EvalError::Empty { ref what } if what == "gallery features"
    ));
    for bad in [params(0, 6, 0.3), params(20, 0, 0.3), params(20, 6, 1.5)] {
        assert!(
            matches!(
                run(&s.query, &s.gallery, bad),
                EvalError::InvalidParameter { .. }
            ),
            "{bad:?}"
        );
    }

    // Finite features whose squared distances overflow f32.
    let mut huge = s.gallery.clone();
    huge.row_mut(4).fill(1e19);
    let err = run(&s.query, &huge, p);
    assert_eq!(
        err,
        EvalError::DistanceOverflow {
            what: "gallery features".into(),
            row: 4
        }
    );
    // Cosine normalises first: the same features re-rank.
    let cosine = re_rank_features(s.query.view(), huge.view(), DistanceMetric::Cosine, p).unwrap();
    assert!(cosine.iter().all(|v| v.is_finite()));
    // Squared Euclidean squares again: 1e10 passes the norm check, its square overflows.
    let mut big = s.gallery.clone();
    big.row_mut(1).fill(1e10);
    let err = re_rank_features(
        s.query.view(),
        big.view(),
        DistanceMetric::SquaredEuclidean,
        p,
    )
    .unwrap_err();
    assert_eq!(
        err,
        EvalError::DistanceOverflow {
            what: "gallery features".into(),
            row: 1
        }
    );
}

#[test]
fn a_features_folder_re_ranks_and_mismatched_widths_name_both_files() {
    let s = synthetic_split(20, 60, 10, 3, 16, 21);
    let dir = tempfile::tempdir().unwrap();
    let (q_path, g_path) = (dir.path().join("query.npy"), dir.path().join("gallery.npy"));
    write_npy(&q_path, &s.query).unwrap();
    write_npy(&g_path, &s.gallery).unwrap();
    let p = ReRankParams::default();
    let run = re_rank_features_folder(dir.path(), DistanceMetric::Euclidean, p).unwrap();
    assert_eq!((run.queries, run.gallery, run.dim), (20, 60, 16));
    let direct = re_rank_features(
        s.query.view(),
        s.gallery.view(),
        DistanceMetric::Euclidean,
        p,
    )
    .unwrap();
    assert_eq!(run.distances, direct);

    write_npy(&g_path, &s.gallery.slice(s![.., ..12]).to_owned()).unwrap();
    let err = re_rank_features_folder(dir.path(), DistanceMetric::Euclidean, p).unwrap_err();
    assert!(
        matches!(
            err,
            EvalError::ShapeMismatch {
                expected: 16,
                found: 12,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&g_path.display().to_string())
            && text.contains(&q_path.display().to_string()),
        "{text}"
    );

    std::fs::remove_file(&q_path).unwrap();
    let err = re_rank_features_folder(dir.path(), DistanceMetric::Euclidean, p).unwrap_err();
    assert_eq!(err, EvalError::MissingFile { path: q_path });
}
