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
    /// Turn each image upright by its EXIF orientation (a phone photo taken sideways) before
    /// the transform. Off by default, as PIL and torchreid read images.
    pub exif_orientation: bool,
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
            exif_orientation: false,
        }
    }

    /// The same transform, turning images upright by their EXIF orientation when `on`.
    pub fn with_exif_orientation(self, on: bool) -> Self {
        TestTransform {
            exif_orientation: on,
            ..self
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
        let image = if self.exif_orientation {
            decode_upright(path)?
        } else {
            decode(path)?
        };
        self.apply_into(&image, out);
        Ok(())
    }

    /// Decodes and transforms the images at `paths` in parallel into one channel-first
    /// batch, in order: `[N, 3, H, W]` flattened, ready to become a tensor. An image that
    /// cannot be decoded is an error naming it.
    pub fn load_batch<P: AsRef<Path> + Sync>(&self, paths: &[P]) -> Result<Vec<f32>, DataError> {
        let (pixels, skipped) = self.load_batch_with(paths, true)?;
        debug_assert!(skipped.is_empty());
        Ok(pixels)
    }

    /// As [`TestTransform::load_batch`] with the training data's policy: `strict` fails on an
    /// undecodable image; otherwise it is left out of the batch (the pixels hold the decoded
    /// images only, in order) and returned as skipped, with its index in `paths`.
    pub fn load_batch_with<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
        strict: bool,
    ) -> Result<(Vec<f32>, Vec<SkippedAt>), DataError> {
        use rayon::prelude::*;
        let mut pixels = vec![0.0f32; paths.len() * self.len()];
        let results: Vec<Result<(), DataError>> = pixels
            .par_chunks_mut(self.len().max(1))
            .zip(paths.par_iter())
            .map(|(slot, path)| self.load_into(path.as_ref(), slot))
            .collect();
        let mut skipped = Vec::new();
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(()) => {}
                Err(e) if strict => return Err(e),
                Err(e) => skipped.push((
                    i,
                    crate::SkippedImage {
                        path: paths[i].as_ref().to_path_buf(),
                        reason: e.to_string(),
                    },
                )),
            }
        }
        for (i, _) in skipped.iter().rev() {
            let at = i * self.len();
            pixels.drain(at..at + self.len());
        }
        Ok((pixels, skipped))
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

/// An image left out of a batch, with its index in the paths given.
pub type SkippedAt = (usize, crate::SkippedImage);

/// The smallest model input, height × width: below it the backbone's five stages have no
/// spatial extent left to attend to.
pub const MIN_INPUT_SIZE: (usize, usize) = (32, 16);
/// The largest model input, height × width (ReID inputs are 256 × 128 or 384 × 128; one
/// image at this size is 48 MiB of floats).
pub const MAX_INPUT_SIZE: (usize, usize) = (2048, 2048);

/// Checks a model input size against [`MIN_INPUT_SIZE`] and [`MAX_INPUT_SIZE`]: the one rule
/// for training, evaluation and extraction. The error says what is accepted.
pub fn check_input_size(height: usize, width: usize) -> Result<(), String> {
    let (min_h, min_w) = MIN_INPUT_SIZE;
    let (max_h, max_w) = MAX_INPUT_SIZE;
    if height < min_h || width < min_w {
        return Err(format!(
            "at least {min_h} x {min_w} (height x width), got {height} x {width}"
        ));
    }
    if height > max_h || width > max_w {
        return Err(format!(
            "at most {max_h} x {max_w} (height x width), got {height} x {width}"
        ));
    }
    Ok(())
}

/// Opens and decodes an image (format from its content), naming the file in any error: the
/// one decoding function of the workspace (training, evaluation, extraction, figures). An
/// incomplete file (a JPEG cut off before its end-of-image marker, a PNG cut off in its
/// data) is an error, as in PIL, never an image with a grey or black remainder.
///
/// The pixels are taken as stored: an EXIF orientation is not applied, as PIL and torchreid
/// read images ([`decode_upright`] applies it).
pub fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    decode_limited(path, false)
}

/// [`decode`], then turned upright by the file's EXIF orientation (JPEG, WebP and TIFF
/// carry one: a phone photo taken sideways is stored sideways with Orientation = 6).
pub fn decode_upright(path: &Path) -> Result<DynamicImage, DataError> {
    decode_limited(path, true)
}

/// The decoder's memory limit, `image`'s default (512 MiB): a file whose header declares a
/// larger image (a decompression bomb: a 633-byte JPEG claiming 60000 × 60000) is refused
/// before anything is allocated, on every path.
pub const DECODE_MEMORY_LIMIT: u64 = 512 * 1024 * 1024;

/// Checks that every image of `paths` decodes, pixels included: what [`decode`] refuses
/// (an unreadable file, an unknown format, a declared size beyond `DECODE_MEMORY_LIMIT`,
/// a JPEG cut before its end-of-image marker, damage inside compressed data such as a PNG
/// cut in its data), on all cores, one image in memory per core. Returns the first failure
/// in `paths`' order. Training checks its query and gallery with it before the first
/// iteration (issue 42, F27: a damaged gallery image stopped the first evaluation, losing
/// the epochs since the last checkpoint).
pub fn check_decodable(paths: &[&Path]) -> Result<(), DataError> {
    use rayon::prelude::*;
    let results: Vec<Result<(), DataError>> = paths
        .par_iter()
        .map(|path| decode_limited(path, false).map(drop))
        .collect();
    results.into_iter().collect()
}

/// The decoder of an image file's bytes, its declared size checked against
/// [`DECODE_MEMORY_LIMIT`] before anything is allocated.
fn limited_decoder<'b>(
    path: &Path,
    bytes: &'b [u8],
    format: image::ImageFormat,
) -> Result<impl image::ImageDecoder + 'b, DataError> {
    use image::ImageDecoder;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(DECODE_MEMORY_LIMIT);
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    reader.limits(limits.clone());
    let decoder = reader.into_decoder().map_err(|e| corrupt(path, e))?;
    limits
        .reserve(decoder.total_bytes())
        .map_err(|e| corrupt(path, e))?;
    Ok(decoder)
}

/// The one decoding path: the image's declared size checked against
/// [`DECODE_MEMORY_LIMIT`], then decoded (and with `upright`, turned by its orientation).
fn decode_limited(path: &Path, upright: bool) -> Result<DynamicImage, DataError> {
    use image::ImageDecoder;
    let (bytes, format) = read_image_file(path)?;
    let mut decoder = limited_decoder(path, &bytes, format)?;
    // An orientation that cannot be read leaves the image as stored.
    let orientation = if upright {
        decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms)
    } else {
        image::metadata::Orientation::NoTransforms
    };
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| corrupt(path, e))?;
    image.apply_orientation(orientation);
    Ok(image)
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The bytes of an image file and their format, refusing a JPEG cut off before its end.
fn read_image_file(path: &Path) -> Result<(Vec<u8>, image::ImageFormat), DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format = image::guess_format(&bytes).map_err(|e| corrupt(path, e))?;
    if format == image::ImageFormat::Jpeg && !crate::complete::jpeg_is_complete(&bytes) {
        return Err(corrupt(
            path,
            format!(
                "the JPEG data ends before its end-of-image marker ({} bytes): the file is truncated",
                bytes.len()
            ),
        ));
    }
    Ok((bytes, format))
}

fn write_normalised(rgb: &RgbImage, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let plane = (rgb.width() * rgb.height()) as usize;
    for (i, pixel) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (pixel.0[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
}
