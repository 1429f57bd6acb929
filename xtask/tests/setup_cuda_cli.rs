//! `cargo xtask setup-cuda`: where it looks, what it says when nothing is installed, and a
//! clear error without pip. (The install itself downloads from PyPI: `.ci/run` runs it.)

use std::process::Command;

fn setup_cuda(data_home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("setup-cuda")
        .args(args)
        .env("XDG_DATA_HOME", data_home)
        .output()
        .unwrap()
}

#[test]
fn check_reports_a_missing_install_and_honours_xdg_data_home() {
    let dir = tempfile::tempdir().unwrap();
    let o = setup_cuda(dir.path(), &["--check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let expected = dir.path().join("tracel/tracel-llvm-23.1.0-4");
    assert!(
        err.contains(&expected.display().to_string())
            && err.contains("not installed")
            && err.contains("cargo xtask setup-cuda"),
        "{err}"
    );

    // A half-installed folder (the sentinel, an empty llvm-config, empty folders) is not an
    // install: the check names what is missing.
    for part in ["bin", "lib", "include"] {
        std::fs::create_dir_all(expected.join(part)).unwrap();
    }
    std::fs::write(expected.join("bin/llvm-config"), "").unwrap();
    std::fs::write(expected.join(".tracel-llvm-installed"), "").unwrap();
    let o = setup_cuda(dir.path(), &["--check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bin/llvm-config") && err.contains("lib/libLLVMCore.a"),
        "{err}"
    );

    // A complete install (as far as the bundler checks) is recognised.
    std::fs::write(expected.join("bin/llvm-config"), "#!/usr/bin/env python3\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(expected.join("bin/llvm-config"), mode).unwrap();
    }
    std::fs::write(expected.join("lib/libLLVMCore.a"), "!<arch>\n").unwrap();
    std::fs::create_dir_all(expected.join("include/llvm-c")).unwrap();
    let o = setup_cuda(dir.path(), &["--check"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = setup_cuda(dir.path(), &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("already installed"),
        "{out}"
    );
}

#[test]
fn an_interpreter_without_pip_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = setup_cuda(dir.path(), &["--python", "/bin/false"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("/bin/false") && err.contains("pip"), "{err}");
    assert!(!dir.path().join("tracel/tracel-llvm-23.1.0-4").exists());
}
