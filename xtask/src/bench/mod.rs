//! `cargo xtask bench`: the benchmark set on one backend (backbone inference and training
//! step, SCAL step, evaluation and re-ranking at Market-1501 size, data pipeline), one row per
//! measure.
//!
//! This module holds the command and the set's vocabulary, which both kinds of measure use:
//! the measures ([`Measure`]), the options ([`BenchOptions`], [`BenchProfile`]), a result
//! row ([`BenchRow`]), the memory readings, and the model a model measure builds
//! (`network`, `optimizer`, `TrainStep`). [`measures`] times the measures of the
//! default set, [`ops`] (flex only) the operation-level profile; neither uses the other.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use scal_data::synth::SynthConfig;
use scal_model::objective::StepConfig;
use scal_model::{AttentionKind, ScalConfig, ScalModel};
use scal_run::config::Profile;
use scal_run::{Backend, TrainingConfig};
use scal_train::scal_step;

pub mod measures;
#[cfg(feature = "flex")]
pub mod ops;

/// Runs the benchmark set and prints one row per measure.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Compute backend among those compiled in: flex, wgpu, cuda or remote.
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// With --backend remote: the `cargo xtask serve` server to measure (its device 0).
    #[arg(long, value_delimiter = ',', value_name = "ws://HOST:PORT")]
    pub hosts: Vec<String>,
    /// Print one JSON object per measure (one per line) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Measures to run, comma-separated: backbone_inference, backbone_train_step,
    /// scal_train_step, evaluation, rerank, data_pipeline (default: these six), rerank_msmt17
    /// (re-ranking from features at MSMT17 size, 11,659 × 82,161: minutes and ~5 GB) and ops
    /// (the operation-level profile of the BN-neck step on flex, one row per operation).
    #[arg(long, value_delimiter = ',')]
    pub measures: Option<Vec<String>>,
    /// Training batch (P × 4; default 64 on a GPU, 16 on flex).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Inference batch (default 64 on a GPU, 16 on flex).
    #[arg(long)]
    pub inference_batch: Option<usize>,
    /// Timed iterations (default 10 on a GPU, 3 on flex).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Untimed warm-up iterations (default 3 on a GPU, 1 on flex).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Measure a training profile's model instead of ResNet-50: `quick` (the default
    /// `cargo xtask train`'s ResNet-18 of base width 32 on 128 × 64 images, for the
    /// synthetic dataset's 100 identities). The model measures and `ops` take the profile's
    /// network, input size, batch (P × K = 64; inference: its evaluation batch, 64), optimizer
    /// and losses, and their rows its parameter count (data_pipeline its input size);
    /// --batch and --inference-batch still set the batches.
    #[arg(long, value_enum, conflicts_with_all = ["height", "width"])]
    pub profile: Option<BenchProfile>,
    /// Input height.
    #[arg(long, default_value_t = 256)]
    pub height: usize,
    /// Input width.
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// rerank_msmt17: time this features folder instead (query.npy, gallery.npy, as
    /// `evaluate --features` reads it, e.g. from scripts/msmt17-size-features.py).
    #[arg(long, value_name = "DIR")]
    pub rerank_features: Option<PathBuf>,
    /// rerank_msmt17: the dimension of the generated MSMT17-sized features.
    #[arg(long, default_value_t = 2048, value_name = "D")]
    pub rerank_dim: usize,
    /// Also append the JSON rows to this file.
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: Option<PathBuf>,
}

fn options(args: &BenchArgs) -> Result<BenchOptions> {
    let mut o = BenchOptions::defaults_for(args.backend);
    if let Some(profile) = args.profile {
        o = o.with_profile(profile);
    }
    if let Some(list) = &args.measures {
        o.measures = list
            .iter()
            .map(|m| m.trim().parse::<Measure>())
            .collect::<Result<_, _>>()
            .context("--measures")?;
    }
    if let Some(b) = args.batch {
        o.train_batch = b;
    }
    if let Some(b) = args.inference_batch {
        o.inference_batch = b;
    }
    if let Some(n) = args.iterations {
        o.iterations = n;
    }
    if let Some(n) = args.warmup {
        o.warmup = n;
    }
    if args.height == 0 || args.width == 0 {
        bail!("--height and --width must be positive");
    }
    // With a profile, its input size (clap refuses --height and --width beside --profile).
    if args.profile.is_none() {
        o.height = args.height;
        o.width = args.width;
    }
    o.hosts = args.hosts.clone();
    if args.rerank_dim == 0 {
        bail!("--rerank-dim must be positive");
    }
    o.rerank_features = args.rerank_features.clone();
    o.rerank_dim = args.rerank_dim;
    Ok(o)
}

fn table_line(r: &BenchRow) -> String {
    if let (Some(op), Some(count), Some(step_ms)) = (&r.op, r.count, r.step_ms) {
        let share = r.explained.map_or(String::new(), |e| {
            format!("  (operation rows: {:.0} % of the step)", e * 100.0)
        });
        return format!(
            "{:<20} {:<18} {:>9.2} ms × {:<3} = {:>8.1} ms  {}{share}",
            r.measure,
            op,
            r.seconds_per_iteration * 1000.0,
            count,
            step_ms,
            r.input
        );
    }
    let mib = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    format!(
        "{:<20} {:<6} {:>6} {:>10.2} {:<9} {:>9.3} {:>9} {:>9}  {}",
        r.measure,
        r.backend,
        r.batch,
        r.throughput,
        r.unit,
        r.seconds_per_iteration,
        mib(r.peak_rss_mib),
        mib(r.device_memory_mib),
        r.device
    )
}

impl BenchArgs {
    /// Runs `cargo xtask bench`.
    pub fn run(self) -> Result<()> {
        bench(&self)
    }
}

/// Runs the benchmark set and prints its rows (and appends them to `--out`).
fn bench(args: &BenchArgs) -> Result<()> {
    let options = options(args)?;
    let mut out = match &args.out {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--out {}", path.display()))?,
        ),
        None => None,
    };
    if !args.json {
        println!(
            "{:<20} {:<6} {:>6} {:>10} {:<9} {:>9} {:>9} {:>9}  device",
            "measure", "back", "batch", "throughput", "unit", "s/iter", "RSS MiB", "dev MiB"
        );
    }
    let mut write_error = None;
    run_bench(args.backend, &options, |row| {
        let json = serde_json::to_string(row).expect("a row serialises");
        if args.json {
            println!("{json}");
        } else {
            println!("{}", table_line(row));
        }
        if let Some(file) = out.as_mut()
            && let Err(e) = writeln!(file, "{json}")
        {
            write_error.get_or_insert(e);
        }
    })?;
    if let (Some(e), Some(path)) = (write_error, &args.out) {
        bail!("--out {}: {e}", path.display());
    }
    Ok(())
}

/// One benchmark of the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// ResNet-50 pooled features, eval mode.
    BackboneInference,
    /// The BN-neck baseline training step (no attention).
    BackboneTrainStep,
    /// The SCAL training step (channel attention and critics).
    ScalTrainStep,
    /// Features → distances → metrics at Market-1501 size (CPU).
    Evaluation,
    /// k-reciprocal re-ranking at Market-1501 size (CPU).
    Rerank,
    /// Re-ranking from the features at MSMT17 size (CPU; not in the default set).
    RerankMsmt17,
    /// Decoding and augmentation (CPU).
    DataPipeline,
    /// The operation-level profile of the BN-neck step (flex only; not in the default set).
    Ops,
}

impl Measure {
    /// The measures `cargo xtask bench` runs without `--measures`, in that order.
    pub const DEFAULT: [Measure; 6] = [
        Measure::BackboneInference,
        Measure::BackboneTrainStep,
        Measure::ScalTrainStep,
        Measure::Evaluation,
        Measure::Rerank,
        Measure::DataPipeline,
    ];

    /// Every measure `--measures` accepts: the default set, `rerank_msmt17` and the `ops`
    /// profile.
    pub const ALL: [Measure; 8] = [
        Measure::BackboneInference,
        Measure::BackboneTrainStep,
        Measure::ScalTrainStep,
        Measure::Evaluation,
        Measure::Rerank,
        Measure::RerankMsmt17,
        Measure::DataPipeline,
        Measure::Ops,
    ];

    /// The measure's name on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Measure::BackboneInference => "backbone_inference",
            Measure::BackboneTrainStep => "backbone_train_step",
            Measure::ScalTrainStep => "scal_train_step",
            Measure::Evaluation => "evaluation",
            Measure::Rerank => "rerank",
            Measure::RerankMsmt17 => "rerank_msmt17",
            Measure::DataPipeline => "data_pipeline",
            Measure::Ops => "ops",
        }
    }

    /// Whether the measure runs on the chosen backend (otherwise on the CPU, without Burn).
    pub fn uses_backend(self) -> bool {
        matches!(
            self,
            Measure::BackboneInference
                | Measure::BackboneTrainStep
                | Measure::ScalTrainStep
                | Measure::Ops
        )
    }
}

impl std::str::FromStr for Measure {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Measure::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                anyhow!(
                    "unknown measure `{s}`: expected one of {}",
                    Measure::ALL.map(Measure::name).join(", ")
                )
            })
    }
}

/// A training profile whose model the model measures build instead of ResNet-50.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchProfile {
    /// The quick profile, the default `cargo xtask train`: ResNet-18 of base width 32 on
    /// 128 × 64 images, batches of 16 × 4, the synthetic dataset's 100 identities.
    Quick,
}

impl BenchProfile {
    /// The profile's training configuration (scal-run's: the one source of its values).
    pub fn config(self) -> TrainingConfig {
        match self {
            BenchProfile::Quick => TrainingConfig::profile(Profile::Quick),
        }
    }

    /// Training identities of the profile's dataset: for `quick`, those of the synthetic
    /// dataset that the trainer generates when it is missing.
    pub fn classes(self) -> usize {
        match self {
            BenchProfile::Quick => SynthConfig::default().train_ids,
        }
    }
}

/// Sizes and repetitions.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Batch of the inference measure.
    pub inference_batch: usize,
    /// Batch of the training steps (a multiple of 4: P identities × K = 4 images).
    pub train_batch: usize,
    /// Input height and width.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Untimed iterations before timing.
    pub warmup: usize,
    /// Timed iterations.
    pub iterations: usize,
    /// Which measures to run.
    pub measures: Vec<Measure>,
    /// `Backend::Remote` only: the server measured (its device 0 is used).
    pub hosts: Vec<String>,
    /// The training profile whose model the model measures build (`None`: ResNet-50, last
    /// stride 1, 751 classes, Burn's default Adam at 3.5e-4).
    pub profile: Option<BenchProfile>,
    /// `rerank_msmt17`: a features folder (`query.npy`, `gallery.npy`) instead of the
    /// generated MSMT17-sized features.
    pub rerank_features: Option<PathBuf>,
    /// `rerank_msmt17`: the dimension of the generated features.
    pub rerank_dim: usize,
}

impl BenchOptions {
    /// Defaults for a backend: batch 64 (inference and training), 3 warm-up and 10 timed
    /// iterations on a GPU; batch 16, 1 + 3 iterations on the CPU.
    pub fn defaults_for(backend: Backend) -> BenchOptions {
        let gpu = backend != Backend::Flex;
        BenchOptions {
            inference_batch: if gpu { 64 } else { 16 },
            train_batch: if gpu { 64 } else { 16 },
            height: 256,
            width: 128,
            warmup: if gpu { 3 } else { 1 },
            iterations: if gpu { 10 } else { 3 },
            measures: Measure::DEFAULT.to_vec(),
            hosts: Vec::new(),
            profile: None,
            rerank_features: None,
            rerank_dim: 2048,
        }
    }

    /// These options for `profile`'s model: its input size, its P × K training batch and
    /// its evaluation batch as the inference batch.
    pub fn with_profile(mut self, profile: BenchProfile) -> BenchOptions {
        let c = profile.config();
        self.height = c.data.height;
        self.width = c.data.width;
        self.train_batch = c.data.p * c.data.k;
        self.inference_batch = c.eval.batch;
        self.profile = Some(profile);
        self
    }
}

/// One measure's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    /// The measure's name.
    pub measure: &'static str,
    /// `flex`, `wgpu` or `cuda`, or `cpu` for measures that do not use Burn.
    pub backend: String,
    /// The device as it names itself (the GPU and its shader compiler), or `cpu`.
    pub device: String,
    /// Items per iteration (images, or queries for the evaluation measures).
    pub batch: usize,
    /// Input size, e.g. `256x128`, or the evaluation's sizes.
    pub input: String,
    /// Items per second.
    pub throughput: f64,
    /// What the items are: `img/s` or `queries/s`.
    pub unit: &'static str,
    /// Mean seconds per iteration.
    pub seconds_per_iteration: f64,
    /// Timed iterations.
    pub iterations: usize,
    /// Peak resident set size of the process during the measure, MiB (Linux).
    pub peak_rss_mib: Option<f64>,
    /// Most memory reserved by the device's allocator after an iteration, MiB (GPU backends).
    pub device_memory_mib: Option<f64>,
    /// Seconds of the very first iteration of a model measure (the first warm-up one), which
    /// on a GPU holds kernel compilation and autotuning; `None` without a warm-up and for the
    /// CPU measures.
    pub first_iteration_seconds: Option<f64>,
    /// When the measure ran (UTC, RFC 3339).
    pub date: String,
    /// `ops` rows: the operation (`conv_weight_grad`, …, or `step` for the last row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// `ops` rows: how many times one training step runs the operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// `ops` rows: milliseconds of a training step spent in the operation (time × count);
    /// on the `step` row, the sum over all operation rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<f64>,
    /// The `ops` profile's `step` row: the sum of the operation rows over the step's time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explained: Option<f64>,
    /// With a profile, the model measures: the parameters of the model measured (every
    /// weight, the frozen shift of the BN neck included, no running statistics: PyTorch's
    /// count of the same model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<usize>,
}

/// Resets the peak resident set size of this process (Linux `clear_refs` 5).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size since the last reset, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub(crate) fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Runs the chosen measures on `backend`, calling `on_row` after each (for progress).
pub fn run_bench(
    backend: Backend,
    options: &BenchOptions,
    mut on_row: impl FnMut(&BenchRow),
) -> Result<Vec<BenchRow>> {
    if options.train_batch == 0 || !options.train_batch.is_multiple_of(4) {
        bail!(
            "--batch {}: the training batch must be a positive multiple of 4 (P identities × K = 4 images)",
            options.train_batch
        );
    }
    if options.inference_batch == 0 || options.iterations == 0 {
        bail!("--inference-batch and --iterations must be positive");
    }
    let needs_device = options.measures.iter().any(|m| m.uses_backend());
    let device = if needs_device {
        Some(crate::backend::device_on(backend, &options.hosts)?)
    } else {
        None
    };
    let mut rows = Vec::new();
    for &measure in &options.measures {
        reset_peak_rss();
        if measure == Measure::Ops {
            let device = device.as_ref().expect("device");
            rows.extend(ops_profile(backend, device, options, &mut on_row)?);
            continue;
        }
        let row = match measure {
            Measure::BackboneInference => {
                let device = device.as_ref().expect("device");
                measures::backbone_inference(backend, device, options)?
            }
            Measure::BackboneTrainStep | Measure::ScalTrainStep => {
                let device = device.as_ref().expect("device");
                measures::train_step(backend, device, options, measure)?
            }
            Measure::Evaluation | Measure::Rerank => measures::evaluation(options, measure)?,
            Measure::RerankMsmt17 => measures::rerank_msmt17(options)?,
            Measure::DataPipeline => measures::data_pipeline(options)?,
            Measure::Ops => unreachable!("handled above"),
        };
        if let Some(device) = &device {
            device.memory_cleanup();
        }
        on_row(&row);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(feature = "flex")]
fn ops_profile(
    backend: Backend,
    device: &Device,
    options: &BenchOptions,
    on_row: &mut dyn FnMut(&BenchRow),
) -> Result<Vec<BenchRow>> {
    ops::profile(backend, device, options, on_row)
}

#[cfg(not(feature = "flex"))]
fn ops_profile(
    _backend: Backend,
    _device: &Device,
    _options: &BenchOptions,
    _on_row: &mut dyn FnMut(&BenchRow),
) -> Result<Vec<BenchRow>> {
    bail!("--measures ops profiles Burn's CPU backend: build xtask with its `flex` feature")
}

/// The network the model measures build, with `attention`: the profile's for its
/// dataset's identities, or ResNet-50 (last stride 1) for Market-1501's 751; at the
/// options' input size.
pub(crate) fn network(o: &BenchOptions, attention: AttentionKind) -> ScalConfig {
    let network = match o.profile {
        None => ScalConfig::new(751),
        Some(p) => p.config().model.network(p.classes(), o.height, o.width),
    };
    network
        .with_attention(attention)
        .with_height(o.height)
        .with_width(o.width)
}

/// The optimizer of the training measures and its learning rate: the profile's (the
/// trainer's Adam, with its weight decays, epsilon and critics' group, at the profile's
/// base rate), or Burn's default Adam at 3.5e-4.
pub(crate) fn optimizer(o: &BenchOptions) -> (ModuleOptimizer, f64) {
    match o.profile {
        None => (AdamConfig::new().init(), 3.5e-4),
        Some(p) => {
            let config = p.config();
            (scal_train::optim::optimizer(&config.optim), config.optim.lr)
        }
    }
}

/// Counts a module's parameters, the batch norms' running statistics left out (Burn's
/// `num_params` counts them: a running state is visited as a float tensor), without
/// initialising lazy ones: every weight, trainable or not (the BN neck's frozen shift), as
/// PyTorch's `parameters()` has them.
#[derive(Default)]
struct ParameterCount {
    /// The fields entered, outermost first.
    path: Vec<String>,
    count: usize,
}

impl ModuleVisitor for ParameterCount {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let field = self.path.last().map(String::as_str);
        if !matches!(field, Some("running_mean" | "running_var")) {
            self.count += param.lazy_shape().num_elements();
        }
    }
}

/// The parameters of `module` as a row's `params` reports them ([`ParameterCount`]).
pub(crate) fn parameter_count<M: Module>(module: &M) -> usize {
    let mut counter = ParameterCount::default();
    module.visit(&mut counter);
    counter.count
}

/// One training step of a model measure, ready to run: the model, its optimizer, one random
/// P × 4 batch on the autodiff device and the step's losses (the profile's, or the defaults;
/// the critic on when the model has attention).
pub(crate) struct TrainStep {
    slot: Option<ScalModel>,
    optimizer: ModuleOptimizer,
    lr: f64,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    step: StepConfig,
}

impl TrainStep {
    /// The step of `network(o, attention)` on `device`'s autodiff twin, at `o.train_batch`.
    pub(crate) fn new(o: &BenchOptions, device: &Device, attention: AttentionKind) -> TrainStep {
        let autodiff = device.clone().autodiff();
        let batch = o.train_batch;
        let network = network(o, attention);
        let images = Tensor::<4>::random(
            [batch, 3, o.height, o.width],
            Distribution::Normal(0.0, 1.0),
            &autodiff,
        );
        let classes = network.num_classes;
        let labels: Vec<i64> = (0..batch).map(|i| (i / 4 * 7 % classes) as i64).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &autodiff);
        let (optimizer, lr) = optimizer(o);
        let step = o.profile.map_or_else(StepConfig::new, |p| {
            scal_train::records::step_config(&p.config().step)
        });
        TrainStep {
            slot: Some(network.init(&autodiff)),
            optimizer,
            lr,
            images,
            labels,
            step: step.with_critic(attention != AttentionKind::None),
        }
    }

    /// The model's parameters ([`parameter_count`]).
    pub(crate) fn params(&self) -> usize {
        parameter_count(self.slot.as_ref().expect("model"))
    }

    /// One step: the forward passes, the loss, one backward pass, one optimizer step.
    pub(crate) fn run(&mut self) {
        let model = self.slot.take().expect("model");
        let (model, _report) = scal_step(
            model,
            &mut self.optimizer,
            self.lr,
            self.images.clone(),
            self.labels.clone(),
            &self.step,
        );
        self.slot = Some(model);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_parse_by_name_and_unknown_ones_are_named() {
        for m in Measure::ALL {
            assert_eq!(m.name().parse::<Measure>().unwrap(), m);
        }
        let err = "scal_step".parse::<Measure>().unwrap_err().to_string();
        assert!(
            err.contains("`scal_step`") && err.contains("scal_train_step"),
            "{err}"
        );
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        let d = now_utc();
        assert_eq!(d.len(), 20, "{d}");
        assert!(
            d.starts_with("20") && d.ends_with('Z') && d.as_bytes()[10] == b'T',
            "{d}"
        );
    }

    #[test]
    fn a_batch_that_is_not_p_times_4_is_refused() {
        let mut o = BenchOptions::defaults_for(Backend::Flex);
        o.train_batch = 6;
        let err = run_bench(Backend::Flex, &o, |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("--batch 6"), "{err}");
    }

    /// `rerank_msmt17` on a features folder: one row naming the folder and its sizes; a
    /// folder whose widths disagree is an error naming it.
    #[test]
    fn rerank_msmt17_times_a_features_folder() {
        let s = scal_eval::synthetic::synthetic_split(30, 90, 10, 3, 8, 4);
        let dir = tempfile::tempdir().unwrap();
        ndarray_npy::write_npy(dir.path().join("query.npy"), &s.query).unwrap();
        ndarray_npy::write_npy(dir.path().join("gallery.npy"), &s.gallery).unwrap();
        let mut o = BenchOptions::defaults_for(Backend::Flex);
        o.measures = vec![Measure::RerankMsmt17];
        o.rerank_features = Some(dir.path().to_path_buf());
        let rows = run_bench(Backend::Flex, &o, |_| {}).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.measure, r.batch, r.iterations), ("rerank_msmt17", 30, 1));
        assert!(r.input.ends_with("30x90 8-d"), "{}", r.input);
        assert!(r.input.starts_with(&dir.path().display().to_string()));
        assert!((r.throughput * r.seconds_per_iteration - 30.0).abs() < 1e-9);

        let narrow = s.gallery.slice(ndarray::s![.., ..5]).to_owned();
        ndarray_npy::write_npy(dir.path().join("gallery.npy"), &narrow).unwrap();
        let err = format!("{:#}", run_bench(Backend::Flex, &o, |_| {}).unwrap_err());
        assert!(
            err.contains(&dir.path().display().to_string()) && err.contains("width"),
            "{err}"
        );
    }

    /// A tiny inference run: the throughput is the batch over the measured time, and the
    /// peak RSS is reported on Linux.
    #[cfg(feature = "flex")]
    #[test]
    fn a_measure_reports_batch_over_time() {
        let o = BenchOptions {
            inference_batch: 2,
            train_batch: 4,
            height: 64,
            width: 32,
            warmup: 1,
            iterations: 1,
            measures: vec![Measure::BackboneInference],
            hosts: Vec::new(),
            profile: None,
            rerank_features: None,
            rerank_dim: 2048,
        };
        let mut seen = 0;
        let rows = run_bench(Backend::Flex, &o, |_| seen += 1).unwrap();
        assert_eq!((rows.len(), seen), (1, 1));
        let r = &rows[0];
        assert_eq!(
            (r.measure, r.backend.as_str(), r.batch),
            ("backbone_inference", "flex", 2)
        );
        assert!((r.throughput * r.seconds_per_iteration - 2.0).abs() < 1e-9);
        assert!(r.device.starts_with("cpu"), "{}", r.device);
        if cfg!(target_os = "linux") {
            assert!(r.peak_rss_mib.unwrap() > 1.0);
        }
        assert!(r.device_memory_mib.is_none());
        assert!(r.first_iteration_seconds.is_some_and(|s| s > 0.0));
    }

    /// `--profile quick` takes the quick profile's input size, P × K batch and evaluation
    /// batch, and builds its network: ResNet-18 of base width 32 with five channel agents
    /// and critics of hidden width 64, for the synthetic dataset's 100 identities. The
    /// parameter counts are those `pytorch_resnet50.py --model quick` prints for its
    /// PyTorch twin (`scripts/cpu-vs-pytorch.sh quick` compares them at run time).
    #[cfg(feature = "flex")]
    #[test]
    fn the_quick_profile_measures_its_own_network() {
        let o = BenchOptions::defaults_for(Backend::Flex).with_profile(BenchProfile::Quick);
        assert_eq!(
            (o.height, o.width, o.train_batch, o.inference_batch),
            (128, 64, 64, 64)
        );
        let n = network(&o, AttentionKind::Channel);
        assert_eq!(
            (n.arch, n.base_width, n.last_stride, n.num_classes),
            (scal_backbone::ResNetArch::ResNet18, 32, 1, 100)
        );
        assert_eq!((n.channel_hidden, n.critic_hidden), (8, 64));
        let device = Device::flex();
        let scal = n.init(&device);
        let bnneck = network(&o, AttentionKind::None).init(&device);
        // Backbone 2,798,880 + BN neck 512 + classifier 256 × 100; agents 16 × ΣC = 8,192,
        // critics Σ(128 C + 129) = 66,181 over C = 32, 32, 64, 128, 256.
        assert_eq!(parameter_count(&bnneck.backbone), 2_798_880);
        assert_eq!(parameter_count(&bnneck), 2_824_992);
        assert_eq!(parameter_count(&scal), 2_899_365);
        // Burn's own count adds the running mean and variance of every batch norm: 2,400
        // channels in the backbone, 256 in the neck.
        assert_eq!(scal.num_params(), 2_899_365 + 2 * (2_400 + 256));
    }
}
