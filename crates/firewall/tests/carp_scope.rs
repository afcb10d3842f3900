//! CARP/VRRP (IP protocol 112) is passed only where it belongs: on the interfaces that carry a
//! VIP, and only for the address families of their VIPs. An attacker on an interface without a
//! VIP (the WAN of a cluster whose VIPs are all inside) cannot reach the CARP engine at all.

use firewall::{Areas, IpNet, NodeContext};

fn ctx(vips: &[(&str, &str)]) -> NodeContext {
    let mut ctx = NodeContext::default();
    for (l, d) in [("lan", "eth0"), ("wan", "eth1"), ("sync", "eth2")] {
        ctx.interfaces.insert(l.into(), d.into());
    }
    for (iface, net) in vips {
        let net: IpNet = net.parse().expect("cidr");
        ctx.vips.push(((*iface).to_owned(), net));
    }
    ctx
}

/// The lines of one chain of a rendered script.
fn chain<'a>(nft: &'a str, name: &str) -> Vec<&'a str> {
    let start = format!("\tchain {name} {{");
    nft.lines()
        .skip_while(|l| *l != start)
        .skip(1)
        .take_while(|l| *l != "\t}")
        .map(str::trim)
        .collect()
}

fn carp_lines<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines
        .iter()
        .copied()
        .filter(|l| l.contains(" 112 "))
        .collect()
}

#[test]
fn carp_is_accepted_only_on_vip_interfaces_and_families() {
    let c = ctx(&[
        ("lan", "192.0.2.1/24"),
        ("lan", "2001:db8:1::1/64"),
        ("wan", "198.51.100.1/24"),
    ]);
    let nft = firewall::render(&Areas::default(), &c).expect("valid").nft;
    assert_eq!(
        carp_lines(&chain(&nft, "input")),
        vec![
            "iifname { \"eth0\", \"eth1\" } ip protocol 112 accept comment \"CARP/VRRP on VIP interfaces\"",
            "iifname \"eth0\" ip6 nexthdr 112 accept comment \"CARP/VRRP on VIP interfaces\"",
        ],
        "{nft}"
    );
    assert_eq!(
        carp_lines(&chain(&nft, "output")),
        vec![
            "oifname { \"eth0\", \"eth1\" } ip protocol 112 accept comment \"CARP/VRRP on VIP interfaces\"",
            "oifname \"eth0\" ip6 nexthdr 112 accept comment \"CARP/VRRP on VIP interfaces\"",
        ],
        "{nft}"
    );
    assert!(!nft.contains("eth2\" ip"), "{nft}");
}

#[test]
fn without_vips_no_carp_is_accepted_anywhere() {
    let nft = firewall::render(&Areas::default(), &ctx(&[]))
        .expect("valid")
        .nft;
    assert!(!nft.contains("112"), "{nft}");
}

#[test]
fn a_vip_on_an_interface_this_node_does_not_map_opens_nothing() {
    // The daemon refuses such a config; the renderer must not fall back to "everywhere".
    let nft = firewall::render(&Areas::default(), &ctx(&[("dmz", "203.0.113.1/24")]))
        .expect("valid")
        .nft;
    assert!(!nft.contains("112"), "{nft}");
}
