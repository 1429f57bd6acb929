//! `cargo xtask report` (the run report) and `cargo xtask visualize` (attention maps of any
//! images).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use scal_report::figures::attention_figure;
use scal_report::{ReportOptions, build_report};

/// Writes RUN_DIR/report/index.html with its figures.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run folder (runs/<name>).
    pub run: PathBuf,
    /// Checkpoint of the attention maps and ranked lists: best or last.
    #[arg(long, default_value = "best")]
    pub checkpoint: String,
    /// Query images in the attention figure.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub images: u32,
    /// Best and worst queries in the ranked lists (each).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub ranked: u32,
    /// Compute backend among those compiled in: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: scal_train::Backend,
}

/// Builds the report.
pub fn report(args: &ReportArgs) -> Result<()> {
    if !args.run.join("config.json").is_file() {
        bail!(
            "{} is not a run folder (no config.json); expected runs/<name>",
            args.run.display()
        );
    }
    let index = build_report(
        &args.run,
        &ReportOptions {
            device: crate::backend::device(args.backend)?,
            checkpoint: args.checkpoint.clone(),
            attention_images: args.images as usize,
            ranked_queries: args.ranked as usize,
        },
    )?;
    println!("report: {}", index.display());
    Ok(())
}

/// Draws the attention maps of the five modules over every image of a folder.
#[derive(Debug, clap::Args)]
pub struct VisualizeArgs {
    /// Checkpoint folder (runs/<name>/best or last).
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
    pub backend: scal_train::Backend,
}

/// Runs the visualisation.
pub fn visualize(args: &VisualizeArgs) -> Result<()> {
    let listing = scal_data::list_images(&args.images)?;
    let device = crate::backend::device(args.backend)?;
    let (model, config) = scal_model::ScalModel::load_dir(&args.checkpoint, &device)?;
    if config.attention == scal_model::AttentionKind::None {
        bail!(
            "{} has no attention modules: nothing to draw",
            args.checkpoint.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for path in &listing.images {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let out = args.out.join(format!("{stem}.png"));
        attention_figure(
            &model,
            config.attention,
            std::slice::from_ref(path),
            (config.height, config.width),
            &device,
            &out,
        )?;
    }
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
