//! A dataset as a user names it: one place that resolves every name (the readers'
//! `market1501` … `custom`, and the synthetic `synth` and `synth-hard`) to the reader, the
//! generator version and the default folder.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::DataError;
use crate::datasets::DatasetName;
use crate::synth::SynthPreset;

/// The folder datasets are looked for in when no root is given: `datasets/NAME`.
pub const DATASETS_DIR: &str = "datasets";

/// A dataset by name: a distributed one read from its folder, or a synthetic one (written
/// by its generator in the Market-1501 layout, and read as Market-1501).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetSpec {
    /// Market-1501, DukeMTMC-reID, CUHK03-NP, MSMT17 or the custom layout.
    Distributed(DatasetName),
    /// `synth` or `synth-hard` (the generator's latest version).
    Synthetic(SynthPreset),
}

impl DatasetSpec {
    /// The name users type (`market1501`, `synth-hard`, …).
    pub fn name(self) -> &'static str {
        match self {
            DatasetSpec::Distributed(name) => name.as_str(),
            DatasetSpec::Synthetic(preset) => preset.dataset_name(),
        }
    }

    /// The reader of its folder (Market-1501 for a synthetic dataset).
    pub fn reader(self) -> DatasetName {
        match self {
            DatasetSpec::Distributed(name) => name,
            DatasetSpec::Synthetic(_) => DatasetName::Market1501,
        }
    }

    /// The generator of a synthetic dataset.
    pub fn synth_preset(self) -> Option<SynthPreset> {
        match self {
            DatasetSpec::Distributed(_) => None,
            DatasetSpec::Synthetic(preset) => Some(preset),
        }
    }

    /// Its folder under [`DATASETS_DIR`]: where `download` extracts a distributed dataset
    /// (both CUHK03-NP box types share `cuhk03`), the generator writes a synthetic one.
    pub fn folder_name(self) -> &'static str {
        match self {
            DatasetSpec::Distributed(DatasetName::Cuhk03Labeled | DatasetName::Cuhk03Detected) => {
                "cuhk03"
            }
            other => other.name(),
        }
    }

    /// Its folder when none is given: `datasets/FOLDER` ([`DatasetSpec::folder_name`]).
    pub fn default_root(self) -> PathBuf {
        PathBuf::from(DATASETS_DIR).join(self.folder_name())
    }
}

impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetSpec {
    type Err = DataError;

    /// A synthetic name (`synth`, `synth-hard`), or a reader's name with its aliases
    /// ([`DatasetName`]'s parser, whose error names the unknown name).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match SynthPreset::from_dataset_name(s) {
            Some(preset) => Ok(DatasetSpec::Synthetic(preset)),
            None => s.parse().map(DatasetSpec::Distributed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves_to_its_reader_generator_and_folder() {
        let hard: DatasetSpec = "synth-hard".parse().unwrap();
        assert_eq!(hard.reader(), DatasetName::Market1501);
        assert_eq!(hard.synth_preset(), Some(SynthPreset::HardV1));
        assert_eq!(hard.default_root(), PathBuf::from("datasets/synth-hard"));
        let easy: DatasetSpec = "synth".parse().unwrap();
        assert_eq!(easy.synth_preset(), Some(SynthPreset::Easy));
        let duke: DatasetSpec = "DukeMTMC-reID".parse().unwrap();
        assert_eq!(duke, DatasetSpec::Distributed(DatasetName::Dukemtmc));
        assert_eq!(duke.default_root(), PathBuf::from("datasets/dukemtmc"));
        assert_eq!(duke.synth_preset(), None);
        for name in DatasetName::ALL {
            let spec: DatasetSpec = name.as_str().parse().unwrap();
            assert_eq!((spec.reader(), spec.name()), (name, name.as_str()));
        }
        let cuhk03: DatasetSpec = "cuhk03-detected".parse().unwrap();
        assert_eq!(cuhk03.default_root(), PathBuf::from("datasets/cuhk03"));
        #[cfg(feature = "download")]
        for name in DatasetName::ALL {
            if name != DatasetName::Custom {
                let folder = crate::download::source(name).folder;
                assert_eq!(
                    DatasetSpec::Distributed(name).folder_name(),
                    folder,
                    "{name:?}"
                );
            }
        }
        let err = "imagenet".parse::<DatasetSpec>().unwrap_err();
        assert!(err.to_string().contains("imagenet"), "{err}");
    }
}
