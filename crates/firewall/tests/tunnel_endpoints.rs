//! Tunnel endpoints on VIPs (WireGuard): packets to VIP:PORT skip conntrack, and what the node
//! sends from PORT leaves from the VIP (so a remote peer keeps talking to the VIP, whichever
//! node holds it and whatever address the tunnel's implementation answers from).

use firewall::{Areas, NodeContext};

fn chain<'a>(nft: &'a str, name: &str) -> Vec<&'a str> {
    let start = format!("\tchain {name} {{");
    nft.lines()
        .skip_while(|l| *l != start)
        .skip(1)
        .take_while(|l| *l != "\t}")
        .map(str::trim)
        .collect()
}

#[test]
fn endpoints_are_untracked_in_and_translated_out() {
    let mut ctx = NodeContext::default();
    ctx.interfaces.insert("wan".into(), "eth1".into());
    let none = firewall::render(&Areas::default(), &ctx).expect("render");
    assert!(!none.nft.contains("tunnel_"), "{}", none.nft);
    ctx.tunnel_endpoints = vec![
        ("198.51.100.1".parse().expect("ip"), 51820),
        ("2001:db8::1".parse().expect("ip"), 51821),
    ];
    let r = firewall::render(&Areas::default(), &ctx).expect("render");
    assert_eq!(
        chain(&r.nft, "tunnel_notrack"),
        vec![
            "type filter hook prerouting priority raw; policy accept;",
            "ip daddr 198.51.100.1 udp dport 51820 notrack",
            "ip6 daddr 2001:db8::1 udp dport 51821 notrack",
        ],
        "{}",
        r.nft
    );
    assert_eq!(
        chain(&r.nft, "tunnel_snat"),
        vec![
            "type nat hook postrouting priority 99; policy accept;",
            "fib saddr type local udp sport 51820 snat ip to 198.51.100.1",
            "fib saddr type local udp sport 51821 snat ip6 to 2001:db8::1",
        ],
        "{}",
        r.nft
    );
}
