//! Whole VRRP clusters on the deterministic simulated network (tests/support/sim.rs): two and
//! three nodes on a virtual clock with delay and loss, at 1 s, 100 ms and 10 ms adverts, and
//! a property test over random schedules. Every scenario comes from one seed, printed on
//! failure with the recent events.

#[path = "support/sim.rs"]
mod sim;

use carp::{DemoteSource, IfaceId, Reason, State};
use proptest::prelude::*;
use sim::*;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const INTERVALS_CS: [u16; 3] = [100, 10, 1];

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 0,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn lan() -> Key2 {
    (LAN, vhid(LAN_VHID))
}

fn wan() -> Key2 {
    (WAN, vhid(WAN_VHID))
}

fn cs(interval_cs: u16) -> Duration {
    Duration::from_micros(u64::from(interval_cs) * 10_000)
}

/// `skews[i]` is node i's advskew (priority 254 - skew); routers on LAN and WAN. Delays up
/// to a tenth of the interval, timers up to a tenth of it late.
fn cluster(
    seed: u64,
    interval_cs: u16,
    skews: &[u8],
    preempt: &[bool],
    loss_per_mille: u32,
) -> Sim {
    let mut rng = SimRng::new(seed);
    let i = cs(interval_cs);
    let net = NetConfig {
        delay_min: Duration::from_micros(20),
        delay_max: Duration::from_micros(20) + rng.duration(Duration::ZERO, i / 10),
        loss_per_mille,
        reorder: rng.chance(500),
    };
    let nodes = skews
        .iter()
        .zip(preempt)
        .map(|(&skew, &p)| NodeConfig {
            routers: [LAN, WAN]
                .iter()
                .map(|&f| vrrp_router(f, skew, interval_cs, p))
                .collect(),
            jitter: rng.duration(Duration::ZERO, i / 10),
        })
        .collect();
    Sim::new(seed, net, nodes)
}

/// Long enough for any VRRP cluster to settle once whole: two master-down intervals (a
/// lower backup may take over first, then the best one), two adverts, delays and lateness.
fn settle(sim: &Sim, interval_cs: u16) -> Duration {
    let i = cs(interval_cs);
    2 * (3 * i + i) + 2 * i + 4 * sim.net.delay_max + 4 * sim.max_jitter() + MS
}

fn one_master_each(sim: &Sim, best: bool, why: &str) -> NodeId {
    let m = sim.assert_one_master(lan(), best, why);
    let w = sim.assert_one_master(wan(), best, why);
    if best && m != w {
        sim.fail(format!("{why}: vhids split: LAN node{m}, WAN node{w}"));
    }
    m
}

#[test]
fn the_highest_priority_becomes_master_at_every_interval() {
    for (k, &ics) in INTERVALS_CS.iter().enumerate() {
        for skews in [&[100u8, 0][..], &[50, 10, 120][..]] {
            let n = skews.len();
            let mut sim = cluster(k as u64 + 11, ics, skews, &vec![true; n], 0);
            sim.run_for(settle(&sim, ics));
            let m = one_master_each(&sim, true, "settled");
            let want = (0..n).min_by_key(|&i| skews[i]).unwrap_or(0);
            assert_eq!(m, want, "{}", sim.at());
            let settled = sim.now();
            sim.run_for(100 * cs(ics));
            assert!(sim.transitions_since(settled).is_empty(), "{}", sim.at());
            // The first takeover came after the best node's own master-down interval.
            let (t, who) = sim.takeovers(lan(), Duration::ZERO)[0];
            assert_eq!(who, want, "{}", sim.at());
            assert!(t >= sim.vrrp_master_down_of(want, lan()), "{}", sim.at());
        }
    }
}

/// The master crashes (or loses its link), with 2% loss: the first backup takes over within its
/// master-down interval of the last advert it heard, and within 3 * interval + skew (+ one
/// interval of slack) of the failure; then the best remaining node is master of both vhids.
fn takeover(seed: u64, interval_cs: u16, n: usize, link_down: bool) {
    let mut rng = SimRng::new(seed ^ 0x7a4e);
    let mut skews: Vec<u8> = Vec::new();
    while skews.len() < n {
        let s = rng.range(0, 200) as u8;
        if !skews.contains(&s) {
            skews.push(s);
        }
    }
    // 2% loss: a lost advert only makes a backup's timer older, never the takeover later.
    let mut sim = cluster(seed, interval_cs, &skews, &vec![true; n], 20);
    sim.run_for(settle(&sim, interval_cs));
    let phase = rng.duration(Duration::ZERO, cs(interval_cs));
    sim.run_for(phase);
    let m = one_master_each(&sim, true, "before the failure");
    let failed_at = sim.now();
    if link_down {
        sim.set_link(m, LAN, false);
    } else {
        sim.crash(m);
    }
    sim.run_for(settle(&sim, interval_cs));
    let Some(&(t1, b)) = sim.takeovers(lan(), failed_at).first() else {
        sim.fail(format!("nobody took over from node{m}"));
    };
    let heard = sim
        .last_heard(b, lan(), m, t1)
        .unwrap_or_else(|| sim.fail(format!("node{b} never heard node{m}")));
    let md = sim.vrrp_master_down_of(b, lan());
    let late = sim.jitter(b);
    if t1 > heard + md + late + MS {
        sim.fail(format!(
            "node{b} took over at {t1:?}, last heard node{m} at {heard:?}, master-down {md:?}"
        ));
    }
    let i = cs(interval_cs);
    let bound = 3 * i + sim.vrrp_skew_of(b, lan()) + i;
    if t1 - failed_at > bound {
        sim.fail(format!(
            "node{b} took over {:?} after the failure; bound {bound:?}",
            t1 - failed_at
        ));
    }
    if link_down {
        // The link-down demotion moves the WAN vhid too: every VIP on one node.
        let w = sim.assert_one_master(wan(), false, "after the link failure");
        if w == m {
            sim.fail(format!("node{m} lost LAN but kept WAN"));
        }
        sim.assert_one_master(lan(), false, "after the link failure");
    } else {
        one_master_each(&sim, true, "after the takeover");
    }
}

#[test]
fn backups_take_over_in_time_at_every_interval() {
    for &ics in &INTERVALS_CS {
        for n in [2, 3] {
            for seed in 0..8u64 {
                takeover(seed * 31 + u64::from(ics), ics, n, seed % 2 == 1);
                takeover(seed * 37 + u64::from(ics) + 1000, ics, n, seed % 2 == 0);
            }
        }
    }
}

#[test]
fn a_resigning_master_is_replaced_within_the_skew() {
    for &ics in &INTERVALS_CS {
        for skews in [&[0u8, 100][..], &[0, 60, 30][..]] {
            let n = skews.len();
            let mut sim = cluster(u64::from(ics) + 5, ics, skews, &vec![true; n], 0);
            sim.run_for(settle(&sim, ics));
            let m = one_master_each(&sim, true, "settled");
            let at = sim.now();
            sim.shutdown(m);
            sim.run_for(settle(&sim, ics));
            let (t1, b) = sim.takeovers(lan(), at)[0];
            let bound = sim.net.delay_max + sim.vrrp_skew_of(b, lan()) + sim.jitter(b) + MS;
            assert!(
                t1 - at <= bound,
                "{}: node{b} took over {:?} after the priority-0 advert, bound {bound:?}",
                sim.at(),
                t1 - at
            );
            assert!(
                bound < 3 * cs(ics),
                "the skew bound is below a master-down interval"
            );
            let reason = sim.log.iter().find_map(|r| match r.what {
                What::Transition {
                    to: State::Master,
                    reason,
                    ..
                } if r.at == t1 && r.node == b => Some(reason),
                _ => None,
            });
            assert_eq!(reason, Some(Reason::PriorityZero), "{}", sim.at());
            one_master_each(&sim, true, "after the resignation");
        }
    }
}

/// The best node crashes and restarts: with preempt it takes both vhids back; without, the
/// node that took over keeps them and nothing moves.
fn restart(seed: u64, interval_cs: u16, preempt: bool) {
    let skews = [0u8, 80, 40];
    let mut sim = cluster(seed, interval_cs, &skews, &[preempt; 3], 0);
    sim.run_for(settle(&sim, interval_cs));
    let first = one_master_each(&sim, true, "initial");
    sim.crash(first);
    sim.run_for(settle(&sim, interval_cs));
    let second = one_master_each(&sim, true, "after the crash");
    sim.restart(first);
    let back = sim.now();
    sim.run_for(settle(&sim, interval_cs));
    let m = one_master_each(&sim, preempt, "after the restart");
    if preempt {
        assert_eq!(m, first, "{}", sim.at());
        let (t, _) = sim.takeovers(lan(), back)[0];
        let bound = sim.vrrp_master_down_of(first, lan()) + sim.jitter(first) + MS;
        assert!(t - back <= bound, "{}: took {:?}", sim.at(), t - back);
        let stepped_down = sim.log.iter().any(|r| {
            r.at >= back
                && r.node == second
                && matches!(
                    r.what,
                    What::Transition {
                        reason: Reason::HigherPriorityAdvert,
                        ..
                    }
                )
        });
        assert!(stepped_down, "{}: node{second} stepped down", sim.at());
    } else {
        assert_eq!(m, second, "{}", sim.at());
        assert_eq!(
            sim.takeovers(lan(), back),
            vec![],
            "{}: nothing moves without preemption",
            sim.at()
        );
    }
}

#[test]
fn preempt_and_nopreempt() {
    for &ics in &INTERVALS_CS {
        for seed in 0..4 {
            restart(seed, ics, true);
            restart(seed, ics, false);
        }
    }
}

#[test]
fn demotion_moves_every_vip_and_back() {
    for &ics in &INTERVALS_CS {
        let mut sim = cluster(u64::from(ics), ics, &[0, 50, 100], &[true; 3], 0);
        sim.run_for(settle(&sim, ics));
        assert_eq!(one_master_each(&sim, true, "initial"), 0);
        let at = sim.now();
        sim.demote(0, DemoteSource::StateSync, 240);
        sim.run_for(settle(&sim, ics));
        assert_eq!(one_master_each(&sim, true, "demoted"), 1, "{}", sim.at());
        let (t, _) = sim.takeovers(lan(), at)[0];
        let i = cs(ics);
        assert!(t - at <= 3 * i + i + i, "{}: took {:?}", sim.at(), t - at);
        sim.demote(0, DemoteSource::StateSync, 0);
        sim.run_for(settle(&sim, ics));
        assert_eq!(one_master_each(&sim, true, "promoted"), 0, "{}", sim.at());
    }
}

// ---- random schedules -----------------------------------------------------------------------

/// Random trouble: partitions, loss up to 30%, crashes, restarts, clean shutdowns, link
/// flaps, demotion; then the network is made whole and must settle to one master per vhid
/// (the best when all preempt, the same node for both), and stay put.
fn random_schedule(seed: u64) {
    let mut rng = SimRng::new(seed ^ 0x0bad_5eed);
    let n = rng.range(2, 3) as usize;
    let ics = rng.pick(&INTERVALS_CS);
    let mut skews: Vec<u8> = Vec::new();
    while skews.len() < n {
        let s = rng.range(0, 200) as u8;
        if !skews.contains(&s) {
            skews.push(s);
        }
    }
    let all = rng.chance(500);
    let preempt: Vec<bool> = (0..n).map(|_| all || rng.chance(500)).collect();
    let mut sim = cluster(seed, ics, &skews, &preempt, 0);
    let i = cs(ics);
    let end = sim.now() + 200 * i;
    loop {
        let t = sim.now() + rng.duration(i / 10, 20 * i);
        if t >= end {
            break;
        }
        sim.run_until(t);
        let up: Vec<NodeId> = (0..n).filter(|&x| sim.alive(x)).collect();
        let node = rng.below(n as u64) as usize;
        match rng.below(8) {
            0 => sim.partition((0..n).map(|_| rng.below(2) as u32).collect()),
            1 => sim.heal(),
            2 => sim.set_loss(rng.range(0, 300) as u32),
            3 if up.len() > 1 && sim.alive(node) => sim.crash(node),
            4 if up.len() > 1 && sim.alive(node) => sim.shutdown(node),
            3 | 4 if !sim.alive(node) => sim.restart(node),
            5 => sim.demote(node, DemoteSource::Operator, rng.pick(&[0, 0, 50, 240])),
            _ => {
                let iface: IfaceId = rng.pick(&[LAN, WAN]);
                let was = sim.link(node, iface);
                sim.set_link(node, iface, !was);
            }
        }
    }
    sim.heal();
    sim.set_loss(0);
    for id in 0..n {
        sim.set_link(id, LAN, true);
        sim.set_link(id, WAN, true);
        if !sim.alive(id) {
            sim.restart(id);
        }
        sim.demote(id, DemoteSource::Operator, 0);
    }
    let whole = sim.now();
    sim.run_for(settle(&sim, ics));
    let why = format!("whole since {whole:?}");
    one_master_each(&sim, all, &why);
    let settled = sim.now();
    sim.run_for(50 * i);
    let moved = sim.transitions_since(settled);
    if !moved.is_empty() {
        sim.fail(format!(
            "transitions after settling at {settled:?}: {moved:?}"
        ));
    }
}

proptest! {
    #![proptest_config(config(96))]
    #[test]
    fn prop_vrrp_random_schedules_settle_to_one_master(seed in any::<u64>()) {
        random_schedule(seed);
    }
}
