//! The same SCAL model on two devices (two backends): does the forward pass, and does one
//! training step, give the same numbers?
//!
//! Used by the `backend_parity` test (flex against wgpu), by `cargo xtask parity --backend
//! …` ([`ParityArgs`], the command) and by `scripts/gpu-check.sh`. Both models get the same weights (through a checkpoint
//! file) and the same deterministic inputs; every comparison is a [`ParityCheck`] with its
//! measured value and its limit.
//!
//! What is compared, and the limits:
//! - forward pass (channel, spatial and no attention): logits, BN-neck features, the five
//!   attention maps and the flip-averaged embedding — largest absolute difference relative
//!   to the largest reference magnitude ≤ 1e-4;
//! - one SCAL step (channel and spatial; plain SGD at learning rate 1, so each weight's
//!   change is its gradient): the total loss, J_tri, J_cls and J_mse within 1e-4 relative;
//!   the rewards (decisions: correct / ameliorated rates) equal; the whole-model update's
//!   cosine > 0.99. Not element-wise: on a random narrow model the batch-hard triplet's
//!   mining meets near-ties that two backends' rounding can break differently, and small
//!   tensors whose gradients are differences of large terms (the agents, the stem's batch
//!   norm) differ by a few percent; measured relative L2 differences of the whole update on
//!   flex against wgpu were 0.02-7 %.

use burn::optim::SgdConfig;
use burn::tensor::{Device, Tensor};
use scal_model::{AttentionKind, Gating, ScalModel};

use anyhow::{Result, bail};
use scal_model::objective::StepConfig;
use scal_run::Backend;
use scal_train::scal_step;

/// Relative tolerance of forward outputs and losses.
pub const FORWARD_TOLERANCE: f64 = 1e-4;
/// Smallest accepted cosine between the two whole-model updates of one step.
pub const UPDATE_MIN_COSINE: f64 = 0.99;

/// How a check's value is judged.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// `value ≤ limit` (a relative difference).
    AtMost,
    /// `value ≥ limit` (a cosine).
    AtLeast,
    /// `value == limit` (decisions that must agree exactly; value is |a − b|, limit 0).
    Equal,
}

/// One comparison between the reference device and the other one.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParityCheck {
    /// What was compared, e.g. `forward/channel/logits`.
    pub name: String,
    /// The measured value (a relative difference, a cosine, or |a − b|).
    pub value: f64,
    /// The limit the value is judged against.
    pub limit: f64,
    /// How the value is judged.
    pub criterion: Criterion,
    /// Whether the check passed.
    pub passed: bool,
}

impl ParityCheck {
    fn new(name: impl Into<String>, value: f64, limit: f64, criterion: Criterion) -> Self {
        let passed = match criterion {
            Criterion::AtMost => value <= limit,
            Criterion::AtLeast => value >= limit,
            Criterion::Equal => value == limit,
        };
        ParityCheck {
            name: name.into(),
            value,
            limit,
            criterion,
            passed: passed && value.is_finite(),
        }
    }
}

pub use scal_model::probe::{
    float_tensors, probe_batch as parity_batch, probe_config as parity_model_config,
};

/// The same freshly initialised weights on both devices (through a checkpoint file).
fn same_model_on(
    attention: AttentionKind,
    a: &Device,
    b: &Device,
) -> Result<(ScalModel, ScalModel)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("parity.bpk");
    let cfg = parity_model_config(attention);
    cfg.init(a).save_checkpoint(&path)?;
    Ok((
        cfg.init(a).load_checkpoint(&path)?,
        cfg.init(b).load_checkpoint(&path)?,
    ))
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor")
}

/// Largest |a − b| relative to the largest |a| (NaN anywhere gives NaN, which fails).
pub fn max_relative_difference(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared tensors differ in size");
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let scale = a.iter().fold(1e-6f64, |m, v| m.max(v.abs() as f64));
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

/// The forward pass of the three attention kinds on `reference` and `other`.
pub fn forward_parity(reference: &Device, other: &Device) -> Result<Vec<ParityCheck>> {
    let mut checks = Vec::new();
    let tol = FORWARD_TOLERANCE;
    for attention in [
        AttentionKind::Channel,
        AttentionKind::Spatial,
        AttentionKind::None,
    ] {
        let (a, b) = same_model_on(attention, reference, other)?;
        let (x_a, _) = parity_batch(reference);
        let (x_b, _) = parity_batch(other);
        let out_a = a.forward(x_a.clone(), Gating::On);
        let out_b = b.forward(x_b.clone(), Gating::On);
        let name = |what: &str| format!("forward/{attention}/{what}");
        checks.push(ParityCheck::new(
            name("logits"),
            max_relative_difference(&host(out_a.logits), &host(out_b.logits)),
            tol,
            Criterion::AtMost,
        ));
        checks.push(ParityCheck::new(
            name("feature"),
            max_relative_difference(&host(out_a.feature), &host(out_b.feature)),
            tol,
            Criterion::AtMost,
        ));
        for (l, (ma, mb)) in out_a.maps.into_iter().zip(out_b.maps).enumerate() {
            checks.push(ParityCheck::new(
                name(&format!("map{}", l + 1)),
                max_relative_difference(&host(ma), &host(mb)),
                tol,
                Criterion::AtMost,
            ));
        }
        checks.push(ParityCheck::new(
            name("embedding_flip"),
            max_relative_difference(&host(a.embed(x_a, true)), &host(b.embed(x_b, true))),
            tol,
            Criterion::AtMost,
        ));
    }
    Ok(checks)
}

/// One SCAL training step (channel and spatial attention) on `reference` and `other`
/// (autodiff is turned on for both here).
pub fn step_parity(reference: &Device, other: &Device) -> Result<Vec<ParityCheck>> {
    let (ref_dev, other_dev) = (reference.clone().autodiff(), other.clone().autodiff());
    let mut checks = Vec::new();
    let tol = FORWARD_TOLERANCE;
    for attention in [AttentionKind::Channel, AttentionKind::Spatial] {
        let (a, b) = same_model_on(attention, &ref_dev, &other_dev)?;
        let before = float_tensors(&a);
        let step = StepConfig::new();
        let (x_a, y_a) = parity_batch(&ref_dev);
        let (x_b, y_b) = parity_batch(&other_dev);
        let (mut opt_a, mut opt_b) = (SgdConfig::new().init(), SgdConfig::new().init());
        let (a, ra) = scal_step(a, &mut opt_a, 1.0, x_a, y_a, &step);
        let (b, rb) = scal_step(b, &mut opt_b, 1.0, x_b, y_b, &step);
        let name = |what: &str| format!("step/{attention}/{what}");
        let rel = |x: f32, y: f32| (x as f64 - y as f64).abs() / (x.abs() as f64).max(1.0);
        let pairs = [
            ("loss", Some(ra.loss), Some(rb.loss)),
            ("triplet", Some(ra.triplet), Some(rb.triplet)),
            (
                "classification",
                Some(ra.classification),
                Some(rb.classification),
            ),
            ("critic_mse", ra.critic_mse, rb.critic_mse),
        ];
        for (what, x, y) in pairs {
            let value = match (x, y) {
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => rel(x, y),
                (None, None) => continue,
                _ => f64::NAN,
            };
            checks.push(ParityCheck::new(name(what), value, tol, Criterion::AtMost));
        }
        for (what, x, y) in [
            ("correct_rate", ra.correct_rate, rb.correct_rate),
            (
                "amelioration_rate",
                ra.amelioration_rate,
                rb.amelioration_rate,
            ),
        ] {
            let value = match (x, y) {
                (Some(x), Some(y)) => (x as f64 - y as f64).abs(),
                (None, None) => continue,
                _ => f64::NAN,
            };
            checks.push(ParityCheck::new(name(what), value, 0.0, Criterion::Equal));
        }
        let (wa, wb) = (float_tensors(&a), float_tensors(&b));
        let delta = |w: &[(String, Vec<f32>)]| -> Vec<f64> {
            w.iter()
                .zip(&before)
                .flat_map(|((_, x), (_, x0))| x.iter().zip(x0).map(|(p, q)| (p - q) as f64))
                .collect()
        };
        let names_agree = wa.len() == wb.len() && wa.iter().zip(&wb).all(|(x, y)| x.0 == y.0);
        let (da, db) = (delta(&wa), delta(&wb));
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cosine = if names_agree && da.len() == db.len() {
            da.iter().zip(&db).map(|(x, y)| x * y).sum::<f64>() / (norm(&da) * norm(&db))
        } else {
            f64::NAN
        };
        checks.push(ParityCheck::new(
            name("update_cosine"),
            cosine,
            UPDATE_MIN_COSINE,
            Criterion::AtLeast,
        ));
        let diff: Vec<f64> = da.iter().zip(&db).map(|(x, y)| x - y).collect();
        // Reported for information (no limit: see the module documentation).
        checks.push(ParityCheck::new(
            name("update_relative_l2"),
            norm(&diff) / norm(&da),
            f64::INFINITY,
            Criterion::AtMost,
        ));
    }
    Ok(checks)
}

/// Forward and step checks together.
pub fn parity(reference: &Device, other: &Device) -> Result<Vec<ParityCheck>> {
    let mut checks = forward_parity(reference, other)?;
    checks.extend(step_parity(reference, other)?);
    Ok(checks)
}

/// Compares the SCAL model's forward pass and one training step on flex and on another
/// backend ([`parity`]), one line per check; fails if any check fails.
#[derive(Debug, clap::Args)]
pub struct ParityArgs {
    /// The backend compared against flex.
    #[arg(long)]
    pub backend: Backend,
    /// With --backend remote: the `cargo xtask serve` server to compare (its device 0).
    #[arg(long, value_delimiter = ',', value_name = "ws://HOST:PORT")]
    pub hosts: Vec<String>,
    /// Print one JSON object per check (one per line).
    #[arg(long)]
    pub json: bool,
}

impl ParityArgs {
    /// Runs `cargo xtask parity`.
    pub fn run(self) -> Result<()> {
        check(&self)
    }
}

/// Runs the checks and prints one line (or JSON object) per check.
fn check(args: &ParityArgs) -> Result<()> {
    let reference = crate::backend::device(Backend::Flex)?;
    let other = crate::backend::device_on(args.backend, &args.hosts)?;
    let device = crate::backend::device_name(args.backend, &other);
    let checks = parity(&reference, &other)?;
    for c in &checks {
        if args.json {
            let mut v = serde_json::to_value(c)?;
            v["reference"] = "flex".into();
            v["backend"] = args.backend.to_string().into();
            v["device"] = device.clone().into();
            println!("{v}");
        } else {
            println!(
                "{:<4} {:<38} {:>12.3e}  ({:?} {:e})",
                if c.passed { "ok" } else { "FAIL" },
                c.name,
                c.value,
                c.criterion,
                c.limit
            );
        }
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    if failed > 0 {
        bail!(
            "{failed} of {} parity checks failed between flex and {} ({device})",
            checks.len(),
            args.backend
        );
    }
    if !args.json {
        println!(
            "all {} checks passed: flex and {} ({device}) agree",
            checks.len(),
            args.backend
        );
    }
    Ok(())
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    #[test]
    fn a_device_agrees_with_itself_exactly() {
        let cpu = Device::flex();
        let checks = forward_parity(&cpu, &cpu).unwrap();
        // channel and spatial: logits, feature, 5 maps, embedding; none: no maps.
        assert_eq!(checks.len(), 8 + 8 + 3);
        for c in &checks {
            assert!(c.passed, "{c:?}");
            assert_eq!(c.value, 0.0, "{}: flex is deterministic", c.name);
        }
    }

    #[test]
    fn a_changed_number_fails_its_check() {
        let a = vec![1.0f32, -2.0, 3.0];
        assert_eq!(max_relative_difference(&a, &a), 0.0);
        let b = vec![1.0f32, -2.0, 3.001];
        let d = max_relative_difference(&a, &b);
        assert!((d - 0.001 / 3.0).abs() < 1e-6, "{d}");
        assert!(!ParityCheck::new("x", d, 1e-4, Criterion::AtMost).passed);
        let nan = vec![1.0f32, f32::NAN, 3.0];
        assert!(
            !ParityCheck::new(
                "x",
                max_relative_difference(&a, &nan),
                1e-4,
                Criterion::AtMost
            )
            .passed
        );
        assert!(!ParityCheck::new("c", 0.98, UPDATE_MIN_COSINE, Criterion::AtLeast).passed);
        assert!(!ParityCheck::new("r", 0.25, 0.0, Criterion::Equal).passed);
    }
}
