//! Eval-mode outputs of the Burn ResNet against torchvision's, on weights written by PyTorch
//! (`tests/fixtures/make_fixtures.py`), from both `.pth` and `.safetensors`.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use scal_backbone::{
    BackboneError, LoadOptions, ResNet, ResNetArch, ResNetConfig, WeightFormat, load_weights,
    save_native, save_torchvision_safetensors,
};

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A tensor of `parity_io.safetensors` as (shape, values).
fn expected(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture("parity_io.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor(name).unwrap();
    assert_eq!(view.dtype(), safetensors::Dtype::F32);
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), values)
}

fn images(device: &Device) -> Tensor<4> {
    let (shape, values) = expected("images");
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn tiny(arch: ResNetArch, last_stride: usize, stem_relu: bool, device: &Device) -> ResNet {
    ResNetConfig::new(arch)
        .with_base_width(4)
        .with_last_stride(last_stride)
        .with_stem_relu(stem_relu)
        .init(device)
}

/// The largest absolute difference between `actual` and the fixture tensor `expected_name`
/// (their shapes checked), and the fixture's largest magnitude.
fn difference<const D: usize>(actual: Tensor<D>, expected_name: &str) -> (f32, f32) {
    let (shape, want) = expected(expected_name);
    assert_eq!(actual.dims().to_vec(), shape, "{expected_name}: shape");
    let got: Vec<f32> = actual.into_data().try_into_vec::<f32>().unwrap();
    let max_err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    (max_err, want.iter().fold(0.0f32, |m, v| m.max(v.abs())))
}

fn assert_close<const D: usize>(actual: Tensor<D>, expected_name: &str) {
    let (max_err, _) = difference(actual, expected_name);
    assert!(
        max_err <= TOLERANCE,
        "{expected_name}: max abs error {max_err} > {TOLERANCE}"
    );
}

#[test]
fn pooled_features_match_torchvision_from_pth_and_safetensors() {
    let device = Device::flex();
    let x = images(&device);
    for arch in [ResNetArch::ResNet50, ResNetArch::ResNet18] {
        for ext in ["pth", "safetensors"] {
            let file = fixture(&format!("tiny_{arch}.{ext}"));
            for last_stride in [2, 1] {
                let model = tiny(arch, last_stride, true, &device)
                    .with_weights(&file)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                assert_close(
                    model.forward_pooled(x.clone()),
                    &format!("{arch}_last_stride{last_stride}_pooled"),
                );
            }
        }
    }
}

#[test]
fn every_stage_matches_torchvision_and_stem_without_relu() {
    let device = Device::flex();
    let x = images(&device);
    let file = fixture("tiny_resnet50.pth");
    let model = tiny(ResNetArch::ResNet50, 1, true, &device)
        .with_weights(&file)
        .unwrap();
    let mut stages = Vec::new();
    model.forward_staged(x.clone(), |_, t| {
        stages.push(t.clone());
        t
    });
    for (i, stage) in stages.into_iter().enumerate() {
        assert_close(stage, &format!("resnet50_last_stride1_stage{i}"));
    }

    let no_relu = tiny(ResNetArch::ResNet50, 1, false, &device)
        .with_weights(&file)
        .unwrap();
    assert_close(
        no_relu.stem(x.clone()),
        "resnet50_last_stride1_no_stem_relu_stage0",
    );
    assert_close(
        no_relu.forward_pooled(x),
        "resnet50_last_stride1_no_stem_relu_pooled",
    );
}

#[test]
fn wrapped_legacy_checkpoint_loads() {
    // {"state_dict": {"module.conv1.weight": ...}} in the pre-1.6 torch.save format, as
    // written by DataParallel training scripts.
    let device = Device::flex();
    let model = tiny(ResNetArch::ResNet18, 2, true, &device)
        .with_weights(&fixture("tiny_resnet18_wrapped.pth"))
        .unwrap();
    assert_close(
        model.forward_pooled(images(&device)),
        "resnet18_last_stride2_pooled",
    );
}

#[test]
fn report_lists_ignored_classifier_and_counters() {
    let device = Device::flex();
    let model = tiny(ResNetArch::ResNet18, 2, true, &device);
    let (_, report) = load_weights(
        &model,
        &fixture("tiny_resnet18.safetensors"),
        LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(report.format, Some(WeightFormat::Safetensors));
    assert!(report.ignored.iter().any(|k| k == "fc.weight"));
    assert!(report.ignored.iter().any(|k| k == "fc.bias"));
    assert!(
        report
            .ignored
            .iter()
            .any(|k| k == "layer1.0.bn1.num_batches_tracked")
    );
    // 20 BN x 4 tensors + 20 conv... every model tensor was applied.
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    assert!(report.applied > 0);
}

#[test]
fn native_and_torchvision_exports_round_trip() {
    let device = Device::flex();
    let x = images(&device);
    let model = tiny(ResNetArch::ResNet50, 1, true, &device)
        .with_weights(&fixture("tiny_resnet50.safetensors"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let native = dir.path().join("backbone.bpk");
    save_native(&model, &native).unwrap();
    let reloaded = tiny(ResNetArch::ResNet50, 1, true, &device)
        .with_weights(&native)
        .unwrap();
    assert_close(
        reloaded.forward_pooled(x.clone()),
        "resnet50_last_stride1_pooled",
    );

    let exported = dir.path().join("backbone.safetensors");
    save_torchvision_safetensors(&model, &exported).unwrap();
    let reloaded = tiny(ResNetArch::ResNet50, 1, true, &device)
        .with_weights(&exported)
        .unwrap();
    assert_close(reloaded.forward_pooled(x), "resnet50_last_stride1_pooled");

    // The export carries torchvision's names: the fixture's keys minus fc and counters.
    let fixture_keys = safetensors_keys(&fixture("tiny_resnet50.safetensors"));
    let exported_keys = safetensors_keys(&exported);
    let wanted: Vec<String> = fixture_keys
        .into_iter()
        .filter(|k| !k.starts_with("fc.") && !k.ends_with("num_batches_tracked"))
        .collect();
    assert_eq!(exported_keys, wanted);
}

fn safetensors_keys(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut keys: Vec<String> = file.names().into_iter().map(String::from).collect();
    keys.sort();
    keys
}

#[test]
fn every_torchvision_resnet50_key_maps() {
    // A torchvision ResNet-50 state dict with the real key names and shapes (zeros), built
    // from the key list torchvision itself printed; it must load strictly.
    let list = std::fs::read_to_string(fixture("resnet50_keys.txt")).unwrap();
    let entries: Vec<(String, Vec<usize>)> = list
        .lines()
        .map(|line| {
            let (key, shape) = line.split_once('\t').unwrap();
            let shape = if shape.is_empty() {
                vec![]
            } else {
                shape.split(',').map(|d| d.parse().unwrap()).collect()
            };
            (key.to_string(), shape)
        })
        .collect();
    assert_eq!(
        entries.len(),
        320,
        "torchvision resnet50 has 320 state-dict entries"
    );
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = entries
        .into_iter()
        .map(|(key, shape)| {
            let (dtype_size, n) = if key.ends_with("num_batches_tracked") {
                (8, 1)
            } else {
                (4, shape.iter().product::<usize>())
            };
            (key, shape, vec![0u8; n * dtype_size])
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = buffers
        .iter()
        .map(|(key, shape, data)| {
            let dtype = if key.ends_with("num_batches_tracked") {
                safetensors::Dtype::I64
            } else {
                safetensors::Dtype::F32
            };
            (
                key.clone(),
                safetensors::tensor::TensorView::new(dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet50.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();

    let device = Device::flex();
    let model = ResNetConfig::new(ResNetArch::ResNet50).init(&device);
    let (_, report) = load_weights(&model, &path, LoadOptions::default()).unwrap();
    // 53 convolutions + 53 batch norms x 4 tensors = 265 tensors.
    assert_eq!(report.applied, 265);
    assert_eq!(
        report.ignored.len(),
        2 + 53,
        "fc.weight, fc.bias and 53 counters"
    );
}

#[test]
fn wrong_architecture_is_named() {
    let device = Device::flex();
    let model = tiny(ResNetArch::ResNet50, 1, true, &device);
    let err = model
        .with_weights(&fixture("tiny_resnet18.pth"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            BackboneError::ArchitectureMismatch {
                expected: ResNetArch::ResNet50,
                found: ResNetArch::ResNet18,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--arch resnet18"), "{err}");
}

#[test]
fn shape_mismatch_lists_names_and_loads_nothing() {
    let device = Device::flex();
    // Same depth, twice the width: every tensor has the wrong shape.
    let model = ResNetConfig::new(ResNetArch::ResNet18)
        .with_base_width(8)
        .init(&device);
    let before: Vec<f32> = model
        .conv1
        .weight
        .val()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let err = load_weights(
        &model,
        &fixture("tiny_resnet18.pth"),
        LoadOptions::default(),
    )
    .unwrap_err();
    match &err {
        BackboneError::Incompatible { mismatched, .. } => {
            assert!(
                mismatched.iter().any(|m| m.contains("conv1.weight")),
                "{err}"
            );
        }
        other => panic!("expected Incompatible, got {other}"),
    }
    let after: Vec<f32> = model
        .conv1
        .weight
        .val()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(before, after, "the caller's model must be untouched");

    // Asked for, a partial load goes through and reports what did not fit.
    let (_, report) = load_weights(
        &model,
        &fixture("tiny_resnet18.pth"),
        LoadOptions {
            allow_partial: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert!(!report.mismatched.is_empty());
}

#[test]
fn missing_and_unexpected_keys_are_listed() {
    let device = Device::flex();
    let full = tiny(ResNetArch::ResNet18, 2, true, &device)
        .with_weights(&fixture("tiny_resnet18.safetensors"))
        .unwrap();
    // A file without layer4.1.* and with an extra key.
    let bytes = std::fs::read(fixture("tiny_resnet18.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("layer4.1."))
        .collect();
    let extra = vec![0u8; 4];
    views.push((
        "head.projection".to_string(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &extra).unwrap(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();

    let err = load_weights(&full, &path, LoadOptions::default()).unwrap_err();
    let message = err.to_string();
    match &err {
        BackboneError::Incompatible {
            missing,
            unexpected,
            ..
        } => {
            assert!(
                missing.iter().any(|k| k == "layer4.1.conv1.weight"),
                "{message}"
            );
            assert!(
                missing.iter().any(|k| k == "layer4.1.bn2.running_var"),
                "{message}"
            );
            assert_eq!(
                unexpected,
                &vec!["head.projection".to_string()],
                "{message}"
            );
        }
        other => panic!("expected Incompatible, got {other}"),
    }
    assert!(message.contains("layer4.1.conv1.weight") && message.contains("head.projection"));
    assert!(
        !message.contains("none of this backbone's entries"),
        "a file that fits in part: {message}"
    );
}

#[test]
fn missing_file_and_unknown_format_are_clear() {
    let device = Device::flex();
    let model = tiny(ResNetArch::ResNet18, 2, true, &device);
    let err = model
        .clone()
        .with_weights(Path::new("/nonexistent/resnet18.pth"))
        .unwrap_err();
    assert!(matches!(err, BackboneError::WeightsNotFound { .. }));
    assert!(err.to_string().contains("/nonexistent/resnet18.pth"));

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("weights.dat");
    std::fs::write(&junk, b"definitely not a checkpoint").unwrap();
    let err = model.clone().with_weights(&junk).unwrap_err();
    assert!(matches!(err, BackboneError::UnknownFormat { .. }), "{err}");

    let corrupt = dir.path().join("weights.pth");
    std::fs::write(&corrupt, b"PK\x03\x04 truncated zip").unwrap();
    let err = model.with_weights(&corrupt).unwrap_err();
    assert!(matches!(err, BackboneError::Read { .. }), "{err}");
    assert!(err.to_string().contains("weights.pth"), "{err}");
}

/// `tiny_resnet50.safetensors` rewritten with every float tensor in `dtype` (as
/// `model.half()`, `.bfloat16()` or `.double()` before saving would).
fn in_precision(dir: &Path, dtype: safetensors::Dtype) -> PathBuf {
    use burn::tensor::{bf16, f16};
    let bytes = std::fs::read(fixture("tiny_resnet50.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut data: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            data.push((
                name,
                view.shape().to_vec(),
                view.dtype(),
                view.data().to_vec(),
            ));
            continue;
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let converted: Vec<u8> = match dtype {
            safetensors::Dtype::F16 => values
                .flat_map(|v| f16::from_f32(v).to_le_bytes())
                .collect(),
            safetensors::Dtype::BF16 => values
                .flat_map(|v| bf16::from_f32(v).to_le_bytes())
                .collect(),
            safetensors::Dtype::F64 => values.flat_map(|v| f64::from(v).to_le_bytes()).collect(),
            other => panic!("{other:?}"),
        };
        data.push((name, view.shape().to_vec(), dtype, converted));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, dtype, bytes)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).unwrap();
            (name.clone(), view)
        })
        .collect();
    let path = dir.join(format!("tiny_resnet50_{dtype:?}.safetensors"));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

#[test]
fn half_bfloat16_and_double_precision_weights_load_as_f32() {
    let device = Device::flex();
    let x = images(&device);
    let dir = tempfile::tempdir().unwrap();
    // The error of rounding the weights to the file's precision, on this tiny network.
    for (dtype, tolerance) in [
        (safetensors::Dtype::F64, TOLERANCE),
        (safetensors::Dtype::F16, 2e-2),
        (safetensors::Dtype::BF16, 1e-1),
    ] {
        let file = in_precision(dir.path(), dtype);
        let model = tiny(ResNetArch::ResNet50, 1, true, &device)
            .with_weights(&file)
            .unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
        let pooled = model.forward_pooled(x.clone());
        assert_eq!(pooled.dtype(), burn::tensor::DType::F32, "{dtype:?}");
        let (max_err, scale) = difference(pooled, "resnet50_last_stride1_pooled");
        assert!(
            max_err <= tolerance * scale.max(1.0),
            "{dtype:?}: max abs error {max_err} (largest value {scale})"
        );
    }
}

/// Weights of another precision train (issue 42, D11): cast to f32 on load, they are the
/// model's own parameters (leaves of the graph), not the result of a cast that the first
/// backward pass consumes; the second iteration's backward panicked before.
#[test]
fn half_bfloat16_and_double_precision_weights_train() {
    let device = Device::flex().autodiff();
    let dir = tempfile::tempdir().unwrap();
    for dtype in [
        safetensors::Dtype::F16,
        safetensors::Dtype::BF16,
        safetensors::Dtype::F64,
    ] {
        let file = in_precision(dir.path(), dtype);
        let model = tiny(ResNetArch::ResNet50, 1, true, &device)
            .with_weights(&file)
            .unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
        for iteration in 0..2 {
            let loss = model.forward_pooled(images(&device)).sum();
            let grads = loss.backward();
            let grad = model.conv1.weight.val().grad(&grads);
            assert!(
                grad.is_some(),
                "{dtype:?}, iteration {iteration}: conv1.weight has no gradient"
            );
        }
    }
}

/// A file with none of the backbone's entries (a torchreid `model.pth.tar` holding only
/// `{"epoch": 60}`) is named as likely not a state dict, and what is missing is listed under
/// torchvision's names (issue 29, W19: Burn's `gamma`/`beta` were listed, with no hint).
#[test]
fn a_file_without_a_state_dict_says_so_in_torchvision_names() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("epoch_only.safetensors");
    let epoch = 60i64.to_le_bytes();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![1], &epoch).unwrap();
    safetensors::serialize_to_file(vec![("epoch", view)], None, &path).unwrap();
    let model = tiny(ResNetArch::ResNet18, 2, true, &device);
    let err = load_weights(&model, &path, LoadOptions::default()).unwrap_err();
    let message = err.to_string();
    match &err {
        BackboneError::Incompatible {
            missing, matched, ..
        } => {
            assert_eq!(*matched, 0, "{message}");
            assert!(missing.iter().any(|k| k == "bn1.weight"), "{message}");
            assert!(
                missing.iter().any(|k| k == "layer2.0.downsample.1.bias"),
                "{message}"
            );
            assert!(!missing.iter().any(|k| k.contains("gamma")), "{message}");
        }
        other => panic!("expected Incompatible, got {other}"),
    }
    assert!(
        message.contains("none of this backbone's entries"),
        "{message}"
    );
}

/// The backbone of `tiny_resnet50.safetensors` (its torchvision `fc.*` left out, as a
/// toolkit's file has none) with the entries `extra` added (name, shape, f32 values).
fn with_entries(dir: &Path, name: &str, extra: &[(&str, Vec<usize>, Vec<f32>)]) -> PathBuf {
    let bytes = std::fs::read(fixture("tiny_resnet50.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut data: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("fc."))
        .map(|(n, v)| (n, v.shape().to_vec(), v.dtype(), v.data().to_vec()))
        .collect();
    for (n, shape, values) in extra {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push((n.to_string(), shape.clone(), safetensors::Dtype::F32, raw));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, shape, dtype, raw)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), raw).unwrap();
            (n.clone(), view)
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

/// Damaged `.safetensors` files (trial 4, D13): a header length of 10¹², a file cut in half,
/// a header that is not JSON: each refused at once, naming the file, nothing loaded.
#[test]
fn damaged_safetensors_files_are_refused_naming_the_file() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("tiny_resnet50.safetensors")).unwrap();
    let header = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&1_000_000_000_000u64.to_le_bytes());
    let half = good[..good.len() / 2].to_vec();
    let mut not_json = good.clone();
    not_json[8..8 + header].fill(b'#');
    for (name, bytes) in [("huge", huge), ("half", half), ("not_json", not_json)] {
        let path = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        let err = tiny(ResNetArch::ResNet50, 1, true, &device)
            .with_weights(&path)
            .unwrap_err();
        assert!(
            matches!(err, BackboneError::Read { .. })
                && err.to_string().contains(path.to_str().unwrap()),
            "{name}: {err}"
        );
    }
}

/// A NaN only in a toolkit's classifier, which the feature does not use, is loaded (trial 4,
/// D14); in the backbone it is refused. FastReID's head entries other than the neck and the
/// classifier are unexpected (trial 4, D9: they were ignored silently).
#[test]
fn a_nan_in_the_classifier_loads_and_unknown_head_entries_are_refused() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let as_toolkit = |source| LoadOptions {
        source,
        ..LoadOptions::default()
    };
    let model = tiny(ResNetArch::ResNet50, 1, true, &device);
    let nan_classifier = with_entries(
        dir.path(),
        "nan_classifier.safetensors",
        &[("classifier.weight", vec![3, 4], vec![f32::NAN; 12])],
    );
    let (_, report) = load_weights(
        &model,
        &nan_classifier,
        as_toolkit(scal_backbone::CheckpointSource::Torchreid),
    )
    .unwrap();
    assert!(
        report.ignored.iter().any(|k| k == "classifier.weight"),
        "{report:?}"
    );
    let nan_heads = with_entries(
        dir.path(),
        "inf_heads.safetensors",
        &[("heads.weight", vec![3, 4], vec![f32::INFINITY; 12])],
    );
    load_weights(
        &model,
        &nan_heads,
        as_toolkit(scal_backbone::CheckpointSource::Fastreid),
    )
    .unwrap();
    let extra_head = with_entries(
        dir.path(),
        "extra_head.safetensors",
        &[("heads.random_stuff.weight", vec![4], vec![1.0; 4])],
    );
    let err = load_weights(
        &model,
        &extra_head,
        as_toolkit(scal_backbone::CheckpointSource::Fastreid),
    )
    .unwrap_err();
    match &err {
        BackboneError::Incompatible { unexpected, .. } => {
            assert_eq!(unexpected, &["heads.random_stuff.weight"], "{err}");
        }
        other => panic!("{other}"),
    }
}
