//! The ONNX export's graph boundary and refusals (ONNX Runtime's agreement with the
//! features of `embed_paths` is xtask's `export_cli` test).

use burn::tensor::Device;
use onnx_ir::{Message, ModelProto};
use scal_infer::{OnnxError, to_onnx};
use scal_model::{AttentionKind, ScalConfig};

fn small(attention: AttentionKind) -> scal_model::ScalModel {
    ScalConfig::new(10)
        .with_base_width(4)
        .with_height(64)
        .with_width(32)
        .with_attention(attention)
        .with_critic_hidden(8)
        .init(&Device::flex())
}

#[test]
fn the_graph_reads_images_and_writes_features_without_the_training_heads() {
    let model = small(AttentionKind::Channel);
    let bytes = to_onnx(&model, 64, 32, &Device::flex()).unwrap();
    let proto = ModelProto::parse_from_bytes(&bytes).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let names = |values: &[onnx_ir::ValueInfoProto]| -> Vec<String> {
        values.iter().map(|v| v.name.clone()).collect()
    };
    assert_eq!(names(&graph.input), ["images"]);
    assert_eq!(names(&graph.output), ["features"]);
    let shape: Vec<String> = graph.output[0]
        .type_
        .as_ref()
        .unwrap()
        .tensor_type()
        .shape
        .dim
        .iter()
        .map(|d| {
            if d.has_dim_value() {
                d.dim_value().to_string()
            } else {
                d.dim_param().to_string()
            }
        })
        .collect();
    assert_eq!(shape, ["batch", "128"], "base width 4: D = 4 · 8 · 4");
    assert!(
        graph
            .node
            .iter()
            .any(|n| n.output.contains(&"features".to_string()))
    );
    assert!(
        graph
            .node
            .iter()
            .any(|n| n.input.contains(&"images".to_string()))
    );
    let stray: Vec<&str> = graph
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| n.starts_with("classifier") || n.starts_with("critics"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    assert!(
        graph
            .initializer
            .iter()
            .any(|t| t.name.starts_with("attention"))
    );
}

#[test]
fn spatial_attention_is_exported_only_at_its_size() {
    let model = small(AttentionKind::Spatial);
    let device = Device::flex();
    match to_onnx(&model, 128, 64, &device) {
        Err(OnnxError::InputSize {
            height: 128,
            width: 64,
            problem,
        }) => {
            assert!(problem.contains("spatial attention module 0"), "{problem}");
        }
        other => panic!("expected InputSize, got {other:?}"),
    }
    assert!(matches!(
        to_onnx(&model, 0, 32, &device),
        Err(OnnxError::InputSize { .. })
    ));
    assert!(to_onnx(&model, 64, 32, &device).is_ok());
    // Channel attention and none are not sized by the input.
    assert!(to_onnx(&small(AttentionKind::None), 128, 64, &device).is_ok());
}

#[test]
fn sizes_the_exporter_cannot_lower_are_refused_by_name() {
    // burn-onnx 0.22 loses the batch dimension on a strided convolution with uneven padding:
    // every size that is not a multiple of the network's output stride (16 at last stride 1).
    let model = small(AttentionKind::Channel);
    let device = Device::flex();
    for (h, w) in [(80, 40), (100, 50), (66, 34)] {
        match to_onnx(&model, h, w, &device) {
            Err(e @ OnnxError::InputSize { .. }) => {
                assert!(e.to_string().contains("multiples of 16"), "{h} x {w}: {e}");
            }
            other => panic!("{h} x {w}: expected InputSize, got {other:?}"),
        }
    }
    // Beyond the size rule every command applies (2048 x 2048).
    assert!(matches!(
        to_onnx(&model, 100_000, 64, &device),
        Err(OnnxError::InputSize { .. })
    ));
}
