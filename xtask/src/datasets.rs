//! `cargo xtask datasets` and `cargo xtask synth`.

use std::path::PathBuf;

use anyhow::Result;
use scal_data::synth::{SynthConfig, SynthPreset, generate};
use scal_data::{DatasetName, ReadOptions, read_dataset};

use crate::cli::synth_folder;

/// Split summary of a dataset, as torchreid prints it.
#[derive(Debug, clap::Args)]
pub struct DatasetsArgs {
    /// market1501, dukemtmc, cuhk03-labeled, cuhk03-detected, msmt17 or custom.
    #[arg(long, value_parser = parse_name)]
    pub name: DatasetName,
    /// The dataset's folder (or a folder above it; see docs/datasets.md).
    #[arg(long)]
    pub root: PathBuf,
    /// MSMT17: add list_val.txt to the training split.
    #[arg(long)]
    pub combine_val: bool,
    /// End with one JSON line {"train":{"ids","images","cameras"},"query":{…},"gallery":{…}}.
    #[arg(long)]
    pub json: bool,
}

fn parse_name(s: &str) -> Result<DatasetName, String> {
    s.parse().map_err(|e: scal_data::DataError| e.to_string())
}

impl DatasetsArgs {
    /// Runs `cargo xtask datasets`.
    pub fn run(self) -> Result<()> {
        summary(&self)
    }
}

/// Prints the summary.
fn summary(args: &DatasetsArgs) -> Result<()> {
    let dataset = read_dataset(
        args.name,
        &args.root,
        ReadOptions {
            msmt17_combine_val: args.combine_val,
        },
    )?;
    println!("{}", dataset.table());
    for (what, expected, found) in dataset.check_known_counts() {
        eprintln!(
            "warning: {} has {found} {what}; the official release has {expected} (incomplete or modified copy?)",
            dataset.root.display()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&dataset.summary())?);
    }
    Ok(())
}

/// Writes the synthetic dataset (Market-1501 layout, 128 x 64 JPEGs).
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Training identities.
    #[arg(long, default_value_t = 100)]
    pub train_ids: usize,
    /// Query/gallery identities.
    #[arg(long, default_value_t = 100)]
    pub test_ids: usize,
    /// Cameras (2..=9).
    #[arg(long, default_value_t = 6)]
    pub cameras: usize,
    /// Seed: the same seed writes the same images.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Generator: easy (the default dataset, datasets/synth) or hard (synth-hard, its
    /// latest version: identities told apart by small details; docs/datasets.md).
    #[arg(long, default_value = "easy", value_parser = parse_preset)]
    pub preset: SynthPreset,
    /// Output folder (must not exist) [default: datasets/synth, or datasets/synth-hard with
    /// --preset hard].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_preset(s: &str) -> Result<SynthPreset, String> {
    s.parse().map_err(|e: scal_data::DataError| e.to_string())
}

impl SynthArgs {
    /// Runs `cargo xtask synth`.
    pub fn run(self) -> Result<()> {
        synth(&self)
    }
}

/// Generates the dataset.
fn synth(args: &SynthArgs) -> Result<()> {
    let config = SynthConfig {
        train_ids: args.train_ids,
        test_ids: args.test_ids,
        cameras: args.cameras,
        seed: args.seed,
        preset: args.preset,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| synth_folder(args.preset));
    let s = generate(&config, &out)?;
    println!(
        "wrote {} ({} preset): {} train, {} query, {} gallery images ({} distractors, {} junk); read it with --name market1501 --root {}",
        out.display(),
        args.preset,
        s.train_images,
        s.query_images,
        s.gallery_images,
        s.distractors,
        s.junk,
        out.display()
    );
    Ok(())
}

/// Gets a dataset: downloads it where a public address exists, or installs an archive you
/// obtained; verifies it and extracts it safely under --root.
#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// market1501, dukemtmc, cuhk03 or msmt17.
    #[arg(value_parser = parse_name)]
    pub name: DatasetName,
    /// An archive you obtained (required for datasets released on request).
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// Where datasets live; the dataset goes into ROOT/NAME.
    #[arg(long, default_value = "datasets")]
    pub root: PathBuf,
}

impl DownloadArgs {
    /// Runs `cargo xtask download`.
    pub fn run(self) -> Result<()> {
        download(&self)
    }
}

/// Runs the download or installation.
fn download(args: &DownloadArgs) -> Result<()> {
    use scal_data::download::{Verification, install, source};
    let src = source(args.name);
    let dest = args.root.join(src.folder);
    if dest.exists() {
        println!(
            "{} already exists; read it with `cargo xtask datasets --name {} --root {}` (remove it to install again)",
            dest.display(),
            args.name,
            dest.display()
        );
        return Ok(());
    }
    let archive = match (&args.archive, src.url) {
        (Some(path), _) => path.clone(),
        (None, Some(url)) => {
            let downloads = args.root.join(".downloads");
            std::fs::create_dir_all(&downloads)?;
            let path = downloads.join(src.archive);
            if !path.exists() {
                eprintln!("downloading {url}");
                let bar = indicatif::ProgressBar::new(0).with_style(
                    indicatif::ProgressStyle::with_template(
                        "[{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, eta {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                let result = scal_data::download::download(url, &path, |done, total| {
                    if let Some(t) = total {
                        bar.set_length(t);
                    }
                    bar.set_position(done);
                });
                bar.finish_and_clear();
                if let Err(e) = result {
                    anyhow::bail!(
                        "{e}\n{}\nWith the archive in hand: cargo xtask download {} --archive FILE",
                        src.how_to_get,
                        args.name
                    );
                }
            }
            path
        }
        (None, None) => anyhow::bail!(
            "{} cannot be downloaded automatically. {}\nThen: cargo xtask download {} --archive FILE",
            args.name,
            src.how_to_get,
            args.name
        ),
    };
    eprintln!("verifying and extracting {}", archive.display());
    let (verification, files) = install(&archive, &dest, (src.sha256, src.md5), Some(src.name))?;
    match verification {
        Verification::Matched(algorithm) => eprintln!("{algorithm} matches the recorded digest"),
        Verification::Unrecorded { sha256 } => {
            eprintln!("warning: no digest is recorded for this archive; its SHA-256 is {sha256}")
        }
    }
    println!(
        "extracted {files} files into {}; next: cargo xtask datasets --name {} --root {}",
        dest.display(),
        args.name,
        dest.display()
    );
    Ok(())
}
