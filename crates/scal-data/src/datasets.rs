//! Readers of the ReID datasets in their distributed layouts (`docs/reid-protocols.md`).
//!
//! Every reader returns a [`ReidDataset`]: train (identities relabelled `0..N-1`), query and
//! gallery (raw identities), with 0-based camera ids and image paths. Junk images (pid −1)
//! are dropped, distractors (pid 0) stay in the gallery, and files that are not images
//! (`Thumbs.db`) are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::{DataError, is_image_file};

/// One image of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The image file.
    pub path: PathBuf,
    /// Identity: relabelled `0..N-1` in train, raw in query and gallery (0 = distractor).
    pub pid: i64,
    /// Camera, 0-based.
    pub camid: i64,
}

/// Size of a split, counted the way torchreid prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// Distinct identities (the distractor pid 0 counts as one).
    pub ids: usize,
    /// Images.
    pub images: usize,
    /// Distinct cameras.
    pub cameras: usize,
}

impl SplitSummary {
    /// Counts a split.
    pub fn of(records: &[ImageRecord]) -> SplitSummary {
        SplitSummary {
            ids: records.iter().map(|r| r.pid).collect::<BTreeSet<_>>().len(),
            images: records.len(),
            cameras: records
                .iter()
                .map(|r| r.camid)
                .collect::<BTreeSet<_>>()
                .len(),
        }
    }
}

/// The three splits of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReidDataset {
    /// Which dataset.
    pub name: DatasetName,
    /// The folder the splits were read from.
    pub root: PathBuf,
    /// Training images, identities relabelled `0..num_train_ids`.
    pub train: Vec<ImageRecord>,
    /// Query images.
    pub query: Vec<ImageRecord>,
    /// Gallery images (distractors included).
    pub gallery: Vec<ImageRecord>,
}

/// The summary `cargo xtask datasets --json` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Train split.
    pub train: SplitSummary,
    /// Query split.
    pub query: SplitSummary,
    /// Gallery split.
    pub gallery: SplitSummary,
}

impl ReidDataset {
    /// Query images that the Market-1501 protocol can score: those with a gallery image of
    /// the same identity from another camera (the others are skipped by the evaluation).
    pub fn scorable_queries(&self) -> usize {
        let mut cameras: std::collections::HashMap<i64, std::collections::HashSet<i64>> =
            std::collections::HashMap::new();
        for g in &self.gallery {
            cameras.entry(g.pid).or_default().insert(g.camid);
        }
        self.query
            .iter()
            .filter(|q| {
                cameras
                    .get(&q.pid)
                    .is_some_and(|cams| cams.iter().any(|&c| c != q.camid))
            })
            .count()
    }

    /// Number of training identities (classifier outputs).
    pub fn num_train_ids(&self) -> usize {
        self.train
            .iter()
            .map(|r| r.pid)
            .max()
            .map_or(0, |m| m as usize + 1)
    }

    /// Counts of the three splits.
    pub fn summary(&self) -> DatasetSummary {
        DatasetSummary {
            train: SplitSummary::of(&self.train),
            query: SplitSummary::of(&self.query),
            gallery: SplitSummary::of(&self.gallery),
        }
    }

    /// The counts of the official release, when this is one and they differ from what was
    /// read (an incomplete download, say): `(what, expected, found)` for each difference.
    pub fn check_known_counts(&self) -> Vec<(&'static str, usize, usize)> {
        let Some(known) = self.name.known_counts() else {
            return Vec::new();
        };
        if !self.name.is_official_layout(&self.root) {
            return Vec::new();
        }
        let s = self.summary();
        [
            ("train identities", known.0, s.train.ids),
            ("train images", known.1, s.train.images),
            ("query images", known.2, s.query.images),
            ("gallery images", known.3, s.gallery.images),
        ]
        .into_iter()
        .filter(|(_, want, got)| want != got)
        .collect()
    }

    /// torchreid's table.
    pub fn table(&self) -> String {
        let s = self.summary();
        let line = "  ----------------------------------------";
        let row = |name: &str, x: SplitSummary| {
            format!(
                "  {name:<8} | {:>5} | {:>8} | {:>9}",
                x.ids, x.images, x.cameras
            )
        };
        [
            format!("=> Loaded {}", self.name),
            line.to_string(),
            "  subset   | # ids | # images | # cameras".to_string(),
            line.to_string(),
            row("train", s.train),
            row("query", s.query),
            row("gallery", s.gallery),
            line.to_string(),
        ]
        .join("\n")
    }
}

/// The datasets the readers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetName {
    /// Market-1501.
    Market1501,
    /// DukeMTMC-reID.
    Dukemtmc,
    /// CUHK03-NP, labeled boxes (767/700 protocol).
    Cuhk03Labeled,
    /// CUHK03-NP, detected boxes (767/700 protocol).
    Cuhk03Detected,
    /// MSMT17 (V1 list files or V2 folders).
    Msmt17,
    /// Market-style names in `train/`, `query/`, `gallery/` (see docs/datasets.md).
    Custom,
}

impl DatasetName {
    /// Every name, for help texts.
    pub const ALL: [DatasetName; 6] = [
        DatasetName::Market1501,
        DatasetName::Dukemtmc,
        DatasetName::Cuhk03Labeled,
        DatasetName::Cuhk03Detected,
        DatasetName::Msmt17,
        DatasetName::Custom,
    ];

    /// The command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Market1501 => "market1501",
            DatasetName::Dukemtmc => "dukemtmc",
            DatasetName::Cuhk03Labeled => "cuhk03-labeled",
            DatasetName::Cuhk03Detected => "cuhk03-detected",
            DatasetName::Msmt17 => "msmt17",
            DatasetName::Custom => "custom",
        }
    }

    /// (train ids, train images, query images, gallery images) of the official release.
    fn known_counts(self) -> Option<(usize, usize, usize, usize)> {
        match self {
            DatasetName::Market1501 => Some((751, 12_936, 3_368, 15_913)),
            DatasetName::Dukemtmc => Some((702, 16_522, 2_228, 17_661)),
            DatasetName::Cuhk03Labeled => Some((767, 7_368, 1_400, 5_328)),
            DatasetName::Cuhk03Detected => Some((767, 7_365, 1_400, 5_332)),
            DatasetName::Msmt17 => Some((1_041, 30_248, 11_659, 82_161)),
            DatasetName::Custom => None,
        }
    }

    /// Whether `root` is the official release's folder (only then are counts checked: a
    /// synthetic or trimmed copy in the same layout is not an incomplete download).
    fn is_official_layout(self, root: &Path) -> bool {
        let name = root.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match self {
            DatasetName::Market1501 => name == "Market-1501-v15.09.15",
            DatasetName::Dukemtmc => name == "DukeMTMC-reID",
            DatasetName::Cuhk03Labeled | DatasetName::Cuhk03Detected => {
                matches!(name, "labeled" | "detected")
            }
            DatasetName::Msmt17 => name.starts_with("MSMT17"),
            DatasetName::Custom => false,
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase().replace('_', "-");
        let name = match lower.as_str() {
            "market1501" | "market-1501" | "market" => DatasetName::Market1501,
            "dukemtmc" | "dukemtmc-reid" | "duke" => DatasetName::Dukemtmc,
            "cuhk03" | "cuhk03-labeled" | "cuhk03-np" => DatasetName::Cuhk03Labeled,
            "cuhk03-detected" => DatasetName::Cuhk03Detected,
            "msmt17" | "msmt17-v1" | "msmt17-v2" => DatasetName::Msmt17,
            "custom" => DatasetName::Custom,
            _ => {
                return Err(DataError::UnknownDataset {
                    name: s.to_string(),
                });
            }
        };
        Ok(name)
    }
}

/// How to read a dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// MSMT17: add `list_val.txt` to the training split.
    pub msmt17_combine_val: bool,
}

static MARKET_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([-\d]+)_c(\d)").expect("valid pattern"));

/// `(pid, camera)` from a Market-style file name (`0002_c1s1_000451_03.jpg` → `(2, 0)`), with
/// torchreid's pattern `([-\d]+)_c(\d)`; the camera is returned 0-based.
///
/// A name that is not valid UTF-8 is read through its valid part (the bytes that are not
/// become U+FFFD), as torchreid's `glob` + `re` read it: `0001_c2s1_000999_00\xff.jpg` is
/// identity 1, camera 1.
pub fn parse_market_name(path: &Path) -> Result<(i64, i64), DataError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let name = name.as_ref();
    let bad = |reason: &str| DataError::BadFileName {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let caps = MARKET_NAME
        .captures(name)
        .ok_or_else(|| bad("expected `<pid>_c<camera>…` as in 0002_c1s1_000451_03.jpg"))?;
    let pid: i64 = caps[1]
        .parse()
        .map_err(|_| bad("the identity before `_c` is not a number"))?;
    let cam: i64 = caps[2].parse().expect("one digit");
    if cam == 0 {
        return Err(bad("cameras are numbered from 1"));
    }
    if pid < -1 {
        return Err(bad("identities are -1 (junk), 0 (distractor) or positive"));
    }
    Ok((pid, cam - 1))
}

/// The image files directly in `dir` (sorted), or an error naming the folder and the layout.
fn image_files(dir: &Path, layout: &str) -> Result<Vec<PathBuf>, DataError> {
    if dir.exists() && !dir.is_dir() {
        return Err(DataError::NotAFolder {
            path: dir.to_path_buf(),
        });
    }
    if !dir.is_dir() {
        return Err(DataError::MissingSplit {
            path: dir.to_path_buf(),
            layout: layout.to_string(),
        });
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let path = entry
            .map_err(|source| DataError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        if path.is_file() && is_image_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// How the file names of a folder are read.
type NameParser = fn(&Path) -> Result<(i64, i64), DataError>;

static CUSTOM_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(-1|\d+)_c(\d)").expect("valid pattern"));

/// `(pid, camera)` from a custom-layout file name: it must start with the identity, then
/// `_c` and the camera digit (`1e3_c1_x.jpg` is an error, not identity 3); camera 0-based.
pub fn parse_custom_name(path: &Path) -> Result<(i64, i64), DataError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let name = name.as_ref();
    if !CUSTOM_NAME.is_match(name) {
        return Err(DataError::BadFileName {
            path: path.to_path_buf(),
            reason: "a custom-layout name starts with the identity, then `_c` and the camera digit: `<pid>_c<camera>…` (docs/datasets.md)".into(),
        });
    }
    parse_market_name(path)
}

/// Reads a folder of Market-style names; junk (pid −1) dropped.
fn read_market_folder(
    dir: &Path,
    layout: &str,
    parse: NameParser,
) -> Result<Vec<ImageRecord>, DataError> {
    let mut records = Vec::new();
    for path in image_files(dir, layout)? {
        let (pid, camid) = parse(&path)?;
        if pid == -1 {
            continue;
        }
        records.push(ImageRecord { path, pid, camid });
    }
    Ok(records)
}

/// Relabels the training identities `0..N-1` in increasing raw order.
fn relabel(mut records: Vec<ImageRecord>) -> Vec<ImageRecord> {
    let ids: BTreeMap<i64, i64> = records
        .iter()
        .map(|r| r.pid)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, pid)| (pid, i as i64))
        .collect();
    for r in &mut records {
        r.pid = ids[&r.pid];
    }
    records
}

fn check_not_empty(records: &[ImageRecord], split: &str, dir: &Path) -> Result<(), DataError> {
    if records.is_empty() {
        return Err(DataError::EmptySplit {
            split: split.to_string(),
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Finds the folder holding the three Market-style split folders: `root` itself, or one of
/// the `candidates` below it (the archive's top folder, or `name/top`).
fn find_root(root: &Path, marker: &str, candidates: &[&str]) -> PathBuf {
    if root.join(marker).is_dir() {
        return root.to_path_buf();
    }
    for c in candidates {
        let p = root.join(c);
        if p.join(marker).is_dir() {
            return p;
        }
    }
    root.to_path_buf()
}

fn read_three_folders(
    name: DatasetName,
    root: &Path,
    folders: [&str; 3],
    layout: &str,
) -> Result<ReidDataset, DataError> {
    let [train_dir, query_dir, gallery_dir] = folders.map(|f| root.join(f));
    let parse: NameParser = if name == DatasetName::Custom {
        parse_custom_name
    } else {
        parse_market_name
    };
    let train = relabel(read_market_folder(&train_dir, layout, parse)?);
    let query = read_market_folder(&query_dir, layout, parse)?;
    let gallery = read_market_folder(&gallery_dir, layout, parse)?;
    check_not_empty(&train, "train", &train_dir)?;
    check_not_empty(&query, "query", &query_dir)?;
    check_not_empty(&gallery, "gallery", &gallery_dir)?;
    Ok(ReidDataset {
        name,
        root: root.to_path_buf(),
        train,
        query,
        gallery,
    })
}

const MARKET_FOLDERS: [&str; 3] = ["bounding_box_train", "query", "bounding_box_test"];

/// Reads a dataset from `root` (the dataset's folder, or a folder above it: see
/// docs/datasets.md for where each reader looks).
pub fn read_dataset(
    name: DatasetName,
    root: &Path,
    options: ReadOptions,
) -> Result<ReidDataset, DataError> {
    if !root.exists() {
        return Err(DataError::DatasetNotFound {
            path: root.to_path_buf(),
            dataset: name,
        });
    }
    match name {
        DatasetName::Market1501 => {
            let dir = find_root(
                root,
                "bounding_box_train",
                &[
                    "Market-1501-v15.09.15",
                    "market1501/Market-1501-v15.09.15",
                    "market1501",
                ],
            );
            read_three_folders(
                name,
                &dir,
                MARKET_FOLDERS,
                "Market-1501: bounding_box_train/, query/, bounding_box_test/ (in Market-1501-v15.09.15/)",
            )
        }
        DatasetName::Dukemtmc => {
            let dir = find_root(
                root,
                "bounding_box_train",
                &[
                    "DukeMTMC-reID",
                    "dukemtmc/DukeMTMC-reID",
                    "dukemtmc-reid/DukeMTMC-reID",
                ],
            );
            read_three_folders(
                name,
                &dir,
                MARKET_FOLDERS,
                "DukeMTMC-reID: bounding_box_train/, query/, bounding_box_test/ (in DukeMTMC-reID/)",
            )
        }
        DatasetName::Cuhk03Labeled | DatasetName::Cuhk03Detected => {
            let kind = if name == DatasetName::Cuhk03Labeled {
                "labeled"
            } else {
                "detected"
            };
            let base = find_root(root, kind, &["cuhk03-np", "cuhk03/cuhk03-np", "cuhk03"]);
            read_three_folders(
                name,
                &base.join(kind),
                MARKET_FOLDERS,
                "CUHK03-NP: labeled/ and detected/, each with bounding_box_train/, query/, bounding_box_test/",
            )
        }
        DatasetName::Msmt17 => read_msmt17(root, options),
        DatasetName::Custom => read_three_folders(
            name,
            root,
            ["train", "query", "gallery"],
            "custom: train/, query/, gallery/ with Market-style names (docs/datasets.md)",
        ),
    }
}

const MSMT17_LAYOUT: &str = "MSMT17_V1/{train,test}/ with list_{train,val,query,gallery}.txt, or MSMT17_V2/{mask_train_v2,mask_test_v2}/ with the same list files";

fn read_msmt17(root: &Path, options: ReadOptions) -> Result<ReidDataset, DataError> {
    let candidates = [
        ("", "train", "test"),
        ("MSMT17_V1", "train", "test"),
        ("msmt17/MSMT17_V1", "train", "test"),
        ("", "mask_train_v2", "mask_test_v2"),
        ("MSMT17_V2", "mask_train_v2", "mask_test_v2"),
        ("msmt17/MSMT17_V2", "mask_train_v2", "mask_test_v2"),
    ];
    let found = candidates.iter().find(|(dir, train, _)| {
        let base = root.join(dir);
        base.join(train).is_dir() && base.join("list_train.txt").is_file()
    });
    let Some((dir, train_dir, test_dir)) = found else {
        return Err(DataError::MissingSplit {
            path: root.to_path_buf(),
            layout: MSMT17_LAYOUT.to_string(),
        });
    };
    let base = root.join(dir);
    let mut train = read_msmt17_list(&base.join("list_train.txt"), &base.join(train_dir))?;
    if options.msmt17_combine_val {
        train.extend(read_msmt17_list(
            &base.join("list_val.txt"),
            &base.join(train_dir),
        )?);
    }
    let train = relabel(train);
    let query = read_msmt17_list(&base.join("list_query.txt"), &base.join(test_dir))?;
    let gallery = read_msmt17_list(&base.join("list_gallery.txt"), &base.join(test_dir))?;
    check_not_empty(&train, "train", &base.join(train_dir))?;
    check_not_empty(&query, "query", &base.join(test_dir))?;
    check_not_empty(&gallery, "gallery", &base.join(test_dir))?;
    Ok(ReidDataset {
        name: DatasetName::Msmt17,
        root: base,
        train,
        query,
        gallery,
    })
}

/// Lines `0000/0000_000_01_0303morning_0015_0.jpg 0`: path relative to `images`, pid from the
/// list, camera = third `_` field − 1.
fn read_msmt17_list(list: &Path, images: &Path) -> Result<Vec<ImageRecord>, DataError> {
    if !list.is_file() {
        return Err(DataError::MissingSplit {
            path: list.to_path_buf(),
            layout: MSMT17_LAYOUT.to_string(),
        });
    }
    let text = std::fs::read_to_string(list).map_err(|source| DataError::Io {
        path: list.to_path_buf(),
        source,
    })?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: &str| DataError::BadListLine {
            path: list.to_path_buf(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let mut parts = line.split_whitespace();
        let (Some(rel), Some(pid)) = (parts.next(), parts.next()) else {
            return Err(bad("expected `<relative path> <pid>`"));
        };
        let pid: i64 = pid.parse().map_err(|_| bad("the pid is not a number"))?;
        let file = Path::new(rel)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| bad("no file name"))?;
        let cam: i64 = file
            .split('_')
            .nth(2)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("the camera (third `_` field of the name) is not a number"))?;
        if cam < 1 {
            return Err(bad("cameras are numbered from 1"));
        }
        let inside = Path::new(rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(bad("the path leaves the image folder (`..` or absolute)"));
        }
        if !images.join(rel).is_file() {
            return Err(bad(&format!(
                "{} does not exist",
                images.join(rel).display()
            )));
        }
        records.push(ImageRecord {
            path: images.join(rel),
            pid,
            camid: cam - 1,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_names() {
        let p = |s: &str| parse_market_name(Path::new(s));
        assert_eq!(p("0002_c1s1_000451_03.jpg").unwrap(), (2, 0));
        assert_eq!(p("-1_c3s2_012345_00.jpg").unwrap(), (-1, 2));
        assert_eq!(p("0000_c6s1_000001_01.jpg").unwrap(), (0, 5));
        assert_eq!(p("0001_c2_f0046182.jpg").unwrap(), (1, 1));
        let err = p("person_7.jpg").unwrap_err();
        assert!(err.to_string().contains("person_7.jpg"), "{err}");
        assert!(p("0001_c0s1_000001_01.jpg").is_err());
    }

    #[test]
    fn dataset_names() {
        for name in DatasetName::ALL {
            assert_eq!(name.as_str().parse::<DatasetName>().unwrap(), name);
        }
        assert_eq!(
            "Market-1501".parse::<DatasetName>().unwrap(),
            DatasetName::Market1501
        );
        assert!("imagenet".parse::<DatasetName>().is_err());
    }
}
