//! `cargo xtask query`: one or more query photos against a folder of gallery photos, with a
//! trained checkpoint; prints (or writes as JSON lines and an HTML page) the nearest gallery
//! images. The gallery's features are cached outside the gallery
//! ([`scal_infer::GalleryCache`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use scal_infer::index::{FeatureSource, GalleryIndex};
use scal_infer::{
    CacheNote, EmbedOptions, GalleryCache, GalleryFeatures, InferError, Match, Ranking,
    embed_paths, inside_folder, rank,
};

use crate::backend::{self, Backend};
use crate::cli::check_replaceable;

/// Ranks a gallery folder for each query image.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// A trained SCAL checkpoint folder (runs/NAME/last).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Folder of gallery images (any file names; only the folder itself is read).
    #[arg(long, value_name = "DIR", required_unless_present = "index")]
    pub gallery: Option<PathBuf>,
    /// A gallery index (`cargo xtask index build --checkpoint ... --gallery ...`) searched
    /// instead of a gallery folder; it must have been built by this --checkpoint (and --flip).
    #[arg(long, value_name = "INDEX", conflicts_with_all = ["gallery", "cache"])]
    pub index: Option<PathBuf>,
    /// With an HNSW index: candidates considered per search (HNSW's efSearch, default
    /// 256): more finds more of the true neighbours and takes longer. Exact indexes ignore it.
    #[arg(long, requires = "index", value_parser = clap::value_parser!(u32).range(1..))]
    pub ef: Option<u32>,
    /// One query image.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "queries",
        conflicts_with = "queries"
    )]
    pub image: Option<PathBuf>,
    /// A folder of query images.
    #[arg(long, value_name = "DIR")]
    pub queries: Option<PathBuf>,
    /// Matches per query.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub top: u32,
    /// One JSON object per query and line: {"query": FILE, "matches": [{"file", "distance"}]}.
    #[arg(long)]
    pub json: bool,
    /// Also write a static page: each query with its ranked gallery (and OUT.png beside it).
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// Average each feature with its mirror's.
    #[arg(long)]
    pub flip: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Compute backend among those compiled in: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// Take the photos' pixels as stored, ignoring their EXIF orientation (as PIL, torchreid
    /// and the dataset readers do). By default a photo is turned upright first, as a photo
    /// viewer shows it.
    #[arg(long)]
    pub ignore_exif: bool,
    /// Folder of the gallery-feature cache [default: the user's cache folder, scal/query].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// `--gallery` (clap requires it without `--index`).
fn gallery_folder(args: &QueryArgs) -> &Path {
    args.gallery
        .as_deref()
        .expect("clap requires --gallery without --index")
}

/// The cache folder: `--cache`, or the user's cache folder; never inside the gallery.
fn cache(args: &QueryArgs) -> Result<GalleryCache> {
    let dir = match &args.cache {
        Some(d) => d.clone(),
        None => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("scal")
            .join("query"),
    };
    GalleryCache::new(dir, gallery_folder(args)).map_err(|e| match e {
        InferError::CacheInsideGallery { .. } => {
            anyhow::anyhow!("{e}: give --cache a folder outside it")
        }
        other => other.into(),
    })
}

/// `--batch` and `--flip` at the checkpoint's input size; photos turned upright by their
/// EXIF orientation (a phone photo taken sideways is stored sideways), unless
/// `--ignore-exif`.
fn embed_options(args: &QueryArgs, (height, width): (usize, usize)) -> EmbedOptions {
    EmbedOptions::new(height, width)
        .with_batch(args.batch as usize)
        .with_flip(args.flip)
        .with_exif_orientation(!args.ignore_exif)
}

/// The gallery's features, from the cache when its entry matches, otherwise computed and
/// cached; the cache's notes on stderr.
fn gallery_features(
    args: &QueryArgs,
    model: &scal_model::ScalModel,
    size: (usize, usize),
    device: &burn::tensor::Device,
) -> Result<GalleryFeatures> {
    let listing = scal_data::list_images(gallery_folder(args))?;
    report_skipped(gallery_folder(args), &listing.skipped);
    let notes = &mut |note: CacheNote| {
        if note.is_warning() {
            eprintln!("warning: {note}");
        } else {
            eprintln!("{note}");
        }
    };
    Ok(cache(args)?.features(
        (model, &args.checkpoint),
        (gallery_folder(args), listing.images),
        embed_options(args, size),
        device,
        notes,
    )?)
}

/// How every page `query --html` writes begins (and how it recognises one it wrote).
const PAGE_START: &[u8] = b"<!doctype html>\n<meta charset=\"utf-8\">\n<title>SCAL query";

/// The most queries and matches per query the page's figure draws: beyond them a figure grows
/// past what browsers show and what memory holds (100 queries of 10,000 matches took 65 GB;
/// issue 29, W10). The page's lists hold every match.
const FIGURE_QUERIES: usize = 50;
const FIGURE_MATCHES: usize = 20;

/// The page: the ranked-list figure (`OUT.png`) and, per query, its matches.
fn write_html(path: &Path, rankings: &[Ranking], size: (u32, u32)) -> Result<()> {
    let png = path.with_extension("png");
    let rows: Vec<scal_report::figures::RankedRow> = rankings
        .iter()
        .take(FIGURE_QUERIES)
        .map(|r| scal_report::figures::RankedRow {
            query: r.query.clone(),
            gallery: r
                .matches
                .iter()
                .take(FIGURE_MATCHES)
                .map(|m| (m.file.clone(), None))
                .collect(),
        })
        .collect();
    let cut = rankings.len() > FIGURE_QUERIES
        || rankings.iter().any(|r| r.matches.len() > FIGURE_MATCHES);
    scal_report::figures::ranked_rows_figure(&rows, size, &png)?;
    let escape = |p: &Path| {
        p.display()
            .to_string()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut html = String::from_utf8(PAGE_START.to_vec()).expect("ASCII");
    html.push_str("</title>\n<h1>Query results</h1>\n");
    let _ = writeln!(
        html,
        "<figure><img src=\"{}\" alt=\"ranked gallery\"><figcaption>Each row: a query (blue border), then its nearest gallery images, nearest first.{}</figcaption></figure>",
        escape(Path::new(png.file_name().unwrap_or_default())),
        if cut {
            format!(
                " The figure shows the first {FIGURE_QUERIES} queries and the {FIGURE_MATCHES} nearest images of each; the lists below hold every match."
            )
        } else {
            String::new()
        }
    );
    for r in rankings {
        let _ = writeln!(html, "<h2>{}</h2>\n<ol>", escape(&r.query));
        for m in &r.matches {
            let _ = writeln!(html, "<li>{} ({:.4})</li>", escape(&m.file), m.distance);
        }
        html.push_str("</ol>\n");
    }
    scal_fs::write_atomically(path, |tmp| {
        std::fs::write(tmp, html.as_bytes()).map_err(|e| e.to_string())
    })?;
    Ok(())
}

/// A path on one line of the plain output: control characters (a newline in a file name)
/// written as escapes (`\n`), everything else as it is. `--json` keeps names exact.
fn one_line(path: &Path) -> String {
    let mut line = String::new();
    for c in path.display().to_string().chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// Says on stderr which file names of the output are not UTF-8: JSON cannot hold them
/// exactly, so they are written with U+FFFD in place of the invalid bytes (issue 29, W2).
fn warn_non_utf8_names(rankings: &[Ranking]) {
    let mut named = std::collections::BTreeSet::new();
    for r in rankings {
        for path in std::iter::once(&r.query).chain(r.matches.iter().map(|m| &m.file)) {
            if path.to_str().is_none() && named.insert(path.clone()) {
                eprintln!(
                    "warning: {} is not a UTF-8 name: --json writes it with U+FFFD in place of the invalid bytes",
                    one_line(path)
                );
            }
        }
    }
}

/// Says on stderr which entries of `folder` are left out as not images (a phone's `.HEIC`
/// or `.gif`), as `extract` counts them: at most five named, then how many more.
fn report_skipped(folder: &Path, skipped: &[PathBuf]) {
    if skipped.is_empty() {
        return;
    }
    let mut names: Vec<String> = skipped
        .iter()
        .take(5)
        .map(|p| one_line(Path::new(p.file_name().unwrap_or_default())))
        .collect();
    if skipped.len() > 5 {
        names.push(format!("and {} more", skipped.len() - 5));
    }
    eprintln!(
        "note: {} non-image entries of {} skipped (the images read are .{}): {}",
        skipped.len(),
        folder.display(),
        scal_data::IMAGE_EXTENSIONS.join(", ."),
        names.join(", ")
    );
}

/// Checks `--html` before any work (issue 29, W3–W6): a page name ending in `.html` (its
/// figure goes beside it as `NAME.png`, so a `.png` page would overwrite its own figure),
/// not a folder, in a folder that exists, and outside the gallery (where the page and its
/// figure would be read as photos by the next query).
fn check_html_destination(args: &QueryArgs) -> Result<()> {
    let Some(html) = &args.html else {
        return Ok(());
    };
    let is_page = html
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if html.is_dir() || !is_page {
        bail!(
            "--html {}: expected a page name ending in .html, such as results.html (the figure is written beside it as results.png)",
            html.display()
        );
    }
    let parent = match html.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "--html {}: the folder {} does not exist",
            html.display(),
            parent.display()
        );
    }
    check_replaceable(html, "--html", "page", |head| head.starts_with(PAGE_START))?;
    let page_is_ours = html.is_file();
    let figure = html.with_extension("png");
    check_replaceable(&figure, "--html", "figure (its page's)", |head| {
        page_is_ours && head.starts_with(b"\x89PNG")
    })?;
    if let Some(gallery) = &args.gallery
        && inside_folder(html, gallery)?
    {
        bail!(
            "--html {} is inside the gallery {}: the page and its figure would be read as photos by the next query; write it outside the gallery",
            html.display(),
            gallery.display()
        );
    }
    Ok(())
}

/// The nearest rows of a gallery index for each query, named by the index's gallery files
/// (or `gallery row N` for an index built from features without file names).
fn rank_in_index(
    path: &Path,
    args: &QueryArgs,
    queries: &[PathBuf],
    features: &ndarray::Array2<f32>,
    options: EmbedOptions,
) -> Result<Vec<Ranking>> {
    let mut index = GalleryIndex::open(path)?;
    if let Some(ef) = args.ef {
        index.set_search_expansion(ef as usize);
    }
    let source = FeatureSource::checkpoint(&args.checkpoint, &options)?;
    index.check_compatible(path, &source, features.ncols())?;
    let files = &index.header().files;
    Ok(queries
        .iter()
        .zip(features.rows())
        .map(|(query, row)| Ranking {
            query: query.clone(),
            matches: index
                .search(row, args.top as usize, None)
                .into_iter()
                .map(|n| Match {
                    file: files
                        .get(n.row)
                        .cloned()
                        .unwrap_or_else(|| PathBuf::from(format!("gallery row {}", n.row))),
                    distance: n.distance,
                })
                .collect(),
        })
        .collect())
}

impl QueryArgs {
    /// Runs `cargo xtask query`.
    pub fn run(self) -> Result<()> {
        query(&self)
    }
}

/// Runs the query.
fn query(args: &QueryArgs) -> Result<()> {
    check_html_destination(args)?;
    let queries: Vec<PathBuf> = match (&args.image, &args.queries) {
        (Some(image), _) if image.is_dir() => bail!(
            "--image {}: is a folder, not a photo; to rank the gallery for every photo in it, give --queries {}",
            image.display(),
            image.display()
        ),
        (Some(image), _) => vec![image.clone()],
        (None, Some(dir)) => {
            let listing = scal_data::list_images(dir)?;
            report_skipped(dir, &listing.skipped);
            listing.images
        }
        (None, None) => unreachable!("clap requires --image or --queries"),
    };
    let device = backend::device(args.backend)?;
    let (model, config) = crate::cli::load_model_folder(&args.checkpoint, &device)?;
    let size = (config.height, config.width);
    let options = embed_options(args, size);
    let query_features = embed_paths(&model, &queries, options, &device, &mut |_| {})?;
    let rankings = match &args.index {
        Some(index) => rank_in_index(index, args, &queries, &query_features, options)?,
        None => {
            let gallery = gallery_features(args, &model, size, &device)?;
            if gallery.cached {
                eprintln!(
                    "gallery features: {} images, from the cache",
                    gallery.files.len()
                );
            }
            rank(&queries, &query_features, &gallery, args.top as usize)?
        }
    };
    if args.json {
        warn_non_utf8_names(&rankings);
    }
    for r in &rankings {
        if args.json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!("{}", one_line(&r.query));
            for (i, m) in r.matches.iter().enumerate() {
                println!("  {:>3}  {:.4}  {}", i + 1, m.distance, one_line(&m.file));
            }
        }
    }
    if let Some(html) = &args.html {
        write_html(html, &rankings, (config.height as u32, config.width as u32))?;
        eprintln!("page: {}", html.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn a_file_name_with_a_newline_stays_on_one_line() {
        assert_eq!(
            super::one_line(Path::new("G4/new\nline.jpg")),
            "G4/new\\nline.jpg"
        );
        assert_eq!(
            super::one_line(Path::new("G4/tab\there.jpg")),
            "G4/tab\\there.jpg"
        );
        assert_eq!(super::one_line(Path::new("G4/été 1.jpg")), "G4/été 1.jpg");
    }
}
