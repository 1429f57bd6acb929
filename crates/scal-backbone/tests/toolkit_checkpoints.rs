//! Checkpoints written by other ReID toolkits: torchreid's `model.pth.tar`
//! (`tests/fixtures/make_torchreid_fixture.py`, torchreid 0.2.5's own model definition at base
//! width 2) and FastReID's BoT `model_final.pth` (`make_fastreid_fixture.py`, FastReID 1.4.0's
//! backbone and head) give those toolkits' eval-mode features; variants the backbone cannot
//! express are refused by name.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use scal_backbone::{
    BackboneError, CheckpointSource, FastreidNeck, LoadOptions, ResNetArch, ResNetConfig,
    load_weights,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tensor(file: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture(file)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor(name).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), values)
}

fn read_as(source: CheckpointSource) -> LoadOptions {
    LoadOptions {
        source,
        ..LoadOptions::default()
    }
}

fn torchreid() -> LoadOptions {
    read_as(CheckpointSource::Torchreid)
}

/// A ResNet-50 at the fixtures' base width 2.
fn resnet50_w2(last_stride: usize, stem_pool_ceil: bool, device: &Device) -> scal_backbone::ResNet {
    ResNetConfig::new(ResNetArch::ResNet50)
        .with_base_width(2)
        .with_last_stride(last_stride)
        .with_stem_pool_ceil(stem_pool_ceil)
        .init(device)
}

/// Largest absolute difference to the fixture's expected features, and their scale.
fn compare(got: Tensor<2>, file: &str) -> (f32, f32) {
    let (shape, want) = tensor(file, "features");
    assert_eq!(got.dims().to_vec(), shape);
    let got = got.into_data().try_into_vec::<f32>().unwrap();
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max_err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    (max_err, scale)
}

fn images(file: &str, device: &Device) -> Tensor<4> {
    let (shape, values) = tensor(file, "images");
    Tensor::<4>::from_data(TensorData::new(values, shape), device)
}

#[test]
fn a_fastreid_bot_checkpoint_gives_fastreids_features() {
    let device = Device::flex();
    let path = fixture("fastreid_bot_r50_w2.pth");
    let model = resnet50_w2(1, true, &device);
    let options = read_as(CheckpointSource::Fastreid);
    let (model, report) = load_weights(&model, &path, options).unwrap();
    assert!(
        report.ignored.iter().any(|k| k == "heads.weight"),
        "{:?}",
        report.ignored
    );
    let neck = FastreidNeck::load(&path, model.feature_dim(), &device).unwrap();
    let got = neck.forward(model.forward_pooled(images("fastreid_io.safetensors", &device)));
    let (max_err, scale) = compare(got, "fastreid_io.safetensors");
    assert!(
        max_err <= 1e-4 * scale,
        "max abs error {max_err}, features up to {scale}"
    );

    // torchvision's stem pooling (padding 1) is not FastReID's: the features differ.
    let torchvision_stem = resnet50_w2(1, false, &device);
    let (torchvision_stem, _) = load_weights(&torchvision_stem, &path, options).unwrap();
    let got =
        neck.forward(torchvision_stem.forward_pooled(images("fastreid_io.safetensors", &device)));
    let (max_err, scale) = compare(got, "fastreid_io.safetensors");
    assert!(
        max_err > 1e-3 * scale,
        "the stem's pooling made no difference"
    );
}

#[test]
fn fastreid_ibn_backbones_are_refused() {
    let device = Device::flex();
    let model = resnet50_w2(2, false, &device);
    let options = read_as(CheckpointSource::Fastreid);
    let err = load_weights(&model, &fixture("fastreid_ibn_r50_w2.pth"), options).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, BackboneError::UnsupportedVariant { .. }) && message.contains("IBN"),
        "{message}"
    );
}

#[test]
fn a_torchreid_checkpoint_gives_torchreids_features() {
    let device = Device::flex();
    let model = resnet50_w2(2, false, &device);
    let (model, report) = load_weights(
        &model,
        &fixture("torchreid_resnet50_w2.pth.tar"),
        torchreid(),
    )
    .unwrap();
    // Everything the backbone has came from the file; the classifier was set aside.
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    assert!(
        report.ignored.iter().any(|k| k.starts_with("classifier.")),
        "{:?}",
        report.ignored
    );
    let got = model.forward_pooled(images("torchreid_io.safetensors", &device));
    let (max_err, scale) = compare(got, "torchreid_io.safetensors");
    assert!(
        max_err <= 1e-4 * scale,
        "max abs error {max_err}, features up to {scale}"
    );
}

#[test]
fn the_same_checkpoint_read_as_torchvision_is_refused_with_its_extra_entries() {
    let device = Device::flex();
    let model = resnet50_w2(2, false, &device);
    let err = load_weights(
        &model,
        &fixture("torchreid_resnet50_w2.pth.tar"),
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, BackboneError::Incompatible { .. }), "{err}");
    // The classifier's entries name the toolkit to read it as (issue 42, D8).
    assert!(err.to_string().contains("--format torchreid"), "{err}");
    let err = load_weights(
        &resnet50_w2(2, true, &device),
        &fixture("fastreid_bot_r50_w2.pth"),
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--format fastreid"), "{err}");
}

#[test]
fn torchreid_models_with_layers_after_the_pooling_are_refused() {
    let device = Device::flex();
    let model = resnet50_w2(2, false, &device);
    let err = load_weights(
        &model,
        &fixture("torchreid_resnet50_fc_w2.pth"),
        torchreid(),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, BackboneError::UnsupportedVariant { .. })
            && message.contains("resnet50_fc512")
            && message.contains("torchreid_resnet50_fc_w2.pth"),
        "{message}"
    );
}

#[test]
fn a_fastreid_neck_of_another_width_or_truncated_says_what_the_file_holds() {
    let device = Device::flex();
    let err = FastreidNeck::load(&fixture("fastreid_neck_16.pth"), 32, &device).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, BackboneError::BrokenNeck { .. })
            && message.contains("has 16 channels")
            && message.contains("has 32")
            && message.contains("fastreid_neck_16.pth"),
        "{message}"
    );
    let err = FastreidNeck::load(&fixture("fastreid_neck_truncated.pth"), 32, &device).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, BackboneError::BrokenNeck { .. })
            && message.contains("lacks")
            && message.contains("running_mean")
            && message.contains("running_var")
            && !message.contains("WITH_BNNECK")
            && !message.contains("EMBEDDING_DIM"),
        "{message}"
    );
    // The BoT fixture's full neck still loads.
    FastreidNeck::load(&fixture("fastreid_bot_r50_w2.pth"), 64, &device).unwrap();
}

/// FastReID 0.x saved `pixel_mean` / `pixel_std` as persistent buffers: ImageNet's values are
/// what the toolkit feeds, so they are set aside; other values are refused, naming them.
#[test]
fn fastreid_0x_pixel_statistics_load_when_imagenets_and_are_refused_otherwise() {
    let device = Device::flex();
    let model = ResNetConfig::new(ResNetArch::ResNet18)
        .with_base_width(4)
        .init(&device);
    let options = read_as(CheckpointSource::Fastreid);
    let err = load_weights(&model, &fixture("fastreid_0x_pixel_stats.pth"), options).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, BackboneError::InputNormalisation { .. })
            && message.contains("127.5")
            && message.contains("pixel_mean")
            && message.contains("fastreid_0x_pixel_stats.pth"),
        "{message}"
    );
    // The same buffers beside a backbone, as SafeTensors: ImageNet's values load.
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.safetensors");
    scal_backbone::save_torchvision_safetensors(&model, &clean).unwrap();
    let bytes = std::fs::read(&clean).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let with_stats = |mean: [f32; 3], std: [f32; 3], name: &str| {
        let stats: Vec<(String, Vec<u8>)> = [("pixel_mean", mean), ("pixel_std", std)]
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect();
        let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
            .tensors()
            .into_iter()
            .map(|(k, v)| (format!("backbone.{k}"), v))
            .collect();
        for (k, data) in &stats {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![1, 3, 1, 1],
                data,
            )
            .unwrap();
            views.push((k.clone(), view));
        }
        let path = dir.path().join(name);
        safetensors::serialize_to_file(views, None, &path).unwrap();
        path
    };
    let imagenet = with_stats(
        scal_backbone::IMAGENET_PIXEL_MEAN,
        scal_backbone::IMAGENET_PIXEL_STD,
        "imagenet.safetensors",
    );
    let (_, report) = load_weights(&model, &imagenet, options).unwrap();
    assert!(
        report.ignored.iter().any(|k| k == "pixel_mean") && report.unexpected.is_empty(),
        "{report:?}"
    );
    let other = with_stats([127.5; 3], [127.5; 3], "other.safetensors");
    let err = load_weights(&model, &other, options).unwrap_err();
    assert!(
        matches!(err, BackboneError::InputNormalisation { .. }),
        "{err}"
    );
}
