//! Evaluation at Market-1501 size (3,368 queries, 15,913 gallery images, 751 identities,
//! 6 cameras, 2048-d features): metrics from a distance matrix, features to metrics, and
//! re-ranking.
//!
//! ```text
//! cargo bench -p scal-eval --bench evaluation
//! SCAL_EVAL_BENCH_DIR=target/eval-bench cargo bench -p scal-eval --bench evaluation
//! ```
//!
//! With `SCAL_EVAL_BENCH_DIR` set, the inputs are also written there as `.npy` files so that
//! `tests/fixtures/reference.py --bench DIR [--rerank]` times numpy on the same data.
//! Peak resident memory of the re-ranking measure is printed after it (Linux `VmHWM`).

use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use ndarray::Array1;
use ndarray_npy::write_npy;
use scal_eval::synthetic::market_sized_split;
use scal_eval::{DistanceMetric, ReRankParams, evaluate_market1501, pairwise_distances, re_rank};

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn evaluation(c: &mut Criterion) {
    let s = market_sized_split();
    let q_g =
        pairwise_distances(s.query.view(), s.gallery.view(), DistanceMetric::Euclidean).unwrap();
    let q_q =
        pairwise_distances(s.query.view(), s.query.view(), DistanceMetric::Euclidean).unwrap();
    let g_g = pairwise_distances(
        s.gallery.view(),
        s.gallery.view(),
        DistanceMetric::Euclidean,
    )
    .unwrap();
    if let Ok(dir) = std::env::var("SCAL_EVAL_BENCH_DIR") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        write_npy(dir.join("query.npy"), &s.query).unwrap();
        write_npy(dir.join("gallery.npy"), &s.gallery).unwrap();
        write_npy(dir.join("distmat.npy"), &q_g).unwrap();
        write_npy(dir.join("distmat_qq.npy"), &q_q).unwrap();
        write_npy(dir.join("distmat_gg.npy"), &g_g).unwrap();
        for (name, v) in [
            ("q_pids", &s.q_pids),
            ("g_pids", &s.g_pids),
            ("q_camids", &s.q_cams),
            ("g_camids", &s.g_cams),
        ] {
            write_npy(dir.join(format!("{name}.npy")), &Array1::from(v.clone())).unwrap();
        }
    }
    let m =
        evaluate_market1501(q_g.view(), &s.q_pids, &s.g_pids, &s.q_cams, &s.g_cams, 50).unwrap();
    println!(
        "synthetic Market-sized split: mAP {:.4}, rank-1 {:.4}",
        m.map, m.cmc[0]
    );

    let mut group = c.benchmark_group("market1501_size");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("metrics_from_distmat", |b| {
        b.iter(|| {
            evaluate_market1501(q_g.view(), &s.q_pids, &s.g_pids, &s.q_cams, &s.g_cams, 50).unwrap()
        })
    });
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("features_2048d_to_metrics", |b| {
        b.iter(|| {
            let d = pairwise_distances(s.query.view(), s.gallery.view(), DistanceMetric::Euclidean)
                .unwrap();
            evaluate_market1501(d.view(), &s.q_pids, &s.g_pids, &s.q_cams, &s.g_cams, 50).unwrap()
        })
    });
    reset_peak_rss();
    group.measurement_time(Duration::from_secs(120));
    group.bench_function("rerank_k1_20_k2_6", |b| {
        b.iter(|| re_rank(q_g.view(), q_q.view(), g_g.view(), ReRankParams::default()).unwrap())
    });
    group.finish();
    if let Some(mib) = peak_rss_mib() {
        println!(
            "rerank: peak RSS {mib:.0} MiB (inputs held by the bench: q_g, q_q, g_g, features)"
        );
    }
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
