//! Bounded waiting: every loop in the test bed ends by itself.

use std::time::{Duration, Instant};

/// Poll `check` every 20 ms until it returns `Some`, or give up after `timeout`.
/// Returns the value and how long it took.
pub fn until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some((value, start.elapsed()));
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
