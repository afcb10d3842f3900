//! State sync through real daemons: established connections (NATed to the WAN VIP) survive the
//! death of the master, and, as the control, do not survive it without state sync.
//!
//! The standard cluster: client — lan — fw1, fw2 — wan — server, plus a sync link fw1 — fw2.

mod common;

use common::nat_cluster::*;
use common::*;
use lab::{Host, Lab};
use serde_json::Value;
use std::time::Duration;

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
    fail_over_to_fw2(&c);
    std::thread::sleep(Duration::from_secs(5));
    assert_all_alive("failover", &t.report(), &c.fw[1].log());
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
    fail_over_to_fw2(&c);
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

/// Lines of a daemon log, in order, that contain `needle`.
fn log_position(log: &str, needle: &str, after: usize) -> Option<usize> {
    log[after..].find(needle).map(|p| p + after)
}

#[test]
fn failback_waits_for_the_bulk_sync_and_keeps_every_connection() {
    if !lab::require_netns() {
        return;
    }
    let c = cluster(
        "failback_waits_for_the_bulk_sync_and_keeps_every_connection",
        true,
    );
    let mut old = Traffic::start(&c);
    assert!(lab::wait_until(Duration::from_secs(10), || {
        conntrack_count(&c.fw[1].host) >= CONNS + UDP_FLOWS
    }));
    fail_over_to_fw2(&c);
    // Connections opened while fw1 is away exist only on fw2: fw1 must fetch them.
    let mut new = Traffic::start(&c);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        conntrack_count(&c.fw[0].host) <= CONNS + UDP_FLOWS,
        "fw1 learned connections while cut off"
    );
    let log_before = c.fw[0].log().len();
    old.mark();
    new.mark();
    fw1_links(&c, true);
    for v in [1, 2] {
        c.fw[0].expect_state(v, "MASTER", ELECTION);
    }
    std::thread::sleep(Duration::from_secs(4));
    let log = c.fw[0].log();
    let ready = log_position(&log, "state sync ready", log_before)
        .unwrap_or_else(|| panic!("fw1 never bulk-synced after returning:\n{log}"));
    let master = log_position(&log, "BACKUP -> MASTER", log_before)
        .unwrap_or_else(|| panic!("fw1 never took the VIPs back:\n{log}"));
    assert!(
        ready < master,
        "fw1 took the VIPs back before its bulk sync:\n{log}"
    );
    for (name, t) in [("old", &mut old), ("new", &mut new)] {
        assert_all_alive(
            &format!("failback, {name} flows"),
            &t.report(),
            &c.fw[0].log(),
        );
    }
}

#[test]
fn connections_removed_on_the_master_disappear_from_the_backup() {
    if !lab::require_netns() {
        return;
    }
    let c = cluster(
        "connections_removed_on_the_master_disappear_from_the_backup",
        true,
    );
    let t = Traffic::start(&c);
    assert!(lab::wait_until(Duration::from_secs(10), || {
        conntrack_count(&c.fw[1].host) >= CONNS + UDP_FLOWS
    }));
    // Closing the connections moves them out of ESTABLISHED (to TIME_WAIT, or CLOSE after a
    // reset); the kernel keeps them for a while, and the state change reaches fw2.
    drop(t);
    let established = |h: &Host| {
        h.run(&["conntrack", "-L", "-p", "tcp", "--dport", "7000"])
            .map(|s| s.lines().filter(|l| l.contains("ESTABLISHED")).count())
            .unwrap_or(usize::MAX)
    };
    assert!(
        lab::wait_until(Duration::from_secs(10), || established(&c.fw[0].host) == 0),
        "fw1 still has established connections"
    );
    assert!(
        lab::wait_until(Duration::from_secs(10), || established(&c.fw[1].host) == 0),
        "fw2 did not learn the closes: {} still ESTABLISHED",
        established(&c.fw[1].host)
    );
    // Entries destroyed on fw1 go from fw2 too.
    c.fw[0]
        .host
        .run(&["conntrack", "-D", "-p", "tcp", "--dport", "7000"])
        .expect("conntrack -D");
    c.fw[0]
        .host
        .run(&["conntrack", "-D", "-p", "udp", "--dport", "7000"])
        .expect("conntrack -D");
    assert!(
        lab::wait_until(Duration::from_secs(10), || conntrack_count(&c.fw[1].host)
            == 0),
        "fw2 still has {} states\n{}",
        conntrack_count(&c.fw[1].host),
        c.fw[1].log()
    );
}

/// UDP payloads to port 7777 in a pcap file (Ethernet, IPv4 without options, UDP).
fn sync_payloads(pcap: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len =
            u32::from_le_bytes([pcap[at + 8], pcap[at + 9], pcap[at + 10], pcap[at + 11]]) as usize;
        let frame = &pcap[at + 16..(at + 16 + len).min(pcap.len())];
        at += 16 + len;
        if frame.len() > 42 && frame[12..14] == [0x08, 0x00] && frame[23] == 17 {
            let dport = u16::from_be_bytes([frame[36], frame[37]]);
            if dport == 7777 {
                out.push(frame[42..].to_vec());
            }
        }
    }
    out
}

fn rejected(status: &Value, reason: &str) -> u64 {
    status["state_sync"]["engine"]["counters"]["rejected"][reason]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn tampered_and_replayed_sync_packets_change_nothing_and_are_counted() {
    if !lab::require_netns() {
        return;
    }
    let c = cluster(
        "tampered_and_replayed_sync_packets_change_nothing_and_are_counted",
        true,
    );
    let pcap = c.lab.dir().join("sync.pcap");
    let pcap_s = pcap.to_string_lossy().into_owned();
    // Capture a few of fw1's datagrams (heartbeats at least) on fw2's end of the sync link.
    let mut dump = c.fw[1]
        .host
        .spawn(&[
            "tcpdump",
            "-i",
            "ens7",
            "-U",
            "-c",
            "4",
            "-w",
            &pcap_s,
            "udp",
            "and",
            "src",
            "host",
            "203.0.113.1",
            "and",
            "dst",
            "port",
            "7777",
        ])
        .expect("tcpdump");
    assert!(
        dump.wait_timeout(Duration::from_secs(15))
            .expect("wait")
            .is_some(),
        "no sync datagrams captured"
    );
    let payloads = sync_payloads(&std::fs::read(&pcap).expect("read pcap"));
    assert!(!payloads.is_empty(), "no datagram in the capture");
    let before = c.fw[1].status();
    let states_before = conntrack_count(&c.fw[1].host);
    // Send them again from fw1's sync address, as an attacker on the link would: as they were
    // (replay), with a byte of the tag flipped (a tampered replay), and with a fresh sequence
    // number in the authenticated header (a forgery: only the seal can catch it).
    let script = c.lab.dir().join("inject.py");
    std::fs::write(
        &script,
        r#"import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("203.0.113.1", 0))
for hexp in sys.argv[1:]:
    p = bytes.fromhex(hexp)
    s.sendto(p, ("203.0.113.2", 7777))
    t = bytearray(p); t[-1] ^= 0x55
    s.sendto(bytes(t), ("203.0.113.2", 7777))
    u = bytearray(p); seq = int.from_bytes(u[20:28], "big") + 100000
    u[20:28] = seq.to_bytes(8, "big")
    s.sendto(bytes(u), ("203.0.113.2", 7777))
"#,
    )
    .expect("write script");
    let hex: Vec<String> = payloads
        .iter()
        .map(|p| p.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let mut args = vec!["python3".to_string(), script.to_string_lossy().into_owned()];
    args.extend(hex);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.fw[0].host.run(&args).expect("inject");
    let n = payloads.len() as u64;
    let ok = lab::wait_until(Duration::from_secs(5), || {
        let s = c.fw[1].status();
        rejected(&s, "bad_seal") >= rejected(&before, "bad_seal") + n
            && rejected(&s, "replay") + rejected(&s, "too_old")
                >= rejected(&before, "replay") + rejected(&before, "too_old") + 2 * n
    });
    let after = c.fw[1].status();
    assert!(
        ok,
        "injected {n} replays, {n} tampered replays and {n} forgeries; rejected before {} after {}",
        before["state_sync"]["engine"]["counters"]["rejected"],
        after["state_sync"]["engine"]["counters"]["rejected"],
    );
    assert_eq!(
        conntrack_count(&c.fw[1].host),
        states_before,
        "the table changed"
    );
    assert_eq!(after["state_sync"]["engine"]["ready"], true);
}

#[test]
fn a_node_whose_peer_comes_late_becomes_ready_once_it_does() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("statesync_peer_comes_late").expect("lab");
    let Standard {
        fw1: h1, fw2: h2, ..
    } = standard(&mut lab, true);
    let c1 = node_config(&lab, 1, true);
    let c2 = node_config(&lab, 2, true);
    // fw2 starts alone: its first round of bulk requests (4 attempts, 3 s apart) finds no
    // one. Its peer comes during the last attempt, as in the field (about 10 s later).
    let fw2 = Node::start(&h2, c2);
    let engine = |n: &Node| n.status()["state_sync"]["engine"].clone();
    let last = lab::wait_until(Duration::from_secs(20), || {
        engine(&fw2)["bulk"]["attempt"].as_u64() == Some(4)
    });
    assert!(last, "no fourth bulk attempt: {}", fw2.status());
    assert_eq!(engine(&fw2)["ready"], false);
    // Its peer comes; fw2 gets the table and is ready.
    let fw1 = Node::start(&h1, c1);
    let ready = lab::wait_until(Duration::from_secs(15), || engine(&fw2)["ready"] == true);
    assert!(
        ready,
        "fw2 never became ready after fw1 came:\n{}\n{}",
        fw2.status(),
        fw2.log()
    );
    assert!(
        fw2.status()["sync"]["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("ready")),
        "{}",
        fw2.status()
    );
    drop(fw1);
}

/// `node_config`, with the key read from a file holding `key` (binary: any bytes).
fn node_config_key_file(lab: &Lab, n: u8, key: &[u8]) -> std::path::PathBuf {
    let path = node_config(lab, n, true);
    let key_file = lab.dir().join(format!("fw{n}.key"));
    std::fs::write(&key_file, key).expect("write key file");
    let text = std::fs::read_to_string(&path).expect("read config");
    let text = text.replace(
        "key = \"state sync test key, shared by both nodes\"",
        &format!("key_file = \"{}\"", key_file.display()),
    );
    assert!(text.contains("key_file"), "no key line replaced");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A key file is bytes: a node whose binary key differs from the cluster's only in bytes that
/// are not UTF-8 (read as text, each became U+FFFD and the two keys were one) is foreign: its
/// datagrams are refused as sealed under another key, and status shows another key id. With
/// the cluster's key it is a peer like any other, with the same key id.
#[test]
fn a_binary_key_that_differs_only_in_non_utf8_bytes_is_another_key() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("statesync_binary_keys").expect("lab");
    let Standard {
        fw1: h1, fw2: h2, ..
    } = standard(&mut lab, true);
    let key1: Vec<u8> = [
        &b"binary sync key "[..],
        &[0xff, 0xfe, 0x80, 0xc0, 0xbf, 0x0a],
    ]
    .concat();
    let key2: Vec<u8> = [
        &b"binary sync key "[..],
        &[0xfe, 0xff, 0xbf, 0xc1, 0x80, 0x0a],
    ]
    .concat();
    assert_eq!(
        String::from_utf8_lossy(&key1),
        String::from_utf8_lossy(&key2)
    );
    let c1 = node_config_key_file(&lab, 1, &key1);
    let c2 = node_config_key_file(&lab, 2, &key2);
    let fw1 = Node::start(&h1, c1);
    let mut fw2 = Node::start(&h2, c2);
    let key_id = |n: &Node| {
        n.status()["state_sync"]["key_id"]
            .as_str()
            .map(String::from)
    };
    let (id1, id2) = (key_id(&fw1), key_id(&fw2));
    assert!(
        id1.as_ref()
            .is_some_and(|i| i.len() == 8 && i.chars().all(|c| c.is_ascii_hexdigit())),
        "fw1's key id: {}",
        fw1.status()
    );
    assert_ne!(id1, id2, "two keys, one key id");
    // fw1's heartbeats reach fw2 and are refused before they are opened.
    let refused = lab::wait_until(Duration::from_secs(10), || {
        rejected(&fw2.status(), "wrong_key") > 0
    });
    assert!(refused, "fw2 took fw1's datagrams: {}", fw2.status());
    assert_eq!(fw2.status()["state_sync"]["engine"]["ready"], false);
    assert!(
        fw2.status()["sync"]["state"]
            .as_str()
            .is_some_and(|s| s.contains("under another key")),
        "{}",
        fw2.status()
    );
    // With fw1's key, fw2 shows fw1's key id and gets the table.
    std::fs::write(lab.dir().join("fw2.key"), &key1).expect("write key file");
    fw2.sigterm();
    fw2.restart();
    assert_eq!(key_id(&fw2), id1);
    let ready = lab::wait_until(Duration::from_secs(15), || {
        fw2.status()["state_sync"]["engine"]["ready"] == true
    });
    assert!(ready, "fw2 never became ready: {}", fw2.status());
    drop(fw1);
}
