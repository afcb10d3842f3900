//! The replication wire protocol: one UDP datagram is a plaintext header, a sealed body and a
//! 16-byte Poly1305 tag (see [`crate::seal`]).
//!
//! ```text
//! header (28 bytes, authenticated as associated data, all integers big-endian)
//!   0  magic     2  "TS" (0x54 0x53)
//!   2  version   1  1
//!   3  kind      1  1 = stream (sequenced state records), 2 = control
//!   4  key id    4  names the pre-shared key (derived from it; wrong key = foreign cluster)
//!   8  node      4  sender node id (non-zero)
//!  12  epoch     8  sender's boot id (random per daemon start)
//!  20  seq       8  datagram sequence number within the epoch (1, 2, ...; nonce + replay)
//! body (encrypted)
//!   stream: stream seq u64, then records      control: records
//! tag  16
//! ```
//!
//! A record is `type u8, length u16, body[length]`. Unknown types are skipped by length (and
//! counted by the engine); a malformed body is skipped the same way. The encoding is canonical:
//! [`Record::parse`] accepts only what [`Record::emit`] produces, so decode → encode round-trips
//! byte for byte (the fuzz tests check this).
//!
//! Parsing follows smoltcp: [`Packet`] wraps a buffer after one length check and its accessors
//! cannot panic; [`Header`] and [`Record`] are the high-level representations.

use crate::model::{Conn, ConnKey, PortProto, SeqAdj, TcpInfo, TcpState, Tuple, L4};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const MAGIC: [u8; 2] = *b"TS";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 28;
pub const TAG_LEN: usize = 16;
/// Header plus tag: what every datagram carries besides its body.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The stream sequence number that starts a stream body.
pub const STREAM_SEQ_LEN: usize = 8;
/// Record header: type and length.
pub const RECORD_HEADER_LEN: usize = 3;
/// Longest helper name we send (the kernel's `NF_CT_HELPER_NAME_LEN` is 16).
pub const MAX_HELPER_LEN: usize = 32;
/// Longest label bitmap we send (the kernel's is 16 bytes).
pub const MAX_LABELS_LEN: usize = 32;
/// The largest record this module can produce (an IPv6 conn with every optional field).
pub const MAX_RECORD_LEN: usize = RECORD_HEADER_LEN
    + 2
    + 3 * MAX_TUPLE_LEN
    + 4 * 3
    + 2
    + 5
    + 24
    + 1
    + MAX_HELPER_LEN
    + 1
    + MAX_LABELS_LEN;
const MAX_TUPLE_LEN: usize = 1 + 32 + 5;

/// A node's id in the cluster (from its config; non-zero, unique per node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// What the header's kind byte says the body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Sequenced state records (insert, update, delete, clear, bulk); repaired when lost.
    Stream,
    /// Unsequenced control records (heartbeat, nack, bulk request, probe...).
    Control,
}

impl Kind {
    pub fn number(self) -> u8 {
        match self {
            Kind::Stream => 1,
            Kind::Control => 2,
        }
    }

    pub fn from_number(n: u8) -> Option<Kind> {
        match n {
            1 => Some(Kind::Stream),
            2 => Some(Kind::Control),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram too short: {0} bytes")]
    TooShort(usize),
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported version {0}")]
    BadVersion(u8),
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("record truncated")]
    Truncated,
    #[error("malformed record (type {ty}): {what}")]
    Malformed { ty: u8, what: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{0} too long to send")]
    TooLong(&'static str),
    #[error("no room left in the datagram")]
    Full,
}

/// A datagram buffer whose length has been checked to hold a header and a tag.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Packet<T>, DecodeError> {
        let len = buffer.as_ref().len();
        if len < OVERHEAD {
            return Err(DecodeError::TooShort(len));
        }
        Ok(Packet { buffer })
    }

    fn header(&self) -> &[u8; HEADER_LEN] {
        match self.buffer.as_ref().first_chunk::<HEADER_LEN>() {
            Some(h) => h,
            // new_checked guarantees the length; this arm is never taken.
            None => &[0; HEADER_LEN],
        }
    }

    pub fn magic(&self) -> [u8; 2] {
        let h = self.header();
        [h[0], h[1]]
    }
    pub fn version(&self) -> u8 {
        self.header()[2]
    }
    pub fn kind(&self) -> u8 {
        self.header()[3]
    }
    pub fn key_id(&self) -> u32 {
        be32(&self.header()[4..8])
    }
    pub fn node(&self) -> u32 {
        be32(&self.header()[8..12])
    }
    pub fn epoch(&self) -> u64 {
        be64(&self.header()[12..20])
    }
    pub fn seq(&self) -> u64 {
        be64(&self.header()[20..28])
    }
    /// The authenticated header bytes.
    pub fn header_bytes(&self) -> &[u8] {
        self.header()
    }
    /// The sealed body and tag.
    pub fn sealed(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

/// The datagram header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub kind: Kind,
    pub key_id: u32,
    pub node: NodeId,
    pub epoch: u64,
    pub seq: u64,
}

impl Header {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Header, DecodeError> {
        if p.magic() != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if p.version() != VERSION {
            return Err(DecodeError::BadVersion(p.version()));
        }
        let kind = Kind::from_number(p.kind()).ok_or(DecodeError::UnknownKind(p.kind()))?;
        Ok(Header {
            kind,
            key_id: p.key_id(),
            node: NodeId(p.node()),
            epoch: p.epoch(),
            seq: p.seq(),
        })
    }

    /// Parses the header of a whole datagram.
    pub fn decode(datagram: &[u8]) -> Result<Header, DecodeError> {
        Header::parse(&Packet::new_checked(datagram)?)
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[3] = self.kind.number();
        b[4..8].copy_from_slice(&self.key_id.to_be_bytes());
        b[8..12].copy_from_slice(&self.node.0.to_be_bytes());
        b[12..20].copy_from_slice(&self.epoch.to_be_bytes());
        b[20..28].copy_from_slice(&self.seq.to_be_bytes());
        b
    }
}

/// Record type numbers.
pub mod rtype {
    pub const INSERT: u8 = 0x01;
    pub const UPDATE: u8 = 0x02;
    pub const DELETE: u8 = 0x03;
    pub const CLEAR: u8 = 0x04;
    pub const BULK_START: u8 = 0x05;
    pub const BULK_STATE: u8 = 0x06;
    pub const BULK_END: u8 = 0x07;
    pub const HEARTBEAT: u8 = 0x10;
    pub const NACK: u8 = 0x11;
    pub const GONE: u8 = 0x12;
    pub const BULK_REQUEST: u8 = 0x13;
    pub const PROBE: u8 = 0x14;
    pub const PROBE_REPLY: u8 = 0x15;
}

/// One record. State records travel in stream datagrams, the others in control datagrams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Record {
    /// A connection the sender announces for the first time (full snapshot, timeout relative).
    Insert(Conn),
    /// A newer snapshot of a connection.
    Update(Conn),
    /// The connection is gone.
    Delete(ConnKey),
    /// Forget every connection the sender announced (its table was flushed).
    Clear,
    /// A bulk transfer for `requester`'s request begins.
    BulkStart { requester: NodeId, request: u32 },
    /// One connection of a bulk transfer.
    BulkState(Conn),
    /// The bulk transfer is complete: `count` bulk states were sent.
    BulkEnd {
        requester: NodeId,
        request: u32,
        count: u64,
    },
    /// Liveness: the sender's last stream seq (so a lost tail is noticed) and readiness.
    Heartbeat {
        last_stream: u64,
        ready: bool,
        states: u32,
    },
    /// Please retransmit stream seqs `first..=last` of `epoch`.
    Nack {
        target: NodeId,
        epoch: u64,
        first: u64,
        last: u64,
    },
    /// The stream seqs you asked for before `first_available` are no longer kept.
    Gone {
        target: NodeId,
        epoch: u64,
        first_available: u64,
    },
    /// Send me your table (`target` 0: whoever hears this): all of it, or with `own_only`
    /// only the conns you announced yourself (a resync after your stream broke).
    BulkRequest {
        target: NodeId,
        request: u32,
        own_only: bool,
    },
    /// Prove that your current epoch is live: echo `nonce`.
    Probe { target: NodeId, nonce: u64 },
    /// The echo, sealed in the replier's current epoch, with its last stream seq.
    ProbeReply {
        target: NodeId,
        nonce: u64,
        last_stream: u64,
    },
    /// A record type this version does not know (skipped).
    Unknown { ty: u8 },
}

impl Record {
    pub fn type_number(&self) -> u8 {
        use rtype::*;
        match self {
            Record::Insert(_) => INSERT,
            Record::Update(_) => UPDATE,
            Record::Delete(_) => DELETE,
            Record::Clear => CLEAR,
            Record::BulkStart { .. } => BULK_START,
            Record::BulkState(_) => BULK_STATE,
            Record::BulkEnd { .. } => BULK_END,
            Record::Heartbeat { .. } => HEARTBEAT,
            Record::Nack { .. } => NACK,
            Record::Gone { .. } => GONE,
            Record::BulkRequest { .. } => BULK_REQUEST,
            Record::Probe { .. } => PROBE,
            Record::ProbeReply { .. } => PROBE_REPLY,
            Record::Unknown { ty } => *ty,
        }
    }

    /// True for records that belong in stream datagrams.
    pub fn is_state(&self) -> bool {
        matches!(
            self,
            Record::Insert(_)
                | Record::Update(_)
                | Record::Delete(_)
                | Record::Clear
                | Record::BulkStart { .. }
                | Record::BulkState(_)
                | Record::BulkEnd { .. }
        )
    }

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
                    _ => {}
                }
                end_record(out, start)
            }
        }
    }

    /// Parses one record body of type `ty`.
    pub fn parse(ty: u8, body: &[u8]) -> Result<Record, DecodeError> {
        use rtype::*;
        let mut r = Reader { b: body, ty };
        let rec = match ty {
            INSERT => Record::Insert(r.conn()?),
            UPDATE => Record::Update(r.conn()?),
            BULK_STATE => Record::BulkState(r.conn()?),
            DELETE => {
                let zone = r.u16()?;
                let orig = r.tuple()?;
                Record::Delete(ConnKey { orig, zone })
            }
            CLEAR => Record::Clear,
            BULK_START => Record::BulkStart {
                requester: NodeId(r.u32()?),
                request: r.u32()?,
            },
            BULK_END => Record::BulkEnd {
                requester: NodeId(r.u32()?),
                request: r.u32()?,
                count: r.u64()?,
            },
            HEARTBEAT => Record::Heartbeat {
                last_stream: r.u64()?,
                ready: r.flag()?,
                states: r.u32()?,
            },
            NACK => Record::Nack {
                target: NodeId(r.u32()?),
                epoch: r.u64()?,
                first: r.u64()?,
                last: r.u64()?,
            },
            GONE => Record::Gone {
                target: NodeId(r.u32()?),
                epoch: r.u64()?,
                first_available: r.u64()?,
            },
            BULK_REQUEST => Record::BulkRequest {
                target: NodeId(r.u32()?),
                request: r.u32()?,
                own_only: r.flag()?,
            },
            PROBE => Record::Probe {
                target: NodeId(r.u32()?),
                nonce: r.u64()?,
            },
            PROBE_REPLY => Record::ProbeReply {
                target: NodeId(r.u32()?),
                nonce: r.u64()?,
                last_stream: r.u64()?,
            },
            ty => return Ok(Record::Unknown { ty }),
        };
        if !r.b.is_empty() {
            return Err(r.bad("trailing bytes"));
        }
        Ok(rec)
    }
}

/// Iterates over the records of a body. A record whose body is malformed yields an error and
/// iteration goes on with the next one; a record running past the end yields
/// [`DecodeError::Truncated`] and ends the iteration.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    pub fn new(body: &'a [u8]) -> Records<'a> {
        Records { rest: body }
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((hdr, rest)) = self.rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
            self.rest = &[];
            return Some(Err(DecodeError::Truncated));
        };
        let ty = hdr[0];
        let len = usize::from(u16::from_be_bytes([hdr[1], hdr[2]]));
        if rest.len() < len {
            self.rest = &[];
            return Some(Err(DecodeError::Truncated));
        }
        let (body, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Record::parse(ty, body))
    }
}

/// Splits a stream body into its stream seq and its records.
pub fn split_stream(body: &[u8]) -> Result<(u64, &[u8]), DecodeError> {
    match body.split_first_chunk::<STREAM_SEQ_LEN>() {
        Some((seq, rest)) => Ok((u64::from_be_bytes(*seq), rest)),
        None => Err(DecodeError::Truncated),
    }
}

// ---- emitting ----

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

const L4_PORTS: u8 = 0;
const L4_ICMP: u8 = 1;
const L4_ICMPV6: u8 = 2;
const L4_OTHER: u8 = 3;

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

/// Conn flags: which fields follow.
pub mod cflag {
    /// The reply tuple is present (absent: it is the inverted original, i.e. no NAT).
    pub const REPLY: u16 = 1 << 0;
    pub const TIMEOUT: u16 = 1 << 1;
    pub const MARK: u16 = 1 << 2;
    pub const ZONE: u16 = 1 << 3;
    pub const TCP: u16 = 1 << 4;
    pub const SEQ_ADJ_ORIG: u16 = 1 << 5;
    pub const SEQ_ADJ_REPLY: u16 = 1 << 6;
    pub const HELPER: u16 = 1 << 7;
    pub const LABELS: u16 = 1 << 8;
    pub const MASTER: u16 = 1 << 9;
    pub const ALL: u16 = (1 << 10) - 1;
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

// ---- parsing ----

struct Reader<'a> {
    b: &'a [u8],
    ty: u8,
}

impl<'a> Reader<'a> {
    fn bad(&self, what: &'static str) -> DecodeError {
        DecodeError::Malformed { ty: self.ty, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(self.bad("short"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        match self.b.split_first_chunk::<N>() {
            Some((h, t)) => {
                self.b = t;
                Ok(*h)
            }
            None => Err(self.bad("short")),
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad("flag")),
        }
    }

    fn addr(&mut self, v6: bool) -> Result<IpAddr, DecodeError> {
        Ok(if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))
        })
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let flags = self.u8()?;
        if flags & !0x33 != 0 {
            return Err(self.bad("tuple flags"));
        }
        let src = self.addr(flags & 1 != 0)?;
        let dst = self.addr(flags & 2 != 0)?;
        let l4 = match flags >> 4 {
            L4_PORTS => {
                let proto = PortProto::from_number(self.u8()?).ok_or(self.bad("port protocol"))?;
                L4::Ports {
                    proto,
                    src: self.u16()?,
                    dst: self.u16()?,
                }
            }
            k @ (L4_ICMP | L4_ICMPV6) => {
                let (icmp_type, code, id) = (self.u8()?, self.u8()?, self.u16()?);
                if k == L4_ICMP {
                    L4::Icmp {
                        icmp_type,
                        code,
                        id,
                    }
                } else {
                    L4::Icmpv6 {
                        icmp_type,
                        code,
                        id,
                    }
                }
            }
            _ => L4::Other(self.u8()?),
        };
        Ok(Tuple { src, dst, l4 })
    }

    fn seq_adj(&mut self) -> Result<SeqAdj, DecodeError> {
        Ok(SeqAdj {
            correction_pos: self.u32()?,
            offset_before: self.u32()?,
            offset_after: self.u32()?,
        })
    }

    fn conn(&mut self) -> Result<Conn, DecodeError> {
        let flags = self.u16()?;
        if flags & !cflag::ALL != 0 {
            return Err(self.bad("conn flags"));
        }
        let has = |bit: u16| flags & bit != 0;
        let orig = self.tuple()?;
        let reply = if has(cflag::REPLY) {
            let r = self.tuple()?;
            if r == orig.inverted() {
                return Err(self.bad("reply tuple sent without NAT"));
            }
            r
        } else {
            orig.inverted()
        };
        let mut c = Conn::new(orig, reply);
        c.status = self.u32()?;
        if has(cflag::TIMEOUT) {
            c.timeout = Some(self.u32()?);
        }
        if has(cflag::MARK) {
            c.mark = self.u32()?;
            if c.mark == 0 {
                return Err(self.bad("zero mark sent"));
            }
        }
        if has(cflag::ZONE) {
            c.zone = self.u16()?;
            if c.zone == 0 {
                return Err(self.bad("zero zone sent"));
            }
        }
        if has(cflag::TCP) {
            let [state, wscale_orig, wscale_reply, flags_orig, flags_reply] = self.array()?;
            c.tcp = Some(TcpInfo {
                state: TcpState::from_number(state),
                wscale_orig,
                wscale_reply,
                flags_orig,
                flags_reply,
            });
        }
        if has(cflag::SEQ_ADJ_ORIG) {
            c.seq_adj_orig = Some(self.seq_adj()?);
        }
        if has(cflag::SEQ_ADJ_REPLY) {
            c.seq_adj_reply = Some(self.seq_adj()?);
        }
        if has(cflag::HELPER) {
            let n = usize::from(self.u8()?);
            if n > MAX_HELPER_LEN {
                return Err(self.bad("helper name too long"));
            }
            let name = std::str::from_utf8(self.take(n)?).map_err(|_| self.bad("helper name"))?;
            c.helper = Some(name.to_owned());
        }
        if has(cflag::LABELS) {
            let n = usize::from(self.u8()?);
            if n > MAX_LABELS_LEN {
                return Err(self.bad("labels too long"));
            }
            c.labels = Some(self.take(n)?.to_vec());
        }
        if has(cflag::MASTER) {
            c.master = Some(self.tuple()?);
        }
        Ok(c)
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b.get(..4).unwrap_or(&[0; 4]));
    u32::from_be_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b.get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{status, tcp_flags};

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
}
