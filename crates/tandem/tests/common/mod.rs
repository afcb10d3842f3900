//! Shared harness for the namespace tests: tandem nodes as real processes in lab hosts.
#![allow(dead_code)]

pub mod nat_cluster;

use lab::{Host, Lab, Process, Switch};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

pub const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

/// A VIP as written in a node config.
pub struct VipSpec<'a> {
    pub vhid: u8,
    pub interface: &'a str,
    pub addresses: &'a [&'a str],
}

/// A running tandem daemon inside a lab host.
pub struct Node {
    pub host: Host,
    pub config: PathBuf,
    pub process: Option<Process>,
}

/// Writes a node config into the lab's directory.
pub fn write_config(
    lab: &Lab,
    name: &str,
    advskew: u8,
    preempt: bool,
    passphrase: &str,
    interfaces: &[(&str, &str)],
    vips: &[VipSpec<'_>],
) -> PathBuf {
    let mut s = format!(
        "[node]\nname = \"{name}\"\nadvskew = {advskew}\npreempt = {preempt}\ncontrol_socket = \"{}\"\n\n[interfaces]\n",
        lab.dir().join(format!("{name}.sock")).display()
    );
    for (logical, dev) in interfaces {
        s += &format!("{logical} = \"{dev}\"\n");
    }
    s += &format!("\n[carp]\npassphrase = \"{passphrase}\"\nadvbase = 1\n");
    for v in vips {
        let addrs: Vec<String> = v.addresses.iter().map(|a| format!("\"{a}\"")).collect();
        s += &format!(
            "\n[[vips]]\nvhid = {}\ninterface = \"{}\"\naddresses = [{}]\n",
            v.vhid,
            v.interface,
            addrs.join(", ")
        );
    }
    let path = lab.dir().join(format!("{name}.toml"));
    std::fs::write(&path, s).expect("write node config");
    path
}

impl Node {
    pub fn start(host: &Host, config: PathBuf) -> Node {
        let mut n = Node {
            host: host.clone(),
            config,
            process: None,
        };
        n.restart();
        n
    }

    /// Starts tandem with `dir` as its working directory and a config path relative to it, as
    /// an admin in that folder would (`tandem run --config fw2/fw2.toml`).
    pub fn start_in(host: &Host, dir: &std::path::Path, config: &str) -> Node {
        let script = format!(
            "cd '{}' && exec {TANDEM} run --config '{config}'",
            dir.display()
        );
        let p = host.spawn(&["sh", "-c", &script]).expect("spawn tandem");
        let n = Node {
            host: host.clone(),
            config: dir.join(config),
            process: Some(p),
        };
        let ok = lab::wait_until(Duration::from_secs(10), || n.try_status().is_some());
        assert!(ok, "{} never answered status:\n{}", host.name(), n.log());
        n
    }

    /// As [`Node::start`], the daemon limited to `open_files` open files (`prlimit`).
    pub fn start_limited(host: &Host, config: PathBuf, open_files: u32) -> Node {
        let limit = format!("--nofile={open_files}:{open_files}");
        let cfg = config.to_string_lossy().into_owned();
        let p = host
            .spawn(&["prlimit", &limit, TANDEM, "run", "--config", &cfg])
            .expect("spawn tandem");
        let n = Node {
            host: host.clone(),
            config,
            process: Some(p),
        };
        let ok = lab::wait_until(Duration::from_secs(10), || n.try_status().is_some());
        assert!(ok, "{} never answered status:\n{}", host.name(), n.log());
        n
    }

    pub fn restart(&mut self) {
        let cfg = self.config.to_string_lossy().into_owned();
        let p = self
            .host
            .spawn(&[TANDEM, "run", "--config", &cfg])
            .expect("spawn tandem");
        self.process = Some(p);
        let ok = lab::wait_until(Duration::from_secs(10), || self.try_status().is_some());
        assert!(
            ok,
            "{} never answered status:\n{}",
            self.host.name(),
            self.log()
        );
    }

    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.stderr())
            .unwrap_or_default()
    }

    pub fn try_status(&self) -> Option<Value> {
        let out = self
            .host
            .command(TANDEM)
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|| panic!("{}: no status\n{}", self.host.name(), self.log()))
    }

    pub fn vip(&self, vhid: u8) -> Value {
        let s = self.status();
        s["vips"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["vhid"] == vhid).cloned())
            .unwrap_or_else(|| panic!("{}: no vhid {vhid} in {s}", self.host.name()))
    }

    pub fn state(&self, vhid: u8) -> String {
        self.try_status()
            .and_then(|s| {
                s["vips"].as_array().and_then(|v| {
                    v.iter()
                        .find(|v| v["vhid"] == vhid)
                        .and_then(|v| v["state"].as_str().map(str::to_string))
                })
            })
            .unwrap_or_else(|| "DOWN".into())
    }

    /// Waits for a state; on timeout panics with both the status and the daemon's log.
    pub fn expect_state(&self, vhid: u8, state: &str, within: Duration) {
        let ok = lab::wait_until(within, || self.state(vhid) == state);
        assert!(
            ok,
            "{} vhid {vhid}: expected {state}, is {}\nstatus: {:?}\nlog:\n{}",
            self.host.name(),
            self.state(vhid),
            self.try_status(),
            self.log()
        );
    }

    pub fn sigterm(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.signal("TERM").expect("send SIGTERM");
            let st = p
                .wait_timeout(Duration::from_secs(10))
                .expect("wait for tandem");
            assert!(
                st.is_some_and(|s| s.success()),
                "{} did not exit cleanly on SIGTERM: {st:?}\n{}",
                self.host.name(),
                self.log()
            );
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill().expect("kill tandem");
        }
    }
}

/// A master-down interval with room for a loaded CI machine: 3 * advbase + skew + slack.
pub const TAKEOVER: Duration = Duration::from_secs(8);
/// First election after start: master-down plus start-up.
pub const ELECTION: Duration = Duration::from_secs(10);

/// As [`write_config`], with `extra` TOML (firewall areas, a `[firewall]` table) appended.
#[allow(clippy::too_many_arguments)]
pub fn write_config_extra(
    lab: &Lab,
    name: &str,
    advskew: u8,
    preempt: bool,
    passphrase: &str,
    interfaces: &[(&str, &str)],
    vips: &[VipSpec<'_>],
    extra: &str,
) -> PathBuf {
    let path = write_config(lab, name, advskew, preempt, passphrase, interfaces, vips);
    let mut text = std::fs::read_to_string(&path).expect("read node config");
    text.push('\n');
    text.push_str(extra);
    std::fs::write(&path, text).expect("write node config");
    path
}

impl Node {
    /// Runs the CLI against this node's config inside its host: (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = self
            .host
            .command(TANDEM)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run tandem");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The standard cluster's wiring (design.md): a lan and a wan switch; fw1 on them as eth0
/// (192.0.2.2) and eth1 (198.51.100.2), fw2 with other device names, ens5 (192.0.2.3) and ens6
/// (198.51.100.3), so only logical names can match them; a client (192.0.2.10) on lan and a
/// server (198.51.100.10) on wan; with `sync_link`, fw1 eth2 (203.0.113.1) to fw2 ens7
/// (203.0.113.2).
pub struct Standard {
    pub lan: Switch,
    pub wan: Switch,
    pub client: Host,
    pub server: Host,
    pub fw1: Host,
    pub fw2: Host,
}

pub fn standard(lab: &mut Lab, sync_link: bool) -> Standard {
    let lan = lab.switch("lan").expect("lan switch");
    let wan = lab.switch("wan").expect("wan switch");
    let client = lab.host("client").expect("client");
    let server = lab.host("server").expect("server");
    let fw1 = lab.host("fw1").expect("fw1");
    let fw2 = lab.host("fw2").expect("fw2");
    for (host, dev, sw, addr) in [
        (&client, "eth0", &lan, "192.0.2.10/24"),
        (&server, "eth0", &wan, "198.51.100.10/24"),
        (&fw1, "eth0", &lan, "192.0.2.2/24"),
        (&fw1, "eth1", &wan, "198.51.100.2/24"),
        (&fw2, "ens5", &lan, "192.0.2.3/24"),
        (&fw2, "ens6", &wan, "198.51.100.3/24"),
    ] {
        lab.connect(host, dev, sw, &[addr]).expect("connect");
    }
    if sync_link {
        lab.link(
            &fw1,
            "eth2",
            &["203.0.113.1/24"],
            &fw2,
            "ens7",
            &["203.0.113.2/24"],
        )
        .expect("sync link");
    }
    Standard {
        lan,
        wan,
        client,
        server,
        fw1,
        fw2,
    }
}

/// Pins `primary`'s certificate on `peer` (`[sync] primary_fingerprint`, read from the
/// primary's status) and reloads the peer: from then on it takes pushes from the primary's
/// certificate only, as an operator sets it up (README, "Setting up two nodes").
pub fn pin_primary(peer: &Node, primary: &Node) {
    let fp = primary.status()["config_sync"]["fingerprint"]
        .as_str()
        .expect("the primary prints its fingerprint")
        .to_string();
    let text = std::fs::read_to_string(&peer.config).expect("read peer config");
    assert!(
        text.contains("[sync]\n"),
        "no [sync] in {}",
        peer.config.display()
    );
    let text = text.replacen(
        "[sync]\n",
        &format!("[sync]\nprimary_fingerprint = \"{fp}\"\n"),
        1,
    );
    std::fs::write(&peer.config, text).expect("write peer config");
    let (ok, out, err) = peer.cli(&["reload"]);
    assert!(ok, "reload of {} failed: {out}{err}", peer.host.name());
}

/// The keys of a status JSON that docs/status-json.md does not name (as `key`), with their
/// paths. Children of `{reason: count}` maps are data, not fields.
pub fn undocumented_status_keys(status: &Value) -> Vec<String> {
    const MAPS: [&str; 3] = ["rejected", "adverts_rejected", "forwarding"];
    let doc_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/status-json.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/status-json.md");
    let mut missing = Vec::new();
    let mut todo = vec![(String::new(), status)];
    while let Some((path, v)) = todo.pop() {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let here = format!("{path}.{k}");
                    if !doc.contains(&format!("`{k}`")) && !doc.contains(&format!("\"{k}\"")) {
                        missing.push(here.clone());
                    }
                    if !MAPS.contains(&k.as_str()) {
                        todo.push((here, child));
                    }
                }
            }
            Value::Array(a) => todo.extend(a.iter().map(|x| (format!("{path}[]"), x))),
            _ => {}
        }
    }
    missing.sort();
    missing
}

/// keepalived (Debian's package) with one VRRPv3 instance, vrid 7 on eth0, run in the
/// foreground in `host`'s namespace with its own config and pid files; `extra` goes into the
/// instance before its addresses (e.g. unicast settings).
pub fn keepalived_vrrp(
    lab: &Lab,
    host: &Host,
    priority: u8,
    advert_int: &str,
    vip: &str,
    extra: &str,
) -> Process {
    let dir = lab.dir().join(format!("keepalived-{}", host.name()));
    std::fs::create_dir_all(&dir).expect("keepalived dir");
    let conf = dir.join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n  vrrp_version 3\n  router_id {name}\n}}\n\
vrrp_instance VI_7 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 7\n  priority {priority}\n  advert_int {advert_int}\n\
{extra}  virtual_ipaddress {{\n    {vip}\n  }}\n}}\n",
            name = host.name()
        ),
    )
    .expect("write keepalived.conf");
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let conf = conf.to_string_lossy().into_owned();
    host.spawn(&[
        "keepalived",
        "--dont-fork",
        "--log-console",
        "--log-detail",
        "--vrrp",
        "--use-file",
        &conf,
        "--pid",
        &path("keepalived.pid"),
        "--vrrp_pid",
        &path("vrrp.pid"),
        "--checkers_pid",
        &path("checkers.pid"),
    ])
    .expect("spawn keepalived (is the keepalived package installed?)")
}
