//! State sync through real daemons: established connections (NATed to the WAN VIP) survive the
//! death of the master, and, as the control, do not survive it without state sync.
//!
//! The standard cluster: client — lan — fw1, fw2 — wan — server, plus a sync link fw1 — fw2.

mod common;

use common::*;
use lab::{Host, Lab, Switch};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::Duration;

const TRAFFIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/traffic.py");
const CONNS: usize = 200;
const UDP_FLOWS: usize = 20;

struct Cluster {
    lab: Lab,
    lan: Switch,
    wan: Switch,
    client: Host,
    server: Host,
    fw: Vec<Node>,
}

fn node_config(lab: &Lab, n: u8, statesync: bool) -> std::path::PathBuf {
    let name = format!("fw{n}");
    let peer = if n == 1 { "203.0.113.2" } else { "203.0.113.1" };
    let skew = if n == 1 { 0 } else { 100 };
    let (lan, wan, sync) = if n == 1 {
        ("eth0", "eth1", "eth2")
    } else {
        ("ens5", "ens6", "ens7")
    };
    let text = format!(
        r#"[node]
name = "{name}"
advskew = {skew}
preempt = true
control_socket = "{dir}/{name}.sock"

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
peers = ["{peer}"]
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

fn cluster(test: &str, statesync: bool) -> Cluster {
    let mut lab = Lab::new(test).expect("lab");
    let lan = lab.switch("lan").expect("switch");
    let wan = lab.switch("wan").expect("switch");
    let client = lab.host("client").expect("host");
    let server = lab.host("server").expect("host");
    let h1 = lab.host("fw1").expect("host");
    let h2 = lab.host("fw2").expect("host");
    lab.connect(&client, "eth0", &lan, &["192.0.2.10/24"])
        .expect("connect");
    lab.connect(&server, "eth0", &wan, &["198.51.100.10/24"])
        .expect("connect");
    lab.connect(&h1, "eth0", &lan, &["192.0.2.2/24"])
        .expect("connect");
    lab.connect(&h1, "eth1", &wan, &["198.51.100.2/24"])
        .expect("connect");
    lab.connect(&h2, "ens5", &lan, &["192.0.2.3/24"])
        .expect("connect");
    lab.connect(&h2, "ens6", &wan, &["198.51.100.3/24"])
        .expect("connect");
    lab.link(
        &h1,
        "eth2",
        &["203.0.113.1/24"],
        &h2,
        "ens7",
        &["203.0.113.2/24"],
    )
    .expect("sync link");
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
    Cluster {
        lab,
        lan,
        wan,
        client,
        server,
        fw: vec![fw1, fw2],
    }
}

/// The traffic client: 200 TCP connections and 20 UDP flows through the cluster.
struct Traffic {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Traffic {
    fn start(c: &Cluster) -> Traffic {
        let server = c
            .server
            .spawn(&["python3", TRAFFIC, "server", "7000"])
            .expect("traffic server");
        assert!(
            lab::wait_until(Duration::from_secs(10), || server
                .stdout()
                .contains("ready")),
            "server never ready: {}",
            server.stderr()
        );
        std::mem::forget(server); // killed with the lab's namespaces
        let mut child = c
            .client
            .command("python3")
            .args([
                TRAFFIC,
                "client",
                "198.51.100.10",
                "7000",
                &CONNS.to_string(),
                &UDP_FLOWS.to_string(),
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

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).expect("read traffic client");
        l.trim().to_string()
    }

    fn mark(&mut self) {
        writeln!(self.stdin, "mark").expect("write");
        assert_eq!(self.line(), "marked");
    }

    fn report(&mut self) -> Vec<Value> {
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
fn broken(flows: &[Value], silence: f64) -> Vec<String> {
    flows
        .iter()
        .filter(|f| !f["error"].is_null() || f["silent_for"].as_f64().unwrap_or(0.0) > silence)
        .map(|f| format!("{} {} {}", f["kind"], f["i"], f["error"]))
        .collect()
}

fn conntrack_count(h: &Host) -> usize {
    h.run(&["conntrack", "-L"])
        .map(|s| s.lines().filter(|l| l.contains("dport=7000")).count())
        .unwrap_or(0)
}

#[test]
fn established_connections_survive_the_master_dying() {
    if !lab::require_netns() {
        return;
    }
    let c = cluster("established_connections_survive_the_master_dying", true);
    let mut t = Traffic::start(&c);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        broken(&t.report(), 1.0).is_empty(),
        "flows broken before failover"
    );
    // fw2 must know every connection before fw1 dies.
    let ok = lab::wait_until(Duration::from_secs(10), || {
        conntrack_count(&c.fw[1].host) >= CONNS + UDP_FLOWS
    });
    assert!(
        ok,
        "fw2 has {} of {} states\n{}",
        conntrack_count(&c.fw[1].host),
        CONNS + UDP_FLOWS,
        c.fw[1].log()
    );
    t.mark();
    for dev in ["eth0", "eth1", "eth2"] {
        c.fw[0].host.set_link(dev, false).expect("link down");
    }
    for v in [1, 2] {
        c.fw[1].expect_state(v, "MASTER", TAKEOVER);
    }
    std::thread::sleep(Duration::from_secs(5));
    let flows = t.report();
    let dead = broken(&flows, 2.0);
    assert!(
        dead.is_empty(),
        "{} of {} flows broke on failover: {:?}\nfw2 log:\n{}",
        dead.len(),
        flows.len(),
        &dead[..dead.len().min(10)],
        c.fw[1].log()
    );
    for f in &flows {
        assert!(
            f["echoed_after_mark"].as_u64().unwrap_or(0) > 0,
            "flow made no progress after failover: {f}"
        );
    }
    let _ = (&c.lab, &c.lan, &c.wan);
}

#[test]
fn without_state_sync_the_same_failover_breaks_connections() {
    if !lab::require_netns() {
        return;
    }
    let c = cluster(
        "without_state_sync_the_same_failover_breaks_connections",
        false,
    );
    let mut t = Traffic::start(&c);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        broken(&t.report(), 1.0).is_empty(),
        "flows broken before failover"
    );
    assert_eq!(
        conntrack_count(&c.fw[1].host),
        0,
        "fw2 learned states without sync"
    );
    t.mark();
    for dev in ["eth0", "eth1", "eth2"] {
        c.fw[0].host.set_link(dev, false).expect("link down");
    }
    for v in [1, 2] {
        c.fw[1].expect_state(v, "MASTER", TAKEOVER);
    }
    std::thread::sleep(Duration::from_secs(5));
    let flows = t.report();
    let tcp_dead = broken(&flows, 2.0)
        .iter()
        .filter(|f| f.starts_with("\"tcp\""))
        .count();
    // Without states, fw2 drops the mid-stream TCP packets: every connection stalls.
    assert_eq!(
        tcp_dead, CONNS,
        "control: connections survived without state sync"
    );
}
