//! Evaluate query features against gallery features with torchreid's Market-1501 protocol:
//! Euclidean distances, CMC and mAP, then k-reciprocal re-ranking.
//!
//! ```sh
//! # DIR holds query.npy [Q, D], gallery.npy [G, D], q_pids.npy, g_pids.npy, q_camids.npy, g_camids.npy
//! cargo run --release -p scal-eval --example evaluate_features -- DIR
//! ```
//!
//! Without an argument it evaluates made-up features: 50 identities, one query each from
//! camera 0 and four gallery images from camera 1, easily told apart (both scores at 100 %).

use ndarray::Array2;
use scal_eval::io::{Labels, read_features};
use scal_eval::{DistanceMetric, ReRankParams, evaluate_market1501, pairwise_distances, re_rank};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (query, gallery, labels) = match std::env::args().nth(1) {
        Some(dir) => {
            let dir = std::path::Path::new(&dir);
            let labels = Labels::read_dir(dir)?;
            let query = read_features(&dir.join("query.npy"))?;
            let gallery = read_features(&dir.join("gallery.npy"))?;
            (query, gallery, labels)
        }
        None => made_up(),
    };
    let q_g = pairwise_distances(query.view(), gallery.view(), DistanceMetric::Euclidean)?;
    let (q, g) = (&labels.q_pids, &labels.g_pids);
    let (qc, gc) = (&labels.q_camids, &labels.g_camids);
    let plain = evaluate_market1501(q_g.view(), q, g, qc, gc, 50)?;
    println!(
        "mAP {:.2} %, Rank-1 {:.2} %",
        100.0 * plain.map,
        100.0 * plain.cmc[0]
    );

    let q_q = pairwise_distances(query.view(), query.view(), DistanceMetric::Euclidean)?;
    let g_g = pairwise_distances(gallery.view(), gallery.view(), DistanceMetric::Euclidean)?;
    let reranked = re_rank(q_g.view(), q_q.view(), g_g.view(), ReRankParams::default())?;
    let after = evaluate_market1501(reranked.view(), q, g, qc, gc, 50)?;
    println!(
        "re-ranked: mAP {:.2} %, Rank-1 {:.2} %",
        100.0 * after.map,
        100.0 * after.cmc[0]
    );
    Ok(())
}

/// Identity `i` is the direction of axis `i`, plus a deterministic wobble per image.
fn made_up() -> (Array2<f32>, Array2<f32>, Labels) {
    let (ids, per_id) = (50usize, 4usize);
    let feature = |id: usize, image: usize, d: usize| -> f32 {
        f32::from(u8::from(d == id)) + 0.1 * ((id * 7 + image * 13 + d) as f32).sin()
    };
    let query = Array2::from_shape_fn((ids, ids), |(i, d)| feature(i, 0, d));
    let gallery = Array2::from_shape_fn((ids * per_id, ids), |(j, d)| {
        feature(j / per_id, 1 + j % per_id, d)
    });
    let labels = Labels {
        q_pids: (0..ids as i64).collect(),
        g_pids: (0..(ids * per_id) as i64)
            .map(|j| j / per_id as i64)
            .collect(),
        q_camids: vec![0; ids],
        g_camids: vec![1; ids * per_id],
    };
    (query, gallery, labels)
}
