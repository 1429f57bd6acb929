//! `cargo xtask train`: the main job.

use std::path::PathBuf;

use anyhow::{Context, Result};
use scal_data::DatasetSpec;
use scal_model::AttentionKind;
use scal_rewards::RewardKind;
use scal_run::config::Profile;
use scal_run::{Backend, Checkpoint, RunDir, TrainingConfig};
use scal_train::{RunOutcome, Start};

use crate::cli::train_on_configured_devices;
use crate::progress::score_line;

/// On/off for `--critic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Train SCAL. Without arguments: the `quick` profile, on the synthetic dataset (generated
/// if absent), on the CPU.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Starting configuration: quick (synthetic data, CPU, minutes) or paper (Market-1501, GPU).
    #[arg(long, default_value = "quick", value_parser = crate::cli::profile_parser())]
    pub profile: Profile,
    /// JSON file overriding fields of the profile (only the fields it names).
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Run name: the run folder is RUNS/NAME.
    #[arg(long)]
    pub name: Option<String>,
    /// Folder of the runs.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Continue the run in this folder exactly where its last checkpoint left it.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// With --resume: a run whose last/ checkpoint is gone starts again from iteration 0 in
    /// its folder (its metrics.jsonl cut back) instead of being refused.
    #[arg(long, requires = "resume")]
    pub restart: bool,
    /// With --resume: the checkpoint to continue from, last (exactly where it stopped) or
    /// best (for a damaged last/: the best epoch's weights, the optimizer started afresh;
    /// last/ is kept as last.set-aside/).
    #[arg(long, requires = "resume", conflicts_with = "restart", default_value_t = Checkpoint::Last, value_parser = crate::cli::checkpoint_parser())]
    pub from: Checkpoint,
    /// Compute backend: flex, wgpu, cuda, or remote (devices of `cargo xtask serve` servers, with --hosts).
    #[arg(long, value_parser = crate::cli::backend_parser())]
    pub backend: Option<Backend>,
    /// With --backend remote: the servers, ws://HOST:PORT (or HOST:PORT), comma-separated;
    /// --devices indexes all their devices in this order. Token: SCAL_REMOTE_TOKEN.
    #[arg(long, value_delimiter = ',', value_name = "ws://HOST:PORT,...")]
    pub hosts: Option<Vec<String>>,
    /// Dataset: market1501, dukemtmc, cuhk03-labeled, cuhk03-detected, msmt17, custom (read
    /// from --root), or synth / synth-hard (generated in datasets/NAME, or --root, when absent).
    #[arg(long, value_parser = crate::cli::dataset_parser())]
    pub dataset: Option<DatasetSpec>,
    /// Dataset folder (read as it is: a synthetic dataset is only generated for synth,
    /// synth-hard and the quick profile's own folder, datasets/synth).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Training epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of initialisation, sampling and augmentation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Attention modules: none, spatial or channel.
    #[arg(long, value_parser = crate::cli::attention_parser())]
    pub attention: Option<AttentionKind>,
    /// Train the critics and the agents through them.
    #[arg(long, value_enum)]
    pub critic: Option<Switch>,
    /// Reward: rc, ra or both (the paper's); planted, planted-noisy or planted-per-identity
    /// (the positive controls of the critic loop, `step.planted.*`).
    #[arg(long, value_parser = crate::cli::reward_parser())]
    pub reward: Option<RewardKind>,
    /// Data-parallel training on these devices of the backend (indices as `cargo xtask
    /// devices` lists them), e.g. --devices 0,1,2,3; data.p must be a multiple of their number.
    #[arg(long, value_delimiter = ',', value_name = "I,J,...")]
    pub devices: Option<Vec<usize>>,
    /// Weight of the critic objective for the agents.
    #[arg(long)]
    pub lambda: Option<f64>,
    /// torchvision weights for the backbone (.pth or .safetensors).
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,
    /// Any field: --set optim.lr=0.001 --set data.p=8 (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl TrainArgs {
    /// The run's configuration: `base` (a profile's, or a resumed run's) overlaid with
    /// `--config`, then changed by the typed flags, then by `--set` (each value read by its
    /// field's type), and validated.
    pub fn configuration(&self, base: &TrainingConfig) -> Result<TrainingConfig> {
        let root = self
            .root
            .as_deref()
            .map(|r| crate::cli::path_text("--root", r))
            .transpose()?;
        let pretrained = self
            .pretrained
            .as_deref()
            .map(|p| crate::cli::path_text("--pretrained", p))
            .transpose()?;
        let sets = crate::cli::set_pairs(&self.set)?;
        let edit = |c: &mut TrainingConfig| {
            crate::cli::apply_dataset(c, self.dataset, root.as_deref());
            if let Some(b) = self.backend {
                c.backend = b;
            }
            if let Some(e) = self.epochs {
                c.optim.epochs = e;
            }
            if let Some(s) = self.seed {
                c.seed = s;
            }
            if let Some(a) = self.attention {
                c.model.attention = a;
            }
            if let Some(critic) = self.critic {
                c.step.critic = critic == Switch::On;
            }
            if let Some(r) = self.reward {
                c.step.reward = r;
            }
            if let Some(l) = self.lambda {
                c.step.lambda = l;
            }
            if let Some(d) = &self.devices {
                c.devices.clone_from(d);
            }
            if let Some(h) = &self.hosts {
                c.hosts.clone_from(h);
            }
            if let Some(p) = &pretrained {
                c.model.pretrained = Some(p.clone());
            }
        };
        Ok(base.edited(self.config.as_deref(), edit, &sets)?)
    }
}

impl TrainArgs {
    /// Runs `cargo xtask train`: a run stopped by Ctrl-C (after saving) is
    /// [`crate::cli::Interrupted`].
    pub fn run(self) -> Result<()> {
        match train(&self)? {
            RunOutcome::Interrupted { .. } => Err(crate::cli::Interrupted.into()),
            RunOutcome::Finished { .. } => Ok(()),
        }
    }
}

/// Runs the training; returns its outcome.
fn train(args: &TrainArgs) -> Result<RunOutcome> {
    if let (Some(run), Some(root)) = (&args.resume, &args.root) {
        // The folder given must be there: it is where the run's data moved to (issue 42,
        // C17: the message said the run "was trained on" the folder just typed).
        if !root.exists() {
            anyhow::bail!(
                "--root {}: no such folder (--resume {} reads its dataset from there)",
                root.display(),
                run.display()
            );
        }
    }
    let (config, run_dir, start) = match &args.resume {
        Some(dir) => {
            let saved = TrainingConfig::load_json(&RunDir::new(dir).config())
                .with_context(|| format!("--resume {}: not a run folder", dir.display()))?;
            let config = args.configuration(&saved)?;
            let start = match (args.restart, args.from) {
                (true, _) => Start::Restart,
                (false, Checkpoint::Best) => Start::FromBest,
                (false, Checkpoint::Last) => Start::Resume,
            };
            (config, dir.clone(), start)
        }
        None => {
            let config = args.configuration(&TrainingConfig::profile(args.profile))?;
            if let Some(name) = &args.name {
                check_run_name(name)?;
            }
            let name = args.name.clone().unwrap_or_else(|| {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                format!(
                    "{}-{}-seed{}-{secs}",
                    config.profile, config.model.attention, config.seed
                )
            });
            (config, args.runs.join(name), Start::New)
        }
    };
    println!("run folder: {}", run_dir.display());
    let outcome = train_on_configured_devices(&config, &run_dir, start, !args.no_progress)?;
    match &outcome {
        RunOutcome::Finished {
            last,
            best,
            iterations,
        } => {
            println!(
                "finished {} epochs ({iterations} iterations); run folder: {}",
                config.optim.epochs,
                run_dir.display()
            );
            println!(
                "best/: epoch {}, mAP {:.2}% (selected on the test split: optimistic, not a result)",
                best.1,
                100.0 * best.0,
            );
            println!(
                "final evaluation, {}/last (flip {}):",
                run_dir.display(),
                if config.eval.flip { "on" } else { "off" }
            );
            println!("{}", score_line("plain", &last.plain));
            if let Some(r) = &last.reranked {
                println!("{}", score_line("re-ranked", r));
            }
            let options = scal_report::ReportOptions::on(crate::backend::device(Backend::Flex)?);
            match scal_report::build_report(&run_dir, &options) {
                Ok(index) => println!("report: {}", index.display()),
                Err(e) => eprintln!(
                    "warning: the report could not be built ({e}); try `cargo xtask report {}`",
                    run_dir.display()
                ),
            }
        }
        RunOutcome::Interrupted { iterations } => {
            println!(
                "stopped after {iterations} iterations; continue with: cargo xtask train --resume {}",
                run_dir.display()
            );
        }
    }
    Ok(outcome)
}

/// A run name is one folder name under --runs ([`RunDir::is_valid_name`]).
pub fn check_run_name(name: &str) -> Result<()> {
    if !RunDir::is_valid_name(name) {
        anyhow::bail!(
            "--name {name:?}: a run name is one folder name under --runs (no `/`, `..`, absolute path, newline or tab)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_one_folder_name() {
        for good in ["mine", "quick-channel-seed0-1795812345", "a.b"] {
            check_run_name(good).unwrap();
        }
        for bad in ["", ".", "..", "../../x", "/abs/path", "a/b", "a\\b", "x/.."] {
            assert!(check_run_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
