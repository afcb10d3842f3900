//! A packed form of [`ConnKey`] for the engine's maps: three integers compare in a few
//! instructions where the derived `Ord` of tuples of `IpAddr` enums (the engine's hottest
//! path in a bulk sync) does not. It converts back losslessly.

use crate::model::{Conn, ConnKey, PortProto, Tuple, L4};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TKey {
    src: u128,
    dst: u128,
    /// zone (0-15), a (16-31), b (32-47), protocol (48-55), L4 kind (56-57), src v6 (58),
    /// dst v6 (59).
    rest: u64,
}

fn addr_bits(a: &IpAddr) -> (u128, u64) {
    match a {
        IpAddr::V4(a) => (u128::from(u32::from(*a)), 0),
        IpAddr::V6(a) => (u128::from(*a), 1),
    }
}

fn addr_from(bits: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    }
}

impl TKey {
    pub(crate) fn new(orig: &Tuple, zone: u16) -> TKey {
        let (src, s6) = addr_bits(&orig.src);
        let (dst, d6) = addr_bits(&orig.dst);
        let (kind, proto, a, b): (u64, u8, u16, u16) = match orig.l4 {
            L4::Ports { proto, src, dst } => (0, proto.number(), src, dst),
            L4::Icmp {
                icmp_type,
                code,
                id,
            } => (1, 1, id, u16::from_be_bytes([icmp_type, code])),
            L4::Icmpv6 {
                icmp_type,
                code,
                id,
            } => (2, 58, id, u16::from_be_bytes([icmp_type, code])),
            L4::Other(p) => (3, p, 0, 0),
        };
        let rest = u64::from(zone)
            | u64::from(a) << 16
            | u64::from(b) << 32
            | u64::from(proto) << 48
            | kind << 56
            | s6 << 58
            | d6 << 59;
        TKey { src, dst, rest }
    }

    /// A key for tests of the engine's maps (no conn behind it).
    #[cfg(test)]
    pub(crate) fn for_test(i: u32) -> TKey {
        TKey {
            src: u128::from(i),
            dst: 0,
            rest: 0,
        }
    }

    pub(crate) fn of(c: &Conn) -> TKey {
        TKey::new(&c.orig, c.zone)
    }

    pub(crate) fn from_key(k: &ConnKey) -> TKey {
        TKey::new(&k.orig, k.zone)
    }

    pub(crate) fn conn_key(&self) -> ConnKey {
        let r = self.rest;
        let zone = r as u16;
        let a = (r >> 16) as u16;
        let b = (r >> 32) as u16;
        let proto = (r >> 48) as u8;
        let [t, c] = b.to_be_bytes();
        let l4 = match (r >> 56) & 3 {
            0 => match PortProto::from_number(proto) {
                Some(proto) => L4::Ports {
                    proto,
                    src: a,
                    dst: b,
                },
                None => L4::Other(proto),
            },
            1 => L4::Icmp {
                icmp_type: t,
                code: c,
                id: a,
            },
            2 => L4::Icmpv6 {
                icmp_type: t,
                code: c,
                id: a,
            },
            _ => L4::Other(proto),
        };
        ConnKey {
            orig: Tuple {
                src: addr_from(self.src, (r >> 58) & 1 == 1),
                dst: addr_from(self.dst, (r >> 59) & 1 == 1),
                l4,
            },
            zone,
        }
    }
}

/// FxHash-style hasher for the engine's per-datagram install index (keys are not
/// attacker-chosen in bulk: they come from authenticated peers).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHash;

pub(crate) struct FastHasher(u64);

impl BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let tuples = [
            Tuple {
                src: "192.0.2.1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                dst: "2001:db8::1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                l4: L4::Ports {
                    proto: PortProto::Sctp,
                    src: 1,
                    dst: 65535,
                },
            },
            Tuple {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                l4: L4::Icmp {
                    icmp_type: 8,
                    code: 3,
                    id: 77,
                },
            },
            Tuple {
                src: IpAddr::V6(Ipv6Addr::LOCALHOST),
                dst: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                l4: L4::Icmpv6 {
                    icmp_type: 128,
                    code: 0,
                    id: 65535,
                },
            },
            Tuple {
                src: IpAddr::V4(Ipv4Addr::BROADCAST),
                dst: IpAddr::V6(Ipv6Addr::LOCALHOST),
                l4: L4::Other(6),
            },
        ];
        for (i, t) in tuples.iter().enumerate() {
            let k = ConnKey {
                orig: *t,
                zone: i as u16 * 1000,
            };
            assert_eq!(TKey::from_key(&k).conn_key(), k);
        }
        // Other(6) and Ports{Tcp} differ.
        let a = TKey::new(&tuples[3], 0);
        let mut t = tuples[3];
        t.l4 = L4::Ports {
            proto: PortProto::Tcp,
            src: 0,
            dst: 0,
        };
        assert_ne!(a, TKey::new(&t, 0));
    }
}
