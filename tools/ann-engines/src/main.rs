//! `ann-engines`: issue 39's side by side of embedded approximate nearest-neighbour engines
//! (usearch f32/f16/i8, hnsw_rs, qdrant-edge) on one features folder.
//!
//! For one engine it builds an HNSW index of `DIR/gallery.npy` (M = 32, ef_construction = 200,
//! squared L2, `--threads` threads) and measures: build time (until the index is searchable),
//! the process's peak resident-memory growth during the build (VmHWM after minus VmRSS before,
//! the peak reset just before), the size of the saved index on disk (in a scratch folder under
//! the temp dir, deleted afterwards), then for each `--ef` the queries searched one at a time
//! (top-10): p50 and p99 latency and recall@10 against the exact top-10 by squared L2
//! (`DIR/exact-top10.npy`, int64 `[Q, 10]`; read if present, else computed and written; the
//! Python side uses the same file). One JSON object per (engine, ef) is appended to `OUT.jsonl`
//! and a markdown row is printed.
//!
//! ```text
//! python3 scripts/msmt17-size-features.py /tmp/ann-rs-100k --dim 512 --queries 1000 \
//!     --gallery 100000 --ids 20000 --cameras 15
//! cd tools/ann-engines && cargo build --release
//! target/release/ann-engines /tmp/ann-rs-100k --engine usearch --json /tmp/ann.jsonl \
//!     [--threads 2] [--queries N] [--ef 64,128,256,512]
//! ```

mod data;
mod engines;
mod measure;
#[cfg(feature = "qdrant-edge")]
mod qdrant;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use data::{K, Matrix};
use engines::{EF_CONSTRUCTION, ENGINES, M};

const USAGE: &str = "usage: ann-engines DIR --engine usearch|usearch-f16|usearch-i8|hnsw_rs|qdrant-edge \
--json OUT.jsonl [--threads 2] [--queries N] [--ef 64,128,256,512]";

/// Command line.
struct Args {
    dir: PathBuf,
    engine: &'static (&'static str, &'static str, &'static str),
    json: PathBuf,
    threads: usize,
    queries: Option<usize>,
    efs: Vec<usize>,
}

/// Parses a positive integer flag value.
fn positive(flag: &str, value: &str) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag}: {value:?} is not a positive integer\n{USAGE}"),
    }
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args> {
    let (mut dir, mut engine, mut json, mut threads, mut queries) = (None, None, None, 2, None);
    let mut efs = vec![64, 128, 256, 512];
    while let Some(arg) = argv.next() {
        let mut value = || {
            argv.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--engine" => {
                let name = value()?;
                let found = ENGINES.iter().find(|e| e.0 == name);
                engine = Some(
                    found.with_context(|| format!("--engine: unknown engine {name:?}\n{USAGE}"))?,
                );
            }
            "--json" => json = Some(PathBuf::from(value()?)),
            "--threads" => threads = positive("--threads", &value()?)?,
            "--queries" => queries = Some(positive("--queries", &value()?)?),
            "--ef" => {
                efs = value()?
                    .split(',')
                    .map(|v| positive("--ef", v))
                    .collect::<Result<_>>()?
            }
            "-h" | "--help" => bail!("{USAGE}"),
            flag if flag.starts_with('-') => bail!("unknown flag {flag}\n{USAGE}"),
            _ if dir.is_none() => dir = Some(PathBuf::from(&arg)),
            _ => bail!("unexpected argument {arg:?}\n{USAGE}"),
        }
    }
    Ok(Args {
        dir: dir.with_context(|| format!("missing DIR\n{USAGE}"))?,
        engine: engine.with_context(|| format!("missing --engine\n{USAGE}"))?,
        json: json.with_context(|| format!("missing --json\n{USAGE}"))?,
        threads,
        queries,
        efs,
    })
}

/// Measurements of one engine's build.
struct Build {
    build_s: f64,
    memory_mb: f64,
    index_bytes: u64,
}

/// Latency and recall of one ef.
struct Searched {
    ef: usize,
    recall: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Searches the first `exact.len()` queries one at a time with `ef`.
fn search_all(
    index: &dyn engines::AnnIndex,
    query: &Matrix,
    exact: &[[i64; K]],
    ef: usize,
) -> Result<Searched> {
    let (mut times, mut recall_sum) = (Vec::with_capacity(exact.len()), 0.0);
    for (q, truth) in exact.iter().enumerate() {
        let started = Instant::now();
        let found = index.search(query.row(q), K, ef)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        recall_sum += measure::recall(&found, truth);
    }
    times.sort_by(f64::total_cmp);
    Ok(Searched {
        ef,
        recall: recall_sum / exact.len() as f64,
        p50_ms: measure::percentile(&times, 50.0),
        p99_ms: measure::percentile(&times, 99.0),
    })
}

/// The JSON line of one (engine, ef).
fn record(
    args: &Args,
    gallery: &Matrix,
    build: &Build,
    s: &Searched,
    queries: usize,
) -> serde_json::Value {
    let (engine, version, quantization) = *args.engine;
    serde_json::json!({
        "engine": engine,
        "version": version,
        "params": {"m": M, "ef_construction": EF_CONSTRUCTION, "ef_search": s.ef, "quantization": quantization},
        "n": gallery.rows,
        "dim": gallery.dim,
        "threads": args.threads,
        "build_s": (build.build_s * 1000.0).round() / 1000.0,
        "memory_mb": (build.memory_mb * 10.0).round() / 10.0,
        "index_bytes": build.index_bytes,
        "recall_at_10": (s.recall * 10000.0).round() / 10000.0,
        "p50_ms": (s.p50_ms * 1000.0).round() / 1000.0,
        "p99_ms": (s.p99_ms * 1000.0).round() / 1000.0,
        "queries": queries,
    })
}

/// Appends the JSON lines to `path` and prints the markdown rows.
fn report(
    args: &Args,
    gallery: &Matrix,
    build: &Build,
    rows: &[Searched],
    queries: usize,
) -> Result<()> {
    let (engine, version, quantization) = *args.engine;
    println!(
        "| engine | version | M | ef_c | ef | stored | n | dim | threads | build s | memory MB | index MB | recall@10 | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut lines = String::new();
    for s in rows {
        lines += &format!("{}\n", record(args, gallery, build, s, queries));
        println!(
            "| {engine} | {version} | {M} | {EF_CONSTRUCTION} | {} | {quantization} | {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.4} | {:.3} | {:.3} |",
            s.ef,
            gallery.rows,
            gallery.dim,
            args.threads,
            build.build_s,
            build.memory_mb,
            build.index_bytes as f64 / 1e6,
            s.recall,
            s.p50_ms,
            s.p99_ms
        );
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.json)
        .with_context(|| format!("{}: cannot open for appending", args.json.display()))?;
    out.write_all(lines.as_bytes())
        .with_context(|| format!("{}: cannot write", args.json.display()))
}

/// Loads `DIR/name` and names the file in any error.
fn load(dir: &Path, name: &str) -> Result<Matrix> {
    data::load_matrix(&dir.join(name))
}

fn main() -> Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("cannot size rayon's global pool")?;
    let (query, gallery) = (
        load(&args.dir, "query.npy")?,
        load(&args.dir, "gallery.npy")?,
    );
    ensure!(
        query.dim == gallery.dim,
        "{}: query.npy has {} dimensions, gallery.npy {}",
        args.dir.display(),
        query.dim,
        gallery.dim
    );
    ensure!(
        gallery.rows >= K,
        "{}: gallery.npy has fewer than {K} rows",
        args.dir.display()
    );
    let exact = data::load_or_compute_exact(&args.dir, &query, &gallery)?;
    let queries = args.queries.unwrap_or(query.rows).min(query.rows);
    let scratch = measure::ScratchDir::new(args.engine.0)?;

    let rss_before = measure::reset_peak_and_rss_kib()?;
    let started = Instant::now();
    let index = engines::build(args.engine.0, &gallery, args.threads, &scratch.0)?;
    let build_s = started.elapsed().as_secs_f64();
    let memory_mb = measure::peak_kib()?.saturating_sub(rss_before) as f64 / 1024.0;
    eprintln!(
        "{}: built in {build_s:.1} s, peak memory +{memory_mb:.0} MB",
        args.engine.0
    );

    let mut rows = Vec::new();
    for &ef in &args.efs {
        rows.push(search_all(index.as_ref(), &query, &exact[..queries], ef)?);
    }
    index.save(&scratch.0)?;
    let index_bytes = measure::disk_bytes(&scratch.0)?;
    let build = Build {
        build_s,
        memory_mb,
        index_bytes,
    };
    report(&args, &gallery, &build, &rows, queries)
}
