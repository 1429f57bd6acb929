//! `cargo xtask index build|add`: a gallery index file ([`scal_infer::index`]) from a
//! features folder (`gallery.npy`, with `g_pids.npy` / `g_camids.npy` when known) or from a
//! folder of gallery images with a trained checkpoint; `add` appends without a rebuild.
//! `query --index` and `evaluate --features DIR --index` search it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use scal_eval::io::{read_features, read_ids};
use scal_infer::index::{Engine, FeatureSource, GalleryIndex, GalleryLabels, INDEX_MAGIC, NewRows};
use scal_infer::{EmbedOptions, embed_paths};

use crate::backend::{self, Backend};
use crate::cli::{Named, check_replaceable};

/// Rows handed to the engine between two updates of the progress bar.
const ROWS_PER_STEP: usize = 4096;

/// Build or extend a gallery index.
#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    #[command(subcommand)]
    command: IndexCommand,
}

#[derive(Debug, clap::Subcommand)]
enum IndexCommand {
    /// A new index (written whole; an interrupted build leaves no file).
    Build(BuildArgs),
    /// New gallery features or images appended to an index (rewritten whole).
    Add(AddArgs),
}

/// Where the gallery's features come from.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = true)]
struct GallerySource {
    /// A features folder as `evaluate --features` reads it: gallery.npy [G, D], with
    /// g_pids.npy and g_camids.npy when the identities are known.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["checkpoint", "gallery"])]
    features: Option<PathBuf>,
    /// A trained checkpoint folder (runs/NAME/last) that embeds --gallery.
    #[arg(long, value_name = "DIR", requires = "gallery")]
    checkpoint: Option<PathBuf>,
    /// A folder of gallery images, embedded by --checkpoint.
    #[arg(long, value_name = "DIR", requires = "checkpoint")]
    gallery: Option<PathBuf>,
    /// With --checkpoint: average each feature with its mirror's.
    #[arg(long)]
    flip: bool,
    /// With --checkpoint: images per forward pass.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// With --checkpoint: compute backend among those compiled in.
    #[arg(long, default_value = "flex")]
    backend: Backend,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, clap::Args)]
struct BuildArgs {
    #[command(flatten)]
    source: GallerySource,
    /// The index file to write.
    #[arg(long, value_name = "INDEX")]
    out: PathBuf,
    /// The search engine: hnsw-f16 (an HNSW graph, vectors stored as f16: approximate, the
    /// least memory; chosen by the side by side in docs/benchmarks.md), hnsw (f32 vectors) or
    /// exact (every row compared: the reference, for galleries small enough to scan).
    #[arg(long, default_value = "hnsw-f16", value_parser = engine_parser())]
    engine: Engine,
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    #[command(flatten)]
    source: GallerySource,
    /// The index file to extend.
    #[arg(long, value_name = "INDEX")]
    index: PathBuf,
}

fn engine_parser() -> Named<Engine> {
    const NAMES: &[&str] = &["exact", "hnsw", "hnsw-f16"];
    Named::new(NAMES, |s| s.parse())
}

/// Gallery features to index, what made them, their labels and files.
struct Gallery {
    features: Array2<f32>,
    source: FeatureSource,
    rows: NewRows,
}

/// Labels of a features folder: both files or neither.
fn folder_labels(dir: &Path, rows: usize) -> Result<Option<GalleryLabels>> {
    let (p, c) = (dir.join("g_pids.npy"), dir.join("g_camids.npy"));
    match (p.is_file(), c.is_file()) {
        (false, false) => Ok(None),
        (true, true) => {
            let labels = GalleryLabels {
                pids: read_ids(&p)?,
                camids: read_ids(&c)?,
            };
            for (file, n) in [(&p, labels.pids.len()), (&c, labels.camids.len())] {
                if n != rows {
                    bail!(
                        "{} has {n} entries but gallery.npy has {rows} rows",
                        file.display()
                    );
                }
            }
            Ok(Some(labels))
        }
        _ => bail!(
            "{}: g_pids.npy and g_camids.npy go together (the identities need their cameras); give both or neither",
            dir.display()
        ),
    }
}

/// The gallery's features, from a folder or embedded from images.
fn gallery(source: &GallerySource) -> Result<Gallery> {
    if let Some(dir) = &source.features {
        let path = dir.join("gallery.npy");
        let features = read_features(&path)?;
        let labels = folder_labels(dir, features.nrows())?;
        return Ok(Gallery {
            features,
            source: FeatureSource::Features,
            rows: NewRows {
                labels,
                files: Vec::new(),
            },
        });
    }
    let (checkpoint, folder) = match (&source.checkpoint, &source.gallery) {
        (Some(c), Some(g)) => (c, g),
        _ => unreachable!("clap requires --features, or --checkpoint with --gallery"),
    };
    let device = backend::device(source.backend)?;
    let (model, config) = crate::cli::load_model_folder(checkpoint, &device)?;
    let options = EmbedOptions::new(config.height, config.width)
        .with_batch(source.batch as usize)
        .with_flip(source.flip);
    let files = scal_data::list_images(folder)?.images;
    if files.is_empty() {
        bail!("{}: no images to index", folder.display());
    }
    let bar = bar(files.len(), "embedding", source.no_progress);
    let features = embed_paths(&model, &files, options, &device, &mut |n| {
        bar.set_position(n as u64)
    })?;
    bar.finish_and_clear();
    Ok(Gallery {
        features,
        source: FeatureSource::checkpoint(checkpoint, &options)?,
        rows: NewRows {
            labels: None,
            files,
        },
    })
}

fn bar(n: usize, what: &str, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    ProgressBar::new(n as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} rows, {{per_sec}}, eta {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    )
}

/// Refuses a build the machine's memory cannot hold, before any work (Linux's
/// `MemAvailable`; elsewhere not checked).
fn check_memory(engine: Engine, rows: usize, dim: usize) -> Result<()> {
    let needed = engine.build_memory_estimate(rows, dim);
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
    if let Some(available) = available
        && needed > available
    {
        bail!(
            "indexing {rows} x {dim} features with the {} engine needs about {:.1} GB of memory; {:.1} GB is available",
            engine.as_str(),
            needed as f64 / 1e9,
            available as f64 / 1e9
        );
    }
    Ok(())
}

/// Adds the gallery's rows to `index` with a progress bar.
fn add_rows(index: &mut GalleryIndex, g: Gallery, hidden: bool) -> Result<()> {
    let n = g.features.nrows();
    let bar = bar(n, "indexing", hidden);
    index.add(g.features.view(), g.rows, ROWS_PER_STEP, &mut |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    Ok(())
}

impl IndexArgs {
    /// Runs `cargo xtask index`.
    pub fn run(self) -> Result<()> {
        match self.command {
            IndexCommand::Build(args) => build(&args),
            IndexCommand::Add(args) => add(&args),
        }
    }
}

fn build(args: &BuildArgs) -> Result<()> {
    // Only an index file is replaced: another file at --out is the user's.
    check_replaceable(&args.out, "--out", "index", |head| {
        head.starts_with(INDEX_MAGIC)
    })?;
    let g = gallery(&args.source)?;
    let (rows, dim) = g.features.dim();
    check_memory(args.engine, rows, dim)?;
    let mut index = GalleryIndex::new(args.engine, dim, g.source.clone())?;
    add_rows(&mut index, g, args.source.no_progress)?;
    index
        .write(&args.out)
        .with_context(|| format!("writing the index {}", args.out.display()))?;
    println!(
        "{}: {rows} gallery rows of {dim}-d features, {} engine{}",
        args.out.display(),
        args.engine.as_str(),
        if index.header().labels.is_some() {
            ", identities and cameras known"
        } else {
            ""
        }
    );
    Ok(())
}

fn add(args: &AddArgs) -> Result<()> {
    let mut index = GalleryIndex::open(&args.index)?;
    let g = gallery(&args.source)?;
    let (rows, dim) = g.features.dim();
    index.check_compatible(&args.index, &g.source, dim)?;
    check_memory(index.header().engine, index.len() + rows, dim)?;
    add_rows(&mut index, g, args.source.no_progress)?;
    index
        .write(&args.index)
        .with_context(|| format!("writing the index {}", args.index.display()))?;
    println!(
        "{}: {rows} rows added, {} in all",
        args.index.display(),
        index.len()
    );
    Ok(())
}
