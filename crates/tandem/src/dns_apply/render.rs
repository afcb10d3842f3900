//! The `[dns]` area as unbound config text (pure): a `server:` clause with the addresses to
//! listen on, who may ask, and the host overrides (`local-data`, `local-data-ptr`), then a
//! `forward-zone:` per domain override and one for `.` with the forwarders. Every value in it
//! was checked when the config was built (names of letters, digits, `-`, `_` and dots; IP
//! addresses), so nothing can break out of its quotes.

use crate::config::dns::Dns;
use ipnet::IpNet;
use std::fmt::Write as _;
use std::net::IpAddr;

/// What unbound listens on and answers: addresses (this node's and the VIPs of the listed
/// interfaces) and the networks they are in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listen {
    pub addresses: Vec<IpAddr>,
    pub networks: Vec<IpNet>,
}

pub const HEADER: &str = "# Written by tandem from the synced [dns] area and [dns_local]: do not edit,\n# the next change of the config replaces this file.\n";

pub fn render(dns: &Dns, listen: &Listen) -> String {
    let mut out = String::from(HEADER);
    out.push_str("server:\n");
    if !listen.addresses.is_empty() {
        // VIPs come and go with mastership: unbound binds them before this node holds them.
        out.push_str("    ip-freebind: yes\n");
        for a in &listen.addresses {
            let _ = writeln!(out, "    interface: {a}");
        }
        for n in &listen.networks {
            let _ = writeln!(out, "    access-control: {n} allow");
        }
    }
    for h in &dns.hosts {
        for a in &h.addresses {
            let rr = if a.is_ipv4() { "A" } else { "AAAA" };
            let _ = writeln!(out, "    local-data: \"{}. {} IN {rr} {a}\"", h.name, h.ttl);
            let _ = writeln!(out, "    local-data-ptr: \"{a} {} {}.\"", h.ttl, h.name);
        }
    }
    for d in &dns.domains {
        // Private domains are not signed from the root.
        let _ = writeln!(out, "    domain-insecure: \"{}.\"", d.domain);
    }
    for d in &dns.domains {
        let _ = writeln!(out, "\nforward-zone:\n    name: \"{}.\"", d.domain);
        for s in &d.servers {
            let _ = writeln!(out, "    forward-addr: {s}");
        }
    }
    if !dns.forwarders.is_empty() {
        out.push_str("\nforward-zone:\n    name: \".\"\n");
        for s in &dns.forwarders {
            let _ = writeln!(out, "    forward-addr: {s}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dns::{Domain, Host};

    #[test]
    fn renders_overrides_forward_zones_and_listen_addresses() {
        let dns = Dns {
            forwarders: vec!["198.51.100.53".parse().expect("ip")],
            hosts: vec![Host {
                name: "nas.example.lan".into(),
                addresses: vec![
                    "192.0.2.10".parse().expect("ip"),
                    "2001:db8::10".parse().expect("ip"),
                ],
                ttl: 300,
            }],
            domains: vec![Domain {
                domain: "corp.example".into(),
                servers: vec!["203.0.113.53".parse().expect("ip")],
            }],
        };
        let listen = Listen {
            addresses: vec![
                "192.0.2.2".parse().expect("ip"),
                "192.0.2.1".parse().expect("ip"),
            ],
            networks: vec!["192.0.2.0/24".parse().expect("net")],
        };
        let text = render(&dns, &listen);
        let expected = format!(
            "{HEADER}server:
    ip-freebind: yes
    interface: 192.0.2.2
    interface: 192.0.2.1
    access-control: 192.0.2.0/24 allow
    local-data: \"nas.example.lan. 300 IN A 192.0.2.10\"
    local-data-ptr: \"192.0.2.10 300 nas.example.lan.\"
    local-data: \"nas.example.lan. 300 IN AAAA 2001:db8::10\"
    local-data-ptr: \"2001:db8::10 300 nas.example.lan.\"
    domain-insecure: \"corp.example.\"

forward-zone:
    name: \"corp.example.\"
    forward-addr: 203.0.113.53

forward-zone:
    name: \".\"
    forward-addr: 198.51.100.53
"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn an_empty_area_is_an_empty_server_clause() {
        assert_eq!(
            render(&Dns::default(), &Listen::default()),
            format!("{HEADER}server:\n")
        );
    }
}
