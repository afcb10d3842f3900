//! A [`Host`]: a namespace to run commands in and to query (links, addresses, MAC, carrier,
//! sysctls).

use crate::cmd::{ip_in, run_cmd};
use crate::process::Tracked;
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A host namespace. Cheap to clone; the [`Lab`](crate::Lab) owns the namespace.
#[derive(Clone)]
pub struct Host {
    pub(crate) name: String,
    pub(crate) ns: String,
    pub(crate) tracked: Tracked,
    pub(crate) dir: PathBuf,
}

impl Host {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// `ip netns exec NS program`; add arguments with `.arg(..)`. (ip execs the program, so the
    /// child's pid is the program's pid.)
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    pub(crate) fn command_args(&self, args: &[&str]) -> Result<Command> {
        let (program, rest) = args.split_first().ok_or_else(|| anyhow!("empty command"))?;
        let mut c = self.command(program);
        c.args(rest);
        Ok(c)
    }

    /// Runs `args` in the namespace and returns its stdout; an error carries the command line
    /// and its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let mut c = self.command_args(args)?;
        run_cmd(&mut c).with_context(|| format!("on host {}", self.name))
    }

    /// Sets the host's own interface administratively up or down.
    pub fn set_link(&self, ifname: &str, up: bool) -> Result<()> {
        ip_in(
            &self.ns,
            &["link", "set", ifname, if up { "up" } else { "down" }],
        )?;
        Ok(())
    }

    /// `ping -c count -W timeout_s addr` (200 ms apart); true if any reply came back.
    pub fn ping(&self, addr: &str, count: u32, timeout_s: u32) -> bool {
        self.command("ping")
            .args([
                "-n",
                "-q",
                "-i",
                "0.2",
                "-c",
                &count.max(1).to_string(),
                "-W",
                &timeout_s.max(1).to_string(),
                addr,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Addresses (without prefix length) on `ifname`.
    pub fn addresses(&self, ifname: &str) -> Result<Vec<String>> {
        let out = ip_in(&self.ns, &["-o", "addr", "show", "dev", ifname])?;
        let mut v = Vec::new();
        for line in out.lines() {
            let mut it = line.split_whitespace();
            while let Some(tok) = it.next() {
                if tok == "inet" || tok == "inet6" {
                    if let Some(a) = it.next() {
                        v.push(a.split('/').next().unwrap_or(a).to_owned());
                    }
                }
            }
        }
        Ok(v)
    }

    /// Whether `ifname` carries `addr` (given without prefix length).
    pub fn has_address(&self, ifname: &str, addr: &str) -> bool {
        let want = addr.split('/').next().unwrap_or(addr);
        let norm = |s: &str| {
            s.parse::<std::net::IpAddr>()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| s.to_owned())
        };
        let want = norm(want);
        self.addresses(ifname)
            .map(|v| v.iter().any(|a| norm(a) == want))
            .unwrap_or(false)
    }

    /// The MAC address of `ifname`, lowercase "aa:bb:cc:dd:ee:ff".
    pub fn mac(&self, ifname: &str) -> Result<String> {
        let out = ip_in(&self.ns, &["-o", "link", "show", "dev", ifname])?;
        let mut it = out.split_whitespace();
        while let Some(tok) = it.next() {
            if tok == "link/ether" {
                return it
                    .next()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("no MAC after link/ether"));
            }
        }
        bail!(
            "{}: {} has no ethernet address: {}",
            self.name,
            ifname,
            out.trim()
        )
    }

    /// Whether `ifname` has carrier (false after a cable pull on the switch side).
    pub fn has_carrier(&self, ifname: &str) -> bool {
        let out = ip_in(&self.ns, &["-o", "link", "show", "dev", ifname]).unwrap_or_default();
        !out.contains("NO-CARRIER") && out.contains(",UP")
    }

    /// `sysctl -w key=value` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run(&["sysctl", "-qw", &format!("{key}={value}")])
            .map(|_| ())
    }
}
