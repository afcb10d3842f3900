//! Polling with a deadline.

use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns whether it did.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_times_out_and_succeeds() {
        assert!(!wait_until(Duration::from_millis(50), || false));
        let mut n = 0;
        assert!(wait_until(Duration::from_secs(1), || {
            n += 1;
            n > 2
        }));
    }
}
