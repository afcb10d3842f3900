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
