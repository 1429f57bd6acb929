//! `cargo xtask query`: one or more query photos against a folder of gallery photos, with a
//! trained checkpoint; prints (or writes as JSON lines and an HTML page) the nearest gallery
//! images. The gallery's features are cached outside the gallery, keyed by the checkpoint,
//! the input size, the flip setting and every file's name, size and modification time.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{self, Backend};

/// Ranks a gallery folder for each query image.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// A trained SCAL checkpoint folder (runs/NAME/last).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Folder of gallery images (any file names; only the folder itself is read).
    #[arg(long, value_name = "DIR")]
    pub gallery: PathBuf,
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
    /// Folder of the gallery-feature cache [default: the user's cache folder, scal/query].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// One gallery image near a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// The gallery file.
    pub file: PathBuf,
    /// Euclidean distance between the two L2-normalised features (0 to 2).
    pub distance: f32,
}

/// A query and its nearest gallery images, nearest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranking {
    /// The query file.
    pub query: PathBuf,
    /// The matches.
    pub matches: Vec<Match>,
}

/// What the cache keeps beside a gallery's features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheEntry {
    gallery: PathBuf,
    checkpoint: PathBuf,
    fingerprint: String,
    files: Vec<PathBuf>,
}

/// A cache entry's `.json`: the entry and the SHA-256 of its `.npy` as written, so that a
/// `.npy` changed afterwards (bit rot, a bad copy) is recomputed rather than used (B5).
#[derive(Debug, Serialize, Deserialize)]
struct CacheRecord {
    #[serde(flatten)]
    entry: CacheEntry,
    features_sha256: String,
}

/// The gallery's features: read from the cache or computed (and cached).
#[derive(Debug)]
pub struct GalleryFeatures {
    /// Gallery files, in listing order.
    pub files: Vec<PathBuf>,
    /// One L2-normalised row per file.
    pub features: Array2<f32>,
    /// Whether they came from the cache.
    pub cached: bool,
}

/// SHA-256 (hex) of the checkpoint's identity: its `checksums.sha256` (the digest of every
/// file), or the weights and configuration themselves for a folder without one.
fn checkpoint_digest(dir: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    let sums = dir.join("checksums.sha256");
    let files: Vec<PathBuf> = if sums.is_file() {
        vec![sums]
    } else {
        vec![dir.join(scal_model::CONFIG_FILE), dir.join("model.bpk")]
    };
    for f in files {
        hasher.update(std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// SHA-256 (hex) of the listing: each file's name, size and modification time, and on Unix
/// its inode and change time, which a rename or a copy that keeps the modification time
/// (`mv`, `cp -p`, `tar x`) still changes (B4).
fn listing_fingerprint(files: &[PathBuf]) -> Result<String> {
    let mut hasher = Sha256::new();
    for f in files {
        let meta = std::fs::metadata(f).with_context(|| format!("reading {}", f.display()))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        #[cfg(unix)]
        let identity = {
            use std::os::unix::fs::MetadataExt;
            format!("{}\0{}.{}", meta.ino(), meta.ctime(), meta.ctime_nsec())
        };
        #[cfg(not(unix))]
        let identity = "";
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        hasher.update(format!("{name}\0{}\0{modified}\0{identity}\n", meta.len()).as_bytes());
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Whether `path` (which need not exist yet) lies inside the `gallery` folder, links resolved
/// on both sides: the one rule for everything query writes (the cache, the page).
fn inside_gallery(path: &Path, gallery: &Path) -> Result<bool> {
    Ok(resolved(path)?.starts_with(resolved(gallery)?))
}

/// `path` with symbolic links resolved as far as it exists (the rest appended as given), so
/// that a link cannot hide that a folder to be created lies inside another (W12).
fn resolved(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        let Some(parent) = existing.parent() else {
            return Ok(absolute.clone());
        };
        rest.push(existing.file_name().unwrap_or_default().to_owned());
        existing = parent;
    }
    let mut out = existing.canonicalize()?;
    out.extend(rest.iter().rev());
    Ok(out)
}

/// The cache folder: `--cache`, or the user's cache folder; never inside the gallery.
fn cache_dir(args: &QueryArgs, gallery: &Path) -> Result<PathBuf> {
    let dir = match &args.cache {
        Some(d) => d.clone(),
        None => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("scal")
            .join("query"),
    };
    if inside_gallery(&dir, gallery)? {
        bail!(
            "the cache folder {} is inside the gallery {}: give --cache a folder outside it",
            dir.display(),
            gallery.display()
        );
    }
    Ok(dir)
}

/// Reads the cached features of `entry` when present and still valid (`width` columns, one
/// row per file, every value finite). An entry that belongs to this gallery but cannot be
/// used (a damaged or edited `.npy`) is named in a warning and embedded again (W8).
fn read_cached(npy: &Path, json: &Path, entry: &CacheEntry, width: usize) -> Option<Array2<f32>> {
    let saved: CacheRecord = serde_json::from_str(&std::fs::read_to_string(json).ok()?).ok()?;
    if saved.entry != *entry {
        return None;
    }
    let bytes = std::fs::read(npy).unwrap_or_default();
    let digest = format!("{:x}", Sha256::digest(&bytes));
    let problem = match <Array2<f32> as ndarray_npy::ReadNpyExt>::read_npy(&bytes[..]) {
        Err(e) => format!("unreadable: {e}"),
        Ok(f) if f.dim() != (entry.files.len(), width) => format!(
            "{} x {} values where {} x {width} were expected",
            f.nrows(),
            f.ncols(),
            entry.files.len()
        ),
        Ok(f) if !f.iter().all(|v| v.is_finite()) => "it holds a non-finite value".into(),
        Ok(_) if digest != saved.features_sha256 => {
            "its SHA-256 differs from the one recorded when it was written".into()
        }
        Ok(f) => return Some(f),
    };
    eprintln!(
        "warning: the cached gallery features {} cannot be used ({problem}); embedding the gallery again",
        npy.display()
    );
    None
}

/// Writes the gallery's features and their entry into the cache; a cache that cannot be
/// written (a read-only or full disk, a file in the way) is a warning, not a failure (W9):
/// the ranking does not need it.
fn write_cache(
    dir: &Path,
    (npy, json): (&Path, &Path),
    features: &Array2<f32>,
    entry: &CacheEntry,
) {
    let mut bytes = Vec::new();
    let written = ndarray_npy::WriteNpyExt::write_npy(features, &mut bytes)
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(std::fs::create_dir_all(dir)?))
        .and_then(|()| write_atomically(npy, |f| Ok(f.write_all(&bytes)?)))
        .and_then(|()| {
            let record = CacheRecord {
                entry: entry.clone(),
                features_sha256: format!("{:x}", Sha256::digest(&bytes)),
            };
            write_atomically(json, |f| {
                Ok(f.write_all(serde_json::to_string_pretty(&record)?.as_bytes())?)
            })
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(npy);
        eprintln!(
            "warning: the gallery features could not be cached in {} ({e:#}); the next query embeds the gallery again",
            dir.display()
        );
    }
}

/// Writes `path` atomically: a temporary file beside it (extract's), then a rename.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let mut tmp = crate::extract::temporary_beside(path, "writing")?;
    write(tmp.as_file_mut())?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Embeds `images` with the checkpoint.
fn embed(
    model: &scal_model::ScalModel,
    size: (usize, usize),
    images: &[PathBuf],
    args: &QueryArgs,
    device: &burn::tensor::Device,
) -> Result<Array2<f32>> {
    let options = scal_infer::EmbedOptions::new(size.0, size.1)
        .with_batch(args.batch as usize)
        .with_flip(args.flip);
    Ok(scal_infer::embed_paths(
        model,
        images,
        options,
        device,
        &mut |_| {},
    )?)
}

/// The gallery's features, from the cache when its entry matches, otherwise computed and
/// cached.
pub fn gallery_features(
    args: &QueryArgs,
    model: &scal_model::ScalModel,
    (size, width): ((usize, usize), usize),
    device: &burn::tensor::Device,
) -> Result<GalleryFeatures> {
    let listing = scal_data::list_images(&args.gallery)?;
    report_skipped(&args.gallery, &listing.skipped);
    let files = listing.images;
    let gallery = args
        .gallery
        .canonicalize()
        .with_context(|| format!("reading {}", args.gallery.display()))?;
    let checkpoint = args.checkpoint.canonicalize()?;
    let entry = CacheEntry {
        gallery: gallery.clone(),
        checkpoint: checkpoint.clone(),
        fingerprint: listing_fingerprint(&files)?,
        files: files.clone(),
    };
    let key = {
        let mut h = Sha256::new();
        let flip = if args.flip { "flip" } else { "noflip" };
        h.update(
            format!(
                "{}\0{}\0{:?}\0{flip}",
                gallery.display(),
                checkpoint_digest(&args.checkpoint)?,
                size
            )
            .as_bytes(),
        );
        format!("{:x}", h.finalize())
    };
    let dir = cache_dir(args, &gallery)?;
    let (npy, json) = (
        dir.join(format!("{key}.npy")),
        dir.join(format!("{key}.json")),
    );
    if let Some(features) = read_cached(&npy, &json, &entry, width) {
        return Ok(GalleryFeatures {
            files,
            features,
            cached: true,
        });
    }
    eprintln!(
        "embedding {} gallery images (cached in {} for the next query)",
        files.len(),
        dir.display()
    );
    let features = embed(model, size, &files, args, device)?;
    write_cache(&dir, (&npy, &json), &features, &entry);
    Ok(GalleryFeatures {
        files,
        features,
        cached: false,
    })
}

/// The `top` nearest gallery rows of each query row (ties in gallery order), by the Euclidean
/// distances `evaluate` computes (`scal_eval::pairwise_distances`).
pub fn rank(
    queries: &[PathBuf],
    query_features: &Array2<f32>,
    gallery: &GalleryFeatures,
    top: usize,
) -> Result<Vec<Ranking>> {
    let distances = scal_eval::pairwise_distances(
        query_features.view(),
        gallery.features.view(),
        scal_eval::DistanceMetric::Euclidean,
    )?;
    Ok(queries
        .iter()
        .zip(distances.rows())
        .map(|(q, row)| {
            let mut d: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
            d.sort_by(|a, b| a.1.total_cmp(&b.1));
            Ranking {
                query: q.clone(),
                matches: d
                    .into_iter()
                    .take(top)
                    .map(|(i, distance)| Match {
                        file: gallery.files[i].clone(),
                        distance,
                    })
                    .collect(),
            }
        })
        .collect())
}

/// The page: the ranked-list figure (`OUT.png`) and, per query, its matches.
fn write_html(path: &Path, rankings: &[Ranking], size: (u32, u32)) -> Result<()> {
    let png = path.with_extension("png");
    let rows: Vec<scal_report::figures::RankedRow> = rankings
        .iter()
        .map(|r| scal_report::figures::RankedRow {
            query: r.query.clone(),
            gallery: r.matches.iter().map(|m| (m.file.clone(), None)).collect(),
        })
        .collect();
    scal_report::figures::ranked_rows_figure(&rows, size, &png)?;
    let escape = |p: &Path| {
        p.display()
            .to_string()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut html = String::from(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>SCAL query</title>\n<h1>Query results</h1>\n",
    );
    let _ = writeln!(
        html,
        "<figure><img src=\"{}\" alt=\"ranked gallery\"><figcaption>Each row: a query (blue border), then its nearest gallery images, nearest first.</figcaption></figure>",
        escape(Path::new(png.file_name().unwrap_or_default()))
    );
    for r in rankings {
        let _ = writeln!(html, "<h2>{}</h2>\n<ol>", escape(&r.query));
        for m in &r.matches {
            let _ = writeln!(html, "<li>{} ({:.4})</li>", escape(&m.file), m.distance);
        }
        html.push_str("</ol>\n");
    }
    write_atomically(path, |f| {
        f.write_all(html.as_bytes()).map_err(anyhow::Error::from)
    })
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
    if inside_gallery(html, &args.gallery)? {
        bail!(
            "--html {} is inside the gallery {}: the page and its figure would be read as photos by the next query; write it outside the gallery",
            html.display(),
            args.gallery.display()
        );
    }
    Ok(())
}

/// Runs the query.
pub fn run(args: &QueryArgs) -> Result<()> {
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
    let (model, config) = crate::load_model_folder(&args.checkpoint, &device)?;
    let size = (config.height, config.width);
    let query_features = embed(&model, size, &queries, args, &device)?;
    let gallery = gallery_features(args, &model, (size, query_features.ncols()), &device)?;
    if gallery.cached {
        eprintln!(
            "gallery features: {} images, from the cache",
            gallery.files.len()
        );
    }
    let rankings = rank(&queries, &query_features, &gallery, args.top as usize)?;
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
