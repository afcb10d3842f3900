//! Scenario tests of one engine fed by hand-made adverts.

use carp::wire::{self, Advert};
use carp::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const IF: IfaceId = 1;
const PEER: &str = "192.0.2.3";
const ME: &str = "192.0.2.2";

fn vhid(v: u8) -> Vhid {
    Vhid::new(v).expect("nonzero")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

fn cfg(v: u8, skew: u8, preempt: bool) -> RouterConfig {
    RouterConfig {
        iface: IF,
        vhid: vhid(v),
        advbase: Advbase(1),
        advskew: Skew(skew),
        preempt,
        addresses: vec![ip("192.0.2.100")],
        key: Key::from_passphrase(b"s3cret"),
        protocol: carp::Protocol::Carp,
        peers: Vec::new(),
    }
}

fn advert_from(c: &RouterConfig, advbase: u8, advskew: u8, counter: u64) -> Vec<u8> {
    let auth = Authenticator::new(c.key.clone(), c.vhid, &c.addresses);
    wire::encode(&Advert {
        vhid: c.vhid,
        advbase: Advbase(advbase),
        advskew: Skew(advskew),
        demote: 0,
        counter,
        hmac: auth.sign(counter),
    })
    .to_vec()
}

fn drain(c: &mut Carp) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

fn node(t0: Instant, c: &RouterConfig) -> Carp {
    let mut n = Carp::new(1);
    n.set_local_address(IF, ip(ME));
    n.add_router(t0, c.clone());
    n
}

fn feed(n: &mut Carp, now: Instant, payload: Vec<u8>) {
    n.handle(
        now,
        Input::Advert {
            iface: IF,
            src: ip(PEER),
            dst: "224.0.0.18".parse().expect("group"),
            ttl: 255,
            payload,
        },
    );
}

#[test]
fn lone_node_becomes_master_after_master_down_interval() {
    let t0 = Instant::now();
    let c = cfg(7, 100, true);
    let mut n = node(t0, &c);
    assert_eq!(n.state(IF, vhid(7)), Some(State::Backup));
    let (deadline, kind) = n.poll_timeout().expect("master-down timer armed");
    assert_eq!(kind, TimerKind::MasterDown);
    // 3 * advbase + advskew/256 = 3 s + 100/256 s
    assert_eq!(
        deadline - t0,
        Duration::from_nanos(3_000_000_000 + 100 * 3_906_250)
    );
    drain(&mut n);
    n.handle_timeout(deadline);
    let acts = drain(&mut n);
    assert!(matches!(
        acts[0],
        Action::Transition {
            from: State::Backup,
            to: State::Master,
            reason: Reason::MasterDownTimer,
            ..
        }
    ));
    assert!(matches!(acts[1], Action::AddAddresses { .. }));
    let Action::Send {
        ref payload,
        family: Family::V4,
        ..
    } = acts[2]
    else {
        panic!("expected an advert, got {acts:?}");
    };
    let a = wire::decode(payload).expect("valid advert");
    assert_eq!((a.advbase, a.advskew), (Advbase(1), Skew(100)));
    assert!(matches!(acts[3], Action::Announce { .. }));
    let (next, kind) = n.poll_timeout().expect("advert timer");
    assert_eq!(kind, TimerKind::Advertise);
    assert_eq!(
        next - deadline,
        Duration::from_nanos(1_000_000_000 + 100 * 3_906_250)
    );
}

#[test]
fn backup_hearing_a_better_master_stays_backup() {
    let t0 = Instant::now();
    let c = cfg(7, 100, true);
    let mut n = node(t0, &c);
    for i in 0..10u64 {
        let now = t0 + Duration::from_secs(i);
        feed(&mut n, now, advert_from(&c, 1, 0, i));
        n.handle_timeout(now);
    }
    assert_eq!(n.state(IF, vhid(7)), Some(State::Backup));
    let s = &n.status()[0];
    assert_eq!(s.counters.adverts_received, 10);
    assert_eq!(s.last_master, Some(ip(PEER)));
}

#[test]
fn preempt_takes_over_from_a_slower_master_and_no_preempt_does_not() {
    let t0 = Instant::now();
    for (preempt, expect) in [(true, State::Master), (false, State::Backup)] {
        let c = cfg(7, 0, preempt);
        let mut n = node(t0, &c);
        feed(&mut n, t0, advert_from(&c, 1, 100, 1));
        assert_eq!(n.state(IF, vhid(7)), Some(expect), "preempt={preempt}");
    }
}

#[test]
fn master_steps_down_on_better_advert_and_wins_ties_with_lower_address() {
    let t0 = Instant::now();
    let c = cfg(7, 50, true);
    let mut n = node(t0, &c);
    let md = n.poll_timeout().expect("timer").0;
    n.handle_timeout(md);
    assert_eq!(n.state(IF, vhid(7)), Some(State::Master));
    // Equal timing from a higher address: we (192.0.2.2) stay master.
    feed(&mut n, md, advert_from(&c, 1, 50, 9));
    assert_eq!(n.state(IF, vhid(7)), Some(State::Master));
    drain(&mut n);
    // Better timing: step down and release the address.
    feed(&mut n, md, advert_from(&c, 1, 49, 10));
    assert_eq!(n.state(IF, vhid(7)), Some(State::Backup));
    let acts = drain(&mut n);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::RemoveAddresses { .. })));
}

#[test]
fn equal_advert_from_lower_address_makes_master_step_down() {
    let t0 = Instant::now();
    let c = cfg(7, 50, true);
    let mut n = Carp::new(1);
    n.set_local_address(IF, ip("192.0.2.9"));
    n.add_router(t0, c.clone());
    let md = n.poll_timeout().expect("timer").0;
    n.handle_timeout(md);
    feed(&mut n, md, advert_from(&c, 1, 50, 9));
    assert_eq!(n.state(IF, vhid(7)), Some(State::Backup));
}

#[test]
fn bow_out_advert_triggers_immediate_takeover_even_without_preempt() {
    let t0 = Instant::now();
    let c = cfg(7, 100, false);
    let mut n = node(t0, &c);
    feed(&mut n, t0, advert_from(&c, 1, 0, 1));
    feed(
        &mut n,
        t0 + Duration::from_millis(500),
        advert_from(&c, 255, 255, 2),
    );
    assert_eq!(n.state(IF, vhid(7)), Some(State::Master));
}

#[test]
fn shutdown_bows_out_and_releases() {
    let t0 = Instant::now();
    let c = cfg(7, 0, true);
    let mut n = node(t0, &c);
    let md = n.poll_timeout().expect("timer").0;
    n.handle_timeout(md);
    drain(&mut n);
    n.handle(md, Input::Shutdown);
    let acts = drain(&mut n);
    let Some(Action::Send { payload, .. }) = acts.first() else {
        panic!("expected bow-out advert first: {acts:?}");
    };
    let a = wire::decode(payload).expect("valid");
    assert_eq!((a.advbase, a.advskew), (Advbase(255), Skew(255)));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::RemoveAddresses { .. })));
    assert_eq!(n.state(IF, vhid(7)), Some(State::Init));
    assert_eq!(n.poll_timeout(), None);
}

#[test]
fn link_down_demotes_every_router_of_the_node() {
    let t0 = Instant::now();
    let mut n = Carp::new(1);
    let lan = cfg(7, 0, true);
    let mut wan = cfg(8, 0, true);
    wan.iface = 2;
    wan.addresses = vec![ip("198.51.100.1")];
    n.add_router(t0, lan.clone());
    n.add_router(t0, wan.clone());
    let md = n.poll_timeout().expect("timer").0;
    n.handle_timeout(md);
    assert_eq!(n.state(2, vhid(8)), Some(State::Master));
    drain(&mut n);
    n.handle(
        md,
        Input::Link {
            iface: IF,
            up: false,
        },
    );
    assert_eq!(n.state(IF, vhid(7)), Some(State::Init));
    assert_eq!(n.demotion(), 240);
    // The wan router now advertises the demoted skew at its next advert.
    let (t, _) = n.poll_timeout().expect("advert timer");
    n.handle_timeout(t);
    let sent: Vec<_> = drain(&mut n)
        .into_iter()
        .filter_map(|a| match a {
            Action::Send { payload, .. } => wire::decode(&payload).ok(),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].advskew, Skew(240));
    n.handle(
        t,
        Input::Link {
            iface: IF,
            up: true,
        },
    );
    assert_eq!(n.demotion(), 0);
    assert_eq!(n.state(IF, vhid(7)), Some(State::Backup));
}

#[test]
fn bad_adverts_are_counted_by_reason_and_change_nothing() {
    let t0 = Instant::now();
    let c = cfg(7, 0, true);
    let mut n = node(t0, &c);
    let good = advert_from(&c, 1, 200, 5);
    let mut bad_sum = good.clone();
    bad_sum[10] ^= 0xff;
    let other_key = RouterConfig {
        key: Key::from_passphrase(b"wrong"),
        protocol: carp::Protocol::Carp,
        ..c.clone()
    };
    let bad_hmac = advert_from(&other_key, 1, 200, 5);
    let unknown = advert_from(&cfg(9, 0, true), 1, 200, 5);
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (64, good.clone()),
        (255, good[..20].to_vec()),
        (255, bad_sum),
        (255, bad_hmac),
        (255, unknown),
        (255, vec![]),
    ];
    for (ttl, payload) in cases {
        n.handle(
            t0,
            Input::Advert {
                iface: IF,
                src: ip(PEER),
                dst: "224.0.0.18".parse().expect("group"),
                ttl,
                payload,
            },
        );
    }
    assert_eq!(
        n.state(IF, vhid(7)),
        Some(State::Backup),
        "no preemption from rejected adverts"
    );
    let s = &n.status()[0];
    assert_eq!(s.counters.adverts_received, 0);
    let r = &s.counters.rejected;
    assert_eq!(r.get(&RejectReason::BadTtl), Some(&1));
    assert_eq!(r.get(&RejectReason::TooShort), Some(&1));
    assert_eq!(r.get(&RejectReason::BadChecksum), Some(&1));
    assert_eq!(r.get(&RejectReason::BadHmac), Some(&1));
    assert_eq!(n.node_rejected().get(&RejectReason::UnknownVhid), Some(&1));
    assert_eq!(n.node_rejected().get(&RejectReason::TooShort), Some(&1));
}

#[test]
fn send_errors_demote_after_three_and_recover_after_three_successes() {
    let t0 = Instant::now();
    let c = cfg(7, 0, true);
    let mut n = node(t0, &c);
    for _ in 0..3 {
        n.handle(
            t0,
            Input::SendResult {
                iface: IF,
                vhid: vhid(7),
                ok: false,
            },
        );
    }
    assert_eq!(n.demotion(), 240);
    for _ in 0..3 {
        n.handle(
            t0,
            Input::SendResult {
                iface: IF,
                vhid: vhid(7),
                ok: true,
            },
        );
    }
    assert_eq!(n.demotion(), 0);
}

#[test]
fn inputs_and_actions_serialise_for_record_and_replay() {
    let i = Input::Link {
        iface: 3,
        up: false,
    };
    let j = serde_json::to_string(&i).expect("serialise");
    assert_eq!(serde_json::from_str::<Input>(&j).expect("parse"), i);
}

#[test]
fn a_peer_with_another_address_set_is_told_apart_from_a_wrong_passphrase() {
    let t0 = Instant::now();
    // This node has two addresses on vhid 7; the peer hashes only one of them (as ucarp, or a
    // BSD node configured with one address), with the right passphrase.
    let mut ours = cfg(7, 100, true);
    ours.addresses = vec![ip("192.0.2.100"), ip("192.0.2.101")];
    let mut n = node(t0, &ours);
    let fewer = RouterConfig {
        addresses: vec![ip("192.0.2.100")],
        ..ours.clone()
    };
    feed(&mut n, t0, advert_from(&fewer, 1, 0, 5));
    // One second later (the diagnosis runs at most once a second per vhid), a wrong passphrase.
    let wrong = RouterConfig {
        key: Key::from_passphrase(b"wrong"),
        protocol: carp::Protocol::Carp,
        ..ours.clone()
    };
    feed(
        &mut n,
        t0 + std::time::Duration::from_millis(1100),
        advert_from(&wrong, 1, 0, 6),
    );
    let r = &n.status()[0].counters.rejected;
    assert_eq!(r.get(&RejectReason::AddressMismatch), Some(&1), "{r:?}");
    assert_eq!(r.get(&RejectReason::BadHmac), Some(&1), "{r:?}");
    assert_eq!(RejectReason::AddressMismatch.as_str(), "address_mismatch");
}

#[test]
fn an_advert_for_our_vhid_on_another_interface_is_dropped_as_unknown() {
    // vhid 7 lives on interface 1 (lan). The same vhid, with a valid HMAC, arriving on
    // interface 2 (say the WAN, where an attacker replays a captured lan advert) must not
    // touch the lan router: a vhid is only ever known on the interface that carries it.
    let t0 = Instant::now();
    let c = cfg(7, 100, true);
    let mut n = node(t0, &c);
    let md = n.poll_timeout().expect("timer").0;
    n.handle_timeout(md);
    assert_eq!(n.state(IF, vhid(7)), Some(State::Master));
    drain(&mut n);
    n.handle(
        md,
        Input::Advert {
            iface: IF + 1,
            src: ip("198.51.100.66"),
            dst: "224.0.0.18".parse().expect("group"),
            ttl: 255,
            payload: advert_from(&c, 1, 0, 99),
        },
    );
    assert_eq!(n.state(IF, vhid(7)), Some(State::Master), "stepped down");
    assert_eq!(n.node_rejected().get(&RejectReason::UnknownVhid), Some(&1));
    let s = &n.status()[0];
    assert_eq!(s.counters.adverts_received, 0);
    assert_eq!(s.last_master, None);
    assert!(matches!(
        drain(&mut n).as_slice(),
        [Action::Rejected {
            iface: 2,
            reason: RejectReason::UnknownVhid,
            ..
        }]
    ));
}
