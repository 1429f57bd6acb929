//! The synthetic ReID dataset: procedurally drawn people in a Market-1501 layout.
//!
//! Identities share their coarse looks (a few clothing colours for everyone) and differ in
//! small, localised details (a chest emblem's shape, colour and place, shoes, a bag, a hat,
//! trouser stripes), drawn amid cluttered backgrounds: recognising someone means finding
//! the details, which is what attention is for. Cameras differ in illumination, colour cast,
//! background, blur and scale; images in pose, clutter and occlusion. Everything follows
//! from the seed: the same seed writes the same files.
//!
//! Two presets: [`SynthPreset::Easy`], the default dataset of `cargo xtask train`, whose
//! identities differ mostly in their clothing colours, and [`SynthPreset::HardV1`]
//! (`synth-hard`), whose identities come in groups sharing their global appearance and differ
//! only in small local details (see [`hard`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_ellipse_mut, draw_filled_rect_mut, draw_polygon_mut};
use imageproc::point::Point;
use imageproc::rect::Rect;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DataError;

pub mod hard;

/// Which generator writes the dataset. The hard preset carries its version: its images
/// change only with a new version, and a run's configuration names the one it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SynthPreset {
    /// The default synthetic dataset (`datasets/synth`): identities differ mostly in global
    /// colours. Its files never change.
    #[default]
    #[serde(rename = "easy")]
    Easy,
    /// `synth-hard`, version 1: groups of identities sharing their global look, told apart
    /// by small local details.
    #[serde(rename = "hard-v1", alias = "hard")]
    HardV1,
}

impl SynthPreset {
    /// The name written in configurations and manifests (`easy`, `hard-v1`).
    pub fn as_str(self) -> &'static str {
        match self {
            SynthPreset::Easy => "easy",
            SynthPreset::HardV1 => "hard-v1",
        }
    }

    /// The dataset name users type (`synth`, `synth-hard`) and its default folder.
    pub fn dataset_name(self) -> &'static str {
        match self {
            SynthPreset::Easy => "synth",
            SynthPreset::HardV1 => "synth-hard",
        }
    }

    /// The preset a dataset name stands for: `synth` or `synth-hard` (the latest version).
    pub fn from_dataset_name(name: &str) -> Option<SynthPreset> {
        match name {
            "synth" => Some(SynthPreset::Easy),
            "synth-hard" => Some(SynthPreset::HardV1),
            _ => None,
        }
    }
}

impl fmt::Display for SynthPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SynthPreset {
    type Err = DataError;

    /// `easy`, `hard` (the latest hard version) or `hard-v1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "easy" => Ok(SynthPreset::Easy),
            "hard" | "hard-v1" => Ok(SynthPreset::HardV1),
            _ => Err(DataError::InvalidSynth {
                setting: "preset",
                problem: format!("must be easy, hard or hard-v1, got {s:?}"),
            }),
        }
    }
}

/// The file in a generated hard dataset's folder that says what wrote it.
pub const MANIFEST: &str = "synth.json";

/// What `synth.json` records: the preset (with its version) and the settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthManifest {
    /// The preset and version.
    pub preset: SynthPreset,
    /// Training identities.
    pub train_ids: usize,
    /// Query/gallery identities.
    pub test_ids: usize,
    /// Cameras.
    pub cameras: usize,
    /// Seed.
    pub seed: u64,
}

/// Reads the manifest of a generated dataset folder (`None` where there is none: the easy
/// preset writes none, and folders of real datasets have none).
pub fn read_manifest(root: &Path) -> Result<Option<SynthManifest>, DataError> {
    let path = root.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DataError::Io { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| DataError::InvalidSynth {
            setting: "manifest",
            problem: format!(
                "{} is not a synthetic dataset manifest: {e}",
                path.display()
            ),
        })
}

/// Checks that the folder `root` was written by `preset` (the version included): a hard
/// dataset must carry a manifest naming the same version, so that a run never reads images
/// of another generator under the name it records.
pub fn check_preset(root: &Path, preset: SynthPreset) -> Result<(), DataError> {
    let manifest = read_manifest(root)?;
    let found = manifest.as_ref().map(|m| m.preset);
    if found == Some(preset) || (preset == SynthPreset::Easy && found.is_none()) {
        return Ok(());
    }
    Err(DataError::InvalidSynth {
        setting: "preset",
        problem: format!(
            "{preset} was asked for, but {} was written by {}: generate the {preset} dataset \
             into another folder",
            root.display(),
            found.map_or("no synthetic generator (no synth.json)".to_string(), |p| {
                format!("the {p} generator")
            })
        ),
    })
}

/// Image height, as Market-1501's boxes.
pub const SYNTH_HEIGHT: u32 = 128;
/// Image width.
pub const SYNTH_WIDTH: u32 = 64;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    /// Identities of the training split.
    pub train_ids: usize,
    /// Identities of the query/gallery split (disjoint from training).
    pub test_ids: usize,
    /// Cameras (2..=9).
    pub cameras: usize,
    /// Seed of everything.
    pub seed: u64,
    /// The generator.
    pub preset: SynthPreset,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            train_ids: 100,
            test_ids: 100,
            cameras: 6,
            seed: 0,
            preset: SynthPreset::Easy,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthSummary {
    /// Images in `bounding_box_train/`.
    pub train_images: usize,
    /// Images in `query/`.
    pub query_images: usize,
    /// Images in `bounding_box_test/` (distractors and junk included).
    pub gallery_images: usize,
    /// Distractor images (pid 0000) in the gallery.
    pub distractors: usize,
    /// Junk images (pid -1) in the gallery.
    pub junk: usize,
}

type Colour = [u8; 3];

const UPPER: [Colour; 6] = [
    [200, 40, 40],
    [40, 60, 170],
    [230, 230, 230],
    [30, 30, 30],
    [60, 140, 60],
    [220, 180, 50],
];
const LOWER: [Colour; 5] = [
    [40, 40, 60],
    [90, 70, 50],
    [150, 150, 150],
    [20, 20, 20],
    [60, 80, 140],
];
const DETAIL: [Colour; 6] = [
    [255, 120, 0],
    [0, 200, 220],
    [250, 250, 60],
    [200, 0, 200],
    [0, 180, 0],
    [250, 250, 250],
];
const SKIN: [Colour; 4] = [
    [240, 200, 170],
    [200, 150, 110],
    [150, 100, 70],
    [100, 70, 50],
];

/// One identity's look.
#[derive(Debug, Clone)]
struct Person {
    upper: Colour,
    lower: Colour,
    skin: Colour,
    hair: Colour,
    emblem_shape: u8,
    emblem_colour: Colour,
    emblem_place: i32,
    shoes: Colour,
    bag: Option<(bool, Colour)>,
    hat: Option<Colour>,
    stripes: Option<Colour>,
    height: f32,
    width: f32,
    legs: f32,
}

/// One camera's look.
#[derive(Debug, Clone)]
struct Camera {
    gain: f32,
    cast: [f32; 3],
    background: Colour,
    floor: Colour,
    clutter: u8,
    blur: f32,
    scale: f32,
}

fn rng(seed: u64, stream: u64, index: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r.set_word_pos(u128::from(index) << 20);
    r
}

fn pick<T: Copy>(r: &mut ChaCha8Rng, items: &[T]) -> T {
    items[r.random_range(0..items.len())]
}

fn random_colour(r: &mut ChaCha8Rng) -> Colour {
    [
        r.random_range(0..=255),
        r.random_range(0..=255),
        r.random_range(0..=255),
    ]
}

impl Person {
    fn new(seed: u64, pid: u64) -> Person {
        let mut r = rng(seed, 1, pid);
        Person {
            upper: pick(&mut r, &UPPER),
            lower: pick(&mut r, &LOWER),
            skin: pick(&mut r, &SKIN),
            hair: pick(
                &mut r,
                &[[20, 15, 10], [90, 60, 30], [200, 170, 90], [120, 120, 120]],
            ),
            emblem_shape: r.random_range(0..4),
            emblem_colour: pick(&mut r, &DETAIL),
            emblem_place: r.random_range(-1..=1),
            shoes: pick(
                &mut r,
                &[[240, 240, 240], [20, 20, 20], [180, 30, 30], [40, 90, 200]],
            ),
            bag: r
                .random_bool(0.5)
                .then(|| (r.random_bool(0.5), pick(&mut r, &DETAIL))),
            hat: r.random_bool(0.3).then(|| pick(&mut r, &DETAIL)),
            stripes: r.random_bool(0.35).then(|| pick(&mut r, &DETAIL)),
            height: r.random_range(0.78..0.95),
            width: r.random_range(0.32..0.45),
            legs: r.random_range(0.42..0.52),
        }
    }
}

impl Camera {
    fn new(seed: u64, cam: u64) -> Camera {
        let mut r = rng(seed, 2, cam);
        Camera {
            gain: r.random_range(0.6..1.3),
            cast: [
                r.random_range(0.8..1.2),
                r.random_range(0.8..1.2),
                r.random_range(0.8..1.2),
            ],
            background: random_colour(&mut r),
            floor: random_colour(&mut r),
            clutter: r.random_range(0..3),
            blur: r.random_range(0.0..1.2),
            scale: r.random_range(0.85..1.05),
        }
    }
}

fn rect(img: &mut RgbImage, x: i32, y: i32, w: i32, h: i32, c: Colour) {
    if w > 0 && h > 0 {
        draw_filled_rect_mut(img, Rect::at(x, y).of_size(w as u32, h as u32), Rgb(c));
    }
}

/// Draws one image of `person` (or, with `None`, an empty, occluded scene: junk) seen by
/// `camera`, with per-image randomness from `r`.
fn draw(person: Option<&Person>, camera: &Camera, r: &mut ChaCha8Rng) -> RgbImage {
    let mut img = scene(camera, r);
    if let Some(p) = person {
        let body = Body::place(p, camera, r);
        clothes(&mut img, p, &body);
        details(&mut img, p, &body);
    }
    occlude(&mut img, person.is_none(), r);
    camera_effects(img, camera, r)
}

/// The camera's background: a floor, then clutter that varies from image to image.
fn scene(camera: &Camera, r: &mut ChaCha8Rng) -> RgbImage {
    let (w, h) = (SYNTH_WIDTH as i32, SYNTH_HEIGHT as i32);
    let mut img = RgbImage::from_pixel(w as u32, h as u32, Rgb(camera.background));
    let horizon = r.random_range(70..100);
    rect(&mut img, 0, horizon, w, h - horizon, camera.floor);
    let pieces = 3 + camera.clutter as i32 * 3 + r.random_range(0..4);
    for _ in 0..pieces {
        let c = random_colour(r);
        let (x, y) = (r.random_range(-10..w), r.random_range(-10..h));
        match r.random_range(0..3) {
            0 => rect(
                &mut img,
                x,
                y,
                r.random_range(3..20),
                r.random_range(3..40),
                c,
            ),
            1 => draw_filled_ellipse_mut(
                &mut img,
                (x, y),
                r.random_range(2..10),
                r.random_range(2..10),
                Rgb(c),
            ),
            _ => rect(
                &mut img,
                x,
                y,
                r.random_range(1..4),
                r.random_range(20..80),
                c,
            ),
        }
    }
    img
}

/// Where a person's body is in one image (pixels).
#[derive(Clone, Copy)]
struct Body {
    pw: i32,
    cx: i32,
    top: i32,
    lean: i32,
    head: i32,
    torso_top: i32,
    legs_top: i32,
    bottom: i32,
}

impl Body {
    /// Scale, position and lean of this image, drawn from `r`.
    fn place(p: &Person, camera: &Camera, r: &mut ChaCha8Rng) -> Body {
        let (w, h) = (SYNTH_WIDTH as i32, SYNTH_HEIGHT as i32);
        let scale = camera.scale * r.random_range(0.93..1.05);
        let ph = (p.height * h as f32 * scale) as i32;
        let pw = (p.width * w as f32 * scale) as i32;
        let cx = w / 2 + r.random_range(-6..=6);
        let top = (h - ph) / 2 + r.random_range(-4..=4);
        let lean = r.random_range(-3..=3);
        let head = ph / 8;
        let torso_top = top + head * 2;
        let legs_top = top + (ph as f32 * (1.0 - p.legs)) as i32;
        let bottom = top + ph;
        Body {
            pw,
            cx,
            top,
            lean,
            head,
            torso_top,
            legs_top,
            bottom,
        }
    }
}

/// Legs (with optional stripes), shoes, torso, arms, head, hair and hat.
fn clothes(img: &mut RgbImage, p: &Person, body: &Body) {
    let Body {
        pw,
        cx,
        top,
        lean,
        head,
        torso_top,
        legs_top,
        bottom,
    } = *body;
    // Legs, with optional stripes.
    let leg_w = pw / 3;
    rect(
        img,
        cx - pw / 3 + lean,
        legs_top,
        leg_w,
        bottom - legs_top,
        p.lower,
    );
    rect(
        img,
        cx + pw / 3 - leg_w + lean,
        legs_top,
        leg_w,
        bottom - legs_top,
        p.lower,
    );
    if let Some(s) = p.stripes {
        let mut y = legs_top + 4;
        while y < bottom - 6 {
            rect(img, cx - pw / 3 + lean, y, pw * 2 / 3, 2, s);
            y += 8;
        }
    }
    // Shoes.
    rect(
        img,
        cx - pw / 3 + lean - 1,
        bottom - 4,
        leg_w + 2,
        4,
        p.shoes,
    );
    rect(
        img,
        cx + pw / 3 - leg_w + lean - 1,
        bottom - 4,
        leg_w + 2,
        4,
        p.shoes,
    );
    // Torso and arms.
    rect(
        img,
        cx - pw / 2,
        torso_top,
        pw,
        legs_top - torso_top + 2,
        p.upper,
    );
    rect(
        img,
        cx - pw / 2 - 5,
        torso_top + 2,
        5,
        (legs_top - torso_top) * 4 / 5,
        p.upper,
    );
    rect(
        img,
        cx + pw / 2,
        torso_top + 2,
        5,
        (legs_top - torso_top) * 4 / 5,
        p.upper,
    );
    // Head, hair, hat.
    draw_filled_ellipse_mut(img, (cx, top + head), head * 3 / 4, head, Rgb(p.skin));
    rect(img, cx - head * 3 / 4, top, head * 3 / 2, head / 2, p.hair);
    if let Some(hat) = p.hat {
        rect(img, cx - head, top - 2, head * 2, head / 2 + 2, hat);
    }
}

/// The identifying details: the chest emblem and the bag.
fn details(img: &mut RgbImage, p: &Person, body: &Body) {
    let Body {
        pw,
        cx,
        torso_top,
        legs_top,
        ..
    } = *body;
    // The chest emblem: the most identifying detail.
    let ex = cx + p.emblem_place * pw / 4;
    let ey = torso_top + (legs_top - torso_top) / 3;
    let s = (pw / 6).max(3);
    let ec = Rgb(p.emblem_colour);
    match p.emblem_shape {
        0 => draw_filled_ellipse_mut(img, (ex, ey), s, s, ec),
        1 => rect(img, ex - s, ey - s, 2 * s, 2 * s, p.emblem_colour),
        2 => draw_polygon_mut(
            img,
            &[
                Point::new(ex, ey - s),
                Point::new(ex + s, ey + s),
                Point::new(ex - s, ey + s),
            ],
            ec,
        ),
        _ => rect(img, ex - s - 2, ey - 1, 2 * s + 4, 3, p.emblem_colour),
    }
    // Bag.
    if let Some((left, c)) = p.bag {
        let bx = if left {
            cx - pw / 2 - 9
        } else {
            cx + pw / 2 + 1
        };
        rect(img, bx, legs_top - 12, 8, 12, c);
    }
}

/// A passer-by or an object in front of the person (always, for junk).
fn occlude(img: &mut RgbImage, junk: bool, r: &mut ChaCha8Rng) {
    let (w, h) = (SYNTH_WIDTH as i32, SYNTH_HEIGHT as i32);
    let occlusion = if junk { 1.0 } else { 0.2 };
    if r.random_bool(occlusion) {
        let c = random_colour(r);
        if r.random_bool(0.5) {
            let oh = r.random_range(h / 5..h / 2);
            rect(img, 0, h - oh, w, oh, c);
        } else {
            let ow = r.random_range(w / 5..w / 2);
            let x = if r.random_bool(0.5) { 0 } else { w - ow };
            rect(img, x, 0, ow, h, c);
        }
    }
}

/// The camera: illumination, colour cast, noise, blur.
fn camera_effects(mut img: RgbImage, camera: &Camera, r: &mut ChaCha8Rng) -> RgbImage {
    let gain = camera.gain * r.random_range(0.9..1.1);
    for px in img.pixels_mut() {
        for c in 0..3 {
            let v = px.0[c] as f32 * gain * camera.cast[c] + r.random_range(-8.0..8.0);
            px.0[c] = v.clamp(0.0, 255.0) as u8;
        }
    }
    if camera.blur > 0.3 {
        img = image::imageops::blur(&img, camera.blur);
    }
    img
}

fn write_jpeg(img: &RgbImage, path: &Path) -> Result<(), DataError> {
    let file = std::fs::File::create(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut writer = std::io::BufWriter::new(file);
    JpegEncoder::new_with_quality(&mut writer, 90)
        .encode_image(img)
        .map_err(|e| DataError::Decode {
            path: path.to_path_buf(),
            message: format!("writing JPEG: {e}"),
        })
}

/// One image to write: folder, pid (-1 junk, 0 distractor), camera (0-based), index.
struct Job {
    folder: &'static str,
    pid: i64,
    camera: usize,
    index: usize,
}

/// Decides which images exist: train ids seen by 2..=cameras cameras with 2-4 images each;
/// test ids likewise, one query image in up to 3 of their cameras (never the only one), the
/// rest in the gallery; distractors and junk in the gallery.
fn plan(config: &SynthConfig) -> Vec<Job> {
    let mut r = rng(config.seed, 3, 0);
    let mut jobs = Vec::new();
    let cams_of = |r: &mut ChaCha8Rng| {
        let n = r.random_range(2..=config.cameras);
        let mut all: Vec<usize> = (0..config.cameras).collect();
        for i in (1..all.len()).rev() {
            let j = r.random_range(0..=i);
            all.swap(i, j);
        }
        all.truncate(n);
        all
    };
    for pid in 1..=config.train_ids as i64 {
        for cam in cams_of(&mut r) {
            for index in 0..r.random_range(2..=4) {
                jobs.push(Job {
                    folder: "bounding_box_train",
                    pid,
                    camera: cam,
                    index,
                });
            }
        }
    }
    for pid in (config.train_ids + 1) as i64..=(config.train_ids + config.test_ids) as i64 {
        let cams = cams_of(&mut r);
        let queries = cams.len().min(3).min(cams.len() - 1).max(1);
        for (k, &cam) in cams.iter().enumerate() {
            let mut index = 0;
            if k < queries {
                jobs.push(Job {
                    folder: "query",
                    pid,
                    camera: cam,
                    index,
                });
                index += 1;
            }
            for _ in 0..r.random_range(1..=3) {
                jobs.push(Job {
                    folder: "bounding_box_test",
                    pid,
                    camera: cam,
                    index,
                });
                index += 1;
            }
        }
    }
    for index in 0..config.test_ids / 2 {
        let camera = r.random_range(0..config.cameras);
        jobs.push(Job {
            folder: "bounding_box_test",
            pid: 0,
            camera,
            index,
        });
    }
    for index in 0..config.test_ids / 4 {
        let camera = r.random_range(0..config.cameras);
        jobs.push(Job {
            folder: "bounding_box_test",
            pid: -1,
            camera,
            index,
        });
    }
    jobs
}

/// Writes the dataset into `out` (`bounding_box_train/`, `query/`, `bounding_box_test/`,
/// readable with `--name market1501 --root out`). Generated in a temporary folder beside
/// `out` and renamed at the end, so an interrupted run never leaves a complete-looking
/// dataset. `out` must not exist yet.
pub fn generate(config: &SynthConfig, out: &Path) -> Result<SynthSummary, DataError> {
    if config.cameras < 2 || config.cameras > 9 {
        return Err(DataError::InvalidSynth {
            setting: "cameras",
            problem: format!(
                "must be between 2 and 9 (Market-style names carry one digit), got {}",
                config.cameras
            ),
        });
    }
    if config.train_ids == 0 || config.test_ids == 0 {
        return Err(DataError::InvalidSynth {
            setting: "train_ids/test_ids",
            problem: "must be at least 1".into(),
        });
    }
    if config.train_ids + config.test_ids > 9999 {
        return Err(DataError::InvalidSynth {
            setting: "train_ids + test_ids",
            problem: "at most 9,999 identities in total (four-digit Market-style names)".into(),
        });
    }
    if out.exists() {
        return Err(DataError::OutputExists {
            path: out.to_path_buf(),
        });
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|source| DataError::Io {
        path: parent.clone(),
        source,
    })?;
    let staging =
        scal_fs::StagedFolder::beside(out, ".synth-").map_err(|source| DataError::Io {
            path: parent.clone(),
            source,
        })?;
    for folder in ["bounding_box_train", "query", "bounding_box_test"] {
        let dir = staging.path().join(folder);
        std::fs::create_dir(&dir).map_err(|source| DataError::Io { path: dir, source })?;
    }

    let jobs = match config.preset {
        SynthPreset::Easy => write_easy(config, staging.path())?,
        SynthPreset::HardV1 => hard::write(config, staging.path())?,
    };

    let count = |folder: &str| jobs.iter().filter(|j| j.folder == folder).count();
    let summary = SynthSummary {
        train_images: count("bounding_box_train"),
        query_images: count("query"),
        gallery_images: count("bounding_box_test"),
        distractors: jobs.iter().filter(|j| j.pid == 0).count(),
        junk: jobs.iter().filter(|j| j.pid == -1).count(),
    };
    staging.install().map_err(|source| DataError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(summary)
}

/// Draws and writes the easy preset's images into `dir`; returns what was written.
fn write_easy(config: &SynthConfig, dir: &Path) -> Result<Vec<Job>, DataError> {
    let people_count = config.train_ids + config.test_ids;
    let people: Vec<Person> = (0..=people_count as u64)
        .map(|pid| Person::new(config.seed, pid))
        .collect();
    let cameras: Vec<Camera> = (0..config.cameras as u64)
        .map(|c| Camera::new(config.seed, c))
        .collect();
    let jobs = plan(config);
    jobs.par_iter().enumerate().try_for_each(|(i, job)| {
        let mut r = rng(config.seed, 4, i as u64);
        let distractor;
        let person = match job.pid {
            -1 => None,
            0 => {
                distractor = Person::new(config.seed ^ 0xD15_7AC7, (i as u64) + 1);
                Some(&distractor)
            }
            pid => Some(&people[pid as usize]),
        };
        let img = draw(person, &cameras[job.camera], &mut r);
        write_jpeg(&img, &dir.join(job.folder).join(file_name(job, i)))
    })?;
    Ok(jobs)
}

/// The Market-style file name of job `i`.
fn file_name(job: &Job, i: usize) -> String {
    if job.pid < 0 {
        format!("-1_c{}s1_{:06}_{:02}.jpg", job.camera + 1, i, job.index)
    } else {
        format!(
            "{:04}_c{}s1_{:06}_{:02}.jpg",
            job.pid,
            job.camera + 1,
            i,
            job.index
        )
    }
}
