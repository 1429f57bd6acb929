//! The report's page: `index.html`, static (no network), its figures beside it.

use std::fmt::Write as _;

use scal_data::ImageRecord;
use scal_model::AttentionKind;
use scal_rewards::RewardKind;
use scal_run::TrainingConfig;

use crate::curves::{Curve, Figure, RunLog};
use crate::figures::RankedQuery;

/// What the model figures of a report hold, when they could be drawn.
#[derive(Debug)]
pub struct ModelFigures {
    /// The checkpoint they were drawn from (`best` or `last`).
    pub checkpoint: String,
    /// The run's attention kind.
    pub attention: AttentionKind,
    /// The query split, for the ranked lists' names.
    pub query: Vec<ImageRecord>,
    /// The best queries (`ranked_best.png`).
    pub best: Vec<RankedQuery>,
    /// The worst queries (`ranked_worst.png`).
    pub worst: Vec<RankedQuery>,
}

/// Everything the page shows.
#[derive(Debug)]
pub struct Page<'a> {
    /// The run's name (its folder's).
    pub title: String,
    /// The run's configuration.
    pub config: &'a TrainingConfig,
    /// The run's log.
    pub log: &'a RunLog,
    /// The curves drawn.
    pub curves: Vec<Figure>,
    /// The model figures, if drawn.
    pub model: Option<ModelFigures>,
    /// Remarks (what was left out and why).
    pub notes: Vec<String>,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}", 100.0 * v))
}

impl Page<'_> {
    /// The page's HTML.
    pub fn html(&self) -> String {
        let mut html = String::new();
        self.header(&mut html);
        self.final_metrics(&mut html);
        html.push_str("<h2>Training curves</h2>\n");
        for f in &self.curves {
            let _ = writeln!(
                html,
                "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                f.file,
                f.title,
                html_escape(&f.caption)
            );
        }
        self.attention_quality(&mut html);
        if let Some(model) = &self.model {
            attention_maps(&mut html, model);
            ranked_lists(&mut html, model);
        }
        for n in &self.notes {
            let _ = writeln!(html, "<p><i>{}</i></p>", html_escape(n));
        }
        // Marks on <body> how many figures the browser loaded (read by the headless check).
        html.push_str("<script>window.addEventListener('load',function(){var i=document.images,n=0;for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}document.body.setAttribute('data-figures-loaded',n+'/'+i.length);});</script>\n");
        let config_json = serde_json::to_string_pretty(self.config).expect("serialisable");
        let _ = write!(
            html,
            "<h2>Configuration</h2>\n<pre id=\"config\">{}</pre>\n</body></html>\n",
            html_escape(&config_json)
        );
        html
    }

    fn header(&self, html: &mut String) {
        let config = self.config;
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>SCAL run {t}</title>\n<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}th{{background:#eee}}img{{max-width:100%}}figure{{margin:1.5em 0}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>\n<h1>SCAL run <code>{t}</code></h1>\n",
            t = html_escape(&self.title)
        );
        let _ = writeln!(
            html,
            "<p>Profile <b>{}</b>, attention <b>{}</b>, critic <b>{}</b>, reward <b>{}</b>, λ = {}, seed {}, dataset <code>{}</code> ({}).</p>",
            html_escape(&config.profile),
            config.model.attention,
            if config.step.critic { "on" } else { "off" },
            match config.step.reward {
                RewardKind::Correct => "R_c",
                RewardKind::Amelioration => "R_a",
                RewardKind::Both => "R_c + R_a",
                RewardKind::Planted => "planted (a positive control)",
                RewardKind::PlantedNoisy => "planted with flips (a positive control)",
                RewardKind::PlantedPerIdentity => {
                    "planted per identity (a per-sample positive control)"
                }
            },
            config.step.lambda,
            config.seed,
            html_escape(&config.data.root),
            config.data.dataset
        );
    }

    fn final_metrics(&self, html: &mut String) {
        html.push_str("<h2>Final metrics</h2>\n");
        let Some(e) = self.log.last_eval() else {
            html.push_str("<p>No evaluation yet.</p>\n");
            return;
        };
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
            "</table><p>The model after the last evaluated epoch, {} (<code>last/</code>; percent; flip test-time augmentation {}).</p>",
            e.epoch,
            if self.config.eval.flip { "on" } else { "off" }
        );
        if let Some(best) = self.log.best_eval() {
            let _ = writeln!(
                html,
                "<p id=\"best-note\"><code>best/</code> holds the model of epoch {} (mAP {}): it was <em>selected on the test split</em> (by its mAP on query/gallery), so its score is optimistic and is not reported as a result.</p>",
                best.epoch,
                pct(Some(best.evaluation.plain.map))
            );
        }
    }

    /// Per epoch: the R_c and R_a rates, the amelioration rates of the evaluations and the
    /// critics' calibration per module.
    fn attention_quality(&self, html: &mut String) {
        html.push_str("<h2>Attention quality</h2>\n");
        let log = self.log;
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
            return;
        }
        html.push_str("<p>Per epoch, from training: the R_c rate (correct with attention) and the R_a rate (attention raised the true class's probability over the no-attention pass). At each evaluation, on fixed training images in inference mode: the amelioration rate of all modules together and of each module l (its map replaced by ones against all modules applied). Per module, the critic's calibration: mean V<sub>l</sub> over the training samples whose realised reward R was 0 / 1 / 2; a critic that measures attention quality gives values that rise from left to right, near 0, 1, 2.</p>\n<table id=\"attention-quality\"><tr><th>epoch</th><th>R_c rate</th><th>R_a rate</th><th>amelioration, all modules</th>");
        for l in 1..=modules {
            let _ = write!(
                html,
                "<th>module {l} amelioration</th><th>module {l} V | R=0 / 1 / 2</th>"
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
}

fn attention_maps(html: &mut String, model: &ModelFigures) {
    if model.attention == AttentionKind::None {
        return;
    }
    let what = if model.attention == AttentionKind::Spatial {
        "the spatial attention map A<sub>l</sub>"
    } else {
        "channel attention has no spatial map: the channel-weighted activation Σ<sub>c</sub> A<sub>c</sub> X<sub>c</sub> / C"
    };
    let _ = writeln!(
        html,
        "<h2>Attention maps</h2>\n<figure><img src=\"attention.png\" alt=\"attention maps\"><figcaption>Each row: a query image, then modules 1–5 (after the stem, layer1, layer2, layer3, layer4); shown: {what}, scaled to [0, 1] per image (viridis: dark low, yellow high), checkpoint <code>{}</code>{}.</figcaption></figure>",
        html_escape(&model.checkpoint),
        selected_note(&model.checkpoint)
    );
}

/// " (selected on the test split)" for the `best` checkpoint, which was chosen by its test
/// mAP; nothing for `last`.
fn selected_note(checkpoint: &str) -> &'static str {
    if checkpoint == scal_run::Checkpoint::Best.as_str() {
        " (selected on the test split)"
    } else {
        ""
    }
}

fn ranked_lists(html: &mut String, model: &ModelFigures) {
    html.push_str("<h2>Ranked lists</h2>\n");
    for (file, name, rows) in [
        ("ranked_best.png", "Best queries", &model.best),
        ("ranked_worst.png", "Worst queries", &model.worst),
    ] {
        let aps: Vec<String> = rows
            .iter()
            .map(|r| {
                let name = model.query[r.query]
                    .path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy();
                format!("{} (AP {:.2})", html_escape(&name), r.average_precision)
            })
            .collect();
        let _ = writeln!(
            html,
            "<figure><img src=\"{file}\" alt=\"{name}\"><figcaption>{name}: the query (blue) and its 10 nearest gallery images after removing same-identity same-camera ones; green = same identity, red = another. Rows: {}.</figcaption></figure>",
            aps.join(", ")
        );
    }
}
