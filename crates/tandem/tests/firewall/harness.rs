//! The harness of the firewall tests (`tests/firewall.rs`, whose header draws the network):
//! the client, firewall and server hosts wired up, a firewall node started with given areas,
//! and the helpers that check traffic, counters and the applied table.

use crate::common::*;
use lab::{Host, Lab, Outcome};
use std::path::Path;
use std::time::Duration;

const IFACES: &[(&str, &str)] = &[("lan", "eth0"), ("wan", "eth1")];
const LAN_VIP: &[&str] = &["192.0.2.1/24"];
const WAN_VIP: &[&str] = &["198.51.100.1/24"];
pub const T: Duration = Duration::from_millis(1500);
pub const SERVER: &str = "198.51.100.10";
pub const SERVER6: &str = "2001:db8:2::10";
/// Another address of the server, not in the `servers` alias.
pub const OTHER: &str = "198.51.100.11";
/// Another address of the server, ICMP to it is rejected.
pub const REJECTED: &str = "198.51.100.12";
const TCP_PORTS: &[u16] = &[22, 80, 81, 82, 8080, 8081];
const UDP_PORTS: &[u16] = &[5300, 5301, 5302];

fn vips() -> [VipSpec<'static>; 2] {
    [
        VipSpec {
            vhid: 1,
            interface: "lan",
            addresses: LAN_VIP,
        },
        VipSpec {
            vhid: 2,
            interface: "wan",
            addresses: WAN_VIP,
        },
    ]
}

/// The client, the firewall hosts and the server, wired up; the firewalls not started yet.
pub struct Net {
    pub client: Host,
    pub fws: Vec<Host>,
    pub server: Host,
    pub server_log: lab::Process,
    _client_server: lab::Process,
}

/// `fws` firewalls between lan and wan: fw1 has .2 on both nets, fw2 .3.
pub fn network(lab: &mut Lab, fws: usize) -> Net {
    let lan = lab.switch("lan").expect("lan switch");
    let wan = lab.switch("wan").expect("wan switch");
    let client = lab.host("client").expect("client");
    let server = lab.host("server").expect("server");
    lab.connect(
        &client,
        "eth0",
        &lan,
        &["192.0.2.10/24", "2001:db8:1::10/64"],
    )
    .expect("client");
    lab.connect(
        &server,
        "eth0",
        &wan,
        &[
            "198.51.100.10/24",
            "198.51.100.11/24",
            "198.51.100.12/24",
            "2001:db8:2::10/64",
        ],
    )
    .expect("server");
    let mut hosts = Vec::new();
    for k in 1..=fws {
        let h = lab.host(&format!("fw{k}")).expect("fw host");
        let last = k + 1;
        lab.connect(
            &h,
            "eth0",
            &lan,
            &[
                &format!("192.0.2.{last}/24"),
                &format!("2001:db8:1::{last}/64"),
            ],
        )
        .expect("fw lan");
        lab.connect(
            &h,
            "eth1",
            &wan,
            &[
                &format!("198.51.100.{last}/24"),
                &format!("2001:db8:2::{last}/64"),
            ],
        )
        .expect("fw wan");
        hosts.push(h);
    }
    client
        .run(&["ip", "route", "add", "default", "via", "192.0.2.1"])
        .expect("client route");
    client
        .run(&[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:1::2",
        ])
        .expect("client route6");
    // The server can reach the inside, so a timeout there is the firewall, not routing.
    server
        .run(&["ip", "route", "add", "192.0.2.0/24", "via", "198.51.100.1"])
        .expect("server route");
    server
        .run(&[
            "ip",
            "-6",
            "route",
            "add",
            "2001:db8:1::/64",
            "via",
            "2001:db8:2::2",
        ])
        .expect("server route6");
    let servers = server.serve(TCP_PORTS, UDP_PORTS).expect("servers");
    let client_server = client.serve(&[22], &[]).expect("inside server");
    Net {
        client,
        fws: hosts,
        server,
        server_log: servers,
        _client_server: client_server,
    }
}

/// Starts fw`k` (1-based) with `areas` appended to its node config; waits until it answers.
pub fn start_fw(lab: &Lab, net: &Net, k: usize, areas: &str) -> Node {
    let name = format!("fw{k}");
    let skew = if k == 1 { 0 } else { 100 };
    let cfg = write_config_extra(lab, &name, skew, true, "s3cret", IFACES, &vips(), areas);
    Node::start(&net.fws[k - 1], cfg)
}

pub fn master_of_both(fw: &Node) {
    fw.expect_state(1, "MASTER", ELECTION);
    fw.expect_state(2, "MASTER", ELECTION);
}

/// `nft list table inet tandem` with handles and without counters: byte-identical only if
/// the table was not replaced (a re-created table gets a new handle).
pub fn table(host: &Host) -> String {
    host.run(&["nft", "-a", "-s", "list", "table", "inet", "tandem"])
        .expect("nft list table")
}

pub fn expect(what: &str, got: Outcome, want: Outcome, fw: &Node) {
    assert_eq!(
        got,
        want,
        "{what}\nruleset:\n{}\nlog:\n{}",
        fw.host
            .run(&["nft", "list", "table", "inet", "tandem"])
            .unwrap_or_default(),
        fw.log()
    );
}

/// The packet count of the rule commented `needle` in `chain` of the tandem table on `fw`.
pub fn counter(fw: &Node, chain: &str, needle: &str) -> u64 {
    fw.host
        .nft_counter("inet tandem", chain, needle)
        .expect("counter")
}

pub fn line_of(path: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(path).expect("read config");
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {}", path.display()))
        + 1
}
