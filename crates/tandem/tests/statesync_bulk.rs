//! A bulk sync installed quietly (issue 13): a restarted backup installs the bulk without
//! listening to the kernel's NEW events, and the connections its own kernel creates meanwhile
//! still reach the peer (the dump after it joins the NEW events again finds them).
//!
//! The NAT cluster (tests/common/nat_cluster.rs): fw1 master, fw2 backup, state sync on.

mod common;

use common::nat_cluster::*;

use lab::Host;
use std::fmt::Write as _;
use std::time::Duration;

/// Entries fw1 holds when fw2 restarts (the bulk).
const BULK: usize = 30_000;
/// Entries created in fw2's kernel, one by one, around and during its bulk sync.
const DURING: usize = 300;

fn bulk_batch(n: usize) -> String {
    let mut s = String::with_capacity(n * 130);
    for i in 0..n {
        let _ = writeln!(
            s,
            "-I -p tcp -s 198.51.100.{} -d 192.0.2.{} --sport {} --dport 443 --state ESTABLISHED -t 3600 -u SEEN_REPLY,ASSURED",
            1 + i % 250,
            10 + (i / 250) % 20,
            10_000 + i / 5000
        );
    }
    s
}

/// Entries of the bulk (dport 443) and of the ones created on fw2 (dport 9999) in `h`'s kernel.
fn counts(h: &Host) -> (usize, usize) {
    let out = h.run(&["conntrack", "-L"]).unwrap_or_default();
    let bulk = out.lines().filter(|l| l.contains("dport=443 ")).count();
    let during = out.lines().filter(|l| l.contains("dport=9999 ")).count();
    (bulk, during)
}

#[test]
fn connections_created_during_a_quiet_bulk_reach_the_peer() {
    if !lab::require_netns() {
        return;
    }
    let mut c = cluster(
        "connections_created_during_a_quiet_bulk_reach_the_peer",
        true,
    );
    let batch = c.lab.dir().join("bulk.batch");
    std::fs::write(&batch, bulk_batch(BULK)).expect("write batch");
    c.fw[0]
        .host
        .run(&["conntrack", "-R", &batch.to_string_lossy()])
        .expect("conntrack -R on fw1");
    let synced = lab::wait_until(Duration::from_secs(60), || counts(&c.fw[1].host).0 >= BULK);
    assert!(
        synced,
        "fw2 never held fw1's {BULK} entries\n{}",
        c.fw[1].log()
    );

    // fw2 restarts from an empty table (as after a reboot): a bulk sync of BULK entries.
    c.fw[1].kill();
    c.fw[1].host.run(&["conntrack", "-F"]).expect("flush fw2");
    // Its own kernel creates connections one by one meanwhile, before, during and after.
    let creator = c
        .fw[1]
        .host
        .spawn(&[
            "sh",
            "-c",
            &format!(
                "for i in $(seq 1 {DURING}); do conntrack -I -p udp -s 192.0.2.200 -d 198.51.100.200 \
                 --sport $((20000 + i)) --dport 9999 -t 600 >/dev/null 2>&1; done; echo done"
            ),
        ])
        .expect("spawn the creator");
    c.fw[1].restart();
    let done = lab::wait_until(Duration::from_secs(60), || {
        creator.stdout().contains("done")
    });
    assert!(done, "the creator never finished: {}", creator.stderr());
    let (_, made) = counts(&c.fw[1].host);
    assert_eq!(made, DURING, "fw2's kernel lacks some of its own entries");

    // Within 10 s (the periodic dump, which would also find them, comes every 30 s).
    let ok = lab::wait_until(Duration::from_secs(10), || {
        counts(&c.fw[1].host).0 >= BULK && counts(&c.fw[0].host).1 >= DURING
    });
    let status = c.fw[1].status();
    let counters = &status["state_sync"]["engine"]["counters"];
    assert!(
        ok,
        "fw2 holds {:?}, fw1 holds {:?} (bulk, created on fw2); want ({BULK}, {DURING})\ncounters {counters}\n{}",
        counts(&c.fw[1].host),
        counts(&c.fw[0].host),
        c.fw[1].log()
    );
    assert!(
        counters["quiet_bulks"].as_u64().unwrap_or(0) >= 1,
        "fw2 installed its bulk listening to NEW events: {counters}"
    );
    assert_eq!(status["state_sync"]["engine"]["ready"], true, "{status}");
}
