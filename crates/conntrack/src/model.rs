//! The connection model: one netfilter conntrack entry, with everything needed to recreate it on
//! a peer so that established connections (NAT included) survive failover.
//!
//! The fields mirror what ctnetlink exposes (`include/uapi/linux/netfilter/nfnetlink_conntrack.h`):
//! the original and reply tuples, `CTA_STATUS`, `CTA_TIMEOUT`, `CTA_MARK`, `CTA_ZONE`,
//! `CTA_SEQ_ADJ_ORIG/REPLY`, `CTA_PROTOINFO_TCP`, `CTA_HELP`, `CTA_LABELS`, `CTA_TUPLE_MASTER`
//! and `CTA_ID`. NAT is not stored: the kernel encodes it in the tuples (the reply tuple is the
//! translated one) and [`Conn::nat`] derives the `CTA_NAT_SRC` / `CTA_NAT_DST` ranges that
//! recreate it.
//!
//! Fields that are `Option` may be absent from an UPDATE event (the kernel only reports what
//! changed); [`Conn::merge_from`] folds such an update into a full snapshot. Everything else is
//! always known (the kernel omits `CTA_MARK` and `CTA_ZONE` only when they are 0).

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `IPS_*` status bits (`nf_conntrack_common.h`), as carried in `CTA_STATUS`.
pub mod status {
    /// It's an expected connection (has a master).
    pub const EXPECTED: u32 = 1 << 0;
    /// Packets seen in both directions.
    pub const SEEN_REPLY: u32 = 1 << 1;
    /// Never expire early (TCP established, UDP stream).
    pub const ASSURED: u32 = 1 << 2;
    /// In the hash table.
    pub const CONFIRMED: u32 = 1 << 3;
    /// Source NAT applies.
    pub const SRC_NAT: u32 = 1 << 4;
    /// Destination NAT applies.
    pub const DST_NAT: u32 = 1 << 5;
    /// Both NAT kinds.
    pub const NAT_MASK: u32 = SRC_NAT | DST_NAT;
    /// TCP sequence numbers are adjusted (a helper rewrote payload).
    pub const SEQ_ADJUST: u32 = 1 << 6;
    /// Source NAT set up.
    pub const SRC_NAT_DONE: u32 = 1 << 7;
    /// Destination NAT set up.
    pub const DST_NAT_DONE: u32 = 1 << 8;
    /// Being destroyed.
    pub const DYING: u32 = 1 << 9;
    /// Timeout is fixed (not refreshed by packets).
    pub const FIXED_TIMEOUT: u32 = 1 << 10;
    /// A template (never in the table).
    pub const TEMPLATE: u32 = 1 << 11;
    /// NAT clash resolution (formerly UNTRACKED).
    pub const NAT_CLASH: u32 = 1 << 12;
    /// Has a helper assigned by a rule (`ct helper set`).
    pub const HELPER: u32 = 1 << 13;
    /// Offloaded to a flowtable.
    pub const OFFLOAD: u32 = 1 << 14;
    /// Offloaded to hardware.
    pub const HW_OFFLOAD: u32 = 1 << 15;
}

/// `IP_CT_TCP_FLAG_*` per-direction TCP flags (`nf_conntrack_tcp.h`), as in `CTA_PROTOINFO_TCP_FLAGS_*`.
pub mod tcp_flags {
    /// Window scaling is in use in this direction (must be set in both for wscale to apply).
    pub const WINDOW_SCALE: u8 = 0x01;
    /// SACK permitted.
    pub const SACK_PERM: u8 = 0x02;
    /// This side closed first.
    pub const CLOSE_INIT: u8 = 0x04;
    /// Don't check sequence windows in this direction (needed for injected entries: the window
    /// edges are not exposed over ctnetlink).
    pub const BE_LIBERAL: u8 = 0x08;
    /// Unacknowledged data.
    pub const DATA_UNACKNOWLEDGED: u8 = 0x10;
    /// The max ack field is initialised.
    pub const MAXACK_SET: u8 = 0x20;
    /// A challenge ACK is expected.
    pub const EXP_CHALLENGE_ACK: u8 = 0x40;
    /// Simultaneous open.
    pub const SIMULTANEOUS_OPEN: u8 = 0x80;
}

/// L4 protocols whose conntrack tuple carries 16-bit source and destination "ports"
/// (`CTA_PROTO_SRC_PORT` / `CTA_PROTO_DST_PORT`; for GRE these are the keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PortProto {
    /// IPPROTO_TCP (6).
    Tcp,
    /// IPPROTO_UDP (17).
    Udp,
    /// IPPROTO_UDPLITE (136).
    UdpLite,
    /// IPPROTO_SCTP (132).
    Sctp,
    /// IPPROTO_DCCP (33).
    Dccp,
    /// IPPROTO_GRE (47); the "ports" are the PPTP call ids.
    Gre,
}

impl PortProto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            PortProto::Tcp => 6,
            PortProto::Udp => 17,
            PortProto::UdpLite => 136,
            PortProto::Sctp => 132,
            PortProto::Dccp => 33,
            PortProto::Gre => 47,
        }
    }

    /// The protocol for an IP protocol number, if it has ports.
    pub fn from_number(n: u8) -> Option<PortProto> {
        Some(match n {
            6 => PortProto::Tcp,
            17 => PortProto::Udp,
            136 => PortProto::UdpLite,
            132 => PortProto::Sctp,
            33 => PortProto::Dccp,
            47 => PortProto::Gre,
            _ => return None,
        })
    }
}

/// The layer-4 part of a tuple (`CTA_TUPLE_PROTO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum L4 {
    /// TCP, UDP, UDP-Lite, SCTP, DCCP, GRE.
    Ports {
        /// Which protocol.
        proto: PortProto,
        /// Source port (host byte order here; big-endian on the wire).
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP (IPv4, protocol 1): `CTA_PROTO_ICMP_TYPE/CODE/ID`.
    Icmp {
        /// ICMP type (the request type in the original tuple, the reply type in the reply tuple).
        icmp_type: u8,
        /// ICMP code.
        code: u8,
        /// Echo identifier.
        id: u16,
    },
    /// ICMPv6 (protocol 58): `CTA_PROTO_ICMPV6_TYPE/CODE/ID`.
    Icmpv6 {
        /// ICMPv6 type.
        icmp_type: u8,
        /// ICMPv6 code.
        code: u8,
        /// Echo identifier.
        id: u16,
    },
    /// Any other protocol: tracked by addresses only (the kernel's generic tracker).
    Other(u8),
}

impl L4 {
    /// The IP protocol number (`CTA_PROTO_NUM`).
    pub fn proto_number(&self) -> u8 {
        match self {
            L4::Ports { proto, .. } => proto.number(),
            L4::Icmp { .. } => 1,
            L4::Icmpv6 { .. } => 58,
            L4::Other(n) => *n,
        }
    }

    /// The "port" a NAT range manipulates on the source side: the source port, or the ICMP id.
    fn src_id(&self) -> Option<u16> {
        match self {
            L4::Ports { src, .. } => Some(*src),
            L4::Icmp { id, .. } | L4::Icmpv6 { id, .. } => Some(*id),
            L4::Other(_) => None,
        }
    }

    /// The "port" on the destination side: the destination port, or the ICMP id.
    fn dst_id(&self) -> Option<u16> {
        match self {
            L4::Ports { dst, .. } => Some(*dst),
            L4::Icmp { id, .. } | L4::Icmpv6 { id, .. } => Some(*id),
            L4::Other(_) => None,
        }
    }
}

/// A conntrack tuple (`CTA_TUPLE_ORIG`, `CTA_TUPLE_REPLY`, `CTA_TUPLE_MASTER`): addresses of one
/// family and the L4 part. The L3 family is the family of the addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol and ports / ICMP fields.
    pub l4: L4,
}

impl Tuple {
    /// True for an IPv6 tuple.
    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }

    /// The tuple the kernel would expect in the other direction without NAT (addresses and
    /// ports swapped; ICMP echo request types become replies).
    pub fn inverted(&self) -> Tuple {
        let l4 = match self.l4 {
            L4::Ports { proto, src, dst } => L4::Ports {
                proto,
                src: dst,
                dst: src,
            },
            L4::Icmp {
                icmp_type,
                code,
                id,
            } => L4::Icmp {
                icmp_type: icmp_invert(icmp_type),
                code,
                id,
            },
            L4::Icmpv6 {
                icmp_type,
                code,
                id,
            } => L4::Icmpv6 {
                icmp_type: icmpv6_invert(icmp_type),
                code,
                id,
            },
            L4::Other(n) => L4::Other(n),
        };
        Tuple {
            src: self.dst,
            dst: self.src,
            l4,
        }
    }
}

/// Echo/timestamp/info/mask request ↔ reply (`nf_conntrack_proto_icmp.c` invmap).
fn icmp_invert(t: u8) -> u8 {
    match t {
        8 => 0,
        0 => 8,
        13 => 14,
        14 => 13,
        15 => 16,
        16 => 15,
        17 => 18,
        18 => 17,
        t => t,
    }
}

/// ICMPv6 echo / node information request ↔ reply (`nf_conntrack_proto_icmpv6.c` invmap).
fn icmpv6_invert(t: u8) -> u8 {
    match t {
        128 => 129,
        129 => 128,
        139 => 140,
        140 => 139,
        t => t,
    }
}

/// TCP connection tracking state (`enum tcp_conntrack`, `CTA_PROTOINFO_TCP_STATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TcpState {
    /// TCP_CONNTRACK_NONE (0).
    None,
    /// SYN_SENT (1).
    SynSent,
    /// SYN_RECV (2).
    SynRecv,
    /// ESTABLISHED (3).
    Established,
    /// FIN_WAIT (4).
    FinWait,
    /// CLOSE_WAIT (5).
    CloseWait,
    /// LAST_ACK (6).
    LastAck,
    /// TIME_WAIT (7).
    TimeWait,
    /// CLOSE (8).
    Close,
    /// SYN_SENT2 (9; formerly LISTEN).
    SynSent2,
    /// A value this code does not know.
    Other(u8),
}

impl TcpState {
    /// The kernel's number.
    pub fn number(self) -> u8 {
        match self {
            TcpState::None => 0,
            TcpState::SynSent => 1,
            TcpState::SynRecv => 2,
            TcpState::Established => 3,
            TcpState::FinWait => 4,
            TcpState::CloseWait => 5,
            TcpState::LastAck => 6,
            TcpState::TimeWait => 7,
            TcpState::Close => 8,
            TcpState::SynSent2 => 9,
            TcpState::Other(n) => n,
        }
    }

    /// From the kernel's number (unknown values kept as [`TcpState::Other`]).
    pub fn from_number(n: u8) -> TcpState {
        match n {
            0 => TcpState::None,
            1 => TcpState::SynSent,
            2 => TcpState::SynRecv,
            3 => TcpState::Established,
            4 => TcpState::FinWait,
            5 => TcpState::CloseWait,
            6 => TcpState::LastAck,
            7 => TcpState::TimeWait,
            8 => TcpState::Close,
            9 => TcpState::SynSent2,
            n => TcpState::Other(n),
        }
    }
}

/// TCP protocol info (`CTA_PROTOINFO_TCP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TcpInfo {
    /// Tracking state.
    pub state: TcpState,
    /// Window scale shift of the original direction (`CTA_PROTOINFO_TCP_WSCALE_ORIGINAL`).
    pub wscale_orig: u8,
    /// Window scale shift of the reply direction.
    pub wscale_reply: u8,
    /// [`tcp_flags`] of the original direction.
    pub flags_orig: u8,
    /// [`tcp_flags`] of the reply direction.
    pub flags_reply: u8,
}

/// TCP sequence adjustment of one direction (`CTA_SEQ_ADJ_ORIG` / `CTA_SEQ_ADJ_REPLY`), set when
/// a helper (FTP, SIP...) changed payload length under NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeqAdj {
    /// `CTA_SEQADJ_CORRECTION_POS`: sequence number where the correction starts.
    pub correction_pos: u32,
    /// `CTA_SEQADJ_OFFSET_BEFORE`: offset before that position.
    pub offset_before: u32,
    /// `CTA_SEQADJ_OFFSET_AFTER`: offset after it.
    pub offset_after: u32,
}

/// One NAT manipulation as `CTA_NAT_SRC` / `CTA_NAT_DST` carry it: an address range and an
/// optional port (or ICMP id) range (`CTA_NAT_PROTO` → `CTA_PROTONAT_PORT_MIN/MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NatRange {
    /// `CTA_NAT_V4_MINIP` / `CTA_NAT_V6_MINIP`.
    pub min_addr: IpAddr,
    /// `CTA_NAT_V4_MAXIP` / `CTA_NAT_V6_MAXIP`.
    pub max_addr: IpAddr,
    /// Port (or ICMP id) range, inclusive; `None` leaves the port alone.
    pub ports: Option<(u16, u16)>,
}

impl NatRange {
    /// A range mapping to exactly one address (and port, if given).
    pub fn single(addr: IpAddr, port: Option<u16>) -> NatRange {
        NatRange {
            min_addr: addr,
            max_addr: addr,
            ports: port.map(|p| (p, p)),
        }
    }
}

/// The NAT of a connection as the kernel takes it on create.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Nat {
    /// Source NAT (`CTA_NAT_SRC`): the original source becomes this.
    pub src: Option<NatRange>,
    /// Destination NAT (`CTA_NAT_DST`): the original destination becomes this.
    pub dst: Option<NatRange>,
}

impl Nat {
    /// True if there is no translation.
    pub fn is_none(&self) -> bool {
        self.src.is_none() && self.dst.is_none()
    }
}

/// The identity of a connection across the cluster: the original tuple and the zone. Updates
/// of the same key collapse into the latest snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnKey {
    /// Original-direction tuple.
    pub orig: Tuple,
    /// Conntrack zone.
    pub zone: u16,
}

/// One conntrack entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Conn {
    /// Original-direction tuple (`CTA_TUPLE_ORIG`).
    pub orig: Tuple,
    /// Reply-direction tuple (`CTA_TUPLE_REPLY`); differs from `orig.inverted()` under NAT.
    pub reply: Tuple,
    /// `IPS_*` bits ([`status`]).
    pub status: u32,
    /// Seconds until expiry (`CTA_TIMEOUT`); sent relative. `None` if an event did not carry it.
    pub timeout: Option<u32>,
    /// `CTA_MARK` (0 when the kernel omits it).
    pub mark: u32,
    /// `CTA_ZONE` (0 is the default zone).
    pub zone: u16,
    /// TCP protocol info; `None` for other protocols or when an update did not carry it.
    pub tcp: Option<TcpInfo>,
    /// Sequence adjustment, original direction.
    pub seq_adj_orig: Option<SeqAdj>,
    /// Sequence adjustment, reply direction.
    pub seq_adj_reply: Option<SeqAdj>,
    /// Helper name (`CTA_HELP` → `CTA_HELP_NAME`), e.g. "ftp".
    pub helper: Option<String>,
    /// Connection labels bitmap (`CTA_LABELS`, up to 16 bytes).
    pub labels: Option<Vec<u8>>,
    /// The master's original tuple for an expected (related) connection (`CTA_TUPLE_MASTER`).
    pub master: Option<Tuple>,
    /// The kernel's `CTA_ID`: meaningful on this node only; never sent to peers as identity.
    pub id: Option<u32>,
}

impl Conn {
    /// A connection with the given tuples and everything else empty.
    pub fn new(orig: Tuple, reply: Tuple) -> Conn {
        Conn {
            orig,
            reply,
            status: 0,
            timeout: None,
            mark: 0,
            zone: 0,
            tcp: None,
            seq_adj_orig: None,
            seq_adj_reply: None,
            helper: None,
            labels: None,
            master: None,
            id: None,
        }
    }

    /// A connection without NAT: the reply tuple is the inverted original.
    pub fn without_nat(orig: Tuple) -> Conn {
        Conn::new(orig, orig.inverted())
    }

    /// The cluster-wide identity: original tuple and zone.
    pub fn key(&self) -> ConnKey {
        ConnKey {
            orig: self.orig,
            zone: self.zone,
        }
    }

    /// The NAT that turns `orig` into `reply`, as `CTA_NAT_SRC` / `CTA_NAT_DST` ranges.
    ///
    /// Source NAT shows as a reply destination that is not the original source (the port, or
    /// ICMP id, may change too); destination NAT as a reply source that is not the original
    /// destination. A NAT range always pins the exact port (or, for source NAT of ICMP, the
    /// id) the reply tuple shows, so the peer's kernel recreates the very same reply tuple
    /// (`min == max` makes the kernel take it even if it is in use, rather than pick another).
    /// ICMP destination NAT leaves the id alone (the id is one field; changing it is source
    /// NAT's doing).
    pub fn nat(&self) -> Nat {
        let (o, r) = (&self.orig, &self.reply);
        let mut nat = Nat::default();
        let is_ports = matches!(o.l4, L4::Ports { .. });
        let new_sport = r.l4.dst_id();
        if r.dst != o.src || o.l4.src_id() != new_sport {
            nat.src = Some(NatRange::single(r.dst, new_sport));
        }
        // For ICMP the id is one field: a changed id is source NAT's doing.
        let new_dport = if is_ports { r.l4.src_id() } else { None };
        if r.src != o.dst || (is_ports && o.l4.dst_id() != new_dport) {
            nat.dst = Some(NatRange::single(r.src, new_dport));
        }
        nat
    }

    /// Fold a newer report of the same connection into this snapshot: tuples, status, mark and
    /// zone are taken as they are; optional fields only when the newer report carries them
    /// (UPDATE events omit what did not change).
    pub fn merge_from(&mut self, newer: &Conn) {
        self.orig = newer.orig;
        self.reply = newer.reply;
        self.status = newer.status;
        self.mark = newer.mark;
        self.zone = newer.zone;
        if newer.timeout.is_some() {
            self.timeout = newer.timeout;
        }
        if newer.tcp.is_some() {
            self.tcp = newer.tcp;
        }
        if newer.seq_adj_orig.is_some() {
            self.seq_adj_orig = newer.seq_adj_orig;
        }
        if newer.seq_adj_reply.is_some() {
            self.seq_adj_reply = newer.seq_adj_reply;
        }
        if newer.helper.is_some() {
            self.helper.clone_from(&newer.helper);
        }
        if newer.labels.is_some() {
            self.labels.clone_from(&newer.labels);
        }
        if newer.master.is_some() {
            self.master = newer.master;
        }
        if newer.id.is_some() {
            self.id = newer.id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Tuple {
        Tuple {
            src,
            dst,
            l4: L4::Ports {
                proto: PortProto::Tcp,
                src: sport,
                dst: dport,
            },
        }
    }

    #[test]
    fn key_ignores_everything_but_orig_and_zone() {
        let orig = tcp(v4(192, 0, 2, 10), 40000, v4(198, 51, 100, 20), 80);
        let a = Conn::without_nat(orig);
        let mut b = a.clone();
        b.status = status::ASSURED | status::CONFIRMED;
        b.timeout = Some(300);
        b.mark = 7;
        b.id = Some(1234);
        b.reply = tcp(v4(198, 51, 100, 20), 80, v4(198, 51, 100, 1), 1024);
        assert_eq!(a.key(), b.key());
        let mut c = a.clone();
        c.zone = 1;
        assert_ne!(a.key(), c.key());
        let d = Conn::without_nat(tcp(v4(192, 0, 2, 10), 40001, v4(198, 51, 100, 20), 80));
        assert_ne!(a.key(), d.key());
        let mut set = std::collections::HashSet::new();
        set.insert(a.key());
        assert!(set.contains(&b.key()));
    }

    #[test]
    fn no_nat() {
        let c = Conn::without_nat(tcp(v4(192, 0, 2, 10), 40000, v4(198, 51, 100, 20), 80));
        assert!(c.nat().is_none());
        let icmp = Conn::without_nat(Tuple {
            src: v4(192, 0, 2, 10),
            dst: v4(198, 51, 100, 20),
            l4: L4::Icmp {
                icmp_type: 8,
                code: 0,
                id: 77,
            },
        });
        assert_eq!(
            icmp.reply.l4,
            L4::Icmp {
                icmp_type: 0,
                code: 0,
                id: 77
            }
        );
        assert!(icmp.nat().is_none());
    }

    #[test]
    fn snat_masquerade_keeps_port() {
        let orig = tcp(v4(192, 0, 2, 10), 40000, v4(198, 51, 100, 20), 80);
        let reply = tcp(v4(198, 51, 100, 20), 80, v4(198, 51, 100, 1), 40000);
        let nat = Conn::new(orig, reply).nat();
        // The port is pinned even though it did not change.
        assert_eq!(
            nat.src,
            Some(NatRange::single(v4(198, 51, 100, 1), Some(40000)))
        );
        assert_eq!(nat.dst, None);
    }

    #[test]
    fn snat_with_port_change() {
        let orig = tcp(v4(192, 0, 2, 10), 40000, v4(198, 51, 100, 20), 80);
        let reply = tcp(v4(198, 51, 100, 20), 80, v4(198, 51, 100, 1), 1025);
        let nat = Conn::new(orig, reply).nat();
        assert_eq!(
            nat.src,
            Some(NatRange {
                min_addr: v4(198, 51, 100, 1),
                max_addr: v4(198, 51, 100, 1),
                ports: Some((1025, 1025)),
            })
        );
        assert_eq!(nat.dst, None);
    }

    #[test]
    fn dnat_port_forward() {
        // client 198.51.100.20 → WAN VIP 198.51.100.1:8080, forwarded to 192.0.2.50:80
        let orig = tcp(v4(198, 51, 100, 20), 50000, v4(198, 51, 100, 1), 8080);
        let reply = tcp(v4(192, 0, 2, 50), 80, v4(198, 51, 100, 20), 50000);
        let nat = Conn::new(orig, reply).nat();
        assert_eq!(nat.src, None);
        assert_eq!(nat.dst, Some(NatRange::single(v4(192, 0, 2, 50), Some(80))));
    }

    #[test]
    fn dnat_and_snat_together() {
        let orig = tcp(v4(198, 51, 100, 20), 50000, v4(198, 51, 100, 1), 8080);
        let reply = tcp(v4(192, 0, 2, 50), 80, v4(192, 0, 2, 1), 50000);
        let nat = Conn::new(orig, reply).nat();
        assert_eq!(
            nat.src,
            Some(NatRange::single(v4(192, 0, 2, 1), Some(50000)))
        );
        assert_eq!(nat.dst, Some(NatRange::single(v4(192, 0, 2, 50), Some(80))));
    }

    #[test]
    fn icmp_snat_with_id_change_is_source_nat_only() {
        let orig = Tuple {
            src: v4(192, 0, 2, 10),
            dst: v4(198, 51, 100, 20),
            l4: L4::Icmp {
                icmp_type: 8,
                code: 0,
                id: 77,
            },
        };
        let reply = Tuple {
            src: v4(198, 51, 100, 20),
            dst: v4(198, 51, 100, 1),
            l4: L4::Icmp {
                icmp_type: 0,
                code: 0,
                id: 5,
            },
        };
        let nat = Conn::new(orig, reply).nat();
        assert_eq!(
            nat.src,
            Some(NatRange::single(v4(198, 51, 100, 1), Some(5)))
        );
        assert_eq!(nat.dst, None);
    }

    #[test]
    fn ipv6_dnat_and_other_proto() {
        let a: IpAddr = "2001:db8::10"
            .parse()
            .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let b: IpAddr = "2001:db8:1::20"
            .parse()
            .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let c: IpAddr = "2001:db8::50"
            .parse()
            .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let orig = Tuple {
            src: a,
            dst: b,
            l4: L4::Other(89),
        };
        let reply = Tuple {
            src: c,
            dst: a,
            l4: L4::Other(89),
        };
        let nat = Conn::new(orig, reply).nat();
        assert_eq!(nat.src, None);
        assert_eq!(nat.dst, Some(NatRange::single(c, None)));
        assert!(orig.is_ipv6());
    }

    #[test]
    fn merge_keeps_what_an_update_omits() {
        let orig = tcp(v4(192, 0, 2, 10), 40000, v4(198, 51, 100, 20), 80);
        let mut full = Conn::without_nat(orig);
        full.timeout = Some(120);
        full.tcp = Some(TcpInfo {
            state: TcpState::Established,
            wscale_orig: 7,
            wscale_reply: 7,
            flags_orig: tcp_flags::WINDOW_SCALE,
            flags_reply: tcp_flags::WINDOW_SCALE,
        });
        full.helper = Some("ftp".into());
        let mut update = Conn::without_nat(orig);
        update.status = status::ASSURED;
        update.mark = 9;
        update.timeout = Some(431999);
        full.merge_from(&update);
        assert_eq!(full.status, status::ASSURED);
        assert_eq!(full.mark, 9);
        assert_eq!(full.timeout, Some(431999));
        assert_eq!(full.tcp.map(|t| t.state), Some(TcpState::Established));
        assert_eq!(full.helper.as_deref(), Some("ftp"));
    }

    #[test]
    fn numbers_round_trip() {
        for n in 0..=255u8 {
            assert_eq!(TcpState::from_number(n).number(), n);
            if let Some(p) = PortProto::from_number(n) {
                assert_eq!(p.number(), n);
            }
        }
    }
}
