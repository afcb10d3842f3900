//! [`MsgBuf`]: appending netlink messages and their (nested) attributes to one buffer, in
//! the kernel's byte orders, with the tuple, NAT, seq-adjust and TCP protoinfo nests a
//! request is made of. What goes into which request is in `build`.

use std::net::{IpAddr, Ipv6Addr};

use super::attr::align4;
use super::uapi::*;
use crate::model::{NatRange, SeqAdj, TcpInfo, Tuple, L4};

/// Appends netlink messages to one buffer (for one `send`).
#[derive(Debug, Default)]
pub struct MsgBuf {
    pub(super) buf: Vec<u8>,
}

impl MsgBuf {
    /// The messages built so far, for one `send`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes built so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if nothing has been built.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forgets every message (keeps the allocation).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    pub(super) fn begin(&mut self, msg: u8, flags: u16, seq: u32, family: u8) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by end()
        self.buf
            .extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | u16::from(msg)).to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
        self.buf.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: V0, res_id 0
        start
    }

    pub(super) fn end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Sets flags on the message that starts at `start` (a [`MsgBuf::len`] taken before it
    /// was built), e.g. `NLM_F_ACK` on the last message of a batch.
    pub fn or_flags(&mut self, start: usize, flags: u16) {
        if let Some(f) = self.buf.get_mut(start + 6..start + 8) {
            let v = u16::from_ne_bytes([f[0], f[1]]) | flags;
            f.copy_from_slice(&v.to_ne_bytes());
        }
    }

    pub(super) fn put(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len() + (align4(len) - len), 0);
    }

    pub(super) fn put_u8(&mut self, ty: u16, v: u8) {
        self.put(ty, &[v]);
    }

    pub(super) fn put_be16(&mut self, ty: u16, v: u16) {
        self.put(ty, &v.to_be_bytes());
    }

    pub(super) fn put_be32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }

    pub(super) fn nest(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    pub(super) fn nest_end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    pub(super) fn tuple(&mut self, ty: u16, t: &Tuple) {
        let n = self.nest(ty);
        let ip = self.nest(CTA_TUPLE_IP);
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.put(CTA_IP_V4_SRC, &s.octets());
                self.put(CTA_IP_V4_DST, &d.octets());
            }
            (s, d) => {
                self.put(CTA_IP_V6_SRC, &v6(s).octets());
                self.put(CTA_IP_V6_DST, &v6(d).octets());
            }
        }
        self.nest_end(ip);
        let pr = self.nest(CTA_TUPLE_PROTO);
        self.put_u8(CTA_PROTO_NUM, t.l4.proto_number());
        match t.l4 {
            L4::Ports { src, dst, .. } => {
                self.put_be16(CTA_PROTO_SRC_PORT, src);
                self.put_be16(CTA_PROTO_DST_PORT, dst);
            }
            L4::Icmp {
                icmp_type,
                code,
                id,
            } => {
                self.put_u8(CTA_PROTO_ICMP_CODE, code);
                self.put_u8(CTA_PROTO_ICMP_TYPE, icmp_type);
                self.put_be16(CTA_PROTO_ICMP_ID, id);
            }
            L4::Icmpv6 {
                icmp_type,
                code,
                id,
            } => {
                self.put_u8(CTA_PROTO_ICMPV6_CODE, code);
                self.put_u8(CTA_PROTO_ICMPV6_TYPE, icmp_type);
                self.put_be16(CTA_PROTO_ICMPV6_ID, id);
            }
            L4::Other(_) => {}
        }
        self.nest_end(pr);
        self.nest_end(n);
    }

    pub(super) fn nat(&mut self, ty: u16, r: &NatRange) {
        let n = self.nest(ty);
        match (r.min_addr, r.max_addr) {
            (IpAddr::V4(min), IpAddr::V4(max)) => {
                self.put(CTA_NAT_V4_MINIP, &min.octets());
                if max != min {
                    self.put(CTA_NAT_V4_MAXIP, &max.octets());
                }
            }
            (min, max) => {
                self.put(CTA_NAT_V6_MINIP, &v6(min).octets());
                if max != min {
                    self.put(CTA_NAT_V6_MAXIP, &v6(max).octets());
                }
            }
        }
        if let Some((lo, hi)) = r.ports {
            let p = self.nest(CTA_NAT_PROTO);
            self.put_be16(CTA_PROTONAT_PORT_MIN, lo);
            self.put_be16(CTA_PROTONAT_PORT_MAX, hi);
            self.nest_end(p);
        }
        self.nest_end(n);
    }

    pub(super) fn seqadj(&mut self, ty: u16, s: &SeqAdj) {
        let n = self.nest(ty);
        self.put_be32(CTA_SEQADJ_CORRECTION_POS, s.correction_pos);
        self.put_be32(CTA_SEQADJ_OFFSET_BEFORE, s.offset_before);
        self.put_be32(CTA_SEQADJ_OFFSET_AFTER, s.offset_after);
        self.nest_end(n);
    }

    /// `CTA_PROTOINFO_TCP`. `mask` selects the flag bits the kernel overwrites
    /// (`seen[dir].flags = (flags & ~mask) | (new & mask)`).
    pub(super) fn tcp(&mut self, t: &TcpInfo, extra_flags: u8, full_mask: bool) {
        let pi = self.nest(CTA_PROTOINFO);
        let n = self.nest(CTA_PROTOINFO_TCP);
        self.put_u8(CTA_PROTOINFO_TCP_STATE, t.state.number());
        if t.wscale_orig != 0 || t.wscale_reply != 0 {
            // Applied only if WINDOW_SCALE is set in both directions' flags.
            self.put_u8(CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, t.wscale_orig);
            self.put_u8(CTA_PROTOINFO_TCP_WSCALE_REPLY, t.wscale_reply);
        }
        let fo = t.flags_orig | extra_flags;
        let fr = t.flags_reply | extra_flags;
        let (mo, mr) = if full_mask { (0xff, 0xff) } else { (fo, fr) };
        self.put(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, &[fo, mo]);
        self.put(CTA_PROTOINFO_TCP_FLAGS_REPLY, &[fr, mr]);
        self.nest_end(n);
        self.nest_end(pi);
    }
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}
