//! The config pipeline: parsing, checks, located errors, composition.

use super::*;
use carp::Advbase;
use std::path::Path;

fn parse(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    Config::build(ParsedFile::parse(file, text.to_string())?, file)
}

const GOOD: &str = r#"
[node]
name = "fw1"
advskew = 0                 # this node's skew for every vhid; a secondary typically uses 100
preempt = true
control_socket = "/run/tandem/fw1.sock"

[interfaces]
lan = "eth0"                # logical name = device on this node

[carp]
passphrase = "s3cret"       # or passphrase_file = "/etc/tandem/carp.key"
advbase = 1

[[vips]]
vhid = 7
interface = "lan"
addresses = ["192.0.2.100/24"]
"#;

fn errors(text: &str) -> Vec<String> {
    match parse(Path::new("t.toml"), text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_contract_example_parses() {
    let c = parse(Path::new("t.toml"), GOOD).expect("valid");
    assert_eq!(c.node.name, "fw1");
    assert_eq!(c.vips.len(), 1);
    assert_eq!(c.vips[0].device, "eth0");
    assert_eq!(c.vips[0].vhid.get(), 7);
    assert_eq!(c.vips[0].advbase, Advbase(1));
    assert_eq!(c.carp.passphrase, b"s3cret");
}

#[test]
fn unknown_interface_is_reported_with_line() {
    let e = errors(&GOOD.replace("interface = \"lan\"", "interface = \"wan\""));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("t.toml:17:13: unknown interface \"wan\""),
        "{e:?}"
    );
}

#[test]
fn vip_mac_is_interface_or_virtual() {
    let c = parse(Path::new("t.toml"), GOOD).expect("valid");
    assert_eq!(c.vips[0].mac, MacMode::Interface);
    let with = |m: &str| GOOD.replace("vhid = 7\n", &format!("vhid = 7\nmac = {m}\n"));
    let c = parse(Path::new("t.toml"), &with("\"virtual\"")).expect("valid");
    assert_eq!(c.vips[0].mac, MacMode::Virtual);
    let e = errors(&with("\"vmac\""));
    assert_eq!(
        e,
        vec![
            "t.toml:17:7: vips.mac must be \"interface\" or \"virtual\", not \"vmac\"".to_string()
        ]
    );
    let e = errors(&with("1"));
    assert!(e.len() == 1 && e[0].starts_with("t.toml:17:"), "{e:?}");
}

#[test]
fn bad_address_vhid_and_skew_are_all_reported() {
    let text = GOOD
        .replace("192.0.2.100/24", "192.0.2.300/24")
        .replace("vhid = 7", "vhid = 0")
        .replace("advskew = 0 ", "advskew = 300 ");
    let e = errors(&text);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].contains(":4:11: node.advskew must be between 0 and 254, not 300"),
        "{e:?}"
    );
    assert!(
        e[1].contains(":16:8: vips.vhid must be between 1 and 255, not 0"),
        "{e:?}"
    );
    assert!(
        e[2].contains("\"192.0.2.300/24\" is not an address"),
        "{e:?}"
    );
}

#[test]
fn typos_and_syntax_errors_name_the_place() {
    let e = errors(&GOOD.replace("preempt = true", "prempt = true"));
    assert!(
        e[0].starts_with("t.toml:5:1:") && e[0].contains("prempt"),
        "{e:?}"
    );
    let e = errors("[node\nname = 1");
    assert!(e[0].starts_with("t.toml:1:"), "{e:?}");
}

#[test]
fn passphrase_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("carp.key"), "from-file\n").expect("write");
    let text = GOOD.replace("passphrase = \"s3cret\"", "passphrase_file = \"carp.key\"");
    let c = parse(&dir.path().join("node.toml"), &text).expect("valid");
    assert_eq!(c.carp.passphrase, b"from-file");
    let e = errors(&text.replace("carp.key", "/nonexistent/carp.key"));
    assert!(
        e[0].contains("cannot read carp.passphrase_file /nonexistent/carp.key"),
        "{e:?}"
    );
}

#[test]
fn duplicate_vhid_and_address_are_rejected() {
    let text = format!(
        "{GOOD}\n[[vips]]\nvhid = 7\ninterface = \"lan\"\naddresses = [\"192.0.2.100/24\"]\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].contains("vhid 7 is used twice"), "{e:?}");
    assert!(e[1].contains("already a VIP of vhid 7"), "{e:?}");
}

#[test]
fn the_control_socket_is_found_in_a_file_that_does_not_parse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("fw1.toml");
    let text = "[node] # this node\nname = \"fw1\"\ncontrol_socket = \"run/fw1.sock\" # relative\n\n[[rules]\ninterface = \"lan\n";
    std::fs::write(&p, text).expect("write");
    assert_eq!(control_socket(&p), Ok(dir.path().join("run/fw1.sock")));
    std::fs::write(&p, "[[rules]\n[nodes]\ncontrol_socket = \"x\"\n").expect("write");
    let e = control_socket(&p).expect_err("no [node]");
    assert!(e.contains("--socket"), "{e}");
}

#[test]
fn the_control_socket_is_found_however_the_file_writes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("fw1.toml");
    for (text, want) in [
        // The scan: no need to parse the rest of the file.
        (
            "[node]\ncontrol_socket = \"/run/a.sock\"\n[[rules]]\n",
            Some("/run/a.sock"),
        ),
        // Only a full parse finds these.
        (
            "node.control_socket = \"/run/b.sock\"\n",
            Some("/run/b.sock"),
        ),
        (
            "node = { name = \"fw1\", control_socket = \"/run/c.sock\" }\n",
            Some("/run/c.sock"),
        ),
        ("[node]\nname = \"fw1\"\n", None),
    ] {
        std::fs::write(&p, text).expect("write");
        match want {
            Some(w) => assert_eq!(control_socket(&p), Ok(PathBuf::from(w)), "{text}"),
            None => {
                let e = control_socket(&p).expect_err(text);
                assert!(e.contains("[node] has no control_socket"), "{e}");
            }
        }
    }
}

#[test]
fn a_composed_config_locates_each_value_in_its_own_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let own_path = dir.path().join("fw2.toml");
    let own = ParsedFile::parse(&own_path, GOOD.to_string()).expect("own");
    let synced_path = dir.path().join("synced.toml");
    let synced = ParsedFile::parse_stored(
        &synced_path,
        "areas_held = [\"vips\"]\n\n[[vips]]\nvhid = 300\ninterface = \"lan\"\naddresses = [\"192.0.2.100/24\"]\n".to_string(),
    )
    .expect("synced");
    let mut composed = own.clone();
    composed.take_area(configsync::Area::Vips, &synced);
    let e = Config::build(composed, &own_path).expect_err("vhid 300");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:4:8: vips.vhid must be between 1 and 255, not 300",
            synced_path.display()
        )),
        "{msg}"
    );
    // The node-local tables still come from the own file.
    let mut ok = own.clone();
    ok.take_area(configsync::Area::Vips, &own);
    let c = Config::build(ok, &own_path).expect("valid");
    assert_eq!(c.node.name, "fw1");
}

/// GOOD with a `[statesync]` table whose key line is `key_line`.
fn with_statesync(key_line: &str) -> String {
    format!("{GOOD}\n[statesync]\ninterface = \"lan\"\npeers = [\"192.0.2.2\"]\n{key_line}\n")
}

/// Where the key's value starts in `with_statesync(key_line)`: "FILE:LINE:COL:".
fn key_place(file: &str, key_line: &str) -> String {
    let text = with_statesync(key_line);
    let line = text.lines().position(|l| l == key_line).expect("key line") + 1;
    let col = key_line.find('"').expect("quoted") + 1;
    format!("{file}:{line}:{col}:")
}

fn statesync_key(c: &Config) -> Vec<u8> {
    c.statesync.as_ref().expect("[statesync]").key.clone()
}

#[test]
fn a_binary_statesync_key_file_is_taken_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("node.toml");
    let text = with_statesync("key_file = \"sync.key\"");
    // Bytes that are not UTF-8 stay what they are; the trailing newline goes.
    let a: Vec<u8> = [&b"binary key "[..], &[0xff, 0xfe, 0x80, 0xc0, 0xbf]].concat();
    let b: Vec<u8> = [&b"binary key "[..], &[0xfe, 0xff, 0xbf, 0xc1, 0x80]].concat();
    std::fs::write(dir.path().join("sync.key"), [&a[..], b"\n"].concat()).expect("write");
    let ka = statesync_key(&parse(&file, &text).expect("key a"));
    std::fs::write(dir.path().join("sync.key"), &b).expect("write");
    let kb = statesync_key(&parse(&file, &text).expect("key b"));
    assert_eq!(ka, a);
    assert_eq!(kb, b);
    assert_ne!(ka, kb);
}

#[test]
fn a_statesync_key_can_be_written_as_hex_or_base64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("node.toml");
    let material = b"sixteen bytes!!!".to_vec();
    let forms = [
        "key = \"sixteen bytes!!!\"",
        "key = \"hex:7369787465656e206279746573212121\"",
        "key = \"hex:7369787465656E206279746573212121\"",
        "key = \"base64:c2l4dGVlbiBieXRlcyEhIQ==\"",
    ];
    for form in forms {
        let c = parse(&file, &with_statesync(form)).unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(statesync_key(&c), material, "{form}");
    }
    // In a key file too (its trailing newline is not part of it).
    std::fs::write(
        dir.path().join("sync.key"),
        "hex:000102030405060708090a0b0c0d0e0f\n",
    )
    .expect("write");
    let c = parse(&file, &with_statesync("key_file = \"sync.key\"")).expect("hex file");
    assert_eq!(statesync_key(&c), (0u8..16).collect::<Vec<_>>());
}

#[test]
fn a_statesync_key_needs_128_bits_and_errors_never_quote_it() {
    for (key_line, want) in [
        (
            "key = \"fifteen bytes!!\"",
            "statesync.key must hold at least 16 bytes (128 bits) of key material, not 15",
        ),
        (
            "key = \"hex:7369787465656e2062797465732121\"",
            "statesync.key must hold at least 16 bytes (128 bits) of key material (32 hex digits), not 15",
        ),
        (
            "key = \"base64:c2l4dGVlbiBieXRlcyEh\"",
            "statesync.key must hold at least 16 bytes (128 bits) of key material (24 base64 characters), not 15",
        ),
        (
            "key = \"hex:7369787465656e20627974657321212x\"",
            "statesync.key: after \"hex:\" come only hex digits (0-9, a-f)",
        ),
        (
            "key = \"hex:7369787465656e2062797465732121212\"",
            "statesync.key: after \"hex:\" comes an even number of hex digits",
        ),
        (
            "key = \"base64:c2l4dGVlbiBieXRlcyEhISE\"",
            "statesync.key: after \"base64:\" comes standard base64",
        ),
        ("key = \"\"", "statesync.key must not be empty"),
    ] {
        let e = errors(&with_statesync(key_line));
        assert_eq!(e.len(), 1, "{key_line}: {e:?}");
        let place = key_place("t.toml", key_line);
        assert!(
            e[0].starts_with(&format!("{place} {want}")),
            "{key_line}: {e:?}"
        );
        let secret = key_line.split('"').nth(1).expect("quoted");
        if !secret.is_empty() {
            assert!(!e[0].contains(secret), "the key is quoted: {e:?}");
        }
    }
    // A key file's too: located at key_file, naming the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("node.toml");
    std::fs::write(dir.path().join("sync.key"), [0xffu8; 15]).expect("write");
    let key_line = "key_file = \"sync.key\"";
    let e = parse(&file, &with_statesync(key_line)).expect_err("15 bytes");
    let place = key_place(&file.display().to_string(), key_line);
    let want = format!(
        "{place} statesync.key_file {} must hold at least 16 bytes (128 bits) of key material, not 15",
        dir.path().join("sync.key").display()
    );
    assert_eq!(e.to_string(), want);
}

#[test]
fn sync_credentials_must_be_long_and_a_primary_pin_is_a_peers_setting() {
    let base = "[sync]\nrole = \"peer\"\nlisten = \"203.0.113.2:8443\"\nstate_dir = \"st\"\nuser = \"sync\"\n";
    let e = errors(&format!("{GOOD}\n{base}password = \"short-pw\"\n"));
    assert!(
        e.iter()
            .any(|m| m.contains("sync.password must be at least 16 characters")),
        "{e:?}"
    );
    let fp = "sha256:".to_string() + &["AB"; 32].join(":");
    let ok = parse(
        Path::new("t.toml"),
        &format!(
            "{GOOD}\n{base}password = \"a-password-long-enough\"\nprimary_fingerprint = \"{fp}\"\n"
        ),
    )
    .expect("valid");
    assert_eq!(
        ok.sync.and_then(|s| s.primary_fingerprint),
        Some([0xAB; 32])
    );
    let e = errors(&format!(
        "{GOOD}\n{}password = \"a-password-long-enough\"\nprimary_fingerprint = \"{fp}\"\n[[sync.peers]]\nname = \"fw2\"\nurl = \"https://203.0.113.2:8443\"\nfingerprint = \"{fp}\"\n",
        base.replace("\"peer\"", "\"primary\"")
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("primary_fingerprint is a peer's setting")),
        "{e:?}"
    );
}

#[test]
fn metrics_listen_takes_ipv4_and_ipv6_and_places_errors() {
    let c = parse(Path::new("t.toml"), GOOD).expect("valid");
    assert_eq!(c.metrics, None);
    for (listen, want) in [
        ("127.0.0.1:9720", "127.0.0.1:9720"),
        ("[::1]:9720", "[::1]:9720"),
    ] {
        let text = format!("{GOOD}\n[metrics]\nlisten = \"{listen}\"\n");
        let c = parse(Path::new("t.toml"), &text).expect("valid");
        let m = c.metrics.expect("[metrics]");
        assert!(m.enabled);
        assert_eq!(m.listen.to_string(), want);
    }
    let lines = GOOD.lines().count() + 3;
    for (listen, msg) in [
        ("localhost:9720", "is not ADDRESS:PORT"),
        ("127.0.0.1", "is not ADDRESS:PORT"),
        ("127.0.0.1:0", "needs a port other than 0"),
    ] {
        let e = errors(&format!("{GOOD}\n[metrics]\nlisten = \"{listen}\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!(
                "t.toml:{lines}:10: metrics.listen: \"{listen}\" {msg}"
            )),
            "{e:?}"
        );
    }
    let e = errors(&format!(
        "{GOOD}\n[metrics]\nlisten = \"127.0.0.1:9720\"\nport = 1\n"
    ));
    assert!(
        e[0].starts_with(&format!("t.toml:{}:", lines + 1)) && e[0].contains("port"),
        "{e:?}"
    );
}
