//! The one embedding loop: image files → decoded batches → a model's features.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array2;
use scal_data::TestTransform;
use scal_model::ScalModel;

use crate::InferError;

/// A model that turns a batch of normalised images into the features it is evaluated with.
pub trait Embedder {
    /// Features of `images`, averaged with those of the mirrored images when `flip`.
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]`, normalised as [`TestTransform`] does; returns `[N, D]`
    fn embed_batch(&self, images: Tensor<4>, flip: bool) -> Tensor<2>;
}

/// The trained SCAL model's ReID feature: post-BN, L2-normalised ([`ScalModel::embed`]).
/// The model must be in inference mode (`model.valid()`, or loaded without autodiff).
impl Embedder for ScalModel {
    fn embed_batch(&self, images: Tensor<4>, flip: bool) -> Tensor<2> {
        self.embed(images, flip)
    }
}

/// How images are embedded: the input size they are resized to, the images per forward
/// pass, and whether features are averaged with the mirrored images'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Input height in pixels.
    pub height: usize,
    /// Input width in pixels.
    pub width: usize,
    /// Images per forward pass (at least 1).
    pub batch: usize,
    /// Average each feature with that of the horizontally mirrored image.
    pub flip: bool,
    /// Turn each image upright by its EXIF orientation first (off: pixels as stored, as
    /// PIL and torchreid read them).
    pub exif_orientation: bool,
}

impl EmbedOptions {
    /// `height × width` inputs, 32 images per pass, flip-averaged (the evaluation's
    /// convention).
    pub fn new(height: usize, width: usize) -> EmbedOptions {
        EmbedOptions {
            height,
            width,
            batch: 32,
            flip: true,
            exif_orientation: false,
        }
    }

    /// The same, turning images upright by their EXIF orientation when `on`.
    pub fn with_exif_orientation(self, on: bool) -> EmbedOptions {
        EmbedOptions {
            exif_orientation: on,
            ..self
        }
    }

    /// The same with `batch` images per pass.
    pub fn with_batch(self, batch: usize) -> EmbedOptions {
        EmbedOptions { batch, ..self }
    }

    /// The same with flip averaging on or off.
    pub fn with_flip(self, flip: bool) -> EmbedOptions {
        EmbedOptions { flip, ..self }
    }
}

/// Features of the images at `paths`, one row each, in order: decoded and resized by
/// [`TestTransform`], `options.batch` at a time, on `device` (the model's, without autodiff).
/// `progress` is called with the number of images of each batch once it is embedded.
///
/// # Errors
/// [`InferError::Data`] naming the first image that cannot be read or decoded;
/// [`InferError::NonFiniteFeature`] naming the first image whose feature holds a NaN or an
/// infinity (weights of a diverged run, a negative running variance);
/// [`InferError::Readback`] when the device does not return 32-bit floats.
///
/// # Shapes
/// - returns `[paths.len(), D]`
pub fn embed_paths<E: Embedder + ?Sized, P: AsRef<Path> + Sync>(
    model: &E,
    paths: &[P],
    options: EmbedOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Array2<f32>, InferError> {
    let (height, width) = (options.height, options.width);
    let transform = TestTransform::new(height as u32, width as u32)
        .with_exif_orientation(options.exif_orientation);
    let mut rows = Vec::new();
    let mut dim = 0;
    for chunk in paths.chunks(options.batch.max(1)) {
        let pixels = transform.load_batch(chunk)?;
        let images = Tensor::<4>::from_data(
            TensorData::new(pixels, [chunk.len(), 3, height, width]),
            device,
        );
        let features = model.embed_batch(images, options.flip);
        dim = features.dims()[1];
        let values =
            features
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| InferError::Readback {
                    problem: format!("{e:?}"),
                })?;
        if let Some(row) = values
            .chunks(dim.max(1))
            .position(|row| !row.iter().all(|v| v.is_finite()))
        {
            return Err(InferError::NonFiniteFeature {
                image: chunk[row].as_ref().to_path_buf(),
            });
        }
        rows.extend(values);
        progress(chunk.len());
    }
    Ok(Array2::from_shape_vec((paths.len(), dim), rows).expect("one row of dim values per image"))
}
