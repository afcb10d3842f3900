//! Decoding bodies and records: [`split_stream`] and the [`Records`] iterator walk a body,
//! [`Record::parse`] decodes one record. The decoder accepts only what the encoder produces
//! (canonical encoding), and every read is checked: a short or malformed record is an error,
//! never a panic.

use super::error::DecodeError;
use super::header::NodeId;
use super::record::{cflag, rtype, Record, L4_ICMP, L4_ICMPV6, L4_PORTS};
use super::{MAX_HELPER_LEN, MAX_LABELS_LEN, RECORD_HEADER_LEN, STREAM_SEQ_LEN};
use crate::model::{Conn, ConnKey, PortProto, SeqAdj, TcpInfo, TcpState, Tuple, L4};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

impl Record {
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
            BARRIER => Record::Barrier {
                nonce: r.u64()?,
                last_stream: r.u64()?,
                handover_to: NodeId(r.u32()?),
            },
            BARRIER_ACK => Record::BarrierAck {
                target: NodeId(r.u32()?),
                nonce: r.u64()?,
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
