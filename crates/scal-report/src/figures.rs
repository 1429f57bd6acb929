//! The model figures: attention maps of the five modules over images, and ranked lists
//! (a query and its nearest gallery images, green for the same identity, red for another).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use image::{Rgb, RgbImage, imageops};
use imageproc::drawing::draw_hollow_rect_mut;
use imageproc::rect::Rect;
use plotters::prelude::ColorMap;
use plotters::style::colors::colormaps::ViridisRGB;
use scal_data::{ImageRecord, TestTransform};
use scal_eval::{DistanceMetric, average_precision_per_query, top_k_gallery};
use scal_infer::QueryGallery;
use scal_model::{AttentionKind, Gating, ScalModel};

use crate::{ReportError, figure_error};

/// An image scaled to `height × width`, for display.
/// The image at `path` at `height × width` for a figure: as stored, or `upright` by its EXIF
/// orientation (as a photo viewer shows it).
fn display_image(
    path: &Path,
    (height, width): (u32, u32),
    upright: bool,
) -> Result<RgbImage, ReportError> {
    let img = if upright {
        scal_data::decode_upright(path)?
    } else {
        scal_data::decode(path)?
    };
    Ok(imageops::resize(
        &img.to_rgb8(),
        width,
        height,
        imageops::FilterType::Triangle,
    ))
}

/// Heat values (any range) of an `h × w` map over an image: normalised to [0, 1], scaled to
/// the image's size, coloured (viridis) and blended half and half with it.
fn overlay(base: &RgbImage, heat: &[f32], h: usize, w: usize) -> RgbImage {
    let (lo, hi) = heat
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let span = if hi - lo > 1e-12 { hi - lo } else { 1.0 };
    let small: image::ImageBuffer<image::Luma<f32>, Vec<f32>> =
        image::ImageBuffer::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([(heat[y as usize * w + x as usize] - lo) / span])
        });
    let big = imageops::resize(
        &small,
        base.width(),
        base.height(),
        imageops::FilterType::Triangle,
    );
    RgbImage::from_fn(base.width(), base.height(), |x, y| {
        let t = big.get_pixel(x, y)[0].clamp(0.0, 1.0);
        let c = ViridisRGB.get_color(t);
        let p = base.get_pixel(x, y);
        Rgb([
            ((p[0] as f32 + c.0 as f32) / 2.0) as u8,
            ((p[1] as f32 + c.1 as f32) / 2.0) as u8,
            ((p[2] as f32 + c.2 as f32) / 2.0) as u8,
        ])
    })
}

/// The heat maps of the five modules for a batch of images: the attention map itself for
/// spatial modules; for channel modules (which have no spatial map) the channel-weighted
/// activation `Σ_c A_c X_c / C`. One `(values [N·h·w], h, w)` per module.
///
/// # Shapes
/// - `images`: `[N, 3, H, W]`
pub fn attention_heat(model: &ScalModel, images: Tensor<4>) -> Vec<(Vec<f32>, usize, usize)> {
    let out = model.forward(images, Gating::On);
    out.maps
        .iter()
        .zip(&out.stage_inputs)
        .map(|(a, x)| {
            let [n, c, h, w] = x.dims();
            let heat: Tensor<4> = if a.dims()[1] == 1 && c != 1 {
                a.clone()
            } else {
                (x.clone() * a.clone()).mean_dim(1)
            };
            let values: Vec<f32> = heat
                .reshape([n * h * w])
                .into_data()
                .try_to_vec::<f32>()
                .expect("float heat");
            (values, h, w)
        })
        .collect()
}

/// Side-by-side tiles: rows of images with `gap` pixels between them.
fn grid(rows: &[Vec<RgbImage>], gap: u32) -> RgbImage {
    let tile_w = rows.iter().flatten().map(|t| t.width()).max().unwrap_or(1);
    let tile_h = rows.iter().flatten().map(|t| t.height()).max().unwrap_or(1);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let mut canvas = RgbImage::from_pixel(
        cols * (tile_w + gap) + gap,
        rows.len() as u32 * (tile_h + gap) + gap,
        Rgb([255, 255, 255]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            imageops::overlay(
                &mut canvas,
                tile,
                (gap + c as u32 * (tile_w + gap)) as i64,
                (gap + r as u32 * (tile_h + gap)) as i64,
            );
        }
    }
    canvas
}

/// A copy of `tile` with a border of `color`, `width` pixels wide.
fn bordered(tile: &RgbImage, color: Rgb<u8>, width: u32) -> RgbImage {
    let mut t = tile.clone();
    for i in 0..width {
        let (w, h) = (
            t.width().saturating_sub(2 * i),
            t.height().saturating_sub(2 * i),
        );
        if w > 0 && h > 0 {
            draw_hollow_rect_mut(&mut t, Rect::at(i as i32, i as i32).of_size(w, h), color);
        }
    }
    t
}

/// Writes `img` as a PNG at `path` atomically (the workspace's one atomic write): a full
/// disk or a killed process leaves the previous figure, not a truncated one (issue 29, W7).
fn save_png(img: &RgbImage, path: &Path) -> Result<(), ReportError> {
    scal_fs::write_atomically(path, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(|e| e.to_string())
    })
    .map_err(|e| figure_error(path, e))
}

/// Draws the attention figure of the images at `paths` into `path` (PNG): one row per
/// image, the image then the five modules' heat maps over it. Nothing for a model without
/// attention.
pub fn attention_figure(
    model: &ScalModel,
    attention: AttentionKind,
    paths: &[PathBuf],
    (height, width): (usize, usize),
    device: &Device,
    path: &Path,
) -> Result<(), ReportError> {
    if attention == AttentionKind::None || paths.is_empty() {
        return Ok(());
    }
    let transform = TestTransform::new(height as u32, width as u32);
    let pixels = transform.load_batch(paths)?;
    let images = Tensor::<4>::from_data(
        TensorData::new(pixels, [paths.len(), 3, height, width]),
        device,
    );
    let heat = attention_heat(model, images);
    let (dh, dw) = (2 * height as u32, 2 * width as u32);
    let mut rows = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let base = display_image(p, (dh, dw), false)?;
        let mut row = vec![base.clone()];
        for (values, h, w) in &heat {
            let per = h * w;
            row.push(overlay(&base, &values[i * per..(i + 1) * per], *h, *w));
        }
        rows.push(row);
    }
    save_png(&grid(&rows, 4), path)
}

/// One row of a ranked-list figure: a query, its average precision and its nearest gallery
/// images (indices into the gallery), nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedQuery {
    /// Index into the query split.
    pub query: usize,
    /// Its average precision.
    pub average_precision: f64,
    /// The nearest gallery images after removing same-identity same-camera ones.
    pub top: Vec<usize>,
}

/// The best and the worst queries by average precision, `count` each, with their 10
/// nearest gallery images (Euclidean distances of `split`'s features). Ties go to the
/// earlier query.
pub fn best_and_worst(
    split: &QueryGallery,
    count: usize,
) -> Result<(Vec<RankedQuery>, Vec<RankedQuery>), ReportError> {
    let d = split.distances(DistanceMetric::Euclidean)?;
    let l = &split.labels;
    let ap = average_precision_per_query(d.view(), &l.q_pids, &l.g_pids, &l.q_camids, &l.g_camids)
        .map_err(scal_infer::InferError::from)?;
    let mut valid: Vec<(usize, f64)> = ap
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.map(|a| (i, a)))
        .collect();
    valid.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .expect("finite AP")
            .then(a.0.cmp(&b.0))
    });
    let row = |&(i, average_precision): &(usize, f64)| RankedQuery {
        query: i,
        average_precision,
        top: top_k_gallery(
            d.row(i),
            l.q_pids[i],
            l.q_camids[i],
            &l.g_pids,
            &l.g_camids,
            10,
        ),
    };
    let best = valid.iter().take(count).map(row).collect();
    let worst = valid.iter().rev().take(count).map(row).collect();
    Ok((best, worst))
}

/// Draws ranked lists into `path` (PNG): per row, the query (blue border) then its gallery
/// images, green where the identity is the query's and red where not, each `size`
/// (height, width) pixels.
pub fn ranked_figure(
    rows: &[RankedQuery],
    query: &[ImageRecord],
    gallery: &[ImageRecord],
    size: (u32, u32),
    path: &Path,
) -> Result<(), ReportError> {
    let rows: Vec<RankedRow> = rows
        .iter()
        .map(|r| {
            let q = &query[r.query];
            RankedRow {
                query: q.path.clone(),
                gallery: r
                    .top
                    .iter()
                    .map(|&g| (gallery[g].path.clone(), Some(gallery[g].pid == q.pid)))
                    .collect(),
            }
        })
        .collect();
    ranked_rows_figure(&rows, size, path)
}

/// One row of a ranked-list figure: a query image and its gallery images in rank order,
/// each marked as the query's identity (`Some(true)`), another (`Some(false)`) or unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedRow {
    /// The query image.
    pub query: PathBuf,
    /// Gallery images, nearest first, with whether they show the query's identity.
    pub gallery: Vec<(PathBuf, Option<bool>)>,
}

/// Draws ranked lists into `path` (PNG): per row, the query (blue border) then its gallery
/// images, bordered green (same identity), red (another) or grey (unknown), each `size`
/// (height, width) pixels, upright by their EXIF orientation.
pub fn ranked_rows_figure(
    rows: &[RankedRow],
    (height, width): (u32, u32),
    path: &Path,
) -> Result<(), ReportError> {
    let mut tiles = Vec::new();
    for r in rows {
        let mut row = vec![bordered(
            &display_image(&r.query, (height, width), true)?,
            Rgb([40, 90, 220]),
            3,
        )];
        for (g, same) in &r.gallery {
            let color = match same {
                Some(true) => Rgb([20, 170, 40]),
                Some(false) => Rgb([220, 30, 30]),
                None => Rgb([150, 150, 150]),
            };
            row.push(bordered(
                &display_image(g, (height, width), true)?,
                color,
                3,
            ));
        }
        tiles.push(row);
    }
    save_png(&grid(&tiles, 3), path)
}
