//! The VRRPv3 advertisement (RFC 5798 §5): 8 bytes and the addresses, after the IP header.
//!
//! ```text
//!  0: version(4) = 3 | type(4) = 1   1: VRID   2: priority   3: count of addresses
//!  4-5: reserved(4) | Max Adver Int (12 bits, centiseconds)   6-7: checksum
//!  8-: count IPv4 (4 bytes) or IPv6 (16 bytes) addresses, of the family of the IP packet
//! ```
//! The checksum covers the message and a pseudo-header (RFC 5798 §5.2.8, RFC 2460 §8.1):
//! for IPv6 `src | dst | length (32 bits) | 0 0 0 | 112`, for IPv4 (as keepalived and Wireshark
//! compute it) `src | dst | 0 | 112 | length (16 bits)`, with the packet's real source and
//! destination (224.0.0.18 / ff02::12, or the peer for unicast). Both layouts have the same
//! one's-complement sum as the other layout with the same addresses, so one function serves.
//!
//! CARP and VRRP share IP protocol 112 and the multicast groups; the version nibble tells
//! them apart (2 CARP, 3 VRRP).

use crate::units::{Centisecs, Vhid};
use crate::wire::internet_checksum;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const VERSION: u8 = 3;
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// The fixed part before the addresses.
pub const HEADER_LEN: usize = 8;
/// The IP protocol / next header of CARP and VRRP.
pub const PROTOCOL: u8 = 112;
/// The most addresses one advert can carry (the count is one byte).
pub const MAX_ADDRESSES: usize = 255;
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// The multicast group adverts of `src`'s family go to.
pub fn group_for(src: IpAddr) -> IpAddr {
    match src {
        IpAddr::V4(_) => IpAddr::V4(GROUP_V4),
        IpAddr::V6(_) => IpAddr::V6(GROUP_V6),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpAdvert {
    pub vrid: Vhid,
    /// 255 = address owner, 1..=254 backups, 0 = the master stops participating.
    pub priority: u8,
    pub max_adver_int: Centisecs,
    /// All of the family of the packet's source address.
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VrrpDecodeError {
    #[error("advert too short: {0} bytes, need {HEADER_LEN}")]
    TooShort(usize),
    #[error("unsupported VRRP version {0}")]
    BadVersion(u8),
    #[error("unsupported VRRP message type {0}")]
    BadType(u8),
    #[error("advert of {len} bytes does not hold exactly {count} addresses")]
    BadLength { len: usize, count: u8 },
    #[error("source and destination addresses of different families")]
    MixedFamilies,
    #[error("checksum mismatch")]
    BadChecksum,
    #[error("VRID 0 is not valid")]
    ZeroVrid,
    #[error("Max Adver Int 0 is not valid")]
    ZeroInterval,
}

fn addr_len(a: IpAddr) -> usize {
    match a {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

/// Parses an advert that arrived from `src` to `dst`. The length is checked once, against
/// the count; nothing after that can panic.
pub fn decode(payload: &[u8], src: IpAddr, dst: IpAddr) -> Result<VrrpAdvert, VrrpDecodeError> {
    let Some(h) = payload.first_chunk::<HEADER_LEN>() else {
        return Err(VrrpDecodeError::TooShort(payload.len()));
    };
    if h[0] >> 4 != VERSION {
        return Err(VrrpDecodeError::BadVersion(h[0] >> 4));
    }
    if h[0] & 0x0f != TYPE_ADVERTISEMENT {
        return Err(VrrpDecodeError::BadType(h[0] & 0x0f));
    }
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(VrrpDecodeError::MixedFamilies);
    }
    let count = h[3];
    let alen = addr_len(src);
    if payload.len() != HEADER_LEN + usize::from(count) * alen {
        return Err(VrrpDecodeError::BadLength {
            len: payload.len(),
            count,
        });
    }
    if checksum(src, dst, payload) != 0 {
        return Err(VrrpDecodeError::BadChecksum);
    }
    let vrid = Vhid::new(h[1]).ok_or(VrrpDecodeError::ZeroVrid)?;
    let max_adver_int = Centisecs::new(u16::from_be_bytes([h[4], h[5]]) & 0x0fff)
        .ok_or(VrrpDecodeError::ZeroInterval)?;
    let addresses = payload[HEADER_LEN..]
        .chunks_exact(alen)
        .map(
            |c| match (<[u8; 4]>::try_from(c), <[u8; 16]>::try_from(c)) {
                (Ok(v4), _) => IpAddr::V4(Ipv4Addr::from(v4)),
                (_, Ok(v6)) => IpAddr::V6(Ipv6Addr::from(v6)),
                // chunks_exact(4 or 16) yields nothing else.
                _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            },
        )
        .collect();
    Ok(VrrpAdvert {
        vrid,
        priority: h[2],
        max_adver_int,
        addresses,
    })
}

/// Serialises an advert sent from `src` to `dst`: reserved bits 0, the addresses of `src`'s
/// family in their order (others skipped, at most [`MAX_ADDRESSES`]), checksum last.
pub fn encode(a: &VrrpAdvert, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let addrs: Vec<IpAddr> = a
        .addresses
        .iter()
        .filter(|x| x.is_ipv4() == src.is_ipv4())
        .take(MAX_ADDRESSES)
        .copied()
        .collect();
    let mut b = Vec::with_capacity(HEADER_LEN + addrs.len() * addr_len(src));
    b.push((VERSION << 4) | TYPE_ADVERTISEMENT);
    b.push(a.vrid.get());
    b.push(a.priority);
    b.push(addrs.len() as u8); // at most MAX_ADDRESSES
    b.extend_from_slice(&(a.max_adver_int.get() & 0x0fff).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    for x in addrs {
        match x {
            IpAddr::V4(v4) => b.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => b.extend_from_slice(&v6.octets()),
        }
    }
    let sum = checksum(src, dst, &b);
    b[6..8].copy_from_slice(&sum.to_be_bytes());
    b
}

/// The internet checksum over the pseudo-header and `msg`: 0 over a message that carries a
/// valid checksum. With `src` and `dst` of different families there is no pseudo-header to
/// speak of; the addresses are summed anyway (and `decode` refuses such packets first).
pub fn checksum(src: IpAddr, dst: IpAddr, msg: &[u8]) -> u16 {
    let mut buf = Vec::with_capacity(40 + msg.len());
    for a in [src, dst] {
        match a {
            IpAddr::V4(v4) => buf.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => buf.extend_from_slice(&v6.octets()),
        }
    }
    // 32-bit length and three zeros then 112 (IPv6 layout); for IPv4 the length's upper
    // half is zero, so this sums the same as IPv4's `0 | 112 | len(16)`.
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, PROTOCOL]);
    buf.extend_from_slice(msg);
    internet_checksum(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    fn sample(addrs: &[&str]) -> VrrpAdvert {
        VrrpAdvert {
            vrid: Vhid::new(51).expect("nonzero"),
            priority: 100,
            max_adver_int: Centisecs::new(100).expect("valid"),
            addresses: addrs.iter().map(|a| ip(a)).collect(),
        }
    }

    #[test]
    fn round_trip_v4_and_v6() {
        let (s4, d4) = (ip("192.0.2.1"), group_for(ip("192.0.2.1")));
        let a = sample(&["192.0.2.100", "192.0.2.101"]);
        let b = encode(&a, s4, d4);
        assert_eq!(b.len(), 16);
        assert_eq!(b[0], 0x31);
        assert_eq!(decode(&b, s4, d4), Ok(a));
        let (s6, d6) = (ip("fe80::1"), group_for(ip("fe80::1")));
        let a = sample(&["fe80::100", "2001:db8::100"]);
        let b = encode(&a, s6, d6);
        assert_eq!(b.len(), 40);
        assert_eq!(decode(&b, s6, d6), Ok(a));
        // The pseudo-header counts: another destination breaks the checksum.
        assert_eq!(
            decode(&b, s6, ip("2001:db8::2")),
            Err(VrrpDecodeError::BadChecksum)
        );
    }

    #[test]
    fn encode_keeps_the_family_of_the_source() {
        let (s4, d4) = (ip("192.0.2.1"), ip("224.0.0.18"));
        let b = encode(&sample(&["2001:db8::1", "192.0.2.100"]), s4, d4);
        assert_eq!(b[3], 1);
        assert_eq!(
            decode(&b, s4, d4).map(|a| a.addresses),
            Ok(vec![ip("192.0.2.100")])
        );
    }

    #[test]
    fn rejects_each_broken_field() {
        let (s, d) = (ip("192.0.2.1"), ip("224.0.0.18"));
        let good = encode(&sample(&["192.0.2.100"]), s, d);
        assert_eq!(decode(&good[..7], s, d), Err(VrrpDecodeError::TooShort(7)));
        assert_eq!(
            decode(&good[..11], s, d),
            Err(VrrpDecodeError::BadLength { len: 11, count: 1 })
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            decode(&long, s, d),
            Err(VrrpDecodeError::BadLength { len: 13, count: 1 })
        );
        let mut v = good.clone();
        v[0] = 0x21;
        assert_eq!(decode(&v, s, d), Err(VrrpDecodeError::BadVersion(2)));
        let mut t = good.clone();
        t[0] = 0x32;
        assert_eq!(decode(&t, s, d), Err(VrrpDecodeError::BadType(2)));
        assert_eq!(
            decode(&good, s, ip("ff02::12")),
            Err(VrrpDecodeError::MixedFamilies)
        );
        let mut c = good.clone();
        c[9] ^= 1;
        assert_eq!(decode(&c, s, d), Err(VrrpDecodeError::BadChecksum));
        // Reserved bits are ignored on receive (the checksum still covers them).
        let mut r = good.clone();
        r[4] |= 0xf0;
        let fix = checksum(s, d, &{
            let mut z = r.clone();
            z[6] = 0;
            z[7] = 0;
            z
        });
        r[6..8].copy_from_slice(&fix.to_be_bytes());
        assert_eq!(decode(&r, s, d), Ok(sample(&["192.0.2.100"])));
    }

    #[test]
    fn zero_vrid_and_zero_interval_are_refused() {
        let (s, d) = (ip("192.0.2.1"), ip("224.0.0.18"));
        let reseal = |mut b: Vec<u8>| {
            b[6] = 0;
            b[7] = 0;
            let sum = checksum(s, d, &b);
            b[6..8].copy_from_slice(&sum.to_be_bytes());
            b
        };
        let good = encode(&sample(&[]), s, d);
        let mut z = good.clone();
        z[1] = 0;
        assert_eq!(decode(&reseal(z), s, d), Err(VrrpDecodeError::ZeroVrid));
        let mut i = good;
        i[4] = 0xf0;
        i[5] = 0;
        assert_eq!(decode(&reseal(i), s, d), Err(VrrpDecodeError::ZeroInterval));
    }
}
