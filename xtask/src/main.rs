//! `cargo xtask`: the command line (see the `xtask` library for the commands).

fn main() -> std::process::ExitCode {
    xtask::main()
}
