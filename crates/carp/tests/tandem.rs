//! Authenticated CARP (`auth = "tandem"`) against an on-link attacker without the passphrase,
//! next to BSD mode, whose known weaknesses these tests also pin (they are why the mode exists).
//!
//! BSD CARP's HMAC-SHA1 covers version, type, vhid, the addresses and the counter: not advskew,
//! advbase or demote, and no receiver checks the counter. So an attacker who captured one
//! advert can send it again, or with a lower skew, and it verifies. In tandem mode the MAC
//! covers the whole advert and its source address, and the counter must grow per sender.

use carp::wire::{self, Advert};
use carp::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const IF: IfaceId = 1;
const ME: &str = "192.0.2.2";
const PEER: &str = "192.0.2.3";
const PASS: &[u8] = b"a passphrase for tandem mode";
/// 2023-11-14T22:13:20Z as the daemon would pass it: seconds in the high half.
const CLOCK: u64 = 1_700_000_000 << 32;
const SEC32: u64 = 1 << 32;

fn vhid(v: u8) -> Vhid {
    Vhid::new(v).expect("nonzero")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

fn cfg(mode: AuthMode, skew: u8) -> RouterConfig {
    RouterConfig {
        iface: IF,
        vhid: vhid(7),
        advbase: Advbase(1),
        advskew: Skew(skew),
        preempt: true,
        addresses: vec![ip("192.0.2.100")],
        key: Key::new(mode, PASS),
        protocol: carp::Protocol::Carp,
        peers: Vec::new(),
    }
}

fn drain(c: &mut Carp) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

fn engine(t0: Instant, me: &str, c: &RouterConfig, clock: u64) -> Carp {
    let mut n = Carp::new(1);
    n.set_local_address(IF, ip(me));
    n.set_counter_clock(clock);
    n.add_router(t0, c.clone());
    n
}

/// Runs a lone node until it is master; returns the time.
fn make_master(n: &mut Carp) -> Instant {
    let md = n.poll_timeout().expect("timer").0;
    n.handle_timeout(md);
    assert_eq!(n.state(IF, vhid(7)), Some(State::Master));
    md
}

fn sent(acts: &[Action]) -> Vec<Vec<u8>> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

/// `count` consecutive adverts of a master with skew `skew` at PEER, as an attacker on the
/// link captures them (tcpdump; the bytes after the IP header).
fn capture(mode: AuthMode, skew: u8, clock: u64, count: usize) -> Vec<Vec<u8>> {
    let t0 = Instant::now();
    let mut p = engine(t0, PEER, &cfg(mode, skew), clock);
    make_master(&mut p);
    let mut out = sent(&drain(&mut p));
    while out.len() < count {
        let now = p.poll_timeout().expect("advert timer").0;
        p.handle_timeout(now);
        out.extend(sent(&drain(&mut p)));
    }
    out.truncate(count);
    out
}

fn feed(n: &mut Carp, now: Instant, src: &str, payload: Vec<u8>) {
    n.handle(
        now,
        Input::Advert {
            iface: IF,
            src: ip(src),
            dst: "224.0.0.18".parse().expect("group"),
            ttl: 255,
            payload,
        },
    );
}

/// The same advert with some header fields changed (checksum recomputed, MAC kept).
fn tamper(payload: &[u8], f: impl FnOnce(&mut Advert)) -> Vec<u8> {
    let mut a = wire::decode(payload).expect("captured advert decodes");
    f(&mut a);
    wire::encode(&a).to_vec()
}

fn rejected(n: &Carp, reason: RejectReason) -> u64 {
    n.status()[0]
        .counters
        .rejected
        .get(&reason)
        .copied()
        .unwrap_or(0)
}

#[test]
fn modified_skew_takes_the_master_role_in_bsd_mode_but_not_in_tandem_mode() {
    for mode in [AuthMode::Bsd, AuthMode::Tandem] {
        let t0 = Instant::now();
        // The victim is master with skew 50; the peer (skew 100) is a worse node whose advert
        // the attacker captured and rewrites to skew 0.
        let mut v = engine(t0, ME, &cfg(mode, 50), CLOCK);
        let now = make_master(&mut v);
        drain(&mut v);
        let captured = capture(mode, 100, CLOCK, 1).remove(0);
        let forged = tamper(&captured, |a| a.advskew = Skew(0));
        feed(&mut v, now, PEER, forged);
        match mode {
            // The known BSD weakness: skew is not in the HMAC; the master steps down and
            // releases the VIP to nobody. (Interop with BSD CARP and ucarp needs this MAC.)
            AuthMode::Bsd => {
                assert_eq!(v.state(IF, vhid(7)), Some(State::Backup));
                assert!(drain(&mut v)
                    .iter()
                    .any(|a| matches!(a, Action::RemoveAddresses { .. })));
            }
            AuthMode::Tandem => {
                assert_eq!(v.state(IF, vhid(7)), Some(State::Master), "stepped down");
                assert_eq!(rejected(&v, RejectReason::BadHmac), 1);
                assert_eq!(v.status()[0].counters.adverts_received, 0);
            }
        }
    }
}

#[test]
fn every_header_field_is_covered_in_tandem_mode() {
    let t0 = Instant::now();
    let mut v = engine(t0, ME, &cfg(AuthMode::Tandem, 50), CLOCK);
    let now = make_master(&mut v);
    let captured = capture(AuthMode::Tandem, 100, CLOCK, 1).remove(0);
    let forgeries = [
        tamper(&captured, |a| a.advskew = Skew(0)),
        tamper(&captured, |a| a.demote = 0xff),
        tamper(&captured, |a| a.advbase = Advbase(0)),
        tamper(&captured, |a| a.counter += 1),
        {
            // authlen is not even read by the decoder: still covered.
            let mut b = captured.clone();
            b[3] = 6;
            b[6..8].copy_from_slice(&[0, 0]);
            let sum = wire::internet_checksum(&b);
            b[6..8].copy_from_slice(&sum.to_be_bytes());
            b
        },
    ];
    for f in forgeries {
        feed(&mut v, now, PEER, f);
    }
    assert_eq!(rejected(&v, RejectReason::BadHmac), 5);
    assert_eq!(v.state(IF, vhid(7)), Some(State::Master));
    // The untouched advert from its real source is accepted (and is worse: nothing moves).
    feed(&mut v, now, PEER, captured);
    assert_eq!(v.status()[0].counters.adverts_received, 1);
    assert_eq!(v.state(IF, vhid(7)), Some(State::Master));
}

#[test]
fn a_replayed_advert_is_rejected_in_tandem_mode() {
    let t0 = Instant::now();
    let mut v = engine(t0, ME, &cfg(AuthMode::Tandem, 100), CLOCK);
    let adverts = capture(AuthMode::Tandem, 0, CLOCK, 4);
    let mut now = t0;
    for a in &adverts[..3] {
        now += Duration::from_secs(1);
        feed(&mut v, now, PEER, a.clone());
    }
    assert_eq!(v.status()[0].counters.adverts_received, 3);
    // The same advert again, and an older one: replays.
    feed(&mut v, now, PEER, adverts[2].clone());
    feed(&mut v, now, PEER, adverts[0].clone());
    assert_eq!(rejected(&v, RejectReason::Replayed), 2);
    assert_eq!(RejectReason::Replayed.as_str(), "replayed");
    // The next one of the real sender is fine.
    feed(&mut v, now, PEER, adverts[3].clone());
    assert_eq!(v.status()[0].counters.adverts_received, 4);
    // Replayed from another source address, it does not verify at all (the source is in the
    // MAC, so a replay cannot dodge the per-source counter).
    feed(&mut v, now, "192.0.2.9", adverts[3].clone());
    assert_eq!(rejected(&v, RejectReason::BadHmac), 1);
}

#[test]
fn replaying_a_dead_masters_adverts_holds_a_bsd_backup_down_but_not_a_tandem_one() {
    for mode in [AuthMode::Bsd, AuthMode::Tandem] {
        let t0 = Instant::now();
        let mut v = engine(t0, ME, &cfg(mode, 100), CLOCK);
        let adverts = capture(mode, 0, CLOCK, 3);
        // The real master's adverts, heard as they were sent.
        let mut now = t0;
        for a in &adverts {
            now += Duration::from_secs(1);
            feed(&mut v, now, PEER, a.clone());
        }
        // The master dies. The attacker replays what it captured, one a second, for 10 s.
        for i in 0..10 {
            now += Duration::from_secs(1);
            feed(&mut v, now, PEER, adverts[i % adverts.len()].clone());
            while let Some((t, _)) = v.poll_timeout().filter(|(t, _)| *t <= now) {
                v.handle_timeout(t);
            }
        }
        match mode {
            // Known BSD weakness: every replay resets the master-down timer.
            AuthMode::Bsd => assert_eq!(v.state(IF, vhid(7)), Some(State::Backup)),
            AuthMode::Tandem => {
                assert_eq!(v.state(IF, vhid(7)), Some(State::Master), "held down");
                assert!(rejected(&v, RejectReason::Replayed) >= 3);
            }
        }
    }
}

#[test]
fn a_restarted_peer_starts_above_its_old_counter() {
    let t0 = Instant::now();
    let mut v = engine(t0, ME, &cfg(AuthMode::Tandem, 100), CLOCK);
    let mut now = t0;
    for a in capture(AuthMode::Tandem, 0, CLOCK, 5) {
        now += Duration::from_secs(1);
        feed(&mut v, now, PEER, a);
    }
    // The peer restarts 2 s later (its wall clock at start is the new high half): accepted.
    for a in capture(AuthMode::Tandem, 0, CLOCK + 2 * SEC32, 3) {
        now += Duration::from_secs(1);
        feed(&mut v, now, PEER, a);
    }
    assert_eq!(v.status()[0].counters.adverts_received, 8);
    assert_eq!(rejected(&v, RejectReason::Replayed), 0);
    assert_eq!(v.state(IF, vhid(7)), Some(State::Backup));
    // A peer whose clock went back across its restart is taken for a replay (documented).
    for a in capture(AuthMode::Tandem, 0, CLOCK - 10 * SEC32, 2) {
        feed(&mut v, now, PEER, a);
    }
    assert_eq!(rejected(&v, RejectReason::Replayed), 2);
}

#[test]
fn the_counter_is_the_start_clock_plus_one_per_advert_across_routers_and_reloads() {
    let t0 = Instant::now();
    let c = cfg(AuthMode::Tandem, 0);
    let mut p = engine(t0, PEER, &c, CLOCK + 0x8000_0000);
    let now = make_master(&mut p);
    let counters = |acts: &[Action]| -> Vec<u64> {
        sent(acts)
            .iter()
            .map(|b| wire::decode(b).expect("decodes").counter)
            .collect()
    };
    assert_eq!(counters(&drain(&mut p)), vec![CLOCK + 0x8000_0001]);
    // A reload re-adds the router: the bow-out and what follows keep counting up.
    p.add_router(now, c.clone());
    let after = counters(&drain(&mut p));
    assert_eq!(after, vec![CLOCK + 0x8000_0002]);
    make_master(&mut p);
    assert_eq!(counters(&drain(&mut p)), vec![CLOCK + 0x8000_0003]);
    // A later clock only ever raises the counter; an earlier one is ignored.
    p.set_counter_clock(CLOCK);
    let (t, _) = p.poll_timeout().expect("advert timer");
    p.handle_timeout(t);
    assert_eq!(counters(&drain(&mut p)), vec![CLOCK + 0x8000_0004]);
    assert_eq!(
        counter_clock(Duration::new(1_700_000_000, 500_000_000)),
        CLOCK + 0x8000_0000
    );
}

#[test]
fn dual_stack_adverts_are_signed_per_source() {
    let t0 = Instant::now();
    let mut c = cfg(AuthMode::Tandem, 0);
    c.addresses.push(ip("2001:db8::100"));
    let mut p = Carp::new(1);
    p.set_local_address(IF, ip(PEER));
    p.set_local_address(IF, ip("fe80::3"));
    p.set_counter_clock(CLOCK);
    p.add_router(t0, c.clone());
    make_master(&mut p);
    let acts = drain(&mut p);
    let sends: Vec<(Family, Vec<u8>)> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                family, payload, ..
            } => Some((*family, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 2);
    assert_ne!(sends[0].1, sends[1].1, "one MAC per source address");
    let mut v = engine(
        t0,
        ME,
        &RouterConfig {
            advskew: Skew(100),
            ..c
        },
        CLOCK,
    );
    for (family, payload) in sends {
        let src = if family == Family::V4 {
            PEER
        } else {
            "fe80::3"
        };
        feed(&mut v, t0, src, payload);
    }
    assert_eq!(v.status()[0].counters.adverts_received, 2);
    assert_eq!(v.status()[0].auth, AuthMode::Tandem);
}

#[test]
fn nodes_in_different_modes_say_so() {
    let t0 = Instant::now();
    for (ours, theirs) in [
        (AuthMode::Tandem, AuthMode::Bsd),
        (AuthMode::Bsd, AuthMode::Tandem),
    ] {
        let mut v = engine(t0, ME, &cfg(ours, 100), CLOCK);
        for a in capture(theirs, 0, CLOCK, 1) {
            feed(&mut v, t0, PEER, a);
        }
        assert_eq!(
            rejected(&v, RejectReason::AuthModeMismatch),
            1,
            "{ours} node hearing a {theirs} advert"
        );
        assert_eq!(
            RejectReason::AuthModeMismatch.as_str(),
            "auth_mode_mismatch"
        );
    }
}

#[test]
fn a_wrong_passphrase_is_bad_hmac_in_tandem_mode() {
    let t0 = Instant::now();
    let mut v = engine(t0, ME, &cfg(AuthMode::Tandem, 100), CLOCK);
    let mut other = cfg(AuthMode::Tandem, 0);
    other.key = Key::tandem(b"not the passphrase at all");
    let mut p = engine(t0, PEER, &other, CLOCK);
    make_master(&mut p);
    for a in sent(&drain(&mut p)) {
        feed(&mut v, t0, PEER, a);
    }
    assert_eq!(rejected(&v, RejectReason::BadHmac), 1);
}
