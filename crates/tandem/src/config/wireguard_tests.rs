//! The `wireguard` area: checked with FILE:LINE:COL, the key inlined and never shown.

use super::*;
use crate::config::{Config, ParsedFile};
use std::path::Path;

const NODE: &str = "[node]\nname = \"fw1\"\ncontrol_socket = \"/run/t.sock\"\n[interfaces]\nlan = \"eth0\"\n[carp]\npassphrase = \"s3cret\"\n";
const KEY: &str = "YBnMYhMJ6Bxmq3+sNy6Dqp1TA8pEGAyfTWCV7oc8kWs=";
const PEER1: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const PEER2: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

fn build_in(file: &Path, text: &str) -> Result<Config, Vec<String>> {
    ParsedFile::parse(file, text.to_string())
        .and_then(|p| Config::build(p, file))
        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

fn build(text: &str) -> Result<Config, Vec<String>> {
    build_in(Path::new("t.toml"), text)
}

fn wg(body: &str) -> String {
    format!("{NODE}\n[[wireguard]]\nname = \"wg0\"\n{body}")
}

/// `t.toml:LINE:COL` of the first occurrence of `needle` (1-based, column in characters).
fn at(text: &str, needle: &str, nth: usize) -> String {
    let pos = text.match_indices(needle).nth(nth).expect("needle").0;
    let line = text[..pos].matches('\n').count() + 1;
    let col = pos - text[..pos].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("t.toml:{line}:{col}")
}

#[test]
fn a_whole_interface_is_checked_and_typed() {
    let text = wg(&format!(
        "listen_port = 51820\naddresses = [\"203.0.113.129/25\"]\nprivate_key = \"{KEY}\"\n\
         [[wireguard.peers]]\npublic_key = \"{PEER1}\"\nallowed_ips = [\"198.51.100.64/26\", \"2001:db8:1::/48\"]\n\
         endpoint = \"198.51.100.50:51820\"\npersistent_keepalive = 25\n\
         [[wireguard.peers]]\npublic_key = \"{PEER2}\"\nallowed_ips = [\"192.0.2.77\"]\n"
    ));
    let cfg = build(&text).expect("valid");
    let w = &cfg.wireguard[0];
    assert_eq!(w.name, "wg0");
    assert_eq!(w.device, "wg0");
    assert_eq!(w.listen_port, Some(51820));
    assert_eq!(encode_key(w.private_key.expose()), KEY);
    assert_eq!(w.peers.len(), 2);
    assert_eq!(w.peers[0].persistent_keepalive, Some(25));
    assert_eq!(
        w.peers[0].endpoint,
        Some("198.51.100.50:51820".parse().expect("addr"))
    );
    assert_eq!(
        w.peers[1].allowed_ips,
        vec!["192.0.2.77/32".parse().expect("net")]
    );
    // The tunnel is a logical interface: rules may name it.
    assert_eq!(cfg.interfaces.get("wg0").map(String::as_str), Some("wg0"));
    // Nothing of the key in Debug.
    assert!(!format!("{:?}", cfg.wireguard).contains(KEY));
}

#[test]
fn interfaces_maps_the_device() {
    let text = format!(
        "{}\n[[wireguard]]\nname = \"wg0\"\nprivate_key = \"{KEY}\"\n",
        NODE.replace("lan = \"eth0\"", "lan = \"eth0\"\nwg0 = \"tun-fw1\"")
    );
    let cfg = build(&text).expect("valid");
    assert_eq!(cfg.wireguard[0].device, "tun-fw1");
    assert_eq!(cfg.interfaces["wg0"], "tun-fw1");
    assert_eq!(cfg.wireguard_socket_dir, Path::new(DEFAULT_SOCKET_DIR));
    // [wireguard_local] socket_dir: node-local, relative to the file.
    let cfg = build_in(
        Path::new("/etc/tandem/fw1.toml"),
        &format!("{text}\n[wireguard_local]\nsocket_dir = \"run/wg\"\n"),
    )
    .expect("valid");
    assert_eq!(cfg.wireguard_socket_dir, Path::new("/etc/tandem/run/wg"));
}

#[test]
fn bad_keys_are_located_and_never_quoted() {
    let text = wg("private_key = \"not base64!\"\n");
    let e = build(&text).expect_err("bad base64");
    assert_eq!(
        e,
        vec![format!(
            "{}: wireguard \"wg0\": private_key is not base64 (a key as `wg genkey` or `wg pubkey` prints it)",
            at(&text, "\"not base64", 0)
        )]
    );
    let short = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let text = wg(&format!("private_key = \"{short}\"\n"));
    let e = build(&text).expect_err("short");
    assert!(
        e[0].starts_with(&format!(
            "{}: wireguard \"wg0\": private_key is 24 bytes long; a WireGuard key is 32 bytes",
            at(&text, &format!("\"{short}"), 0)
        )),
        "{e:?}"
    );
    assert!(!e[0].contains(short));
    let text = wg(&format!(
        "private_key = \"{KEY}\"\n[[wireguard.peers]]\npublic_key = \"{}\"\n",
        &PEER1[..20]
    ));
    let e = build(&text).expect_err("peer key");
    assert!(
        e[0].starts_with(&format!(
            "{}: wireguard \"wg0\": peer 1: public_key ",
            at(&text, "\"xTIB", 0)
        )),
        "{e:?}"
    );
    let e = build(&wg("listen_port = 1\n")).expect_err("no key");
    assert!(
        e[0].contains("private_key or wireguard \"wg0\": private_key_file is required"),
        "{e:?}"
    );
}

#[test]
fn peers_allowed_ips_ports_and_names_are_checked() {
    let text = wg(&format!(
        "private_key = \"{KEY}\"\n[[wireguard.peers]]\npublic_key = \"{PEER1}\"\nallowed_ips = [\"192.0.2.1/24\"]\n"
    ));
    let e = build(&text).expect_err("host bits");
    assert_eq!(
        e,
        vec![format!(
            "{}: wireguard \"wg0\": peer 1: allowed IP \"192.0.2.1/24\" is not a prefix: it has host bits set (the prefix is 192.0.2.0/24)",
            at(&text, "\"192.0.2.1/24", 0)
        )]
    );
    let text = wg(&format!(
        "private_key = \"{KEY}\"\n[[wireguard.peers]]\npublic_key = \"{PEER1}\"\nallowed_ips = [\"192.0.2.0/25\"]\n\
         [[wireguard.peers]]\npublic_key = \"{PEER1}\"\nallowed_ips = [\"192.0.2.0/25\"]\nendpoint = \"vpn.example.org:51820\"\npersistent_keepalive = 70000\n"
    ));
    let e = build(&text).expect_err("dups");
    assert_eq!(e.len(), 4, "{e:?}");
    assert_eq!(
        e[0],
        format!(
            "{}: wireguard \"wg0\": peer 2: public_key is also the key of an earlier peer",
            at(&text, &format!("\"{PEER1}"), 1)
        )
    );
    assert!(
        e[1].contains("allowed IP 192.0.2.0/25 is also an allowed IP of peer 1"),
        "{e:?}"
    );
    assert!(
        e[2].contains("endpoint \"vpn.example.org:51820\" is not ADDRESS:PORT"),
        "{e:?}"
    );
    assert!(
        e[3].contains("persistent_keepalive must be 0 to 65535, not 70000"),
        "{e:?}"
    );
    // Two interfaces on one port, one name twice.
    let text = format!(
        "{NODE}\n[[wireguard]]\nname = \"wg0\"\nlisten_port = 51820\nprivate_key = \"{KEY}\"\n\
         [[wireguard]]\nname = \"wg1\"\nlisten_port = 51820\nprivate_key = \"{KEY}\"\n\
         [[wireguard]]\nname = \"wg0\"\nprivate_key = \"{KEY}\"\n"
    );
    let e = build(&text).expect_err("clash");
    assert_eq!(
        e,
        vec![
            format!(
                "{}: wireguard \"wg1\": listen_port 51820 is also the port of \"wg0\"",
                at(&text, "51820", 1)
            ),
            format!(
                "{}: wireguard interface \"wg0\" is defined twice",
                at(&text, "\"wg0\"", 1)
            ),
        ]
    );
    let e = build(&wg(&format!(
        "private_key = \"{KEY}\"\naddresses = [\"203.0.113.1\"]\n"
    )))
    .expect_err("no prefix length");
    assert!(
        e[0].contains("address \"203.0.113.1\" is not ADDRESS/PREFIX"),
        "{e:?}"
    );
}

#[test]
fn a_key_file_is_read_and_inlined_for_the_peers() {
    let dir = tempfile::tempdir().expect("tmp");
    let key_file = dir.path().join("wg0.key");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("write");
    let own = dir.path().join("fw1.toml");
    let text = wg("private_key_file = \"wg0.key\"\n");
    let cfg = build_in(&own, &text).expect("valid");
    assert_eq!(encode_key(cfg.wireguard[0].private_key.expose()), KEY);
    // The area as hashed and pushed holds the key itself, not the path.
    let area = configsync::area::extract(&cfg.plain, configsync::Area::Wireguard);
    assert!(area.contains(KEY) && !area.contains("wg0.key"), "{area}");
    // (config show and get_areas hide it: tests/wireguard.rs.)
    // A file with a bad key: the error points at private_key_file, names the file, not the key.
    std::fs::write(&key_file, "c2hvcnQ=\n").expect("write");
    let e = build_in(&own, &text).expect_err("short key");
    assert!(
        e[0].contains(&format!(
            "wireguard \"wg0\": private_key_file {}: the key in it is 5 bytes long",
            key_file.display()
        )),
        "{e:?}"
    );
}

#[test]
fn a_synced_area_cannot_name_a_key_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let own_path = dir.path().join("fw2.toml");
    let own = ParsedFile::parse(&own_path, NODE.to_string()).expect("own");
    let synced_path = dir.path().join("synced.toml");
    let synced = ParsedFile::parse_stored(
        &synced_path,
        "[[wireguard]]\nname = \"wg0\"\nprivate_key_file = \"/etc/shadow\"\n".to_string(),
    )
    .expect("synced");
    let mut composed = own;
    composed.take_area(configsync::Area::Wireguard, &synced);
    let e = Config::build(composed, &own_path).expect_err("refused");
    assert!(
        e.0[0].to_string().starts_with(&format!(
            "{}:3:20: wireguard \"wg0\": private_key_file is taken from the node's own file only",
            synced_path.display()
        )),
        "{}",
        e.0[0]
    );
}

#[test]
fn the_vip_is_one_of_the_vips_and_needs_a_port() {
    let vips = "\n[[vips]]\nvhid = 8\ninterface = \"lan\"\naddresses = [\"192.0.2.1/24\"]\n";
    let ok = format!(
        "{}{vips}",
        wg(&format!(
            "listen_port = 51820\nvip = \"192.0.2.1\"\nprivate_key = \"{KEY}\"\n"
        ))
    );
    let cfg = build(&ok).expect("valid");
    assert_eq!(cfg.wireguard[0].vip, Some("192.0.2.1".parse().expect("ip")));
    let bad = ok.replace("vip = \"192.0.2.1\"", "vip = \"192.0.2.9\"");
    let e = build(&bad).expect_err("not a vip");
    assert_eq!(
        e,
        vec![format!(
            "{}: wireguard \"wg0\": vip 192.0.2.9 is not an address of [[vips]]",
            at(&bad, "\"192.0.2.9", 0)
        )]
    );
    let e = build(&ok.replace("listen_port = 51820\n", "")).expect_err("no port");
    assert!(e[0].contains("vip needs a listen_port"), "{e:?}");
}
