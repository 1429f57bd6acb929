//! The readers on miniature trees with the real naming schemes, and the synthetic dataset.

use std::path::Path;

use scal_data::synth::{SynthConfig, SynthPreset, generate};
use scal_data::{DataError, DatasetName, ReadOptions, read_dataset};

fn touch(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for n in names {
        std::fs::write(dir.join(n), b"not decoded by the readers").unwrap();
    }
}

fn market_tree(base: &Path) {
    touch(
        &base.join("bounding_box_train"),
        &[
            "0002_c1s1_000451_03.jpg",
            "0002_c2s1_000551_01.jpg",
            "0007_c3s1_000101_02.jpg",
            "0010_c6s4_001234_05.jpg",
            "-1_c1s1_000001_00.jpg",
            "Thumbs.db",
        ],
    );
    touch(
        &base.join("query"),
        &["0003_c1s1_000101_00.jpg", "0005_c4s2_000101_00.jpg"],
    );
    touch(
        &base.join("bounding_box_test"),
        &[
            "0003_c2s1_000201_00.jpg",
            "0005_c1s1_000301_00.jpg",
            "0000_c1s1_000001_00.jpg",
            "0000_c5s1_000002_00.jpg",
            "-1_c2s1_000003_00.jpg",
            "Thumbs.db",
        ],
    );
}

#[test]
fn market1501_layout() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("Market-1501-v15.09.15");
    market_tree(&base);
    // The root may be the dataset folder or the folder above it.
    for root in [dir.path(), base.as_path()] {
        let d = read_dataset(DatasetName::Market1501, root, ReadOptions::default()).unwrap();
        assert_eq!(d.root, base);
        // Junk dropped, Thumbs.db ignored, train relabelled 0..N-1 in raw-id order.
        let train: Vec<(i64, i64)> = d.train.iter().map(|r| (r.pid, r.camid)).collect();
        assert_eq!(train, vec![(0, 0), (0, 1), (1, 2), (2, 5)]);
        assert_eq!(d.num_train_ids(), 3);
        // Query and gallery keep raw ids; distractors stay in the gallery.
        let query: Vec<(i64, i64)> = d.query.iter().map(|r| (r.pid, r.camid)).collect();
        assert_eq!(query, vec![(3, 0), (5, 3)]);
        assert_eq!(d.gallery.iter().filter(|r| r.pid == 0).count(), 2);
        assert!(d.gallery.iter().all(|r| r.pid >= 0));
        let s = d.summary();
        assert_eq!((s.train.ids, s.train.images, s.train.cameras), (3, 4, 4));
        assert_eq!(
            (s.gallery.ids, s.gallery.images),
            (3, 4),
            "distractor 0 counts as one identity"
        );
        // A trimmed copy under the official name is reported against the official counts.
        let diffs = d.check_known_counts();
        assert!(
            diffs
                .iter()
                .any(|(what, want, got)| *what == "train images" && *want == 12_936 && *got == 4)
        );
        assert!(
            d.table()
                .contains("train    |     3 |        4 |         4"),
            "{}",
            d.table()
        );
    }
}

/// A file name with a byte that is not UTF-8 after a valid prefix is read through that
/// prefix, as torchreid reads it (issue 29, W31); the file keeps its real name.
#[cfg(unix)]
#[test]
fn a_market_name_that_is_not_utf8_is_read_through_its_valid_prefix() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    market_tree(dir.path());
    let name = std::ffi::OsStr::from_bytes(b"0007_c2s1_000999_00\xff.jpg");
    let odd = dir.path().join("bounding_box_train").join(name);
    std::fs::write(&odd, b"not decoded by the readers").unwrap();
    let d = read_dataset(DatasetName::Market1501, dir.path(), ReadOptions::default()).unwrap();
    let record = d.train.iter().find(|r| r.path == odd).unwrap();
    assert_eq!(
        (record.pid, record.camid),
        (1, 1),
        "raw identity 7 is label 1"
    );
    assert_eq!(d.train.len(), 5);
}

#[test]
fn dukemtmc_and_cuhk03_np_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let duke = dir.path().join("DukeMTMC-reID");
    touch(
        &duke.join("bounding_box_train"),
        &["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg"],
    );
    touch(&duke.join("query"), &["0005_c2_f0046985.jpg"]);
    touch(
        &duke.join("bounding_box_test"),
        &["0005_c8_f0061234.jpg", "0000_c1_f0000001.jpg"],
    );
    let d = read_dataset(DatasetName::Dukemtmc, dir.path(), ReadOptions::default()).unwrap();
    assert_eq!(d.train.len(), 2);
    assert_eq!(d.gallery[1].camid, 7);

    let cuhk = dir.path().join("cuhk03-np");
    for kind in ["labeled", "detected"] {
        touch(
            &cuhk.join(kind).join("bounding_box_train"),
            &["0001_c1_1.png", "0001_c2_6.png"],
        );
        touch(&cuhk.join(kind).join("query"), &["0010_c1_1.png"]);
        touch(
            &cuhk.join(kind).join("bounding_box_test"),
            &["0010_c2_7.png"],
        );
    }
    touch(
        &cuhk.join("detected").join("bounding_box_train"),
        &["0002_c1_2.png"],
    );
    let labeled = read_dataset(
        DatasetName::Cuhk03Labeled,
        dir.path(),
        ReadOptions::default(),
    )
    .unwrap();
    let detected = read_dataset(
        DatasetName::Cuhk03Detected,
        dir.path(),
        ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(labeled.train.len(), 2);
    assert_eq!(detected.train.len(), 3);
    assert!(detected.root.ends_with("cuhk03-np/detected"));
}

#[test]
fn msmt17_v1_lists_and_v2_folders() {
    let dir = tempfile::tempdir().unwrap();
    for (top, train, test) in [
        ("MSMT17_V1", "train", "test"),
        ("MSMT17_V2", "mask_train_v2", "mask_test_v2"),
    ] {
        let base = dir.path().join(top);
        // Each list, and every file it names (a list entry without its file is an error).
        let lists = [
            (
                "list_train.txt",
                train,
                "0000/0000_000_01_0303morning_0015_0.jpg 0\n0001/0001_000_14_0303morning_0015_1.jpg 1\n",
            ),
            (
                "list_val.txt",
                train,
                "0002/0002_003_15_0303noon_0005_0.jpg 2\n",
            ),
            (
                "list_query.txt",
                test,
                "0000/0000_010_03_0303afternoon_0020_0.jpg 0\n",
            ),
            (
                "list_gallery.txt",
                test,
                "0000/0000_011_05_0303afternoon_0030_0.jpg 0\n\n",
            ),
        ];
        for (list, folder, text) in lists {
            std::fs::create_dir_all(&base).unwrap();
            std::fs::write(base.join(list), text).unwrap();
            for rel in text.lines().filter_map(|l| l.split_whitespace().next()) {
                let path = base.join(folder).join(rel);
                touch(
                    path.parent().unwrap(),
                    &[path.file_name().unwrap().to_str().unwrap()],
                );
            }
        }
        let d = read_dataset(DatasetName::Msmt17, &base, ReadOptions::default()).unwrap();
        assert_eq!(d.train.len(), 2);
        assert_eq!(
            (d.train[1].pid, d.train[1].camid),
            (1, 13),
            "camera = third field - 1"
        );
        assert_eq!(
            d.query[0].path,
            base.join(test)
                .join("0000/0000_010_03_0303afternoon_0020_0.jpg")
        );
        assert_eq!(d.gallery[0].camid, 4);
        let combined = read_dataset(
            DatasetName::Msmt17,
            &base,
            ReadOptions {
                msmt17_combine_val: true,
            },
        )
        .unwrap();
        assert_eq!(combined.train.len(), 3);
        assert_eq!(combined.num_train_ids(), 3);
        for (entry, problem) in [
            (
                "0000/0000_010_03_0303afternoon_0099_0.jpg 0",
                "does not exist",
            ),
            (
                "../train/0000/0000_000_01_0303morning_0015_0.jpg 0",
                "leaves the image folder",
            ),
        ] {
            std::fs::write(base.join("list_gallery.txt"), format!("{entry}\n")).unwrap();
            let err = read_dataset(DatasetName::Msmt17, &base, ReadOptions::default()).unwrap_err();
            assert!(
                matches!(err, DataError::BadListLine { line: 1, .. })
                    && err.to_string().contains(problem),
                "{err}"
            );
        }
        std::fs::write(base.join("list_query.txt"), "0000/0000_010_03.jpg\n").unwrap();
        let err = read_dataset(DatasetName::Msmt17, &base, ReadOptions::default()).unwrap_err();
        assert!(
            matches!(err, DataError::BadListLine { line: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("list_query.txt"));
    }
}

#[test]
fn custom_layout() {
    let dir = tempfile::tempdir().unwrap();
    touch(
        &dir.path().join("train"),
        &["0100_c1_a.jpg", "0200_c2_b.jpg"],
    );
    touch(&dir.path().join("query"), &["0300_c1_x.jpg"]);
    touch(&dir.path().join("gallery"), &["0300_c3_y.jpg"]);
    let d = read_dataset(DatasetName::Custom, dir.path(), ReadOptions::default()).unwrap();
    assert_eq!(
        d.train.iter().map(|r| r.pid).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(d.check_known_counts().is_empty());
}

#[test]
fn bad_trees_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Missing folder: names the expected path and the layout.
    let err =
        read_dataset(DatasetName::Market1501, dir.path(), ReadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::MissingSplit { .. }), "{msg}");
    assert!(msg.contains("bounding_box_train"), "{msg}");
    // Root that does not exist.
    let err = read_dataset(
        DatasetName::Market1501,
        &dir.path().join("nope"),
        ReadOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            DataError::DatasetNotFound {
                dataset: DatasetName::Market1501,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("nope") && !msg.contains("cargo xtask"),
        "{msg}"
    );
    // A name that does not parse: the file is named.
    market_tree(dir.path());
    touch(&dir.path().join("query"), &["person.jpg"]);
    let err =
        read_dataset(DatasetName::Market1501, dir.path(), ReadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("person.jpg"), "{err}");
    std::fs::remove_file(dir.path().join("query/person.jpg")).unwrap();
    // An empty split.
    for f in std::fs::read_dir(dir.path().join("query")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let err =
        read_dataset(DatasetName::Market1501, dir.path(), ReadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::EmptySplit { .. }), "{err}");
}

#[test]
fn synthetic_dataset_is_market_readable_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig {
        train_ids: 12,
        test_ids: 10,
        cameras: 4,
        seed: 3,
        preset: SynthPreset::Easy,
    };
    let out = dir.path().join("synth");
    let s = generate(&config, &out).unwrap();
    let d = read_dataset(DatasetName::Market1501, &out, ReadOptions::default()).unwrap();
    let summary = d.summary();
    assert_eq!(summary.train.ids, 12);
    assert_eq!(summary.train.images, s.train_images);
    assert_eq!(summary.query.images, s.query_images);
    assert_eq!(
        summary.gallery.images,
        s.gallery_images - s.junk,
        "junk is dropped"
    );
    assert_eq!(
        summary.gallery.ids, 11,
        "10 test identities + the distractor id"
    );
    assert!(s.distractors > 0 && s.junk > 0);
    assert!(
        d.check_known_counts().is_empty(),
        "not the official folder: no count check"
    );
    // Every query has a correct match in another camera.
    for q in &d.query {
        assert!(
            d.gallery
                .iter()
                .any(|g| g.pid == q.pid && g.camid != q.camid),
            "{q:?}"
        );
    }
    // 128 x 64 JPEGs that decode.
    let img = image::open(&d.train[0].path).unwrap();
    assert_eq!((img.width(), img.height()), (64, 128));

    // Same seed, same bytes; another seed, other images.
    let again = dir.path().join("again");
    generate(&config, &again).unwrap();
    let other = dir.path().join("other");
    generate(
        &SynthConfig {
            seed: 4,
            ..config.clone()
        },
        &other,
    )
    .unwrap();
    let first = std::fs::read(&d.train[0].path).unwrap();
    let name = d.train[0].path.file_name().unwrap();
    assert_eq!(
        first,
        std::fs::read(again.join("bounding_box_train").join(name)).unwrap()
    );
    let other_files: Vec<_> = std::fs::read_dir(other.join("bounding_box_train"))
        .unwrap()
        .collect();
    assert!(!other_files.is_empty());
    assert_ne!(
        first,
        std::fs::read(other_files[0].as_ref().unwrap().path()).unwrap_or_default()
    );
    // An existing folder is refused; no temporary folders are left behind.
    assert!(generate(&config, &out).is_err());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".synth-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Bad settings.
    assert!(
        generate(
            &SynthConfig {
                cameras: 1,
                ..config.clone()
            },
            &dir.path().join("x")
        )
        .is_err()
    );
}

#[test]
fn custom_names_must_start_with_the_identity_and_splits_must_be_folders() {
    let dir = tempfile::tempdir().unwrap();
    touch(
        &dir.path().join("train"),
        &["1e3_c1_x.jpg", "0001_c2_y.jpg"],
    );
    touch(&dir.path().join("query"), &["0001_c1_q.jpg"]);
    touch(&dir.path().join("gallery"), &["0001_c2_g.jpg"]);
    let err = read_dataset(DatasetName::Custom, dir.path(), ReadOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DataError::BadFileName { path, .. } if path.ends_with("1e3_c1_x.jpg")),
        "{err}"
    );
    // Market-1501 keeps torchreid's pattern (it searches the whole name).
    assert_eq!(
        scal_data::parse_market_name(Path::new("1e3_c1_x.jpg")).unwrap(),
        (3, 0)
    );
    std::fs::remove_file(dir.path().join("train/1e3_c1_x.jpg")).unwrap();
    assert!(read_dataset(DatasetName::Custom, dir.path(), ReadOptions::default()).is_ok());

    std::fs::remove_dir_all(dir.path().join("query")).unwrap();
    std::fs::write(dir.path().join("query"), b"a file").unwrap();
    let err = read_dataset(DatasetName::Custom, dir.path(), ReadOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DataError::NotAFolder { path } if path.ends_with("query")),
        "{err}"
    );
    assert!(err.to_string().contains("is not a folder"), "{err}");
}

/// SHA-256 over every file of `root` in sorted order: relative path, a zero byte, contents.
fn tree_digest(root: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut names: Vec<(String, std::path::PathBuf)> = files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            (rel, p)
        })
        .collect();
    names.sort();
    let mut hasher = Sha256::new();
    for (rel, path) in names {
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(path).unwrap());
    }
    format!("{:x}", hasher.finalize())
}

#[test]
fn the_easy_preset_writes_the_files_it_always_wrote() {
    // Digest of the files written before the hard preset existed (commit 5dc6625), computed by
    // the same rule in Python: the default dataset, and so `cargo xtask train`'s numbers, stay.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("easy");
    let config = SynthConfig {
        train_ids: 12,
        test_ids: 10,
        cameras: 4,
        seed: 3,
        preset: SynthPreset::Easy,
    };
    generate(&config, &out).unwrap();
    assert_eq!(
        tree_digest(&out),
        "8536a73f605ee9552b3179bc947619e9baf09734fba02d13ac7c08c8d1069a89"
    );
    assert!(scal_data::synth::read_manifest(&out).unwrap().is_none());
    scal_data::synth::check_preset(&out, SynthPreset::Easy).unwrap();
    let err = scal_data::synth::check_preset(&out, SynthPreset::HardV1).unwrap_err();
    assert!(err.to_string().contains("hard-v1"), "{err}");
}

#[test]
fn the_hard_preset_is_deterministic_market_readable_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig {
        train_ids: 12,
        test_ids: 10,
        cameras: 4,
        seed: 3,
        preset: SynthPreset::HardV1,
    };
    let out = dir.path().join("hard");
    let s = generate(&config, &out).unwrap();
    let again = dir.path().join("again");
    generate(&config, &again).unwrap();
    assert_eq!(
        tree_digest(&out),
        tree_digest(&again),
        "same seed, same bytes"
    );
    let other = dir.path().join("other");
    generate(
        &SynthConfig {
            seed: 4,
            ..config.clone()
        },
        &other,
    )
    .unwrap();
    assert_ne!(tree_digest(&out), tree_digest(&other));
    let easy = dir.path().join("easy");
    generate(
        &SynthConfig {
            preset: SynthPreset::Easy,
            ..config.clone()
        },
        &easy,
    )
    .unwrap();
    assert_ne!(tree_digest(&out), tree_digest(&easy));

    let d = read_dataset(DatasetName::Market1501, &out, ReadOptions::default()).unwrap();
    let summary = d.summary();
    assert_eq!(summary.train.ids, 12);
    assert_eq!(summary.train.images, s.train_images);
    assert_eq!(summary.query.images, s.query_images);
    assert_eq!(summary.gallery.images, s.gallery_images - s.junk);
    assert!(s.distractors > 0);
    let img = image::open(&d.query[0].path).unwrap();
    assert_eq!((img.width(), img.height()), (64, 128));

    let manifest = scal_data::synth::read_manifest(&out).unwrap().unwrap();
    assert_eq!(manifest.preset, SynthPreset::HardV1);
    assert_eq!((manifest.train_ids, manifest.seed), (12, 3));
    scal_data::synth::check_preset(&out, SynthPreset::HardV1).unwrap();
    assert!(scal_data::synth::check_preset(&out, SynthPreset::Easy).is_err());
    // A damaged manifest names its file.
    std::fs::write(out.join("synth.json"), "{not json").unwrap();
    let err = scal_data::synth::check_preset(&out, SynthPreset::HardV1).unwrap_err();
    assert!(err.to_string().contains("synth.json"), "{err}");
}

#[test]
fn presets_parse_from_their_names() {
    assert_eq!("hard".parse::<SynthPreset>().unwrap(), SynthPreset::HardV1);
    assert_eq!(
        "hard-v1".parse::<SynthPreset>().unwrap(),
        SynthPreset::HardV1
    );
    assert_eq!("easy".parse::<SynthPreset>().unwrap(), SynthPreset::Easy);
    assert!("medium".parse::<SynthPreset>().is_err());
    assert_eq!(
        SynthPreset::from_dataset_name("synth-hard"),
        Some(SynthPreset::HardV1)
    );
    assert_eq!(
        serde_json::to_string(&SynthPreset::HardV1).unwrap(),
        "\"hard-v1\""
    );
    assert_eq!(
        serde_json::from_str::<SynthPreset>("\"hard\"").unwrap(),
        SynthPreset::HardV1
    );
}
