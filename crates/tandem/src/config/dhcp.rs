//! The synced area `dhcp` (`[dhcp]`, `[[dhcp.subnets]]`): DHCPv4 subnets per logical
//! interface with their pools, options and static reservations, served by Kea; and the
//! node-local `[dhcp_local]` table (where this node's Kea reads its config, its control
//! socket, its lease file). Checked here, without I/O; rendered for Kea by `dhcp_apply`.

use super::Errors;
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use toml::Spanned;

/// Lease time when neither the subnet nor `[dhcp]` gives one (Kea's own default: 2 hours).
pub const DEFAULT_LEASE_TIME: u32 = 7200;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDhcp {
    /// Default lease time (seconds) of every subnet.
    #[serde(default)]
    lease_time: Option<Spanned<u32>>,
    #[serde(default)]
    subnets: Vec<Spanned<RawSubnet>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubnet {
    interface: Spanned<String>,
    subnet: Spanned<String>,
    #[serde(default)]
    pools: Vec<Spanned<String>>,
    #[serde(default)]
    routers: Vec<Spanned<String>>,
    #[serde(default)]
    dns_servers: Vec<Spanned<String>>,
    #[serde(default)]
    domain_name: Option<Spanned<String>>,
    #[serde(default)]
    lease_time: Option<Spanned<u32>>,
    #[serde(default)]
    reservations: Vec<Spanned<RawReservation>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReservation {
    mac: Spanned<String>,
    address: Spanned<String>,
    #[serde(default)]
    hostname: Option<Spanned<String>>,
}

/// The node-local `[dhcp_local]` table: this node runs Kea (kea-dhcp4) and tandem manages
/// its config. Paths default to Debian's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDhcpLocal {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    config_file: Option<Spanned<String>>,
    #[serde(default)]
    control_socket: Option<Spanned<String>>,
    #[serde(default)]
    lease_file: Option<Spanned<String>>,
    #[serde(default)]
    hooks_dir: Option<Spanned<String>>,
    #[serde(default)]
    ha: Option<Spanned<super::dhcp_ha::RawHa>>,
}

/// One static reservation: this MAC always gets this address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub hostname: Option<String>,
}

/// One checked subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// Logical interface and its device on this node.
    pub interface: String,
    pub device: String,
    pub subnet: Ipv4Net,
    /// Address ranges, first and last inclusive.
    pub pools: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub routers: Vec<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain_name: Option<String>,
    pub lease_time: u32,
    pub reservations: Vec<Reservation>,
}

/// The checked `dhcp` area.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dhcp {
    pub subnets: Vec<Subnet>,
}

/// The checked `[dhcp_local]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpLocal {
    /// Where Kea reads its config (tandem writes it, atomically).
    pub config_file: PathBuf,
    /// Kea's unix control socket (tandem sends `config-test` and `config-reload` there).
    pub control_socket: PathBuf,
    /// Kea's lease file (memfile).
    pub lease_file: PathBuf,
    /// Where Kea's hook libraries are (libdhcp_ha.so, libdhcp_lease_cmds.so).
    pub hooks_dir: PathBuf,
    /// High availability with the other node; None: this Kea serves alone.
    pub ha: Option<super::dhcp_ha::Ha>,
}

/// Debian's directory of Kea's hooks on this architecture.
pub fn default_hooks_dir() -> String {
    format!("/usr/lib/{}-linux-gnu/kea/hooks", std::env::consts::ARCH)
}

/// `02:00:5e:10:00:01` (or with `-`) as bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *m = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// A pool: `FIRST-LAST` (spaces allowed) or a CIDR prefix.
pub fn parse_pool(s: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if let Some((a, b)) = s.split_once('-') {
        let a: Ipv4Addr = a.trim().parse().ok()?;
        let b: Ipv4Addr = b.trim().parse().ok()?;
        return (a <= b).then_some((a, b));
    }
    let n: Ipv4Net = s.trim().parse().ok()?;
    Some((n.network(), n.broadcast()))
}

/// A DNS name as Kea and clients take it: labels of letters, digits and `-`, dots between.
pub fn valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn addrs(errs: &mut Errors<'_>, list: &[Spanned<String>], what: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for a in list {
        match a.get_ref().parse::<Ipv4Addr>() {
            Ok(ip) => out.push(ip),
            Err(_) => errs.at(
                a.span(),
                format!(
                    "dhcp {what}: {} is not an IPv4 address",
                    configsync::area::shown(a.get_ref())
                ),
            ),
        }
    }
    out
}

fn reservations(errs: &mut Errors<'_>, s: &RawSubnet, net: Ipv4Net) -> Vec<Reservation> {
    let mut out: Vec<Reservation> = Vec::new();
    for r in s.reservations.iter().map(Spanned::get_ref) {
        let Some(mac) = parse_mac(r.mac.get_ref()) else {
            errs.at(
                r.mac.span(),
                format!(
                    "dhcp reservation: mac {} is not a MAC address (aa:bb:cc:dd:ee:ff)",
                    configsync::area::shown(r.mac.get_ref())
                ),
            );
            continue;
        };
        let Ok(address) = r.address.get_ref().parse::<Ipv4Addr>() else {
            errs.at(
                r.address.span(),
                format!(
                    "dhcp reservation: address {} is not an IPv4 address",
                    configsync::area::shown(r.address.get_ref())
                ),
            );
            continue;
        };
        if !net.contains(&address) || address == net.network() || address == net.broadcast() {
            errs.at(
                r.address.span(),
                format!(
                    "dhcp reservation: address {address} is not a host address of subnet {net}"
                ),
            );
            continue;
        }
        let hostname = r.hostname.as_ref().and_then(|h| {
            if valid_dns_name(h.get_ref()) {
                Some(h.get_ref().clone())
            } else {
                errs.at(
                    h.span(),
                    format!(
                        "dhcp reservation: hostname {} is not a DNS name",
                        configsync::area::shown(h.get_ref())
                    ),
                );
                None
            }
        });
        if out.iter().any(|o| o.mac == mac) {
            errs.at(
                r.mac.span(),
                format!(
                    "dhcp reservation: mac {} is reserved twice in subnet {net}",
                    r.mac.get_ref()
                ),
            );
            continue;
        }
        if out.iter().any(|o| o.address == address) {
            errs.at(
                r.address.span(),
                format!("dhcp reservation: address {address} is reserved twice"),
            );
            continue;
        }
        out.push(Reservation {
            mac,
            address,
            hostname,
        });
    }
    out
}

fn lease_time(errs: &mut Errors<'_>, t: Option<&Spanned<u32>>) -> Option<u32> {
    let t = t?;
    if *t.get_ref() == 0 {
        errs.at(t.span(), "dhcp lease_time must be at least 1 second");
        return None;
    }
    Some(*t.get_ref())
}

fn subnet(
    errs: &mut Errors<'_>,
    s: &RawSubnet,
    interfaces: &BTreeMap<String, String>,
    default_lease: u32,
) -> Option<Subnet> {
    let iface = s.interface.get_ref();
    let device = interfaces.get(iface).cloned();
    if device.is_none() {
        errs.at(
            s.interface.span(),
            format!(
                "dhcp subnet: interface {} is not in [interfaces] (logical names: {})",
                configsync::area::shown(iface),
                interfaces.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let net = match s.subnet.get_ref().parse::<Ipv4Net>() {
        Ok(n) if n.addr() != n.network() => {
            errs.at(
                s.subnet.span(),
                format!("dhcp subnet {n} has host bits set: write {}", n.trunc()),
            );
            return None;
        }
        Ok(n) if n.prefix_len() > 30 || n.network().is_unspecified() => {
            errs.at(
                s.subnet.span(),
                format!("dhcp subnet {n}: too small, or 0.0.0.0 (a /30 at most)"),
            );
            return None;
        }
        Ok(n) => n,
        Err(_) => {
            errs.at(
                s.subnet.span(),
                format!(
                    "dhcp subnet {} is not an IPv4 prefix (192.0.2.0/24)",
                    configsync::area::shown(s.subnet.get_ref())
                ),
            );
            return None;
        }
    };
    let mut pools: Vec<(Ipv4Addr, Ipv4Addr)> = Vec::new();
    for p in &s.pools {
        let Some((a, b)) = parse_pool(p.get_ref()) else {
            errs.at(
                p.span(),
                format!(
                    "dhcp pool {} is not FIRST-LAST (first <= last) or a prefix",
                    configsync::area::shown(p.get_ref())
                ),
            );
            continue;
        };
        if !net.contains(&a) || !net.contains(&b) {
            errs.at(
                p.span(),
                format!("dhcp pool {a}-{b} is not inside subnet {net}"),
            );
            continue;
        }
        if let Some((c, d)) = pools.iter().find(|(c, d)| a <= *d && *c <= b) {
            errs.at(p.span(), format!("dhcp pool {a}-{b} overlaps pool {c}-{d}"));
            continue;
        }
        pools.push((a, b));
    }
    let routers = addrs(errs, &s.routers, "routers");
    for (r, raw) in routers.iter().zip(&s.routers) {
        if !net.contains(r) {
            errs.at(
                raw.span(),
                format!("dhcp router {r} is not inside subnet {net}"),
            );
        }
    }
    let dns_servers = addrs(errs, &s.dns_servers, "dns_servers");
    let domain_name = s.domain_name.as_ref().and_then(|d| {
        if valid_dns_name(d.get_ref()) {
            Some(d.get_ref().clone())
        } else {
            errs.at(
                d.span(),
                format!(
                    "dhcp domain_name {} is not a DNS name",
                    configsync::area::shown(d.get_ref())
                ),
            );
            None
        }
    });
    let lease = lease_time(errs, s.lease_time.as_ref()).unwrap_or(default_lease);
    let reservations = reservations(errs, s, net);
    Some(Subnet {
        interface: iface.clone(),
        device: device?,
        subnet: net,
        pools,
        routers,
        dns_servers,
        domain_name,
        lease_time: lease,
        reservations,
    })
}

/// Checks the `dhcp` area against the node's interfaces; errors are located at the field at
/// fault. None when the area is absent.
pub fn dhcp(
    errs: &mut Errors<'_>,
    raw: Option<&Spanned<RawDhcp>>,
    interfaces: &BTreeMap<String, String>,
) -> Option<Dhcp> {
    let raw = raw?.get_ref();
    let default_lease = lease_time(errs, raw.lease_time.as_ref()).unwrap_or(DEFAULT_LEASE_TIME);
    let mut out = Dhcp::default();
    for s in &raw.subnets {
        let Some(sub) = subnet(errs, s.get_ref(), interfaces, default_lease) else {
            continue;
        };
        let r = s.get_ref();
        if let Some(o) = out.subnets.iter().find(|o| {
            o.subnet.contains(&sub.subnet.network()) || sub.subnet.contains(&o.subnet.network())
        }) {
            errs.at(
                r.subnet.span(),
                format!(
                    "dhcp subnet {} overlaps subnet {} (interface {})",
                    sub.subnet, o.subnet, o.interface
                ),
            );
            continue;
        }
        if out.subnets.iter().any(|o| o.interface == sub.interface) {
            errs.at(
                r.interface.span(),
                format!(
                    "dhcp: interface {:?} has a subnet already (one subnet per interface)",
                    sub.interface
                ),
            );
            continue;
        }
        out.subnets.push(sub);
    }
    Some(out)
}

/// Checks `[dhcp_local]`; None when absent or `enabled = false`.
pub fn dhcp_local(
    errs: &mut Errors<'_>,
    raw: Option<&Spanned<RawDhcpLocal>>,
    cluster: &super::dhcp_ha::Cluster<'_>,
) -> Option<DhcpLocal> {
    let raw = raw?.get_ref();
    if raw.enabled == Some(false) {
        return None;
    }
    let path = |errs: &Errors<'_>, p: &Option<Spanned<String>>, default: &str| {
        p.as_ref()
            .map_or_else(|| PathBuf::from(default), |p| errs.resolve(p))
    };
    Some(DhcpLocal {
        config_file: path(errs, &raw.config_file, "/etc/kea/kea-dhcp4.conf"),
        control_socket: path(errs, &raw.control_socket, "/run/kea/kea4-ctrl-socket"),
        lease_file: path(errs, &raw.lease_file, "/var/lib/kea/kea-leases4.csv"),
        hooks_dir: path(errs, &raw.hooks_dir, &default_hooks_dir()),
        ha: raw
            .ha
            .as_ref()
            .and_then(|h| super::dhcp_ha::ha(errs, h, cluster)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "[node]\nname = \"fw1\"\ncontrol_socket = \"/run/t.sock\"\n[interfaces]\nlan = \"eth0\"\ndmz = \"eth2\"\n[carp]\npassphrase = \"s3cret\"\n";

    const AREA: &str = r#"
[dhcp]
lease_time = 600

[[dhcp.subnets]]
interface = "lan"
subnet = "192.0.2.0/24"
pools = ["192.0.2.100-192.0.2.149", "192.0.2.160/28"]
routers = ["192.0.2.1"]
dns_servers = ["192.0.2.1", "198.51.100.53"]
domain_name = "lan.example.org"

[[dhcp.subnets.reservations]]
mac = "02:00:00:00:00:10"
address = "192.0.2.20"
hostname = "printer"

[[dhcp.subnets]]
interface = "dmz"
subnet = "198.51.100.0/25"
lease_time = 60
pools = ["198.51.100.10 - 198.51.100.20"]
"#;

    fn build(text: &str) -> Result<crate::config::Config, Vec<String>> {
        let file = std::path::Path::new("t.toml");
        crate::config::ParsedFile::parse(file, text.to_string())
            .and_then(|p| crate::config::Config::build(p, file))
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).expect("line") + 1
    }

    #[test]
    fn a_whole_area_is_checked() {
        let cfg = build(&format!(
            "{NODE}{AREA}\n[dhcp_local]\nconfig_file = \"kea.conf\"\n"
        ))
        .expect("valid");
        let d = cfg.dhcp.expect("dhcp");
        assert_eq!(d.subnets.len(), 2);
        let lan = &d.subnets[0];
        assert_eq!(lan.device, "eth0");
        assert_eq!(lan.lease_time, 600);
        assert_eq!(
            lan.pools,
            vec![
                (
                    "192.0.2.100".parse().expect("ip"),
                    "192.0.2.149".parse().expect("ip")
                ),
                (
                    "192.0.2.160".parse().expect("ip"),
                    "192.0.2.175".parse().expect("ip")
                ),
            ]
        );
        assert_eq!(lan.reservations[0].mac, [2, 0, 0, 0, 0, 0x10]);
        assert_eq!(d.subnets[1].lease_time, 60);
        let local = cfg.dhcp_local.expect("local");
        assert_eq!(local.config_file, PathBuf::from("kea.conf"));
        assert_eq!(
            local.control_socket,
            PathBuf::from("/run/kea/kea4-ctrl-socket")
        );
        let none = build(&format!("{NODE}[dhcp_local]\nenabled = false\n")).expect("valid");
        assert!(none.dhcp.is_none() && none.dhcp_local.is_none());
    }

    #[test]
    fn errors_are_located() {
        let cases = [
            (
                "interface = \"dmz\"",
                "interface = \"wan\"",
                "interface = \"wan\"",
                13,
                "interface \"wan\" is not in [interfaces]",
            ),
            (
                "\"192.0.2.160/28\"",
                "\"192.0.3.160/28\"",
                "pools =",
                37,
                "not inside subnet 192.0.2.0/24",
            ),
            (
                "\"192.0.2.160/28\"",
                "\"192.0.2.140/30\"",
                "pools =",
                37,
                "overlaps pool 192.0.2.100-192.0.2.149",
            ),
            (
                "address = \"192.0.2.20\"",
                "address = \"192.0.3.20\"",
                "address = ",
                11,
                "not a host address of subnet",
            ),
            (
                "mac = \"02:00:00:00:00:10\"",
                "mac = \"02:00:00\"",
                "mac = ",
                7,
                "is not a MAC address",
            ),
            (
                "subnet = \"198.51.100.0/25\"",
                "subnet = \"192.0.2.128/25\"",
                "subnet = \"192.0.2.128/25\"",
                10,
                "overlaps subnet 192.0.2.0/24",
            ),
            (
                "subnet = \"198.51.100.0/25\"",
                "subnet = \"198.51.100.1/25\"",
                "subnet = \"198.51.100.1/25\"",
                10,
                "has host bits set: write 198.51.100.0/25",
            ),
            (
                "routers = [\"192.0.2.1\"]",
                "routers = [\"198.51.100.1\"]",
                "routers = ",
                12,
                "router 198.51.100.1 is not inside",
            ),
            (
                "domain_name = \"lan.example.org\"",
                "domain_name = \"a b\"",
                "domain_name",
                15,
                "is not a DNS name",
            ),
            (
                "lease_time = 600",
                "lease_time = 0",
                "lease_time = 0",
                14,
                "at least 1 second",
            ),
        ];
        for (from, to, at, col, msg) in cases {
            let text = format!("{NODE}{}", AREA.replacen(from, to, 1));
            let e = build(&text).expect_err(to);
            let line = line_of(&text, at);
            assert!(
                e.iter()
                    .any(|e| e.starts_with(&format!("t.toml:{line}:{col}:")) && e.contains(msg)),
                "{to}: {e:?}"
            );
        }
    }

    #[test]
    fn parsers() {
        assert_eq!(
            parse_mac("02-00-5E-10-00-01"),
            Some([2, 0, 0x5e, 0x10, 0, 1])
        );
        assert_eq!(parse_mac("2:0:0:0:0:1"), None);
        assert_eq!(parse_pool("192.0.2.9-192.0.2.8"), None);
        assert!(valid_dns_name("lan.example.org."));
        assert!(!valid_dns_name("-x.example"));
        assert!(!valid_dns_name("a\"b"));
    }
}
