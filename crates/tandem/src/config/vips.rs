//! The synced area `vips` (`[[vips]]`), and the checks of a node's VIPs against the addresses
//! its interfaces really have.

use super::node::{ranged, MAX_ADVBASE};
use super::Errors;
use carp::{Advbase, Centisecs, Protocol, Vhid};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::Range;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVip {
    vhid: Spanned<i64>,
    interface: Spanned<String>,
    addresses: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    advbase: Option<Spanned<i64>>,
    /// `carp` (the default) or `vrrp`.
    #[serde(default)]
    protocol: Option<Spanned<String>>,
    /// VRRP's advertisement interval in milliseconds (10 ms steps).
    #[serde(default)]
    interval_ms: Option<Spanned<i64>>,
    /// Unicast peers: the nodes' addresses on the VIP's link (this node's own is skipped).
    #[serde(default)]
    peers: Option<Spanned<Vec<Spanned<String>>>>,
    /// `interface` (the default) or `virtual`.
    #[serde(default)]
    mac: Option<Spanned<String>>,
}

/// Which MAC answers for a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MacMode {
    /// The interface's own MAC (the addresses live on the interface).
    #[default]
    Interface,
    /// The virtual router MAC, on a macvlan of the interface that carries the addresses.
    Virtual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub vhid: Vhid,
    /// Logical interface name.
    pub interface: String,
    /// Device on this node.
    pub device: String,
    pub addresses: Vec<IpNet>,
    pub advbase: Advbase,
    /// CARP, or VRRPv3 with its advertisement interval.
    pub protocol: Protocol,
    /// `mac = "interface"` (default) or `"virtual"`.
    pub mac: MacMode,
    /// Where each address is written (same order), to place errors found later.
    pub spans: Vec<Range<usize>>,
    /// Unicast peers (empty: multicast), and where each is written.
    pub peers: Vec<IpAddr>,
    pub peer_spans: Vec<Range<usize>>,
}

pub fn vips(
    errs: &mut Errors<'_>,
    raw: &[Spanned<RawVip>],
    interfaces: &BTreeMap<String, String>,
    advbase: Advbase,
) -> Vec<Vip> {
    let mut vips = Vec::new();
    let mut seen: BTreeSet<(String, u8)> = BTreeSet::new();
    let mut owner: BTreeMap<IpAddr, u8> = BTreeMap::new();
    for v in raw {
        let rv = v.get_ref();
        let vhid = ranged(errs, &rv.vhid, "vips.vhid", 1, 255).and_then(Vhid::new);
        let logical = rv.interface.get_ref().clone();
        let device = match interfaces.get(&logical) {
            Some(d) => d.clone(),
            None => {
                let known: Vec<&str> = interfaces.keys().map(String::as_str).collect();
                errs.at(
                    rv.interface.span(),
                    format!(
                        "unknown interface {logical:?} (the [interfaces] table has: {})",
                        if known.is_empty() {
                            "nothing".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                String::new()
            }
        };
        if let Some(vh) = vhid {
            if !seen.insert((logical.clone(), vh.get())) {
                errs.at(
                    rv.vhid.span(),
                    format!("vhid {vh} is used twice on interface {logical:?}"),
                );
            }
        }
        let mut addresses = Vec::new();
        let mut spans = Vec::new();
        if rv.addresses.get_ref().is_empty() {
            errs.at(rv.addresses.span(), "a VIP needs at least one address");
        }
        for a in rv.addresses.get_ref() {
            match a.get_ref().parse::<IpNet>() {
                Ok(net) => {
                    if let Some(prev) = owner.insert(net.addr(), vhid.map_or(0, Vhid::get)) {
                        errs.at(
                            a.span(),
                            format!("address {} is already a VIP of vhid {prev}", net.addr()),
                        );
                    }
                    addresses.push(net);
                    spans.push(a.span());
                }
                Err(_) => errs.at(
                    a.span(),
                    format!(
                        "{:?} is not an address with prefix length, like \"192.0.2.1/24\" or \"2001:db8::1/64\"",
                        a.get_ref()
                    ),
                ),
            }
        }
        let vip_advbase = match &rv.advbase {
            Some(b) => ranged(errs, b, "vips.advbase", 1, MAX_ADVBASE.into()).map(Advbase),
            None => Some(advbase),
        }
        .unwrap_or(advbase);
        let protocol = protocol(errs, rv, vip_advbase);
        let (peers, peer_spans) = peers(errs, rv, &addresses);
        let mac = match &rv.mac {
            None => MacMode::Interface,
            Some(m) => match m.get_ref().as_str() {
                "interface" => MacMode::Interface,
                "virtual" => MacMode::Virtual,
                other => {
                    errs.at(
                        m.span(),
                        format!("vips.mac must be \"interface\" or \"virtual\", not {other:?}"),
                    );
                    MacMode::Interface
                }
            },
        };
        if let Some(vhid) = vhid {
            vips.push(Vip {
                vhid,
                interface: logical,
                device,
                addresses,
                advbase: vip_advbase,
                protocol,
                mac,
                spans,
                peers,
                peer_spans,
            });
        }
    }
    // A peer that is a VIP (of any vhid) would follow the VIP around.
    for v in &vips {
        for (p, span) in v.peers.iter().zip(&v.peer_spans) {
            if let Some(vhid) = owner.get(p) {
                errs.at(
                    span.clone(),
                    format!("peer {p} is a VIP (vhid {vhid}): a peer is a node's own address on the link"),
                );
            }
        }
    }
    vips
}

/// `peers = ["192.0.2.2", "2001:db8::2"]`: plain addresses (no prefix), unicast, of a family
/// the VIP has, each once.
fn peers(
    errs: &mut Errors<'_>,
    rv: &RawVip,
    addresses: &[IpNet],
) -> (Vec<IpAddr>, Vec<Range<usize>>) {
    let (mut peers, mut spans) = (Vec::new(), Vec::new());
    let Some(raw) = &rv.peers else {
        return (peers, spans);
    };
    if raw.get_ref().is_empty() {
        errs.at(
            raw.span(),
            "vips.peers is empty: list the nodes' addresses on the link, or leave peers out for multicast",
        );
    }
    for p in raw.get_ref() {
        let ip = match p.get_ref().parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                errs.at(
                    p.span(),
                    format!(
                        "{:?} is not an address, like \"192.0.2.2\" or \"2001:db8::2\" (no prefix length)",
                        p.get_ref()
                    ),
                );
                continue;
            }
        };
        if ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
            errs.at(
                p.span(),
                format!("peer {ip} is not a unicast address of a node"),
            );
            continue;
        }
        if !addresses.iter().any(|a| a.addr().is_ipv4() == ip.is_ipv4()) {
            errs.at(
                p.span(),
                format!(
                    "peer {ip} is {}, but this VIP has no {} address (adverts of a family go to that family's peers)",
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
            );
            continue;
        }
        if peers.contains(&ip) {
            errs.at(p.span(), format!("peer {ip} is listed twice"));
            continue;
        }
        peers.push(ip);
        spans.push(p.span());
    }
    (peers, spans)
}

/// VRRP's Max Adver Int is 12 bits of centiseconds: 10 ms to 40.95 s.
const VRRP_MAX_INTERVAL_MS: i64 = 40_950;

/// A VIP's protocol: `protocol = "carp"` (default) or `"vrrp"`, with `interval_ms` for VRRP
/// (default: the VIP's advbase in seconds).
fn protocol(errs: &mut Errors<'_>, rv: &RawVip, advbase: Advbase) -> Protocol {
    let vrrp = match &rv.protocol {
        None => false,
        Some(p) => match p.get_ref().as_str() {
            "carp" => false,
            "vrrp" => true,
            other => {
                errs.at(
                    p.span(),
                    format!("vips.protocol must be \"carp\" or \"vrrp\", not {other:?}"),
                );
                false
            }
        },
    };
    if !vrrp {
        if let Some(i) = &rv.interval_ms {
            errs.at(
                i.span(),
                "vips.interval_ms is VRRP's (protocol = \"vrrp\"); a CARP VIP's interval is advbase, in seconds",
            );
        }
        return Protocol::Carp;
    }
    let (ms, span) = match &rv.interval_ms {
        Some(i) => (*i.get_ref(), Some(i.span())),
        None => (i64::from(advbase.0) * 1000, None),
    };
    let place = |errs: &mut Errors<'_>, msg: String| match &span {
        Some(s) => errs.at(s.clone(), msg),
        None => errs.at(
            rv.vhid.span(),
            format!("{msg} (from advbase {} s: set vips.interval_ms)", advbase.0),
        ),
    };
    if !(10..=VRRP_MAX_INTERVAL_MS).contains(&ms) || ms % 10 != 0 {
        place(
            errs,
            format!(
                "vips.interval_ms must be a multiple of 10 between 10 and {VRRP_MAX_INTERVAL_MS} (VRRP counts centiseconds), not {ms}"
            ),
        );
        return Protocol::Carp;
    }
    match u16::try_from(ms / 10).ok().and_then(Centisecs::new) {
        Some(interval) => Protocol::Vrrp { interval },
        None => Protocol::Carp,
    }
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Checks every VIP against the node's own addresses on its interface (not VIPs, not
/// link-local), as the kernel has them; `own` maps a logical interface to its addresses, and
/// interfaces not in it (no such device here) are not checked.
///
/// - A VIP must not be one of them: releasing the VIP would take the node's own address away.
/// - An IPv4 VIP must lie in one of their subnets: no neighbour on the link routes to a VIP
///   outside them, and CARP needs an address of the node in the subnet to advertise from.
/// - An IPv6 VIP too, when the interface has global IPv6 addresses of its own. One without any
///   (a router that uses only link-local addresses, whose global prefix lives on the VIP
///   alone; CARP advertises from the link-local address) is legitimate: a note, not an error.
///   So is an IPv6 link-local VIP.
///
/// Returns the notes.
pub fn check_against_node(
    errs: &mut Errors<'_>,
    vips: &[Vip],
    own: &BTreeMap<String, Vec<IpNet>>,
) -> Vec<String> {
    let mut notes = Vec::new();
    for v in vips {
        let Some(addrs) = own.get(&v.interface) else {
            continue;
        };
        check_peers(errs, v, addrs);
        for (a, span) in v.addresses.iter().zip(&v.spans) {
            let ip = a.addr();
            if let Some(mine) = addrs.iter().find(|n| n.addr() == ip) {
                errs.at(
                    span.clone(),
                    format!(
                        "{ip} is this node's own address on {} ({}, {mine}): a VIP must be an address no node has of its own (releasing the VIP would remove it)",
                        v.interface, v.device
                    ),
                );
                continue;
            }
            if is_link_local(&ip) || addrs.iter().any(|n| n.contains(&ip)) {
                continue;
            }
            let same_family: Vec<String> = addrs
                .iter()
                .filter(|n| n.addr().is_ipv4() == ip.is_ipv4())
                .map(|n| n.trunc().to_string())
                .collect();
            if ip.is_ipv6() && same_family.is_empty() {
                notes.push(format!(
                    "VIP {a} on {} ({}): the interface has no global IPv6 address of its own, so {} lives on the VIP alone (fine for a router that uses link-local addresses)",
                    v.interface,
                    v.device,
                    a.trunc()
                ));
                continue;
            }
            errs.at(
                span.clone(),
                format!(
                    "VIP {ip} is outside every subnet of {} ({}): {}; add an address in its subnet to {} first, or give the VIP an address in one of those",
                    v.interface,
                    v.device,
                    if same_family.is_empty() {
                        "it has no IPv4 address".to_string()
                    } else {
                        format!("it has {}", same_family.join(", "))
                    },
                    v.device
                ),
            );
        }
    }
    notes
}

/// Unicast peers against the node's own addresses: one list serves every node (the area is
/// synced), so this node's own address may be in it (it is skipped) — but a family whose
/// peers are all this node's own addresses would advertise to nobody.
fn check_peers(errs: &mut Errors<'_>, v: &Vip, addrs: &[IpNet]) {
    for v4 in [true, false] {
        let listed: Vec<(&IpAddr, &Range<usize>)> = v
            .peers
            .iter()
            .zip(&v.peer_spans)
            .filter(|(p, _)| p.is_ipv4() == v4)
            .collect();
        let is_own = |p: &IpAddr| addrs.iter().any(|n| n.addr() == *p);
        if let Some((p, span)) = listed.first() {
            if listed.iter().all(|(p, _)| is_own(p)) {
                errs.at(
                    (*span).clone(),
                    format!(
                        "peer {p} is this node's own address on {} ({}), and vhid {} lists no other {} peer: add the other nodes' addresses",
                        v.interface,
                        v.device,
                        v.vhid,
                        if v4 { "IPv4" } else { "IPv6" }
                    ),
                );
            }
        }
    }
}
