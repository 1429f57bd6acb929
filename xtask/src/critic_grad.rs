//! `cargo xtask critic-grad`: what `J_cri` tells a run's agents, per module (see
//! `scal_train::critic_grad`), as a table and optionally JSON.

use std::path::PathBuf;

use anyhow::Result;
use scal_train::critic_grad::{ModuleGradient, critic_gradients};

/// Measures, on training batches drawn as the run's training draws them, for each attention
/// module: the cosine between the direction in which `J_cri` moves the map and the direction
/// that raises the true class's log-probability (mean, bootstrap 95 % interval), the
/// correlation between the critic's `V(X, A) − V(X, 1)` and the realised gain of the map,
/// and the norms of `λ·∇J_cri` and of the ReID losses' gradient on the agent's parameters;
/// how much the samples' directions agree for each of the two gradients; with a planted
/// reward, also the cosine with its direction `w` at its module.
#[derive(Debug, clap::Args)]
pub struct CriticGradArgs {
    /// The run, its checkpoint, its dataset's folder, the backend.
    #[command(flatten)]
    pub run: crate::cli::RunFlags,
    /// Training batches (P × K images each), from the start of the run's first epoch.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub batches: u32,
    /// Also write the measurements as JSON to this file (a new file, or one critic-grad
    /// wrote).
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
}

/// Whether the first bytes of a file are critic-grad's JSON (an array of module records).
fn is_critic_grad_json(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    compact.starts_with("[{\"module\":") || compact == "[" || compact == "[{"
}

impl CriticGradArgs {
    /// Runs `cargo xtask critic-grad`.
    pub fn run(self) -> Result<()> {
        critic_grad(&self)
    }
}

/// Reads the run, measures, prints the table (and writes the JSON).
fn critic_grad(args: &CriticGradArgs) -> Result<()> {
    // The output is checked before minutes of measuring: its folder exists, and what is
    // there is ours to replace.
    if let Some(path) = &args.json {
        drop(crate::cli::temporary_beside(path, "--json")?);
        crate::cli::check_replaceable(path, "--json", "critic-grad JSON", is_critic_grad_json)?;
    }
    let run = crate::cli::run_on_training_data(&args.run, "critic-grad")?;
    let step = &scal_train::records::step_config(&run.config.step);
    let measured = critic_gradients(
        &run.model,
        &run.loader,
        args.batches as usize,
        step,
        &run.device,
    )?;
    print_table(&measured, step.lambda);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&measured).expect("serialisable");
        scal_fs::write_atomically(path, |tmp| {
            std::fs::write(tmp, text.as_bytes()).map_err(|e| e.to_string())
        })?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn print_table(measured: &[ModuleGradient], lambda: f64) {
    println!(
        "module  samples  cos(∂V/∂A, ∂log p_k/∂A) [95 % CI]   corr(V(A)−V(1), gain)   ‖λ∇J_cri‖ (λ = {lambda})   ‖∇(J_tri+J_cls)‖"
    );
    for m in measured {
        println!(
            "{:>6}  {:>7}  {:+.3} [{:+.3}, {:+.3}]            {:>21}   {:>21.3e}   {:>16.3e}",
            m.module,
            m.samples,
            m.cosine.mean,
            m.cosine.low,
            m.cosine.high,
            m.value_gain_correlation
                .map_or_else(|| "constant".to_string(), |c| format!("{c:+.3}")),
            m.critic_gradient_norm,
            m.reid_gradient_norm
        );
    }
    println!(
        "how much the samples' directions agree (1: one direction for all; ~1/√samples: unrelated)"
    );
    for m in measured {
        println!(
            "module {}: ∂V/∂A {:.3}, ∂log p_k/∂A {:.3}",
            m.module, m.value_gradient_coherence, m.class_gradient_coherence
        );
    }
    for m in measured {
        if let Some(c) = m.planted_cosine {
            println!(
                "module {}: cos(∂V/∂A, w) against the planted reward's direction {:+.3} [{:+.3}, {:+.3}]",
                m.module, c.mean, c.low, c.high
            );
        }
    }
}
