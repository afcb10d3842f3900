//! Byte-exact wire vectors: header, every record type, and one sealed datagram computed
//! independently (tests/vectors/seal_vector.py: Python's hmac/hashlib for HKDF, a hand-written
//! HChaCha20 checked against the XChaCha draft's vector, and `cryptography`'s
//! ChaCha20-Poly1305).

use statesync::model::{status, tcp_flags, Conn, ConnKey, PortProto, TcpInfo, TcpState, Tuple, L4};
use statesync::wire::{self, Header, Kind, NodeId, Record, Records};
use statesync::{SealKey, Sealer};
use std::net::IpAddr;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn tcp_tuple() -> Tuple {
    Tuple {
        src: ip("192.0.2.10"),
        dst: ip("198.51.100.20"),
        l4: L4::Ports {
            proto: PortProto::Tcp,
            src: 40000,
            dst: 80,
        },
    }
}

fn established() -> Conn {
    let mut c = Conn::without_nat(tcp_tuple());
    c.status = status::SEEN_REPLY | status::ASSURED | status::CONFIRMED;
    c.timeout = Some(432_000);
    c.tcp = Some(TcpInfo {
        state: TcpState::Established,
        wscale_orig: 7,
        wscale_reply: 7,
        flags_orig: tcp_flags::WINDOW_SCALE | tcp_flags::SACK_PERM,
        flags_reply: tcp_flags::WINDOW_SCALE | tcp_flags::SACK_PERM,
    });
    c
}

fn snat_ftp() -> Conn {
    let mut c = Conn::new(
        tcp_tuple(),
        Tuple {
            src: ip("198.51.100.20"),
            dst: ip("198.51.100.1"),
            l4: L4::Ports {
                proto: PortProto::Tcp,
                src: 80,
                dst: 1025,
            },
        },
    );
    c.status = status::SRC_NAT
        | status::SRC_NAT_DONE
        | status::ASSURED
        | status::SEEN_REPLY
        | status::CONFIRMED;
    c.timeout = Some(120);
    c.mark = 7;
    c.zone = 3;
    c.helper = Some("ftp".into());
    c
}

fn ping6() -> Conn {
    let mut c = Conn::without_nat(Tuple {
        src: ip("2001:db8::1"),
        dst: ip("2001:db8:1::2"),
        l4: L4::Icmpv6 {
            icmp_type: 128,
            code: 0,
            id: 0x1234,
        },
    });
    c.status = status::CONFIRMED;
    c.timeout = Some(30);
    c
}

fn check(record: Record, want: &str) {
    let want = hex(want);
    let mut out = Vec::new();
    record
        .emit(&mut out)
        .unwrap_or_else(|e| panic!("{record:?}: {e}"));
    assert_eq!(out, want, "emit {record:?}");
    let parsed: Vec<_> = Records::new(&want).collect();
    assert_eq!(parsed, vec![Ok(record)]);
}

#[test]
fn header() {
    let h = Header {
        kind: Kind::Stream,
        key_id: 0x0102_0304,
        node: NodeId(7),
        epoch: 0x1122_3344_5566_7788,
        seq: 42,
    };
    let want = hex("5453 01 01 01020304 00000007 1122334455667788 000000000000002a");
    assert_eq!(h.to_bytes().to_vec(), want);
    let mut d = want.clone();
    d.extend_from_slice(&[0; 16]);
    assert_eq!(Header::decode(&d), Ok(h));
}

#[test]
fn state_records() {
    // Insert, no NAT (reply tuple omitted), TCP info.
    check(
        Record::Insert(established()),
        "01 001d  0012
         00 c000020a c6336414 06 9c40 0050
         0000000e  00069780  03 07 07 03 03",
    );
    // Update under source NAT with port change, mark, zone and helper; no TCP info.
    check(
        Record::Update(snat_ftp()),
        "02 0030  008f
         00 c000020a c6336414 06 9c40 0050
         00 c6336414 c6336401 06 0050 0401
         0000009e  00000078  00000007  0003  03 667470",
    );
    // A bulk state: ICMPv6 echo, IPv6 tuple.
    check(
        Record::BulkState(ping6()),
        "06 002f  0002
         23 20010db8000000000000000000000001 20010db8000100000000000000000002 80 00 1234
         00000008  0000001e",
    );
    check(
        Record::Delete(ConnKey {
            orig: tcp_tuple(),
            zone: 3,
        }),
        "03 0010 0003 00 c000020a c6336414 06 9c40 0050",
    );
    check(Record::Clear, "04 0000");
    check(
        Record::BulkStart {
            requester: NodeId(2),
            request: 0xdead_beef,
        },
        "05 0008 00000002 deadbeef",
    );
    check(
        Record::BulkEnd {
            requester: NodeId(2),
            request: 0xdead_beef,
            count: 100_000,
        },
        "07 0010 00000002 deadbeef 00000000000186a0",
    );
}

#[test]
fn control_records() {
    check(
        Record::Heartbeat {
            last_stream: 5,
            ready: true,
            states: 100,
        },
        "10 000d 0000000000000005 01 00000064",
    );
    check(
        Record::Nack {
            target: NodeId(2),
            epoch: 0xaabb,
            first: 3,
            last: 9,
        },
        "11 001c 00000002 000000000000aabb 0000000000000003 0000000000000009",
    );
    check(
        Record::Gone {
            target: NodeId(2),
            epoch: 0xaabb,
            first_available: 17,
        },
        "12 0014 00000002 000000000000aabb 0000000000000011",
    );
    check(
        Record::BulkRequest {
            target: NodeId(0),
            request: 0xdead_beef,
            own_only: true,
        },
        "13 0009 00000000 deadbeef 01",
    );
    check(
        Record::Probe {
            target: NodeId(1),
            nonce: 0x0102_0304_0506_0708,
        },
        "14 000c 00000001 0102030405060708",
    );
    check(
        Record::ProbeReply {
            target: NodeId(1),
            nonce: 0x0102_0304_0506_0708,
            last_stream: 9,
        },
        "15 0014 00000001 0102030405060708 0000000000000009",
    );
    check(
        Record::Barrier {
            nonce: 0x0102_0304_0506_0708,
            last_stream: 9,
            handover_to: NodeId(3),
        },
        "16 0014 0102030405060708 0000000000000009 00000003",
    );
    check(
        Record::BarrierAck {
            target: NodeId(1),
            nonce: 0x0102_0304_0506_0708,
        },
        "17 000c 00000001 0102030405060708",
    );
}

#[test]
fn non_canonical_and_unknown() {
    // A reply tuple sent although it is the inverted original: rejected (not canonical).
    let bad = hex("01 0026 0003
         00 c000020a c6336414 06 9c40 0050
         00 c6336414 c000020a 06 0050 9c40
         0000000e 00069780");
    assert!(matches!(
        Records::new(&bad).next(),
        Some(Err(wire::DecodeError::Malformed { ty: 1, .. }))
    ));
    // Zero mark flagged present; unknown conn flag; port protocol that has no ports.
    for body in [
        "01 0018 0004 00 c000020a c6336414 06 9c40 0050 00000000 00000000",
        "01 0014 8000 00 c000020a c6336414 06 9c40 0050 00000000",
        "01 0014 0000 00 c000020a c6336414 01 9c40 0050 00000000",
    ] {
        let b = hex(body);
        assert!(
            matches!(Records::new(&b).next(), Some(Err(_))),
            "{body} accepted"
        );
    }
    // An unknown record type is skipped by its length; the next record still parses.
    let b = hex("7e 0003 010203 04 0000");
    let recs: Vec<_> = Records::new(&b).collect();
    assert_eq!(
        recs,
        vec![Ok(Record::Unknown { ty: 0x7e }), Ok(Record::Clear)]
    );
}

#[test]
fn sealed_datagram_matches_independent_implementation() {
    let key =
        SealKey::from_secret(b"correct horse battery staple").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        key,
        SealKey::from_hex("ce5407e055629860f1c5bbf712f3ca9404c612fd3bd88671ebff82733529cb66")
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let sealer = Sealer::new(&key);
    assert_eq!(sealer.key_id(), 0x6284_d9a2);
    let h = Header {
        kind: Kind::Control,
        key_id: sealer.key_id(),
        node: NodeId(7),
        epoch: 0x1122_3344_5566_7788,
        seq: 42,
    };
    let mut body = Vec::new();
    let hb = Record::Heartbeat {
        last_stream: 5,
        ready: true,
        states: 100,
    };
    hb.emit(&mut body).unwrap_or_else(|e| panic!("{e}"));
    let d = sealer.seal_datagram(&h, &body);
    assert_eq!(
        d,
        hex("545301026284d9a2000000071122334455667788000000000000002a
             331c23648ca13b06c69f1c695ec2731b979f1ef27715b365a5d04a6c8a67e878")
    );
    let (h2, plain) = sealer.open_datagram(&d).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h2, h);
    assert_eq!(Records::new(&plain).collect::<Vec<_>>(), vec![Ok(hb)]);
}
