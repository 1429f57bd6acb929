//! The metrics and re-ranking against the independent numpy program of the formulas
//! (`tests/fixtures/reference.py`), on several random cases with distractors, junk,
//! same-camera matches, queries without a valid match, float32 and float64 distances,
//! int32 and int64 ids, a gallery smaller than max_rank, and tied distances (a constant
//! matrix, all-zero features, distances on a few levels), ranked in gallery order as a stable
//! sort ranks them.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use scal_eval::io::{DistanceMatrix, Labels, read_distance_matrix, read_features};
use scal_eval::{
    DistanceMetric, Metrics, ReRankParams, evaluate_cuhk03_classic, evaluate_market1501,
    pairwise_distances, re_rank, re_rank_features,
};
use serde_json::Value;

const CASES: [&str; 6] = [
    "case_small_f32",
    "case_f64_int32",
    "case_tiny_gallery",
    "case_ties_constant",
    "case_ties_zero_features",
    "case_ties_quantised",
];

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

fn assert_metrics(got: &Metrics, want: &Value, tolerance: f64, what: &str) {
    assert_eq!(
        got.num_valid_queries as u64,
        want["num_valid_queries"].as_u64().unwrap(),
        "{what}: valid queries"
    );
    let close = |a: f64, b: f64| (a - b).abs() <= tolerance;
    assert!(
        close(got.map, want["mAP"].as_f64().unwrap()),
        "{what}: mAP {} vs {}",
        got.map,
        want["mAP"]
    );
    assert!(
        close(got.minp, want["mINP"].as_f64().unwrap()),
        "{what}: mINP {} vs {}",
        got.minp,
        want["mINP"]
    );
    let cmc: Vec<f64> = want["cmc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.cmc.len(), cmc.len(), "{what}: CMC length");
    for (k, (a, b)) in got.cmc.iter().zip(&cmc).enumerate() {
        assert!(close(*a, *b), "{what}: rank-{} {a} vs {b}", k + 1);
    }
}

fn market(d: &DistanceMatrix, l: &Labels) -> Metrics {
    match d {
        DistanceMatrix::F32(m) => {
            evaluate_market1501(m.view(), &l.q_pids, &l.g_pids, &l.q_camids, &l.g_camids, 50)
        }
        DistanceMatrix::F64(m) => {
            evaluate_market1501(m.view(), &l.q_pids, &l.g_pids, &l.q_camids, &l.g_camids, 50)
        }
    }
    .unwrap()
}

#[test]
fn market1501_metric_matches_numpy() {
    for name in CASES {
        let dir = case(name);
        let labels = Labels::read_dir(&dir).unwrap();
        let d = read_distance_matrix(&dir.join("distmat.npy")).unwrap();
        assert_metrics(
            &market(&d, &labels),
            &expected(&dir)["market1501"],
            1e-12,
            name,
        );
    }
    // The f64 case really is f64 (and its ids int32).
    assert!(matches!(
        read_distance_matrix(&case("case_f64_int32").join("distmat.npy")).unwrap(),
        DistanceMatrix::F64(_)
    ));
}

#[test]
fn cuhk03_classic_metric_matches_numpy() {
    for name in CASES {
        let dir = case(name);
        let l = Labels::read_dir(&dir).unwrap();
        let d = read_distance_matrix(&dir.join("distmat.npy"))
            .unwrap()
            .into_f64();
        let got = evaluate_cuhk03_classic(
            d.view(),
            &l.q_pids,
            &l.g_pids,
            &l.q_camids,
            &l.g_camids,
            50,
            0,
        )
        .unwrap();
        assert_metrics(&got, &expected(&dir)["cuhk03_seed0"], 1e-12, name);
        if name.starts_with("case_ties") {
            continue; // with every distance equal, every draw ranks alike
        }
        // Another seed draws other galleries.
        let other = evaluate_cuhk03_classic(
            d.view(),
            &l.q_pids,
            &l.g_pids,
            &l.q_camids,
            &l.g_camids,
            50,
            1,
        )
        .unwrap();
        assert_ne!(other.cmc, got.cmc, "{name}: the seed must matter");
    }
}

fn rerank_case(dir: &Path, params: ReRankParams) -> Array2<f32> {
    let load = |n: &str| read_distance_matrix(&dir.join(n)).unwrap();
    match (
        load("distmat.npy"),
        load("distmat_qq.npy"),
        load("distmat_gg.npy"),
    ) {
        (DistanceMatrix::F32(a), DistanceMatrix::F32(b), DistanceMatrix::F32(c)) => {
            re_rank(a.view(), b.view(), c.view(), params)
        }
        (a, b, c) => re_rank(
            a.into_f64().view(),
            b.into_f64().view(),
            c.into_f64().view(),
            params,
        ),
    }
    .unwrap()
}

/// The re-ranked fixtures of each case and the parameters numpy's `re_ranking` made them with.
fn rerank_fixtures() -> [(&'static str, ReRankParams); 2] {
    [
        ("rerank_distmat.npy", ReRankParams::default()),
        (
            "rerank_k7_k1_l05_distmat.npy",
            ReRankParams {
                k1: 7,
                k2: 1,
                lambda: 0.5,
            },
        ),
    ]
}

#[test]
fn re_ranking_matches_numpy() {
    for name in CASES {
        let dir = case(name);
        for (file, params) in rerank_fixtures() {
            let got = rerank_case(&dir, params);
            let want = read_features(&dir.join(file)).unwrap();
            let max_err = crate::max_abs_difference(&got, &want);
            assert!(
                max_err < 1e-6,
                "{name} {file}: max abs difference {max_err}"
            );
        }
        let labels = Labels::read_dir(&dir).unwrap();
        let reranked = DistanceMatrix::F32(rerank_case(&dir, ReRankParams::default()));
        assert_metrics(
            &market(&reranked, &labels),
            &expected(&dir)["rerank_market1501"],
            1e-12,
            name,
        );
    }
}

#[test]
fn features_to_metrics_match_numpy() {
    for name in [
        "case_small_f32",
        "case_tiny_gallery",
        "case_ties_zero_features",
    ] {
        let dir = case(name);
        let labels = Labels::read_dir(&dir).unwrap();
        let q = read_features(&dir.join("query.npy")).unwrap();
        let g = read_features(&dir.join("gallery.npy")).unwrap();
        for (metric, key) in [
            (DistanceMetric::Euclidean, "features_euclidean_market1501"),
            (DistanceMetric::Cosine, "features_cosine_market1501"),
        ] {
            let d = pairwise_distances(q.view(), g.view(), metric).unwrap();
            let got = market(&DistanceMatrix::F32(d), &labels);
            assert_metrics(&got, &expected(&dir)[key], 1e-12, key);
        }
    }
}

/// `re_rank_features` on the fixtures' float32 features against the numpy re-ranking of their
/// distance matrices (`rerank_*.npy`, checked against torchreid 0.2.5's `re_ranking`): the
/// parity the dense path has, reached without the `Q × Q` and `G × G` inputs.
#[test]
fn re_ranking_from_features_matches_numpy() {
    for name in [
        "case_small_f32",
        "case_tiny_gallery",
        "case_ties_zero_features",
    ] {
        let dir = case(name);
        let q = read_features(&dir.join("query.npy")).unwrap();
        let g = read_features(&dir.join("gallery.npy")).unwrap();
        for (file, params) in rerank_fixtures() {
            let got =
                re_rank_features(q.view(), g.view(), DistanceMetric::Euclidean, params).unwrap();
            let want = read_features(&dir.join(file)).unwrap();
            let max_err = crate::max_abs_difference(&got, &want);
            assert!(
                max_err <= 1e-4,
                "{name} {file}: max abs difference {max_err}"
            );
            if file == "rerank_distmat.npy" {
                let labels = Labels::read_dir(&dir).unwrap();
                assert_metrics(
                    &market(&DistanceMatrix::F32(got), &labels),
                    &expected(&dir)["rerank_market1501"],
                    1e-12,
                    name,
                );
            }
        }
    }
}
