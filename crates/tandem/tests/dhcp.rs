//! The `dhcp` area with a real Kea (Debian's kea-dhcp4-server) in network namespaces: tandem
//! writes Kea's config and loads it through Kea's control socket; a client (busybox udhcpc)
//! gets a lease from the pool, and after a reservation is added and `tandem reload`ed, the
//! reserved address. Kea's config, leases, pid, lock and socket files live in the lab dir.
//! Then two nodes (config sync, CARP on the lan) with Kea in HA hot-standby: a client keeps
//! its address when the master's box dies, renewing from the other node's Kea, and a
//! reservation added on the primary is served by the peer's Kea.

mod common;
#[allow(dead_code)]
#[path = "configsync/harness.rs"]
mod harness;

use common::*;
use lab::{Host, Lab, Process};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LAN: &[(&str, &str)] = &[("lan", "eth0")];
const LAN_TO_ANY_TCP: &str = r#"
[[rules]]
interface = "lan"
action = "pass"
protocol = "tcp"
description = "lan to anything over tcp"
"#;
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

const CLIENT2_MAC: &str = "02:00:00:00:d4:02";

/// `[dhcp_local]` with Kea's HA; `ha` is the `[dhcp_local.ha]` body.
fn local_ha(dir: &Path, ha: &str) -> String {
    format!("{}\n[dhcp_local.ha]\n{ha}", local(dir))
}

fn ha_state(n: &Node) -> Value {
    n.try_status()
        .map(|s| s["dhcp"]["ha"].clone())
        .unwrap_or(Value::Null)
}

/// udhcpc running in the background in `client`, its script configuring the address (as a
/// real client would) and appending `EVENT IP SERVERID` lines to `events`.
fn udhcpc(client: &Host, dir: &Path, events: &Path) -> Process {
    let script = dir.join("udhcpc-events.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  bound|renew)\n    ip addr flush dev \"$interface\"\n    ip addr add \"$ip/$mask\" dev \"$interface\"\n    echo \"$1 $ip $serverid\" >> {0} ;;\n  deconfig) ip addr flush dev \"$interface\"; echo deconfig >> {0} ;;\n  *) echo \"$1\" >> {0} ;;\nesac\nexit 0\n",
            events.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let s = script.display().to_string();
    client
        .spawn(&[
            "udhcpc", "-i", "eth0", "-f", "-t", "10", "-T", "2", "-s", &s,
        ])
        .expect("udhcpc")
}

/// The `EVENT IP SERVERID` lines so far.
fn events(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn kea_ha_serves_across_a_failover_and_a_synced_reservation() {
    if !lab::require_netns() || !kea_available() {
        return;
    }
    let mut o = harness::opts();
    // An admin's broad rule: TCP from the lan to anything, the firewall's own addresses too.
    let base = format!("{}{}{LAN_TO_ANY_TCP}", harness::VIPS, harness::BASE_RULES);
    // fw1 derives its partner (fw2, 203.0.113.2:8001) from [[sync.peers]], its listener from
    // [sync] listen, its role (primary) from config sync; fw2, a config sync peer, names fw1.
    // Kea's files (config, leases, socket, pid and lock files), both nodes'.
    let tmpdir = tempfile::tempdir().expect("tmp");
    let tmp = tmpdir.path();
    let (k1, k2) = (tmp.join("fw1-kea"), tmp.join("fw2-kea"));
    for d in [&k1, &k2] {
        std::fs::create_dir_all(d).expect("kea dir");
    }
    o.fw1_areas = format!("{base}{}{}", area(""), local_ha(&k1, ""));
    let fw2_local = local_ha(
        &k2,
        "partner = \"fw1\"\npartner_address = \"203.0.113.1:8001\"\n",
    );
    o.fw2_areas = &fw2_local;
    let c = harness::cluster("dhcp_ha", &o);
    c.wait_in_sync();
    let fw2_conf = std::fs::read_to_string(k2.join("kea-dhcp4.conf")).expect("fw2's Kea config");
    assert!(
        fw2_conf.contains("192.0.2.100") && fw2_conf.contains("\"ens5/192.0.2.3\""),
        "the synced area is in fw2's Kea config:\n{fw2_conf}"
    );
    for (conf, this, url) in [
        (k1.join("kea-dhcp4.conf"), "fw1", "http://203.0.113.2:8001/"),
        (k2.join("kea-dhcp4.conf"), "fw2", "http://203.0.113.1:8001/"),
    ] {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(conf).expect("conf")).expect("json");
        let ha = &v["Dhcp4"]["hooks-libraries"][1]["parameters"]["high-availability"][0];
        assert_eq!(ha["this-server-name"], this, "{ha}");
        assert_eq!(ha["mode"], "hot-standby", "{ha}");
        assert_eq!(ha["peers"][1]["url"], url, "{ha}");
    }
    // Before Kea runs, status says its HA state is unknown, and why.
    let h = ha_state(c.fw1());
    assert_eq!(h["state"], "unknown", "{h}");
    assert!(
        h["error"].as_str().is_some_and(|e| e.contains("kea4.sock")),
        "{h}"
    );
    let mut kea1 = start_kea(&c.h1, &k1);
    let mut kea2 = start_kea(&c.fw2.host, &k2);
    let both_hot = |what: &str| {
        c.wait_long(what, Duration::from_secs(60), || {
            [c.fw1(), &c.fw2].iter().all(|n| {
                let h = ha_state(n);
                h["state"] == "hot-standby" && h["partner_state"] == "hot-standby"
            })
        })
    };
    both_hot("both Keas in hot-standby");
    // Kea's HA listener takes commands without credentials: whatever the rules pass, only the
    // partner reaches it. The lan reaches fw1's sync listener on the same address (the
    // control), not its HA listener.
    c.client
        .run(&[
            "ip",
            "route",
            "replace",
            "203.0.113.0/24",
            "via",
            "192.0.2.2",
        ])
        .expect("route to the sync link");
    let connects = |port: u16| {
        c.client
            .run(&[
                "timeout",
                "3",
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/203.0.113.1/{port}"),
            ])
            .is_ok()
    };
    assert!(connects(8443), "the lan cannot reach fw1's sync listener");
    assert!(!connects(8001), "the lan reached fw1's Kea HA listener");
    let (h1, h2) = (ha_state(c.fw1()), ha_state(&c.fw2));
    assert_eq!(h1["role"], "primary", "{h1}");
    assert_eq!(h1["serving"], serde_json::json!(["fw1"]), "{h1}");
    assert_eq!(h1["partner"], "fw2", "{h1}");
    assert_eq!(h1["partner_state"], "hot-standby", "{h1}");
    assert_eq!(h2["role"], "standby", "{h2}");
    assert_eq!(h2["serving"], serde_json::json!([]), "{h2}");
    let (ok, text, _) = c.fw1().cli(&["status"]);
    assert!(
        ok && text.contains(
            "dhcp HA: hot-standby (primary, serving fw1); partner fw2 at 203.0.113.2:8001: hot-standby"
        ),
        "{text}"
    );
    for n in [c.fw1(), &c.fw2] {
        let missing = undocumented_status_keys(&n.status());
        assert!(
            missing.is_empty(),
            "not in docs/status-json.md: {missing:?}"
        );
    }

    // A reservation added on the primary: pushed to fw2, whose Kea loads it.
    let res = format!(
        "\n[[dhcp.subnets.reservations]]\nmac = \"{CLIENT2_MAC}\"\naddress = \"192.0.2.20\"\n"
    );
    c.edit_fw1(|t| t.replace(&area(""), &area(&res)));
    c.wait_in_sync();
    c.wait("fw2's Kea loaded the reservation", || {
        let s = c.fw2.status();
        s["dhcp"]["reservations"] == 1 && s["dhcp"]["last_apply"] == "loaded"
    });
    assert!(std::fs::read_to_string(k2.join("kea-dhcp4.conf"))
        .expect("conf")
        .contains(CLIENT2_MAC));
    // `config show` on both nodes lists the area and where it came from.
    for (who, n) in [("fw1", c.fw1()), ("fw2", &c.fw2)] {
        let (ok, show) = harness::tandem(n, &["config", "show"]);
        assert!(ok && show.contains("# area dhcp"), "{who}: {show}");
        assert!(show.contains(CLIENT2_MAC), "{who}: {show}");
    }
    // A reload restarts Kea's HA: wait for both to be back in hot-standby.
    both_hot("both Keas in hot-standby after the reload");

    // A client on the lan (no address of its own) gets a lease through the master, fw1.
    c.fw1().expect_state(7, "MASTER", ELECTION);
    c.client
        .run(&["ip", "addr", "flush", "dev", "eth0"])
        .expect("flush");
    c.client
        .run(&["ip", "link", "set", "eth0", "address", CLIENT_MAC])
        .expect("mac");
    let ev = tmp.join("client.events");
    let mut dhcpc = udhcpc(&c.client, tmp, &ev);
    c.wait("the client's first lease", || {
        events(&ev).iter().any(|e| e.starts_with("bound "))
    });
    let first = events(&ev)
        .into_iter()
        .find(|e| e.starts_with("bound "))
        .expect("bound");
    let parts: Vec<&str> = first.split(' ').collect();
    let addr = parts[1].to_string();
    assert_eq!(parts[2], "192.0.2.2", "served by fw1's Kea: {first}");
    eprintln!("lease: {first}");
    // Kea's HA sent the lease to fw2's Kea.
    c.wait("the lease in fw2's lease file", || {
        std::fs::read_to_string(k2.join("leases4.csv"))
            .is_ok_and(|l| l.contains(&addr) && l.contains(CLIENT_MAC))
    });

    // The standby answered nobody; neither Kea listens on a VIP too (fw1 holds 192.0.2.1 on
    // eth0: a second socket there would take every packet twice).
    assert!(
        !kea2.stdout().contains("DHCP4_LEASE_ALLOC"),
        "fw2's Kea gave a lease in hot-standby:\n{}",
        kea2.stdout()
    );
    for k in [&kea1, &kea2] {
        assert!(
            !k.stdout()
                .contains("DHCPSRV_MULTIPLE_RAW_SOCKETS_PER_IFACE"),
            "{}",
            k.stdout()
        );
    }

    // fw1's box dies: tandem and Kea killed, its links down.
    let mut c = c;
    c.kill_fw1();
    kea1.kill().expect("kill fw1's Kea");
    for dev in ["eth0", "eth1", "eth2"] {
        c.h1.set_link(dev, false).expect("link down");
    }
    c.fw2.expect_state(7, "MASTER", TAKEOVER);
    c.wait_long("fw2's Kea in partner-down", Duration::from_secs(30), || {
        ha_state(&c.fw2)["state"] == "partner-down"
    });
    let h2 = ha_state(&c.fw2);
    assert_eq!(h2["serving"], serde_json::json!(["fw1"]), "{h2}");
    let (ok, text, _) = c.fw2.cli(&["status"]);
    assert!(
        ok && text.contains(
            "dhcp HA: partner-down (standby, serving fw1); partner fw1 at 203.0.113.1:8001: unavailable (unreachable)"
        ),
        "{text}"
    );

    // The client renews (SIGUSR1: now), from fw2's Kea, and keeps its address.
    let before = events(&ev).len();
    dhcpc.signal("USR1").expect("renew");
    c.wait_long(
        "the client renews from fw2",
        Duration::from_secs(60),
        || {
            events(&ev)[before..].iter().any(|e| {
                e.ends_with(" 192.0.2.3") && (e.starts_with("renew ") || e.starts_with("bound "))
            })
        },
    );
    let after = events(&ev);
    eprintln!("client events: {after:?}");
    let renewed = after[before..]
        .iter()
        .find(|e| e.ends_with(" 192.0.2.3"))
        .expect("renewed");
    assert_eq!(
        renewed.split(' ').nth(1),
        Some(addr.as_str()),
        "the client kept its address: {after:?}"
    );
    dhcpc.kill().expect("kill udhcpc");

    // Another client, the reservation's MAC: fw2's Kea serves the reserved address.
    c.client
        .run(&["ip", "link", "set", "eth0", "address", CLIENT2_MAC])
        .expect("mac");
    let got = lease(&c.client, tmp, 3).unwrap_or_else(|| panic!("no lease:\n{}", kea2.stdout()));
    assert!(got.starts_with("192.0.2.20 "), "not the reservation: {got}");

    // fw1's box comes back: its Kea fetches the leases fw2 gave meanwhile, then both are in
    // hot-standby again with fw1 serving.
    for dev in ["eth0", "eth1", "eth2"] {
        c.h1.set_link(dev, true).expect("link up");
    }
    c.start_fw1();
    let kea1 = start_kea(&c.h1, &k1);
    c.wait_long(
        "both Keas in hot-standby after fw1 came back",
        Duration::from_secs(60),
        || {
            [c.fw1(), &c.fw2].iter().all(|n| {
                let h = ha_state(n);
                h["state"] == "hot-standby" && h["partner_state"] == "hot-standby"
            })
        },
    );
    assert_eq!(ha_state(c.fw1())["serving"], serde_json::json!(["fw1"]));
    let leases1 = std::fs::read_to_string(k1.join("leases4.csv")).expect("fw1's leases");
    assert!(
        leases1.contains("192.0.2.20") && leases1.contains(CLIENT2_MAC),
        "fw1's Kea did not fetch fw2's lease:\n{leases1}\n{}",
        kea1.stdout()
    );
    drop(kea1);
    kea2.kill().expect("kill fw2's Kea");
}
