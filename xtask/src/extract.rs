//! `cargo xtask extract`: pooled backbone features of a folder of images, as `.npy`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use scal_backbone::CheckpointSource;
use scal_backbone::ResNetArch;
use scal_infer::{EmbedOptions, ForeignModel, embed_paths};

use crate::backend::{self, Backend};
use crate::cli::{check_replaceable, parse_arch, progress_bar, temporary_beside};

/// Pooled features of every image in a folder, written as a float32 `.npy` of shape
/// [N, D] with the file names beside it.
#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// Backbone architecture: resnet18, resnet34, resnet50 or resnet101.
    #[arg(long, default_value = "resnet50", value_parser = parse_arch)]
    pub arch: ResNetArch,
    /// Weights: a torchvision state dict (.pth/.pt or .safetensors) or native Burn weights (.bpk).
    #[arg(
        long,
        required_unless_present = "checkpoint",
        conflicts_with = "checkpoint"
    )]
    pub weights: Option<PathBuf>,
    /// A trained SCAL checkpoint folder (runs/NAME/last, or best: selected on the test split) instead of --weights: writes
    /// its ReID feature (post-BN, L2-normalised) at the checkpoint's input size.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Folder of images (.jpg/.jpeg/.png/.bmp/.webp; other files are skipped and counted).
    #[arg(long)]
    pub images: PathBuf,
    /// Output .npy file; the file names go to the same path with `.names.txt` for `.npy`.
    #[arg(long)]
    pub out: PathBuf,
    /// Which toolkit wrote --weights: torchvision (a state dict; pooled backbone feature),
    /// torchreid (its resnet18/34/50/101/152 `model.pth.tar`; its eval feature, the pooled
    /// one) or fastreid (a BoT ResNet `model_final.pth`; its eval feature, after the BN neck).
    #[arg(long, default_value_t = CheckpointSource::Torchvision, value_parser = crate::cli::weights_format_parser(), requires = "weights")]
    pub format: CheckpointSource,
    /// Stride of the last stage: 1 (ReID convention, 16x8 maps at 256x128) or 2 (torchvision);
    /// default 1, or torchreid's 2 with --format torchreid.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub last_stride: Option<u8>,
    /// Input height in pixels (images are resized bilinearly unless they already have it);
    /// default 256, or the checkpoint's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub height: Option<u32>,
    /// Input width in pixels; default 128, or the checkpoint's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub width: Option<u32>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Average each feature with that of the horizontally mirrored image.
    #[arg(long)]
    pub flip: bool,
    /// Compute backend among those compiled in: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// Base width of the ResNet (64 for torchvision's models; smaller for test models).
    #[arg(long, default_value_t = 64, hide = true)]
    pub base_width: usize,
}

/// `FEATS.npy` → `FEATS.names.txt`; any other name gets `.names.txt` appended.
pub fn names_path(out: &Path) -> PathBuf {
    let s = out.as_os_str().to_string_lossy();
    match s.strip_suffix(".npy") {
        Some(stem) => PathBuf::from(format!("{stem}.names.txt")),
        None => PathBuf::from(format!("{s}.names.txt")),
    }
}

/// The number of rows of the `.npy` file at `path` (its header's first dimension), if it is
/// one.
fn npy_rows(path: &Path) -> Option<usize> {
    use std::io::Read as _;
    let mut head = vec![0u8; 512];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    if !head.starts_with(b"\x93NUMPY") {
        return None;
    }
    let after = text.split("'shape': (").nth(1)?;
    after.split([',', ')']).next()?.trim().parse().ok()
}

/// `--out`'s names file may be replaced only when it is absent, empty, the names file of the
/// features already at `--out` (one line per row), or a list of image file names: a user's
/// `feats.names.txt` beside a new `--out feats.npy` is never overwritten (issue 42, O1).
fn check_names_replaceable(out: &Path, names: &Path) -> Result<()> {
    check_replaceable(names, "--out", "names file", |_| true)?;
    let Ok(text) = std::fs::read_to_string(names) else {
        return match std::fs::symlink_metadata(names) {
            Ok(_) => bail!(
                "--out {}: {} exists and is not a names file this command wrote (not text); give another name, or remove it first",
                out.display(),
                names.display()
            ),
            Err(_) => Ok(()),
        };
    };
    // Ours: the pair of the features there, or (their features removed) a list of image
    // file names, one per line, as only this command writes.
    let names_of_images = text
        .lines()
        .all(|line| !line.contains('/') && scal_data::is_image_file(Path::new(line)));
    if text.is_empty() || names_of_images || npy_rows(out) == Some(text.lines().count()) {
        return Ok(());
    }
    bail!(
        "--out {}: {} exists and is not the names file of the features at {} (it would be replaced); give another name, or remove it first",
        out.display(),
        names.display(),
        out.display()
    )
}

/// What an extraction wrote.
#[derive(Debug)]
pub struct Summary {
    /// Number of feature rows (images).
    pub rows: usize,
    /// Feature width.
    pub dim: usize,
    /// Entries of the folder that were not images.
    pub skipped: usize,
    /// The names file.
    pub names: PathBuf,
}

impl ExtractArgs {
    /// Runs `cargo xtask extract` and says what it wrote.
    pub fn run(self) -> Result<()> {
        let s = extract(&self)?;
        println!(
            "wrote {} x {} features to {} and the file names to {}{}",
            s.rows,
            s.dim,
            self.out.display(),
            s.names.display(),
            if s.skipped > 0 {
                format!(" ({} non-image entries skipped)", s.skipped)
            } else {
                String::new()
            }
        );
        Ok(())
    }
}

/// Runs the extraction described by `args`.
fn extract(args: &ExtractArgs) -> Result<Summary> {
    if args.height.is_some() || args.width.is_some() {
        let (h, w) = (args.height.unwrap_or(256), args.width.unwrap_or(128));
        scal_data::check_input_size(h as usize, w as usize)
            .map_err(|problem| anyhow::anyhow!("--height/--width: {problem}"))?;
    }
    let listing = scal_data::list_images(&args.images)?;
    let names_file = names_path(&args.out);
    // Writable? Checked now, before minutes of work; the staging files are made after it.
    drop(temporary_beside(&args.out, "--out")?);
    drop(temporary_beside(&names_file, "--out")?);
    check_replaceable(&args.out, "--out", "features file (.npy)", |head| {
        head.starts_with(b"\x93NUMPY")
    })?;
    check_names_replaceable(&args.out, &names_file)?;

    let device = backend::device(args.backend)?;
    let array = match &args.checkpoint {
        Some(checkpoint) => checkpoint_features(args, checkpoint, &listing.images, &device)?,
        None => backbone_features(args, &listing.images, &device)?,
    };
    let (n, dim) = array.dim();
    let features_tmp = temporary_beside(&args.out, "--out")?;
    let names_tmp = temporary_beside(&names_file, "--out")?;
    let mut writer = BufWriter::new(features_tmp.file());
    array
        .write_npy(&mut writer)
        .with_context(|| format!("writing {}", args.out.display()))?;
    writer
        .flush()
        .with_context(|| format!("writing {}", args.out.display()))?;
    drop(writer);
    features_tmp
        .file()
        .sync_all()
        .with_context(|| format!("writing {}", args.out.display()))?;

    let mut writer = BufWriter::new(names_tmp.file());
    for path in &listing.images {
        let name = path.file_name().expect("listed files have names");
        writeln!(writer, "{}", name.to_string_lossy())
            .with_context(|| format!("writing {}", names_file.display()))?;
    }
    writer
        .flush()
        .with_context(|| format!("writing {}", names_file.display()))?;
    drop(writer);
    names_tmp
        .file()
        .sync_all()
        .with_context(|| format!("writing {}", names_file.display()))?;

    // Both files are complete and on disk before either is renamed: only a crash in the
    // microseconds between the two renames can pair new features with the old names, and
    // then (unless the two folders have as many images) the row counts differ (issue 42, F6).
    features_tmp
        .install()
        .with_context(|| format!("cannot write --out {}", args.out.display()))?;
    names_tmp
        .install()
        .with_context(|| format!("cannot write {}", names_file.display()))?;
    Ok(Summary {
        rows: n,
        dim,
        skipped: listing.skipped.len(),
        names: names_file,
    })
}

/// The post-BN ReID features of a trained checkpoint (flip-averaged with `--flip`).
fn checkpoint_features(
    args: &ExtractArgs,
    checkpoint: &Path,
    images: &[PathBuf],
    device: &burn::tensor::Device,
) -> Result<Array2<f32>> {
    let (model, config) = crate::cli::load_model_folder(checkpoint, device)?;
    let height = args.height.map_or(config.height, |h| h as usize);
    let width = args.width.map_or(config.width, |w| w as usize);
    if (height, width) != (config.height, config.width)
        && config.attention == scal_model::AttentionKind::Spatial
    {
        bail!(
            "{} has spatial attention sized for {} x {} inputs; --height/--width must match (or be left out)",
            checkpoint.display(),
            config.height,
            config.width
        );
    }
    embed_with_bar(&model, images, (height, width), args, device)
}

/// Globally average-pooled backbone features of torchvision or native weights (after
/// FastReID's BN neck with `--format fastreid`).
fn backbone_features(
    args: &ExtractArgs,
    images: &[PathBuf],
    device: &burn::tensor::Device,
) -> Result<Array2<f32>> {
    let weights = args
        .weights
        .as_ref()
        .expect("clap requires --weights or --checkpoint");
    let model = ForeignModel::load(
        weights,
        args.format,
        args.arch,
        args.last_stride,
        args.base_width,
        device,
    )?;
    let size = (
        args.height.unwrap_or(256) as usize,
        args.width.unwrap_or(128) as usize,
    );
    embed_with_bar(&model, images, size, args, device)
}

/// `images` embedded by `model` at `size`, `--batch` at a time, `--flip`, with a progress bar.
fn embed_with_bar(
    model: &dyn scal_infer::Embedder,
    images: &[PathBuf],
    (height, width): (usize, usize),
    args: &ExtractArgs,
    device: &burn::tensor::Device,
) -> Result<Array2<f32>> {
    let options = EmbedOptions::new(height, width)
        .with_batch(args.batch as usize)
        .with_flip(args.flip);
    let bar = progress_bar(images.len());
    let features = embed_paths(model, images, options, device, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_file_sits_beside_the_features() {
        assert_eq!(
            names_path(Path::new("out/feats.npy")),
            PathBuf::from("out/feats.names.txt")
        );
        assert_eq!(
            names_path(Path::new("feats")),
            PathBuf::from("feats.names.txt")
        );
    }
}
