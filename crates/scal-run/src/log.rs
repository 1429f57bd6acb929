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
//!
//! The records are this crate's own types ([`StepMetrics`], [`Evaluation`], [`Scores`]), not
//! the trainer's or the evaluator's: `scal_train::records` converts those, in one place, so
//! that a change there cannot change the file. Every line ends with `"format"`, the version
//! of the format it was written in ([`FORMAT`]); a line without it (written before the field
//! existed) is format 1. A line of a later format is refused by name, never misread.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The version of the format this crate writes (and the newest it reads): the last key of
/// every line, `"format": 1`. Lines without it are format 1.
pub const FORMAT: u32 = 1;

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
    pub step: StepMetrics,
    /// λ of the step (0 during the critic warm-up).
    pub lambda: f64,
    /// Images per second of the step, data loading included.
    pub images_per_s: f64,
    /// Training images that could not be decoded and were replaced (`data.strict=false`).
    pub replaced_images: Vec<PathBuf>,
}

/// What a step measured, all means over the batch (the trainer's step report, as logged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// The summed loss.
    pub loss: f32,
    /// `J_tri`.
    pub triplet: f32,
    /// `J_cls`.
    pub classification: f32,
    /// `J_cri` (unweighted), with the critic on.
    pub critic_objective: Option<f32>,
    /// `J_mse`, with the critic on.
    pub critic_mse: Option<f32>,
    /// Share of samples whose attention-based prediction is correct (`R_c = 1`).
    pub correct_rate: Option<f32>,
    /// Share of samples where attention raised the true class's probability (`R_a = 1`).
    pub amelioration_rate: Option<f32>,
    /// Mean critic estimate over modules and samples.
    pub mean_value: Option<f32>,
    /// Mean |V − R| over modules and samples.
    pub critic_error: Option<f32>,
    /// The critics' calibration: for each module `l`, the mean `V_l` over the samples whose
    /// realised reward `R` was 0, 1 and 2 (`null` where no sample had that reward).
    pub value_by_reward: Vec<[Option<f32>; 3]>,
    /// Samples with realised reward 0, 1 and 2 (empty without the critic).
    pub reward_counts: Vec<usize>,
    /// With compatible critics: the share of the variance of their target `S(A′) − S(A)`
    /// that their joint estimate explains (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critic_fit: Option<f32>,
    /// With compatible critics: the scale `≤ 1` of their push on each agent (absent
    /// otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critic_push_scale: Option<Vec<f32>>,
    /// With the counterfactual effect loss: `J_eff` (absent otherwise, and from logs
    /// written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterfactual: Option<f32>,
}

/// Rank-k, mAP and mINP of one ranking, as fractions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Rank-1.
    pub rank1: f64,
    /// Rank-5.
    pub rank5: f64,
    /// Rank-10.
    pub rank10: f64,
    /// Mean average precision.
    #[serde(rename = "mAP")]
    pub map: f64,
    /// Mean inverse negative penalty.
    #[serde(rename = "mINP")]
    pub minp: f64,
}

/// The query/gallery scores of one evaluation (the evaluator's result, as logged).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Plain Euclidean ranking.
    pub plain: Scores,
    /// After k-reciprocal re-ranking, when asked.
    pub reranked: Option<Scores>,
    /// Seconds taken (features + metrics).
    pub seconds: f64,
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

    /// The record as one JSON line (without the newline), ending with `"format"`.
    pub fn to_line(&self) -> String {
        serde_json::to_string(&Line {
            record: self,
            format: FORMAT,
        })
        .expect("a record serialises")
    }
}

/// A line as written: the record's keys, then the format's version.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    record: &'a Record,
    format: u32,
}

/// A line as read: a line without `"format"` is format 1.
#[derive(Deserialize)]
struct ReadLine {
    #[serde(flatten)]
    record: Record,
    #[serde(default = "format_1")]
    format: u32,
}

/// Only the version of a line that is not a record of this format (unknown keys ignored).
#[derive(Deserialize)]
struct VersionOnly {
    #[serde(default = "format_1")]
    format: u32,
}

fn format_1() -> u32 {
    1
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
    /// A line written in a format this version does not read (a later one).
    #[error(
        "{} line {line}: written in format {format} of the metrics log, but this version of scal reads formats 1 to {newest}: read it with the version that wrote it, or a later one",
        path.display()
    )]
    UnknownFormat {
        /// `metrics.jsonl`.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line's `"format"`.
        format: u32,
        /// The newest format this version reads ([`FORMAT`]).
        newest: u32,
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

/// One line's record. The version is checked first when the line is not a record (a later
/// format may have other keys) and when it is (a later format may reuse these keys).
fn parse(path: &Path, line: usize, text: &str) -> Result<Record, LogError> {
    let unknown = |format: u32| LogError::UnknownFormat {
        path: path.to_path_buf(),
        line,
        format,
        newest: FORMAT,
    };
    match serde_json::from_str::<ReadLine>(text) {
        Ok(read) if (1..=FORMAT).contains(&read.format) => Ok(read.record),
        Ok(read) => Err(unknown(read.format)),
        Err(e) => match serde_json::from_str::<VersionOnly>(text) {
            Ok(v) if !(1..=FORMAT).contains(&v.format) => Err(unknown(v.format)),
            _ => Err(LogError::BadLine {
                path: path.to_path_buf(),
                line,
                message: e.to_string(),
            }),
        },
    }
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

    fn train(iteration: u64) -> Record {
        Record::Train(TrainRecord {
            epoch: 0,
            iteration,
            lr: 1e-3,
            step: StepMetrics {
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
                counterfactual: None,
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
            line.ends_with(r#""lambda":1.0,"images_per_s":12.5,"replaced_images":[],"format":1}"#),
            "{line}"
        );
        let line = eval(4).to_line();
        assert_eq!(
            line,
            r#"{"kind":"eval","epoch":1,"iteration":4,"plain":{"rank1":0.5,"rank5":0.75,"rank10":1.0,"mAP":0.375,"mINP":0.125},"reranked":null,"seconds":2.0,"module_amelioration":null,"format":1}"#
        );
    }

    /// `metrics.jsonl` as written before the format field existed (which command and commit
    /// wrote it: `testdata/run-2026-12-07/README.md`).
    const OLD_LOG: &str = include_str!("../testdata/run-2026-12-07/metrics.jsonl");

    #[test]
    fn the_log_written_before_the_format_field_reads_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, OLD_LOG).unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.len(), OLD_LOG.lines().count());
        // Key for key (nested ones too), value for value: a record written now is the old
        // line with the format's version after its last key. (Compared as parsed: serde_json
        // without `float_roundtrip` reads some 17-digit f64s, e.g. `images_per_s`, one ulp
        // off, today as before, so their last digits may be written differently.)
        for (record, line) in records.iter().zip(OLD_LOG.lines()) {
            let old: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut new: serde_json::Value = serde_json::from_str(&record.to_line()).unwrap();
            let fields = new.as_object_mut().unwrap();
            assert_eq!(fields.keys().next_back().unwrap(), "format");
            assert_eq!(fields.shift_remove("format").unwrap(), 1);
            assert_eq!(new.to_string(), old.to_string(), "{line}");
        }
        let again = dir.path().join("again.jsonl");
        let mut writer = LogWriter::append(&again).unwrap();
        for record in &records {
            writer.write(record).unwrap();
        }
        assert_eq!(read(&again).unwrap(), records);
        check_fixture_values(&records);
    }

    /// Values of the fixture's records, as its text spells them.
    fn check_fixture_values(records: &[Record]) {
        let Record::Train(first) = &records[0] else {
            panic!("the fixture starts with a training record")
        };
        assert_eq!((first.epoch, first.iteration, first.lr), (0, 1, 0.00001));
        assert_eq!(first.step.loss, 10.895_390_5);
        assert_eq!(first.step.critic_mse, Some(3.004_868));
        assert_eq!(first.step.reward_counts, [32, 31, 1]);
        assert_eq!(
            first.step.value_by_reward[0],
            [Some(0.065_534_59), Some(0.069_158_465), Some(0.065_748_334)]
        );
        assert_eq!(
            (first.lambda, first.images_per_s),
            (1.0, 25.782_501_571_442_463)
        );
        assert!(first.replaced_images.is_empty());
        let evals: Vec<&EvalRecord> = records
            .iter()
            .filter_map(|r| match r {
                Record::Eval(e) => Some(e),
                Record::Train(_) => None,
            })
            .collect();
        assert_eq!(evals.iter().map(|e| e.epoch).collect::<Vec<_>>(), [1, 2]);
        for e in evals {
            assert!(e.evaluation.reranked.is_some() && e.evaluation.seconds > 0.0);
            let diagnostic = e.module_amelioration.as_ref().unwrap();
            assert_eq!(
                diagnostic.per_module.len(),
                first.step.value_by_reward.len()
            );
        }
    }

    #[test]
    fn the_format_ends_each_line_and_a_later_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let line = train(1).to_line();
        let without = line.replace(",\"format\":1", "");
        let later = line.replace("\"format\":1", "\"format\":2");
        std::fs::write(&path, format!("{line}\n{without}\n{later}\n")).unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            matches!(
                err,
                LogError::UnknownFormat {
                    line: 3,
                    format: 2,
                    newest: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("line 3: written in format 2"),
            "{err}"
        );
        // A later format with other keys is refused by its version, not called damage.
        std::fs::write(
            &path,
            format!("{line}\n{{\"kind\":\"step\",\"format\":3}}\n"),
        )
        .unwrap();
        let err = truncate(&path, 9).unwrap_err();
        assert!(
            matches!(err, LogError::UnknownFormat { format: 3, .. }),
            "{err}"
        );
        std::fs::write(&path, format!("{line}\n{without}\n")).unwrap();
        assert_eq!(read(&path).unwrap(), [train(1), train(1)]);
        let zero = line.replace("\"format\":1", "\"format\":0");
        std::fs::write(&path, format!("{zero}\n")).unwrap();
        assert!(matches!(
            read(&path).unwrap_err(),
            LogError::UnknownFormat { format: 0, .. }
        ));
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
