//! Installing dataset archives (generated here, a malicious one included) and downloading
//! over HTTP from a local server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use scal_data::download::{Verification, digests, download, install, source};
use scal_data::{DataError, DatasetName, ReadOptions, read_dataset};

/// A miniature Market-1501 archive tree: (name in archive, bytes).
fn market_entries() -> Vec<(String, Vec<u8>)> {
    let top = "Market-1501-v15.09.15";
    let mut entries = Vec::new();
    for (folder, names) in [
        (
            "bounding_box_train",
            vec!["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg"],
        ),
        ("query", vec!["0003_c1s1_000101_00.jpg"]),
        (
            "bounding_box_test",
            vec!["0003_c2s1_000201_00.jpg", "0000_c1s1_000001_00.jpg"],
        ),
    ] {
        for n in names {
            entries.push((
                format!("{top}/{folder}/{n}"),
                format!("image {n}").into_bytes(),
            ));
        }
    }
    entries
}

fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn write_tar_gz(path: &Path, entries: &[(String, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    append_files(&mut tar, entries);
    tar.into_inner().unwrap().finish().unwrap();
}

/// Appends `entries` to `tar` as regular files (GNU headers, mode 644).
fn append_files<W: Write>(tar: &mut tar::Builder<W>, entries: &[(String, Vec<u8>)]) {
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".extracting-"))
        .collect()
}

#[test]
fn zip_and_tar_gz_archives_install_and_read() {
    let dir = tempfile::tempdir().unwrap();
    for (file, writer) in [
        ("market.zip", write_zip as fn(&Path, &[(String, Vec<u8>)])),
        ("market.tar.gz", write_tar_gz),
    ] {
        let archive = dir.path().join(file);
        writer(&archive, &market_entries());
        let (sha, _) = digests(&archive).unwrap();
        let dest = dir.path().join(format!("installed-{file}"));
        let (verification, files) = install(
            &archive,
            &dest,
            (Some(&sha), None),
            Some(DatasetName::Market1501),
        )
        .unwrap();
        assert_eq!(verification, Verification::Matched("SHA-256"));
        assert_eq!(files, 5);
        let d = read_dataset(DatasetName::Market1501, &dest, ReadOptions::default()).unwrap();
        assert_eq!((d.train.len(), d.query.len(), d.gallery.len()), (2, 1, 2));
        // Without a recorded digest the archive's SHA-256 is reported.
        let again = dir.path().join(format!("again-{file}"));
        let (verification, _) = install(&archive, &again, (None, None), None).unwrap();
        assert_eq!(verification, Verification::Unrecorded { sha256: sha });
        // An existing destination is refused.
        assert!(matches!(
            install(&archive, &dest, (None, None), None),
            Err(DataError::AlreadyExists { .. })
        ));
    }
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn a_wrong_digest_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("market.zip");
    write_zip(&archive, &market_entries());
    let dest = dir.path().join("market1501");
    let err = install(
        &archive,
        &dest,
        (None, Some("00000000000000000000000000000000")),
        None,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            DataError::ChecksumMismatch {
                algorithm: "MD5",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("market.zip") && msg.contains("expected 0000"),
        "{msg}"
    );
    assert!(!dest.exists());
}

#[test]
fn zip_slip_is_refused_and_nothing_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    let archive = inner.join("evil.zip");
    let mut entries = market_entries();
    entries.push((
        "Market-1501-v15.09.15/../../evil.txt".into(),
        b"pwned".to_vec(),
    ));
    write_zip(&archive, &entries);
    let dest = inner.join("market1501");
    let err = install(&archive, &dest, (None, None), None).unwrap_err();
    assert!(matches!(err, DataError::UnsafeArchive { .. }), "{err}");
    assert!(err.to_string().contains("evil.txt"));
    assert!(!dir.path().join("evil.txt").exists() && !inner.join("evil.txt").exists());
    assert!(!dest.exists());
    assert!(leftovers(&inner).is_empty());
}

/// A tar holding `name` as given (absolute or with a link), bypassing the builder's checks.
fn raw_tar(path: &Path, name: &str, link: Option<&str>) {
    let mut header = tar::Header::new_old();
    let bytes = name.as_bytes();
    header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    match link {
        Some(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_link_name(target).unwrap();
            header.set_size(0);
        }
        None => header.set_size(5),
    }
    header.set_mode(0o644);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    if link.is_none() {
        let mut data = b"pwned".to_vec();
        data.resize(512, 0);
        out.extend(data);
    }
    out.extend(vec![0u8; 1024]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn absolute_paths_and_links_in_tars_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let absolute = dir.path().join("absolute.tar");
    raw_tar(&absolute, "/tmp/scal-evil.txt", None);
    let err = install(&absolute, &dir.path().join("a"), (None, None), None).unwrap_err();
    assert!(err.to_string().contains("absolute paths"), "{err}");
    let link = dir.path().join("link.tar");
    raw_tar(&link, "escape", Some("/etc/passwd"));
    let err = install(&link, &dir.path().join("b"), (None, None), None).unwrap_err();
    assert!(err.to_string().contains("links are not allowed"), "{err}");
    assert!(!dir.path().join("a").exists() && !dir.path().join("b").exists());
}

/// Serves one HTTP response: `body`, announcing `length` bytes, then closes.
fn serve_once(body: Vec<u8>, length: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let header =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(header.as_bytes());
        let _ = stream.write_all(&body);
    });
    format!("http://{address}/Market-1501-v15.09.15.zip")
}

#[test]
fn http_download_completes_or_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("source.zip");
    write_zip(&archive, &market_entries());
    let bytes = std::fs::read(&archive).unwrap();

    let url = serve_once(bytes.clone(), bytes.len());
    let dest: PathBuf = dir.path().join("Market-1501-v15.09.15.zip");
    let mut last = (0, None);
    let n = download(&url, &dest, |done, total| last = (done, total)).unwrap();
    assert_eq!(n as usize, bytes.len());
    assert_eq!(last, (bytes.len() as u64, Some(bytes.len() as u64)));
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);

    // A transfer cut short leaves no archive under the final name.
    let url = serve_once(bytes[..100].to_vec(), bytes.len());
    let short = dir.path().join("short.zip");
    let err = download(&url, &short, |_, _| {}).unwrap_err();
    assert!(matches!(err, DataError::Download { .. }), "{err}");
    assert!(!short.exists());
}

#[test]
fn sources_describe_how_to_get_each_dataset() {
    assert!(source(DatasetName::Market1501).url.is_some());
    for name in [
        DatasetName::Dukemtmc,
        DatasetName::Cuhk03Detected,
        DatasetName::Msmt17,
    ] {
        let s = source(name);
        assert!(
            s.url.is_none() && s.how_to_get.contains("--archive"),
            "{name}"
        );
    }
}

/// Archives that would install something useless or harmful: one without the dataset's
/// layout, an empty one, a folder given as the archive, an entry that appears twice, and one
/// that expands a thousandfold. None installs anything.
#[test]
fn empty_foreign_duplicate_and_bomb_archives_install_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let market = Some(DatasetName::Market1501);
    let dest = dir.path().join("market1501");
    let foreign = dir.path().join("foreign.zip");
    write_zip(
        &foreign,
        &[("notes/readme.txt".to_string(), b"hello".to_vec())],
    );
    let err = install(&foreign, &dest, (None, None), market).unwrap_err();
    assert!(matches!(err, DataError::NotTheDataset { .. }), "{err}");
    let empty = dir.path().join("empty.zip");
    write_zip(&empty, &[]);
    let err = install(&empty, &dest, (None, None), market).unwrap_err();
    assert!(err.to_string().contains("holds no file"), "{err}");
    let err = install(dir.path(), &dest, (None, None), market).unwrap_err();
    assert!(matches!(err, DataError::ArchiveIsFolder { .. }), "{err}");

    let twice = dir.path().join("twice.tar.gz");
    let mut entries = market_entries();
    entries.push((entries[0].0.clone(), b"the other one".to_vec()));
    write_tar_gz(&twice, &entries);
    let err = install(&twice, &dest, (None, None), market).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");

    let bomb = dir.path().join("bomb.zip");
    let mut entries = market_entries();
    entries.push((
        "Market-1501-v15.09.15/zeros.bin".to_string(),
        vec![0u8; 200 << 20],
    ));
    write_zip(&bomb, &entries);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 2 << 20);
    let err = install(&bomb, &dest, (None, None), market).unwrap_err();
    assert!(err.to_string().contains("decompression bomb"), "{err}");

    assert!(!dest.exists(), "nothing installed");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".extracting"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Tar entries beyond plain files (issue 29, W33): a contiguous file (`7`) and a GNU sparse
/// file (`S`) are files, as GNU tar extracts them; a pax global header (`g`, as `git archive`
/// writes) is read past; a device file refuses the archive.
#[test]
fn contiguous_and_sparse_tar_entries_are_files_and_devices_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("kinds.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    let mut global = tar::Header::new_ustar();
    global.set_entry_type(tar::EntryType::XGlobalHeader);
    let comment = b"52 comment=0123456789abcdef0123456789abcdef01234567\n";
    global.set_size(comment.len() as u64);
    global.set_cksum();
    tar.append_data(&mut global, "pax_global_header", comment.as_slice())
        .unwrap();
    append_files(&mut tar, &market_entries());
    let top = "Market-1501-v15.09.15/bounding_box_train";
    let mut contiguous = tar::Header::new_gnu();
    contiguous.set_entry_type(tar::EntryType::Continuous);
    contiguous.set_size(10);
    contiguous.set_mode(0o644);
    contiguous.set_cksum();
    let name = format!("{top}/0009_c1s1_000001_00.jpg");
    tar.append_data(&mut contiguous, &name, b"contiguous".as_slice())
        .unwrap();
    // 1536 bytes: a 1024-byte hole, then 512 stored bytes.
    let mut sparse = tar::Header::new_gnu();
    sparse.set_entry_type(tar::EntryType::GNUSparse);
    sparse.set_size(512);
    sparse.set_mode(0o644);
    {
        let gnu = sparse.as_gnu_mut().unwrap();
        gnu.set_real_size(1536);
        gnu.sparse[0].set_offset(1024);
        gnu.sparse[0].set_length(512);
    }
    sparse.set_cksum();
    let name = format!("{top}/0009_c2s1_000002_00.jpg");
    tar.append_data(&mut sparse, &name, [7u8; 512].as_slice())
        .unwrap();
    tar.finish().unwrap();
    drop(tar);

    let dest = dir.path().join("market");
    let (_, files) = install(&archive, &dest, (None, None), Some(DatasetName::Market1501)).unwrap();
    assert_eq!(files, market_entries().len() + 2);
    let installed = dest.join(top);
    assert_eq!(
        std::fs::read(installed.join("0009_c1s1_000001_00.jpg")).unwrap(),
        b"contiguous"
    );
    let sparse = std::fs::read(installed.join("0009_c2s1_000002_00.jpg")).unwrap();
    assert_eq!(sparse.len(), 1536);
    assert!(sparse[..1024].iter().all(|&b| b == 0) && sparse[1024..].iter().all(|&b| b == 7));
    assert!(!dest.join("pax_global_header").exists());

    let device = dir.path().join("device.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&device).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Char);
    header.set_size(0);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "null", std::io::empty())
        .unwrap();
    tar.finish().unwrap();
    drop(tar);
    let err = install(&device, &dir.path().join("d"), (None, None), None).unwrap_err();
    assert!(
        matches!(err, DataError::UnsafeArchive { .. })
            && err.to_string().contains("device files")
            && err.to_string().contains("null"),
        "{err}"
    );
    assert!(!dir.path().join("d").exists() && leftovers(dir.path()).is_empty());
}

/// Writing errors say "cannot write" or name the archive entry that could not be written,
/// not a staging folder that no longer exists (issue 29, W32).
#[test]
fn extraction_errors_name_the_entry_and_a_root_under_a_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("longname.tar.gz");
    let long = format!("Market-1501-v15.09.15/{}.txt", "n".repeat(300));
    write_tar_gz(&archive, &[(long.clone(), b"x".to_vec())]);
    let err = install(&archive, &dir.path().join("dl"), (None, None), None).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, DataError::Extract { .. })
            && message.contains(&long)
            && message.contains("longname.tar.gz")
            && !message.contains(".extracting-"),
        "{message}"
    );
    assert!(leftovers(dir.path()).is_empty());
    // The destination's folder is a file (`--root` given the archive itself).
    let err = install(&archive, &archive.join("DukeMTMC-reID"), (None, None), None).unwrap_err();
    assert!(
        matches!(&err, DataError::NotAFolder { path } if *path == archive),
        "{err}"
    );
}
