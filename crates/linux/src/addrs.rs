//! Interface addresses as the kernel reports them (RTM_NEWADDR), and a small blocking dump used
//! when a CARP socket is opened (which is synchronous) to pick its source address.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The `IFA_PROTO` value Tandem stamps on every address it adds (its VIPs), so that they can be
/// told apart from the node's own addresses: a CARP socket never sends from one, and a
/// restarted daemon can find VIPs it left behind. (Kernel-defined values are 0..=3.)
pub const TANDEM_ADDR_PROTO: u8 = 0x74;

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressInfo {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix: u8,
    /// IFA_F_SECONDARY (IPv4: a further address in the subnet of a primary one).
    pub secondary: bool,
    /// IFA_F_TENTATIVE (IPv6: duplicate address detection still running).
    pub tentative: bool,
    /// Link scope (IPv6 fe80::/10, IPv4 169.254/16 when so configured).
    pub link_scope: bool,
    /// Added by Tandem (carries [`TANDEM_ADDR_PROTO`]): a VIP.
    pub tandem: bool,
}

impl AddressInfo {
    /// Reads one RTM_NEWADDR message; `None` if it carries no address.
    pub(crate) fn from_message(msg: &AddressMessage) -> Option<AddressInfo> {
        let mut local = None;
        let mut address = None;
        let mut flags = u32::from(msg.header.flags.bits());
        let mut tandem = false;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Flags(f) => flags = f.bits(),
                AddressAttribute::Protocol(AddressProtocol::Other(p)) => {
                    tandem = *p == TANDEM_ADDR_PROTO
                }
                _ => {}
            }
        }
        // IPv4: IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on a
        // point-to-point link). IPv6: only IFA_ADDRESS unless point-to-point.
        let addr = local.or(address)?;
        Some(AddressInfo {
            ifindex: msg.header.index,
            addr,
            prefix: msg.header.prefix_len,
            secondary: flags & AddressFlags::Secondary.bits() != 0,
            tentative: flags & AddressFlags::Tentative.bits() != 0,
            link_scope: msg.header.scope == AddressScope::Link,
            tandem,
        })
    }
}

/// The header flags byte for a new address (the kernel also reads the full IFA_FLAGS).
pub(crate) fn nodad_header_flag() -> AddressHeaderFlags {
    AddressHeaderFlags::Nodad
}

/// Dumps the addresses of one interface with a blocking netlink socket (RTM_GETADDR).
pub(crate) fn dump_blocking(ifindex: u32, family: AddressFamily) -> io::Result<Vec<AddressInfo>> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    // A dump answers at once; the timeout only keeps a wedged kernel from hanging the daemon.
    socket2::SockRef::from(&sock).set_read_timeout(Some(std::time::Duration::from_secs(5)))?;

    let mut msg = AddressMessage::default();
    msg.header.family = family;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetAddress(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    sock.send(&buf, 0)?;

    let mut out = Vec::new();
    loop {
        let (data, _) = sock.recv_from_full()?;
        if data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink address dump ended without NLMSG_DONE",
            ));
        }
        let mut offset = 0;
        while offset < data.len() {
            let rest = data.get(offset..).unwrap_or_default();
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = msg.header.length as usize;
            if len == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "netlink message of length 0",
                ));
            }
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m))
                    if m.header.index == ifindex =>
                {
                    out.extend(AddressInfo::from_message(&m));
                }
                _ => {}
            }
            offset += (len + 3) & !3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn reads_flags_scope_and_protocol() {
        let mut m = AddressMessage::default();
        m.header.index = 7;
        m.header.prefix_len = 24;
        m.attributes.push(AddressAttribute::Address(
            Ipv4Addr::new(192, 0, 2, 9).into(),
        ));
        m.attributes
            .push(AddressAttribute::Local(Ipv4Addr::new(192, 0, 2, 1).into()));
        m.attributes.push(AddressAttribute::Flags(
            AddressFlags::Secondary | AddressFlags::Permanent,
        ));
        m.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(
                TANDEM_ADDR_PROTO,
            )));
        let info = AddressInfo::from_message(&m).expect("has an address");
        assert_eq!(info.addr, IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!((info.ifindex, info.prefix), (7, 24));
        assert!(info.secondary && info.tandem && !info.tentative && !info.link_scope);

        let mut m = AddressMessage::default();
        m.header.scope = AddressScope::Link;
        m.header.flags = AddressHeaderFlags::Tentative;
        m.attributes.push(AddressAttribute::Address(
            "fe80::1".parse::<Ipv6Addr>().expect("literal").into(),
        ));
        let info = AddressInfo::from_message(&m).expect("has an address");
        assert!(info.link_scope && info.tentative && !info.tandem);

        assert_eq!(AddressInfo::from_message(&AddressMessage::default()), None);
    }
}
