//! The gradient routing of a SCAL step (`docs/scal-method.md`), on a small model:
//! J_mse reaches only the critics, J_cri only the agents, J_tri + J_cls never the critics,
//! and the summed loss gives every parameter exactly the gradient of its own terms.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use scal_model::objective::{CriticTarget, StepConfig, scal_loss};
use scal_model::{AttentionKind, ScalConfig, ScalModel};

/// Gradients of every float parameter of a module (None when it got none).
struct Collect<'a> {
    grads: &'a GradientsParams,
    out: Vec<(ParamId, Option<Vec<f32>>)>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let grad = self
            .grads
            .get::<D>(param.id)
            .map(|g| g.into_data().try_into_vec::<f32>().unwrap());
        self.out.push((param.id, grad));
    }
}

fn collect<M: Module>(module: &M, grads: &GradientsParams) -> Vec<(ParamId, Option<Vec<f32>>)> {
    let mut c = Collect {
        grads,
        out: Vec::new(),
    };
    module.visit(&mut c);
    c.out
}

/// Sum of squared gradients of a module's parameters.
fn energy<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    collect(module, grads)
        .into_iter()
        .flat_map(|(_, g)| g.unwrap_or_default())
        .map(|v| (v as f64) * (v as f64))
        .sum()
}

struct Setup {
    model: ScalModel,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
}

fn setup(kind: AttentionKind) -> Setup {
    let device = Device::flex().autodiff();
    let model = ScalConfig::new(4)
        .with_base_width(4)
        .with_height(64)
        .with_width(32)
        .with_attention(kind)
        .with_critic_hidden(16)
        .init(&device);
    let images = Tensor::<4>::random([8, 3, 64, 32], Distribution::Normal(0.0, 1.0), &device);
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(vec![0i64, 0, 1, 1, 2, 2, 3, 3], [8]),
        &device,
    );
    Setup {
        model,
        images,
        labels,
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Term {
    ReidLosses,
    CriticObjective,
    CriticMse,
    Total,
}

fn gradients(s: &Setup, term: Term, config: &StepConfig) -> GradientsParams {
    let loss = scal_loss(&s.model, s.images.clone(), s.labels.clone(), config);
    let tensor = match term {
        Term::ReidLosses => loss.triplet + loss.classification,
        Term::CriticObjective => loss.critic_objective.unwrap().mul_scalar(config.lambda),
        Term::CriticMse => loss.critic_mse.unwrap(),
        Term::Total => loss.total,
    };
    GradientsParams::from_grads(tensor.backward(), &s.model)
}

struct Energies {
    backbone: f64,
    agents: f64,
    critics: f64,
    head: f64,
}

fn energies(s: &Setup, grads: &GradientsParams) -> Energies {
    Energies {
        backbone: energy(&s.model.backbone, grads),
        agents: energy(&s.model.attention, grads),
        critics: energy(&s.model.critics, grads),
        head: energy(&s.model.neck, grads) + energy(&s.model.classifier, grads),
    }
}

#[test]
fn each_term_reaches_only_its_parameters() {
    for kind in [AttentionKind::Channel, AttentionKind::Spatial] {
        let s = setup(kind);
        let config = StepConfig::new();

        let e = energies(&s, &gradients(&s, Term::CriticMse, &config));
        assert!(e.critics > 0.0, "{kind}: J_mse must train the critics");
        assert_eq!(
            (e.backbone, e.agents, e.head),
            (0.0, 0.0, 0.0),
            "{kind}: J_mse leaks"
        );

        let e = energies(&s, &gradients(&s, Term::CriticObjective, &config));
        assert!(e.agents > 0.0, "{kind}: J_cri must train the agents");
        assert_eq!(
            (e.backbone, e.critics, e.head),
            (0.0, 0.0, 0.0),
            "{kind}: J_cri leaks"
        );

        let e = energies(&s, &gradients(&s, Term::ReidLosses, &config));
        assert!(
            e.backbone > 0.0 && e.agents > 0.0 && e.head > 0.0,
            "{kind}: J_tri + J_cls"
        );
        assert_eq!(
            e.critics, 0.0,
            "{kind}: J_tri + J_cls must not reach the critics"
        );
    }
}

#[test]
fn the_summed_loss_gives_each_parameter_the_gradient_of_its_own_terms() {
    let s = setup(AttentionKind::Channel);
    let config = StepConfig::new().with_lambda(0.7);
    let parts: Vec<HashMap<ParamId, Vec<f32>>> =
        [Term::ReidLosses, Term::CriticObjective, Term::CriticMse]
            .into_iter()
            .map(|t| {
                collect(&s.model, &gradients(&s, t, &config))
                    .into_iter()
                    .filter_map(|(id, g)| g.map(|g| (id, g)))
                    .collect()
            })
            .collect();
    let total = collect(&s.model, &gradients(&s, Term::Total, &config));
    let mut compared = 0;
    for (id, grad) in total {
        let expected: Option<Vec<f32>> = parts
            .iter()
            .filter_map(|p| p.get(&id))
            .cloned()
            .reduce(|a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect());
        match (grad, expected) {
            (None, None) => {}
            (Some(g), Some(e)) => {
                let scale = e.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
                let diff = g
                    .iter()
                    .zip(&e)
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    diff <= 1e-4 * scale,
                    "parameter {id}: summed-loss gradient differs by {diff} (scale {scale})"
                );
                compared += 1;
            }
            (g, e) => panic!(
                "parameter {id}: gradient present in sum {} vs parts {}",
                g.is_some(),
                e.is_some()
            ),
        }
    }
    assert!(compared > 50, "compared {compared} parameters");
}

#[test]
fn without_critic_no_reward_and_no_critic_gradient() {
    let s = setup(AttentionKind::Spatial);
    let config = StepConfig::new().with_critic(false);
    let loss = scal_loss(&s.model, s.images.clone(), s.labels.clone(), &config);
    assert!(loss.rewards.is_none() && loss.critic_objective.is_none());
    let e = energies(
        &s,
        &GradientsParams::from_grads(loss.total.backward(), &s.model),
    );
    assert_eq!(e.critics, 0.0);
    assert!(e.agents > 0.0);
}

#[test]
fn exploration_trains_the_critics_on_the_perturbed_pass_and_the_agents_at_their_own_maps() {
    let s = setup(AttentionKind::Channel);
    let paper = StepConfig::new();
    let exploring = StepConfig::new().with_exploration(0.5);
    // Routing holds as in the paper's step.
    let e = energies(&s, &gradients(&s, Term::CriticMse, &exploring));
    assert!(e.critics > 0.0 && (e.backbone, e.agents, e.head) == (0.0, 0.0, 0.0));
    let e = energies(&s, &gradients(&s, Term::CriticObjective, &exploring));
    assert!(e.agents > 0.0 && (e.backbone, e.critics, e.head) == (0.0, 0.0, 0.0));
    // J_cri reads the agents' own maps: the same gradient with or without exploration.
    let own: HashMap<ParamId, Vec<f32>> =
        collect(&s.model, &gradients(&s, Term::CriticObjective, &paper))
            .into_iter()
            .filter_map(|(id, g)| g.map(|g| (id, g)))
            .collect();
    let explored = collect(&s.model, &gradients(&s, Term::CriticObjective, &exploring));
    for (id, g) in explored
        .into_iter()
        .filter_map(|(id, g)| g.map(|g| (id, g)))
    {
        let reference = &own[&id];
        assert!(
            g.iter()
                .zip(reference)
                .all(|(a, b)| (a - b).abs() <= 1e-6 * (1.0 + b.abs()))
        );
    }
    // The critics' estimates are of the perturbed maps: they differ from the paper step's.
    let values = |config: &StepConfig| -> Vec<f32> {
        let loss = scal_loss(&s.model, s.images.clone(), s.labels.clone(), config);
        loss.values
            .into_iter()
            .flat_map(|v| v.into_data().iter::<f32>().collect::<Vec<_>>())
            .collect()
    };
    let (a, b) = (values(&paper), values(&exploring));
    let moved = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| (*x - *y).abs() > 1e-5)
        .count();
    assert!(
        moved > a.len() / 2,
        "{moved} of {} estimates moved",
        a.len()
    );
}

/// The true class's probability and whether the class is the top one, per sample.
fn true_class(logits: Tensor<2>, labels: &[i64]) -> Vec<(f32, bool)> {
    let [n, k] = logits.dims();
    let p: Vec<f32> = burn::tensor::activation::softmax(logits, 1)
        .into_data()
        .iter::<f32>()
        .collect();
    (0..n)
        .map(|i| {
            let row = &p[i * k..(i + 1) * k];
            let y = labels[i] as usize;
            (row[y], row.iter().all(|&q| q <= row[y]))
        })
        .collect()
}

#[test]
fn per_module_targets_teach_each_critic_its_own_modules_reward() {
    let s = setup(AttentionKind::Channel);
    let per_module = StepConfig::new().with_critic_target(CriticTarget::PerModule);
    // Routing holds as in the paper's step, and J_cri, which reads no reward, is the same.
    let e = energies(&s, &gradients(&s, Term::CriticMse, &per_module));
    assert!(e.critics > 0.0 && (e.backbone, e.agents, e.head) == (0.0, 0.0, 0.0));
    let e = energies(&s, &gradients(&s, Term::CriticObjective, &per_module));
    assert!(e.agents > 0.0 && (e.backbone, e.critics, e.head) == (0.0, 0.0, 0.0));
    let loss = scal_loss(&s.model, s.images.clone(), s.labels.clone(), &per_module);
    let paper = scal_loss(
        &s.model,
        s.images.clone(),
        s.labels.clone(),
        &StepConfig::new(),
    );
    let scalar = |t: Option<Tensor<1>>| -> f32 { t.unwrap().into_scalar() };
    assert_eq!(
        scalar(loss.critic_objective.clone()),
        scalar(paper.critic_objective)
    );

    // J_mse = Σ_l mean (V_l − T_l)², T_l = R_c + R_a^l computed here apart: R_c from the
    // pass with every module, R_a^l against the pass with module l's map replaced by ones.
    let labels: Vec<i64> = s.labels.clone().into_data().iter::<i64>().collect();
    let copy = s.model.no_attention_copy();
    let with = true_class(
        copy.forward(s.images.clone(), scal_model::Gating::On)
            .logits,
        &labels,
    );
    let mut expected = 0.0f64;
    let mut targets = Vec::new();
    for (l, values) in loss.values.iter().enumerate() {
        let without = true_class(copy.logits_without_module(s.images.clone(), l), &labels);
        let target: Vec<f32> = with
            .iter()
            .zip(&without)
            .map(|(&(p, top), &(q, _))| f32::from(top) + f32::from(p > q))
            .collect();
        let v: Vec<f32> = values.clone().into_data().iter::<f32>().collect();
        expected += v
            .iter()
            .zip(&target)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            / v.len() as f64;
        targets.push(target);
    }
    let mse = f64::from(scalar(loss.critic_mse));
    assert!(
        (mse - expected).abs() <= 1e-5 * expected.max(1.0),
        "{mse} against {expected}"
    );
    assert!(
        targets.iter().any(|t| t != &targets[0]),
        "the modules' rewards differ somewhere: {targets:?}"
    );
    // The paper's step teaches every critic the same R: its J_mse is another number.
    assert!((f64::from(scalar(paper.critic_mse)) - mse).abs() > 1e-6);
}
