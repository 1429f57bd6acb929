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

use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use scal_data::{HostBatch, ReidDataset, TrainLoader};
use scal_infer::{EmbedOptions, evaluate_model};
use scal_model::objective::{StepReport, planted_threshold};
use scal_model::{ScalConfig, ScalModel};
use scal_run::lifecycle::{
    check_run_folder, create_run, open_run, record_location, refuse_lost_checkpoint,
};

use crate::TrainError;
use crate::checkpoint::{self, TrainState};
use crate::config::TrainingConfig;
use crate::dataset::{check_scorable, check_splits, check_test_images, load_dataset};
use crate::device_failure::on_devices;
use crate::eval::module_amelioration;
use crate::folder::RunLock;
use crate::log::{self, EvalRecord, LogWriter, Record, TrainRecord};
use crate::observer::{RunOutcome, TrainObserver};
use crate::optim::optimizer;
use crate::records;
use crate::run_dir::{Checkpoint, RunDir};
use crate::step::{scal_step, scal_step_data_parallel};

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
            } else if start == Start::Resume
                && let Some(logged) = refuse_lost_checkpoint(run_dir, &log_path)?
            {
                observer.starting_over(logged);
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
        let mut step = crate::records::step_config(&self.config.step);
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
