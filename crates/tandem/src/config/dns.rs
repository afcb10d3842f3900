//! The synced area `[dns]` (host overrides, domain overrides, forwarders for the local
//! resolver) and the node-local `[dns_local]` (where this node's unbound is, what it listens
//! on). Pure: the values are checked here, each problem at its FILE:LINE:COL; rendering is
//! in the dns_apply subsystem.

use super::Errors;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use toml::Spanned;

/// `[dns]`: synced.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// Upstream servers for every name not overridden (unbound's `forward-zone` for `.`);
    /// empty: unbound resolves by itself.
    #[serde(default)]
    forwarders: Vec<Spanned<String>>,
    #[serde(default)]
    hosts: Vec<Spanned<RawHost>>,
    #[serde(default)]
    domains: Vec<Spanned<RawDomain>>,
}

/// `[[dns.hosts]]`: a name answered locally with these addresses (A/AAAA and PTR records).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    name: Spanned<String>,
    addresses: Vec<Spanned<String>>,
    #[serde(default)]
    ttl: Option<Spanned<i64>>,
    #[serde(default)]
    description: Option<String>,
}

/// `[[dns.domains]]`: a domain whose queries go to these servers (and not DNSSEC-validated).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomain {
    domain: Spanned<String>,
    servers: Vec<Spanned<String>>,
    #[serde(default)]
    description: Option<String>,
}

/// `[dns_local]`: node-local, never synced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsLocal {
    /// The file Tandem writes (unbound's config `include:`s it).
    include: Spanned<String>,
    /// unbound-control, by absolute path.
    #[serde(default)]
    unbound_control: Option<Spanned<String>>,
    /// unbound's main config (given to unbound-control as `-c`).
    #[serde(default)]
    unbound_conf: Option<Spanned<String>>,
    /// unbound's control socket (given to unbound-control as `-s`).
    #[serde(default)]
    control_socket: Option<Spanned<String>>,
    /// Logical interfaces unbound listens on: this node's addresses there and the VIPs.
    #[serde(default)]
    interfaces: Vec<Spanned<String>>,
}

pub const DEFAULT_UNBOUND_CONTROL: &str = "/usr/sbin/unbound-control";
pub const DEFAULT_TTL: u32 = 3600;

/// The `[dns]` area, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dns {
    pub forwarders: Vec<IpAddr>,
    pub hosts: Vec<Host>,
    pub domains: Vec<Domain>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub ttl: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Lowercase, without the trailing dot.
    pub domain: String,
    pub servers: Vec<IpAddr>,
}

/// `[dns_local]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsLocal {
    pub include: PathBuf,
    pub unbound_control: PathBuf,
    pub unbound_conf: Option<PathBuf>,
    pub control_socket: Option<PathBuf>,
    /// Logical interface names (checked against `[interfaces]`).
    pub interfaces: Vec<String>,
}

/// A domain name as DNS allows it in a host override: labels of letters, digits, `-` and `_`
/// (1 to 63 characters, no `-` at either end), at most 253 characters, an optional final dot.
/// Returns it lowercase without the final dot, or what is wrong.
pub fn check_name(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > 253 {
        return Err(format!("is {} characters long (at most 253)", name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label (`..`)".into());
        }
        if label.len() > 63 {
            return Err(format!(
                "has a label of {} characters (at most 63)",
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("has {c:?} (letters, digits, `-` and `_` only)"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("has label {label:?} starting or ending with `-`"));
        }
    }
    Ok(name.to_ascii_lowercase())
}

fn addresses(
    errs: &mut Errors<'_>,
    what: &str,
    list: &[Spanned<String>],
    allow_empty: bool,
    whole: std::ops::Range<usize>,
) -> Vec<IpAddr> {
    if list.is_empty() && !allow_empty {
        errs.at(whole, format!("{what}: needs at least one address"));
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for a in list {
        match a.get_ref().parse::<IpAddr>() {
            Ok(ip) if out.contains(&ip) => {
                errs.at(a.span(), format!("{what}: {ip} is listed twice"))
            }
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
                errs.at(a.span(), format!("{what}: {ip} is not a host address"))
            }
            Ok(ip) => out.push(ip),
            Err(_) => errs.at(
                a.span(),
                format!(
                    "{what}: {} is not an IP address",
                    configsync::area::shown(a.get_ref())
                ),
            ),
        }
    }
    out
}

/// Checks the `[dns]` area.
pub fn dns(errs: &mut Errors<'_>, raw: &Spanned<RawDns>) -> Dns {
    let r = raw.get_ref();
    let forwarders = addresses(errs, "dns.forwarders", &r.forwarders, true, raw.span());
    let mut names = BTreeSet::new();
    let mut hosts = Vec::new();
    for h in &r.hosts {
        let hr = h.get_ref();
        let _ = &hr.description;
        let name = match check_name(hr.name.get_ref()) {
            Ok(n) => n,
            Err(why) => {
                errs.at(
                    hr.name.span(),
                    format!(
                        "dns.hosts: name {} {why}",
                        configsync::area::shown(hr.name.get_ref())
                    ),
                );
                continue;
            }
        };
        if !names.insert(name.clone()) {
            errs.at(
                hr.name.span(),
                format!("dns.hosts: {name} is overridden twice (one entry per name, with all its addresses)"),
            );
        }
        let what = format!("dns.hosts {name}");
        let addrs = addresses(errs, &what, &hr.addresses, false, h.span());
        let ttl = match &hr.ttl {
            None => DEFAULT_TTL,
            Some(t) => match u32::try_from(*t.get_ref()) {
                Ok(v) if v <= 604_800 => v,
                _ => {
                    errs.at(
                        t.span(),
                        format!("{what}: ttl {} is not 0 to 604800 seconds", t.get_ref()),
                    );
                    DEFAULT_TTL
                }
            },
        };
        hosts.push(Host {
            name,
            addresses: addrs,
            ttl,
        });
    }
    let mut seen = BTreeSet::new();
    let mut domains = Vec::new();
    for d in &r.domains {
        let dr = d.get_ref();
        let _ = &dr.description;
        let domain = match check_name(dr.domain.get_ref()) {
            Ok(n) => n,
            Err(_) if dr.domain.get_ref() == "." => {
                errs.at(
                    dr.domain.span(),
                    "dns.domains: \".\" is every name: use dns.forwarders",
                );
                continue;
            }
            Err(why) => {
                errs.at(
                    dr.domain.span(),
                    format!(
                        "dns.domains: domain {} {why}",
                        configsync::area::shown(dr.domain.get_ref())
                    ),
                );
                continue;
            }
        };
        if !seen.insert(domain.clone()) {
            errs.at(
                dr.domain.span(),
                format!("dns.domains: {domain} is listed twice"),
            );
        }
        let what = format!("dns.domains {domain}");
        let servers = addresses(errs, &what, &dr.servers, false, d.span());
        domains.push(Domain { domain, servers });
    }
    Dns {
        forwarders,
        hosts,
        domains,
    }
}

fn absolute_program(errs: &mut Errors<'_>, what: &str, v: &Spanned<String>) -> PathBuf {
    let path = PathBuf::from(v.get_ref());
    if !path.is_absolute() {
        errs.at(
            v.span(),
            format!(
                "{what} {:?} is not an absolute path (it is never looked up through PATH)",
                v.get_ref()
            ),
        );
    }
    path
}

/// Checks `[dns_local]` (paths other than programs are relative to the config file).
pub fn dns_local(
    errs: &mut Errors<'_>,
    raw: &Spanned<RawDnsLocal>,
    interfaces: &std::collections::BTreeMap<String, String>,
) -> DnsLocal {
    let r = raw.get_ref();
    let unbound_control = match &r.unbound_control {
        Some(v) => absolute_program(errs, "dns_local.unbound_control", v),
        None => PathBuf::from(DEFAULT_UNBOUND_CONTROL),
    };
    let mut names = Vec::new();
    for i in &r.interfaces {
        if !interfaces.contains_key(i.get_ref()) {
            errs.at(
                i.span(),
                format!(
                    "dns_local.interfaces: {:?} is not a logical interface of [interfaces]",
                    i.get_ref()
                ),
            );
        } else if names.contains(i.get_ref()) {
            errs.at(
                i.span(),
                format!("dns_local.interfaces: {:?} is listed twice", i.get_ref()),
            );
        } else {
            names.push(i.get_ref().clone());
        }
    }
    DnsLocal {
        include: errs.resolve(&r.include),
        unbound_control,
        unbound_conf: r.unbound_conf.as_ref().map(|p| errs.resolve(p)),
        control_socket: r.control_socket.as_ref().map(|p| errs.resolve(p)),
        interfaces: names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_normalized() {
        assert_eq!(check_name("NAS.Example.lan."), Ok("nas.example.lan".into()));
        assert_eq!(
            check_name("_sip._tcp.example"),
            Ok("_sip._tcp.example".into())
        );
        assert!(check_name("").is_err());
        assert!(check_name("a..b").is_err());
        assert!(check_name("-a.b").is_err());
        assert!(check_name("a b").expect_err("space").contains("' '"));
        assert!(check_name(&"a".repeat(64)).is_err());
        assert!(check_name(&["abc"; 70].join(".")).is_err());
        assert!(check_name("a\"b").is_err());
    }
}
