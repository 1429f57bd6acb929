//! `cargo xtask export`: a trained checkpoint's weights as safetensors with PyTorch names.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// Writes the weights of a trained checkpoint as a safetensors file PyTorch loads.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Checkpoint folder (runs/NAME/last, or best: selected on the test split).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Output file (.safetensors).
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: PathBuf,
}

/// Runs the export.
pub fn run(args: &ExportArgs) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "--out {}: expected a .safetensors file name",
            args.out.display()
        );
    }
    let device = crate::backend::device(scal_train::Backend::Flex)?;
    let (model, config) = scal_model::ScalModel::load_dir(&args.checkpoint, &device)?;
    model.save_torchvision_safetensors(&args.out)?;
    println!(
        "wrote {} ({} backbone under torchvision names; neck.*, classifier.weight [{} x D], attention.*, critics.*)",
        args.out.display(),
        config.arch,
        config.num_classes
    );
    println!(
        "PyTorch: sd = safetensors.torch.load_file(\"{}\"); torchvision.models.{}().load_state_dict(sd, strict=False)",
        args.out.display(),
        config.arch
    );
    Ok(())
}
