//! The `dhcp` area with a real Kea (Debian's kea-dhcp4-server) in network namespaces: tandem
//! writes Kea's config and loads it through Kea's control socket; a client (busybox udhcpc)
//! gets a lease from the pool, and after a reservation is added and `tandem reload`ed, the
//! reserved address. Kea's config, leases, pid, lock and socket files live in the lab dir.

mod common;

use common::*;
use lab::{Host, Lab, Process};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LAN: &[(&str, &str)] = &[("lan", "eth0")];
const CLIENT_MAC: &str = "02:00:00:00:d4:01";

fn area(reservation: &str) -> String {
    format!(
        r#"
[dhcp]
lease_time = 300

[[dhcp.subnets]]
interface = "lan"
subnet = "192.0.2.0/24"
pools = ["192.0.2.100-192.0.2.149"]
routers = ["192.0.2.1"]
dns_servers = ["192.0.2.1"]
domain_name = "lan.example.org"
{reservation}"#
    )
}

fn local(dir: &Path) -> String {
    format!(
        "\n[dhcp_local]\nconfig_file = \"{0}/kea-dhcp4.conf\"\ncontrol_socket = \"{0}/kea4.sock\"\nlease_file = \"{0}/leases4.csv\"\n",
        dir.display()
    )
}

fn kea_available() -> bool {
    let ok = Path::new("/usr/sbin/kea-dhcp4").exists() && Path::new("/usr/sbin/udhcpc").exists();
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "kea-dhcp4 or udhcpc missing: run scripts/deps.sh"
        );
        eprintln!("skipped: kea-dhcp4 or udhcpc missing (scripts/deps.sh installs them)");
    }
    ok
}

/// Starts kea-dhcp4 in `host` with its config, pid and lock files under `dir`.
fn start_kea(host: &Host, dir: &Path) -> Process {
    let conf = dir.join("kea-dhcp4.conf");
    let d = dir.display().to_string();
    let p = host
        .spawn(&[
            "env",
            &format!("KEA_PIDFILE_DIR={d}"),
            &format!("KEA_LOCKFILE_DIR={d}"),
            "kea-dhcp4",
            "-c",
            &conf.display().to_string(),
        ])
        .expect("spawn kea");
    let sock = dir.join("kea4.sock");
    let up = lab::wait_until(Duration::from_secs(15), || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    assert!(up, "Kea never opened its control socket:\n{}", p.stdout());
    p
}

/// One DHCP exchange by udhcpc in the client; the address it was given (None: no lease).
fn lease(client: &Host, dir: &Path, n: u32) -> Option<String> {
    let out = dir.join(format!("udhcpc-{n}.env"));
    let script = dir.join("udhcpc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip $router $dns $domain\" > {}\nexit 0\n",
            out.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let s = script.display().to_string();
    let pid = dir.join(format!("udhcpc-{n}.pid")).display().to_string();
    let _ = client.run(&[
        "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "2", "-s", &s, "-p", &pid,
    ]);
    std::fs::read_to_string(out)
        .ok()
        .map(|t| t.trim().to_string())
}

#[test]
fn a_client_gets_a_lease_from_kea_and_a_reservation_after_a_reload() {
    if !lab::require_netns() || !kea_available() {
        return;
    }
    let mut lab = Lab::new("dhcp_kea_lease").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let h1 = lab.host("fw1").expect("fw1");
    let client = lab.host("client").expect("client");
    lab.connect(&h1, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    lab.connect(&client, "eth0", &sw, &[]).expect("connect");
    client
        .run(&["ip", "link", "set", "eth0", "address", CLIENT_MAC])
        .expect("mac");
    let dir: PathBuf = lab.dir().join("fw1-kea");
    std::fs::create_dir_all(&dir).expect("kea dir");
    let vips = [VipSpec {
        vhid: 1,
        interface: "lan",
        addresses: &["192.0.2.1/24"],
    }];
    let cfg = write_config_extra(
        &lab,
        "fw1",
        0,
        true,
        "s3cret",
        LAN,
        &vips,
        &format!("{}{}", area(""), local(&dir)),
    );
    // Tandem writes Kea's config before Kea runs (Kea reads it when it starts).
    let fw1 = Node::start(&h1, cfg.clone());
    let s = fw1.status();
    assert_eq!(s["dhcp"]["last_apply"], "written", "{s}");
    assert_eq!(s["dhcp"]["subnets"], 1, "{s}");
    let missing = undocumented_status_keys(&s);
    assert!(
        missing.is_empty(),
        "not in docs/status-json.md: {missing:?}"
    );
    let mut kea = start_kea(&h1, &dir);

    let got = lease(&client, &dir, 1)
        .unwrap_or_else(|| panic!("no lease; kea:\n{}\ntandem:\n{}", kea.stdout(), fw1.log()));
    eprintln!("first lease: {got}");
    let mut parts = got.split(' ');
    let addr = parts.next().unwrap_or("");
    let last: u8 = addr
        .strip_prefix("192.0.2.")
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("lease outside the subnet: {got}"));
    assert!((100..=149).contains(&last), "not from the pool: {got}");
    assert_eq!(
        got,
        format!("{addr} 192.0.2.1 192.0.2.1 lan.example.org"),
        "options"
    );
    // The lease is in Kea's lease file under the lab dir.
    let leases = std::fs::read_to_string(dir.join("leases4.csv")).expect("leases");
    assert!(
        leases.contains(addr) && leases.contains(CLIENT_MAC),
        "{leases}"
    );

    // A reservation for the client, `tandem reload`: Kea reloads and serves it.
    edit_config(&cfg, |t| {
        t.replace(
            &area(""),
            &area(&format!(
                "\n[[dhcp.subnets.reservations]]\nmac = \"{CLIENT_MAC}\"\naddress = \"192.0.2.20\"\nhostname = \"client\"\n"
            )),
        )
    });
    let (ok, out, err) = fw1.cli(&["reload"]);
    assert!(ok, "{out}{err}");
    let s = fw1.status();
    assert_eq!(s["dhcp"]["last_apply"], "loaded", "{s}");
    assert_eq!(s["dhcp"]["reservations"], 1, "{s}");
    let (ok, text, _) = fw1.cli(&["status"]);
    assert!(
        ok && text.contains("dhcp: 1 subnet, 1 reservation"),
        "{text}"
    );
    let got = lease(&client, &dir, 2).unwrap_or_else(|| panic!("no lease:\n{}", kea.stdout()));
    eprintln!("second lease: {got}");
    assert!(got.starts_with("192.0.2.20 "), "not the reservation: {got}");

    // A pool outside the subnet: refused with FILE:LINE:COL; Kea's file stays as it was.
    let before = std::fs::read_to_string(dir.join("kea-dhcp4.conf")).expect("kea conf");
    edit_config(&cfg, |t| {
        t.replace("192.0.2.100-192.0.2.149", "192.0.3.100-192.0.3.149")
    });
    let (ok, out, err) = fw1.cli(&["reload"]);
    assert!(!ok, "{out}");
    let text = std::fs::read_to_string(&cfg).expect("cfg");
    let line = text
        .lines()
        .position(|l| l.starts_with("pools = "))
        .expect("pools")
        + 1;
    assert!(
        format!("{out}{err}").contains(&format!(
            "{}:{line}:10: dhcp pool 192.0.3.100-192.0.3.149 is not inside subnet 192.0.2.0/24",
            cfg.display()
        )),
        "{out}{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("kea-dhcp4.conf")).expect("kea conf"),
        before
    );
    kea.kill().expect("kill kea");
}

fn edit_config(path: &Path, f: impl FnOnce(String) -> String) {
    let t = std::fs::read_to_string(path).expect("read");
    let n = f(t.clone());
    assert_ne!(t, n, "the edit changed nothing");
    std::fs::write(path, n).expect("write");
}
