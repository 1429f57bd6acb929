//! # scal-run
//!
//! A training run on disk, without the trainer: what the trainer writes and what the report,
//! the ablation and the command line read back.
//!
//! - [`config`]: the training configuration (`config.json`): profiles, JSON files and
//!   command-line overrides, checked field by field;
//! - [`log`]: `metrics.jsonl`, one typed record per iteration or evaluation;
//! - [`state`]: `state.json`, where a checkpoint's training stands;
//! - [`run_dir`]: the run folder's layout ([`RunDir`]), its two checkpoints ([`Checkpoint`])
//!   and the run-name rule;
//! - [`folder`]: a folder written as a whole (checkpoints, the report) and the run's lock;
//! - [`lifecycle`]: a run folder created, opened to continue, its location recorded, and
//!   the checks on a folder given to continue;
//! - [`backend`]: which compute backend a run names;
//! - [`TrainError`]: why training, or reading a run, failed.
//!
//! Each file is this crate's own serde types, with the version of its format (`"format"`; a
//! file or line without it is format 1): `scal-train` converts the trainer's and the
//! evaluator's types into them in one place (`scal_train::records`). `scal-train` writes
//! runs through these types and re-exports them; `scal-report` reads a
//! run through them without linking the training loop. No backend is compiled in, nothing is
//! printed and no command is named.

#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod folder;
pub mod lifecycle;
pub mod log;
pub mod run_dir;
pub mod state;
pub mod step;

use std::path::PathBuf;

pub use backend::Backend;
pub use config::{Profile, TrainingConfig};
pub use log::ModuleAmelioration;
pub use run_dir::{Checkpoint, RunDir};
pub use step::StepOptions;

/// A training loss above this has diverged: the method's losses start near ln(identities)
/// plus the triplet margin (under 20 on every dataset), and a run that reaches this no
/// longer learns (issue 42, N2: a loss of 1e24 finished with a `best/`).
pub const DIVERGED_LOSS: f32 = 1e6;

/// Why training, or reading a training run, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A configuration field holds a value it cannot take.
    #[error("configuration: {field}: {problem}")]
    InvalidField {
        /// The field, e.g. `data.p`.
        field: String,
        /// What is wrong and what is accepted.
        problem: String,
    },
    /// A name that is not one of the known ones (a backend, a profile, a measure).
    #[error("unknown {what} `{name}`: expected {expected}")]
    UnknownName {
        /// What was named.
        what: &'static str,
        /// The name given.
        name: String,
        /// The names accepted.
        expected: &'static str,
    },
    /// A `hosts` entry that is not a WebSocket address.
    #[error("configuration: hosts: {host}: {problem}")]
    BadHost {
        /// The entry.
        host: String,
        /// What is wrong.
        problem: String,
    },
    /// A configuration file that cannot be read or is not JSON.
    #[error("config file {}: {problem}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A field name the configuration does not have.
    #[error("unknown field `{field}` in {origin}; known fields here: {}", known.join(", "))]
    UnknownField {
        /// The dotted path given.
        field: String,
        /// Where it came from: a file or the command line.
        origin: String,
        /// The fields at that level.
        known: Vec<String>,
    },
    /// A value of the wrong type for its field (in `origin`: a file or the command line).
    #[error("configuration: {origin}field `{field}`: {problem}")]
    FieldValue {
        /// `PATH: ` of the file it came from, or empty.
        origin: String,
        /// The dotted path.
        field: String,
        /// What the parser said.
        problem: String,
    },
    /// The run folder holds a run already (start a new one elsewhere or resume it).
    #[error("{} already holds a run", run.display())]
    RunExists {
        /// The run folder.
        run: PathBuf,
    },
    /// A new run's folder exists and holds files or folders that are not a run's: the
    /// run's checkpoints and report would replace folders of the same names.
    #[error(
        "{} exists and is not a run folder: it holds {}; a run writes its checkpoints and report there (replacing folders named best/, last/, report/): name a new run, or empty the folder first",
        run.display(),
        found.join(", ")
    )]
    NotARunFolder {
        /// The folder.
        run: PathBuf,
        /// The first few of its entries.
        found: Vec<String>,
    },
    /// Another process is training the run (it holds `RUN/.lock`).
    #[error(
        "{} is being trained by another process{}; wait for it to finish or stop it",
        run.display(),
        pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
    )]
    RunInUse {
        /// The run folder.
        run: PathBuf,
        /// The holder's process id, as it wrote it.
        pid: Option<u32>,
    },
    /// Resuming a run whose log records iterations but whose `last/` checkpoint is gone.
    #[error(
        "{}/last is missing, but metrics.jsonl records {logged} iterations: the run cannot continue where it stopped. Put last/ back, or start the run again from iteration 0 in this folder (its log is cut back)",
        run.display()
    )]
    CheckpointMissing {
        /// The run folder.
        run: PathBuf,
        /// Training iterations the log records.
        logged: u64,
    },
    /// A checkpoint folder (`RUN/last`, `RUN/best`: it holds `model.json`) given where a
    /// run folder is expected, e.g. to resume. Its `config.json` copy makes it look like a
    /// run, but training there would start a new run inside the checkpoint.
    #[error("{} is a checkpoint, not a run folder{}", checkpoint.display(), run.as_ref().map(|r| format!(" (it belongs to the run {})", r.display())).unwrap_or_default())]
    CheckpointNotRun {
        /// The folder given.
        checkpoint: PathBuf,
        /// The run it belongs to, when its parent folder is one.
        run: Option<PathBuf>,
    },
    /// A folder without the run's `config.json`.
    #[error("{} is not a run folder (no config.json)", run.display())]
    NotARun {
        /// The folder given.
        run: PathBuf,
    },
    /// Resuming a run that has trained all its epochs.
    #[error("{} has finished all {epochs} epochs already", run.display())]
    RunFinished {
        /// The run folder.
        run: PathBuf,
        /// Its epochs.
        epochs: u64,
    },
    /// The backbone weights `model.pretrained` names are not there.
    #[error(
        "model.pretrained: {} does not exist. Download torchvision's ImageNet weights ({arch}) there, e.g. `mkdir -p {} && curl -L -o {} {url}`, or point model.pretrained at your copy (model.pretrained=null trains from scratch)",
        path.display(),
        path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")).display(),
        path.display()
    )]
    MissingPretrained {
        /// The configured path.
        path: PathBuf,
        /// The backbone.
        arch: scal_backbone::ResNetArch,
        /// torchvision's download address of its weights.
        url: &'static str,
    },
    /// A run without any training record: nothing to report.
    #[error("{} has no training line yet: nothing to report", log.display())]
    NothingToReport {
        /// The run's `metrics.jsonl`.
        log: PathBuf,
    },
    /// Reading the data failed.
    #[error(transparent)]
    Data(#[from] scal_data::DataError),
    /// Building, loading or saving the model failed.
    #[error(transparent)]
    Model(#[from] scal_model::ModelError),
    /// Evaluation failed.
    #[error(transparent)]
    Eval(#[from] scal_eval::EvalError),
    /// Embedding the evaluation's images failed (other than reading them, which is
    /// [`TrainError::Data`], and the model's and the ranking's errors, which keep their
    /// variants): a feature that is not finite, features that could not be read back from
    /// the device. `scal_train::records` turns the embedder's error into this one.
    #[error("evaluating the model: {message}")]
    Embedding {
        /// What the embedder said, with its causes.
        message: String,
    },
    /// The run's `metrics.jsonl` could not be read or written.
    #[error(transparent)]
    Log(#[from] log::LogError),
    /// A checkpoint could not be written or read.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The loss became NaN or infinite, or grew past [`DIVERGED_LOSS`]: training diverged.
    /// Nothing is saved from the diverged weights; the last checkpoint, if any, is kept.
    #[error(
        "the loss became {loss} at iteration {iteration} (epoch {epoch}): training diverged (a loss that is not finite, or above 1e6); training stopped, {}. Lower optim.lr or check the data",
        match last_checkpoint {
            Some(i) => format!("the last checkpoint (iteration {i}) is kept"),
            None => "and no checkpoint was written before (the run can only start again: --resume RUN --restart)".to_string(),
        }
    )]
    NonFiniteLoss {
        /// 1-based iteration.
        iteration: u64,
        /// 0-based epoch.
        epoch: u64,
        /// The value.
        loss: f32,
        /// The iteration of the run's last checkpoint, when it has one.
        last_checkpoint: Option<u64>,
    },
    /// Resuming with a configuration that differs from the run's.
    #[error(
        "{} was trained with another configuration; refusing to resume with:\n  {}",
        run.display(),
        differences.join("\n  ")
    )]
    ResumeMismatch {
        /// The run folder.
        run: PathBuf,
        /// `field: saved -> requested` lines.
        differences: Vec<String>,
    },
    /// The training split has another number of identities than when the checkpoint was
    /// written: the dataset changed since the run started.
    #[error(
        "{} now has {now} training identities, but {} was trained on {trained}: the dataset changed since the run started (restore it, or train a new run on it)",
        root.display(),
        checkpoint.display()
    )]
    DatasetChanged {
        /// The checkpoint folder.
        checkpoint: PathBuf,
        /// The dataset folder.
        root: PathBuf,
        /// Identities the checkpoint's classifier has.
        trained: usize,
        /// Identities the dataset has now.
        now: usize,
    },
    /// A split has other images than when the checkpoint was written (the same number of
    /// training identities): an exact resume needs the same images.
    #[error(
        "{}: the {split} changed since the checkpoint was written ({then} images then, {now} now, or images renamed or relabelled); an exact resume needs the same images: restore them, or train a new run on them",
        root.display()
    )]
    SplitChanged {
        /// The dataset folder.
        root: PathBuf,
        /// Which: `training split`, `query and gallery`.
        split: &'static str,
        /// Its images when the checkpoint was written.
        then: u64,
        /// Its images now.
        now: u64,
    },
    /// A run resumed while the dataset folder it was trained on is gone (moved, or on a
    /// drive not mounted), and nothing says where it is now.
    #[error(
        "{} was trained on the dataset in {}, which does not exist now: if it moved, name its new place with --root (the run checks that its images are the same)",
        run.display(),
        root.display()
    )]
    DatasetMoved {
        /// The run folder.
        run: PathBuf,
        /// The dataset folder its configuration names.
        root: PathBuf,
    },
    /// The run's configuration differs from the one its last checkpoint was trained with
    /// (`config.json` edited by hand after the checkpoint was written).
    #[error(
        "the run's config.json differs from the configuration {} was trained with (edited after the checkpoint was written?); put it back:\n  {}",
        checkpoint.display(),
        differences.join("\n  ")
    )]
    ConfigChanged {
        /// The checkpoint folder.
        checkpoint: PathBuf,
        /// `field: trained -> now` lines.
        differences: Vec<String>,
    },
    /// A file or folder could not be written whole (scal-fs).
    #[error(transparent)]
    Fs(#[from] scal_fs::FsError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A device stopped working during training (a remote server stopped or became
    /// unreachable, a GPU was lost), in a step or while a checkpoint was written; the last
    /// checkpoint is kept.
    #[error(
        "a device failed at iteration {iteration}: {message}. Training stopped; the last checkpoint is kept"
    )]
    DeviceFailed {
        /// 1-based iteration that failed.
        iteration: u64,
        /// What the backend reported.
        message: String,
        /// The run folder (to resume).
        run: PathBuf,
    },
}
