//! A tiny SCAL model learns a tiny synthetic batch.

use burn::optim::AdamConfig;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use scal_model::objective::StepConfig;
use scal_model::{AttentionKind, ScalConfig};
use scal_train::scal_step;

#[test]
fn tiny_model_overfits_a_tiny_batch() {
    let device = Device::flex().autodiff();
    // Four identities, two images each: an identity-specific colour plus noise.
    let colours = [
        [1.0f32, -1.0, 0.0],
        [-1.0, 1.0, 0.5],
        [0.5, 0.5, -1.0],
        [-0.5, -0.5, 1.0],
    ];
    let (h, w) = (32, 16);
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (id, colour) in colours.iter().enumerate() {
        for _ in 0..2 {
            for c in colour {
                pixels.extend(std::iter::repeat_n(*c, h * w));
            }
            labels.push(id as i64);
        }
    }
    let noise = Tensor::<4>::random([8, 3, h, w], Distribution::Normal(0.0, 0.5), &device);
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [8, 3, h, w]), &device) + noise;
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [8]), &device);

    let mut model = ScalConfig::new(4)
        .with_base_width(4)
        .with_height(h)
        .with_width(w)
        .with_attention(AttentionKind::Channel)
        .with_critic_hidden(16)
        .init(&device);
    let mut optimizer = AdamConfig::new().init();
    let config = StepConfig::new();
    let mut reports = Vec::new();
    for _ in 0..60 {
        let (next, report) = scal_step(
            model,
            &mut optimizer,
            3e-3,
            images.clone(),
            labels.clone(),
            &config,
        );
        model = next;
        reports.push(report);
    }
    let first = &reports[0];
    let last = reports.last().unwrap();
    // ln(4) = 1.386 at the start; the smoothed cross-entropy's floor with eps = 0.1 over
    // four classes is about 0.43.
    assert!(first.classification > 1.2, "start: {first:?}");
    assert!(
        last.classification < 0.7,
        "the classifier must fit the batch: {last:?}"
    );
    assert!(
        last.triplet < 0.5 * first.triplet.max(0.05),
        "the triplet loss must fall: {first:?} -> {last:?}"
    );
    assert_eq!(
        last.correct_rate,
        Some(1.0),
        "every sample classified correctly: {last:?}"
    );
    assert!(reports.iter().all(|r| r.loss.is_finite()));
    // The critics learn to predict the reward: their error falls.
    let early: f32 = reports[..5]
        .iter()
        .map(|r| r.critic_error.unwrap())
        .sum::<f32>()
        / 5.0;
    let late: f32 = reports[55..]
        .iter()
        .map(|r| r.critic_error.unwrap())
        .sum::<f32>()
        / 5.0;
    assert!(late < early, "critic error {early} -> {late}");
}

/// A width-4 SCAL model for the probe batch (`[8, 3, 64, 32]`, 4 identities), critics of
/// width 8.
fn probe_sized_model(attention: AttentionKind, device: &Device) -> scal_model::ScalModel {
    ScalConfig::new(4)
        .with_base_width(4)
        .with_height(64)
        .with_width(32)
        .with_attention(attention)
        .with_critic_hidden(8)
        .init(device)
}

/// Every parameter's values, by module path prefix (`critics` or not).
fn flattened(model: &scal_model::ScalModel) -> (Vec<f32>, Vec<f32>) {
    let critics: Vec<f32> = model
        .critics
        .critics
        .iter()
        .flat_map(|c| {
            [&c.fc1.weight, &c.fc2.weight]
                .into_iter()
                .flat_map(|p| p.val().into_data().try_to_vec::<f32>().unwrap())
        })
        .collect();
    let backbone = model
        .backbone
        .conv1
        .weight
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    (critics, backbone)
}

#[test]
fn the_critics_take_no_weight_decay_and_the_rest_does() {
    let device = Device::flex().autodiff();
    let (images, labels) = scal_model::probe::probe_batch(&device);
    let model = probe_sized_model(AttentionKind::Channel, &device);
    let (critics_before, backbone_before) = flattened(&model);
    // A zero loss: every gradient is zero, so only weight decay can move a parameter.
    let loss = scal_model::objective::scal_loss(&model, images, labels, &StepConfig::new());
    let grads =
        burn::optim::GradientsParams::from_grads(loss.total.mul_scalar(0.0).backward(), &model);
    let options = scal_train::config::OptimOptions::new(); // weight decay 5e-4, critics 0
    let mut optimizer = scal_train::optim::optimizer(&options);
    let model = optimizer.step(1e-3, model, grads);
    let (critics_after, backbone_after) = flattened(&model);
    assert_eq!(critics_before, critics_after, "critics: no decay");
    assert_ne!(backbone_before, backbone_after, "the backbone decays");

    // With a critic decay configured, the critics move too.
    let (images, labels) = scal_model::probe::probe_batch(&device);
    let loss = scal_model::objective::scal_loss(&model, images, labels, &StepConfig::new());
    let grads =
        burn::optim::GradientsParams::from_grads(loss.total.mul_scalar(0.0).backward(), &model);
    let mut optimizer = scal_train::optim::optimizer(&options.with_critic_weight_decay(5e-4));
    let model = optimizer.step(1e-3, model, grads);
    assert_ne!(
        critics_after,
        flattened(&model).0,
        "critic decay when asked for"
    );
}

/// The diagnostic's rate must lie strictly between 0 and 1 for the comparison to say
/// anything, and which samples improve depends on the model's initial draws. Burn's flex
/// backend draws every random number from one process-wide generator, so those draws depend
/// on what the other tests of this binary draw meanwhile (this test once saw a rate of 1 in
/// a full run): the measurement runs alone, seeded, in a child process of this test binary
/// ([`amelioration_diagnostic_alone`]).
#[test]
fn the_amelioration_diagnostic_measures_the_training_steps_r_a() {
    assert!(
        crate::common::passes_alone(
            "overfit::amelioration_diagnostic_alone",
            "SCAL_TEST_AMELIORATION_ALONE"
        ),
        "the amelioration diagnostic, run alone, failed"
    );
}

/// The measurement of [`the_amelioration_diagnostic_measures_the_training_steps_r_a`], run
/// alone in its own process (it does nothing when started otherwise).
#[test]
#[ignore = "started alone by the_amelioration_diagnostic_measures_the_training_steps_r_a"]
fn amelioration_diagnostic_alone() {
    if std::env::var_os("SCAL_TEST_AMELIORATION_ALONE").is_none() {
        return;
    }
    let device = Device::flex().autodiff();
    device.seed(3);
    let (images, labels) = scal_model::probe::probe_batch(&device);
    // A few steps so that attention and the no-attention pass differ per sample.
    let mut model = probe_sized_model(AttentionKind::Spatial, &device);
    let mut optimizer = AdamConfig::new().init();
    for _ in 0..3 {
        let (next, _) = scal_step(
            model,
            &mut optimizer,
            1e-2,
            images.clone(),
            labels.clone(),
            &StepConfig::new(),
        );
        model = next;
    }
    let before = model.backbone.conv1.weight.val().into_data();
    let label_values: Vec<i64> = labels.clone().into_data().iter::<i64>().collect();
    let running_before = model.neck.running_mean.value_sync().into_data();
    let (all, _per_module) =
        scal_train::eval::amelioration_on_batch(&model, images.clone(), &label_values);
    assert_eq!(
        running_before,
        model.neck.running_mean.value_sync().into_data(),
        "the diagnostic leaves the running statistics"
    );
    let report = scal_model::objective::StepReport::from_loss(&scal_model::objective::scal_loss(
        &model,
        images,
        labels,
        &StepConfig::new(),
    ));
    let step_rate = report.amelioration_rate.expect("a critic step reports R_a");
    assert_eq!(all as f32 / label_values.len() as f32, step_rate);
    assert!(
        step_rate > 0.0 && step_rate < 1.0,
        "a rate between 0 and 1 makes the comparison informative: {step_rate}"
    );
    assert_eq!(
        before,
        model.backbone.conv1.weight.val().into_data(),
        "the diagnostic changes no parameter"
    );
}

#[test]
fn the_critics_learn_at_their_own_rate_when_asked() {
    let device = Device::flex().autodiff();
    let (images, labels) = scal_model::probe::probe_batch(&device);
    let model = probe_sized_model(AttentionKind::Channel, &device);
    let (critics_before, backbone_before) = flattened(&model);
    let step = |factor: f64| {
        let loss = scal_model::objective::scal_loss(
            &model,
            images.clone(),
            labels.clone(),
            &StepConfig::new(),
        );
        let grads = burn::optim::GradientsParams::from_grads(loss.total.backward(), &model);
        let options = scal_train::config::OptimOptions::new()
            .with_weight_decay(0.0)
            .with_critic_lr_factor(factor);
        let next = scal_train::optim::optimizer(&options).step(1e-3, model.clone(), grads);
        flattened(&next)
    };
    let delta = |after: &[f32], before: &[f32]| -> Vec<f32> {
        after.iter().zip(before).map(|(a, b)| a - b).collect()
    };
    let (critics_1, backbone_1) = step(1.0);
    let (critics_10, backbone_10) = step(10.0);
    // Adam's first step is lr · m̂ / (√v̂ + ε): ten times the rate, ten times the step.
    let (d1, d10) = (
        delta(&critics_1, &critics_before),
        delta(&critics_10, &critics_before),
    );
    let moved: Vec<(f32, f32)> = d1
        .into_iter()
        .zip(d10)
        .filter(|(a, _)| a.abs() > 1e-6)
        .collect();
    assert!(!moved.is_empty());
    for (a, b) in moved {
        assert!((b / a - 10.0).abs() < 1e-2, "{a} then {b}");
    }
    assert_eq!(
        delta(&backbone_1, &backbone_before),
        delta(&backbone_10, &backbone_before),
        "the rest keeps the scheduled rate"
    );
}
