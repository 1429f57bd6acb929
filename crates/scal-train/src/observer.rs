//! What a run reports while it trains ([`TrainObserver`]) and how it ended
//! ([`RunOutcome`]).

use std::path::Path;

use scal_data::SkippedImage;

use crate::log::{EvalRecord, TrainRecord};

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// All epochs done.
    Finished {
        /// The evaluation after the last epoch (as logged).
        last: crate::log::Evaluation,
        /// Best mAP and the epoch it was reached at.
        best: (f64, u64),
        /// Optimizer steps taken.
        iterations: u64,
    },
    /// Stopped on request ([`TrainObserver::should_stop`]); the last checkpoint holds the
    /// state.
    Interrupted {
        /// Optimizer steps taken.
        iterations: u64,
    },
}

/// What a run reports while it trains, and whether it should stop. Every method has a
/// default that does nothing; `()` observes nothing.
pub trait TrainObserver {
    /// The synthetic dataset is being generated at `root` (configured, and missing).
    fn generating_dataset(&mut self, _root: &Path) {}
    /// The loop starts: `remaining` iterations to go.
    fn started(&mut self, _remaining: u64) {}
    /// An undecodable training image was replaced by another of its identity.
    fn replaced_image(&mut self, _image: &SkippedImage) {}
    /// One iteration is done and logged.
    fn iteration(&mut self, _record: &TrainRecord) {}
    /// An evaluation is done and logged.
    fn evaluated(&mut self, _record: &EvalRecord) {}
    /// Polled after every iteration: `true` saves the last checkpoint and stops the run
    /// with [`RunOutcome::Interrupted`].
    fn should_stop(&mut self) -> bool {
        false
    }
    /// The run being resumed never wrote a checkpoint (its first save failed, or it was
    /// stopped before): it starts again from iteration 0, its log of `logged` iterations cut
    /// back.
    fn starting_over(&mut self, _logged: u64) {}
    /// The loop has ended, finished or stopped.
    fn ended(&mut self, _outcome: &RunOutcome) {}
}

impl TrainObserver for () {}
