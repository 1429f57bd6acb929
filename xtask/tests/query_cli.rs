//! `cargo xtask query`: a trained checkpoint ranks a folder of photos for a query photo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> (String, String) {
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (
        String::from_utf8(o.stdout.clone()).unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn fails(o: &Output) -> String {
    assert!(!o.status.success(), "unexpected success");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tiny trained run's `last/`, a gallery folder of arbitrary names (copied from the
/// dataset's gallery, renamed), and one query image.
fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (data, config) = common::tiny_setup(
        dir,
        serde_json::json!({"optim": {"epochs": 1, "milestones": []}, "eval": {"every_epochs": 1}}),
    );
    let runs = dir.join("runs");
    ok(&xtask(&[
        "train",
        "--config",
        &config,
        "--runs",
        runs.to_str().unwrap(),
        "--name",
        "q",
        "--no-progress",
    ]));
    let gallery = dir.join("my photos");
    std::fs::create_dir(&gallery).unwrap();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(Path::new(&data).join("bounding_box_test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sources.sort();
    for (i, src) in sources.iter().take(20).enumerate() {
        std::fs::copy(src, gallery.join(format!("photo {i:02}.jpg"))).unwrap();
    }
    let query = std::fs::read_dir(Path::new(&data).join("query"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    (runs.join("q/last"), gallery, query)
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
#[allow(clippy::too_many_lines)] // one user session, command after command
fn query_ranks_the_gallery_as_extract_does_and_caches_it() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, gallery, query) = setup(dir.path());
    let cache = dir.path().join("cache");
    let args = |top: &str| -> Vec<String> {
        [
            "query",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--gallery",
            gallery.to_str().unwrap(),
            "--image",
            query.to_str().unwrap(),
            "--top",
            top,
            "--json",
            "--cache",
            cache.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |a: &[String]| xtask(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (stdout, stderr) = ok(&run(&args("5")));
    assert!(stderr.contains("embedding 20 gallery images"), "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 1, "one object per query");
    assert_eq!(lines[0]["query"], query.to_str().unwrap());
    let matches = lines[0]["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 5);

    // The same ranking as extract's features and Euclidean distances.
    let g_npy = dir.path().join("g.npy");
    ok(&xtask(&[
        "extract",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--images",
        gallery.to_str().unwrap(),
        "--out",
        g_npy.to_str().unwrap(),
    ]));
    let q_dir = dir.path().join("q");
    std::fs::create_dir(&q_dir).unwrap();
    std::fs::copy(&query, q_dir.join("q.jpg")).unwrap();
    let q_npy = dir.path().join("q.npy");
    ok(&xtask(&[
        "extract",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--images",
        q_dir.to_str().unwrap(),
        "--out",
        q_npy.to_str().unwrap(),
    ]));
    let g: ndarray::Array2<f32> = ndarray_npy::read_npy(&g_npy).unwrap();
    let q: ndarray::Array2<f32> = ndarray_npy::read_npy(&q_npy).unwrap();
    let names = std::fs::read_to_string(dir.path().join("g.names.txt")).unwrap();
    let names: Vec<&str> = names.lines().collect();
    let mut expected: Vec<(f32, &str)> = g
        .rows()
        .into_iter()
        .zip(&names)
        .map(|(row, name)| {
            let d2: f32 = row
                .iter()
                .zip(q.row(0))
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            (d2.sqrt(), *name)
        })
        .collect();
    expected.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (m, (d, name)) in matches.iter().zip(&expected) {
        assert!(m["file"].as_str().unwrap().ends_with(name), "{m} vs {name}");
        assert!(
            (m["distance"].as_f64().unwrap() as f32 - d).abs() < 1e-5,
            "{m} vs {d}"
        );
    }

    // A second query against the same gallery reads the cache; the gallery is untouched.
    let (again, stderr) = ok(&run(&args("5")));
    assert!(stderr.contains("from the cache"), "{stderr}");
    assert_eq!(json_lines(&again), lines);
    assert_eq!(
        std::fs::read_dir(&gallery).unwrap().count(),
        20,
        "nothing written in the gallery"
    );
    // A damaged cache entry is named and recomputed, not an error every time (W8).
    let npy = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "npy"))
        .unwrap();
    let good: ndarray::Array2<f32> = ndarray_npy::read_npy(&npy).unwrap();
    let mut nan = good.clone();
    nan[[5, 0]] = f32::NAN;
    let narrow = good.slice(ndarray::s![.., ..10]).to_owned();
    for (damaged, expected) in [(nan, "non-finite"), (narrow, "were expected")] {
        ndarray_npy::write_npy(&npy, &damaged).unwrap();
        let (rerun, stderr) = ok(&run(&args("5")));
        assert!(
            stderr.contains("cannot be used")
                && stderr.contains(expected)
                && stderr.contains(npy.to_str().unwrap())
                && stderr.contains("embedding 20 gallery images"),
            "{stderr}"
        );
        assert_eq!(json_lines(&rerun), lines);
    }
    let (_, stderr) = ok(&run(&args("5")));
    assert!(stderr.contains("from the cache"), "rewritten: {stderr}");
    // Values changed behind the cache's back (rows swapped: same shape, all finite) are
    // caught by the recorded SHA-256 (B5).
    let mut swapped = good.clone();
    for c in 0..swapped.ncols() {
        swapped.swap([0, c], [1, c]);
    }
    ndarray_npy::write_npy(&npy, &swapped).unwrap();
    let (rerun, stderr) = ok(&run(&args("5")));
    assert!(stderr.contains("SHA-256 differs"), "{stderr}");
    assert_eq!(json_lines(&rerun), lines);
    // Killed between writing an entry's .npy and its .json (trial 4, F25): the .npy alone
    // is not used; the gallery is embedded again and the entry completed.
    let record = npy.with_extension("json");
    assert!(record.is_file(), "the entry's record sits beside it");
    std::fs::remove_file(&record).unwrap();
    let (rerun, stderr) = ok(&run(&args("5")));
    assert!(
        !stderr.contains("from the cache") && stderr.contains("embedding 20 gallery images"),
        "{stderr}"
    );
    assert_eq!(json_lines(&rerun), lines);
    assert!(record.is_file(), "the entry is complete again");
    let (_, stderr) = ok(&run(&args("5")));
    assert!(stderr.contains("from the cache"), "{stderr}");
    // A cache that cannot be written is a warning; the ranking is printed (W9).
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"a file where the cache folder would go").unwrap();
    let mut unwritable = args("5");
    let at = unwritable.iter().position(|a| a == "--cache").unwrap();
    unwritable[at + 1] = blocker.join("cache").to_str().unwrap().to_string();
    let (ranked, stderr) = ok(&run(&unwritable));
    assert!(stderr.contains("could not be cached"), "{stderr}");
    assert_eq!(json_lines(&ranked), lines);

    // A changed gallery (one more photo) is embedded again, and the new photo ranks.
    std::fs::copy(&query, gallery.join("the query itself.jpg")).unwrap();
    let (changed, stderr) = ok(&run(&args("3")));
    assert!(stderr.contains("embedding 21 gallery images"), "{stderr}");
    let first = &json_lines(&changed)[0]["matches"][0];
    assert!(
        first["file"]
            .as_str()
            .unwrap()
            .ends_with("the query itself.jpg"),
        "{first}"
    );
    assert!(first["distance"].as_f64().unwrap() < 1e-3, "{first}");

    // The page.
    let html = dir.path().join("page.html");
    let mut with_html = args("3");
    with_html.extend(["--html".to_string(), html.to_str().unwrap().to_string()]);
    ok(&run(&with_html));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("page.png") && page.contains("the query itself.jpg"),
        "{page}"
    );
    let png = image::open(dir.path().join("page.png")).unwrap();
    assert!(
        png.width() > png.height(),
        "one row: the query and three matches"
    );
}

/// `query` of one image with its cache under `cache`.
#[test]
fn an_index_of_the_gallery_ranks_as_the_folder_and_refuses_another_model_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, gallery, query) = setup(dir.path());
    let (ck, q) = (checkpoint.to_str().unwrap(), query.to_str().unwrap());
    let index = dir.path().join("photos.scalidx");
    let i = index.to_str().unwrap();
    let (stdout, _) = ok(&xtask(&[
        "index",
        "build",
        "--checkpoint",
        ck,
        "--gallery",
        gallery.to_str().unwrap(),
        "--out",
        i,
        "--engine",
        "exact",
        "--no-progress",
    ]));
    assert!(stdout.contains("20 gallery rows"), "{stdout}");
    let cache = dir.path().join("cache");
    let (from_folder, _) = ok(&xtask(&[
        "query",
        "--checkpoint",
        ck,
        "--gallery",
        gallery.to_str().unwrap(),
        "--image",
        q,
        "--top",
        "8",
        "--json",
        "--cache",
        cache.to_str().unwrap(),
    ]));
    let (from_index, _) = ok(&xtask(&[
        "query",
        "--checkpoint",
        ck,
        "--index",
        i,
        "--image",
        q,
        "--top",
        "8",
        "--json",
    ]));
    let (a, b) = (json_lines(&from_folder), json_lines(&from_index));
    let files = |v: &serde_json::Value| -> Vec<String> {
        v["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["file"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(files(&a[0]), files(&b[0]));
    for (x, y) in a[0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b[0]["matches"].as_array().unwrap())
    {
        let (x, y) = (
            x["distance"].as_f64().unwrap(),
            y["distance"].as_f64().unwrap(),
        );
        assert!((x - y).abs() < 1e-4, "{x} against {y}");
    }
    // Flip-averaged queries against an index built without flip: refused, naming both.
    let e = fails(&xtask(&[
        "query",
        "--checkpoint",
        ck,
        "--index",
        i,
        "--image",
        q,
        "--flip",
    ]));
    assert!(
        e.contains("photos.scalidx") && e.contains("flip-averaged"),
        "{e}"
    );
}

fn query_one(checkpoint: &Path, gallery: &Path, image: &Path, cache: &Path) -> Output {
    query_with(checkpoint, gallery, image, cache, &[])
}

/// [`query_one`] with more arguments.
fn query_with(
    checkpoint: &Path,
    gallery: &Path,
    image: &Path,
    cache: &Path,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "query",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--gallery",
        gallery.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    xtask(&args)
}

#[test]
fn an_empty_gallery_and_an_unreadable_query_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, gallery, query) = setup(dir.path());
    let cache = dir.path().join("cache");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = fails(&query_one(&checkpoint, &empty, &query, &cache));
    assert!(err.contains(empty.to_str().unwrap()), "{err}");
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, b"not a jpeg").unwrap();
    let err = fails(&query_one(&checkpoint, &gallery, &bad, &cache));
    assert!(err.contains("broken.jpg"), "{err}");
    // A cache folder inside the gallery is refused.
    let err = fails(&query_one(
        &checkpoint,
        &gallery,
        &query,
        &gallery.join("cache"),
    ));
    assert!(err.contains("inside the gallery"), "{err}");
    assert!(
        !gallery.join("cache").exists(),
        "nothing is written into the gallery"
    );
    // A folder given as --image points at --queries (W13).
    let err = fails(&query_one(&checkpoint, &gallery, &gallery, &cache));
    assert!(
        err.contains("is a folder, not a photo") && err.contains("--queries"),
        "{err}"
    );

    // --html is checked before any work (W3-W6): nothing is written, no figure is left.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    for (html, expected) in [
        (dir.path().join("r.png"), "ending in .html"),
        (existing.clone(), "ending in .html"),
        (dir.path().join("no/such/folder/q.html"), "does not exist"),
        (gallery.join("result.html"), "inside the gallery"),
    ] {
        let extra = ["--html", html.to_str().unwrap()];
        let err = fails(&query_with(&checkpoint, &gallery, &query, &cache, &extra));
        assert!(err.contains(expected), "{}: {err}", html.display());
        assert!(
            !html.with_extension("png").exists() || html.extension().unwrap() == "png",
            "no figure left for {}",
            html.display()
        );
        assert!(!html.is_file(), "{} not written", html.display());
    }

    html_outputs_replace_only_their_own_and_stay_bounded(
        dir.path(),
        &checkpoint,
        &gallery,
        &query,
        &cache,
    );
    #[cfg(unix)]
    a_name_that_is_not_utf8_is_ranked_and_named(dir.path(), &checkpoint, &gallery, &query, &cache);
    a_sideways_phone_photo_is_turned_upright(dir.path(), &checkpoint, &gallery, &cache);

    // Files that are not images are named, not dropped silently (issue 29, W1).
    let phone = dir.path().join("phone");
    std::fs::create_dir(&phone).unwrap();
    for entry in std::fs::read_dir(&gallery).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, phone.join(path.file_name().unwrap())).unwrap();
    }
    for name in ["x.gif", "PHOTO.HEIC"] {
        std::fs::write(phone.join(name), b"not read").unwrap();
    }
    let (_, err) = ok(&query_one(&checkpoint, &phone, &query, &cache));
    assert!(
        err.contains("2 non-image entries") && err.contains("PHOTO.HEIC") && err.contains("x.gif"),
        "{err}"
    );
}

/// A gallery file whose name is not UTF-8 (W2): the query runs, `--json` writes the name
/// with U+FFFD and names it on stderr (the whole query failed after embedding, naming
/// nothing).
#[cfg(unix)]
fn a_name_that_is_not_utf8_is_ranked_and_named(
    dir: &Path,
    checkpoint: &Path,
    gallery: &Path,
    query: &Path,
    cache: &Path,
) {
    use std::os::unix::ffi::OsStrExt;
    let odd = dir.join("odd");
    std::fs::create_dir(&odd).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"bad\xff\xfename.jpg");
    std::fs::copy(query, odd.join(name)).unwrap();
    for entry in std::fs::read_dir(gallery).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, odd.join(path.file_name().unwrap())).unwrap();
    }
    let extra = ["--json", "--top", "30"];
    let (out, err) = ok(&query_with(checkpoint, &odd, query, cache, &extra));
    assert!(err.contains("is not a UTF-8 name"), "{err}");
    let lines = json_lines(&out);
    let files: Vec<&str> = lines[0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["file"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 21, "every gallery photo ranked");
    assert!(files.iter().any(|f| f.contains("bad\u{FFFD}")), "{files:?}");
}

/// `query --html` replaces only the page and figure it wrote (B1, B2), by a rename (W7), and
/// bounds the figure (W10).
fn html_outputs_replace_only_their_own_and_stay_bounded(
    dir: &Path,
    checkpoint: &Path,
    gallery: &Path,
    query: &Path,
    cache: &Path,
) {
    // The page's figure never replaces a file it did not write: the query photo itself
    // named like the page (issue 29, B1), or a page it did not write (B2).
    let own = dir.join("own");
    std::fs::create_dir(&own).unwrap();
    let photo = own.join("someone.png");
    image::open(query).unwrap().save(&photo).unwrap();
    let before = std::fs::read(&photo).unwrap();
    let page = own.join("someone.html");
    let extra = ["--html", page.to_str().unwrap()];
    let err = fails(&query_with(checkpoint, gallery, &photo, cache, &extra));
    assert!(
        err.contains("someone.png") && err.contains("would be replaced"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&photo).unwrap(),
        before,
        "the photo is intact"
    );
    assert!(!page.exists());
    let notes = own.join("notes.html");
    std::fs::write(&notes, "<p>my notes</p>").unwrap();
    let extra = ["--html", notes.to_str().unwrap()];
    let err = fails(&query_with(checkpoint, gallery, &photo, cache, &extra));
    assert!(
        err.contains("notes.html") && err.contains("not a page"),
        "{err}"
    );
    // Its own page and figure are replaced on a second run.
    let results = own.join("results.html");
    let extra = ["--html", results.to_str().unwrap()];
    ok(&query_with(checkpoint, gallery, &photo, cache, &extra));
    // The figure is replaced by a rename, not rewritten in place (W7: a full disk left a
    // truncated figure): a hard link to the first one keeps its bytes.
    let figure = own.join("results.png");
    let first = std::fs::read(&figure).unwrap();
    std::fs::hard_link(&figure, own.join("kept.png")).unwrap();
    let extra = ["--html", results.to_str().unwrap(), "--top", "1"];
    ok(&query_with(checkpoint, gallery, &photo, cache, &extra));
    assert_eq!(std::fs::read(own.join("kept.png")).unwrap(), first);
    assert_ne!(
        std::fs::read(&figure).unwrap(),
        first,
        "a new figure (one match)"
    );
    // The figure is bounded (W10): at most 50 query rows; the page lists every query.
    let many = dir.join("many");
    std::fs::create_dir(&many).unwrap();
    let page = own.join("many.html");
    let mut heights = Vec::new();
    for n in [50, 51] {
        for i in 0..n {
            std::fs::copy(query, many.join(format!("q{i:02}.jpg"))).unwrap();
        }
        ok(&xtask(&[
            "query",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--gallery",
            gallery.to_str().unwrap(),
            "--queries",
            many.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--top",
            "2",
            "--html",
            page.to_str().unwrap(),
        ]));
        heights.push(image::image_dimensions(own.join("many.png")).unwrap().1);
        let html = std::fs::read_to_string(&page).unwrap();
        assert_eq!(html.matches("<h2>").count(), n, "every query on the page");
        assert_eq!(html.contains("the first 50 queries"), n > 50);
    }
    assert_eq!(heights[0], heights[1], "51 queries draw 50 rows");
}

/// The query cache trusts neither a listing that only looks unchanged (B4) nor a cache
/// folder that a symbolic link puts inside the gallery (W12).
#[test]
fn a_swapped_photo_and_a_linked_cache_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, gallery, query) = setup(dir.path());
    let cache = dir.path().join("cache");
    // Photos swapped under the same names, sizes and modification times (an `mv` of two
    // equal-size BMPs, then their times restored) are not served from the cache (B4).
    let swap = dir.path().join("swap");
    std::fs::create_dir(&swap).unwrap();
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let write_bmp = |name: &str, seed: u32| {
        let mut state = seed;
        let img = image::RgbImage::from_fn(32, 64, |_, _| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            image::Rgb([(state >> 24) as u8, (state >> 16) as u8, (state >> 8) as u8])
        });
        img.save(swap.join(name)).unwrap();
    };
    let set_time = |name: &str| {
        let f = std::fs::File::options()
            .write(true)
            .open(swap.join(name))
            .unwrap();
        f.set_modified(when).unwrap();
    };
    for (i, name) in ["a.bmp", "b.bmp", "c.bmp"].into_iter().enumerate() {
        write_bmp(name, 7 + i as u32);
        set_time(name);
    }
    let top = |o: &Output| {
        let (out, _) = ok(o);
        out.lines().nth(1).unwrap_or_default().to_string()
    };
    let image = swap.join("a.bmp");
    let first = top(&query_one(&checkpoint, &swap, &image, &cache));
    let nearest = |line: &str| {
        let distance: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        line.ends_with("/a.bmp") && distance < 1e-2
    };
    assert!(nearest(&first), "the query finds itself: {first}");
    std::fs::rename(swap.join("a.bmp"), swap.join("t.bmp")).unwrap();
    std::fs::rename(swap.join("b.bmp"), swap.join("a.bmp")).unwrap();
    std::fs::rename(swap.join("t.bmp"), swap.join("b.bmp")).unwrap();
    for name in ["a.bmp", "b.bmp"] {
        set_time(name);
    }
    let after = top(&query_one(&checkpoint, &swap, &image, &cache));
    assert!(nearest(&after), "not the stale cache's b.bmp: {after}");

    // A cache folder reached through a link into the gallery is refused too (W12).
    #[cfg(unix)]
    {
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&gallery, &link).unwrap();
        let err = fails(&query_one(
            &checkpoint,
            &gallery,
            &query,
            &link.join("cache"),
        ));
        assert!(err.contains("inside the gallery"), "{err}");
        assert!(!gallery.join("cache").exists());
    }
}

/// JPEG bytes of `image` with an EXIF block saying Orientation = `orientation` (APP1 right
/// after the start-of-image marker, a big-endian TIFF header and one IFD entry).
fn jpeg_with_orientation(image: &image::RgbImage, orientation: u8) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(image)
        .unwrap();
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0, orientation, 0, 0]);
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\x00\x00");
    app1.extend_from_slice(&tiff);
    [&jpeg[..2], &app1[..], &jpeg[2..]].concat()
}

/// A phone photo stored sideways with EXIF Orientation = 6 (W11): `query` turns it upright,
/// so its own source ranks first and nearer than with `--ignore-exif`.
fn a_sideways_phone_photo_is_turned_upright(
    dir: &Path,
    checkpoint: &Path,
    gallery: &Path,
    cache: &Path,
) {
    let source = gallery.join("photo 03.jpg");
    let upright = image::open(&source).unwrap().to_rgb8();
    let sideways = image::imageops::rotate270(&upright);
    let phone = dir.join("phone-photo.jpg");
    std::fs::write(&phone, jpeg_with_orientation(&sideways, 6)).unwrap();
    let top = |extra: &[&str]| {
        let mut args = vec!["--json", "--top", "20"];
        args.extend_from_slice(extra);
        let (out, _) = ok(&query_with(checkpoint, gallery, &phone, cache, &args));
        let line = &json_lines(&out)[0];
        let matches = line["matches"].as_array().unwrap().clone();
        let distance_to_source = matches
            .iter()
            .find(|m| m["file"].as_str().unwrap().ends_with("photo 03.jpg"))
            .map(|m| m["distance"].as_f64().unwrap())
            .unwrap();
        (
            matches[0]["file"].as_str().unwrap().to_string(),
            distance_to_source,
        )
    };
    let (first, upright_distance) = top(&[]);
    let (_, stored_distance) = top(&["--ignore-exif"]);
    assert!(first.ends_with("photo 03.jpg"), "{first}");
    assert!(
        upright_distance < stored_distance,
        "upright {upright_distance}, as stored {stored_distance}"
    );
}
