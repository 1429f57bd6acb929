//! What the terminal shows while a run trains: a progress bar with the loss and the ETA, the
//! scores of each evaluation, the training images that were replaced; Ctrl-C asks the run
//! to stop after the current iteration.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use scal_data::SkippedImage;
use scal_run::log::Scores;
use scal_run::log::{EvalRecord, TrainRecord};
use scal_train::{RunOutcome, TrainObserver};

/// One line of scores: Rank-1/5/10, mAP and mINP in percent, after a label.
pub fn score_line(name: &str, s: &Scores) -> String {
    format!(
        "  {name:<10} Rank-1 {:>6.2}%  Rank-5 {:>6.2}%  Rank-10 {:>6.2}%  mAP {:>6.2}%  mINP {:>6.2}%",
        100.0 * s.rank1,
        100.0 * s.rank5,
        100.0 * s.rank10,
        100.0 * s.map,
        100.0 * s.minp
    )
}

/// The terminal's view of a training run.
#[derive(Debug)]
pub struct Progress<'a> {
    bar: ProgressBar,
    epochs: usize,
    stop: &'a AtomicBool,
}

impl<'a> Progress<'a> {
    /// A view of a run of `epochs` epochs, with a bar if `bar` (else plain lines), stopped
    /// when `stop` is set.
    pub fn new(epochs: usize, bar: bool, stop: &'a AtomicBool) -> Self {
        let bar = if bar {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:25}] {pos}/{len} it, {per_sec}, eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Progress { bar, epochs, stop }
    }

    /// Prints a line above the bar (or plainly without one).
    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl TrainObserver for Progress<'_> {
    fn generating_dataset(&mut self, root: &Path) {
        eprintln!(
            "generating the synthetic dataset in {} (cargo xtask synth)",
            root.display()
        );
    }

    fn started(&mut self, remaining: u64) {
        self.bar.set_length(remaining);
    }

    fn replaced_image(&mut self, image: &SkippedImage) {
        self.bar
            .suspend(|| eprintln!("warning: skipping {}", image.reason));
    }

    fn iteration(&mut self, record: &TrainRecord) {
        self.bar.set_message(format!(
            "epoch {}/{} loss {:.3}",
            record.epoch + 1,
            self.epochs,
            record.step.loss
        ));
        self.bar.inc(1);
    }

    fn evaluated(&mut self, record: &EvalRecord) {
        let e = &record.evaluation;
        self.say(format!(
            "evaluation after epoch {} ({:.1} s):",
            record.epoch, e.seconds
        ));
        self.say(score_line("plain", &e.plain));
        if let Some(r) = &e.reranked {
            self.say(score_line("re-ranked", r));
        }
    }

    fn should_stop(&mut self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn starting_over(&mut self, logged: u64) {
        eprintln!(
            "note: the run never wrote a checkpoint (its first save failed, or it was stopped \
             before): it starts again from iteration 0, and the {logged} iterations its log \
             records are cut back"
        );
    }

    fn ended(&mut self, outcome: &RunOutcome) {
        match outcome {
            RunOutcome::Finished { .. } => self.bar.finish_and_clear(),
            RunOutcome::Interrupted { iterations } => self
                .bar
                .abandon_with_message(format!("stopped at iteration {iterations}")),
        }
    }
}
