//! Unit tests of the record codec. Byte vectors are in tests/vectors.rs, random and damaged
//! input in tests/fuzz.rs (proptest) and fuzz/ (libFuzzer).

use super::*;
use crate::model::{status, tcp_flags, Conn, PortProto, TcpInfo, TcpState, Tuple, L4};
use std::net::{IpAddr, Ipv4Addr};

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn tcp_conn() -> Conn {
    let orig = Tuple {
        src: v4("192.0.2.10"),
        dst: v4("198.51.100.20"),
        l4: L4::Ports {
            proto: PortProto::Tcp,
            src: 40000,
            dst: 80,
        },
    };
    let mut c = Conn::without_nat(orig);
    c.status = status::ASSURED | status::SEEN_REPLY | status::CONFIRMED;
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

#[test]
fn conn_len_matches_encoding() {
    let mut c = tcp_conn();
    let mut out = Vec::new();
    emit_conn_record(&mut out, rtype::UPDATE, &c, c.timeout).unwrap_or_default();
    assert_eq!(out.len(), conn_record_len(&c, true));
    c.helper = Some("ftp".into());
    c.mark = 5;
    c.master = Some(c.orig);
    c.reply.dst = v4("198.51.100.1");
    out.clear();
    emit_conn_record(&mut out, rtype::UPDATE, &c, None).unwrap_or_default();
    assert_eq!(out.len(), conn_record_len(&c, false));
}

#[test]
fn records_iterate_and_skip_unknown() {
    let mut out = Vec::new();
    Record::Clear.emit(&mut out).unwrap_or_default();
    out.extend_from_slice(&[0x7f, 0, 2, 9, 9]);
    Record::Delete(tcp_conn().key())
        .emit(&mut out)
        .unwrap_or_default();
    let recs: Vec<_> = Records::new(&out).collect();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0], Ok(Record::Clear));
    assert_eq!(recs[1], Ok(Record::Unknown { ty: 0x7f }));
    assert_eq!(recs[2], Ok(Record::Delete(tcp_conn().key())));
}

#[test]
fn truncated_record_ends_iteration() {
    let mut out = Vec::new();
    Record::Update(tcp_conn())
        .emit(&mut out)
        .unwrap_or_default();
    out.truncate(out.len() - 1);
    let recs: Vec<_> = Records::new(&out).collect();
    assert_eq!(recs, vec![Err(DecodeError::Truncated)]);
}
