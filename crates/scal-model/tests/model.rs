//! Shapes, the no-attention pass, the ReID embedding and checkpoints of the SCAL network.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use scal_model::{AttentionKind, Gating, ScalConfig, ScalModel};

fn small(attention: AttentionKind, height: usize, width: usize, device: &Device) -> ScalModel {
    ScalConfig::new(10)
        .with_base_width(4)
        .with_height(height)
        .with_width(width)
        .with_attention(attention)
        .with_critic_hidden(16)
        .init(device)
}

fn images(n: usize, h: usize, w: usize, device: &Device) -> Tensor<4> {
    Tensor::random([n, 3, h, w], Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn attention_maps_at_256x128_and_384x128() {
    let device = Device::flex();
    for (h, w, sizes) in [
        (256, 128, [[64, 32], [64, 32], [32, 16], [16, 8], [16, 8]]),
        (384, 128, [[96, 32], [96, 32], [48, 16], [24, 8], [24, 8]]),
    ] {
        let channels = [4, 16, 32, 64, 128];
        for kind in [AttentionKind::Spatial, AttentionKind::Channel] {
            let model = small(kind, h, w, &device);
            let out = model.forward(images(2, h, w, &device), Gating::On);
            assert_eq!(out.maps.len(), 5);
            for l in 0..5 {
                let want = match kind {
                    AttentionKind::Spatial => [2, 1, sizes[l][0], sizes[l][1]],
                    _ => [2, channels[l], 1, 1],
                };
                assert_eq!(out.maps[l].dims(), want, "{kind} stage {l} at {h}x{w}");
                assert_eq!(
                    out.stage_inputs[l].dims(),
                    [2, channels[l], sizes[l][0], sizes[l][1]]
                );
                assert_eq!(out.values[l].dims(), [2]);
            }
            assert_eq!(out.global.dims(), [2, 128]);
            assert_eq!(out.feature.dims(), [2, 128]);
            assert_eq!(out.logits.dims(), [2, 10]);
            let min: f32 = out.maps[2].clone().min().into_scalar();
            let max: f32 = out.maps[2].clone().max().into_scalar();
            assert!(
                min > 0.0 && max < 1.0,
                "sigmoid maps in (0, 1): {min}..{max}"
            );
        }
    }
}

#[test]
#[should_panic(expected = "build the model for the height and width it is run at")]
fn spatial_attention_refuses_another_input_size() {
    let device = Device::flex();
    let model = small(AttentionKind::Spatial, 256, 128, &device);
    model.forward(images(1, 384, 128, &device), Gating::On);
}

#[test]
fn no_attention_pass_is_the_plain_network() {
    let device = Device::flex();
    let model = small(AttentionKind::Channel, 64, 32, &device);
    let x = images(2, 64, 32, &device);
    let ones = model.forward(x.clone(), Gating::Ones);
    assert!(ones.maps.is_empty() && ones.values.is_empty());
    // The same backbone and head with the gating skipped.
    let plain = model.backbone.forward_pooled(x.clone());
    let diff: f32 = (ones.global.clone() - plain).abs().max().into_scalar();
    assert!(diff < 1e-6);
    let gated = model.forward(x, Gating::On);
    let diff: f32 = (gated.global - ones.global).abs().max().into_scalar();
    assert!(diff > 1e-4, "attention must change the feature");
}

#[test]
fn no_attention_copy_leaves_running_statistics_alone() {
    let device = Device::flex().autodiff();
    let model = small(AttentionKind::Channel, 64, 32, &device);
    let x = images(4, 64, 32, &device);
    let stats = |m: &ScalModel| -> Vec<f32> {
        let mut v: Vec<f32> = m
            .neck
            .running_mean
            .value_sync()
            .into_data()
            .try_into_vec()
            .unwrap();
        v.extend(
            m.backbone
                .bn1
                .running_var
                .value_sync()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap(),
        );
        v
    };
    // A training-mode pass moves the running statistics...
    let before = stats(&model);
    model.forward(x.clone(), Gating::On);
    let after_train = stats(&model);
    assert_ne!(before, after_train);
    // ...the no-attention copy's pass does not, and it builds no gradient.
    let copy = model.no_attention_copy();
    let out = copy.forward(x.clone(), Gating::Ones);
    assert_eq!(stats(&model), after_train);
    assert!(!out.logits.is_require_grad());
    // It ran in batch-statistics mode, like the training pass, not with running statistics.
    let training = model.forward(x.clone(), Gating::Ones).logits;
    let diff: f32 = (training.clone() - out.logits.clone())
        .abs()
        .max()
        .into_scalar();
    assert!(diff < 1e-5, "no-attention copy vs training mode: {diff}");
    let x_plain = Tensor::<4>::from_data(x.to_data(), &Device::flex());
    let inference = model.valid().forward(x_plain, Gating::Ones).logits;
    let inference = Tensor::<2>::from_data(inference.to_data(), &device);
    let diff: f32 = (inference - out.logits).abs().max().into_scalar();
    assert!(diff > 1e-5, "inference mode uses running statistics");
}

#[test]
fn neck_shift_is_frozen_and_classifier_has_no_bias() {
    let device = Device::flex().autodiff();
    let model = small(AttentionKind::None, 64, 32, &device);
    assert!(!model.neck.beta.is_require_grad());
    assert!(model.neck.gamma.is_require_grad());
    assert!(model.classifier.bias.is_none());
    assert!(!model.has_attention());
    assert!(model.critics.critics.is_empty());
    let std: f32 = model
        .classifier
        .weight
        .val()
        .var(0)
        .mean()
        .sqrt()
        .into_scalar();
    assert!((std - 0.001).abs() < 3e-4, "classifier init std {std}");
}

#[test]
fn embedding_is_unit_length_and_flip_averages() {
    let device = Device::flex();
    let model = small(AttentionKind::Spatial, 64, 32, &device);
    let x = images(3, 64, 32, &device);
    let e = model.embed(x.clone(), false);
    let norms: Vec<f32> = e
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .into_data()
        .try_into_vec()
        .unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
    let flipped = model.embed(x.clone(), true);
    let manual = model.forward(x.clone(), Gating::On).feature
        + model.forward(x.flip([3]), Gating::On).feature;
    let manual = manual.clone() / manual.powi_scalar(2).sum_dim(1).sqrt();
    let diff: f32 = (flipped - manual).abs().max().into_scalar();
    assert!(diff < 1e-5);
}

#[test]
fn checkpoints_round_trip_and_refuse_another_configuration() {
    let device = Device::flex();
    let model = small(AttentionKind::Spatial, 64, 32, &device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bpk");
    model.save_checkpoint(&path).unwrap();
    let fresh = small(AttentionKind::Spatial, 64, 32, &device);
    let loaded = fresh.load_checkpoint(&path).unwrap();
    let x = images(2, 64, 32, &device);
    let a = model.forward(x.clone(), Gating::On).logits;
    let b = loaded.forward(x, Gating::On).logits;
    let diff: f32 = (a - b).abs().max().into_scalar();
    assert_eq!(diff, 0.0);
    assert!(!loaded.neck.beta.is_require_grad());

    let other = small(AttentionKind::Channel, 64, 32, &device);
    let err = other.load_checkpoint(&path).unwrap_err().to_string();
    assert!(
        err.contains("model.bpk") && err.contains("another configuration"),
        "{err}"
    );
    let err = other
        .load_checkpoint(&dir.path().join("absent.bpk"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn torchvision_weights_load_into_the_backbone() {
    let device = Device::flex();
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scal-backbone/tests/fixtures/tiny_resnet50.pth");
    let model = small(AttentionKind::Channel, 64, 32, &device)
        .with_backbone_weights(&weights)
        .unwrap();
    let direct = scal_backbone::ResNetConfig::new(scal_backbone::ResNetArch::ResNet50)
        .with_base_width(4)
        .with_last_stride(1)
        .init(&device)
        .with_weights(&weights)
        .unwrap();
    let x = images(2, 64, 32, &device);
    let diff: f32 = (model.backbone.forward_pooled(x.clone()) - direct.forward_pooled(x))
        .abs()
        .max()
        .into_scalar();
    assert_eq!(diff, 0.0);
    // Weights of another depth are refused with the file named.
    let other = weights.with_file_name("tiny_resnet18.pth");
    let err = small(AttentionKind::Channel, 64, 32, &device)
        .with_backbone_weights(&other)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tiny_resnet18.pth") && err.contains("resnet18"),
        "{err}"
    );
}

#[test]
fn torchvision_safetensors_export_holds_the_backbone_under_torchvision_names() {
    let device = Device::flex();
    let model = small(AttentionKind::Channel, 64, 32, &device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scal.safetensors");
    model.save_torchvision_safetensors(&path).unwrap();
    let fresh = scal_backbone::ResNetConfig::new(scal_backbone::ResNetArch::ResNet50)
        .with_base_width(4)
        .with_last_stride(1)
        .init(&device);
    let (loaded, report) = scal_backbone::load_weights(
        &fresh,
        &path,
        scal_backbone::LoadOptions {
            allow_partial: true,
            ..scal_backbone::LoadOptions::default()
        },
    )
    .unwrap();
    assert!(
        report.missing.is_empty(),
        "backbone keys missing: {:?}",
        report.missing
    );
    assert!(report.mismatched.is_empty(), "{:?}", report.mismatched);
    for key in [
        "neck.weight",
        "neck.bias",
        "neck.running_mean",
        "neck.running_var",
        "classifier.weight",
    ] {
        assert!(
            report.unexpected.iter().any(|k| k == key),
            "{key} not in {:?}",
            report.unexpected
        );
    }
    for key in &report.unexpected {
        assert!(
            ["neck.", "classifier.", "attention.", "critics."]
                .iter()
                .any(|p| key.starts_with(p)),
            "a backbone key was not recognised: {key}"
        );
    }
    let x = images(2, 64, 32, &device);
    let diff: f32 = (model.backbone.forward_pooled(x.clone()) - loaded.forward_pooled(x))
        .abs()
        .max()
        .into_scalar();
    assert_eq!(diff, 0.0);
}

#[test]
fn a_loaded_checkpoint_does_not_need_its_file_any_more() {
    let device = Device::flex();
    let model = small(AttentionKind::Channel, 64, 32, &device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bpk");
    model.save_checkpoint(&path).unwrap();
    let loaded = small(AttentionKind::Channel, 64, 32, &device)
        .load_checkpoint(&path)
        .unwrap();
    drop(dir); // the checkpoint folder is replaced or deleted while the model lives on
    let x = images(2, 64, 32, &device);
    let diff: f32 = (model.forward(x.clone(), Gating::On).logits
        - loaded.forward(x, Gating::On).logits)
        .abs()
        .max()
        .into_scalar();
    assert_eq!(diff, 0.0);
}

#[test]
fn a_model_folder_lists_its_checksums_and_refuses_damage() {
    let device = Device::flex();
    let config = ScalConfig::new(10)
        .with_base_width(4)
        .with_height(64)
        .with_width(32)
        .with_critic_hidden(16);
    let model = config.init(&device);
    let dir = tempfile::tempdir().unwrap();
    model.save_dir(&config, dir.path()).unwrap();
    let listed = std::fs::read_to_string(dir.path().join("checksums.sha256")).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(ScalModel::load_dir(dir.path(), &device).is_ok());

    let weights = dir.path().join("model.bpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();
    let err = ScalModel::load_dir(dir.path(), &device).unwrap_err();
    assert!(
        matches!(&err, scal_model::ModelError::Damaged { path, .. } if path == &weights),
        "{err}"
    );
    std::fs::remove_file(&weights).unwrap();
    let err = ScalModel::load_dir(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.bpk") && err.contains("missing"),
        "{err}"
    );
    // The list fails closed (issue 29, B3): emptied, cut short or garbled, it is damage,
    // not "nothing to check"; only a folder without the file at all passes unverified.
    model.save_dir(&config, dir.path()).unwrap();
    bytes = std::fs::read(&weights).unwrap();
    bytes[middle] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();
    let list = dir.path().join("checksums.sha256");
    let whole = std::fs::read_to_string(&list).unwrap();
    let without_weights: String = whole
        .lines()
        .filter(|l| !l.ends_with("model.bpk"))
        .map(|l| format!("{l}\n"))
        .collect();
    let garbled = whole.replacen("  ", " ", 1);
    for (text, expected) in [
        (String::new(), "does not list model.json"),
        (without_weights, "does not list model.bpk"),
        (garbled, "malformed line"),
        (
            whole.replace("model.json", "other.json"),
            "does not list model.json",
        ),
    ] {
        std::fs::write(&list, &text).unwrap();
        let err = ScalModel::load_dir(dir.path(), &device).unwrap_err();
        assert!(
            matches!(&err, scal_model::ModelError::Damaged { path, problem }
                if path == &list && problem.contains(expected)),
            "{text:?}: {err}"
        );
    }
    bytes[middle] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();
    std::fs::remove_file(&list).unwrap();
    assert!(
        ScalModel::load_dir(dir.path(), &device).is_ok(),
        "no list at all: loads unverified (written before checksums existed)"
    );
}

#[test]
fn l2_normalize_gives_unit_rows_and_keeps_a_zero_row_zero() {
    let device = Device::flex();
    let x = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(vec![3.0f32, 4.0, 0.0, 0.0, 1e-3, 0.0], [3, 2]),
        &device,
    );
    let y = scal_model::l2_normalize(x)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(y, vec![0.6, 0.8, 0.0, 0.0, 1.0, 0.0]);
}
