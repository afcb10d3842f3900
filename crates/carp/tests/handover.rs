//! Planned hand-overs ([`Input::HandOver`]) on the simulated network: the master bows out,
//! a backup takes over at once whatever its preempt setting, and the node that handed over
//! stays a backup for as long as its standing is lowered.

#[path = "support/sim.rs"]
mod sim;

use carp::{DemoteSource, IfaceId, Input, Reason, RouterConfig, State};
use sim::*;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const IFACE: IfaceId = 1;

fn two(preempt_taker: bool, vrrp_interval_cs: Option<u16>) -> Sim {
    let mk = |skew: u8, preempt: bool| -> RouterConfig {
        let mut r = router(IFACE, 1, skew, preempt);
        if let Some(cs) = vrrp_interval_cs {
            r.protocol = carp::Protocol::Vrrp {
                interval: carp::Centisecs::new(cs).expect("interval"),
            };
        }
        r
    };
    let nodes = vec![
        NodeConfig {
            routers: vec![mk(0, true)],
            jitter: Duration::ZERO,
        },
        NodeConfig {
            routers: vec![mk(100, preempt_taker)],
            jitter: Duration::ZERO,
        },
    ];
    Sim::new(7, NetConfig::default(), nodes)
}

fn key(sim: &Sim) -> Key2 {
    *sim.keys().iter().next().expect("one router")
}

/// When the last transition of `node` to `to` happened, and why.
fn last_transition(sim: &Sim, node: NodeId, to: State) -> Option<(Duration, Reason)> {
    sim.log.iter().rev().find_map(|r| match &r.what {
        What::Transition { to: t, reason, .. } if r.node == node && *t == to => {
            Some((r.at, *reason))
        }
        _ => None,
    })
}

fn handover_moves_the_vip_at_once(preempt_taker: bool, vrrp: Option<u16>) {
    let mut sim = two(preempt_taker, vrrp);
    let k = key(&sim);
    sim.run_for(5 * SEC);
    assert_eq!(sim.masters(k), vec![0], "{}", sim.trace(20));
    let at = sim.now();
    sim.demote(0, DemoteSource::Operator, 240);
    sim.input(0, Input::HandOver);
    assert_eq!(sim.state(0, k), Some(State::Backup));
    assert!(!sim.holds(0, k), "the addresses leave with the hand-over");
    sim.run_for(SEC / 2);
    let (took, _) = last_transition(&sim, 1, State::Master).unwrap_or_else(|| {
        sim.fail("the peer never took over");
    });
    // CARP: at once on the bow-out; VRRP: after the skew time of priority 154 (~0.4 of an
    // interval), so well within half a second at 1 s.
    assert!(
        took - at < 500 * MS,
        "took over {:?} after the hand-over",
        took - at
    );
    let (_, why) = last_transition(&sim, 0, State::Backup).expect("went backup");
    assert_eq!(why, Reason::HandedOver);
    // Still demoted: the node stays a backup, however long.
    sim.run_for(20 * SEC);
    assert_eq!(sim.masters(k), vec![1], "{}", sim.trace(20));
    // The demotion lifted: with preempt it takes the VIP back.
    sim.demote(0, DemoteSource::Operator, 0);
    sim.run_for(5 * SEC);
    assert_eq!(sim.masters(k), vec![0], "{}", sim.trace(20));
}

#[test]
fn carp_handover_to_a_preempting_backup() {
    handover_moves_the_vip_at_once(true, None);
}

#[test]
fn carp_handover_to_a_backup_that_does_not_preempt() {
    handover_moves_the_vip_at_once(false, None);
}

#[test]
fn vrrp_handover_to_a_preempting_backup() {
    handover_moves_the_vip_at_once(true, Some(100));
}

#[test]
fn vrrp_handover_to_a_backup_that_does_not_preempt() {
    handover_moves_the_vip_at_once(false, Some(100));
}

/// Without a peer to take over, the node comes back as master when its master-down timer
/// runs out: a hand-over never leaves a VIP unserved for longer than a failure would.
#[test]
fn a_lone_node_takes_its_vip_back_after_the_master_down_time() {
    let mut sim = two(true, None);
    let k = key(&sim);
    sim.run_for(5 * SEC);
    sim.crash(1);
    sim.run_for(2 * SEC);
    sim.demote(0, DemoteSource::Operator, 240);
    sim.input(0, Input::HandOver);
    assert_eq!(sim.state(0, k), Some(State::Backup));
    sim.run_for(5 * SEC);
    assert_eq!(sim.masters(k), vec![0], "{}", sim.trace(20));
    let (_, why) = last_transition(&sim, 0, State::Master).expect("master again");
    assert_eq!(why, Reason::MasterDownTimer);
}

/// A backup asked to hand over changes nothing.
#[test]
fn a_backup_ignores_a_hand_over() {
    let mut sim = two(true, None);
    let k = key(&sim);
    sim.run_for(5 * SEC);
    let before = sim.log.len();
    sim.input(1, Input::HandOver);
    sim.run_for(5 * SEC);
    assert_eq!(sim.masters(k), vec![0]);
    assert!(!sim.log[before..]
        .iter()
        .any(|r| matches!(r.what, What::Transition { .. })));
}
