//! Gratuitous ARP and unsolicited NA between two namespaces (needs root; see
//! `lab::require_netns`). Checked three ways in the receiving namespace: the exact bytes on a
//! packet socket, tcpdump's decoding (including its own ICMPv6 checksum check), and the
//! kernel's neighbour cache taking the new MAC.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{enter, ip, join};
use lab::{require_netns, wait_until};
use linux::announce::{garp_frame, unsolicited_na_frame};
use nix::sys::socket::MsgFlags;

const VMAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x07];
const VMAC_STR: &str = "00:00:5e:00:01:07";

fn tcpdump_available() -> bool {
    let ok = Command::new("tcpdump")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("tcpdump is not installed (needed under CI=true)");
        }
        eprintln!("tcpdump not installed: skipping its part of the check");
    }
    ok
}

/// Receives frames on `ifname` in the calling thread's namespace until `want` frames matching
/// `keep` came or `timeout` passed.
fn capture(
    ifname: &str,
    ready: std::sync::mpsc::Sender<()>,
    timeout: Duration,
    keep: impl Fn(&[u8]) -> bool,
    want: usize,
) -> Vec<Vec<u8>> {
    let eth_p_all = (libc::ETH_P_ALL as u16).to_be();
    let s = socket2::Socket::new(
        socket2::Domain::PACKET,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(i32::from(eth_p_all))),
    )
    .expect("packet socket");
    s.bind_device(Some(ifname.as_bytes())).expect("bind device");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    ready.send(()).expect("ready");
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < end && got.len() < want {
        let n = nix::sys::socket::recv(s.as_raw_fd(), &mut buf, MsgFlags::empty());
        if let Ok(n) = n {
            let f = &buf[..n];
            if keep(f) {
                got.push(f.to_vec());
            }
        }
    }
    got
}

/// Captures, on a thread inside `ns`, up to `want` frames from the virtual MAC arriving on eth0
/// (for 10 s at most); returns once the capture socket is bound.
fn capture_vmac(ns: String, want: usize) -> JoinHandle<Vec<Vec<u8>>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let capturer = std::thread::spawn(move || {
        enter(&ns);
        capture(
            "eth0",
            ready_tx,
            Duration::from_secs(10),
            |f| f.len() >= 12 && f[6..12] == VMAC,
            want,
        )
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("capture ready");
    capturer
}

#[test]
fn garp_and_unsolicited_na_reach_the_peer_byte_exact() {
    if !require_netns() {
        return;
    }
    let with_tcpdump = tcpdump_available();
    let (_lab, a, b) = common::two_hosts(
        "linux_garp_na",
        &["192.0.2.1/24", "2001:db8::1/64"],
        &["192.0.2.2/24", "2001:db8::2/64"],
    );
    assert!(wait_until(Duration::from_secs(5), || a.has_carrier("eth0")
        && b.has_carrier("eth0")));
    let (ns_a, ns_b) = (a.ns().to_owned(), b.ns().to_owned());

    let vip4 = Ipv4Addr::new(192, 0, 2, 100);
    let vip6: Ipv6Addr = "2001:db8::100".parse().expect("literal");
    // B believes the VIPs live at some old MAC (as after the previous master).
    for (addr, fam) in [("192.0.2.100", "-4"), ("2001:db8::100", "-6")] {
        ip(
            &ns_b,
            &[
                fam,
                "neigh",
                "replace",
                addr,
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                "eth0",
                "nud",
                "stale",
            ],
        );
    }

    let tcpdump = with_tcpdump.then(|| {
        b.spawn(&[
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-l",
            "-v",
            "-e",
            "-c",
            "2",
            "arp or (icmp6 and ip6[40] == 136)",
        ])
        .expect("tcpdump")
    });
    if let Some(t) = &tcpdump {
        assert!(
            wait_until(Duration::from_secs(10), || t
                .stderr()
                .contains("listening on")),
            "tcpdump did not start: {}",
            t.stderr()
        );
    }

    let capturer = capture_vmac(ns_b.clone(), 2);

    let sender = std::thread::spawn(move || {
        enter(&ns_a);
        let ifindex = nix::net::if_::if_nametoindex("eth0").expect("ifindex");
        linux::gratuitous_arp(ifindex, VMAC, vip4).expect("garp");
        linux::unsolicited_na(ifindex, VMAC, vip6).expect("na");
        // IPv6 forwarding is off in a fresh namespace: the Router flag must be clear.
        linux::sysctl::read("net.ipv6.conf.eth0.forwarding").expect("sysctl")
    });
    let forwarding = join(sender);
    assert_eq!(forwarding, "0");

    let frames = join(capturer);
    assert_eq!(frames.len(), 2, "both frames seen in b: {frames:02x?}");
    assert!(
        frames.contains(&garp_frame(VMAC, vip4).to_vec()),
        "{frames:02x?}"
    );
    assert!(
        frames.contains(&unsolicited_na_frame(VMAC, vip6, false).to_vec()),
        "{frames:02x?}"
    );

    // The kernel in B accepted both and moved the VIPs to the new MAC.
    for addr in ["192.0.2.100", "2001:db8::100"] {
        assert!(
            wait_until(Duration::from_secs(5), || ip(
                &ns_b,
                &["neigh", "show", addr, "dev", "eth0"]
            )
            .contains(VMAC_STR)),
            "neighbour {addr} in b: {}",
            ip(&ns_b, &["neigh", "show", "dev", "eth0"])
        );
    }

    if let Some(mut t) = tcpdump {
        assert!(
            wait_until(Duration::from_secs(5), || t.stdout().lines().count() >= 2),
            "tcpdump saw: {}",
            t.stdout()
        );
        let _ = t.wait_timeout(Duration::from_secs(2));
        let out = t.stdout();
        eprintln!("tcpdump in b:\n{out}");
        assert!(
            out.contains("Request who-has 192.0.2.100 tell 192.0.2.100"),
            "{out}"
        );
        assert!(out.contains("ff:ff:ff:ff:ff:ff"), "{out}");
        assert!(out.contains("neighbor advertisement"), "{out}");
        assert!(out.contains("tgt is 2001:db8::100"), "{out}");
        assert!(out.contains("hlim 255"), "{out}");
        assert!(out.contains("[icmp6 sum ok]"), "{out}");
        assert!(out.contains("Flags [override]"), "{out}");
        assert!(out.contains(VMAC_STR), "{out}");
    }
}

#[test]
fn na_carries_the_router_flag_when_the_interface_forwards_ipv6() {
    if !require_netns() {
        return;
    }
    let (_lab, a, b) = common::two_hosts(
        "linux_na_router_flag",
        &["2001:db8::1/64"],
        &["2001:db8::2/64"],
    );
    assert!(wait_until(Duration::from_secs(5), || a.has_carrier("eth0")
        && b.has_carrier("eth0")));
    let (ns_a, ns_b) = (a.ns().to_owned(), b.ns().to_owned());
    let vip6: Ipv6Addr = "2001:db8::100".parse().expect("literal");

    let capturer = capture_vmac(ns_b, 1);
    let ns = ns_a.clone();
    join(std::thread::spawn(move || {
        enter(&ns);
        // sysctl::write acts on the calling thread's namespace.
        linux::sysctl::write("net/ipv6/conf/eth0/forwarding", "1").expect("write sysctl");
        assert_eq!(
            linux::sysctl::read("net.ipv6.conf.eth0.forwarding").expect("read"),
            "1"
        );
        let ifindex = nix::net::if_::if_nametoindex("eth0").expect("ifindex");
        linux::unsolicited_na(ifindex, VMAC, vip6).expect("na");
    }));
    // Seen from outside, in that namespace only.
    let out = a
        .run(&["sysctl", "-n", "net.ipv6.conf.eth0.forwarding"])
        .expect("sysctl in a");
    assert_eq!(out.trim(), "1");
    let out = b
        .run(&["sysctl", "-n", "net.ipv6.conf.eth0.forwarding"])
        .expect("sysctl in b");
    assert_eq!(out.trim(), "0");

    let frames = join(capturer);
    assert_eq!(
        frames,
        vec![unsolicited_na_frame(VMAC, vip6, true).to_vec()],
        "Router + Override"
    );
}
