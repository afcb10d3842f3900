//! The `[dns]` area and `[dns_local]`: checked with FILE:LINE:COL.

use super::*;
use std::path::Path;

const BASE: &str = r#"
[node]
name = "fw1"
control_socket = "/run/tandem/fw1.sock"

[interfaces]
lan = "eth0"

[carp]
passphrase = "s3cret"

[[vips]]
vhid = 7
interface = "lan"
addresses = ["192.0.2.1/24"]

[dns_local]
include = "unbound/tandem.conf"
interfaces = ["lan"]
"#;

fn parse(text: &str) -> Result<Config, Vec<String>> {
    let file = Path::new("/etc/tandem/t.toml");
    ParsedFile::parse(file, text.to_string())
        .and_then(|p| Config::build(p, file))
        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

#[test]
fn a_whole_dns_area_parses() {
    let text = format!(
        "{BASE}{}",
        r#"
[dns]
forwarders = ["198.51.100.53", "2001:db8::53"]

[[dns.hosts]]
name = "NAS.example.lan."
addresses = ["192.0.2.10", "2001:db8::10"]
ttl = 60

[[dns.domains]]
domain = "corp.example"
servers = ["203.0.113.53"]
"#
    );
    let c = parse(&text).expect("valid");
    let dns = c.dns.expect("dns");
    assert_eq!(dns.forwarders.len(), 2);
    assert_eq!(dns.hosts[0].name, "nas.example.lan");
    assert_eq!(dns.hosts[0].ttl, 60);
    assert_eq!(dns.domains[0].domain, "corp.example");
    let local = c.dns_local.expect("dns_local");
    assert_eq!(local.include, Path::new("/etc/tandem/unbound/tandem.conf"));
    assert_eq!(
        local.unbound_control,
        Path::new(dns::DEFAULT_UNBOUND_CONTROL)
    );
    assert_eq!(local.interfaces, vec!["lan".to_string()]);
    assert_eq!(configsync::area::count(&c.plain, configsync::Area::Dns), 4);
}

#[test]
fn bad_names_and_addresses_are_located() {
    let text = format!(
        "{BASE}{}",
        r#"
[dns]
forwarders = ["198.51.100.500"]

[[dns.hosts]]
name = "bad name.lan"
addresses = ["192.0.2.10"]

[[dns.hosts]]
name = "nas.lan"
addresses = ["192.0.2.10", "192.0.2.10"]

[[dns.hosts]]
name = "NAS.lan"
addresses = []

[[dns.domains]]
domain = "."
servers = ["203.0.113.53"]
"#
    );
    let e = parse(&text).expect_err("invalid");
    let want = [
        "/etc/tandem/t.toml:22:15: dns.forwarders: \"198.51.100.500\" is not an IP address",
        "/etc/tandem/t.toml:25:8: dns.hosts: name \"bad name.lan\" has ' '",
        "/etc/tandem/t.toml:30:28: dns.hosts nas.lan: 192.0.2.10 is listed twice",
        "/etc/tandem/t.toml:33:8: dns.hosts: nas.lan is overridden twice",
        "/etc/tandem/t.toml:32:1: dns.hosts nas.lan: needs at least one address",
        "/etc/tandem/t.toml:37:10: dns.domains: \".\" is every name: use dns.forwarders",
    ];
    for w in want {
        assert!(e.iter().any(|x| x.contains(w)), "{w}\nnot in {e:#?}");
    }
}

#[test]
fn dns_local_is_checked() {
    let text = BASE.replace(
        "interfaces = [\"lan\"]",
        "interfaces = [\"wan\"]\nunbound_control = \"unbound-control\"",
    );
    let e = parse(&text).expect_err("invalid");
    assert!(
        e.iter()
            .any(|x| x.starts_with("/etc/tandem/t.toml:19:15: dns_local.interfaces: \"wan\"")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|x| x
                .contains("dns_local.unbound_control \"unbound-control\" is not an absolute path")),
        "{e:#?}"
    );
    let text = BASE.replace("[dns_local]", "[dns_local]\nnope = 1");
    let e = parse(&text).expect_err("unknown key");
    assert!(e[0].contains("unknown field `nope`"), "{e:#?}");
}
