//! A backend panic turned into an error: a device that stops answering (a remote server
//! gone, a GPU lost) panics inside Burn, in a step, an evaluation or a checkpoint write;
//! [`on_devices`] catches it as [`TrainError::DeviceFailed`], its cause as the message.

use std::path::Path;

use crate::TrainError;

/// Runs `work`, which drives the devices: a panic there (a remote server gone, a GPU lost)
/// becomes [`TrainError::DeviceFailed`] at `iteration` of the run in `run`, its message
/// after `context`.
pub(crate) fn on_devices<T>(
    run: &Path,
    iteration: u64,
    context: &str,
    work: impl FnOnce() -> T,
) -> Result<T, TrainError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|payload| {
        TrainError::DeviceFailed {
            iteration,
            message: format!("{context}{}", panic_message(payload.as_ref())),
            run: run.to_path_buf(),
        }
    })
}

/// The text of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the backend panicked".into());
    // Burn's read errors say how to catch them first; what failed comes after "Caused by:".
    let text = match text.split_once("Caused by:") {
        Some((_, cause)) => cause.to_string(),
        None => text,
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_panic_becomes_its_cause() {
        let burn_read_error: Box<dyn std::any::Any + Send> = Box::new(String::from(
            "Error while reading data: use `try_into_data` instead\nCaused by:\n  Failed to read tensor: RecvError(())",
        ));
        assert_eq!(
            panic_message(burn_read_error.as_ref()),
            "Failed to read tensor: RecvError(())"
        );
        let plain: Box<dyn std::any::Any + Send> = Box::new("device lost");
        assert_eq!(panic_message(plain.as_ref()), "device lost");
    }
}
