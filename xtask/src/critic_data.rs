//! `cargo xtask critic-data`: what each critic reads, estimates and is taught on training
//! batches of a run, as `.npy` files for an offline probe (`scripts/critic-probe.py`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::Array1;
use scal_train::critic_data::critic_samples;

/// Writes, for training batches drawn as the run's training draws them (its seed, its
/// augmentation), each module's critic input `inputs_L.npy` (`[N, D_L]`) and estimate
/// `values_L.npy` (`[N]`), the realised rewards `correct.npy` (R_c) and `amelioration.npy`
/// (R_a), with `labels.npy`; and what a critic could know beyond its inputs: per module, the
/// realised gain `gain_L.npy` (the true class's probability with every module against module
/// L's map replaced by ones) and its sign `amelioration_L.npy` (R_a^L), and `pooled_L.npy`
/// (`[N, 2 · C_L · 8]`: X_L and X_L ⊙ A_L averaged on a 4 × 2 grid).
#[derive(Debug, clap::Args)]
pub struct CriticDataArgs {
    /// The run, its checkpoint, its dataset's folder, the backend.
    #[command(flatten)]
    pub run: crate::cli::RunFlags,
    /// Training batches (P × K images each), from the start of the run's first epoch (later
    /// epochs when one has fewer).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub batches: u32,
    /// Output folder, written as a whole (a new or empty folder, or one critic-data wrote:
    /// it is replaced once the new files are complete).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Whether `name` is one of the files critic-data writes.
fn is_critic_data_file(name: &str) -> bool {
    const SHARED: [&str; 3] = ["correct.npy", "amelioration.npy", "labels.npy"];
    const PER_MODULE: [&str; 5] = ["inputs_", "pooled_", "values_", "gain_", "amelioration_"];
    SHARED.contains(&name)
        || PER_MODULE.iter().any(|prefix| {
            name.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(".npy"))
                .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        })
}

fn write<T: ndarray_npy::WritableElement, D: ndarray::Dimension>(
    dir: &Path,
    name: &str,
    array: &ndarray::Array<T, D>,
) -> Result<()> {
    let path = dir.join(name);
    ndarray_npy::write_npy(&path, array).with_context(|| format!("writing {}", path.display()))
}

impl CriticDataArgs {
    /// Runs `cargo xtask critic-data`.
    pub fn run(self) -> Result<()> {
        critic_data(&self)
    }
}

/// Reads the run, draws the batches, writes the files into a staging folder and swaps it in.
fn critic_data(args: &CriticDataArgs) -> Result<()> {
    let (parent, name) = crate::cli::check_folder_replaceable(
        &args.out,
        "--out",
        "critic-data's .npy files",
        is_critic_data_file,
    )?;
    let run = crate::cli::run_on_training_data(&args.run, "critic-data")?;
    if run.config.step.self_critical_pairs > 0 {
        anyhow::bail!(
            "{}: step.self_critical_pairs = {}: a self-critical run trains no critic, so there is no V(X, A) to read",
            args.run.run.display(),
            run.config.step.self_critical_pairs
        );
    }
    let samples = critic_samples(&run.model, &run.loader, args.batches as usize, &run.device)?;
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    scal_fs::write_folder_atomically(&parent, &name, |dir| write_samples(dir, &samples))?;
    println!(
        "wrote {} samples of {} critics to {}; probe them with: python scripts/critic-probe.py {}",
        samples.labels.len(),
        samples.inputs.len(),
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

/// Every file of the samples into `dir`.
fn write_samples(dir: &Path, samples: &scal_train::critic_data::CriticSamples) -> Result<()> {
    let module_amelioration = samples.module_amelioration();
    let per_module = samples.inputs.iter().zip(&samples.pooled).zip(
        samples
            .values
            .iter()
            .zip(&samples.module_gain)
            .zip(&module_amelioration),
    );
    for (l, ((inputs, pooled), ((values, gain), own))) in per_module.enumerate() {
        write(dir, &format!("inputs_{l}.npy"), inputs)?;
        write(dir, &format!("pooled_{l}.npy"), pooled)?;
        let vectors = [("values", values), ("gain", gain), ("amelioration", own)];
        for (name, vector) in vectors {
            let array = Array1::from(vector.clone());
            write(dir, &format!("{name}_{l}.npy"), &array)?;
        }
    }
    write(dir, "correct.npy", &Array1::from(samples.correct.clone()))?;
    write(
        dir,
        "amelioration.npy",
        &Array1::from(samples.amelioration.clone()),
    )?;
    write(dir, "labels.npy", &Array1::from(samples.labels.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_files_are_critic_data_files() {
        for ours in [
            "inputs_0.npy",
            "pooled_4.npy",
            "gain_12.npy",
            "amelioration_3.npy",
            "labels.npy",
            "amelioration.npy",
        ] {
            assert!(is_critic_data_file(ours), "{ours}");
        }
        for theirs in [
            "notes.txt",
            "inputs_.npy",
            "inputs_x.npy",
            "inputs_0.npy.bak",
            "values.npy",
        ] {
            assert!(!is_critic_data_file(theirs), "{theirs}");
        }
    }
}
