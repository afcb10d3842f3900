//! Subprocess plumbing: iproute2 (`ip`), `kill(1)` and namespace listing and removal. Every
//! other module reaches the kernel through these helpers.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs a command; returns stdout, or an error naming the command and carrying its stderr.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn ip(args: &[&str]) -> Result<String> {
    run_cmd(Command::new("ip").args(args))
}

/// `ip -n NS args...`
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    run_cmd(Command::new("ip").arg("-n").arg(ns).args(args))
}

pub(crate) fn add_addrs(ns: &str, ifname: &str, addrs: &[&str]) -> Result<()> {
    for a in addrs {
        if !a.contains('/') {
            bail!("address {a:?} needs a prefix length (e.g. 192.0.2.2/24)");
        }
        if a.contains(':') {
            ip_in(ns, &["-6", "addr", "add", a, "dev", ifname, "nodad"])?;
        } else {
            ip_in(ns, &["addr", "add", a, "dev", ifname])?;
        }
    }
    Ok(())
}

pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub(crate) fn kill_pid(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub(crate) fn list_netns() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Kills every process inside `ns`, then deletes it. Best effort.
pub(crate) fn destroy_netns(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub(crate) fn check_ifname(ifname: &str) -> Result<()> {
    if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ']) {
        bail!("bad interface name {ifname:?} (1..=15 chars, no '/' or space)");
    }
    Ok(())
}
