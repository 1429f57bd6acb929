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
