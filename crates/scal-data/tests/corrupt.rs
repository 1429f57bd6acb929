//! Incomplete and damaged image files are errors that name the file, wherever images are
//! decoded (the one `decode` function), never images with a grey or black remainder.

use std::path::{Path, PathBuf};

use scal_data::{DataError, TestTransform, check_decodable, decode, decode_upright};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every prefix of `name` from `from` bytes on (in steps) written to a file and decoded.
fn truncations(name: &str, from: usize, step: usize) -> Vec<(usize, Result<(), DataError>)> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    (from..bytes.len())
        .step_by(step)
        .map(|cut| {
            let path = dir.path().join(format!("cut_{cut}_{name}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            (cut, decode(&path).map(|_| ()))
        })
        .collect()
}

#[test]
fn a_jpeg_cut_off_anywhere_is_an_error_naming_the_file() {
    assert!(decode(&fixture("person.jpg")).is_ok());
    let cuts = truncations("person.jpg", 2, 1);
    assert!(cuts.len() > 1000);
    for (cut, result) in cuts {
        let err = result.expect_err(&format!("a JPEG cut at {cut} bytes decoded"));
        assert!(
            matches!(&err, DataError::Decode { path, .. } if path.to_string_lossy().contains(&format!("cut_{cut}_"))),
            "{err}"
        );
    }
}

#[test]
fn a_png_cut_off_in_its_data_is_an_error() {
    assert!(decode(&fixture("person.png")).is_ok());
    for (cut, result) in truncations("person.png", 8, 7) {
        assert!(result.is_err(), "a PNG cut at {cut} bytes decoded");
    }
}

/// The check training runs on its query and gallery decodes the pixels too: a PNG whose
/// header is whole but whose data is cut (the damage a header check misses, trial 4, F27) is
/// found, and the first damaged file in the list's order is the one named.
#[test]
fn the_check_before_training_finds_damage_inside_compressed_data() {
    let dir = tempfile::tempdir().unwrap();
    let png = std::fs::read(fixture("person.png")).unwrap();
    let good = dir.path().join("good.png");
    std::fs::write(&good, &png).unwrap();
    let mut paths = vec![fixture("person.jpg"), good.clone()];
    for (i, cut) in [png.len() * 4 / 5, png.len() / 2].into_iter().enumerate() {
        let damaged = dir.path().join(format!("damaged_{i}.png"));
        std::fs::write(&damaged, &png[..cut]).unwrap();
        paths.push(damaged);
    }
    let all: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    assert!(check_decodable(&all[..2]).is_ok());
    let err = check_decodable(&all).unwrap_err();
    assert!(
        matches!(&err, DataError::Decode { path, .. } if path.ends_with("damaged_0.png")),
        "{err}"
    );
}

#[test]
fn the_test_transform_refuses_a_truncated_image_naming_it() {
    let bytes = std::fs::read(fixture("person.jpg")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("0001_c2s1_000002_01.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() * 4 / 5]).unwrap();
    let transform = TestTransform::new(64, 32);
    let err = transform
        .load_batch(&[fixture("person.jpg"), cut.clone()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("0001_c2s1_000002_01.jpg") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_an_image_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.jpg");
    std::fs::write(&path, b"not an image at all").unwrap();
    let err = decode(&path).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err}");
}

/// CRC-32 (PNG's chunk checksum), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A small valid image of `format` whose header then declares `width × height`.
fn declared(format: image::ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(16, 16, image::Rgb([120, 60, 30]));
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
        .unwrap();
    match format {
        image::ImageFormat::Jpeg => {
            // SOF0: FF C0, length (2), precision (1), height (2), width (2).
            let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
            let (h, w) = (height.min(65_535) as u16, width.min(65_535) as u16);
            bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
            bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        }
        image::ImageFormat::Png => {
            // IHDR: length (4) "IHDR" width (4) height (4) ... CRC over type and data.
            bytes[16..20].copy_from_slice(&width.to_be_bytes());
            bytes[20..24].copy_from_slice(&height.to_be_bytes());
            let crc = crc32(&bytes[12..29]);
            bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        }
        image::ImageFormat::Bmp => {
            // BITMAPINFOHEADER: width at 18, height at 22 (signed, little-endian).
            let (w, h) = (width.min(i32::MAX as u32), height.min(i32::MAX as u32));
            bytes[18..22].copy_from_slice(&w.to_le_bytes());
            bytes[22..26].copy_from_slice(&h.to_le_bytes());
        }
        other => unreachable!("{other:?}"),
    }
    bytes
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(24))]

    /// An image whose header declares more pixels than the decoder's memory limit allows
    /// (a decompression bomb: a few hundred bytes claiming gigabytes) is refused naming the
    /// file, by both decoding functions (as stored, and upright by its EXIF orientation),
    /// before anything is allocated for it.
    #[test]
    fn a_declared_huge_image_is_refused_on_every_decode_path(
        format in proptest::sample::select(vec![
            image::ImageFormat::Jpeg,
            image::ImageFormat::Png,
            image::ImageFormat::Bmp,
        ]),
        width in 20_000u32..65_000,
        height in 20_000u32..65_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.img");
        std::fs::write(&path, declared(format, width, height)).unwrap();
        for (name, result) in [("decode", decode(&path)), ("decode_upright", scal_data::decode_upright(&path))] {
            let err = result.err().map(|e| e.to_string());
            proptest::prop_assert!(
                err.as_deref().is_some_and(|e| e.contains("bomb.img")),
                "{name} {format:?} {width}x{height}: {err:?}"
            );
        }
    }
}

#[test]
fn the_small_images_behind_the_bombs_decode() {
    let dir = tempfile::tempdir().unwrap();
    for format in [
        image::ImageFormat::Jpeg,
        image::ImageFormat::Png,
        image::ImageFormat::Bmp,
    ] {
        let path = dir.path().join("small.img");
        std::fs::write(&path, declared(format, 16, 16)).unwrap();
        let image = scal_data::decode_upright(&path).unwrap();
        assert_eq!((image.width(), image.height()), (16, 16), "{format:?}");
    }
}

/// JPEG bytes of `image` with an EXIF block saying Orientation = `orientation` (APP1 right
/// after the start-of-image marker, a big-endian TIFF header and one IFD entry).
fn jpeg_with_orientation(image: &image::DynamicImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(image)
        .unwrap();
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\x00\x00");
    app1.extend_from_slice(&tiff);
    [&jpeg[..2], &app1[..], &jpeg[2..]].concat()
}

/// Every EXIF orientation (1-8) is turned upright by `decode_upright`, in colour and in grey
/// (trial 4, D5, D17); `decode` takes the pixels as stored; an orientation outside 1-8 (0,
/// 9, 65535) is read as upright, no error.
#[test]
fn every_exif_orientation_is_turned_upright_in_colour_and_grey() {
    use image::metadata::Orientation;
    let dir = tempfile::tempdir().unwrap();
    let colour = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([
            (x * 10) as u8,
            (y * 15) as u8,
            if x < 12 { 220 } else { 20 },
        ])
    }));
    let grey = image::DynamicImage::ImageLuma8(colour.to_luma8());
    let distance = |a: &image::DynamicImage, b: &image::DynamicImage| -> f64 {
        let (a, b) = (a.to_rgb8(), b.to_rgb8());
        assert_eq!(a.dimensions(), b.dimensions());
        let sum: f64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
            .sum();
        sum / a.as_raw().len() as f64
    };
    // The transform that stores an upright image so that orientation `n` turns it back.
    let inverse = |n: u8| match n {
        6 => 8,
        8 => 6,
        n => n,
    };
    for (kind, upright) in [("colour", &colour), ("grey", &grey)] {
        for n in 1..=8u8 {
            let mut stored = upright.clone();
            stored.apply_orientation(Orientation::from_exif(inverse(n)).unwrap());
            let path = dir.path().join(format!("{kind}{n}.jpg"));
            std::fs::write(&path, jpeg_with_orientation(&stored, u16::from(n))).unwrap();
            let turned = decode_upright(&path).unwrap();
            assert!(
                distance(&turned, upright) < 4.0,
                "{kind}, orientation {n}: not upright"
            );
            let as_stored = decode(&path).unwrap();
            assert!(
                distance(&as_stored, &stored) < 4.0,
                "{kind}, {n}: as stored"
            );
            // The colour image differs from itself flipped or turned (the test can fail).
            if kind == "colour" && (2..=4).contains(&n) {
                assert!(
                    distance(&as_stored, upright) > 20.0,
                    "{kind}, {n}: the stored image is not the upright one"
                );
            }
        }
        for n in [0u16, 9, 65535] {
            let path = dir.path().join(format!("{kind}_bad{n}.jpg"));
            std::fs::write(&path, jpeg_with_orientation(upright, n)).unwrap();
            let read = decode_upright(&path).unwrap();
            assert!(distance(&read, upright) < 4.0, "{kind}, orientation {n}");
        }
    }
}
