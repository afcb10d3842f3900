//! Byte-exact vectors: adverts captured from ucarp 1.5.2 (Debian), see tests/vectors/ucarp.md.
//!
//! Captured with (namespaces a, b, c on one bridge, multicast snooping off):
//! ```sh
//! ip netns exec c tcpdump -i eth0 -U -w s1.pcap 'ip proto 112 or arp'
//! U="ucarp -i eth0 -v 7 -p s3cret -a 192.0.2.100 -b 1 --upscript=/bin/true --downscript=/bin/true"
//! ip netns exec a $U -s 192.0.2.2 -k 0 -P -z
//! ip netns exec b $U -s 192.0.2.3 -k 50 -P -z
//! ```
//! Our decoder must read them, our HMAC must reproduce their digests, our encoder must
//! reproduce their bytes, and our engine must accept them.

use carp::wire::{self, internet_checksum, Advert};
use carp::*;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

const PASS: &[u8] = b"s3cret";
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

struct Vector {
    name: &'static str,
    /// The whole Ethernet frame as tcpdump saw it.
    frame: &'static str,
    src: Ipv4Addr,
    advskew: u8,
    counter: u64,
}

const VECTORS: &[Vector] = &[
    // A: node a (192.0.2.2, -k 0) alone, two consecutive adverts, random counters.
    Vector {
        name: "A1",
        frame: "01005e00001200005e000007080045100038e1794000ff70f7b6c0000202e00000122107000700\
                01b76692de0eb5bbae88e8e9514b6e6709cdf80d5bc62af71c6a45e3c2bef1",
        src: Ipv4Addr::new(192, 0, 2, 2),
        advskew: 0,
        counter: 0x92de_0eb5_bbae_88e8,
    },
    Vector {
        name: "A2",
        frame: "01005e00001200005e00000708004510003802b34000ff70d67dc0000202e00000122107000700\
                0114159a931f437b7dbec7884cf4913f437a3870cdb042696c71fcab3af8b1",
        src: Ipv4Addr::new(192, 0, 2, 2),
        advskew: 0,
        counter: 0x9a93_1f43_7b7d_bec7,
    },
    // B: node b (192.0.2.3, -k 50) after taking over: the old master's counter + 1, + 2, + 3.
    Vector {
        name: "B1",
        frame: "01005e00001200005e000007080045100038e58b4000ff70f3a3c0000203e00000122107320700\
                017ad192fdd9b7091e0fc34d544a3ba39ff1cedee1c0d7065f19d325f999a5",
        src: Ipv4Addr::new(192, 0, 2, 3),
        advskew: 50,
        counter: 0x92fd_d9b7_091e_0fc3,
    },
    Vector {
        name: "B2",
        frame: "01005e00001200005e00000708004510003869e04000ff706f4fc0000203e00000122107320700\
                016ef592fdd9b7091e0fc4a9993d4e5de2bb88f4299235fbb5bb51670213a7",
        src: Ipv4Addr::new(192, 0, 2, 3),
        advskew: 50,
        counter: 0x92fd_d9b7_091e_0fc4,
    },
    Vector {
        name: "B3",
        frame: "01005e00001200005e0000070800451000382b654000ff70adcac0000203e00000122107320700\
                019faf92fdd9b7091e0fc5bee35b5be1bc9ba4be94790899274b9bde99f50d",
        src: Ipv4Addr::new(192, 0, 2, 3),
        advskew: 50,
        counter: 0x92fd_d9b7_091e_0fc5,
    },
];

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn vhid7() -> Vhid {
    Vhid::new(7).expect("nonzero")
}

/// Splits a captured frame into its IPv4 header facts and the CARP payload, checking the
/// framing on the way.
fn carp_payload(v: &Vector) -> Vec<u8> {
    let frame = hex(v.frame);
    assert_eq!(frame.len(), 14 + 20 + 36, "{}: frame length", v.name);
    assert_eq!(
        &frame[0..6],
        &[0x01, 0x00, 0x5e, 0x00, 0x00, 0x12],
        "{}",
        v.name
    );
    // ucarp's advert source MAC is 00:00:5e:00:00:VHID.
    assert_eq!(
        &frame[6..12],
        &[0x00, 0x00, 0x5e, 0x00, 0x00, 0x07],
        "{}",
        v.name
    );
    assert_eq!(&frame[12..14], &[0x08, 0x00], "{}: ethertype", v.name);
    let ip = &frame[14..34];
    assert_eq!(ip[0], 0x45, "{}: IPv4, no options", v.name);
    assert_eq!(ip[8], 255, "{}: TTL", v.name);
    assert_eq!(ip[9], 112, "{}: protocol", v.name);
    assert_eq!(internet_checksum(ip), 0, "{}: IP header checksum", v.name);
    assert_eq!(&ip[12..16], &v.src.octets(), "{}: source", v.name);
    assert_eq!(&ip[16..20], &[224, 0, 0, 18], "{}: destination", v.name);
    frame[34..].to_vec()
}

#[test]
fn ucarp_adverts_decode_to_the_expected_fields() {
    for v in VECTORS {
        let bytes = carp_payload(v);
        let a = wire::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(a.vhid, vhid7(), "{}", v.name);
        assert_eq!(a.advbase, Advbase(1), "{}", v.name);
        assert_eq!(a.advskew, Skew(v.advskew), "{}", v.name);
        assert_eq!(a.demote, 0, "{}", v.name);
        assert_eq!(a.counter, v.counter, "{}", v.name);
        assert_eq!(&a.hmac[..], &bytes[16..36], "{}", v.name);
    }
}

#[test]
fn our_hmac_equals_ucarps_digest() {
    let auth = Authenticator::new(Key::from_passphrase(PASS), vhid7(), &[IpAddr::V4(VIP)]);
    for v in VECTORS {
        let bytes = carp_payload(v);
        assert_eq!(
            &auth.sign(v.counter)[..],
            &bytes[16..36],
            "{}: HMAC-SHA1(s3cret, 02 01 07 c0000264 counter) differs from ucarp's",
            v.name
        );
        let mut digest = [0u8; 20];
        digest.copy_from_slice(&bytes[16..36]);
        assert!(auth.verify(v.counter, &digest), "{}", v.name);
        let wrong =
            Authenticator::new(Key::from_passphrase(b"s3creT"), vhid7(), &[IpAddr::V4(VIP)]);
        assert!(!wrong.verify(v.counter, &digest), "{}", v.name);
    }
}

#[test]
fn encode_reproduces_ucarps_bytes_exactly() {
    let auth = Authenticator::new(Key::from_passphrase(PASS), vhid7(), &[IpAddr::V4(VIP)]);
    for v in VECTORS {
        let bytes = carp_payload(v);
        let decoded = wire::decode(&bytes).expect("valid");
        assert_eq!(
            &wire::encode(&decoded)[..],
            &bytes[..],
            "{}: round trip",
            v.name
        );
        // And from the fields alone, with our own HMAC: the advert we would send.
        let ours = wire::encode(&Advert {
            vhid: vhid7(),
            advbase: Advbase(1),
            advskew: Skew(v.advskew),
            demote: 0,
            counter: v.counter,
            hmac: auth.sign(v.counter),
        });
        assert_eq!(&ours[..], &bytes[..], "{}: built from fields", v.name);
    }
}

fn backup(t0: Instant, skew: u8, pass: &[u8]) -> Carp {
    let mut n = Carp::new(3);
    n.set_local_address(1, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 4)));
    n.add_router(
        t0,
        RouterConfig {
            iface: 1,
            vhid: vhid7(),
            advbase: Advbase(1),
            advskew: Skew(skew),
            preempt: true,
            addresses: vec![IpAddr::V4(VIP)],
            key: Key::from_passphrase(pass),
            protocol: carp::Protocol::Carp,
            peers: Vec::new(),
        },
    );
    n
}

fn feed(n: &mut Carp, t: Instant, v: &Vector) {
    n.handle(
        t,
        Input::Advert {
            iface: 1,
            src: IpAddr::V4(v.src),
            dst: "224.0.0.18".parse().expect("group"),
            ttl: 255,
            payload: carp_payload(v),
        },
    );
}

#[test]
fn engine_accepts_ucarp_adverts_and_orders_by_their_timing() {
    let t0 = Instant::now();
    // A backup with skew 100 hears ucarp masters with skew 0 and 50: both better, stays.
    let mut n = backup(t0, 100, PASS);
    for v in VECTORS {
        feed(&mut n, t0, v);
    }
    assert_eq!(n.state(1, vhid7()), Some(State::Backup));
    let s = &n.status()[0];
    assert_eq!(s.counters.adverts_received, VECTORS.len() as u64);
    assert!(s.counters.rejected.is_empty(), "{:?}", s.counters.rejected);
    assert_eq!(s.last_master, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3))));
    // A preempting backup with skew 10 takes over from ucarp's skew-50 master at once.
    let mut n = backup(t0, 10, PASS);
    feed(&mut n, t0, &VECTORS[2]);
    assert_eq!(n.state(1, vhid7()), Some(State::Master));
    // Another passphrase: rejected as bad_hmac.
    let mut n = backup(t0, 100, b"other");
    feed(&mut n, t0, &VECTORS[0]);
    assert_eq!(
        n.status()[0].counters.rejected.get(&RejectReason::BadHmac),
        Some(&1)
    );
}
