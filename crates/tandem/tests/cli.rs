//! The CLI's contract without a running daemon: check, and status with nobody answering.

use std::process::Command;

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

fn config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("node.toml");
    std::fs::write(&p, body).expect("write config");
    p
}

fn good(dir: &std::path::Path) -> String {
    format!(
        r#"[node]
name = "fw1"
advskew = 0
preempt = true
control_socket = "{}/fw1.sock"

[interfaces]
lan = "eth0"

[carp]
passphrase = "s3cret"
advbase = 1

[[vips]]
vhid = 7
interface = "lan"
addresses = ["192.0.2.100/24"]
"#,
        dir.display()
    )
}

#[test]
fn check_accepts_the_contract_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = config(dir.path(), &good(dir.path()));
    let out = Command::new(TANDEM)
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (node fw1, 1 VIP on 1 interface)"));
}

#[test]
fn check_names_file_and_line_of_a_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = config(
        dir.path(),
        &good(dir.path()).replace("192.0.2.100/24", "192.0.2.100"),
    );
    let out = Command::new(TANDEM)
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:17:14: \"192.0.2.100\" is not an address with prefix length",
        p.display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn status_without_a_daemon_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = config(dir.path(), &good(dir.path()));
    let out = Command::new(TANDEM)
        .args(["status", "--json", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no daemon answers on control socket"), "{err}");
    assert!(out.stdout.is_empty());
}
