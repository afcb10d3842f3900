//! The synced area `wireguard` between real daemons in network namespaces (the config-sync
//! cluster of `tests/configsync.rs`, CARP on the LAN and the WAN): each node runs a userspace
//! WireGuard (boringtun, crates/wg-userspace) that Tandem configures over UAPI; a remote peer on
//! the WAN side has a tunnel to the WAN VIP and pings a LAN host through it, before and after
//! the master's node dies. The key, given by file on fw1, is pushed to fw2 and shows nowhere.

mod common;
#[allow(dead_code)]
#[path = "configsync/harness.rs"]
mod harness;

use common::*;
use harness::*;
use lab::{Host, Lab, Process};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cluster's key (both nodes), and the remote peer's: `wg genkey` output.
const CLUSTER_KEY: &str = "YBnMYhMJ6Bxmq3+sNy6Dqp1TA8pEGAyfTWCV7oc8kWs=";
const REMOTE_KEY: &str = "4Mbbx6wtj5KSFBNTbYSwmdc9PNsB9V0HAl1aHxA1MUM=";

/// The wg-userspace binary, built beside the tests (`cargo test --workspace` builds it).
fn wg_userspace() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("wg-userspace");
    assert!(
        p.exists(),
        "{} is missing: `cargo build -p wg-userspace` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

fn public_key(private: &str) -> String {
    let mut c = std::process::Command::new(wg_userspace())
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wg-userspace pubkey");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(private.as_bytes())
        .expect("write");
    let out = c.wait_with_output().expect("pubkey");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// Starts boringtun for device wg0 in `host`, its UAPI socket in `dir`.
fn start_wg(host: &Host, dir: &Path) -> Process {
    std::fs::create_dir_all(dir).expect("mkdir");
    let sock = dir.join("wg0.sock");
    let bin = wg_userspace();
    let p = host
        .spawn(&[
            bin.to_str().expect("path"),
            "run",
            "wg0",
            sock.to_str().expect("path"),
        ])
        .expect("wg-userspace");
    assert!(
        lab::wait_until(Duration::from_secs(10), || sock.exists()),
        "wg-userspace did not start in {}: {}",
        host.name(),
        p.stderr()
    );
    p
}

/// One UAPI exchange with the remote's device; its answer.
fn uapi(sock: &Path, request: &str) -> String {
    let s = UnixStream::connect(sock).expect("uapi socket");
    (&s).write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let mut r = BufReader::new(&s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("read") == 0 || line == "\n" {
            break;
        }
        answer.push_str(&line);
    }
    assert!(answer.contains("errno=0"), "{request} -> {answer}");
    answer
}

fn hex(b64: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn wireguard_local(lab_dir: &Path, node: &str) -> String {
    format!(
        "\n[wireguard_local]\nsocket_dir = \"{}\"\n",
        lab_dir.join(format!("wg-{node}")).display()
    )
}

/// The area as fw1's file has it: the key by file, the remote peer, rules for the tunnel.
fn area(key_file: &Path, remote_pub: &str) -> String {
    format!(
        r#"
[[rules]]
interface = "wan"
action = "pass"
protocol = "udp"
destination_port = 51820
description = "wireguard"

[[rules]]
interface = "wg0"
action = "pass"
source = "203.0.113.202"
description = "from the tunnel"

[[wireguard]]
name = "wg0"
listen_port = 51820
vip = "198.51.100.1"
addresses = ["203.0.113.201/30"]
private_key_file = "{}"

[[wireguard.peers]]
public_key = "{remote_pub}"
allowed_ips = ["203.0.113.202/32"]
"#,
        key_file.display()
    )
}

/// Pings the LAN client from the remote through the tunnel until it answers.
fn ping_through(c: &Cluster, remote: &Host, what: &str) {
    let ok = lab::wait_until(Duration::from_secs(20), || remote.ping("192.0.2.10", 1, 1));
    assert!(
        ok,
        "{what}: no answer from 192.0.2.10 through the tunnel\nfw1 wireguard: {}\nfw2 wireguard: {}\n--- fw2 log:\n{}",
        c.fw1_try_wireguard(),
        c.fw2.try_status().map(|s| s["wireguard"].to_string()).unwrap_or_default(),
        c.fw2.log()
    );
}

trait Wg {
    fn fw1_try_wireguard(&self) -> String;
}

impl Wg for Cluster {
    fn fw1_try_wireguard(&self) -> String {
        self.fw1()
            .try_status()
            .map(|s| s["wireguard"].to_string())
            .unwrap_or_default()
    }
}

#[test]
fn a_remote_peer_reaches_the_lan_through_the_wan_vip_across_a_failover() {
    if !lab::require_netns() {
        return;
    }
    let remote_pub = public_key(REMOTE_KEY);
    let cluster_pub = public_key(CLUSTER_KEY);
    let tunnels: RefCell<Vec<Process>> = RefCell::new(Vec::new());
    // The key file and the node-local socket folders are named before the lab exists: a
    // folder of their own.
    let keys = tempfile::tempdir().expect("tmp");
    let key_file = keys.path().join("wg0.key");
    std::fs::write(&key_file, format!("{CLUSTER_KEY}\n")).expect("key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let socks = keys.path().join("run");
    // Each node's boringtun runs before its daemon starts, as an admin sets it up.
    let setup = |_: &Lab, h1: &Host, h2: &Host| {
        let mut t = tunnels.borrow_mut();
        t.push(start_wg(h1, &socks.join("wg-fw1")));
        t.push(start_wg(h2, &socks.join("wg-fw2")));
    };
    let fw2_local = wireguard_local(&socks, "fw2");
    let o = Opts {
        fw1_areas: format!(
            "{VIPS}{BASE_RULES}{}{}",
            area(&key_file, &remote_pub),
            wireguard_local(&socks, "fw1")
        ),
        fw2_areas: &fw2_local,
        before_nodes: Some(&setup),
        ..opts()
    };
    let c = cluster("wg_area", &o);
    c.fw1().expect_state(8, "MASTER", ELECTION);
    c.fw2.expect_state(8, "BACKUP", ELECTION);
    c.wait_in_sync();

    // The remote peer: on the WAN side, its own boringtun, configured over UAPI.
    let server = &c.server;
    let remote_dir = keys.path().join("run/wg-remote");
    let _remote_wg = start_wg(server, &remote_dir);
    uapi(
        &remote_dir.join("wg0.sock"),
        &format!(
            "set=1\nprivate_key={}\nlisten_port=51820\nreplace_peers=true\npublic_key={}\nendpoint=198.51.100.1:51820\npersistent_keepalive_interval=1\nallowed_ip=203.0.113.200/30\nallowed_ip=192.0.2.0/24\n\n",
            hex(REMOTE_KEY),
            hex(&cluster_pub)
        ),
    );
    for cmd in [
        "ip addr add 203.0.113.202/30 dev wg0",
        "ip link set wg0 up",
        "ip route add 192.0.2.0/24 dev wg0",
    ] {
        server
            .run(&cmd.split(' ').collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
    // The LAN client answers the tunnel through the LAN VIP.
    c.client
        .run(&["ip", "route", "add", "203.0.113.200/30", "via", "192.0.2.1"])
        .expect("route");

    // Both nodes run the tunnel: the key, the peer, the address (tagged as Tandem's).
    for (n, h) in [(c.fw1(), &c.h1), (&c.fw2, &c.fw2.host)] {
        c.wait("the tunnel applied", || {
            n.status()["wireguard"][0]["applied"] == true
        });
        let w = n.status()["wireguard"][0].clone();
        assert_eq!(w["device"], "wg0", "{w}");
        assert_eq!(w["public_key"], cluster_pub.as_str(), "{w}");
        assert_eq!(w["drift"], serde_json::Value::Null, "{w}");
        assert_eq!(w["peers"][0]["public_key"], remote_pub.as_str(), "{w}");
        let addrs = h.run(&["ip", "addr", "show", "dev", "wg0"]).expect("ip");
        assert!(addrs.contains("203.0.113.201/30"), "{addrs}");
    }

    // Traffic through the tunnel, to the master.
    ping_through(&c, server, "through fw1");

    // The key shows nowhere: status, config show (both nodes), get_areas; on fw2 it lives in
    // files only root can read.
    for n in [c.fw1(), &c.fw2] {
        let (ok, show) = tandem(n, &["config", "show"]);
        assert!(ok, "{show}");
        assert!(!show.contains(CLUSTER_KEY), "{show}");
        assert!(show.contains("private_key = \"<secret>\""), "{show}");
        let (ok, st) = tandem(n, &["status", "--json"]);
        assert!(ok && !st.contains(CLUSTER_KEY), "{st}");
        let (ok, st) = tandem(n, &["status"]);
        assert!(ok && st.contains("wireguard wg0 (wg0): port 51820"), "{st}");
        assert!(!n.log().contains(CLUSTER_KEY));
        let s = n.status();
        assert!(
            undocumented_status_keys(&s).is_empty(),
            "{:?}",
            undocumented_status_keys(&s)
        );
    }
    let state2 = c.lab.dir().join("fw2-state");
    let mut holding = 0;
    for e in std::fs::read_dir(&state2).expect("state dir").flatten() {
        let p = e.path();
        if std::fs::read_to_string(&p).is_ok_and(|t| t.contains(CLUSTER_KEY)) {
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} holds the key", p.display());
            holding += 1;
        }
    }
    assert!(holding > 0, "fw2 keeps the pushed key in its state dir");
    let got = python_client(&c, &c.lab.dir().join("fw2-state/cert.pem"));
    let area = got["get_areas_wireguard"]["text"]
        .as_str()
        .expect("wireguard text")
        .to_string();
    assert!(
        !area.contains(CLUSTER_KEY) && area.contains("private_key = \"<secret>\""),
        "{area}"
    );

    // A tunnel whose device has no UAPI socket, on a kernel without WireGuard (this test's
    // machines; a kernel with it would get a link of Tandem's made): the reload is refused
    // and changes nothing.
    let kernel_wg = linux::wireguard_kernel::family("wg1")
        .expect("generic netlink lookup")
        .is_some();
    if !kernel_wg {
        let generation = c.fw1().status()["config_sync"]["generation"].clone();
        let text = std::fs::read_to_string(&c.fw1().config).expect("config");
        edit(&c.fw1().config, |t| {
            t.replacen(
                "[wireguard_local]",
                &format!("[[wireguard]]\nname = \"wg1\"\nprivate_key = \"{REMOTE_KEY}\"\n\n[wireguard_local]"),
                1,
            )
        });
        let (ok, out) = tandem(c.fw1(), &["reload"]);
        assert!(
            !ok && out.contains("wireguard \"wg1\": no UAPI socket")
                && out.contains("the kernel has no WireGuard"),
            "{out}"
        );
        assert!(!out.contains(REMOTE_KEY), "{out}");
        let s1 = c.fw1().status();
        assert_eq!(s1["config_sync"]["generation"], generation);
        assert_eq!(s1["wireguard"].as_array().map(Vec::len), Some(1), "{s1}");
        std::fs::write(&c.fw1().config, text).expect("put the config back");
    }

    // The master's node dies (its links down): fw2 takes the WAN VIP, the tunnel goes on.
    c.h1.set_link("eth0", false).expect("fw1 lan down");
    c.h1.set_link("eth1", false).expect("fw1 wan down");
    c.fw2.expect_state(8, "MASTER", TAKEOVER);
    c.fw2.expect_state(7, "MASTER", TAKEOVER);
    ping_through(&c, server, "through fw2 after fw1 died");
}
