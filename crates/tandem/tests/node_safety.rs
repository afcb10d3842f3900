//! A daemon that never hurts its node: what an admin meets in week one, each reproduced with
//! real commands in namespaces (a second start, a VIP that is the node's own address, a
//! reload that needs a restart, an interface added by a reload, a half edited config file).

mod common;

use common::*;
use lab::{Host, Lab};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LAN: &[(&str, &str)] = &[("lan", "eth0")];
const VIP: &str = "192.0.2.100";

fn vip7(addrs: &'static [&'static str]) -> [VipSpec<'static>; 1] {
    [VipSpec {
        vhid: 7,
        interface: "lan",
        addresses: addrs,
    }]
}

/// A node on lan with vhid 7 on `addrs` (preempt on, one passphrase for all).
fn node_config(lab: &Lab, name: &str, advskew: u8, addrs: &'static [&'static str]) -> PathBuf {
    write_config(lab, name, advskew, true, "s3cret", LAN, &vip7(addrs))
}

/// client, fw1 (192.0.2.2) and fw2 (192.0.2.3) on one switch.
fn hosts(lab: &mut Lab) -> (Host, Host, Host) {
    let sw = lab.switch("lan").expect("switch");
    let client = lab.host("client").expect("client");
    let h1 = lab.host("fw1").expect("fw1");
    let h2 = lab.host("fw2").expect("fw2");
    for (h, a) in [
        (&client, "192.0.2.10/24"),
        (&h1, "192.0.2.2/24"),
        (&h2, "192.0.2.3/24"),
    ] {
        lab.connect(h, "eth0", &sw, &[a]).expect("connect");
    }
    (client, h1, h2)
}

/// Runs the CLI in a host with `args` (no daemon needed): (success, stdout, stderr).
fn cli(h: &Host, args: &[&str]) -> (bool, String, String) {
    let out = h.command(TANDEM).args(args).output().expect("run tandem");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The line (1-based) of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
}

#[test]
fn a_second_run_with_the_same_config_changes_nothing() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("a_second_run_with_the_same_config_changes_nothing").expect("lab");
    let (client, h1, h2) = hosts(&mut lab);
    let c1 = node_config(&lab, "fw1", 0, &["192.0.2.100/24"]);
    let c2 = node_config(&lab, "fw2", 100, &["192.0.2.100/24"]);
    let fw1 = Node::start(&h1, c1.clone());
    let fw2 = Node::start(&h2, c2);
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    assert!(h1.has_address("eth0", VIP));
    // A setting the daemon makes at start, put back by hand: a second start must not touch it.
    h1.sysctl("net.ipv4.conf.eth0.promote_secondaries", "0")
        .expect("sysctl");

    let out = h1
        .command(TANDEM)
        .args(["run", "--config", path_str(&c1)])
        .output()
        .expect("second tandem run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second run started:\n{err}");
    assert!(
        err.contains("already run by tandem pid") && err.contains("changes nothing"),
        "{err}"
    );
    // The first daemon and its node are untouched: the VIP, its state, the sysctl, its socket.
    assert!(h1.has_address("eth0", VIP), "the second run took the VIP");
    assert_eq!(fw1.state(7), "MASTER");
    assert_eq!(
        h1.run(&["sysctl", "-n", "net.ipv4.conf.eth0.promote_secondaries"])
            .expect("sysctl")
            .trim(),
        "0",
        "the second run changed a sysctl"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(fw2.state(7), "BACKUP", "fw2 took over: fw1 went quiet");
    assert!(client.ping(VIP, 1, 2), "the VIP does not answer");
}

#[test]
fn check_refuses_a_vip_that_is_the_nodes_own_address_or_outside_its_subnets() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("check_refuses_own_address_vip").expect("lab");
    let (_, h1, _) = hosts(&mut lab);
    for (addr, want) in [
        (
            "192.0.2.2/24",
            "192.0.2.2 is this node's own address on lan (eth0",
        ),
        (
            "198.51.100.100/24",
            "VIP 198.51.100.100 is outside every subnet of lan (eth0): it has 192.0.2.0/24",
        ),
    ] {
        let specs = [VipSpec {
            vhid: 7,
            interface: "lan",
            addresses: &[addr],
        }];
        let c = write_config(&lab, "fw1", 0, true, "s3cret", LAN, &specs);
        let text = std::fs::read_to_string(&c).expect("config");
        let place = format!("{}:{}:14: ", c.display(), line_of(&text, "addresses = ["));
        let (ok, _, err) = cli(&h1, &["check", "--config", path_str(&c)]);
        assert!(!ok, "check accepted {addr}");
        assert!(err.contains(&place) && err.contains(want), "{addr}: {err}");
        // And the daemon does not start with it (nothing changed on the node).
        let (ok, _, err) = cli(&h1, &["run", "--config", path_str(&c)]);
        assert!(!ok && err.contains(want), "{addr}: {err}");
        assert!(h1.has_address("eth0", "192.0.2.2"));
        assert!(!h1.has_address("eth0", "198.51.100.100"));
    }
}

#[test]
fn stopping_never_removes_an_address_tandem_did_not_add() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("stopping_never_removes_an_address").expect("lab");
    let (_, h1, h2) = hosts(&mut lab);
    let c1 = node_config(&lab, "fw1", 100, &["192.0.2.100/24"]);
    let c2 = node_config(&lab, "fw2", 0, &["192.0.2.100/24"]);
    let mut fw1 = Node::start(&h1, c1);
    let mut fw2 = Node::start(&h2, c2);
    fw2.expect_state(7, "MASTER", ELECTION);
    fw1.expect_state(7, "BACKUP", ELECTION);
    // While fw1 is backup, someone configures the VIP's address on fw1 by hand.
    h1.run(&["ip", "addr", "add", "192.0.2.100/24", "dev", "eth0"])
        .expect("add address by hand");
    fw2.kill();
    fw1.expect_state(7, "MASTER", TAKEOVER);
    fw1.sigterm();
    assert!(
        h1.has_address("eth0", VIP),
        "stopping tandem removed an address it did not add"
    );
    assert!(
        fw1.log().contains("was not added by tandem; left in place"),
        "{}",
        fw1.log()
    );
}

#[test]
fn a_reload_that_needs_a_restart_is_refused_and_says_so() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("a_reload_that_needs_a_restart").expect("lab");
    let (_, h1, _) = hosts(&mut lab);
    let c1 = node_config(&lab, "fw1", 0, &["192.0.2.100/24"]);
    let fw1 = Node::start(&h1, c1.clone());
    fw1.expect_state(7, "MASTER", ELECTION);
    let text = std::fs::read_to_string(&c1).expect("config");
    std::fs::write(
        &c1,
        format!(
            "{text}\n[statesync]\ninterface = \"lan\"\npeers = [\"192.0.2.3\"]\nkey = \"a key of at least sixteen bytes\"\n"
        ),
    )
    .expect("edit");
    let (ok, out, err) = fw1.cli(&["reload"]);
    assert!(!ok, "reload claimed success: {out}");
    assert!(
        err.contains("[statesync] changed") && err.contains("restart tandem"),
        "{err}"
    );
    let s = fw1.status();
    assert_eq!(s["sync"]["state"], "not configured", "{s}");
    assert_eq!(fw1.state(7), "MASTER");
}

#[test]
fn an_interface_first_used_by_a_reload_is_watched() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("an_interface_first_used_by_a_reload").expect("lab");
    let (_, h1, _) = hosts(&mut lab);
    let wan = lab.switch("wan").expect("wan");
    lab.connect(&h1, "eth1", &wan, &["198.51.100.2/24"])
        .expect("wan");
    let ifaces = &[("lan", "eth0"), ("wan", "eth1")];
    let c1 = write_config(
        &lab,
        "fw1",
        0,
        true,
        "s3cret",
        ifaces,
        &vip7(&["192.0.2.100/24"]),
    );
    let fw1 = Node::start(&h1, c1.clone());
    fw1.expect_state(7, "MASTER", ELECTION);
    let text = std::fs::read_to_string(&c1).expect("config");
    std::fs::write(
        &c1,
        format!("{text}\n[[vips]]\nvhid = 8\ninterface = \"wan\"\naddresses = [\"198.51.100.100/24\"]\n"),
    )
    .expect("edit");
    let (ok, out, err) = fw1.cli(&["reload"]);
    assert!(ok, "{out}{err}");
    fw1.expect_state(8, "MASTER", ELECTION);
    h1.set_link("eth1", false).expect("link down");
    let demoted = lab::wait_until(Duration::from_secs(5), || {
        fw1.status()["demotions"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["source"] == "link-down(wan)"))
    });
    assert!(demoted, "wan's link-down not seen: {}", fw1.status());
}

#[test]
fn status_works_while_the_config_is_being_edited() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("status_works_while_the_config_is_edited").expect("lab");
    let (_, h1, _) = hosts(&mut lab);
    let c1 = node_config(&lab, "fw1", 0, &["192.0.2.100/24"]);
    let fw1 = Node::start(&h1, c1.clone());
    fw1.expect_state(7, "MASTER", ELECTION);
    let text = std::fs::read_to_string(&c1).expect("config");
    // Half way through an edit: a syntax error below [node].
    std::fs::write(&c1, format!("{text}\n[[rules]\ninterface = \"lan\n")).expect("edit");
    let (ok, out, err) = fw1.cli(&["status", "--json"]);
    assert!(ok, "status failed on a half edited config: {err}");
    assert!(out.contains("\"MASTER\""), "{out}");
    let sock = lab.dir().join("fw1.sock");
    let (ok, out, err) = cli(&h1, &["status", "--socket", path_str(&sock)]);
    assert!(ok && out.contains("MASTER"), "{out}{err}");
    // A reload of the broken file is refused, located, and changes nothing.
    let (ok, _, err) = fw1.cli(&["reload"]);
    assert!(!ok, "{err}");
    assert!(err.contains(&format!("{}:", c1.display())), "{err}");
    assert_eq!(fw1.state(7), "MASTER");
}

#[test]
fn ruleset_of_a_node_that_does_not_manage_its_firewall_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("fw1.sock");
    let p: PathBuf = dir.path().join("fw1.toml");
    std::fs::write(
        &p,
        format!(
            "[node]\nname = \"fw1\"\ncontrol_socket = \"{}\"\n[interfaces]\nlan = \"eth0\"\n[carp]\npassphrase = \"s3cret\"\n",
            sock.display()
        ),
    )
    .expect("write");
    let out = std::process::Command::new(TANDEM)
        .args(["ruleset", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("does not manage its firewall") && !text.contains("table inet"),
        "{text}"
    );
}

#[test]
fn a_peer_with_another_address_set_is_reported_as_such() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("a_peer_with_another_address_set").expect("lab");
    let (_, h1, h2) = hosts(&mut lab);
    // Same passphrase, same vhid; fw2 carries one address more.
    let c1 = node_config(&lab, "fw1", 0, &["192.0.2.100/24"]);
    let c2 = node_config(&lab, "fw2", 100, &["192.0.2.100/24", "192.0.2.101/24"]);
    let _fw1 = Node::start(&h1, c1);
    let fw2 = Node::start(&h2, c2);
    // fw1 cannot verify fw2's adverts (its own set is smaller); fw2 tries its subsets and
    // finds the one fw1 hashes: it can tell a different address set from a wrong passphrase.
    let seen = lab::wait_until(ELECTION, || {
        fw2.vip(7)["adverts_rejected"]["address_mismatch"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
    assert!(seen, "fw2: {}", fw2.vip(7));
    assert!(
        fw2.log().contains("rejected reason=address_mismatch"),
        "{}",
        fw2.log()
    );
    assert_eq!(fw2.vip(7)["adverts_rejected"].get("bad_hmac"), None);
}

/// Runs the CLI in `h` as another user (uid, gid, no supplementary groups).
fn cli_as(h: &Host, uid: u32, gid: u32, args: &[&str]) -> (bool, String, String) {
    let out = h
        .command("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            TANDEM,
        ])
        .args(args)
        .output()
        .expect("setpriv (util-linux)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_control_socket_answers_root_and_lets_the_status_group_only_read() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("the_control_socket_checks_its_callers").expect("lab");
    let (_, h1, _) = hosts(&mut lab);
    let c1 = node_config(&lab, "fw1", 0, &["192.0.2.100/24"]);
    let text = std::fs::read_to_string(&c1).expect("config");
    std::fs::write(
        &c1,
        text.replacen(
            "[interfaces]",
            "status_group = \"nogroup\"\n\n[interfaces]",
            1,
        ),
    )
    .expect("write");
    let fw1 = Node::start(&h1, c1);
    fw1.expect_state(7, "MASTER", ELECTION);
    let sock = lab.dir().join("fw1.sock");
    let s = path_str(&sock);
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&sock).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "socket mode");
    assert_eq!(meta.gid(), 65534, "socket group");

    // nobody, in nogroup: may read status, may not reload.
    let (ok, out, err) = cli_as(&h1, 65534, 65534, &["status", "--socket", s]);
    assert!(ok && out.contains("MASTER"), "{out}{err}");
    let (ok, _, err) = cli_as(&h1, 65534, 65534, &["reload", "--socket", s]);
    assert!(
        !ok && err.contains("may read status, not change anything"),
        "{err}"
    );

    // Someone else gets nothing, even when a careless admin opened the socket to everyone:
    // the daemon checks who is calling, not only the file's mode.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (ok, out, err) = cli_as(&h1, 4321, 4321, &["status", "--socket", s]);
    assert!(!ok, "a stranger read status: {out}");
    assert!(
        err.contains("neither root nor in the status group"),
        "{err}"
    );
    // Root still may.
    assert_eq!(fw1.state(7), "MASTER");
}
