//! Process memory from `/proc/self/status`, latency percentiles, recall and folder sizes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("/proc/self/status: cannot read")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .with_context(|| format!("/proc/self/status: no {field} line"))?;
    let value = line[field.len() + 1..].trim().trim_end_matches("kB").trim();
    value
        .parse()
        .with_context(|| format!("/proc/self/status: {field} {value:?} is not a number"))
}

/// Resident set now, in KiB; first resets the peak (`VmHWM`) to it by writing 5 to
/// `/proc/self/clear_refs`, so that the peak read after the build is the build's own.
pub fn reset_peak_and_rss_kib() -> Result<u64> {
    // Best effort: without it the peak may only be higher (an earlier peak), never lower.
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        eprintln!(
            "warning: /proc/self/clear_refs not writable; the memory peak may predate the build"
        );
    }
    status_kib("VmRSS")
}

/// Peak resident set (`VmHWM`), in KiB.
pub fn peak_kib() -> Result<u64> {
    status_kib("VmHWM")
}

/// Nearest-rank percentile `p` (0..=100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// |found ∩ exact| / |exact|.
pub fn recall(found: &[u64], exact: &[i64]) -> f64 {
    let hits = exact
        .iter()
        .filter(|&&e| found.iter().take(exact.len()).any(|&f| f as i64 == e))
        .count();
    hits as f64 / exact.len() as f64
}

/// Disk space in bytes allocated to the files under `path` (a file or a folder, recursively):
/// `st_blocks` x 512, so that sparse preallocated files (qdrant-edge's mmap storages) count
/// what they occupy, not their length.
pub fn disk_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("{}: cannot stat", path.display()))?;
    if !meta.is_dir() {
        return Ok(meta.blocks() * 512);
    }
    let mut total = 0;
    for entry in
        std::fs::read_dir(path).with_context(|| format!("{}: cannot list", path.display()))?
    {
        total += disk_bytes(
            &entry
                .with_context(|| format!("{}: cannot list", path.display()))?
                .path(),
        )?;
    }
    Ok(total)
}

/// A scratch folder removed (with everything in it) when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// Creates `<temp dir>/ann-engines-<pid>-<tag>`, emptied first if it exists.
    pub fn new(tag: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("ann-engines-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
