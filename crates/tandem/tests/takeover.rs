//! An unplanned takeover loses none of the retransmissions it gets: the backup has the
//! neighbours its connections go to resolved before it takes over. (Without that, the
//! connections cut by the failure retransmit within a millisecond of each other, the new master
//! queues them for a neighbour it is still resolving, drops what exceeds `unres_qlen_bytes`,
//! and every connection dropped waits one more retransmission timeout: bench/README.md,
//! "Three nodes: connections that miss the second master".)

mod common;

use common::nat_cluster::*;
use common::*;
use lab::Host;
use std::time::Duration;

/// The lladdr of `addr`'s usable neighbour entry on `dev`, if there is one.
fn neighbour(h: &Host, addr: &str, dev: &str) -> Option<String> {
    let out = h
        .run(&["ip", "neigh", "show", addr, "dev", dev])
        .unwrap_or_default();
    let words: Vec<&str> = out.split_whitespace().collect();
    let mac = words
        .iter()
        .position(|w| *w == "lladdr")
        .and_then(|i| words.get(i + 1))?;
    (!out.contains("FAILED") && !out.contains("INCOMPLETE")).then(|| mac.to_string())
}

#[test]
fn a_backup_has_its_neighbours_resolved_before_it_takes_over() {
    if !lab::require_netns() {
        return;
    }
    let mut c = cluster("takeover_neighbours", true);
    let fw2 = c.fw[1].host.clone();
    let fw2 = &fw2;
    // A small queue for unresolved neighbours: the takeover's burst of retransmissions would
    // overflow it many times over (the default, 212992 bytes, holds about 250 segments; 2048 holds two).
    for dev in ["ens5", "ens6"] {
        fw2.run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.neigh.{dev}.unres_qlen_bytes=2048"),
        ])
        .expect("sysctl");
    }
    // TCP only: a flow that keeps sending (UDP) would have the new master resolve the
    // server before the TCP retransmissions come.
    let mut t = Traffic::flows(&c, 400, 0);
    let ok = lab::wait_until(Duration::from_secs(10), || conntrack_count(fw2) >= 400);
    assert!(ok, "fw2 never held every state\n{}", c.fw[1].log());
    // fw2 has never sent the client or the server anything; it resolves them as a backup as
    // soon as it holds connections to them.
    let ok = lab::wait_until(Duration::from_secs(10), || {
        neighbour(fw2, "198.51.100.10", "ens6").is_some()
            && neighbour(fw2, "192.0.2.10", "ens5").is_some()
    });
    assert!(
        ok,
        "fw2 never resolved the server and the client: {}",
        fw2.run(&["ip", "neigh"]).unwrap_or_default()
    );
    t.mark();
    fw1_links(&c, false);
    c.fw[0].kill();
    for v in [1, 2] {
        c.fw[1].expect_state(v, "MASTER", TAKEOVER);
    }
    std::thread::sleep(Duration::from_secs(6));
    let flows = t.report();
    assert_all_alive("takeover", &flows, &c.fw[1].log());
    // Each connection resumed at its first retransmission after the takeover (~3.4 s after
    // the cut with 1 s adverts), not one timeout later (~6.8 s): none was dropped waiting for
    // a neighbour. (The kernel's unresolved_discards counter is global to every namespace, so
    // the connections' pauses are the measure.)
    let slow: Vec<f64> = flows
        .iter()
        .filter(|f| f["kind"] == "tcp")
        .filter_map(|f| f["max_silence"].as_f64())
        .filter(|s| *s > 5.0)
        .collect();
    assert!(
        slow.is_empty(),
        "{} connections waited for a second retransmission: {slow:?}",
        slow.len()
    );
    drop(t);
    drop(c);
}
