//! The resolved model → the objects of table `inet tandem` ([`Table`]), which write the
//! nftables scripts. Output is a pure function of the input (same input, same objects) and
//! linear in its size.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::compile::{
    AddrMatch, CForward, COneToOne, COutbound, CRule, Compiled, PortMatch, SetElems, Side,
};
use crate::model::{Action, Direction, Family, Protocol};
use crate::net::{write_port, write_v4, write_v6, Bound, Intervals, NatTarget};
use crate::table::{place, Set, Table};

/// The one table we own. Nothing else is ever named in the script.
pub const TABLE: &str = "inet tandem";

/// The ICMPv6 types that neighbour discovery and multicast listener reports (needed for the
/// CARP group ff02::12 behind snooping switches) use; always accepted.
const ND_TYPES: &str = "nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-query, mld-listener-report, mld2-listener-report";

/// nft keeps at most 128 bytes of comment (with the NUL).
const MAX_COMMENT: usize = 120;

/// The compiled ruleset as the objects of table `inet tandem` (see [`Table`]).
pub(crate) fn table(c: &Compiled) -> Table {
    let mut t = Table::default();
    for (name, elems) in &c.sets {
        t.sets.push(set(name, elems));
    }

    let has_out = c
        .rules
        .iter()
        .any(|r| r.enabled && r.direction == Direction::Out);
    if has_out {
        let mut o = String::new();
        o.push_str(
            "# rules with direction out, for forwarded packets: pass returns to chain forward\n",
        );
        for r in c
            .rules
            .iter()
            .filter(|r| r.enabled && r.direction == Direction::Out)
        {
            rule_lines(&mut o, r, Chain::ForwardOut);
        }
        place(&mut t, "forward_out", None, vec![], lines(&o), vec![]);
    }

    let mut head = String::new();
    head.push_str("iifname \"lo\" accept\n");
    cluster_accepts(&mut head, c, "iifname");
    peer_only_drops(&mut head, c);
    head.push_str("ct state established,related accept\n");
    head.push_str("ct state invalid drop\n");
    let mut o = String::new();
    for r in c
        .rules
        .iter()
        .filter(|r| r.enabled && r.direction == Direction::In)
    {
        rule_lines(&mut o, r, Chain::Input);
    }
    place(
        &mut t,
        "input",
        Some("type filter hook input priority filter; policy drop;"),
        lines(&head),
        lines(&o),
        vec![DEFAULT_BLOCK.to_string()],
    );

    let mut head = vec![
        "ct state established,related accept".to_string(),
        "ct state invalid drop".to_string(),
    ];
    if has_out {
        head.push("jump forward_out".to_string());
    }
    let mut o = String::new();
    for r in c
        .rules
        .iter()
        .filter(|r| r.enabled && r.direction == Direction::In)
    {
        rule_lines(&mut o, r, Chain::Forward);
    }
    for f in c.forwards.iter().filter(|f| f.pass_rule) {
        forward_pass_lines(&mut o, f);
    }
    place(
        &mut t,
        "forward",
        Some("type filter hook forward priority filter; policy drop;"),
        head,
        lines(&o),
        vec![DEFAULT_BLOCK.to_string()],
    );

    let mut head = String::new();
    head.push_str("oifname \"lo\" accept\n");
    cluster_accepts(&mut head, c, "oifname");
    head.push_str("ct state established,related accept\n");
    let mut o = String::new();
    for r in c
        .rules
        .iter()
        .filter(|r| r.enabled && r.direction == Direction::Out)
    {
        rule_lines(&mut o, r, Chain::Output);
    }
    place(
        &mut t,
        "output",
        Some("type filter hook output priority filter; policy accept;"),
        lines(&head),
        lines(&o),
        vec![],
    );

    if !c.forwards.is_empty() || !c.one_to_one.is_empty() {
        let mut o = String::new();
        for f in &c.forwards {
            dnat_lines(&mut o, f);
        }
        for m in &c.one_to_one {
            one_to_one_dnat(&mut o, m);
        }
        place(
            &mut t,
            "prerouting",
            Some("type nat hook prerouting priority dstnat; policy accept;"),
            vec![],
            lines(&o),
            vec![],
        );
    }
    if !c.outbound.is_empty() || !c.one_to_one.is_empty() {
        let mut o = String::new();
        for m in &c.one_to_one {
            one_to_one_snat(&mut o, m);
        }
        for n in &c.outbound {
            snat_lines(&mut o, n);
        }
        place(
            &mut t,
            "postrouting",
            Some("type nat hook postrouting priority srcnat; policy accept;"),
            vec![],
            lines(&o),
            vec![],
        );
    }
    t
}

/// Tunnel endpoints on VIPs (see `NodeContext::tunnel_endpoints`): their incoming packets skip
/// conntrack, so the reply's translation to the VIP never clashes with the incoming flow; what
/// the node itself sends from the port is translated to the VIP (priority 99: before any
/// outbound NAT). A userspace WireGuard (boringtun) answers from the node's own address, and
/// a remote peer would follow it there and lose the tunnel at a failover.
pub(crate) fn tunnel_endpoints(t: &mut Table, eps: &[(IpAddr, u16)]) {
    if eps.is_empty() {
        return;
    }
    let mut raw = Vec::new();
    let mut nat = Vec::new();
    for (vip, port) in eps {
        let fam = if vip.is_ipv4() { "ip" } else { "ip6" };
        raw.push(format!("{fam} daddr {vip} udp dport {port} notrack"));
        nat.push(format!(
            "fib saddr type local udp sport {port} snat {fam} to {vip}"
        ));
    }
    place(
        t,
        "tunnel_notrack",
        Some("type filter hook prerouting priority raw; policy accept;"),
        vec![],
        raw,
        vec![],
    );
    place(
        t,
        "tunnel_snat",
        Some("type nat hook postrouting priority 99; policy accept;"),
        vec![],
        nat,
        vec![],
    );
}

const DEFAULT_BLOCK: &str = "counter drop comment \"default block\"";

/// The lines the writers below produce (each `\t\t…\n`), without their indentation.
fn lines(o: &str) -> Vec<String> {
    o.lines()
        .map(|l| l.trim_start_matches('\t').to_string())
        .collect()
}

/// A named set: a hash set when it holds single addresses or ports only (see [`Set`]).
fn set(name: &str, elems: &SetElems) -> Set {
    fn items<T: Bound>(i: &Intervals<T>, w: fn(&mut String, (T, T))) -> (bool, Vec<String>) {
        let mut v = Vec::with_capacity(i.len());
        let mut interval = false;
        for iv in i.iter() {
            interval |= iv.0 != iv.1;
            let mut s = String::new();
            w(&mut s, *iv);
            v.push(s);
        }
        (interval, v)
    }
    let (ty, (interval, elements)) = match elems {
        SetElems::V4(i) => ("ipv4_addr", items(i, write_v4)),
        SetElems::V6(i) => ("ipv6_addr", items(i, write_v6)),
        SetElems::Port(i) => ("inet_service", items(i, write_port)),
    };
    Set {
        name: name.to_string(),
        ty,
        interval,
        elements,
    }
}

/// What keeps the cluster alive whatever the rules say: CARP/VRRP adverts on the interfaces
/// that carry VIPs (in the families of their VIPs; nowhere else, so nobody on a link without a
/// VIP can talk to the CARP engine), and IPv6 ND. `dir` is `iifname` or `oifname`.
fn cluster_accepts(o: &mut String, c: &Compiled, dir: &str) {
    for (devices, proto) in [
        (&c.carp_v4, "ip protocol 112"),
        (&c.carp_v6, "ip6 nexthdr 112"),
    ] {
        if devices.is_empty() {
            continue;
        }
        let quoted: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
        let devs = if quoted.len() == 1 {
            quoted.join("")
        } else {
            format!("{{ {} }}", quoted.join(", "))
        };
        let _ = writeln!(
            o,
            "\t\t{dir} {devs} {proto} accept comment \"CARP/VRRP on VIP interfaces\""
        );
    }
    let _ = writeln!(
        o,
        "\t\ticmpv6 type {{ {ND_TYPES} }} accept comment \"IPv6 neighbour discovery\""
    );
}

/// TCP to a peer-only listener from anyone but its peer: dropped before any rule can pass it
/// (and before `established`, so no connection of a stranger survives a change of peer).
/// A peer of the other family than the listener: nobody may reach it.
fn peer_only_drops(o: &mut String, c: &Compiled) {
    for p in &c.peer_only {
        let (daddr, saddr) = match (p.listen.ip(), p.peer) {
            (IpAddr::V4(l), IpAddr::V4(s)) => {
                (format!("ip daddr {l}"), format!(" ip saddr != {s}"))
            }
            (IpAddr::V6(l), IpAddr::V6(s)) => {
                (format!("ip6 daddr {l}"), format!(" ip6 saddr != {s}"))
            }
            (IpAddr::V4(l), IpAddr::V6(_)) => (format!("ip daddr {l}"), String::new()),
            (IpAddr::V6(l), IpAddr::V4(_)) => (format!("ip6 daddr {l}"), String::new()),
        };
        let what: String = p
            .what
            .chars()
            .filter(|ch| ch.is_ascii_alphanumeric() || *ch == ' ' || *ch == '-')
            .take(60)
            .collect();
        let _ = writeln!(
            o,
            "\t\t{daddr} tcp dport {}{saddr} counter drop comment \"{what}: its peer only\"",
            p.listen.port()
        );
    }
}

/// `x` alone, or an anonymous set `{ x, y }`.
fn inline<T: Bound>(o: &mut String, i: &Intervals<T>, w: fn(&mut String, (T, T))) {
    if i.len() == 1 {
        if let Some(iv) = i.iter().next() {
            w(o, *iv);
        }
        return;
    }
    o.push_str("{ ");
    for (k, iv) in i.iter().enumerate() {
        if k > 0 {
            o.push_str(", ");
        }
        w(o, *iv);
    }
    o.push_str(" }");
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Chain {
    Input,
    Forward,
    Output,
    ForwardOut,
}

/// One protocol variant of a rule (a rule may need several nft rules).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Any,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Everything but TCP (the second half of a stateful pass of protocol any).
    NotTcp,
}

/// Families a rule renders for: `[None]` when it needs no family match at all.
fn families(fam: Family, src: &AddrMatch, dst: &AddrMatch) -> Vec<Option<Fam>> {
    let v4 = fam != Family::Inet6 && !src.v4.is_nothing() && !dst.v4.is_nothing();
    let v6 = fam != Family::Inet && !src.v6.is_nothing() && !dst.v6.is_nothing();
    let all_any = src.v4.is_any() && src.v6.is_any() && dst.v4.is_any() && dst.v6.is_any();
    match (v4, v6) {
        (true, true) if all_any => vec![None],
        _ => {
            let mut f = Vec::with_capacity(2);
            if v4 {
                f.push(Some(Fam::V4));
            }
            if v6 {
                f.push(Some(Fam::V6));
            }
            f
        }
    }
}

fn write_addr(o: &mut String, fam: Fam, dir: &str, m: &AddrMatch) -> bool {
    match fam {
        Fam::V4 => write_side(o, "ip", dir, &m.v4, write_v4),
        Fam::V6 => write_side(o, "ip6", dir, &m.v6, write_v6),
    }
}

fn write_side<T: Bound>(
    o: &mut String,
    proto: &str,
    dir: &str,
    side: &Side<T>,
    w: fn(&mut String, (T, T)),
) -> bool {
    match side {
        Side::Any | Side::Nothing => false,
        Side::Set(name) => {
            let _ = write!(o, "{proto} {dir} @{name} ");
            true
        }
        Side::Lits(i) => {
            let _ = write!(o, "{proto} {dir} ");
            inline(o, i, w);
            o.push(' ');
            true
        }
    }
}

fn write_ports(o: &mut String, l4: &str, dir: &str, m: &PortMatch) -> bool {
    match m {
        PortMatch::Any | PortMatch::Nothing => false,
        PortMatch::Set(name) => {
            let _ = write!(o, "{l4} {dir} @{name} ");
            true
        }
        PortMatch::Lits(i) => {
            let _ = write!(o, "{l4} {dir} ");
            inline(o, i, write_port);
            o.push(' ');
            true
        }
    }
}

fn nfproto(o: &mut String, fam: Option<Fam>) {
    match fam {
        Some(Fam::V4) => o.push_str("meta nfproto ipv4 "),
        Some(Fam::V6) => o.push_str("meta nfproto ipv6 "),
        None => {}
    }
}

fn iface(o: &mut String, kw: &str, dev: Option<&str>) {
    if let Some(d) = dev {
        let _ = write!(o, "{kw} \"{d}\" ");
    }
}

const SYN: &str = "tcp flags & (syn|ack) == syn ";

fn rule_lines(o: &mut String, r: &CRule, chain: Chain) {
    let fams = families(r.family, &r.src, &r.dst);
    let ports_nothing =
        matches!(r.sport, PortMatch::Nothing) || matches!(r.dport, PortMatch::Nothing);
    if fams.is_empty() || ports_nothing {
        let _ = writeln!(
            o,
            "\t\t# rule {}: matches nothing on this node (an empty alias, or no address of the rule's family)",
            r.number
        );
        return;
    }
    let syn_pass = r.action == Action::Pass && r.stateful;
    let protos: &[Proto] = match r.protocol {
        Protocol::Tcp => &[Proto::Tcp],
        Protocol::Udp => &[Proto::Udp],
        Protocol::TcpUdp => &[Proto::Tcp, Proto::Udp],
        Protocol::Icmp => &[Proto::Icmp],
        Protocol::Icmpv6 => &[Proto::Icmpv6],
        Protocol::Any if syn_pass => &[Proto::Tcp, Proto::NotTcp],
        Protocol::Any if r.action == Action::Reject => &[Proto::Tcp, Proto::Any],
        Protocol::Any => &[Proto::Any],
    };
    let kw = match chain {
        Chain::Input | Chain::Forward => "iifname",
        Chain::Output | Chain::ForwardOut => "oifname",
    };
    let comment = comment_text(&format!("rule {}", r.number), r.description.as_deref());
    for &fam in &fams {
        for &p in protos {
            o.push_str("\t\t");
            iface(o, kw, r.device.as_deref());
            let mut has_addr = false;
            if let Some(f) = fam {
                has_addr |= write_addr(o, f, "saddr", &r.src);
                has_addr |= write_addr(o, f, "daddr", &r.dst);
            }
            if !has_addr && !matches!(p, Proto::Icmp | Proto::Icmpv6) {
                nfproto(o, fam);
            }
            let syn = syn_pass && p == Proto::Tcp;
            proto_match(o, p, &r.sport, &r.dport, syn);
            if syn {
                o.push_str(SYN);
            }
            if r.log {
                let _ = write!(o, "log prefix \"tandem rule {}: \" ", r.number);
            }
            o.push_str("counter ");
            o.push_str(match (r.action, p) {
                (Action::Pass, _) if chain == Chain::ForwardOut => "return",
                (Action::Pass, _) => "accept",
                (Action::Block, _) => "drop",
                (Action::Reject, Proto::Tcp) => "reject with tcp reset",
                (Action::Reject, _) => "reject",
            });
            let _ = writeln!(o, " comment \"{comment}\"");
        }
    }
}

/// The protocol part: `tcp dport 443 `, `meta l4proto udp `, ... (`syn` says a following
/// TCP flags match already implies TCP).
fn proto_match(o: &mut String, p: Proto, sport: &PortMatch, dport: &PortMatch, syn: bool) {
    let l4 = match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => {
            o.push_str("meta l4proto icmp ");
            return;
        }
        Proto::Icmpv6 => {
            o.push_str("meta l4proto ipv6-icmp ");
            return;
        }
        Proto::NotTcp => {
            o.push_str("meta l4proto != tcp ");
            return;
        }
        Proto::Any => return,
    };
    let mut any = write_ports(o, l4, "sport", sport);
    any |= write_ports(o, l4, "dport", dport);
    if !any && !syn {
        let _ = write!(o, "meta l4proto {l4} ");
    }
}

fn fam_of(a: IpAddr) -> Fam {
    if a.is_ipv4() {
        Fam::V4
    } else {
        Fam::V6
    }
}

fn ip_kw(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

fn side_nothing(m: &AddrMatch, fam: Fam) -> bool {
    match fam {
        Fam::V4 => m.v4.is_nothing(),
        Fam::V6 => m.v6.is_nothing(),
    }
}

fn forward_protos(p: Protocol) -> &'static [Proto] {
    match p {
        Protocol::Tcp => &[Proto::Tcp],
        Protocol::Udp => &[Proto::Udp],
        _ => &[Proto::Tcp, Proto::Udp],
    }
}

fn dnat_lines(o: &mut String, f: &CForward) {
    let fam = fam_of(f.destination);
    let comment = comment_text(
        &format!("port forward {}", f.number),
        f.description.as_deref(),
    );
    if side_nothing(&f.src, fam) || matches!(f.port, PortMatch::Nothing) {
        let _ = writeln!(
            o,
            "\t\t# port forward {}: matches nothing on this node",
            f.number
        );
        return;
    }
    let kw = ip_kw(f.destination);
    for &p in forward_protos(f.protocol) {
        o.push_str("\t\t");
        iface(o, "iifname", Some(&f.device));
        write_addr(o, fam, "saddr", &f.src);
        let _ = write!(o, "{kw} daddr {} ", f.destination);
        proto_match(o, p, &PortMatch::Any, &f.port, false);
        if f.log {
            let _ = write!(o, "log prefix \"tandem port forward {}: \" ", f.number);
        }
        let _ = writeln!(
            o,
            "counter dnat {kw} to {} comment \"{comment}\"",
            NatTarget(f.target, f.target_port)
        );
    }
}

fn forward_pass_lines(o: &mut String, f: &CForward) {
    let fam = fam_of(f.destination);
    if side_nothing(&f.src, fam) || matches!(f.port, PortMatch::Nothing) {
        return;
    }
    let comment = comment_text(
        &format!("port forward {}", f.number),
        f.description.as_deref(),
    );
    let kw = ip_kw(f.target);
    let port = match f.target_port {
        Some(p) => PortMatch::Lits(Intervals::from_unsorted(vec![(p, p)])),
        None => f.port.clone(),
    };
    for &p in forward_protos(f.protocol) {
        o.push_str("\t\t");
        iface(o, "iifname", Some(&f.device));
        write_addr(o, fam, "saddr", &f.src);
        let _ = write!(o, "{kw} daddr {} ", f.target);
        proto_match(o, p, &PortMatch::Any, &port, false);
        o.push_str("ct status dnat ");
        if p == Proto::Tcp {
            o.push_str(SYN);
        }
        if f.log {
            let _ = write!(o, "log prefix \"tandem port forward {}: \" ", f.number);
        }
        let _ = writeln!(o, "counter accept comment \"{comment}\"");
    }
}

fn one_to_one_dnat(o: &mut String, m: &COneToOne) {
    let comment = comment_text(&format!("1:1 NAT {}", m.number), m.description.as_deref());
    let kw = ip_kw(m.external);
    let _ = writeln!(
        o,
        "\t\tiifname \"{}\" {kw} daddr {} counter dnat {kw} to {} comment \"{comment}\"",
        m.device, m.external, m.internal
    );
}

fn one_to_one_snat(o: &mut String, m: &COneToOne) {
    let comment = comment_text(&format!("1:1 NAT {}", m.number), m.description.as_deref());
    let kw = ip_kw(m.external);
    let _ = writeln!(
        o,
        "\t\toifname \"{}\" {kw} saddr {} counter snat {kw} to {} comment \"{comment}\"",
        m.device, m.internal, m.external
    );
}

fn snat_lines(o: &mut String, n: &COutbound) {
    let fam = fam_of(n.to);
    if side_nothing(&n.src, fam) || side_nothing(&n.dst, fam) {
        let _ = writeln!(
            o,
            "\t\t# outbound NAT {}: matches nothing on this node",
            n.number
        );
        return;
    }
    let comment = comment_text(
        &format!("outbound NAT {}", n.number),
        n.description.as_deref(),
    );
    o.push_str("\t\t");
    iface(o, "oifname", Some(&n.device));
    let mut has = write_addr(o, fam, "saddr", &n.src);
    has |= write_addr(o, fam, "daddr", &n.dst);
    if !has {
        nfproto(o, Some(fam));
    }
    let _ = writeln!(
        o,
        "counter snat {} to {} comment \"{comment}\"",
        ip_kw(n.to),
        n.to
    );
}

/// A comment nft accepts: no double quotes or control characters, at most MAX_COMMENT bytes.
fn comment_text(head: &str, description: Option<&str>) -> String {
    let mut s = String::with_capacity(MAX_COMMENT);
    s.push_str(head);
    if let Some(d) = description.map(str::trim).filter(|d| !d.is_empty()) {
        s.push_str(": ");
        for ch in d.chars() {
            let ch = match ch {
                '"' => '\'',
                c if c.is_control() => ' ',
                c => c,
            };
            if s.len() + ch.len_utf8() > MAX_COMMENT {
                break;
            }
            s.push(ch);
        }
    }
    s
}
