//! Per-query average precision and top-k rankings agree with the aggregate metric.

use ndarray::{Array2, array};
use scal_eval::{average_precision_per_query, evaluate_market1501, top_k_gallery};

#[test]
fn per_query_ap_averages_to_map_and_top_k_skips_same_camera_matches() {
    // 3 queries x 6 gallery items; query 2 has no valid match.
    let distmat: Array2<f64> = array![
        [0.1, 0.5, 0.3, 0.9, 0.2, 0.7],
        [0.8, 0.1, 0.4, 0.3, 0.6, 0.2],
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.6],
    ];
    let q_pids = [1, 2, 9];
    let q_cams = [0, 1, 0];
    let g_pids = [1, 2, 1, 3, 4, 2];
    let g_cams = [0, 0, 1, 1, 1, 2];
    let ap =
        average_precision_per_query(distmat.view(), &q_pids, &g_pids, &q_cams, &g_cams).unwrap();
    assert!(ap[2].is_none());
    // Query 0: item 0 (same pid, same camera) removed; ranking 4, 2, 1, 5, 3: hit at 2.
    assert!((ap[0].unwrap() - 0.5).abs() < 1e-12);
    let m = evaluate_market1501(distmat.view(), &q_pids, &g_pids, &q_cams, &g_cams, 5).unwrap();
    let mean = (ap[0].unwrap() + ap[1].unwrap()) / 2.0;
    assert!((m.map - mean).abs() < 1e-12);
    assert_eq!(
        top_k_gallery(distmat.row(0), 1, 0, &g_pids, &g_cams, 3),
        vec![4, 2, 1]
    );
    assert_eq!(
        top_k_gallery(distmat.row(1), 2, 1, &g_pids, &g_cams, 10).len(),
        6
    );
}

/// Each query's gallery rows in the exact ranking's order (distance, then row), the first `depth`.
fn exact_lists(distmat: &Array2<f32>, depth: usize) -> Vec<Vec<usize>> {
    distmat
        .rows()
        .into_iter()
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
            order.truncate(depth);
            order
        })
        .collect()
}

#[test]
fn top_lists_of_the_whole_gallery_score_as_the_distance_matrix_and_shallow_ones_bound_it() {
    let split = scal_eval::synthetic::synthetic_split(60, 400, 40, 4, 32, 3);
    let distmat = scal_eval::pairwise_distances(
        split.query.view(),
        split.gallery.view(),
        scal_eval::DistanceMetric::Euclidean,
    )
    .unwrap();
    let exact = evaluate_market1501(
        distmat.view(),
        &split.q_pids,
        &split.g_pids,
        &split.q_cams,
        &split.g_cams,
        20,
    )
    .unwrap();
    let labels = (
        (&split.q_pids[..], &split.q_cams[..]),
        (&split.g_pids[..], &split.g_cams[..]),
    );
    let whole =
        scal_eval::evaluate_top_lists(&exact_lists(&distmat, 400), labels.0, labels.1, 20).unwrap();
    assert!(
        (whole.map - exact.map).abs() < 1e-12,
        "{} against {}",
        whole.map,
        exact.map
    );
    assert!((whole.minp - exact.minp).abs() < 1e-12);
    assert_eq!(whole.cmc, exact.cmc);
    assert_eq!(whole.num_valid_queries, exact.num_valid_queries);
    // The 30 nearest: the CMC up to 20 is still exact, mAP and mINP are lower bounds.
    let shallow =
        scal_eval::evaluate_top_lists(&exact_lists(&distmat, 30), labels.0, labels.1, 20).unwrap();
    assert_eq!(shallow.cmc, exact.cmc);
    assert!(shallow.map <= exact.map + 1e-12 && shallow.map > 0.5 * exact.map);
    assert!(shallow.minp <= exact.minp + 1e-12);
    assert!(
        shallow.map < exact.map,
        "some correct matches lie beyond 30"
    );
    // A row outside the gallery is refused by name.
    let e = scal_eval::evaluate_top_lists(&[vec![400]], (&[1], &[0]), labels.1, 5).unwrap_err();
    assert!(e.to_string().contains("row 400"), "{e}");
}
