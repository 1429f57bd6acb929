//! The counterfactual effect loss (issue 38, stage 4): `J_eff = CE(Y(A) − Y(Ā), y)` joins the
//! loss, trains the agents, and its intervention pass leaves the running statistics as the
//! attended pass alone leaves them.

use burn::module::{Module, ModuleVisitor};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use scal_model::objective::{StepConfig, scal_loss};
use scal_model::probe::{float_tensors, probe_batch, probe_config};
use scal_model::{AttentionKind, Gating, ScalModel};

fn running_statistics(model: &ScalModel) -> Vec<(String, Vec<f32>)> {
    model.sync_running_statistics();
    float_tensors(model)
        .into_iter()
        .filter(|(name, _)| name.contains("running"))
        .collect()
}

#[test]
fn the_counterfactual_effect_loss_trains_the_agents_and_leaves_the_running_statistics() {
    let device = Device::flex().autodiff();
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("probe.bpk");
    let config = probe_config(AttentionKind::Channel);
    let first = config.init(&device);
    first.initialize_parameters();
    first.save_checkpoint(&weights).unwrap();
    let second = config.init(&device).load_checkpoint(&weights).unwrap();
    let (images, labels) = probe_batch(&device);

    // The attended pass alone on one copy, the whole step with J_eff on the other.
    let _ = first.forward(images.clone(), Gating::On);
    let step = StepConfig::new()
        .with_critic(false)
        .with_counterfactual(true);
    let loss = scal_loss(&second, images, labels, &step);
    let effect = loss
        .counterfactual
        .clone()
        .expect("J_eff with counterfactual on");
    let effect_value: f32 = effect.clone().into_scalar();
    assert!(
        effect_value.is_finite() && effect_value > 0.0,
        "{effect_value}"
    );
    let total: f32 = loss.total.clone().into_scalar();
    let parts: f32 =
        (loss.triplet.clone() + loss.classification.clone() + effect.clone()).into_scalar();
    assert!((total - parts).abs() < 1e-5, "{total} against {parts}");
    let (before, after) = (running_statistics(&first), running_statistics(&second));
    assert!(!before.is_empty());
    assert!(
        before == after,
        "the intervention pass moved a running statistic"
    );

    let grads = GradientsParams::from_grads(effect.backward(), &second);
    let mut agents = 0;
    second.attention.visit(&mut Count(&grads, &mut agents));
    assert!(agents > 0, "J_eff reaches the agents");

    // Without the flag there is no J_eff.
    let (images, labels) = probe_batch(&device);
    let plain = scal_loss(
        &first,
        images,
        labels,
        &StepConfig::new().with_critic(false),
    );
    assert!(plain.counterfactual.is_none());
}

struct Count<'a>(&'a GradientsParams, &'a mut usize);

impl ModuleVisitor for Count<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if self.0.get::<D>(param.id).is_some() {
            *self.1 += 1;
        }
    }
}
