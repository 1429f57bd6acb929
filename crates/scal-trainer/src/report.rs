//! The run report: `runs/<name>/report/index.html`, a static page (no network) with its
//! figures beside it.
//!
//! - training curves (SVG, plotters): each loss, the learning rate, the R_c and R_a rates
//!   with the critics' mean V against the realised mean R, mAP and Rank-1 over epochs;
//! - the attention-quality table: per epoch, the R_c and R_a (amelioration) rates and, per
//!   module, the critic's calibration (mean V_l over the samples whose realised reward was
//!   0, 1 and 2);
//! - attention maps of the five modules over sample query images (PNG);
//! - ranked lists: the best and worst queries with their top 10 gallery images, green for a
//!   correct match, red for a wrong one (PNG);
//! - the run's configuration and final metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use image::{Rgb, RgbImage, imageops};
use imageproc::drawing::draw_hollow_rect_mut;
use imageproc::rect::Rect;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use scal_data::{ImageRecord, ReadOptions, TestTransform, read_dataset};
use scal_eval::{DistanceMetric, average_precision_per_query, pairwise_distances, top_k_gallery};
use scal_model::{AttentionKind, Gating, ScalModel};

use crate::TrainError;
use crate::backend::{self, Backend};
use crate::config::TrainingConfig;
use crate::eval::ModuleAmelioration;
use crate::log::{EvalRecord, Record, TrainRecord};

/// What goes into a report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Checkpoint folder of the run to draw the model figures from (`best` or `last`).
    pub checkpoint: String,
    /// Query images in the attention figure.
    pub attention_images: usize,
    /// Best and worst queries in the ranked lists (each).
    pub ranked_queries: usize,
    /// Backend of the model figures.
    pub backend: Backend,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            checkpoint: "best".into(),
            attention_images: 6,
            ranked_queries: 3,
            backend: Backend::Flex,
        }
    }
}

/// A per-iteration quantity the curves average per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Curve {
    Loss,
    Triplet,
    Classification,
    CriticMse,
    CriticObjective,
    Lr,
    CorrectRate,
    AmeliorationRate,
    MeanValue,
    CriticError,
}

impl Curve {
    const ALL: [Curve; 10] = [
        Curve::Loss,
        Curve::Triplet,
        Curve::Classification,
        Curve::CriticMse,
        Curve::CriticObjective,
        Curve::Lr,
        Curve::CorrectRate,
        Curve::AmeliorationRate,
        Curve::MeanValue,
        Curve::CriticError,
    ];

    /// The value of one iteration, where it has one.
    fn of(self, r: &TrainRecord) -> Option<f64> {
        let v = |x: f32| Some(x as f64);
        match self {
            Curve::Loss => v(r.loss),
            Curve::Triplet => v(r.triplet),
            Curve::Classification => v(r.classification),
            Curve::CriticMse => r.critic_mse.map(f64::from),
            Curve::CriticObjective => r.critic_objective.map(f64::from),
            Curve::Lr => Some(r.lr),
            Curve::CorrectRate => r.correct_rate.map(f64::from),
            Curve::AmeliorationRate => r.amelioration_rate.map(f64::from),
            Curve::MeanValue => r.mean_value.map(f64::from),
            Curve::CriticError => r.critic_error.map(f64::from),
        }
    }
}

/// Means of one epoch's iteration records.
#[derive(Debug, Default, Clone)]
struct EpochMeans {
    sums: BTreeMap<Curve, (f64, usize)>,
    /// Per module: sum of V_l × count and the count, per realised reward.
    calibration: Vec<[(f64, usize); 3]>,
}

impl EpochMeans {
    fn add(&mut self, record: &TrainRecord) {
        for curve in Curve::ALL {
            if let Some(v) = curve.of(record).filter(|v| v.is_finite()) {
                let e = self.sums.entry(curve).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
        let counts = &record.reward_counts;
        if counts.len() == 3 {
            let modules = &record.value_by_reward;
            if self.calibration.len() < modules.len() {
                self.calibration.resize(modules.len(), [(0.0, 0); 3]);
            }
            for (l, per_reward) in modules.iter().enumerate() {
                for r in 0..3 {
                    if let Some(v) = per_reward[r] {
                        self.calibration[l][r].0 += v as f64 * counts[r] as f64;
                        self.calibration[l][r].1 += counts[r];
                    }
                }
            }
        }
    }

    fn mean(&self, curve: Curve) -> Option<f64> {
        self.sums
            .get(&curve)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| s / *n as f64)
    }
}

/// What `metrics.jsonl` holds, summarised per epoch.
#[derive(Debug, Default)]
struct RunLog {
    epochs: BTreeMap<u64, EpochMeans>,
    evals: Vec<EvalRecord>,
}

impl RunLog {
    /// The last evaluation.
    fn last_eval(&self) -> Option<&EvalRecord> {
        self.evals.last()
    }

    /// The amelioration rates (all modules, per module) of the evaluation after `epoch`
    /// finished epochs.
    fn amelioration(&self, epoch: u64) -> Option<&ModuleAmelioration> {
        self.evals
            .iter()
            .rev()
            .find(|e| e.epoch == epoch)
            .and_then(|e| e.module_amelioration.as_ref())
    }
}

fn read_log(path: &Path) -> Result<RunLog, TrainError> {
    let mut log = RunLog::default();
    for record in crate::log::read(path)? {
        match record {
            Record::Train(t) => log.epochs.entry(t.epoch).or_default().add(&t),
            Record::Eval(e) => log.evals.push(e),
        }
    }
    if log.epochs.is_empty() {
        return Err(TrainError::Config(format!(
            "{} has no training line yet: nothing to report",
            path.display()
        )));
    }
    Ok(log)
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("drawing the figure failed: {e}"),
    }
}

/// A line chart of several series against epochs, as SVG.
fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    log_y: bool,
) -> Result<(), TrainError> {
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0))
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let (x0, x1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
        (a.min(*x), b.max(*x))
    });
    let (mut y0, mut y1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| {
        (a.min(*y), b.max(*y))
    });
    if y1 - y0 < 1e-12 {
        y0 -= 0.5 * y0.abs().max(1e-3);
        y1 += 0.5 * y1.abs().max(1e-3);
    }
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let root = SVGBackend::new(path, (640, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60);
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(y_label)
                .draw()
                .map_err(|e| plot_error(path, e))?;
            for (i, (name, s)) in series.iter().enumerate() {
                let color = colors[i % colors.len()];
                let data: Vec<(f64, f64)> = s
                    .iter()
                    .copied()
                    .filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0))
                    .collect();
                chart
                    .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
                    .map_err(|e| plot_error(path, e))?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(data.iter().map(|p| Circle::new(*p, 2, color.filled())))
                    .map_err(|e| plot_error(path, e))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| plot_error(path, e))?;
        }};
    }
    if log_y {
        draw!(
            builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(|e| plot_error(path, e))?
        );
    } else {
        draw!(
            builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| plot_error(path, e))?
        );
    }
    root.present().map_err(|e| plot_error(path, e))?;
    Ok(())
}

/// `(epoch, mean of field)` for every epoch that has it; epochs counted from 1.
fn per_epoch(log: &RunLog, curve: Curve) -> Vec<(f64, f64)> {
    log.epochs
        .iter()
        .filter_map(|(e, m)| m.mean(curve).map(|v| (*e as f64 + 1.0, v)))
        .collect()
}

/// An image scaled to `height × width`, for display.
fn display_image(path: &Path, height: u32, width: u32) -> Result<RgbImage, TrainError> {
    let img = image::open(path).map_err(|e| {
        TrainError::Data(scal_data::DataError::Decode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    })?;
    Ok(imageops::resize(
        &img.to_rgb8(),
        width,
        height,
        imageops::FilterType::Triangle,
    ))
}

/// Heat values (any range) of an `h × w` map over an image: normalised to [0, 1], scaled to
/// the image's size, coloured (viridis) and blended half and half with it.
fn overlay(base: &RgbImage, heat: &[f32], h: usize, w: usize) -> RgbImage {
    let (lo, hi) = heat
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let span = if hi - lo > 1e-12 { hi - lo } else { 1.0 };
    let small: image::ImageBuffer<image::Luma<f32>, Vec<f32>> =
        image::ImageBuffer::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([(heat[y as usize * w + x as usize] - lo) / span])
        });
    let big = imageops::resize(
        &small,
        base.width(),
        base.height(),
        imageops::FilterType::Triangle,
    );
    RgbImage::from_fn(base.width(), base.height(), |x, y| {
        let t = big.get_pixel(x, y)[0].clamp(0.0, 1.0);
        let c = ViridisRGB.get_color(t);
        let p = base.get_pixel(x, y);
        Rgb([
            ((p[0] as f32 + c.0 as f32) / 2.0) as u8,
            ((p[1] as f32 + c.1 as f32) / 2.0) as u8,
            ((p[2] as f32 + c.2 as f32) / 2.0) as u8,
        ])
    })
}

/// The heat maps of the five modules for a batch of images: the attention map itself for
/// spatial modules; for channel modules (which have no spatial map) the channel-weighted
/// activation `Σ_c A_c X_c / C`. One `(values [N·h·w], h, w)` per module.
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`
pub fn attention_heat(model: &ScalModel, images: Tensor<4>) -> Vec<(Vec<f32>, usize, usize)> {
    let out = model.forward(images, Gating::On);
    out.maps
        .iter()
        .zip(&out.stage_inputs)
        .map(|(a, x)| {
            let [n, c, h, w] = x.dims();
            let heat: Tensor<4> = if a.dims()[1] == 1 && c != 1 {
                a.clone()
            } else {
                (x.clone() * a.clone()).mean_dim(1)
            };
            let values: Vec<f32> = heat
                .reshape([n * h * w])
                .into_data()
                .try_to_vec::<f32>()
                .expect("float heat");
            (values, h, w)
        })
        .collect()
}

/// Side-by-side tiles: rows of images with `gap` pixels between them.
fn grid(rows: &[Vec<RgbImage>], gap: u32) -> RgbImage {
    let tile_w = rows.iter().flatten().map(|t| t.width()).max().unwrap_or(1);
    let tile_h = rows.iter().flatten().map(|t| t.height()).max().unwrap_or(1);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let mut canvas = RgbImage::from_pixel(
        cols * (tile_w + gap) + gap,
        rows.len() as u32 * (tile_h + gap) + gap,
        Rgb([255, 255, 255]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            imageops::overlay(
                &mut canvas,
                tile,
                (gap + c as u32 * (tile_w + gap)) as i64,
                (gap + r as u32 * (tile_h + gap)) as i64,
            );
        }
    }
    canvas
}

/// A copy of `tile` with a border of `color`, `width` pixels wide.
fn bordered(tile: &RgbImage, color: Rgb<u8>, width: u32) -> RgbImage {
    let mut t = tile.clone();
    for i in 0..width {
        let (w, h) = (
            t.width().saturating_sub(2 * i),
            t.height().saturating_sub(2 * i),
        );
        if w > 0 && h > 0 {
            draw_hollow_rect_mut(&mut t, Rect::at(i as i32, i as i32).of_size(w, h), color);
        }
    }
    t
}

fn save_png(img: &RgbImage, path: &Path) -> Result<(), TrainError> {
    img.save(path).map_err(|e| plot_error(path, e))
}

/// Draws the attention figure of `records` into `path`: one row per image, the image then
/// the five modules' heat maps over it.
pub fn attention_figure(
    model: &ScalModel,
    attention: AttentionKind,
    records: &[PathBuf],
    (height, width): (usize, usize),
    device: &Device,
    path: &Path,
) -> Result<(), TrainError> {
    if attention == AttentionKind::None || records.is_empty() {
        return Ok(());
    }
    let transform = TestTransform::new(height as u32, width as u32);
    let mut pixels = vec![0.0f32; records.len() * transform.len()];
    for (slot, p) in pixels.chunks_mut(transform.len()).zip(records) {
        transform.load_into(p, slot)?;
    }
    let images = Tensor::<4>::from_data(
        TensorData::new(pixels, [records.len(), 3, height, width]),
        device,
    );
    let heat = attention_heat(model, images);
    let (dh, dw) = (2 * height as u32, 2 * width as u32);
    let mut rows = Vec::new();
    for (i, p) in records.iter().enumerate() {
        let base = display_image(p, dh, dw)?;
        let mut row = vec![base.clone()];
        for (values, h, w) in &heat {
            let per = h * w;
            row.push(overlay(&base, &values[i * per..(i + 1) * per], *h, *w));
        }
        rows.push(row);
    }
    save_png(&grid(&rows, 4), path)
}

/// The queries picked for the ranked lists and what the page says of them.
struct Ranked {
    /// (query index, AP, top-10 gallery indices)
    best: Vec<(usize, f64, Vec<usize>)>,
    worst: Vec<(usize, f64, Vec<usize>)>,
}

fn ranked_lists(
    model: &ScalModel,
    query: &[ImageRecord],
    gallery: &[ImageRecord],
    size: (usize, usize),
    config: &TrainingConfig,
    count: usize,
    device: &Device,
) -> Result<Ranked, TrainError> {
    let paths = |r: &[ImageRecord]| -> Vec<PathBuf> { r.iter().map(|x| x.path.clone()).collect() };
    let q = crate::eval::features(
        model,
        &paths(query),
        size,
        config.eval.batch,
        config.eval.flip,
        device,
    )?;
    let g = crate::eval::features(
        model,
        &paths(gallery),
        size,
        config.eval.batch,
        config.eval.flip,
        device,
    )?;
    let d = pairwise_distances(q.view(), g.view(), DistanceMetric::Euclidean)?;
    let ids = |r: &[ImageRecord]| -> (Vec<i64>, Vec<i64>) {
        (
            r.iter().map(|x| x.pid).collect(),
            r.iter().map(|x| x.camid).collect(),
        )
    };
    let (q_pids, q_cams) = ids(query);
    let (g_pids, g_cams) = ids(gallery);
    let ap = average_precision_per_query(d.view(), &q_pids, &g_pids, &q_cams, &g_cams)?;
    let mut valid: Vec<(usize, f64)> = ap
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.map(|a| (i, a)))
        .collect();
    // Highest AP first; ties by query order.
    valid.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .expect("finite AP")
            .then(a.0.cmp(&b.0))
    });
    let top = |i: usize| top_k_gallery(d.row(i), q_pids[i], q_cams[i], &g_pids, &g_cams, 10);
    let best: Vec<_> = valid
        .iter()
        .take(count)
        .map(|&(i, a)| (i, a, top(i)))
        .collect();
    let worst: Vec<_> = valid
        .iter()
        .rev()
        .take(count)
        .map(|&(i, a)| (i, a, top(i)))
        .collect();
    Ok(Ranked { best, worst })
}

fn ranked_figure(
    rows: &[(usize, f64, Vec<usize>)],
    query: &[ImageRecord],
    gallery: &[ImageRecord],
    (height, width): (u32, u32),
    path: &Path,
) -> Result<(), TrainError> {
    let mut tiles = Vec::new();
    for (q, _, top) in rows {
        let mut row = vec![bordered(
            &display_image(&query[*q].path, height, width)?,
            Rgb([40, 90, 220]),
            3,
        )];
        for &g in top {
            let correct = gallery[g].pid == query[*q].pid;
            let color = if correct {
                Rgb([20, 170, 40])
            } else {
                Rgb([220, 30, 30])
            };
            row.push(bordered(
                &display_image(&gallery[g].path, height, width)?,
                color,
                3,
            ));
        }
        tiles.push(row);
    }
    save_png(&grid(&tiles, 3), path)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}", 100.0 * v))
}

/// Builds the report of `run_dir` and returns the path of its `index.html`.
pub fn build_report(run_dir: &Path, options: &ReportOptions) -> Result<PathBuf, TrainError> {
    let config = TrainingConfig::load_json(&run_dir.join("config.json"))?;
    let log = read_log(&run_dir.join("metrics.jsonl"))?;
    let out = run_dir.join("report");
    let staging = tempfile::Builder::new()
        .prefix(".report.tmp-")
        .tempdir_in(run_dir)
        .map_err(|source| TrainError::Io {
            path: run_dir.to_path_buf(),
            source,
        })?;
    let dir = staging.path();

    // Curves.
    let mut figures: Vec<(&str, &str, String)> = Vec::new();
    let losses: Vec<(&str, Vec<(f64, f64)>)> = [
        ("J_tri", Curve::Triplet),
        ("J_cls", Curve::Classification),
        ("J_mse", Curve::CriticMse),
        ("total", Curve::Loss),
    ]
    .iter()
    .map(|(name, curve)| (*name, per_epoch(&log, *curve)))
    .filter(|(_, s)| !s.is_empty())
    .collect();
    line_chart(
        &dir.join("losses.svg"),
        "losses (epoch means)",
        "loss",
        &losses,
        false,
    )?;
    figures.push(("losses.svg", "Losses", "Epoch means of the triplet, smoothed cross-entropy and critic (J_mse) losses and their sum (which includes λ·J_cri = −λ·V).".into()));
    let cri = per_epoch(&log, Curve::CriticObjective);
    if !cri.is_empty() {
        line_chart(
            &dir.join("critic_objective.svg"),
            "J_cri = −mean V (agents' objective)",
            "J_cri",
            &[("J_cri", cri)],
            false,
        )?;
        figures.push((
            "critic_objective.svg",
            "Agents' objective",
            "J_cri, the negated critic value the attention agents minimise.".into(),
        ));
    }
    line_chart(
        &dir.join("lr.svg"),
        "learning rate",
        "lr",
        &[("lr", per_epoch(&log, Curve::Lr))],
        true,
    )?;
    figures.push((
        "lr.svg",
        "Learning rate",
        "Linear warm-up then multi-step decay (log scale).".into(),
    ));
    let rc = per_epoch(&log, Curve::CorrectRate);
    if !rc.is_empty() {
        let ra = per_epoch(&log, Curve::AmeliorationRate);
        let reward = match config.step.reward {
            scal_rewards::RewardKind::Correct => rc.clone(),
            scal_rewards::RewardKind::Amelioration => ra.clone(),
            scal_rewards::RewardKind::Both => {
                rc.iter().zip(&ra).map(|(a, b)| (a.0, a.1 + b.1)).collect()
            }
        };
        line_chart(
            &dir.join("rewards.svg"),
            "rewards and the critics' estimate",
            "rate / value",
            &[
                ("R_c rate", rc),
                ("R_a rate", ra),
                ("mean realised R", reward),
                ("mean critic V", per_epoch(&log, Curve::MeanValue)),
            ],
            false,
        )?;
        figures.push(("rewards.svg", "Rewards and critic", "R_c: share of samples classified correctly with attention; R_a: share where attention raised the true class's probability; the critics' mean V should track the mean realised R.".into()));
    }
    if !log.evals.is_empty() {
        let mut s = vec![
            (
                "mAP",
                log.evals
                    .iter()
                    .map(|e| (e.epoch as f64, e.evaluation.plain.map))
                    .collect::<Vec<_>>(),
            ),
            (
                "Rank-1",
                log.evals
                    .iter()
                    .map(|e| (e.epoch as f64, e.evaluation.plain.rank1))
                    .collect(),
            ),
        ];
        let rr: Vec<(f64, f64)> = log
            .evals
            .iter()
            .filter_map(|e| e.evaluation.reranked.map(|r| (e.epoch as f64, r.map)))
            .collect();
        if !rr.is_empty() {
            s.push(("mAP re-ranked", rr));
        }
        line_chart(
            &dir.join("accuracy.svg"),
            "retrieval accuracy",
            "fraction",
            &s,
            false,
        )?;
        figures.push(("accuracy.svg", "Accuracy", "mAP and Rank-1 on the query/gallery split after each evaluation (flip TTA as configured).".into()));
    }

    // Model figures.
    let mut notes = Vec::new();
    let checkpoint_dir = run_dir.join(&options.checkpoint);
    let mut ranked = None;
    let mut dataset_for_figures = None;
    if !checkpoint_dir.join("model.json").is_file() {
        notes.push(format!(
            "No checkpoint in {}: attention maps and ranked lists are left out.",
            checkpoint_dir.display()
        ));
    } else {
        match read_dataset(
            config.data.dataset,
            Path::new(&config.data.root),
            ReadOptions {
                msmt17_combine_val: config.data.msmt17_combine_val,
            },
        ) {
            Err(e) => notes.push(format!(
                "The dataset could not be read ({e}): attention maps and ranked lists are left out."
            )),
            Ok(dataset) => {
                let device = backend::device(options.backend)?;
                let (model, model_config) =
                    scal_model::ScalModel::load_dir(&checkpoint_dir, &device)?;
                let size = (model_config.height, model_config.width);
                let n = dataset.query.len();
                let picks: Vec<PathBuf> = (0..options.attention_images.min(n))
                    .map(|i| {
                        dataset.query[i * n / options.attention_images.min(n).max(1)]
                            .path
                            .clone()
                    })
                    .collect();
                if model_config.attention == AttentionKind::None {
                    notes.push("This run has no attention modules: no attention maps.".into());
                } else {
                    attention_figure(
                        &model,
                        model_config.attention,
                        &picks,
                        size,
                        &device,
                        &dir.join("attention.png"),
                    )?;
                }
                let r = ranked_lists(
                    &model,
                    &dataset.query,
                    &dataset.gallery,
                    size,
                    &config,
                    options.ranked_queries,
                    &device,
                )?;
                let disp = (2 * size.0 as u32, 2 * size.1 as u32);
                ranked_figure(
                    &r.best,
                    &dataset.query,
                    &dataset.gallery,
                    disp,
                    &dir.join("ranked_best.png"),
                )?;
                ranked_figure(
                    &r.worst,
                    &dataset.query,
                    &dataset.gallery,
                    disp,
                    &dir.join("ranked_worst.png"),
                )?;
                ranked = Some(r);
                dataset_for_figures = Some((dataset, model_config.attention));
            }
        }
    }

    // The page.
    let title = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>SCAL run {t}</title>\n<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}th{{background:#eee}}img{{max-width:100%}}figure{{margin:1.5em 0}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>\n<h1>SCAL run <code>{t}</code></h1>\n",
        t = html_escape(&title)
    );
    let _ = writeln!(
        html,
        "<p>Profile <b>{}</b>, attention <b>{}</b>, critic <b>{}</b>, reward <b>{}</b>, λ = {}, seed {}, dataset <code>{}</code> ({}).</p>",
        html_escape(&config.profile),
        config.model.attention,
        if config.step.critic { "on" } else { "off" },
        match config.step.reward {
            scal_rewards::RewardKind::Correct => "R_c",
            scal_rewards::RewardKind::Amelioration => "R_a",
            scal_rewards::RewardKind::Both => "R_c + R_a",
        },
        config.step.lambda,
        config.seed,
        html_escape(&config.data.root),
        config.data.dataset
    );
    html.push_str("<h2>Final metrics</h2>\n");
    match log.last_eval() {
        Some(e) => {
            html.push_str("<table id=\"final-metrics\"><tr><th></th><th>Rank-1</th><th>Rank-5</th><th>Rank-10</th><th>mAP</th><th>mINP</th></tr>\n");
            let rows = [
                ("plain", Some(e.evaluation.plain)),
                ("re-ranked", e.evaluation.reranked),
            ];
            for (name, scores) in rows {
                if let Some(s) = scores {
                    let _ = writeln!(
                        html,
                        "<tr><th>{name}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        pct(Some(s.rank1)),
                        pct(Some(s.rank5)),
                        pct(Some(s.rank10)),
                        pct(Some(s.map)),
                        pct(Some(s.minp))
                    );
                }
            }
            let _ = writeln!(
                html,
                "</table><p>After epoch {} (percent; flip test-time augmentation {}).</p>",
                e.epoch,
                if config.eval.flip { "on" } else { "off" }
            );
        }
        None => html.push_str("<p>No evaluation yet.</p>\n"),
    }
    html.push_str("<h2>Training curves</h2>\n");
    for (file, name, caption) in &figures {
        let _ = writeln!(
            html,
            "<figure><img src=\"{file}\" alt=\"{name}\"><figcaption>{}</figcaption></figure>",
            html_escape(caption)
        );
    }

    html.push_str("<h2>Attention quality</h2>\n");
    let modules = log
        .epochs
        .values()
        .map(|m| m.calibration.len())
        .chain(
            log.evals
                .iter()
                .filter_map(|e| e.module_amelioration.as_ref())
                .map(|a| a.per_module.len()),
        )
        .max()
        .unwrap_or(0);
    if modules == 0 {
        html.push_str(
            "<p>No attention or no critic in this run: no attention-quality measure.</p>\n",
        );
    } else {
        html.push_str("<p>Per epoch, from training: the R_c rate (correct with attention) and the R_a rate (attention raised the true class's probability over the no-attention pass). At each evaluation, on fixed training images in inference mode: the amelioration rate of all modules together and of each module l (its map replaced by ones against all modules applied). Per module, the critic's calibration: mean V<sub>l</sub> over the training samples whose realised reward R was 0 / 1 / 2; a critic that measures attention quality gives values that rise from left to right, near 0, 1, 2.</p>\n<table id=\"attention-quality\"><tr><th>epoch</th><th>R_c rate</th><th>R_a rate</th><th>amelioration, all modules</th>");
        for l in 0..modules {
            let _ = write!(
                html,
                "<th>module {} amelioration</th><th>module {} V | R=0 / 1 / 2</th>",
                l + 1,
                l + 1
            );
        }
        html.push_str("</tr>\n");
        for (epoch, m) in &log.epochs {
            let evaluated = log.amelioration(epoch + 1);
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                epoch + 1,
                pct(m.mean(Curve::CorrectRate)),
                pct(m.mean(Curve::AmeliorationRate)),
                pct(evaluated.map(|a| a.all_modules))
            );
            for l in 0..modules {
                let cell: Vec<String> = (0..3)
                    .map(|r| match m.calibration.get(l).map(|c| c[r]) {
                        Some((s, n)) if n > 0 => format!("{:.2}", s / n as f64),
                        _ => "–".into(),
                    })
                    .collect();
                let _ = write!(
                    html,
                    "<td>{}</td><td>{}</td>",
                    pct(evaluated.and_then(|a| a.per_module.get(l).copied())),
                    cell.join(" / ")
                );
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n<p>Rates in percent.</p>\n");
    }

    if let Some((_, attention)) = &dataset_for_figures
        && *attention != AttentionKind::None
    {
        let what = if *attention == AttentionKind::Spatial {
            "the spatial attention map A<sub>l</sub>"
        } else {
            "channel attention has no spatial map: the channel-weighted activation Σ<sub>c</sub> A<sub>c</sub> X<sub>c</sub> / C"
        };
        let _ = writeln!(
            html,
            "<h2>Attention maps</h2>\n<figure><img src=\"attention.png\" alt=\"attention maps\"><figcaption>Each row: a query image, then modules 1–5 (after the stem, layer1, layer2, layer3, layer4); shown: {what}, scaled to [0, 1] per image (viridis: dark low, yellow high), checkpoint <code>{}</code>.</figcaption></figure>",
            html_escape(&options.checkpoint)
        );
    }
    if let (Some(r), Some((dataset, _))) = (&ranked, &dataset_for_figures) {
        html.push_str("<h2>Ranked lists</h2>\n");
        for (file, name, rows) in [
            ("ranked_best.png", "Best queries", &r.best),
            ("ranked_worst.png", "Worst queries", &r.worst),
        ] {
            let aps: Vec<String> = rows
                .iter()
                .map(|(q, ap, _)| {
                    format!(
                        "{} (AP {:.2})",
                        html_escape(
                            &dataset.query[*q]
                                .path
                                .file_name()
                                .unwrap_or_default()
                                .to_string_lossy()
                        ),
                        ap
                    )
                })
                .collect();
            let _ = writeln!(
                html,
                "<figure><img src=\"{file}\" alt=\"{name}\"><figcaption>{name}: the query (blue) and its 10 nearest gallery images after removing same-identity same-camera ones; green = same identity, red = another. Rows: {}.</figcaption></figure>",
                aps.join(", ")
            );
        }
    }
    for n in &notes {
        let _ = writeln!(html, "<p><i>{}</i></p>", html_escape(n));
    }
    // Marks on <body> how many figures the browser loaded (read by the headless check).
    html.push_str("<script>window.addEventListener('load',function(){var i=document.images,n=0;for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}document.body.setAttribute('data-figures-loaded',n+'/'+i.length);});</script>\n");
    let config_json = serde_json::to_string_pretty(&config).expect("serialisable");
    let _ = write!(
        html,
        "<h2>Configuration</h2>\n<pre id=\"config\">{}</pre>\n</body></html>\n",
        html_escape(&config_json)
    );
    std::fs::write(dir.join("index.html"), html).map_err(|source| TrainError::Io {
        path: dir.join("index.html"),
        source,
    })?;

    // Swap the finished folder in.
    let staged = staging.keep();
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|source| TrainError::Io {
            path: out.clone(),
            source,
        })?;
    }
    std::fs::rename(&staged, &out).map_err(|source| TrainError::Io {
        path: out.clone(),
        source,
    })?;
    Ok(out.join("index.html"))
}
