//! A gallery folder ranked for query features, and its features cached outside it.
//!
//! The cache key holds the gallery folder, the checkpoint's digest (its `checksums.sha256`),
//! the input size, the flip setting and EXIF orientation; each entry records every file's name, size,
//! modification time and (on Unix) inode and change time, and the SHA-256 of its `.npy` as
//! written. An entry that does not match is embedded again; one whose `.npy` was damaged or
//! edited is named in a [`CacheNote::Unusable`] and embedded again; a cache that cannot be
//! written is a [`CacheNote::NotCached`], not a failure.

use std::fmt;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ndarray::Array2;
use scal_model::ScalModel;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{EmbedOptions, InferError, embed_paths};

/// A path as a JSON string: a name that is not UTF-8 (possible on Unix) is written with
/// U+FFFD in place of its invalid bytes rather than failing the whole output.
fn lossy_path<S: serde::Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// One gallery image near a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// The gallery file (serialised lossily when its name is not UTF-8).
    #[serde(serialize_with = "lossy_path")]
    pub file: PathBuf,
    /// Euclidean distance between the two L2-normalised features (0 to 2).
    pub distance: f32,
}

/// A query and its nearest gallery images, nearest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranking {
    /// The query file (serialised lossily when its name is not UTF-8).
    #[serde(serialize_with = "lossy_path")]
    pub query: PathBuf,
    /// The matches.
    pub matches: Vec<Match>,
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

/// What the cache did that the user should hear of.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CacheNote {
    /// The gallery is being embedded; its features will be cached in `dir`.
    Embedding {
        /// Gallery images.
        images: usize,
        /// The cache folder.
        dir: PathBuf,
    },
    /// A cached entry of this gallery cannot be used (a damaged or edited `.npy`): the
    /// gallery is embedded again. A warning.
    Unusable {
        /// The entry's `.npy`.
        npy: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The features could not be cached (a read-only or full disk, a file in the way): the
    /// next query embeds the gallery again. A warning.
    NotCached {
        /// The cache folder.
        dir: PathBuf,
        /// What failed.
        problem: String,
    },
}

impl CacheNote {
    /// Whether the note is a warning (something did not work as it should).
    pub fn is_warning(&self) -> bool {
        !matches!(self, CacheNote::Embedding { .. })
    }
}

impl fmt::Display for CacheNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheNote::Embedding { images, dir } => write!(
                f,
                "embedding {images} gallery images (cached in {} for the next query)",
                dir.display()
            ),
            CacheNote::Unusable { npy, problem } => write!(
                f,
                "the cached gallery features {} cannot be used ({problem}); embedding the gallery again",
                npy.display()
            ),
            CacheNote::NotCached { dir, problem } => write!(
                f,
                "the gallery features could not be cached in {} ({problem}); the next query embeds the gallery again",
                dir.display()
            ),
        }
    }
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
/// `.npy` changed afterwards (bit rot, a bad copy) is recomputed rather than used.
#[derive(Debug, Serialize, Deserialize)]
struct CacheRecord {
    #[serde(flatten)]
    entry: CacheEntry,
    features_sha256: String,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> InferError + '_ {
    move |source| InferError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 (hex) of the checkpoint's identity: its `checksums.sha256` (the digest of every
/// file), or the weights and configuration themselves for a folder without one.
pub(crate) fn checkpoint_digest(dir: &Path) -> Result<String, InferError> {
    let mut hasher = Sha256::new();
    let sums = dir.join(scal_model::CHECKSUMS_FILE);
    let files: Vec<PathBuf> = if sums.is_file() {
        vec![sums]
    } else {
        vec![
            dir.join(scal_model::CONFIG_FILE),
            dir.join(scal_model::WEIGHTS_FILE),
        ]
    };
    for f in files {
        hasher.update(std::fs::read(&f).map_err(io_error(&f))?);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// SHA-256 (hex) of the listing: each file's name, size and modification time, and on Unix
/// its inode and change time, which a rename or a copy that keeps the modification time
/// (`mv`, `cp -p`, `tar x`) still changes.
fn listing_fingerprint(files: &[PathBuf]) -> Result<String, InferError> {
    let mut hasher = Sha256::new();
    for f in files {
        let meta = std::fs::metadata(f).map_err(io_error(f))?;
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

/// Whether `path` (which need not exist yet) lies inside `folder`, links resolved on both
/// sides: what must not be written into a gallery (the cache, a page of results).
pub fn inside_folder(path: &Path, folder: &Path) -> Result<bool, InferError> {
    Ok(resolved(path)?.starts_with(resolved(folder)?))
}

/// `path` with symbolic links resolved as far as it exists (the rest appended as given), so
/// that a link cannot hide that a folder to be created lies inside another.
fn resolved(path: &Path) -> Result<PathBuf, InferError> {
    let absolute = std::path::absolute(path).map_err(io_error(path))?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        let Some(parent) = existing.parent() else {
            return Ok(absolute.clone());
        };
        rest.push(existing.file_name().unwrap_or_default().to_owned());
        existing = parent;
    }
    let mut out = existing.canonicalize().map_err(io_error(existing))?;
    out.extend(rest.iter().rev());
    Ok(out)
}

/// Reads the cached features of `entry` when present and still valid (`width` columns, one
/// row per file, every value finite, the recorded SHA-256). `Err` holds why an entry of this
/// gallery cannot be used; `Ok(None)` means there is no entry for it.
fn read_cached(
    npy: &Path,
    json: &Path,
    entry: &CacheEntry,
    width: usize,
) -> Result<Option<Array2<f32>>, String> {
    let Some(saved) = std::fs::read_to_string(json)
        .ok()
        .and_then(|text| serde_json::from_str::<CacheRecord>(&text).ok())
    else {
        return Ok(None);
    };
    if saved.entry != *entry {
        return Ok(None);
    }
    let bytes = std::fs::read(npy).unwrap_or_default();
    let digest = format!("{:x}", Sha256::digest(&bytes));
    match <Array2<f32> as ndarray_npy::ReadNpyExt>::read_npy(&bytes[..]) {
        Err(e) => Err(format!("unreadable: {e}")),
        Ok(f) if f.dim() != (entry.files.len(), width) => Err(format!(
            "{} x {} values where {} x {width} were expected",
            f.nrows(),
            f.ncols(),
            entry.files.len()
        )),
        Ok(f) if !f.iter().all(|v| v.is_finite()) => Err("it holds a non-finite value".into()),
        Ok(_) if digest != saved.features_sha256 => {
            Err("its SHA-256 differs from the one recorded when it was written".into())
        }
        Ok(f) => Ok(Some(f)),
    }
}

/// Writes `bytes` to `path` atomically (the workspace's one atomic write,
/// [`scal_fs::write_atomically`]).
fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    scal_fs::write_atomically(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())
}

/// Writes the gallery's features and their entry into the cache: `Err` says why not.
fn write_cache(
    dir: &Path,
    (npy, json): (&Path, &Path),
    features: &Array2<f32>,
    entry: &CacheEntry,
) -> Result<(), String> {
    let mut bytes = Vec::new();
    ndarray_npy::WriteNpyExt::write_npy(features, &mut bytes).map_err(|e| e.to_string())?;
    let record = CacheRecord {
        entry: entry.clone(),
        features_sha256: format!("{:x}", Sha256::digest(&bytes)),
    };
    let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
    let written = std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|()| write_file_atomically(npy, &bytes))
        .and_then(|()| write_file_atomically(json, text.as_bytes()));
    written.inspect_err(|_| {
        let _ = std::fs::remove_file(npy);
    })
}

/// A folder of cached gallery features, never inside the gallery it serves.
#[derive(Debug, Clone)]
pub struct GalleryCache {
    dir: PathBuf,
}

impl GalleryCache {
    /// The cache in `dir` for the gallery folder `gallery`.
    ///
    /// # Errors
    /// [`InferError::CacheInsideGallery`] when `dir` lies inside `gallery` (links resolved):
    /// the cache would be read as photos by the next query.
    pub fn new(dir: PathBuf, gallery: &Path) -> Result<GalleryCache, InferError> {
        if inside_folder(&dir, gallery)? {
            return Err(InferError::CacheInsideGallery {
                cache: dir,
                gallery: gallery.to_path_buf(),
            });
        }
        Ok(GalleryCache { dir })
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The features of `files` (the gallery folder `gallery`'s images, in order) by `model`
    /// (the model folder `checkpoint`, in inference mode on `device`): from the cache when
    /// its entry matches, otherwise embedded and cached. `notes` hears what the user should.
    pub fn features(
        &self,
        (model, checkpoint): (&ScalModel, &Path),
        (gallery, files): (&Path, Vec<PathBuf>),
        options: EmbedOptions,
        device: &Device,
        notes: &mut dyn FnMut(CacheNote),
    ) -> Result<GalleryFeatures, InferError> {
        let gallery = gallery.canonicalize().map_err(io_error(gallery))?;
        let entry = CacheEntry {
            gallery: gallery.clone(),
            checkpoint: checkpoint.canonicalize().map_err(io_error(checkpoint))?,
            fingerprint: listing_fingerprint(&files)?,
            files: files.clone(),
        };
        let key = {
            let flip = if options.flip { "flip" } else { "noflip" };
            let size = (options.height, options.width);
            // Keys of entries without EXIF orientation keep their earlier form.
            let upright = if options.exif_orientation {
                "\0upright"
            } else {
                ""
            };
            let text = format!(
                "{}\0{}\0{size:?}\0{flip}{upright}",
                gallery.display(),
                checkpoint_digest(checkpoint)?
            );
            format!("{:x}", Sha256::digest(text.as_bytes()))
        };
        let (npy, json) = (
            self.dir.join(format!("{key}.npy")),
            self.dir.join(format!("{key}.json")),
        );
        let width = model.neck.gamma.dims()[0];
        match read_cached(&npy, &json, &entry, width) {
            Ok(Some(features)) => {
                return Ok(GalleryFeatures {
                    files,
                    features,
                    cached: true,
                });
            }
            Ok(None) => {}
            Err(problem) => notes(CacheNote::Unusable {
                npy: npy.clone(),
                problem,
            }),
        }
        notes(CacheNote::Embedding {
            images: files.len(),
            dir: self.dir.clone(),
        });
        let features = embed_paths(model, &files, options, device, &mut |_| {})?;
        if let Err(problem) = write_cache(&self.dir, (&npy, &json), &features, &entry) {
            notes(CacheNote::NotCached {
                dir: self.dir.clone(),
                problem,
            });
        }
        Ok(GalleryFeatures {
            files,
            features,
            cached: false,
        })
    }
}

/// The `top` nearest gallery rows of each query row (ties in gallery order), by Euclidean
/// distance ([`scal_eval::pairwise_distances`], as the evaluation computes it).
///
/// # Shapes
/// - `query_features`: `[queries.len(), D]`; `gallery.features`: `[gallery.files.len(), D]`
pub fn rank(
    queries: &[PathBuf],
    query_features: &Array2<f32>,
    gallery: &GalleryFeatures,
    top: usize,
) -> Result<Vec<Ranking>, InferError> {
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
