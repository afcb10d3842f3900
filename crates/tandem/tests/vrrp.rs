//! VRRPv3 VIPs (`protocol = "vrrp"`) between real tandem daemons in network namespaces, and
//! against keepalived (Debian's package), both ways, IPv4 and IPv6.

mod common;

use common::*;
use lab::{Host, Lab, Process};
use std::path::PathBuf;
use std::time::Duration;

const V4: &str = "192.0.2.100";
const V6: &str = "2001:db8::100";

/// fw1 (192.0.2.2, 2001:db8::2) and fw2 (192.0.2.3, 2001:db8::3) on one switch.
fn pair(lab: &mut Lab) -> (Host, Host) {
    let sw = lab.switch("lan").expect("switch");
    let h1 = lab.host("fw1").expect("fw1");
    let h2 = lab.host("fw2").expect("fw2");
    lab.connect(&h1, "eth0", &sw, &["192.0.2.2/24", "2001:db8::2/64"])
        .expect("connect");
    lab.connect(&h2, "eth0", &sw, &["192.0.2.3/24", "2001:db8::3/64"])
        .expect("connect");
    (h1, h2)
}

/// A tandem node with one VRRP VIP (vhid 7 on lan) of `addresses`.
fn tandem_config(
    lab: &Lab,
    name: &str,
    advskew: u8,
    interval_ms: u32,
    addresses: &[&str],
) -> PathBuf {
    let addrs: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        "[node]\nname = \"{name}\"\nadvskew = {advskew}\npreempt = true\ncontrol_socket = \"{sock}\"\n\n\
[interfaces]\nlan = \"eth0\"\n\n[carp]\npassphrase = \"unused-by-vrrp\"\n\n\
[[vips]]\nvhid = 7\ninterface = \"lan\"\nprotocol = \"vrrp\"\ninterval_ms = {interval_ms}\naddresses = [{}]\n",
        addrs.join(", "),
        sock = lab.dir().join(format!("{name}.sock")).display()
    );
    let path = lab.dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// keepalived with one multicast VRRPv3 instance (vrid 7 on eth0).
fn keepalived(lab: &Lab, host: &Host, priority: u8, advert_int: &str, vip: &str) -> Process {
    keepalived_vrrp(lab, host, priority, advert_int, vip, "")
}

fn no_rejects(n: &Node) {
    let v = n.vip(7);
    assert!(
        v["adverts_rejected"]
            .as_object()
            .is_some_and(|m| m.is_empty()),
        "{} rejected adverts: {v}",
        n.host.name()
    );
}

#[test]
fn vrrp_vips_move_between_tandem_nodes_with_10ms_adverts() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("vrrp_vips_move_between_tandem_nodes_with_10ms_adverts").expect("lab");
    let (h1, h2) = pair(&mut lab);
    let both = ["192.0.2.100/24", "2001:db8::100/64"];
    let mut fw1 = Node::start(&h1, tandem_config(&lab, "fw1", 0, 10, &both));
    let fw2 = Node::start(&h2, tandem_config(&lab, "fw2", 100, 10, &both));
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    assert!(lab::wait_until(TAKEOVER, || h1.has_address("eth0", V4)
        && h1.has_address("eth0", V6)));
    let v1 = fw1.vip(7);
    assert_eq!(v1["protocol"], "vrrp", "{v1}");
    assert_eq!(v1["priority"], 254, "{v1}");
    assert_eq!(v1["interval_ms"], 10, "{v1}");
    let v2 = fw2.vip(7);
    assert_eq!(v2["priority"], 154, "{v2}");
    assert!(
        lab::wait_until(TAKEOVER, || fw2.vip(7)["adverts_received"]
            .as_u64()
            .unwrap_or(0)
            > 50),
        "fw2 hears fw1's adverts (every 10 ms): {}",
        fw2.vip(7)
    );
    no_rejects(&fw2);
    // The text status says which protocol and priority.
    let out = h2
        .command(TANDEM)
        .args(["status", "--config"])
        .arg(&fw2.config)
        .output()
        .expect("tandem status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("vrrp") && text.contains("prio 154") && text.contains("10ms"),
        "{text}"
    );

    // fw1's link goes down: fw2 takes both addresses; back up: fw1 preempts.
    h1.set_link("eth0", false).expect("link down");
    fw2.expect_state(7, "MASTER", TAKEOVER);
    assert!(lab::wait_until(TAKEOVER, || h2.has_address("eth0", V4)
        && h2.has_address("eth0", V6)));
    h1.set_link("eth0", true).expect("link up");
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    assert!(lab::wait_until(TAKEOVER, || !h2.has_address("eth0", V4)));

    // A clean stop sends priority 0: fw2 takes over after its skew, not master-down.
    fw1.sigterm();
    fw2.expect_state(7, "MASTER", TAKEOVER);
    let t = fw2.vip(7)["last_transition"].clone();
    assert_eq!(t["reason"], "priority-zero", "{t}");
    no_rejects(&fw2);
}

#[test]
fn a_vrrp_config_error_names_its_place() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("fw.toml");
    std::fs::write(
        &path,
        "[node]\nname = \"fw1\"\ncontrol_socket = \"/tmp/x.sock\"\n[interfaces]\nlan = \"eth0\"\n[carp]\npassphrase = \"p\"\n\
[[vips]]\nvhid = 7\ninterface = \"lan\"\nprotocol = \"vrrp\"\ninterval_ms = 15\naddresses = [\"192.0.2.1/24\"]\n\
[[vips]]\nvhid = 8\ninterface = \"lan\"\nprotocol = \"vrp\"\naddresses = [\"192.0.2.9/24\"]\n\
[[vips]]\nvhid = 9\ninterface = \"lan\"\ninterval_ms = 100\naddresses = [\"192.0.2.8/24\"]\n",
    )
    .expect("write");
    let out = std::process::Command::new(TANDEM)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("tandem check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("fw.toml:12:15: vips.interval_ms must be a multiple of 10"),
        "{err}"
    );
    assert!(
        err.contains("fw.toml:17:12: vips.protocol must be \"carp\" or \"vrrp\", not \"vrp\""),
        "{err}"
    );
    assert!(
        err.contains("fw.toml:22:15: vips.interval_ms is VRRP's"),
        "{err}"
    );
}

#[test]
fn keepalived_master_and_tandem_backup_then_tandem_takes_over_ipv4() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("keepalived_master_tandem_backup_v4").expect("lab");
    let (h1, h2) = pair(&mut lab);
    let fw1 = Node::start(
        &h1,
        tandem_config(&lab, "fw1", 100, 100, &["192.0.2.100/24"]),
    );
    let mut ka = keepalived(&lab, &h2, 200, "0.1", "192.0.2.100/24");
    assert!(
        lab::wait_until(ELECTION, || h2.has_address("eth0", V4)),
        "keepalived never took the VIP:\n{}",
        ka.stderr()
    );
    fw1.expect_state(7, "BACKUP", TAKEOVER);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        fw1.state(7),
        "BACKUP",
        "tandem (priority 154) took over from keepalived (200)"
    );
    assert!(!h1.has_address("eth0", V4));
    let v = fw1.vip(7);
    assert_eq!(v["last_master"], "192.0.2.3", "{v}");
    no_rejects(&fw1);
    // keepalived dies without a word: tandem takes over at master-down.
    ka.kill().expect("kill keepalived");
    fw1.expect_state(7, "MASTER", TAKEOVER);
    assert!(lab::wait_until(TAKEOVER, || h1.has_address("eth0", V4)));
}

#[test]
fn tandem_master_and_keepalived_backup_then_keepalived_takes_over_ipv4() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("tandem_master_keepalived_backup_v4").expect("lab");
    let (h1, h2) = pair(&mut lab);
    let mut fw1 = Node::start(&h1, tandem_config(&lab, "fw1", 0, 100, &["192.0.2.100/24"]));
    let ka = keepalived(&lab, &h2, 100, "0.1", "192.0.2.100/24");
    fw1.expect_state(7, "MASTER", ELECTION);
    // keepalived may have been master for a moment; it must give the VIP up and stay backup.
    assert!(
        lab::wait_until(TAKEOVER, || !h2.has_address("eth0", V4)),
        "keepalived keeps the VIP:\n{}",
        ka.stderr()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !h2.has_address("eth0", V4),
        "keepalived took the VIP:\n{}",
        ka.stderr()
    );
    assert_eq!(fw1.state(7), "MASTER");
    no_rejects(&fw1);
    let log = ka.stderr();
    assert!(!log.contains("unexpected ip number count"), "{log}");
    // tandem stops cleanly: priority 0, keepalived takes over at once.
    fw1.sigterm();
    assert!(
        lab::wait_until(TAKEOVER, || h2.has_address("eth0", V4)),
        "keepalived never took over:\n{}",
        ka.stderr()
    );
    assert!(!h1.has_address("eth0", V4));
}

#[test]
fn keepalived_and_tandem_take_turns_over_ipv6() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("keepalived_and_tandem_take_turns_v6").expect("lab");
    let (h1, h2) = pair(&mut lab);
    // keepalived (priority 200) is master, tandem (154) its backup.
    let mut fw1 = Node::start(
        &h1,
        tandem_config(&lab, "fw1", 100, 100, &["2001:db8::100/64"]),
    );
    let mut ka = keepalived(&lab, &h2, 200, "0.1", "2001:db8::100/64");
    assert!(
        lab::wait_until(ELECTION, || h2.has_address("eth0", V6)),
        "keepalived never took the VIP:\n{}",
        ka.stderr()
    );
    fw1.expect_state(7, "BACKUP", TAKEOVER);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fw1.state(7), "BACKUP");
    let v = fw1.vip(7);
    let master = v["last_master"].as_str().unwrap_or_default().to_string();
    assert!(
        master.starts_with("fe80:"),
        "IPv6 adverts come from link-local: {v}"
    );
    no_rejects(&fw1);
    // keepalived stops cleanly (priority 0): tandem takes over.
    ka.signal("TERM").expect("SIGTERM keepalived");
    fw1.expect_state(7, "MASTER", TAKEOVER);
    assert_eq!(fw1.vip(7)["last_transition"]["reason"], "priority-zero");
    assert!(lab::wait_until(TAKEOVER, || h1.has_address("eth0", V6)));
    ka.wait_timeout(Duration::from_secs(10))
        .expect("wait for keepalived")
        .expect("keepalived exits on SIGTERM");

    // Now tandem (254) is master and a new keepalived (100) stays its backup.
    fw1.sigterm();
    let mut fw1 = Node::start(
        &h1,
        tandem_config(&lab, "fw1", 0, 100, &["2001:db8::100/64"]),
    );
    let ka = keepalived(&lab, &h2, 100, "0.1", "2001:db8::100/64");
    fw1.expect_state(7, "MASTER", ELECTION);
    assert!(lab::wait_until(TAKEOVER, || !h2.has_address("eth0", V6)));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !h2.has_address("eth0", V6),
        "keepalived took the VIP:\n{}",
        ka.stderr()
    );
    fw1.sigterm();
    assert!(
        lab::wait_until(TAKEOVER, || h2.has_address("eth0", V6)),
        "keepalived never took over:\n{}",
        ka.stderr()
    );
}
