//! Fuzzing under proptest, in every `cargo test`: random bytes into the decoders, the sealer
//! and the engine (raw, and sealed with the right key so that they reach the record parsers
//! and the stream logic), tampered datagrams, random local events; and arbitrary conns through
//! the codec. The checks live in tests/support/fuzz_checks.rs; fuzz/ runs the same checks under
//! libFuzzer.

#[path = "support/fuzz_checks.rs"]
mod fuzz_checks;

use fuzz_checks::*;
use proptest::prelude::*;
use statesync::model::{Conn, PortProto, SeqAdj, TcpInfo, TcpState, Tuple, L4};
use statesync::wire::{self, Record, Records};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

fn l4() -> impl Strategy<Value = L4> {
    let proto = prop_oneof![
        Just(PortProto::Tcp),
        Just(PortProto::Udp),
        Just(PortProto::UdpLite),
        Just(PortProto::Sctp),
        Just(PortProto::Dccp),
        Just(PortProto::Gre),
    ];
    prop_oneof![
        (proto, any::<u16>(), any::<u16>()).prop_map(|(proto, src, dst)| L4::Ports {
            proto,
            src,
            dst
        }),
        (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(icmp_type, code, id)| L4::Icmp {
            icmp_type,
            code,
            id
        }),
        (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(icmp_type, code, id)| L4::Icmpv6 {
            icmp_type,
            code,
            id
        }),
        any::<u8>().prop_map(L4::Other),
    ]
}

fn tuple() -> impl Strategy<Value = Tuple> {
    (addr(), addr(), l4()).prop_map(|(src, dst, l4)| Tuple { src, dst, l4 })
}

fn seq_adj() -> impl Strategy<Value = SeqAdj> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c)| SeqAdj {
        correction_pos: a,
        offset_before: b,
        offset_after: c,
    })
}

prop_compose! {
    fn conn()(
        orig in tuple(),
        nat in proptest::option::of(tuple()),
        status in any::<u32>(),
        timeout in proptest::option::of(any::<u32>()),
        mark in any::<u32>(),
        zone in any::<u16>(),
        tcp in proptest::option::of((any::<u8>(), any::<[u8; 4]>())),
        adj in (proptest::option::of(seq_adj()), proptest::option::of(seq_adj())),
        helper in proptest::option::of("[a-z0-9-]{0,32}"),
        labels in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=32)),
        master in proptest::option::of(tuple()),
    ) -> Conn {
        let mut c = Conn::new(orig, nat.unwrap_or_else(|| orig.inverted()));
        c.status = status;
        c.timeout = timeout;
        c.mark = mark;
        c.zone = zone;
        c.tcp = tcp.map(|(s, f)| TcpInfo {
            state: TcpState::from_number(s),
            wscale_orig: f[0],
            wscale_reply: f[1],
            flags_orig: f[2],
            flags_reply: f[3],
        });
        c.seq_adj_orig = adj.0;
        c.seq_adj_reply = adj.1;
        c.helper = helper;
        c.labels = labels;
        c.master = master;
        c
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn decode_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
        check_decode(&data);
    }

    #[test]
    fn open_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
        check_open(&data);
    }

    /// Random bytes behind a valid-looking header and random record streams.
    #[test]
    fn decode_record_soup(recs in proptest::collection::vec(
        (0u8..0x18, proptest::collection::vec(any::<u8>(), 0..80)), 0..20)
    ) {
        let mut data = Vec::new();
        for (ty, body) in recs {
            data.push(ty);
            data.extend_from_slice(&(body.len() as u16).to_be_bytes());
            data.extend_from_slice(&body);
        }
        check_decode(&data);
    }

    #[test]
    fn conns_round_trip(c in conn()) {
        for ty in [wire::rtype::INSERT, wire::rtype::UPDATE, wire::rtype::BULK_STATE] {
            let mut out = Vec::new();
            wire::emit_conn_record(&mut out, ty, &c, c.timeout)
                .unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(out.len(), wire::conn_record_len(&c, c.timeout.is_some()));
            prop_assert!(out.len() <= wire::MAX_RECORD_LEN);
            let back: Vec<_> = Records::new(&out).collect();
            let want = match ty {
                wire::rtype::INSERT => Record::Insert(c.clone()),
                wire::rtype::UPDATE => Record::Update(c.clone()),
                _ => Record::BulkState(c.clone()),
            };
            prop_assert_eq!(back, vec![Ok(want)]);
            check_decode(&out);
        }
        let mut out = Vec::new();
        wire::emit_delete(&mut out, &c.key()).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(out.len(), wire::delete_record_len(&c.key()));
        prop_assert_eq!(Records::new(&out).collect::<Vec<_>>(), vec![Ok(Record::Delete(c.key()))]);
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn engine_rejects_random_datagrams(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8)
    ) {
        let mut pair = Pair::new();
        for d in &datagrams {
            check_engine_raw(&mut pair, d);
        }
    }

    /// Authentic datagrams with random bodies, and with random record soups (so that the
    /// record parsers and the stream, bulk and repair logic all see garbage).
    #[test]
    fn engine_survives_sealed_garbage(
        bodies in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 1..10),
        soups in proptest::collection::vec(
            (any::<bool>(), 0u64..40, proptest::collection::vec(
                (0u8..0x18, proptest::collection::vec(any::<u8>(), 0..60)), 0..10)), 0..10),
    ) {
        let mut pair = Pair::new();
        for (stream, body) in &bodies {
            check_engine_sealed(&mut pair, *stream, body);
        }
        for (stream, seq, recs) in soups {
            let mut body = Vec::new();
            if stream {
                body.extend_from_slice(&seq.to_be_bytes());
            }
            for (ty, b) in recs {
                body.push(ty);
                body.extend_from_slice(&(b.len() as u16).to_be_bytes());
                body.extend_from_slice(&b);
            }
            check_engine_sealed(&mut pair, stream, &body);
        }
    }

    /// Well-formed records with extreme numbers (seqs near u64::MAX, huge ranges, our own
    /// and foreign targets), sealed: no overflow, no panic.
    #[test]
    fn engine_survives_extreme_records(
        recs in proptest::collection::vec((0u8..11, any::<u64>(), any::<u64>(), 0u32..4, any::<bool>()), 1..20)
    ) {
        let mut pair = Pair::new();
        let edge = |v: u64, sel: u64| match sel % 4 {
            0 => v,
            1 => u64::MAX - (v % 3),
            2 => v % 5,
            _ => 0xe2,
        };
        for (kind, x, y, target, stream) in recs {
            let target = statesync::NodeId(target);
            let a = edge(x, y);
            let b = edge(y, x);
            let rec = match kind {
                0 => Record::Heartbeat { last_stream: a, ready: stream, states: b as u32 },
                1 => Record::Nack { target, epoch: b, first: a, last: b },
                2 => Record::Gone { target, epoch: 0xe2, first_available: a },
                3 => Record::BulkRequest { target, request: a as u32, own_only: stream },
                4 => Record::Probe { target, nonce: a },
                5 => Record::ProbeReply { target, nonce: a, last_stream: b },
                6 => Record::BulkStart { requester: target, request: a as u32 },
                7 => Record::BulkEnd { requester: target, request: a as u32, count: b },
                8 => Record::Barrier { nonce: a, last_stream: b, handover_to: target },
                9 => Record::BarrierAck { target, nonce: a },
                _ => Record::Clear,
            };
            let mut body = Vec::new();
            if stream || rec.is_state() {
                body.extend_from_slice(&a.to_be_bytes());
            }
            let _ = rec.emit(&mut body);
            check_engine_sealed(&mut pair, stream || rec.is_state(), &body);
            pair.now += std::time::Duration::from_millis(60);
            pair.a.handle_timeout(pair.now);
            while pair.a.poll_action().is_some() {}
        }
    }

    #[test]
    fn engine_rejects_tampered(body in proptest::collection::vec(any::<u8>(), 0..100), bit in any::<usize>()) {
        let mut pair = Pair::new();
        check_engine_tampered(&mut pair, &body, bit);
    }

    /// Valid records with random conns, sealed: the engine installs what it is told.
    #[test]
    fn engine_applies_random_conns(conns in proptest::collection::vec(conn(), 1..30), kinds in proptest::collection::vec(any::<u8>(), 1..30)) {
        let mut pair = Pair::new();
        // The peer's stream seq 1 carried its (empty) bulk answer during the handshake.
        let mut body = 2u64.to_be_bytes().to_vec();
        for c in &conns {
            let _ = Record::Update(c.clone()).emit(&mut body);
        }
        check_engine_sealed(&mut pair, true, &body);
        let table: Vec<_> = pair.a.conns().map(|c| c.key()).collect();
        for c in &conns {
            prop_assert!(table.contains(&c.key()));
        }
        check_local(&mut pair, conns, &kinds);
    }
}
