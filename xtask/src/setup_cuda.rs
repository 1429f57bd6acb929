//! `cargo xtask setup-cuda [--check]`: installs the LLVM that Burn's CUDA backend links, from
//! PyPI, so that `cargo xtask-cuda …` builds without network access to GitHub.
//!
//! Burn 0.22's CUDA backend links LLVM 23 through `tracel-llvm-bundler`, whose build script
//! downloads a bundle from GitHub unless its install folder
//! (`$XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4/`, by default under `~/.local/share`) already
//! holds an LLVM prefix (`bin/llvm-config`, `lib/`, `include/`) and the empty sentinel file
//! `.tracel-llvm-installed`. PyPI's `mlc-llvm-static` and `mlc-llvm-static-extra-targets`
//! (NVPTX is among the extra targets) are such a prefix: both wheels' `mlc_llvm_static/static/`
//! merged, the extra targets on top. pip downloads them with pinned versions and hashes; the
//! files are written into a staging folder beside the install folder and renamed into place
//! with the sentinel last, so an interrupted install is never taken for a complete one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The folder name `tracel-llvm-bundler` 23.1.0-4 reads under the data directory.
const BUNDLE_DIR: &str = "tracel-llvm-23.1.0-4";
/// The bundler's "installed" marker.
const SENTINEL: &str = ".tracel-llvm-installed";
/// The wheels' folder that holds the LLVM prefix.
const PREFIX_IN_WHEEL: &str = "mlc_llvm_static/static/";

/// The pinned wheels: the requirement and the SHA-256 of each platform's wheel (Linux
/// x86-64 and aarch64, manylinux 2.28), as pip checks them with `--require-hashes`.
const WHEELS: [(&str, [&str; 2]); 2] = [
    (
        "mlc-llvm-static==23.1.1.post0",
        [
            "dcfec888abfaa418be77d41af585805f31463584cf9c90582992c00f392c1ac5",
            "3d4b1b30cea531ffa5956fa14ff4ffb0b1ed61284bf31eac3ebb752fb308b71d",
        ],
    ),
    (
        "mlc-llvm-static-extra-targets==23.1.1.post0",
        [
            "c36e834d9a4e9cf9759f27fece65711ece7a2fc2b5a96dbb15d66f5e9e787929",
            "b1ddc694cf75bb1502b64c1898b15915362450453b637534886519e20e3d5522",
        ],
    ),
];

/// Installs (or, with --check, looks for) the LLVM that the `cuda` feature links.
#[derive(Debug, clap::Args)]
pub struct SetupCudaArgs {
    /// Only report whether a matching install is present (exit 0 if so, 1 if not).
    #[arg(long)]
    pub check: bool,
    /// Install again over an existing install.
    #[arg(long, conflicts_with = "check")]
    pub force: bool,
    /// The Python interpreter whose pip downloads the wheels.
    #[arg(long, default_value = "python3")]
    pub python: String,
}

/// Where the bundler looks: `$XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4` (`dirs` gives the
/// same data directory the bundler's own `dirs` call gives).
pub fn install_dir() -> Result<PathBuf> {
    let data = dirs::data_local_dir()
        .context("cannot tell the data directory (set XDG_DATA_HOME or HOME)")?;
    Ok(data.join("tracel").join(BUNDLE_DIR))
}

/// What is missing from an install at `dir` (empty: complete): the sentinel, an executable
/// non-empty `bin/llvm-config`, a non-empty `lib/libLLVMCore.a` (one of the static libraries
/// the build links) and `include/llvm-c/`. A half-installed folder (empty files, empty
/// folders) is not taken for an install.
pub fn missing_parts(dir: &Path) -> Vec<&'static str> {
    let non_empty = |path: &Path| std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0);
    let executable = |path: &Path| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        }
        #[cfg(not(unix))]
        {
            path.is_file()
        }
    };
    let config = dir.join("bin/llvm-config");
    [
        (SENTINEL, dir.join(SENTINEL).is_file()),
        (
            "bin/llvm-config (a non-empty executable)",
            non_empty(&config) && executable(&config),
        ),
        (
            "lib/libLLVMCore.a",
            non_empty(&dir.join("lib/libLLVMCore.a")),
        ),
        ("include/llvm-c/", dir.join("include/llvm-c").is_dir()),
    ]
    .into_iter()
    .filter(|(_, present)| !present)
    .map(|(name, _)| name)
    .collect()
}

impl SetupCudaArgs {
    /// Runs `cargo xtask setup-cuda`.
    pub fn run(self) -> Result<()> {
        install(&self)
    }
}

/// Runs `cargo xtask setup-cuda`.
fn install(args: &SetupCudaArgs) -> Result<()> {
    let dir = install_dir()?;
    let missing = missing_parts(&dir);
    if args.check {
        if missing.is_empty() {
            println!(
                "LLVM for the cuda feature is installed in {}",
                dir.display()
            );
            return Ok(());
        }
        bail!(
            "LLVM for the cuda feature is not installed in {} (missing: {}); install it with `cargo xtask setup-cuda`",
            dir.display(),
            missing.join(", ")
        );
    }
    if missing.is_empty() && !args.force {
        println!(
            "LLVM for the cuda feature is already installed in {}; next: cargo xtask-cuda devices --backend cuda",
            dir.display()
        );
        return Ok(());
    }
    check_prerequisites(&args.python)?;
    let parent = dir.parent().expect("the install folder has a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // The install is filled in a staging folder and swapped in whole: an interrupted or
    // failed install leaves the previous one (or none), never half of one.
    scal_fs::write_folder_atomically(parent, BUNDLE_DIR, |prefix| -> Result<()> {
        let downloads = prefix.join(".downloads");
        std::fs::create_dir(&downloads)
            .with_context(|| format!("creating {}", downloads.display()))?;
        let wheels = download_wheels(&args.python, &downloads)?;
        for wheel in &wheels {
            let files = unpack_prefix(wheel, prefix)?;
            println!("unpacked {files} files of {}", file_name(wheel));
        }
        std::fs::remove_dir_all(&downloads)
            .with_context(|| format!("removing {}", downloads.display()))?;
        std::fs::write(prefix.join(SENTINEL), b"").context("writing the sentinel")?;
        Ok(())
    })?;
    println!(
        "installed LLVM 23 for the cuda feature in {}; next: cargo xtask-cuda devices --backend cuda (the first build takes about 45 minutes on 2 cores)",
        dir.display()
    );
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// pip (the wheels' downloader), Python 3 (the wheels' `llvm-config` is a Python script the
/// build runs) and libzstd for the link.
fn check_prerequisites(python: &str) -> Result<()> {
    let pip = Command::new(python)
        .args(["-m", "pip", "--version"])
        .output();
    match pip {
        Ok(o) if o.status.success() => {}
        Ok(_) => bail!(
            "{python} has no pip: install it (Debian: apt-get install python3-pip), or name another interpreter with --python"
        ),
        Err(e) => bail!(
            "cannot run {python} ({e}): the CUDA build needs Python 3 with pip (Debian: apt-get install python3 python3-pip)"
        ),
    }
    if !zstd_dev_present() {
        bail!(
            "libzstd for linking was not found (libzstd.so): install it (Debian/Ubuntu: apt-get install libzstd-dev; Fedora: dnf install libzstd-devel), then run cargo xtask setup-cuda again"
        );
    }
    Ok(())
}

/// Whether the linker can find `libzstd.so` (the development link, not only the runtime's
/// `libzstd.so.1`): in the usual library folders or in `LIBRARY_PATH`.
fn zstd_dev_present() -> bool {
    let mut dirs: Vec<PathBuf> = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
        "/lib/x86_64-linux-gnu",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Some(paths) = std::env::var_os("LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&paths));
    }
    dirs.iter()
        .any(|d| d.join("libzstd.so").exists() || d.join("libzstd.a").exists())
}

/// The pinned requirements in pip's hash-checking form.
fn requirements() -> String {
    WHEELS
        .iter()
        .map(|(requirement, hashes)| {
            let hashes: Vec<String> = hashes
                .iter()
                .map(|h| format!("--hash=sha256:{h}"))
                .collect();
            format!("{requirement} {}\n", hashes.join(" "))
        })
        .collect()
}

/// Downloads the two wheels for this platform into `dir/wheels` with pip, checking their
/// pinned hashes; returns them, the base wheel first.
fn download_wheels(python: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let req = dir.join("requirements.txt");
    std::fs::write(&req, requirements()).context("writing the requirements")?;
    let out = dir.join("wheels");
    println!("downloading the pinned LLVM wheels from PyPI (about 90 MB)");
    let status = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--require-hashes"])
        .args(["--only-binary=:all:", "--disable-pip-version-check", "-r"])
        .arg(&req)
        .arg("-d")
        .arg(&out)
        .status()
        .with_context(|| format!("running {python} -m pip download"))?;
    if !status.success() {
        bail!(
            "pip could not download the pinned wheels ({status}); is PyPI reachable, and is this Linux on x86-64 or aarch64 (the platforms mlc-llvm-static 23.1.1.post0 ships)?"
        );
    }
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    // The base wheel first, the extra targets on top of it.
    wheels.sort_by_key(|p| file_name(p).contains("extra_targets"));
    if wheels.len() != 2 {
        bail!("expected 2 wheels from pip, found {}", wheels.len());
    }
    Ok(wheels)
}

/// Extracts the `mlc_llvm_static/static/` part of `wheel` into `prefix`, keeping executable
/// bits; returns the number of files.
fn unpack_prefix(wheel: &Path, prefix: &Path) -> Result<usize> {
    let file =
        std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    let mut files = 0;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let Some(relative) = entry
            .enclosed_name()
            .and_then(|p| p.strip_prefix(PREFIX_IN_WHEEL).ok().map(Path::to_path_buf))
        else {
            continue;
        };
        if entry.is_dir() || relative.as_os_str().is_empty() {
            continue;
        }
        let out = prefix.join(&relative);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut target =
            std::fs::File::create(&out).with_context(|| format!("writing {}", out.display()))?;
        std::io::copy(&mut entry, &mut target)?;
        #[cfg(unix)]
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode & 0o777))?;
        }
        files += 1;
    }
    if files == 0 {
        bail!("{} holds no {PREFIX_IN_WHEEL}", wheel.display());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_folder_is_the_bundlers_under_xdg_data_home() {
        // dirs reads XDG_DATA_HOME on Linux, as the bundler's build script does.
        if cfg!(target_os = "linux") {
            let dir = install_dir().unwrap();
            assert!(
                dir.ends_with("tracel/tracel-llvm-23.1.0-4"),
                "{}",
                dir.display()
            );
        }
    }

    #[test]
    fn requirements_pin_versions_and_every_platforms_hash() {
        let req = requirements();
        assert_eq!(req.lines().count(), 2);
        for line in req.lines() {
            assert!(line.contains("==23.1.1.post0"), "{line}");
            assert_eq!(line.matches("--hash=sha256:").count(), 2, "{line}");
        }
    }

    #[test]
    fn a_partial_install_is_not_taken_for_a_complete_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(missing_parts(d).len(), 4);
        // The sentinel, an empty llvm-config and empty folders: half installed.
        for part in ["bin", "lib", "include"] {
            std::fs::create_dir_all(d.join(part)).unwrap();
        }
        std::fs::write(d.join("bin/llvm-config"), "").unwrap();
        std::fs::write(d.join(SENTINEL), "").unwrap();
        assert_eq!(
            missing_parts(d),
            vec![
                "bin/llvm-config (a non-empty executable)",
                "lib/libLLVMCore.a",
                "include/llvm-c/"
            ]
        );
        std::fs::write(d.join("bin/llvm-config"), "#!/usr/bin/env python3\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let config = d.join("bin/llvm-config");
            assert!(
                missing_parts(d)[0].starts_with("bin/llvm-config"),
                "not executable yet"
            );
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(d.join("lib/libLLVMCore.a"), "!<arch>\n").unwrap();
        std::fs::create_dir_all(d.join("include/llvm-c")).unwrap();
        assert!(missing_parts(d).is_empty());
    }

    #[test]
    fn only_the_llvm_prefix_of_a_wheel_is_unpacked() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("w.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        let exec = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        zip.start_file("mlc_llvm_static/static/bin/llvm-config", exec)
            .unwrap();
        zip.write_all(b"#!/usr/bin/env python3\n").unwrap();
        zip.start_file("mlc_llvm_static/__init__.py", exec).unwrap();
        zip.write_all(b"").unwrap();
        zip.finish().unwrap();
        let prefix = dir.path().join("prefix");
        assert_eq!(unpack_prefix(&wheel, &prefix).unwrap(), 1);
        assert!(prefix.join("bin/llvm-config").is_file());
        assert!(!prefix.join("__init__.py").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(prefix.join("bin/llvm-config"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o111, 0o111, "llvm-config stays executable");
        }
    }
}
