//! # scal-trainer
//!
//! Training SCAL. Today: [`step`], one SCAL training step with the gradient routing of
//! `scal-method.md`, summed into a single loss and a single backward pass. The training
//! loop, checkpoints, logs and reports arrive with the trainer issue.

pub mod step;

pub use step::{ScalLoss, StepConfig, StepReport, scal_loss, scal_step};
