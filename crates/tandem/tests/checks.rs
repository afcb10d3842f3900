//! `[[checks]]`: a failing health check demotes its node and the VIPs move to the peer; they
//! move back (with preempt) once it passes `rise` rounds again. Config errors are located.

mod common;

use common::*;
use lab::Lab;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const VIP4: &[&str] = &["192.0.2.100/24"];

fn vip7() -> [VipSpec<'static>; 1] {
    [VipSpec {
        vhid: 7,
        interface: "lan",
        addresses: VIP4,
    }]
}

/// The gateway (the standard cluster's server, 198.51.100.10) drops what comes from `src`.
fn gateway_drops(gw: &lab::Host, src: &str) {
    gw.run(&["nft", "add", "table", "inet", "gwtest"])
        .expect("nft table");
    gw.run(&[
        "nft",
        "add chain inet gwtest input { type filter hook input priority 0 ; }",
    ])
    .expect("nft chain");
    gw.run(&[
        "nft",
        &format!("add rule inet gwtest input ip saddr {src} drop"),
    ])
    .expect("nft rule");
}

fn gateway_answers(gw: &lab::Host) {
    gw.run(&["nft", "delete", "table", "inet", "gwtest"])
        .expect("nft delete table");
}

fn check_of(node: &Node, name: &str) -> serde_json::Value {
    let s = node.status();
    s["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no check {name} in {s}"))
}

fn expect_check(node: &Node, name: &str, state: &str, within: Duration) {
    let ok = lab::wait_until(within, || {
        node.try_status().is_some_and(|s| {
            s["checks"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["name"] == name && c["state"] == state))
        })
    });
    assert!(
        ok,
        "{} check {name}: expected {state}\nstatus: {:?}\nlog:\n{}",
        node.host.name(),
        node.try_status(),
        node.log()
    );
}

#[test]
fn the_gateway_stops_answering_and_the_vip_moves_to_the_peer_and_back() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("checks_gateway_ping_moves_the_vip").expect("lab");
    let st = standard(&mut lab, false);
    let check = "[[checks]]\nname = \"gw\"\nkind = \"ping\"\naddress = \"198.51.100.10\"\n\
                 interface = \"wan\"\ninterval = 0.5\ntimeout = 0.4\ncount = 4\nmax_loss = 25\n\
                 rise = 2\nfall = 3\n";
    let c1 = write_config_extra(
        &lab,
        "fw1",
        0,
        true,
        "s3cret",
        &[("lan", "eth0"), ("wan", "eth1")],
        &vip7(),
        check,
    );
    let c2 = write_config_extra(
        &lab,
        "fw2",
        100,
        true,
        "s3cret",
        &[("lan", "ens5"), ("wan", "ens6")],
        &vip7(),
        check,
    );
    let fw1 = Node::start(&st.fw1, c1);
    let fw2 = Node::start(&st.fw2, c2);
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    expect_check(&fw1, "gw", "up", Duration::from_secs(15));
    let c = check_of(&fw1, "gw");
    assert_eq!(c["kind"], "ping");
    assert_eq!(c["target"], "198.51.100.10");
    assert_eq!(c["weight"], 240);
    assert_eq!(c["demoting"], false);
    assert!(
        c["result"]
            .as_str()
            .is_some_and(|r| r.contains(" replies, rtt ")),
        "{c}"
    );
    assert_eq!(fw1.status()["demotion"], 0);

    // The gateway stops answering fw1 (fw2 still reaches it).
    gateway_drops(&st.server, "198.51.100.2");
    expect_check(&fw1, "gw", "down", Duration::from_secs(20));
    fw2.expect_state(7, "MASTER", TAKEOVER);
    fw1.expect_state(7, "BACKUP", TAKEOVER);
    assert!(
        st.fw2.has_address("ens5", "192.0.2.100"),
        "fw2 lacks the VIP"
    );
    assert!(
        !st.fw1.has_address("eth0", "192.0.2.100"),
        "fw1 kept the VIP"
    );
    let s1 = fw1.status();
    assert_eq!(s1["demotion"], 240, "{s1}");
    assert!(
        s1["demotions"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d["source"] == "check(gw)" && d["value"] == 240)),
        "{s1}"
    );
    let c = check_of(&fw1, "gw");
    assert_eq!(c["demoting"], true, "{c}");
    assert!(
        c["result"].as_str().is_some_and(|r| r.contains("loss")),
        "{c}"
    );
    let (_, text, _) = fw1.cli(&["status"]);
    assert!(text.contains("demoted by check(gw) (+240)"), "{text}");
    assert!(
        text.contains("check gw (ping 198.51.100.10): down for "),
        "{text}"
    );
    assert!(fw1
        .log()
        .contains("check gw (ping 198.51.100.10) down after 3 failing rounds"));
    expect_check(&fw2, "gw", "up", Duration::from_secs(5));

    // It answers again: after `rise` passing rounds fw1 is undemoted and preempts.
    gateway_answers(&st.server);
    expect_check(&fw1, "gw", "up", Duration::from_secs(20));
    fw1.expect_state(7, "MASTER", TAKEOVER);
    fw2.expect_state(7, "BACKUP", TAKEOVER);
    assert_eq!(fw1.status()["demotion"], 0);
    assert!(
        st.fw1.has_address("eth0", "192.0.2.100"),
        "fw1 lacks the VIP"
    );
}

#[test]
fn exec_and_file_checks_demote_and_a_reload_keeps_unchanged_checks() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("checks_exec_file_reload").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let h1 = lab.host("fw1").expect("fw1");
    lab.connect(&h1, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    let dir = lab.dir().to_path_buf();
    let flag = dir.join("maintenance");
    std::fs::write(&flag, "0\n").expect("write");
    let script = dir.join("healthy.sh");
    let broken = dir.join("broken");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntest ! -e '{}'\n", broken.display()),
    )
    .expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let checks = "[[checks]]\nname = \"svc\"\nkind = \"exec\"\ncommand = [\"healthy.sh\"]\n\
                  interval = 0.3\nrise = 1\nfall = 2\nweight = 100\n\n\
                  [[checks]]\nname = \"maint\"\nkind = \"file\"\npath = \"maintenance\"\n\
                  interval = 0.3\nrise = 1\nfall = 1\nweight = 50\n";
    let cfg = write_config_extra(
        &lab,
        "fw1",
        0,
        true,
        "s3cret",
        &[("lan", "eth0")],
        &vip7(),
        checks,
    );
    let fw1 = Node::start(&h1, cfg.clone());
    expect_check(&fw1, "svc", "up", Duration::from_secs(10));
    expect_check(&fw1, "maint", "up", Duration::from_secs(10));
    std::fs::write(&broken, "").expect("write");
    std::fs::write(&flag, "1\n").expect("write");
    expect_check(&fw1, "svc", "down", Duration::from_secs(10));
    expect_check(&fw1, "maint", "down", Duration::from_secs(10));
    let ok = lab::wait_until(Duration::from_secs(5), || {
        fw1.try_status().is_some_and(|s| s["demotion"] == 150)
    });
    assert!(ok, "demotion is not 100 + 50: {:?}", fw1.try_status());
    assert_eq!(check_of(&fw1, "maint")["result"], "holds 1");
    assert_eq!(check_of(&fw1, "svc")["result"], "exit 1");

    // A reload that changes only `maint`'s weight: `svc` keeps its state, `maint` restarts.
    let text = std::fs::read_to_string(&cfg).expect("read");
    std::fs::write(&cfg, text.replace("weight = 50", "weight = 20")).expect("write");
    let (ok, out, err) = fw1.cli(&["reload"]);
    assert!(ok, "{out}{err}");
    let svc = check_of(&fw1, "svc");
    assert_eq!(svc["state"], "down", "{svc}");
    expect_check(&fw1, "maint", "down", Duration::from_secs(10));
    let ok = lab::wait_until(Duration::from_secs(5), || {
        fw1.try_status().is_some_and(|s| s["demotion"] == 120)
    });
    assert!(ok, "demotion is not 100 + 20: {:?}", fw1.try_status());
    std::fs::remove_file(&broken).expect("rm");
    std::fs::write(&flag, "0").expect("write");
    let ok = lab::wait_until(Duration::from_secs(10), || {
        fw1.try_status().is_some_and(|s| s["demotion"] == 0)
    });
    assert!(ok, "still demoted: {:?}", fw1.try_status());
}

#[test]
fn check_and_hook_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("fw1.toml");
    std::fs::write(
        &cfg,
        "[node]\nname = \"fw1\"\ncontrol_socket = \"fw1.sock\"\n\n[interfaces]\nlan = \"eth0\"\n\n\
         [carp]\npassphrase = \"s3cret\"\n\n[hooks]\non_master = \"missing.sh\"\n\n\
         [[checks]]\nname = \"gw\"\nkind = \"ping\"\naddress = \"198.51.100.1\"\nweight = 0\n",
    )
    .expect("write");
    let out = std::process::Command::new(TANDEM)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run tandem check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let shown = cfg.display();
    assert!(
        err.contains(&format!(
            "{shown}:12:13: hooks.on_master \"missing.sh\": no such file"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:18:10: checks.weight must be between 1 and 240, not 0"
        )),
        "{err}"
    );
}
