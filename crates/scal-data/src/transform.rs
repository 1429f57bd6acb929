//! The test-time transform: decode → RGB → bilinear resize → [0, 1] → mean/std.

use std::path::Path;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbImage};

use crate::DataError;

/// ImageNet channel means (RGB), as in torchvision.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB), as in torchvision.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// torchvision's `Compose([Resize((height, width)), ToTensor(), Normalize(mean, std)])` on
/// PIL images: PIL's bilinear convolution ([`resize_rgb`]), 8-bit resampled pixels, then
/// `(p / 255 - mean) / std` in `f32`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestTransform {
    /// Output height in pixels.
    pub height: u32,
    /// Output width in pixels.
    pub width: u32,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
}

impl TestTransform {
    /// A transform to `height × width` with ImageNet statistics.
    ///
    /// # Panics
    /// If either side is 0.
    pub fn new(height: u32, width: u32) -> Self {
        assert!(
            height > 0 && width > 0,
            "TestTransform: height and width must be > 0, got {height}x{width}"
        );
        TestTransform {
            height,
            width,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Number of `f32` values one image becomes: `3 × height × width`.
    pub fn len(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }

    /// Never true: a transform has at least one pixel.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Decodes the image at `path` (format from its content, whatever its extension says)
    /// and transforms it.
    ///
    /// # Shapes
    /// - output: `[3, height, width]`, channel-first, flattened
    pub fn load(&self, path: &Path) -> Result<Vec<f32>, DataError> {
        let mut out = vec![0.0; self.len()];
        self.load_into(path, &mut out)?;
        Ok(out)
    }

    /// [`TestTransform::load`] into a caller's buffer (one slot of a batch).
    ///
    /// # Panics
    /// If `out.len() != self.len()`.
    pub fn load_into(&self, path: &Path, out: &mut [f32]) -> Result<(), DataError> {
        let image = decode(path)?;
        self.apply_into(&image, out);
        Ok(())
    }

    /// Decodes and transforms the images at `paths` in parallel into one channel-first
    /// batch, in order: `[N, 3, H, W]` flattened, ready to become a tensor. An image that
    /// cannot be decoded is an error naming it.
    pub fn load_batch<P: AsRef<Path> + Sync>(&self, paths: &[P]) -> Result<Vec<f32>, DataError> {
        use rayon::prelude::*;
        let mut pixels = vec![0.0f32; paths.len() * self.len()];
        pixels
            .par_chunks_mut(self.len().max(1))
            .zip(paths.par_iter())
            .try_for_each(|(slot, path)| self.load_into(path.as_ref(), slot))?;
        Ok(pixels)
    }

    /// Transforms a decoded image.
    ///
    /// # Shapes
    /// - output: `[3, height, width]`, channel-first, flattened
    pub fn apply(&self, image: &DynamicImage) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        self.apply_into(image, &mut out);
        out
    }

    /// Transforms a decoded image into `out`.
    ///
    /// # Panics
    /// If `out.len() != self.len()`.
    pub fn apply_into(&self, image: &DynamicImage, out: &mut [f32]) {
        assert_eq!(
            out.len(),
            self.len(),
            "TestTransform::apply_into: buffer of {} values for a 3x{}x{} image",
            out.len(),
            self.height,
            self.width
        );
        let rgb = resize_rgb(image.to_rgb8(), self.width, self.height);
        write_normalised(&rgb, self.mean, self.std, out);
    }
}

/// Bilinear resize of an RGB image with PIL's convolution (the filter widens when
/// shrinking), in 8 bits, SIMD-accelerated (`fast_image_resize`, a port of Pillow's
/// resampling). Returns the image unchanged when it already has the size.
pub fn resize_rgb(rgb: RgbImage, width: u32, height: u32) -> RgbImage {
    if rgb.dimensions() == (width, height) {
        return rgb;
    }
    let (w, h) = rgb.dimensions();
    let src =
        Image::from_vec_u8(w, h, rgb.into_raw(), PixelType::U8x3).expect("RGB buffer of w x h");
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    RESIZER
        .with_borrow_mut(|r| r.resize(&src, &mut dst, &options))
        .expect("same pixel types");
    RgbImage::from_raw(width, height, dst.into_vec()).expect("RGB buffer of width x height")
}

thread_local! {
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
}

/// Opens and decodes an image (format from its content), naming the file in any error: the
/// one decoding function of the workspace (training, evaluation, extraction, figures).
pub fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let reader = image::ImageReader::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = reader
        .with_guessed_format()
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    reader.decode().map_err(|e| DataError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn write_normalised(rgb: &RgbImage, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let plane = (rgb.width() * rgb.height()) as usize;
    for (i, pixel) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (pixel.0[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
}
