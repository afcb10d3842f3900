//! Virtual MACs (`mac = "virtual"`) between real tandem daemons in network namespaces: a
//! client that ignores gratuitous ARP (its neighbour entry for the VIP pinned) keeps reaching
//! the VIP after a failover only with the virtual MAC; the macvlan's life cycle (created at
//! start, deleted at stop, swept after a crash); a second run and a foreign link of the same
//! name are left alone.

mod common;

use common::*;
use lab::{Host, Lab};
use std::path::PathBuf;
use std::time::Duration;

const V4: &str = "192.0.2.100";
const V6: &str = "2001:db8::100";

/// client (192.0.2.10, 2001:db8::10), fw1 (.2, ::2) and fw2 (.3, ::3) on one switch.
fn trio(lab: &mut Lab) -> (Host, Host, Host) {
    let sw = lab.switch("lan").expect("switch");
    let client = lab.host("client").expect("client");
    let h1 = lab.host("fw1").expect("fw1");
    let h2 = lab.host("fw2").expect("fw2");
    for (h, a4, a6) in [
        (&client, "192.0.2.10/24", "2001:db8::10/64"),
        (&h1, "192.0.2.2/24", "2001:db8::2/64"),
        (&h2, "192.0.2.3/24", "2001:db8::3/64"),
    ] {
        lab.connect(h, "eth0", &sw, &[a4, a6]).expect("connect");
    }
    (client, h1, h2)
}

/// A node with VIP vhid 7 on lan (192.0.2.100/24, 2001:db8::100/64), `protocol` carp or
/// vrrp, `mac` interface or virtual.
fn config(lab: &Lab, name: &str, advskew: u8, protocol: &str, mac: &str) -> PathBuf {
    let vrrp = if protocol == "vrrp" {
        "protocol = \"vrrp\"\ninterval_ms = 100\n"
    } else {
        ""
    };
    let text = format!(
        "[node]\nname = \"{name}\"\nadvskew = {advskew}\npreempt = true\ncontrol_socket = \"{sock}\"\n\n\
[interfaces]\nlan = \"eth0\"\n\n[carp]\npassphrase = \"s3cret\"\nadvbase = 1\n\n\
[[vips]]\nvhid = 7\ninterface = \"lan\"\n{vrrp}mac = \"{mac}\"\naddresses = [\"{V4}/24\", \"{V6}/64\"]\n",
        sock = lab.dir().join(format!("{name}.sock")).display()
    );
    let path = lab.dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn ifindex(h: &Host, dev: &str) -> String {
    h.run(&["cat", &format!("/sys/class/net/{dev}/ifindex")])
        .expect("ifindex")
        .trim()
        .to_string()
}

/// The MAC in the client's neighbour entry for `addr` (after a ping taught it).
fn neighbour_mac(client: &Host, addr: &str) -> String {
    let fam = if addr.contains(':') { "-6" } else { "-4" };
    let out = client
        .run(&["ip", fam, "neigh", "show", addr, "dev", "eth0"])
        .expect("ip neigh");
    let mut it = out.split_whitespace();
    while let Some(t) = it.next() {
        if t == "lladdr" {
            return it.next().unwrap_or_default().to_string();
        }
    }
    panic!("client has no neighbour entry for {addr}: {out:?}");
}

/// Pins the client's entry for `addr` to `mac`: gratuitous ARP / NA can no longer change it.
fn pin(client: &Host, addr: &str, mac: &str) {
    let fam = if addr.contains(':') { "-6" } else { "-4" };
    client
        .run(&[
            "ip",
            fam,
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
        .expect("pin neighbour");
}

fn link_exists(h: &Host, dev: &str) -> bool {
    h.run(&["ip", "-o", "link", "show", "dev", dev]).is_ok()
}

/// fw1 master, fw2 backup; the client learns and pins the VIP's MACs; fw1's link goes down.
/// Returns whether the client reaches each address afterwards.
fn failover_with_pinned_neighbours(test: &str, protocol: &str, mac: &str) -> (bool, bool) {
    let mut lab = Lab::new(test).expect("lab");
    let (client, h1, h2) = trio(&mut lab);
    let fw1 = Node::start(&h1, config(&lab, "fw1", 0, protocol, mac));
    let fw2 = Node::start(&h2, config(&lab, "fw2", 100, protocol, mac));
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    for a in [V4, V6] {
        assert!(
            lab::wait_until(Duration::from_secs(5), || client.ping(a, 1, 1)),
            "client cannot reach {a} on fw1\n{}",
            fw1.log()
        );
    }
    let (mac4, mac6) = (neighbour_mac(&client, V4), neighbour_mac(&client, V6));
    let status = fw1.vip(7);
    if mac == "virtual" {
        let v6 = if protocol == "vrrp" {
            "00:00:5e:00:02:07"
        } else {
            "00:00:5e:00:01:07"
        };
        assert_eq!((mac4.as_str(), mac6.as_str()), ("00:00:5e:00:01:07", v6));
        assert_eq!(status["mac_mode"], "virtual", "{status}");
        assert!(
            status["mac"].to_string().contains("00:00:5e:00:01:07"),
            "{status}"
        );
        // The VIP lives on the macvlan, not on eth0; the backup's macvlan is down and empty.
        let name = format!("tdm7.{}", ifindex(&h1, "eth0"));
        // VRRP: one macvlan per family (the IPv6 one with its own MAC).
        let name6 = if protocol == "vrrp" {
            format!("{name}v6")
        } else {
            name.clone()
        };
        assert!(h1.has_address(&name, V4) && h1.has_address(&name6, V6));
        assert!(!h1.has_address("eth0", V4));
        let name2 = format!("tdm7.{}", ifindex(&h2, "eth0"));
        let show = h2
            .run(&["ip", "-d", "-o", "link", "show", "dev", &name2])
            .expect("backup's macvlan exists");
        assert!(show.contains("macvlan mode private"), "{show}");
        assert!(show.contains("state DOWN"), "{show}");
        assert!(!h2.has_address(&name2, V4), "the backup holds the VIP");
        let (_, text, _) = fw1.cli(&["status"]);
        assert!(text.contains("virtual MAC 00:00:5e:00:01:07"), "{text}");
    } else {
        let own = h1.mac("eth0").expect("mac");
        assert_eq!((mac4.as_str(), mac6.as_str()), (own.as_str(), own.as_str()));
        assert_eq!(status["mac_mode"], "interface", "{status}");
    }
    pin(&client, V4, &mac4);
    pin(&client, V6, &mac6);

    h1.set_link("eth0", false).expect("link down");
    fw2.expect_state(7, "MASTER", TAKEOVER);
    assert!(
        lab::wait_until(Duration::from_secs(5), || h2.addresses("eth0").is_ok()
            && fw2.vip(7)["state"] == "MASTER"),
        "fw2 not master"
    );
    let reach = |a: &str| lab::wait_until(Duration::from_secs(6), || client.ping(a, 1, 1));
    let r = (reach(V4), reach(V6));
    // The pinned entries never changed.
    assert_eq!(neighbour_mac(&client, V4), mac4);
    if mac == "virtual" && r == (true, true) {
        // fw1 comes back and preempts: the VIP moves back, and fw2 stepping down (its
        // macvlan going down) does not pull the virtual MAC back to its port.
        h1.set_link("eth0", true).expect("link up");
        fw1.expect_state(7, "MASTER", TAKEOVER);
        fw2.expect_state(7, "BACKUP", TAKEOVER);
        std::thread::sleep(Duration::from_secs(1));
        for a in [V4, V6] {
            assert!(
                reach(a),
                "{a} unreachable after fw1 took it back\n{}\n{}\n{}",
                h1.run(&["ip", "-d", "addr"]).unwrap_or_default(),
                fw1.log(),
                fw2.log()
            );
        }
    }
    drop((fw1, fw2));
    r
}

#[test]
fn carp_virtual_mac_survives_a_client_that_ignores_garp() {
    if !lab::require_netns() {
        return;
    }
    let r = failover_with_pinned_neighbours("vmac_carp_virtual", "carp", "virtual");
    assert_eq!(
        r,
        (true, true),
        "the VIP is unreachable after failover (v4, v6)"
    );
}

#[test]
fn carp_interface_mac_loses_a_client_that_ignores_garp() {
    if !lab::require_netns() {
        return;
    }
    let r = failover_with_pinned_neighbours("vmac_carp_interface", "carp", "interface");
    assert_eq!(r, (false, false), "reachable through a stale MAC? (v4, v6)");
}

#[test]
fn vrrp_virtual_mac_survives_a_client_that_ignores_garp() {
    if !lab::require_netns() {
        return;
    }
    let r = failover_with_pinned_neighbours("vmac_vrrp_virtual", "vrrp", "virtual");
    assert_eq!(
        r,
        (true, true),
        "the VIP is unreachable after failover (v4, v6)"
    );
}

#[test]
fn vrrp_interface_mac_loses_a_client_that_ignores_garp() {
    if !lab::require_netns() {
        return;
    }
    let r = failover_with_pinned_neighbours("vmac_vrrp_interface", "vrrp", "interface");
    assert_eq!(r, (false, false), "reachable through a stale MAC? (v4, v6)");
}

#[test]
fn the_macvlan_lives_and_dies_with_the_daemon() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("vmac_life_cycle").expect("lab");
    let (client, h1, _h2) = trio(&mut lab);
    let c1 = config(&lab, "fw1", 0, "carp", "virtual");
    let mut fw1 = Node::start(&h1, c1.clone());
    fw1.expect_state(7, "MASTER", ELECTION);
    let name = format!("tdm7.{}", ifindex(&h1, "eth0"));
    assert!(h1.has_address(&name, V4), "{}", fw1.log());
    let before = ifindex(&h1, &name);
    assert!(client.ping(V4, 1, 2));

    // A second run changes nothing: same link, still up with the VIP.
    let out = h1
        .command(TANDEM)
        .args(["run", "--config", &c1.to_string_lossy()])
        .output()
        .expect("second run");
    assert!(!out.status.success(), "the second run started");
    assert_eq!(
        ifindex(&h1, &name),
        before,
        "the second run replaced the macvlan"
    );
    assert!(h1.has_address(&name, V4), "the second run took the VIP");
    assert!(client.ping(V4, 1, 2));

    // Stop: the macvlan goes.
    fw1.sigterm();
    assert!(!link_exists(&h1, &name), "the macvlan outlived the daemon");

    // A crash leaves it (with the VIP); the next start sweeps it and makes a new one.
    fw1.restart();
    fw1.expect_state(7, "MASTER", ELECTION);
    fw1.kill();
    assert!(
        link_exists(&h1, &name),
        "the macvlan vanished with a killed daemon"
    );
    fw1.restart();
    assert!(
        fw1.log()
            .contains(&format!("removing stale virtual MAC macvlan {name}")),
        "{}",
        fw1.log()
    );
    fw1.expect_state(7, "MASTER", ELECTION);
    assert!(h1.has_address(&name, V4));

    // A reload that drops the VIP deletes its macvlan.
    std::fs::write(
        &c1,
        std::fs::read_to_string(&c1)
            .expect("read")
            .replace("vhid = 7", "vhid = 8")
            .replace("mac = \"virtual\"", "mac = \"interface\""),
    )
    .expect("write");
    let (ok, _, err) = fw1.cli(&["reload"]);
    assert!(ok, "reload: {err}");
    assert!(
        lab::wait_until(Duration::from_secs(5), || !link_exists(&h1, &name)),
        "the macvlan outlived its VIP"
    );
    fw1.sigterm();
}

#[test]
fn a_foreign_link_of_the_name_is_left_alone() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("vmac_foreign_link").expect("lab");
    let (_client, h1, _h2) = trio(&mut lab);
    let name = format!("tdm7.{}", ifindex(&h1, "eth0"));
    h1.run(&[
        "ip", "link", "add", &name, "link", "eth0", "type", "macvlan", "mode", "bridge",
    ])
    .expect("foreign macvlan");
    let before = ifindex(&h1, &name);
    let c1 = config(&lab, "fw1", 0, "carp", "virtual");
    let out = h1
        .command("timeout")
        .args(["20", TANDEM, "run", "--config", &c1.to_string_lossy()])
        .output()
        .expect("tandem run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "tandem ran over a foreign link:\n{err}"
    );
    assert!(
        err.contains(&format!(
            "interface \"{name}\" exists and was not created by tandem"
        )),
        "{err}"
    );
    assert_eq!(ifindex(&h1, &name), before, "the foreign link was replaced");
    assert!(!h1.has_address(&name, V4) && !h1.has_address("eth0", V4));
}
