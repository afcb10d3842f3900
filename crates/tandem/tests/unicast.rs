//! Unicast peers (`[[vips]] peers = [...]`) on a link that drops multicast: adverts go to each
//! listed peer, only listed peers are heard (`unknown_peer`), for CARP and VRRP, between tandem
//! nodes (with tandem's nftables ruleset on) and against keepalived's unicast mode
//! (`unicast_src_ip` + `unicast_peer`), both ways, IPv4 and IPv6.

mod common;

use common::*;
use lab::{Host, Lab, Process};
use std::path::PathBuf;
use std::time::Duration;

const V4: &str = "192.0.2.100";
const V6: &str = "2001:db8::100";
/// One list for every node (the vips area is synced): each node skips its own addresses.
const PEERS: &str = r#"["192.0.2.2", "192.0.2.3", "2001:db8::2", "2001:db8::3"]"#;

/// Drops every advert sent to the CARP/VRRP groups as it leaves `host`, as a network without
/// multicast would (a table of its own, which tandem's ruleset leaves alone).
fn drop_multicast(host: &Host) {
    host.run(&[
        "nft",
        "add table inet nomcast; \
         add chain inet nomcast out { type filter hook output priority 0 ; } ; \
         add rule inet nomcast out ip daddr 224.0.0.18 counter drop; \
         add rule inet nomcast out ip6 daddr ff02::12 counter drop",
    ])
    .expect("nft: drop multicast adverts");
}

/// How many multicast adverts `host` tried to send (and had dropped).
fn multicast_dropped(host: &Host) -> u64 {
    let out = host
        .run(&["nft", "list", "table", "inet", "nomcast"])
        .expect("nft list");
    out.lines()
        .filter_map(|l| l.split("packets ").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// fw1 (192.0.2.2, 2001:db8::2), fw2 (.3, ::3) and, when asked, an intruder fw3 (.9, ::9)
/// on one switch, none of them sending multicast adverts.
fn hosts(lab: &mut Lab, intruder: bool) -> Vec<Host> {
    let sw = lab.switch("lan").expect("switch");
    let mut out = Vec::new();
    let mut spec = vec![("fw1", "2"), ("fw2", "3")];
    if intruder {
        spec.push(("fw3", "9"));
    }
    for (name, n) in spec {
        let h = lab.host(name).expect("host");
        let v4 = format!("192.0.2.{n}/24");
        let v6 = format!("2001:db8::{n}/64");
        lab.connect(&h, "eth0", &sw, &[&v4, &v6]).expect("connect");
        drop_multicast(&h);
        out.push(h);
    }
    out
}

/// A node with one VIP (vhid 7 on lan) of `addresses`, with unicast `peers`; `vrrp` picks the
/// protocol (VRRP at 100 ms). The firewall is on: unicast adverts must pass tandem's ruleset.
fn config(
    lab: &Lab,
    name: &str,
    advskew: u8,
    vrrp: bool,
    addresses: &[&str],
    peers: &str,
) -> PathBuf {
    let addrs: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    let protocol = if vrrp {
        "protocol = \"vrrp\"\ninterval_ms = 100\n"
    } else {
        ""
    };
    let peers = if peers.is_empty() {
        String::new()
    } else {
        format!("peers = {peers}\n")
    };
    let text = format!(
        "[node]\nname = \"{name}\"\nadvskew = {advskew}\npreempt = true\ncontrol_socket = \"{sock}\"\n\n\
[interfaces]\nlan = \"eth0\"\n\n[carp]\npassphrase = \"s3cret\"\n\n\
[firewall]\nenabled = true\nforwarding = false\n\n\
[[vips]]\nvhid = 7\ninterface = \"lan\"\n{protocol}addresses = [{}]\n{peers}",
        addrs.join(", "),
        sock = lab.dir().join(format!("{name}.sock")).display()
    );
    let path = lab.dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn rejected(n: &Node, reason: &str) -> u64 {
    n.vip(7)["adverts_rejected"][reason].as_u64().unwrap_or(0)
}

fn received(n: &Node) -> u64 {
    n.vip(7)["adverts_received"].as_u64().unwrap_or(0)
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

/// Two tandem nodes with unicast peers and no multicast: elected, the VIP moves on link down
/// and back, and (with `intruder`) a third node not in the list is rejected as `unknown_peer`
/// and takes nothing, though it would win the election (priority 254 from a higher address).
fn pair_moves_the_vip(name: &str, vrrp: bool, intruder: bool) {
    let mut lab = Lab::new(name).expect("lab");
    let h = hosts(&mut lab, intruder);
    let both = ["192.0.2.100/24", "2001:db8::100/64"];
    let mut fw1 = Node::start(&h[0], config(&lab, "fw1", 0, vrrp, &both, PEERS));
    let fw2 = Node::start(&h[1], config(&lab, "fw2", 100, vrrp, &both, PEERS));
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    assert!(lab::wait_until(TAKEOVER, || h[0].has_address("eth0", V4)
        && h[0].has_address("eth0", V6)));
    assert!(
        lab::wait_until(TAKEOVER, || received(&fw2) > 5),
        "fw2 hears fw1 by unicast: {}",
        fw2.vip(7)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fw1.state(7), "MASTER");
    assert_eq!(fw2.state(7), "BACKUP");
    no_rejects(&fw1);
    no_rejects(&fw2);
    let last = fw2.vip(7)["last_master"].as_str().unwrap_or("").to_string();
    assert!(
        last == "192.0.2.2" || last == "2001:db8::2",
        "fw2's master is fw1: {last}"
    );
    assert_eq!(multicast_dropped(&h[0]), 0, "fw1 sent no multicast advert");
    assert_eq!(multicast_dropped(&h[1]), 0, "fw2 sent no multicast advert");

    if intruder {
        // fw3 lists fw1 and fw2, but they do not list it.
        let fw3_peers = r#"["192.0.2.2", "192.0.2.3", "192.0.2.9", "2001:db8::2", "2001:db8::3", "2001:db8::9"]"#;
        let fw3 = Node::start(&h[2], config(&lab, "fw3", 0, vrrp, &both, fw3_peers));
        assert!(
            lab::wait_until(ELECTION, || rejected(&fw1, "unknown_peer") > 3
                && rejected(&fw2, "unknown_peer") > 3),
            "fw3's adverts are rejected as unknown_peer: fw1 {} fw2 {}",
            fw1.vip(7),
            fw2.vip(7)
        );
        fw3.expect_state(7, "MASTER", ELECTION);
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(fw1.state(7), "MASTER", "fw3 stole the VIP: {}", fw1.vip(7));
        assert_eq!(fw2.state(7), "BACKUP");
        assert_ne!(fw2.vip(7)["last_master"], "192.0.2.9");
        assert_ne!(fw2.vip(7)["last_master"], "2001:db8::9");
        drop(fw3);
    }

    // fw1's link goes down: fw2 takes both addresses; back up: fw1 preempts.
    h[0].set_link("eth0", false).expect("link down");
    fw2.expect_state(7, "MASTER", TAKEOVER);
    assert!(lab::wait_until(TAKEOVER, || h[1].has_address("eth0", V4)
        && h[1].has_address("eth0", V6)));
    h[0].set_link("eth0", true).expect("link up");
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    assert!(lab::wait_until(TAKEOVER, || !h[1].has_address("eth0", V4)));
    assert_eq!(multicast_dropped(&h[0]), 0);
    assert_eq!(multicast_dropped(&h[1]), 0);
    fw1.sigterm();
    fw2.expect_state(7, "MASTER", TAKEOVER);
}

#[test]
fn vrrp_unicast_vip_moves_without_multicast_and_strangers_are_rejected() {
    if !lab::require_netns() {
        return;
    }
    pair_moves_the_vip("vrrp_unicast_pair", true, true);
}

#[test]
fn carp_unicast_vip_moves_without_multicast() {
    if !lab::require_netns() {
        return;
    }
    pair_moves_the_vip("carp_unicast_pair", false, false);
}

/// keepalived in unicast mode: one VRRPv3 instance (vrid 7 on eth0) from `src` to `peer`.
fn keepalived(lab: &Lab, host: &Host, priority: u8, vip: &str, src: &str, peer: &str) -> Process {
    let unicast = format!("  unicast_src_ip {src}\n  unicast_peer {{\n    {peer}\n  }}\n");
    keepalived_vrrp(lab, host, priority, "0.1", vip, &unicast)
}

/// keepalived (fw2) and tandem (fw1) in unicast mode take turns as master: keepalived first
/// (priority 200 over tandem's 154), then, after keepalived resigns, tandem (254) with a
/// new keepalived (100) as its backup, which takes over when tandem resigns.
fn keepalived_takes_turns(name: &str, vip: &str, addr: &str, fw1: &str, fw2: &str) {
    let mut lab = Lab::new(name).expect("lab");
    let h = hosts(&mut lab, false);
    let peers = format!("[\"{fw1}\", \"{fw2}\"]");
    let mut n1 = Node::start(&h[0], config(&lab, "fw1", 100, true, &[vip], &peers));
    let mut ka = keepalived(&lab, &h[1], 200, vip, fw2, fw1);
    assert!(
        lab::wait_until(ELECTION, || h[1].has_address("eth0", addr)),
        "keepalived never took the VIP:\n{}",
        ka.stderr()
    );
    n1.expect_state(7, "BACKUP", TAKEOVER);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        n1.state(7),
        "BACKUP",
        "tandem (154) took over from keepalived (200)"
    );
    assert!(!h[0].has_address("eth0", addr));
    let v = n1.vip(7);
    assert_eq!(v["last_master"], fw2, "{v}");
    assert!(received(&n1) > 5, "{v}");
    no_rejects(&n1);
    // keepalived resigns (priority 0, by unicast): tandem takes over.
    ka.signal("TERM").expect("SIGTERM keepalived");
    n1.expect_state(7, "MASTER", TAKEOVER);
    assert_eq!(n1.vip(7)["last_transition"]["reason"], "priority-zero");
    assert!(lab::wait_until(TAKEOVER, || h[0].has_address("eth0", addr)));
    ka.wait_timeout(Duration::from_secs(10))
        .expect("wait for keepalived")
        .expect("keepalived exits on SIGTERM");

    // tandem (254) master, a new keepalived (100) its backup.
    n1.sigterm();
    let mut n1 = Node::start(&h[0], config(&lab, "fw1", 0, true, &[vip], &peers));
    let ka = keepalived(&lab, &h[1], 100, vip, fw2, fw1);
    n1.expect_state(7, "MASTER", ELECTION);
    assert!(lab::wait_until(TAKEOVER, || !h[1].has_address("eth0", addr)));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !h[1].has_address("eth0", addr),
        "keepalived took the VIP:\n{}",
        ka.stderr()
    );
    let log = ka.stderr();
    assert!(!log.contains("unexpected ip number count"), "{log}");
    assert!(
        !log.contains("checksum"),
        "keepalived rejects tandem's checksum:\n{log}"
    );
    assert_eq!(
        multicast_dropped(&h[0]),
        0,
        "tandem sent no multicast advert"
    );
    n1.sigterm();
    assert!(
        lab::wait_until(TAKEOVER, || h[1].has_address("eth0", addr)),
        "keepalived never took over:\n{}",
        ka.stderr()
    );
}

#[test]
fn keepalived_unicast_interop_both_ways_ipv4() {
    if !lab::require_netns() {
        return;
    }
    keepalived_takes_turns(
        "keepalived_unicast_v4",
        "192.0.2.100/24",
        V4,
        "192.0.2.2",
        "192.0.2.3",
    );
}

#[test]
fn keepalived_unicast_interop_both_ways_ipv6() {
    if !lab::require_netns() {
        return;
    }
    keepalived_takes_turns(
        "keepalived_unicast_v6",
        "2001:db8::100/64",
        V6,
        "2001:db8::2",
        "2001:db8::3",
    );
}

/// Peers added by a reload take effect, IPv6 included (its socket is reopened to send from the
/// global address): two VRRP nodes that could not hear each other (both MASTER, multicast
/// dropped) settle to one master once they list each other.
#[test]
fn peers_added_on_reload_take_effect_ipv6() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("unicast_peers_on_reload").expect("lab");
    let h = hosts(&mut lab, false);
    let vip = ["2001:db8::100/64"];
    let fw1 = Node::start(&h[0], config(&lab, "fw1", 0, true, &vip, ""));
    let fw2 = Node::start(&h[1], config(&lab, "fw2", 100, true, &vip, ""));
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "MASTER", ELECTION);
    assert!(
        multicast_dropped(&h[1]) > 0,
        "multicast adverts are dropped"
    );
    for n in [&fw1, &fw2] {
        config(
            &lab,
            n.host.name(),
            if n.host.name() == "fw1" { 0 } else { 100 },
            true,
            &vip,
            r#"["2001:db8::2", "2001:db8::3"]"#,
        );
        let (ok, out, err) = n.cli(&["reload"]);
        assert!(ok, "reload {}: {out}{err}", n.host.name());
    }
    fw2.expect_state(7, "BACKUP", ELECTION);
    fw1.expect_state(7, "MASTER", ELECTION);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(fw2.vip(7)["last_master"], "2001:db8::2", "{}", fw2.vip(7));
    no_rejects(&fw2);
}
