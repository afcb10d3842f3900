//! The topology: a [`Lab`] names, creates and tears down namespaces; a [`Switch`] is a bridge
//! namespace that hosts attach to by veth pairs.

use crate::cmd::{
    add_addrs, check_ifname, destroy_netns, ip, ip_in, kill_pid, list_netns, pid_alive, run_cmd,
};
use crate::process::Tracked;
use crate::Host;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// FNV-1a, 24 bits: stable across builds, so a later run of the same test finds stale leftovers.
fn short_hash(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h ^ (h >> 24)) & 0x00ff_ffff
}

/// A test topology: every namespace it creates is deleted when it drops.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    tracked: Tracked,
    dir: PathBuf,
    keep_dir: bool,
}

impl Lab {
    /// Creates an empty lab. Namespace names are `t<hash of test_name>p<pid>n<k>-<name>`, so
    /// parallel tests (threads or processes) never collide. Leftover namespaces of an earlier,
    /// dead process running the same test are deleted first.
    pub fn new(test_name: &str) -> Result<Lab> {
        let hash = format!("t{:06x}p", short_hash(test_name));
        let pid = std::process::id();
        let k = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{hash}{pid}n{k}-");
        for ns in list_netns() {
            let Some(rest) = ns.strip_prefix(&hash) else {
                continue;
            };
            let owner = rest.split('n').next().and_then(|p| p.parse::<u32>().ok());
            let stale = match owner {
                Some(p) if p == pid => ns.starts_with(&prefix),
                Some(p) => !pid_alive(p),
                None => false,
            };
            if stale {
                destroy_netns(&ns);
            }
        }
        let dir = std::env::temp_dir().join(format!("lab-{}", prefix.trim_end_matches('-')));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Lab {
            prefix,
            namespaces: Vec::new(),
            tracked: Arc::new(Mutex::new(Vec::new())),
            dir,
            keep_dir: std::env::var_os("LAB_KEEP").is_some(),
        })
    }

    /// The prefix of every namespace of this lab.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A scratch directory (removed on drop unless `LAB_KEEP` is set): for config files,
    /// control sockets, process logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names of the namespaces this lab created, in creation order.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    fn add_ns(&mut self, name: &str) -> Result<String> {
        if name.is_empty() || name.contains(['/', ' ']) {
            bail!("bad namespace name {name:?}");
        }
        let ns = format!("{}{}", self.prefix, name);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip_in(&ns, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A namespace holding bridge `br0`: up, no STP, forward delay 0, multicast snooping off
    /// (so CARP/VRRP multicast floods to every port).
    pub fn switch(&mut self, name: &str) -> Result<Switch> {
        let ns = self.add_ns(name)?;
        ip_in(
            &ns,
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ],
        )?;
        // The bridge itself needs no IPv6 (no RS/MLD noise from it).
        let _ = run_cmd(Command::new("ip").args([
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.br0.disable_ipv6=1",
        ]));
        ip_in(&ns, &["link", "set", "br0", "up"])?;
        Ok(Switch {
            name: name.to_owned(),
            ns,
            ports: Arc::new(Mutex::new(HashMap::new())),
            next_port: Arc::new(AtomicU32::new(0)),
        })
    }

    /// A namespace with `lo` up.
    pub fn host(&mut self, name: &str) -> Result<Host> {
        let ns = self.add_ns(name)?;
        Ok(Host {
            name: name.to_owned(),
            ns,
            tracked: self.tracked.clone(),
            dir: self.dir.clone(),
        })
    }

    /// Attaches `host` to `sw` by a veth pair: the host side is named `ifname` and carries
    /// `addrs` ("192.0.2.2/24", "2001:db8:1::2/64"; IPv6 added with nodad); the switch side is
    /// enslaved to br0. Both ends are up.
    pub fn connect(
        &mut self,
        host: &Host,
        ifname: &str,
        sw: &Switch,
        addrs: &[&str],
    ) -> Result<()> {
        check_ifname(ifname)?;
        let port = format!("p{}", sw.next_port.fetch_add(1, Ordering::Relaxed));
        ip_in(
            &host.ns,
            &[
                "link", "add", ifname, "type", "veth", "peer", "name", &port, "netns", &sw.ns,
            ],
        )?;
        ip_in(&sw.ns, &["link", "set", &port, "master", "br0"])?;
        ip_in(&sw.ns, &["link", "set", &port, "up"])?;
        add_addrs(&host.ns, ifname, addrs)?;
        ip_in(&host.ns, &["link", "set", ifname, "up"])?;
        sw.ports
            .lock()
            .map_err(|_| anyhow!("switch port map poisoned"))?
            .insert((host.ns.clone(), ifname.to_owned()), port);
        Ok(())
    }

    /// A point-to-point veth between two hosts (e.g. the sync link).
    pub fn link(
        &mut self,
        a: &Host,
        a_if: &str,
        a_addrs: &[&str],
        b: &Host,
        b_if: &str,
        b_addrs: &[&str],
    ) -> Result<()> {
        check_ifname(a_if)?;
        check_ifname(b_if)?;
        ip_in(
            &a.ns,
            &[
                "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.ns,
            ],
        )?;
        add_addrs(&a.ns, a_if, a_addrs)?;
        add_addrs(&b.ns, b_if, b_addrs)?;
        ip_in(&a.ns, &["link", "set", a_if, "up"])?;
        ip_in(&b.ns, &["link", "set", b_if, "up"])?;
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(pids) = self.tracked.lock() {
            for &pid in pids.iter() {
                kill_pid(pid, "KILL");
            }
        }
        // Hosts first, switches are plain namespaces too; order does not matter for veth.
        for ns in self.namespaces.iter().rev() {
            destroy_netns(ns);
        }
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A bridge namespace. Cloning shares the port map.
#[derive(Clone)]
pub struct Switch {
    name: String,
    ns: String,
    /// (host namespace, host ifname) -> switch-side port name.
    ports: Arc<Mutex<HashMap<(String, String), String>>>,
    next_port: Arc<AtomicU32>,
}

impl Switch {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The switch-side port name of `host`'s interface `ifname`.
    pub fn port(&self, host: &Host, ifname: &str) -> Result<String> {
        self.ports
            .lock()
            .map_err(|_| anyhow!("switch port map poisoned"))?
            .get(&(host.ns.clone(), ifname.to_owned()))
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "{}:{} is not connected to switch {}",
                    host.name,
                    ifname,
                    self.name
                )
            })
    }

    /// Sets the switch side of `host`'s link up or down: a cable pull; the host's interface
    /// stays administratively up but loses carrier (NO-CARRIER, operstate LOWERLAYERDOWN).
    pub fn set_port(&self, host: &Host, ifname: &str, up: bool) -> Result<()> {
        let port = self.port(host, ifname)?;
        ip_in(
            &self.ns,
            &["link", "set", &port, if up { "up" } else { "down" }],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_short() {
        assert_eq!(short_hash("a"), short_hash("a"));
        assert!(short_hash("some::test") <= 0xff_ffff);
        assert_ne!(short_hash("a"), short_hash("b"));
    }
}
