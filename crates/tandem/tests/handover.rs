//! Planned hand-overs through real daemons: maintenance mode (persistent across a restart),
//! `tandem switchover` (to the best backup, and to a named peer among three), and the
//! hand-over itself staying lossless: established NATed connections see no retransmission
//! and no reset when the master enters maintenance mode.

mod common;

use common::nat_cluster::*;
use common::*;
use lab::{Host, Lab};
use std::time::Duration;

/// TCP segments retransmitted so far by the endpoints in `hosts` (their namespaces' counters).
fn retransmissions(hosts: &[&Host]) -> u64 {
    hosts
        .iter()
        .map(|h| {
            let out = h
                .run(&["nstat", "-az", "TcpRetransSegs"])
                .unwrap_or_default();
            out.lines()
                .find(|l| l.starts_with("TcpRetransSegs"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no TcpRetransSegs in {}: {out:?}", h.name()))
        })
        .sum()
}

fn demotion_sources(n: &Node) -> Vec<String> {
    n.status()["demotions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d["source"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn maintenance_mode_hands_over_losslessly_and_survives_a_restart() {
    if !lab::require_netns() {
        return;
    }
    let mut c = cluster("handover_maintenance", true);
    let mut t = Traffic::start(&c);
    let ok = lab::wait_until(Duration::from_secs(10), || {
        conntrack_count(&c.fw[1].host) >= CONNS + UDP_FLOWS
    });
    assert!(ok, "fw2 never held every state\n{}", c.fw[1].log());
    std::thread::sleep(Duration::from_secs(1));
    let before = retransmissions(&[&c.client, &c.server]);
    t.mark();

    let (ok, out, err) = c.fw[0].cli(&["maintenance", "enter"]);
    assert!(ok, "maintenance enter failed: {out}{err}");
    assert!(out.contains("maintenance mode"), "{out}");
    assert!(out.contains("confirmed by 1 peer"), "no barrier: {out}");
    for v in [1, 2] {
        c.fw[1].expect_state(v, "MASTER", Duration::from_secs(3));
        c.fw[0].expect_state(v, "BACKUP", Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_all_alive("maintenance enter", &t.report(), &c.fw[1].log());
    let after = retransmissions(&[&c.client, &c.server]);
    assert_eq!(
        after - before,
        0,
        "the hand-over cost TCP retransmissions\nfw1:\n{}",
        c.fw[0].log()
    );
    let st = c.fw[0].status();
    assert_eq!(st["maintenance"], true, "{st}");
    assert!(st["maintenance_since"].as_u64().is_some(), "{st}");
    assert!(demotion_sources(&c.fw[0]).contains(&"maintenance".to_string()));
    let (ok, text, _) = c.fw[0].cli(&["status"]);
    assert!(ok && text.contains("MAINTENANCE MODE"), "{text}");
    // Entering again changes nothing.
    let (ok, out, _) = c.fw[0].cli(&["maintenance", "enter"]);
    assert!(ok && out.contains("already in maintenance mode"), "{out}");

    // A restart keeps the node out: it stays a backup well past its master-down time.
    c.fw[0].sigterm();
    c.fw[0].restart();
    std::thread::sleep(Duration::from_secs(6));
    for v in [1, 2] {
        assert_eq!(c.fw[0].state(v), "BACKUP", "{}", c.fw[0].log());
        assert_eq!(c.fw[1].state(v), "MASTER");
    }
    assert_eq!(c.fw[0].status()["maintenance"], true);
    assert!(
        c.fw[0].log().contains("maintenance mode"),
        "{}",
        c.fw[0].log()
    );

    // Leaving: with preempt, fw1 takes its VIPs back; the connections carry on.
    t.mark();
    let (ok, out, err) = c.fw[0].cli(&["maintenance", "leave"]);
    assert!(ok, "{out}{err}");
    for v in [1, 2] {
        c.fw[0].expect_state(v, "MASTER", TAKEOVER);
    }
    assert_eq!(c.fw[0].status()["maintenance"], false);
    assert!(!demotion_sources(&c.fw[0]).contains(&"maintenance".to_string()));
    std::thread::sleep(Duration::from_secs(3));
    assert_all_alive("maintenance leave", &t.report(), &c.fw[0].log());
    let (ok, out, _) = c.fw[0].cli(&["maintenance", "leave"]);
    assert!(ok && out.contains("not in maintenance mode"), "{out}");
    drop(t);
    drop(c);
}

#[test]
fn switchover_hands_over_and_the_vips_stay_until_handed_back() {
    if !lab::require_netns() {
        return;
    }
    let c = cluster("handover_switchover", true);
    let mut t = Traffic::start(&c);
    let ok = lab::wait_until(Duration::from_secs(10), || {
        conntrack_count(&c.fw[1].host) >= CONNS + UDP_FLOWS
    });
    assert!(ok, "fw2 never held every state\n{}", c.fw[1].log());
    // A backup has nothing to hand over; a peer that does not exist is named.
    let (ok, _, err) = c.fw[1].cli(&["switchover"]);
    assert!(!ok && err.contains("master of no VIP"), "{err}");
    let (ok, _, err) = c.fw[0].cli(&["switchover", "fw9"]);
    assert!(!ok && err.contains("knows no node fw9"), "{err}");
    let (ok, _, err) = c.fw[0].cli(&["switchover", "fw1"]);
    assert!(!ok && err.contains("this node"), "{err}");
    for v in [1, 2] {
        assert_eq!(
            c.fw[0].state(v),
            "MASTER",
            "a refused switchover changed nothing"
        );
    }

    let before = retransmissions(&[&c.client, &c.server]);
    t.mark();
    let (ok, out, err) = c.fw[0].cli(&["switchover", "fw2"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("handing over to fw2"), "{out}");
    for v in [1, 2] {
        c.fw[1].expect_state(v, "MASTER", Duration::from_secs(3));
    }
    // fw1 has preempt and the better skew, yet the VIPs stay on fw2.
    std::thread::sleep(Duration::from_secs(6));
    for v in [1, 2] {
        assert_eq!(c.fw[0].state(v), "BACKUP", "{}", c.fw[0].log());
        assert_eq!(c.fw[1].state(v), "MASTER");
    }
    assert_all_alive("switchover", &t.report(), &c.fw[1].log());
    assert_eq!(
        retransmissions(&[&c.client, &c.server]) - before,
        0,
        "the switchover cost TCP retransmissions"
    );
    assert!(demotion_sources(&c.fw[0]).contains(&"switchover".to_string()));

    // Handed back: fw1 is master again and no longer stands back.
    t.mark();
    let (ok, out, err) = c.fw[1].cli(&["switchover"]);
    assert!(ok, "{out}{err}");
    for v in [1, 2] {
        c.fw[0].expect_state(v, "MASTER", Duration::from_secs(3));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(!demotion_sources(&c.fw[0]).contains(&"switchover".to_string()));
    assert_all_alive("switchover back", &t.report(), &c.fw[0].log());
    drop(t);
    drop(c);
}

/// Three nodes on one LAN and one sync switch, advskew 0 / 100 / 200: handed to fw3 by name,
/// the VIP goes to fw3 although fw2 would win an election.
#[test]
fn switchover_to_a_named_peer_among_three() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("handover_three").expect("lab");
    let lan = lab.switch("lan").expect("lan");
    let sync = lab.switch("sync").expect("sync");
    let mut nodes = Vec::new();
    for i in 1..=3u8 {
        let h = lab.host(&format!("fw{i}")).expect("host");
        lab.connect(&h, "eth0", &lan, &[&format!("192.0.2.{}/24", i + 1)])
            .expect("lan");
        lab.connect(&h, "eth1", &sync, &[&format!("203.0.113.{i}/24")])
            .expect("sync");
        let peers: Vec<String> = (1..=3u8)
            .filter(|p| *p != i)
            .map(|p| format!("\"203.0.113.{p}\""))
            .collect();
        let extra = format!(
            "[statesync]\ninterface = \"sync\"\npeers = [{}]\nkey = \"three node state sync key\"\n",
            peers.join(", ")
        );
        let cfg = write_config_extra(
            &lab,
            &format!("fw{i}"),
            (i - 1) * 100,
            true,
            "s3cret",
            &[("lan", "eth0"), ("sync", "eth1")],
            &[VipSpec {
                vhid: 1,
                interface: "lan",
                addresses: &["192.0.2.1/24"],
            }],
            &extra,
        );
        nodes.push(Node::start(&h, cfg));
    }
    nodes[0].expect_state(1, "MASTER", ELECTION);
    for n in &nodes[1..] {
        n.expect_state(1, "BACKUP", ELECTION);
    }
    // Every node must hear the others before a name can be checked.
    let ok = lab::wait_until(Duration::from_secs(10), || {
        nodes.iter().all(|n| {
            n.status()["state_sync"]["engine"]["peers"]
                .as_array()
                .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["alive"] == true))
        })
    });
    assert!(ok, "state sync peers not all alive");
    let (ok, out, err) = nodes[0].cli(&["switchover", "fw3"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("confirmed by 2 peers"), "{out}");
    nodes[2].expect_state(1, "MASTER", Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        nodes[2].state(1),
        "MASTER",
        "fw1:\n{}\nfw2:\n{}\nfw3:\n{}",
        nodes[0].log(),
        nodes[1].log(),
        nodes[2].log()
    );
    assert_eq!(nodes[1].state(1), "BACKUP", "{}", nodes[1].log());
    assert_eq!(nodes[0].state(1), "BACKUP");
    assert!(demotion_sources(&nodes[1]).contains(&"switchover".to_string()));
    assert!(!demotion_sources(&nodes[2]).contains(&"switchover".to_string()));
    drop(nodes);
}

/// With no live peer there is nobody to hand over to: maintenance mode keeps the VIPs (demoted)
/// instead of leaving them unserved, a switchover is refused, and a peer that comes later takes
/// the VIPs over.
#[test]
fn without_a_live_peer_the_vips_stay_until_one_comes() {
    if !lab::require_netns() {
        return;
    }
    let mut c = cluster("handover_no_peer", true);
    c.fw[1].sigterm();
    // State sync counts a peer silent for 3.5 s as gone.
    std::thread::sleep(Duration::from_secs(5));
    let (ok, _, err) = c.fw[0].cli(&["switchover"]);
    assert!(!ok && err.contains("nobody to hand over to"), "{err}");
    assert!(!demotion_sources(&c.fw[0]).contains(&"switchover".to_string()));
    let (ok, out, err) = c.fw[0].cli(&["maintenance", "enter"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("no live peer"), "{out}");
    std::thread::sleep(Duration::from_secs(5));
    for v in [1, 2] {
        assert_eq!(c.fw[0].state(v), "MASTER", "{}", c.fw[0].log());
    }
    // The peer comes back: once it has the table it takes over from the demoted master.
    c.fw[1].restart();
    for v in [1, 2] {
        c.fw[1].expect_state(v, "MASTER", TAKEOVER);
        c.fw[0].expect_state(v, "BACKUP", Duration::from_secs(2));
    }
    drop(c);
}
