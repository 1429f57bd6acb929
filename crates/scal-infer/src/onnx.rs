//! The inference graph as ONNX: a normalised image batch `[N, 3, H, W]` → the L2-normalised
//! post-BN ReID feature `[N, D]` ([`ScalModel::embed`] without flip), attention modules
//! included, the batch dimension dynamic.
//!
//! Burn's capture records [`ScalModel::neck_feature`] and [`scal_model::l2_normalize`] as they
//! run, and burn-onnx 0.22 lowers the record to ONNX (opset 18) with the weights embedded: the
//! exported graph is the code `extract` runs, not a re-implementation. Three operations that
//! burn-onnx 0.22 cannot lower (a mean over a dimension, an integer power and a floor) are
//! written in the model's code as operations it can (a sum and a division, a product, and
//! `(n + ε + |n − ε|) / 2`), with the same results.

use burn::tensor::{Device, Tensor};
use burn_onnx::export::{AxisSpec, InputSpec, OnnxExporter};
use onnx_ir::{Message, ModelProto};
use scal_attention::Agent;

use scal_model::ScalModel;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The input size is not one the model can run at.
    #[error("cannot export at {height} x {width}: {problem}")]
    InputSize {
        /// Requested height.
        height: usize,
        /// Requested width.
        width: usize,
        /// Why not.
        problem: String,
    },
    /// burn-onnx could not lower the captured graph (an operation it does not support, a
    /// shape that depends on the batch in a way it cannot express).
    #[error("ONNX export failed: {0}")]
    Export(#[from] burn_onnx::export::ExportError),
    /// The exporter's output is not the one-input, one-output model expected.
    #[error("ONNX export produced an unexpected model: {0}")]
    Unexpected(String),
}

/// The exporter names tensors after their capture ids: the input becomes `images`, the
/// output `features`, and the output's feature axis is written as the constant `dim` (the
/// exporter's shape analysis leaves it symbolic after the spatial modules' reshapes, although
/// it never varies). Weights no node reads (the classifier's, the critics') are dropped.
fn name_boundaries(bytes: &[u8], dim: usize) -> Result<Vec<u8>, OnnxError> {
    let unexpected = |what: String| OnnxError::Unexpected(what);
    let mut model = ModelProto::parse_from_bytes(bytes).map_err(|e| unexpected(e.to_string()))?;
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| unexpected("no graph".into()))?;
    let ([input], [output]) = (graph.input.as_mut_slice(), graph.output.as_mut_slice()) else {
        return Err(unexpected(format!(
            "{} inputs and {} outputs",
            graph.input.len(),
            graph.output.len()
        )));
    };
    let renames = [
        (
            std::mem::replace(&mut input.name, "images".into()),
            "images",
        ),
        (
            std::mem::replace(&mut output.name, "features".into()),
            "features",
        ),
    ];
    let shape = output
        .type_
        .as_mut()
        .and_then(|t| t.mut_tensor_type().shape.as_mut())
        .ok_or_else(|| unexpected("the output has no shape".into()))?;
    let [_, feature_axis] = shape.dim.as_mut_slice() else {
        return Err(unexpected(format!(
            "the output has {} axes",
            shape.dim.len()
        )));
    };
    feature_axis.set_dim_value(dim as i64);
    for node in &mut graph.node {
        for name in node.input.iter_mut().chain(node.output.iter_mut()) {
            if let Some((_, new)) = renames.iter().find(|(old, _)| old == name) {
                *name = (*new).to_string();
            }
        }
    }
    // The capture embeds every parameter of the module; the classifier and the critics are
    // not on the inference path.
    let used: std::collections::HashSet<String> = graph
        .node
        .iter()
        .flat_map(|node| node.input.iter().cloned())
        .collect();
    graph
        .initializer
        .retain(|tensor| used.contains(&tensor.name));
    model
        .write_to_bytes()
        .map_err(|e| unexpected(e.to_string()))
}

/// The inference graph of `model` as ONNX bytes for `height × width` inputs, with a dynamic
/// batch dimension named `batch` (input `images`, output `features`).
///
/// The capture runs the model twice on zero images (batches of 1 and 2) on Burn's private
/// capture device; `device` is where those images are made before being moved there.
///
/// # Errors
/// [`OnnxError::InputSize`] when spatial attention was built for another size (its layers
/// are sized by it) or a dimension is zero; [`OnnxError::Export`] when burn-onnx cannot
/// lower the graph.
///
/// # Shapes
/// - the ONNX input: `[batch, 3, height, width]`; its output: `[batch, D]`
pub fn to_onnx(
    model: &ScalModel,
    height: usize,
    width: usize,
    device: &Device,
) -> Result<Vec<u8>, OnnxError> {
    check_export_size(model, height, width)?;
    let sample = Tensor::<4>::zeros([1, 3, height, width], device);
    let validation = Tensor::<4>::zeros([2, 3, height, width], device);
    let specs = [InputSpec::new([
        AxisSpec::dynamic("batch"),
        AxisSpec::Static,
        AxisSpec::Static,
        AxisSpec::Static,
    ])];
    let graph = OnnxExporter::new().export_dynamic(
        model,
        sample,
        validation,
        &specs,
        |model: &ScalModel, images: Tensor<4>| scal_model::l2_normalize(model.neck_feature(images)),
    )?;
    let dim = model.neck.gamma.dims()[0];
    name_boundaries(graph.as_bytes(), dim)
}

fn check_export_size(model: &ScalModel, height: usize, width: usize) -> Result<(), OnnxError> {
    let error = |problem: String| OnnxError::InputSize {
        height,
        width,
        problem,
    };
    if height == 0 || width == 0 {
        return Err(error("the height and width must be positive".into()));
    }
    scal_data::check_input_size(height, width).map_err(error)?;
    let sizes = model.backbone.stage_sizes(height, width);
    for (stage, (agent, [h, w])) in model.attention.agents.iter().zip(sizes).enumerate() {
        if let Agent::Spatial(module) = agent
            && (module.height, module.width) != (h, w)
        {
            return Err(error(format!(
                "spatial attention module {stage} is sized for {} x {} maps and this input \
                     size gives {h} x {w} (export at the size the model was built for)",
                module.height, module.width
            )));
        }
    }
    // burn-onnx 0.22 loses the dynamic batch axis on a strided convolution whose padding is
    // uneven, which every size that the output stride does not divide produces.
    let stride = 16 * model.backbone.last_stride();
    if !height.is_multiple_of(stride) || !width.is_multiple_of(stride) {
        let up = |x: usize| x.div_ceil(stride) * stride;
        return Err(error(format!(
            "the exporter handles heights and widths that are multiples of {stride} (the \
             network's output stride), such as {} x {}",
            up(height),
            up(width)
        )));
    }
    Ok(())
}
