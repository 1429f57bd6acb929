//! # scal-trainer
//!
//! Training SCAL end to end: [`config`] (profiles, JSON files, overrides, validation),
//! [`backend`] (the compute device from `--backend`), [`step`] (one SCAL step with its
//! gradient routing), [`run`] (the loop: P × K loader, schedule, logs, evaluation,
//! checkpoints, exact resume, Ctrl-C), [`checkpoint`] and [`eval`] (features, CMC / mAP /
//! mINP, re-ranking), [`bench`] (the benchmark set of `cargo xtask bench`) and [`parity`]
//! (the same model on two backends, compared).

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod log;
pub mod parity;
pub mod report;
pub mod run;
pub mod step;

use std::path::PathBuf;

pub use backend::Backend;
pub use config::{Profile, TrainingConfig};
pub use run::{RunOutcome, train};
pub use scal_model::objective::{ScalLoss, StepConfig, StepReport, scal_loss};
pub use step::{scal_step, scal_step_data_parallel};

/// Why training (or loading a trained run) failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The requested backend is not available.
    #[error("{0}")]
    Backend(String),
    /// The configuration is invalid (the message names the field).
    #[error("configuration: {0}")]
    Config(String),
    /// Reading the data failed.
    #[error(transparent)]
    Data(#[from] scal_data::DataError),
    /// Building, loading or saving the model failed.
    #[error(transparent)]
    Model(#[from] scal_model::ModelError),
    /// Evaluation failed.
    #[error(transparent)]
    Eval(#[from] scal_eval::EvalError),
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
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "the loss became {loss} at iteration {iteration} (epoch {epoch}); training stopped, the last good checkpoint is kept. Lower optim.lr or check the data"
    )]
    NonFiniteLoss {
        /// 1-based iteration.
        iteration: u64,
        /// 0-based epoch.
        epoch: u64,
        /// The value.
        loss: f32,
    },
    /// `--resume` with a configuration that differs from the run's.
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
    /// unreachable, a GPU was lost); the last checkpoint is kept.
    #[error(
        "a device failed at iteration {iteration}: {message}. Training stopped; the last checkpoint is kept. {hint}"
    )]
    DeviceFailed {
        /// 1-based iteration that failed.
        iteration: u64,
        /// What the backend reported.
        message: String,
        /// What to do next (restart the server, resume).
        hint: String,
    },
}
