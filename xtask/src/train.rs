//! `cargo xtask train`: the main job.

use std::path::PathBuf;

use anyhow::{Context, Result};
use scal_run::config::Profile;
use scal_run::{Backend, Checkpoint, RunDir, TrainingConfig};
use scal_train::{RunOutcome, Start};

use crate::cli::{install_ctrl_c, train_on_configured_devices};
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
    #[arg(long, default_value = "quick")]
    pub profile: String,
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
    #[arg(long)]
    pub backend: Option<String>,
    /// With --backend remote: the servers, ws://HOST:PORT (or HOST:PORT), comma-separated;
    /// --devices indexes all their devices in this order. Token: SCAL_REMOTE_TOKEN.
    #[arg(long, value_delimiter = ',', value_name = "ws://HOST:PORT,...")]
    pub hosts: Option<Vec<String>>,
    /// Dataset: market1501, dukemtmc, cuhk03-labeled, cuhk03-detected, msmt17, custom (read
    /// from --root), or synth / synth-hard (generated in datasets/NAME, or --root, when absent).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Dataset folder (read as it is: a synthetic dataset is only generated for synth,
    /// synth-hard and the quick profile's own folder, datasets/synth).
    #[arg(long)]
    pub root: Option<String>,
    /// Training epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of initialisation, sampling and augmentation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Attention modules: none, spatial or channel.
    #[arg(long)]
    pub attention: Option<String>,
    /// Train the critics and the agents through them.
    #[arg(long, value_enum)]
    pub critic: Option<Switch>,
    /// Reward: rc, ra or both (the paper's); planted or planted-noisy (the positive control of
    /// the critic loop, `step.planted.*`).
    #[arg(long)]
    pub reward: Option<String>,
    /// Data-parallel training on these devices of the backend (indices as `cargo xtask
    /// devices` lists them), e.g. --devices 0,1,2,3; data.p must be a multiple of their number.
    #[arg(long, value_delimiter = ',', value_name = "I,J,...")]
    pub devices: Option<Vec<usize>>,
    /// Weight of the critic objective for the agents.
    #[arg(long)]
    pub lambda: Option<f64>,
    /// torchvision weights for the backbone.
    #[arg(long)]
    pub pretrained: Option<String>,
    /// Any field: --set optim.lr=0.001 --set data.p=8 (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl TrainArgs {
    /// The `field=value` overrides of the named flags and `--set`.
    pub fn overrides(&self) -> Result<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push((k.to_string(), v));
            }
        };
        for (k, v) in crate::cli::dataset_overrides(self.dataset.as_deref(), self.root.as_deref()) {
            push(&k, Some(v));
        }
        push("backend", self.backend.clone());
        push("optim.epochs", self.epochs.map(|e| e.to_string()));
        push("seed", self.seed.map(|s| s.to_string()));
        push("model.attention", self.attention.clone());
        push(
            "step.critic",
            self.critic.map(|c| (c == Switch::On).to_string()),
        );
        push("step.reward", self.reward.clone());
        push("step.lambda", self.lambda.map(|l| l.to_string()));
        push(
            "devices",
            self.devices
                .as_ref()
                .map(|d| serde_json::to_string(d).expect("indices serialise")),
        );
        push(
            "hosts",
            self.hosts
                .as_ref()
                .map(|h| serde_json::to_string(h).expect("hosts serialise")),
        );
        push("model.pretrained", self.pretrained.clone());
        for s in &self.set {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("--set {s}: expected FIELD=VALUE"))?;
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
        Ok(out)
    }
}

/// Runs the training; returns the run folder and its outcome.
pub fn run(args: &TrainArgs) -> Result<(PathBuf, RunOutcome)> {
    let overrides = args.overrides()?;
    let (config, run_dir, start) = match &args.resume {
        Some(dir) => {
            let saved = TrainingConfig::load_json(&RunDir::new(dir).config())
                .with_context(|| format!("--resume {}: not a run folder", dir.display()))?;
            let config = saved.overlaid(args.config.as_deref(), &overrides)?;
            let start = match (args.restart, args.from) {
                (true, _) => Start::Restart,
                (false, Checkpoint::Best) => Start::FromBest,
                (false, Checkpoint::Last) => Start::Resume,
            };
            (config, dir.clone(), start)
        }
        None => {
            let profile: Profile = args.profile.parse()?;
            let config = TrainingConfig::resolve(profile, args.config.as_deref(), &overrides)?;
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
    install_ctrl_c();
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
    Ok((run_dir, outcome))
}

/// A run name is one folder name under --runs ([`RunDir::is_valid_name`]).
pub fn check_run_name(name: &str) -> Result<()> {
    if !RunDir::is_valid_name(name) {
        anyhow::bail!(
            "--name {name:?}: a run name is one folder name under --runs (no `/`, `..` or absolute path)"
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
