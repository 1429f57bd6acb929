//! Data-parallel training (`--devices`): the step against independent single-device steps,
//! and a run end to end. On this CPU machine flex has one device, so the replicas share it
//! (`devices = [0, 0]`): the code path (fork, per-shard backward, gradients moved to the
//! main device and summed, one optimizer step) is the one several GPUs take.
use std::path::Path;

use crate::common::{self, shard};
use burn::optim::{AdamConfig, SgdConfig};
use burn::tensor::Device;
use scal_model::probe::{float_tensors, probe_config as parity_model_config};
use scal_model::{AttentionKind, ScalModel};
use scal_train::config::Profile;
use scal_train::{RunOutcome, StepConfig, TrainingConfig, scal_step, scal_step_data_parallel};

/// Trainable parameters by name (batch-norm running statistics left out: they are buffers,
/// updated once per shard by design).
fn parameters(model: &ScalModel) -> Vec<(String, Vec<f32>)> {
    float_tensors(model)
        .into_iter()
        .filter(|(name, _)| !name.contains("running_"))
        .collect()
}

fn model(device: &Device) -> ScalModel {
    device.seed(3);
    parity_model_config(AttentionKind::Channel).init(device)
}

/// Two identical shards: the mean of two equal gradients is that gradient, so the
/// data-parallel step must give exactly the single-device step on one shard (with Adam).
#[test]
fn two_identical_shards_give_exactly_the_single_device_step() {
    let device = Device::flex().autodiff();
    let base = model(&device);
    // Draw the lazily initialised parameters once, before the model is cloned.
    let _ = parameters(&base);
    let step = StepConfig::new();
    let mut adam_single = AdamConfig::new().init();
    let (x, y) = shard(0, &device);
    let (single, single_report) = scal_step(base.clone(), &mut adam_single, 1e-3, x, y, &step);

    let mut adam_dp = AdamConfig::new().init();
    let devices = [device.clone(), device.clone()];
    let (dp, dp_report) = scal_step_data_parallel(
        base,
        &mut adam_dp,
        1e-3,
        vec![shard(0, &device), shard(0, &device)],
        &devices,
        &step,
    );
    let (a, b) = (parameters(&single), parameters(&dp));
    assert_eq!(a.len(), b.len());
    assert!(a.len() > 50, "{} parameter tensors", a.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x, y, "{name} differs");
    }
    assert_eq!(single_report.loss, dp_report.loss);
    assert_eq!(
        single_report
            .reward_counts
            .iter()
            .map(|c| 2 * c)
            .collect::<Vec<_>>(),
        dp_report.reward_counts
    );
}

/// Two different shards with plain SGD: the data-parallel update must be the mean of the two
/// single-shard updates, ((w − lr·g₁) + (w − lr·g₂)) / 2 = w − lr·(g₁ + g₂)/2.
#[test]
fn two_shards_average_their_gradients() {
    let device = Device::flex().autodiff();
    let base = model(&device);
    let w0 = parameters(&base);
    let step = StepConfig::new();
    let single = |i: usize| {
        let mut sgd = SgdConfig::new().init();
        let (x, y) = shard(i, &device);
        let (m, report) = scal_step(base.clone(), &mut sgd, 0.5, x, y, &step);
        (parameters(&m), report)
    };
    let ((w1, r1), (w2, r2)) = (single(0), single(1));
    let mut sgd = SgdConfig::new().init();
    let (dp, report) = scal_step_data_parallel(
        base.clone(),
        &mut sgd,
        0.5,
        vec![shard(0, &device), shard(1, &device)],
        &[device.clone(), device.clone()],
        &step,
    );
    let got = parameters(&dp);
    let mut changed = 0;
    for (((name, w), (_, a)), ((_, b), (_, d))) in w0.iter().zip(&w1).zip(w2.iter().zip(&got)) {
        let scale = a
            .iter()
            .chain(b)
            .chain(d)
            .fold(1e-3f32, |m, v| m.max(v.abs()));
        for i in 0..w.len() {
            let expected = 0.5 * (a[i] + b[i]);
            assert!(
                (expected - d[i]).abs() <= 1e-5 * scale,
                "{name}[{i}]: expected {expected}, got {}",
                d[i]
            );
        }
        changed += usize::from(w != d);
    }
    assert!(changed > 50, "only {changed} tensors changed");
    assert!((report.loss - (r1.loss + r2.loss) / 2.0).abs() < 1e-5);
    assert_eq!(
        report.reward_counts,
        r1.reward_counts
            .iter()
            .zip(&r2.reward_counts)
            .map(|(a, b)| a + b)
            .collect::<Vec<_>>()
    );
}

fn config(root: &Path, devices: &str) -> Result<TrainingConfig, scal_train::TrainError> {
    TrainingConfig::resolve(
        Profile::Quick,
        None,
        &common::tiny_overrides(
            root,
            &[
                ("optim.epochs", "2"),
                ("optim.milestones", "[]"),
                ("eval.every_epochs", "2"),
                ("devices", devices),
            ],
        ),
    )
}

/// A two-replica run trains, logs every iteration, evaluates and saves `config.json` with
/// its devices; a third device for 4 identities per batch is refused, naming the field.
#[test]
fn a_data_parallel_run_trains_and_uneven_shards_are_refused() {
    let root = common::tiny_dataset();
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("dp");
    let flex = Device::flex();
    let outcome = scal_train::train(
        &config(&root, "[0,0]").unwrap(),
        &run,
        scal_train::Start::New,
        &[flex.clone(), flex],
        &mut (),
    )
    .unwrap();
    let RunOutcome::Finished {
        last, iterations, ..
    } = outcome
    else {
        panic!("not finished: {outcome:?}")
    };
    assert!(iterations > 0);
    assert!(last.plain.map > 0.0 && last.plain.map <= 1.0);
    let saved = TrainingConfig::load_json(&run.join("config.json")).unwrap();
    assert_eq!(saved.devices, vec![0, 0]);
    let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let train_lines = lines
        .lines()
        .filter(|l| l.contains("\"kind\":\"train\""))
        .count();
    assert_eq!(train_lines as u64, iterations);

    let err = config(&root, "[0,0,0]").unwrap_err().to_string();
    assert!(err.contains("devices") && err.contains("data.p"), "{err}");
}
