//! VIP failover between real tandem daemons in network namespaces.

mod common;

use common::*;
use lab::Lab;
use std::time::Duration;

const LAN: &[(&str, &str)] = &[("lan", "eth0")];
const VIP4: &[&str] = &["192.0.2.100/24"];

fn vip7() -> [VipSpec<'static>; 1] {
    [VipSpec {
        vhid: 7,
        interface: "lan",
        addresses: VIP4,
    }]
}

/// client and two firewalls on one switch.
fn pair(lab: &mut Lab, preempt: bool) -> (lab::Host, Node, Node, lab::Switch) {
    let sw = lab.switch("lan").expect("switch");
    let client = lab.host("client").expect("client");
    let h1 = lab.host("fw1").expect("fw1");
    let h2 = lab.host("fw2").expect("fw2");
    lab.connect(&client, "eth0", &sw, &["192.0.2.10/24"])
        .expect("connect");
    lab.connect(&h1, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    lab.connect(&h2, "eth0", &sw, &["192.0.2.3/24"])
        .expect("connect");
    let c1 = write_config(lab, "fw1", 0, preempt, "s3cret", LAN, &vip7());
    let c2 = write_config(lab, "fw2", 100, preempt, "s3cret", LAN, &vip7());
    let fw1 = Node::start(&h1, c1);
    let fw2 = Node::start(&h2, c2);
    (client, fw1, fw2, sw)
}

fn only_one_holds(fw: &Node, others: &[&Node], addr: &str) {
    assert!(
        fw.host.has_address("eth0", addr),
        "{} lacks VIP {addr}",
        fw.host.name()
    );
    for o in others {
        assert!(
            !o.host.has_address("eth0", addr),
            "{} also holds VIP {addr}",
            o.host.name()
        );
    }
}

#[test]
fn lower_skew_is_master_and_link_down_moves_the_vip() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("lower_skew_is_master_and_link_down_moves_the_vip").expect("lab");
    let (client, fw1, fw2, _sw) = pair(&mut lab, true);
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    only_one_holds(&fw1, &[&fw2], "192.0.2.100");
    assert!(
        client.ping("192.0.2.100", 1, 2),
        "client cannot reach the VIP on fw1"
    );
    let v = fw2.vip(7);
    assert_eq!(v["last_master"], "192.0.2.2", "{v}");
    assert!(v["adverts_received"].as_u64().unwrap_or(0) > 0, "{v}");

    fw1.host.set_link("eth0", false).expect("link down");
    fw2.expect_state(7, "MASTER", TAKEOVER);
    fw1.expect_state(7, "INIT", TAKEOVER);
    assert!(
        !fw1.host.has_address("eth0", "192.0.2.100"),
        "fw1 kept the VIP"
    );
    assert!(
        lab::wait_until(Duration::from_secs(5), || client.ping("192.0.2.100", 1, 1)),
        "client cannot reach the VIP on fw2\n{}",
        fw2.log()
    );
    let s1 = fw1.status();
    assert_eq!(s1["demotion"], 240, "{s1}");
    assert_eq!(fw2.vip(7)["last_transition"]["reason"], "master-down-timer");
    assert!(fw2
        .log()
        .contains("vhid=7 iface=lan BACKUP -> MASTER reason=master-down-timer"));
}

#[test]
fn returning_master_preempts_only_with_preempt() {
    if !lab::require_netns() {
        return;
    }
    for preempt in [true, false] {
        let mut lab = Lab::new(&format!("returning_master_preempt_{preempt}")).expect("lab");
        let (_client, fw1, fw2, _sw) = pair(&mut lab, preempt);
        fw1.expect_state(7, "MASTER", ELECTION);
        fw2.expect_state(7, "BACKUP", ELECTION);
        fw1.host.set_link("eth0", false).expect("link down");
        fw2.expect_state(7, "MASTER", TAKEOVER);
        fw1.host.set_link("eth0", true).expect("link up");
        fw1.expect_state(7, "BACKUP", TAKEOVER);
        if preempt {
            fw1.expect_state(7, "MASTER", TAKEOVER);
            fw2.expect_state(7, "BACKUP", TAKEOVER);
            only_one_holds(&fw1, &[&fw2], "192.0.2.100");
        } else {
            // Several advert intervals pass: fw1 must stay BACKUP.
            std::thread::sleep(Duration::from_secs(4));
            assert_eq!(fw1.state(7), "BACKUP", "fw1 preempted without preempt");
            assert_eq!(fw2.state(7), "MASTER");
            only_one_holds(&fw2, &[&fw1], "192.0.2.100");
        }
    }
}

#[test]
fn sigterm_bows_out_and_backup_takes_over_at_once() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("sigterm_bows_out_and_backup_takes_over_at_once").expect("lab");
    let (client, mut fw1, fw2, _sw) = pair(&mut lab, true);
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    fw1.sigterm();
    assert!(
        !fw1.host.has_address("eth0", "192.0.2.100"),
        "VIP left behind after SIGTERM"
    );
    fw2.expect_state(7, "MASTER", TAKEOVER);
    // The bow-out advert, not the master-down timer, made fw2 master.
    let v = fw2.vip(7);
    assert_eq!(
        v["last_transition"]["reason"], "master-will-time-out",
        "{v}"
    );
    assert!(
        client.ping("192.0.2.100", 1, 2),
        "client cannot reach the VIP on fw2"
    );
}

#[test]
fn killed_master_is_replaced() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("killed_master_is_replaced").expect("lab");
    let (client, mut fw1, fw2, _sw) = pair(&mut lab, true);
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    fw1.kill();
    fw2.expect_state(7, "MASTER", TAKEOVER);
    assert_eq!(fw2.vip(7)["last_transition"]["reason"], "master-down-timer");
    // A killed daemon cannot clean up; the address left on fw1 is the reason a restart clears
    // stale VIPs before anything else.
    fw1.restart();
    assert!(
        !fw1.host.has_address("eth0", "192.0.2.100"),
        "restart kept a stale VIP"
    );
    fw1.expect_state(7, "MASTER", TAKEOVER);
    fw2.expect_state(7, "BACKUP", TAKEOVER);
    assert!(lab::wait_until(Duration::from_secs(5), || client.ping(
        "192.0.2.100",
        1,
        1
    )));
}

#[test]
fn losing_one_link_moves_every_vip() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("losing_one_link_moves_every_vip").expect("lab");
    // fw2 names its devices differently: logical names are what the VIPs refer to.
    let Standard {
        lan,
        server,
        fw1: h1,
        fw2: h2,
        ..
    } = standard(&mut lab, false);
    let vips = [
        VipSpec {
            vhid: 7,
            interface: "lan",
            addresses: &["192.0.2.1/24"],
        },
        VipSpec {
            vhid: 8,
            interface: "wan",
            addresses: &["198.51.100.1/24"],
        },
    ];
    let c1 = write_config(
        &lab,
        "fw1",
        0,
        true,
        "s3cret",
        &[("lan", "eth0"), ("wan", "eth1")],
        &vips,
    );
    let c2 = write_config(
        &lab,
        "fw2",
        100,
        true,
        "s3cret",
        &[("lan", "ens5"), ("wan", "ens6")],
        &vips,
    );
    let fw1 = Node::start(&h1, c1);
    let fw2 = Node::start(&h2, c2);
    for v in [7, 8] {
        fw1.expect_state(v, "MASTER", ELECTION);
        fw2.expect_state(v, "BACKUP", ELECTION);
    }
    // Cable pull on fw1's LAN side: the WAN VIP must follow the LAN VIP to fw2.
    lan.set_port(&h1, "eth0", false).expect("port down");
    fw2.expect_state(7, "MASTER", TAKEOVER);
    fw2.expect_state(8, "MASTER", TAKEOVER);
    fw1.expect_state(7, "INIT", TAKEOVER);
    fw1.expect_state(8, "BACKUP", TAKEOVER);
    assert!(
        !h1.has_address("eth1", "198.51.100.1"),
        "fw1 kept the WAN VIP"
    );
    assert!(h2.has_address("ens6", "198.51.100.1"));
    assert!(lab::wait_until(Duration::from_secs(5), || server.ping(
        "198.51.100.1",
        1,
        1
    )));
    let s = fw1.status();
    assert_eq!(s["vips"][1]["advskew"], 240, "demotion not advertised: {s}");
    // Cable back: with preempt fw1 takes both back.
    lan.set_port(&h1, "eth0", true).expect("port up");
    fw1.expect_state(7, "MASTER", TAKEOVER);
    fw1.expect_state(8, "MASTER", TAKEOVER);
    fw2.expect_state(7, "BACKUP", TAKEOVER);
    fw2.expect_state(8, "BACKUP", TAKEOVER);
}

#[test]
fn ipv6_vip_fails_over() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("ipv6_vip_fails_over").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let client = lab.host("client").expect("client");
    let h1 = lab.host("fw1").expect("fw1");
    let h2 = lab.host("fw2").expect("fw2");
    lab.connect(&client, "eth0", &sw, &["2001:db8:1::10/64"])
        .expect("connect");
    lab.connect(&h1, "eth0", &sw, &["2001:db8:1::2/64"])
        .expect("connect");
    lab.connect(&h2, "eth0", &sw, &["2001:db8:1::3/64"])
        .expect("connect");
    let vips = [VipSpec {
        vhid: 9,
        interface: "lan",
        addresses: &["2001:db8:1::100/64"],
    }];
    let c1 = write_config(&lab, "fw1", 0, true, "s3cret", LAN, &vips);
    let c2 = write_config(&lab, "fw2", 100, true, "s3cret", LAN, &vips);
    let fw1 = Node::start(&h1, c1);
    // fw2 starts with its link down: no carrier, no link-local address, no IPv6 CARP socket
    // yet. It must wait in INIT and join once the link is up.
    h2.set_link("eth0", false).expect("link down");
    let fw2 = Node::start(&h2, c2);
    fw2.expect_state(9, "INIT", ELECTION);
    h2.set_link("eth0", true).expect("link up");
    fw1.expect_state(9, "MASTER", ELECTION);
    fw2.expect_state(9, "BACKUP", ELECTION);
    assert!(
        lab::wait_until(TAKEOVER, || fw2.vip(9)["adverts_received"]
            .as_u64()
            .unwrap_or(0)
            > 0),
        "fw2 never heard fw1 over IPv6: {}\n{}",
        fw2.vip(9),
        fw2.log()
    );
    assert!(
        lab::wait_until(Duration::from_secs(5), || client.ping(
            "2001:db8:1::100",
            1,
            1
        )),
        "client cannot reach the IPv6 VIP on fw1"
    );
    fw1.host.set_link("eth0", false).expect("link down");
    fw2.expect_state(9, "MASTER", TAKEOVER);
    assert!(
        lab::wait_until(Duration::from_secs(5), || client.ping(
            "2001:db8:1::100",
            1,
            1
        )),
        "client cannot reach the IPv6 VIP on fw2\n{}",
        fw2.log()
    );
}

#[test]
fn three_nodes_converge_to_one_master() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("three_nodes_converge_to_one_master").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let mut nodes = Vec::new();
    for (i, skew) in [(1u8, 50u8), (2, 0), (3, 100)] {
        let h = lab.host(&format!("fw{i}")).expect("host");
        lab.connect(&h, "eth0", &sw, &[&format!("192.0.2.{}/24", i + 1)])
            .expect("connect");
        let c = write_config(&lab, &format!("fw{i}"), skew, true, "s3cret", LAN, &vip7());
        nodes.push(Node::start(&h, c));
    }
    // fw2 has the lowest skew.
    nodes[1].expect_state(7, "MASTER", ELECTION);
    nodes[0].expect_state(7, "BACKUP", ELECTION);
    nodes[2].expect_state(7, "BACKUP", ELECTION);
    only_one_holds(&nodes[1], &[&nodes[0], &nodes[2]], "192.0.2.100");
    // Its death hands the VIP to the next-lowest skew, fw1, and only to it.
    nodes[1].kill();
    nodes[1].host.set_link("eth0", false).expect("link down");
    nodes[0].expect_state(7, "MASTER", TAKEOVER);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(nodes[2].state(7), "BACKUP");
    assert_eq!(nodes[0].state(7), "MASTER");
}

/// `n` distinct pass rules on lan (each a port), as TOML.
fn many_rules(n: usize) -> String {
    let mut s = String::with_capacity(n * 90);
    for i in 0..n {
        s += &format!(
            "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"tcp\"\ndestination_port = {}\n\n",
            1024 + i % 60000
        );
    }
    s
}

#[test]
fn a_slow_ruleset_reload_on_the_master_does_not_cost_it_the_vips() {
    if !lab::require_netns() {
        return;
    }
    let mut lab =
        Lab::new("a_slow_ruleset_reload_on_the_master_does_not_cost_it_the_vips").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let h1 = lab.host("fw1").expect("fw1");
    let h2 = lab.host("fw2").expect("fw2");
    lab.connect(&h1, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    lab.connect(&h2, "eth0", &sw, &["192.0.2.3/24"])
        .expect("connect");
    let small = many_rules(1);
    let c1 = write_config_extra(&lab, "fw1", 0, true, "s3cret", LAN, &vip7(), &small);
    let c2 = write_config_extra(&lab, "fw2", 100, true, "s3cret", LAN, &vip7(), &small);
    let fw1 = Node::start(&h1, c1.clone());
    let fw2 = Node::start(&h2, c2);
    fw1.expect_state(7, "MASTER", ELECTION);
    fw2.expect_state(7, "BACKUP", ELECTION);
    // 20k rules: parsing, rendering and loading them takes longer than fw2's master-down
    // interval (3.4 s). The daemon must keep advertising all the while.
    let text = std::fs::read_to_string(&c1).expect("read config") + &many_rules(20_000);
    std::fs::write(&c1, text).expect("write config");
    let started = std::time::Instant::now();
    let (ok, out, err) = fw1.cli(&["reload"]);
    let took = started.elapsed();
    assert!(ok, "reload failed: {out}{err}");
    eprintln!("reload of 20k rules took {took:?}");
    assert_eq!(fw2.state(7), "BACKUP", "fw2 took over during fw1's reload");
    assert_eq!(fw1.state(7), "MASTER");
    let t = &fw2.vip(7)["last_transition"];
    assert_eq!(
        t["reason"], "startup",
        "fw2 changed state during the reload: {t}"
    );
    assert_eq!(fw1.status()["firewall"]["rules"], 20_001);
}
