//! A small model and a fixed batch for comparing the network across devices, backends and
//! code paths (parity checks, data-parallel tests): the same numbers go in everywhere, so
//! what comes out can be compared tensor by tensor.

use burn::store::ModuleSnapshot;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::{AttentionKind, ScalConfig, ScalModel};

/// The small network of the probes: width 4, 64 × 32 inputs, 4 classes, critic hidden 8.
pub fn probe_config(attention: AttentionKind) -> ScalConfig {
    ScalConfig::new(4)
        .with_base_width(4)
        .with_height(64)
        .with_width(32)
        .with_attention(attention)
        .with_critic_hidden(8)
}

/// Deterministic inputs: 8 images (4 identities × 2) from a fixed formula.
///
/// # Shapes
/// - returns images `[8, 3, 64, 32]` and labels `[8]`
pub fn probe_batch(device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let n = 8 * 3 * 64 * 32;
    let pixels: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.37).sin() * 1.7 + (i % 97) as f32 / 97.0) - 0.5)
        .collect();
    let images = Tensor::from_data(TensorData::new(pixels, [8, 3, 64, 32]), device);
    let labels = Tensor::from_data(
        TensorData::new(vec![0i64, 0, 1, 1, 2, 2, 3, 3], [8]),
        device,
    );
    (images, labels)
}

/// Every floating-point tensor of a model (parameters and running statistics) by name,
/// sorted by name, as `f32`.
pub fn float_tensors(model: &ScalModel) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<(String, Vec<f32>)> = model
        .collect(None, None, false)
        .into_iter()
        .filter_map(|t| {
            let name = t.name.clone();
            if !t.dtype.is_float() {
                return None;
            }
            let data = burn::store::bridge::into_data(t).ok()?;
            let values = data.convert::<f32>().try_into_vec::<f32>().ok()?;
            Some((name, values))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
