//! `[[vips]] peers`: unicast peers, and the located errors for bad ones.

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
addresses = ["192.0.2.100/24", "2001:db8::100/64"]
"#;

fn with_peers(peers: &str) -> String {
    format!("{BASE}peers = {peers}\n")
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let file = Path::new("t.toml");
    Config::build(ParsedFile::parse(file, text.to_string())?, file)
}

fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn peers_parse_in_both_families() {
    let c = parse(&with_peers(
        r#"["192.0.2.1", "192.0.2.2", "2001:db8::2", "fe80::2"]"#,
    ))
    .expect("valid");
    let peers: Vec<String> = c.vips[0].peers.iter().map(ToString::to_string).collect();
    assert_eq!(peers, ["192.0.2.1", "192.0.2.2", "2001:db8::2", "fe80::2"]);
    let c = parse(BASE).expect("valid");
    assert!(c.vips[0].peers.is_empty(), "no peers: multicast");
}

#[test]
fn bad_peers_are_each_reported_where_they_are_written() {
    // Line 16 is `peers = [...]`; each error names the column of its entry.
    let e = errors(&with_peers(
        r#"["192.0.2.2/24", "nope", "192.0.2.2", "192.0.2.2", "224.0.0.18", "192.0.2.100"]"#,
    ));
    assert_eq!(e.len(), 5, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:16:10: \"192.0.2.2/24\" is not an address"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("t.toml:16:26: \"nope\" is not an address"),
        "{e:?}"
    );
    assert!(
        e[2].starts_with("t.toml:16:47: peer 192.0.2.2 is listed twice"),
        "{e:?}"
    );
    assert!(
        e[3].contains("peer 224.0.0.18 is not a unicast address"),
        "{e:?}"
    );
    assert!(e[4].contains("peer 192.0.2.100 is a VIP (vhid 7)"), "{e:?}");
}

#[test]
fn a_peer_of_a_family_the_vip_lacks_is_an_error() {
    let text = BASE.replace(r#", "2001:db8::100/64""#, "");
    let e = errors(&format!("{text}peers = [\"192.0.2.2\", \"2001:db8::2\"]\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("peer 2001:db8::2 is IPv6, but this VIP has no IPv6 address"),
        "{e:?}"
    );
    let e = errors(&with_peers("[]"));
    assert!(e[0].contains("vips.peers is empty"), "{e:?}");
}

#[test]
fn own_address_in_peers_is_skipped_but_not_alone() {
    let own: BTreeMap<String, Vec<ipnet::IpNet>> = [(
        "lan".to_string(),
        vec!["192.0.2.1/24".parse().expect("literal")],
    )]
    .into();
    // One list for every node (the area is synced): our own address is fine among others.
    let c = parse(&with_peers(r#"["192.0.2.1", "192.0.2.2"]"#)).expect("valid");
    assert!(c.check_vips(&own).is_ok());
    // Only our own address: adverts would go nowhere.
    let c = parse(&with_peers(r#"["192.0.2.1", "2001:db8::2"]"#)).expect("valid");
    let e: Vec<String> = c
        .check_vips(&own)
        .expect_err("own address alone")
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:16:10: peer 192.0.2.1 is this node's own address on lan"),
        "{e:?}"
    );
}
