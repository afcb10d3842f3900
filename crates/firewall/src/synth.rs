//! Synthetic configs of any size, for benchmarks and scale tests (bench/ uses these).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::{IpNet, NodeContext};

/// The node context the synthetic configs are written for: `lan` = eth0 (192.0.2.2/24, VIP
/// 192.0.2.1), `wan` = eth1 (198.51.100.2/24, VIP 198.51.100.1).
pub fn context() -> NodeContext {
    let net = |s: &str| s.parse::<IpNet>().ok();
    let mut ctx = NodeContext::default();
    ctx.interfaces.insert("lan".into(), "eth0".into());
    ctx.interfaces.insert("wan".into(), "eth1".into());
    ctx.interface_addrs
        .insert("lan".into(), net("192.0.2.2/24").into_iter().collect());
    ctx.interface_addrs
        .insert("wan".into(), net("198.51.100.2/24").into_iter().collect());
    ctx.vips
        .extend(net("192.0.2.1/24").map(|n| ("lan".to_owned(), n)));
    ctx.vips
        .extend(net("198.51.100.1/24").map(|n| ("wan".to_owned(), n)));
    ctx
}

/// A config with `rules` rules and a network alias `big` of `alias_entries` distinct,
/// non-adjacent hosts (so its set really holds that many elements), plus outbound NAT.
pub fn config(rules: usize, alias_entries: usize) -> String {
    let mut s = String::with_capacity(256 + 40 * alias_entries + 160 * rules);
    s.push_str("[interfaces]\nlan = \"eth0\"\nwan = \"eth1\"\n\n");
    s.push_str("[[aliases]]\nname = \"big\"\ntype = \"network\"\nentries = [\n");
    for i in 0..alias_entries {
        // Every other address from 10.0.0.0: never adjacent, so never merged.
        let a = Ipv4Addr::from(0x0A00_0000u32.wrapping_add((i as u32).wrapping_mul(2)));
        let _ = writeln!(s, "  \"{a}\",");
    }
    s.push_str("]\n\n");
    s.push_str(
        "[[aliases]]\nname = \"web\"\ntype = \"port\"\nentries = [80, 443, \"8000-8080\"]\n\n",
    );
    for i in 0..rules {
        let port = 1024 + (i % 60000);
        let _ = match i % 4 {
            0 => writeln!(
                s,
                "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"tcp\"\nsource = \"lan:network\"\ndestination_port = {port}\n"
            ),
            1 => writeln!(
                s,
                "[[rules]]\ninterface = \"wan\"\naction = \"block\"\nprotocol = \"udp\"\nsource = \"big\"\ndestination_port = {port}\nlog = true\n"
            ),
            2 => writeln!(
                s,
                "[[rules]]\ninterface = \"wan\"\naction = \"pass\"\nprotocol = \"tcp\"\ndestination = \"198.51.100.{}\"\ndestination_port = \"web\"\ndescription = \"synthetic {i}\"\n",
                1 + i % 250
            ),
            _ => writeln!(
                s,
                "[[rules]]\ninterface = \"lan\"\naction = \"reject\"\nsource = \"192.0.2.{}\"\n",
                1 + i % 250
            ),
        };
    }
    s.push_str("[[nat.outbound]]\ninterface = \"wan\"\nsource = \"lan:network\"\ntranslation = \"198.51.100.1\"\n");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn synthetic_config_renders() {
        let text = super::config(8, 10);
        let areas = crate::parse_areas(&text).expect("parses");
        let r = crate::render(&areas, &super::context()).expect("valid");
        assert!(r.nft.contains("10.0.0.18\n"));
    }
}
