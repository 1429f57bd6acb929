//! `cargo xtask`: the project's command line.
//!
//! - `extract`: pooled ResNet features of a folder of images, from torchvision or native
//!   weights, as a `.npy` file.
//! - `evaluate`: CMC / mAP / mINP from a distance matrix or features, with optional
//!   k-reciprocal re-ranking; `query`: a trained checkpoint ranks a folder of photos for a
//!   query photo (gallery features cached).
//! - `datasets`: split summary of a ReID dataset; `synth`: the synthetic dataset;
//!   `download`: get a dataset (download or `--archive`), verified and safely extracted.
//! - `train`: SCAL training with evaluation, checkpoints and exact resume; `ablate`: the
//!   ablation set over several seeds; `export`: weights for PyTorch or the ONNX inference
//!   graph; `critic-data`: the critics' inputs, estimates and rewards on training batches,
//!   for an offline probe.
//! - `report`: the run report (HTML); `visualize`: attention maps of any images.
//! - `bench`: the benchmark set on one backend; `parity`: flex against another backend.
//! - `devices`: a backend's devices; `serve`: this machine's devices for `--backend remote`.
//!
//! The only crate of the workspace with backend features (`flex`, `wgpu`, `cuda`, `remote`),
//! printing and command names: the libraries take devices and return errors with data;
//! [`backend`] picks the devices, [`hint`] says which command helps after an error,
//! [`progress`] draws training's progress.

#![warn(missing_docs)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod ablate;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod critic_data;
pub mod critic_grad;
pub mod datasets;
pub mod devices;
pub mod evaluate;
pub mod export;
pub mod extract;
pub mod hint;
pub mod index;
pub mod parity;
pub mod progress;
pub mod query;
pub mod report;
pub mod serve;
pub mod setup_cuda;
pub mod train;

/// SCAL person re-identification toolkit.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Pooled backbone features of every image in a folder → FEATS.npy [N, D] + FEATS.names.txt.
    Extract(extract::ExtractArgs),
    /// CMC / mAP / mINP from a distance matrix or features (Market-1501 or CUHK03 protocol), optionally re-ranked.
    Evaluate(evaluate::EvaluateArgs),
    /// Your own photos: the nearest gallery images of each query, with a trained checkpoint.
    Query(query::QueryArgs),
    /// A gallery index for large galleries: build it from features or images, add to it (query --index, evaluate --index search it).
    Index(index::IndexArgs),
    /// Split summary of a dataset (identities, images, cameras), as torchreid prints it.
    Datasets(datasets::DatasetsArgs),
    /// Generate the synthetic dataset (Market-1501 layout).
    Synth(datasets::SynthArgs),
    /// Download a dataset, or install an archive you obtained, verified and safely extracted.
    Download(datasets::DownloadArgs),
    /// Train SCAL (default: the quick profile on the synthetic dataset, on the CPU).
    Train(train::TrainArgs),
    /// A trained checkpoint as safetensors with PyTorch (torchvision) names, or (--format onnx) its inference graph as ONNX.
    Export(export::ExportArgs),
    /// The run report: curves, attention maps, ranked lists, attention quality (RUN/report/index.html).
    Report(report::ReportArgs),
    /// Attention maps of the five modules over every image of a folder.
    Visualize(report::VisualizeArgs),
    /// Ablation: attention kind, critic and reward variants over several seeds, as a table.
    Ablate(ablate::AblateArgs),
    /// What each critic reads, estimates and is taught on a run's training batches, as .npy files.
    CriticData(critic_data::CriticDataArgs),
    /// What J_cri tells a run's agents: per module, the critic's action-gradient against the true class's, and gradient norms.
    CriticGrad(critic_grad::CriticGradArgs),
    /// Benchmarks: backbone inference and training step, SCAL step, evaluation, re-ranking, data pipeline.
    Bench(bench::BenchArgs),
    /// The SCAL model on flex and on another backend: forward pass and one training step compared.
    Parity(parity::ParityArgs),
    /// The devices of a backend with their indices (for train --devices).
    Devices(devices::DevicesArgs),
    /// Serve this machine's devices to `train --backend remote --hosts ws://THIS_HOST:PORT` (multi-machine training).
    Serve(serve::ServeArgs),
    /// Install (or --check) the LLVM that the cuda feature links, from PyPI, so that `cargo xtask-cuda` builds offline.
    SetupCuda(setup_cuda::SetupCudaArgs),
}

impl Command {
    /// Whether Ctrl-C finishes the iteration and saves (the commands that train) rather than
    /// ending the process at once.
    fn saves_on_ctrl_c(&self) -> bool {
        matches!(self, Command::Train(_) | Command::Ablate(_))
    }

    /// Runs the command.
    fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Extract(args) => args.run(),
            Command::Evaluate(args) => args.run(),
            Command::Query(args) => args.run(),
            Command::Index(args) => args.run(),
            Command::Datasets(args) => args.run(),
            Command::Synth(args) => args.run(),
            Command::Download(args) => args.run(),
            Command::Train(args) => args.run(),
            Command::Export(args) => args.run(),
            Command::Report(args) => args.run(),
            Command::Visualize(args) => args.run(),
            Command::Ablate(args) => args.run(),
            Command::CriticData(args) => args.run(),
            Command::CriticGrad(args) => args.run(),
            Command::Bench(args) => args.run(),
            Command::Parity(args) => args.run(),
            Command::Devices(args) => args.run(),
            Command::Serve(args) => args.run(),
            Command::SetupCuda(args) => args.run(),
        }
    }
}

/// Parses the command line, runs the command, prints its error (with a hint where one
/// helps) and returns the exit code. What every command shares is installed here, once: the
/// Ctrl-C handler of the commands that train, and the hint after an error (training's
/// progress is [`progress`], which [`cli::train_on_configured_devices`] shows).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.saves_on_ctrl_c() {
        cli::install_ctrl_c();
    }
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        // Stopped by Ctrl-C after saving: 130, as shells report an interrupted command.
        Err(e) if e.downcast_ref::<cli::Interrupted>().is_some() => ExitCode::from(130),
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            if let Some(hint) = hint::for_error(&e) {
                eprintln!("{hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `outer: cause: cause`, each cause once: an error
/// whose message already quotes its source (`cannot read F: No such file`) does not repeat
/// it.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    /// An error whose message quotes its source prints the operating system's text once
    /// (issue 29, W32: `File name too long (os error 36): File name too long (os error 36)`).
    #[test]
    fn the_error_chain_says_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(36);
        let os_text = io.to_string();
        let error = anyhow::Error::new(scal_data::DataError::Write {
            path: "dl/x".into(),
            source: io,
        })
        .context("download dukemtmc");
        let line = super::error_chain(&error);
        assert_eq!(line.matches(&os_text).count(), 1, "{line}");
        assert!(
            line.starts_with("download dukemtmc: cannot write dl/x"),
            "{line}"
        );
    }

    /// Every flag or argument that names a place a command writes, with what keeps it from
    /// replacing or deleting a file or folder it did not write (issue 42, item 1).
    const OUTPUTS: [(&str, &str, &str); 15] = [
        (
            "extract",
            "out",
            "cli::check_replaceable (a .npy it wrote) and check_names_replaceable (the names file of those features)",
        ),
        (
            "query",
            "html",
            "cli::check_replaceable (a page and figure it wrote)",
        ),
        (
            "query",
            "cache",
            "only the cache's own entries, named by the gallery's digest; refused inside the gallery",
        ),
        (
            "synth",
            "out",
            "scal_data::generate: refused when it exists",
        ),
        (
            "download",
            "root",
            "refused when the dataset's folder there exists",
        ),
        (
            "train",
            "name",
            "scal_run: a folder that is not a run is refused",
        ),
        (
            "train",
            "runs",
            "scal_run: a folder that is not a run is refused",
        ),
        (
            "train",
            "resume",
            "a run folder (config.json), one process at a time",
        ),
        (
            "export",
            "out",
            "cli::check_replaceable (a file of the format it writes)",
        ),
        ("report", "run", "a run folder; its report/ swapped whole"),
        (
            "visualize",
            "out",
            "cli::check_folder_replaceable (only the figures it writes)",
        ),
        (
            "ablate",
            "runs",
            "the runs as train's; its three tables written atomically",
        ),
        (
            "critic-data",
            "out",
            "cli::check_folder_replaceable (only critic-data's .npy files)",
        ),
        (
            "critic-grad",
            "json",
            "cli::check_replaceable (a critic-grad JSON it wrote)",
        ),
        ("bench", "out", "appended to, never replaced"),
    ];

    /// Every other flag or argument that takes a value: read, never written.
    const INPUTS: [(&str, &str); 18] = [
        (
            "extract",
            "arch weights checkpoint images format last_stride base_width height width batch backend",
        ),
        (
            "evaluate",
            "distmat features checkpoint weights format arch last_stride base_width height width dataset root batch backend distance max_rank metric seed k1 k2 lambda index depth ef",
        ),
        (
            "query",
            "checkpoint gallery image queries top batch backend index ef",
        ),
        ("datasets", "name root"),
        ("synth", "train_ids test_ids cameras seed preset"),
        ("download", "name archive"),
        (
            "train",
            "profile config from backend hosts dataset root epochs seed attention critic reward devices lambda pretrained set",
        ),
        ("export", "checkpoint format height width"),
        ("report", "checkpoint images ranked backend"),
        ("visualize", "checkpoint images backend"),
        (
            "ablate",
            "variants seeds profile config dataset root epochs lambda set paired_against",
        ),
        ("critic-data", "run checkpoint root backend batches"),
        ("critic-grad", "run checkpoint root backend batches"),
        (
            "bench",
            "backend hosts measures batch inference_batch iterations warmup profile height width rerank_features rerank_dim",
        ),
        ("parity", "backend hosts"),
        ("devices", "backend hosts"),
        ("serve", "backend devices port bind"),
        ("setup-cuda", "python"),
    ];

    /// Walks every command's flags from the command line's own definition: a flag that takes
    /// a value and is in neither list fails, so a new output flag cannot be added without
    /// naming what keeps it from replacing a user's file (trial 4's F8: `critic-grad --json`
    /// was added after the rule and missed it).
    #[test]
    fn every_flag_that_takes_a_value_is_an_input_or_a_guarded_output() {
        use clap::CommandFactory as _;
        let cli = super::Cli::command();
        let mut seen = Vec::new();
        for command in cli.get_subcommands() {
            let name = command.get_name();
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if !arg.get_action().takes_values() || id == "help" || id == "version" {
                    continue;
                }
                let output = OUTPUTS.iter().any(|(c, a, _)| (*c, *a) == (name, id));
                let input = INPUTS
                    .iter()
                    .any(|(c, ids)| *c == name && ids.split_whitespace().any(|i| i == id));
                assert!(
                    output != input,
                    "`{name} {id}` is {}: add it to OUTPUTS with what keeps it from replacing a user's file (cli::check_replaceable, cli::check_folder_replaceable), or to INPUTS if the command only reads it",
                    if output {
                        "listed twice"
                    } else {
                        "in neither list"
                    }
                );
                seen.push((name.to_string(), id.to_string()));
            }
        }
        // No entry outlives its flag.
        for (command, id, _) in OUTPUTS {
            assert!(
                seen.iter()
                    .any(|(c, a)| (c.as_str(), a.as_str()) == (command, id)),
                "OUTPUTS lists `{command} {id}`, which is no flag"
            );
        }
        for (command, ids) in INPUTS {
            for id in ids.split_whitespace() {
                assert!(
                    seen.iter()
                        .any(|(c, a)| (c.as_str(), a.as_str()) == (command, id)),
                    "INPUTS lists `{command} {id}`, which is no flag"
                );
            }
        }
    }
}
