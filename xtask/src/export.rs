//! `cargo xtask export`: a trained checkpoint as safetensors with PyTorch names (the default)
//! or as an ONNX inference graph.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Every weight under torchvision's names (`.safetensors`), for PyTorch.
    Safetensors,
    /// The inference graph (`.onnx`, opset 18): normalised images [N, 3, H, W] → the
    /// L2-normalised post-BN feature [N, D] that `extract --checkpoint` writes; N dynamic.
    Onnx,
}

impl ExportFormat {
    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Safetensors => "safetensors",
            ExportFormat::Onnx => "onnx",
        }
    }
}

/// Writes a trained checkpoint for use outside this toolkit.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Checkpoint folder (runs/NAME/last, or best: selected on the test split).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Output file (.safetensors, or .onnx with --format onnx).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// safetensors: the weights for PyTorch; onnx: the inference graph for ONNX Runtime,
    /// TensorRT and other runtimes.
    #[arg(long, value_enum, default_value = "safetensors")]
    pub format: ExportFormat,
    /// Input height of the ONNX graph; default: the checkpoint's (spatial attention allows
    /// no other).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub height: Option<u32>,
    /// Input width of the ONNX graph; default: the checkpoint's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub width: Option<u32>,
}

impl ExportArgs {
    /// Runs `cargo xtask export`.
    pub fn run(self) -> Result<()> {
        export(&self)
    }
}

/// Runs the export.
fn export(args: &ExportArgs) -> Result<()> {
    let extension = args.format.extension();
    if args.out.extension().and_then(|e| e.to_str()) != Some(extension) {
        bail!(
            "--out {}: expected a .{extension} file name for --format {extension}",
            args.out.display()
        );
    }
    if args.format == ExportFormat::Safetensors && (args.height.is_some() || args.width.is_some()) {
        bail!("--height/--width apply to --format onnx (safetensors holds weights, not a graph)");
    }
    // Fails now, before any work, when the destination cannot be written; the staging file is
    // made once the graph is ready (a killed export leaves none behind).
    drop(crate::cli::temporary_beside(&args.out, "--out")?);
    let format = args.format;
    crate::cli::check_replaceable(
        &args.out,
        "--out",
        "file of this format",
        |head| match format {
            // SafeTensors: an 8-byte header length, then the JSON header.
            ExportFormat::Safetensors => head.get(8) == Some(&b'{'),
            // ONNX: a ModelProto, whose first field is ir_version (tag 0x08).
            ExportFormat::Onnx => head.first() == Some(&0x08),
        },
    )?;
    let device = crate::backend::device(scal_run::Backend::Flex)?;
    let (model, config) = crate::cli::load_model_folder(&args.checkpoint, &device)?;
    match args.format {
        ExportFormat::Safetensors => {
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
        }
        ExportFormat::Onnx => {
            let height = args.height.map_or(config.height, |h| h as usize);
            let width = args.width.map_or(config.width, |w| w as usize);
            let bytes = scal_infer::to_onnx(&model, height, width, &device)
                .with_context(|| format!("exporting {}", args.checkpoint.display()))?;
            let staging = crate::cli::temporary_beside(&args.out, "--out")?;
            let mut file = staging.file();
            file.write_all(&bytes)
                .and_then(|()| file.flush())
                .with_context(|| format!("writing --out {}", args.out.display()))?;
            staging
                .install()
                .with_context(|| format!("cannot write --out {}", args.out.display()))?;
            println!(
                "wrote {} ({} with {} attention, {:.1} MB): input \"images\" [batch, 3, {height}, {width}] \
                 (RGB / 255, minus ImageNet's mean, over its std) → output \"features\" [batch, {}] \
                 (post-BN, L2-normalised: what extract --checkpoint writes)",
                args.out.display(),
                config.arch,
                config.attention,
                bytes.len() as f64 / 1e6,
                model.neck.gamma.dims()[0]
            );
        }
    }
    Ok(())
}
