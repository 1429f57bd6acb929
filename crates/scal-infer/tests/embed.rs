//! Embedding image files: one row per file in order whatever the batch, flip averaging as
//! each toolkit does it, a damaged image named, a split's labels and progress.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use ndarray::Array2;
use scal_backbone::{CheckpointSource, ResNetArch, ResNetConfig, save_torchvision_safetensors};
use scal_data::ImageRecord;
use scal_infer::{EmbedOptions, ForeignModel, InferError, QueryGallery, embed_paths};
use scal_model::{AttentionKind, ScalConfig, ScalModel};

const SIZE: (usize, usize) = (64, 32);

/// `n` PNGs of distinct patterns at the model's input size (no resizing), and each one's
/// mirror image beside it (`mirror-I.png`).
fn images(dir: &Path, n: usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (h, w) = (SIZE.0 as u32, SIZE.1 as u32);
    let mut plain = Vec::new();
    let mut mirrored = Vec::new();
    for i in 0..n as u32 {
        let image = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                ((x * 7 + y * 3 + i * 40) % 256) as u8,
                ((x * x + 5 * i) % 256) as u8,
                ((y * 11 + x * i) % 256) as u8,
            ])
        });
        let flipped = image::imageops::flip_horizontal(&image);
        let (p, m) = (
            dir.join(format!("{i}.png")),
            dir.join(format!("mirror-{i}.png")),
        );
        image.save(&p).unwrap();
        flipped.save(&m).unwrap();
        plain.push(p);
        mirrored.push(m);
    }
    (plain, mirrored)
}

fn scal_model(device: &Device) -> ScalModel {
    ScalConfig::new(10)
        .with_arch(ResNetArch::ResNet18)
        .with_base_width(4)
        .with_height(SIZE.0)
        .with_width(SIZE.1)
        .with_attention(AttentionKind::Channel)
        .with_critic_hidden(8)
        .init(device)
        .valid()
}

fn foreign_model(dir: &Path, device: &Device) -> ForeignModel {
    let resnet = ResNetConfig::new(ResNetArch::ResNet18)
        .with_base_width(4)
        .init(device);
    let weights = dir.join("resnet.safetensors");
    save_torchvision_safetensors(&resnet, &weights).unwrap();
    ForeignModel::load(
        &weights,
        CheckpointSource::Torchvision,
        ResNetArch::ResNet18,
        None,
        4,
        device,
    )
    .unwrap()
}

fn max_difference(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn rows_follow_the_files_whatever_the_batch_and_are_unit_length() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let (files, _) = images(dir.path(), 5);
    let model = scal_model(&device);
    let options = EmbedOptions::new(SIZE.0, SIZE.1).with_flip(false);
    let mut seen = Vec::new();
    let together = embed_paths(&model, &files, options.with_batch(5), &device, &mut |n| {
        seen.push(n)
    })
    .unwrap();
    assert_eq!(seen, [5]);
    let mut seen = Vec::new();
    let in_twos = embed_paths(&model, &files, options.with_batch(2), &device, &mut |n| {
        seen.push(n)
    })
    .unwrap();
    assert_eq!(seen, [2, 2, 1], "progress per batch");
    assert_eq!(together.nrows(), 5);
    assert!(max_difference(&together, &in_twos) < 1e-5);
    // Reversed files give reversed rows, and the rows differ (so the order is seen).
    let reversed: Vec<PathBuf> = files.iter().rev().cloned().collect();
    let backwards = embed_paths(
        &model,
        &reversed,
        options.with_batch(3),
        &device,
        &mut |_| {},
    )
    .unwrap();
    for i in 0..5 {
        let (a, b) = (together.row(i), backwards.row(4 - i));
        assert!(
            a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5),
            "row {i}"
        );
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "row {i} has norm {norm}");
    }
    assert!(max_difference(&together, &backwards) > 1e-4);
}

#[test]
fn a_foreign_model_averages_its_feature_with_the_mirror_image() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let (files, mirrors) = images(dir.path(), 3);
    let model = foreign_model(dir.path(), &device);
    let options = EmbedOptions::new(SIZE.0, SIZE.1).with_batch(2);
    let flipped = embed_paths(&model, &files, options, &device, &mut |_| {}).unwrap();
    let plain = embed_paths(
        &model,
        &files,
        options.with_flip(false),
        &device,
        &mut |_| {},
    )
    .unwrap();
    let mirror = embed_paths(
        &model,
        &mirrors,
        options.with_flip(false),
        &device,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(flipped.ncols(), model.dim());
    let mean = (&plain + &mirror) / 2.0;
    assert!(max_difference(&flipped, &mean) < 1e-4);
    assert!(
        max_difference(&flipped, &plain) > 1e-4,
        "the flip changes the feature"
    );
}

#[test]
fn a_damaged_image_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let (mut files, _) = images(dir.path(), 2);
    let bad = dir.path().join("truncated.png");
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    files.insert(1, bad);
    let model = scal_model(&device);
    let options = EmbedOptions::new(SIZE.0, SIZE.1);
    match embed_paths(&model, &files, options, &device, &mut |_| {}) {
        Err(e @ InferError::Data(_)) => {
            assert!(e.to_string().contains("truncated.png"), "{e}");
        }
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn a_split_keeps_its_labels_and_reports_every_image() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let (files, _) = images(dir.path(), 5);
    let record = |i: usize, pid: i64, camid: i64| ImageRecord {
        path: files[i].clone(),
        pid,
        camid,
    };
    let query = [record(0, 7, 0), record(1, 8, 1)];
    let gallery = [record(2, 8, 0), record(3, 7, 1), record(4, 9, 2)];
    let model = scal_model(&device);
    let mut images_seen = 0;
    let split = QueryGallery::embed(
        &model,
        (&query, &gallery),
        EmbedOptions::new(SIZE.0, SIZE.1).with_batch(2),
        &device,
        &mut |n| images_seen += n,
    )
    .unwrap();
    assert_eq!(images_seen, 5);
    assert_eq!((split.query.nrows(), split.gallery.nrows()), (2, 3));
    assert_eq!(split.labels.q_pids, [7, 8]);
    assert_eq!(split.labels.g_pids, [8, 7, 9]);
    assert_eq!(split.labels.q_camids, [0, 1]);
    assert_eq!(split.labels.g_camids, [0, 1, 2]);
    let distances = split
        .distances(scal_eval::DistanceMetric::Euclidean)
        .unwrap();
    assert_eq!(distances.dim(), (2, 3));
    let metrics = split.metrics(&distances).unwrap();
    assert_eq!(metrics.num_valid_queries, 2);
}

#[test]
fn weights_with_a_nan_are_refused_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let resnet = ResNetConfig::new(ResNetArch::ResNet18)
        .with_base_width(4)
        .init(&device);
    let clean = dir.path().join("clean.safetensors");
    save_torchvision_safetensors(&resnet, &clean).unwrap();
    // The same file with one NaN in a convolution of the last stage (a diverged run's
    // weights), then one with a negative running variance.
    let bytes = std::fs::read(&clean).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, v.shape().to_vec(), v.dtype(), v.data().to_vec()))
        .collect();
    let load = |weights: &Path| {
        ForeignModel::load(
            weights,
            CheckpointSource::Torchvision,
            ResNetArch::ResNet18,
            None,
            4,
            &device,
        )
    };
    load(&clean).unwrap();
    for (key, value, problem) in [
        ("layer4.1.conv2.weight", f32::NAN, "a NaN"),
        (
            "layer2.0.downsample.1.running_var",
            -1.0,
            "a negative variance",
        ),
    ] {
        let mut edited = tensors.clone();
        let target = edited.iter_mut().find(|t| t.0 == key).unwrap();
        target.3[..4].copy_from_slice(&value.to_le_bytes());
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = edited
            .iter()
            .map(|(n, shape, dtype, data)| {
                let view =
                    safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
                (n.clone(), view)
            })
            .collect();
        let bad = dir.path().join("bad.safetensors");
        std::fs::write(&bad, safetensors::serialize(views, None).unwrap()).unwrap();
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(problem), "{err}");
    }
}

#[test]
fn a_model_that_gives_nan_features_is_stopped_naming_the_image() {
    struct PoisonFirst(bool);
    impl burn::module::ModuleMapper for PoisonFirst {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<burn::tensor::Tensor<D>>,
        ) -> burn::module::Param<burn::tensor::Tensor<D>> {
            if std::mem::replace(&mut self.0, true) {
                return param;
            }
            param.map(|t| t.mul_scalar(f32::NAN))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let (files, _) = images(dir.path(), 2);
    let model = scal_model(&device).map(&mut PoisonFirst(false));
    let options = EmbedOptions::new(SIZE.0, SIZE.1);
    match embed_paths(&model, &files, options, &device, &mut |_| {}) {
        Err(e @ InferError::NonFiniteFeature { .. }) => {
            assert!(e.to_string().contains("0.png"), "{e}");
        }
        other => panic!("expected a non-finite feature error, got {other:?}"),
    }
}
