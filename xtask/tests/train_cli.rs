//! `cargo xtask train`, `evaluate --checkpoint`, `extract --checkpoint`, `export` and
//! `ablate` end to end on a tiny configuration.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A synthetic dataset and a configuration file that trains on it in seconds.
fn setup(dir: &Path) -> (String, String) {
    common::tiny_setup(
        dir,
        serde_json::json!({
            "data": {"padding": 3},
            "optim": {"epochs": 2, "milestones": [1]},
            "eval": {"every_epochs": 1}
        }),
    )
}

#[test]
#[allow(clippy::too_many_lines)] // one user session, command after command
fn train_then_use_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = setup(dir.path());
    let runs = dir.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let stdout = ok(&xtask(&[
        "train",
        "--config",
        &config,
        "--runs",
        runs_s,
        "--name",
        "tiny",
        "--no-progress",
    ]));
    let run = runs.join("tiny");
    assert!(
        stdout.contains(&format!("run folder: {}", run.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("final evaluation")
            && stdout.contains("mAP")
            && stdout.contains("re-ranked"),
        "{stdout}"
    );
    assert!(
        stdout.contains("evaluation after epoch 1"),
        "evaluations are printed as they happen: {stdout}"
    );
    for file in [
        "config.json",
        "metrics.jsonl",
        "best/model.bpk",
        "best/model.json",
        "last/optimizer.bpk",
        "last/state.json",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        saved["optim"]["epochs"], 2,
        "the resolved configuration is saved"
    );
    assert_eq!(
        saved["model"]["arch"], "resnet18",
        "profile fields not in the file stay the profile's"
    );
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last_eval: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|v| v["kind"] == "eval")
        .unwrap();
    assert_eq!(last_eval["epoch"], 2);
    let train_line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    for key in [
        "loss",
        "triplet",
        "classification",
        "critic_mse",
        "correct_rate",
        "amelioration_rate",
        "mean_value",
        "critic_error",
        "lr",
        "images_per_s",
    ] {
        assert!(
            train_line[key].is_number(),
            "{key} missing from {train_line}"
        );
    }

    // The best checkpoint evaluated again from the command line gives the logged numbers.
    let best = run.join("best");
    let best_s = best.to_str().unwrap();
    let out = ok(&xtask(&[
        "evaluate",
        "--checkpoint",
        best_s,
        "--dataset",
        "market1501",
        "--root",
        &data,
        "--json",
    ]));
    let scores: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let best_epoch = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(best.join("state.json")).unwrap(),
    )
    .unwrap()["best"][1]
        .as_u64()
        .unwrap();
    let logged = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "eval" && v["epoch"] == best_epoch)
        .unwrap();
    let (a, b) = (
        scores["mAP"].as_f64().unwrap(),
        logged["plain"]["mAP"].as_f64().unwrap(),
    );
    assert!(
        (a - b).abs() < 1e-3,
        "evaluate --checkpoint mAP {a} vs logged {b}"
    );
    assert!(
        (scores["cmc"][0].as_f64().unwrap() - logged["plain"]["rank1"].as_f64().unwrap()).abs()
            < 1e-3
    );

    // Features of a folder: one unit-length row per image, in file-name order.
    let feats = dir.path().join("q.npy");
    let query = Path::new(&data).join("query");
    ok(&xtask(&[
        "extract",
        "--checkpoint",
        best_s,
        "--images",
        query.to_str().unwrap(),
        "--out",
        feats.to_str().unwrap(),
        "--flip",
    ]));
    let array: ndarray::Array2<f32> = ndarray_npy::read_npy(&feats).unwrap();
    let images = std::fs::read_dir(&query).unwrap().count();
    assert_eq!(array.nrows(), images);
    assert_eq!(
        array.ncols(),
        32,
        "ResNet-18 of base width 4: 8 x 4 channels"
    );
    for row in array.rows() {
        let norm = row.dot(&row).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "row norm {norm}");
    }
    let names = std::fs::read_to_string(dir.path().join("q.names.txt")).unwrap();
    assert_eq!(names.lines().count(), images);

    // Attention maps of any folder; the report rebuilt from the command line.
    let maps = dir.path().join("maps");
    let out = ok(&xtask(&[
        "visualize",
        "--checkpoint",
        best_s,
        "--images",
        query.to_str().unwrap(),
        "--out",
        maps.to_str().unwrap(),
    ]));
    assert!(
        out.contains(&format!("wrote {images} attention figures")),
        "{out}"
    );
    let first = std::fs::read_dir(&query)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let figure = image::open(maps.join(format!(
        "{}.png",
        first.file_stem().unwrap().to_string_lossy()
    )))
    .unwrap();
    assert_eq!(
        (figure.width(), figure.height()),
        (6 * (64 + 4) + 4, 128 + 8),
        "the image and five modules"
    );
    visualize_replaces_its_folder_as_a_whole(best_s, &first, &maps, dir.path());
    let out = ok(&xtask(&[
        "report",
        run.to_str().unwrap(),
        "--checkpoint",
        "last",
    ]));
    assert!(out.contains("report:"), "{out}");
    let err = fails(&xtask(&["report", dir.path().to_str().unwrap()]));
    assert!(err.contains("not a run folder"), "{err}");

    // Export for PyTorch.
    let exported = dir.path().join("scal.safetensors");
    let out = ok(&xtask(&[
        "export",
        "--checkpoint",
        best_s,
        "--out",
        exported.to_str().unwrap(),
    ]));
    assert!(
        out.contains("load_state_dict") && exported.is_file(),
        "{out}"
    );
    let err = fails(&xtask(&[
        "export",
        "--checkpoint",
        best_s,
        "--out",
        dir.path().join("x.pth").to_str().unwrap(),
    ]));
    assert!(err.contains(".safetensors"), "{err}");
    // A checkpoint that lost its checksum list loads, but says it was not verified (W17);
    // one with its list loads without the warning.
    let unlisted = dir.path().join("unlisted");
    std::fs::create_dir(&unlisted).unwrap();
    for entry in std::fs::read_dir(best_s).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "checksums.sha256" {
            std::fs::copy(&path, unlisted.join(path.file_name().unwrap())).unwrap();
        }
    }
    for (checkpoint, warned, out) in [
        (unlisted.to_str().unwrap(), true, "unlisted.safetensors"),
        (best_s, false, "listed.safetensors"),
    ] {
        let out = dir.path().join(out);
        let o = xtask(&[
            "export",
            "--checkpoint",
            checkpoint,
            "--out",
            out.to_str().unwrap(),
        ]);
        ok(&o);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.contains("were not verified"),
            warned,
            "{checkpoint}: {err}"
        );
    }
    // model.json's sizes go through the command line's rules, not a panic (B10, W16).
    let model_json = unlisted.join("model.json");
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model_json).unwrap()).unwrap();
    for (field, value, expected) in [
        ("height", 100_000, "at most 2048"),
        ("height", 0, "height must be > 0"),
        ("num_classes", 0, "num_classes must be > 0"),
    ] {
        let mut edited = original.clone();
        edited[field] = value.into();
        std::fs::write(&model_json, edited.to_string()).unwrap();
        let err = fails(&xtask(&[
            "export",
            "--checkpoint",
            unlisted.to_str().unwrap(),
            "--out",
            dir.path().join("sized.safetensors").to_str().unwrap(),
        ]));
        assert!(
            err.contains(expected) && err.contains("model.json"),
            "{field} {value}: {err}"
        );
    }

    // Resuming a finished run, a run folder in use, a folder that is not a checkpoint.
    let run_s = run.to_str().unwrap();
    let err = fails(&xtask(&["train", "--resume", run_s, "--no-progress"]));
    assert!(err.contains("finished all 2 epochs"), "{err}");
    // A checkpoint folder is not a run (issue 29, B8): refused before anything is written.
    for (checkpoint, from) in [("last", ""), ("best", " --from best")] {
        let folder = run.join(checkpoint);
        let listing = |f: &Path| {
            let mut names: Vec<_> = std::fs::read_dir(f)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        let before = listing(&folder);
        let err = fails(&xtask(&[
            "train",
            "--resume",
            folder.to_str().unwrap(),
            "--no-progress",
        ]));
        assert!(
            err.contains("is a checkpoint, not a run folder")
                && err.contains(&format!("--resume {run_s}{from}")),
            "{err}"
        );
        assert_eq!(listing(&folder), before, "{checkpoint}/ left as it was");
    }
    let err = fails(&xtask(&[
        "train",
        "--config",
        &config,
        "--runs",
        runs_s,
        "--name",
        "tiny",
        "--no-progress",
    ]));
    assert!(err.contains("--resume"), "{err}");
    let err = fails(&xtask(&[
        "train",
        "--resume",
        run_s,
        "--epochs",
        "3",
        "--lambda",
        "0.5",
        "--no-progress",
    ]));
    assert!(
        err.contains("refusing to resume")
            && err.contains("step.lambda: 1.0 -> 0.5")
            && err.contains("optim.epochs: 2 -> 3"),
        "{err}"
    );
    let err = fails(&xtask(&[
        "evaluate",
        "--checkpoint",
        run_s,
        "--dataset",
        "market1501",
        "--root",
        &data,
    ]));
    assert!(err.contains("not a checkpoint folder"), "{err}");
}

#[test]
fn bad_configurations_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let err = fails(&xtask(&[
        "train",
        "--runs",
        runs_s,
        "--set",
        "optim.epoch=3",
    ]));
    assert!(err.contains("unknown field `optim.epoch`"), "{err}");
    // Typed flags: a value outside their list is clap's usage error, listing the values.
    let err = fails(&xtask(&["train", "--runs", runs_s, "--attention", "both"]));
    assert!(
        err.contains("--attention") && err.contains("[possible values: none, spatial, channel]"),
        "{err}"
    );
    let err = fails(&xtask(&["train", "--runs", runs_s, "--profile", "fast"]));
    assert!(
        err.contains("'fast'") && err.contains("[possible values: quick, paper]"),
        "{err}"
    );
    let err = fails(&xtask(&[
        "train",
        "--runs",
        runs_s,
        "--set",
        "model.attention=both",
    ]));
    assert!(err.contains("model.attention"), "{err}");
    let err = fails(&xtask(&[
        "train",
        "--runs",
        runs_s,
        "--dataset",
        "imagenet",
    ]));
    assert!(
        err.contains("'imagenet'") && err.contains("synth-hard"),
        "{err}"
    );
    let missing = dir.path().join("market");
    let err = fails(&xtask(&[
        "train",
        "--runs",
        runs_s,
        "--dataset",
        "market1501",
        "--root",
        missing.to_str().unwrap(),
    ]));
    assert!(
        err.contains("cargo xtask download market1501") && err.contains("cargo xtask synth"),
        "{err}"
    );
    let file = dir.path().join("bad.json");
    std::fs::write(&file, r#"{"data": {"p": "sixteen"}}"#).unwrap();
    let err = fails(&xtask(&[
        "train",
        "--runs",
        runs_s,
        "--config",
        file.to_str().unwrap(),
    ]));
    assert!(err.contains("data.p"), "{err}");
    let err = fails(&xtask(&["train", "--runs", runs_s, "--backend", "cuda"]));
    assert!(err.contains("--features cuda"), "{err}");
    assert!(
        !runs.exists(),
        "no run folder is created for a configuration that fails"
    );
}

#[test]
fn ablate_prints_mean_and_spread_per_variant() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = setup(dir.path());
    let runs = dir.path().join("ablate");
    let args = [
        "ablate",
        "--config",
        &config,
        "--variants",
        "none,channel",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--runs",
        runs.to_str().unwrap(),
        "--no-progress",
    ];
    let stdout = ok(&xtask(&args));
    for name in ["none-seed0", "none-seed1", "channel-seed0", "channel-seed1"] {
        assert!(runs.join(name).join("best/model.bpk").is_file(), "{name}");
    }
    let table = std::fs::read_to_string(runs.join("ablation.md")).unwrap();
    assert!(stdout.contains(&table), "the table is printed");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap()
            .to_string()
    };
    assert!(
        row("none").contains("| 2/2 |") && row("channel").contains("| 2/2 |"),
        "{table}"
    );
    assert!(row("none").contains(" ± "), "{table}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("ablation.json")).unwrap())
            .unwrap();
    assert_eq!(results.as_array().unwrap().len(), 4);
    // The mean in the table is the mean of the runs.
    let maps: Vec<f64> = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["variant"] == "channel")
        .map(|r| r["plain"]["mAP"].as_f64().unwrap())
        .collect();
    let mean = 100.0 * (maps[0] + maps[1]) / 2.0;
    assert!(
        row("channel").contains(&format!("| {mean:.2} ± ")),
        "{mean:.2} not in {}",
        row("channel")
    );
    // The paired table: channel − none per seed, as the runs' own scores give it.
    let run_map = |variant: &str, seed: u64| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["variant"] == variant && r["seed"] == seed)
            .unwrap()["plain"]["mAP"]
            .as_f64()
            .unwrap()
    };
    let paired: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("ablation-paired.json")).unwrap())
            .unwrap();
    let channel = &paired.as_array().unwrap()[0];
    assert_eq!(channel["variant"], "channel");
    for seed in 0..2u64 {
        let expected = run_map("channel", seed) - run_map("none", seed);
        let got = channel["mAP"]["differences"][seed as usize]
            .as_f64()
            .unwrap();
        assert!(
            (got - expected).abs() < 1e-12,
            "seed {seed}: {got} vs {expected}"
        );
    }
    let ci = channel["mAP"]["ci95"].as_array().unwrap();
    let mean = channel["mAP"]["mean"].as_f64().unwrap();
    assert!(ci[0].as_f64().unwrap() <= mean && mean <= ci[1].as_f64().unwrap());
    assert!(
        table.contains("| variant − none | pairs |") && table.contains("| channel | 2 |"),
        "{table}"
    );
    // Again: every run is read back, none retrained.
    let stdout = ok(&xtask(&args));
    assert_eq!(
        stdout.matches("finished earlier, read back").count(),
        4,
        "{stdout}"
    );
    let err = fails(&xtask(&["ablate", "--variants", "none,attention"]));
    assert!(err.contains("unknown variant `attention`"), "{err}");
}

/// A second `visualize` into the same folder replaces it (no figures of the first run left);
/// one truncated image fails the command naming it, and the folder is left as it was.
fn visualize_replaces_its_folder_as_a_whole(
    checkpoint: &str,
    image: &Path,
    maps: &Path,
    dir: &Path,
) {
    let one = dir.join("one");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::copy(image, one.join(image.file_name().unwrap())).unwrap();
    let visualize = |images: &Path| {
        xtask(&[
            "visualize",
            "--checkpoint",
            checkpoint,
            "--images",
            images.to_str().unwrap(),
            "--out",
            maps.to_str().unwrap(),
        ])
    };
    ok(&visualize(&one));
    let figures = || std::fs::read_dir(maps).unwrap().count();
    assert_eq!(figures(), 1, "the first run's figures are gone");
    let bytes = std::fs::read(image).unwrap();
    std::fs::write(
        one.join("0001_c2s1_000002_01.jpg"),
        &bytes[..bytes.len() * 4 / 5],
    )
    .unwrap();
    let err = fails(&visualize(&one));
    assert!(
        err.contains("0001_c2s1_000002_01.jpg") && err.contains("truncated"),
        "{err}"
    );
    assert_eq!(figures(), 1, "a failed run leaves the folder as it was");
    let leftovers: Vec<_> = std::fs::read_dir(maps.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn synth_hard_is_generated_read_and_recorded_by_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let (easy, config) = setup(dir.path());
    let runs = dir.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    // An easy folder named as synth-hard is refused before any run folder exists.
    let err = fails(&xtask(&[
        "train",
        "--config",
        &config,
        "--runs",
        runs_s,
        "--dataset",
        "synth-hard",
        "--root",
        &easy,
    ]));
    assert!(err.contains("hard-v1") && err.contains(&easy), "{err}");
    assert!(
        err.contains("cargo xtask synth --preset hard"),
        "a hint: {err}"
    );
    assert!(!runs.exists());

    let hard = dir.path().join("hard");
    let stdout = ok(&xtask(&[
        "synth",
        "--preset",
        "hard",
        "--train-ids",
        "8",
        "--test-ids",
        "6",
        "--cameras",
        "3",
        "--out",
        hard.to_str().unwrap(),
    ]));
    assert!(stdout.contains("hard-v1"), "{stdout}");
    assert!(hard.join("synth.json").is_file());
    ok(&xtask(&[
        "train",
        "--config",
        &config,
        "--runs",
        runs_s,
        "--name",
        "hard",
        "--dataset",
        "synth-hard",
        "--root",
        hard.to_str().unwrap(),
        "--epochs",
        "1",
        "--no-progress",
    ]));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("hard/config.json")).unwrap())
            .unwrap();
    assert_eq!(saved["data"]["synth_preset"], "hard-v1");
    assert_eq!(saved["data"]["dataset"], "market1501");
    assert_eq!(saved["data"]["root"], hard.to_str().unwrap());
    let err = fails(&xtask(&["synth", "--preset", "medium"]));
    assert!(err.contains("easy, hard or hard-v1"), "{err}");
}

/// Module `l`'s files of `critic-data` (24 samples, critic inputs `inputs_width` wide): finite
/// values, pooled maps that agree with the critic inputs, a gain in [-1, 1] whose sign is
/// `R_a^l`.
fn module_files_agree(out: &Path, l: usize, inputs_width: usize) {
    let inputs: ndarray::Array2<f32> =
        ndarray_npy::read_npy(out.join(format!("inputs_{l}.npy"))).unwrap();
    assert_eq!(
        inputs.dim(),
        (24, inputs_width),
        "module {l}: base width 4, not 32"
    );
    let values: ndarray::Array1<f32> =
        ndarray_npy::read_npy(out.join(format!("values_{l}.npy"))).unwrap();
    assert!(values.iter().all(|v| v.is_finite()));
    pooled_maps_agree_with_the_critic_inputs(out, l, &inputs);
    let gain: ndarray::Array1<f32> =
        ndarray_npy::read_npy(out.join(format!("gain_{l}.npy"))).unwrap();
    let own: ndarray::Array1<f32> =
        ndarray_npy::read_npy(out.join(format!("amelioration_{l}.npy"))).unwrap();
    assert_eq!(gain.len(), 24);
    assert!(gain.iter().all(|g| (-1.0..=1.0).contains(g)), "{gain}");
    assert!(
        gain.iter().any(|&g| g != 0.0),
        "module {l} changes the prediction"
    );
    for (g, r) in gain.iter().zip(&own) {
        assert_eq!(*r, f32::from(*g > 0.0), "R_a^l is the sign of the gain");
    }
}

/// `pooled_L.npy` holds X_l and X_l ⊙ A_l averaged on a 4 × 2 grid (channel-major cells).
/// Checked against the critic's own inputs `[GAP(X_l), A_l]`, computed apart: the mean of a
/// channel's eight X cells is its GAP (the tiny model's maps divide into equal cells), and
/// with channel attention each gated cell is the channel's weight times the X cell.
fn pooled_maps_agree_with_the_critic_inputs(out: &Path, l: usize, inputs: &ndarray::Array2<f32>) {
    let pooled: ndarray::Array2<f32> =
        ndarray_npy::read_npy(out.join(format!("pooled_{l}.npy"))).unwrap();
    let channels = inputs.dim().1 / 2;
    assert_eq!(pooled.dim(), (24, 2 * channels * 8), "module {l}");
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
    for n in 0..24 {
        for c in 0..channels {
            let cells: Vec<f32> = (0..8).map(|j| pooled[[n, c * 8 + j]]).collect();
            let mean = cells.iter().sum::<f32>() / 8.0;
            assert!(
                close(mean, inputs[[n, c]]),
                "module {l}, sample {n}, channel {c}: cells' mean {mean} against GAP {}",
                inputs[[n, c]]
            );
            let weight = inputs[[n, channels + c]];
            for (j, cell) in cells.iter().enumerate() {
                let gated = pooled[[n, (channels + c) * 8 + j]];
                assert!(
                    close(gated, weight * cell),
                    "module {l}, sample {n}, cell {j}"
                );
            }
        }
    }
}

#[test]
fn critic_data_writes_what_each_critic_reads_and_is_taught() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = setup(dir.path());
    let runs = dir.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    ok(&xtask(&[
        "train",
        "--config",
        &config,
        "--runs",
        runs_s,
        "--name",
        "scal",
        "--epochs",
        "1",
        "--no-progress",
    ]));
    let out = dir.path().join("critic");
    let stdout = ok(&xtask(&[
        "critic-data",
        runs.join("scal").to_str().unwrap(),
        "--batches",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(stdout.contains("wrote 24 samples of 5 critics"), "{stdout}");
    let correct: ndarray::Array1<f32> = ndarray_npy::read_npy(out.join("correct.npy")).unwrap();
    let amelioration: ndarray::Array1<f32> =
        ndarray_npy::read_npy(out.join("amelioration.npy")).unwrap();
    assert_eq!(correct.len(), 24, "3 batches of P x K = 4 x 2");
    assert!(
        correct
            .iter()
            .chain(&amelioration)
            .all(|&r| r == 0.0 || r == 1.0)
    );
    // The quick profile's channel critics read [GAP(X), A]: twice each stage's width.
    for (l, width) in [64usize, 64, 128, 256, 512].iter().enumerate() {
        module_files_agree(&out, l, width / 8);
    }
    // critic-grad on the same run: a row per module, and the JSON with the same numbers.
    let json = dir.path().join("grad.json");
    let stdout = ok(&xtask(&[
        "critic-grad",
        runs.join("scal").to_str().unwrap(),
        "--batches",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]));
    let measured: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let modules = measured.as_array().unwrap();
    assert_eq!(modules.len(), 5, "{stdout}");
    for (l, m) in modules.iter().enumerate() {
        assert_eq!(m["samples"], 16, "2 batches of P x K = 4 x 2");
        let row = format!(
            "{:>6}  {:>7}  {:+.3}",
            l,
            16,
            m["cosine"]["mean"].as_f64().unwrap()
        );
        assert!(stdout.contains(&row), "{row} in {stdout}");
    }
    ok(&xtask(&[
        "train",
        "--config",
        &config,
        "--runs",
        runs_s,
        "--name",
        "plain",
        "--epochs",
        "1",
        "--attention",
        "none",
        "--critic",
        "off",
        "--no-progress",
    ]));
    let err = fails(&xtask(&[
        "critic-data",
        runs.join("plain").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(err.contains("model.attention"), "{err}");
    let err = fails(&xtask(&[
        "critic-grad",
        runs.join("plain").to_str().unwrap(),
    ]));
    assert!(err.contains("model.attention"), "{err}");
}
