use ndarray::{Array2, s};

use super::*;

/// Seeded features: `ids` identity centres plus noise, rows in identity order modulo `ids`.
fn features(rows: usize, dim: usize, ids: usize, seed: u64) -> Array2<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let centres: Vec<f32> = (0..ids * dim).map(|_| 2.0 * next()).collect();
    Array2::from_shape_fn((rows, dim), |(r, c)| {
        centres[(r % ids) * dim + c] + 0.3 * next()
    })
}

fn labels(rows: usize, ids: usize) -> GalleryLabels {
    GalleryLabels {
        pids: (0..rows).map(|r| (r % ids) as i64).collect(),
        camids: (0..rows).map(|r| (r / ids % 3) as i64).collect(),
    }
}

fn built(rows: usize, dim: usize) -> GalleryIndex {
    let mut index =
        GalleryIndex::new(Engine::Exact, dim, FeatureSource::Features).expect("an exact index");
    let new = NewRows {
        labels: Some(labels(rows, 7)),
        files: Vec::new(),
    };
    index
        .add(features(rows, dim, 7, 1).view(), new, 64, &mut |_| {})
        .unwrap();
    index
}

/// Every row's distance to `q`, sorted as the exact engine ranks (distance, then row).
fn brute_force(
    gallery: &Array2<f32>,
    q: ndarray::ArrayView1<'_, f32>,
    keep: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut d: Vec<(usize, f32)> = gallery
        .rows()
        .into_iter()
        .enumerate()
        .filter(|(r, _)| keep(*r))
        .map(|(r, row)| (r, row.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum()))
        .collect();
    d.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    d.into_iter().map(|(r, _)| r).collect()
}

#[test]
fn exact_search_is_the_full_ranking_with_the_protocols_exclusion() {
    let gallery = features(10_000, 16, 7, 1);
    let index = built(10_000, 16);
    let queries = features(5, 16, 7, 2);
    let l = labels(10_000, 7);
    for (q, query) in queries.rows().into_iter().enumerate() {
        let own = (q as i64 % 7, 1);
        let expected = brute_force(&gallery, query, |r| {
            !(l.pids[r] == own.0 && l.camids[r] == own.1)
        });
        let found = index.search(query, 25, Some(own));
        let rows: Vec<usize> = found.iter().map(|n| n.row).collect();
        assert!(
            rows == expected[..25],
            "query {q}: {rows:?} against {:?}",
            &expected[..25]
        );
        assert!(
            found
                .iter()
                .all(|n| !(l.pids[n.row] == own.0 && l.camids[n.row] == own.1))
        );
        let d0: f32 = gallery
            .row(rows[0])
            .iter()
            .zip(query)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        assert!((found[0].distance - d0.sqrt()).abs() < 1e-4);
        // Without the query's labels nothing is excluded.
        let all: Vec<usize> = index
            .search(query, 25, None)
            .iter()
            .map(|n| n.row)
            .collect();
        assert!(all == brute_force(&gallery, query, |_| true)[..25]);
    }
}

#[test]
fn an_index_reads_back_as_written_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gallery.scalidx");
    let index = built(300, 8);
    index.write(&path).unwrap();
    let back = GalleryIndex::open(&path).unwrap();
    assert_eq!(back.header(), index.header());
    let q = features(1, 8, 7, 5);
    assert_eq!(
        back.search(q.row(0), 10, Some((1, 0))),
        index.search(q.row(0), 10, Some((1, 0)))
    );
    // Nothing but the index in the folder: the staging file was renamed into place.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

fn problem_of(result: Result<GalleryIndex, InferError>) -> String {
    match result {
        Err(InferError::Index { problem, .. }) => problem,
        other => panic!("expected a damaged index, got {other:?}"),
    }
}

#[test]
fn a_damaged_truncated_or_foreign_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.scalidx");
    built(50, 4).write(&path).unwrap();
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    assert!(problem_of(GalleryIndex::open(&path)).contains("checksum"));

    std::fs::write(&path, &good[..good.len() - 100]).unwrap();
    assert!(problem_of(GalleryIndex::open(&path)).contains("checksum"));
    std::fs::write(&path, &good[..20]).unwrap();
    assert!(problem_of(GalleryIndex::open(&path)).contains("truncated"));

    std::fs::write(
        &path,
        b"\x93NUMPY not an index at all, but long enough to be read",
    )
    .unwrap();
    assert!(
        matches!(GalleryIndex::open(&path), Err(InferError::NotAnIndex { path: p }) if p == path)
    );

    // A file of a later format, checksummed as such, names the format.
    let mut later = good[..good.len() - 32].to_vec();
    later[8..12].copy_from_slice(&2u32.to_le_bytes());
    let digest = Sha256::digest(&later);
    later.extend_from_slice(&digest);
    std::fs::write(&path, &later).unwrap();
    assert!(problem_of(GalleryIndex::open(&path)).contains("format is 2"));

    // A header that lies about the row count, checksummed: the payload's size gives it away.
    let index = built(50, 4);
    let mut header = index.header().clone();
    header.count = 49;
    header.labels = None;
    let lying = GalleryIndex {
        header,
        engine: Box::new(ExactSearch::from_payload(&index.engine.payload(), 50, 4).unwrap()),
    };
    lying.write(&path).unwrap();
    assert!(problem_of(GalleryIndex::open(&path)).contains("payload holds"));

    let missing = dir.path().join("none.scalidx");
    assert!(
        matches!(GalleryIndex::open(&missing), Err(InferError::Io { path: p, .. }) if p == missing)
    );
}

#[test]
fn features_of_another_model_or_width_are_refused_naming_both() {
    let index = built(20, 8);
    let path = Path::new("g.scalidx");
    let other = FeatureSource::Checkpoint {
        sha256: "ab".repeat(32),
        size: (256, 128),
        flip: false,
    };
    let e = index.check_compatible(path, &other, 8).unwrap_err();
    assert!(matches!(&e, InferError::IndexSource { .. }), "{e}");
    assert!(
        e.to_string().contains("g.scalidx") && e.to_string().contains("256x128"),
        "{e}"
    );
    let e = index
        .check_compatible(path, &FeatureSource::Features, 16)
        .unwrap_err();
    assert!(
        matches!(
            e,
            InferError::IndexDimension {
                index: 8,
                given: 16,
                ..
            }
        ),
        "{e}"
    );
    index
        .check_compatible(path, &FeatureSource::Features, 8)
        .unwrap();
}

#[test]
fn added_rows_keep_labels_and_files_only_while_every_row_has_them() {
    let mut index = built(30, 4);
    let more = features(10, 4, 7, 3);
    index
        .add(
            more.view(),
            NewRows {
                labels: Some(labels(10, 7)),
                files: Vec::new(),
            },
            3,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(index.len(), 40);
    assert_eq!(index.header().labels.as_ref().unwrap().pids.len(), 40);
    let mut seen = Vec::new();
    index
        .add(more.slice(s![..5, ..]), NewRows::default(), 2, &mut |n| {
            seen.push(n)
        })
        .unwrap();
    assert_eq!(seen, vec![2, 4, 5]);
    assert_eq!(index.header().labels, None);
    // The new rows are found: the query is row 40's own feature.
    assert_eq!(index.search(more.row(0), 1, None)[0].distance, 0.0);

    let wide = features(2, 5, 7, 4);
    let e = index
        .add(wide.view(), NewRows::default(), 8, &mut |_| {})
        .unwrap_err();
    assert!(
        e.to_string().contains("5-d") && e.to_string().contains("4-d"),
        "{e}"
    );
    let mut nan = features(2, 4, 7, 4);
    nan[[1, 2]] = f32::NAN;
    let e = index
        .add(nan.view(), NewRows::default(), 8, &mut |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("row 1"), "{e}");
    assert_eq!(index.len(), 45, "a refused add adds nothing");
}

/// An index of `gallery` (labels of 7 identities) searched by `engine`.
fn built_with(engine: Engine, gallery: &Array2<f32>) -> GalleryIndex {
    let mut index =
        GalleryIndex::new(engine, gallery.ncols(), FeatureSource::Features).expect("an index");
    let new = NewRows {
        labels: Some(labels(gallery.nrows(), 7)),
        files: Vec::new(),
    };
    index.add(gallery.view(), new, 500, &mut |_| {}).unwrap();
    index
}

/// Mean share of the exact top `k` (with the protocol's exclusion) that `index` returns.
fn recall_at(index: &GalleryIndex, gallery: &Array2<f32>, queries: &Array2<f32>, k: usize) -> f64 {
    let l = labels(gallery.nrows(), 7);
    let mut found = 0;
    for (q, query) in queries.rows().into_iter().enumerate() {
        let own = (q as i64 % 7, 1);
        let truth = brute_force(gallery, query, |r| (l.pids[r], l.camids[r]) != own);
        let got: Vec<usize> = index
            .search(query, k, Some(own))
            .iter()
            .map(|n| n.row)
            .collect();
        assert!(
            got.iter().all(|&r| (l.pids[r], l.camids[r]) != own),
            "query {q}: the protocol's exclusion broken"
        );
        found += truth[..k].iter().filter(|r| got.contains(r)).count();
    }
    found as f64 / (k * queries.nrows()) as f64
}

#[test]
fn hnsw_finds_the_exact_neighbours_with_the_protocols_exclusion() {
    // Identity centres (700) plus noise: each query's neighbours are its identity's rows.
    let gallery = features(6_000, 32, 700, 11);
    let queries = features(60, 32, 700, 12);
    for engine in [Engine::Hnsw, Engine::HnswF16] {
        let index = built_with(engine, &gallery);
        assert_eq!(index.len(), 6_000);
        let recall = recall_at(&index, &gallery, &queries, 10);
        assert!(recall >= 0.95, "{}: recall@10 {recall}", engine.as_str());
        // The distances are Euclidean (f16 storage rounds them a little).
        let q = queries.row(0);
        let first = index.search(q, 1, None)[0];
        let d: f32 = gallery
            .row(first.row)
            .iter()
            .zip(q)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt();
        assert!(
            (first.distance - d).abs() < 1e-2 * d.max(1.0),
            "{} vs {d}",
            first.distance
        );
    }
}

#[test]
fn a_wider_search_expansion_does_not_lose_recall() {
    let gallery = features(6_000, 32, 700, 13);
    let queries = features(60, 32, 700, 14);
    let mut index = built_with(Engine::Hnsw, &gallery);
    index.set_search_expansion(10);
    let narrow = recall_at(&index, &gallery, &queries, 10);
    index.set_search_expansion(512);
    let wide = recall_at(&index, &gallery, &queries, 10);
    assert!(
        wide >= narrow && wide >= 0.95,
        "ef 10: {narrow}, ef 512: {wide}"
    );
}

#[test]
fn an_hnsw_index_reads_back_grows_and_refuses_a_lying_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gallery.scalidx");
    let gallery = features(2_000, 16, 200, 21);
    let index = built_with(Engine::HnswF16, &gallery.slice(s![..1_500, ..]).to_owned());
    index.write(&path).unwrap();
    let mut back = GalleryIndex::open(&path).unwrap();
    assert_eq!(back.header(), index.header());
    assert_eq!(back.header().engine, Engine::HnswF16);
    let q = features(1, 16, 200, 22);
    assert_eq!(
        back.search(q.row(0), 10, None),
        index.search(q.row(0), 10, None)
    );
    // Rows added after reading back are searchable, numbered after the first ones.
    let rest = gallery.slice(s![1_500.., ..]);
    let new = NewRows {
        labels: Some(GalleryLabels {
            pids: (1_500..2_000).map(|r| (r % 7) as i64).collect(),
            camids: (1_500..2_000).map(|r| (r / 7 % 3) as i64).collect(),
        }),
        files: Vec::new(),
    };
    back.add(rest, new, 100, &mut |_| {}).unwrap();
    assert_eq!(back.len(), 2_000);
    let hit = back.search(gallery.row(1_900), 1, None)[0];
    assert_eq!((hit.row, hit.distance), (1_900, 0.0));
    // A header that claims fewer rows than the graph holds is refused by name, even with
    // a checksum that matches (a file written by a careless or hostile tool).
    let mut lying = back.header().clone();
    lying.count = 1_999;
    lying.labels = None;
    let forged = GalleryIndex {
        header: lying,
        engine: Engine::HnswF16
            .read_payload(&back.engine.payload(), 2_000, 16)
            .unwrap(),
    };
    forged.write(&path).unwrap();
    let problem = problem_of(GalleryIndex::open(&path));
    assert!(
        problem.contains("2000 rows") && problem.contains("1999"),
        "{problem}"
    );
}
