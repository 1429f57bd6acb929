//! Listing the images of a folder.

use std::path::{Path, PathBuf};

use crate::DataError;

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "webp"];

/// Whether `path` has one of the [`IMAGE_EXTENSIONS`].
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The images of one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageListing {
    /// Image files, sorted lexicographically by file name (byte order, as Python's
    /// `sorted(os.listdir(...))`).
    pub images: Vec<PathBuf>,
    /// Entries that are not image files (`Thumbs.db`, sub-folders, text files), sorted.
    pub skipped: Vec<PathBuf>,
}

/// Lists the image files directly inside `dir` (not recursive).
///
/// An empty result is an error ([`DataError::NoImages`]), as are a missing folder and a
/// path that is a file.
pub fn list_images(dir: &Path) -> Result<ImageListing, DataError> {
    if !dir.exists() {
        return Err(DataError::FolderNotFound {
            path: dir.to_path_buf(),
        });
    }
    if !dir.is_dir() {
        return Err(DataError::NotAFolder {
            path: dir.to_path_buf(),
        });
    }
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        // Follows symbolic links: a link to an image is an image.
        if path.is_file() && is_image_file(&path) {
            images.push(path);
        } else {
            skipped.push(path);
        }
    }
    images.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    skipped.sort();
    if images.is_empty() {
        return Err(DataError::NoImages {
            path: dir.to_path_buf(),
            skipped: skipped.len(),
        });
    }
    Ok(ImageListing { images, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_images_in_name_order_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "0002_c1s1_000451_03.jpg",
            "0001_c1s1_001051_00.JPG",
            "-1_c1s1_000401_03.png",
            "Thumbs.db",
            "notes.txt",
            "b.webp",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.jpg")).unwrap();
        let listing = list_images(dir.path()).unwrap();
        let names: Vec<_> = listing
            .images
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "-1_c1s1_000401_03.png",
                "0001_c1s1_001051_00.JPG",
                "0002_c1s1_000451_03.jpg",
                "b.webp"
            ]
        );
        assert_eq!(listing.skipped.len(), 3, "Thumbs.db, notes.txt, sub.jpg/");
    }

    #[test]
    fn empty_missing_and_file_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Thumbs.db"), b"x").unwrap();
        let err = list_images(dir.path()).unwrap_err();
        assert!(
            matches!(err, DataError::NoImages { skipped: 1, .. }),
            "{err}"
        );

        let missing = dir.path().join("nope");
        assert!(matches!(
            list_images(&missing).unwrap_err(),
            DataError::FolderNotFound { .. }
        ));
        let file = dir.path().join("Thumbs.db");
        let err = list_images(&file).unwrap_err();
        assert!(matches!(err, DataError::NotAFolder { .. }));
        assert!(err.to_string().contains("Thumbs.db"));
    }
}
