//! Winding down a process a test started: the same for every guard that owns one.

use std::{path::Path, process::Child};

/// Stop `child` if it still runs: `stop` first (a graceful signal and a bounded wait), then
/// SIGKILL; reap it either way.
pub fn stop(child: &mut Child, stop: impl FnOnce(&mut Child)) {
    if matches!(child.try_wait(), Ok(None)) {
        stop(child);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Keep `path` (a log, or a folder with one) and print `log` when the test is failing, so the
/// failure can be read; remove it otherwise, so nothing is left behind.
pub fn keep_log_if_failing(what: &str, path: &Path, log: &str) {
    if std::thread::panicking() {
        eprintln!("{what} log kept at {}:\n{log}", path.display());
    } else if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}
