//! Whole clusters of replicators on the deterministic simulated network (tests/support/sim.rs):
//! tables converge after loss, duplication, reordering and partitions; restarted nodes
//! bulk-sync and become ready only with everything; attacks change nothing.
//!
//! Every scenario derives from one `u64` seed, printed on failure (in the proptest input and
//! in the assertion message, with the recent events). A failing seed becomes a regression test
//! by calling the scenario with it (see `regression_*` at the bottom).

#[path = "support/cases.rs"]
mod cases;
#[path = "support/sim.rs"]
mod sim;

use cases::config;
use proptest::prelude::*;
use sim::*;
use statesync::model::ConnKey;
use statesync::{Alarm, BulkPhase, Config, RejectReason};
use std::time::Duration;

fn defaults(_: &mut Config) {}

fn small_history(cfg: &mut Config) {
    cfg.history = 16;
    cfg.reorder_limit = 64;
}

fn net(rng: &mut SimRng, lossy: bool) -> NetConfig {
    let delay_min = rng.duration(Duration::from_micros(50), MS);
    NetConfig {
        delay_min,
        // Up to 8 ms of spread: plenty of reordering.
        delay_max: delay_min + rng.duration(Duration::ZERO, 8 * MS),
        loss_per_mille: if lossy { rng.range(0, 100) as u32 } else { 0 },
        dup_per_mille: if lossy { rng.range(0, 50) as u32 } else { 0 },
    }
}

fn all_ready(sim: &Sim) {
    for (i, n) in sim.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
        assert!(
            n.ready,
            "seed {:#x}: node{} not ready: {:?}\n{}",
            sim.seed,
            i + 1,
            n.engine.status(sim.now).bulk,
            sim.recent()
        );
    }
}

/// `n` nodes, random traffic from every node with partitions coming and going, then the
/// network heals: every node ends with exactly the live conns.
fn converge_scenario(seed: u64, n: usize, cfg: fn(&mut Config)) {
    let mut rng = SimRng::new(seed);
    let lossy = rng.chance(800);
    let net = net(&mut rng, lossy);
    let mut sim = Sim::new(seed, n, net, cfg);
    sim.run_for(SEC);
    let origins: Vec<usize> = (0..n).collect();
    let steps = rng.range(100, 400);
    for _ in 0..steps {
        if rng.chance(20) {
            let a = rng.range(0, n as u64 - 1) as usize;
            let b = (a + 1 + rng.range(0, n as u64 - 2) as usize) % n;
            sim.partition(a, b);
        }
        if rng.chance(15) {
            sim.heal();
        }
        sim.traffic_step(&origins);
        let d = rng.duration(Duration::from_micros(100), 4 * MS);
        sim.run_for(d);
    }
    sim.heal();
    sim.run_for(20 * SEC);
    sim.check_converged("after heal");
    all_ready(&sim);
}

proptest! {
    #![proptest_config(config(12))]

    #[test]
    fn two_nodes_converge(seed in any::<u64>()) {
        converge_scenario(seed, 2, defaults);
    }

    #[test]
    fn three_nodes_converge(seed in any::<u64>()) {
        converge_scenario(seed, 3, defaults);
    }

    /// A history of 16 datagrams: long partitions cannot be repaired by retransmission, so
    /// receivers fall back to bulk syncs (which also carry deletes, by sweeping).
    #[test]
    fn converge_through_bulk_resync(seed in any::<u64>()) {
        converge_scenario(seed, 2, small_history);
    }

    #[test]
    fn restart_bulk_syncs_before_ready(seed in any::<u64>()) {
        restart_scenario(seed);
    }
}

/// Node 1 carries traffic; node 2 crashes (its kernel flushed, as by a reboot), misses a
/// while, and restarts. It must become ready only once it holds every conn that existed
/// before it came back, and converge afterwards.
fn restart_scenario(seed: u64) {
    let mut rng = SimRng::new(seed);
    let lossy = rng.chance(700);
    let net = net(&mut rng, lossy);
    let mut sim = Sim::new(seed, 2, net, defaults);
    sim.run_for(SEC);
    let conns = rng.range(50, 600);
    for _ in 0..conns {
        let c = random_conn(&mut sim.rng);
        if !sim.live.contains_key(&c.key()) {
            sim.open(0, c);
        }
        let d = rng.duration(Duration::ZERO, Duration::from_micros(300));
        sim.run_for(d);
    }
    sim.run_for(3 * SEC);
    sim.check_converged("before the crash");
    sim.crash(1, true);
    for _ in 0..rng.range(10, 200) {
        sim.traffic_step(&[0]);
        sim.run_for(MS);
    }
    sim.restart(1);
    let restarted_at = sim.now;
    let before: Vec<ConnKey> = sim.live.keys().copied().collect();
    // Traffic goes on during the bulk sync; watch node 2's readiness step by step.
    let mut checked = false;
    for _ in 0..3000 {
        if rng.chance(300) {
            sim.traffic_step(&[0]);
        }
        sim.run_for(MS);
        if sim.nodes[1].ready && !checked {
            checked = true;
            // Ready: everything that existed when it restarted and still lives is there.
            for k in &before {
                if sim.live.contains_key(k) && !sim.nodes[1].kernel.contains_key(k) {
                    panic!(
                        "seed {seed:#x}: node2 ready without {}\n{}",
                        short(k),
                        sim.recent()
                    );
                }
            }
        }
    }
    sim.run_for(15 * SEC);
    sim.check_converged("after restart");
    all_ready(&sim);
    let log = &sim.nodes[1].ready_log;
    assert_eq!(
        log.len(),
        1,
        "seed {seed:#x}: node2 readiness flapped: {log:?}"
    );
    assert!(log[0].0 > restarted_at);
}

/// A node whose peers never answer stays not ready and raises BulkFailed after its retries;
/// when a peer shows up it tries again and becomes ready.
#[test]
fn bulk_failure_is_an_alarm_then_recovers() {
    let mut sim = Sim::new(7, 2, NetConfig::default(), defaults);
    sim.crash(1, true);
    sim.run_for(30 * SEC);
    let n = &sim.nodes[0];
    assert!(!n.ready);
    assert!(n.ready_log.is_empty());
    assert_eq!(n.alarms, vec![Alarm::BulkFailed { attempts: 4 }]);
    assert_eq!(n.engine.status(sim.now).bulk.phase, BulkPhase::Failed);
    sim.restart(1);
    sim.run_for(10 * SEC);
    all_ready(&sim);
}

/// The lab report: fw2 starts alone, fw1 (index 0, its kernel holding conns) starts `late`
/// afterwards. Whenever fw1 shows up (during fw2's last bounded attempt, just after
/// `BulkFailed`, or long after, while fw2 backs off), fw2 must ask it at once and become
/// ready with fw1's conns, not stay NOT READY forever.
fn late_peer_scenario(seed: u64, late: Duration) {
    let mut sim = Sim::with_absent(seed, 2, NetConfig::default(), defaults, &[0]);
    for _ in 0..200 {
        let c = random_conn(&mut sim.rng);
        if !sim.live.contains_key(&c.key()) {
            sim.preload(0, c);
        }
    }
    sim.run_for(late);
    assert!(!sim.nodes[1].ready, "seed {seed:#x}: fw2 ready alone");
    if late > 12 * SEC {
        // Four attempts, 3 s apart: failed, and said so once.
        assert_eq!(
            sim.nodes[1].alarms,
            vec![Alarm::BulkFailed { attempts: 4 }],
            "seed {seed:#x}"
        );
    }
    sim.start(0);
    let started = sim.now;
    // At once: well before a bulk timeout (3 s) or a backoff (10 s) could have passed.
    while !(sim.nodes[1].ready && sim.converged().is_ok()) {
        assert!(
            sim.now - started < 500 * MS,
            "seed {seed:#x}, fw1 {late:?} late: fw2 not ready with fw1's conns 500 ms after \
             fw1 started: {:?}\n{}",
            sim.nodes[1].engine.status(sim.now).bulk,
            sim.recent()
        );
        sim.run_for(10 * MS);
    }
    let st = sim.nodes[1].engine.status(sim.now);
    assert!(st.ready);
    assert_eq!(st.bulk.phase, BulkPhase::Done, "seed {seed:#x}");
    assert!(sim.nodes[1].alarms.len() <= 1, "{:?}", sim.nodes[1].alarms);
    // And it stays that way, with traffic through both.
    for _ in 0..100 {
        sim.traffic_step(&[0, 1]);
        sim.run_for(MS);
    }
    sim.run_for(5 * SEC);
    sim.check_converged("after the late start");
    all_ready(&sim);
    for n in &sim.nodes {
        assert_eq!(n.ready_log.len(), 1, "seed {seed:#x}: {:?}", n.ready_log);
    }
}

#[test]
fn late_peer_makes_a_failed_bulk_ready() {
    let ms = Duration::from_millis;
    for (seed, late) in [
        // During the last bounded attempt (its request went out before fw1 existed).
        (1, 10 * SEC),
        (2, ms(9_500)),
        (3, ms(11_990)),
        // Just after BulkFailed, and long after (backing off).
        (4, ms(12_500)),
        (5, 23 * SEC),
        (6, 100 * SEC),
        (7, 400 * SEC),
    ] {
        late_peer_scenario(seed, late);
    }
}

/// A ready node cut off from its only peer asks for a resync (the operator, or the daemon
/// after the sync link was down), which fails while the partition lasts. When the peer is
/// heard again (same epoch, after it was silent: alive again) the bulk is retried at once.
#[test]
fn peer_alive_again_retries_the_bulk_at_once() {
    let mut sim = Sim::new(21, 2, NetConfig::default(), defaults);
    sim.run_for(SEC);
    for _ in 0..50 {
        let c = random_conn(&mut sim.rng);
        sim.open(0, c);
    }
    sim.run_for(SEC);
    sim.check_converged("before the partition");
    all_ready(&sim);
    sim.partition(0, 1);
    let now = sim.now;
    sim.nodes[1].engine.handle(now, statesync::Input::Resync);
    sim.drain(1);
    for _ in 0..50 {
        let c = random_conn(&mut sim.rng);
        sim.open(0, c);
    }
    sim.run_for(13 * SEC);
    assert!(!sim.nodes[1].ready);
    assert_eq!(sim.nodes[1].alarms, vec![Alarm::BulkFailed { attempts: 4 }]);
    sim.heal();
    let healed = sim.now;
    while !(sim.nodes[1].ready && sim.converged().is_ok()) {
        assert!(
            sim.now - healed < 2 * SEC,
            "node2 not ready 2 s after the peer came back: {:?}\n{}",
            sim.nodes[1].engine.status(sim.now).bulk,
            sim.recent()
        );
        sim.run_for(10 * MS);
    }
    assert_eq!(sim.nodes[1].alarms.len(), 1);
}

/// Everything an attacker on the sync link can do with what it sees (replays, replays after
/// the sender restarted, tampering) or without the key (foreign datagrams) is counted and
/// changes nothing: the tables converge exactly as without the attacker.
#[test]
fn attacks_change_nothing() {
    for seed in 0..4u64 {
        attack_scenario(seed);
    }
}

fn attack_scenario(seed: u64) {
    let mut rng = SimRng::new(seed);
    let mut sim = Sim::new(seed, 2, NetConfig::default(), defaults);
    sim.run_for(SEC);
    for _ in 0..200 {
        sim.traffic_step(&[0]);
        sim.run_for(MS);
    }
    sim.run_for(SEC);
    sim.check_converged("before the attack");
    // Node 1 restarts (kernel kept): everything it sent before is from an old epoch now.
    let old: Vec<Vec<u8>> = sim.nodes[0].sent.clone();
    sim.crash(0, false);
    sim.restart(0);
    sim.run_for(5 * SEC);
    sim.check_converged("after node1 restarted");
    let kernel_before = sim.nodes[1].kernel.clone();
    let installs_before = sim.nodes[1].installs;
    let removes_before = sim.nodes[1].removes;
    // Replays from node 1's previous life, and from this one; tampered copies; a foreign key.
    let current: Vec<Vec<u8>> = sim.nodes[0].sent.clone();
    let foreign = statesync::Sealer::new(
        &statesync::SealKey::from_secret(b"another cluster, another key")
            .unwrap_or_else(|e| panic!("{e}")),
    );
    for (i, d) in old.iter().chain(current.iter()).enumerate() {
        let after = Duration::from_micros(rng.range(0, 2000));
        sim.inject(1, addr(0), d.clone(), after);
        let mut t = d.clone();
        let at = rng.range(0, t.len() as u64 - 1) as usize;
        t[at] ^= 1 << rng.range(0, 7);
        sim.inject(1, addr(0), t, after);
        if i % 8 == 0 {
            if let Ok(h) = statesync::wire::Header::decode(d) {
                let mut h = h;
                h.key_id = foreign.key_id();
                h.seq += 1_000_000;
                let body = vec![0u8; d.len() - statesync::wire::OVERHEAD];
                sim.inject(1, addr(0), foreign.seal_datagram(&h, &body), after);
            }
        }
    }
    sim.run_for(3 * SEC);
    let st = sim.nodes[1].engine.status(sim.now);
    let rejected = |r: RejectReason| st.counters.rejected.get(&r).copied().unwrap_or(0);
    assert!(
        rejected(RejectReason::Replay) + rejected(RejectReason::TooOld) > 0,
        "{st:#?}"
    );
    assert!(rejected(RejectReason::StaleEpoch) > 0, "{st:#?}");
    assert!(rejected(RejectReason::BadSeal) > 0, "{st:#?}");
    assert!(rejected(RejectReason::WrongKey) > 0, "{st:#?}");
    assert_eq!(
        sim.nodes[1].kernel, kernel_before,
        "seed {seed}: the attack changed the table"
    );
    assert_eq!(sim.nodes[1].installs, installs_before);
    assert_eq!(sim.nodes[1].removes, removes_before);
    sim.check_converged("after the attack");
}

/// Only the node that handles a conn's traffic announces it: a node that only receives sends
/// no state at all (its kernel's echoes of what it installed are recognised), even though the
/// model kernel adds CONFIRMED and BE_LIBERAL to everything installed.
#[test]
fn receivers_do_not_echo() {
    let mut sim = Sim::new(11, 3, NetConfig::default(), defaults);
    sim.run_for(SEC);
    for _ in 0..500 {
        sim.traffic_step(&[0]);
        sim.run_for(Duration::from_micros(500));
    }
    sim.run_for(2 * SEC);
    sim.check_converged("after traffic");
    for i in 1..3 {
        let c = sim.nodes[i].engine.status(sim.now).counters;
        assert_eq!(c.states_sent, 0, "node{} echoed: {c:#?}", i + 1);
        assert_eq!(c.deletes_sent, 0, "node{} echoed deletes: {c:#?}", i + 1);
        assert!(c.echo_suppressed > 0);
        assert!(c.installs > 0);
    }
}

/// After a failover the new master's kernel changes conns it installed: those are announced
/// (its view changed), and the old master installs them.
#[test]
fn takeover_updates_flow_back() {
    let mut sim = Sim::new(3, 2, NetConfig::default(), defaults);
    sim.run_for(SEC);
    for _ in 0..100 {
        let c = random_conn(&mut sim.rng);
        sim.open(0, c);
    }
    sim.run_for(SEC);
    sim.check_converged("before takeover");
    // Node 2 takes over the traffic of every conn.
    for (_, (n, _)) in sim.live.iter_mut() {
        *n = 1;
    }
    let keys: Vec<ConnKey> = sim.live.keys().copied().collect();
    for k in &keys {
        sim.change(k, |c| c.mark = 42);
    }
    for k in keys.iter().take(30) {
        sim.close(k);
    }
    sim.run_for(SEC);
    sim.check_converged("after takeover");
}

/// The daemon on node 2 restarts while its kernel keeps its table (a daemon upgrade). Node 1
/// changed conns meanwhile, and node 2's kernel gained a conn of its own that nobody heard of.
/// After the restart node 2 holds node 1's newer versions (its stale dump does not win), node 1
/// is not regressed by node 2's dump, and node 2's new conn reaches node 1.
#[test]
fn daemon_restart_with_kernel_kept() {
    for seed in 0..4u64 {
        let mut sim = Sim::new(seed, 2, NetConfig::default(), defaults);
        sim.run_for(SEC);
        let mut keys = Vec::new();
        for _ in 0..100 {
            let c = random_conn(&mut sim.rng);
            keys.push(c.key());
            sim.open(0, c);
        }
        let own = random_conn(&mut sim.rng);
        sim.open(1, own);
        sim.run_for(SEC);
        sim.check_converged("before the restart");
        sim.crash(1, false);
        for k in keys.iter().take(40) {
            sim.change(k, |c| c.mark = 4242);
        }
        // A conn through node 2 while its daemon was away: the kernel has it, no event was
        // seen.
        let fresh = random_conn(&mut sim.rng);
        let fk = fresh.key();
        sim.live.insert(fk, (1, fresh.clone()));
        sim.nodes[1].kernel.insert(fk, fresh);
        sim.run_for(100 * MS);
        sim.restart(1);
        sim.run_for(5 * SEC);
        sim.check_converged("after the daemon restart");
        assert_eq!(sim.nodes[1].ready_log.len(), 1);
        let c1 = sim.nodes[0].engine.status(sim.now).counters;
        assert_eq!(c1.peer_restarts, 1, "{c1:#?}");
    }
}

/// A partition longer than the sender's history: the receiver is told GONE, raises
/// GapUnrepairable, resyncs the sender's own conns, and deletes it missed take effect.
#[test]
fn lost_history_falls_back_to_a_resync() {
    let mut sim = Sim::new(5, 2, NetConfig::default(), small_history);
    sim.run_for(SEC);
    for _ in 0..100 {
        let c = random_conn(&mut sim.rng);
        sim.open(0, c);
    }
    sim.run_for(SEC);
    sim.check_converged("before the partition");
    sim.partition(0, 1);
    let keys: Vec<ConnKey> = sim.live.keys().copied().collect();
    for (i, k) in keys.iter().enumerate() {
        if i % 3 == 0 {
            sim.close(k);
        } else {
            sim.change(k, |c| c.mark = 7);
        }
        // One flush each: far more datagrams than the history of 16 keeps.
        sim.run_for(25 * MS);
    }
    for _ in 0..50 {
        let c = random_conn(&mut sim.rng);
        sim.open(0, c);
        sim.run_for(MS);
    }
    sim.heal();
    sim.run_for(5 * SEC);
    sim.check_converged("after the resync");
    let n2 = &sim.nodes[1];
    assert!(
        n2.alarms
            .iter()
            .any(|a| matches!(a, Alarm::GapUnrepairable { .. })),
        "{:?}",
        n2.alarms
    );
    let st = n2.engine.status(sim.now);
    assert_eq!(st.bulk.phase, BulkPhase::Done);
    assert!(st.counters.bulk_swept > 0, "{:#?}", st.counters);
    assert!(sim.nodes[0].engine.status(sim.now).counters.gone_sent > 0);
}

#[test]
fn regression_seeds() {
    // Seeds that once failed, kept as named cases.
    for seed in [0u64, 1, 2] {
        converge_scenario(seed, 2, defaults);
    }
    converge_scenario(0xd6d82bd2ec9f8d72, 2, small_history);
    converge_scenario(0x1ed73e5ef7a8b384, 3, defaults);
    converge_scenario(0x94ec70fdf97641da, 3, defaults);
    restart_scenario(0x7277c0d7991164c8);
    restart_scenario(0x26b99836c84176b3);
    converge_scenario(0x6e71445d5fe163d, 2, defaults);
    converge_scenario(0x5260bed4bac2c86, 2, defaults);
    converge_scenario(0x233f544ea4a80dcb, 3, defaults);
    // Node 2 took node 3's full bulk, relaying node 1's conn as node 3 had it, after node 1's
    // own newer update: it went back to the older version for good (a relayed bulk state
    // overrode the origin's).
    converge_scenario(0x38597fe24f9df04f, 3, defaults);
    // Node 2 gave up a gap from node 1 (a delete in it) while its bulk from node 3 was under
    // way, and never asked node 1 again (the gap's resync was dropped).
    converge_scenario(0x6f31fa1d73432b69, 3, defaults);
    // Node 1's probe of node 2 was lost and only node 2's next heartbeat, a second later,
    // brought another: meanwhile node 2's NACKs sat held, it gave up the gap and lacked its
    // conns (node 1 was deaf to node 2 for 4 s).
    restart_scenario(0x6547162cfd9bf5dc);
    // Node 2 installed two versions of node 3's conn and removed it before their kernel
    // echoes came: the first echo looked like a new conn of node 2's, which announced its
    // delete; node 1, having installed the conn again since that delete, dropped it from its
    // table on the DESTROY echo and announced the NEW echo as its own: dead, it came back.
    converge_scenario(0x6c3de0bc71298c1a, 3, defaults);
    // Node 1's bulk answer from node 2 was lost before node 1 had confirmed node 2's epoch;
    // node 1 then skipped that part of node 2's stream and asked again with the same id, which
    // node 2 does not answer twice, and lost the next three requests: not ready 20 s later.
    converge_scenario(0xf4e9d56b9c948015, 2, defaults);
    // Node 1's last stream datagram and the three heartbeats after it were lost: node 2 did
    // not know it had missed anything before the check, 3 s later.
    restart_scenario(0x9290a01984440578);
    // Node 1's own-only bulk request after a gap went into a partition and the next three
    // attempts, 3 s apart, were lost: still waiting for its backoff 20 s later, with an old
    // version of one of node 2's conns.
    converge_scenario(0x1f9d6403208f0ada, 2, defaults);
}
