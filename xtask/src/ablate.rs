//! `cargo xtask ablate`: the ablation set (attention kind, critic, reward) over several seeds,
//! one training run each, summarised as mean ± standard deviation.
//!
//! Each run lives in `RUNS/VARIANT-seed<N>`; a run that finished earlier is read back
//! instead of retrained, and an interrupted one is resumed, so an ablation stopped half-way
//! continues where it was. The table also goes to `RUNS/ablation.md` and `RUNS/ablation.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use scal_data::DatasetSpec;
use scal_run::TrainingConfig;
use scal_run::config::Profile;
use scal_run::log::Evaluation;
use scal_run::log::Record;
use scal_train::RunOutcome;
use scal_train::ablation::{self, BASELINE, PairedMeasure, Variant, mean_std};
use serde::Serialize;

/// Runs the ablation set.
#[derive(Debug, clap::Args)]
pub struct AblateArgs {
    /// Variants, comma-separated (none, channel-nocritic, channel, channel-critic-first,
    /// channel-explore, channel-standardized, channel-standardized-explore,
    /// channel-per-module, channel-per-module-standardized, channel-compatible,
    /// channel-compatible-ap, channel-scst, channel-scst-ap, channel-cal, channel-rc, channel-ra,
    /// channel-squared, spatial-nocritic, spatial).
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
    #[arg(long, default_value = "quick", value_parser = crate::cli::profile_parser())]
    pub profile: Profile,
    /// JSON file overriding fields of the profile, for every run.
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Dataset of every run (as `train --dataset`: synth-hard, a reader name, ...) [default:
    /// the profile's].
    #[arg(long, value_parser = crate::cli::dataset_parser())]
    pub dataset: Option<DatasetSpec>,
    /// Dataset folder of every run (as `train --root`).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
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
    /// Baselines of the paired tables, comma-separated: each other variant minus each of
    /// these, seed by seed; each must be among --variants [default: none, when it is there].
    #[arg(long, value_delimiter = ',')]
    pub paired_against: Option<Vec<String>>,
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

impl Difference {
    /// `run`'s final plain scores minus `baseline`'s.
    fn between(run: &Evaluation, baseline: &Evaluation) -> Difference {
        Difference {
            map: run.plain.map - baseline.plain.map,
            rank1: run.plain.rank1 - baseline.plain.rank1,
        }
    }
}

/// A variant against a baseline (`none` unless `--paired-against` says otherwise), seed by
/// seed: a seed fixes the data order and the initialisation, so the two runs of a seed form
/// a pair.
#[derive(Debug, Clone, Serialize)]
struct Paired {
    variant: String,
    baseline: String,
    seeds: Vec<u64>,
    #[serde(rename = "mAP")]
    map: PairedMeasure,
    rank1: PairedMeasure,
}

/// `+1.20 [−0.40, +2.80]`: a paired measure's mean and interval, in points.
fn cell(m: &PairedMeasure) -> String {
    let pts = |v: f64| format!("{:+.2}", 100.0 * v);
    match m.ci95 {
        Some([lo, hi]) => format!("{} [{}, {}]", pts(m.mean), pts(lo), pts(hi)),
        None => pts(m.mean),
    }
}

/// The per-seed differences, in points.
fn per_seed(m: &PairedMeasure) -> String {
    m.differences
        .iter()
        .map(|d| format!("{:+.2}", 100.0 * d))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fills each run's difference from the `none` run of its seed.
fn fill_difference_from_none(results: &mut [RunResult]) {
    let none: Vec<(u64, Evaluation)> = results
        .iter()
        .filter(|r| r.variant == BASELINE)
        .map(|r| (r.seed, r.evaluation))
        .collect();
    for r in results.iter_mut().filter(|r| r.variant != BASELINE) {
        r.difference_from_none = none
            .iter()
            .find(|(s, _)| *s == r.seed)
            .map(|(_, e)| Difference::between(&r.evaluation, e));
    }
}

/// Pairs every variant other than `baseline` and those of `skip` with `baseline` over the
/// seeds both have, in the order the variants first appear; a variant with no common seed
/// has no row.
fn pair_with(results: &[RunResult], baseline: &str, skip: &[String]) -> Vec<Paired> {
    let base = |seed: u64| {
        results
            .iter()
            .find(|r| r.variant == baseline && r.seed == seed)
            .map(|r| r.evaluation)
    };
    let mut variants: Vec<&str> = Vec::new();
    for r in results
        .iter()
        .filter(|r| r.variant != baseline && !skip.contains(&r.variant))
    {
        if !variants.contains(&r.variant.as_str()) {
            variants.push(&r.variant);
        }
    }
    variants
        .into_iter()
        .filter_map(|v| {
            let rows: Vec<(u64, Difference)> = results
                .iter()
                .filter(|r| r.variant == v)
                .filter_map(|r| {
                    base(r.seed).map(|e| (r.seed, Difference::between(&r.evaluation, &e)))
                })
                .collect();
            (!rows.is_empty()).then(|| Paired {
                variant: v.to_string(),
                baseline: baseline.to_string(),
                seeds: rows.iter().map(|(s, _)| *s).collect(),
                map: PairedMeasure::of(rows.iter().map(|(_, d)| d.map).collect()),
                rank1: PairedMeasure::of(rows.iter().map(|(_, d)| d.rank1).collect()),
            })
        })
        .collect()
}

/// The paired tables: one per baseline, one row per variant against it; a baseline whose
/// pairs all appeared against an earlier baseline gets a line saying so.
fn paired_table(baselines: &[String], paired: &[Paired]) -> String {
    let mut out = String::new();
    for (i, baseline) in baselines.iter().enumerate() {
        if !paired.iter().any(|p| &p.baseline == baseline) {
            if i > 0 {
                out.push_str(&format!(
                    "\n`{baseline}`: every pair with it is in the tables above (against {}), with the sign reversed.\n",
                    baselines[..i].join(", ")
                ));
            }
            continue;
        }
        out.push_str(&format!(
            "\n| variant − {baseline} | pairs | ΔmAP per seed | ΔmAP mean [95 % CI] | ΔRank-1 per seed | ΔRank-1 mean [95 % CI] |\n\
             |---|---|---|---|---|---|\n"
        ));
        for p in paired.iter().filter(|p| &p.baseline == baseline) {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                p.variant,
                p.seeds.len(),
                per_seed(&p.map),
                cell(&p.map),
                per_seed(&p.rank1),
                cell(&p.rank1),
            ));
        }
        out.push_str(&format!(
            "\npercentage points, variant minus `{baseline}` on the same seed (same data order and initialisation); \
             95 % confidence interval of the mean difference, Student's t with pairs − 1 degrees of freedom: \
             an interval that contains 0 is no significant difference at the 5 % level.\n"
        ));
    }
    out
}

/// The last evaluation logged in a run's `metrics.jsonl`, if the run finished.
fn finished_evaluation(run: &Path, epochs: usize) -> Result<Option<Evaluation>> {
    let records = scal_run::log::read(&scal_run::RunDir::new(run).metrics())?;
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
    let resume = scal_run::RunDir::new(run_dir).config().exists();
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

/// The baselines of the paired tables: `--paired-against`, each of which must be an
/// ablated variant, or `none` (paired only when it was ablated).
fn paired_baselines(args: &AblateArgs, variants: &[&Variant]) -> Result<Vec<String>> {
    let Some(asked) = &args.paired_against else {
        return Ok(vec![BASELINE.to_string()]);
    };
    let asked: Vec<String> = asked.iter().map(|b| b.trim().to_string()).collect();
    if let Some(b) = asked
        .iter()
        .find(|b| !variants.iter().any(|v| v.name == b.as_str()))
    {
        anyhow::bail!(
            "--paired-against: `{b}` is not among --variants ({}); its runs would not be read",
            args.variants.join(",")
        );
    }
    let mut unique: Vec<String> = Vec::new();
    for b in asked {
        if !unique.contains(&b) {
            unique.push(b);
        }
    }
    Ok(unique)
}

/// The variants of `--variants`, each once (a repeat would count its runs twice), by name.
fn chosen_variants(args: &AblateArgs) -> Result<Vec<&'static Variant>> {
    let known = || {
        ablation::VARIANTS
            .iter()
            .map(|v| v.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut variants: Vec<&'static Variant> = Vec::new();
    for name in &args.variants {
        let variant = ablation::variant(name.trim()).map_err(|_| {
            anyhow::anyhow!("--variants: unknown variant `{name}`; known: {}", known())
        })?;
        if !variants.iter().any(|v| v.name == variant.name) {
            variants.push(variant);
        }
    }
    Ok(variants)
}

/// The configuration every run starts from: the profile, `--config`, the typed flags and
/// `--set` (before the seed and the variant).
fn common_configuration(args: &AblateArgs) -> Result<TrainingConfig> {
    let root = args
        .root
        .as_deref()
        .map(|r| crate::cli::path_text("--root", r))
        .transpose()?;
    let sets = crate::cli::set_pairs(&args.set)?;
    let edit = |c: &mut TrainingConfig| {
        crate::cli::apply_dataset(c, args.dataset, root.as_deref());
        if let Some(e) = args.epochs {
            c.optim.epochs = e;
        }
        if let Some(l) = args.lambda {
            c.step.lambda = l;
        }
    };
    Ok(TrainingConfig::profile(args.profile).edited(args.config.as_deref(), edit, &sets)?)
}

/// `common` as `variant` trains it with `seed`. A `--set` field that the variant (or the
/// seed) sets to another value is refused: it would be dropped without a word.
fn run_configuration(
    args: &AblateArgs,
    common: &TrainingConfig,
    variant: &Variant,
    seed: u64,
) -> Result<TrainingConfig> {
    let mut seeded = common.clone();
    seeded.seed = seed;
    let config = variant.configure(seeded)?;
    let (asked, used) = (
        serde_json::to_value(common)?,
        serde_json::to_value(&config)?,
    );
    for (field, _) in crate::cli::set_pairs(&args.set)? {
        let pointer = format!("/{}", field.replace('.', "/"));
        let (a, u) = (asked.pointer(&pointer), used.pointer(&pointer));
        if a != u {
            let by = if field == "seed" {
                "--seeds".to_string()
            } else {
                format!("variant `{}`", variant.name)
            };
            anyhow::bail!(
                "--set {field}: {by} sets this field itself (to {}); an ablation compares its variants and seeds, so leave it out",
                u.map_or_else(|| "nothing".to_string(), ToString::to_string)
            );
        }
    }
    Ok(config)
}

impl AblateArgs {
    /// Runs `cargo xtask ablate`.
    pub fn run(self) -> Result<()> {
        ablate(&self)
    }
}

/// Runs every variant with every seed and prints the table. A run that fails (a diverging
/// loss, a device lost) does not stop the others: the table shows what finished, and the
/// command then fails naming the runs that did not.
fn ablate(args: &AblateArgs) -> Result<()> {
    let variants = chosen_variants(args)?;
    let baselines = paired_baselines(args, &variants)?;
    let common = common_configuration(args)?;
    let runs = args.runs.clone().unwrap_or_else(|| match &args.dataset {
        Some(d) => PathBuf::from(format!("runs/ablate-{d}")),
        None => PathBuf::from("runs/ablate"),
    });
    // Every run's configuration first: a refused one stops the ablation before any training.
    let mut planned = Vec::new();
    for variant in &variants {
        for seed in 0..args.seeds {
            planned.push((
                *variant,
                seed,
                run_configuration(args, &common, variant, seed)?,
            ));
        }
    }
    let bar = !args.no_progress;
    let tables = Tables {
        runs: &runs,
        variants: &variants,
        baselines: &baselines,
        seeds: args.seeds,
    };
    ablate_planned(&tables, planned, |config, run_dir, variant, seed| {
        evaluation_of(config, run_dir, variant, seed, bar)
    })
}

/// Where the tables go and what they cover.
struct Tables<'a> {
    runs: &'a Path,
    variants: &'a [&'static Variant],
    baselines: &'a [String],
    seeds: u64,
}

/// Evaluates every planned run with `evaluate` (trained, resumed or read back), then writes
/// the tables. A run that fails (a diverging one) is named and left out while the others go
/// on, and the tables hold what finished (`runs n/m`), then the command fails naming the runs
/// that did not (issue 42, C21: one diverging run stopped the ablation with no table);
/// Ctrl-C stops everything.
fn ablate_planned(
    tables: &Tables<'_>,
    planned: Vec<(&'static Variant, u64, TrainingConfig)>,
    mut evaluate: impl FnMut(&TrainingConfig, &Path, &Variant, u64) -> Result<Evaluation>,
) -> Result<()> {
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for (variant, seed, config) in planned {
        let run_dir = tables.runs.join(format!("{}-seed{seed}", variant.name));
        let evaluation = match evaluate(&config, &run_dir, variant, seed) {
            Ok(e) => e,
            Err(e) if e.downcast_ref::<crate::cli::Interrupted>().is_some() => return Err(e),
            Err(e) => {
                eprintln!("error: {}: {}", run_dir.display(), crate::error_chain(&e));
                failed.push(run_dir.display().to_string());
                continue;
            }
        };
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
    write_tables(
        tables.runs,
        tables.variants,
        tables.baselines,
        results,
        tables.seeds,
    )?;
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of the ablation's runs did not finish (the table holds the others): {}; see each run's error above, then run the same command again",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Prints the tables and writes them to `runs` (`ablation.md`, `ablation.json`,
/// `ablation-paired.json`), each replaced whole.
fn write_tables(
    runs: &Path,
    variants: &[&Variant],
    baselines: &[String],
    mut results: Vec<RunResult>,
    seeds: u64,
) -> Result<()> {
    fill_difference_from_none(&mut results);
    // A baseline already paired with an earlier one is not paired again the other way round.
    let paired: Vec<Paired> = baselines
        .iter()
        .enumerate()
        .flat_map(|(i, baseline)| pair_with(&results, baseline, &baselines[..i]))
        .collect();
    let table = table(variants, &results, seeds) + &paired_table(baselines, &paired);
    println!("\n{table}");
    std::fs::create_dir_all(runs).with_context(|| format!("creating {}", runs.display()))?;
    let files = [
        ("ablation.md", table),
        ("ablation.json", serde_json::to_string_pretty(&results)?),
        (
            "ablation-paired.json",
            serde_json::to_string_pretty(&paired)?,
        ),
    ];
    for (name, text) in &files {
        scal_fs::write_atomically(&runs.join(name), |tmp| {
            std::fs::write(tmp, text).map_err(|e| e.to_string())
        })?;
    }
    println!(
        "table: {}, per-run results: {}, paired differences: {}",
        runs.join("ablation.md").display(),
        runs.join("ablation.json").display(),
        runs.join("ablation-paired.json").display()
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
    use scal_run::log::Scores;

    fn result(variant: &str, seed: u64, map: f64) -> RunResult {
        let plain = Scores {
            rank1: map / 2.0,
            rank5: 0.0,
            rank10: 0.0,
            map,
            minp: 0.0,
        };
        RunResult {
            variant: variant.into(),
            seed,
            run: PathBuf::from(format!("{variant}-seed{seed}")),
            evaluation: Evaluation {
                plain,
                reranked: None,
                seconds: 0.0,
            },
            difference_from_none: None,
        }
    }

    #[test]
    fn pairs_each_variant_with_the_baseline_on_common_seeds_only() {
        let results = vec![
            result("none", 0, 0.30),
            result("none", 1, 0.40),
            result("channel-nocritic", 0, 0.35),
            result("channel-nocritic", 1, 0.36),
            result("channel", 0, 0.40),
            result("channel", 1, 0.38),
            result("channel", 2, 0.50),
        ];
        let paired = pair_with(&results, "channel-nocritic", &[]);
        let names: Vec<&str> = paired.iter().map(|p| p.variant.as_str()).collect();
        assert_eq!(names, ["none", "channel"]);
        let channel = &paired[1];
        assert_eq!(channel.baseline, "channel-nocritic");
        assert_eq!(channel.seeds, [0, 1], "seed 2 has no baseline run");
        let d = &channel.map.differences;
        assert!(
            (d[0] - 0.05).abs() < 1e-12 && (d[1] - 0.02).abs() < 1e-12,
            "{d:?}"
        );
        assert!((channel.rank1.differences[0] - 0.025).abs() < 1e-12);
        assert!(
            pair_with(&results, "spatial", &[]).is_empty(),
            "no baseline runs, no rows"
        );
        let skipped = pair_with(&results, "channel-nocritic", &["none".to_string()]);
        let names: Vec<&str> = skipped.iter().map(|p| p.variant.as_str()).collect();
        assert_eq!(
            names,
            ["channel"],
            "none − channel-nocritic is already in none's table"
        );

        let baselines = ["none".to_string(), "channel-nocritic".to_string()];
        let table = paired_table(
            &baselines,
            &[pair_with(&results, "none", &[]), paired].concat(),
        );
        assert!(table.contains("| variant − none |"), "{table}");
        assert!(table.contains("| variant − channel-nocritic |"), "{table}");
        assert!(
            table.contains("| channel | 2 | +5.00, +2.00 | +3.50 ["),
            "{table}"
        );
    }

    #[test]
    fn a_baseline_without_a_table_of_its_own_is_named() {
        let results = vec![result("none", 0, 0.30), result("channel", 0, 0.40)];
        let baselines = ["none".to_string(), "channel".to_string()];
        let paired = pair_with(&results, "none", &[]);
        let table = paired_table(&baselines, &paired);
        assert!(table.contains("| variant − none |"), "{table}");
        assert!(
            table.contains("`channel`: every pair with it is in the tables above (against none)"),
            "{table}"
        );
    }

    fn args(list: &[&str]) -> AblateArgs {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: AblateArgs,
        }
        let argv = std::iter::once("ablate").chain(list.iter().copied());
        Wrapper::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn a_failing_run_is_named_and_the_others_make_the_table() {
        let a = args(&["--variants", "none,channel", "--seeds", "2"]);
        let variants = chosen_variants(&a).unwrap();
        let common = common_configuration(&a).unwrap();
        let planned: Vec<_> = variants
            .iter()
            .flat_map(|v| (0..2).map(move |seed| (*v, seed)))
            .map(|(v, seed)| (v, seed, run_configuration(&a, &common, v, seed).unwrap()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let tables = Tables {
            runs: dir.path(),
            variants: &variants,
            baselines: &[],
            seeds: 2,
        };
        let mut evaluated = Vec::new();
        let err = ablate_planned(&tables, planned, |_, run_dir, variant, seed| {
            evaluated.push(run_dir.file_name().unwrap().to_string_lossy().into_owned());
            if (variant.name, seed) == ("channel", 0) {
                anyhow::bail!("the loss became inf at iteration 2");
            }
            Ok(result(variant.name, seed, 0.3 + 0.1 * seed as f64).evaluation)
        })
        .unwrap_err();
        // The run after the diverging one is trained all the same.
        assert_eq!(
            evaluated,
            ["none-seed0", "none-seed1", "channel-seed0", "channel-seed1"]
        );
        let message = err.to_string();
        assert!(
            message.starts_with("1 of the ablation's runs did not finish")
                && message.contains("channel-seed0")
                && !message.contains("channel-seed1"),
            "{message}"
        );
        let table = std::fs::read_to_string(dir.path().join("ablation.md")).unwrap();
        assert!(table.contains("| none | 2/2 | 35.00 ± 7.07 |"), "{table}");
        assert!(table.contains("| channel | 1/2 | 40.00 ± "), "{table}");
        // Ctrl-C stops the ablation at once, without a table.
        let dir = tempfile::tempdir().unwrap();
        let tables = Tables {
            runs: dir.path(),
            ..tables
        };
        let planned = vec![(variants[0], 0, common.clone()), (variants[1], 0, common)];
        let mut calls = 0;
        let err = ablate_planned(&tables, planned, |_, _, _, _| {
            calls += 1;
            Err(crate::cli::Interrupted.into())
        })
        .unwrap_err();
        assert!(err.downcast_ref::<crate::cli::Interrupted>().is_some());
        assert_eq!(calls, 1);
        assert!(!dir.path().join("ablation.md").exists());
    }

    #[test]
    fn a_repeated_variant_is_ablated_once() {
        let a = args(&["--variants", "none,none, channel,channel"]);
        let names: Vec<&str> = chosen_variants(&a)
            .unwrap()
            .iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["none", "channel"]);
        let a = args(&["--variants", "none,channel", "--paired-against", " none"]);
        let variants = chosen_variants(&a).unwrap();
        assert_eq!(paired_baselines(&a, &variants).unwrap(), ["none"]);
        let a = args(&[
            "--variants",
            "none,channel",
            "--paired-against",
            "none,none",
        ]);
        assert_eq!(paired_baselines(&a, &variants).unwrap(), ["none"]);
    }

    /// `--paired-against` a variant that is not ablated, unknown, or empty (trial 4, C1).
    #[test]
    fn a_baseline_outside_the_variants_is_refused_by_name() {
        for (baseline, shown) in [("spatial", "`spatial`"), ("bogus", "`bogus`"), ("", "``")] {
            let a = args(&["--variants", "none,channel", "--paired-against", baseline]);
            let variants = chosen_variants(&a).unwrap();
            let err = paired_baselines(&a, &variants).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "--paired-against: {shown} is not among --variants (none,channel); its runs would not be read"
                )
            );
        }
    }

    #[test]
    fn a_set_field_that_a_variant_changes_is_refused_by_name() {
        let a = args(&[
            "--variants",
            "none,channel",
            "--set",
            "model.attention=spatial",
        ]);
        let common = common_configuration(&a).unwrap();
        let none = ablation::variant("none").unwrap();
        let err = run_configuration(&a, &common, none, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--set model.attention") && err.contains("variant `none`"),
            "{err}"
        );
        let a = args(&["--set", "seed=7"]);
        let common = common_configuration(&a).unwrap();
        let err = run_configuration(&a, &common, none, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--set seed: --seeds"), "{err}");
        let a = args(&["--set", "optim.lr=0.002", "--root", "2024"]);
        let common = common_configuration(&a).unwrap();
        let config = run_configuration(&a, &common, none, 1).unwrap();
        assert_eq!((config.optim.lr, config.seed), (0.002, 1));
        assert_eq!(config.data.root, "2024", "a folder named 2024 is a folder");
    }

    #[test]
    fn the_difference_from_none_is_filled_per_seed() {
        let mut results = vec![
            result("none", 0, 0.30),
            result("channel", 0, 0.40),
            result("channel", 1, 0.38),
        ];
        fill_difference_from_none(&mut results);
        assert!(results[0].difference_from_none.is_none());
        assert!((results[1].difference_from_none.unwrap().map - 0.10).abs() < 1e-12);
        assert!(
            results[2].difference_from_none.is_none(),
            "seed 1 has no none run"
        );
    }
}
