//! The checks behind the fuzz targets (crates/carp/fuzz) and the proptest stand-in that runs
//! them in `cargo test` (tests/sim_fuzz.rs). Both include this file, so they check the same.

#![allow(dead_code)]

use carp::vrrp::{self, VrrpAdvert};
use carp::wire::{self, Advert, ADVERT_LEN, AUTHLEN};
use carp::{
    Advbase, Authenticator, Carp, Centisecs, DemoteSource, Family, Input, Key, Protocol,
    RouterConfig, Skew, State, Vhid,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Decoding arbitrary bytes never panics; what decodes re-encodes to the same header.
pub fn check_decode(data: &[u8]) {
    let Ok(a) = wire::decode(data) else {
        return;
    };
    assert!(data.len() >= ADVERT_LEN);
    let enc = wire::encode(&a);
    assert_eq!(
        wire::decode(&enc).as_ref(),
        Ok(&a),
        "decode(encode(a)) != a"
    );
    let head = &data[..ADVERT_LEN];
    if wire::internet_checksum(head) == 0 && head[3] == AUTHLEN {
        // A 36-byte header with a valid checksum of its own comes back byte for byte.
        assert_eq!(&enc[..], head, "encode(decode(x)) != x[..36]");
    } else {
        // decode ignores authlen (as ucarp does) and a checksum that only trailing bytes
        // made valid; every other byte comes back.
        let differs: Vec<usize> = (0..ADVERT_LEN).filter(|&i| enc[i] != head[i]).collect();
        assert!(
            differs.iter().all(|i| [3, 6, 7].contains(i)),
            "re-encoding changed bytes {differs:?}"
        );
    }
}

/// VRRP: the first byte picks the source and destination (IPv4 or IPv6, multicast or
/// unicast, or mixed families); decoding the rest never panics, and what decodes re-encodes
/// to the same bytes, but for the reserved bits (ignored on receive) and a checksum of
/// 0xffff where encode writes its one's-complement twin 0x0000.
pub fn check_vrrp_decode(data: &[u8]) {
    let Some((sel, payload)) = data.split_first() else {
        return;
    };
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let v6 = |a, b| IpAddr::V6(Ipv6Addr::new(a, 0, 0, 0, 0, 0, 0, b));
    let (src, dst) = match sel % 5 {
        0 => (v4(192, 0, 2, 1), v4(224, 0, 0, 18)),
        1 => (v4(192, 0, 2, 1), v4(192, 0, 2, 2)),
        2 => (v6(0xfe80, 1), v6(0xff02, 0x12)),
        3 => (v6(0xfe80, 1), v6(0x2001, 2)),
        _ => (v4(192, 0, 2, 1), v6(0xff02, 0x12)),
    };
    let Ok(a) = vrrp::decode(payload, src, dst) else {
        return;
    };
    let enc = vrrp::encode(&a, src, dst);
    assert_eq!(enc.len(), payload.len(), "re-encoded length");
    assert_eq!(
        vrrp::decode(&enc, src, dst).as_ref(),
        Ok(&a),
        "decode(encode(a)) != a"
    );
    let differs: Vec<usize> = (0..enc.len()).filter(|&i| enc[i] != payload[i]).collect();
    if payload[4] & 0xf0 == 0 {
        assert!(
            differs.is_empty()
                || (differs.iter().all(|i| [6, 7].contains(i)) && payload[6..8] == [0xff, 0xff]),
            "encode(decode(x)) != x: bytes {differs:?}"
        );
    } else {
        assert!(
            differs.iter().all(|i| [4, 6, 7].contains(i)),
            "re-encoding changed bytes {differs:?}"
        );
        assert_eq!(enc[4] & 0x0f, payload[4] & 0x0f, "interval bits");
    }
}

const PASS: &[u8] = b"s3cret";

fn vhid(v: u8) -> Vhid {
    Vhid::new(v).unwrap_or_else(|| unreachable!("nonzero literal"))
}

fn routers() -> Vec<RouterConfig> {
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    vec![
        RouterConfig {
            iface: 1,
            vhid: vhid(7),
            advbase: Advbase(1),
            advskew: Skew(100),
            preempt: true,
            addresses: vec![v4, v6],
            key: Key::from_passphrase(PASS),
            protocol: carp::Protocol::Carp,
            peers: Vec::new(),
        },
        RouterConfig {
            iface: 2,
            vhid: vhid(8),
            advbase: Advbase(2),
            advskew: Skew(0),
            preempt: false,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100))],
            key: Key::from_passphrase(PASS),
            protocol: carp::Protocol::Carp,
            peers: Vec::new(),
        },
        RouterConfig {
            iface: 2,
            vhid: vhid(9),
            advbase: Advbase(1),
            advskew: Skew(50),
            preempt: true,
            addresses: vec![
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 101)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
            ],
            key: Key::from_passphrase(PASS),
            protocol: Protocol::Vrrp {
                interval: Centisecs::new(5).unwrap_or_else(|| unreachable!("valid literal")),
            },
            peers: Vec::new(),
        },
    ]
}

/// Reads fuzz bytes as a little program; every read past the end yields 0.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.byte()))
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs a node with two routers through inputs decoded from `data`: raw adverts (any bytes,
/// any TTL, any source), validly signed adverts with fuzzed timing and counters, link
/// changes, demotions, send results, shutdown, router re-adds and time passing. Never
/// panics, never leaves a timer in the past, never holds state it cannot explain.
pub fn check_engine(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = Cursor(data);
    let mut carp = Carp::new(c.u64());
    let own = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    carp.set_local_address(1, own);
    let own2 = [
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
    ];
    for a in own2 {
        carp.set_local_address(2, a);
    }
    let cfgs = routers();
    for r in &cfgs {
        carp.add_router(now, r.clone());
    }
    let peers = [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
        own,
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 3)),
    ];
    let mut held = std::collections::BTreeSet::new();
    let mut steps = 0;
    while !c.done() && steps < 256 {
        steps += 1;
        let op = c.byte();
        let iface = u32::from(c.byte() % 3);
        match op % 12 {
            10 | 11 => {
                // A VRRP advert for the VRRP router (or a CARP one, or a stranger), with
                // fuzzed priority, interval and addresses, maybe with a byte flipped.
                let r = &cfgs[usize::from(c.byte()) % cfgs.len()];
                let Some(v) = Vhid::new(if c.byte() < 200 {
                    r.vhid.get()
                } else {
                    c.byte()
                }) else {
                    continue;
                };
                let src = peers[usize::from(c.byte()) % peers.len()];
                let mut addresses: Vec<IpAddr> = r.addresses.clone();
                if c.byte() < 32 {
                    addresses.pop();
                }
                let a = VrrpAdvert {
                    vrid: v,
                    priority: c.byte(),
                    max_adver_int: Centisecs::new(u16::from(c.byte()) % 300 + 1)
                        .unwrap_or_else(|| unreachable!("1..=300")),
                    addresses,
                };
                let dst = vrrp::group_for(src);
                let mut payload = vrrp::encode(&a, src, dst);
                if c.byte() < 16 {
                    let at = usize::from(c.byte()) % payload.len();
                    payload[at] ^= c.byte();
                }
                let ttl = if c.byte() < 240 { 255 } else { c.byte() };
                carp.handle(
                    now,
                    Input::Advert {
                        iface: r.iface,
                        src,
                        dst,
                        ttl,
                        payload,
                    },
                );
            }
            0 | 1 => {
                let len = usize::from(c.byte());
                let payload = c.bytes(len);
                let ttl = if c.byte() & 1 == 0 { 255 } else { c.byte() };
                let src = peers[usize::from(c.byte()) % peers.len()];
                carp.handle(
                    now,
                    Input::Advert {
                        iface,
                        src,
                        dst: "224.0.0.18".parse().expect("group"),
                        ttl,
                        payload,
                    },
                );
            }
            2 | 3 => {
                // A correctly signed advert for one of our vhids (or a stranger's).
                let r = &cfgs[usize::from(c.byte() & 1)];
                let v = match c.byte() {
                    0 => 0,
                    b if b < 16 => b,
                    _ => r.vhid.get(),
                };
                let Some(v) = Vhid::new(v) else {
                    continue;
                };
                let counter = c.u64();
                let auth = Authenticator::new(r.key.clone(), v, &r.addresses);
                let advert = Advert {
                    vhid: v,
                    advbase: Advbase(c.byte()),
                    advskew: Skew(c.byte()),
                    demote: if c.byte() < 32 { c.byte() } else { 0 },
                    counter,
                    hmac: auth.sign(counter),
                };
                let mut payload = wire::encode(&advert).to_vec();
                if c.byte() < 16 {
                    let at = usize::from(c.byte()) % payload.len();
                    payload[at] ^= c.byte();
                }
                let src = peers[usize::from(c.byte()) % peers.len()];
                carp.handle(
                    now,
                    Input::Advert {
                        iface: r.iface,
                        src,
                        dst: "224.0.0.18".parse().expect("group"),
                        ttl: 255,
                        payload,
                    },
                );
            }
            4 => {
                let up = c.byte() & 1 == 0;
                carp.handle(now, Input::Link { iface, up });
            }
            5 => {
                let source = match c.byte() % 5 {
                    0 => DemoteSource::Operator,
                    1 => DemoteSource::StateSync,
                    2 => DemoteSource::ConfigSync,
                    3 => DemoteSource::LinkDown(iface),
                    _ => DemoteSource::SendErrors(iface, vhid(7)),
                };
                let value = c.byte();
                carp.handle(now, Input::Demote { source, value });
            }
            6 => {
                let v = vhid(c.byte().max(1));
                let ok = c.byte() & 1 == 0;
                carp.handle(now, Input::SendResult { iface, vhid: v, ok });
            }
            7 => {
                let b = c.byte();
                if b < 8 {
                    carp.handle(now, Input::Shutdown);
                } else if b < 32 {
                    carp.handle(now, Input::HandOver);
                } else {
                    let r = cfgs[usize::from(c.byte()) % cfgs.len()].clone();
                    carp.add_router(now, r);
                }
            }
            _ => {
                // Time passes: up to ~16 s, or straight to the next deadline.
                let step = u64::from(c.byte()) * 64 + u64::from(c.byte());
                now += match carp.poll_timeout() {
                    Some((t, _)) if step % 2 == 0 => t.saturating_duration_since(now),
                    _ => Duration::from_millis(step),
                };
            }
        }
        if let Some((t, _)) = carp.poll_timeout() {
            if t <= now {
                carp.handle_timeout(now);
                if let Some((t2, kind)) = carp.poll_timeout() {
                    assert!(t2 > now, "{kind:?} timer still due after handle_timeout");
                }
            }
        }
        while let Some(a) = carp.poll_action() {
            match a {
                carp::Action::AddAddresses { iface, vhid } => {
                    held.insert((iface, vhid));
                }
                carp::Action::RemoveAddresses { iface, vhid } => {
                    held.remove(&(iface, vhid));
                }
                carp::Action::Send {
                    payload,
                    iface,
                    family,
                    ..
                } if payload.first().map(|b| b >> 4) == Some(vrrp::VERSION) => {
                    let src = match (iface, family) {
                        (1, Family::V4) => own,
                        (2, Family::V4) => own2[0],
                        (2, Family::V6) => own2[1],
                        (_, Family::V4) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        (_, Family::V6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    };
                    let a = vrrp::decode(&payload, src, vrrp::group_for(src));
                    assert!(a.is_ok(), "the engine sent a VRRP advert it cannot decode");
                }
                carp::Action::Send { payload, .. } => {
                    let a = wire::decode(&payload);
                    assert!(a.is_ok(), "the engine sent an advert it cannot decode");
                }
                _ => {}
            }
        }
        for s in carp.status() {
            assert_eq!(
                held.contains(&(s.iface, s.vhid)),
                s.state == State::Master,
                "vhid {} is {} but its addresses are held: {}",
                s.vhid,
                s.state,
                held.contains(&(s.iface, s.vhid))
            );
            assert!(s.advertised_skew >= s.advskew, "demotion lowered the skew");
            match s.protocol {
                Protocol::Vrrp { .. } => {
                    assert!(
                        matches!(s.priority, Some(1..=254)),
                        "priority {:?}",
                        s.priority
                    )
                }
                Protocol::Carp => assert_eq!(s.priority, None),
            }
        }
    }
}
