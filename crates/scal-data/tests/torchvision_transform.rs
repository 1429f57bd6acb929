//! The test-time transform against torchvision + PIL on the same files
//! (`tests/fixtures/make_fixtures.py`).

use std::path::{Path, PathBuf};

use scal_data::{DataError, IMAGENET_STD, TestTransform};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture("preprocess.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor(name).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), values)
}

/// Differences in units of 8-bit pixel levels (the values are normalised by `std`).
fn pixel_level_errors(got: &[f32], want: &[f32], plane: usize) -> Vec<f32> {
    got.iter()
        .zip(want)
        .enumerate()
        .map(|(i, (a, b))| (a - b).abs() * IMAGENET_STD[i / plane] * 255.0)
        .collect()
}

fn compare(file: &str, expected_name: &str, max_level: f32, mean_level: f32) {
    let (shape, want) = expected(expected_name);
    let transform = TestTransform::new(shape[1] as u32, shape[2] as u32);
    let got = transform.load(&fixture(file)).unwrap();
    assert_eq!(got.len(), want.len());
    let errors = pixel_level_errors(&got, &want, shape[1] * shape[2]);
    let max = errors.iter().cloned().fold(0.0, f32::max);
    let mean = errors.iter().sum::<f32>() / errors.len() as f32;
    assert!(
        max <= max_level && mean <= mean_level,
        "{expected_name}: max {max:.3} levels (bound {max_level}), mean {mean:.4} (bound {mean_level})"
    );
}

#[test]
fn same_size_is_exact() {
    // No resize: only the scaling and normalisation, which must match to float rounding.
    compare("person.png", "png_40x20", 1e-3, 1e-4);
    compare("person_gray.png", "gray_40x20", 1e-3, 1e-4);
}

#[test]
fn jpeg_decoding_matches_pil() {
    // libjpeg-turbo (PIL) and the image crate's decoder differ in IDCT rounding and chroma
    // upsampling: a few levels at sharp colour edges, under half a level on average
    // (measured: max 5, mean 0.43 on this image).
    compare("person.jpg", "jpg_40x20", 6.01, 0.5);
}

#[test]
fn bilinear_resize_matches_pil() {
    // PIL resamples in fixed point and rounds to 8 bits; one level of disagreement is rounding.
    compare("person.png", "png_96x48", 1.01, 0.3);
    compare("person.png", "png_24x12", 1.01, 0.3);
}

#[test]
fn corrupt_and_missing_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("0001_c1s1_000151_01.jpg");
    std::fs::write(&broken, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let transform = TestTransform::new(8, 4);
    let err = transform.load(&broken).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("0001_c1s1_000151_01.jpg"), "{err}");

    let err = transform.load(&dir.path().join("absent.png")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    assert!(err.to_string().contains("absent.png"));
}

#[test]
fn extension_does_not_decide_the_decoder() {
    // A PNG saved under a .jpg name still decodes.
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("person.jpg");
    std::fs::copy(fixture("person.png"), &renamed).unwrap();
    let transform = TestTransform::new(40, 20);
    assert_eq!(
        transform.load(&renamed).unwrap(),
        transform.load(&fixture("person.png")).unwrap()
    );
}
