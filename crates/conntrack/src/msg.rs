//! ctnetlink messages, byte for byte: building requests and parsing what the kernel sends.
//!
//! Pure code (no I/O: `linux::conntrack` sends and receives the bytes), written against
//! `include/uapi/linux/netfilter/nfnetlink_conntrack.h` and
//! `net/netfilter/nf_conntrack_netlink.c`. Netlink and attribute headers are host byte
//! order; the conntrack attributes the kernel reads with `nla_get_be16/be32` (ports, status,
//! timeout, mark, zone, id, seq-adjust, NAT ports) are big-endian; addresses are network order.
//!
//! Attribute order in a create message follows libnetfilter_conntrack's `nfct_nlmsg_build`
//! (what `conntrack -I` sends), so the unit tests can compare with captured messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{
    status, tcp_flags, Conn, ConnKey, NatRange, PortProto, SeqAdj, TcpInfo, TcpState, Tuple, L4,
};

// --- netlink (linux/netlink.h) ---
/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Message type: nothing.
pub const NLMSG_NOOP: u16 = 1;
/// Message type: an error, or an ACK (error 0).
pub const NLMSG_ERROR: u16 = 2;
/// Message type: end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// Message type: data lost.
pub const NLMSG_OVERRUN: u16 = 4;
/// A request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// Ask for an ACK.
pub const NLM_F_ACK: u16 = 0x4;
/// In a GET: the whole table.
pub const NLM_F_ROOT: u16 = 0x100;
/// In a GET: all entries that match.
pub const NLM_F_MATCH: u16 = 0x200;
/// In a GET: a dump.
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
/// In a NEW: fail if the entry exists (on a NEW event: the entry is new).
pub const NLM_F_EXCL: u16 = 0x200;
/// In a NEW: create the entry if it does not exist (on a NEW event: the entry is new).
pub const NLM_F_CREATE: u16 = 0x400;
/// In an NLMSG_ERROR: the original message was capped to its header.
pub const NLM_F_CAPPED: u16 = 0x100;
/// In an NLMSG_ERROR: extended-ack TLVs follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

// --- nfnetlink ---
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const NFGENMSG_LEN: usize = 4;
/// A new or changed entry (request, dump entry, NEW or UPDATE event).
pub const IPCTNL_MSG_CT_NEW: u8 = 0;
/// Read one entry or dump the table.
pub const IPCTNL_MSG_CT_GET: u8 = 1;
/// Delete an entry or flush the table (request), or a DESTROY event.
pub const IPCTNL_MSG_CT_DELETE: u8 = 2;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

// --- enum ctattr_type ---
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_HELP: u16 = 5;
const CTA_NAT_SRC: u16 = 6;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_ID: u16 = 12;
const CTA_NAT_DST: u16 = 13;
const CTA_TUPLE_MASTER: u16 = 14;
const CTA_SEQ_ADJ_ORIG: u16 = 15;
const CTA_SEQ_ADJ_REPLY: u16 = 16;
const CTA_ZONE: u16 = 18;
const CTA_LABELS: u16 = 22;
// --- enum ctattr_tuple ---
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_TUPLE_ZONE: u16 = 3;
// --- enum ctattr_ip ---
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
// --- enum ctattr_l4proto ---
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;
// --- enum ctattr_protoinfo / ctattr_protoinfo_tcp ---
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const CTA_PROTOINFO_TCP_WSCALE_ORIGINAL: u16 = 2;
const CTA_PROTOINFO_TCP_WSCALE_REPLY: u16 = 3;
const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;
// --- enum ctattr_nat / ctattr_protonat ---
const CTA_NAT_V4_MINIP: u16 = 1;
const CTA_NAT_V4_MAXIP: u16 = 2;
const CTA_NAT_PROTO: u16 = 3;
const CTA_NAT_V6_MINIP: u16 = 4;
const CTA_NAT_V6_MAXIP: u16 = 5;
const CTA_PROTONAT_PORT_MIN: u16 = 1;
const CTA_PROTONAT_PORT_MAX: u16 = 2;
// --- enum ctattr_seqadj ---
const CTA_SEQADJ_CORRECTION_POS: u16 = 1;
const CTA_SEQADJ_OFFSET_BEFORE: u16 = 2;
const CTA_SEQADJ_OFFSET_AFTER: u16 = 3;
// --- enum ctattr_help ---
const CTA_HELP_NAME: u16 = 1;

/// The most the kernel stores in `CTA_LABELS` (`NF_CT_LABELS_MAX_SIZE`).
const LABELS_MAX: usize = 16;
/// `NF_CT_HELPER_NAME_LEN` minus the NUL.
const HELPER_NAME_MAX: usize = 15;

/// Status bits a peer's entry must not carry into `CTA_STATUS` of a create: the kernel refuses
/// a change of EXPECTED / CONFIRMED / DYING with EBUSY, ignores the rest (`IPS_UNCHANGEABLE_MASK`)
/// or they describe the other node (offload, template, NAT clash).
const STATUS_NOT_SENT: u32 = status::EXPECTED
    | status::CONFIRMED
    | status::DYING
    | status::SRC_NAT
    | status::DST_NAT
    | status::SRC_NAT_DONE
    | status::DST_NAT_DONE
    | status::SEQ_ADJUST
    | status::TEMPLATE
    | status::NAT_CLASH
    | status::OFFLOAD
    | status::HW_OFFLOAD;

/// Why a message from the kernel could not be decoded: which attribute, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{attr}: {problem}")]
pub struct CtDecodeError {
    /// The attribute (or header) at fault, e.g. `"CTA_TUPLE_ORIG/CTA_TUPLE_IP/CTA_IP_V4_SRC"`.
    pub attr: &'static str,
    /// What was wrong with it.
    pub problem: DecodeProblem,
}

/// What was wrong with an attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeProblem {
    /// Shorter than its type needs.
    #[error("{len} bytes where {need} are needed")]
    TooShort {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A length field that points outside its container.
    #[error("length {len} does not fit the {avail} bytes left")]
    BadLength {
        /// The length field.
        len: usize,
        /// Bytes left in the container.
        avail: usize,
    },
    /// A required attribute is absent.
    #[error("missing")]
    Missing,
    /// The tuple's addresses are of two families.
    #[error("source and destination addresses of different families")]
    MixedFamilies,
}

fn err(attr: &'static str, problem: DecodeProblem) -> CtDecodeError {
    CtDecodeError { attr, problem }
}

/// Why a connection cannot be turned into a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A create needs `CTA_TIMEOUT` (the kernel refuses without it).
    #[error("a create needs a timeout (CTA_TIMEOUT is mandatory)")]
    NoTimeout,
    /// Addresses of two families in one connection.
    #[error("addresses of both IPv4 and IPv6 in one connection")]
    MixedFamilies,
    /// Original and reply tuples of different L4 protocols.
    #[error("original and reply tuples have different protocols ({orig} and {reply})")]
    ProtocolMismatch {
        /// Original tuple's protocol number.
        orig: u8,
        /// Reply tuple's protocol number.
        reply: u8,
    },
    /// Labels longer than 16 bytes or not a multiple of 4.
    #[error("labels of {0} bytes (must be a multiple of 4, at most 16)")]
    BadLabels(usize),
    /// A helper name longer than the kernel's 15 characters or containing NUL.
    #[error("helper name {0:?} is not a valid kernel helper name")]
    BadHelper(String),
}

/// What a parsed netlink message is.
#[derive(Debug)]
pub enum Message {
    /// A conntrack entry: `IPCTNL_MSG_CT_NEW` (dump entry, NEW or UPDATE event) or
    /// `IPCTNL_MSG_CT_DELETE` (DESTROY event).
    Conn {
        /// `IPCTNL_MSG_CT_*`.
        msg: u8,
        /// nlmsg_flags (NEW events carry NLM_F_CREATE|NLM_F_EXCL).
        flags: u16,
        /// nlmsg_seq: the request's sequence number (0 for events).
        seq: u32,
        /// nlmsg_pid: for events, the port id of the socket whose request caused it (0 when
        /// packets did).
        portid: u32,
        /// The entry.
        conn: Box<Conn>,
    },
    /// NLMSG_ERROR: `errno` 0 is an ACK.
    Error {
        /// The sequence number of the request it answers.
        seq: u32,
        /// The errno, positive (0: ACK).
        errno: i32,
        /// The kernel's extended-ack text (`NLMSGERR_ATTR_MSG`), if any.
        message: Option<String>,
    },
    /// NLMSG_DONE of a dump.
    Done {
        /// The dump request's sequence number.
        seq: u32,
    },
    /// Anything else (other subsystems, NOOP, a conntrack message we could not decode: see
    /// [`Message::Bad`]).
    Other,
    /// A conntrack message whose body did not decode.
    Bad {
        /// nlmsg_seq.
        seq: u32,
        /// What was wrong.
        error: CtDecodeError,
    },
}

/// Walks the netlink messages of one datagram. A header that does not fit stops the walk with
/// an error; a body that does not decode yields [`Message::Bad`] and the walk goes on.
pub fn parse_datagram(mut buf: &[u8], mut each: impl FnMut(Message)) -> Result<(), CtDecodeError> {
    while !buf.is_empty() {
        if buf.len() < NLMSG_HDRLEN {
            return Err(err(
                "nlmsghdr",
                DecodeProblem::TooShort {
                    len: buf.len(),
                    need: NLMSG_HDRLEN,
                },
            ));
        }
        let len = ne32(&buf[0..4]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(err(
                "nlmsghdr",
                DecodeProblem::BadLength {
                    len,
                    avail: buf.len(),
                },
            ));
        }
        let ty = ne16(&buf[4..6]);
        let flags = ne16(&buf[6..8]);
        let seq = ne32(&buf[8..12]);
        let pid = ne32(&buf[12..16]);
        let body = &buf[NLMSG_HDRLEN..len];
        each(parse_one(ty, flags, seq, pid, body));
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(())
}

fn parse_one(ty: u16, flags: u16, seq: u32, portid: u32, body: &[u8]) -> Message {
    match ty {
        NLMSG_ERROR => parse_error(flags, seq, body),
        NLMSG_DONE => Message::Done { seq },
        NLMSG_NOOP | NLMSG_OVERRUN => Message::Other,
        _ if ty >> 8 == NFNL_SUBSYS_CTNETLINK => {
            let msg = (ty & 0xff) as u8;
            if msg != IPCTNL_MSG_CT_NEW && msg != IPCTNL_MSG_CT_DELETE {
                return Message::Other;
            }
            match decode_conn(body) {
                Ok(conn) => Message::Conn {
                    msg,
                    flags,
                    seq,
                    portid,
                    conn: Box::new(conn),
                },
                Err(error) => Message::Bad { seq, error },
            }
        }
        _ => Message::Other,
    }
}

fn parse_error(flags: u16, seq: u32, body: &[u8]) -> Message {
    // struct nlmsgerr { int error; struct nlmsghdr msg; } then, if NLM_F_ACK_TLVS, attributes.
    if body.len() < 4 + NLMSG_HDRLEN {
        let errno = if body.len() >= 4 {
            errno_of(&body[0..4])
        } else {
            0
        };
        return Message::Error {
            seq,
            errno,
            message: None,
        };
    }
    let errno = errno_of(&body[0..4]);
    // The error names the request by its own header's sequence number.
    let req_seq = ne32(&body[12..16]);
    let seq = if req_seq != 0 { req_seq } else { seq };
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let orig_len = ne32(&body[4..8]) as usize;
        let skip = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align4(orig_len)
        };
        if let Some(tlvs) = body.get(4 + skip..) {
            for (ty, p) in Attrs::new(tlvs, "nlmsgerr attributes").flatten() {
                if ty == NLMSGERR_ATTR_MSG {
                    let s = p.split(|b| *b == 0).next().unwrap_or_default();
                    message = Some(String::from_utf8_lossy(s).into_owned());
                }
            }
        }
    }
    Message::Error {
        seq,
        errno,
        message,
    }
}

/// Iterates the attributes of a container; stops (with one error) at a malformed header.
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
    ctx: &'static str,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(buf: &'a [u8], ctx: &'static str) -> Attrs<'a> {
        Attrs { rest: buf, ctx }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), CtDecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let avail = self.rest.len();
        if avail < 4 {
            self.rest = &[];
            return Some(Err(err(
                self.ctx,
                DecodeProblem::TooShort {
                    len: avail,
                    need: 4,
                },
            )));
        }
        let len = ne16(&self.rest[0..2]) as usize;
        if len < 4 || len > avail {
            self.rest = &[];
            return Some(Err(err(self.ctx, DecodeProblem::BadLength { len, avail })));
        }
        let ty = ne16(&self.rest[2..4]) & NLA_TYPE_MASK;
        let payload = &self.rest[4..len];
        self.rest = &self.rest[align4(len).min(avail)..];
        Some(Ok((ty, payload)))
    }
}

fn need<const N: usize>(attr: &'static str, p: &[u8]) -> Result<[u8; N], CtDecodeError> {
    p.get(..N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(err(
            attr,
            DecodeProblem::TooShort {
                len: p.len(),
                need: N,
            },
        ))
}

fn get_u8(attr: &'static str, p: &[u8]) -> Result<u8, CtDecodeError> {
    Ok(need::<1>(attr, p)?[0])
}

fn get_be16(attr: &'static str, p: &[u8]) -> Result<u16, CtDecodeError> {
    Ok(u16::from_be_bytes(need::<2>(attr, p)?))
}

fn get_be32(attr: &'static str, p: &[u8]) -> Result<u32, CtDecodeError> {
    Ok(u32::from_be_bytes(need::<4>(attr, p)?))
}

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

// ---------------------------------------------------------------------------------------------
// Building requests.

/// Appends netlink messages to one buffer (for one `send`).
#[derive(Debug, Default)]
pub struct MsgBuf {
    buf: Vec<u8>,
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

    fn begin(&mut self, msg: u8, flags: u16, seq: u32, family: u8) -> usize {
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

    fn end(&mut self, start: usize) {
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

    fn put(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len() + (align4(len) - len), 0);
    }

    fn put_u8(&mut self, ty: u16, v: u8) {
        self.put(ty, &[v]);
    }

    fn put_be16(&mut self, ty: u16, v: u16) {
        self.put(ty, &v.to_be_bytes());
    }

    fn put_be32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }

    fn nest(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn nest_end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn tuple(&mut self, ty: u16, t: &Tuple) {
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

    fn nat(&mut self, ty: u16, r: &NatRange) {
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

    fn seqadj(&mut self, ty: u16, s: &SeqAdj) {
        let n = self.nest(ty);
        self.put_be32(CTA_SEQADJ_CORRECTION_POS, s.correction_pos);
        self.put_be32(CTA_SEQADJ_OFFSET_BEFORE, s.offset_before);
        self.put_be32(CTA_SEQADJ_OFFSET_AFTER, s.offset_after);
        self.nest_end(n);
    }

    /// `CTA_PROTOINFO_TCP`. `mask` selects the flag bits the kernel overwrites
    /// (`seen[dir].flags = (flags & ~mask) | (new & mask)`).
    fn tcp(&mut self, t: &TcpInfo, extra_flags: u8, full_mask: bool) {
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

fn family_of(t: &Tuple) -> u8 {
    if t.src.is_ipv6() {
        AF_INET6
    } else {
        AF_INET
    }
}

fn check_tuple(t: &Tuple, v6: bool) -> Result<(), EncodeError> {
    if t.src.is_ipv6() != v6 || t.dst.is_ipv6() != v6 {
        return Err(EncodeError::MixedFamilies);
    }
    Ok(())
}

fn check_conn(c: &Conn) -> Result<(), EncodeError> {
    let v6 = c.orig.src.is_ipv6();
    check_tuple(&c.orig, v6)?;
    check_tuple(&c.reply, v6)?;
    if let Some(m) = &c.master {
        check_tuple(m, v6)?;
    }
    let (o, r) = (c.orig.l4.proto_number(), c.reply.l4.proto_number());
    if o != r {
        return Err(EncodeError::ProtocolMismatch { orig: o, reply: r });
    }
    if let Some(l) = &c.labels {
        if l.len() % 4 != 0 || l.len() > LABELS_MAX {
            return Err(EncodeError::BadLabels(l.len()));
        }
    }
    if let Some(h) = &c.helper {
        if h.len() > HELPER_NAME_MAX || h.as_bytes().contains(&0) {
            return Err(EncodeError::BadHelper(h.clone()));
        }
    }
    Ok(())
}

/// Options of the request builders.
#[derive(Clone, Copy, Debug)]
pub struct BuildOpts {
    /// OR `IP_CT_TCP_FLAG_BE_LIBERAL` into both directions of TCP entries.
    pub tcp_be_liberal: bool,
}

/// A TCP conn's CTA_PROTOINFO (state, window scale and flags), with BE_LIBERAL added when the
/// options ask for it: TCP window edges are not in ctnetlink, so injected entries need it.
fn put_tcp_protoinfo(b: &mut MsgBuf, c: &Conn, opts: BuildOpts, full_mask: bool) {
    if let (
        Some(t),
        L4::Ports {
            proto: PortProto::Tcp,
            ..
        },
    ) = (&c.tcp, c.orig.l4)
    {
        let extra = if opts.tcp_be_liberal {
            tcp_flags::BE_LIBERAL
        } else {
            0
        };
        b.tcp(t, extra, full_mask);
    }
}

/// `IPCTNL_MSG_CT_NEW` with `NLM_F_CREATE|NLM_F_EXCL` (plus `extra_flags`): a new entry with
/// tuples, status, timeout, mark, protoinfo, NAT, seq-adjust, helper, zone, labels, master.
///
/// With NAT, the reply tuple sent is the *untranslated* one (`orig.inverted()`): the kernel
/// derives the translated reply tuple from `CTA_NAT_DST` / `CTA_NAT_SRC` itself, and only then
/// sets `IPS_SRC_NAT` / `IPS_DST_NAT`, which make it rewrite packets.
pub fn build_create(
    b: &mut MsgBuf,
    c: &Conn,
    seq: u32,
    extra_flags: u16,
    opts: BuildOpts,
) -> Result<(), EncodeError> {
    check_conn(c)?;
    let timeout = c.timeout.ok_or(EncodeError::NoTimeout)?;
    let nat = c.nat();
    let start = b.begin(
        IPCTNL_MSG_CT_NEW,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | extra_flags,
        seq,
        family_of(&c.orig),
    );
    b.tuple(CTA_TUPLE_ORIG, &c.orig);
    if nat.is_none() {
        b.tuple(CTA_TUPLE_REPLY, &c.reply);
    } else {
        b.tuple(CTA_TUPLE_REPLY, &c.orig.inverted());
    }
    if let Some(m) = &c.master {
        b.tuple(CTA_TUPLE_MASTER, m);
    }
    // The kernel sets CONFIRMED before applying CTA_STATUS and refuses to see it cleared.
    let st = (c.status & !STATUS_NOT_SENT) | status::CONFIRMED;
    if st != status::CONFIRMED {
        b.put_be32(CTA_STATUS, st);
    }
    b.put_be32(CTA_TIMEOUT, timeout);
    if c.mark != 0 {
        b.put_be32(CTA_MARK, c.mark);
    }
    // The kernel zeroes the TCP state before applying a create's protoinfo: mask = flags is exact.
    put_tcp_protoinfo(b, c, opts, false);
    if let Some(r) = &nat.src {
        b.nat(CTA_NAT_SRC, r);
    }
    if let Some(r) = &nat.dst {
        b.nat(CTA_NAT_DST, r);
    }
    if let Some(s) = &c.seq_adj_orig {
        b.seqadj(CTA_SEQ_ADJ_ORIG, s);
    }
    if let Some(s) = &c.seq_adj_reply {
        b.seqadj(CTA_SEQ_ADJ_REPLY, s);
    }
    if let Some(h) = &c.helper {
        let n = b.nest(CTA_HELP);
        let mut name = h.as_bytes().to_vec();
        name.push(0);
        b.put(CTA_HELP_NAME, &name);
        b.nest_end(n);
    }
    if c.zone != 0 {
        b.put_be16(CTA_ZONE, c.zone);
    }
    if let Some(l) = &c.labels {
        if !l.is_empty() {
            b.put(CTA_LABELS, l);
        }
    }
    b.end(start);
    Ok(())
}

/// `IPCTNL_MSG_CT_NEW` without `NLM_F_CREATE`: changes an existing entry (timeout, status,
/// TCP protoinfo, mark, seq-adjust, labels). NAT, helper and master cannot change after
/// creation (the kernel answers EOPNOTSUPP), so they are not sent.
pub fn build_update(
    b: &mut MsgBuf,
    c: &Conn,
    seq: u32,
    extra_flags: u16,
    with_status: bool,
    opts: BuildOpts,
) -> Result<(), EncodeError> {
    check_conn(c)?;
    let start = b.begin(
        IPCTNL_MSG_CT_NEW,
        NLM_F_REQUEST | extra_flags,
        seq,
        family_of(&c.orig),
    );
    b.tuple(CTA_TUPLE_ORIG, &c.orig);
    if with_status {
        let st = (c.status & !STATUS_NOT_SENT)
            | status::CONFIRMED
            | (c.status & status::EXPECTED)
            | if c.master.is_some() {
                status::EXPECTED
            } else {
                0
            };
        b.put_be32(CTA_STATUS, st);
    }
    if let Some(t) = c.timeout {
        b.put_be32(CTA_TIMEOUT, t);
    }
    b.put_be32(CTA_MARK, c.mark);
    put_tcp_protoinfo(b, c, opts, true);
    if let Some(s) = &c.seq_adj_orig {
        b.seqadj(CTA_SEQ_ADJ_ORIG, s);
    }
    if let Some(s) = &c.seq_adj_reply {
        b.seqadj(CTA_SEQ_ADJ_REPLY, s);
    }
    if c.zone != 0 {
        b.put_be16(CTA_ZONE, c.zone);
    }
    if let Some(l) = &c.labels {
        if !l.is_empty() {
            b.put(CTA_LABELS, l);
        }
    }
    b.end(start);
    Ok(())
}

/// `IPCTNL_MSG_CT_DELETE` of one entry by original tuple and zone.
pub fn build_delete(
    b: &mut MsgBuf,
    k: &ConnKey,
    seq: u32,
    extra_flags: u16,
) -> Result<(), EncodeError> {
    check_tuple(&k.orig, k.orig.src.is_ipv6())?;
    let start = b.begin(
        IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | extra_flags,
        seq,
        family_of(&k.orig),
    );
    b.tuple(CTA_TUPLE_ORIG, &k.orig);
    if k.zone != 0 {
        b.put_be16(CTA_ZONE, k.zone);
    }
    b.end(start);
    Ok(())
}

/// `IPCTNL_MSG_CT_GET` of one entry.
pub fn build_get(b: &mut MsgBuf, k: &ConnKey, seq: u32) -> Result<(), EncodeError> {
    check_tuple(&k.orig, k.orig.src.is_ipv6())?;
    let start = b.begin(
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family_of(&k.orig),
    );
    b.tuple(CTA_TUPLE_ORIG, &k.orig);
    if k.zone != 0 {
        b.put_be16(CTA_ZONE, k.zone);
    }
    b.end(start);
    Ok(())
}

/// `IPCTNL_MSG_CT_GET` with `NLM_F_DUMP` and family AF_UNSPEC: every entry, both families.
pub fn build_dump(b: &mut MsgBuf, seq: u32) {
    let start = b.begin(
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        AF_UNSPEC,
    );
    b.end(start);
}

/// `IPCTNL_MSG_CT_DELETE` without a tuple, AF_UNSPEC, version 0: flushes the table.
pub fn build_flush(b: &mut MsgBuf, seq: u32) {
    let start = b.begin(
        IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        AF_UNSPEC,
    );
    b.end(start);
}

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn ne16(b: &[u8]) -> u16 {
    u16::from_ne_bytes([b[0], b[1]])
}

fn ne32(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

/// `nlmsgerr.error` is a negative errno; i32::MIN (never sent) saturates rather than
/// overflowing.
fn errno_of(b: &[u8]) -> i32 {
    i32::from_ne_bytes([b[0], b[1], b[2], b[3]]).saturating_neg()
}

/// What an update request carries, for tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct RequestView {
    pub(crate) status: Option<u32>,
    pub(crate) timeout: Option<u32>,
    pub(crate) mark: Option<u32>,
    pub(crate) tcp_flags: Option<(u8, u8)>,
    pub(crate) tcp_masks: Option<(u8, u8)>,
}

#[cfg(test)]
pub(crate) fn decode_conn_request(body: &[u8]) -> Result<RequestView, CtDecodeError> {
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

#[cfg(test)]
mod tests;
