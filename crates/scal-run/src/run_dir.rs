//! One owner for a run folder's layout (`runs/NAME/`): every file and sub-folder a run
//! holds, the names of its two checkpoints and the fallback from one to the other, and the
//! rule for run names. Nothing else in the workspace spells these names.
//!
//! ```text
//! runs/NAME/
//!   config.json     the resolved training configuration
//!   metrics.jsonl   the log (crate::log)
//!   .lock           the process training it (crate::folder::RunLock)
//!   last/           the latest training checkpoint (scal_train::checkpoint): the model
//!                   folder, optimizer.bpk, state.json and a copy of config.json
//!   best/           the checkpoint of the best evaluation
//!   report/         the run report (scal-report)
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::TrainError;

/// The resolved training configuration of a run (and its copy in each checkpoint).
pub const CONFIG_FILE: &str = "config.json";
/// The run's log.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The run report's folder.
pub const REPORT_DIR: &str = "report";
/// The lock file of a run folder.
pub const LOCK_FILE: &str = ".lock";
/// The training state in a checkpoint (`last/state.json`: where training resumes).
pub const STATE_FILE: &str = "state.json";
/// The optimizer's state in a training checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";

/// One of a run's two checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checkpoint {
    /// `last/`: the latest one, with the optimizer, what training resumes from.
    Last,
    /// `best/`: the one of the best evaluation (selected on the test split).
    Best,
}

impl Checkpoint {
    /// Both, in the order a user names them.
    pub const ALL: [Checkpoint; 2] = [Checkpoint::Last, Checkpoint::Best];

    /// The folder's name in a run.
    pub fn as_str(self) -> &'static str {
        match self {
            Checkpoint::Last => "last",
            Checkpoint::Best => "best",
        }
    }

    /// The other checkpoint.
    pub fn other(self) -> Checkpoint {
        match self {
            Checkpoint::Last => Checkpoint::Best,
            Checkpoint::Best => Checkpoint::Last,
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Checkpoint {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Checkpoint::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| TrainError::UnknownName {
                what: "checkpoint",
                name: s.to_string(),
                expected: "last or best",
            })
    }
}

/// A run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run folder at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    /// Whether `name` can name a run under a folder of runs: one folder name, not empty, no
    /// path separator, not `.` or `..` (`../../x` or `/abs/path` would put the run
    /// elsewhere), no control character (a newline or a tab).
    pub fn is_valid_name(name: &str) -> bool {
        let mut parts = Path::new(name).components();
        let single = matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        );
        // A newline or a tab in a name would split the folder's name in every line that
        // prints it (issue 42, C10).
        single && !name.contains(['/', '\\']) && !name.chars().any(char::is_control)
    }

    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.path.join(METRICS_FILE)
    }

    /// `.lock`.
    pub fn lock(&self) -> PathBuf {
        self.path.join(LOCK_FILE)
    }

    /// `report/`.
    pub fn report(&self) -> PathBuf {
        self.path.join(REPORT_DIR)
    }

    /// `last/` or `best/`.
    pub fn checkpoint(&self, which: Checkpoint) -> PathBuf {
        self.path.join(which.as_str())
    }

    /// Whether the folder holds a run (its `config.json`).
    pub fn holds_run(&self) -> bool {
        self.config().is_file()
    }

    /// Whether `which` holds a model (its `model.json`).
    pub fn has_model(&self, which: Checkpoint) -> bool {
        self.checkpoint(which)
            .join(scal_model::CONFIG_FILE)
            .is_file()
    }

    /// The checkpoint to read a model from when `preferred` is asked for: it when it holds
    /// a model, else the other one when that does, else none.
    pub fn model_checkpoint(&self, preferred: Checkpoint) -> Option<Checkpoint> {
        [preferred, preferred.other()]
            .into_iter()
            .find(|&c| self.has_model(c))
    }

    /// The run a checkpoint folder (`RUN/last`, `RUN/best`, or any folder given as one)
    /// belongs to: its parent, when that holds a run.
    pub fn of_checkpoint(checkpoint: &Path) -> Option<RunDir> {
        checkpoint
            .parent()
            .map(RunDir::new)
            .filter(RunDir::holds_run)
    }

    /// Which checkpoint of its run `folder` is, by name (`None` for any other folder).
    pub fn checkpoint_name(folder: &Path) -> Option<Checkpoint> {
        let name = folder.file_name()?.to_str()?;
        name.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_one_folder_name() {
        // Spaces, accents, a colon, a leading dot, a reserved Windows name (trial 4, C11).
        for good in [
            "mine",
            "quick-channel-seed0-1795812345",
            "a.b",
            "run b",
            "ü",
            "a:b",
            ".hidden",
            "con",
        ] {
            assert!(RunDir::is_valid_name(good), "{good:?} refused");
        }
        for bad in [
            "",
            ".",
            "..",
            "../../x",
            "/abs/path",
            "a/b",
            "a\\b",
            "x/..",
            "new\nline",
            "tab\there",
        ] {
            assert!(!RunDir::is_valid_name(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn checkpoints_parse_and_fall_back_to_the_one_that_holds_a_model() {
        assert_eq!("best".parse::<Checkpoint>().unwrap(), Checkpoint::Best);
        assert!("../x".parse::<Checkpoint>().is_err());
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert_eq!(run.model_checkpoint(Checkpoint::Last), None);
        std::fs::create_dir_all(run.checkpoint(Checkpoint::Best)).unwrap();
        std::fs::write(
            run.checkpoint(Checkpoint::Best)
                .join(scal_model::CONFIG_FILE),
            "{}",
        )
        .unwrap();
        assert_eq!(
            run.model_checkpoint(Checkpoint::Last),
            Some(Checkpoint::Best)
        );
        assert_eq!(
            run.model_checkpoint(Checkpoint::Best),
            Some(Checkpoint::Best)
        );
        assert!(RunDir::of_checkpoint(&run.checkpoint(Checkpoint::Best)).is_none());
        std::fs::write(run.config(), "{}").unwrap();
        assert_eq!(
            RunDir::of_checkpoint(&run.checkpoint(Checkpoint::Best)),
            Some(run.clone())
        );
        assert_eq!(
            RunDir::checkpoint_name(&run.checkpoint(Checkpoint::Last)),
            Some(Checkpoint::Last)
        );
    }
}
