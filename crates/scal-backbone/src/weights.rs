//! Loading torchvision state dicts (`.pth`, `.safetensors`) and saving/loading native Burn
//! weights (`.bpk`), strictly: a file that does not fit the model is an error that lists the
//! names, and the model is left untouched unless the caller asked for a partial load.

use std::fmt;
use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, ApplyResult, BurnToPyTorchAdapter, BurnpackStore, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};

use crate::arch::ResNetArch;
use crate::resnet::ResNet;

/// The weight file formats the backbone reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// `torch.save` output (`.pth`, `.pt`, `.bin`; ZIP or legacy pickle).
    Pytorch,
    /// A SafeTensors file with torchvision key names.
    Safetensors,
    /// Burn's native burnpack file (`.bpk`), as written by [`save_native`].
    Native,
}

impl WeightFormat {
    /// The format from the file's extension, or from its first bytes when the extension says
    /// nothing (ZIP or pickle → PyTorch, burnpack magic → native, JSON header → SafeTensors).
    pub fn detect(path: &Path) -> Result<WeightFormat, BackboneError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("pth" | "pt" | "bin" | "tar") => return Ok(WeightFormat::Pytorch),
            Some("safetensors") => return Ok(WeightFormat::Safetensors),
            Some("bpk" | "burnpack") => return Ok(WeightFormat::Native),
            _ => {}
        }
        let mut head = [0u8; 9];
        let n = {
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
            let mut n = 0;
            while n < head.len() {
                match f.read(&mut head[n..]).map_err(|e| read_error(path, e))? {
                    0 => break,
                    k => n += k,
                }
            }
            n
        };
        let head = &head[..n];
        if head.starts_with(b"PK\x03\x04") || head.first() == Some(&0x80) {
            Ok(WeightFormat::Pytorch)
        } else if head.len() >= 4
            && u32::from_le_bytes([head[0], head[1], head[2], head[3]])
                == burn::store::burn_pack::MAGIC_NUMBER
        {
            Ok(WeightFormat::Native)
        } else if head.len() == 9 && head[8] == b'{' {
            Ok(WeightFormat::Safetensors)
        } else {
            Err(BackboneError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    }
}

/// What went wrong while reading or writing backbone weights.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackboneError {
    /// The weights file is not there.
    #[error("weights file {} does not exist", path.display())]
    WeightsNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// Neither the extension nor the first bytes say which format the file is in.
    #[error(
        "cannot tell the format of weights file {}: expected .pth/.pt (PyTorch), .safetensors, or .bpk (native Burn)",
        path.display()
    )]
    UnknownFormat {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but could not be parsed.
    #[error("cannot read weights file {}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// A weight or running statistic of the file is NaN or infinite (the weights of a
    /// diverged run), or a running variance is negative: every feature would be NaN.
    #[error(
        "weights file {}: {parameter} holds {problem} (the weights of a diverged run?); every feature computed with it would be NaN",
        path.display()
    )]
    NonFiniteWeight {
        /// The file.
        path: PathBuf,
        /// The parameter, by its path in the model (`layer4.1.conv2.weight`).
        parameter: String,
        /// `a NaN`, `an infinite value` or `a negative variance`.
        problem: &'static str,
    },
    /// The file holds a ResNet of another depth.
    #[error(
        "weights file {} holds a {found} but the model is a {expected}; pass the matching architecture (--arch {found}; in train, --set model.arch={found})",
        path.display()
    )]
    ArchitectureMismatch {
        /// The file.
        path: PathBuf,
        /// The model's architecture.
        expected: ResNetArch,
        /// The architecture recognised from the file's keys.
        found: ResNetArch,
    },
    /// Keys or shapes do not fit the model; nothing was loaded.
    #[error("weights file {} does not fit the {arch} backbone; nothing was loaded.{}{}{}", path.display(), Mismatch { missing, unexpected, mismatched }, if *matched == 0 { "\n  The file holds none of this backbone's entries: is it a ResNet's state dict? (a torchreid model.pth.tar without its state_dict, or another toolkit's file)" } else { "" }, other_toolkit_hint(*read_as, unexpected))]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// The toolkit the file was read as.
        read_as: CheckpointSource,
        /// The model's architecture.
        arch: ResNetArch,
        /// Model parameters the file lacks (torchvision names: `bn1.weight`,
        /// `layer1.0.downsample.0.weight`).
        missing: Vec<String>,
        /// File entries the model has no place for (other than `fc.*` and
        /// `num_batches_tracked`, which are expected and ignored).
        unexpected: Vec<String>,
        /// Entries present on both sides whose shape or type differ.
        mismatched: Vec<String>,
        /// Entries of the file that fitted (none: the file is likely not a state dict).
        matched: usize,
    },
    /// The checkpoint holds a model variant the backbone cannot express; nothing was loaded.
    #[error("{} is a {toolkit} model with {variant}, which this toolkit's ResNet cannot express; it reads plain ResNets (torchreid: resnet18/34/50/101/152; FastReID: BoT ResNet)", path.display())]
    UnsupportedVariant {
        /// The file.
        path: PathBuf,
        /// The toolkit it was read as.
        toolkit: CheckpointSource,
        /// The variant and the entry that shows it.
        variant: String,
    },
    /// FastReID's BN neck (`heads.bottleneck.0`) in the file does not fit the backbone, or
    /// lacks entries; nothing was loaded.
    #[error("{}: FastReID's BN neck (heads.bottleneck.0) {problem}; nothing was loaded", path.display())]
    BrokenNeck {
        /// The file.
        path: PathBuf,
        /// What is wrong with it: `has 256 channels, but the backbone's pooled feature has
        /// 512 (…)`, `lacks running_mean, running_var (…)`.
        problem: String,
    },
    /// The file normalises its input with statistics other than ImageNet's, which the
    /// toolkit's preprocessing applies (FastReID 0.x's persistent `pixel_mean`/`pixel_std`
    /// buffers); its features would not be the model's.
    #[error(
        "{} normalises its input with pixel_mean {mean:?} and pixel_std {std:?} (FastReID's MODEL.PIXEL_MEAN / PIXEL_STD, on 0-255 pixels); this toolkit feeds ImageNet's statistics ({IMAGENET_PIXEL_MEAN:?} and {IMAGENET_PIXEL_STD:?}), so its features would not be this model's",
        path.display()
    )]
    InputNormalisation {
        /// The file.
        path: PathBuf,
        /// The file's `pixel_mean`, per channel.
        mean: Vec<f32>,
        /// The file's `pixel_std`, per channel.
        std: Vec<f32>,
    },
    /// The weights could not be written (the file is named).
    #[error(transparent)]
    Write(#[from] scal_fs::FsError),
}

/// ImageNet's channel means on 0-255 pixels: FastReID's default `MODEL.PIXEL_MEAN`, and what
/// the toolkit's preprocessing subtracts (0.485, 0.456, 0.406 on [0, 1] pixels).
pub const IMAGENET_PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// ImageNet's channel spreads on 0-255 pixels: FastReID's default `MODEL.PIXEL_STD`.
pub const IMAGENET_PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Formats the three name lists of [`BackboneError::Incompatible`], at most 20 names each.
struct Mismatch<'a> {
    missing: &'a [String],
    unexpected: &'a [String],
    mismatched: &'a [String],
}

impl fmt::Display for Mismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        for (title, names) in [
            ("missing from the file", self.missing),
            ("unexpected in the file", self.unexpected),
            ("shape or type mismatch", self.mismatched),
        ] {
            if names.is_empty() {
                continue;
            }
            write!(f, "\n  {} {title}:", names.len())?;
            for name in names.iter().take(SHOWN) {
                write!(f, "\n    {name}")?;
            }
            if names.len() > SHOWN {
                write!(f, "\n    … and {} more", names.len() - SHOWN)?;
            }
        }
        Ok(())
    }
}

/// A line naming the toolkit whose signature the unexpected entries carry, when it is not
/// the one the file was read as: torchreid's classifier (`classifier.*`), FastReID's head
/// (`heads.*`) (issue 42, D8).
fn other_toolkit_hint(read_as: CheckpointSource, unexpected: &[String]) -> String {
    let signature = [
        (
            CheckpointSource::Torchreid,
            "classifier.",
            "torchreid's classifier",
        ),
        (CheckpointSource::Fastreid, "heads.", "FastReID's head"),
    ];
    signature
        .into_iter()
        .find(|(toolkit, prefix, _)| {
            *toolkit != read_as && unexpected.iter().any(|k| k.starts_with(prefix))
        })
        .map(|(toolkit, prefix, what)| {
            format!(
                "\n  The {prefix}* entries are {what}: is it a {toolkit} checkpoint? Read it with --format {toolkit}"
            )
        })
        .unwrap_or_default()
}

/// A TorchScript archive (`torch.jit.save`) pickles the model's own classes (`__torch__.…`),
/// which no state-dict reader represents: said in a line, with what to save instead
/// (issue 42, D7).
fn read_error(path: &Path, e: impl fmt::Display) -> BackboneError {
    let mut message = e.to_string();
    if message.contains("__torch__") {
        message.push_str(
            "\n  The file is a TorchScript archive (torch.jit.save), which holds a program, not a state dict: save the weights with torch.save(model.state_dict(), PATH) and give that file",
        );
    }
    BackboneError::Read {
        path: path.to_path_buf(),
        message,
    }
}

/// How strictly [`load_weights`] treats a file that does not fit, and which toolkit wrote it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Load what fits and report the rest instead of failing (parameters the file lacks keep
    /// their current values). Off by default.
    pub allow_partial: bool,
    /// Which toolkit's checkpoint a PyTorch or SafeTensors file is (where the backbone's
    /// weights sit in it, and which other entries are expected).
    pub source: CheckpointSource,
}

/// The toolkit a PyTorch checkpoint comes from. Each reads the backbone (torchvision's layout
/// and names in all three) out of that toolkit's file and ignores the heads it adds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CheckpointSource {
    /// A torchvision state dict (`fc.*` ignored), bare or under wrapper prefixes.
    #[default]
    Torchvision,
    /// torchreid 0.2.5's `resnet18/34/50/101/152`: a `model.pth.tar` (`{"state_dict": …,
    /// "optimizer": …, "epoch": …}`) or a bare state dict; `classifier.*` ignored. Models with
    /// layers after the pooling (`fc.*`: `resnet50_fc512`) are refused.
    Torchreid,
    /// FastReID 1.4.0's BoT ResNet (`model_final.pth`: `{"model": …, "optimizer": …}`, or a
    /// bare state dict): `backbone.*` read, the BN neck (`heads.bottleneck.0.*`, read by
    /// [`crate::FastreidNeck`]) and the classifier (`heads.weight`) set aside; any other
    /// `heads.*` entry is unexpected. IBN, non-local and squeeze-excitation backbones, GeM
    /// pooling (SBS) and layers around the neck (`heads.bottleneck.1`) are refused.
    Fastreid,
}

impl CheckpointSource {
    /// The key a training checkpoint of this toolkit keeps the model's state dict under.
    fn top_level_key(self) -> Option<&'static str> {
        match self {
            CheckpointSource::Torchvision => None,
            CheckpointSource::Torchreid => Some("state_dict"),
            CheckpointSource::Fastreid => Some("model"),
        }
    }

    /// File entries (after wrapper prefixes are removed) the backbone has no use for.
    fn ignores(self, key: &str) -> bool {
        key.ends_with(".num_batches_tracked")
            || match self {
                CheckpointSource::Torchvision => key.starts_with("fc."),
                CheckpointSource::Torchreid => key.starts_with("classifier."),
                // FastReID 0.x saved its input normalisation as persistent buffers; `check_keys`
                // refuses the file unless they hold ImageNet's statistics.
                // FastReID 1.x's head: the BN neck (read by `FastreidNeck`) and the classifier's
                // `heads.weight`; any other `heads.*` entry is a part of the head this toolkit
                // would leave out of the feature, so it is unexpected (issue 42, D9).
                CheckpointSource::Fastreid => {
                    key.starts_with("heads.bottleneck.0.")
                        || key == "heads.weight"
                        || key == "pixel_mean"
                        || key == "pixel_std"
                }
            }
    }

    /// A model variant the file holds that the backbone cannot express, from its keys.
    fn unsupported_variant<'k>(self, mut keys: impl Iterator<Item = &'k str>) -> Option<String> {
        keys.find_map(|key| {
            let variant = match self {
                CheckpointSource::Torchvision => return None,
                CheckpointSource::Torchreid if key.starts_with("fc.") => {
                    "fully connected layers after the pooling (resnet50_fc512 and the like)"
                }
                CheckpointSource::Fastreid if key.contains(".IN.") => "IBN blocks (IBN-ResNet)",
                CheckpointSource::Fastreid if key.contains("NL_") => "non-local blocks",
                CheckpointSource::Fastreid if key.contains(".se.") => "squeeze-excitation blocks",
                CheckpointSource::Fastreid if key.starts_with("heads.pool_layer.") => {
                    "GeM pooling with a learnt exponent (SBS)"
                }
                CheckpointSource::Fastreid if key.starts_with("heads.bottleneck.1.") => {
                    "an embedding layer before the BN neck, or a second layer after it (heads.bottleneck.1)"
                }
                _ => return None,
            };
            Some(format!("{variant}: entry {key}"))
        })
    }
}

impl CheckpointSource {
    /// Every toolkit, in the order a user is offered them.
    pub const ALL: [CheckpointSource; 3] = [
        CheckpointSource::Torchvision,
        CheckpointSource::Torchreid,
        CheckpointSource::Fastreid,
    ];

    /// The toolkit's name (`torchvision`, `torchreid`, `fastreid`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointSource::Torchvision => "torchvision",
            CheckpointSource::Torchreid => "torchreid",
            CheckpointSource::Fastreid => "fastreid",
        }
    }

    /// What a file of this toolkit is and which feature it is evaluated with, in a line.
    pub fn description(self) -> &'static str {
        match self {
            CheckpointSource::Torchvision => "a torchvision state dict (the pooled feature)",
            CheckpointSource::Torchreid => {
                "torchreid 0.2.5's ResNets, a model.pth.tar (its eval feature, the pooled one)"
            }
            CheckpointSource::Fastreid => {
                "FastReID 1.4.0's BoT ResNet, a model_final.pth (its eval feature, after the BN neck)"
            }
        }
    }
}

impl fmt::Display for CheckpointSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parsing a name that is not one of `torchvision|torchreid|fastreid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown toolkit `{0}`: expected one of torchvision, torchreid, fastreid")]
pub struct UnknownSource(pub String);

impl std::str::FromStr for CheckpointSource {
    type Err = UnknownSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        CheckpointSource::ALL
            .into_iter()
            .find(|source| source.as_str() == lower)
            .ok_or_else(|| UnknownSource(s.to_string()))
    }
}

/// What [`load_weights`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The format the file was read as.
    pub format: Option<WeightFormat>,
    /// Number of tensors written into the model.
    pub applied: usize,
    /// File entries ignored on purpose (`fc.*`, `*.num_batches_tracked`).
    pub ignored: Vec<String>,
    /// Only with `allow_partial`: model parameters the file lacked.
    pub missing: Vec<String>,
    /// Only with `allow_partial`: file entries with no place in the model.
    pub unexpected: Vec<String>,
    /// Only with `allow_partial`: entries whose shape or type differ.
    pub mismatched: Vec<String>,
}

/// Key prefixes written by `nn.DataParallel` and by training scripts that wrap the state
/// dict; removed before matching.
const WRAPPER_PREFIXES: &str = r"^(?:module\.|state_dict\.|model\.|backbone\.|base\.)+";

/// torchvision → Burn key renames beyond what `PyTorchToBurnAdapter` does.
const TORCHVISION_TO_BURN: [(&str, &str); 2] = [
    (r"\.downsample\.0\.", ".downsample.conv."),
    (r"\.downsample\.1\.", ".downsample.bn."),
];

/// Burn → torchvision key renames, the inverse of [`TORCHVISION_TO_BURN`].
const BURN_TO_TORCHVISION: [(&str, &str); 2] = [
    (r"\.downsample\.conv\.", ".downsample.0."),
    (r"\.downsample\.bn\.", ".downsample.1."),
];

/// Loads weights into `model` and returns the loaded model.
///
/// `.pth`/`.pt` and `.safetensors` files are read as torchvision state dicts (`fc` and
/// `num_batches_tracked` ignored, `downsample.0/1` and batch-norm `weight/bias` mapped,
/// `module.` and similar wrapper prefixes removed); `.bpk` files as native Burn weights.
///
/// Unless `options.allow_partial`, any missing key, unexpected key or shape mismatch is a
/// [`BackboneError::Incompatible`] listing them, and `model` is dropped without change to
/// the caller's copy (the load happens on a clone).
pub fn load_weights(
    model: &ResNet,
    path: &Path,
    options: LoadOptions,
) -> Result<(ResNet, LoadReport), BackboneError> {
    if !path.is_file() {
        return Err(BackboneError::WeightsNotFound {
            path: path.to_path_buf(),
        });
    }
    let format = WeightFormat::detect(path)?;
    let mut candidate = model.clone();
    let result = match format {
        WeightFormat::Pytorch => {
            let mut store = pytorch_store(path, options.source)?;
            check_keys(&mut store, model.arch(), path, options.source)?;
            candidate
                .load_from(&mut store)
                .map_err(|e| read_error(path, e))?
        }
        WeightFormat::Safetensors => {
            let mut store = TORCHVISION_TO_BURN.iter().fold(
                SafetensorsStore::from_file(path)
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .with_key_remapping(WRAPPER_PREFIXES, "")
                    .allow_partial(true)
                    .validate(false),
                |s, (from, to)| s.with_key_remapping(from, *to),
            );
            check_keys(&mut store, model.arch(), path, options.source)?;
            candidate
                .load_from(&mut store)
                .map_err(|e| read_error(path, e))?
        }
        WeightFormat::Native => {
            // In memory: a file-backed store reads tensor data lazily, after the file may be gone.
            let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
            let mut store =
                BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)))
                    .allow_partial(true)
                    .validate(false);
            check_keys(
                &mut store,
                model.arch(),
                path,
                CheckpointSource::Torchvision,
            )?;
            candidate
                .load_from(&mut store)
                .map_err(|e| read_error(path, e))?
        }
    };
    // A checkpoint saved in float16 (`model.half()`), bfloat16 or float64 loads with its own
    // precision; the network runs in f32.
    let candidate = in_f32(candidate);
    check_finite_weights(&candidate, path)?;
    let report = report_from(format, options.source, result);
    let clean =
        report.missing.is_empty() && report.unexpected.is_empty() && report.mismatched.is_empty();
    if !clean && !options.allow_partial {
        return Err(BackboneError::Incompatible {
            path: path.to_path_buf(),
            read_as: options.source,
            arch: model.arch(),
            missing: report.missing,
            unexpected: report.unexpected,
            matched: report.applied,
            mismatched: report.mismatched,
        });
    }
    Ok((candidate, report))
}

/// Casts every float parameter and running statistic of `module` that is not f32 to f32:
/// burn-store keeps a file's float precision, and a half-precision weight meeting f32
/// activations would stop the forward pass.
pub(crate) fn in_f32<M: burn::module::Module>(module: M) -> M {
    struct ToF32;
    impl burn::module::ModuleMapper for ToF32 {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<burn::tensor::Tensor<D>>,
        ) -> burn::module::Param<burn::tensor::Tensor<D>> {
            param.map(|t| {
                if t.dtype() == burn::tensor::DType::F32 {
                    t
                } else {
                    // On an autodiff device the cast is a node of the graph: the parameter
                    // must be a leaf of its own, or the first backward pass consumes it.
                    let trained = t.is_require_grad();
                    let cast = t.cast(burn::tensor::FloatDType::F32).detach();
                    if trained { cast.require_grad() } else { cast }
                }
            })
        }
    }
    module.map(&mut ToF32)
}

/// A parameter's path in the module as torchvision names it: `downsample.0`/`.1`, a batch
/// norm's `weight`/`bias` (Burn's `gamma`/`beta`).
fn torchvision_name(burn: &str) -> String {
    let name = BURN_TO_TORCHVISION
        .iter()
        .fold(format!(".{burn}"), |n, (from, to)| {
            n.replace(&from.replace('\\', ""), to)
        });
    let name = name.trim_start_matches('.');
    match name.rsplit_once('.') {
        Some((module, "gamma")) => format!("{module}.weight"),
        Some((module, "beta")) => format!("{module}.bias"),
        _ => name.to_string(),
    }
}

/// The first parameter or running statistic of `module` that is NaN or infinite, or a running
/// variance below 0, as [`BackboneError::NonFiniteWeight`] naming it by its path.
pub(crate) fn check_finite_weights<M: burn::module::Module>(
    module: &M,
    path: &Path,
) -> Result<(), BackboneError> {
    #[derive(Default)]
    struct Scan {
        at: Vec<String>,
        found: Option<(String, &'static str)>,
    }
    impl burn::module::ModuleVisitor for Scan {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.at.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.at.pop();
        }
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            if self.found.is_some() {
                return;
            }
            let values = param
                .val()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_default();
            let name = torchvision_name(&self.at.join("."));
            let problem = if values.iter().any(|v| v.is_nan()) {
                Some("a NaN")
            } else if values.iter().any(|v| v.is_infinite()) {
                Some("an infinite value")
            } else if name.ends_with("running_var") && values.iter().any(|&v| v < 0.0) {
                Some("a negative variance")
            } else {
                None
            };
            self.found = problem.map(|p| (name, p));
        }
    }
    let mut scan = Scan::default();
    module.visit(&mut scan);
    match scan.found {
        Some((parameter, problem)) => Err(BackboneError::NonFiniteWeight {
            path: path.to_path_buf(),
            parameter,
            problem,
        }),
        None => Ok(()),
    }
}

/// A PyTorch file's store: the toolkit's top-level key when the file has it (a training
/// checkpoint), the whole file otherwise (a bare state dict); wrapper prefixes removed and
/// torchvision's `downsample.0/1` mapped.
fn pytorch_store(path: &Path, source: CheckpointSource) -> Result<PytorchStore, BackboneError> {
    let store = |top_level: Option<&str>| {
        let base = PytorchStore::from_file(path);
        let base = match top_level {
            Some(key) => base.with_top_level_key(key),
            None => base,
        };
        TORCHVISION_TO_BURN.iter().fold(
            base.with_key_remapping(WRAPPER_PREFIXES, "")
                .map_indices_contiguous(false)
                .allow_partial(true)
                .validate(false),
            |s, (from, to)| s.with_key_remapping(from, *to),
        )
    };
    if let Some(key) = source.top_level_key() {
        let mut wrapped = store(Some(key));
        if wrapped.keys().is_ok_and(|keys| !keys.is_empty()) {
            return Ok(wrapped);
        }
    }
    Ok(store(None))
}

/// Refuses a file of another depth or of a variant the backbone cannot express.
fn check_keys<S: ModuleStore>(
    store: &mut S,
    expected: ResNetArch,
    path: &Path,
    source: CheckpointSource,
) -> Result<(), BackboneError>
where
    S::Error: fmt::Display,
{
    let keys = store.keys().map_err(|e| read_error(path, e))?;
    if let Some(variant) = source.unsupported_variant(keys.iter().map(String::as_str)) {
        return Err(BackboneError::UnsupportedVariant {
            path: path.to_path_buf(),
            toolkit: source,
            variant,
        });
    }
    if source == CheckpointSource::Fastreid {
        check_pixel_statistics(store, &keys, path)?;
    }
    match ResNetArch::detect_from_keys(keys.iter().map(String::as_str)) {
        Some(found) if found != expected => Err(BackboneError::ArchitectureMismatch {
            path: path.to_path_buf(),
            expected,
            found,
        }),
        _ => Ok(()),
    }
}

/// Refuses a FastReID 0.x file whose `pixel_mean` / `pixel_std` buffers are not ImageNet's
/// statistics (to 0.1 %); files without them (FastReID 1.x) pass.
fn check_pixel_statistics<S: ModuleStore>(
    store: &mut S,
    keys: &[String],
    path: &Path,
) -> Result<(), BackboneError>
where
    S::Error: fmt::Display,
{
    if !keys.iter().any(|k| k == "pixel_mean" || k == "pixel_std") {
        return Ok(());
    }
    let mut values = |key: &str| -> Result<Vec<f32>, BackboneError> {
        let Some(tensor) = store.get_tensor(key).map_err(|e| read_error(path, e))? else {
            return Ok(Vec::new());
        };
        let data = burn::store::bridge::to_data(tensor).map_err(|e| read_error(path, e))?;
        data.convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| read_error(path, format!("{key}: {e:?}")))
    };
    let (mean, std) = (values("pixel_mean")?, values("pixel_std")?);
    let close = |got: &[f32], want: &[f32; 3]| {
        got.len() == 3 && got.iter().zip(want).all(|(g, w)| (g - w).abs() <= 1e-3 * w)
    };
    if close(&mean, &IMAGENET_PIXEL_MEAN) && close(&std, &IMAGENET_PIXEL_STD) {
        return Ok(());
    }
    Err(BackboneError::InputNormalisation {
        path: path.to_path_buf(),
        mean,
        std,
    })
}

/// `layer1.0.conv1.weight: model [64, 64, 3, 3], file [4, 4, 3, 3]`.
fn describe_apply_error(error: &ApplyError) -> String {
    match error {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => format!(
            "{path}: model {:?}, file {:?}",
            expected.as_slice(),
            found.as_slice()
        ),
        ApplyError::DTypeMismatch {
            path,
            expected,
            found,
        } => format!("{path}: model {expected:?}, file {found:?}"),
        other => other.to_string(),
    }
}

fn report_from(format: WeightFormat, source: CheckpointSource, result: ApplyResult) -> LoadReport {
    let (ignored, unexpected): (Vec<String>, Vec<String>) =
        result.unused.into_iter().partition(|k| source.ignores(k));
    LoadReport {
        format: Some(format),
        applied: result.applied.len(),
        ignored,
        missing: result
            .missing
            .into_iter()
            .map(|(path, _)| torchvision_name(&path))
            .collect(),
        unexpected,
        mismatched: result.errors.iter().map(describe_apply_error).collect(),
    }
}

/// Writes `model`'s weights as a native burnpack file, atomically: a temporary file beside
/// `path` is renamed over it, so a failure leaves any previous file intact.
pub fn save_native(model: &ResNet, path: &Path) -> Result<(), BackboneError> {
    scal_fs::write_atomically(path, |tmp| {
        let mut store = BurnpackStore::from_file(tmp)
            .auto_extension(false)
            .overwrite(true);
        model.save_into(&mut store).map_err(|e| e.to_string())
    })?;
    Ok(())
}

/// Writes `model`'s weights as a SafeTensors file with torchvision's key names
/// (`downsample.0/1`, batch-norm `weight/bias`), loadable in PyTorch with
/// `resnet.load_state_dict(safetensors.torch.load_file(path), strict=False)` (only `fc` and
/// `num_batches_tracked` are absent). Written atomically.
pub fn save_torchvision_safetensors(model: &ResNet, path: &Path) -> Result<(), BackboneError> {
    scal_fs::write_atomically(path, |tmp| {
        let mut store = BURN_TO_TORCHVISION.iter().fold(
            SafetensorsStore::from_file(tmp)
                .with_to_adapter(BurnToPyTorchAdapter)
                .overwrite(true),
            |s, (from, to)| s.with_key_remapping(from, *to),
        );
        model.save_into(&mut store).map_err(|e| e.to_string())
    })?;
    Ok(())
}

impl ResNet {
    /// [`load_weights`] with strict checking, for any of the three formats: the loaded
    /// model, or an error that lists what does not fit.
    pub fn with_weights(self, path: &Path) -> Result<ResNet, BackboneError> {
        load_weights(&self, path, LoadOptions::default()).map(|(m, _)| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fastreid_head_entry_other_than_the_neck_and_classifier_is_unexpected() {
        let fastreid = CheckpointSource::Fastreid;
        for key in [
            "heads.bottleneck.0.weight",
            "heads.bottleneck.0.running_var",
            "heads.weight",
            "pixel_mean",
        ] {
            assert!(fastreid.ignores(key), "{key}");
        }
        // They were ignored silently, and the feature left them out (issue 42, D9).
        for key in ["heads.random_stuff.weight", "heads.extra.weight"] {
            assert!(!fastreid.ignores(key), "{key}");
        }
        let variant = fastreid
            .unsupported_variant(["conv1.weight", "heads.bottleneck.1.weight"].into_iter())
            .expect("a layer after the neck is refused");
        assert!(variant.contains("heads.bottleneck.1.weight"), "{variant}");
        assert!(
            CheckpointSource::Torchreid
                .unsupported_variant(["heads.bottleneck.1.weight"].into_iter())
                .is_none()
        );
    }

    #[test]
    fn entries_of_another_toolkit_name_its_format() {
        let unexpected = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let classifier = unexpected(&["classifier.weight", "classifier.bias"]);
        let heads = unexpected(&["heads.bottleneck.0.bias", "heads.weight"]);
        let hint = other_toolkit_hint(CheckpointSource::Fastreid, &classifier);
        assert!(hint.contains("--format torchreid"), "{hint}");
        let hint = other_toolkit_hint(CheckpointSource::Torchvision, &heads);
        assert!(hint.contains("--format fastreid"), "{hint}");
        let hint = other_toolkit_hint(CheckpointSource::Torchreid, &heads);
        assert!(hint.contains("--format fastreid"), "{hint}");
        // Nothing when the entries are the toolkit's own, or nobody's.
        assert_eq!(
            other_toolkit_hint(CheckpointSource::Torchreid, &classifier),
            ""
        );
        assert_eq!(
            other_toolkit_hint(
                CheckpointSource::Torchvision,
                &unexpected(&["layer5.weight"])
            ),
            ""
        );
    }

    #[test]
    fn a_torchscript_archive_says_to_save_a_state_dict() {
        let path = Path::new("fr/scripted.pt");
        let reader = "pickle: unsupported Python type '__torch__.torch.nn.modules.conv.Conv2d'";
        let message = read_error(path, reader).to_string();
        assert!(
            message.starts_with("cannot read weights file fr/scripted.pt: pickle")
                && message.contains("TorchScript archive (torch.jit.save)")
                && message.contains("model.state_dict()"),
            "{message}"
        );
        let other = read_error(path, "invalid Zip archive").to_string();
        assert!(!other.contains("TorchScript"), "{other}");
    }
}
