//! Codec unit tests: byte-exact against what `conntrack -I` (conntrack-tools 1.4.7,
//! libnetfilter_conntrack) sends, round trips, decode errors. Random and damaged input is in
//! tests/fuzz.rs (proptest) and fuzz/ (libFuzzer).

use crate::model::{
    status, tcp_flags, Conn, ConnKey, PortProto, SeqAdj, TcpInfo, TcpState, Tuple, L4,
};
use crate::msg::{self, BuildOpts, Message, MsgBuf};
use std::net::IpAddr;

const OPTS: BuildOpts = BuildOpts {
    tcp_be_liberal: true,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn ports(proto: PortProto, src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        l4: L4::Ports {
            proto,
            src: sport,
            dst: dport,
        },
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Zeroes what legitimately differs between two senders: the sequence number and the padding
/// after attributes (libmnl leaves it uninitialised).
fn normalize(mut m: Vec<u8>) -> Vec<u8> {
    fn attrs(b: &mut [u8]) {
        let mut off = 0;
        while off + 4 <= b.len() {
            let len = u16::from_ne_bytes([b[off], b[off + 1]]) as usize;
            let ty = u16::from_ne_bytes([b[off + 2], b[off + 3]]);
            if len < 4 || off + len > b.len() {
                return;
            }
            if ty & 0x8000 != 0 {
                attrs(&mut b[off + 4..off + len]);
            }
            let end = (off + msg::align4(len)).min(b.len());
            for x in &mut b[off + len..end] {
                *x = 0;
            }
            off = end;
        }
    }
    m[8..12].fill(0);
    attrs(&mut m[20..]);
    m
}

fn build_create(c: &Conn) -> Vec<u8> {
    let mut b = MsgBuf::default();
    msg::build_create(&mut b, c, 1, msg::NLM_F_ACK, OPTS).expect("encodes");
    b.buf
}

fn assert_same(ours: Vec<u8>, theirs: &str) {
    let (ours, theirs) = (normalize(ours), normalize(hex(theirs)));
    let h = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(h(&ours), h(&theirs));
}

/// `conntrack -I -s 192.0.2.10 -d 198.51.100.20 -p tcp --sport 40000 --dport 80
///  --state ESTABLISHED -t 120 -u ASSURED --mark 7`
#[test]
fn create_tcp_matches_conntrack_tool() {
    let mut c = Conn::without_nat(ports(
        PortProto::Tcp,
        "192.0.2.10",
        40000,
        "198.51.100.20",
        80,
    ));
    c.status = status::ASSURED;
    c.timeout = Some(120);
    c.mark = 7;
    c.tcp = Some(TcpInfo {
        state: TcpState::Established,
        wscale_orig: 0,
        wscale_reply: 0,
        flags_orig: tcp_flags::SACK_PERM,
        flags_reply: tcp_flags::SACK_PERM,
    });
    assert_same(
        build_create(&c),
        "b4000000000105064a8c0b6b0000000002000000340001801400018008000100c000020a08000200
         c63364141c0002800500010006000000060002009c40000006000300005000003400028014000180
         08000100c633641408000200c000020a1c0002800500010006100000060002000050000006000300
         9c400000080003000000000c08000700000000780800080000000007200004801c00018005000100
         03100000060004000a0a0000060005000a0a0000",
    );
}

/// `conntrack -I -s 192.0.2.11 -d 198.51.100.20 -p udp --sport 5000 --dport 53 -t 30
///  --src-nat 198.51.100.1:1025 --zone 3 -u SEEN_REPLY`
#[test]
fn create_udp_snat_zone_matches_conntrack_tool() {
    let mut c = Conn::new(
        ports(PortProto::Udp, "192.0.2.11", 5000, "198.51.100.20", 53),
        ports(PortProto::Udp, "198.51.100.20", 53, "198.51.100.1", 1025),
    );
    c.status = status::SEEN_REPLY | status::SRC_NAT | status::SRC_NAT_DONE;
    c.timeout = Some(30);
    c.zone = 3;
    assert_same(
        build_create(&c),
        "b4000000000105064a8c0b6b0000000002000000
         340001801400018008000100c000020b08000200c63364141c000280050001001100000006000200
         138800000600030000350000
         340002801400018008000100c633641408000200c000020b1c000280050001001110000006000200
         003500000600030013880000
         080003000000000a080007000000001e
         2000068008000100c633640114000380060001000401000006000200040100000600120000030000",
    );
}

/// `conntrack -I -s 2001:db8:1::20 -d 2001:db8::1 -p tcp --sport 50000 --dport 8080
///  --state SYN_SENT -t 60 --dst-nat [2001:db8::50]:80`
#[test]
fn create_ipv6_dnat_matches_conntrack_tool() {
    let mut c = Conn::new(
        ports(PortProto::Tcp, "2001:db8:1::20", 50000, "2001:db8::1", 8080),
        ports(PortProto::Tcp, "2001:db8::50", 80, "2001:db8:1::20", 50000),
    );
    c.timeout = Some(60);
    c.tcp = Some(TcpInfo {
        state: TcpState::SynSent,
        wscale_orig: 0,
        wscale_reply: 0,
        flags_orig: tcp_flags::SACK_PERM,
        flags_reply: tcp_flags::SACK_PERM,
    });
    assert_same(
        build_create(&c),
        "00010000000105064a8c0b6b000000000a000000
         4c0001802c0001801400030020010db80001000000000000000000201400040020010db800000000
         00000000000000011c000280050001000600000006000200c3500000060003001f900000
         4c0002802c0001801400030020010db80000000000000000000000011400040020010db800010000
         00000000000000201c0002800500010006720000060002001f90000006000300c3500000
         080007000000003c
         200004801c0001800500010001900000060004000a0a0000060005000a0a0000
         2c000d801400040020010db800000000000000000000005014000380060001000050000006000200
         00500000",
    );
}

/// `conntrack -I -s 192.0.2.12 -d 198.51.100.20 -p icmp --icmp-type 8 --icmp-code 0
///  --icmp-id 77 -t 30 -u SEEN_REPLY`
#[test]
fn create_icmp_matches_conntrack_tool() {
    let mut c = Conn::without_nat(Tuple {
        src: ip("192.0.2.12"),
        dst: ip("198.51.100.20"),
        l4: L4::Icmp {
            icmp_type: 8,
            code: 0,
            id: 77,
        },
    });
    c.status = status::SEEN_REPLY;
    c.timeout = Some(30);
    assert_same(
        build_create(&c),
        "9c000000000105064a8c0b6b00000000020000003c0001801400018008000100c000020c08000200
         c63364142400028005000100010000000500060000000000050005000800000006000400004d0000
         3c0002801400018008000100c633641408000200c000020c24000280050001000120000005000600
         00000000050005000060000006000400004d0000080003000000000a080007000000001e",
    );
}

/// `conntrack -I -s 192.0.2.13 -d 198.51.100.20 -p tcp --sport 40001 --dport 80
///  --state ESTABLISHED -t 120 -u SEEN_REPLY,ASSURED --src-nat 198.51.100.1:1030
///  --dst-nat 198.51.100.30:8080`
#[test]
fn create_snat_and_dnat_matches_conntrack_tool() {
    let mut c = Conn::new(
        ports(PortProto::Tcp, "192.0.2.13", 40001, "198.51.100.20", 80),
        ports(PortProto::Tcp, "198.51.100.30", 8080, "198.51.100.1", 1030),
    );
    c.status = status::SEEN_REPLY | status::ASSURED | status::CONFIRMED | status::NAT_MASK;
    c.timeout = Some(120);
    c.tcp = Some(TcpInfo {
        state: TcpState::Established,
        wscale_orig: 0,
        wscale_reply: 0,
        flags_orig: tcp_flags::SACK_PERM,
        flags_reply: tcp_flags::SACK_PERM,
    });
    assert_same(
        build_create(&c),
        "ec00000000010506738c0b6b0000000002000000
         340001801400018008000100c000020d08000200c63364141c000280050001000600000006000200
         9c4100000600030000500000
         340002801400018008000100c633641408000200c000020d1c000280050001000610000006000200
         00500000060003009c410000
         080003000000000e0800070000000078
         200004801c0001800500010003720000060004000a0a0000060005000a0a0000
         2000068008000100c6336401140003800600010004060000060002000406000020000d8008000100
         c633641e14000380060001001f900000060002001f900000",
    );
}

/// Every field a create carries comes back from the parser (the kernel dumps the same
/// attributes).
#[test]
fn create_round_trips_through_the_parser() {
    let orig = ports(PortProto::Tcp, "192.0.2.10", 40000, "198.51.100.20", 80);
    let mut c = Conn::without_nat(orig);
    c.status = status::SEEN_REPLY | status::ASSURED;
    c.timeout = Some(431_999);
    c.mark = 0xdead_beef;
    c.zone = 7;
    c.tcp = Some(TcpInfo {
        state: TcpState::Established,
        wscale_orig: 7,
        wscale_reply: 9,
        flags_orig: tcp_flags::WINDOW_SCALE | tcp_flags::SACK_PERM,
        flags_reply: tcp_flags::WINDOW_SCALE,
    });
    c.seq_adj_orig = Some(SeqAdj {
        correction_pos: 1,
        offset_before: 2,
        offset_after: 3,
    });
    c.seq_adj_reply = Some(SeqAdj {
        correction_pos: 4,
        offset_before: 5,
        offset_after: 0xffff_fffe,
    });
    c.helper = Some("ftp".into());
    c.labels = Some(vec![1, 0, 0, 0, 0, 0, 0, 0x80]);
    c.master = Some(ports(
        PortProto::Tcp,
        "192.0.2.10",
        39999,
        "198.51.100.20",
        21,
    ));
    let m = build_create(&c);
    let mut got = Vec::new();
    msg::parse_datagram(&m, |x| got.push(x)).expect("parses");
    let [Message::Conn { conn, msg, .. }] = &got[..] else {
        panic!("one conntrack message expected, got {got:?}");
    };
    assert_eq!(*msg, msg::IPCTNL_MSG_CT_NEW);
    let mut want = c.clone();
    want.status |= status::CONFIRMED;
    let t = want.tcp.as_mut().expect("tcp");
    t.flags_orig |= tcp_flags::BE_LIBERAL;
    t.flags_reply |= tcp_flags::BE_LIBERAL;
    assert_eq!(**conn, want);
}

#[test]
fn nat_create_sends_the_untranslated_reply() {
    let orig = ports(PortProto::Udp, "192.0.2.11", 5000, "198.51.100.20", 53);
    let mut c = Conn::new(
        orig,
        ports(PortProto::Udp, "198.51.100.20", 53, "198.51.100.1", 1025),
    );
    c.timeout = Some(30);
    let m = build_create(&c);
    let conn = msg::decode_conn(&m[16..]).expect("decodes");
    assert_eq!(conn.reply, orig.inverted());
}

#[test]
fn update_and_delete_messages() {
    let orig = ports(PortProto::Tcp, "192.0.2.10", 40000, "198.51.100.20", 80);
    let mut c = Conn::without_nat(orig);
    c.status = status::ASSURED | status::EXPECTED | status::DYING;
    c.timeout = Some(5);
    c.mark = 0;
    c.tcp = Some(TcpInfo {
        state: TcpState::TimeWait,
        wscale_orig: 0,
        wscale_reply: 0,
        flags_orig: 0,
        flags_reply: 0,
    });
    let mut b = MsgBuf::default();
    msg::build_update(&mut b, &c, 9, 0, true, OPTS).expect("encodes");
    // NLM_F_REQUEST only: no CREATE, so the kernel never makes a new entry from an update.
    assert_eq!(u16::from_ne_bytes([b.buf[6], b.buf[7]]), msg::NLM_F_REQUEST);
    let got = msg::decode_conn_request(&b.buf[16..]).expect("decodes");
    assert_eq!(got.timeout, Some(5));
    assert_eq!(
        got.status,
        Some(status::ASSURED | status::EXPECTED | status::CONFIRMED)
    );
    assert_eq!(
        got.mark,
        Some(0),
        "mark always sent, so it can go back to 0"
    );
    assert_eq!(got.tcp_masks, Some((0xff, 0xff)));
    assert_eq!(
        got.tcp_flags,
        Some((tcp_flags::BE_LIBERAL, tcp_flags::BE_LIBERAL))
    );

    b.clear();
    msg::build_update(&mut b, &c, 9, 0, false, OPTS).expect("encodes");
    assert_eq!(
        msg::decode_conn_request(&b.buf[16..])
            .expect("decodes")
            .status,
        None
    );

    b.clear();
    let key = ConnKey { orig, zone: 4 };
    msg::build_delete(&mut b, &key, 10, 0).expect("encodes");
    assert_eq!(b.buf[5], 1, "NFNL_SUBSYS_CTNETLINK");
    assert_eq!(b.buf[4], msg::IPCTNL_MSG_CT_DELETE);
    let conn = msg::decode_key(&b.buf[16..]).expect("decodes");
    assert_eq!(conn, key);
}

#[test]
fn encode_refuses_what_the_kernel_would() {
    let orig = ports(PortProto::Tcp, "192.0.2.10", 40000, "198.51.100.20", 80);
    let mut b = MsgBuf::default();
    let c = Conn::without_nat(orig);
    assert_eq!(
        msg::build_create(&mut b, &c, 1, 0, OPTS),
        Err(msg::EncodeError::NoTimeout)
    );
    let mut c = Conn::new(
        orig,
        ports(PortProto::Udp, "198.51.100.20", 80, "192.0.2.10", 40000),
    );
    c.timeout = Some(1);
    assert!(matches!(
        msg::build_create(&mut b, &c, 1, 0, OPTS),
        Err(msg::EncodeError::ProtocolMismatch { orig: 6, reply: 17 })
    ));
    let mut c = Conn::new(
        orig,
        ports(PortProto::Tcp, "2001:db8::1", 80, "192.0.2.10", 40000),
    );
    c.timeout = Some(1);
    assert_eq!(
        msg::build_create(&mut b, &c, 1, 0, OPTS),
        Err(msg::EncodeError::MixedFamilies)
    );
    assert!(b.buf.is_empty(), "nothing half-built left behind");
}

#[test]
fn unknown_attributes_are_skipped() {
    let mut c = Conn::without_nat(ports(PortProto::Udp, "192.0.2.1", 1, "192.0.2.2", 2));
    c.timeout = Some(10);
    let mut m = build_create(&c);
    // Append CTA_COUNTERS_ORIG-like nested junk, a type the model does not know (99), and
    // CTA_USE.
    m.extend_from_slice(&[8, 0, 99, 0, 1, 2, 3, 4]);
    m.extend_from_slice(&[8, 0, 11, 0, 0, 0, 0, 1]);
    m.extend_from_slice(&[12, 0, 0x09, 0x80, 8, 0, 1, 0, 0, 0, 0, 5]);
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    let got = msg::decode_conn(&m[16..]).expect("decodes");
    assert_eq!(got.orig, c.orig);
    assert_eq!(got.timeout, Some(10));
}

#[test]
fn decode_errors_name_the_attribute() {
    let mut c = Conn::without_nat(ports(PortProto::Udp, "192.0.2.1", 1, "192.0.2.2", 2));
    c.timeout = Some(10);
    let mut m = build_create(&c);
    // ORIG/IP/V4_SRC is at 20 (ORIG) + 4 (IP) + 4: shrink its length from 8 to 6.
    assert_eq!(&m[28..32], &[8, 0, 1, 0]);
    m[28] = 6;
    let e = msg::decode_conn(&m[16..]).expect_err("must fail");
    assert_eq!(e.attr, "CTA_TUPLE_ORIG/CTA_TUPLE_IP/CTA_IP_V4_SRC");
    assert_eq!(e.problem, msg::DecodeProblem::TooShort { len: 2, need: 4 });

    // No reply tuple at all.
    let mut m = build_create(&c);
    let orig_len = u16::from_ne_bytes([m[20], m[21]]) as usize;
    m.truncate(20 + orig_len);
    let e = msg::decode_conn(&m[16..]).expect_err("must fail");
    assert_eq!(e.attr, "CTA_TUPLE_REPLY");
    assert_eq!(e.problem, msg::DecodeProblem::Missing);

    // An attribute length running past the message.
    let mut m = build_create(&c);
    m[20] = 0xff;
    let e = msg::decode_conn(&m[16..]).expect_err("must fail");
    assert_eq!(e.attr, "conntrack attributes");
    assert!(matches!(e.problem, msg::DecodeProblem::BadLength { .. }));
}

#[test]
fn errors_and_acks_with_extended_ack_text() {
    // nlmsghdr(ERROR, flags CAPPED|ACK_TLVS) + error -17 + capped original header (seq 77)
    // + NLMSGERR_ATTR_MSG "exists".
    let mut m = Vec::new();
    let body_len = 4 + 16 + 12;
    m.extend_from_slice(&((16 + body_len) as u32).to_ne_bytes());
    m.extend_from_slice(&msg::NLMSG_ERROR.to_ne_bytes());
    m.extend_from_slice(&(msg::NLM_F_CAPPED | msg::NLM_F_ACK_TLVS).to_ne_bytes());
    m.extend_from_slice(&77u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&(-17i32).to_ne_bytes());
    m.extend_from_slice(&200u32.to_ne_bytes());
    m.extend_from_slice(&0x0100u16.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&77u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[11, 0, 1, 0, b'e', b'x', b'i', b's', b't', b's', 0, 0]);
    let mut got = Vec::new();
    msg::parse_datagram(&m, |x| got.push(x)).expect("parses");
    match &got[..] {
        [Message::Error {
            seq: 77,
            errno: 17,
            message: Some(s),
        }] => assert_eq!(s, "exists"),
        other => panic!("unexpected {other:?}"),
    }
}

/// Found by the libFuzzer target: an error field of i32::MIN overflowed the negation.
#[test]
fn error_of_i32_min_does_not_overflow() {
    for body_len in [4usize, 4 + 16] {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body_len) as u32).to_ne_bytes());
        m.extend_from_slice(&msg::NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&5u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&i32::MIN.to_ne_bytes());
        m.resize(16 + body_len, 0);
        let mut got = Vec::new();
        msg::parse_datagram(&m, |x| got.push(x)).expect("parses");
        assert!(
            matches!(
                got[..],
                [Message::Error {
                    seq: 5,
                    errno: i32::MAX,
                    ..
                }]
            ),
            "{got:?}"
        );
    }
}
