//! `cargo xtask extract`: pooled backbone features of a folder of images, as `.npy`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use scal_backbone::{ResNetArch, ResNetConfig};
use scal_data::TestTransform;
use tempfile::NamedTempFile;

use crate::backend::{self, Backend};

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
    #[arg(long, value_enum, default_value = "torchvision", requires = "weights")]
    pub format: WeightsFormat,
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

/// The toolkit a `--weights` file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsFormat {
    /// A torchvision state dict.
    Torchvision,
    /// torchreid 0.2.5's ResNets.
    Torchreid,
    /// FastReID 1.4.0's BoT ResNet.
    Fastreid,
}

impl WeightsFormat {
    fn source(self) -> scal_backbone::CheckpointSource {
        match self {
            WeightsFormat::Torchvision => scal_backbone::CheckpointSource::Torchvision,
            WeightsFormat::Torchreid => scal_backbone::CheckpointSource::Torchreid,
            WeightsFormat::Fastreid => scal_backbone::CheckpointSource::Fastreid,
        }
    }

    /// The toolkit's last stride when the user gives none.
    fn default_last_stride(self) -> u8 {
        match self {
            WeightsFormat::Torchreid => 2,
            WeightsFormat::Torchvision | WeightsFormat::Fastreid => 1,
        }
    }
}

pub(crate) fn parse_arch(s: &str) -> Result<ResNetArch, String> {
    s.parse()
        .map_err(|e: scal_backbone::UnknownArch| e.to_string())
}

/// `FEATS.npy` → `FEATS.names.txt`; any other name gets `.names.txt` appended.
pub fn names_path(out: &Path) -> PathBuf {
    let s = out.as_os_str().to_string_lossy();
    match s.strip_suffix(".npy") {
        Some(stem) => PathBuf::from(format!("{stem}.names.txt")),
        None => PathBuf::from(format!("{s}.names.txt")),
    }
}

/// A temporary file in `path`'s folder, to be renamed onto `path` once complete. Made before
/// any work so that an unwritable destination fails at once.
pub(crate) fn temporary_beside(path: &Path, flag: &str) -> Result<NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.is_dir() {
        bail!("{flag} {} is a folder; give a file name", path.display());
    }
    if !dir.is_dir() {
        bail!(
            "cannot write {flag} {}: folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    scal_backbone::staging_builder(".scal-extract-", false)
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write {flag} {}", path.display()))
}

/// What [`run`] wrote.
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

/// Runs the extraction described by `args`.
pub fn run(args: &ExtractArgs) -> Result<Summary> {
    if args.height.is_some() || args.width.is_some() {
        let (h, w) = (args.height.unwrap_or(256), args.width.unwrap_or(128));
        scal_data::check_input_size(h as usize, w as usize)
            .map_err(|problem| anyhow::anyhow!("--height/--width: {problem}"))?;
    }
    let listing = scal_data::list_images(&args.images)?;
    let names_file = names_path(&args.out);
    let features_tmp = temporary_beside(&args.out, "--out")?;
    let names_tmp = temporary_beside(&names_file, "--out")?;

    let device = backend::device(args.backend)?;
    let (features, dim) = match &args.checkpoint {
        Some(checkpoint) => checkpoint_features(args, checkpoint, &listing.images, &device)?,
        None => backbone_features(args, &listing.images, &device)?,
    };
    let n = listing.images.len();
    let array = Array2::from_shape_vec((n, dim), features).expect("n x dim features");
    let mut writer = BufWriter::new(features_tmp.as_file());
    array
        .write_npy(&mut writer)
        .with_context(|| format!("writing {}", args.out.display()))?;
    writer
        .flush()
        .with_context(|| format!("writing {}", args.out.display()))?;
    drop(writer);

    let mut writer = BufWriter::new(names_tmp.as_file());
    for path in &listing.images {
        let name = path.file_name().expect("listed files have names");
        writeln!(writer, "{}", name.to_string_lossy())
            .with_context(|| format!("writing {}", names_file.display()))?;
    }
    writer
        .flush()
        .with_context(|| format!("writing {}", names_file.display()))?;
    drop(writer);

    features_tmp
        .persist(&args.out)
        .with_context(|| format!("cannot write --out {}", args.out.display()))?;
    names_tmp
        .persist(&names_file)
        .with_context(|| format!("cannot write {}", names_file.display()))?;
    Ok(Summary {
        rows: n,
        dim,
        skipped: listing.skipped.len(),
        names: names_file,
    })
}

pub(crate) fn progress_bar(n: usize) -> ProgressBar {
    ProgressBar::new(n as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} extracting [{bar:30}] {pos}/{len} images, {per_sec}, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    )
}

/// The post-BN ReID features of a trained checkpoint (flip-averaged with `--flip`).
fn checkpoint_features(
    args: &ExtractArgs,
    checkpoint: &Path,
    images: &[PathBuf],
    device: &burn::tensor::Device,
) -> Result<(Vec<f32>, usize)> {
    let (model, config) = crate::load_model_folder(checkpoint, device)?;
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
    let bar = progress_bar(images.len());
    let mut rows = Vec::new();
    let mut dim = 0;
    for chunk in images.chunks(args.batch as usize) {
        let f = scal_train::eval::features(
            &model,
            chunk,
            (height, width),
            chunk.len(),
            args.flip,
            device,
        )?;
        dim = f.ncols();
        rows.extend(f.iter().copied());
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok((rows, dim))
}

/// Globally average-pooled backbone features of torchvision or native weights (after
/// FastReID's BN neck with `--format fastreid`).
fn backbone_features(
    args: &ExtractArgs,
    images: &[PathBuf],
    device: &burn::tensor::Device,
) -> Result<(Vec<f32>, usize)> {
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
    let size = (args.height.unwrap_or(256), args.width.unwrap_or(128));
    let bar = progress_bar(images.len());
    let features = model.features(images, size, args.batch as usize, args.flip, device, &bar)?;
    bar.finish_and_clear();
    Ok((features, model.dim()))
}

/// A ResNet from a weights file of torchvision, torchreid or FastReID, giving the feature
/// that toolkit evaluates with.
#[derive(Debug)]
pub struct ForeignModel {
    backbone: scal_backbone::ResNet,
    neck: Option<scal_backbone::FastreidNeck>,
}

impl ForeignModel {
    /// Reads `weights` as `format` into a `arch` backbone (last stride: the toolkit's unless
    /// given).
    pub fn load(
        weights: &Path,
        format: WeightsFormat,
        arch: ResNetArch,
        last_stride: Option<u8>,
        base_width: usize,
        device: &burn::tensor::Device,
    ) -> Result<ForeignModel> {
        let last_stride = last_stride.unwrap_or(format.default_last_stride());
        let model = ResNetConfig::new(arch)
            .with_last_stride(last_stride as usize)
            .with_base_width(base_width)
            .with_stem_pool_ceil(format == WeightsFormat::Fastreid)
            .init(device);
        let options = scal_backbone::LoadOptions {
            source: format.source(),
            ..scal_backbone::LoadOptions::default()
        };
        let (backbone, _) = scal_backbone::load_weights(&model, weights, options)?;
        let neck = match format {
            WeightsFormat::Fastreid => Some(scal_backbone::FastreidNeck::load(
                weights,
                backbone.feature_dim(),
                device,
            )?),
            _ => None,
        };
        Ok(ForeignModel { backbone, neck })
    }

    /// Feature width.
    pub fn dim(&self) -> usize {
        self.backbone.feature_dim()
    }

    /// Features of `images` at `(height, width)`, row-major `[N, D]`, `batch` images per
    /// pass, flip-averaged on request; `bar` advances per image.
    pub fn features(
        &self,
        images: &[PathBuf],
        (height, width): (u32, u32),
        batch: usize,
        flip: bool,
        device: &burn::tensor::Device,
        bar: &ProgressBar,
    ) -> Result<Vec<f32>> {
        let transform = TestTransform::new(height, width);
        let (h, w) = (height as usize, width as usize);
        let feature = |images: Tensor<4>| {
            let pooled = self.backbone.forward_pooled(images);
            match &self.neck {
                Some(neck) => neck.forward(pooled),
                None => pooled,
            }
        };
        let mut features: Vec<f32> = Vec::with_capacity(images.len() * self.dim());
        for chunk in images.chunks(batch.max(1)) {
            let pixels = transform.load_batch(chunk)?;
            let images =
                Tensor::<4>::from_data(TensorData::new(pixels, [chunk.len(), 3, h, w]), device);
            let mut pooled = feature(images.clone());
            if flip {
                pooled = (pooled + feature(images.flip([3]))).div_scalar(2.0);
            }
            let values = pooled
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("reading features back from the device: {e:?}"))?;
            features.extend(values);
            bar.inc(chunk.len() as u64);
        }
        Ok(features)
    }
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
