//! Several machines (`--backend remote`): flex devices served over WebSocket on localhost by
//! Burn's remote server, as `cargo xtask serve` serves them on each machine. A remote flex
//! device runs the same kernels as the local one but for one: Burn 0.22.1's remote protocol
//! (burn-router) carries no batch-norm training operation, so the client composes it from
//! primitives, while local flex runs the fused kernel of `vendor/burn-flex`. The two agree to
//! rounding, so everything here must agree to [`ROUNDING`] (relative), and everything
//! discrete (rewards, iteration counts) exactly.
use std::path::Path;

use burn::optim::AdamConfig;
use burn::server::{RemoteServer, WebSocketTransport};
use burn::tensor::Device;
use scal_model::AttentionKind;
use scal_model::probe::{float_tensors, probe_batch, probe_config as parity_model_config};
use scal_run::config::Profile;
use scal_train::{RunOutcome, StepConfig, TrainingConfig, scal_step_data_parallel};
use xtask::backend::{self, Backend};
use xtask::parity::parity;

use crate::common::{tiny_dataset, tiny_overrides};

/// Largest relative difference accepted between local flex and remote flex (relative to the
/// larger of the magnitude and 1): float32 rounding of a composed against a fused batch norm,
/// through one step. The differences seen are about 1e-6.
const ROUNDING: f64 = 1e-4;

/// Largest accepted `1 − cosine` between the local and the remote update of the whole model.
/// The spatial agents' gradients are differences of large terms (docs/benchmarks.md), and
/// Adam's first step is about `lr·sign(g)`, so a gradient that rounding moves across zero
/// flips its parameter's update.
const UPDATE_COSINE_GAP: f64 = 1e-3;

/// The cosine between two updates, `after − before`, of the whole model.
fn update_cosine(
    before: &[(String, Vec<f32>)],
    a: &[(String, Vec<f32>)],
    b: &[(String, Vec<f32>)],
) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (((_, w0), (_, wa)), (_, wb)) in before.iter().zip(a).zip(b) {
        for ((&w0, &wa), &wb) in w0.iter().zip(wa).zip(wb) {
            let (da, db) = ((wa - w0) as f64, (wb - w0) as f64);
            (ab, aa, bb) = (ab + da * db, aa + da * da, bb + db * db);
        }
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// `|a − b| / max(|a|, 1)`, the largest over two equally long lists.
fn max_rounding_difference(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs() / (x.abs() as f64).max(1.0))
        .fold(0.0, f64::max)
}

/// Shard `i` of the probe batch (4 identities × 2): rows `4i..4i+4`.
fn shard(
    i: usize,
    device: &Device,
) -> (
    burn::tensor::Tensor<4>,
    burn::tensor::Tensor<1, burn::tensor::Int>,
) {
    let (images, labels) = probe_batch(device);
    (images.narrow(0, 4 * i, 4), labels.narrow(0, 4 * i, 4))
}

/// The in-process servers serve this process's one flex device, whose random generator is
/// global: tests that seed and initialise models take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A server of this process's flex device on a free localhost port, as `ws://127.0.0.1:PORT`.
/// It serves until the test process exits.
fn serve_flex() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        RemoteServer::new([Device::flex()])
            .serve(WebSocketTransport::from_listener(listener))
            .unwrap()
    });
    url
}

/// Parity of flex against a remote flex device: the forward pass (no batch-norm training)
/// is bit-identical; in the step every difference is within [`ROUNDING`], the update cosine
/// is one to 1e-6 and the rewards are equal.
#[test]
fn a_remote_flex_device_computes_what_local_flex_computes() {
    let _serial = serial();
    let host = serve_flex();
    let remote = backend::device_on(Backend::Remote, std::slice::from_ref(&host)).unwrap();
    let checks = parity(&Device::flex(), &remote).unwrap();
    assert!(checks.len() > 20, "{} checks", checks.len());
    for c in &checks {
        eprintln!("{:<40} {:e}", c.name, c.value);
        assert!(c.passed, "{c:?}");
        if c.name.ends_with("update_cosine") {
            assert!(c.value >= 1.0 - UPDATE_COSINE_GAP, "{c:?}");
        } else if c.name.ends_with("update_relative_l2") {
            assert!(c.value < 1e-2, "{c:?}");
        } else if c.name.starts_with("step/") {
            assert!(c.value <= ROUNDING, "{c:?}");
        } else {
            assert_eq!(
                c.value, 0.0,
                "{}: the forward pass must be bit-identical",
                c.name
            );
        }
    }
}

/// One data-parallel step over two servers (model forked to the second, its gradients
/// moved to the first) gives the parameters of the same step with two replicas on the local
/// device, to [`ROUNDING`].
#[test]
fn a_step_over_two_servers_equals_the_local_data_parallel_step() {
    let _serial = serial();
    let hosts = [serve_flex(), serve_flex()];
    let remote: Vec<Device> = backend::devices(Backend::Remote, &hosts, &[0, 1])
        .unwrap()
        .into_iter()
        .map(|d| d.autodiff())
        .collect();
    assert_eq!(remote.len(), 2);
    let step = StepConfig::new();
    let run = |devices: &[Device]| {
        devices[0].seed(3);
        let model = parity_model_config(AttentionKind::Channel).init(&devices[0]);
        let before = float_tensors(&model);
        let mut adam = AdamConfig::new().init();
        let shards = (0..2).map(|i| shard(i, &devices[i])).collect();
        let (model, report) =
            scal_step_data_parallel(model, &mut adam, 1e-3, shards, devices, &step);
        (before, float_tensors(&model), report)
    };
    let local = Device::flex().autodiff();
    let (before, expected, expected_report) = run(&[local.clone(), local]);
    let (remote_before, got, report) = run(&remote);
    assert_eq!(before, remote_before, "the seeded initial models differ");
    assert_eq!(expected.len(), got.len());
    for ((name, _), (other, _)) in expected.iter().zip(&got) {
        assert_eq!(name, other);
    }
    let cosine = update_cosine(&before, &expected, &got);
    eprintln!("data-parallel step, local against remote: update cosine {cosine}");
    assert!(cosine >= 1.0 - UPDATE_COSINE_GAP, "update cosine {cosine}");
    let loss = max_rounding_difference(&[expected_report.loss], &[report.loss]);
    assert!(
        loss <= ROUNDING,
        "losses {} and {}",
        expected_report.loss,
        report.loss
    );
    assert_eq!(expected_report.reward_counts, report.reward_counts);
}

fn config(root: &Path, backend: &str, hosts: &[String], devices: &str) -> TrainingConfig {
    let hosts = serde_json::to_string(hosts).unwrap();
    TrainingConfig::resolve(
        Profile::Quick,
        None,
        &tiny_overrides(
            root,
            &[
                ("backend", backend),
                ("hosts", &hosts),
                ("optim.epochs", "1"),
                ("optim.milestones", "[]"),
                ("eval.every_epochs", "1"),
                ("eval.rerank", "false"),
                ("eval.amelioration_samples", "0"),
                ("devices", devices),
            ],
        ),
    )
    .unwrap()
}

/// Every training line of a run's log without its timing fields.
fn train_log(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|mut v| {
            let map = v.as_object_mut().unwrap();
            map.retain(|k, _| !k.contains("per_s") && !k.contains("seconds") && k != "time");
            v
        })
        .collect()
}

/// Two logged values agree: the same kind and keys, integers (iterations, reward counts)
/// exactly, other numbers to `tolerance` (relative to the larger of the magnitude and 1).
fn assert_close(a: &serde_json::Value, b: &serde_json::Value, tolerance: f64, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            let difference = (x - y).abs() / x.abs().max(1.0);
            assert!(difference <= tolerance, "{at}: {x} and {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_close(x, y, tolerance, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in x {
                assert_close(v, &y[k], tolerance, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// A run whose two devices are two servers logs the same losses, rewards and scores as the
/// same run with two replicas on the local device (to rounding: see the module's header); a
/// host where nothing listens is named.
#[test]
fn a_run_over_two_servers_matches_the_local_run() {
    let _serial = serial();
    let root = tiny_dataset();
    let runs = tempfile::tempdir().unwrap();
    let train = |config: &TrainingConfig, name: &str| {
        let run = runs.path().join(name);
        let outcome =
            xtask::cli::train_on_configured_devices(config, &run, scal_train::Start::New, false)
                .unwrap();
        let RunOutcome::Finished {
            last, iterations, ..
        } = outcome
        else {
            panic!("not finished: {outcome:?}")
        };
        (run, last, iterations)
    };
    let (local_run, local_scores, local_iterations) =
        train(&config(&root, "flex", &[], "[0,0]"), "local");
    let hosts = vec![serve_flex(), serve_flex()];
    let (remote_run, remote_scores, remote_iterations) =
        train(&config(&root, "remote", &hosts, "[0,1]"), "remote");
    assert!(local_iterations > 0);
    assert_eq!(local_iterations, remote_iterations);
    let (a, b) = (train_log(&local_run), train_log(&remote_run));
    assert_eq!(a.len() as u64, local_iterations);
    assert_close(&a.into(), &b.into(), 10.0 * ROUNDING, "the training log");
    let (l, r) = (&local_scores.plain, &remote_scores.plain);
    for (what, x, y) in [("mAP", l.map, r.map), ("rank-1", l.rank1, r.rank1)] {
        assert!((x - y).abs() <= 10.0 * ROUNDING, "{what}: {x} and {y}");
    }
    let saved = TrainingConfig::load_json(&remote_run.join("config.json")).unwrap();
    assert_eq!((saved.backend, saved.hosts), (Backend::Remote, hosts));

    // A port where nothing listens (bound, then closed) is named in the error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}", l.local_addr().unwrap())
    };
    let err = xtask::cli::train_on_configured_devices(
        &config(&root, "remote", std::slice::from_ref(&closed), "[0]"),
        &runs.path().join("unreachable"),
        scal_train::Start::New,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&closed) && err.contains("cargo xtask serve"),
        "{err}"
    );
}
