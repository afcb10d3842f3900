//! Decoding conntrack message bodies (nfgenmsg + attributes): a whole entry ([`decode_conn`])
//! or just its key ([`decode_key`]). Unknown attributes are skipped; every error names the
//! attribute path at fault.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::attr::{get_be16, get_be32, get_u8, need, Attrs};
use super::error::{err, CtDecodeError, DecodeProblem};
use super::uapi::*;
use crate::model::{Conn, ConnKey, PortProto, SeqAdj, TcpInfo, TcpState, Tuple, L4};

/// Decodes the body of a conntrack message (nfgenmsg + attributes, what follows the netlink
/// header) into an entry. Unknown attributes are skipped.
pub fn decode_conn(body: &[u8]) -> Result<Conn, CtDecodeError> {
    let attrs = nfgenmsg_attrs(body)?;
    let mut orig = None;
    let mut reply = None;
    let mut c = Conn::new(placeholder_tuple(), placeholder_tuple());
    let mut tuple_zone = None;
    for a in Attrs::new(attrs, "conntrack attributes") {
        let (ty, p) = a?;
        match ty {
            CTA_TUPLE_ORIG => {
                let (t, z) = decode_tuple(p, TupleNames::ORIG)?;
                orig = Some(t);
                tuple_zone = tuple_zone.or(z);
            }
            CTA_TUPLE_REPLY => {
                let (t, z) = decode_tuple(p, TupleNames::REPLY)?;
                reply = Some(t);
                tuple_zone = tuple_zone.or(z);
            }
            CTA_TUPLE_MASTER => c.master = Some(decode_tuple(p, TupleNames::MASTER)?.0),
            CTA_STATUS => c.status = get_be32("CTA_STATUS", p)?,
            CTA_TIMEOUT => c.timeout = Some(get_be32("CTA_TIMEOUT", p)?),
            CTA_MARK => c.mark = get_be32("CTA_MARK", p)?,
            CTA_ZONE => c.zone = get_be16("CTA_ZONE", p)?,
            CTA_ID => c.id = Some(get_be32("CTA_ID", p)?),
            CTA_PROTOINFO => {
                if let Some(t) = decode_protoinfo(p)? {
                    c.tcp = Some(t);
                }
            }
            CTA_SEQ_ADJ_ORIG => c.seq_adj_orig = Some(decode_seqadj(p, "CTA_SEQ_ADJ_ORIG")?),
            CTA_SEQ_ADJ_REPLY => c.seq_adj_reply = Some(decode_seqadj(p, "CTA_SEQ_ADJ_REPLY")?),
            CTA_HELP => {
                for a in Attrs::new(p, "CTA_HELP") {
                    let (ty, p) = a?;
                    if ty == CTA_HELP_NAME {
                        let s = p.split(|b| *b == 0).next().unwrap_or_default();
                        c.helper = Some(String::from_utf8_lossy(s).into_owned());
                    }
                }
            }
            CTA_LABELS => c.labels = Some(p.to_vec()),
            _ => {}
        }
    }
    c.orig = orig.ok_or(err("CTA_TUPLE_ORIG", DecodeProblem::Missing))?;
    c.reply = reply.ok_or(err("CTA_TUPLE_REPLY", DecodeProblem::Missing))?;
    if c.zone == 0 {
        // A directional zone (CTA_TUPLE_ZONE) is kept as the entry's zone.
        c.zone = tuple_zone.unwrap_or(0);
    }
    Ok(c)
}

/// The attributes after the nfgenmsg header of a conntrack message body.
fn nfgenmsg_attrs(body: &[u8]) -> Result<&[u8], CtDecodeError> {
    body.get(NFGENMSG_LEN..).ok_or(err(
        "nfgenmsg",
        DecodeProblem::TooShort {
            len: body.len(),
            need: NFGENMSG_LEN,
        },
    ))
}

fn placeholder_tuple() -> Tuple {
    Tuple {
        src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        l4: L4::Other(0),
    }
}

/// Attribute paths for error messages, per tuple kind.
struct TupleNames {
    tuple: &'static str,
    ip: &'static str,
    v4_src: &'static str,
    v4_dst: &'static str,
    v6_src: &'static str,
    v6_dst: &'static str,
    proto: &'static str,
    num: &'static str,
    sport: &'static str,
    dport: &'static str,
    icmp_id: &'static str,
    icmp_type: &'static str,
    icmp_code: &'static str,
    zone: &'static str,
}

macro_rules! tuple_names {
    ($t:literal) => {
        TupleNames {
            tuple: $t,
            ip: concat!($t, "/CTA_TUPLE_IP"),
            v4_src: concat!($t, "/CTA_TUPLE_IP/CTA_IP_V4_SRC"),
            v4_dst: concat!($t, "/CTA_TUPLE_IP/CTA_IP_V4_DST"),
            v6_src: concat!($t, "/CTA_TUPLE_IP/CTA_IP_V6_SRC"),
            v6_dst: concat!($t, "/CTA_TUPLE_IP/CTA_IP_V6_DST"),
            proto: concat!($t, "/CTA_TUPLE_PROTO"),
            num: concat!($t, "/CTA_TUPLE_PROTO/CTA_PROTO_NUM"),
            sport: concat!($t, "/CTA_TUPLE_PROTO/CTA_PROTO_SRC_PORT"),
            dport: concat!($t, "/CTA_TUPLE_PROTO/CTA_PROTO_DST_PORT"),
            icmp_id: concat!($t, "/CTA_TUPLE_PROTO/CTA_PROTO_ICMP(V6)_ID"),
            icmp_type: concat!($t, "/CTA_TUPLE_PROTO/CTA_PROTO_ICMP(V6)_TYPE"),
            icmp_code: concat!($t, "/CTA_TUPLE_PROTO/CTA_PROTO_ICMP(V6)_CODE"),
            zone: concat!($t, "/CTA_TUPLE_ZONE"),
        }
    };
}

impl TupleNames {
    const ORIG: TupleNames = tuple_names!("CTA_TUPLE_ORIG");
    const REPLY: TupleNames = tuple_names!("CTA_TUPLE_REPLY");
    const MASTER: TupleNames = tuple_names!("CTA_TUPLE_MASTER");
}

fn decode_tuple(p: &[u8], n: TupleNames) -> Result<(Tuple, Option<u16>), CtDecodeError> {
    let (mut src, mut dst) = (None, None);
    let mut num = None;
    let (mut sport, mut dport) = (None, None);
    let (mut id, mut ty, mut code) = (None, None, None);
    let mut zone = None;
    for a in Attrs::new(p, n.tuple) {
        let (t, p) = a?;
        match t {
            CTA_TUPLE_IP => {
                for a in Attrs::new(p, n.ip) {
                    let (t, p) = a?;
                    match t {
                        CTA_IP_V4_SRC => src = Some(IpAddr::V4(need::<4>(n.v4_src, p)?.into())),
                        CTA_IP_V4_DST => dst = Some(IpAddr::V4(need::<4>(n.v4_dst, p)?.into())),
                        CTA_IP_V6_SRC => {
                            src = Some(IpAddr::V6(Ipv6Addr::from(need::<16>(n.v6_src, p)?)))
                        }
                        CTA_IP_V6_DST => {
                            dst = Some(IpAddr::V6(Ipv6Addr::from(need::<16>(n.v6_dst, p)?)))
                        }
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for a in Attrs::new(p, n.proto) {
                    let (t, p) = a?;
                    match t {
                        CTA_PROTO_NUM => num = Some(get_u8(n.num, p)?),
                        CTA_PROTO_SRC_PORT => sport = Some(get_be16(n.sport, p)?),
                        CTA_PROTO_DST_PORT => dport = Some(get_be16(n.dport, p)?),
                        CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => {
                            id = Some(get_be16(n.icmp_id, p)?)
                        }
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                            ty = Some(get_u8(n.icmp_type, p)?)
                        }
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                            code = Some(get_u8(n.icmp_code, p)?)
                        }
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_ZONE => zone = Some(get_be16(n.zone, p)?),
            _ => {}
        }
    }
    let src = src.ok_or(err(n.ip, DecodeProblem::Missing))?;
    let dst = dst.ok_or(err(n.ip, DecodeProblem::Missing))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(err(n.ip, DecodeProblem::MixedFamilies));
    }
    let num = num.ok_or(err(n.num, DecodeProblem::Missing))?;
    let l4 = if let Some(proto) = PortProto::from_number(num) {
        L4::Ports {
            proto,
            src: sport.ok_or(err(n.sport, DecodeProblem::Missing))?,
            dst: dport.ok_or(err(n.dport, DecodeProblem::Missing))?,
        }
    } else if num == 1 || num == 58 {
        let icmp_type = ty.ok_or(err(n.icmp_type, DecodeProblem::Missing))?;
        let code = code.ok_or(err(n.icmp_code, DecodeProblem::Missing))?;
        let id = id.ok_or(err(n.icmp_id, DecodeProblem::Missing))?;
        if num == 1 {
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
    } else {
        L4::Other(num)
    };
    Ok((Tuple { src, dst, l4 }, zone))
}

fn decode_protoinfo(p: &[u8]) -> Result<Option<TcpInfo>, CtDecodeError> {
    let mut out = None;
    for a in Attrs::new(p, "CTA_PROTOINFO") {
        let (t, p) = a?;
        if t != CTA_PROTOINFO_TCP {
            continue; // DCCP, SCTP: not modelled
        }
        let mut tcp = TcpInfo {
            state: TcpState::None,
            wscale_orig: 0,
            wscale_reply: 0,
            flags_orig: 0,
            flags_reply: 0,
        };
        for a in Attrs::new(p, "CTA_PROTOINFO/CTA_PROTOINFO_TCP") {
            let (t, p) = a?;
            match t {
                CTA_PROTOINFO_TCP_STATE => {
                    tcp.state = TcpState::from_number(get_u8(
                        "CTA_PROTOINFO_TCP/CTA_PROTOINFO_TCP_STATE",
                        p,
                    )?)
                }
                CTA_PROTOINFO_TCP_WSCALE_ORIGINAL => {
                    tcp.wscale_orig =
                        get_u8("CTA_PROTOINFO_TCP/CTA_PROTOINFO_TCP_WSCALE_ORIGINAL", p)?
                }
                CTA_PROTOINFO_TCP_WSCALE_REPLY => {
                    tcp.wscale_reply =
                        get_u8("CTA_PROTOINFO_TCP/CTA_PROTOINFO_TCP_WSCALE_REPLY", p)?
                }
                // struct nf_ct_tcp_flags { __u8 flags; __u8 mask; }
                CTA_PROTOINFO_TCP_FLAGS_ORIGINAL => {
                    tcp.flags_orig =
                        need::<2>("CTA_PROTOINFO_TCP/CTA_PROTOINFO_TCP_FLAGS_ORIGINAL", p)?[0]
                }
                CTA_PROTOINFO_TCP_FLAGS_REPLY => {
                    tcp.flags_reply =
                        need::<2>("CTA_PROTOINFO_TCP/CTA_PROTOINFO_TCP_FLAGS_REPLY", p)?[0]
                }
                _ => {}
            }
        }
        out = Some(tcp);
    }
    Ok(out)
}

fn decode_seqadj(p: &[u8], attr: &'static str) -> Result<SeqAdj, CtDecodeError> {
    let (mut pos, mut before, mut after) = (None, None, None);
    for a in Attrs::new(p, attr) {
        let (t, p) = a?;
        match t {
            CTA_SEQADJ_CORRECTION_POS => pos = Some(get_be32(attr, p)?),
            CTA_SEQADJ_OFFSET_BEFORE => before = Some(get_be32(attr, p)?),
            CTA_SEQADJ_OFFSET_AFTER => after = Some(get_be32(attr, p)?),
            _ => {}
        }
    }
    Ok(SeqAdj {
        correction_pos: pos.ok_or(err(attr, DecodeProblem::Missing))?,
        offset_before: before.ok_or(err(attr, DecodeProblem::Missing))?,
        offset_after: after.ok_or(err(attr, DecodeProblem::Missing))?,
    })
}

/// Decodes the key (original tuple and `CTA_ZONE`) of a conntrack message body: what a
/// delete or get request carries, and the identity of an update. Other attributes are skipped.
pub fn decode_key(body: &[u8]) -> Result<ConnKey, CtDecodeError> {
    let mut orig = None;
    let mut zone = 0;
    for a in Attrs::new(nfgenmsg_attrs(body)?, "conntrack attributes") {
        let (ty, p) = a?;
        match ty {
            CTA_TUPLE_ORIG => orig = Some(decode_tuple(p, TupleNames::ORIG)?.0),
            CTA_ZONE => zone = get_be16("CTA_ZONE", p)?,
            _ => {}
        }
    }
    Ok(ConnKey {
        orig: orig.ok_or(err("CTA_TUPLE_ORIG", DecodeProblem::Missing))?,
        zone,
    })
}

/// What an update request carries, for tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub(super) struct RequestView {
    pub(super) status: Option<u32>,
    pub(super) timeout: Option<u32>,
    pub(super) mark: Option<u32>,
    pub(super) tcp_flags: Option<(u8, u8)>,
    pub(super) tcp_masks: Option<(u8, u8)>,
}

#[cfg(test)]
pub(super) fn decode_conn_request(body: &[u8]) -> Result<RequestView, CtDecodeError> {
    let mut v = RequestView::default();
    for a in Attrs::new(nfgenmsg_attrs(body)?, "request") {
        let (ty, p) = a?;
        match ty {
            CTA_STATUS => v.status = Some(get_be32("CTA_STATUS", p)?),
            CTA_TIMEOUT => v.timeout = Some(get_be32("CTA_TIMEOUT", p)?),
            CTA_MARK => v.mark = Some(get_be32("CTA_MARK", p)?),
            CTA_PROTOINFO => {
                for a in Attrs::new(p, "CTA_PROTOINFO") {
                    let (_, p) = a?;
                    let (mut f, mut m) = ((0, 0), (0, 0));
                    for a in Attrs::new(p, "CTA_PROTOINFO_TCP") {
                        let (t, p) = a?;
                        let x = need::<2>("flags", p);
                        match (t, x) {
                            (CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, Ok([fl, ma])) => {
                                f.0 = fl;
                                m.0 = ma
                            }
                            (CTA_PROTOINFO_TCP_FLAGS_REPLY, Ok([fl, ma])) => {
                                f.1 = fl;
                                m.1 = ma
                            }
                            _ => {}
                        }
                    }
                    v.tcp_flags = Some(f);
                    v.tcp_masks = Some(m);
                }
            }
            _ => {}
        }
    }
    Ok(v)
}
