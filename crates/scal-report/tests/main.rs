//! The run report of tiny runs: every figure drawn, the tables filled from the log, every
//! image loading in a headless browser, and a run without attention.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use scal_data::synth::{SynthConfig, generate};
use scal_report::{ReportOptions, build_report};
use scal_train::config::Profile;
use scal_train::{TrainingConfig, train};
use serde_json::Value;

/// A synthetic dataset of 8 training and 6 test identities, generated once.
fn tiny_dataset() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scal-report-synth-8x6");
        if !root.exists() {
            let config = SynthConfig {
                train_ids: 8,
                test_ids: 6,
                cameras: 3,
                seed: 1,
                preset: scal_data::synth::SynthPreset::Easy,
            };
            generate(&config, &root).unwrap();
        }
        root
    })
    .clone()
}

/// A 3-epoch run on [`tiny_dataset`], evaluated after epochs 2 and 3, in seconds.
fn tiny_config(root: &Path) -> TrainingConfig {
    let overrides: Vec<(String, String)> = [
        ("data.root", root.to_str().unwrap()),
        ("data.synthesize_if_missing", "false"),
        ("data.height", "64"),
        ("data.width", "32"),
        ("data.p", "4"),
        ("data.k", "2"),
        ("data.padding", "3"),
        ("model.base_width", "4"),
        ("model.critic_hidden", "8"),
        ("optim.warmup_epochs", "1"),
        ("optim.epochs", "3"),
        ("optim.milestones", "[2]"),
        ("eval.every_epochs", "2"),
        ("eval.batch", "16"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    TrainingConfig::resolve(Profile::Quick, None, &overrides).unwrap()
}

fn train_flex(config: &TrainingConfig, run: &Path) {
    train(
        config,
        run,
        scal_train::Start::New,
        &[Device::flex()],
        &mut (),
    )
    .unwrap();
}

fn report_options() -> ReportOptions {
    ReportOptions::on(Device::flex())
}

/// The `src` of every `<img>` of a page.
fn image_sources(html: &str) -> Vec<String> {
    html.split("<img src=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// `data-figures-loaded` as headless Chromium sees the page, or None without Chromium.
/// With `SCAL_REQUIRE_CHROMIUM=1` (CI) a missing Chromium fails the test.
fn figures_loaded_in_chromium(index: &Path) -> Option<String> {
    let run = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--dump-dom",
        ])
        .arg(format!(
            "file://{}",
            index.canonicalize().unwrap().display()
        ))
        .output();
    let output = match run {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var("SCAL_REQUIRE_CHROMIUM").is_err(),
                "SCAL_REQUIRE_CHROMIUM is set but chromium cannot run: {e}"
            );
            eprintln!(
                "chromium not found: the headless page check is skipped (Debian: apt-get install chromium)"
            );
            return None;
        }
    };
    let dom = String::from_utf8_lossy(&output.stdout);
    let value = dom
        .split("data-figures-loaded=\"")
        .nth(1)
        .map(|r| r.split('"').next().unwrap().to_string());
    Some(value.unwrap_or_else(|| panic!("the page's load script did not run; DOM:\n{dom}")))
}

/// The attention-quality table: a row per epoch, a column per module; evaluated epochs (2
/// and 3) carry each module's amelioration rate, the others do not.
fn assert_attention_quality_table(html: &str) {
    let table = html
        .split("<table id=\"attention-quality\">")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(table.matches("<tr><td>").count(), 3, "{table}");
    assert_eq!(table.matches("module ").count(), 10, "{table}");
    let rows: Vec<&str> = table.split("<tr><td>").skip(1).collect();
    assert!(
        rows[0].starts_with("1</td>") && rows[0].matches("<td>–</td>").count() == 6,
        "{}",
        rows[0]
    );
    assert!(
        rows[1].starts_with("2</td>") && !rows[1].contains("<td>–</td>"),
        "{}",
        rows[1]
    );
}

#[test]
fn report_of_a_tiny_run_has_every_figure() {
    let root = tiny_dataset();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = tiny_config(&root);
    train_flex(&config, &run);
    let index = build_report(&run, &report_options()).unwrap();
    assert_eq!(index, run.join("report/index.html"));
    let html = std::fs::read_to_string(&index).unwrap();
    let sources = image_sources(&html);
    for figure in [
        "losses.svg",
        "lr.svg",
        "rewards.svg",
        "accuracy.svg",
        "attention.png",
        "ranked_best.png",
        "ranked_worst.png",
    ] {
        assert!(
            sources.iter().any(|s| s == figure),
            "{figure} not on the page: {sources:?}"
        );
    }
    for source in &sources {
        let path = run.join("report").join(source);
        if source.ends_with(".svg") {
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("<polyline"),
                "{source} has no curve"
            );
        } else {
            let img = image::open(&path).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert!(
                img.width() > 100 && img.height() > 100,
                "{source}: {}x{}",
                img.width(),
                img.height()
            );
        }
    }
    // Attention figure: one row per sample image, the image and five modules per row
    // (64 x 32 inputs drawn at twice their size, 4-pixel gaps).
    let attention = image::open(run.join("report/attention.png")).unwrap();
    assert_eq!(attention.width(), 6 * (64 + 4) + 4);
    assert_eq!(attention.height(), 6 * (128 + 4) + 4);
    assert_attention_quality_table(&html);
    // The final metrics are those of the log.
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: Value =
        serde_json::from_str(log.lines().rev().find(|l| l.contains("\"eval\"")).unwrap()).unwrap();
    let map = format!(
        "<td>{:.1}</td>",
        100.0 * last["plain"]["mAP"].as_f64().unwrap()
    );
    let final_table = html
        .split("<table id=\"final-metrics\">")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert!(final_table.contains(&map), "{map} not in {final_table}");
    assert!(html.contains("<pre id=\"config\">"));

    // In a browser, every figure loads; with one missing, the check sees it.
    if let Some(loaded) = figures_loaded_in_chromium(&index) {
        assert_eq!(loaded, format!("{0}/{0}", sources.len()));
        std::fs::remove_file(run.join("report/lr.svg")).unwrap();
        let loaded = figures_loaded_in_chromium(&index).unwrap();
        assert_eq!(loaded, format!("{}/{}", sources.len() - 1, sources.len()));
    }

    // A run without attention: no attention figure, and the page says why.
    let plain = dir.path().join("plain");
    let config = config
        .overlaid(
            None,
            &[
                ("model.attention".into(), "none".into()),
                ("step.critic".into(), "false".into()),
            ],
        )
        .unwrap();
    train_flex(&config, &plain);
    let html = std::fs::read_to_string(build_report(&plain, &report_options()).unwrap()).unwrap();
    assert!(
        !html.contains("attention.png") && html.contains("no attention modules"),
        "{html}"
    );
    assert!(html.contains("no attention-quality measure"));
}
