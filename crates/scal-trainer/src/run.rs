//! The training loop.
//!
//! A run lives in one folder: `config.json` (the resolved configuration), `metrics.jsonl`
//! (one JSON object per iteration, `"kind": "train"`, and per evaluation, `"kind":
//! "eval"`), and the checkpoints `last/` and `best/` ([`crate::checkpoint`]). Everything that
//! decides what happens next (weights, optimizer state, sampler position, iteration) is in
//! `last/`, and the learning rate and the augmentation are functions of the position, so a
//! resumed run continues exactly where the checkpoint was taken.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::config::Config;
use burn::optim::{AdamConfig, ModuleOptimizer, decay::WeightDecayConfig};
use indicatif::{ProgressBar, ProgressStyle};
use scal_data::synth::{SynthConfig, generate};
use scal_data::{
    LoaderOptions, RandomErasing, ReadOptions, ReidDataset, TrainLoader, TrainTransform,
    read_dataset,
};
use scal_model::{ScalConfig, ScalModel};

use crate::checkpoint::{self, TrainState};
use crate::config::TrainingConfig;
use crate::eval::{Evaluation, Scores, evaluate, module_amelioration};
use crate::log::{self, EvalRecord, LogWriter, Record, TrainRecord};
use crate::step::{scal_step, scal_step_data_parallel};
use crate::{Backend, TrainError, backend};
use scal_model::objective::StepReport;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// All epochs done.
    Finished {
        /// The evaluation after the last epoch.
        last: Evaluation,
        /// Best mAP and the epoch it was reached at.
        best: (f64, u64),
        /// Optimizer steps taken.
        iterations: u64,
    },
    /// Stopped on request (Ctrl-C); the last checkpoint holds the state.
    Interrupted {
        /// Optimizer steps taken.
        iterations: u64,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads (generating the synthetic dataset first when configured and missing) the dataset.
pub fn load_dataset(config: &TrainingConfig) -> Result<ReidDataset, TrainError> {
    let root = Path::new(&config.data.root);
    if !root.exists() && config.data.synthesize_if_missing {
        eprintln!(
            "generating the synthetic dataset in {} (cargo xtask synth)",
            root.display()
        );
        generate(&SynthConfig::default(), root)?;
    }
    Ok(read_dataset(
        config.data.dataset,
        root,
        ReadOptions {
            msmt17_combine_val: config.data.msmt17_combine_val,
        },
    )?)
}

/// The network configuration of a training configuration for `num_classes` identities.
pub fn model_config(config: &TrainingConfig, num_classes: usize) -> ScalConfig {
    let m = &config.model;
    ScalConfig::new(num_classes)
        .with_arch(m.arch)
        .with_base_width(m.base_width)
        .with_last_stride(m.last_stride)
        .with_stem_relu(m.stem_relu)
        .with_height(config.data.height)
        .with_width(config.data.width)
        .with_attention(m.attention)
        .with_channel_hidden(m.channel_hidden)
        .with_spatial_reduction(m.spatial_reduction)
        .with_critic_hidden(m.critic_hidden)
}

/// The device's random generator is shared by every thread of the process: seeding it and
/// drawing the initial weights happen under this lock so that two runs in one process (the
/// ablation, the tests) cannot interleave their draws.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The model's initial weights, a function of `seed` alone.
fn seeded_init(model_config: &ScalConfig, device: &burn::tensor::Device, seed: u64) -> ScalModel {
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    let model = model_config.init(device);
    model.initialize_parameters();
    model
}

fn optimizer(config: &TrainingConfig) -> ModuleOptimizer {
    let o = &config.optim;
    AdamConfig::new()
        .with_epsilon(o.epsilon as f32)
        .with_weight_decay(
            (o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32)),
        )
        .init()
}

fn print_scores(bar: &ProgressBar, epoch: u64, e: &Evaluation) {
    let row = |name: &str, s: &Scores| {
        format!(
            "  {name:<10} Rank-1 {:>6.2}%  Rank-5 {:>6.2}%  Rank-10 {:>6.2}%  mAP {:>6.2}%  mINP {:>6.2}%",
            100.0 * s.rank1,
            100.0 * s.rank5,
            100.0 * s.rank10,
            100.0 * s.map,
            100.0 * s.minp
        )
    };
    let say = |line: String| {
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };
    say(format!(
        "evaluation after epoch {epoch} ({:.1} s):",
        e.seconds
    ));
    say(row("plain", &e.plain));
    if let Some(r) = &e.reranked {
        say(row("re-ranked", r));
    }
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

/// How to go on after a device failure.
fn resume_hint(config: &TrainingConfig, run_dir: &Path) -> String {
    let resume = format!("cargo xtask train --resume {}", run_dir.display());
    if config.backend == Backend::Remote {
        format!(
            "Check that `cargo xtask serve` still runs at {} (restart it if not), then continue \
             with `{resume}` (add --hosts ws://… to use other servers)",
            config.hosts.join(", ")
        )
    } else {
        format!("Continue with `{resume}`")
    }
}

/// Trains (or, with `resume`, continues) the run in `run_dir`.
///
/// `stop` is polled after every iteration: when set, the last checkpoint is written and
/// [`RunOutcome::Interrupted`] returned. With `progress`, a progress bar with ETA is drawn
/// on the terminal.
pub fn train(
    config: &TrainingConfig,
    run_dir: &Path,
    resume: bool,
    stop: &AtomicBool,
    progress: bool,
) -> Result<RunOutcome, TrainError> {
    config.validate()?;
    if let Some(weights) = &config.model.pretrained
        && !Path::new(weights).is_file()
    {
        return Err(TrainError::Config(format!(
            "model.pretrained: {weights} does not exist. Download torchvision's ImageNet weights \
             ({}) there, e.g. `mkdir -p {} && curl -L -o {weights} {}`, or point --pretrained \
             at your copy (--set model.pretrained=null trains from scratch)",
            config.model.arch,
            Path::new(weights)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| ".".into()),
            crate::config::torchvision_weights_url(config.model.arch)
        )));
    }
    let devices: Vec<burn::tensor::Device> =
        backend::devices(config.backend, &config.hosts, &config.devices)?
            .into_iter()
            .map(|d| d.autodiff())
            .collect();
    let device = devices[0].clone();
    let config_path = run_dir.join("config.json");
    let dataset = load_dataset(config)?;
    if resume {
        checkpoint::recover(run_dir, "last")?;
        let saved = TrainingConfig::load(&config_path).map_err(|e| TrainError::Checkpoint {
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
        if saved.hosts != config.hosts {
            // Resumed on other servers: the next `--resume` without --hosts goes there too.
            let staged = run_dir.join(".config.json.tmp");
            config.save(&staged).map_err(io(&staged))?;
            std::fs::rename(&staged, &config_path).map_err(io(&config_path))?;
        }
    } else {
        if config_path.exists() {
            return Err(TrainError::Config(format!(
                "{} already holds a run; resume it with --resume {} or choose another --name",
                run_dir.display(),
                run_dir.display()
            )));
        }
        std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
        config.save(&config_path).map_err(io(&config_path))?;
    }

    let model_config = model_config(config, dataset.num_train_ids());
    let mut model: ScalModel = seeded_init(&model_config, &device, config.seed);
    if let Some(weights) = &config.model.pretrained {
        model = model.with_backbone_weights(Path::new(weights))?;
    }
    let mut optim = optimizer(config);
    let mut state = TrainState::default();
    let log_path = run_dir.join("metrics.jsonl");
    if resume {
        let last = run_dir.join("last");
        if last.exists() {
            model = model.load_checkpoint(&last.join("model.bpk"))?;
            optim = optim
                .load(last.join("optimizer.bpk"))
                .map_err(|e| TrainError::Checkpoint {
                    path: last.join("optimizer.bpk"),
                    message: format!("{e:?}"),
                })?;
            state = checkpoint::state(&last)?;
        }
        log::truncate(&log_path, state.iteration)?;
    }

    let d = &config.data;
    let mut transform = TrainTransform::new(d.height as u32, d.width as u32);
    transform.padding = d.padding as u32;
    transform.flip_probability = d.flip_probability as f32;
    transform.erasing = (d.erasing_probability > 0.0).then(|| RandomErasing {
        probability: d.erasing_probability as f32,
        ..RandomErasing::default()
    });
    let loader = TrainLoader::new(
        dataset.train.clone(),
        transform,
        LoaderOptions {
            p: d.p,
            k: d.k,
            seed: config.seed,
            prefetch: d.prefetch,
            cache: d.cache,
            strict: d.strict,
        },
    )?;

    let epochs = config.optim.epochs as u64;
    let start_epoch = state.position.epoch;
    if start_epoch >= epochs {
        return Err(TrainError::Config(format!(
            "{} has finished all {epochs} epochs already",
            run_dir.display()
        )));
    }
    let total: u64 = (start_epoch..epochs)
        .map(|e| loader.batches_in_epoch(e) as u64)
        .sum::<u64>()
        - state.position.batch as u64;
    let bar = if progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:25}] {pos}/{len} it, {per_sec}, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );

    let mut log = LogWriter::append(&log_path)?;
    // Saving reads every tensor back: with a remote server gone, that is where it shows.
    let save =
        |name: &str, model: &ScalModel, optim: Option<&ModuleOptimizer>, state: &TrainState| {
            let saved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                checkpoint::save(run_dir, name, model, &model_config, optim, state)
            }));
            let failed = |message: String| TrainError::Checkpoint {
                path: run_dir.join(name),
                message: format!(
                    "{message}; the previous checkpoint is kept. {}",
                    resume_hint(config, run_dir)
                ),
            };
            match saved {
                Ok(Err(e)) if config.backend == Backend::Remote => Err(failed(e.to_string())),
                Ok(result) => result,
                Err(payload) => Err(failed(panic_message(payload.as_ref()))),
            }
        };
    let mut last_eval: Option<Evaluation> = None;
    let mut tick = Instant::now();
    for batch in loader.iter_from(state.position, epochs - start_epoch) {
        let batch = batch?;
        let epoch = state.position.epoch;
        let lr = config.optim.lr_at(epoch as usize);
        let mut step = config.step.clone();
        if (epoch as usize) < config.critic_warmup_epochs {
            step.lambda = 0.0;
        }
        // A device that stops answering (a remote server gone, a lost GPU) panics inside the
        // backend: stop with an error that keeps the last checkpoint and says how to go on.
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if devices.len() == 1 {
                let (images, labels) = batch.to_tensors(&device);
                scal_step(model, &mut optim, lr, images, labels, &step)
            } else {
                let shards = devices
                    .iter()
                    .enumerate()
                    .map(|(i, d)| batch.shard_to_tensors(i, devices.len(), d))
                    .collect();
                scal_step_data_parallel(model, &mut optim, lr, shards, &devices, &step)
            }
        }));
        let (next_model, report): (ScalModel, StepReport) = match stepped {
            Ok(stepped) => stepped,
            Err(payload) => {
                return Err(TrainError::DeviceFailed {
                    iteration: state.iteration + 1,
                    message: panic_message(payload.as_ref()),
                    hint: resume_hint(config, run_dir),
                });
            }
        };
        if !report.loss.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                iteration: state.iteration + 1,
                epoch,
                loss: report.loss,
            });
        }
        model = next_model;
        state.iteration += 1;
        state.position = batch.next;
        let elapsed = tick.elapsed().as_secs_f64();
        tick = Instant::now();
        let loss = report.loss;
        log.write(&Record::Train(TrainRecord {
            epoch,
            iteration: state.iteration,
            lr,
            loss: report.loss,
            triplet: report.triplet,
            classification: report.classification,
            critic_objective: report.critic_objective,
            critic_mse: report.critic_mse,
            correct_rate: report.correct_rate,
            amelioration_rate: report.amelioration_rate,
            mean_value: report.mean_value,
            critic_error: report.critic_error,
            value_by_reward: report.value_by_reward,
            reward_counts: report.reward_counts,
            lambda: step.lambda,
            images_per_s: batch.labels.len() as f64 / elapsed.max(1e-9),
            replaced_images: batch.replaced.clone(),
        }))?;
        bar.set_message(format!("epoch {}/{epochs} loss {:.3}", epoch + 1, loss));
        bar.inc(1);

        let mut saved = false;
        if batch.next.batch == 0 {
            let finished = batch.next.epoch;
            let every = config.eval.every_epochs as u64;
            if finished == epochs || (every > 0 && finished % every == 0) {
                let e = evaluate(
                    &model,
                    &dataset,
                    (config.data.height, config.data.width),
                    config.eval.batch,
                    config.eval.flip,
                    config.eval.rerank,
                    &device,
                )?;
                print_scores(&bar, finished, &e);
                let amelioration = {
                    use burn::module::Module;
                    module_amelioration(
                        &model.valid(),
                        &dataset.train,
                        (config.data.height, config.data.width),
                        config.eval.amelioration_samples,
                        config.eval.batch,
                        &device.clone().without_autodiff(),
                    )?
                };
                log.write(&Record::Eval(EvalRecord {
                    epoch: finished,
                    iteration: state.iteration,
                    evaluation: e,
                    module_amelioration: amelioration,
                }))?;
                if state.best.is_none_or(|(best, _)| e.plain.map > best) {
                    state.best = Some((e.plain.map, finished));
                    save("best", &model, None, &state)?;
                }
                last_eval = Some(e);
            }
            save("last", &model, Some(&optim), &state)?;
            saved = true;
        } else if config.checkpoint_every > 0
            && state.iteration % config.checkpoint_every as u64 == 0
        {
            save("last", &model, Some(&optim), &state)?;
            saved = true;
        }
        if stop.load(Ordering::SeqCst) {
            if !saved {
                save("last", &model, Some(&optim), &state)?;
            }
            bar.abandon_with_message(format!("stopped at iteration {}", state.iteration));
            return Ok(RunOutcome::Interrupted {
                iterations: state.iteration,
            });
        }
    }
    bar.finish_and_clear();
    let last = last_eval.expect("the last epoch is always evaluated");
    Ok(RunOutcome::Finished {
        last,
        best: state.best.expect("evaluated at least once"),
        iterations: state.iteration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_panic_becomes_its_cause_and_a_resume_command() {
        let burn_read_error: Box<dyn std::any::Any + Send> = Box::new(String::from(
            "Error while reading data: use `try_into_data` instead\nCaused by:\n  Failed to read tensor: RecvError(())",
        ));
        assert_eq!(
            panic_message(burn_read_error.as_ref()),
            "Failed to read tensor: RecvError(())"
        );
        let plain: Box<dyn std::any::Any + Send> = Box::new("device lost");
        assert_eq!(panic_message(plain.as_ref()), "device lost");

        let mut config = TrainingConfig::profile(crate::Profile::Quick);
        let hint = resume_hint(&config, Path::new("runs/a"));
        assert!(
            hint.contains("--resume runs/a") && !hint.contains("serve"),
            "{hint}"
        );
        config.backend = Backend::Remote;
        config.hosts = vec!["ws://gpu1:3000".into()];
        let hint = resume_hint(&config, Path::new("runs/a"));
        assert!(
            hint.contains("cargo xtask serve") && hint.contains("ws://gpu1:3000"),
            "{hint}"
        );
    }
}
