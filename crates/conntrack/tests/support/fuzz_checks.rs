//! Checks shared by tests/fuzz.rs (proptest, every `cargo test -p conntrack`) and the cargo-fuzz
//! target in fuzz/ (longer runs with libFuzzer).

#![allow(dead_code)]

use conntrack::model::{status, tcp_flags, Conn, PortProto, Tuple, L4};
use conntrack::msg::{self, BuildOpts, EncodeError, Message, MsgBuf};

/// Status bits a create never carries (the kernel refuses or ignores them, or they describe
/// the sending node): written out again here, independently of the encoder.
const STATUS_NOT_SENT: u32 = status::EXPECTED
    | status::CONFIRMED
    | status::DYING
    | status::NAT_MASK
    | status::SRC_NAT_DONE
    | status::DST_NAT_DONE
    | status::SEQ_ADJUST
    | status::TEMPLATE
    | status::NAT_CLASH
    | status::OFFLOAD
    | status::HW_OFFLOAD;

/// Arbitrary bytes as a datagram from the kernel, and as the body of one conntrack message
/// (after a 16-byte netlink header): no panic, and every entry that decodes goes through
/// [`check_round_trip`] (decode → encode → decode gives what a create carries).
pub fn check_decode(data: &[u8]) {
    let mut conns = Vec::new();
    let _ = msg::parse_datagram(data, |m| {
        if let Message::Conn { conn, .. } = m {
            conns.push(*conn);
        }
    });
    for body in [data, data.get(msg::NLMSG_HDRLEN..).unwrap_or_default()] {
        if let Ok(c) = msg::decode_conn(body) {
            conns.push(c);
        }
        let _ = msg::decode_key(body);
    }
    for mut c in conns {
        check_round_trip(&c);
        // Entries from the kernel always carry a timeout; events may not.
        c.timeout.get_or_insert(30);
        check_round_trip(&c);
    }
}

/// The entry the parser must give back for a create of `c`: the status without the bits a
/// create does not send (CONFIRMED added, and the whole attribute left out when nothing else
/// remains), the untranslated reply tuple under NAT (the kernel derives the translated one
/// from CTA_NAT_SRC/DST, which the parser does not read back), TCP info only for TCP (with
/// BE_LIBERAL when asked), empty labels left out, no kernel id.
pub fn after_create(c: &Conn, opts: BuildOpts) -> Conn {
    let mut w = c.clone();
    let st = (c.status & !STATUS_NOT_SENT) | status::CONFIRMED;
    w.status = if st == status::CONFIRMED { 0 } else { st };
    if !c.nat().is_none() {
        w.reply = c.orig.inverted();
    }
    let is_tcp = matches!(
        c.orig.l4,
        L4::Ports {
            proto: PortProto::Tcp,
            ..
        }
    );
    w.tcp = c.tcp.filter(|_| is_tcp).map(|mut t| {
        if opts.tcp_be_liberal {
            t.flags_orig |= tcp_flags::BE_LIBERAL;
            t.flags_reply |= tcp_flags::BE_LIBERAL;
        }
        t
    });
    w.labels = c.labels.clone().filter(|l| !l.is_empty());
    w.id = None;
    w
}

/// True if the parser can read the tuple back as it is: `L4::Other` is for protocols without
/// ports or ICMP fields (an `Other(6)` is encoded as protocol 6 without ports, which no TCP
/// tuple is).
pub fn canonical(t: &Tuple) -> bool {
    match t.l4 {
        L4::Other(n) => PortProto::from_number(n).is_none() && n != 1 && n != 58,
        _ => true,
    }
}

/// The encoder refused `c` for `e`: check that the reason holds.
fn check_refusal(c: &Conn, e: &EncodeError) {
    let families_differ = || {
        let v6 = c.orig.src.is_ipv6();
        let mut tuples = vec![&c.orig, &c.reply];
        tuples.extend(c.master.as_ref());
        tuples
            .iter()
            .any(|t| t.src.is_ipv6() != v6 || t.dst.is_ipv6() != v6)
    };
    let ok = match e {
        EncodeError::NoTimeout => c.timeout.is_none(),
        EncodeError::MixedFamilies => families_differ(),
        EncodeError::ProtocolMismatch { orig, reply } => {
            orig != reply
                && *orig == c.orig.l4.proto_number()
                && *reply == c.reply.l4.proto_number()
        }
        EncodeError::BadLabels(n) => {
            c.labels.as_ref().map(Vec::len) == Some(*n) && (n % 4 != 0 || *n > 16)
        }
        EncodeError::BadHelper(h) => {
            c.helper.as_ref() == Some(h) && (h.len() > 15 || h.as_bytes().contains(&0))
        }
    };
    assert!(ok, "{c:?} refused for a reason that does not hold: {e}");
}

/// One netlink message filling `bytes` exactly: (type, flags, seq, body).
fn one_message(bytes: &[u8]) -> (u16, u16, u32, &[u8]) {
    assert!(bytes.len() >= msg::NLMSG_HDRLEN, "no netlink header");
    let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert_eq!(len, bytes.len(), "nlmsg_len is not the message's length");
    assert_eq!(len % 4, 0, "message not padded to 4 bytes");
    let ty = u16::from_ne_bytes([bytes[4], bytes[5]]);
    let flags = u16::from_ne_bytes([bytes[6], bytes[7]]);
    let seq = u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    (ty, flags, seq, &bytes[msg::NLMSG_HDRLEN..])
}

const CT_NEW: u16 = (1 << 8) | msg::IPCTNL_MSG_CT_NEW as u16;
const CT_GET: u16 = (1 << 8) | msg::IPCTNL_MSG_CT_GET as u16;
const CT_DELETE: u16 = (1 << 8) | msg::IPCTNL_MSG_CT_DELETE as u16;

/// Encode → decode: a create parses back as [`after_create`] (alone and batched behind
/// another message); update, delete and get carry the entry's key; a refusal names a reason
/// that holds and leaves the buffer as it was.
pub fn check_round_trip(c: &Conn) {
    let mut b = MsgBuf::default();
    for (seq, be_liberal) in [(1u32, true), (0xffff_fffe, false)] {
        let opts = BuildOpts {
            tcp_be_liberal: be_liberal,
        };

        // Create.
        b.clear();
        match msg::build_create(&mut b, c, seq, 0, opts) {
            Err(e) => {
                assert!(b.is_empty(), "a refused create left bytes behind");
                check_refusal(c, &e);
            }
            Ok(()) => {
                let (ty, flags, s, _) = one_message(b.as_bytes());
                assert_eq!((ty, s), (CT_NEW, seq));
                assert_eq!(
                    flags,
                    msg::NLM_F_REQUEST | msg::NLM_F_CREATE | msg::NLM_F_EXCL
                );
                if canonical(&c.orig) && canonical(&c.reply) && c.master.iter().all(canonical) {
                    let want = after_create(c, opts);
                    // Twice in one buffer, as a batch goes out; flags set after the fact
                    // on the first, given on the second.
                    msg::build_create(&mut b, c, seq.wrapping_add(1), msg::NLM_F_ACK, opts)
                        .unwrap_or_else(|e| panic!("encoded once, then refused: {e}"));
                    b.or_flags(0, msg::NLM_F_ACK);
                    let mut got = Vec::new();
                    msg::parse_datagram(b.as_bytes(), |m| got.push(m))
                        .unwrap_or_else(|e| panic!("{c:?}: our own create does not parse: {e}"));
                    assert_eq!(got.len(), 2, "{c:?}: {got:?}");
                    for (k, m) in got.into_iter().enumerate() {
                        match m {
                            Message::Conn {
                                msg: msg::IPCTNL_MSG_CT_NEW,
                                flags,
                                seq: s,
                                portid: 0,
                                conn,
                            } => {
                                assert_eq!(s, seq.wrapping_add(k as u32));
                                assert_ne!(flags & msg::NLM_F_ACK, 0);
                                assert_eq!(*conn, want, "create of {c:?}");
                            }
                            other => panic!("{c:?}: create parsed as {other:?}"),
                        }
                    }
                }
            }
        }

        // Update, with and without CTA_STATUS.
        for with_status in [true, false] {
            b.clear();
            match msg::build_update(&mut b, c, seq, 0, with_status, opts) {
                Err(e) => {
                    assert!(b.is_empty(), "a refused update left bytes behind");
                    assert!(
                        !matches!(e, EncodeError::NoTimeout),
                        "an update needs no timeout"
                    );
                    check_refusal(c, &e);
                }
                Ok(()) => {
                    let (ty, flags, s, body) = one_message(b.as_bytes());
                    assert_eq!((ty, flags, s), (CT_NEW, msg::NLM_F_REQUEST, seq));
                    if canonical(&c.orig) {
                        assert_eq!(msg::decode_key(body), Ok(c.key()), "update of {c:?}");
                    }
                }
            }
        }
    }

    // Delete and get, by key.
    let key = c.key();
    for delete in [true, false] {
        b.clear();
        let built = if delete {
            msg::build_delete(&mut b, &key, 7, 0)
        } else {
            msg::build_get(&mut b, &key, 7)
        };
        match built {
            Err(e) => {
                assert!(b.is_empty(), "a refused request left bytes behind");
                assert_eq!(e, EncodeError::MixedFamilies);
                assert_ne!(key.orig.src.is_ipv6(), key.orig.dst.is_ipv6());
            }
            Ok(()) => {
                let (ty, flags, s, body) = one_message(b.as_bytes());
                let want = if delete {
                    (CT_DELETE, msg::NLM_F_REQUEST)
                } else {
                    (CT_GET, msg::NLM_F_REQUEST | msg::NLM_F_ACK)
                };
                assert_eq!((ty, flags, s), (want.0, want.1, 7));
                if canonical(&key.orig) {
                    assert_eq!(msg::decode_key(body), Ok(key), "key of {c:?}");
                }
            }
        }
    }
}
