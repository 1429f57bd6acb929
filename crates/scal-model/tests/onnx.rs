//! The ONNX export's graph boundary and refusals, and the L2 normalisation it shares with
//! `embed` (ONNX Runtime's agreement with `extract` is xtask's `export_cli` test).

use burn::tensor::{Device, Tensor, TensorData};
use onnx_ir::{Message, ModelProto};
use scal_model::{AttentionKind, OnnxError, ScalConfig, l2_normalize};

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
fn l2_normalize_gives_unit_rows_and_keeps_a_zero_row_zero() {
    let device = Device::flex();
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![3.0f32, 4.0, 0.0, 0.0, 1e-3, 0.0], [3, 2]),
        &device,
    );
    let y = l2_normalize(x).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(y, vec![0.6, 0.8, 0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn the_graph_reads_images_and_writes_features_without_the_training_heads() {
    let model = small(AttentionKind::Channel);
    let bytes = model.to_onnx(64, 32, &Device::flex()).unwrap();
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
    match model.to_onnx(128, 64, &device) {
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
        model.to_onnx(0, 32, &device),
        Err(OnnxError::InputSize { .. })
    ));
    assert!(model.to_onnx(64, 32, &device).is_ok());
    // Channel attention and none are not sized by the input.
    assert!(small(AttentionKind::None).to_onnx(128, 64, &device).is_ok());
}
