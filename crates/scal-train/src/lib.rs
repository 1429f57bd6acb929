//! # scal-train
//!
//! Training SCAL end to end, as a library that takes its devices from the caller:
//!
//! ```no_run
//! # use scal_train::{Profile, Start, TrainingConfig, train};
//! let config = TrainingConfig::profile(Profile::Quick);
//! let devices = [burn::tensor::Device::default()];
//! let outcome = train(&config, "runs/mine".as_ref(), Start::New, &devices, &mut ()).unwrap();
//! ```
//!
//! [`config`] (profiles, JSON files, overrides, validation), [`run`] (the loop: P × K
//! loader, schedule, evaluation, checkpoints, exact resume), [`observer`] (what a run
//! reports, [`TrainObserver`], and how it ended), [`dataset`] (reading the run's dataset and
//! the checks on it before training), [`optim`] (the two-group Adam), [`step`] (one optimizer step of `scal_model::objective`, on one
//! device or data-parallel), [`checkpoint`] (training-state checkpoints and the staged
//! folder swap), [`log`] (`metrics.jsonl`) and [`eval`] (the per-module amelioration
//! diagnostic). The configuration, the log, the training state, the run folder and
//! [`TrainError`] are `scal-run`'s, re-exported here; [`records`] is the one place where the
//! step's report, the evaluation and the embedder's error become those types.
//!
//! This crate has no backend compiled in, never prints and never names a command: the
//! caller (the `xtask` command line) picks the devices and talks to the user.

#![warn(missing_docs)]

pub mod ablation;
pub mod checkpoint;
pub mod critic_data;
pub mod critic_grad;
pub mod dataset;
mod device_failure;
pub mod eval;
pub mod observer;
pub mod optim;
pub mod records;
pub mod run;
pub mod step;

pub use observer::{RunOutcome, TrainObserver};
pub use run::{Start, train};
pub use scal_model::objective::{ScalLoss, StepConfig, StepReport, scal_loss};
/// The run's files and their types are `scal-run`'s, which the report reads without the
/// trainer; they are re-exported here under the paths they always had.
pub use scal_run::{
    Backend, Checkpoint, Profile, RunDir, TrainError, TrainingConfig, backend, config, folder, log,
    run_dir,
};
pub use step::{scal_step, scal_step_data_parallel};
