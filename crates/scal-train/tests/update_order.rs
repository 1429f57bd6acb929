//! The critics-first update order (`step.update_order = critic_first`): the critics take the
//! joint step's update, the backbone and head too, and the agents take the update of a joint
//! step whose critics were already updated — which differs from the joint step's.
use crate::common;
use burn::optim::SgdConfig;
use burn::tensor::Device;
use scal_model::objective::UpdateOrder;
use scal_model::probe::{float_tensors, probe_batch, probe_config};
use scal_model::{AttentionKind, ScalModel};
use scal_train::config::Profile;
use scal_train::{StepConfig, TrainError, TrainingConfig, scal_step};

/// Trainable parameters by name (batch-norm running statistics left out).
fn parameters(model: &ScalModel) -> Vec<(String, Vec<f32>)> {
    float_tensors(model)
        .into_iter()
        .filter(|(name, _)| !name.contains("running_"))
        .collect()
}

/// One plain-SGD step (lr 0.5) of `model` on the probe batch in the given order.
fn sgd_step(model: &ScalModel, order: UpdateOrder, device: &Device) -> ScalModel {
    let (images, labels) = probe_batch(device);
    let step = StepConfig::new().with_lambda(2.0).with_update_order(order);
    let mut sgd = SgdConfig::new().init();
    scal_step(model.clone(), &mut sgd, 0.5, images, labels, &step).0
}

/// Largest absolute difference between two models' parameters whose name passes `keep`.
fn max_difference(a: &ScalModel, b: &ScalModel, keep: impl Fn(&str) -> bool) -> f32 {
    let (a, b) = (parameters(a), parameters(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .filter(|((name, _), _)| keep(name))
        .flat_map(|((name, x), (other, y))| {
            assert_eq!(name, other);
            x.iter().zip(y).map(|(u, v)| (u - v).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn critic_first_updates_the_agents_against_the_updated_critics() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let base = probe_config(AttentionKind::Channel).init(&device);
    let _ = parameters(&base); // draw the lazily initialised parameters once
    let joint = sgd_step(&base, UpdateOrder::Joint, &device);
    let first = sgd_step(&base, UpdateOrder::CriticFirst, &device);
    let agents = |n: &str| n.starts_with("attention.");
    let others = |n: &str| !n.starts_with("attention.");

    // J_mse alone reaches the critics and J_tri + J_cls never depend on them: every
    // parameter but the agents' takes the same update in both orders.
    assert!(max_difference(&joint, &first, others) < 1e-6);
    // The agents' J_cri is taken against other critics, so they move differently.
    let moved = max_difference(&joint, &first, agents);
    assert!(
        moved > 1e-6,
        "the agents' update ignored the order ({moved})"
    );
    // Exactly: a joint step from the base whose critics are already the updated ones.
    let mut updated_critics = base.clone();
    updated_critics.critics = first.critics.clone();
    let reference = sgd_step(&updated_critics, UpdateOrder::Joint, &device);
    let gap = max_difference(&reference, &first, agents);
    assert!(gap < 1e-6, "agents differ from the reference by {gap}");
}

#[test]
fn critic_first_on_several_devices_is_refused_by_name() {
    let root = common::tiny_dataset();
    let overrides = common::tiny_overrides(
        &root,
        &[("step.update_order", "critic_first"), ("devices", "[0,0]")],
    );
    let err = TrainingConfig::resolve(Profile::Quick, None, &overrides)
        .expect_err("critic_first on two devices");
    assert!(
        matches!(&err, TrainError::InvalidField { field, .. } if field == "step.update_order"),
        "{err}"
    );
    // One device takes it, and an unknown order is named.
    let one = common::tiny_overrides(&root, &[("step.update_order", "critic_first")]);
    let config = TrainingConfig::resolve(Profile::Quick, None, &one).unwrap();
    assert_eq!(
        config.step.update_order,
        scal_run::step::UpdateOrder::CriticFirst
    );
    let bad = common::tiny_overrides(&root, &[("step.update_order", "actor_first")]);
    let err = TrainingConfig::resolve(Profile::Quick, None, &bad).unwrap_err();
    assert!(err.to_string().contains("step.update_order"), "{err}");
}
