//! `cargo xtask critic-data`: what each critic reads, estimates and is taught on training
//! batches of a run, as `.npy` files for an offline probe (`scripts/critic-probe.py`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::Array1;
use scal_run::Checkpoint;
use scal_train::critic_data::critic_samples;

use crate::backend::Backend;

/// Writes, for training batches drawn as the run's training draws them (its seed, its
/// augmentation), each module's critic input `inputs_L.npy` (`[N, D_L]`) and estimate
/// `values_L.npy` (`[N]`), the realised rewards `correct.npy` (R_c) and `amelioration.npy`
/// (R_a), with `labels.npy`; and what a critic could know beyond its inputs: per module, the
/// realised gain `gain_L.npy` (the true class's probability with every module against module
/// L's map replaced by ones) and its sign `amelioration_L.npy` (R_a^L), and `pooled_L.npy`
/// (`[N, 2 · C_L · 8]`: X_L and X_L ⊙ A_L averaged on a 4 × 2 grid).
#[derive(Debug, clap::Args)]
pub struct CriticDataArgs {
    /// The run folder (runs/NAME) of a run with attention.
    pub run: PathBuf,
    /// Checkpoint: last or best.
    #[arg(long, default_value_t = Checkpoint::Last.as_str().to_string())]
    pub checkpoint: String,
    /// Training batches (P × K images each), from the start of the run's first epoch (later
    /// epochs when one has fewer).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub batches: u32,
    /// Output folder (created; files in it are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Compute backend among those compiled in: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
}

fn write<T: ndarray_npy::WritableElement, D: ndarray::Dimension>(
    dir: &Path,
    name: &str,
    array: &ndarray::Array<T, D>,
) -> Result<()> {
    let path = dir.join(name);
    ndarray_npy::write_npy(&path, array).with_context(|| format!("writing {}", path.display()))
}

/// Reads the run, draws the batches, writes the files.
pub fn run(args: &CriticDataArgs) -> Result<()> {
    let run = crate::cli::run_on_training_data(&args.run, &args.checkpoint, args.backend)?;
    let samples = critic_samples(&run.model, &run.loader, args.batches as usize, &run.device)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let module_amelioration = samples.module_amelioration();
    let per_module = samples.inputs.iter().zip(&samples.pooled).zip(
        samples
            .values
            .iter()
            .zip(&samples.module_gain)
            .zip(&module_amelioration),
    );
    for (l, ((inputs, pooled), ((values, gain), own))) in per_module.enumerate() {
        write(&args.out, &format!("inputs_{l}.npy"), inputs)?;
        write(&args.out, &format!("pooled_{l}.npy"), pooled)?;
        let vectors = [("values", values), ("gain", gain), ("amelioration", own)];
        for (name, vector) in vectors {
            let array = Array1::from(vector.clone());
            write(&args.out, &format!("{name}_{l}.npy"), &array)?;
        }
    }
    write(
        &args.out,
        "correct.npy",
        &Array1::from(samples.correct.clone()),
    )?;
    write(
        &args.out,
        "amelioration.npy",
        &Array1::from(samples.amelioration.clone()),
    )?;
    write(
        &args.out,
        "labels.npy",
        &Array1::from(samples.labels.clone()),
    )?;
    println!(
        "wrote {} samples of {} critics to {}; probe them with: python scripts/critic-probe.py {}",
        samples.labels.len(),
        samples.inputs.len(),
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
