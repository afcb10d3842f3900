//! `[carp] auth = "tandem"` between two real daemons, with an attacker on the LAN.
//!
//! The attacker (no passphrase) records the master's adverts off the wire, then, once the
//! master is gone, sends them again from the master's address (IP_HDRINCL), as captured and
//! with the skew rewritten to 0. In BSD mode (run first, to show the attack really works) every
//! replay resets the backup's master-down timer: nobody holds the VIP while the attacker keeps
//! it up. In tandem mode the backup rejects them (`replayed`, `bad_hmac`), takes over on time
//! and keeps the VIP while they go on; the old master comes back and a restarted node is not
//! taken for a replay.

mod common;

use common::*;
use lab::{Host, Lab, Process};
use std::time::{Duration, Instant};

const LAN: &[(&str, &str)] = &[("lan", "eth0")];
const VIP: &str = "192.0.2.100";
const FW1: &str = "192.0.2.2";
const ATTACKER: &str = "192.0.2.66";
const PASS: &str = "tandem cluster passphrase";

/// The attacker's tool: `capture N FROM FILE` writes the CARP payloads of N adverts from FROM
/// (hex, one a line); `replay FILE SPOOF SECONDS [skew0]` sends them again and again from SPOOF
/// to 224.0.0.18 with TTL 255 (every 0.3 s), optionally with the skew set to 0 and the checksum
/// recomputed (the MAC kept: the attacker cannot make one).
const TOOL: &str = r#"
import socket, struct, sys, time
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
mode = sys.argv[1]
if mode == 'capture':
    n, src, out = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton('224.0.0.18') + socket.inet_aton('0.0.0.0')
                 + struct.pack('i', socket.if_nametoindex('eth0')))
    s.settimeout(15)
    got = []
    while len(got) < n:
        data, addr = s.recvfrom(2048)
        if addr[0] == src:
            got.append(data[(data[0] & 15) * 4:].hex())
    open(out, 'w').write('\n'.join(got) + '\n')
    print('captured', len(got), flush=True)
else:
    path, spoof, secs = sys.argv[2], sys.argv[3], float(sys.argv[4])
    skew0 = len(sys.argv) > 5
    adverts = [bytearray.fromhex(l) for l in open(path).read().split()]
    if skew0:
        for a in adverts:
            a[2] = 0
            a[6:8] = b'\0\0'
            a[6:8] = struct.pack('!H', csum(bytes(a)))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'eth0')
    end, sent = time.time() + secs, 0
    while time.time() < end:
        for a in adverts:
            ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(a), 0, 0, 255, 112, 0,
                             socket.inet_aton(spoof), socket.inet_aton('224.0.0.18'))
            s.sendto(ip + bytes(a), ('224.0.0.18', 0))
            sent += 1
            time.sleep(0.3)
    print('sent', sent, flush=True)
"#;

fn vips(dual_stack: bool) -> [VipSpec<'static>; 1] {
    [VipSpec {
        vhid: 7,
        interface: "lan",
        addresses: if dual_stack {
            &["192.0.2.100/24", "2001:db8:1::100/64"]
        } else {
            &["192.0.2.100/24"]
        },
    }]
}

struct Cluster {
    fw1: Node,
    fw2: Node,
    attacker: Host,
}

fn cluster(lab: &mut Lab, auth: &str, dual_stack: bool) -> Cluster {
    let sw = lab.switch("lan").expect("switch");
    let h1 = lab.host("fw1").expect("fw1");
    let h2 = lab.host("fw2").expect("fw2");
    let attacker = lab.host("attacker").expect("attacker");
    for (h, v4, v6) in [
        (&h1, "192.0.2.2/24", "2001:db8:1::2/64"),
        (&h2, "192.0.2.3/24", "2001:db8:1::3/64"),
    ] {
        let addrs: &[&str] = if dual_stack { &[v4, v6] } else { &[v4] };
        lab.connect(h, "eth0", &sw, addrs).expect("connect");
    }
    lab.connect(&attacker, "eth0", &sw, &["192.0.2.66/24"])
        .expect("connect");
    let auth_line = format!("auth = \"{auth}\"\n");
    let config = |name: &str, skew: u8| {
        let path = write_config(lab, name, skew, true, PASS, LAN, &vips(dual_stack));
        let text = std::fs::read_to_string(&path).expect("read config");
        let text = text.replace("[carp]\n", &format!("[carp]\n{auth_line}"));
        std::fs::write(&path, text).expect("write config");
        path
    };
    let (c1, c2) = (config("fw1", 0), config("fw2", 100));
    let fw1 = Node::start(&h1, c1);
    let fw2 = Node::start(&h2, c2);
    Cluster { fw1, fw2, attacker }
}

fn tool(lab: &Lab) -> String {
    let path = lab.dir().join("attacker.py");
    std::fs::write(&path, TOOL).expect("write attacker tool");
    path.display().to_string()
}

/// Records `n` adverts of fw1 off the wire into a file in the lab directory.
fn capture(lab: &Lab, attacker: &Host, n: usize) -> String {
    let file = lab.dir().join("captured.hex").display().to_string();
    let out = attacker
        .run(&["python3", &tool(lab), "capture", &n.to_string(), FW1, &file])
        .expect("capture adverts");
    assert!(out.contains(&format!("captured {n}")), "{out}");
    file
}

fn replay(lab: &Lab, attacker: &Host, file: &str, spoof: &str, secs: u32, skew0: bool) -> Process {
    let secs = secs.to_string();
    let tool = tool(lab);
    let mut args = vec![
        "python3",
        tool.as_str(),
        "replay",
        file,
        spoof,
        secs.as_str(),
    ];
    if skew0 {
        args.push("skew0");
    }
    attacker.spawn(&args).expect("start replay")
}

fn rejected(n: &Node, reason: &str) -> u64 {
    n.vip(7)["adverts_rejected"][reason].as_u64().unwrap_or(0)
}

/// fw2 must be MASTER and alone hold the VIP for the whole of `d`.
fn stays_master(c: &Cluster, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        assert_eq!(
            c.fw2.state(7),
            "MASTER",
            "fw2 lost the master role\n{}",
            c.fw2.log()
        );
        assert!(c.fw2.host.has_address("eth0", VIP), "fw2 lost the VIP");
        assert!(!c.fw1.host.has_address("eth0", VIP), "fw1 holds the VIP");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn bsd_mode_replayed_adverts_hold_the_vip_down_which_is_why_tandem_mode_exists() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("carp_auth_bsd_replay").expect("lab");
    let c = cluster(&mut lab, "bsd", false);
    c.fw1.expect_state(7, "MASTER", ELECTION);
    c.fw2.expect_state(7, "BACKUP", ELECTION);
    assert_eq!(c.fw2.vip(7)["auth"], "bsd");
    let file = capture(&lab, &c.attacker, 3);
    let mut p = replay(&lab, &c.attacker, &file, FW1, 12, false);
    c.fw1.host.set_link("eth0", false).expect("fw1 link down");
    // Well past fw2's master-down interval (3.4 s) and the takeover bound: still BACKUP.
    std::thread::sleep(TAKEOVER + Duration::from_secs(1));
    assert_eq!(
        c.fw2.state(7),
        "BACKUP",
        "the replay did not work; the test proves nothing"
    );
    assert!(!c.fw2.host.has_address("eth0", VIP));
    let _ = p.wait_timeout(Duration::from_secs(10));
    // Once the attacker stops, fw2 takes over.
    c.fw2.expect_state(7, "MASTER", TAKEOVER);
}

#[test]
fn tandem_mode_fails_over_and_replayed_or_rewritten_adverts_change_nothing() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("carp_auth_tandem_replay").expect("lab");
    let mut c = cluster(&mut lab, "tandem", false);
    c.fw1.expect_state(7, "MASTER", ELECTION);
    c.fw2.expect_state(7, "BACKUP", ELECTION);
    assert_eq!(c.fw1.vip(7)["auth"], "tandem");
    assert_eq!(c.fw2.vip(7)["auth"], "tandem");
    let (_, text, _) = c.fw2.cli(&["status"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("7 ") && l.split_whitespace().nth(4) == Some("carp/tandem")),
        "{text}"
    );
    let file = capture(&lab, &c.attacker, 3);

    // The master dies; the attacker replays its adverts from its address, as captured.
    let mut p = replay(&lab, &c.attacker, &file, FW1, 10, false);
    c.fw1.host.set_link("eth0", false).expect("fw1 link down");
    c.fw2.expect_state(7, "MASTER", TAKEOVER);
    assert_eq!(
        c.fw2.vip(7)["last_transition"]["reason"],
        "master-down-timer"
    );
    // fw1's adverts are better than fw2's: a BSD master would step down at each replay.
    stays_master(&c, Duration::from_secs(3));
    let _ = p.wait_timeout(Duration::from_secs(10));
    assert!(rejected(&c.fw2, "replayed") >= 3, "{}", c.fw2.vip(7));

    // Rewritten to skew 0, from fw1's address or the attacker's own: the MAC fails.
    let mut p1 = replay(&lab, &c.attacker, &file, FW1, 4, true);
    let mut p2 = replay(&lab, &c.attacker, &file, ATTACKER, 4, false);
    stays_master(&c, Duration::from_secs(4));
    let _ = p1.wait_timeout(Duration::from_secs(10));
    let _ = p2.wait_timeout(Duration::from_secs(10));
    assert!(rejected(&c.fw2, "bad_hmac") >= 6, "{}", c.fw2.vip(7));
    let replayed = rejected(&c.fw2, "replayed");

    // fw1 comes back and takes over again (preempt); then it is killed and restarted: its
    // new counters start at its new wall clock, above what fw2 last accepted from it.
    c.fw1.host.set_link("eth0", true).expect("fw1 link up");
    c.fw1.expect_state(7, "MASTER", TAKEOVER);
    c.fw2.expect_state(7, "BACKUP", TAKEOVER);
    c.fw1.kill();
    c.fw2.expect_state(7, "MASTER", TAKEOVER);
    c.fw1.restart();
    c.fw1.expect_state(7, "MASTER", TAKEOVER);
    c.fw2.expect_state(7, "BACKUP", TAKEOVER);
    assert_eq!(
        rejected(&c.fw2, "replayed"),
        replayed,
        "a real advert was taken for a replay: {}",
        c.fw2.vip(7)
    );
    assert_eq!(rejected(&c.fw1, "replayed"), 0, "{}", c.fw1.vip(7));
}

#[test]
fn tandem_mode_authenticates_ipv4_and_ipv6_adverts_each_from_its_own_source() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("carp_auth_tandem_dual_stack").expect("lab");
    let c = cluster(&mut lab, "tandem", true);
    c.fw1.expect_state(7, "MASTER", ELECTION);
    c.fw2.expect_state(7, "BACKUP", ELECTION);
    // Once fw1's IPv6 socket is open (its link-local address passed DAD), fw2 hears two adverts
    // a second, one per family, each signed for its own source address, and rejects none.
    let received = || c.fw2.vip(7)["adverts_received"].as_u64().unwrap_or(0);
    let two_a_second = lab::wait_until(TAKEOVER, || {
        let before = received();
        std::thread::sleep(Duration::from_millis(2100));
        received() >= before + 4
    });
    let v = c.fw2.vip(7);
    assert!(two_a_second, "fw2 does not hear both families: {v}");
    assert_eq!(v["adverts_rejected"], serde_json::json!({}), "{v}");
    c.fw1.host.set_link("eth0", false).expect("fw1 link down");
    c.fw2.expect_state(7, "MASTER", TAKEOVER);
    assert!(c.fw2.host.has_address("eth0", VIP));
    assert!(c.fw2.host.has_address("eth0", "2001:db8:1::100"));
    c.fw1.host.set_link("eth0", true).expect("fw1 link up");
    c.fw1.expect_state(7, "MASTER", TAKEOVER);
    c.fw2.expect_state(7, "BACKUP", TAKEOVER);
    let v = c.fw1.vip(7);
    assert_eq!(v["adverts_rejected"], serde_json::json!({}), "{v}");
}
