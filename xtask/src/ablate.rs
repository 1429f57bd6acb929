//! `cargo xtask ablate`: the ablation set (attention kind, critic, reward) over several seeds,
//! one training run each, summarised as mean ± standard deviation.
//!
//! Each run lives in `RUNS/VARIANT-seed<N>`; a run that finished earlier is read back
//! instead of retrained, and an interrupted one is resumed, so an ablation stopped half-way
//! continues where it was. The table also goes to `RUNS/ablation.md` and `RUNS/ablation.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use scal_infer::Evaluation;
use scal_train::config::Profile;
use scal_train::log::Record;
use scal_train::{RunOutcome, TrainingConfig};
use serde::Serialize;

/// One ablation variant: a name and the configuration fields it sets.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Name used in the table and the run folders.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// `field=value` overrides.
    pub overrides: &'static [(&'static str, &'static str)],
}

/// The variants `--variants` can name.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "none",
        description: "no attention (the BN-neck baseline)",
        overrides: &[("model.attention", "none"), ("step.critic", "false")],
    },
    Variant {
        name: "channel-nocritic",
        description: "channel attention trained by the ReID losses only",
        overrides: &[("model.attention", "channel"), ("step.critic", "false")],
    },
    Variant {
        name: "channel",
        description: "SCAL: channel attention with the critic, reward R_c + R_a",
        overrides: &[
            ("model.attention", "channel"),
            ("step.critic", "true"),
            ("step.reward", "both"),
        ],
    },
    Variant {
        name: "channel-critic-first",
        description: "SCAL channel, the critics updated before the agents in each step",
        overrides: &[
            ("model.attention", "channel"),
            ("step.critic", "true"),
            ("step.reward", "both"),
            ("step.update_order", "critic_first"),
        ],
    },
    Variant {
        name: "channel-rc",
        description: "SCAL channel, reward R_c only",
        overrides: &[
            ("model.attention", "channel"),
            ("step.critic", "true"),
            ("step.reward", "rc"),
        ],
    },
    Variant {
        name: "channel-ra",
        description: "SCAL channel, reward R_a only",
        overrides: &[
            ("model.attention", "channel"),
            ("step.critic", "true"),
            ("step.reward", "ra"),
        ],
    },
    Variant {
        name: "channel-squared",
        description: "SCAL channel with the paper's squared Euclidean triplet distance",
        overrides: &[
            ("model.attention", "channel"),
            ("step.critic", "true"),
            ("step.reward", "both"),
            ("step.triplet.distance", "squared"),
        ],
    },
    Variant {
        name: "spatial-nocritic",
        description: "spatial attention trained by the ReID losses only",
        overrides: &[("model.attention", "spatial"), ("step.critic", "false")],
    },
    Variant {
        name: "spatial",
        description: "SCAL: spatial attention with the critic, reward R_c + R_a",
        overrides: &[
            ("model.attention", "spatial"),
            ("step.critic", "true"),
            ("step.reward", "both"),
        ],
    },
];

/// Runs the ablation set.
#[derive(Debug, clap::Args)]
pub struct AblateArgs {
    /// Variants, comma-separated (none, channel-nocritic, channel, channel-critic-first,
    /// channel-rc, channel-ra, channel-squared, spatial-nocritic, spatial).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,channel-nocritic,channel"
    )]
    pub variants: Vec<String>,
    /// Seeds 0..N.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// Starting configuration (quick: the synthetic dataset on the CPU).
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// JSON file overriding fields of the profile, for every run.
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Dataset of every run (as `train --dataset`: synth-hard, a reader name, ...) [default:
    /// the profile's].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Dataset folder of every run (as `train --root`).
    #[arg(long)]
    pub root: Option<String>,
    /// Folder of the ablation's runs [default: runs/ablate, or runs/ablate-DATASET with
    /// --dataset].
    #[arg(long)]
    pub runs: Option<PathBuf>,
    /// Training epochs of every run.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Weight of the critic objective, for the variants with a critic.
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Any field, for every run: --set optim.lr=0.001 (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// The final scores of one run.
#[derive(Debug, Clone, Serialize)]
struct RunResult {
    variant: String,
    seed: u64,
    run: PathBuf,
    #[serde(flatten)]
    evaluation: Evaluation,
    /// This run's scores minus those of the `none` run of the same seed (when both exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    difference_from_none: Option<Difference>,
}

/// Differences of the final plain scores, as fractions.
#[derive(Debug, Clone, Copy, Serialize)]
struct Difference {
    #[serde(rename = "mAP")]
    map: f64,
    rank1: f64,
}

/// A variant against `none`, seed by seed: a seed fixes the data order and the
/// initialisation, so the two runs of a seed form a pair.
#[derive(Debug, Clone, Serialize)]
struct Paired {
    variant: String,
    seeds: Vec<u64>,
    #[serde(rename = "mAP")]
    map: PairedMeasure,
    rank1: PairedMeasure,
}

/// Per-seed differences (variant − none, fractions), their mean and the 95 % confidence
/// interval of the mean (Student's t, n − 1 degrees of freedom; none with one pair).
#[derive(Debug, Clone, Serialize)]
struct PairedMeasure {
    differences: Vec<f64>,
    mean: f64,
    ci95: Option<[f64; 2]>,
}

impl PairedMeasure {
    fn of(differences: Vec<f64>) -> PairedMeasure {
        use statrs::distribution::{ContinuousCDF, StudentsT};
        let (mean, sd) = mean_std(&differences);
        let n = differences.len();
        let ci95 = (n >= 2).then(|| {
            let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
                .expect("positive degrees of freedom")
                .inverse_cdf(0.975);
            let half = t * sd / (n as f64).sqrt();
            [mean - half, mean + half]
        });
        PairedMeasure {
            differences,
            mean,
            ci95,
        }
    }

    /// `+1.20 [−0.40, +2.80]` in points.
    fn cell(&self) -> String {
        let pts = |v: f64| format!("{:+.2}", 100.0 * v);
        match self.ci95 {
            Some([lo, hi]) => format!("{} [{}, {}]", pts(self.mean), pts(lo), pts(hi)),
            None => pts(self.mean),
        }
    }

    fn per_seed(&self) -> String {
        self.differences
            .iter()
            .map(|d| format!("{:+.2}", 100.0 * d))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Fills each run's difference from the `none` run of its seed, and pairs every other
/// variant with `none` over the seeds both have.
fn pair_with_none(results: &mut [RunResult]) -> Vec<Paired> {
    let none: Vec<(u64, Evaluation)> = results
        .iter()
        .filter(|r| r.variant == "none")
        .map(|r| (r.seed, r.evaluation))
        .collect();
    for r in results.iter_mut().filter(|r| r.variant != "none") {
        r.difference_from_none = none
            .iter()
            .find(|(s, _)| *s == r.seed)
            .map(|(_, e)| Difference {
                map: r.evaluation.plain.map - e.plain.map,
                rank1: r.evaluation.plain.rank1 - e.plain.rank1,
            });
    }
    let mut variants: Vec<&str> = Vec::new();
    for r in results.iter().filter(|r| r.difference_from_none.is_some()) {
        if !variants.contains(&r.variant.as_str()) {
            variants.push(&r.variant);
        }
    }
    variants
        .into_iter()
        .map(|v| {
            let rows: Vec<(u64, Difference)> = results
                .iter()
                .filter(|r| r.variant == v)
                .filter_map(|r| r.difference_from_none.map(|d| (r.seed, d)))
                .collect();
            Paired {
                variant: v.to_string(),
                seeds: rows.iter().map(|(s, _)| *s).collect(),
                map: PairedMeasure::of(rows.iter().map(|(_, d)| d.map).collect()),
                rank1: PairedMeasure::of(rows.iter().map(|(_, d)| d.rank1).collect()),
            }
        })
        .collect()
}

/// The paired table: one row per variant against `none`.
fn paired_table(paired: &[Paired]) -> String {
    if paired.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n| variant − none | pairs | ΔmAP per seed | ΔmAP mean [95 % CI] | ΔRank-1 per seed | ΔRank-1 mean [95 % CI] |\n\
         |---|---|---|---|---|---|\n",
    );
    for p in paired {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            p.variant,
            p.seeds.len(),
            p.map.per_seed(),
            p.map.cell(),
            p.rank1.per_seed(),
            p.rank1.cell(),
        ));
    }
    out.push_str(
        "\npercentage points, variant minus `none` on the same seed (same data order and initialisation); \
         95 % confidence interval of the mean difference, Student's t with pairs − 1 degrees of freedom: \
         an interval that contains 0 is no significant difference at the 5 % level.\n",
    );
    out
}

/// Mean and (sample) standard deviation.
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The last evaluation logged in a run's `metrics.jsonl`, if the run finished.
fn finished_evaluation(run: &Path, epochs: usize) -> Result<Option<Evaluation>> {
    let records = scal_train::log::read(&scal_train::RunDir::new(run).metrics())?;
    let last_eval = records.into_iter().rev().find_map(|r| match r {
        Record::Eval(e) => Some(e),
        Record::Train(_) => None,
    });
    Ok(last_eval
        .filter(|e| e.epoch == epochs as u64)
        .map(|e| e.evaluation))
}

/// The final evaluation of one run: read back when it finished earlier, otherwise trained
/// (or resumed) now. Ctrl-C stops the whole ablation.
fn evaluation_of(
    config: &TrainingConfig,
    run_dir: &Path,
    variant: &Variant,
    seed: u64,
    bar: bool,
) -> Result<Evaluation> {
    if let Some(e) = finished_evaluation(run_dir, config.optim.epochs)? {
        println!("{}: finished earlier, read back", run_dir.display());
        return Ok(e);
    }
    let resume = scal_train::RunDir::new(run_dir).config().exists();
    let start = if resume {
        scal_train::Start::Resume
    } else {
        scal_train::Start::New
    };
    println!(
        "{} {} ({}, seed {seed})",
        if resume { "resuming" } else { "training" },
        run_dir.display(),
        variant.description
    );
    match crate::cli::train_on_configured_devices(config, run_dir, start, bar)? {
        RunOutcome::Finished { last, .. } => Ok(last),
        RunOutcome::Interrupted { .. } => {
            println!("stopped; run the same command again to continue");
            Err(crate::cli::Interrupted.into())
        }
    }
}

/// Runs every variant with every seed and prints the table.
pub fn run(args: &AblateArgs) -> Result<()> {
    let profile: Profile = args.profile.parse()?;
    let mut variants = Vec::new();
    for name in &args.variants {
        match VARIANTS.iter().find(|v| v.name == name.trim()) {
            Some(v) => variants.push(v),
            None => bail!(
                "--variants: unknown variant `{name}`; known: {}",
                VARIANTS
                    .iter()
                    .map(|v| v.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let mut common = crate::cli::dataset_overrides(args.dataset.as_deref(), args.root.as_deref());
    let runs = args.runs.clone().unwrap_or_else(|| match &args.dataset {
        Some(d) => PathBuf::from(format!("runs/ablate-{d}")),
        None => PathBuf::from("runs/ablate"),
    });
    if let Some(e) = args.epochs {
        common.push(("optim.epochs".into(), e.to_string()));
    }
    if let Some(l) = args.lambda {
        common.push(("step.lambda".into(), l.to_string()));
    }
    for s in &args.set {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set {s}: expected FIELD=VALUE"))?;
        common.push((k.trim().into(), v.trim().into()));
    }

    let mut results = Vec::new();
    for variant in &variants {
        for seed in 0..args.seeds {
            let mut overrides = common.clone();
            overrides.extend(
                variant
                    .overrides
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
            overrides.push(("seed".into(), seed.to_string()));
            let config = TrainingConfig::resolve(profile, args.config.as_deref(), &overrides)?;
            let run_dir = runs.join(format!("{}-seed{seed}", variant.name));
            let evaluation = evaluation_of(&config, &run_dir, variant, seed, !args.no_progress)?;
            println!(
                "  {} seed {seed}: mAP {:.2}%  Rank-1 {:.2}%",
                variant.name,
                100.0 * evaluation.plain.map,
                100.0 * evaluation.plain.rank1
            );
            results.push(RunResult {
                variant: variant.name.to_string(),
                seed,
                run: run_dir,
                evaluation,
                difference_from_none: None,
            });
        }
    }

    let paired = pair_with_none(&mut results);
    let table = table(&variants, &results, args.seeds) + &paired_table(&paired);
    println!("\n{table}");
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let md = runs.join("ablation.md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    let json = runs.join("ablation.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let paired_json = runs.join("ablation-paired.json");
    std::fs::write(&paired_json, serde_json::to_string_pretty(&paired)?)
        .with_context(|| format!("writing {}", paired_json.display()))?;
    println!(
        "table: {}, per-run results: {}, paired differences: {}",
        md.display(),
        json.display(),
        paired_json.display()
    );
    Ok(())
}

/// The Markdown table: one row per variant, mean ± standard deviation over the seeds.
fn table(variants: &[&Variant], results: &[RunResult], seeds: u64) -> String {
    let mut out = String::from(
        "| variant | runs | mAP (%) | Rank-1 (%) | Rank-5 (%) | mINP (%) | mAP re-ranked (%) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let cell = |values: Vec<f64>| {
        if values.is_empty() {
            return "–".to_string();
        }
        let (m, s) = mean_std(&values);
        format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s)
    };
    for v in variants {
        let rows: Vec<&RunResult> = results.iter().filter(|r| r.variant == v.name).collect();
        let pick = |f: &dyn Fn(&Evaluation) -> Option<f64>| -> Vec<f64> {
            rows.iter().filter_map(|r| f(&r.evaluation)).collect()
        };
        out.push_str(&format!(
            "| {} | {}/{seeds} | {} | {} | {} | {} | {} |\n",
            v.name,
            rows.len(),
            cell(pick(&|e| Some(e.plain.map))),
            cell(pick(&|e| Some(e.plain.rank1))),
            cell(pick(&|e| Some(e.plain.rank5))),
            cell(pick(&|e| Some(e.plain.minp))),
            cell(pick(&|e| e.reranked.map(|r| r.map))),
        ));
    }
    out.push_str("\nmean ± sample standard deviation over seeds; plain Euclidean ranking with flip TTA unless marked re-ranked.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_spread() {
        let (m, s) = mean_std(&[0.5, 0.7, 0.9]);
        assert!((m - 0.7).abs() < 1e-12);
        assert!((s - 0.2).abs() < 1e-12);
        assert_eq!(mean_std(&[0.3]), (0.3, 0.0));
    }

    #[test]
    fn paired_interval_matches_scipy() {
        // scipy.stats.t.interval(0.95, 4, loc=mean, scale=sem) for these differences:
        // mean 0.012, interval [-0.00477396, 0.02877396] (sd 0.0135093, t 2.7764451).
        let m = PairedMeasure::of(vec![0.01, 0.03, -0.005, 0.02, 0.005]);
        assert!((m.mean - 0.012).abs() < 1e-12);
        let [lo, hi] = m.ci95.unwrap();
        assert!((lo - -0.004_773_957).abs() < 1e-8, "{lo}");
        assert!((hi - 0.028_773_957).abs() < 1e-8, "{hi}");
        assert!(
            PairedMeasure::of(vec![0.02]).ci95.is_none(),
            "one pair: no interval"
        );
    }

    #[test]
    fn every_variant_resolves_to_a_valid_configuration() {
        for v in VARIANTS {
            let overrides: Vec<(String, String)> = v
                .overrides
                .iter()
                .map(|(k, val)| (k.to_string(), val.to_string()))
                .collect();
            TrainingConfig::resolve(Profile::Quick, None, &overrides)
                .unwrap_or_else(|e| panic!("variant {}: {e}", v.name));
        }
    }
}
