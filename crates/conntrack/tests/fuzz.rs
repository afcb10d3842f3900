//! Fuzzing under proptest, in every `cargo test -p conntrack`: random bytes into the ctnetlink
//! parser (raw, and as random attribute trees behind a valid header so that they reach the
//! tuple, protoinfo and seq-adjust decoders), damaged messages of our own, and arbitrary conns
//! through the encoder and back. The checks live in tests/support/fuzz_checks.rs; fuzz/ runs
//! the same checks under libFuzzer.

#[path = "support/fuzz_checks.rs"]
mod fuzz_checks;

use conntrack::model::{Conn, PortProto, SeqAdj, TcpInfo, TcpState, Tuple, L4};
use conntrack::msg::{self, BuildOpts, MsgBuf};
use fuzz_checks::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn addr(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<u128>()
            .prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .boxed()
    } else {
        any::<u32>()
            .prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))
            .boxed()
    }
}

fn l4() -> impl Strategy<Value = L4> {
    let proto = prop_oneof![
        Just(PortProto::Tcp),
        Just(PortProto::Udp),
        Just(PortProto::UdpLite),
        Just(PortProto::Sctp),
        Just(PortProto::Dccp),
        Just(PortProto::Gre),
    ];
    prop_oneof![
        4 => (proto, any::<u16>(), any::<u16>()).prop_map(|(proto, src, dst)| L4::Ports {
            proto,
            src,
            dst
        }),
        1 => (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(icmp_type, code, id)| L4::Icmp {
            icmp_type,
            code,
            id
        }),
        1 => (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(icmp_type, code, id)| L4::Icmpv6 {
            icmp_type,
            code,
            id
        }),
        // Protocols without ports or ICMP fields, as the parser produces them.
        1 => any::<u8>()
            .prop_filter("a protocol with ports or ICMP fields", |&n| {
                canonical(&Tuple {
                    src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    l4: L4::Other(n),
                })
            })
            .prop_map(L4::Other),
    ]
}

fn tuple(v6: bool) -> impl Strategy<Value = Tuple> {
    (addr(v6), addr(v6), l4()).prop_map(|(src, dst, l4)| Tuple { src, dst, l4 })
}

/// A NAT'ed reply tuple for `orig`: other addresses, other ports or ICMP id, same protocol.
fn nat_reply(orig: Tuple, src: IpAddr, dst: IpAddr, a: u16, b: u16) -> Tuple {
    let l4 = match orig.inverted().l4 {
        L4::Ports { proto, .. } => L4::Ports {
            proto,
            src: a,
            dst: b,
        },
        L4::Icmp {
            icmp_type, code, ..
        } => L4::Icmp {
            icmp_type,
            code,
            id: a,
        },
        L4::Icmpv6 {
            icmp_type, code, ..
        } => L4::Icmpv6 {
            icmp_type,
            code,
            id: a,
        },
        other => other,
    };
    Tuple { src, dst, l4 }
}

fn seq_adj() -> impl Strategy<Value = SeqAdj> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c)| SeqAdj {
        correction_pos: a,
        offset_before: b,
        offset_after: c,
    })
}

fn labels() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (0usize..=4).prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n * 4)),
        1 => proptest::collection::vec(any::<u8>(), 0..=24),
    ]
}

fn helper() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9-]{0,15}",
        1 => "[a-z\\x00é]{0,20}",
    ]
}

/// Everything but the tuples.
#[derive(Clone, Debug)]
struct Fields {
    status: u32,
    timeout: Option<u32>,
    mark: u32,
    zone: u16,
    tcp: Option<TcpInfo>,
    seq_adj: (Option<SeqAdj>, Option<SeqAdj>),
    helper: Option<String>,
    labels: Option<Vec<u8>>,
    id: Option<u32>,
}

impl Fields {
    fn apply(self, c: &mut Conn) {
        c.status = self.status;
        c.timeout = self.timeout;
        c.mark = self.mark;
        c.zone = self.zone;
        c.tcp = self.tcp;
        (c.seq_adj_orig, c.seq_adj_reply) = self.seq_adj;
        c.helper = self.helper;
        c.labels = self.labels;
        c.id = self.id;
    }
}

prop_compose! {
    fn fields()(
        status in any::<u32>(),
        timeout in proptest::option::weighted(0.9, any::<u32>()),
        mark in prop_oneof![Just(0u32), any::<u32>()],
        zone in prop_oneof![Just(0u16), any::<u16>()],
        tcp in proptest::option::of((any::<u8>(), any::<[u8; 4]>())),
        seq_adj in (proptest::option::of(seq_adj()), proptest::option::of(seq_adj())),
        helper in proptest::option::of(helper()),
        labels in proptest::option::of(labels()),
        id in proptest::option::of(any::<u32>()),
    ) -> Fields {
        Fields {
            status,
            timeout,
            mark,
            zone,
            tcp: tcp.map(|(s, f)| TcpInfo {
                state: TcpState::from_number(s),
                wscale_orig: f[0],
                wscale_reply: f[1],
                flags_orig: f[2],
                flags_reply: f[3],
            }),
            seq_adj,
            helper,
            labels,
            id,
        }
    }
}

prop_compose! {
    /// A conn the kernel could hold: one family, one protocol, NAT or not, maybe a master.
    fn valid_conn()(v6 in any::<bool>())(
        orig in tuple(v6),
        nat in proptest::option::of((addr(v6), addr(v6), any::<u16>(), any::<u16>())),
        master in proptest::option::of(tuple(v6)),
        fields in fields(),
    ) -> Conn {
        let reply = match nat {
            Some((src, dst, a, b)) => nat_reply(orig, src, dst, a, b),
            None => orig.inverted(),
        };
        let mut c = Conn::new(orig, reply);
        c.master = master;
        fields.apply(&mut c);
        c
    }
}

prop_compose! {
    /// Anything the model can hold: mixed families, protocols that differ between the tuples.
    fn wild_conn()(
        families in any::<[bool; 6]>(),
    )(
        orig in (addr(families[0]), addr(families[1]), l4()),
        reply in (addr(families[2]), addr(families[3]), l4()),
        master in proptest::option::of((addr(families[4]), addr(families[5]), l4())),
        fields in fields(),
    ) -> Conn {
        let t = |(src, dst, l4)| Tuple { src, dst, l4 };
        let mut c = Conn::new(t(orig), t(reply));
        c.master = master.map(t);
        fields.apply(&mut c);
        c
    }
}

fn conn() -> impl Strategy<Value = Conn> {
    prop_oneof![4 => valid_conn(), 1 => wild_conn()]
}

/// A random attribute tree (types in the conntrack range, some nested) behind a netlink header
/// of a conntrack NEW or DELETE message and an nfgenmsg.
fn attr_tree(depth: u32) -> BoxedStrategy<Vec<u8>> {
    let leaf = (0u16..24, proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(ty, p)| {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + p.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(&p);
        a.resize((a.len() + 3) & !3, 0);
        a
    });
    if depth == 0 {
        return proptest::collection::vec(leaf, 0..6)
            .prop_map(|v| v.concat())
            .boxed();
    }
    let nested = (0u16..24, attr_tree(depth - 1)).prop_map(|(ty, inner)| {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + inner.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&(ty | 0x8000).to_ne_bytes());
        a.extend_from_slice(&inner);
        a
    });
    proptest::collection::vec(prop_oneof![leaf, nested], 0..6)
        .prop_map(|v| v.concat())
        .boxed()
}

fn with_header(delete: bool, family: u8, attrs: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + 4 + attrs.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&((1u16 << 8) | (u16::from(delete) * 2)).to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn decode_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
        check_decode(&data);
    }

    /// Random attribute trees behind a valid header, several messages per datagram.
    #[test]
    fn decode_attribute_trees(
        msgs in proptest::collection::vec(
            (any::<bool>(), prop_oneof![Just(2u8), Just(10)], attr_tree(3)), 1..4),
    ) {
        let mut data = Vec::new();
        for (delete, family, attrs) in &msgs {
            data.extend_from_slice(&with_header(*delete, *family, attrs));
        }
        check_decode(&data);
    }

    /// NLMSG_ERROR messages: extreme errnos, capped or not, with or without extended-ack
    /// attributes, random original header and trailing bytes.
    #[test]
    fn decode_errors(
        errno in prop_oneof![Just(i32::MIN), Just(0), Just(-17), any::<i32>()],
        flags in prop_oneof![Just(0u16), Just(msg::NLM_F_CAPPED), Just(msg::NLM_F_ACK_TLVS),
            Just(msg::NLM_F_CAPPED | msg::NLM_F_ACK_TLVS), any::<u16>()],
        orig in any::<[u8; 16]>(),
        rest in prop_oneof![attr_tree(1), proptest::collection::vec(any::<u8>(), 0..40)],
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut m = Vec::new();
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&msg::NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&errno.to_ne_bytes());
        m.extend_from_slice(&orig);
        m.extend_from_slice(&rest);
        if let Some(cut) = cut {
            m.truncate(16.max(cut % (m.len() + 1)));
        }
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        check_decode(&m);
    }

    /// Creates of valid conns with bytes flipped, and sometimes the end cut off.
    #[test]
    fn decode_damaged_messages(
        c in valid_conn(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..5),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut c = c;
        c.timeout.get_or_insert(1);
        let mut b = MsgBuf::default();
        if msg::build_create(&mut b, &c, 1, 0, BuildOpts { tcp_be_liberal: true }).is_ok() {
            let mut m = b.as_bytes().to_vec();
            for (at, v) in flips {
                let n = m.len();
                m[at % n] ^= v;
            }
            if let Some(cut) = cut {
                m.truncate(cut % (m.len() + 1));
            }
            check_decode(&m);
        }
    }

    /// Creates of valid conns with random attributes (unknown, duplicate, malformed) spliced
    /// in between theirs, as the kernel adds counters, timestamps and the like.
    #[test]
    fn decode_spliced_messages(
        c in valid_conn(),
        splices in proptest::collection::vec((any::<usize>(), attr_tree(2)), 1..4),
    ) {
        let mut c = c;
        c.timeout.get_or_insert(1);
        let mut b = MsgBuf::default();
        if msg::build_create(&mut b, &c, 1, 0, BuildOpts { tcp_be_liberal: true }).is_ok() {
            // Attribute boundaries of the top level, after the nlmsghdr and nfgenmsg.
            let m = b.as_bytes();
            let mut bounds = vec![20];
            while let Some(&at) = bounds.last() {
                let Some(len) = m.get(at..at + 2) else { break };
                let next = at + ((usize::from(u16::from_ne_bytes([len[0], len[1]])) + 3) & !3);
                if next >= m.len() {
                    break;
                }
                bounds.push(next);
            }
            bounds.push(m.len());
            let mut pieces: Vec<(usize, Vec<u8>)> = splices
                .into_iter()
                .map(|(at, attrs)| (bounds[at % bounds.len()], attrs))
                .collect();
            pieces.sort_by_key(|p| p.0);
            let mut out = Vec::new();
            let mut from = 0;
            for (at, attrs) in pieces {
                out.extend_from_slice(&m[from..at]);
                out.extend_from_slice(&attrs);
                from = at;
            }
            out.extend_from_slice(&m[from..]);
            let len = out.len() as u32;
            out[0..4].copy_from_slice(&len.to_ne_bytes());
            check_decode(&out);
        }
    }

    #[test]
    fn conns_round_trip(c in conn()) {
        check_round_trip(&c);
    }
}
