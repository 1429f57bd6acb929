//! `synth-hard`, version 1: a synthetic dataset where the identity is in the details.
//!
//! The generative model (docs/datasets.md, "synth-hard"):
//!
//! - **Groups.** Identities come in groups of [`GROUP_SIZE`] (train and test groups are
//!   disjoint). A group fixes the global appearance: upper and lower clothing colours, skin,
//!   build (height, width, leg length) and an accent colour.
//! - **Details.** Each identity has seven local attributes ([`Details`]): a chest logo's shape,
//!   colour and place, shoe colour, a bag (side and colour), hair colour, and a pattern on one
//!   garment (trouser stripes, sleeve bands or a belt, in the group's accent colour). A group
//!   draws a base; each member changes [`CHANGED_DETAILS`] of them, and members differ pairwise
//!   in at least [`MIN_DETAIL_DISTANCE`] attributes. Details are drawn on the body, so they
//!   move with its position, scale, lean and the crop.
//! - **Cameras.** Each camera has its own scene (wall, floor, a fixed set of clutter objects
//!   coloured partly from the clothing palettes), illumination, colour cast, noise, blur and
//!   resolution (images are shrunk and enlarged again). Backgrounds depend on the camera, never
//!   on the identity.
//! - **Images.** Position, scale, lean and stride vary per image; three in ten person images
//!   are partly occluded (a passer-by from below or the side); one to three transient objects.
//! - **Gallery distractors** (`0000`) belong to the test groups: a group's look with details
//!   that match none of its members (at least [`MIN_DETAIL_DISTANCE`] attributes apart).
//!
//! The split layout, names and counts are those of the easy preset (its `plan`).

use std::path::Path;

use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_ellipse_mut, draw_polygon_mut};
use imageproc::point::Point;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{
    Colour, DETAIL, Job, LOWER, MANIFEST, SKIN, SYNTH_HEIGHT, SYNTH_WIDTH, SynthConfig,
    SynthManifest, SynthPreset, UPPER, file_name, pick, plan, rect, rng, write_jpeg,
};
use crate::DataError;

/// Identities per group (the last group of a split may be smaller).
pub const GROUP_SIZE: usize = 4;
/// Attributes a member changes from its group's base details.
pub const CHANGED_DETAILS: usize = 2;
/// Least number of attributes in which two members of a group (or a member and a distractor
/// of its group) differ.
pub const MIN_DETAIL_DISTANCE: usize = 2;

/// Values each detail attribute takes: logo shape, logo colour, logo place, shoes, bag, hair,
/// garment pattern.
const CARDINALITY: [u8; 7] = [4, 6, 3, 4, 5, 4, 4];
const SHOES: [Colour; 4] = [[240, 240, 240], [20, 20, 20], [180, 30, 30], [40, 90, 200]];
const HAIR: [Colour; 4] = [
    [20, 15, 10],
    [110, 70, 30],
    [210, 180, 100],
    [140, 140, 140],
];
const BAG: [Colour; 2] = [[120, 60, 20], [30, 120, 110]];

/// A group's global appearance.
#[derive(Debug, Clone)]
struct GroupLook {
    upper: Colour,
    lower: Colour,
    skin: Colour,
    accent: Colour,
    height: f32,
    width: f32,
    legs: f32,
}

/// One identity's local details, one value per attribute of `CARDINALITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Details(pub [u8; 7]);

impl Details {
    fn distance(&self, other: &Details) -> usize {
        self.0
            .iter()
            .zip(other.0)
            .filter(|(a, b)| **a != *b)
            .count()
    }

    fn random(r: &mut ChaCha8Rng) -> Details {
        Details(CARDINALITY.map(|n| r.random_range(0..n)))
    }

    /// `base` with `CHANGED_DETAILS` attributes set to other values.
    fn variant_of(base: &Details, r: &mut ChaCha8Rng) -> Details {
        let mut d = *base;
        let mut attributes: Vec<usize> = (0..CARDINALITY.len()).collect();
        for i in 0..CHANGED_DETAILS {
            let j = r.random_range(i..attributes.len());
            attributes.swap(i, j);
            let a = attributes[i];
            let shift = r.random_range(1..CARDINALITY[a]);
            d.0[a] = (d.0[a] + shift) % CARDINALITY[a];
        }
        d
    }

    /// A variant of `base` at least `MIN_DETAIL_DISTANCE` from each of `others` (the last try
    /// after 1,000, which the cardinalities make unreachable in practice).
    fn distinct_variant(base: &Details, others: &[Details], r: &mut ChaCha8Rng) -> Details {
        let mut d = Details::variant_of(base, r);
        for _ in 0..1000 {
            if others.iter().all(|o| o.distance(&d) >= MIN_DETAIL_DISTANCE) {
                break;
            }
            d = Details::variant_of(base, r);
        }
        d
    }
}

/// A group: its look, its base details and its members' details.
struct Group {
    look: GroupLook,
    base: Details,
    members: Vec<Details>,
}

fn jitter(r: &mut ChaCha8Rng, c: Colour, amount: i32) -> Colour {
    c.map(|v| (i32::from(v) + r.random_range(-amount..=amount)).clamp(0, 255) as u8)
}

impl Group {
    fn new(seed: u64, group: u64) -> Group {
        let mut r = rng(seed, 11, group);
        let upper = pick(&mut r, &UPPER);
        let lower = pick(&mut r, &LOWER);
        let look = GroupLook {
            upper: jitter(&mut r, upper, 25),
            lower: jitter(&mut r, lower, 20),
            skin: pick(&mut r, &SKIN),
            accent: pick(&mut r, &DETAIL),
            height: r.random_range(0.78..0.95),
            width: r.random_range(0.32..0.45),
            legs: r.random_range(0.42..0.52),
        };
        let base = Details::random(&mut r);
        let mut members = Vec::with_capacity(GROUP_SIZE);
        for _ in 0..GROUP_SIZE {
            let d = Details::distinct_variant(&base, &members, &mut r);
            members.push(d);
        }
        Group {
            look,
            base,
            members,
        }
    }
}

/// One camera's scene and optics.
struct HardCamera {
    wall: Colour,
    floor: Colour,
    horizon: i32,
    scene: Vec<(u8, i32, i32, i32, i32, Colour)>,
    gain: f32,
    cast: [f32; 3],
    noise: f32,
    blur: f32,
    resolution: f32,
    scale: f32,
}

/// A colour for clutter: half the time one a person could wear.
fn clutter_colour(r: &mut ChaCha8Rng) -> Colour {
    match r.random_range(0..4) {
        0 => pick(r, &UPPER),
        1 => pick(r, &DETAIL),
        _ => super::random_colour(r),
    }
}

impl HardCamera {
    fn new(seed: u64, cam: u64) -> HardCamera {
        let mut r = rng(seed, 12, cam);
        let (w, h) = (SYNTH_WIDTH as i32, SYNTH_HEIGHT as i32);
        let items = r.random_range(6..=14);
        let scene = (0..items)
            .map(|_| {
                (
                    r.random_range(0..3),
                    r.random_range(-8..w),
                    r.random_range(-8..h),
                    r.random_range(2..18),
                    r.random_range(3..60),
                    clutter_colour(&mut r),
                )
            })
            .collect();
        HardCamera {
            wall: super::random_colour(&mut r),
            floor: super::random_colour(&mut r),
            horizon: r.random_range(60..100),
            scene,
            gain: r.random_range(0.65..1.3),
            cast: [
                r.random_range(0.75..1.25),
                r.random_range(0.75..1.25),
                r.random_range(0.75..1.25),
            ],
            noise: r.random_range(4.0..12.0),
            blur: r.random_range(0.0..1.3),
            resolution: r.random_range(0.5..1.0),
            scale: r.random_range(0.85..1.05),
        }
    }
}

/// Draws one clutter item (bar, ellipse or pole).
fn item(img: &mut RgbImage, kind: u8, x: i32, y: i32, w: i32, h: i32, c: Colour) {
    match kind {
        0 => rect(img, x, y, w, h, c),
        1 => draw_filled_ellipse_mut(img, (x, y), w / 2 + 1, h / 4 + 1, Rgb(c)),
        _ => rect(img, x, y, (w / 6).max(1), h + 20, c),
    }
}

/// The camera's scene, shifted by a pixel or two, and a few transient objects.
fn background(camera: &HardCamera, r: &mut ChaCha8Rng) -> RgbImage {
    let (w, h) = (SYNTH_WIDTH as i32, SYNTH_HEIGHT as i32);
    let mut img = RgbImage::from_pixel(w as u32, h as u32, Rgb(camera.wall));
    let horizon = camera.horizon + r.random_range(-4..=4);
    rect(&mut img, 0, horizon, w, h - horizon, camera.floor);
    let (dx, dy) = (r.random_range(-2..=2), r.random_range(-2..=2));
    for &(kind, x, y, iw, ih, c) in &camera.scene {
        item(&mut img, kind, x + dx, y + dy, iw, ih, c);
    }
    for _ in 0..r.random_range(1..=3) {
        let c = clutter_colour(r);
        let (x, y) = (r.random_range(-8..w), r.random_range(-8..h));
        let (iw, ih) = (r.random_range(2..14), r.random_range(3..30));
        item(&mut img, r.random_range(0..3), x, y, iw, ih, c);
    }
    img
}

/// Where the body is in this image.
struct Pose {
    cx: i32,
    top: i32,
    ph: i32,
    pw: i32,
    lean: i32,
    stride: i32,
}

impl Pose {
    fn new(look: &GroupLook, camera: &HardCamera, r: &mut ChaCha8Rng) -> Pose {
        let (w, h) = (SYNTH_WIDTH as i32, SYNTH_HEIGHT as i32);
        let scale = camera.scale * r.random_range(0.9..1.08);
        let ph = (look.height * h as f32 * scale) as i32;
        Pose {
            cx: w / 2 + r.random_range(-8..=8),
            top: (h - ph) / 2 + r.random_range(-6..=6),
            ph,
            pw: (look.width * w as f32 * scale) as i32,
            lean: r.random_range(-3..=3),
            stride: r.random_range(0..=3),
        }
    }
}

/// Draws the person: the group's look with the identity's details.
fn person(img: &mut RgbImage, look: &GroupLook, d: &Details, p: &Pose, r: &mut ChaCha8Rng) {
    let [
        logo_shape,
        logo_colour,
        logo_place,
        shoes,
        bag,
        hair,
        pattern,
    ] = d.0;
    let head = p.ph / 8;
    let torso_top = p.top + head * 2;
    let legs_top = p.top + (p.ph as f32 * (1.0 - look.legs)) as i32;
    let bottom = p.top + p.ph;
    let leg_w = p.pw / 3;
    let left_leg = p.cx - p.pw / 3 + p.lean - p.stride;
    let right_leg = p.cx + p.pw / 3 - leg_w + p.lean + p.stride;
    for x in [left_leg, right_leg] {
        rect(img, x, legs_top, leg_w, bottom - legs_top, look.lower);
        rect(img, x - 1, bottom - 4, leg_w + 2, 4, SHOES[shoes as usize]);
    }
    if pattern == 1 {
        // Trouser stripes.
        let mut y = legs_top + 4;
        while y < bottom - 7 {
            for x in [left_leg, right_leg] {
                rect(img, x, y, leg_w, 2, look.accent);
            }
            y += 7;
        }
    }
    let arm_h = (legs_top - torso_top) * 4 / 5;
    rect(
        img,
        p.cx - p.pw / 2,
        torso_top,
        p.pw,
        legs_top - torso_top + 2,
        look.upper,
    );
    for x in [p.cx - p.pw / 2 - 5, p.cx + p.pw / 2] {
        rect(img, x, torso_top + 2, 5, arm_h, look.upper);
        if pattern == 2 {
            // Sleeve bands.
            rect(img, x, torso_top + 2 + arm_h / 2, 5, 3, look.accent);
        }
    }
    if pattern == 3 {
        // A belt.
        rect(img, p.cx - p.pw / 2, legs_top - 2, p.pw, 3, look.accent);
    }
    draw_filled_ellipse_mut(
        img,
        (p.cx, p.top + head),
        head * 3 / 4,
        head,
        Rgb(look.skin),
    );
    rect(
        img,
        p.cx - head * 3 / 4,
        p.top,
        head * 3 / 2,
        head / 2 + 1,
        HAIR[hair as usize],
    );
    // The chest logo.
    let ex = p.cx + (i32::from(logo_place) - 1) * p.pw / 4;
    let ey = torso_top + (legs_top - torso_top) / 3 + r.random_range(-1..=1);
    let s = (p.pw / 7).max(2);
    let colour = DETAIL[logo_colour as usize];
    match logo_shape {
        0 => draw_filled_ellipse_mut(img, (ex, ey), s, s, Rgb(colour)),
        1 => rect(img, ex - s, ey - s, 2 * s, 2 * s, colour),
        2 => draw_polygon_mut(
            img,
            &[
                Point::new(ex, ey - s),
                Point::new(ex + s, ey + s),
                Point::new(ex - s, ey + s),
            ],
            Rgb(colour),
        ),
        _ => rect(img, ex - s - 1, ey - 1, 2 * s + 2, 3, colour),
    }
    // A bag: 0 none, 1-2 on the left, 3-4 on the right, in one of two colours.
    if bag > 0 {
        let bx = if bag <= 2 {
            p.cx - p.pw / 2 - 8
        } else {
            p.cx + p.pw / 2 + 1
        };
        let by = legs_top - 10 + r.random_range(-2..=2);
        rect(img, bx, by, 7, 10, BAG[usize::from((bag - 1) % 2)]);
    }
}

/// A passer-by or an object in front: from below or from one side.
fn occlude(img: &mut RgbImage, r: &mut ChaCha8Rng) {
    let (w, h) = (SYNTH_WIDTH as i32, SYNTH_HEIGHT as i32);
    let c = clutter_colour(r);
    if r.random_bool(0.5) {
        let oh = r.random_range(h / 5..=h * 2 / 5);
        rect(img, 0, h - oh, w, oh, c);
    } else {
        let ow = r.random_range(w / 5..=w * 2 / 5);
        let x = if r.random_bool(0.5) { 0 } else { w - ow };
        rect(img, x, 0, ow, h, c);
    }
}

/// The camera's optics: gain, colour cast, noise, resolution, blur.
fn optics(mut img: RgbImage, camera: &HardCamera, r: &mut ChaCha8Rng) -> RgbImage {
    let gain = camera.gain * r.random_range(0.9..1.1);
    for px in img.pixels_mut() {
        for c in 0..3 {
            let noise = r.random_range(-camera.noise..camera.noise);
            let v = px.0[c] as f32 * gain * camera.cast[c] + noise;
            px.0[c] = v.clamp(0.0, 255.0) as u8;
        }
    }
    let (w, h) = img.dimensions();
    let (sw, sh) = (
        ((w as f32 * camera.resolution) as u32).max(8),
        ((h as f32 * camera.resolution) as u32).max(16),
    );
    use image::imageops::{FilterType, blur, resize};
    img = resize(
        &resize(&img, sw, sh, FilterType::Triangle),
        w,
        h,
        FilterType::Triangle,
    );
    if camera.blur > 0.3 {
        img = blur(&img, camera.blur);
    }
    img
}

/// One image: `who` is the person (group look and details), `None` for junk.
fn draw(who: Option<(&GroupLook, &Details)>, camera: &HardCamera, r: &mut ChaCha8Rng) -> RgbImage {
    let mut img = background(camera, r);
    if let Some((look, details)) = who {
        let pose = Pose::new(look, camera, r);
        person(&mut img, look, details, &pose, r);
    }
    if r.random_bool(if who.is_none() { 1.0 } else { 0.3 }) {
        occlude(&mut img, r);
    }
    optics(img, camera, r)
}

/// The group and member of identity `pid` (1-based): train groups first, then test groups.
fn group_of(config: &SynthConfig, pid: usize) -> (usize, usize) {
    let train_groups = config.train_ids.div_ceil(GROUP_SIZE);
    if pid <= config.train_ids {
        ((pid - 1) / GROUP_SIZE, (pid - 1) % GROUP_SIZE)
    } else {
        let i = pid - 1 - config.train_ids;
        (train_groups + i / GROUP_SIZE, i % GROUP_SIZE)
    }
}

/// A distractor for gallery image `i`: a test group's look with details none of its members
/// have.
fn distractor(config: &SynthConfig, groups: &[Group], i: usize) -> (usize, Details) {
    let mut r = rng(config.seed, 13, i as u64);
    let first_test = config.train_ids.div_ceil(GROUP_SIZE);
    let g = r.random_range(first_test..groups.len());
    let d = Details::distinct_variant(&groups[g].base, &groups[g].members, &mut r);
    (g, d)
}

/// Draws and writes the hard preset's images and its manifest into `dir`.
pub(super) fn write(config: &SynthConfig, dir: &Path) -> Result<Vec<Job>, DataError> {
    let total_groups = config.train_ids.div_ceil(GROUP_SIZE) + config.test_ids.div_ceil(GROUP_SIZE);
    let groups: Vec<Group> = (0..total_groups as u64)
        .map(|g| Group::new(config.seed, g))
        .collect();
    let cameras: Vec<HardCamera> = (0..config.cameras as u64)
        .map(|c| HardCamera::new(config.seed, c))
        .collect();
    let jobs = plan(config);
    jobs.par_iter().enumerate().try_for_each(|(i, job)| {
        let mut r = rng(config.seed, 14, i as u64);
        let (g, details) = match job.pid {
            -1 => (0, None),
            0 => {
                let (g, d) = distractor(config, &groups, i);
                (g, Some(d))
            }
            pid => {
                let (g, m) = group_of(config, pid as usize);
                (g, Some(groups[g].members[m]))
            }
        };
        let who = details.as_ref().map(|d| (&groups[g].look, d));
        let img = draw(who, &cameras[job.camera], &mut r);
        write_jpeg(&img, &dir.join(job.folder).join(file_name(job, i)))
    })?;
    let manifest = SynthManifest {
        preset: SynthPreset::HardV1,
        train_ids: config.train_ids,
        test_ids: config.test_ids,
        cameras: config.cameras,
        seed: config.seed,
    };
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest).expect("the manifest serialises");
    std::fs::write(&path, text + "\n").map_err(|source| DataError::Io { path, source })?;
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_of_a_group_differ_in_a_few_details_only() {
        for g in 0..50 {
            let group = Group::new(7, g);
            for (i, a) in group.members.iter().enumerate() {
                let from_base = a.distance(&group.base);
                assert!((1..=CHANGED_DETAILS).contains(&from_base), "{a:?}");
                for b in &group.members[i + 1..] {
                    let d = a.distance(b);
                    assert!(
                        (MIN_DETAIL_DISTANCE..=2 * CHANGED_DETAILS).contains(&d),
                        "group {g}: {a:?} vs {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn distractors_match_no_member_of_their_group() {
        let config = SynthConfig {
            train_ids: 8,
            test_ids: 12,
            preset: SynthPreset::HardV1,
            ..SynthConfig::default()
        };
        let groups: Vec<Group> = (0..5).map(|g| Group::new(config.seed, g)).collect();
        for i in 0..40 {
            let (g, d) = distractor(&config, &groups, i);
            assert!(g >= 2, "a test group");
            assert!(
                groups[g]
                    .members
                    .iter()
                    .all(|m| m.distance(&d) >= MIN_DETAIL_DISTANCE)
            );
        }
    }

    #[test]
    fn identities_map_to_groups_split_by_split() {
        let config = SynthConfig {
            train_ids: 10,
            test_ids: 6,
            ..SynthConfig::default()
        };
        assert_eq!(group_of(&config, 1), (0, 0));
        assert_eq!(group_of(&config, 4), (0, 3));
        assert_eq!(group_of(&config, 5), (1, 0));
        assert_eq!(group_of(&config, 10), (2, 1));
        // Test identities start a new group after the three train groups.
        assert_eq!(group_of(&config, 11), (3, 0));
        assert_eq!(group_of(&config, 16), (4, 1));
    }
}
