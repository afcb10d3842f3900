//! Quiet bulk installs (engine/quiet.rs): a node that does not forward leaves the kernel's NEW
//! events while it installs a bulk sync, joins them again and dumps when it is over, and
//! nothing created meanwhile is lost. The simulated kernel (tests/support/sim.rs) builds no
//! NEW event while nobody listens, for installs and for traffic alike, and checks that a
//! forwarding node never leaves and that every join is followed by a dump.

#[path = "support/cases.rs"]
mod cases;
#[path = "support/sim.rs"]
mod sim;

use cases::config;
use proptest::prelude::*;
use sim::*;
use statesync::model::ConnKey;
use statesync::{Action, Config, Input, NodeId, Replicator, SealKey};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

fn defaults(_: &mut Config) {}

fn no_quiet(cfg: &mut Config) {
    cfg.quiet_bulk = false;
}

/// Node 1 holds `conns` conns; node 2 restarts with an empty kernel and bulk-syncs while both
/// carry traffic. Node 2 opens a conn the moment it leaves them, and every 50 µs while it does not listen to NEW events.
/// `forwarding`: node 2 says it forwards right after its restart (then it must never leave),
/// or, with `midway`, as soon as it has left (then it must join again at once).
fn scenario(seed: u64, forwarding: bool, midway: bool, cfg: fn(&mut Config)) -> Sim {
    let mut rng = SimRng::new(seed);
    let delay_min = rng.duration(Duration::from_micros(50), MS);
    let lossy = rng.chance(500);
    let net = NetConfig {
        delay_min,
        delay_max: delay_min + rng.duration(Duration::ZERO, 4 * MS),
        loss_per_mille: if lossy { rng.range(0, 50) as u32 } else { 0 },
        dup_per_mille: if lossy { rng.range(0, 20) as u32 } else { 0 },
    };
    let mut sim = Sim::new(seed, 2, net, cfg);
    sim.run_for(SEC);
    for _ in 0..rng.range(1500, 3000) {
        let c = random_conn(&mut sim.rng);
        if !sim.live.contains_key(&c.key()) {
            sim.open(0, c);
        }
    }
    sim.run_for(3 * SEC);
    sim.check_converged("before the restart");
    sim.crash(1, true);
    sim.run_for(10 * MS);
    sim.restart(1);
    sim.nodes[1].open_on_leave = true;
    if forwarding && !midway {
        set_forwarding(&mut sim, 1, true);
    }
    let mut told = false;
    for _ in 0..20_000 {
        if sim.nodes[1].new_events {
            if rng.chance(100) {
                sim.traffic_step(&[0, 1]);
            }
        } else {
            // The window: conns through node 2 that no NEW event reports.
            let c = random_conn(&mut sim.rng);
            if !sim.live.contains_key(&c.key()) {
                sim.open(1, c);
            }
            if forwarding && midway && !told {
                told = true;
                set_forwarding(&mut sim, 1, true);
                assert!(
                    !sim.nodes[1].engine.quiet() && sim.nodes[1].new_events,
                    "seed {seed:#x}: still quiet after Forwarding(true)\n{}",
                    sim.recent()
                );
            }
        }
        sim.run_for(Duration::from_micros(50));
    }
    sim.run_for(40 * SEC);
    sim.check_converged("after the bulk");
    assert!(sim.nodes[1].ready, "seed {seed:#x}: node2 not ready");
    assert!(
        sim.nodes[1].new_events,
        "seed {seed:#x}: NEW events left off"
    );
    sim
}

/// The daemon tells `node`'s engine whether it forwards (master of a VIP).
fn set_forwarding(sim: &mut Sim, node: usize, on: bool) {
    sim.note(format!("node{} forwarding {on}", node + 1));
    sim.nodes[node].forwarding = on;
    let now = sim.now;
    sim.nodes[node].engine.handle(now, Input::Forwarding(on));
    sim.drain(node);
}

fn quiet_bulks(sim: &Sim, i: usize) -> u64 {
    sim.nodes[i].engine.status(sim.now).counters.quiet_bulks
}

proptest! {
    #![proptest_config(config(8))]

    /// Conns node 2 opened while it did not listen to NEW events reach node 1 (the dump after
    /// the join finds them); the bulk itself brought everything node 1 had.
    #[test]
    fn conns_opened_during_a_quiet_bulk_are_replicated(seed in any::<u64>()) {
        let sim = scenario(seed, false, false, defaults);
        prop_assert!(quiet_bulks(&sim, 1) >= 1, "seed {seed:#x}: never quiet");
        prop_assert!(sim.nodes[1].opened_quiet > 0, "seed {seed:#x}: nothing opened while quiet");
    }

    /// A node that forwards keeps listening (the sim asserts it on every NewEvents).
    #[test]
    fn a_forwarding_node_never_leaves_new_events(seed in any::<u64>()) {
        let sim = scenario(seed, true, false, defaults);
        prop_assert_eq!(quiet_bulks(&sim, 1), 0);
        prop_assert_eq!(sim.nodes[1].opened_quiet, 0);
    }

    /// Becoming a forwarder in the middle of a quiet bulk joins again at once.
    #[test]
    fn forwarding_midway_joins_at_once(seed in any::<u64>()) {
        let sim = scenario(seed, true, true, defaults);
        prop_assert!(quiet_bulks(&sim, 1) >= 1, "seed {seed:#x}: never quiet");
    }

    /// `quiet_bulk = false`: always listening.
    #[test]
    fn quiet_bulk_off_never_leaves(seed in any::<u64>()) {
        let sim = scenario(seed, false, false, no_quiet);
        prop_assert_eq!(quiet_bulks(&sim, 1), 0);
    }
}

fn key() -> SealKey {
    SealKey::from_bytes([0x5a; 32])
}

fn peer_addr(node: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, node as u8)), 4567)
}

/// The order of a quiet bulk as the daemon sees it: NewEvents(false) before the first
/// install, then every install, then NewEvents(true) and at once RequestDump (after the
/// readiness change).
#[test]
fn quiet_bulk_actions_come_in_order() {
    let mut now = Instant::now();
    let mk = |n: u32| {
        let mut c = Config::new(NodeId(n), 0x1000 + u64::from(n), key());
        c.dump_interval = None;
        Replicator::new(now, c, u64::from(n)).unwrap_or_else(|e| panic!("{e}"))
    };
    let mut a = mk(1);
    let mut b = mk(2);
    // Node 1 holds 500 conns (its own dump).
    let mut rng = SimRng::new(7);
    let conns: Vec<_> = (0..500).map(|_| random_conn(&mut rng)).collect();
    a.handle(now, Input::DumpStarted);
    a.handle(now, Input::LocalSnapshot(conns.clone()));
    let mut b_actions = Vec::new();
    for _ in 0..2000 {
        let mut to_b = Vec::new();
        while let Some(x) = a.poll_action() {
            if let Action::Send { bytes, .. } = x {
                to_b.push(bytes);
            }
        }
        for d in to_b {
            b.handle_datagram(now, peer_addr(1), &d);
        }
        let mut to_a = Vec::new();
        while let Some(x) = b.poll_action() {
            if let Action::Send { bytes, .. } = &x {
                to_a.push(bytes.clone());
            }
            b_actions.push(x);
        }
        for d in to_a {
            a.handle_datagram(now, peer_addr(2), &d);
        }
        now += Duration::from_micros(250);
        for r in [&mut a, &mut b] {
            if r.poll_timeout().is_some_and(|(t, _)| t <= now) {
                r.handle_timeout(now);
            }
        }
    }
    assert!(b.is_ready());
    let kinds: Vec<String> = b_actions
        .iter()
        .filter(|x| !matches!(x, Action::Send { .. }))
        .map(|x| match x {
            Action::Install(_) => "install".to_string(),
            Action::NewEvents(on) => format!("new-events {on}"),
            Action::RequestDump => "dump".to_string(),
            Action::ReadyChanged(r) => format!("ready {r}"),
            other => format!("{other:?}"),
        })
        .collect();
    let first_install = kinds.iter().position(|k| k == "install");
    let leave = kinds.iter().position(|k| k == "new-events false");
    let join = kinds.iter().position(|k| k == "new-events true");
    let last_install = kinds.iter().rposition(|k| k == "install");
    let (Some(fi), Some(l), Some(j), Some(li)) = (first_install, leave, join, last_install) else {
        panic!("{kinds:?}")
    };
    assert!(l < fi && li < j, "{kinds:?}");
    assert_eq!(
        kinds.get(j + 1).map(String::as_str),
        Some("dump"),
        "{kinds:?}"
    );
    assert!(kinds[..j].iter().any(|k| k == "ready true"), "{kinds:?}");
    let installed: usize = b_actions
        .iter()
        .map(|x| match x {
            Action::Install(c) => c.len(),
            _ => 0,
        })
        .sum();
    let want: std::collections::BTreeSet<ConnKey> = conns.iter().map(|c| c.key()).collect();
    assert_eq!(installed, want.len());
    assert!(!b.quiet());
}

#[test]
fn regression_seeds() {
    // A quiet window shorter than a step of the loop (lossy network).
    let sim = scenario(0x4373_00ed_76c0_bd74, false, false, defaults);
    assert!(sim.nodes[1].opened_quiet > 0, "{}", sim.recent());
}
