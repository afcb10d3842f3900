//! Checks shared by tests/fuzz.rs (proptest, every `cargo test`) and the cargo-fuzz targets in
//! fuzz/ (longer runs with libFuzzer).

#![allow(dead_code)]

use statesync::model::{Conn, ConnKey};
use statesync::wire::{self, Header, Kind, NodeId, Record, Records};
use statesync::{Action, Config, Input, LocalEvent, Replicator, SealKey, Sealer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub fn key() -> SealKey {
    SealKey::from_bytes([0x33; 32])
}

/// Arbitrary bytes as a header and as a record stream: no panic, and what decodes
/// re-encodes to exactly the same bytes (the encoding is canonical).
pub fn check_decode(data: &[u8]) {
    let _ = Header::decode(data);
    let _ = wire::split_stream(data);
    let mut reencoded = Vec::new();
    let mut exact = true;
    for r in Records::new(data) {
        match r {
            Ok(Record::Unknown { .. }) | Err(_) => exact = false,
            Ok(rec) => {
                let mut one = Vec::new();
                rec.emit(&mut one)
                    .unwrap_or_else(|e| panic!("{rec:?} decoded but does not encode: {e}"));
                let back: Vec<_> = Records::new(&one).collect();
                assert_eq!(back, vec![Ok(rec)]);
                reencoded.extend_from_slice(&one);
            }
        }
    }
    if exact {
        assert_eq!(reencoded, data, "decode → encode changed the bytes");
    }
}

/// Arbitrary bytes never open (and never panic).
pub fn check_open(data: &[u8]) {
    let s = Sealer::new(&key());
    assert!(s.open_datagram(data).is_err(), "random bytes authenticated");
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, i)), 4567)
}

/// Two replicators that have shaken hands: `a` trusts `b`'s epoch.
pub struct Pair {
    pub now: Instant,
    pub a: Replicator,
    pub b_epoch: u64,
    pub b_seq: u64,
    pub sealer: Sealer,
}

impl Pair {
    pub fn new() -> Pair {
        let now = Instant::now();
        let cfg = |n: u32| {
            let mut c = Config::new(NodeId(n), 0xe0 + u64::from(n), key());
            c.dump_interval = None;
            c
        };
        let mut a = Replicator::new(now, cfg(1), 1).unwrap_or_else(|e| panic!("{e}"));
        let mut b = Replicator::new(now, cfg(2), 2).unwrap_or_else(|e| panic!("{e}"));
        let mut t = now;
        for _ in 0..20 {
            let mut to_b = Vec::new();
            while let Some(x) = a.poll_action() {
                if let Action::Send { bytes, .. } = x {
                    to_b.push(bytes);
                }
            }
            let mut to_a = Vec::new();
            while let Some(x) = b.poll_action() {
                if let Action::Send { bytes, .. } = x {
                    to_a.push(bytes);
                }
            }
            for d in to_b {
                b.handle_datagram(t, addr(1), &d);
            }
            for d in to_a {
                a.handle_datagram(t, addr(2), &d);
            }
            t += Duration::from_millis(1);
            a.handle_timeout(t);
            b.handle_timeout(t);
        }
        assert!(a.is_ready(), "handshake did not complete");
        while a.poll_action().is_some() {}
        Pair {
            now: t,
            a,
            b_epoch: 0xe2,
            // Well past anything b sent during the handshake.
            b_seq: 1_000,
            sealer: Sealer::new(&key()),
        }
    }

    /// A datagram sealed as b would seal it.
    pub fn sealed_by_b(&mut self, kind: Kind, body: &[u8]) -> Vec<u8> {
        self.b_seq += 1;
        let h = Header {
            kind,
            key_id: self.sealer.key_id(),
            node: NodeId(2),
            epoch: self.b_epoch,
            seq: self.b_seq,
        };
        self.sealer.seal_datagram(&h, body)
    }

    pub fn deliver(&mut self, d: &[u8]) -> Vec<Action> {
        self.now += Duration::from_micros(100);
        self.a.handle_datagram(self.now, addr(2), d);
        let mut out = Vec::new();
        while let Some(x) = self.a.poll_action() {
            out.push(x);
        }
        if self.a.poll_timeout().is_some_and(|(t, _)| t <= self.now) {
            self.a.handle_timeout(self.now);
            while let Some(x) = self.a.poll_action() {
                out.push(x);
            }
        }
        out
    }

    pub fn table(&self) -> Vec<Conn> {
        self.a.conns().cloned().collect()
    }
}

impl Default for Pair {
    fn default() -> Self {
        Pair::new()
    }
}

fn changes_kernel(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Install(_) | Action::Remove(_)))
}

/// Arbitrary bytes as a datagram from the peer: rejected, nothing changes.
pub fn check_engine_raw(pair: &mut Pair, data: &[u8]) {
    let before = pair.table();
    let actions = pair.deliver(data);
    assert!(
        !changes_kernel(&actions),
        "unauthenticated bytes changed the kernel"
    );
    assert_eq!(pair.table(), before);
}

/// Arbitrary bytes as the body of an authentic datagram (stream or control): no panic, and
/// the table stays what the actions say.
pub fn check_engine_sealed(pair: &mut Pair, stream: bool, data: &[u8]) {
    let kind = if stream { Kind::Stream } else { Kind::Control };
    let d = pair.sealed_by_b(kind, data);
    let mut table: std::collections::BTreeMap<ConnKey, Conn> =
        pair.table().into_iter().map(|c| (c.key(), c)).collect();
    for a in pair.deliver(&d) {
        match a {
            Action::Install(cs) => {
                for c in cs {
                    table.insert(c.key(), c);
                }
            }
            Action::Remove(ks) => {
                for k in ks {
                    table.remove(&k);
                }
            }
            _ => {}
        }
    }
    let now: Vec<ConnKey> = pair.a.conns().map(|c| c.key()).collect();
    let want: Vec<ConnKey> = table.keys().copied().collect();
    assert_eq!(now, want, "the engine's table and its actions disagree");
}

/// A valid datagram with one bit flipped: rejected, nothing changes.
pub fn check_engine_tampered(pair: &mut Pair, body: &[u8], bit: usize) {
    let mut d = pair.sealed_by_b(Kind::Control, body);
    let bit = bit % (d.len() * 8);
    d[bit / 8] ^= 1 << (bit % 8);
    let before = pair.table();
    let actions = pair.deliver(&d);
    assert!(
        !changes_kernel(&actions),
        "a tampered datagram changed the kernel"
    );
    assert_eq!(pair.table(), before);
}

/// Local events never panic (whatever the conns look like).
pub fn check_local(pair: &mut Pair, conns: Vec<Conn>, kinds: &[u8]) {
    for (c, k) in conns.into_iter().zip(kinds.iter().cycle()) {
        let ev = match k % 3 {
            0 => LocalEvent::New(c),
            1 => LocalEvent::Update(c),
            _ => LocalEvent::Destroy(c),
        };
        pair.a.handle(pair.now, Input::Local(ev));
        while pair.a.poll_action().is_some() {}
    }
    pair.now += Duration::from_millis(30);
    pair.a.handle_timeout(pair.now);
    while pair.a.poll_action().is_some() {}
}
