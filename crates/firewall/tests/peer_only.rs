//! A listener only one peer may reach (Kea's HA listener, which takes commands without
//! credentials): TCP to it from any other source is dropped at the top of the input chain,
//! before any rule of the config could pass it.

use firewall::{Areas, NodeContext, PeerOnly};

fn input(nft: &str) -> Vec<&str> {
    nft.lines()
        .skip_while(|l| *l != "\tchain input {")
        .skip(1)
        .take_while(|l| *l != "\t}")
        .map(str::trim)
        .collect()
}

#[test]
fn a_peer_only_listener_is_dropped_for_everyone_else_before_the_rules() {
    let mut ctx = NodeContext::default();
    ctx.interfaces.insert("lan".into(), "eth0".into());
    ctx.peer_only.push(PeerOnly {
        listen: "203.0.113.1:8001".parse().expect("addr"),
        peer: "203.0.113.2".parse().expect("ip"),
        what: "Kea HA listener",
    });
    ctx.peer_only.push(PeerOnly {
        listen: "[2001:db8::1]:8001".parse().expect("addr"),
        peer: "2001:db8::2".parse().expect("ip"),
        what: "Kea \"HA\"; listener",
    });
    let nft = firewall::render(&Areas::default(), &ctx)
        .expect("valid")
        .nft;
    let lines = input(&nft);
    let drop4 = "ip daddr 203.0.113.1 tcp dport 8001 ip saddr != 203.0.113.2 counter drop comment \"Kea HA listener: its peer only\"";
    let drop6 = "ip6 daddr 2001:db8::1 tcp dport 8001 ip6 saddr != 2001:db8::2 counter drop comment \"Kea HA listener: its peer only\"";
    let at = |l: &str| lines.iter().position(|x| *x == l);
    let (Some(d4), Some(d6)) = (at(drop4), at(drop6)) else {
        panic!("no peer-only drops in\n{nft}");
    };
    let established = at("ct state established,related accept").expect("established");
    assert!(d4 < established && d6 < established, "{nft}");
}

#[test]
fn a_peer_of_the_other_family_leaves_the_listener_to_nobody() {
    let mut ctx = NodeContext::default();
    ctx.peer_only.push(PeerOnly {
        listen: "203.0.113.1:8001".parse().expect("addr"),
        peer: "2001:db8::2".parse().expect("ip"),
        what: "Kea HA listener",
    });
    let nft = firewall::render(&Areas::default(), &ctx)
        .expect("valid")
        .nft;
    assert!(
        input(&nft).contains(
            &"ip daddr 203.0.113.1 tcp dport 8001 counter drop comment \"Kea HA listener: its peer only\""
        ),
        "{nft}"
    );
}

#[test]
fn without_peer_only_listeners_nothing_is_dropped_early() {
    let nft = firewall::render(&Areas::default(), &NodeContext::default())
        .expect("valid")
        .nft;
    assert!(!nft.contains("peer only"), "{nft}");
}
