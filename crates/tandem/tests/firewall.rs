//! The firewall through the real daemon: `tandem run` applies the ruleset rendered from the
//! config's areas, and real traffic between namespaces shows what it does.
//!
//! ```text
//! client 192.0.2.10 ── lan ── eth0 fw eth1 ── wan ── server 198.51.100.10 (.11, .12)
//!   2001:db8:1::10           192.0.2.2  198.51.100.2        2001:db8:2::10
//!   default via VIP          VIP .1     VIP .1
//! ```
//!
//! The server listens on every port a test probes, so "refused" and "timeout" are the
//! firewall's doing, never a closed port. Needs root, ip, nft, python3 and ping.

mod common;
#[path = "firewall/harness.rs"]
mod harness;

use common::*;
use harness::*;
use lab::{Host, Lab, Outcome};
use std::time::Duration;

const ALIASES: &str = r#"
[[aliases]]
name = "servers"
type = "host"
entries = ["198.51.100.10", "2001:db8:2::10"]

[[aliases]]
name = "web_ports"
type = "port"
entries = [80, 8080]
"#;

const RULES: &str = r#"
[[rules]]
interface = "lan"
action = "reject"
protocol = "tcp/udp"
destination = "servers"
destination_port = [81, 5301]
description = "rejected ports"

[[rules]]
interface = "lan"
action = "block"
protocol = "tcp"
destination_port = 82
description = "blocked port"

[[rules]]
interface = "lan"
action = "pass"
protocol = "tcp"
source = "lan:network"
destination = "servers"
destination_port = "web_ports"
description = "web to the servers"

[[rules]]
interface = "lan"
action = "pass"
protocol = "udp"
destination = "servers"
destination_port = 5300

[[rules]]
interface = "lan"
action = "pass"
protocol = "icmp"
destination = "servers"

[[rules]]
interface = "lan"
action = "reject"
protocol = "icmp"
destination = "198.51.100.12"
description = "icmp rejected"
"#;

const NAT: &str = r#"
[[nat.outbound]]
interface = "wan"
source = "lan:network"
translation = "198.51.100.1"

[[nat.port_forward]]
interface = "wan"
destination = "198.51.100.1"
protocol = "tcp"
port = 2222
target = "192.0.2.10"
target_port = 22
"#;

fn full() -> String {
    format!("{ALIASES}{RULES}{NAT}")
}

#[test]
fn rules_pass_block_and_reject_real_traffic() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("tandem_fw_rules_real_traffic").expect("lab");
    let net = network(&mut lab, 1);
    let fw_host = &net.fws[0];
    // A fresh namespace does not forward: the daemon is what turns it on.
    assert_eq!(
        fw_host
            .run(&["sysctl", "-n", "net.ipv4.ip_forward"])
            .expect("sysctl")
            .trim(),
        "0"
    );
    let fw = start_fw(&lab, &net, 1, &format!("{ALIASES}{RULES}"));
    master_of_both(&fw);

    let s = fw.status();
    let f = &s["firewall"];
    assert_eq!(f["managed"], true, "{s}");
    assert_eq!(f["applied"], true, "{s}");
    assert!(f["last_error"].is_null(), "{s}");
    assert_eq!(f["rules"], 6, "{s}");
    assert_eq!(f["aliases"], 2, "{s}");
    assert_eq!(f["forwarding"]["net.ipv4.ip_forward"], "1", "{s}");
    assert_eq!(f["forwarding"]["net.ipv6.conf.all.forwarding"], "1", "{s}");
    assert!(
        fw.log().contains("firewall applied: 6 rules"),
        "{}",
        fw.log()
    );

    let c = &net.client;
    // Pass: TCP to both ports of the port alias, to the host alias, no NAT configured here.
    expect(
        "tcp 80 to an alias host",
        c.probe_tcp(SERVER, 80, T),
        Outcome::from("192.0.2.10"),
        &fw,
    );
    expect(
        "tcp 8080 (second port of the alias)",
        c.probe_tcp(SERVER, 8080, T),
        Outcome::from("192.0.2.10"),
        &fw,
    );
    expect(
        "tcp 80 over IPv6 (the alias's IPv6 entry)",
        c.probe_tcp(SERVER6, 80, T),
        Outcome::from("2001:db8:1::10"),
        &fw,
    );
    expect(
        "udp 5300",
        c.probe_udp(SERVER, 5300, T),
        Outcome::from("192.0.2.10"),
        &fw,
    );
    expect(
        "icmp echo to an alias host",
        c.probe_icmp(SERVER, T),
        Outcome::Reply("echo".into()),
        &fw,
    );
    // Reject: a TCP reset, an ICMP port unreachable for UDP and ICMP.
    expect(
        "tcp 81 rejected",
        c.probe_tcp(SERVER, 81, T),
        Outcome::Refused,
        &fw,
    );
    expect(
        "udp 5301 rejected",
        c.probe_udp(SERVER, 5301, T),
        Outcome::Refused,
        &fw,
    );
    expect(
        "icmp rejected",
        c.probe_icmp(REJECTED, T),
        Outcome::Unreachable,
        &fw,
    );
    // Block: by a block rule, and by default (ports and hosts outside the aliases, inbound).
    let blocked_before = counter(&fw, "forward", "blocked port");
    expect(
        "tcp 82 blocked by rule",
        c.probe_tcp(SERVER, 82, T),
        Outcome::Timeout,
        &fw,
    );
    assert!(
        counter(&fw, "forward", "blocked port") > blocked_before,
        "the block rule's counter did not rise"
    );
    let default_before = counter(&fw, "forward", "default block");
    expect(
        "tcp 8081 (not in the port alias)",
        c.probe_tcp(SERVER, 8081, T),
        Outcome::Timeout,
        &fw,
    );
    expect(
        "tcp 80 to a host not in the alias",
        c.probe_tcp(OTHER, 80, T),
        Outcome::Timeout,
        &fw,
    );
    expect(
        "icmp to a host not in the alias",
        c.probe_icmp(OTHER, T),
        Outcome::Timeout,
        &fw,
    );
    expect(
        "udp 5302",
        c.probe_udp(SERVER, 5302, T),
        Outcome::Timeout,
        &fw,
    );
    expect(
        "wan to lan (no rule on wan)",
        net.server.probe_tcp("192.0.2.10", 22, T),
        Outcome::Timeout,
        &fw,
    );
    assert!(
        counter(&fw, "forward", "default block") >= default_before + 5,
        "the default block counter did not count the drops"
    );
    // Passing traffic did reach the server, blocked traffic did not.
    let log = net.server_log.stdout();
    assert!(log.contains("tcp 8080 192.0.2.10"), "{log}");
    assert!(!log.contains("tcp 82 "), "{log}");
    assert!(!log.contains("tcp 81 "), "{log}");
}

#[test]
fn outbound_nat_port_forward_and_stateful_drop() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("tandem_fw_nat_port_forward_state").expect("lab");
    let net = network(&mut lab, 1);
    let fw = start_fw(&lab, &net, 1, &full());
    master_of_both(&fw);
    let s = fw.status();
    assert_eq!(s["firewall"]["nat"], 2, "{s}");

    // Outbound NAT: the server sees the WAN VIP, for TCP and UDP.
    expect(
        "tcp NATed to the WAN VIP",
        net.client.probe_tcp(SERVER, 80, T),
        Outcome::from("198.51.100.1"),
        &fw,
    );
    expect(
        "udp NATed to the WAN VIP",
        net.client.probe_udp(SERVER, 5300, T),
        Outcome::from("198.51.100.1"),
        &fw,
    );
    let log = net.server_log.stdout();
    assert!(log.contains("tcp 80 198.51.100.1\n"), "{log}");
    assert!(!log.contains("192.0.2.10"), "{log}");
    // IPv4-only translation: IPv6 passes untranslated.
    expect(
        "IPv6 not translated",
        net.client.probe_tcp(SERVER6, 80, T),
        Outcome::from("2001:db8:1::10"),
        &fw,
    );

    // Port forward on the WAN VIP to the inside host (which sees the real client).
    expect(
        "port forward 2222 -> 192.0.2.10:22",
        net.server.probe_tcp("198.51.100.1", 2222, T),
        Outcome::from(SERVER),
        &fw,
    );
    expect(
        "no forward on 2223",
        net.server.probe_tcp("198.51.100.1", 2223, T),
        Outcome::Timeout,
        &fw,
    );
    expect(
        "the inside host directly",
        net.server.probe_tcp("192.0.2.10", 22, T),
        Outcome::Timeout,
        &fw,
    );

    // Stateful: a mid-stream TCP segment (ACK, no connection) of a flow a pass rule allows is
    // dropped by the default block; a SYN of the same flow is passed.
    let default_block = || counter(&fw, "forward", "default block");
    let before = default_block();
    net.client
        .send_tcp_segment("192.0.2.10", SERVER, 40001, 80, 0x10)
        .expect("send ACK");
    assert!(
        lab::wait_until(Duration::from_secs(2), || default_block() == before + 1),
        "mid-stream ACK not dropped by the default block (counter {} -> {})",
        before,
        default_block()
    );
    net.client
        .send_tcp_segment("192.0.2.10", SERVER, 40002, 80, 0x02)
        .expect("send SYN");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        default_block(),
        before + 1,
        "a SYN of a passed flow was dropped"
    );
}

#[test]
fn reload_applies_new_rules_and_a_broken_config_changes_nothing() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("tandem_fw_reload").expect("lab");
    let net = network(&mut lab, 1);
    let base = format!(
        "{ALIASES}{NAT}
[[rules]]
interface = \"lan\"
action = \"pass\"
protocol = \"tcp\"
destination = \"servers\"
destination_port = 80
"
    );
    let mut fw = start_fw(&lab, &net, 1, &base);
    master_of_both(&fw);
    let c = &net.client;
    expect(
        "80 passes",
        c.probe_tcp(SERVER, 80, T),
        Outcome::from("198.51.100.1"),
        &fw,
    );
    expect(
        "8080 not yet",
        c.probe_tcp(SERVER, 8080, T),
        Outcome::Timeout,
        &fw,
    );

    // A new rule in the file, `tandem reload`: it works.
    let cfg = fw.config.clone();
    let original = std::fs::read_to_string(&cfg).expect("read");
    let good = original.clone()
        + "
[[rules]]
interface = \"lan\"
action = \"pass\"
protocol = \"tcp\"
destination = \"servers\"
destination_port = 8080
description = \"added by reload\"
";
    std::fs::write(&cfg, &good).expect("write");
    let (ok, out, err) = fw.cli(&["reload"]);
    assert!(ok, "reload failed: {out}{err}\n{}", fw.log());
    assert!(out.contains("2 rules"), "{out}");
    expect(
        "8080 after reload",
        c.probe_tcp(SERVER, 8080, T),
        Outcome::from("198.51.100.1"),
        &fw,
    );
    assert_eq!(fw.status()["firewall"]["rules"], 2);
    let applied = table(&fw.host);
    assert!(applied.contains("added by reload"), "{applied}");

    // A broken config: an unknown alias and a bad CIDR. Reload refuses, names both places,
    // and leaves the table (handles included) and the traffic as they were.
    let broken = good.clone()
        + "
[[rules]]
interface = \"lan\"
action = \"pass\"
destination = \"no_such_alias\"

[[rules]]
interface = \"lan\"
action = \"pass\"
source = \"192.0.2.0/33\"
";
    std::fs::write(&cfg, &broken).expect("write");
    let alias_line = line_of(&cfg, "no_such_alias");
    let cidr_line = line_of(&cfg, "192.0.2.0/33");
    let (ok, out, err) = fw.cli(&["reload"]);
    assert!(!ok, "a broken config was accepted: {out}");
    for (line, what) in [
        (alias_line, "unknown alias `no_such_alias`"),
        (cidr_line, "invalid network `192.0.2.0/33`"),
    ] {
        let place = format!("{}:{line}:", cfg.display());
        assert!(
            err.lines().any(|l| l.contains(&place) && l.contains(what)),
            "no `{place}... {what}` in:\n{err}"
        );
    }
    assert_eq!(
        table(&fw.host),
        applied,
        "a refused reload changed the table"
    );
    let s = fw.status();
    assert_eq!(s["firewall"]["rules"], 2, "{s}");
    assert_eq!(s["firewall"]["applied"], true, "{s}");
    let last = s["firewall"]["last_error"].as_str().unwrap_or_default();
    assert!(
        last.contains(&format!("{}:{alias_line}:", cfg.display())),
        "status does not say why the reload was refused: {s}"
    );
    expect(
        "8080 still passes",
        c.probe_tcp(SERVER, 8080, T),
        Outcome::from("198.51.100.1"),
        &fw,
    );
    expect(
        "81 still blocked",
        c.probe_tcp(SERVER, 81, T),
        Outcome::Timeout,
        &fw,
    );

    // SIGHUP with the broken config: logged, the daemon keeps running the old ruleset.
    let pid = s["pid"].clone();
    let process = fw.process.as_ref().expect("running");
    process.signal("HUP").expect("SIGHUP");
    let place = format!("{}:{alias_line}:", cfg.display());
    assert!(
        lab::wait_until(Duration::from_secs(10), || fw.log().lines().any(|l| l
            .contains("reload failed, running config unchanged")
            && l.contains(&place))),
        "no reload error naming {place} in the log:\n{}",
        fw.log()
    );
    let s = fw.status();
    assert_eq!(s["pid"], pid, "{s}");
    assert_eq!(
        table(&fw.host),
        applied,
        "a refused SIGHUP changed the table"
    );
    expect(
        "8080 still passes after SIGHUP",
        c.probe_tcp(SERVER, 8080, T),
        Outcome::from("198.51.100.1"),
        &fw,
    );

    // SIGHUP with a good config applies it: 8080 goes again.
    std::fs::write(&cfg, &original).expect("write");
    fw.process
        .as_ref()
        .expect("running")
        .signal("HUP")
        .expect("SIGHUP");
    assert!(
        lab::wait_until(Duration::from_secs(10), || fw.status()["firewall"]["rules"]
            == 1),
        "SIGHUP did not apply the config:\n{}",
        fw.log()
    );
    assert!(fw.status()["firewall"]["last_error"].is_null());
    expect(
        "8080 gone after SIGHUP",
        c.probe_tcp(SERVER, 8080, T),
        Outcome::Timeout,
        &fw,
    );
    expect(
        "80 still passes",
        c.probe_tcp(SERVER, 80, T),
        Outcome::from("198.51.100.1"),
        &fw,
    );
    fw.sigterm();
}

/// The handle of table inet tandem: a new one means the table was replaced.
fn table_handle(host: &Host) -> String {
    table(host).lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_reload_changes_only_what_changed_in_the_kernel() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("tandem_fw_update").expect("lab");
    let net = network(&mut lab, 1);
    // 300 filler rules (so the lists are split into parts) and an alias of 200 hosts.
    let mut filler = String::new();
    for i in 0..300 {
        filler += &format!(
            "\n[[rules]]\ninterface = \"lan\"\naction = \"block\"\nprotocol = \"udp\"\ndestination_port = {}\n",
            40000 + i
        );
    }
    let hosts: Vec<String> = (1..=200).map(|i| format!("\"203.0.113.{i}\"")).collect();
    let blocked = |extra: &str| {
        format!(
            "\n[[aliases]]\nname = \"blocked\"\ntype = \"host\"\nentries = [{}{extra}]\n",
            hosts.join(", ")
        )
    };
    let rules = format!(
        "{ALIASES}{NAT}\n[[rules]]\ninterface = \"lan\"\naction = \"block\"\nsource = \"blocked\"\ndescription = \"blocked hosts\"\n{filler}\n[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"tcp\"\ndestination = \"servers\"\ndestination_port = 80\n"
    );
    let mut fw = start_fw(&lab, &net, 1, &format!("{}{rules}", blocked("")));
    master_of_both(&fw);
    let c = &net.client;
    let nat = Outcome::from("198.51.100.1");
    expect("80 passes", c.probe_tcp(SERVER, 80, T), nat.clone(), &fw);
    expect(
        "8080 not yet",
        c.probe_tcp(SERVER, 8080, T),
        Outcome::Timeout,
        &fw,
    );
    let handle = table_handle(&fw.host);
    let cfg = fw.config.clone();
    let original = std::fs::read_to_string(&cfg).expect("read");
    let updates = |fw: &Node| fw.log().matches("nftables: updated in place").count();

    // One rule appended: the table is updated in place, not replaced.
    let appended = original.clone()
        + "\n[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"tcp\"\ndestination = \"servers\"\ndestination_port = 8080\n";
    std::fs::write(&cfg, &appended).expect("write");
    let (ok, out, err) = fw.cli(&["reload"]);
    assert!(ok, "reload failed: {out}{err}\n{}", fw.log());
    expect(
        "8080 after reload",
        c.probe_tcp(SERVER, 8080, T),
        nat.clone(),
        &fw,
    );
    assert_eq!(updates(&fw), 1, "{}", fw.log());
    let last = &fw.status()["firewall"]["last_apply"];
    assert_eq!(last["mode"], "updated", "{last}");
    assert!(
        last["detail"]
            .as_str()
            .is_some_and(|d| d.contains("chain(s) refilled")),
        "{last}"
    );
    assert_eq!(table_handle(&fw.host), handle, "the table was replaced");

    // The client joins the alias: one set element added, and it is blocked.
    let with_client = appended.replace(&blocked(""), &blocked(", \"192.0.2.10\""));
    assert_ne!(with_client, appended);
    std::fs::write(&cfg, &with_client).expect("write");
    let (ok, out, err) = fw.cli(&["reload"]);
    assert!(ok, "reload failed: {out}{err}\n{}", fw.log());
    expect(
        "80 blocked by the alias",
        c.probe_tcp(SERVER, 80, T),
        Outcome::Timeout,
        &fw,
    );
    assert_eq!(updates(&fw), 2, "{}", fw.log());
    assert!(
        fw.log().contains("1 set element(s) added, 0 deleted"),
        "{}",
        fw.log()
    );
    assert_eq!(table_handle(&fw.host), handle, "the table was replaced");

    // Someone deletes the table by hand: the update is refused, the table is replaced.
    fw.host
        .run(&["nft", "delete", "table", "inet", "tandem"])
        .expect("delete the table");
    std::fs::write(&cfg, &appended).expect("write");
    let (ok, out, err) = fw.cli(&["reload"]);
    assert!(ok, "reload failed: {out}{err}\n{}", fw.log());
    assert!(
        fw.log().contains("the update in place was refused"),
        "{}",
        fw.log()
    );
    expect(
        "80 passes again",
        c.probe_tcp(SERVER, 80, T),
        nat.clone(),
        &fw,
    );
    expect(
        "8080 passes",
        c.probe_tcp(SERVER, 8080, T),
        nat.clone(),
        &fw,
    );

    // Someone flushes the table's rules: a reload that changes nothing puts them back.
    fw.host
        .run(&["nft", "flush", "table", "inet", "tandem"])
        .expect("flush the table");
    expect(
        "80 dropped when flushed",
        c.probe_tcp(SERVER, 80, T),
        Outcome::Timeout,
        &fw,
    );
    let (ok, out, err) = fw.cli(&["reload"]);
    assert!(ok, "reload failed: {out}{err}\n{}", fw.log());
    assert!(
        fw.log().contains("(no change: put back whole)"),
        "{}",
        fw.log()
    );
    expect(
        "80 passes when put back",
        c.probe_tcp(SERVER, 80, T),
        nat,
        &fw,
    );
    fw.sigterm();
}

#[test]
fn ruleset_command_prints_what_the_daemon_applied() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("tandem_fw_ruleset_cli").expect("lab");
    let net = network(&mut lab, 1);
    let scratch = lab.host("scratch").expect("scratch");
    let fw = start_fw(&lab, &net, 1, &full());
    master_of_both(&fw);

    let (ok, printed, err) = fw.cli(&["ruleset"]);
    assert!(ok, "{err}");
    assert!(printed.starts_with("# Generated by tandem"), "{printed}");
    for key in [
        "table inet tandem {}\ndelete table inet tandem\n",
        "set alias_servers_v4 {",
        "iifname \"eth0\" ip saddr 192.0.2.0/24 ip daddr @alias_servers_v4 tcp dport @alias_web_ports_ports tcp flags & (syn|ack) == syn counter accept comment \"rule 3: web to the servers\"",
        "oifname \"eth1\" ip saddr 192.0.2.0/24 counter snat ip to 198.51.100.1",
        "dnat ip to 192.0.2.10:22",
    ] {
        assert!(printed.contains(key), "no {key:?} in:\n{printed}");
    }
    // The same script, applied in an empty namespace, lists exactly as the daemon's table.
    let file = lab.dir().join("printed.nft");
    std::fs::write(&file, &printed).expect("write");
    scratch
        .run(&["nft", "-f", file.to_str().expect("utf-8")])
        .expect("printed script applies");
    let list = |h: &Host| {
        h.run(&["nft", "-s", "list", "table", "inet", "tandem"])
            .expect("list")
    };
    assert_eq!(list(&scratch), list(&fw.host));

    // `tandem check` validates the areas too.
    let (ok, out, err) = fw.cli(&["check"]);
    assert!(ok, "{out}{err}");
    let bad = lab.dir().join("bad.toml");
    let text = std::fs::read_to_string(&fw.config).expect("read");
    std::fs::write(
        &bad,
        text.replace(
            "\"servers\"\ndestination_port = \"web_ports\"",
            "\"servrs\"\ndestination_port = \"web_ports\"",
        ),
    )
    .expect("write");
    let out = fw
        .host
        .command(TANDEM)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .expect("check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let line = line_of(&bad, "\"servrs\"");
    assert!(
        err.contains(&format!("{}:{line}:", bad.display())) && err.contains("servrs"),
        "{err}"
    );
}

/// Two nodes with the same areas: the backup has the ruleset before it holds any VIP, and
/// after a failover it filters and translates to the VIP exactly as the master did.
#[test]
fn failover_keeps_rules_and_nat_on_the_new_master() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("tandem_fw_failover").expect("lab");
    let net = network(&mut lab, 2);
    let fw1 = start_fw(&lab, &net, 1, &full());
    let fw2 = start_fw(&lab, &net, 2, &full());
    master_of_both(&fw1);
    fw2.expect_state(1, "BACKUP", ELECTION);
    fw2.expect_state(2, "BACKUP", ELECTION);
    assert_eq!(fw2.status()["firewall"]["applied"], true);
    let c = &net.client;
    expect(
        "via fw1",
        c.probe_tcp(SERVER, 80, T),
        Outcome::from("198.51.100.1"),
        &fw1,
    );
    let via = |fw: &Node| counter(fw, "postrouting", "outbound NAT 1");
    assert!(via(&fw1) > 0);
    assert_eq!(via(&fw2), 0);

    fw1.host.set_link("eth0", false).expect("down");
    fw1.host.set_link("eth1", false).expect("down");
    fw2.expect_state(1, "MASTER", TAKEOVER);
    fw2.expect_state(2, "MASTER", TAKEOVER);
    assert!(
        lab::wait_until(Duration::from_secs(10), || c.probe_tcp(SERVER, 80, T)
            == Outcome::from("198.51.100.1")),
        "no NATed connection through fw2\n{}",
        fw2.log()
    );
    assert!(via(&fw2) > 0);
    expect(
        "fw2 blocks what fw1 blocked",
        c.probe_tcp(OTHER, 80, T),
        Outcome::Timeout,
        &fw2,
    );
    expect(
        "fw2 rejects what fw1 rejected",
        c.probe_tcp(SERVER, 81, T),
        Outcome::Refused,
        &fw2,
    );
    expect(
        "port forward on fw2",
        net.server.probe_tcp("198.51.100.1", 2222, T),
        Outcome::from(SERVER),
        &fw2,
    );
}

/// `[firewall] forwarding = false` leaves the sysctls alone; `enabled = false` on reload
/// removes our table (and only it).
#[test]
fn forwarding_off_and_firewall_switched_off_by_reload() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("tandem_fw_switched_off").expect("lab");
    let net = network(&mut lab, 1);
    let fw = start_fw(
        &lab,
        &net,
        1,
        &format!("[firewall]\nforwarding = false\n{ALIASES}{RULES}"),
    );
    let s = fw.status();
    assert_eq!(s["firewall"]["applied"], true, "{s}");
    assert_eq!(
        s["firewall"]["forwarding"]["net.ipv4.ip_forward"], "0",
        "{s}"
    );
    assert!(table(&fw.host).contains("rule 3: web to the servers"));
    fw.host
        .run(&["nft", "add", "table", "ip", "someone_else"])
        .expect("another table");

    let text = std::fs::read_to_string(&fw.config).expect("read");
    std::fs::write(
        &fw.config,
        text.replace("[firewall]\n", "[firewall]\nenabled = false\n"),
    )
    .expect("write");
    let (ok, out, err) = fw.cli(&["reload"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("firewall not managed"), "{out}");
    let s = fw.status();
    assert_eq!(s["firewall"]["managed"], false, "{s}");
    assert_eq!(s["firewall"]["applied"], false, "{s}");
    let tables = fw.host.run(&["nft", "list", "tables"]).expect("tables");
    assert!(!tables.contains("tandem"), "{tables}");
    assert!(tables.contains("table ip someone_else"), "{tables}");
}

/// `[[gateways]]` and `[[routes]]`: installed tagged with protocol 0x74, used by forwarded
/// traffic, and removed on reload when the config drops them; other routes stay.
#[test]
fn static_routes_are_installed_and_replaced_on_reload() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("tandem_fw_routes").expect("lab");
    let net = network(&mut lab, 1);
    // A network behind the server.
    net.server
        .run(&["ip", "addr", "add", "203.0.113.5/32", "dev", "lo"])
        .expect("address behind the server");
    let areas = r#"
[[rules]]
interface = "lan"
action = "pass"
protocol = "tcp"
destination_port = 80

[[gateways]]
name = "server"
interface = "wan"
address = "198.51.100.10"

[[routes]]
network = "203.0.113.0/24"
gateway = "server"
description = "behind the server"
"#;
    let fw = start_fw(&lab, &net, 1, areas);
    master_of_both(&fw);
    fw.host
        .run(&[
            "ip",
            "route",
            "add",
            "203.0.113.128/25",
            "via",
            "198.51.100.11",
        ])
        .expect("someone else's route");
    let ours = || {
        fw.host
            .run(&["ip", "route", "show", "proto", "116"])
            .expect("ip route")
    };
    assert_eq!(
        ours().trim(),
        "203.0.113.0/24 via 198.51.100.10 dev eth1",
        "{}",
        fw.log()
    );
    assert_eq!(fw.status()["firewall"]["routes"], 1);
    expect(
        "through the static route",
        net.client.probe_tcp("203.0.113.5", 80, T),
        Outcome::from("192.0.2.10"),
        &fw,
    );

    let text = std::fs::read_to_string(&fw.config).expect("read");
    let cut = text.find("\n[[gateways]]").expect("gateways");
    std::fs::write(&fw.config, &text[..cut + 1]).expect("write");
    let (ok, out, err) = fw.cli(&["reload"]);
    assert!(ok, "{out}{err}");
    assert_eq!(ours().trim(), "", "the dropped route stayed");
    let all = fw.host.run(&["ip", "route"]).expect("ip route");
    assert!(all.contains("203.0.113.128/25 via 198.51.100.11"), "{all}");
    // The firewall has no route to 203.0.113.5 any more.
    let got = net.client.probe_tcp("203.0.113.5", 80, T);
    assert!(
        matches!(got, Outcome::Unreachable | Outcome::Timeout),
        "{got:?}"
    );
    assert_eq!(fw.status()["firewall"]["routes"], 0);
}
