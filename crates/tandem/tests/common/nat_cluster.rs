//! The NAT cluster of the state sync and hand-over tests: the standard cluster with a sync
//! link, NAT to the WAN VIP, state sync on, an echo server behind the WAN, and a traffic
//! client of TCP connections and UDP flows (tests/traffic.py) on the LAN.
#![allow(dead_code)]

use super::*;
use lab::{Host, Lab};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::Duration;

pub const TRAFFIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/traffic.py");
pub const CONNS: usize = 200;
pub const UDP_FLOWS: usize = 20;

pub struct Cluster {
    /// Owns every namespace (and so every process) of the test.
    pub lab: Lab,
    pub client: Host,
    pub server: Host,
    pub fw: Vec<Node>,
}

/// Node `n` of the two-node cluster: fw1 (advskew 0, eth0-2) or fw2 (advskew 100, ens5-7).
pub fn node_config(lab: &Lab, n: u8, statesync: bool) -> std::path::PathBuf {
    let peer = if n == 1 { "203.0.113.2" } else { "203.0.113.1" };
    let skew = if n == 1 { 0 } else { 100 };
    let devices = if n == 1 {
        ["eth0", "eth1", "eth2"]
    } else {
        ["ens5", "ens6", "ens7"]
    };
    config_for(lab, n, skew, devices, &[peer], statesync)
}

/// A node's config: its lan, wan and sync devices and its state sync peers.
pub fn config_for(
    lab: &Lab,
    n: u8,
    skew: u8,
    [lan, wan, sync]: [&str; 3],
    peers: &[&str],
    statesync: bool,
) -> std::path::PathBuf {
    let name = format!("fw{n}");
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    let peers = peers.join(", ");
    let text = format!(
        r#"[node]
name = "{name}"
advskew = {skew}
preempt = true
control_socket = "{dir}/{name}.sock"
state_dir = "{dir}/{name}-state"

[interfaces]
lan = "{lan}"
wan = "{wan}"
sync = "{sync}"

[carp]
passphrase = "s3cret"
advbase = 1

[statesync]
enabled = {statesync}
interface = "sync"
peers = [{peers}]
key = "state sync test key, shared by both nodes"

[[vips]]
vhid = 1
interface = "lan"
addresses = ["192.0.2.1/24"]

[[vips]]
vhid = 2
interface = "wan"
addresses = ["198.51.100.1/24"]

[[rules]]
interface = "sync"
action = "pass"
source = "sync:network"

[[rules]]
interface = "lan"
action = "pass"
source = "lan:network"

[[nat.outbound]]
interface = "wan"
source = "lan:network"
translation = "198.51.100.1"
"#,
        dir = lab.dir().display()
    );
    let path = lab.dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

pub fn cluster(test: &str, statesync: bool) -> Cluster {
    let mut lab = Lab::new(test).expect("lab");
    let Standard {
        client,
        server,
        fw1: h1,
        fw2: h2,
        ..
    } = standard(&mut lab, true);
    client
        .run(&["ip", "route", "add", "default", "via", "192.0.2.1"])
        .expect("client route");
    let c1 = node_config(&lab, 1, statesync);
    let c2 = node_config(&lab, 2, statesync);
    let fw1 = Node::start(&h1, c1);
    let fw2 = Node::start(&h2, c2);
    for v in [1, 2] {
        fw1.expect_state(v, "MASTER", ELECTION);
        fw2.expect_state(v, "BACKUP", ELECTION);
    }
    start_echo(&server);
    Cluster {
        lab,
        client,
        server,
        fw: vec![fw1, fw2],
    }
}

/// Three nodes on one lan, wan and sync switch each (fw`n`: eth0 192.0.2.(1+n), eth1
/// 198.51.100.(1+n), eth2 203.0.113.`n`; advskew 0, 100, 200; each a state sync peer of the
/// others), the client and the server as in the two-node cluster.
pub fn three_node_cluster(test: &str) -> Cluster {
    let mut lab = Lab::new(test).expect("lab");
    let lan = lab.switch("lan").expect("lan switch");
    let wan = lab.switch("wan").expect("wan switch");
    let sync = lab.switch("sync").expect("sync switch");
    let client = lab.host("client").expect("client");
    let server = lab.host("server").expect("server");
    lab.connect(&client, "eth0", &lan, &["192.0.2.10/24"])
        .expect("client");
    lab.connect(&server, "eth0", &wan, &["198.51.100.10/24"])
        .expect("server");
    client
        .run(&["ip", "route", "add", "default", "via", "192.0.2.1"])
        .expect("client route");
    let mut fw = Vec::new();
    for n in 1..=3u8 {
        let h = lab.host(&format!("fw{n}")).expect("host");
        lab.connect(&h, "eth0", &lan, &[&format!("192.0.2.{}/24", 1 + n)])
            .expect("lan");
        lab.connect(&h, "eth1", &wan, &[&format!("198.51.100.{}/24", 1 + n)])
            .expect("wan");
        lab.connect(&h, "eth2", &sync, &[&format!("203.0.113.{n}/24")])
            .expect("sync");
        let peers: Vec<String> = (1..=3u8)
            .filter(|p| *p != n)
            .map(|p| format!("203.0.113.{p}"))
            .collect();
        let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
        let cfg = config_for(
            &lab,
            n,
            (n - 1) * 100,
            ["eth0", "eth1", "eth2"],
            &peers,
            true,
        );
        fw.push(Node::start(&h, cfg));
    }
    for v in [1, 2] {
        fw[0].expect_state(v, "MASTER", ELECTION);
        fw[1].expect_state(v, "BACKUP", ELECTION);
        fw[2].expect_state(v, "BACKUP", ELECTION);
    }
    start_echo(&server);
    Cluster {
        lab,
        client,
        server,
        fw,
    }
}

/// A node's links down or up: cut off as by a dead switch port (`devices` of its lan, wan
/// and sync).
pub fn set_links(n: &Node, devices: &[&str], up: bool) {
    for dev in devices {
        n.host.set_link(dev, up).expect("set link");
    }
}

/// The echo server every traffic client talks to; it dies with the lab's namespaces.
fn start_echo(server: &Host) {
    let echo = server
        .spawn(&["python3", TRAFFIC, "server", "7000"])
        .expect("traffic server");
    assert!(
        lab::wait_until(Duration::from_secs(10), || echo.stdout().contains("ready")),
        "server never ready: {}",
        echo.stderr()
    );
    std::mem::forget(echo);
}

/// The traffic client: 200 TCP connections and 20 UDP flows through the cluster.
pub struct Traffic {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Traffic {
    pub fn start(c: &Cluster) -> Traffic {
        Traffic::flows(c, CONNS, UDP_FLOWS)
    }

    /// `tcp` connections and `udp` flows, each sending every 20 ms.
    pub fn flows(c: &Cluster, tcp: usize, udp: usize) -> Traffic {
        let mut child = c
            .client
            .command("python3")
            .args([
                TRAFFIC,
                "client",
                "198.51.100.10",
                "7000",
                &tcp.to_string(),
                &udp.to_string(),
                "20",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("traffic client");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut t = Traffic {
            child,
            stdin,
            stdout,
        };
        assert_eq!(t.line(), "ready");
        t
    }

    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).expect("read traffic client");
        l.trim().to_string()
    }

    pub fn mark(&mut self) {
        writeln!(self.stdin, "mark").expect("write");
        assert_eq!(self.line(), "marked");
    }

    pub fn report(&mut self) -> Vec<Value> {
        writeln!(self.stdin, "report").expect("write");
        let v: Value = serde_json::from_str(&self.line()).expect("report json");
        v["flows"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Flows that are dead now: an error, or no echo for `silence` seconds.
pub fn broken(flows: &[Value], silence: f64) -> Vec<String> {
    flows
        .iter()
        .filter(|f| !f["error"].is_null() || f["silent_for"].as_f64().unwrap_or(0.0) > silence)
        .map(|f| format!("{} {} {}", f["kind"], f["i"], f["error"]))
        .collect()
}

/// fw1's three links (lan, wan, sync) down or up: the node is cut off as by a dead switch port.
pub fn fw1_links(c: &Cluster, up: bool) {
    set_links(&c.fw[0], &["eth0", "eth1", "eth2"], up);
}

/// fw1 drops off the network and fw2 becomes master of both VIPs.
pub fn fail_over_to_fw2(c: &Cluster) {
    fw1_links(c, false);
    for v in [1, 2] {
        c.fw[1].expect_state(v, "MASTER", TAKEOVER);
    }
}

/// Every flow is alive and made progress since the mark.
pub fn assert_all_alive(what: &str, flows: &[Value], log: &str) {
    let dead = broken(flows, 2.0);
    assert!(
        dead.is_empty(),
        "{what}: {} of {} flows broke: {:?}\nlog of the node now master:\n{log}",
        dead.len(),
        flows.len(),
        &dead[..dead.len().min(10)],
    );
    for f in flows {
        assert!(
            f["echoed_after_mark"].as_u64().unwrap_or(0) > 0,
            "{what}: flow made no progress: {f}"
        );
    }
}

pub fn conntrack_count(h: &Host) -> usize {
    h.run(&["conntrack", "-L"])
        .map(|s| s.lines().filter(|l| l.contains("dport=7000")).count())
        .unwrap_or(0)
}
