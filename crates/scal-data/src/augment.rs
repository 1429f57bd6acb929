//! The training transform of reid-strong-baseline / SCAL: resize → horizontal flip (p 0.5)
//! → pad 10 + random crop → [0, 1] → ImageNet normalisation → random erasing (p 0.5, area
//! 0.02–0.4, aspect 0.3–3.33, filled with the mean). Seeded: the same generator state gives
//! the same output.

use image::{DynamicImage, RgbImage};
use rand::RngExt;

use crate::transform::{IMAGENET_MEAN, IMAGENET_STD};

/// Random erasing settings (Zhong et al., 2020).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomErasing {
    /// Probability of erasing a rectangle.
    pub probability: f32,
    /// Smallest erased area, as a fraction of the image.
    pub min_area: f32,
    /// Largest erased area.
    pub max_area: f32,
    /// Smallest aspect ratio h/w (the largest is its inverse).
    pub min_aspect: f32,
    /// Values written into the rectangle, per channel, in the normalised image. The default,
    /// as in reid-strong-baseline, writes the ImageNet mean values themselves.
    pub fill: [f32; 3],
}

impl Default for RandomErasing {
    fn default() -> Self {
        RandomErasing {
            probability: 0.5,
            min_area: 0.02,
            max_area: 0.4,
            min_aspect: 0.3,
            fill: IMAGENET_MEAN,
        }
    }
}

/// The training transform.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTransform {
    /// Output height.
    pub height: u32,
    /// Output width.
    pub width: u32,
    /// Probability of a horizontal flip.
    pub flip_probability: f32,
    /// Zero padding on every side before the random crop back to `height × width`.
    pub padding: u32,
    /// Random erasing after normalisation (`None`: off).
    pub erasing: Option<RandomErasing>,
    lut: Box<[[f32; 256]; 3]>,
}

impl TrainTransform {
    /// The SCAL recipe at `height × width`: flip 0.5, pad 10, random erasing 0.5.
    ///
    /// # Panics
    /// If a side is 0.
    pub fn new(height: u32, width: u32) -> Self {
        assert!(height > 0 && width > 0, "TrainTransform: empty output size");
        let mut lut = Box::new([[0.0f32; 256]; 3]);
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
        TrainTransform {
            height,
            width,
            flip_probability: 0.5,
            padding: 10,
            erasing: Some(RandomErasing::default()),
            lut,
        }
    }

    /// Number of values per image: `3 × height × width`.
    pub fn len(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Resizes (bilinear, PIL-like) to the output size; the part of the transform that does
    /// not depend on randomness, so it can be cached.
    pub fn resize(&self, image: &DynamicImage) -> RgbImage {
        crate::transform::resize_rgb(image.to_rgb8(), self.width, self.height)
    }

    /// Applies the random part to an image already at the output size (see
    /// [`TrainTransform::resize`]).
    ///
    /// # Shapes
    /// - `image`: `height × width` RGB; `out`: `[3, height, width]` flattened
    ///
    /// # Panics
    /// If `image` is not at the output size or `out` has the wrong length.
    pub fn apply_resized_into(&self, image: &RgbImage, rng: &mut impl RngExt, out: &mut [f32]) {
        let (w, h) = (self.width as i64, self.height as i64);
        assert_eq!(
            image.dimensions(),
            (self.width, self.height),
            "TrainTransform: resize to {}x{} first",
            self.height,
            self.width
        );
        assert_eq!(out.len(), self.len(), "TrainTransform: output buffer size");
        let flip = rng.random::<f32>() < self.flip_probability;
        let pad = self.padding as i64;
        let (dy, dx) = if pad > 0 {
            (
                rng.random_range(0..=2 * pad) - pad,
                rng.random_range(0..=2 * pad) - pad,
            )
        } else {
            (0, 0)
        };
        let plane = (w * h) as usize;
        let raw = image.as_raw();
        let black = [self.lut[0][0], self.lut[1][0], self.lut[2][0]];
        for y in 0..h {
            let sy = y + dy;
            let row = (y * w) as usize;
            for x in 0..w {
                let sx = x + dx;
                let o = row + x as usize;
                if sy < 0 || sy >= h || sx < 0 || sx >= w {
                    for c in 0..3 {
                        out[c * plane + o] = black[c];
                    }
                } else {
                    let fx = if flip { w - 1 - sx } else { sx };
                    let i = ((sy * w + fx) * 3) as usize;
                    for c in 0..3 {
                        out[c * plane + o] = self.lut[c][raw[i + c] as usize];
                    }
                }
            }
        }
        if let Some(e) = self.erasing {
            erase(&e, rng, out, h as usize, w as usize);
        }
    }
}

/// Random erasing as reid-strong-baseline implements it: up to 100 attempts to place a
/// rectangle of random area and aspect that fits.
fn erase(e: &RandomErasing, rng: &mut impl RngExt, out: &mut [f32], h: usize, w: usize) {
    if rng.random::<f32>() >= e.probability {
        return;
    }
    let area = (h * w) as f32;
    for _ in 0..100 {
        let target = rng.random_range(e.min_area..e.max_area) * area;
        let aspect = rng.random_range(e.min_aspect..1.0 / e.min_aspect);
        let eh = (target * aspect).sqrt().round() as usize;
        let ew = (target / aspect).sqrt().round() as usize;
        if ew < w && eh < h && ew > 0 && eh > 0 {
            let y0 = rng.random_range(0..=h - eh);
            let x0 = rng.random_range(0..=w - ew);
            for (c, fill) in e.fill.iter().enumerate() {
                for y in y0..y0 + eh {
                    let start = c * h * w + y * w + x0;
                    out[start..start + ew].fill(*fill);
                }
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn gradient(h: u32, w: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 4) as u8, (y * 2) as u8, 100]))
    }

    fn plain(h: u32, w: u32) -> TrainTransform {
        let mut t = TrainTransform::new(h, w);
        t.flip_probability = 0.0;
        t.padding = 0;
        t.erasing = None;
        t
    }

    #[test]
    fn without_randomness_it_is_the_test_transform() {
        let img = gradient(16, 8);
        let t = plain(16, 8);
        let mut out = vec![0.0; t.len()];
        t.apply_resized_into(&img, &mut ChaCha8Rng::seed_from_u64(0), &mut out);
        let reference = crate::TestTransform::new(16, 8).apply(&DynamicImage::ImageRgb8(img));
        let diff = out
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-6);
    }

    #[test]
    fn flip_mirrors_and_padding_shifts_in_black() {
        let img = gradient(16, 8);
        let mut t = plain(16, 8);
        t.flip_probability = 1.0;
        let mut out = vec![0.0; t.len()];
        t.apply_resized_into(&img, &mut ChaCha8Rng::seed_from_u64(0), &mut out);
        // Red channel of pixel (0, 0) is the source's (0, 7).
        let want = (img.get_pixel(7, 0).0[0] as f32 / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        assert!((out[0] - want).abs() < 1e-6);

        let mut t = plain(16, 8);
        t.padding = 4;
        let black = (0.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        let mut saw_black = false;
        for seed in 0..20 {
            t.apply_resized_into(&img, &mut ChaCha8Rng::seed_from_u64(seed), &mut out);
            saw_black |= out[..16 * 8].iter().any(|v| (v - black).abs() < 1e-6);
        }
        assert!(saw_black, "padding must bring in zero pixels");
    }

    #[test]
    fn erasing_writes_a_rectangle_of_the_fill_value() {
        let img = gradient(32, 16);
        let mut t = plain(32, 16);
        t.erasing = Some(RandomErasing {
            probability: 1.0,
            fill: [7.0, 8.0, 9.0],
            ..RandomErasing::default()
        });
        let mut out = vec![0.0; t.len()];
        t.apply_resized_into(&img, &mut ChaCha8Rng::seed_from_u64(5), &mut out);
        let erased: Vec<usize> = (0..32 * 16).filter(|&i| out[i] == 7.0).collect();
        let fraction = erased.len() as f32 / (32.0 * 16.0);
        assert!((0.015..=0.41).contains(&fraction), "erased {fraction}");
        assert!(
            erased
                .iter()
                .all(|&i| out[32 * 16 + i] == 8.0 && out[2 * 32 * 16 + i] == 9.0)
        );
    }

    #[test]
    fn same_seed_same_output() {
        let img = gradient(32, 16);
        let t = TrainTransform::new(32, 16);
        let run = |seed| {
            let mut out = vec![0.0; t.len()];
            t.apply_resized_into(&img, &mut ChaCha8Rng::seed_from_u64(seed), &mut out);
            out
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
