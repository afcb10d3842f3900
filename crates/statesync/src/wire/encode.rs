//! Encoding records: [`Record::emit`], the conn and delete records the engine writes directly
//! ([`emit_conn_record`], [`emit_delete`]) and their sizes without encoding
//! ([`conn_record_len`], [`delete_record_len`]). Integers are big-endian.

use super::error::EncodeError;
use super::record::{cflag, rtype, Record, L4_ICMP, L4_ICMPV6, L4_OTHER, L4_PORTS};
use super::{MAX_HELPER_LEN, MAX_LABELS_LEN, RECORD_HEADER_LEN};
use crate::model::{Conn, ConnKey, Tuple, L4};
use std::net::IpAddr;

impl Record {
    /// Appends the record (header included). Conn timeouts are written as they are.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Record::Insert(c) | Record::Update(c) | Record::BulkState(c) => {
                emit_conn_record(out, self.type_number(), c, c.timeout)
            }
            Record::Delete(k) => emit_delete(out, k),
            Record::Unknown { .. } => Err(EncodeError::TooLong("unknown record")),
            _ => {
                let start = begin_record(out, self.type_number());
                match *self {
                    Record::BulkStart { requester, request } => {
                        put32(out, requester.0);
                        put32(out, request);
                    }
                    Record::BulkEnd {
                        requester,
                        request,
                        count,
                    } => {
                        put32(out, requester.0);
                        put32(out, request);
                        put64(out, count);
                    }
                    Record::Heartbeat {
                        last_stream,
                        ready,
                        states,
                    } => {
                        put64(out, last_stream);
                        out.push(u8::from(ready));
                        put32(out, states);
                    }
                    Record::Nack {
                        target,
                        epoch,
                        first,
                        last,
                    } => {
                        put32(out, target.0);
                        put64(out, epoch);
                        put64(out, first);
                        put64(out, last);
                    }
                    Record::Gone {
                        target,
                        epoch,
                        first_available,
                    } => {
                        put32(out, target.0);
                        put64(out, epoch);
                        put64(out, first_available);
                    }
                    Record::BulkRequest {
                        target,
                        request,
                        own_only,
                    } => {
                        put32(out, target.0);
                        put32(out, request);
                        out.push(u8::from(own_only));
                    }
                    Record::Probe { target, nonce } => {
                        put32(out, target.0);
                        put64(out, nonce);
                    }
                    Record::ProbeReply {
                        target,
                        nonce,
                        last_stream,
                    } => {
                        put32(out, target.0);
                        put64(out, nonce);
                        put64(out, last_stream);
                    }
                    Record::Barrier {
                        nonce,
                        last_stream,
                        handover_to,
                    } => {
                        put64(out, nonce);
                        put64(out, last_stream);
                        put32(out, handover_to.0);
                    }
                    Record::BarrierAck { target, nonce } => {
                        put32(out, target.0);
                        put64(out, nonce);
                    }
                    _ => {}
                }
                end_record(out, start)
            }
        }
    }
}

/// Appends a conn record of type `ty` with `timeout` in place of the conn's own (the engine
/// sends the time left now, not what the kernel said when it reported the conn). The node-local
/// `id` is never sent.
pub fn emit_conn_record(
    out: &mut Vec<u8>,
    ty: u8,
    c: &Conn,
    timeout: Option<u32>,
) -> Result<(), EncodeError> {
    if c.helper.as_ref().is_some_and(|h| h.len() > MAX_HELPER_LEN) {
        return Err(EncodeError::TooLong("helper name"));
    }
    if c.labels.as_ref().is_some_and(|l| l.len() > MAX_LABELS_LEN) {
        return Err(EncodeError::TooLong("labels"));
    }
    let start = begin_record(out, ty);
    let reply_present = c.reply != c.orig.inverted();
    let mut flags = 0u16;
    let mut set = |cond: bool, bit: u16| {
        if cond {
            flags |= bit;
        }
    };
    set(reply_present, cflag::REPLY);
    set(timeout.is_some(), cflag::TIMEOUT);
    set(c.mark != 0, cflag::MARK);
    set(c.zone != 0, cflag::ZONE);
    set(c.tcp.is_some(), cflag::TCP);
    set(c.seq_adj_orig.is_some(), cflag::SEQ_ADJ_ORIG);
    set(c.seq_adj_reply.is_some(), cflag::SEQ_ADJ_REPLY);
    set(c.helper.is_some(), cflag::HELPER);
    set(c.labels.is_some(), cflag::LABELS);
    set(c.master.is_some(), cflag::MASTER);
    put16(out, flags);
    put_tuple(out, &c.orig);
    if reply_present {
        put_tuple(out, &c.reply);
    }
    put32(out, c.status);
    if let Some(t) = timeout {
        put32(out, t);
    }
    if c.mark != 0 {
        put32(out, c.mark);
    }
    if c.zone != 0 {
        put16(out, c.zone);
    }
    if let Some(t) = &c.tcp {
        out.extend_from_slice(&[
            t.state.number(),
            t.wscale_orig,
            t.wscale_reply,
            t.flags_orig,
            t.flags_reply,
        ]);
    }
    for s in [&c.seq_adj_orig, &c.seq_adj_reply].into_iter().flatten() {
        put32(out, s.correction_pos);
        put32(out, s.offset_before);
        put32(out, s.offset_after);
    }
    if let Some(h) = &c.helper {
        out.push(h.len() as u8);
        out.extend_from_slice(h.as_bytes());
    }
    if let Some(l) = &c.labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    if let Some(m) = &c.master {
        put_tuple(out, m);
    }
    end_record(out, start)
}

/// Appends a delete record: zone, then the original tuple.
pub fn emit_delete(out: &mut Vec<u8>, k: &ConnKey) -> Result<(), EncodeError> {
    let start = begin_record(out, rtype::DELETE);
    put16(out, k.zone);
    put_tuple(out, &k.orig);
    end_record(out, start)
}

fn tuple_len(t: &Tuple) -> usize {
    let a = |a: &IpAddr| if a.is_ipv6() { 16 } else { 4 };
    let l4 = match t.l4 {
        L4::Ports { .. } => 5,
        L4::Icmp { .. } | L4::Icmpv6 { .. } => 4,
        L4::Other(_) => 1,
    };
    1 + a(&t.src) + a(&t.dst) + l4
}

/// The encoded size of a conn record (header included), without encoding it.
pub fn conn_record_len(c: &Conn, with_timeout: bool) -> usize {
    let mut n = RECORD_HEADER_LEN + 2 + tuple_len(&c.orig) + 4;
    if c.reply != c.orig.inverted() {
        n += tuple_len(&c.reply);
    }
    n += if with_timeout { 4 } else { 0 };
    n += if c.mark != 0 { 4 } else { 0 };
    n += if c.zone != 0 { 2 } else { 0 };
    n += if c.tcp.is_some() { 5 } else { 0 };
    n += 12 * (usize::from(c.seq_adj_orig.is_some()) + usize::from(c.seq_adj_reply.is_some()));
    n += c.helper.as_ref().map_or(0, |h| 1 + h.len());
    n += c.labels.as_ref().map_or(0, |l| 1 + l.len());
    n += c.master.as_ref().map_or(0, tuple_len);
    n
}

/// The encoded size of a delete record.
pub fn delete_record_len(k: &ConnKey) -> usize {
    RECORD_HEADER_LEN + 2 + tuple_len(&k.orig)
}

fn begin_record(out: &mut Vec<u8>, ty: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[ty, 0, 0]);
    start
}

fn end_record(out: &mut Vec<u8>, start: usize) -> Result<(), EncodeError> {
    let body = out.len() - start - RECORD_HEADER_LEN;
    let Ok(len) = u16::try_from(body) else {
        out.truncate(start);
        return Err(EncodeError::TooLong("record"));
    };
    out[start + 1..start + 3].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_addr(out: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

/// Tuple: flags (bit 0 src is IPv6, bit 1 dst is IPv6, bits 4-5 the L4 kind), src, dst, L4.
fn put_tuple(out: &mut Vec<u8>, t: &Tuple) {
    let kind = match t.l4 {
        L4::Ports { .. } => L4_PORTS,
        L4::Icmp { .. } => L4_ICMP,
        L4::Icmpv6 { .. } => L4_ICMPV6,
        L4::Other(_) => L4_OTHER,
    };
    let flags = u8::from(t.src.is_ipv6()) | (u8::from(t.dst.is_ipv6()) << 1) | (kind << 4);
    out.push(flags);
    put_addr(out, &t.src);
    put_addr(out, &t.dst);
    match t.l4 {
        L4::Ports { proto, src, dst } => {
            out.push(proto.number());
            put16(out, src);
            put16(out, dst);
        }
        L4::Icmp {
            icmp_type,
            code,
            id,
        }
        | L4::Icmpv6 {
            icmp_type,
            code,
            id,
        } => {
            out.push(icmp_type);
            out.push(code);
            put16(out, id);
        }
        L4::Other(p) => out.push(p),
    }
}
