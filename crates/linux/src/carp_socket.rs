//! Raw IP protocol 112 sockets (CARP, and VRRP which shares the protocol number), one per
//! (interface, address family).
//!
//! Linux hands every proto-112 packet of the namespace to every such raw socket;
//! `SO_BINDTODEVICE` keeps one interface's socket to its own interface. The multicast group is
//! joined on the interface's index, multicast output goes out of that interface with TTL / hop
//! limit 255, and our own packets are not looped back.
//!
//! Source address: IPv4 sends from the interface's own primary address (never a Tandem VIP),
//! set through `IP_MULTICAST_IF` (`ip_mreqn`: address and ifindex) rather than `bind()`: a raw
//! IPv4 socket bound to an address only receives packets *destined to* that address, so binding
//! would hide every advertisement sent to 224.0.0.18. IPv6 binds to the link-local address (raw
//! IPv6 sockets still receive joined multicast groups when bound), with `IPV6_FREEBIND` so that
//! the socket can be opened while duplicate address detection is still running on the link.

use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

use netlink_packet_route::AddressFamily;
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::addrs::{dump_blocking, AddressInfo};
use crate::error::{DecodeError, Family, LinuxError};

/// IP protocol number of CARP (and VRRP).
pub const CARP_PROTO: u8 = 112;
/// IPv4 group CARP advertisements are sent to.
pub const CARP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 group CARP advertisements are sent to.
pub const CARP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit every advertisement is sent with and must arrive with.
pub const CARP_TTL: u8 = 255;
/// DSCP CS6 (network control), as keepalived sends VRRP.
const TOS_NETWORK_CONTROL: u32 = 0xc0;
/// Larger than any advertisement (CARP: 36 bytes, VRRPv3: at most 8 + 255 * 16).
const RECV_BUF: usize = 8192;

/// One advertisement as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAdvert {
    /// Source address of the IP packet.
    pub src: IpAddr,
    /// Destination address (224.0.0.18 / ff02::12, or ours for unicast).
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6) it arrived with. Anything but 255 came through a router
    /// and must be dropped (see [`ReceivedAdvert::ttl_ok`]).
    pub ttl: u8,
    /// The CARP/VRRP message: everything after the IP header.
    pub payload: Vec<u8>,
}

impl ReceivedAdvert {
    /// Whether the TTL / hop limit is 255, as CARP and VRRP require.
    pub fn ttl_ok(&self) -> bool {
        self.ttl == CARP_TTL
    }
}

/// A raw protocol-112 socket on one interface for one address family.
pub struct CarpSocket {
    fd: AsyncFd<Socket>,
    ifname: String,
    ifindex: u32,
    family: Family,
    local: IpAddr,
    /// A receive-only socket for unicast adverts ([`CarpSocket::open_v6_unicast_rx`]).
    unicast_rx: bool,
}

impl std::fmt::Debug for CarpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarpSocket")
            .field("ifname", &self.ifname)
            .field("ifindex", &self.ifindex)
            .field("family", &self.family)
            .field("local", &self.local)
            .finish()
    }
}

/// Index of an interface by name.
pub fn ifindex_of(ifname: &str) -> Result<u32, LinuxError> {
    nix::net::if_::if_nametoindex(ifname).map_err(|e| LinuxError::NoSuchInterface {
        ifname: ifname.to_owned(),
        source: e.into(),
    })
}

/// The IPv4 address a CARP socket on this interface sends from: the first primary address that
/// Tandem did not add; failing that any address Tandem did not add.
pub fn pick_source_v4(addrs: &[AddressInfo]) -> Option<Ipv4Addr> {
    let own = |a: &&AddressInfo| a.addr.is_ipv4() && !a.tandem;
    addrs
        .iter()
        .filter(own)
        .find(|a| !a.secondary)
        .or_else(|| addrs.iter().find(own))
        .and_then(|a| match a.addr {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
}

/// The IPv6 link-local address a CARP socket on this interface sends from, preferring one whose
/// duplicate address detection has finished.
pub fn pick_source_v6(addrs: &[AddressInfo]) -> Option<Ipv6Addr> {
    let link_local = |a: &&AddressInfo| match a.addr {
        IpAddr::V6(v6) => !a.tandem && (a.link_scope || v6.segments()[0] & 0xffc0 == 0xfe80),
        IpAddr::V4(_) => false,
    };
    addrs
        .iter()
        .filter(link_local)
        .find(|a| !a.tentative)
        .or_else(|| addrs.iter().find(link_local))
        .and_then(|a| match a.addr {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        })
}

/// The IPv6 address a socket with unicast peers sends from, as keepalived's `unicast_src_ip`:
/// peers reached at global addresses expect adverts from one (a listed peer's address), not
/// from a link-local one. The first address Tandem did not add in the prefix of one of the
/// global `peers`, else the first global one; `None` when every peer is link-local (then the
/// link-local address serves) or the interface has no global address.
pub fn pick_source_v6_for_peers(addrs: &[AddressInfo], peers: &[Ipv6Addr]) -> Option<Ipv6Addr> {
    let is_ll = |a: &Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
    let global_peers: Vec<&Ipv6Addr> = peers.iter().filter(|p| !is_ll(p)).collect();
    if global_peers.is_empty() {
        return None;
    }
    let own: Vec<(Ipv6Addr, u8)> = addrs
        .iter()
        .filter(|a| !a.tandem && !a.link_scope)
        .filter_map(|a| match a.addr {
            IpAddr::V6(v6) if !is_ll(&v6) => Some((v6, a.prefix)),
            _ => None,
        })
        .collect();
    let same_prefix = |(a, len): &(Ipv6Addr, u8)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
        global_peers
            .iter()
            .any(|p| u128::from(**p) & mask == u128::from(*a) & mask)
    };
    own.iter()
        .find(|a| same_prefix(a))
        .or_else(|| own.first())
        .map(|(a, _)| *a)
}

impl CarpSocket {
    /// The IPv6 socket for an interface with unicast `peers`: sending from a global address
    /// ([`pick_source_v6_for_peers`]) when a peer is global, else from the link-local one.
    pub fn open_v6_for_peers(ifname: &str, peers: &[Ipv6Addr]) -> Result<Self, LinuxError> {
        let ifindex = ifindex_of(ifname)?;
        let addrs =
            dump_blocking(ifindex, AddressFamily::Inet6).map_err(|source| LinuxError::Netlink {
                op: "dump IPv6 addresses",
                target: ifname.to_owned(),
                source,
            })?;
        match pick_source_v6_for_peers(&addrs, peers) {
            Some(src) => Self::open_v6_from(ifname, src),
            None => Self::open_v6(ifname),
        }
    }

    /// Opens the IPv4 socket on `ifname`, sending from the interface's primary IPv4 address
    /// (never an address Tandem added). Must be called inside a tokio runtime.
    pub fn open_v4(ifname: &str) -> Result<Self, LinuxError> {
        let ifindex = ifindex_of(ifname)?;
        let addrs =
            dump_blocking(ifindex, AddressFamily::Inet).map_err(|source| LinuxError::Netlink {
                op: "dump IPv4 addresses",
                target: ifname.to_owned(),
                source,
            })?;
        let src = pick_source_v4(&addrs).ok_or_else(|| LinuxError::NoIpv4Address {
            ifname: ifname.to_owned(),
        })?;
        Self::open_v4_from(ifname, src)
    }

    /// Opens the IPv4 socket on `ifname`, sending from `src` (the node's real address on it,
    /// as the node-local config names it).
    pub fn open_v4_from(ifname: &str, src: Ipv4Addr) -> Result<Self, LinuxError> {
        let ifindex = ifindex_of(ifname)?;
        let err = |op: &'static str| {
            move |source: io::Error| LinuxError::Socket {
                ifname: ifname.to_owned(),
                family: Family::V4,
                op,
                source,
            }
        };
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))
            .map_err(err("socket(AF_INET, SOCK_RAW, 112)"))?;
        sock.bind_device(Some(ifname.as_bytes()))
            .map_err(err("SO_BINDTODEVICE"))?;
        sock.join_multicast_v4_n(&CARP_GROUP_V4, &InterfaceIndexOrAddress::Index(ifindex))
            .map_err(err("IP_ADD_MEMBERSHIP 224.0.0.18"))?;
        set_multicast_if_v4(&sock, ifindex, src).map_err(err("IP_MULTICAST_IF"))?;
        sock.set_multicast_ttl_v4(u32::from(CARP_TTL))
            .map_err(err("IP_MULTICAST_TTL 255"))?;
        sock.set_ttl_v4(u32::from(CARP_TTL))
            .map_err(err("IP_TTL 255"))?;
        sock.set_multicast_loop_v4(false)
            .map_err(err("IP_MULTICAST_LOOP 0"))?;
        sock.set_tos_v4(TOS_NETWORK_CONTROL)
            .map_err(err("IP_TOS"))?;
        sock.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
        let fd = register(sock, "CarpSocket::open_v4")?;
        Ok(CarpSocket {
            fd,
            ifname: ifname.to_owned(),
            ifindex,
            family: Family::V4,
            local: IpAddr::V4(src),
            unicast_rx: false,
        })
    }

    /// Opens the IPv6 socket on `ifname`, sending from the interface's link-local address.
    /// Must be called inside a tokio runtime.
    pub fn open_v6(ifname: &str) -> Result<Self, LinuxError> {
        let ifindex = ifindex_of(ifname)?;
        let addrs =
            dump_blocking(ifindex, AddressFamily::Inet6).map_err(|source| LinuxError::Netlink {
                op: "dump IPv6 addresses",
                target: ifname.to_owned(),
                source,
            })?;
        let src = pick_source_v6(&addrs).ok_or_else(|| LinuxError::NoLinkLocalAddress {
            ifname: ifname.to_owned(),
        })?;
        Self::open_v6_from(ifname, src)
    }

    /// Opens the IPv6 socket on `ifname`, sending from `src` (normally its link-local address).
    pub fn open_v6_from(ifname: &str, src: Ipv6Addr) -> Result<Self, LinuxError> {
        let ifindex = ifindex_of(ifname)?;
        let err = |op: &'static str| {
            move |source: io::Error| LinuxError::Socket {
                ifname: ifname.to_owned(),
                family: Family::V6,
                op,
                source,
            }
        };
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(112)))
            .map_err(err("socket(AF_INET6, SOCK_RAW, 112)"))?;
        sock.bind_device(Some(ifname.as_bytes()))
            .map_err(err("SO_BINDTODEVICE"))?;
        sock.join_multicast_v6(&CARP_GROUP_V6, ifindex)
            .map_err(err("IPV6_JOIN_GROUP ff02::12"))?;
        sock.set_multicast_if_v6(ifindex)
            .map_err(err("IPV6_MULTICAST_IF"))?;
        sock.set_multicast_hops_v6(u32::from(CARP_TTL))
            .map_err(err("IPV6_MULTICAST_HOPS 255"))?;
        sock.set_unicast_hops_v6(u32::from(CARP_TTL))
            .map_err(err("IPV6_UNICAST_HOPS 255"))?;
        sock.set_multicast_loop_v6(false)
            .map_err(err("IPV6_MULTICAST_LOOP 0"))?;
        sock.set_recv_hoplimit_v6(true)
            .map_err(err("IPV6_RECVHOPLIMIT"))?;
        setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true)
            .map_err(|e| err("IPV6_RECVPKTINFO")(e.into()))?;
        sock.set_tclass_v6(TOS_NETWORK_CONTROL)
            .map_err(err("IPV6_TCLASS"))?;
        // The link-local address may still be tentative (DAD runs for a second or so after the
        // link comes up); without FREEBIND the bind would fail with EADDRNOTAVAIL.
        sock.set_freebind_v6(true).map_err(err("IPV6_FREEBIND"))?;
        let scope = if src.segments()[0] & 0xffc0 == 0xfe80 {
            ifindex
        } else {
            0
        };
        sock.bind(&SocketAddrV6::new(src, 0, 0, scope).into())
            .map_err(err("bind to the link-local address"))?;
        sock.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
        let fd = register(sock, "CarpSocket::open_v6")?;
        Ok(CarpSocket {
            fd,
            ifname: ifname.to_owned(),
            ifindex,
            family: Family::V6,
            local: IpAddr::V6(src),
            unicast_rx: false,
        })
    }

    /// A receive-only IPv6 socket on `ifname` for unicast adverts to any of this node's
    /// addresses (unicast peers): the socket of [`CarpSocket::open_v6_from`] is bound to one
    /// address, `bound`, and a bound raw IPv6 socket only receives packets to that address or
    /// to joined groups. This one is not bound, and its [`CarpSocket::recv`] skips what the
    /// bound socket already receives (groups and `bound`), so nothing arrives twice.
    pub fn open_v6_unicast_rx(ifname: &str, bound: Ipv6Addr) -> Result<Self, LinuxError> {
        let ifindex = ifindex_of(ifname)?;
        let err = |op: &'static str| {
            move |source: io::Error| LinuxError::Socket {
                ifname: ifname.to_owned(),
                family: Family::V6,
                op,
                source,
            }
        };
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(112)))
            .map_err(err("socket(AF_INET6, SOCK_RAW, 112)"))?;
        sock.bind_device(Some(ifname.as_bytes()))
            .map_err(err("SO_BINDTODEVICE"))?;
        sock.set_recv_hoplimit_v6(true)
            .map_err(err("IPV6_RECVHOPLIMIT"))?;
        setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true)
            .map_err(|e| err("IPV6_RECVPKTINFO")(e.into()))?;
        sock.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
        let fd = register(sock, "CarpSocket::open_v6_unicast_rx")?;
        Ok(CarpSocket {
            fd,
            ifname: ifname.to_owned(),
            ifindex,
            family: Family::V6,
            local: IpAddr::V6(bound),
            unicast_rx: true,
        })
    }

    /// Receives the next proto-112 packet on this interface. A [`LinuxError::Decode`] is about
    /// that one packet only ([`LinuxError::is_per_packet`]); call `recv` again.
    pub async fn recv(&self) -> Result<ReceivedAdvert, LinuxError> {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let raw = loop {
                let mut guard = self
                    .fd
                    .readable()
                    .await
                    .map_err(|e| self.io_err("poll", e))?;
                match guard.try_io(|inner| recv_raw(inner.get_ref(), &mut buf, self.family)) {
                    Ok(result) => break result.map_err(|e| self.io_err("recvmsg", e))?,
                    Err(_would_block) => continue,
                }
            };
            if self.unicast_rx {
                // What the bound socket receives is its to report.
                match raw.dst {
                    Some(d) if !d.is_multicast() && IpAddr::V6(d) != self.local => {}
                    _ => continue,
                }
            }
            return self.decode(raw, &buf);
        }
    }

    /// Sends `payload` (a complete CARP/VRRP message) to 224.0.0.18 / ff02::12 with TTL 255.
    pub async fn send(&self, payload: &[u8]) -> Result<(), LinuxError> {
        let dst: SocketAddr = match self.family {
            Family::V4 => SocketAddrV4::new(CARP_GROUP_V4, 0).into(),
            Family::V6 => SocketAddrV6::new(CARP_GROUP_V6, 0, 0, self.ifindex).into(),
        };
        self.send_to(payload, dst.ip()).await
    }

    /// Sends `payload` to `dst` (unicast peers, as VRRP's unicast mode), TTL 255.
    pub async fn send_to(&self, payload: &[u8], dst: IpAddr) -> Result<(), LinuxError> {
        let dst: SocketAddr = match (self.family, dst) {
            (Family::V4, IpAddr::V4(a)) => SocketAddrV4::new(a, 0).into(),
            (Family::V6, IpAddr::V6(a)) => {
                let scope = if a.is_multicast() || a.segments()[0] & 0xffc0 == 0xfe80 {
                    self.ifindex
                } else {
                    0
                };
                SocketAddrV6::new(a, 0, 0, scope).into()
            }
            _ => {
                return Err(self.io_err(
                    "send (address family mismatch)",
                    io::Error::from(io::ErrorKind::InvalidInput),
                ))
            }
        };
        let dst = socket2::SockAddr::from(dst);
        loop {
            let mut guard = self
                .fd
                .writable()
                .await
                .map_err(|e| self.io_err("poll", e))?;
            match guard.try_io(|inner| inner.get_ref().send_to(payload, &dst)) {
                Ok(Ok(n)) if n == payload.len() => return Ok(()),
                Ok(Ok(n)) => {
                    return Err(self.io_err(
                        "sendto",
                        io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("sent {n} of {} bytes", payload.len()),
                        ),
                    ))
                }
                Ok(Err(e)) => return Err(self.io_err("sendto", e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// The address advertisements are sent from (the daemon's tie-break address).
    pub fn local_addr(&self) -> IpAddr {
        self.local
    }

    /// Index of the interface this socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Name of the interface this socket is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Address family of this socket.
    pub fn family(&self) -> Family {
        self.family
    }

    fn io_err(&self, op: &'static str, source: io::Error) -> LinuxError {
        LinuxError::Socket {
            ifname: self.ifname.clone(),
            family: self.family,
            op,
            source,
        }
    }

    fn decode(&self, raw: RawRecv, buf: &[u8]) -> Result<ReceivedAdvert, LinuxError> {
        let decode_err = |from: Option<IpAddr>, source: DecodeError| LinuxError::Decode {
            ifname: self.ifname.clone(),
            family: self.family,
            from,
            source,
        };
        if raw.truncated {
            return Err(decode_err(
                raw.from,
                DecodeError::Truncated { capacity: RECV_BUF },
            ));
        }
        let data = buf.get(..raw.len).unwrap_or(buf);
        match self.family {
            Family::V4 => {
                let pkt = parse_ipv4(data).map_err(|e| decode_err(raw.from, e))?;
                if pkt.protocol != CARP_PROTO {
                    return Err(decode_err(
                        Some(pkt.src.into()),
                        DecodeError::WrongProtocol {
                            protocol: pkt.protocol,
                        },
                    ));
                }
                Ok(ReceivedAdvert {
                    src: pkt.src.into(),
                    dst: pkt.dst.into(),
                    ttl: pkt.ttl,
                    payload: pkt.payload.to_vec(),
                })
            }
            Family::V6 => {
                let src = raw.from.ok_or_else(|| {
                    decode_err(
                        None,
                        DecodeError::MissingControl {
                            what: "source address",
                        },
                    )
                })?;
                let dst = raw.dst.ok_or_else(|| {
                    decode_err(
                        Some(src),
                        DecodeError::MissingControl {
                            what: "IPV6_PKTINFO",
                        },
                    )
                })?;
                let ttl = raw.hop_limit.ok_or_else(|| {
                    decode_err(
                        Some(src),
                        DecodeError::MissingControl {
                            what: "IPV6_HOPLIMIT",
                        },
                    )
                })?;
                Ok(ReceivedAdvert {
                    src,
                    dst: IpAddr::V6(dst),
                    ttl,
                    payload: data.to_vec(),
                })
            }
        }
    }
}

/// Registers the socket with the current tokio runtime's reactor.
pub(crate) fn register(sock: Socket, what: &'static str) -> Result<AsyncFd<Socket>, LinuxError> {
    // Registering panics outside a runtime; turn that into an error. (A runtime built without
    // `enable_io` still panics, as every tokio socket does.)
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(LinuxError::NoRuntime {
            what,
            source: io::Error::other("no tokio runtime in this thread"),
        });
    }
    // SAFETY (I/O safety, tokio#8587): `Socket` owns its fd; the AsyncFd owns the `Socket` and
    // nothing replaces or closes that fd while it is registered (it is closed only when the
    // AsyncFd drops, after deregistering).
    unsafe { AsyncFd::register(sock) }.map_err(|e| LinuxError::NoRuntime {
        what,
        source: e.into(),
    })
}

/// `IP_MULTICAST_IF` with a full `ip_mreqn`: outgoing interface by index *and* the source
/// address multicast packets get (the kernel stores both: `inet->mc_index`, `inet->mc_addr`).
fn set_multicast_if_v4(sock: &Socket, ifindex: u32, src: Ipv4Addr) -> io::Result<()> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr {
            s_addr: u32::from_ne_bytes(src.octets()),
        },
        imr_ifindex: ifindex,
    };
    // SAFETY: the fd is a valid open socket owned by `sock`; the pointer and length describe
    // `mreqn`, a plain C struct that lives on this stack frame for the duration of the call,
    // and the kernel only reads from it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            std::ptr::from_ref(&mreqn).cast::<libc::c_void>(),
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What one `recvmsg` gave, before decoding.
struct RawRecv {
    len: usize,
    truncated: bool,
    from: Option<IpAddr>,
    dst: Option<Ipv6Addr>,
    hop_limit: Option<u8>,
}

fn recv_raw(sock: &Socket, buf: &mut [u8], family: Family) -> io::Result<RawRecv> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        if family == Family::V6 {
            Some(&mut cmsg)
        } else {
            None
        },
        MsgFlags::MSG_DONTWAIT,
    )?;
    let from = msg.address.as_ref().and_then(|a| match a.family() {
        Some(nix::sys::socket::AddressFamily::Inet) => {
            a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip()))
        }
        Some(nix::sys::socket::AddressFamily::Inet6) => {
            a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip()))
        }
        _ => None,
    });
    let mut out = RawRecv {
        len: msg.bytes,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
        from,
        dst: None,
        hop_limit: None,
    };
    if family == Family::V6 {
        // A truncated control buffer (ENOBUFS from cmsgs()) leaves dst/hop limit unknown, which
        // decode reports as a per-packet error.
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        out.dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                    }
                    ControlMessageOwned::Ipv6HopLimit(h) => out.hop_limit = u8::try_from(h).ok(),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// An IPv4 packet as a raw socket receives it (header included), after checking the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    /// Bytes after the header (options skipped), up to the header's total length.
    pub payload: &'a [u8],
}

/// Parses the IPv4 header a raw socket hands up. Checks the version, the header length (IHL)
/// and the total length against what was received; never panics.
pub fn parse_ipv4(buf: &[u8]) -> Result<Ipv4Packet<'_>, DecodeError> {
    let len = buf.len();
    let fixed: &[u8; 20] = buf
        .get(..20)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::TooShort { len })?;
    let version = fixed[0] >> 4;
    if version != 4 {
        return Err(DecodeError::NotIpv4 { version });
    }
    let ihl = fixed[0] & 0x0f;
    let header_len = usize::from(ihl) * 4;
    if ihl < 5 || header_len > len {
        return Err(DecodeError::BadHeaderLength {
            ihl,
            header_len,
            len,
        });
    }
    let total_len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    if total_len < header_len || total_len > len {
        return Err(DecodeError::BadTotalLength {
            total_len,
            header_len,
            len,
        });
    }
    let payload = buf
        .get(header_len..total_len)
        .ok_or(DecodeError::BadTotalLength {
            total_len,
            header_len,
            len,
        })?;
    Ok(Ipv4Packet {
        src: Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]),
        dst: Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]),
        ttl: fixed[8],
        protocol: fixed[9],
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built IPv4 header of a CARP advertisement (payload shortened to 4 bytes).
    fn sample() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x10, 0x00, 0x18, // v4, IHL 5, TOS, total length 24
            0x12, 0x34, 0x00, 0x00, // id, flags/frag
            0xff, 0x70, 0x00, 0x00, // TTL 255, proto 112, checksum (not checked by us)
            192, 0, 2, 1, // src
            224, 0, 0, 18, // dst
        ];
        p.extend_from_slice(&[0x21, 0x07, 0x00, 0x07]);
        p
    }

    #[test]
    fn parses_a_plain_header() {
        let p = sample();
        let pkt = parse_ipv4(&p).expect("valid");
        assert_eq!(pkt.src, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(pkt.dst, CARP_GROUP_V4);
        assert_eq!(pkt.ttl, 255);
        assert_eq!(pkt.protocol, 112);
        assert_eq!(pkt.payload, &[0x21, 0x07, 0x00, 0x07]);
    }

    #[test]
    fn skips_options_and_trailing_padding() {
        let mut p = sample();
        p[0] = 0x46; // IHL 6: one 4-byte option word
        p.splice(20..20, [0x01, 0x01, 0x01, 0x00]); // NOP NOP NOP EOL
        p[3] = 28;
        p.extend_from_slice(&[0xee, 0xee]); // link-layer padding past total length
        let pkt = parse_ipv4(&p).expect("valid");
        assert_eq!(pkt.payload, &[0x21, 0x07, 0x00, 0x07]);
    }

    #[test]
    fn rejects_short_and_wrong_version() {
        assert_eq!(parse_ipv4(&[]), Err(DecodeError::TooShort { len: 0 }));
        assert_eq!(
            parse_ipv4(&sample()[..19]),
            Err(DecodeError::TooShort { len: 19 })
        );
        let mut p = sample();
        p[0] = 0x65;
        assert_eq!(parse_ipv4(&p), Err(DecodeError::NotIpv4 { version: 6 }));
    }

    #[test]
    fn rejects_bad_ihl() {
        let mut p = sample();
        p[0] = 0x44;
        assert!(matches!(
            parse_ipv4(&p),
            Err(DecodeError::BadHeaderLength { ihl: 4, .. })
        ));
        p[0] = 0x4f; // 60-byte header in a 24-byte packet
        assert!(matches!(
            parse_ipv4(&p),
            Err(DecodeError::BadHeaderLength {
                ihl: 15,
                header_len: 60,
                len: 24
            })
        ));
    }

    #[test]
    fn rejects_bad_total_length() {
        let mut p = sample();
        p[3] = 25; // claims one byte more than received
        assert!(matches!(
            parse_ipv4(&p),
            Err(DecodeError::BadTotalLength { total_len: 25, .. })
        ));
        p[3] = 19; // shorter than the header
        assert!(matches!(
            parse_ipv4(&p),
            Err(DecodeError::BadTotalLength { total_len: 19, .. })
        ));
        // Truncated capture of a longer packet.
        let p = sample();
        assert!(parse_ipv4(&p[..22]).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic pseudo-random inputs of every length up to 80 bytes.
        let mut x: u32 = 0x1234_5678;
        for len in 0..80 {
            for _ in 0..200 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        (x >> 24) as u8
                    })
                    .collect();
                if let Ok(p) = parse_ipv4(&buf) {
                    assert!(p.payload.len() <= buf.len().saturating_sub(20));
                }
            }
        }
    }

    #[test]
    fn source_selection_skips_vips_and_secondaries() {
        let a = |addr: &str, secondary, tandem, link_scope, tentative| AddressInfo {
            ifindex: 2,
            addr: addr.parse().expect("literal"),
            prefix: 24,
            secondary,
            tentative,
            link_scope,
            tandem,
        };
        let v4 = [
            a("192.0.2.1", false, true, false, false), // a VIP that became primary
            a("192.0.2.10", true, false, false, false),
            a("198.51.100.2", false, false, false, false),
        ];
        assert_eq!(pick_source_v4(&v4), Some(Ipv4Addr::new(198, 51, 100, 2)));
        assert_eq!(pick_source_v4(&v4[..2]), Some(Ipv4Addr::new(192, 0, 2, 10)));
        assert_eq!(pick_source_v4(&v4[..1]), None);
        assert_eq!(pick_source_v4(&[]), None);

        let v6 = [
            a("2001:db8::1", false, false, false, false),
            a("fe80::1", false, false, true, true),
            a("fe80::2", false, false, true, false),
        ];
        assert_eq!(pick_source_v6(&v6), "fe80::2".parse().ok());
        assert_eq!(pick_source_v6(&v6[..2]), "fe80::1".parse().ok());
        assert_eq!(pick_source_v6(&v6[..1]), None);
    }

    #[test]
    fn unicast_peers_pick_a_global_source_in_their_prefix() {
        let a = |addr: &str, prefix, tandem, link_scope| AddressInfo {
            ifindex: 2,
            addr: addr.parse().expect("literal"),
            prefix,
            secondary: false,
            tentative: false,
            link_scope,
            tandem,
        };
        let ip = |s: &str| s.parse::<Ipv6Addr>().expect("literal");
        let addrs = [
            a("fe80::1", 64, false, true),
            a("2001:db8::100", 64, true, false), // a VIP
            a("2001:db8:1::2", 64, false, false),
            a("2001:db8::2", 64, false, false),
        ];
        let pick = |peers: &[&str]| {
            let peers: Vec<Ipv6Addr> = peers.iter().map(|p| ip(p)).collect();
            pick_source_v6_for_peers(&addrs, &peers)
        };
        assert_eq!(pick(&["2001:db8::3"]), Some(ip("2001:db8::2")));
        assert_eq!(pick(&["2001:db8:1::3"]), Some(ip("2001:db8:1::2")));
        assert_eq!(pick(&["2001:db8:9::3"]), Some(ip("2001:db8:1::2")));
        assert_eq!(
            pick(&["fe80::3"]),
            None,
            "link-local peers: link-local source"
        );
        assert_eq!(pick(&[]), None);
        assert_eq!(
            pick_source_v6_for_peers(&addrs[..2], &[ip("2001:db8::3")]),
            None
        );
    }
}
