//! Address and port literals, and sorted disjoint interval sets of them (what an nftables
//! interval set holds). Normalizing here (sort + merge) keeps sets free of overlaps, which nft
//! rejects, and makes the output independent of the order entries were written in.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// A value that interval sets can hold.
pub(crate) trait Bound: Copy + Ord {
    fn succ(self) -> Option<Self>;
}

impl Bound for u16 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}
impl Bound for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}
impl Bound for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// Sorted, disjoint, non-adjacent closed intervals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Intervals<T>(Vec<(T, T)>);

impl<T: Bound> Intervals<T> {
    /// Normalize any list of closed intervals (each `lo <= hi`). O(n log n).
    pub fn from_unsorted(mut v: Vec<(T, T)>) -> Self {
        v.sort_unstable();
        let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            if let Some(last) = out.last_mut() {
                // Overlapping or adjacent: merge.
                if last.1 >= lo || last.1.succ() == Some(lo) {
                    if hi > last.1 {
                        last.1 = hi;
                    }
                    continue;
                }
            }
            out.push((lo, hi));
        }
        Intervals(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(T, T)> {
        self.0.iter()
    }

    pub fn extend_into(&self, v: &mut Vec<(T, T)>) {
        v.extend_from_slice(&self.0);
    }

    pub fn overlaps(&self, other: &Self) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            if a.0 <= b.1 && b.0 <= a.1 {
                return true;
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        false
    }

    /// The single value if this is exactly one one-element interval.
    pub fn single(&self) -> Option<T> {
        match self.0.as_slice() {
            [(lo, hi)] if lo == hi => Some(*lo),
            _ => None,
        }
    }
}

/// How an address literal was written (aliases of type host accept no networks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrForm {
    Host,
    Network,
    Range,
}

/// An address literal as an interval of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrLit {
    V4(u32, u32),
    V6(u128, u128),
}

impl AddrLit {
    pub fn host(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => AddrLit::V4(a.into(), a.into()),
            IpAddr::V6(a) => AddrLit::V6(a.into(), a.into()),
        }
    }

    pub fn net(n: IpNet) -> Self {
        let n = n.trunc();
        match n {
            IpNet::V4(n) => AddrLit::V4(n.network().into(), n.broadcast().into()),
            IpNet::V6(n) => AddrLit::V6(n.network().into(), n.broadcast().into()),
        }
    }

    pub fn is_v6(&self) -> bool {
        matches!(self, AddrLit::V6(..))
    }
}

/// Parse `192.0.2.1`, `192.0.2.0/24`, `192.0.2.10-192.0.2.20` (and the IPv6 forms).
pub(crate) fn parse_addr(s: &str) -> Result<(AddrLit, AddrForm), String> {
    let s = s.trim();
    if let Some((a, b)) = s.split_once('-') {
        let a: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid address range `{s}`"))?;
        let b: IpAddr = b
            .trim()
            .parse()
            .map_err(|_| format!("invalid address range `{s}`"))?;
        let lit = match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => AddrLit::V4(a.into(), b.into()),
            (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => AddrLit::V6(a.into(), b.into()),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                return Err(format!("address range `{s}` ends before it starts"))
            }
            _ => return Err(format!("address range `{s}` mixes IPv4 and IPv6")),
        };
        return Ok((lit, AddrForm::Range));
    }
    if s.contains('/') {
        let n: IpNet = s
            .parse()
            .map_err(|_| format!("invalid network `{s}` (expected CIDR like 192.0.2.0/24)"))?;
        return Ok((AddrLit::net(n), AddrForm::Network));
    }
    let a: IpAddr = s.parse().map_err(|_| format!("invalid address `{s}`"))?;
    Ok((AddrLit::host(a), AddrForm::Host))
}

/// Parse one port (`443`) or range (`8000-8080`, or pfSense's `8000:8080`).
pub(crate) fn parse_port_str(s: &str) -> Result<(u16, u16), String> {
    let t = s.trim();
    let one = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            Ok(_) => Err(format!("port `{s}` out of range (1-65535)")),
            Err(_) => Err(format!("invalid port `{s}`")),
        }
    };
    if let Some((a, b)) = t.split_once('-').or_else(|| t.split_once(':')) {
        let (a, b) = (one(a)?, one(b)?);
        if a > b {
            return Err(format!("port range `{s}` ends before it starts"));
        }
        Ok((a, b))
    } else {
        let p = one(t)?;
        Ok((p, p))
    }
}

pub(crate) fn parse_port_int(i: i64) -> Result<(u16, u16), String> {
    match u16::try_from(i) {
        Ok(p) if p >= 1 => Ok((p, p)),
        _ => Err(format!("port {i} out of range (1-65535)")),
    }
}

/// Writes an interval of addresses the way nft reads it: a host, a prefix, or a range.
pub(crate) fn write_v4(out: &mut String, (lo, hi): (u32, u32)) {
    if lo == hi {
        let _ = write!(out, "{}", Ipv4Addr::from(lo));
    } else if let Some(len) = prefix_len(u128::from(lo), u128::from(hi), 32) {
        let _ = write!(out, "{}/{len}", Ipv4Addr::from(lo));
    } else {
        let _ = write!(out, "{}-{}", Ipv4Addr::from(lo), Ipv4Addr::from(hi));
    }
}

pub(crate) fn write_v6(out: &mut String, (lo, hi): (u128, u128)) {
    if lo == hi {
        let _ = write!(out, "{}", Ipv6Addr::from(lo));
    } else if let Some(len) = prefix_len(lo, hi, 128) {
        let _ = write!(out, "{}/{len}", Ipv6Addr::from(lo));
    } else {
        let _ = write!(out, "{}-{}", Ipv6Addr::from(lo), Ipv6Addr::from(hi));
    }
}

pub(crate) fn write_port(out: &mut String, (lo, hi): (u16, u16)) {
    if lo == hi {
        let _ = write!(out, "{lo}");
    } else {
        let _ = write!(out, "{lo}-{hi}");
    }
}

/// The prefix length if `lo..=hi` is exactly one aligned CIDR block of a `bits`-wide space.
fn prefix_len(lo: u128, hi: u128, bits: u32) -> Option<u32> {
    let span = hi - lo; // size - 1
    let is_mask = span & span.wrapping_add(1) == 0;
    if is_mask && lo & span == 0 {
        Some(bits - span.count_ones())
    } else {
        None
    }
}

/// An address for nft's `snat`/`dnat ... to` (IPv6 with a port needs brackets).
pub(crate) struct NatTarget(pub IpAddr, pub Option<u16>);

impl fmt::Display for NatTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (a, None) => write!(f, "{a}"),
            (IpAddr::V4(a), Some(p)) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_prefixes() {
        let i = Intervals::from_unsorted(vec![(5u32, 9), (1, 3), (4, 4), (20, 30), (25, 26)]);
        assert_eq!(i.0, vec![(1, 9), (20, 30)]);
        let mut s = String::new();
        write_v4(&mut s, (0xC000_0200, 0xC000_02FF));
        s.push(' ');
        write_v4(&mut s, (0xC000_0201, 0xC000_0202));
        s.push(' ');
        write_v6(&mut s, (0, u128::MAX));
        assert_eq!(s, "192.0.2.0/24 192.0.2.1-192.0.2.2 ::/0");
        assert!(i.overlaps(&Intervals::from_unsorted(vec![(9, 12)])));
        assert!(!i.overlaps(&Intervals::from_unsorted(vec![(10, 19), (31, 40)])));
    }

    #[test]
    fn literals() {
        assert_eq!(parse_port_str("80").ok(), Some((80, 80)));
        assert_eq!(parse_port_str("8000:8080").ok(), Some((8000, 8080)));
        assert!(parse_port_str("0").is_err());
        assert!(parse_port_str("90-80").is_err());
        assert!(parse_port_int(65536).is_err());
        assert_eq!(
            parse_addr("192.0.2.5/24").ok(),
            Some((AddrLit::V4(0xC000_0200, 0xC000_02FF), AddrForm::Network))
        );
        assert!(parse_addr("192.0.2.300").is_err());
        assert!(parse_addr("192.0.2.1-2001:db8::1").is_err());
    }
}
