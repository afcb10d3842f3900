//! Gratuitous ARP and unsolicited neighbour advertisements, hand-built and sent with AF_PACKET
//! so that they leave with exactly the MAC and addresses we choose (the virtual MAC of a VHID,
//! a VIP as sender even before the stack has fully set it up).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::LinuxError;

pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// ff02::1, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// 33:33:00:00:00:01, the Ethernet address of ff02::1.
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// Length of a gratuitous ARP frame: 14 + 28, padded to the 60-byte Ethernet minimum.
pub const GARP_FRAME_LEN: usize = 60;
/// Length of an unsolicited NA frame: 14 Ethernet + 40 IPv6 + 32 ICMPv6.
pub const NA_FRAME_LEN: usize = 86;

const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// A broadcast ARP request with sender = target = `ip` and sender hardware address `mac`
/// (RFC 5227 announcement; target hardware address zero).
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut f = [0u8; GARP_FRAME_LEN];
    f[0..6].copy_from_slice(&BROADCAST_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // htype Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // ptype IPv4
    f[18] = 6; // hlen
    f[19] = 4; // plen
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // op request
    f[22..28].copy_from_slice(&mac); // sha
    f[28..32].copy_from_slice(&ip.octets()); // spa
                                             // tha 32..38 stays zero
    f[38..42].copy_from_slice(&ip.octets()); // tpa
    f
}

/// An unsolicited neighbour advertisement for `ip` to ff02::1: hop limit 255, ICMPv6 type 136,
/// Override set, Solicited clear, Router as given, and a target link-layer address option
/// carrying `mac`. The IPv6 source is `ip` itself.
pub fn unsolicited_na_frame(mac: [u8; 6], ip: Ipv6Addr, router: bool) -> [u8; NA_FRAME_LEN] {
    let mut f = [0u8; NA_FRAME_LEN];
    // Ethernet
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    // IPv6 header
    f[14] = 0x60; // version 6, traffic class 0, flow label 0
    f[18..20].copy_from_slice(&32u16.to_be_bytes()); // payload length
    f[20] = 58; // next header ICMPv6
    f[21] = 255; // hop limit
    f[22..38].copy_from_slice(&ip.octets());
    f[38..54].copy_from_slice(&ALL_NODES.octets());
    // ICMPv6 neighbour advertisement
    f[54] = 136;
    f[55] = 0; // code
               // checksum 56..58 below
    f[58] = NA_OVERRIDE | if router { NA_ROUTER } else { 0 };
    debug_assert_eq!(f[58] & NA_SOLICITED, 0);
    f[62..78].copy_from_slice(&ip.octets()); // target
    f[78] = 2; // option: target link-layer address
    f[79] = 1; // length in units of 8 bytes
    f[80..86].copy_from_slice(&mac);
    let sum = icmpv6_checksum(ip, ALL_NODES, &f[54..86]);
    f[56..58].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The ICMPv6 checksum (RFC 4443 2.3): one's complement of the one's complement sum over the
/// IPv6 pseudo-header (source, destination, upper-layer length, next header 58) and `msg`,
/// whose checksum field must be zero.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        let mut chunks = bytes.chunks_exact(2);
        for c in &mut chunks {
            sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u64::from(u16::from_be_bytes([*last, 0]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends one gratuitous ARP for `ip` with sender MAC `mac` out of interface `ifindex`.
pub fn gratuitous_arp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<(), LinuxError> {
    send_frame(ifindex, BROADCAST_MAC, ETH_P_ARP, &garp_frame(mac, ip)).map_err(|source| {
        LinuxError::Announce {
            what: "gratuitous ARP",
            ifindex,
            addr: IpAddr::V4(ip),
            source,
        }
    })
}

/// Sends one unsolicited neighbour advertisement for `ip` with link-layer address `mac` out of
/// interface `ifindex`. The Router flag is set when IPv6 forwarding is on for that interface
/// (as keepalived does): hosts drop a router from their default-router list when an NA for it
/// arrives with the flag clear (RFC 4861 7.2.5).
pub fn unsolicited_na(ifindex: u32, mac: [u8; 6], ip: Ipv6Addr) -> Result<(), LinuxError> {
    unsolicited_na_with_router_flag(ifindex, mac, ip, ipv6_forwarding(ifindex))
}

/// As [`unsolicited_na`] with the Router flag chosen by the caller.
pub fn unsolicited_na_with_router_flag(
    ifindex: u32,
    mac: [u8; 6],
    ip: Ipv6Addr,
    router: bool,
) -> Result<(), LinuxError> {
    send_frame(
        ifindex,
        ALL_NODES_MAC,
        ETH_P_IPV6,
        &unsolicited_na_frame(mac, ip, router),
    )
    .map_err(|source| LinuxError::Announce {
        what: "unsolicited neighbour advertisement",
        ifindex,
        addr: IpAddr::V6(ip),
        source,
    })
}

/// Whether IPv6 forwarding is on for the interface (false when it cannot be read).
fn ipv6_forwarding(ifindex: u32) -> bool {
    let Ok(name) = nix::net::if_::if_indextoname(ifindex) else {
        return false;
    };
    let Ok(name) = name.into_string() else {
        return false;
    };
    crate::sysctl::read(&format!("net/ipv6/conf/{name}/forwarding"))
        .map(|v| v.trim() != "0")
        .unwrap_or(false)
}

/// Sends one complete Ethernet frame out of `ifindex` on a send-only AF_PACKET socket.
fn send_frame(ifindex: u32, dst_mac: [u8; 6], ethertype: u16, frame: &[u8]) -> io::Result<()> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
    // Protocol 0: the socket receives nothing, it only sends.
    let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
    let mut addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0; 8],
    };
    addr.sll_addr[..6].copy_from_slice(&dst_mac);
    // SAFETY: the fd is a valid open socket owned by `sock`; `frame` is a live slice whose
    // pointer and length are passed together; `addr` is a fully initialised sockaddr_ll on this
    // stack frame and its exact size is passed. The kernel only reads both buffers.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast::<libc::c_void>(),
            frame.len(),
            libc::MSG_DONTWAIT,
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != frame.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {n} of {} bytes", frame.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x07];

    #[test]
    fn garp_bytes() {
        let f = garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 1));
        #[rustfmt::skip]
        let want: [u8; 42] = [
            // Ethernet: dst broadcast, src, type ARP
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x00, 0x00, 0x5e, 0x00, 0x01, 0x07,
            0x08, 0x06,
            // ARP: Ethernet/IPv4, 6/4, request
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
            // sender MAC, sender IP
            0x00, 0x00, 0x5e, 0x00, 0x01, 0x07, 192, 0, 2, 1,
            // target MAC zero, target IP = sender IP
            0, 0, 0, 0, 0, 0, 192, 0, 2, 1,
        ];
        assert_eq!(&f[..42], &want[..]);
        assert_eq!(&f[42..], &[0u8; 18][..], "padding to 60 bytes");
    }

    #[rustfmt::skip]
    const NA_2001_DB8_1: [u8; NA_FRAME_LEN] = [
        // Ethernet: dst 33:33:00:00:00:01, src, type IPv6
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x5e, 0x00, 0x01, 0x07,
        0x86, 0xdd,
        // IPv6: v6, payload 32, next header 58, hop limit 255
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff,
        // src 2001:db8::1
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        // dst ff02::1
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        // ICMPv6: type 136, code 0, checksum 0x9c24, computed apart from this crate with
        // Python: sum(struct.unpack('!38H', src + dst + struct.pack('!I', 32) + b'\0\0\0\x3a'
        // + msg)), folded and inverted
        0x88, 0x00, 0x9c, 0x24,
        // flags: Override only
        0x20, 0x00, 0x00, 0x00,
        // target 2001:db8::1
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        // option 2 (target link-layer address), length 1, MAC
        0x02, 0x01, 0x00, 0x00, 0x5e, 0x00, 0x01, 0x07,
    ];

    #[test]
    fn na_bytes() {
        let ip: Ipv6Addr = "2001:db8::1".parse().expect("literal");
        let f = unsolicited_na_frame(MAC, ip, false);
        assert_eq!(f, NA_2001_DB8_1);
    }

    #[test]
    fn na_router_flag() {
        let ip: Ipv6Addr = "2001:db8::1".parse().expect("literal");
        let f = unsolicited_na_frame(MAC, ip, true);
        assert_eq!(f[58], 0xa0, "Router + Override, Solicited clear");
        assert_eq!(independent_sum(&f), 0xffff);
    }

    /// Verifies a frame's ICMPv6 checksum without `icmpv6_checksum`: the one's complement sum of
    /// pseudo-header + message *including* the checksum field must be 0xffff.
    fn independent_sum(f: &[u8]) -> u32 {
        let mut words: Vec<u32> = Vec::new();
        let be = |b: &[u8]| (u32::from(b[0]) << 8) | u32::from(b[1]);
        for i in (22..54).step_by(2) {
            words.push(be(&f[i..])); // src and dst from the IPv6 header
        }
        words.push(0);
        words.push(u32::from(f[18]) << 8 | u32::from(f[19])); // length from the header
        words.push(u32::from(f[20])); // next header
        for i in (54..f.len()).step_by(2) {
            words.push(be(&f[i..]));
        }
        let mut s: u32 = words.iter().sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s
    }

    #[test]
    fn na_checksum_verifies_independently() {
        for ip in [
            "2001:db8::1",
            "2001:db8:ffff::abcd",
            "fe80::200:5eff:fe00:107",
        ] {
            let ip: Ipv6Addr = ip.parse().expect("literal");
            for router in [false, true] {
                let f = unsolicited_na_frame([0x02, 0xfe, 0xdc, 0xba, 0x98, 0x76], ip, router);
                assert_eq!(independent_sum(&f), 0xffff, "{ip} router={router}");
            }
        }
    }

    #[test]
    fn checksum_of_odd_length_pads_with_zero() {
        let src = Ipv6Addr::UNSPECIFIED;
        let dst = Ipv6Addr::UNSPECIFIED;
        // pseudo-header: len 1 -> word 0x0001, next header 0x003a; message 0xab -> 0xab00.
        assert_eq!(
            icmpv6_checksum(src, dst, &[0xab]),
            !(0x0001u16 + 0x003a + 0xab00)
        );
    }
}
