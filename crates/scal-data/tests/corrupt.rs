//! Incomplete and damaged image files are errors that name the file, wherever images are
//! decoded (the one `decode` function), never images with a grey or black remainder.

use std::path::{Path, PathBuf};

use scal_data::{DataError, TestTransform, decode};

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
