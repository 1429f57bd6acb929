//! `cargo xtask`: the command line (see the `xtask` library for the commands).

// The one exception to the workspace's `unsafe_code = "deny"`: setting an environment
// variable (unsafe since Rust 2024 because other threads may read the environment).
#[allow(unsafe_code)]
fn main() -> std::process::ExitCode {
    // Burn 0.22.1 puts a resumed run's optimizer state on its default device (CUDA first,
    // then wgpu, when compiled in) and moves it to each parameter's device at the first step.
    // On a machine without that GPU (a run on the CPU or on remote servers, from a GPU
    // build) the resume would panic. The CPU is always there: default to it, unless the
    // user chose otherwise.
    if cfg!(feature = "flex") && std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the first statement of `main`, before any other thread exists.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    xtask::main()
}
