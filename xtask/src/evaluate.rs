//! `cargo xtask evaluate`: CMC / mAP / mINP from a distance matrix or from features, with
//! optional k-reciprocal re-ranking.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ndarray::Array2;
use scal_backbone::CheckpointSource;
use scal_eval::io::{DistanceMatrix, Labels, check_dim, read_distance_matrix, read_features};
use scal_eval::{
    DistanceMetric, Metrics, ReRankParams, evaluate_cuhk03_classic, evaluate_market1501,
    pairwise_distances, re_rank, re_rank_features,
};
use scal_infer::{EmbedOptions, Embedder, ForeignModel, QueryGallery};

/// Evaluation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Market-1501 / DukeMTMC / MSMT17 / CUHK03-NP: all gallery images, single query.
    Market1501,
    /// Old CUHK03 20-split protocol: single-gallery-shot CMC, averaged over 10 draws.
    Cuhk03,
}

/// Distance between features (`--features` mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Distance {
    /// Euclidean distance (equal in ranking to cosine on L2-normalised features).
    Euclidean,
    /// 1 - cosine similarity.
    Cosine,
}

/// CMC, mAP and mINP of a query/gallery split.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["distmat", "features", "checkpoint", "weights"])))]
#[command(group(clap::ArgGroup::new("model").args(["checkpoint", "weights"])))]
pub struct EvaluateArgs {
    /// Folder with distmat.npy (Q x G, float32/float64), q_pids.npy, g_pids.npy,
    /// q_camids.npy, g_camids.npy (int32/int64); distmat_qq.npy and distmat_gg.npy for --rerank.
    #[arg(long, value_name = "DIR")]
    pub distmat: Option<PathBuf>,
    /// Folder with query.npy [Q, D] and gallery.npy [G, D] (float32) and the same id files;
    /// distances are computed first.
    #[arg(long, value_name = "DIR")]
    pub features: Option<PathBuf>,
    /// A trained checkpoint folder (runs/NAME/last, or best: selected on the test split): its post-BN features of the
    /// query and gallery of --dataset are computed first.
    #[arg(long, value_name = "DIR", requires = "dataset")]
    pub checkpoint: Option<PathBuf>,
    /// A ResNet trained elsewhere (torchvision state dict, torchreid model.pth.tar, FastReID
    /// model_final.pth; see --format) instead of --checkpoint: the features that toolkit
    /// evaluates with, for the query and gallery of --dataset, at --height x --width.
    #[arg(long, value_name = "FILE", requires = "dataset")]
    pub weights: Option<PathBuf>,
    /// With --weights: which toolkit wrote it (torchvision, torchreid, fastreid).
    #[arg(long, default_value_t = CheckpointSource::Torchvision, value_parser = crate::cli::weights_format_parser(), requires = "weights")]
    pub format: CheckpointSource,
    /// With --weights: the architecture (resnet18, resnet34, resnet50, resnet101).
    #[arg(long, default_value = "resnet50", requires = "weights", value_parser = crate::cli::parse_arch)]
    pub arch: scal_backbone::ResNetArch,
    /// With --weights: the last stage's stride (default: the toolkit's, 2 for torchreid).
    #[arg(long, requires = "weights", value_parser = clap::value_parser!(u8).range(1..=2))]
    pub last_stride: Option<u8>,
    /// With --weights: input height (images resized to it).
    #[arg(long, default_value_t = 256, requires = "weights", value_parser = clap::value_parser!(u32).range(1..))]
    pub height: u32,
    /// With --weights: input width.
    #[arg(long, default_value_t = 128, requires = "weights", value_parser = clap::value_parser!(u32).range(1..))]
    pub width: u32,
    /// Base width of the ResNet (64 for every published model; smaller for test models).
    #[arg(long, default_value_t = 64, hide = true)]
    pub base_width: usize,
    /// With --checkpoint or --weights: the dataset reader (market1501, dukemtmc,
    /// cuhk03-labeled, cuhk03-detected, msmt17, custom), or synth / synth-hard.
    #[arg(long, requires = "model")]
    pub dataset: Option<String>,
    /// With --checkpoint or --weights: the dataset folder (default datasets/NAME, where
    /// `download` puts it: datasets/cuhk03 for both CUHK03-NP box types, or the folder
    /// named as typed when that one is missing; the synthetic datasets, datasets/synth and
    /// datasets/synth-hard, are read as market1501).
    #[arg(long, requires = "model")]
    pub root: Option<PathBuf>,
    /// With --checkpoint or --weights: do not average features with the mirrored images'.
    #[arg(long, requires = "model")]
    pub no_flip: bool,
    /// With --checkpoint: images per forward pass.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// With --checkpoint: compute backend among those compiled in (flex, wgpu, cuda).
    #[arg(long, default_value = "flex")]
    pub backend: scal_run::Backend,
    /// Distance between features (with --features or --checkpoint).
    #[arg(long, value_enum, default_value_t = Distance::Euclidean)]
    pub distance: Distance,
    /// Longest CMC computed (cut to the gallery size).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rank: u32,
    /// Evaluation protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Market1501)]
    pub metric: Protocol,
    /// Seed of the gallery draws of --metric cuhk03.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Apply k-reciprocal re-ranking (Zhong et al. 2017) before evaluating.
    #[arg(long)]
    pub rerank: bool,
    /// Re-ranking: k-reciprocal neighbourhood size.
    #[arg(long, default_value_t = 20, requires = "rerank", value_parser = clap::value_parser!(u32).range(1..))]
    pub k1: u32,
    /// Re-ranking: neighbours averaged in local query expansion (1 = off).
    #[arg(long, default_value_t = 6, requires = "rerank", value_parser = clap::value_parser!(u32).range(1..))]
    pub k2: u32,
    /// Re-ranking: weight of the original distance, in [0, 1].
    #[arg(long, default_value_t = 0.3, requires = "rerank")]
    pub lambda: f64,
    /// With --features: search this gallery index (`index build`) for each query of
    /// query.npy instead of computing every distance; the metrics are those of the top
    /// --depth results (the gallery's labels come from the index), and, when the folder has
    /// gallery.npy, the index's recall against exact search and the exact mAP are printed.
    #[arg(
        long,
        value_name = "INDEX",
        requires = "features",
        conflicts_with = "rerank"
    )]
    pub index: Option<PathBuf>,
    /// With --index: results searched per query (at least --max-rank is used for the CMC).
    #[arg(long, default_value_t = 100, requires = "index", value_parser = clap::value_parser!(u32).range(1..))]
    pub depth: u32,
    /// With an HNSW index: candidates considered per search (HNSW's efSearch, default
    /// 256): more finds more of the true neighbours and takes longer. Exact indexes ignore it.
    #[arg(long, requires = "index", value_parser = clap::value_parser!(u32).range(1..))]
    pub ef: Option<u32>,
    /// Print one JSON object {"mAP","mINP","cmc","num_valid_queries"} instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl EvaluateArgs {
    /// Runs `cargo xtask evaluate`.
    pub fn run(self) -> Result<()> {
        evaluate(&self)
    }
}

/// Runs the evaluation and prints the result.
fn evaluate(args: &EvaluateArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.lambda) {
        bail!("--lambda must be in [0, 1], got {}", args.lambda);
    }
    let start = Instant::now();
    let inputs = (
        &args.distmat,
        &args.features,
        &args.checkpoint,
        &args.weights,
    );
    let (dir, metrics) = match inputs {
        (Some(dir), None, None, None) => (dir, from_distmat(dir, args)?),
        (None, Some(dir), None, None) => (dir, from_features(dir, args)?),
        (None, None, Some(dir), None) => (dir, from_checkpoint(dir, args)?),
        (None, None, None, Some(file)) => (file, from_weights(file, args)?),
        _ => unreachable!(
            "clap requires exactly one of --distmat, --features, --checkpoint and --weights"
        ),
    };
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "mAP": metrics.map,
                "mINP": metrics.minp,
                "cmc": metrics.cmc,
                "num_valid_queries": metrics.num_valid_queries,
            })
        );
    } else {
        print_table(dir, args, &metrics, seconds);
    }
    Ok(())
}

fn folder(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    Ok(())
}

/// Reads a distance matrix and checks it is `rows x cols` (sizes set by the named files).
fn read_matrix(
    path: &Path,
    (rows, rows_from): (usize, &str),
    (cols, cols_from): (usize, &str),
) -> Result<DistanceMatrix> {
    let m = read_distance_matrix(path)?;
    check_dim(path, m.dim(), (rows, cols), rows_from, cols_from)?;
    Ok(m)
}

fn from_distmat(dir: &Path, args: &EvaluateArgs) -> Result<Metrics> {
    folder(dir)?;
    let labels = Labels::read_dir(dir)?;
    let (q, g) = (labels.q_pids.len(), labels.g_pids.len());
    let path = dir.join("distmat.npy");
    let distmat = read_matrix(&path, (q, "q_pids.npy"), (g, "g_pids.npy"))?;
    if !args.rerank {
        return match distmat {
            DistanceMatrix::F32(m) => metrics(&m, &labels, args),
            DistanceMatrix::F64(m) => metrics(&m, &labels, args),
        }
        .with_context(|| format!("evaluating {}", path.display()));
    }
    let qq_path = dir.join("distmat_qq.npy");
    let gg_path = dir.join("distmat_gg.npy");
    for p in [&qq_path, &gg_path] {
        if !p.exists() {
            bail!(
                "--rerank needs {} (query-query and gallery-gallery distances beside distmat.npy)",
                p.display()
            );
        }
    }
    let qq = read_matrix(&qq_path, (q, "q_pids.npy"), (q, "q_pids.npy"))?;
    let gg = read_matrix(&gg_path, (g, "g_pids.npy"), (g, "g_pids.npy"))?;
    let reranked = match (distmat, qq, gg) {
        (DistanceMatrix::F32(a), DistanceMatrix::F32(b), DistanceMatrix::F32(c)) => {
            re_rank(a.view(), b.view(), c.view(), rerank_params(args))
        }
        (a, b, c) => re_rank(
            a.into_f64().view(),
            b.into_f64().view(),
            c.into_f64().view(),
            rerank_params(args),
        ),
    }
    .with_context(|| {
        format!(
            "re-ranking {} with {} and {}",
            path.display(),
            qq_path.display(),
            gg_path.display()
        )
    })?;
    metrics(&reranked, &labels, args).context("evaluating the re-ranked distances")
}

fn from_features(dir: &Path, args: &EvaluateArgs) -> Result<Metrics> {
    folder(dir)?;
    if let Some(index) = &args.index {
        return from_index(dir, index, args);
    }
    let labels = Labels::read_dir(dir)?;
    let (q_path, g_path) = (dir.join("query.npy"), dir.join("gallery.npy"));
    let query = read_features(&q_path)?;
    let gallery = read_features(&g_path)?;
    if query.nrows() != labels.q_pids.len() {
        bail!(
            "{} has {} rows but q_pids.npy has {} entries",
            q_path.display(),
            query.nrows(),
            labels.q_pids.len()
        );
    }
    if gallery.nrows() != labels.g_pids.len() {
        bail!(
            "{} has {} rows but g_pids.npy has {} entries",
            g_path.display(),
            gallery.nrows(),
            labels.g_pids.len()
        );
    }
    if query.ncols() != gallery.ncols() {
        bail!(
            "{} has {}-d features but {} has {}-d features",
            q_path.display(),
            query.ncols(),
            g_path.display(),
            gallery.ncols()
        );
    }
    from_feature_arrays(&query, &gallery, &labels, args)
        .with_context(|| format!("features in {}", dir.display()))
}

/// The metrics of an index's answers for query.npy (its top `--depth`, the protocol's
/// exclusions applied by the index), with the exact search's recall and mAP beside them when
/// the folder has the gallery's features.
fn from_index(dir: &Path, path: &Path, args: &EvaluateArgs) -> Result<Metrics> {
    use scal_infer::index::GalleryIndex;
    let mut index = GalleryIndex::open(path)?;
    if let Some(ef) = args.ef {
        index.set_search_expansion(ef as usize);
    }
    let Some(labels) = index.header().labels.clone() else {
        bail!(
            "--index {}: the index does not know its gallery's identities and cameras (build it from a folder with g_pids.npy and g_camids.npy)",
            path.display()
        );
    };
    let q_path = dir.join("query.npy");
    let query = read_features(&q_path)?;
    let q_pids = scal_eval::io::read_ids(&dir.join("q_pids.npy"))?;
    let q_camids = scal_eval::io::read_ids(&dir.join("q_camids.npy"))?;
    if q_pids.len() != query.nrows() || q_camids.len() != query.nrows() {
        bail!(
            "{} has {} rows but q_pids.npy / q_camids.npy have {} / {} entries",
            q_path.display(),
            query.nrows(),
            q_pids.len(),
            q_camids.len()
        );
    }
    index.check_compatible(path, &index.header().source, query.ncols())?;
    let depth = args.depth.max(args.max_rank) as usize;
    let own = |q: usize| Some((q_pids[q], q_camids[q]));
    // One query at a time, as a user's query arrives: each one's time is measured.
    let mut times_ms = Vec::with_capacity(query.nrows());
    let lists: Vec<Vec<usize>> = (0..query.nrows())
        .map(|q| {
            let started = std::time::Instant::now();
            let found = index.search(query.row(q), depth, own(q));
            times_ms.push(started.elapsed().as_secs_f64() * 1e3);
            found.iter().map(|n| n.row).collect()
        })
        .collect();
    times_ms.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        let at = ((p / 100.0) * times_ms.len() as f64).ceil() as usize;
        times_ms.get(at.saturating_sub(1)).copied().unwrap_or(0.0)
    };
    let metrics = scal_eval::evaluate_top_lists(
        &lists,
        (&q_pids, &q_camids),
        (&labels.pids, &labels.camids),
        args.max_rank as usize,
    )?;
    eprintln!(
        "index {} ({} engine, {} rows): the top {depth} of each query, {:.3} ms per query at the median, {:.3} at the 99th percentile",
        path.display(),
        index.header().engine.as_str(),
        index.len(),
        percentile(50.0),
        percentile(99.0)
    );
    let g_path = dir.join("gallery.npy");
    if g_path.is_file() {
        let queries = (q_pids.as_slice(), q_camids.as_slice());
        let max_rank = args.max_rank as usize;
        compare_with_exact(&g_path, &query, (&lists, depth), queries, &labels, max_rank)?;
    }
    Ok(metrics)
}

/// Prints the recall of an index's answers `lists` (each query's top `depth`, the protocol's
/// exclusions applied) against exact search over the gallery features `g_path`, at 10 and at
/// the depth, and the exact search's mAP and Rank-1 beside them.
///
/// # Shapes
/// - `query`: `[Q, D]`; `lists`: Q lists of gallery rows; `queries`: `([Q], [Q])`
fn compare_with_exact(
    g_path: &Path,
    query: &Array2<f32>,
    (lists, depth): (&[Vec<usize>], usize),
    queries: (&[i64], &[i64]),
    labels: &scal_infer::index::GalleryLabels,
    max_rank: usize,
) -> Result<()> {
    use scal_infer::index::{ExactSearch, NearestNeighbours};
    let gallery = read_features(g_path)?;
    if gallery.dim() != (labels.pids.len(), query.ncols()) {
        bail!(
            "{} is {} x {} but the index holds {} x {}: not the index's gallery",
            g_path.display(),
            gallery.nrows(),
            gallery.ncols(),
            labels.pids.len(),
            query.ncols()
        );
    }
    let mut exact = ExactSearch::new(gallery.ncols());
    exact.add(gallery.view()).map_err(anyhow::Error::msg)?;
    // Recall: the share of the exact search's answers (after the protocol's exclusions)
    // that the index returned too, within the top 10 and within the depth.
    let (mut found, mut found10, mut expected, mut expected10) = (0usize, 0usize, 0usize, 0usize);
    let mut exact_lists = Vec::with_capacity(lists.len());
    for (q, list) in lists.iter().enumerate() {
        let own = (queries.0[q], queries.1[q]);
        let keep = |r: usize| (labels.pids[r], labels.camids[r]) != own;
        let truth: Vec<usize> = exact
            .search(query.row(q), depth, Some(&keep))
            .iter()
            .map(|n| n.row)
            .collect();
        found += truth.iter().filter(|r| list.contains(r)).count();
        expected += truth.len();
        let (top, truth10) = (&list[..list.len().min(10)], &truth[..truth.len().min(10)]);
        found10 += truth10.iter().filter(|r| top.contains(r)).count();
        expected10 += truth10.len();
        exact_lists.push(truth);
    }
    let exact_metrics = scal_eval::evaluate_top_lists(
        &exact_lists,
        queries,
        (&labels.pids, &labels.camids),
        max_rank,
    )?;
    let at_depth = if depth == 10 {
        String::new()
    } else {
        format!(
            ", recall@{depth}: {:.4}",
            found as f64 / expected.max(1) as f64
        )
    };
    eprintln!(
        "recall@10 against exact search: {:.4}{at_depth}; exact search's top {depth}: mAP {:.2} %, Rank-1 {:.2} %",
        found10 as f64 / expected10.max(1) as f64,
        100.0 * exact_metrics.map,
        100.0 * exact_metrics.rank(1).unwrap_or(0.0)
    );
    Ok(())
}

/// Distances (re-ranked on request) and metrics of query and gallery features.
fn from_feature_arrays(
    query: &Array2<f32>,
    gallery: &Array2<f32>,
    labels: &Labels,
    args: &EvaluateArgs,
) -> Result<Metrics> {
    let metric = match args.distance {
        Distance::Euclidean => DistanceMetric::Euclidean,
        Distance::Cosine => DistanceMetric::Cosine,
    };
    if !args.rerank {
        let q_g = pairwise_distances(query.view(), gallery.view(), metric)?;
        return metrics(&q_g, labels, args);
    }
    // From the features in one blocked pass: no Q x Q or G x G matrix (MSMT17-sized
    // galleries fit), the same values as re_rank on the three distance matrices.
    let reranked = re_rank_features(query.view(), gallery.view(), metric, rerank_params(args))?;
    metrics(&reranked, labels, args)
}

/// The dataset `--dataset` / `--root` name and the folder it was read from.
fn dataset(args: &EvaluateArgs) -> Result<(scal_data::ReidDataset, PathBuf)> {
    let name = args.dataset.as_deref().expect("clap requires --dataset");
    let spec: scal_data::DatasetSpec = name.parse()?;
    let root = args.root.clone().unwrap_or_else(|| {
        // Before DatasetSpec, the default was the name as typed (datasets/cuhk03-labeled).
        let as_typed = Path::new(scal_data::DATASETS_DIR).join(name);
        let canonical = spec.default_root();
        if !canonical.exists() && as_typed.is_dir() {
            as_typed
        } else {
            canonical
        }
    });
    let dataset = scal_data::read_dataset(spec.reader(), &root, scal_data::ReadOptions::default())?;
    Ok((dataset, root))
}

/// Features of a dataset's query and gallery from another toolkit's weights, then metrics.
fn from_weights(file: &Path, args: &EvaluateArgs) -> Result<Metrics> {
    scal_data::check_input_size(args.height as usize, args.width as usize)
        .map_err(|problem| anyhow::anyhow!("--height/--width: {problem}"))?;
    let split = dataset(args)?;
    let device = crate::backend::device(args.backend)?;
    let model = ForeignModel::load(
        file,
        args.format,
        args.arch,
        args.last_stride,
        args.base_width,
        &device,
    )?;
    let size = (args.height as usize, args.width as usize);
    from_model(&model, size, (file, split), args, &device)
}

/// Features of a dataset's query and gallery from a trained checkpoint, then metrics.
fn from_checkpoint(dir: &Path, args: &EvaluateArgs) -> Result<Metrics> {
    let split = dataset(args)?;
    let device = crate::backend::device(args.backend)?;
    let (model, config) = crate::cli::load_model_folder(dir, &device)?;
    let size = (config.height, config.width);
    from_model(&model, size, (dir, split), args, &device)
}

/// The one pipeline of `--checkpoint` and `--weights`: `model` (read from `source`) embeds
/// the query and gallery of `--dataset` (read first, from `root`) at `size`, then distances
/// (re-ranked on request) and metrics.
fn from_model(
    model: &dyn Embedder,
    size: (usize, usize),
    (source, (dataset, root)): (&Path, (scal_data::ReidDataset, PathBuf)),
    args: &EvaluateArgs,
    device: &burn::tensor::Device,
) -> Result<Metrics> {
    let split = (dataset.query.as_slice(), dataset.gallery.as_slice());
    let options = EmbedOptions::new(size.0, size.1)
        .with_batch(args.batch as usize)
        .with_flip(!args.no_flip);
    let bar = crate::cli::progress_bar(dataset.query.len() + dataset.gallery.len());
    let features = QueryGallery::embed(model, split, options, device, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    from_feature_arrays(&features.query, &features.gallery, &features.labels, args)
        .with_context(|| format!("evaluating {} on {}", source.display(), root.display()))
}

fn rerank_params(args: &EvaluateArgs) -> ReRankParams {
    ReRankParams {
        k1: args.k1 as usize,
        k2: args.k2 as usize,
        lambda: args.lambda,
    }
}

fn metrics<T: scal_eval::Distance>(
    distmat: &Array2<T>,
    l: &Labels,
    args: &EvaluateArgs,
) -> Result<Metrics> {
    let max_rank = args.max_rank as usize;
    Ok(match args.metric {
        Protocol::Market1501 => evaluate_market1501(
            distmat.view(),
            &l.q_pids,
            &l.g_pids,
            &l.q_camids,
            &l.g_camids,
            max_rank,
        )?,
        Protocol::Cuhk03 => evaluate_cuhk03_classic(
            distmat.view(),
            &l.q_pids,
            &l.g_pids,
            &l.q_camids,
            &l.g_camids,
            max_rank,
            args.seed,
        )?,
    })
}

fn print_table(dir: &Path, args: &EvaluateArgs, m: &Metrics, seconds: f64) {
    let source = if args.distmat.is_some() {
        "distances"
    } else if args.checkpoint.is_some() {
        "checkpoint"
    } else {
        "features"
    };
    println!(
        "{} ({source}, {} protocol{}): {} valid queries, {seconds:.2} s",
        dir.display(),
        match args.metric {
            Protocol::Market1501 => "market1501",
            Protocol::Cuhk03 => "cuhk03 single-gallery-shot",
        },
        if args.rerank { ", re-ranked" } else { "" },
        m.num_valid_queries,
    );
    println!("  {:<8} {:>7}", "metric", "value");
    for k in [1, 5, 10, 20] {
        if let Some(v) = m.rank(k) {
            println!("  {:<8} {:>6.2}%", format!("Rank-{k}"), 100.0 * v);
        }
    }
    println!("  {:<8} {:>6.2}%", "mAP", 100.0 * m.map);
    println!("  {:<8} {:>6.2}%", "mINP", 100.0 * m.minp);
}
