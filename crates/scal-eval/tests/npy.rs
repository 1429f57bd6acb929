//! `.npy` inputs whose header lies: an error naming the file, never an allocation that
//! aborts the process.

use scal_eval::io::{read_distance_matrix, read_ids};

/// A version-1.0 `.npy` file with `header` (the dictionary) and `data` after it.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut text = header.to_string();
    while !(10 + text.len() + 1).is_multiple_of(64) {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((text.len() as u16).to_le_bytes());
    out.extend(text.as_bytes());
    out.extend(data);
    out
}

#[test]
fn a_header_claiming_a_huge_shape_over_a_small_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("distmat.npy");
    let huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000, 100000000), }";
    std::fs::write(&path, npy(huge, &[0u8; 16])).unwrap();
    let err = read_distance_matrix(&path).unwrap_err().to_string();
    assert!(
        err.contains("distmat.npy") && err.contains("[100000000, 100000000]"),
        "{err}"
    );
    let overflow = "{'descr': '<i8', 'fortran_order': False, 'shape': (18446744073709551615, 4), }";
    let ids = dir.path().join("q_pids.npy");
    std::fs::write(&ids, npy(overflow, &[0u8; 8])).unwrap();
    let err = read_ids(&ids).unwrap_err().to_string();
    assert!(err.contains("q_pids.npy"), "{err}");

    // The same header with all its data reads.
    let fits = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
    std::fs::write(&path, npy(fits, &[0u8; 16])).unwrap();
    assert_eq!(read_distance_matrix(&path).unwrap().dim(), (2, 2));
}
