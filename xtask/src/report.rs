//! `cargo xtask report` (the run report) and `cargo xtask visualize` (attention maps of any
//! images).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use scal_report::figures::attention_figure;
use scal_report::{ReportOptions, build_report};
use scal_run::{Checkpoint, RunDir};

/// Writes RUN_DIR/report/index.html with its figures.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run folder (runs/NAME).
    pub run: PathBuf,
    /// Checkpoint of the attention maps and ranked lists: last (the final model) or best
    /// (selected on the test split).
    #[arg(long, default_value_t = Checkpoint::Last.as_str().to_string())]
    pub checkpoint: String,
    /// Query images in the attention figure.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub images: u32,
    /// Best and worst queries in the ranked lists (each).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub ranked: u32,
    /// Compute backend among those compiled in: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: scal_run::Backend,
}

impl ReportArgs {
    /// Runs `cargo xtask report`.
    pub fn run(self) -> Result<()> {
        report(&self)
    }
}

/// Builds the report.
fn report(args: &ReportArgs) -> Result<()> {
    let run = RunDir::new(&args.run);
    if !run.holds_run() {
        bail!(
            "{} is not a run folder (no {}); expected runs/<name>",
            args.run.display(),
            scal_run::run_dir::CONFIG_FILE
        );
    }
    let checkpoint = checkpoint_to_draw(&run, &args.checkpoint);
    let index = build_report(
        &args.run,
        &ReportOptions {
            device: crate::backend::device(args.backend)?,
            checkpoint,
            attention_images: args.images as usize,
            ranked_queries: args.ranked as usize,
        },
    )?;
    println!("report: {}", index.display());
    Ok(())
}

/// The checkpoint folder the report draws from: `asked`, or for `last`/`best` without a
/// model the other one when it has one (with a warning); any other folder name as it is.
fn checkpoint_to_draw(run: &RunDir, asked: &str) -> String {
    let Ok(wanted) = asked.parse::<Checkpoint>() else {
        return asked.to_string();
    };
    match run.model_checkpoint(wanted) {
        Some(found) if found != wanted => {
            eprintln!(
                "warning: {} has no {wanted}/ checkpoint: the attention maps and ranked lists are drawn from {found}/",
                run.path().display()
            );
            found.as_str().to_string()
        }
        Some(_) => asked.to_string(),
        None => {
            eprintln!(
                "warning: {} has no {wanted}/ checkpoint: the report leaves out the attention maps and ranked lists",
                run.path().display()
            );
            asked.to_string()
        }
    }
}

/// Draws the attention maps of the five modules over every image of a folder.
#[derive(Debug, clap::Args)]
pub struct VisualizeArgs {
    /// Checkpoint folder (runs/NAME/last, or best: selected on the test split).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Folder of images.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Output folder: one PNG per image (the image, then modules 1-5).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Compute backend among those compiled in: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: scal_run::Backend,
}

impl VisualizeArgs {
    /// Runs `cargo xtask visualize`.
    pub fn run(self) -> Result<()> {
        visualize(&self)
    }
}

/// Runs the visualisation. The output folder is written as a whole (staged beside it, then
/// swapped in): an error leaves the previous folder as it was, and a rerun replaces it
/// instead of mixing old and new figures.
fn visualize(args: &VisualizeArgs) -> Result<()> {
    let listing = scal_data::list_images(&args.images)?;
    let device = crate::backend::device(args.backend)?;
    let (model, config) = crate::cli::load_model_folder(&args.checkpoint, &device)?;
    if config.attention == scal_model::AttentionKind::None {
        bail!(
            "{} has no attention modules: nothing to draw",
            args.checkpoint.display()
        );
    }
    let (parent, name) =
        crate::cli::check_folder_replaceable(&args.out, "--out", "the attention figures", |f| {
            f.ends_with(".png")
        })?;
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    scal_run::folder::write_staged(&parent, &name, |dir| -> Result<()> {
        for path in &listing.images {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            let out = dir.join(format!("{stem}.png"));
            attention_figure(
                &model,
                config.attention,
                std::slice::from_ref(path),
                (config.height, config.width),
                &device,
                &out,
            )?;
        }
        Ok(())
    })?;
    println!(
        "wrote {} attention figures to {}{}",
        listing.images.len(),
        args.out.display(),
        if listing.skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} non-image entries skipped)", listing.skipped.len())
        }
    );
    Ok(())
}
