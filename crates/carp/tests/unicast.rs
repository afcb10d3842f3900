//! CARP with unicast peers (FreeBSD 14's `peer` / `peer6`): the same advert bytes go to every
//! peer instead of the group, only listed peers are heard, and the TTL check is skipped for
//! unicast adverts only. Multicast output stays as it was, `dst` left out of its JSON.

use carp::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const IF: IfaceId = 1;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal")
}

fn cfg(skew: u8, peers: &[&str]) -> RouterConfig {
    RouterConfig {
        iface: IF,
        vhid: Vhid::new(7).expect("nonzero"),
        advbase: Advbase(1),
        advskew: Skew(skew),
        preempt: true,
        addresses: vec![ip("192.0.2.100"), ip("2001:db8::100")],
        key: Key::from_passphrase(b"s3cret"),
        protocol: Protocol::Carp,
        peers: peers.iter().map(|p| ip(p)).collect(),
    }
}

fn node(t0: Instant, c: RouterConfig, v4: &str, v6: &str) -> Carp {
    let mut n = Carp::new(9);
    n.set_local_address(IF, ip(v4));
    n.set_local_address(IF, ip(v6));
    n.add_router(t0, c);
    n
}

fn master_sends(n: &mut Carp) -> Vec<Action> {
    let (deadline, _) = n.poll_timeout().expect("master-down timer");
    n.handle_timeout(deadline);
    std::iter::from_fn(|| n.poll_action())
        .filter(|a| matches!(a, Action::Send { .. }))
        .collect()
}

#[test]
fn carp_unicast_sends_the_multicast_bytes_to_each_peer() {
    let t0 = Instant::now();
    let peers = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "fe80::2"];
    let mut uni = node(t0, cfg(0, &peers), "192.0.2.1", "fe80::1");
    let mut multi = node(t0, cfg(0, &[]), "192.0.2.1", "fe80::1");
    let u = master_sends(&mut uni);
    let m = master_sends(&mut multi);
    let payload = |a: &Action| match a {
        Action::Send { payload, dst, .. } => (payload.clone(), *dst),
        _ => unreachable!("only sends"),
    };
    let m: Vec<_> = m.iter().map(payload).collect();
    let u: Vec<_> = u.iter().map(payload).collect();
    assert_eq!(m.len(), 2, "one per family");
    assert!(m.iter().all(|(_, d)| d.is_none()));
    // Our own address (192.0.2.1) is skipped: two IPv4 peers, one IPv6 peer.
    assert_eq!(
        u.iter().map(|(_, d)| *d).collect::<Vec<_>>(),
        vec![
            Some(ip("192.0.2.2")),
            Some(ip("192.0.2.3")),
            Some(ip("fe80::2"))
        ]
    );
    assert_eq!(
        u[0].0, m[0].0,
        "CARP's bytes do not depend on the destination"
    );
    assert_eq!(u[1].0, m[0].0);
    assert_eq!(u[2].0, m[1].0);
    // A multicast send serializes as before (no `dst`); a unicast one names its peer.
    let json = serde_json::to_string(&multi_send(&m[0].0)).expect("serializes");
    assert!(!json.contains("dst"), "{json}");
    let back: Action = serde_json::from_str(&json).expect("parses");
    assert_eq!(back, multi_send(&m[0].0));
}

fn multi_send(payload: &[u8]) -> Action {
    Action::Send {
        iface: IF,
        vhid: Vhid::new(7).expect("nonzero"),
        family: Family::V4,
        payload: payload.to_vec(),
        dst: None,
    }
}

#[test]
fn carp_unicast_hears_listed_peers_at_any_ttl_and_nobody_else() {
    let t0 = Instant::now();
    // The master (skew 0) unicasts to 192.0.2.2; the backup (skew 100) lists 192.0.2.1.
    let mut a = node(t0, cfg(0, &["192.0.2.2"]), "192.0.2.1", "fe80::1");
    let mut b = node(t0, cfg(100, &["192.0.2.1"]), "192.0.2.2", "fe80::2");
    let sent = master_sends(&mut a);
    let Some(Action::Send { payload, dst, .. }) = sent.first().cloned() else {
        panic!("no advert");
    };
    assert_eq!(dst, Some(ip("192.0.2.2")));
    let t = t0 + Duration::from_millis(100);
    let advert = |src: &str, dst: &str, ttl: u8| Input::Advert {
        iface: IF,
        src: ip(src),
        dst: ip(dst),
        ttl,
        payload: payload.clone(),
    };
    b.handle(t, advert("192.0.2.1", "192.0.2.2", 64));
    b.handle(t, advert("192.0.2.9", "192.0.2.2", 255));
    b.handle(t, advert("192.0.2.1", "224.0.0.18", 64));
    let s = &b.status()[0];
    assert_eq!(s.counters.adverts_received, 1);
    assert_eq!(s.last_master, Some(ip("192.0.2.1")));
    assert_eq!(
        s.counters.rejected.get(&RejectReason::UnknownPeer),
        Some(&1)
    );
    assert_eq!(s.counters.rejected.get(&RejectReason::BadTtl), Some(&1));
    let rejected: Vec<_> = std::iter::from_fn(|| b.poll_action())
        .filter_map(|x| match x {
            Action::Rejected { src, reason, .. } => Some((src, reason)),
            _ => None,
        })
        .collect();
    assert!(rejected.contains(&(ip("192.0.2.9"), RejectReason::UnknownPeer)));
    // The stranger did not stop our takeover: the backup's timer still runs from the peer.
    assert_eq!(
        b.state(IF, Vhid::new(7).expect("nonzero")),
        Some(State::Backup)
    );
}

#[test]
fn old_router_configs_without_peers_still_parse() {
    let json = serde_json::to_string(&cfg(0, &[])).expect("serializes");
    assert!(!json.contains("peers"), "{json}");
    let back: RouterConfig = serde_json::from_str(&json).expect("parses");
    assert!(back.peers.is_empty());
}
