//! The synced `[dns]` area on real unbound resolvers: fw1 (primary) and fw2 (peer) each run
//! Debian's unbound in their namespace (own config, pid file and control socket under the lab
//! dir), listening on their lan address and on the lan VIP 192.0.2.1 (ip-freebind); Tandem
//! writes the include file and reloads unbound with unbound-control. A lan client resolves a
//! host override through the VIP before and after a failover, and an override added on fw1
//! is pushed and served by fw2.

mod common;
#[path = "configsync/harness.rs"]
#[allow(dead_code)]
mod harness;

use common::*;
use harness::*;
use lab::{Host, Lab, Process};
use std::cell::RefCell;
use std::time::Duration;

const DNS_AREA: &str = r#"
[dns]
forwarders = ["198.51.100.10"]

[[dns.hosts]]
name = "nas.example.lan"
addresses = ["192.0.2.50"]

[[dns.domains]]
domain = "corp.example"
servers = ["198.51.100.10"]
"#;

const NEW_HOST: &str = r#"
[[dns.hosts]]
name = "printer.example.lan"
addresses = ["192.0.2.60", "2001:db8::60"]
"#;

const VIP_LAN: &str = r#"
[[vips]]
vhid = 7
interface = "lan"
addresses = ["192.0.2.1/24"]
"#;

/// Where `node`'s unbound keeps its files (relative to the lab dir, where the node configs
/// are: `[dns_local]` paths are relative to the config file).
fn unbound_dir(node: &str) -> String {
    format!("unbound-{node}")
}

/// unbound's own config for `node` (tandem's include file starts empty) and the process, in
/// the foreground in the host's namespace.
fn start_unbound(lab: &Lab, host: &Host, node: &str) -> Process {
    let dir = lab.dir().join(unbound_dir(node));
    std::fs::create_dir_all(&dir).expect("unbound dir");
    let d = dir.display();
    // Empty at first; later starts keep what tandem wrote.
    if !dir.join("tandem.conf").exists() {
        std::fs::write(dir.join("tandem.conf"), "").expect("include");
    }
    let conf = dir.join("unbound.conf");
    std::fs::write(
        &conf,
        format!(
            r#"server:
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    interface: 127.0.0.1
remote-control:
    control-enable: yes
    control-interface: {d}/control.sock
    control-use-cert: no
include: "{d}/tandem.conf"
"#
        ),
    )
    .expect("unbound.conf");
    let p = host
        .spawn(&["unbound", "-d", "-c", &conf.to_string_lossy()])
        .expect("spawn unbound (is the unbound package installed?)");
    let sock = dir.join("control.sock");
    let up = lab::wait_until(Duration::from_secs(10), || sock.exists());
    assert!(up, "unbound on {node} did not start:\n{}", p.stderr());
    p
}

/// `[dns_local]` of `node`: its unbound's files, relative to the node's config file.
fn dns_local(node: &str) -> String {
    format!(
        r#"
[dns_local]
include = "{d}/tandem.conf"
unbound_control = "/usr/sbin/unbound-control"
unbound_conf = "{d}/unbound.conf"
control_socket = "{d}/control.sock"
interfaces = ["lan"]
"#,
        d = unbound_dir(node)
    )
}

/// The answers `dig` gets from `server` in `host`'s namespace, sorted (empty: none).
fn resolve(host: &Host, server: &str, name: &str, rr: &str) -> String {
    let out = host
        .command("dig")
        .args([
            &format!("@{server}"),
            "+short",
            "+time=1",
            "+tries=1",
            name,
            rr,
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort_unstable();
    lines.join(",")
}

fn wait_answer(c: &Cluster, host: &Host, server: &str, name: &str, rr: &str, want: &str) {
    let mut last = String::new();
    let ok = lab::wait_until(Duration::from_secs(15), || {
        last = resolve(host, server, name, rr);
        last == want
    });
    assert!(
        ok,
        "{name} {rr} @{server} from {}: wanted {want:?}, got {last:?}\nfw1: {}\nfw2: {}\n{}",
        host.name(),
        c.fw1().status()["dns"],
        c.fw2.status()["dns"],
        c.fw2.log()
    );
}

#[test]
fn overrides_resolve_through_the_vip_across_a_failover_and_sync_to_the_peer() {
    if !lab::require_netns() {
        return;
    }
    let resolvers: RefCell<Vec<Process>> = RefCell::new(Vec::new());
    let setup = |lab: &Lab, h1: &Host, h2: &Host| {
        let mut r = resolvers.borrow_mut();
        r.push(start_unbound(lab, h1, "fw1"));
        r.push(start_unbound(lab, h2, "fw2"));
    };
    let fw2_local = dns_local("fw2");
    let o = Opts {
        fw1_areas: format!("{VIP_LAN}{DNS_AREA}{}", dns_local("fw1")),
        fw2_areas: &fw2_local,
        before_nodes: Some(&setup),
        ..opts()
    };
    let c = cluster("dns_area", &o);
    c.fw1().expect_state(7, "MASTER", ELECTION);
    c.fw2.expect_state(7, "BACKUP", ELECTION);
    c.wait_in_sync();

    // unbound binds its addresses only when it starts: both say so until it is restarted
    // (as an admin does once after setting up [dns_local]).
    for n in [c.fw1(), &c.fw2] {
        c.wait("unbound applied, not yet listening on the VIP", || {
            let d = &n.status()["dns"];
            d["applied"] == true && d["not_listening"].to_string().contains("192.0.2.1")
        });
    }
    {
        let mut r = resolvers.borrow_mut();
        r.clear();
        r.push(start_unbound(&c.lab, &c.h1, "fw1"));
        r.push(start_unbound(&c.lab, &c.fw2.host, "fw2"));
    }
    for n in [c.fw1(), &c.fw2] {
        c.wait("unbound listens on every address", || {
            n.status()["dns"]["not_listening"] == serde_json::json!([])
        });
    }

    // Through the VIP (fw1 answers), and fw2's own unbound has the pushed area too.
    wait_answer(
        &c,
        &c.client,
        "192.0.2.1",
        "nas.example.lan",
        "A",
        "192.0.2.50",
    );
    wait_answer(
        &c,
        &c.client,
        "192.0.2.3",
        "nas.example.lan",
        "A",
        "192.0.2.50",
    );
    wait_answer(
        &c,
        &c.client,
        "192.0.2.1",
        "50.2.0.192.in-addr.arpa",
        "PTR",
        "nas.example.lan.",
    );
    for (node, s) in [("fw1", c.fw1().status()), ("fw2", c.fw2.status())] {
        let d = &s["dns"];
        assert_eq!(d["applied"], true, "{node}: {d}");
        assert_eq!(d["managed"], true, "{node}: {d}");
        assert_eq!(d["hosts"], 1, "{node}: {d}");
        assert_eq!(d["domains"], 1, "{node}: {d}");
        assert_eq!(d["forwarders"], 1, "{node}: {d}");
        assert_eq!(d["last_error"], serde_json::Value::Null, "{node}: {d}");
        let listen = d["listen"].to_string();
        assert!(listen.contains("192.0.2.1\""), "{node}: {d}");
        assert!(
            undocumented_status_keys(&s).is_empty(),
            "{:?}",
            undocumented_status_keys(&s)
        );
    }
    // The rendered file: fw2's own lan address, the VIP, the synced override.
    let inc =
        std::fs::read_to_string(c.lab.dir().join("unbound-fw2/tandem.conf")).expect("include");
    assert!(
        inc.contains("interface: 192.0.2.3") && inc.contains("interface: 192.0.2.1"),
        "{inc}"
    );
    assert!(inc.contains("ip-freebind: yes"), "{inc}");
    assert!(inc.contains("name: \"corp.example.\""), "{inc}");
    let (ok, text) = tandem(&c.fw2, &["status"]);
    assert!(
        ok && text.contains("dns: 1 host override, 1 domain override, 1 forwarder; applied"),
        "{text}"
    );
    // `config show` lists the area, where it came from.
    let (ok, show) = tandem(&c.fw2, &["config", "show"]);
    assert!(ok, "{show}");
    assert!(
        show.contains("# area dns") && show.contains("nas.example.lan"),
        "{show}"
    );
    let (ok, show1) = tandem(c.fw1(), &["config", "show"]);
    assert!(ok && show1.contains("# area dns"), "{show1}");

    // A failover: fw1's lan goes down, fw2 takes the VIP and its unbound answers on it.
    c.h1.set_link("eth0", false).expect("fw1 lan down");
    c.fw2.expect_state(7, "MASTER", TAKEOVER);
    wait_answer(
        &c,
        &c.client,
        "192.0.2.1",
        "nas.example.lan",
        "A",
        "192.0.2.50",
    );

    // An override added on the primary is pushed; fw2 (now master) serves it on the VIP.
    c.edit_fw1(|t| format!("{t}{NEW_HOST}"));
    wait_answer(
        &c,
        &c.client,
        "192.0.2.1",
        "printer.example.lan",
        "A",
        "192.0.2.60",
    );
    wait_answer(
        &c,
        &c.client,
        "192.0.2.1",
        "printer.example.lan",
        "AAAA",
        "2001:db8::60",
    );
    assert_eq!(c.fw2.status()["dns"]["hosts"], 2);

    // A bad name on the primary is refused there with its place, and changes nothing.
    edit(&c.fw1().config, |t| {
        t.replace(
            "name = \"printer.example.lan\"",
            "name = \"printer example\"",
        )
    });
    let (ok, out) = tandem(c.fw1(), &["reload"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("fw1.toml:") && out.contains("dns.hosts: name \"printer example\" has ' '"),
        "{out}"
    );
    assert_eq!(c.fw1().status()["dns"]["hosts"], 2);
    wait_answer(
        &c,
        &c.client,
        "192.0.2.1",
        "printer.example.lan",
        "A",
        "192.0.2.60",
    );
}
