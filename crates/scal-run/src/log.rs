//! `metrics.jsonl`: one JSON object per line, a [`Record`] each — `"kind": "train"` per
//! iteration ([`TrainRecord`]) and `"kind": "eval"` per evaluation ([`EvalRecord`]).
//!
//! Every writer and reader of the log goes through these types, so a renamed field is a
//! compile error rather than an empty chart. The keys and their order are a contract
//! (users' scripts read them).
//!
//! Damage is named, never skipped: a line that is not a record is an error with its line
//! number. The one exception is an unfinished last line (no newline at its end): a process
//! killed while writing it leaves it, and it is always later than the last checkpoint, so
//! [`truncate`] drops it and [`read`] ignores it.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use scal_infer::Evaluation;
use scal_model::objective::StepReport;

/// One iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// 0-based epoch of the batch.
    pub epoch: u64,
    /// 1-based iteration (optimizer steps taken after this one).
    pub iteration: u64,
    /// Learning rate of the step.
    pub lr: f64,
    /// The losses, rewards and critic measures of the step (their fields, in this order:
    /// `loss` … `reward_counts`).
    #[serde(flatten)]
    pub step: StepReport,
    /// λ of the step (0 during the critic warm-up).
    pub lambda: f64,
    /// Images per second of the step, data loading included.
    pub images_per_s: f64,
    /// Training images that could not be decoded and were replaced (`data.strict=false`).
    pub replaced_images: Vec<PathBuf>,
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Epochs finished.
    pub epoch: u64,
    /// Iterations finished.
    pub iteration: u64,
    /// The scores (flattened: `plain`, `reranked`, `seconds`).
    #[serde(flatten)]
    pub evaluation: Evaluation,
    /// What each attention module adds (on fixed training images), with attention.
    pub module_amelioration: Option<ModuleAmelioration>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// `"kind": "train"`.
    Train(TrainRecord),
    /// `"kind": "eval"`.
    Eval(EvalRecord),
}

impl Record {
    /// The iteration the record was written at.
    pub fn iteration(&self) -> u64 {
        match self {
            Record::Train(t) => t.iteration,
            Record::Eval(e) => e.iteration,
        }
    }

    /// The record as one JSON line (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a record serialises")
    }
}

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// `metrics.jsonl`.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A complete line is not a record.
    #[error(
        "{} line {line}: not a metrics record ({message}); the log is damaged (restore it, or delete the line to let the run go on from its checkpoint)",
        path.display()
    )]
    BadLine {
        /// `metrics.jsonl`.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What the parser said.
        message: String,
    },
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The complete lines of the log with their 1-based numbers; a last line without its
/// newline (an interrupted write) is left out. A missing file has no lines.
fn complete_lines(path: &Path) -> Result<Vec<(usize, String)>, LogError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path)(e)),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    Ok(complete
        .split('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect())
}

fn parse(path: &Path, line: usize, text: &str) -> Result<Record, LogError> {
    serde_json::from_str(text).map_err(|e| LogError::BadLine {
        path: path.to_path_buf(),
        line,
        message: e.to_string(),
    })
}

/// Every record of the log, in order (a missing file has none).
pub fn read(path: &Path) -> Result<Vec<Record>, LogError> {
    complete_lines(path)?
        .iter()
        .map(|(n, l)| parse(path, *n, l))
        .collect()
}

/// Keeps the records up to and including `iteration` (those a checkpoint taken there
/// accounts for), byte for byte, and drops the rest. The file is replaced atomically.
pub fn truncate(path: &Path, iteration: u64) -> Result<(), LogError> {
    if !path.exists() {
        return Ok(());
    }
    let mut kept = String::new();
    for (n, line) in complete_lines(path)? {
        if parse(path, n, &line)?.iteration() <= iteration {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    let staged = scal_fs::StagedFile::beside(path, ".metrics-", "").map_err(io_error(path))?;
    let mut file = staged.file();
    file.write_all(kept.as_bytes()).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    staged.install().map_err(io_error(path))?;
    Ok(())
}

/// Appends records to a log, one flushed line each.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl LogWriter {
    /// Opens `path` for appending (creating it).
    pub fn append(path: &Path) -> Result<LogWriter, LogError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_error(path))?;
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes one record as a line and flushes it.
    pub fn write(&mut self, record: &Record) -> Result<(), LogError> {
        writeln!(self.file, "{}", record.to_line()).map_err(io_error(&self.path))?;
        self.file.flush().map_err(io_error(&self.path))
    }
}

/// What each attention module adds (the trainer's diagnostic at each evaluation, measured by
/// `scal_train::eval`), measured as the training step measures R_a: on fixed P × K batches
/// of training images, with batch statistics, changing nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleAmelioration {
    /// Images measured.
    pub samples: usize,
    /// Share of images where all modules together raised the true class's probability over
    /// the no-attention pass (the R_a rate of training, on these images).
    pub all_modules: f64,
    /// Per module `l`: share of images where the true class's probability with every module
    /// is higher than with module `l`'s map replaced by ones.
    pub per_module: Vec<f64>,
    /// Picked images that could not be decoded and were left out (`data.strict=false`);
    /// written to the log only when not 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use scal_infer::Scores;

    fn train(iteration: u64) -> Record {
        Record::Train(TrainRecord {
            epoch: 0,
            iteration,
            lr: 1e-3,
            step: StepReport {
                loss: 1.25,
                triplet: 0.5,
                classification: 0.75,
                critic_objective: Some(-1.5),
                critic_mse: None,
                correct_rate: Some(0.25),
                amelioration_rate: None,
                mean_value: None,
                critic_error: None,
                value_by_reward: vec![[Some(0.5), None, Some(1.75)]],
                reward_counts: vec![1, 0, 3],
                critic_fit: None,
                critic_push_scale: None,
            },
            lambda: 1.0,
            images_per_s: 12.5,
            replaced_images: vec![],
        })
    }

    fn eval(iteration: u64) -> Record {
        let s = Scores {
            rank1: 0.5,
            rank5: 0.75,
            rank10: 1.0,
            map: 0.375,
            minp: 0.125,
        };
        Record::Eval(EvalRecord {
            epoch: 1,
            iteration,
            evaluation: Evaluation {
                plain: s,
                reranked: None,
                seconds: 2.0,
            },
            module_amelioration: None,
        })
    }

    #[test]
    fn keys_keep_the_published_order() {
        let line = train(3).to_line();
        assert!(
            line.starts_with(r#"{"kind":"train","epoch":0,"iteration":3,"lr":0.001,"loss":1.25,"triplet":0.5,"classification":0.75,"critic_objective":-1.5,"critic_mse":null,"#),
            "{line}"
        );
        assert!(
            line.ends_with(r#""lambda":1.0,"images_per_s":12.5,"replaced_images":[]}"#),
            "{line}"
        );
        let line = eval(4).to_line();
        assert!(
            line.starts_with(r#"{"kind":"eval","epoch":1,"iteration":4,"plain":{"rank1":0.5,"rank5":0.75,"rank10":1.0,"mAP":0.375,"mINP":0.125},"reranked":null,"seconds":2.0,"module_amelioration":null}"#),
            "{line}"
        );
    }

    #[test]
    fn records_round_trip_and_truncation_keeps_lines_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut w = LogWriter::append(&path).unwrap();
        let records = [train(1), train(2), eval(2), train(3)];
        for r in &records {
            w.write(r).unwrap();
        }
        assert_eq!(read(&path).unwrap(), records);
        let before = std::fs::read_to_string(&path).unwrap();
        truncate(&path, 2).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            after,
            before
                .lines()
                .take(3)
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
        assert!(read(&dir.path().join("absent.jsonl")).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_line_is_named_and_an_unfinished_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let good = train(1).to_line();
        std::fs::write(
            &path,
            format!("{good}\n{{\"kind\":\"train\",\"epo\n{good}\n"),
        )
        .unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl line 2"), "{err}");
        let err = truncate(&path, 5).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");

        std::fs::write(&path, format!("{good}\n{}", &good[..20])).unwrap();
        assert_eq!(read(&path).unwrap(), [train(1)]);
        truncate(&path, 5).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{good}\n"));
    }
}
