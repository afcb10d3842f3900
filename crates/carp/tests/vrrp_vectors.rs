//! Byte-exact vectors: VRRPv3 adverts captured from keepalived 2.2.7 (Debian bookworm), in
//! tests/vectors/keepalived/*.hex. Each file names its keepalived config (tests/vectors/
//! keepalived/conf/), the keepalived command and the capture command in its header, e.g.
//!
//! ```sh
//! ip netns exec vrrpres-b tcpdump -i vb0 -U -s 0 -w capture.pcap 'ip proto 112 or ip6 proto 112 or arp or icmp6'
//! ip netns exec vrrpres-a keepalived -n -l -D -P -f vectors/conf/v4-one.conf -p <pid> -r <pid> -c <pid>
//! ```
//! (harness: tests/vectors/keepalived/scenario.sh, pcap to hex: pcap2hex.py). Every data line
//! holds the raw IP packet; the test parses its IP header itself, decodes the VRRP part with
//! the real source and destination, checks every field and the checksum, and encodes the
//! fields back to the same bytes. The engine, configured like keepalived, must send the very
//! same bytes and accept keepalived's.

use carp::vrrp::{self, VrrpAdvert};
use carp::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

struct Capture {
    file: &'static str,
    text: &'static str,
    vrid: u8,
    interval_cs: u16,
    priority: u8,
    addresses: &'static [&'static str],
    unicast: bool,
}

const CAPTURES: &[Capture] = &[
    Capture {
        file: "v4-one-vrid51-prio100-int1.hex",
        text: include_str!("vectors/keepalived/v4-one-vrid51-prio100-int1.hex"),
        vrid: 51,
        interval_cs: 100,
        priority: 100,
        addresses: &["192.0.2.100"],
        unicast: false,
    },
    Capture {
        file: "v4-two-vips-vrid52-prio150-int005.hex",
        text: include_str!("vectors/keepalived/v4-two-vips-vrid52-prio150-int005.hex"),
        vrid: 52,
        interval_cs: 5,
        priority: 150,
        addresses: &["192.0.2.101", "192.0.2.102"],
        unicast: false,
    },
    Capture {
        file: "v4-unicast-vrid54-prio100-int1.hex",
        text: include_str!("vectors/keepalived/v4-unicast-vrid54-prio100-int1.hex"),
        vrid: 54,
        interval_cs: 100,
        priority: 100,
        addresses: &["192.0.2.104"],
        unicast: true,
    },
    Capture {
        file: "v4-vmac-vrid55-prio100-int1.hex",
        text: include_str!("vectors/keepalived/v4-vmac-vrid55-prio100-int1.hex"),
        vrid: 55,
        interval_cs: 100,
        priority: 100,
        addresses: &["192.0.2.105"],
        unicast: false,
    },
    Capture {
        file: "v6-vrid53-prio100-int1.hex",
        text: include_str!("vectors/keepalived/v6-vrid53-prio100-int1.hex"),
        vrid: 53,
        interval_cs: 100,
        priority: 100,
        addresses: &["2001:db8::100"],
        unicast: false,
    },
    Capture {
        file: "v6-vmac-vrid56-prio100-int1.hex",
        text: include_str!("vectors/keepalived/v6-vmac-vrid56-prio100-int1.hex"),
        vrid: 56,
        interval_cs: 100,
        priority: 100,
        addresses: &["2001:db8::100"],
        unicast: false,
    },
    Capture {
        file: "v6-linklocal-first-vrid57-prio100-int1.hex",
        text: include_str!("vectors/keepalived/v6-linklocal-first-vrid57-prio100-int1.hex"),
        vrid: 57,
        interval_cs: 100,
        priority: 100,
        addresses: &["fe80::1", "2001:db8::100"],
        unicast: false,
    },
    Capture {
        file: "v6-unicast-vrid58-prio100-int1.hex",
        text: include_str!("vectors/keepalived/v6-unicast-vrid58-prio100-int1.hex"),
        vrid: 58,
        interval_cs: 100,
        priority: 100,
        addresses: &["fe80::1", "2001:db8::100"],
        unicast: true,
    },
];

fn hex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// An IP packet as the test reads it: source, destination, TTL / hop limit, protocol and
/// the payload after the header.
struct Ip {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    proto: u8,
    payload: Vec<u8>,
}

fn parse_ip(p: &[u8]) -> Ip {
    match p[0] >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            assert_eq!(total, p.len(), "IPv4 total length");
            assert_eq!(
                wire::internet_checksum(&p[..ihl]),
                0,
                "IPv4 header checksum"
            );
            let a = |o: usize| IpAddr::V4(Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]));
            Ip {
                src: a(12),
                dst: a(16),
                ttl: p[8],
                proto: p[9],
                payload: p[ihl..].to_vec(),
            }
        }
        6 => {
            let plen = usize::from(u16::from_be_bytes([p[4], p[5]]));
            assert_eq!(plen + 40, p.len(), "IPv6 payload length");
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&p[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            Ip {
                src: a(8),
                dst: a(24),
                ttl: p[7],
                proto: p[6],
                payload: p[40..].to_vec(),
            }
        }
        v => panic!("IP version {v}"),
    }
}

/// (label, packet) of every data line.
fn packets(c: &Capture) -> Vec<(&'static str, Ip)> {
    c.text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "{}: data line {l}", c.file);
            (f[0], parse_ip(&hex(f[3])))
        })
        .collect()
}

fn addrs(c: &Capture) -> Vec<IpAddr> {
    c.addresses
        .iter()
        .map(|a| a.parse().expect("literal"))
        .collect()
}

#[test]
fn every_keepalived_capture_decodes_and_encodes_byte_for_byte() {
    let mut seen = 0;
    for c in CAPTURES {
        let pkts = packets(c);
        let labels: Vec<&str> = pkts.iter().map(|(l, _)| *l).collect();
        assert_eq!(labels, ["advert", "prio0_shutdown"], "{}", c.file);
        for (label, ip) in &pkts {
            let what = format!("{} {label}", c.file);
            assert_eq!(ip.proto, vrrp::PROTOCOL, "{what}");
            assert_eq!(ip.payload[0], 0x31, "{what}: version 3, type 1");
            if c.unicast {
                assert_ne!(ip.dst, vrrp::group_for(ip.src), "{what}");
            } else {
                assert_eq!(ip.dst, vrrp::group_for(ip.src), "{what}");
                assert_eq!(ip.ttl, 255, "{what}");
            }
            assert_eq!(
                vrrp::checksum(ip.src, ip.dst, &ip.payload),
                0,
                "{what}: checksum valid with the packet's own source and destination"
            );
            let a =
                vrrp::decode(&ip.payload, ip.src, ip.dst).unwrap_or_else(|e| panic!("{what}: {e}"));
            let priority = if *label == "advert" { c.priority } else { 0 };
            assert_eq!(a.vrid.get(), c.vrid, "{what}");
            assert_eq!(a.priority, priority, "{what}");
            assert_eq!(a.max_adver_int.get(), c.interval_cs, "{what}");
            assert_eq!(a.addresses, addrs(c), "{what}: addresses in config order");
            // Built from the fields alone, the same bytes.
            let ours = vrrp::encode(
                &VrrpAdvert {
                    vrid: Vhid::new(c.vrid).expect("nonzero"),
                    priority,
                    max_adver_int: Centisecs::new(c.interval_cs).expect("valid"),
                    addresses: addrs(c),
                },
                ip.src,
                ip.dst,
            );
            assert_eq!(ours, ip.payload, "{what}: encode");
            // The checksum depends on the destination: unicast ones fail as multicast.
            if c.unicast {
                assert_eq!(
                    vrrp::decode(&ip.payload, ip.src, vrrp::group_for(ip.src)),
                    Err(vrrp::VrrpDecodeError::BadChecksum),
                    "{what}"
                );
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 16, "two packets from each of the eight captures");
}

const T0_IF: IfaceId = 1;

/// A node with one router, `cfg`, sending from `src`.
fn node(t0: Instant, cfg: RouterConfig, src: IpAddr) -> Carp {
    let mut n = Carp::new(5);
    n.set_local_address(T0_IF, src);
    n.add_router(t0, cfg);
    n
}

#[test]
fn the_engine_sends_what_keepalived_sends() {
    let t0 = Instant::now();
    for c in CAPTURES.iter().filter(|c| !c.unicast) {
        let pkts = packets(c);
        let (_, advert) = &pkts[0];
        let (_, prio0) = &pkts[1];
        let mut n = node(t0, like_keepalived(c), advert.src);
        let (deadline, _) = n.poll_timeout().expect("master-down timer");
        n.handle_timeout(deadline);
        let sent: Vec<Vec<u8>> = std::iter::from_fn(|| n.poll_action())
            .filter_map(|a| match a {
                Action::Send { payload, .. } => Some(payload),
                _ => None,
            })
            .collect();
        assert_eq!(sent, vec![advert.payload.clone()], "{}: advert", c.file);
        n.handle(deadline, Input::Shutdown);
        let sent: Vec<Vec<u8>> = std::iter::from_fn(|| n.poll_action())
            .filter_map(|a| match a {
                Action::Send { payload, .. } => Some(payload),
                _ => None,
            })
            .collect();
        assert_eq!(sent, vec![prio0.payload.clone()], "{}: priority 0", c.file);
    }
}

#[test]
fn the_engine_accepts_keepalived_and_takes_over_within_skew_at_its_shutdown() {
    let t0 = Instant::now();
    for c in CAPTURES.iter().filter(|c| !c.unicast) {
        let pkts = packets(c);
        let (_, advert) = &pkts[0];
        let (_, prio0) = &pkts[1];
        // Our node: a lower priority (advskew 200 -> 54) from another address.
        let own = match advert.src {
            IpAddr::V4(_) => "192.0.2.2".parse().expect("literal"),
            IpAddr::V6(_) => "fe80::ff:fe00:b01".parse().expect("literal"),
        };
        let cfg = RouterConfig {
            advskew: Skew(200),
            ..like_keepalived(c)
        };
        let mut n = node(t0, cfg, own);
        let feed = |n: &mut Carp, t: Instant, ip: &Ip| {
            n.handle(
                t,
                Input::Advert {
                    iface: T0_IF,
                    src: ip.src,
                    dst: ip.dst,
                    ttl: ip.ttl,
                    payload: ip.payload.clone(),
                },
            )
        };
        let key = (T0_IF, Vhid::new(c.vrid).expect("nonzero"));
        let step = Duration::from_micros(u64::from(c.interval_cs) * 10_000);
        let mut t = t0;
        for _ in 0..10 {
            t += step;
            feed(&mut n, t, advert);
            n.handle_timeout(t);
            assert_eq!(n.state(key.0, key.1), Some(State::Backup), "{}", c.file);
        }
        let s = &n.status()[0];
        assert_eq!(s.counters.adverts_received, 10, "{}", c.file);
        assert!(
            s.counters.rejected.is_empty(),
            "{}: {:?}",
            c.file,
            s.counters
        );
        assert_eq!(s.priority, Some(54));
        assert_eq!(s.last_master, Some(advert.src));
        // keepalived resigns: we take over after Skew_Time for our priority 54.
        t += Duration::from_millis(1);
        feed(&mut n, t, prio0);
        let (deadline, _) = n.poll_timeout().expect("skew timer");
        let skew = vrrp_skew_micros(54, Centisecs::new(c.interval_cs).expect("valid"));
        assert_eq!(deadline - t, Duration::from_micros(skew), "{}", c.file);
        n.handle_timeout(deadline);
        assert_eq!(n.state(key.0, key.1), Some(State::Master), "{}", c.file);
        let reason = std::iter::from_fn(|| n.poll_action()).find_map(|a| match a {
            Action::Transition {
                to: State::Master,
                reason,
                ..
            } => Some(reason),
            _ => None,
        });
        assert_eq!(reason, Some(Reason::PriorityZero), "{}", c.file);
    }
}

/// A router configured like the keepalived that made `c`: same vrid, addresses and interval,
/// its priority by way of advskew (priority = 254 - advskew).
fn like_keepalived(c: &Capture) -> RouterConfig {
    RouterConfig {
        iface: T0_IF,
        vhid: Vhid::new(c.vrid).expect("nonzero"),
        advbase: Advbase(1),
        advskew: Skew(254 - c.priority),
        preempt: true,
        addresses: addrs(c),
        key: Key::from_passphrase(b"unused"),
        protocol: Protocol::Vrrp {
            interval: Centisecs::new(c.interval_cs).expect("valid"),
        },
        peers: Vec::new(),
    }
}

fn sends(n: &mut Carp) -> Vec<(Vec<u8>, Option<IpAddr>)> {
    std::iter::from_fn(|| n.poll_action())
        .filter_map(|a| match a {
            Action::Send { payload, dst, .. } => Some((payload, dst)),
            _ => None,
        })
        .collect()
}

/// keepalived's unicast mode (`unicast_peer`): a router whose peer list names the capture's
/// destination sends the very same bytes to it, the checksum computed with the peer in the
/// pseudo-header; the list may name this node's own address too (one list for every node),
/// which gets nothing.
#[test]
fn unicast_adverts_match_keepalived_with_the_peer_in_the_checksum() {
    let t0 = Instant::now();
    let mut seen = 0;
    for c in CAPTURES.iter().filter(|c| c.unicast) {
        let pkts = packets(c);
        let (_, advert) = &pkts[0];
        let (_, prio0) = &pkts[1];
        let cfg = RouterConfig {
            peers: vec![advert.src, advert.dst],
            ..like_keepalived(c)
        };
        let mut n = node(t0, cfg, advert.src);
        let (deadline, _) = n.poll_timeout().expect("master-down timer");
        n.handle_timeout(deadline);
        assert_eq!(
            sends(&mut n),
            vec![(advert.payload.clone(), Some(advert.dst))],
            "{}: advert",
            c.file
        );
        n.handle(deadline, Input::Shutdown);
        assert_eq!(
            sends(&mut n),
            vec![(prio0.payload.clone(), Some(advert.dst))],
            "{}: priority 0",
            c.file
        );
        // The multicast router's bytes differ in the checksum alone.
        let mut m = node(t0, like_keepalived(c), advert.src);
        m.handle_timeout(deadline);
        let multicast = sends(&mut m);
        assert_eq!(multicast.len(), 1);
        assert_eq!(multicast[0].1, None, "{}: multicast has no dst", c.file);
        assert_ne!(multicast[0].0[6..8], advert.payload[6..8], "{}", c.file);
        assert_eq!(multicast[0].0[..6], advert.payload[..6], "{}", c.file);
        assert_eq!(multicast[0].0[8..], advert.payload[8..], "{}", c.file);
        seen += 1;
    }
    assert_eq!(seen, 2, "IPv4 and IPv6 unicast captures");
}

/// One datagram per peer, each with its own checksum.
#[test]
fn unicast_sends_one_advert_per_peer_each_checksummed_for_it() {
    let t0 = Instant::now();
    let c = CAPTURES
        .iter()
        .find(|c| c.unicast && c.file.starts_with("v4"))
        .expect("v4 unicast capture");
    let pkts = packets(c);
    let (_, advert) = &pkts[0];
    let third: IpAddr = "192.0.2.3".parse().expect("literal");
    let cfg = RouterConfig {
        peers: vec![advert.dst, third],
        ..like_keepalived(c)
    };
    let mut n = node(t0, cfg, advert.src);
    let (deadline, _) = n.poll_timeout().expect("master-down timer");
    n.handle_timeout(deadline);
    let sent = sends(&mut n);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], (advert.payload.clone(), Some(advert.dst)));
    assert_eq!(sent[1].1, Some(third));
    assert!(vrrp::decode(&sent[1].0, advert.src, third).is_ok());
    assert!(vrrp::decode(&sent[1].0, advert.src, advert.dst).is_err());
    assert_eq!(n.status()[0].counters.adverts_sent, 2);
}

/// A backup with keepalived as its unicast peer accepts its adverts whatever their TTL / hop
/// limit (keepalived sends IPv6 unicast with 64), rejects the same advert from an address
/// not listed (`unknown_peer`), and still wants 255 on adverts sent to the group.
#[test]
fn unicast_adverts_from_listed_peers_only_and_ttl_only_checked_for_multicast() {
    let t0 = Instant::now();
    for c in CAPTURES.iter().filter(|c| c.unicast) {
        let pkts = packets(c);
        let (_, advert) = &pkts[0];
        let own = match advert.src {
            IpAddr::V4(_) => advert.dst,
            IpAddr::V6(_) => "fe80::ff:fe00:b01".parse().expect("literal"),
        };
        let stranger: IpAddr = match advert.src {
            IpAddr::V4(_) => "192.0.2.9".parse().expect("literal"),
            IpAddr::V6(_) => "fe80::9".parse().expect("literal"),
        };
        let cfg = RouterConfig {
            advskew: Skew(200),
            peers: vec![advert.src],
            ..like_keepalived(c)
        };
        let mut n = node(t0, cfg.clone(), own);
        let key = (T0_IF, Vhid::new(c.vrid).expect("nonzero"));
        let feed = |n: &mut Carp, src: IpAddr, dst: IpAddr, ttl: u8| {
            n.handle(
                t0 + Duration::from_millis(10),
                Input::Advert {
                    iface: T0_IF,
                    src,
                    dst,
                    ttl,
                    payload: advert.payload.clone(),
                },
            )
        };
        feed(&mut n, advert.src, advert.dst, advert.ttl);
        feed(&mut n, advert.src, advert.dst, 1);
        let s = &n.status()[0];
        assert_eq!(s.counters.adverts_received, 2, "{}", c.file);
        assert!(s.counters.rejected.is_empty(), "{}: {:?}", c.file, s);
        assert_eq!(n.state(key.0, key.1), Some(State::Backup));
        feed(&mut n, stranger, advert.dst, 255);
        let group = vrrp::group_for(advert.src);
        feed(&mut n, advert.src, group, 64);
        let s = &n.status()[0];
        assert_eq!(s.counters.adverts_received, 2, "{}", c.file);
        let rejected: Vec<(RejectReason, u64)> =
            s.counters.rejected.iter().map(|(r, n)| (*r, *n)).collect();
        assert_eq!(
            rejected,
            vec![(RejectReason::BadTtl, 1), (RejectReason::UnknownPeer, 1)],
            "{}",
            c.file
        );
        assert_eq!(RejectReason::UnknownPeer.as_str(), "unknown_peer");
        // Without peers, a unicast advert below 255 is dropped as before.
        let mut m = node(
            t0,
            RouterConfig {
                peers: Vec::new(),
                ..cfg
            },
            own,
        );
        feed(&mut m, advert.src, advert.dst, 64);
        assert_eq!(
            m.status()[0].counters.rejected.get(&RejectReason::BadTtl),
            Some(&1),
            "{}",
            c.file
        );
    }
}
