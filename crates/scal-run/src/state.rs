//! `state.json`: where a run's training stands, in each checkpoint (`last/`, `best/`).
//!
//! [`TrainState`] is this crate's own type, written with `"format"` (its first key, the
//! version of the format, [`FORMAT`]); a file without it (written before the field existed)
//! is format 1, and a file of a later format is refused by name, never misread.

use std::path::Path;

use scal_data::SamplerPosition;
use serde::{Deserialize, Serialize};

/// The version of `state.json`'s format this crate writes (and the newest it reads).
pub const FORMAT: u32 = 1;

/// Where training stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub iteration: u64,
    /// The sampler's next batch.
    pub position: SamplerPosition,
    /// Best mAP evaluated so far, and the epoch (1-based count of finished epochs) it was at.
    pub best: Option<(f64, u64)>,
    /// The training split the run trains on (absent in checkpoints written before it was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_split: Option<SplitDigest>,
    /// The query and gallery the run is evaluated on (absent in checkpoints written before
    /// they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_split: Option<SplitDigest>,
    /// The planted reward's threshold frozen from the run's first batch (runs with
    /// `step.reward` planted and no configured threshold; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planted_threshold: Option<f64>,
}

/// A split, recognisably: its image count and a digest of its images' names (below the
/// dataset folder, so that a moved dataset keeps it), identities and cameras, so that a
/// resume can tell that images were added, removed or renamed (exact resume is exact only on
/// the same images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitDigest {
    /// Images.
    pub images: u64,
    /// The first 8 bytes of the SHA-256 of the sorted `name, pid, camera` lines.
    pub digest: u64,
}

impl SplitDigest {
    /// The digest of `images`, their names taken below `root`.
    pub fn of(images: &[scal_data::ImageRecord], root: &Path) -> SplitDigest {
        use sha2::{Digest, Sha256};
        let mut lines: Vec<String> = images
            .iter()
            .map(|r| {
                let name = r.path.strip_prefix(root).unwrap_or(&r.path);
                format!("{}\0{}\0{}\n", name.to_string_lossy(), r.pid, r.camid)
            })
            .collect();
        lines.sort();
        let mut hasher = Sha256::new();
        for line in &lines {
            hasher.update(line.as_bytes());
        }
        let sum = hasher.finalize();
        SplitDigest {
            images: images.len() as u64,
            digest: u64::from_le_bytes(sum[..8].try_into().expect("8 bytes")),
        }
    }
}

/// The file as written: the format's version, then the state's keys.
#[derive(Serialize)]
struct Written<'a> {
    format: u32,
    #[serde(flatten)]
    state: &'a TrainState,
}

/// The file as read: without `"format"`, format 1.
#[derive(Deserialize)]
struct Read {
    #[serde(default = "format_1")]
    format: u32,
    #[serde(flatten)]
    state: TrainState,
}

/// Only the version of a file that is not a state of this format (unknown keys ignored).
#[derive(Deserialize)]
struct VersionOnly {
    #[serde(default = "format_1")]
    format: u32,
}

fn format_1() -> u32 {
    1
}

impl TrainState {
    /// `state.json`'s text: pretty JSON, `"format"` first.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&Written {
            format: FORMAT,
            state: self,
        })
        .expect("a state serialises")
    }

    /// Reads `state.json`'s text; the error says what is wrong (the caller names the file).
    pub fn from_json(text: &str) -> Result<TrainState, String> {
        let unknown = |format: u32| {
            format!(
                "written in format {format} of state.json, but this version of scal reads formats 1 to {FORMAT}"
            )
        };
        match serde_json::from_str::<Read>(text) {
            Ok(read) if (1..=FORMAT).contains(&read.format) => Ok(read.state),
            Ok(read) => Err(unknown(read.format)),
            Err(e) => match serde_json::from_str::<VersionOnly>(text) {
                Ok(v) if !(1..=FORMAT).contains(&v.format) => Err(unknown(v.format)),
                _ => Err(e.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `state.json` of `last/`, written before the format field (`testdata/README.md`).
    const OLD_STATE: &str = include_str!("../testdata/run-2026-12-07/state.json");

    #[test]
    fn a_state_written_before_the_format_field_reads_back_unchanged() {
        let state = TrainState::from_json(OLD_STATE).unwrap();
        let old: serde_json::Value = serde_json::from_str(OLD_STATE).unwrap();
        let mut written: serde_json::Value = serde_json::from_str(&state.to_json()).unwrap();
        assert_eq!(written["format"], 1);
        written.as_object_mut().unwrap().shift_remove("format");
        assert_eq!(written, old, "every field as it was");
        assert_eq!(TrainState::from_json(&state.to_json()).unwrap(), state);
        assert!(state.iteration > 0 && state.best.is_some() && state.train_split.is_some());
    }

    #[test]
    fn the_format_comes_first_and_a_later_one_is_refused() {
        let state = TrainState {
            iteration: 7,
            best: Some((0.5, 1)),
            ..TrainState::default()
        };
        let text = state.to_json();
        assert!(
            text.starts_with("{\n  \"format\": 1,\n  \"iteration\": 7,"),
            "{text}"
        );
        let later = text.replace("\"format\": 1", "\"format\": 2");
        let err = TrainState::from_json(&later).unwrap_err();
        assert!(
            err.contains("format 2") && err.contains("formats 1 to 1"),
            "{err}"
        );
        let other = "{\"format\": 3, \"step\": 1}";
        assert!(
            TrainState::from_json(other)
                .unwrap_err()
                .contains("format 3")
        );
        let damaged = TrainState::from_json("{\"iteration\": \"x\"}").unwrap_err();
        assert!(damaged.contains("invalid type"), "{damaged}");
    }
}
