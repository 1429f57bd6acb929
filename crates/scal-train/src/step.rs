//! One SCAL training step on one device ([`scal_step`]) or data-parallel over several
//! ([`scal_step_data_parallel`]): the objective of `scal_model::objective`, one backward
//! pass, one optimizer step — or, with `update_order = critic_first` on one device, the
//! critics' step before the rest's. With compatible critics the gradients come from
//! `scal_model::objective::step_gradients` (their `J_cri` bounded per agent by the ReID
//! losses' gradient norm); `critic_first` is refused for them.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
use scal_model::ScalModel;
use scal_model::objective::{
    ScalLoss, StepConfig, StepReport, UpdateOrder, agents_critic_objective, scal_loss,
    step_gradients,
};

/// One step at learning rate `lr`. [`UpdateOrder::Joint`]: the summed loss, one backward
/// pass, one optimizer step. [`UpdateOrder::CriticFirst`] (with the critic on): a step of
/// the critics on `J_mse` alone, then `J_cri` recomputed against the updated critics and a
/// step of the rest on the triplet, classification and `λ·J_cri` losses. The report is
/// read before any update.
///
/// # Panics
/// With compatible critics and [`UpdateOrder::CriticFirst`] (training configurations refuse
/// it, naming `step.update_order`).
pub fn scal_step(
    model: ScalModel,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    config: &StepConfig,
) -> (ScalModel, StepReport) {
    let loss = scal_loss(&model, images, labels, config);
    let mut report = StepReport::from_loss(&loss);
    if config.update_order == UpdateOrder::CriticFirst && loss.critic_mse.is_some() {
        assert!(
            loss.bounded_critic_objectives.is_empty(),
            "compatible critics step jointly with the agents: step.update_order = joint"
        );
        let model = critic_first_step(model, optimizer, lr, loss, config.lambda);
        return (model, report);
    }
    let (grads, scales) = step_gradients(&model, &loss, config.lambda, 1.0);
    if !loss.bounded_critic_objectives.is_empty() {
        report.critic_push_scale = Some(scales);
    }
    (optimizer.step(lr, model, grads), report)
}

/// The critics first: a backward pass of `J_mse` and an optimizer step (it reaches the
/// critics only), then `J_cri` taken again against the updated critics on the same detached
/// stage inputs, and a second backward pass and step for `J_tri + J_cls + λ J_cri` (backbone,
/// agents, head). Each parameter still takes one optimizer step per iteration.
fn critic_first_step(
    model: ScalModel,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    loss: ScalLoss,
    lambda: f64,
) -> ScalModel {
    let mse = loss.critic_mse.expect("the critic is on");
    let critic_grads = GradientsParams::from_grads(mse.backward(), &model);
    let model = optimizer.step(lr, model, critic_grads);
    let cri = agents_critic_objective(&model, &loss.agent_inputs);
    let rest = loss.triplet + loss.classification + cri.mul_scalar(lambda);
    let grads = GradientsParams::from_grads(rest.backward(), &model);
    optimizer.step(lr, model, grads)
}

/// One data-parallel step over several devices: shard `i` (already on `devices[i]`) runs
/// the forward passes, the rewards and one backward pass on a replica of the model forked to
/// `devices[i]`; the gradients are brought to the model's device and summed with Burn's
/// `GradientsParams::to_device` and `GradientsAccumulator` (what burn-train's multi-device
/// strategy does), and one optimizer step updates the model.
///
/// Each shard's loss is scaled by 1/n before its backward pass, so with equal shards the
/// summed gradient is the mean of the shards' gradients, as in PyTorch's
/// DistributedDataParallel. Batch-hard mining and batch-norm batch statistics are per shard
/// (as in DDP without SyncBN); batch-norm running statistics take one momentum update per
/// shard, in shard order. The devices' work is enqueued before any result is read back, so
/// asynchronous GPU backends overlap; the report is the mean over shards (calibration
/// weighted by counts).
///
/// With one shard this is exactly [`scal_step`]; with several, the update order is always
/// [`UpdateOrder::Joint`] (training configs refuse `critic_first` on several devices).
///
/// # Shapes
/// - `shards[i]`: images `[N_i, 3, H, W]` and labels `[N_i]` on `devices[i]`
///
/// # Panics
/// If `shards` is empty or its length differs from `devices`'.
pub fn scal_step_data_parallel(
    model: ScalModel,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    shards: Vec<(Tensor<4>, Tensor<1, Int>)>,
    devices: &[Device],
    config: &StepConfig,
) -> (ScalModel, StepReport) {
    assert!(
        !shards.is_empty() && shards.len() == devices.len(),
        "{} shards for {} devices: one shard per device",
        shards.len(),
        devices.len()
    );
    let n = shards.len();
    if n == 1 {
        let (images, labels) = shards.into_iter().next().expect("one shard");
        return scal_step(model, optimizer, lr, images, labels, config);
    }
    let main = model
        .devices()
        .into_iter()
        .next()
        .expect("the model has a device");
    // Replicas first (copying the weights out of the main device), then every device's
    // forward and backward queued before anything is read back.
    let replicas: Vec<ScalModel> = devices.iter().map(|d| model.clone().fork(d)).collect();
    let mut pending = Vec::with_capacity(n);
    for ((images, labels), replica) in shards.into_iter().zip(replicas) {
        let loss = scal_loss(&replica, images, labels, config);
        let (grads, scales) = step_gradients(&replica, &loss, config.lambda, 1.0 / n as f64);
        pending.push((replica, loss, grads, scales));
    }
    let mut accumulator = GradientsAccumulator::new();
    let mut reports = Vec::with_capacity(n);
    for (replica, loss, grads, scales) in pending {
        accumulator.accumulate(&model, grads.to_device(&main, &replica));
        let mut report = StepReport::from_loss(&loss);
        if !loss.bounded_critic_objectives.is_empty() {
            report.critic_push_scale = Some(scales);
        }
        reports.push(report);
    }
    let grads = accumulator.grads();
    (optimizer.step(lr, model, grads), StepReport::mean(&reports))
}
