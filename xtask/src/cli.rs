//! What several commands share: flag types, the progress bar of embedding, the staging file
//! of an output, the dataset flags, Ctrl-C and the training run on the configured devices,
//! and loading a model folder with its warning. Command modules import this module and
//! [`crate::backend`], never each other.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use scal_backbone::{CheckpointSource, ResNetArch};
use scal_data::DatasetSpec;
use scal_data::synth::SynthPreset;
use scal_run::{Checkpoint, TrainingConfig};
use scal_train::{RunOutcome, Start, train};
use tempfile::NamedTempFile;

use crate::progress::Progress;

/// The parser of a `--checkpoint`/`--from` flag: `last` or `best` (the run folder's names,
/// [`scal_run::Checkpoint`]), listed in the help.
pub fn checkpoint_parser() -> impl clap::builder::TypedValueParser<Value = Checkpoint> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Checkpoint::ALL.map(Checkpoint::as_str)).map(|name| {
        name.parse::<Checkpoint>()
            .expect("one of the possible values")
    })
}

/// `--format`'s parser: the toolkit a `--weights` file comes from, by the library's names
/// ([`CheckpointSource`]), each listed in the help with what it reads.
pub fn weights_format_parser() -> impl clap::builder::TypedValueParser<Value = CheckpointSource> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
    let values =
        CheckpointSource::ALL.map(|s| PossibleValue::new(s.as_str()).help(s.description()));
    PossibleValuesParser::new(values).map(|name| {
        name.parse::<CheckpointSource>()
            .expect("one of the possible values")
    })
}

/// `--arch`'s parser: resnet18, resnet34, resnet50 or resnet101.
pub fn parse_arch(s: &str) -> Result<ResNetArch, String> {
    s.parse()
        .map_err(|e: scal_backbone::UnknownArch| e.to_string())
}

/// A temporary file in `path`'s folder, to be renamed onto `path` once complete. Made before
/// any work so that an unwritable destination fails at once.
pub fn temporary_beside(path: &Path, flag: &str) -> Result<NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.is_dir() {
        bail!("{flag} {} is a folder; give a file name", path.display());
    }
    if !dir.is_dir() {
        bail!(
            "cannot write {flag} {}: folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    scal_fs::staging_builder(".scal-extract-", false)
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write {flag} {}", path.display()))
}

/// Refuses to let an output replace `path` unless `path` is absent, empty, or a file this
/// command wrote (`ours` reads its first bytes): outputs are renamed into place, so a device
/// (`/dev/null`), a link, a checkpoint's weights or a photo there would be lost (issue 29,
/// B1, B2).
pub fn check_replaceable(
    path: &Path,
    flag: &str,
    what: &str,
    ours: impl Fn(&[u8]) -> bool,
) -> Result<()> {
    use std::io::Read as _;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.is_file() {
        bail!(
            "{flag} {}: exists and is not a regular file (a device, a folder or a link); the {what} is renamed into place and would replace it: give another name",
            path.display()
        );
    }
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .with_context(|| format!("{flag} {}: reading the file there", path.display()))?;
    if !head.is_empty() && !ours(&head) {
        bail!(
            "{flag} {}: exists and is not a {what} this command wrote; it would be replaced: give another name, or remove it first",
            path.display()
        );
    }
    Ok(())
}

/// The bar of `extract` and `evaluate` while images are embedded.
pub fn progress_bar(n: usize) -> ProgressBar {
    ProgressBar::new(n as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} extracting [{bar:30}] {pos}/{len} images, {per_sec}, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    )
}

/// The default folder of a synthetic preset: `datasets/synth`, `datasets/synth-hard`.
pub fn synth_folder(preset: SynthPreset) -> PathBuf {
    DatasetSpec::Synthetic(preset).default_root()
}

/// The configuration fields that `--dataset NAME` and `--root DIR` set. A synthetic name
/// (`synth`, `synth-hard`) reads the Market layout written by its generator, at DIR or its
/// default folder, generated there when absent; any other dataset named on the command line
/// is read, never generated in its place.
pub fn dataset_overrides(dataset: Option<&str>, root: Option<&str>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |k: &str, v: String| out.push((k.to_string(), v));
    let synthetic = dataset
        .and_then(|name| name.parse::<DatasetSpec>().ok())
        .and_then(DatasetSpec::synth_preset);
    match synthetic {
        Some(preset) => {
            push(
                "data.dataset",
                DatasetSpec::Synthetic(preset).reader().as_str().into(),
            );
            push("data.synth_preset", preset.as_str().into());
            let folder = synth_folder(preset).to_string_lossy().into_owned();
            push("data.root", root.map_or(folder, str::to_string));
            push("data.synthesize_if_missing", "true".into());
        }
        None => {
            if root.is_some() || dataset.is_some() {
                push("data.synthesize_if_missing", "false".into());
            }
            if let Some(d) = dataset {
                push("data.dataset", d.to_string());
            }
            if let Some(r) = root {
                push("data.root", r.to_string());
            }
        }
    }
    out
}

/// Set by Ctrl-C: finish the iteration, save, exit.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// A run stopped by Ctrl-C after saving its last checkpoint (what to do next was printed):
/// the command exits with 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Installs the Ctrl-C handler: the first request finishes the iteration, saves and exits;
/// a second one exits at once.
pub fn install_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping after this iteration (checkpoint will be saved); Ctrl-C again to quit now"
        );
    });
}

/// Trains the run on the devices its configuration names (backend, hosts, device indices),
/// showing progress on the terminal (a bar with `bar`) and stopping on Ctrl-C.
pub fn train_on_configured_devices(
    config: &TrainingConfig,
    run_dir: &std::path::Path,
    start: Start,
    bar: bool,
) -> Result<RunOutcome> {
    let devices = crate::backend::devices(config.backend, &config.hosts, &config.devices)?;
    let mut progress = Progress::new(config.optim.epochs, bar, &STOP);
    // A relative dataset folder is resolved here, once: config.json names it absolutely, so
    // that the run resumes from any working folder.
    let config = config
        .with_absolute_root()
        .with_context(|| format!("data.root {}: cannot resolve it", config.data.root))?;
    Ok(train(&config, run_dir, start, &devices, &mut progress)?)
}

/// Loads a model folder (a run's `best/` or `last/`) for a command
/// ([`scal_infer::load_model_folder`]: its checksums, configuration and input size); a folder
/// without `checksums.sha256` (written before checksums existed, or a copy that lost it)
/// loads with a warning that it was not verified.
pub fn load_model_folder(
    dir: &std::path::Path,
    device: &burn::tensor::Device,
) -> anyhow::Result<(scal_model::ScalModel, scal_model::ScalConfig)> {
    let loaded = scal_infer::load_model_folder(dir, device)?;
    if !loaded.verified {
        eprintln!(
            "warning: {} has no {}: its files were not verified (a checkpoint written before checksums existed, or a copy that lost the file)",
            dir.display(),
            scal_model::CHECKSUMS_FILE
        );
    }
    Ok((loaded.model, loaded.config))
}

/// A trained run read back to look at its critics: its configuration, a loader that draws
/// its training batches as its training did (its seed, its augmentation), the model of its
/// checkpoint `checkpoint` and the autodiff device of `backend` it lives on.
pub struct RunOnTrainingData {
    /// The run's `config.json`.
    pub config: TrainingConfig,
    /// Its training batches.
    pub loader: scal_data::TrainLoader,
    /// The checkpoint's model.
    pub model: scal_model::ScalModel,
    /// Where the model lives (autodiff).
    pub device: burn::tensor::Device,
}

impl std::fmt::Debug for RunOnTrainingData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOnTrainingData")
            .field("profile", &self.config.profile)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// Reads run `run`'s configuration, training split and checkpoint `checkpoint` (for
/// `critic-data` and `critic-grad`).
pub fn run_on_training_data(
    run: &Path,
    checkpoint: &str,
    backend: crate::backend::Backend,
) -> Result<RunOnTrainingData> {
    let dir = scal_run::RunDir::new(run);
    let config = TrainingConfig::load_json(&dir.config())
        .with_context(|| format!("{} is not a run folder", run.display()))?;
    let dataset = scal_train::run::load_dataset(&config, &mut ())?;
    let loader = scal_data::TrainLoader::new(
        dataset.train.clone(),
        config.data.transform(),
        config.data.loader(config.seed),
    )?;
    let device = crate::backend::device(backend)?.autodiff();
    let (model, _) = load_model_folder(&dir.path().join(checkpoint), &device)?;
    Ok(RunOnTrainingData {
        config,
        loader,
        model,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(o: &'a [(String, String)], k: &str) -> Option<&'a str> {
        o.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn synthetic_names_generate_their_preset_where_asked() {
        let o = dataset_overrides(Some("synth-hard"), None);
        assert_eq!(get(&o, "data.dataset"), Some("market1501"));
        assert_eq!(get(&o, "data.synth_preset"), Some("hard-v1"));
        assert_eq!(get(&o, "data.root"), Some("datasets/synth-hard"));
        assert_eq!(get(&o, "data.synthesize_if_missing"), Some("true"));
        let o = dataset_overrides(Some("synth"), Some("elsewhere"));
        assert_eq!(get(&o, "data.synth_preset"), Some("easy"));
        assert_eq!(get(&o, "data.root"), Some("elsewhere"));
    }

    #[test]
    fn real_datasets_are_read_never_generated() {
        let o = dataset_overrides(Some("dukemtmc"), Some("d"));
        assert_eq!(get(&o, "data.dataset"), Some("dukemtmc"));
        assert_eq!(get(&o, "data.root"), Some("d"));
        assert_eq!(get(&o, "data.synthesize_if_missing"), Some("false"));
        assert_eq!(get(&o, "data.synth_preset"), None);
        assert!(dataset_overrides(None, None).is_empty());
    }
}
