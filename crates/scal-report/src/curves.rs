//! The training curves: `metrics.jsonl` averaged per epoch ([`RunLog`]) and drawn as SVG
//! line charts (plotters): the losses, the learning rate, the rewards against the critics'
//! estimate, and the accuracy over evaluations.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use scal_rewards::RewardKind;
use scal_run::ModuleAmelioration;
use scal_run::log::{EvalRecord, Record, TrainRecord};
use scal_run::{TrainError, TrainingConfig};

use crate::{ReportError, figure_error};

/// A per-iteration quantity the curves average per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Curve {
    /// The summed loss.
    Loss,
    /// `J_tri`.
    Triplet,
    /// `J_cls`.
    Classification,
    /// `J_mse`.
    CriticMse,
    /// `J_cri`.
    CriticObjective,
    /// The learning rate.
    Lr,
    /// The R_c rate.
    CorrectRate,
    /// The R_a rate.
    AmeliorationRate,
    /// The critics' mean estimate.
    MeanValue,
    /// The critics' mean |V − R|.
    CriticError,
}

impl Curve {
    /// Every curve.
    pub const ALL: [Curve; 10] = [
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
    pub fn of(self, r: &TrainRecord) -> Option<f64> {
        let v = |x: f32| Some(x as f64);
        match self {
            Curve::Loss => v(r.step.loss),
            Curve::Triplet => v(r.step.triplet),
            Curve::Classification => v(r.step.classification),
            Curve::CriticMse => r.step.critic_mse.map(f64::from),
            Curve::CriticObjective => r.step.critic_objective.map(f64::from),
            Curve::Lr => Some(r.lr),
            Curve::CorrectRate => r.step.correct_rate.map(f64::from),
            Curve::AmeliorationRate => r.step.amelioration_rate.map(f64::from),
            Curve::MeanValue => r.step.mean_value.map(f64::from),
            Curve::CriticError => r.step.critic_error.map(f64::from),
        }
    }
}

/// Means of one epoch's iteration records.
#[derive(Debug, Default, Clone)]
pub struct EpochMeans {
    sums: BTreeMap<Curve, (f64, usize)>,
    /// Per module: sum of V_l × count and the count, per realised reward.
    pub calibration: Vec<[(f64, usize); 3]>,
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
        let counts = &record.step.reward_counts;
        if counts.len() == 3 {
            let modules = &record.step.value_by_reward;
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

    /// The epoch mean of `curve`, where an iteration had it.
    pub fn mean(&self, curve: Curve) -> Option<f64> {
        self.sums
            .get(&curve)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| s / *n as f64)
    }
}

/// What `metrics.jsonl` holds, summarised per epoch.
#[derive(Debug, Default)]
pub struct RunLog {
    /// Per 0-based epoch, the means of its iteration records.
    pub epochs: BTreeMap<u64, EpochMeans>,
    /// Every evaluation, in order.
    pub evals: Vec<EvalRecord>,
}

impl RunLog {
    /// The last evaluation.
    pub fn last_eval(&self) -> Option<&EvalRecord> {
        self.evals.last()
    }

    /// The evaluation of highest plain mAP: the model `best/` holds, selected on the test
    /// split.
    pub fn best_eval(&self) -> Option<&EvalRecord> {
        self.evals
            .iter()
            .filter(|e| e.evaluation.plain.map.is_finite())
            .max_by(|a, b| a.evaluation.plain.map.total_cmp(&b.evaluation.plain.map))
    }

    /// The amelioration rates (all modules, per module) of the evaluation after `epoch`
    /// finished epochs.
    pub fn amelioration(&self, epoch: u64) -> Option<&ModuleAmelioration> {
        self.evals
            .iter()
            .rev()
            .find(|e| e.epoch == epoch)
            .and_then(|e| e.module_amelioration.as_ref())
    }
}

/// Reads a run's `metrics.jsonl` into per-epoch means and the evaluations.
pub fn read_log(path: &Path) -> Result<RunLog, ReportError> {
    let mut log = RunLog::default();
    for record in scal_run::log::read(path).map_err(TrainError::from)? {
        match record {
            Record::Train(t) => log.epochs.entry(t.epoch).or_default().add(&t),
            Record::Eval(e) => log.evals.push(e),
        }
    }
    if log.epochs.is_empty() {
        return Err(TrainError::NothingToReport {
            log: path.to_path_buf(),
        }
        .into());
    }
    Ok(log)
}

/// A line chart of several series against epochs, as SVG.
pub fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    log_y: bool,
) -> Result<(), ReportError> {
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
    root.fill(&WHITE).map_err(|e| figure_error(path, e))?;
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
                .map_err(|e| figure_error(path, e))?;
            for (i, (name, s)) in series.iter().enumerate() {
                let color = colors[i % colors.len()];
                let data: Vec<(f64, f64)> = s
                    .iter()
                    .copied()
                    .filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0))
                    .collect();
                chart
                    .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
                    .map_err(|e| figure_error(path, e))?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(data.iter().map(|p| Circle::new(*p, 2, color.filled())))
                    .map_err(|e| figure_error(path, e))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| figure_error(path, e))?;
        }};
    }
    if log_y {
        draw!(
            builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(|e| figure_error(path, e))?
        );
    } else {
        draw!(
            builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| figure_error(path, e))?
        );
    }
    root.present().map_err(|e| figure_error(path, e))?;
    Ok(())
}

/// `(epoch, mean of field)` for every epoch that has it; epochs counted from 1.
pub fn per_epoch(log: &RunLog, curve: Curve) -> Vec<(f64, f64)> {
    log.epochs
        .iter()
        .filter_map(|(e, m)| m.mean(curve).map(|v| (*e as f64 + 1.0, v)))
        .collect()
}

/// A figure of the page: its file, its title and its caption.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File name in the report folder.
    pub file: &'static str,
    /// Short title (the image's alternative text).
    pub title: &'static str,
    /// What it shows.
    pub caption: String,
}

/// Draws every curve the log has into `dir`; returns the figures drawn, in page order.
pub fn draw_curves(
    log: &RunLog,
    config: &TrainingConfig,
    dir: &Path,
) -> Result<Vec<Figure>, ReportError> {
    let mut figures = Vec::new();
    let mut add = |file: &'static str, title: &'static str, caption: &str| {
        figures.push(Figure {
            file,
            title,
            caption: caption.to_string(),
        })
    };
    let losses: Vec<(&str, Vec<(f64, f64)>)> = [
        ("J_tri", Curve::Triplet),
        ("J_cls", Curve::Classification),
        ("J_mse", Curve::CriticMse),
        ("total", Curve::Loss),
    ]
    .iter()
    .map(|(name, curve)| (*name, per_epoch(log, *curve)))
    .filter(|(_, s)| !s.is_empty())
    .collect();
    line_chart(
        &dir.join("losses.svg"),
        "losses (epoch means)",
        "loss",
        &losses,
        false,
    )?;
    add(
        "losses.svg",
        "Losses",
        "Epoch means of the triplet, smoothed cross-entropy and critic (J_mse) losses and their sum (which includes λ·J_cri = −λ·V).",
    );
    let cri = per_epoch(log, Curve::CriticObjective);
    if !cri.is_empty() {
        line_chart(
            &dir.join("critic_objective.svg"),
            "J_cri = −mean V (agents' objective)",
            "J_cri",
            &[("J_cri", cri)],
            false,
        )?;
        add(
            "critic_objective.svg",
            "Agents' objective",
            "J_cri, the negated critic value the attention agents minimise.",
        );
    }
    line_chart(
        &dir.join("lr.svg"),
        "learning rate",
        "lr",
        &[("lr", per_epoch(log, Curve::Lr))],
        true,
    )?;
    add(
        "lr.svg",
        "Learning rate",
        "Linear warm-up then multi-step decay (log scale).",
    );
    if draw_rewards(log, config.step.reward, dir)? {
        add(
            "rewards.svg",
            "Rewards and critic",
            "R_c: share of samples classified correctly with attention; R_a: share where attention raised the true class's probability; the critics' mean V should track the mean realised R.",
        );
    }
    if draw_accuracy(log, dir)? {
        add(
            "accuracy.svg",
            "Accuracy",
            "mAP and Rank-1 on the query/gallery split after each evaluation (flip TTA as configured).",
        );
    }
    Ok(figures)
}

/// The R_c and R_a rates, the mean realised reward and the critics' mean estimate per
/// epoch (`rewards.svg`), when the run has a critic; returns whether it drew.
fn draw_rewards(log: &RunLog, reward: RewardKind, dir: &Path) -> Result<bool, ReportError> {
    let rc = per_epoch(log, Curve::CorrectRate);
    if rc.is_empty() {
        return Ok(false);
    }
    let ra = per_epoch(log, Curve::AmeliorationRate);
    // The planted reward of the positive control is not made of R_c and R_a.
    let realised = match reward {
        RewardKind::Correct => Some(rc.clone()),
        RewardKind::Amelioration => Some(ra.clone()),
        RewardKind::Both => Some(rc.iter().zip(&ra).map(|(a, b)| (a.0, a.1 + b.1)).collect()),
        RewardKind::Planted | RewardKind::PlantedNoisy | RewardKind::PlantedPerIdentity => None,
    };
    let mut series = vec![("R_c rate", rc), ("R_a rate", ra)];
    series.extend(realised.map(|r| ("mean realised R", r)));
    series.push(("mean critic V", per_epoch(log, Curve::MeanValue)));
    line_chart(
        &dir.join("rewards.svg"),
        "rewards and the critics' estimate",
        "rate / value",
        &series,
        false,
    )?;
    Ok(true)
}

/// mAP, Rank-1 and the re-ranked mAP over evaluations (`accuracy.svg`); returns whether
/// it drew.
fn draw_accuracy(log: &RunLog, dir: &Path) -> Result<bool, ReportError> {
    if log.evals.is_empty() {
        return Ok(false);
    }
    let at = |f: &dyn Fn(&EvalRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        log.evals
            .iter()
            .filter_map(|e| f(e).map(|v| (e.epoch as f64, v)))
            .collect()
    };
    let mut series = vec![
        ("mAP", at(&|e| Some(e.evaluation.plain.map))),
        ("Rank-1", at(&|e| Some(e.evaluation.plain.rank1))),
    ];
    let reranked = at(&|e| e.evaluation.reranked.map(|r| r.map));
    if !reranked.is_empty() {
        series.push(("mAP re-ranked", reranked));
    }
    line_chart(
        &dir.join("accuracy.svg"),
        "retrieval accuracy",
        "fraction",
        &series,
        false,
    )?;
    Ok(true)
}
