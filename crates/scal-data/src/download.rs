//! Getting the datasets: download from the address the community uses (where one exists)
//! or take an archive the user obtained, verify its digest, and extract it safely.
//!
//! Extraction goes into a temporary folder beside the destination and is renamed into
//! place at the end, so an interrupted download or extraction never looks like a complete
//! dataset. Entries with absolute paths, `..` components or links are refused (zip-slip).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::{DataError, DatasetName};

/// Where a dataset comes from and how to check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetSource {
    /// The dataset.
    pub name: DatasetName,
    /// Folder created under the datasets root (`datasets/market1501`).
    pub folder: &'static str,
    /// The archive's usual file name.
    pub archive: &'static str,
    /// Public download address, when there is one.
    pub url: Option<&'static str>,
    /// SHA-256 of the archive, when known.
    pub sha256: Option<&'static str>,
    /// MD5 of the archive, when that is what the community recorded.
    pub md5: Option<&'static str>,
    /// How to obtain the archive when it cannot be downloaded.
    pub how_to_get: &'static str,
}

/// The datasets `cargo xtask download` knows.
pub const SOURCES: [DatasetSource; 4] = [
    DatasetSource {
        name: DatasetName::Market1501,
        folder: "market1501",
        archive: "Market-1501-v15.09.15.zip",
        // The address torchreid and reid-strong-baseline download from.
        url: Some("http://188.138.127.15:81/Datasets/Market-1501-v15.09.15.zip"),
        sha256: None,
        // Recorded by open-reid for this archive.
        md5: Some("65005ab7d12ec1c44de4eeafe813e68a"),
        how_to_get: "Market-1501 is published by its authors (Zheng et al., ICCV 2015, http://www.liangzheng.org/Project/project_reid.html); \
                     if the download address is unreachable, fetch Market-1501-v15.09.15.zip elsewhere and pass it with --archive.",
    },
    DatasetSource {
        name: DatasetName::Dukemtmc,
        folder: "dukemtmc",
        archive: "DukeMTMC-reID.zip",
        url: None,
        sha256: None,
        md5: None,
        how_to_get: "DukeMTMC-reID's official site was withdrawn by Duke University and it may no longer be distributed; \
                     if you hold a copy you are allowed to use, pass DukeMTMC-reID.zip with --archive.",
    },
    DatasetSource {
        name: DatasetName::Cuhk03Labeled,
        folder: "cuhk03",
        archive: "cuhk03-np.zip",
        url: None,
        sha256: None,
        md5: None,
        how_to_get: "CUHK03 is released on request: fill in the form at https://www.ee.cuhk.edu.hk/~xgwang/CUHK_identification.html; \
                     the new-protocol folders (CUHK03-NP: labeled/ and detected/) are distributed by Zhong et al. \
                     (https://github.com/zhunzhong07/person-re-ranking). Pass the archive with --archive.",
    },
    DatasetSource {
        name: DatasetName::Msmt17,
        folder: "msmt17",
        archive: "MSMT17_V1.tar.gz",
        url: None,
        sha256: None,
        md5: None,
        how_to_get: "MSMT17 is released on request: sign the agreement at http://www.pkuvmc.com/dataset.html \
                     and the authors send a download link. Pass the archive (MSMT17_V1.tar.gz or MSMT17_V2.tar.gz, or .zip) with --archive.",
    },
];

/// The source of a dataset (CUHK03 labeled and detected share one archive).
pub fn source(name: DatasetName) -> &'static DatasetSource {
    let name = match name {
        DatasetName::Cuhk03Detected => DatasetName::Cuhk03Labeled,
        other => other,
    };
    SOURCES
        .iter()
        .find(|s| s.name == name)
        .expect("every downloadable dataset has a source")
}

/// Hex SHA-256 and MD5 of a file.
pub fn digests(path: &Path) -> Result<(String, String), DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let (mut sha, mut md5) = (Sha256::new(), Md5::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
    }
    Ok((hex(&sha.finalize()), hex(&md5.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// A recorded digest matched (which one).
    Matched(&'static str),
    /// Nothing is recorded for this archive: its SHA-256, for the record.
    Unrecorded {
        /// The archive's SHA-256.
        sha256: String,
    },
}

/// Checks an archive against the digests recorded for it.
pub fn verify(
    path: &Path,
    sha256: Option<&str>,
    md5: Option<&str>,
) -> Result<Verification, DataError> {
    let (got_sha, got_md5) = digests(path)?;
    if let Some(want) = sha256 {
        if want != got_sha {
            return Err(DataError::ChecksumMismatch {
                path: path.to_path_buf(),
                algorithm: "SHA-256",
                expected: want.to_string(),
                found: got_sha,
            });
        }
        return Ok(Verification::Matched("SHA-256"));
    }
    if let Some(want) = md5 {
        if want != got_md5 {
            return Err(DataError::ChecksumMismatch {
                path: path.to_path_buf(),
                algorithm: "MD5",
                expected: want.to_string(),
                found: got_md5,
            });
        }
        return Ok(Verification::Matched("MD5"));
    }
    Ok(Verification::Unrecorded { sha256: got_sha })
}

/// The relative path an archive entry may be written to, or an error for absolute paths,
/// `..` and other components that would leave the target.
fn safe_relative(archive: &Path, entry: &str) -> Result<PathBuf, DataError> {
    let unsafe_entry = |reason: &str| DataError::UnsafeArchive {
        path: archive.to_path_buf(),
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    let path = Path::new(entry);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry("`..` would leave the target folder")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry("absolute paths are not allowed"));
            }
        }
    }
    Ok(out)
}

fn archive_kind(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name.ends_with(".zip") {
        Some("zip")
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some("tar.gz")
    } else if name.ends_with(".tar") {
        Some("tar")
    } else {
        None
    }
}

/// The most an archive may expand to: 100 times its size plus 64 MiB. Dataset archives hold
/// JPEGs, which do not compress (Market-1501 expands about 1.1×); an archive beyond the
/// limit is refused as a decompression bomb.
pub fn expansion_limit(archive_bytes: u64) -> u64 {
    archive_bytes.saturating_mul(100).saturating_add(64 << 20)
}

/// Copies archive entry `name` into a new file `out` (its folder made first), charging its
/// bytes to `budget`; refuses the archive when the budget runs out.
fn copy_within_budget(
    entry: &mut impl Read,
    (name, out): (&str, &Path),
    budget: &mut u64,
    archive: &Path,
) -> Result<(), DataError> {
    let failed = |source| DataError::Extract {
        archive: archive.to_path_buf(),
        entry: name.to_string(),
        source,
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut f = File::create(out).map_err(failed)?;
    let copied = std::io::copy(&mut entry.take(*budget + 1), &mut f).map_err(failed)?;
    if copied > *budget {
        return Err(DataError::Archive {
            path: archive.to_path_buf(),
            message: "it expands to more than 100 times its size (a decompression bomb?); nothing was installed".into(),
        });
    }
    *budget -= copied;
    Ok(())
}

/// Refuses an entry whose path an earlier entry already had (the last would win silently).
fn first_time(
    seen: &mut std::collections::HashSet<PathBuf>,
    relative: &Path,
    archive: &Path,
    name: &str,
) -> Result<(), DataError> {
    if !seen.insert(relative.to_path_buf()) {
        return Err(DataError::UnsafeArchive {
            path: archive.to_path_buf(),
            entry: name.to_string(),
            reason: "it appears twice in the archive".into(),
        });
    }
    Ok(())
}

/// What [`extract`] does with a tar entry of a given type.
#[derive(Debug, PartialEq, Eq)]
enum TarEntry {
    /// Written out as a file: regular (`0`), contiguous (`7`, a regular file to every reader
    /// but its historical one) and GNU sparse (`S`, its holes written as zeros and charged
    /// to the expansion limit like any other byte).
    File,
    /// A folder.
    Folder,
    /// Archive metadata with no file of its own (a pax global header, `g`, as `git
    /// archive` writes; a GNU volume label, `V`).
    Metadata,
    /// Anything else refuses the whole archive, with the reason.
    Refused(String),
}

fn tar_entry_kind(kind: tar::EntryType) -> TarEntry {
    if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
        TarEntry::File
    } else if kind.is_dir() {
        TarEntry::Folder
    } else if kind.is_pax_global_extensions() || kind.as_byte() == b'V' {
        TarEntry::Metadata
    } else if kind.is_symlink() || kind.is_hard_link() {
        TarEntry::Refused("links are not allowed".into())
    } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
        TarEntry::Refused("device files and FIFOs are not allowed".into())
    } else {
        TarEntry::Refused(format!(
            "tar entries of type `{}` (neither a file, a folder nor metadata) are not supported",
            kind.as_byte().escape_ascii()
        ))
    }
}

/// The error of writing out archive entry `name`.
fn extract_error(archive: &Path, name: &str) -> impl FnOnce(std::io::Error) -> DataError {
    let (archive, entry) = (archive.to_path_buf(), name.to_string());
    move |source| DataError::Extract {
        archive,
        entry,
        source,
    }
}

/// Extracts `archive` (zip, tar or tar.gz) into `target`, refusing unsafe entries (absolute
/// paths, `..`, symbolic and hard links, device files, a path that appears twice) and
/// archives that expand beyond [`expansion_limit`]. Tar's contiguous and GNU sparse files
/// are files; its metadata entries (pax global headers) are read past.
pub fn extract(archive: &Path, target: &Path) -> Result<usize, DataError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path, source }
    };
    let bad = |message: String| DataError::Archive {
        path: archive.to_path_buf(),
        message,
    };
    let file = File::open(archive).map_err(io(archive))?;
    let size = file.metadata().map_err(io(archive))?.len();
    let mut budget = expansion_limit(size);
    let mut seen = std::collections::HashSet::new();
    let mut count = 0;
    match archive_kind(archive) {
        Some("zip") => {
            let mut zip =
                zip::ZipArchive::new(BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
                let name = entry.name().map_err(|e| bad(e.to_string()))?.to_string();
                let relative = safe_relative(archive, &name)?;
                if entry.is_symlink() {
                    return Err(DataError::UnsafeArchive {
                        path: archive.to_path_buf(),
                        entry: name,
                        reason: "links are not allowed".into(),
                    });
                }
                let out = target.join(&relative);
                if entry.is_dir() {
                    std::fs::create_dir_all(&out).map_err(extract_error(archive, &name))?;
                    continue;
                }
                first_time(&mut seen, &relative, archive, &name)?;
                copy_within_budget(&mut entry, (&name, &out), &mut budget, archive)?;
                count += 1;
            }
        }
        Some(kind @ ("tar" | "tar.gz")) => {
            let reader: Box<dyn Read> = if kind == "tar" {
                Box::new(BufReader::new(file))
            } else {
                Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
            };
            let mut tar = tar::Archive::new(reader);
            for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
                let mut entry = entry.map_err(|e| bad(e.to_string()))?;
                let name = entry
                    .path()
                    .map_err(|e| bad(e.to_string()))?
                    .to_string_lossy()
                    .into_owned();
                let kind = entry.header().entry_type();
                let what = match tar_entry_kind(kind) {
                    TarEntry::Metadata => continue,
                    TarEntry::Refused(reason) => {
                        return Err(DataError::UnsafeArchive {
                            path: archive.to_path_buf(),
                            entry: name,
                            reason,
                        });
                    }
                    what => what,
                };
                let relative = safe_relative(archive, &name)?;
                let out = target.join(&relative);
                if what == TarEntry::Folder {
                    std::fs::create_dir_all(&out).map_err(extract_error(archive, &name))?;
                    continue;
                }
                first_time(&mut seen, &relative, archive, &name)?;
                copy_within_budget(&mut entry, (&name, &out), &mut budget, archive)?;
                count += 1;
            }
        }
        _ => {
            return Err(bad(
                "unknown archive type: expected .zip, .tar or .tar.gz".into()
            ));
        }
    }
    Ok(count)
}

/// Verifies `archive` and extracts it to `destination` through a temporary folder beside it
/// (renamed at the end). With `layout`, the extracted files must read as that dataset
/// (`read_dataset`) before anything is installed: an empty archive or one of another
/// dataset installs nothing. Returns the verification result and the number of files.
pub fn install(
    archive: &Path,
    destination: &Path,
    (sha256, md5): (Option<&str>, Option<&str>),
    layout: Option<DatasetName>,
) -> Result<(Verification, usize), DataError> {
    if archive.is_dir() {
        return Err(DataError::ArchiveIsFolder {
            path: archive.to_path_buf(),
        });
    }
    if !archive.is_file() {
        return Err(DataError::ArchiveNotFound {
            path: archive.to_path_buf(),
        });
    }
    if destination.exists() {
        return Err(DataError::AlreadyExists {
            path: destination.to_path_buf(),
        });
    }
    let verification = verify(archive, sha256, md5)?;
    let parent = destination.parent().unwrap_or(Path::new("."));
    if let Some(file) = parent.ancestors().find(|p| p.is_file()) {
        return Err(DataError::NotAFolder {
            path: file.to_path_buf(),
        });
    }
    std::fs::create_dir_all(parent).map_err(|source| DataError::Write {
        path: parent.to_path_buf(),
        source,
    })?;
    let staging = scal_fs::StagedFolder::beside(destination, ".extracting-").map_err(|source| {
        DataError::Write {
            path: parent.to_path_buf(),
            source,
        }
    })?;
    let files = extract(archive, staging.path())?;
    if let Some(dataset) = layout {
        let unusable = |problem: String| DataError::NotTheDataset {
            archive: archive.to_path_buf(),
            dataset,
            problem,
        };
        if files == 0 {
            return Err(unusable("it holds no file".into()));
        }
        crate::read_dataset(dataset, staging.path(), crate::ReadOptions::default())
            .map_err(|e| unusable(e.to_string()))?;
    }
    staging.install().map_err(|source| DataError::Write {
        path: destination.to_path_buf(),
        source,
    })?;
    Ok((verification, files))
}

/// Downloads `url` to `destination` (through a staging file `.NAME.XXXXXX.part` beside it,
/// renamed when complete and removed if the transfer fails),
/// calling `progress(bytes_so_far, total)` as it goes.
pub fn download(
    url: &str,
    destination: &Path,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, DataError> {
    let failed = |message: String| DataError::Download {
        url: url.to_string(),
        message,
    };
    let response = ureq::get(url).call().map_err(|e| failed(e.to_string()))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let io = |source| DataError::Write {
        path: destination.to_path_buf(),
        source,
    };
    let name = destination
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part =
        scal_fs::StagedFile::beside(destination, &format!(".{name}."), ".part").map_err(io)?;
    let mut file = part.file();
    let mut body = response.into_body();
    let mut reader = body.as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| failed(e.to_string()))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(io)?;
        done += n as u64;
        progress(done, total);
    }
    file.flush().map_err(io)?;
    if let Some(total) = total.filter(|&t| t != done) {
        return Err(failed(format!(
            "the transfer stopped after {done} of {total} bytes"
        )));
    }
    part.install().map_err(io)?;
    Ok(done)
}
