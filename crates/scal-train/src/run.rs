//! The training loop.
//!
//! A run lives in one folder: `config.json` (the resolved configuration), `metrics.jsonl`
//! ([`crate::log`]: one record per iteration and per evaluation), and the checkpoints
//! `last/` and `best/` ([`crate::checkpoint`]). Everything that decides what happens next
//! (weights, optimizer state, sampler position, iteration) is in `last/`, and the learning
//! rate and the augmentation are functions of the position, so a resumed run continues
//! exactly where the checkpoint was taken.
//!
//! [`train`] is [`Trainer::prepare`] (every check, then the run folder), then
//! [`Trainer::step`] per batch and [`Trainer::end_of_epoch`] after each epoch's last batch.
//! What happens is reported to a [`TrainObserver`] (progress, scores, skipped images), which
//! can also ask the run to stop.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::ParamGroup;
use burn::optim::{
    AdamConfig, DynOptimizer, DynState, ModuleOptimizer, StateSink, StateSource,
    decay::WeightDecayConfig,
};
use burn::tensor::Device;
use burn::tensor::kind::BridgeTensor;
use scal_data::synth::{SynthConfig, generate};
use scal_data::{HostBatch, ReadOptions, ReidDataset, SkippedImage, TrainLoader};
use scal_model::objective::{StepReport, planted_threshold};
use scal_model::{ScalConfig, ScalModel};

use crate::TrainError;
use crate::checkpoint::{self, TrainState};
use crate::config::{OptimOptions, TrainingConfig};
use crate::eval::module_amelioration;
use crate::folder::RunLock;
use crate::log::{self, EvalRecord, LogWriter, Record, TrainRecord};
use crate::records;
use crate::run_dir::{Checkpoint, RunDir};
use crate::step::{scal_step, scal_step_data_parallel};
use scal_infer::{EmbedOptions, evaluate_model};

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// All epochs done.
    Finished {
        /// The evaluation after the last epoch (as logged).
        last: log::Evaluation,
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

/// How [`train`] treats the run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run: the folder must not hold one.
    New,
    /// Continue the run exactly from its last checkpoint. A run whose log records
    /// iterations but whose `last/` checkpoint is gone is refused (see [`Start::Restart`]).
    Resume,
    /// As [`Start::Resume`], but a run whose `last/` checkpoint is gone starts again from
    /// iteration 0 in its folder, its log cut back.
    Restart,
    /// Continue from the `best/` checkpoint (its weights and training state; the optimizer's
    /// moments start afresh, as `best/` does not keep them), for a run whose `last/` is
    /// damaged. `last/`, if there is one, is kept as `last.set-aside/` (or `.2`, `.3`, …).
    FromBest,
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

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads (generating the synthetic dataset first when configured and missing) the dataset.
pub fn load_dataset(
    config: &TrainingConfig,
    observer: &mut dyn TrainObserver,
) -> Result<ReidDataset, TrainError> {
    let root = Path::new(&config.data.root);
    let preset = config.data.synth_preset;
    if !root.exists() && config.data.synthesize_if_missing {
        observer.generating_dataset(root);
        generate(
            &SynthConfig {
                preset,
                ..SynthConfig::default()
            },
            root,
        )?;
    }
    if root.exists() {
        scal_data::synth::check_preset(root, preset)?;
    }
    Ok(scal_data::read_dataset(
        config.data.dataset,
        root,
        ReadOptions {
            msmt17_combine_val: config.data.msmt17_combine_val,
        },
    )?)
}

/// A trained run's training data as it trained on it, for the tools that look at its
/// critics: its configuration (with `root` as the dataset's folder when given: the dataset
/// moved) and its dataset, whose training split must be the one checkpoint `checkpoint`
/// recorded (a changed dataset would be measured silently, or fail on labels its model does
/// not have).
///
/// # Errors
/// [`TrainError::DatasetMoved`] when the run's dataset folder is gone and no `root` is given,
/// [`TrainError::SplitChanged`] when the training split differs, and the errors of reading
/// the configuration, the checkpoint's state and the dataset.
pub fn trained_run_data(
    run_dir: &Path,
    checkpoint: Checkpoint,
    root: Option<&Path>,
) -> Result<(TrainingConfig, ReidDataset), TrainError> {
    let mut config = TrainingConfig::load_json(&RunDir::new(run_dir).config())?;
    if let Some(root) = root {
        config.data.root = root.to_string_lossy().into_owned();
        config.data.synthesize_if_missing = false;
    } else if !config.data.synthesize_if_missing && !Path::new(&config.data.root).exists() {
        return Err(TrainError::DatasetMoved {
            run: run_dir.to_path_buf(),
            root: PathBuf::from(&config.data.root),
        });
    }
    let dataset = load_dataset(&config, &mut ())?;
    let state = checkpoint::state(&RunDir::new(run_dir).checkpoint(checkpoint))?;
    let now = checkpoint::SplitDigest::of(&dataset.train, &dataset.root);
    match state.train_split {
        Some(then) if then != now => Err(TrainError::SplitChanged {
            root: dataset.root.clone(),
            split: "training split",
            then: then.images,
            now: now.images,
        }),
        _ => Ok((config, dataset)),
    }
}

/// The splits of the checkpoint must be the ones read now (issue 29, W27: a resume on a
/// changed split finished silently); a checkpoint written before splits were recorded takes
/// today's. Names are taken below the dataset folder, so a moved dataset passes.
fn check_splits(
    state: &mut checkpoint::TrainState,
    dataset: &ReidDataset,
) -> Result<(), TrainError> {
    let test: Vec<scal_data::ImageRecord> = dataset
        .query
        .iter()
        .chain(&dataset.gallery)
        .cloned()
        .collect();
    let train_now = checkpoint::SplitDigest::of(&dataset.train, &dataset.root);
    let test_now = checkpoint::SplitDigest::of(&test, &dataset.root);
    for (then, now, split) in [
        (&mut state.train_split, train_now, "training split"),
        (&mut state.test_split, test_now, "query and gallery"),
    ] {
        match *then {
            Some(then) if then != now => {
                return Err(TrainError::SplitChanged {
                    root: dataset.root.clone(),
                    split,
                    then: then.images,
                    now: now.images,
                });
            }
            _ => *then = Some(now),
        }
    }
    Ok(())
}

/// A dataset whose query no evaluation can score is refused before training: every
/// evaluation, the last one included, would stop the run (issue 29, W28: found after the
/// first epoch, leaving a run without a checkpoint).
fn check_scorable(dataset: &ReidDataset) -> Result<(), TrainError> {
    if dataset.scorable_queries() == 0 {
        return Err(TrainError::InvalidField {
            field: "data.root".into(),
            problem: format!(
                "{}: no query image has a gallery image of its identity from another camera, \
                 so the evaluation can score none (are the cameras in the file names right?)",
                dataset.root.display()
            ),
        });
    }
    Ok(())
}

/// A query or gallery image that cannot be decoded would stop every evaluation: refused
/// before training, naming it (issue 42, F27: found at the first evaluation, after the
/// epochs since the last checkpoint were trained for nothing). A training image that cannot
/// be decoded is replaced instead (`data.strict` off).
fn check_test_images(dataset: &ReidDataset) -> Result<(), TrainError> {
    for record in dataset.query.iter().chain(&dataset.gallery) {
        scal_data::check_decodable(&record.path).map_err(|e| TrainError::InvalidField {
            field: "data.root".into(),
            problem: format!(
                "{e}: a query or gallery image, which every evaluation reads; replace or \
                 remove it, then train"
            ),
        })?;
    }
    Ok(())
}

/// The device's random generator is shared by every thread of the process: seeding it and
/// drawing the initial weights happen under this lock so that two runs in one process (the
/// ablation, the tests) cannot interleave their draws.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The model's initial weights, a function of `seed` alone.
fn seeded_init(model_config: &ScalConfig, device: &Device, seed: u64) -> ScalModel {
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    let model = model_config.init(device);
    model.initialize_parameters();
    model
}

/// Adam for the whole model, in two parameter groups: the critics' parameters (every path
/// under `critics`) decay by `critic_weight_decay` and learn at `critic_lr_factor` times the
/// scheduled rate; all others decay by `weight_decay` at the scheduled rate.
pub fn optimizer(o: &OptimOptions) -> ModuleOptimizer {
    let adam = |decay: f64| {
        AdamConfig::new()
            .with_epsilon(o.epsilon as f32)
            .with_weight_decay((decay > 0.0).then(|| WeightDecayConfig::new(decay as f32)))
    };
    adam(o.weight_decay).init().with_group(
        ParamGroup::from_predicate(CRITICS_PATH),
        ScaledLr {
            inner: adam(o.critic_weight_decay).build(),
            factor: o.critic_lr_factor,
        },
        None,
    )
}

/// An optimizer stepping at `factor` times the learning rate it is given (Burn 0.22.1's
/// parameter groups share one learning rate).
struct ScaledLr<O> {
    inner: O,
    factor: f64,
}

impl<O: DynOptimizer> DynOptimizer for ScaledLr<O> {
    fn step_dyn(
        &self,
        rank: usize,
        lr: f64,
        tensor: BridgeTensor,
        grad: BridgeTensor,
        state: Option<DynState>,
    ) -> (BridgeTensor, Option<DynState>) {
        self.inner
            .step_dyn(rank, lr * self.factor, tensor, grad, state)
    }

    fn to_device_dyn(&self, state: DynState, device: &Device) -> DynState {
        self.inner.to_device_dyn(state, device)
    }

    fn state_flatten(&self, prefix: &str, state: &DynState, out: &mut StateSink) {
        self.inner.state_flatten(prefix, state, out);
    }

    fn state_unflatten(
        &self,
        rank: usize,
        prefix: &str,
        src: &mut StateSource,
        device: &Device,
    ) -> Option<DynState> {
        self.inner.state_unflatten(rank, prefix, src, device)
    }
}

/// The module path of the critics in [`ScalModel`] (its field name).
const CRITICS_PATH: &str = "critics";

/// Runs `work`, which drives the devices: a panic there (a remote server gone, a GPU lost)
/// becomes [`TrainError::DeviceFailed`] at `iteration` of the run in `run`, its message
/// after `context`.
fn on_devices<T>(
    run: &Path,
    iteration: u64,
    context: &str,
    work: impl FnOnce() -> T,
) -> Result<T, TrainError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|payload| {
        TrainError::DeviceFailed {
            iteration,
            message: format!("{context}{}", panic_message(payload.as_ref())),
            run: run.to_path_buf(),
        }
    })
}

/// The text of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the backend panicked".into());
    // Burn's read errors say how to catch them first; what failed comes after "Caused by:".
    let text = match text.split_once("Caused by:") {
        Some((_, cause)) => cause.to_string(),
        None => text,
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A run being trained: the model, its optimizer and state, the data and the log.
pub struct Trainer<'a> {
    config: &'a TrainingConfig,
    run_dir: PathBuf,
    /// Autodiff devices; the first holds the model and the optimizer.
    devices: Vec<Device>,
    dataset: ReidDataset,
    model_config: ScalConfig,
    model: Option<ScalModel>,
    optim: ModuleOptimizer,
    state: TrainState,
    log: LogWriter,
    /// Held while the run trains: one process per run folder.
    _lock: RunLock,
    last_eval: Option<log::Evaluation>,
    tick: Instant,
}

impl std::fmt::Debug for Trainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("run_dir", &self.run_dir)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<'a> Trainer<'a> {
    /// Checks the configuration, the pretrained weights and the data, builds the model, then
    /// locks the run folder (one process per run) and creates it (or, resuming, checks it
    /// holds the same configuration and restores the model, the optimizer and the training
    /// state from `last/`).
    ///
    /// `devices` are the devices to train on (not autodiff; [`TrainingConfig::devices`]
    /// resolved by the caller), the first holding the model.
    pub fn prepare(
        config: &'a TrainingConfig,
        run_dir: &Path,
        start: Start,
        devices: &[Device],
        observer: &mut dyn TrainObserver,
    ) -> Result<(Trainer<'a>, TrainLoader), TrainError> {
        config.validate()?;
        check_pretrained(config)?;
        if start != Start::New {
            check_run_folder(run_dir)?;
        }
        assert!(!devices.is_empty(), "Trainer::prepare: at least one device");
        let devices: Vec<Device> = devices.iter().map(|d| d.clone().autodiff()).collect();
        if start != Start::New
            && !config.data.synthesize_if_missing
            && !Path::new(&config.data.root).exists()
        {
            return Err(TrainError::DatasetMoved {
                run: run_dir.to_path_buf(),
                root: PathBuf::from(&config.data.root),
            });
        }
        let dataset = load_dataset(config, observer)?;
        check_scorable(&dataset)?;
        check_test_images(&dataset)?;
        let loader = TrainLoader::new(
            dataset.train.clone(),
            config.data.transform(),
            config.data.loader(config.seed),
        )?;
        let model_config = config.model.network(
            dataset.num_train_ids(),
            config.data.height,
            config.data.width,
        );
        let mut model = seeded_init(&model_config, &devices[0], config.seed);
        if let Some(weights) = &config.model.pretrained {
            model = model.with_backbone_weights(Path::new(weights))?;
        }
        let mut optim = optimizer(&config.optim);
        let mut state = TrainState::default();
        let run = RunDir::new(run_dir);
        let log_path = run.metrics();
        let (lock, log) = if start == Start::New {
            check_splits(&mut state, &dataset)?;
            // A new run's folder is made last, once everything that can fail was checked.
            create_run(config, run_dir, &log_path)?
        } else {
            let (lock, saved) = open_run(config, run_dir)?;
            let last = run.checkpoint(Checkpoint::Last);
            if start == Start::FromBest {
                let best = run.checkpoint(Checkpoint::Best);
                (model, state) = checkpoint::load_weights(&best, config, &model)?;
            } else if last.exists() {
                (model, optim, state) = checkpoint::load_training(&last, config, &model, optim)?;
            } else if start == Start::Resume {
                refuse_lost_checkpoint(run_dir, &log_path, observer)?;
            }
            check_splits(&mut state, &dataset)?;
            // A finished run is refused before anything of it changes (issue 42, C18: its
            // config.json took a refused --root).
            let epochs = config.optim.epochs as u64;
            if state.position.epoch >= epochs {
                return Err(TrainError::RunFinished {
                    run: run_dir.to_path_buf(),
                    epochs,
                });
            }
            record_location(&saved, config, run_dir)?;
            log::truncate(&log_path, state.iteration)?;
            (lock, LogWriter::append(&log_path)?)
        };
        if start == Start::FromBest {
            // Only once the run can go on: the damaged last/ is kept, not overwritten.
            checkpoint::set_aside(&run.checkpoint(Checkpoint::Last))?;
        }
        let trainer = Trainer {
            config,
            run_dir: run_dir.to_path_buf(),
            devices,
            dataset,
            model_config,
            model: Some(model),
            optim,
            state,
            log,
            _lock: lock,
            last_eval: None,
            tick: Instant::now(),
        };
        Ok((trainer, loader))
    }

    /// Iterations left until the last epoch ends.
    pub fn remaining(&self, loader: &TrainLoader) -> u64 {
        let epochs = self.config.optim.epochs as u64;
        (self.state.position.epoch..epochs)
            .map(|e| loader.batches_in_epoch(e) as u64)
            .sum::<u64>()
            - self.state.position.batch as u64
    }

    /// Where training stands.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// One optimizer step on `batch`, logged. A device that stops answering (a remote
    /// server gone, a lost GPU) panics inside the backend: that becomes
    /// [`TrainError::DeviceFailed`], and a NaN or infinite loss [`TrainError::NonFiniteLoss`];
    /// the last checkpoint is kept in both cases.
    pub fn step(
        &mut self,
        batch: &HostBatch,
        observer: &mut dyn TrainObserver,
    ) -> Result<(), TrainError> {
        let epoch = self.state.position.epoch;
        let lr = self.config.optim.lr_at(epoch as usize);
        let mut step = self.config.step.clone();
        if (epoch as usize) < self.config.critic_warmup_epochs {
            step.lambda = 0.0;
        }
        if step.reward.is_planted() && step.planted.threshold.is_none() {
            step.planted.threshold = Some(self.planted_threshold(batch)?);
        }
        let model = self.model.take().expect("the trainer holds its model");
        let (optim, devices) = (&mut self.optim, &self.devices);
        let iteration = self.state.iteration + 1;
        let (model, report): (ScalModel, StepReport) =
            on_devices(&self.run_dir, iteration, "", || {
                if devices.len() == 1 {
                    let (images, labels) = batch.to_tensors(&devices[0]);
                    scal_step(model, optim, lr, images, labels, &step)
                } else {
                    let shards = devices
                        .iter()
                        .enumerate()
                        .map(|(i, d)| batch.shard_to_tensors(i, devices.len(), d))
                        .collect();
                    scal_step_data_parallel(model, optim, lr, shards, devices, &step)
                }
            })?;
        if !report.loss.is_finite() || report.loss > scal_run::DIVERGED_LOSS {
            let last = RunDir::new(&self.run_dir).checkpoint(Checkpoint::Last);
            return Err(TrainError::NonFiniteLoss {
                iteration: self.state.iteration + 1,
                epoch,
                loss: report.loss,
                last_checkpoint: checkpoint::state(&last).ok().map(|s| s.iteration),
            });
        }
        self.model = Some(model);
        self.state.iteration += 1;
        self.state.position = batch.next;
        let elapsed = self.tick.elapsed().as_secs_f64();
        self.tick = Instant::now();
        for replaced in &batch.replaced {
            observer.replaced_image(replaced);
        }
        let record = train_record(
            &report,
            epoch,
            self.state.iteration,
            lr,
            step.lambda,
            batch,
            elapsed,
        );
        self.log.write(&Record::Train(record.clone()))?;
        observer.iteration(&record);
        Ok(())
    }

    /// The planted reward's threshold: frozen from the first batch the run trains on (the
    /// median score over it, [`planted_threshold`]), then kept in the training state, so
    /// that a resumed run goes on with it.
    fn planted_threshold(&mut self, batch: &HostBatch) -> Result<f64, TrainError> {
        if let Some(threshold) = self.state.planted_threshold {
            return Ok(threshold);
        }
        let (model, device) = (self.model(), &self.devices[0]);
        let (kind, planted) = (self.config.step.reward, &self.config.step.planted);
        let threshold = on_devices(&self.run_dir, self.state.iteration + 1, "", || {
            let (images, labels) = batch.to_tensors(device);
            planted_threshold(model, (images, &labels), kind, planted)
        })?;
        self.state.planted_threshold = Some(threshold);
        Ok(threshold)
    }

    fn model(&self) -> &ScalModel {
        self.model.as_ref().expect("the trainer holds its model")
    }

    /// After an epoch's last batch: evaluates when the epoch is due (every
    /// `eval.every_epochs`, and the last), saves `best/` when the mAP improved, then
    /// `last/`.
    pub fn end_of_epoch(&mut self, observer: &mut dyn TrainObserver) -> Result<(), TrainError> {
        let finished = self.state.position.epoch;
        let epochs = self.config.optim.epochs as u64;
        let every = self.config.eval.every_epochs as u64;
        if finished == epochs || (every > 0 && finished.is_multiple_of(every)) {
            // Evaluation reads features back from the device: a lost device panics there.
            let record = on_devices(&self.run_dir, self.state.iteration, "evaluating: ", || {
                self.evaluate(finished)
            })??;
            self.log.write(&Record::Eval(record.clone()))?;
            observer.evaluated(&record);
            let e = record.evaluation;
            if self.state.best.is_none_or(|(best, _)| e.plain.map > best) {
                self.state.best = Some((e.plain.map, finished));
                self.save(Checkpoint::Best, false)?;
            }
            self.last_eval = Some(e);
        }
        self.save(Checkpoint::Last, true)
    }

    /// The evaluation after `finished` epochs: scores on query/gallery and the modules'
    /// amelioration rates.
    fn evaluate(&self, finished: u64) -> Result<EvalRecord, TrainError> {
        let (config, device) = (self.config, &self.devices[0]);
        let size = (config.data.height, config.data.width);
        let options = EmbedOptions::new(size.0, size.1)
            .with_batch(config.eval.batch)
            .with_flip(config.eval.flip);
        let evaluation = evaluate_model(
            self.model(),
            &self.dataset,
            options,
            config.eval.rerank,
            device,
        )
        .map_err(records::train_error)?;
        let module_amelioration = module_amelioration(
            self.model(),
            &self.dataset.train,
            size,
            (
                config.eval.amelioration_samples,
                config.data.p,
                config.data.k,
            ),
            config.data.strict,
        )?;
        Ok(EvalRecord {
            epoch: finished,
            iteration: self.state.iteration,
            evaluation: records::evaluation(&evaluation),
            module_amelioration,
        })
    }

    /// Saves the last checkpoint when the iteration is due (`checkpoint_every`); returns
    /// whether it did.
    pub fn save_if_due(&mut self) -> Result<bool, TrainError> {
        let every = self.config.checkpoint_every as u64;
        if every > 0 && self.state.iteration.is_multiple_of(every) {
            self.save(Checkpoint::Last, true)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Writes checkpoint `which` (with the optimizer for `last`). Saving reads every tensor
    /// back: with a remote server gone, that is where it shows, as a panic.
    pub fn save(&self, which: Checkpoint, with_optimizer: bool) -> Result<(), TrainError> {
        let name = which.as_str();
        let optim = with_optimizer.then_some(&self.optim);
        let context = format!("writing checkpoint {name}: ");
        let saved = on_devices(&self.run_dir, self.state.iteration, &context, || {
            checkpoint::save(
                &self.run_dir,
                name,
                (self.model(), &self.model_config),
                optim,
                &self.state,
                self.config,
            )
        })?;
        match saved {
            // Remote tensors are read back over the network: a failure there is the server's.
            Err(e) if self.config.backend == crate::Backend::Remote => {
                Err(TrainError::DeviceFailed {
                    iteration: self.state.iteration,
                    message: format!("{context}{e}"),
                    run: self.run_dir.clone(),
                })
            }
            result => result.map(|_| ()),
        }
    }

    /// How the run ended, once the loader has no batch left.
    fn finished(&self) -> RunOutcome {
        RunOutcome::Finished {
            last: self.last_eval.expect("the last epoch is always evaluated"),
            best: self.state.best.expect("evaluated at least once"),
            iterations: self.state.iteration,
        }
    }
}

/// Refuses a `model.pretrained` that is not a file, saying where to get it.
fn check_pretrained(config: &TrainingConfig) -> Result<(), TrainError> {
    match &config.model.pretrained {
        Some(weights) if !Path::new(weights).is_file() => Err(TrainError::MissingPretrained {
            path: PathBuf::from(weights),
            arch: config.model.arch,
            url: crate::config::torchvision_weights_url(config.model.arch),
        }),
        _ => Ok(()),
    }
}

/// A new run: locks the folder (creating it), refuses one that holds a run, then writes
/// `config.json` and an empty `metrics.jsonl` (opened for appending). If that fails
/// half-way, what it created is removed, so the same name can be used again.
fn create_run(
    config: &TrainingConfig,
    run_dir: &Path,
    log_path: &Path,
) -> Result<(RunLock, LogWriter), TrainError> {
    let config_path = RunDir::new(run_dir).config();
    let existed = run_dir.exists();
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    let lock = RunLock::acquire(run_dir)?;
    if config_path.exists() {
        return Err(TrainError::RunExists {
            run: run_dir.to_path_buf(),
        });
    }
    // A folder that is not a run: its checkpoints and report would replace the user's
    // folders of the same names (`best/`, `report/`).
    let found = others_than_the_lock(run_dir)?;
    if !found.is_empty() {
        lock.remove();
        return Err(TrainError::NotARunFolder {
            run: run_dir.to_path_buf(),
            found,
        });
    }
    let created = config
        .save_json(&config_path)
        .map_err(io(&config_path))
        .and_then(|()| Ok(LogWriter::append(log_path)?));
    match created {
        Ok(log) => Ok((lock, log)),
        Err(e) => {
            let _ = std::fs::remove_file(&config_path);
            let _ = std::fs::remove_file(log_path);
            lock.remove();
            if !existed {
                let _ = std::fs::remove_dir(run_dir);
            }
            Err(e)
        }
    }
}

/// The entries of `dir` other than the run lock's file, sorted (the first few).
fn others_than_the_lock(dir: &Path) -> Result<Vec<String>, TrainError> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != crate::folder::LOCK_FILE)
        .collect();
    found.sort();
    found.truncate(5);
    Ok(found)
}

/// A resumed run: locks the folder, recovers an interrupted checkpoint swap and refuses
/// another configuration; returns the lock and the saved configuration.
fn open_run(
    config: &TrainingConfig,
    run_dir: &Path,
) -> Result<(RunLock, TrainingConfig), TrainError> {
    // `Trainer::prepare` checked that `run_dir` is a run (`check_run_folder`).
    let config_path = RunDir::new(run_dir).config();
    let lock = RunLock::acquire(run_dir)?;
    checkpoint::recover(run_dir, Checkpoint::Last.as_str())?;
    // A field the saved file lacks (written before the field existed) takes its default.
    let saved = TrainingConfig::load_json(&config_path).map_err(|e| TrainError::Checkpoint {
        path: config_path.clone(),
        message: e.to_string(),
    })?;
    let differences = saved.differences(config);
    if !differences.is_empty() {
        return Err(TrainError::ResumeMismatch {
            run: run_dir.to_path_buf(),
            differences,
        });
    }
    Ok((lock, saved))
}

/// A run resumed on other servers (`hosts` differ) or on its moved dataset (`data.root`
/// differs, its splits checked): `config.json` takes the new place, so that the next resume
/// goes there too.
fn record_location(
    saved: &TrainingConfig,
    config: &TrainingConfig,
    run_dir: &Path,
) -> Result<(), TrainError> {
    if saved.hosts == config.hosts && saved.data.root == config.data.root {
        return Ok(());
    }
    let config_path = RunDir::new(run_dir).config();
    scal_fs::write_atomically(&config_path, |tmp| {
        config.save_json(tmp).map_err(|e| e.to_string())
    })?;
    Ok(())
}

/// A folder to continue must be a run: it holds `config.json` and is not one of a run's
/// checkpoints (which hold a copy of it beside `model.json`).
fn check_run_folder(run_dir: &Path) -> Result<(), TrainError> {
    if run_dir.join(scal_model::CONFIG_FILE).is_file() {
        let run = RunDir::of_checkpoint(run_dir).map(|r| r.path().to_path_buf());
        return Err(TrainError::CheckpointNotRun {
            checkpoint: run_dir.to_path_buf(),
            run,
        });
    }
    if !RunDir::new(run_dir).holds_run() {
        return Err(TrainError::NotARun {
            run: run_dir.to_path_buf(),
        });
    }
    Ok(())
}

/// A run without `last/` whose log records iterations cannot continue where it stopped:
/// refused unless the caller restarts it ([`Start::Restart`]). A run that never wrote a
/// checkpoint (no `best/` either: its first save failed, or it was stopped before) has
/// nothing to lose: it starts again from iteration 0, and `observer` is told.
fn refuse_lost_checkpoint(
    run_dir: &Path,
    log_path: &Path,
    observer: &mut dyn TrainObserver,
) -> Result<(), TrainError> {
    let logged = log::read(log_path)?
        .iter()
        .filter(|r| matches!(r, Record::Train(_)))
        .count() as u64;
    if logged == 0 {
        return Ok(());
    }
    if !RunDir::new(run_dir).checkpoint(Checkpoint::Best).exists() {
        observer.starting_over(logged);
        return Ok(());
    }
    Err(TrainError::CheckpointMissing {
        run: run_dir.to_path_buf(),
        logged,
    })
}

/// The log record of one step.
fn train_record(
    report: &StepReport,
    epoch: u64,
    iteration: u64,
    lr: f64,
    lambda: f64,
    batch: &HostBatch,
    seconds: f64,
) -> TrainRecord {
    TrainRecord {
        epoch,
        iteration,
        lr,
        step: records::step_metrics(report),
        lambda,
        images_per_s: batch.labels.len() as f64 / seconds.max(1e-9),
        replaced_images: batch.replaced.iter().map(|r| r.path.clone()).collect(),
    }
}

/// Trains (or continues, per `start`) the run in `run_dir` on `devices` (the
/// configuration's `devices`, resolved by the caller; not autodiff), reporting to
/// `observer`, which is also asked after every iteration whether to stop (then the last
/// checkpoint is written and [`RunOutcome::Interrupted`] returned).
pub fn train(
    config: &TrainingConfig,
    run_dir: &Path,
    start: Start,
    devices: &[Device],
    observer: &mut dyn TrainObserver,
) -> Result<RunOutcome, TrainError> {
    let (mut trainer, loader) = Trainer::prepare(config, run_dir, start, devices, observer)?;
    observer.started(trainer.remaining(&loader));
    let position = trainer.state().position;
    let epochs = config.optim.epochs as u64 - position.epoch;
    for batch in loader.iter_from(position, epochs) {
        let batch = batch?;
        trainer.step(&batch, observer)?;
        let saved = if batch.next.batch == 0 {
            trainer.end_of_epoch(observer)?;
            true
        } else {
            trainer.save_if_due()?
        };
        if observer.should_stop() {
            if !saved {
                trainer.save(Checkpoint::Last, true)?;
            }
            let outcome = RunOutcome::Interrupted {
                iterations: trainer.state().iteration,
            };
            observer.ended(&outcome);
            return Ok(outcome);
        }
    }
    let outcome = trainer.finished();
    observer.ended(&outcome);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_panic_becomes_its_cause() {
        let burn_read_error: Box<dyn std::any::Any + Send> = Box::new(String::from(
            "Error while reading data: use `try_into_data` instead\nCaused by:\n  Failed to read tensor: RecvError(())",
        ));
        assert_eq!(
            panic_message(burn_read_error.as_ref()),
            "Failed to read tensor: RecvError(())"
        );
        let plain: Box<dyn std::any::Any + Send> = Box::new("device lost");
        assert_eq!(panic_message(plain.as_ref()), "device lost");
    }
}
