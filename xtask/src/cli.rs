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

/// A flag's parser for a value out of a list of names: `--help` lists `names` (the
/// canonical ones) and the value is read by `parse` (which may take aliases or another
/// case), so that a flag is typed from the command line on, never a string parsed later.
#[derive(Clone)]
pub struct Named<T> {
    names: &'static [&'static str],
    parse: fn(&str) -> Result<T, String>,
}

impl<T> std::fmt::Debug for Named<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Named").field("names", &self.names).finish()
    }
}

impl<T> Named<T> {
    /// A parser of `names`, read by `parse`.
    pub const fn new(names: &'static [&'static str], parse: fn(&str) -> Result<T, String>) -> Self {
        Named { names, parse }
    }
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Named<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        let text = value.to_string_lossy();
        (self.parse)(&text).map_err(|_| {
            let mut err = clap::Error::new(ErrorKind::InvalidValue).with_cmd(cmd);
            let flag = arg.map(ToString::to_string).unwrap_or_default();
            err.insert(ContextKind::InvalidArg, ContextValue::String(flag));
            err.insert(
                ContextKind::InvalidValue,
                ContextValue::String(text.into_owned()),
            );
            let names = self.names.iter().map(ToString::to_string).collect();
            err.insert(ContextKind::ValidValue, ContextValue::Strings(names));
            err
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            self.names
                .iter()
                .map(|n| clap::builder::PossibleValue::new(*n)),
        ))
    }
}

/// A value of a type that serde names (`"channel"`, `"planted-noisy"`), from its name.
fn from_serde_name<T: serde::de::DeserializeOwned>(name: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|e| e.to_string())
}

/// `--profile`: quick or paper.
pub fn profile_parser() -> Named<scal_run::config::Profile> {
    Named::new(&["quick", "paper"], |s| {
        s.parse().map_err(|e| format!("{e}"))
    })
}

/// `--backend` of training: flex, wgpu, cuda or remote.
pub fn backend_parser() -> Named<scal_run::Backend> {
    Named::new(&["flex", "wgpu", "cuda", "remote"], |s| {
        s.parse().map_err(|e| format!("{e}"))
    })
}

/// `--attention`: none, spatial or channel.
pub fn attention_parser() -> Named<scal_model::AttentionKind> {
    Named::new(&["none", "spatial", "channel"], |s| s.parse())
}

/// `--reward`: the method's rewards and the positive controls of the critic loop.
pub fn reward_parser() -> Named<scal_rewards::RewardKind> {
    Named::new(
        &[
            "rc",
            "ra",
            "both",
            "planted",
            "planted-noisy",
            "planted-per-identity",
        ],
        from_serde_name,
    )
}

/// `--dataset`: a reader's name (with its aliases: `market-1501`, `duke`, …) or a
/// synthetic dataset.
pub fn dataset_parser() -> Named<DatasetSpec> {
    Named::new(
        &[
            "market1501",
            "dukemtmc",
            "cuhk03-labeled",
            "cuhk03-detected",
            "msmt17",
            "custom",
            "synth",
            "synth-hard",
        ],
        |s| s.parse().map_err(|e| format!("{e}")),
    )
}

/// A path flag's value as the text a configuration saves (`config.json` is UTF-8).
pub fn path_text(flag: &str, path: &Path) -> Result<String> {
    path.to_str().map(str::to_string).with_context(|| {
        format!(
            "{flag} {}: the path is not valid UTF-8, which the run's config.json cannot record; rename the folder",
            path.display()
        )
    })
}

/// `--arch`'s parser: resnet18, resnet34, resnet50 or resnet101.
pub fn parse_arch(s: &str) -> Result<ResNetArch, String> {
    s.parse()
        .map_err(|e: scal_backbone::UnknownArch| e.to_string())
}

/// A temporary file in `path`'s folder (`.scal-partial-XXXXXX.tmp`), to be renamed onto
/// `path` once complete. Call it (and drop the file) before any work so that an unwritable
/// destination fails at once, then again once the output is ready: a process killed during
/// the work leaves no staging file in the user's folder (issue 42, F5).
pub fn temporary_beside(path: &Path, flag: &str) -> Result<scal_fs::StagedFile> {
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
    scal_fs::StagedFile::beside(path, ".scal-partial-", ".tmp")
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

/// Refuses to let a folder output (written whole: staged, then swapped in) replace `path`
/// unless `path` is absent, an empty folder, or a folder holding only files that `ours`
/// accepts by name (files this command writes): a user's files there would be lost, and a
/// link or a file at that place would be replaced. Returns `path`'s parent folder and name.
pub fn check_folder_replaceable(
    path: &Path,
    flag: &str,
    what: &str,
    ours: impl Fn(&str) -> bool,
) -> Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n != "..")
        .with_context(|| format!("{flag} {}: name a folder", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok((parent, name));
    };
    if !meta.is_dir() {
        bail!(
            "{flag} {}: exists and is not a folder (a file, a device or a link); the output is a folder swapped into place and would replace it: give another name",
            path.display()
        );
    }
    let entries = std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", path.display()))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if !is_file || !ours(&file_name) {
            bail!(
                "{flag} {} holds {}, which is not one of {what}; the folder is replaced as a whole, so name a new or empty folder",
                path.display(),
                entry.path().display()
            );
        }
    }
    Ok((parent, name))
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

/// What `--dataset NAME` and `--root DIR` (as text, [`path_text`]) change in a
/// configuration. A synthetic name (`synth`, `synth-hard`) reads the Market layout written
/// by its generator, at DIR or its default folder, generated there when absent; any other
/// dataset named on the command line is read, never generated in its place.
pub fn apply_dataset(
    config: &mut TrainingConfig,
    dataset: Option<DatasetSpec>,
    root: Option<&str>,
) {
    let data = &mut config.data;
    match dataset.and_then(DatasetSpec::synth_preset) {
        Some(preset) => {
            data.dataset = DatasetSpec::Synthetic(preset).reader();
            data.synth_preset = preset;
            data.root = root.map_or_else(
                || synth_folder(preset).to_string_lossy().into_owned(),
                str::to_string,
            );
            data.synthesize_if_missing = true;
        }
        None => {
            if root.is_some() || dataset.is_some() {
                data.synthesize_if_missing = false;
            }
            if let Some(d) = dataset {
                data.dataset = d.reader();
            }
            if let Some(r) = root {
                data.root = r.to_string();
            }
        }
    }
}

/// `--set FIELD=VALUE` flags as (field, value) pairs; the value is read later by the field's
/// own type ([`TrainingConfig::edited`]).
pub fn set_pairs(sets: &[String]) -> Result<Vec<(String, String)>> {
    sets.iter()
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("--set {s}: expected FIELD=VALUE"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
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

/// The flags `critic-data` and `critic-grad` share: which run, which checkpoint, where its
/// dataset is now, and the backend.
#[derive(Debug, clap::Args)]
pub struct RunFlags {
    /// The run folder (runs/NAME) of a run with attention, or one of its checkpoints
    /// (runs/NAME/last).
    pub run: PathBuf,
    /// Checkpoint: last or best [default: last, or the checkpoint folder given].
    #[arg(long, value_parser = checkpoint_parser())]
    pub checkpoint: Option<Checkpoint>,
    /// The dataset's folder when it moved since the run trained (its training split is
    /// checked against the one the run recorded).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Compute backend among those compiled in: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: crate::backend::Backend,
}

impl RunFlags {
    /// The run folder and the checkpoint: `RUN/last` names both.
    pub fn run_and_checkpoint(&self) -> (PathBuf, Checkpoint) {
        let named = self
            .run
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<Checkpoint>().ok());
        match (named, scal_run::RunDir::of_checkpoint(&self.run)) {
            (Some(found), Some(run)) => {
                (run.path().to_path_buf(), self.checkpoint.unwrap_or(found))
            }
            _ => (
                self.run.clone(),
                self.checkpoint.unwrap_or(Checkpoint::Last),
            ),
        }
    }
}

/// Reads the run's configuration, its training split (where it is now, checked against the
/// one the checkpoint recorded) and its checkpoint, for `critic-data` and `critic-grad`
/// (`command`, for messages).
pub fn run_on_training_data(flags: &RunFlags, command: &str) -> Result<RunOnTrainingData> {
    let (run, checkpoint) = flags.run_and_checkpoint();
    if !scal_run::RunDir::new(&run).config().is_file() {
        bail!(
            "{} is not a run folder (no config.json): give runs/NAME, or one of its checkpoints runs/NAME/last",
            run.display()
        );
    }
    let (config, dataset) = match scal_train::dataset::trained_run_data(
        &run,
        checkpoint,
        flags.root.as_deref(),
    ) {
        Ok(found) => found,
        Err(scal_run::TrainError::DatasetMoved { run, root }) => bail!(
            "{} was trained on the dataset in {}, which does not exist now; if it moved, name its new place: cargo xtask {command} {} --root NEW_FOLDER",
            run.display(),
            root.display(),
            run.display()
        ),
        Err(e) => {
            return Err(anyhow::Error::from(e).context(format!(
                "{command} measures {} on the data it trained on",
                run.display()
            )));
        }
    };
    if !config.step.critic && config.model.attention != scal_model::AttentionKind::None {
        eprintln!(
            "note: {} was trained without its critics (step.critic = false): they hold their initial weights, so this measures untrained critics",
            run.display()
        );
    }
    let loader = scal_data::TrainLoader::new(
        dataset.train.clone(),
        config.data.transform(),
        config.data.loader(config.seed),
    )?;
    let device = crate::backend::device(flags.backend)?.autodiff();
    let folder = scal_run::RunDir::new(&run).checkpoint(checkpoint);
    let (model, _) = load_model_folder(&folder, &device)?;
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

    fn applied(dataset: Option<&str>, root: Option<&str>) -> TrainingConfig {
        let mut config = TrainingConfig::new();
        apply_dataset(&mut config, dataset.map(|d| d.parse().unwrap()), root);
        config
    }

    #[test]
    fn synthetic_names_generate_their_preset_where_asked() {
        let c = applied(Some("synth-hard"), None);
        assert_eq!(c.data.dataset, scal_data::DatasetName::Market1501);
        assert_eq!(c.data.synth_preset, SynthPreset::HardV1);
        assert_eq!(c.data.root, "datasets/synth-hard");
        assert!(c.data.synthesize_if_missing);
        let c = applied(Some("synth"), Some("elsewhere"));
        assert_eq!(c.data.synth_preset, SynthPreset::Easy);
        assert_eq!(c.data.root, "elsewhere");
    }

    #[test]
    fn real_datasets_are_read_never_generated() {
        let mut quick = TrainingConfig::new();
        quick.data.synthesize_if_missing = true;
        let mut c = quick.clone();
        apply_dataset(&mut c, Some("dukemtmc".parse().unwrap()), Some("d"));
        assert_eq!(c.data.dataset, scal_data::DatasetName::Dukemtmc);
        assert_eq!(c.data.root, "d");
        assert!(!c.data.synthesize_if_missing);
        assert_eq!(c.data.synth_preset, quick.data.synth_preset);
        let mut untouched = quick.clone();
        apply_dataset(&mut untouched, None, None);
        assert_eq!(untouched, quick);
    }

    #[test]
    fn a_root_is_a_path_whatever_it_looks_like() {
        for root in ["2024", "null", "true", "1e5", "[1]", "\"q\""] {
            assert_eq!(applied(None, Some(root)).data.root, root);
        }
    }
}
