//! `cargo xtask bench`: the benchmark set on one backend (backbone inference and training
//! step, SCAL step, evaluation and re-ranking at Market-1501 size, data pipeline), one row per
//! measure; `cargo xtask parity`: the same model on flex and on another backend, compared.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use scal_run::Backend;
pub mod measures;
#[cfg(feature = "flex")]
pub mod ops;

use measures::{BenchOptions, BenchProfile, BenchRow, Measure, run_bench};

/// Runs the benchmark set and prints one row per measure.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Compute backend among those compiled in: flex, wgpu, cuda or remote.
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// With --backend remote: the `cargo xtask serve` server to measure (its device 0).
    #[arg(long, value_delimiter = ',', value_name = "ws://HOST:PORT")]
    pub hosts: Vec<String>,
    /// Print one JSON object per measure (one per line) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Measures to run, comma-separated: backbone_inference, backbone_train_step,
    /// scal_train_step, evaluation, rerank, data_pipeline (default: these six), rerank_msmt17
    /// (re-ranking from features at MSMT17 size, 11,659 × 82,161: minutes and ~5 GB) and ops
    /// (the operation-level profile of the BN-neck step on flex, one row per operation).
    #[arg(long, value_delimiter = ',')]
    pub measures: Option<Vec<String>>,
    /// Training batch (P × 4; default 64 on a GPU, 16 on flex).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Inference batch (default 64 on a GPU, 16 on flex).
    #[arg(long)]
    pub inference_batch: Option<usize>,
    /// Timed iterations (default 10 on a GPU, 3 on flex).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Untimed warm-up iterations (default 3 on a GPU, 1 on flex).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Measure a training profile's model instead of ResNet-50: `quick` (the default
    /// `cargo xtask train`'s ResNet-18 of base width 32 on 128 × 64 images, for the
    /// synthetic dataset's 100 identities). The model measures and `ops` take the profile's
    /// network, input size, batch (P × K = 64; inference: its evaluation batch, 64), optimizer
    /// and losses, and their rows its parameter count (data_pipeline its input size);
    /// --batch and --inference-batch still set the batches.
    #[arg(long, value_enum, conflicts_with_all = ["height", "width"])]
    pub profile: Option<BenchProfile>,
    /// Input height.
    #[arg(long, default_value_t = 256)]
    pub height: usize,
    /// Input width.
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// rerank_msmt17: time this features folder instead (query.npy, gallery.npy, as
    /// `evaluate --features` reads it, e.g. from scripts/msmt17-size-features.py).
    #[arg(long, value_name = "DIR")]
    pub rerank_features: Option<PathBuf>,
    /// rerank_msmt17: the dimension of the generated MSMT17-sized features.
    #[arg(long, default_value_t = 2048, value_name = "D")]
    pub rerank_dim: usize,
    /// Also append the JSON rows to this file.
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: Option<PathBuf>,
}

fn options(args: &BenchArgs) -> Result<BenchOptions> {
    let mut o = BenchOptions::defaults_for(args.backend);
    if let Some(profile) = args.profile {
        o = o.with_profile(profile);
    }
    if let Some(list) = &args.measures {
        o.measures = list
            .iter()
            .map(|m| m.trim().parse::<Measure>())
            .collect::<Result<_, _>>()
            .context("--measures")?;
    }
    if let Some(b) = args.batch {
        o.train_batch = b;
    }
    if let Some(b) = args.inference_batch {
        o.inference_batch = b;
    }
    if let Some(n) = args.iterations {
        o.iterations = n;
    }
    if let Some(n) = args.warmup {
        o.warmup = n;
    }
    if args.height == 0 || args.width == 0 {
        bail!("--height and --width must be positive");
    }
    // With a profile, its input size (clap refuses --height and --width beside --profile).
    if args.profile.is_none() {
        o.height = args.height;
        o.width = args.width;
    }
    o.hosts = args.hosts.clone();
    if args.rerank_dim == 0 {
        bail!("--rerank-dim must be positive");
    }
    o.rerank_features = args.rerank_features.clone();
    o.rerank_dim = args.rerank_dim;
    Ok(o)
}

fn table_line(r: &BenchRow) -> String {
    if let (Some(op), Some(count), Some(step_ms)) = (&r.op, r.count, r.step_ms) {
        let share = r.explained.map_or(String::new(), |e| {
            format!("  (operation rows: {:.0} % of the step)", e * 100.0)
        });
        return format!(
            "{:<20} {:<18} {:>9.2} ms × {:<3} = {:>8.1} ms  {}{share}",
            r.measure,
            op,
            r.seconds_per_iteration * 1000.0,
            count,
            step_ms,
            r.input
        );
    }
    let mib = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    format!(
        "{:<20} {:<6} {:>6} {:>10.2} {:<9} {:>9.3} {:>9} {:>9}  {}",
        r.measure,
        r.backend,
        r.batch,
        r.throughput,
        r.unit,
        r.seconds_per_iteration,
        mib(r.peak_rss_mib),
        mib(r.device_memory_mib),
        r.device
    )
}

/// Runs `cargo xtask bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let options = options(args)?;
    let mut out = match &args.out {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--out {}", path.display()))?,
        ),
        None => None,
    };
    if !args.json {
        println!(
            "{:<20} {:<6} {:>6} {:>10} {:<9} {:>9} {:>9} {:>9}  device",
            "measure", "back", "batch", "throughput", "unit", "s/iter", "RSS MiB", "dev MiB"
        );
    }
    let mut write_error = None;
    run_bench(args.backend, &options, |row| {
        let json = serde_json::to_string(row).expect("a row serialises");
        if args.json {
            println!("{json}");
        } else {
            println!("{}", table_line(row));
        }
        if let Some(file) = out.as_mut()
            && let Err(e) = writeln!(file, "{json}")
        {
            write_error.get_or_insert(e);
        }
    })?;
    if let (Some(e), Some(path)) = (write_error, &args.out) {
        bail!("--out {}: {e}", path.display());
    }
    Ok(())
}

/// Compares the SCAL model's forward pass and one training step on flex and on another
/// backend (`crate::parity`), one line per check; fails if any check fails.
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

/// Runs `cargo xtask parity`.
pub fn parity(args: &ParityArgs) -> Result<()> {
    let reference = crate::backend::device(Backend::Flex)?;
    let other = crate::backend::device_on(args.backend, &args.hosts)?;
    let device = crate::backend::device_name(args.backend, &other);
    let checks = crate::parity::parity(&reference, &other)?;
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

/// Lists the devices of a backend with their indices (for `--devices`).
#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// Compute backend among those compiled in: flex, wgpu, cuda or remote.
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// With --backend remote: the servers, in the order `train --hosts` will name them.
    #[arg(long, value_delimiter = ',', value_name = "ws://HOST:PORT,...")]
    pub hosts: Vec<String>,
}

/// Runs `cargo xtask devices`.
pub fn devices(args: &DevicesArgs) -> Result<()> {
    for (i, d) in crate::backend::all_devices(args.backend, &args.hosts)?
        .iter()
        .enumerate()
    {
        println!("{i}: {}", crate::backend::device_name(args.backend, d));
    }
    Ok(())
}
