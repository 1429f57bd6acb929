//! Times k-reciprocal re-ranking from features (`re_rank_features`) on a features folder and
//! prints the seconds and the result's shape. With `--metrics`, also mAP and Rank-1 before
//! and after re-ranking (from the folder's id files); with `--compare-dense`, the largest
//! difference from `re_rank` on the three `pairwise_distances` matrices (which needs the
//! `G × G` matrix: Market-1501-sized galleries, not MSMT17's).
//!
//! ```sh
//! # DIR holds query.npy [Q, D], gallery.npy [G, D] (and q_pids.npy, g_pids.npy,
//! # q_camids.npy, g_camids.npy for --metrics), e.g. from scripts/msmt17-size-features.py
//! cargo run --release -p scal-eval --example rerank_features -- DIR [--cosine] [--metrics] [--compare-dense]
//! /usr/bin/time -v target/release/examples/rerank_features DIR   # + peak RSS
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Array2;
use scal_eval::io::{Labels, read_features};
use scal_eval::measure::re_rank_features_folder;
use scal_eval::{
    DistanceMetric, Metrics, ReRankParams, evaluate_market1501, pairwise_distances, re_rank,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
    else {
        return Err("usage: rerank_features DIR [--cosine] [--metrics] [--compare-dense]".into());
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let metric = if flag("--cosine") {
        DistanceMetric::Cosine
    } else {
        DistanceMetric::Euclidean
    };
    let run = re_rank_features_folder(&dir, metric, ReRankParams::default())?;
    println!(
        "{}: {} queries x {} gallery, {}-d, {metric:?} distance: read {:.1} s, re-ranked in {:.1} s -> [{}, {}]",
        dir.display(),
        run.queries,
        run.gallery,
        run.dim,
        run.read_seconds,
        run.seconds,
        run.distances.nrows(),
        run.distances.ncols()
    );
    let reranked = run.distances;
    if flag("--compare-dense") {
        compare_dense(&dir, metric, &reranked)?;
    }
    if flag("--metrics") {
        let start = Instant::now();
        let after = metrics(&dir, &reranked)?;
        drop(reranked);
        // The plain distances once the re-ranked ones are dropped: one [Q, G] at a time.
        let (query, gallery) = features(&dir)?;
        let plain = pairwise_distances(query.view(), gallery.view(), metric)?;
        let before = metrics(&dir, &plain)?;
        for (name, m) in [("plain", before), ("re-ranked", after)] {
            println!(
                "{name}: mAP {:.2} %, Rank-1 {:.2} % ({} valid queries)",
                100.0 * m.map,
                100.0 * m.cmc[0],
                m.num_valid_queries
            );
        }
        println!("metrics: {:.1} s", start.elapsed().as_secs_f64());
    }
    Ok(())
}

fn features(dir: &Path) -> Result<(Array2<f32>, Array2<f32>)> {
    let query = read_features(&dir.join("query.npy"))?;
    let gallery = read_features(&dir.join("gallery.npy"))?;
    Ok((query, gallery))
}

fn metrics(dir: &Path, distances: &Array2<f32>) -> Result<Metrics> {
    let l = Labels::read_dir(dir)?;
    let (q, g, qc, gc) = (&l.q_pids, &l.g_pids, &l.q_camids, &l.g_camids);
    Ok(evaluate_market1501(distances.view(), q, g, qc, gc, 50)?)
}

/// `re_rank` on the `Q × G`, `Q × Q` and `G × G` distances, against `reranked`.
fn compare_dense(dir: &Path, metric: DistanceMetric, reranked: &Array2<f32>) -> Result<()> {
    let (query, gallery) = features(dir)?;
    let d = |a: &Array2<f32>, b: &Array2<f32>| pairwise_distances(a.view(), b.view(), metric);
    let (q_g, q_q, g_g) = (
        d(&query, &gallery)?,
        d(&query, &query)?,
        d(&gallery, &gallery)?,
    );
    let start = Instant::now();
    let dense = re_rank(q_g.view(), q_q.view(), g_g.view(), ReRankParams::default())?;
    let seconds = start.elapsed().as_secs_f64();
    let max_diff = dense
        .iter()
        .zip(reranked.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let differ = dense
        .iter()
        .zip(reranked.iter())
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    println!(
        "re_rank on the distance matrices: {seconds:.1} s; max abs difference {max_diff:e}, {differ} of {} values differ in any bit",
        dense.len()
    );
    if dir.join("q_pids.npy").exists() {
        let same = metrics(dir, &dense)? == metrics(dir, reranked)?;
        println!("CMC, mAP and mINP identical: {same}");
    }
    Ok(())
}
