//! The check every namespace test starts with: root and iproute2, or skip (never under CI).

use std::fs;
use std::process::{Command, Stdio};

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Call at the start of every namespace test. Returns false (after printing why) when not root
/// and `CI` is not "true": the test should return early. Panics when `CI=true` and not root,
/// or when `ip` is missing: CI must never skip these tests.
pub fn require_netns() -> bool {
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    let why = if !is_root() {
        Some("not running as root")
    } else if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        Some("iproute2 `ip` not found")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if ci => panic!("namespace test cannot run under CI=true: {why}"),
        Some(why) => {
            eprintln!("skipping namespace test: {why} (set up root + iproute2 to run it)");
            false
        }
    }
}
