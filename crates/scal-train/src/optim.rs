//! The trainer's optimizer: one Adam with two parameter groups, the critics (their own
//! weight decay and learning-rate factor) and the rest.

use burn::module::ParamGroup;
use burn::optim::{
    AdamConfig, DynOptimizer, DynState, ModuleOptimizer, StateSink, StateSource,
    decay::WeightDecayConfig,
};
use burn::tensor::Device;
use burn::tensor::kind::BridgeTensor;

use crate::config::OptimOptions;

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

/// The module path of the critics in [`ScalModel`](scal_model::ScalModel) (its field name).
const CRITICS_PATH: &str = "critics";
