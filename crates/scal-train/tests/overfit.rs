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
