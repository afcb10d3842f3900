//! Injected entries carry real traffic: a masqueraded TCP connection through a stateful
//! firewall survives the firewall losing its conntrack table, when the table is restored from
//! a dump with [`Conntrack::apply`] (needs root; see `lab::require_netns`). The control
//! (no restore) shows the test can fail.
//!
//! Topology: client 192.0.2.10 — fw (192.0.2.1 | 198.51.100.1, masquerade) — server
//! 198.51.100.20. `nf_conntrack_tcp_loose=0` on fw, so a packet without its entry is INVALID
//! and dropped (no mid-stream pickup hiding a missing entry).

mod common;

use std::time::Duration;

use common::block_in_ns;
use conntrack::model::{status, PortProto, L4};
use lab::{require_netns, Host, Lab, Process};
use linux::conntrack::{Applied, Conntrack, Op};

const SERVER: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 9000))
s.listen(1)
print('ready', flush=True)
c, _ = s.accept()
while True:
    d = c.recv(4096)
    if not d:
        break
    c.sendall(d)
"#;

/// Exchanges a message every 50 ms for `secs` seconds; fails if an answer takes over 3 s.
const CLIENT: &str = r#"
import socket, sys, time
secs = float(sys.argv[1])
c = socket.create_connection(('198.51.100.20', 9000), timeout=3)
c.settimeout(3)
end = time.time() + secs
n = 0
while time.time() < end:
    m = b'%08d' % n
    c.sendall(m)
    got = b''
    while len(got) < len(m):
        d = c.recv(len(m) - len(got))
        if not d:
            sys.exit('closed after %d exchanges' % n)
        got += d
    assert got == m, (got, m)
    n += 1
    time.sleep(0.05)
print('ok', n, flush=True)
"#;

struct Net {
    _lab: Lab,
    client: Host,
    fw: Host,
    server: Host,
}

fn topology(name: &str) -> Net {
    let mut lab = Lab::new(name).expect("lab");
    let client = lab.host("client").expect("client");
    let fw = lab.host("fw").expect("fw");
    let server = lab.host("server").expect("server");
    lab.link(
        &client,
        "eth0",
        &["192.0.2.10/24"],
        &fw,
        "lan",
        &["192.0.2.1/24"],
    )
    .expect("lan link");
    lab.link(
        &fw,
        "wan",
        &["198.51.100.1/24"],
        &server,
        "eth0",
        &["198.51.100.20/24"],
    )
    .expect("wan link");
    client
        .run(&["ip", "route", "add", "default", "via", "192.0.2.1"])
        .expect("route");
    fw.sysctl("net.ipv4.ip_forward", "1").expect("forwarding");
    fw.sysctl("net.netfilter.nf_conntrack_tcp_loose", "0")
        .expect("loose");
    fw.run(&[
        "nft",
        "add table ip t; \
         add chain ip t filt { type filter hook forward priority 0; policy drop; }; \
         add rule ip t filt ct state established,related accept; \
         add rule ip t filt iifname lan ct state new accept; \
         add chain ip t natpost { type nat hook postrouting priority 100; }; \
         add rule ip t natpost oifname wan masquerade",
    ])
    .expect("nft");
    for (h, i) in [
        (&client, "eth0"),
        (&fw, "lan"),
        (&fw, "wan"),
        (&server, "eth0"),
    ] {
        assert!(lab::wait_until(Duration::from_secs(5), || h.has_carrier(i)));
    }
    Net {
        _lab: lab,
        client,
        fw,
        server,
    }
}

fn start(net: &Net, secs: &str) -> (Process, Process) {
    let server = net
        .server
        .spawn(&["python3", "-c", SERVER])
        .expect("server");
    assert!(lab::wait_until(Duration::from_secs(5), || server
        .stdout()
        .contains("ready")));
    let client = net
        .client
        .spawn(&["python3", "-c", CLIENT, secs])
        .expect("client");
    (server, client)
}

/// Waits until fw tracks the client's connection; returns its entry from our dump.
fn tracked(fw: &Host) -> conntrack::model::Conn {
    let mut found = None;
    assert!(lab::wait_until(Duration::from_secs(5), || {
        found = block_in_ns(fw.ns(), || async {
            let mut ct = Conntrack::open().expect("open");
            ct.dump().expect("dump").into_iter().find(|c| {
                matches!(
                    c.orig.l4,
                    L4::Ports {
                        proto: PortProto::Tcp,
                        dst: 9000,
                        ..
                    }
                ) && c.status & status::ASSURED != 0
            })
        });
        found.is_some()
    }));
    found.expect("entry")
}

#[test]
fn masqueraded_tcp_survives_a_table_restore() {
    if !require_netns() {
        return;
    }
    let net = topology("linux_conntrack_restore");
    let (_server, mut client) = start(&net, "4");
    let entry = tracked(&net.fw);
    assert!(entry.status & status::SRC_NAT != 0, "{entry:?}");
    assert!(!entry.nat().is_none());
    // Lose the table (as a node that just took over has nothing), then restore it from the
    // dump, as state sync would.
    let restored = block_in_ns(net.fw.ns(), || async {
        let mut ct = Conntrack::open().expect("open");
        let dump = ct.dump().expect("dump");
        ct.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(300));
        let ops: Vec<Op<'_>> = dump.iter().map(Op::Create).collect();
        let res = ct.apply(&ops);
        let ok = res.iter().filter(|r| r.is_ok()).count();
        assert!(
            res.iter()
                .all(|r| matches!(r, Ok(Applied::Created | Applied::Updated))),
            "{res:?}"
        );
        // The kernel rebuilt the very same translated reply tuple from CTA_NAT_SRC.
        let after = ct.get(&dump[0].key()).expect("get");
        (
            ok,
            after.is_some_and(|a| a.reply == dump[0].reply && a.status & status::SRC_NAT != 0),
        )
    });
    assert!(restored.0 >= 1 && restored.1);
    let status = client
        .wait_timeout(Duration::from_secs(15))
        .expect("wait")
        .expect("client finished");
    assert!(
        status.success(),
        "client: {} {}",
        client.stdout(),
        client.stderr()
    );
    assert!(client.stdout().starts_with("ok"), "{}", client.stdout());
}

#[test]
fn control_without_restore_the_connection_breaks() {
    if !require_netns() {
        return;
    }
    let net = topology("linux_conntrack_restore_ctl");
    let (_server, mut client) = start(&net, "4");
    tracked(&net.fw);
    block_in_ns(net.fw.ns(), || async {
        Conntrack::open().expect("open").flush().expect("flush");
    });
    let status = client
        .wait_timeout(Duration::from_secs(15))
        .expect("wait")
        .expect("client finished");
    assert!(
        !status.success(),
        "the connection survived without its entry: {}",
        client.stdout()
    );
}
