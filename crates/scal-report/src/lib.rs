//! # scal-report
//!
//! The run report: `runs/<name>/report/index.html`, a static page (no network) with its
//! figures beside it, built from what a run folder holds:
//!
//! ```no_run
//! # use scal_report::{ReportOptions, build_report};
//! let device = burn::tensor::Device::default();
//! let index = build_report("runs/mine".as_ref(), &ReportOptions::on(device)).unwrap();
//! ```
//!
//! - [`curves`]: training curves (SVG): each loss, the learning rate, the R_c and R_a rates
//!   with the critics' mean V against the realised mean R, mAP and Rank-1 over epochs;
//! - [`figures`]: attention maps of the five modules over query images, and ranked lists
//!   (the best and worst queries with their nearest gallery images), as PNG;
//! - [`page`]: the page, with the attention-quality table (per epoch, the R_c and R_a rates
//!   and, per module, the critic's calibration and the amelioration rates), the final
//!   metrics and the configuration.
//!
//! The run is read through `scal-run`'s types (configuration, log, run folder), without the
//! training loop, the model through `scal-infer`'s model folder, and the report folder is written as a whole (`scal_run::folder::write_staged`): a failed or
//! interrupted build keeps the previous report.

#![warn(missing_docs)]

pub mod curves;
pub mod figures;
pub mod page;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use scal_data::{ReadOptions, ReidDataset};
use scal_infer::{EmbedOptions, QueryGallery};
use scal_model::{AttentionKind, ScalModel};
use scal_run::{Checkpoint, RunDir, TrainError, TrainingConfig};

use crate::curves::{draw_curves, read_log};
use crate::figures::{attention_figure, best_and_worst, ranked_figure};
use crate::page::{ModelFigures, Page};

/// What goes into a report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Device of the model figures (not autodiff).
    pub device: Device,
    /// Checkpoint folder of the run to draw the model figures from (`last`, or `best`, which
    /// was selected on the test split).
    pub checkpoint: String,
    /// Query images in the attention figure.
    pub attention_images: usize,
    /// Best and worst queries in the ranked lists (each).
    pub ranked_queries: usize,
}

impl ReportOptions {
    /// The defaults (checkpoint `last`, the final model; 6 attention images, 3 best and 3
    /// worst queries) on `device`.
    pub fn on(device: Device) -> Self {
        ReportOptions {
            device,
            checkpoint: Checkpoint::Last.as_str().into(),
            attention_images: 6,
            ranked_queries: 3,
        }
    }
}

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The run could not be read (configuration, log, checkpoint, features).
    #[error(transparent)]
    Run(#[from] TrainError),
    /// An image could not be read.
    #[error(transparent)]
    Data(#[from] scal_data::DataError),
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] scal_model::ModelError),
    /// The run's model could not embed the images (other than reading them or loading the
    /// model, which are [`ReportError::Data`] and [`ReportError::Model`]).
    #[error(transparent)]
    Infer(scal_infer::InferError),
    /// A figure could not be drawn or written.
    #[error("figure {}: {message}", path.display())]
    Figure {
        /// The figure's file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl From<scal_fs::FsError> for ReportError {
    fn from(error: scal_fs::FsError) -> Self {
        ReportError::Run(TrainError::Fs(error))
    }
}

impl From<scal_infer::InferError> for ReportError {
    fn from(error: scal_infer::InferError) -> Self {
        use scal_infer::InferError;
        match error {
            InferError::Data(e) => ReportError::Data(e),
            InferError::Model(e) => ReportError::Model(e),
            other => ReportError::Infer(other),
        }
    }
}

/// The error of a figure that could not be drawn or saved.
pub(crate) fn figure_error(path: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Figure {
        path: path.to_path_buf(),
        message: format!("drawing the figure failed: {e}"),
    }
}

/// Builds the report of `run_dir` into `run_dir/report` and returns the path of its
/// `index.html`.
pub fn build_report(run_dir: &Path, options: &ReportOptions) -> Result<PathBuf, ReportError> {
    let run = RunDir::new(run_dir);
    let config = TrainingConfig::load_json(&run.config())?;
    let log = read_log(&run.metrics())?;
    let out = scal_run::folder::write_staged(run_dir, scal_run::run_dir::REPORT_DIR, |dir| {
        let curves = draw_curves(&log, &config, dir)?;
        let mut notes = Vec::new();
        let model = model_figures(run_dir, &config, options, dir, &mut notes)?;
        let page = Page {
            title: run_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            config: &config,
            log: &log,
            curves,
            model,
            notes,
        };
        let index = dir.join("index.html");
        std::fs::write(&index, page.html()).map_err(|source| ReportError::Io {
            path: index,
            source,
        })
    })?;
    Ok(out.join("index.html"))
}

/// Draws the attention and ranked-list figures from the run's checkpoint into `dir`; when
/// the checkpoint or the dataset is missing, says so in `notes` and draws nothing.
fn model_figures(
    run_dir: &Path,
    config: &TrainingConfig,
    options: &ReportOptions,
    dir: &Path,
    notes: &mut Vec<String>,
) -> Result<Option<ModelFigures>, ReportError> {
    let checkpoint = RunDir::new(run_dir).path().join(&options.checkpoint);
    if !checkpoint.join(scal_model::CONFIG_FILE).is_file() {
        notes.push(format!(
            "No checkpoint in {}: attention maps and ranked lists are left out.",
            checkpoint.display()
        ));
        return Ok(None);
    }
    let read = ReadOptions {
        msmt17_combine_val: config.data.msmt17_combine_val,
    };
    let dataset =
        match scal_data::read_dataset(config.data.dataset, Path::new(&config.data.root), read) {
            Ok(dataset) => dataset,
            Err(e) => {
                notes.push(format!(
                "The dataset could not be read ({e}): attention maps and ranked lists are left out."
            ));
                return Ok(None);
            }
        };
    let device = &options.device;
    let (model, model_config) = ScalModel::load_dir(&checkpoint, device)?;
    let size = (model_config.height, model_config.width);
    if model_config.attention == AttentionKind::None {
        notes.push("This run has no attention modules: no attention maps.".into());
    } else {
        let picks = spread(&dataset, options.attention_images);
        attention_figure(
            &model,
            model_config.attention,
            &picks,
            size,
            device,
            &dir.join("attention.png"),
        )?;
    }
    let split = (dataset.query.as_slice(), dataset.gallery.as_slice());
    let embedding = EmbedOptions::new(size.0, size.1)
        .with_batch(config.eval.batch)
        .with_flip(config.eval.flip);
    let features = QueryGallery::embed(&model, split, embedding, device, &mut |_| {})?;
    let (best, worst) = best_and_worst(&features, options.ranked_queries)?;
    let shown = (2 * size.0 as u32, 2 * size.1 as u32);
    for (rows, file) in [(&best, "ranked_best.png"), (&worst, "ranked_worst.png")] {
        ranked_figure(
            rows,
            &dataset.query,
            &dataset.gallery,
            shown,
            &dir.join(file),
        )?;
    }
    Ok(Some(ModelFigures {
        checkpoint: options.checkpoint.clone(),
        attention: model_config.attention,
        query: dataset.query,
        best,
        worst,
    }))
}

/// `count` query images spread evenly over the query split.
fn spread(dataset: &ReidDataset, count: usize) -> Vec<PathBuf> {
    let n = dataset.query.len();
    let count = count.min(n);
    (0..count)
        .map(|i| dataset.query[i * n / count.max(1)].path.clone())
        .collect()
}
