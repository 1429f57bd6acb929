//! Several machines (`--backend remote`): flex devices served over WebSocket on localhost by
//! Burn's remote server, as `cargo xtask serve` serves them on each machine. A remote flex
//! device runs the same kernels as the local one, so everything here must agree exactly.
use std::path::Path;

use burn::optim::AdamConfig;
use burn::server::{RemoteServer, WebSocketTransport};
use burn::tensor::Device;
use scal_model::AttentionKind;
use scal_model::probe::{float_tensors, probe_batch, probe_config as parity_model_config};
use scal_train::config::Profile;
use scal_train::{RunOutcome, StepConfig, TrainingConfig, scal_step_data_parallel};
use xtask::backend::{self, Backend};
use xtask::parity::parity;

use crate::common::{tiny_dataset, tiny_overrides};

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

/// Parity of flex against a remote flex device: every difference is exactly zero, the
/// update cosine is one and the rewards are equal.
#[test]
fn a_remote_flex_device_computes_exactly_what_local_flex_computes() {
    let _serial = serial();
    let host = serve_flex();
    let remote = backend::device_on(Backend::Remote, std::slice::from_ref(&host)).unwrap();
    let checks = parity(&Device::flex(), &remote).unwrap();
    assert!(checks.len() > 20, "{} checks", checks.len());
    for c in &checks {
        assert!(c.passed, "{c:?}");
        if c.name.ends_with("update_cosine") {
            assert!((c.value - 1.0).abs() < 1e-12, "{c:?}");
        } else {
            assert_eq!(
                c.value, 0.0,
                "{}: remote flex must be bit-identical",
                c.name
            );
        }
    }
}

/// One data-parallel step over two servers (model forked to the second, its gradients
/// moved to the first) gives bit-identical parameters to the same step with two replicas on
/// the local device.
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
        let mut adam = AdamConfig::new().init();
        let shards = (0..2).map(|i| shard(i, &devices[i])).collect();
        let (model, report) =
            scal_step_data_parallel(model, &mut adam, 1e-3, shards, devices, &step);
        (float_tensors(&model), report)
    };
    let local = Device::flex().autodiff();
    let (expected, expected_report) = run(&[local.clone(), local]);
    let (got, report) = run(&remote);
    assert_eq!(expected.len(), got.len());
    for ((name, a), (other, b)) in expected.iter().zip(&got) {
        assert_eq!(name, other);
        assert_eq!(a, b, "{name} differs");
    }
    assert_eq!(expected_report.loss, report.loss);
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

/// A run whose two devices are two servers logs the same losses, rewards and scores as the
/// same run with two replicas on the local device; a host where nothing listens is named.
#[test]
fn a_run_over_two_servers_matches_the_local_run() {
    let _serial = serial();
    let root = tiny_dataset();
    let runs = tempfile::tempdir().unwrap();
    let train = |config: &TrainingConfig, name: &str| {
        let run = runs.path().join(name);
        let outcome =
            xtask::train::train_on_configured_devices(config, &run, scal_train::Start::New, false)
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
    assert_eq!(a, b, "the logs differ");
    assert_eq!(local_scores.plain.map, remote_scores.plain.map);
    assert_eq!(local_scores.plain.rank1, remote_scores.plain.rank1);
    let saved = TrainingConfig::load_json(&remote_run.join("config.json")).unwrap();
    assert_eq!((saved.backend, saved.hosts), (Backend::Remote, hosts));

    // A port where nothing listens (bound, then closed) is named in the error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}", l.local_addr().unwrap())
    };
    let err = xtask::train::train_on_configured_devices(
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
