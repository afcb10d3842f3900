//! The fuzz targets' checks (tests/support/fuzz_checks.rs, also run by cargo-fuzz from
//! crates/carp/fuzz) on random bytes under proptest, so they run in every `cargo test`.

#[path = "support/fuzz_checks.rs"]
mod fuzz_checks;

use carp::vrrp::{self, VrrpAdvert};
use carp::wire::{self, Advert};
use carp::Centisecs;
use carp::{Advbase, Skew, Vhid};
use fuzz_checks::{check_decode, check_engine, check_vrrp_decode};
use proptest::prelude::*;
use std::net::IpAddr;

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

/// Valid adverts with some bytes flipped and some appended: random bytes alone almost never
/// get past the version and checksum checks.
fn near_adverts() -> impl Strategy<Value = Vec<u8>> {
    (
        1u8..=255,
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u64>(),
        any::<[u8; 20]>(),
        proptest::collection::vec((0usize..36, any::<u8>()), 0..3),
        proptest::collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(|(v, base, skew, demote, counter, hmac, flips, tail)| {
            let a = Advert {
                vhid: Vhid::new(v).unwrap_or_else(|| unreachable!("1..=255")),
                advbase: Advbase(base),
                advskew: Skew(skew),
                demote,
                counter,
                hmac,
            };
            let mut b = wire::encode(&a).to_vec();
            for (i, x) in flips {
                b[i] ^= x;
            }
            b.extend(tail);
            b
        })
}

/// Valid VRRP adverts (for the source and destination `check_vrrp_decode` picks from the
/// first byte), with some bytes flipped and some appended.
fn near_vrrp_adverts() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..5,
        1u8..=255,
        any::<u8>(),
        1u16..=4095,
        0usize..4,
        proptest::collection::vec((0usize..40, any::<u8>()), 0..3),
        proptest::collection::vec(any::<u8>(), 0..2),
    )
        .prop_map(|(sel, v, priority, cs, n, flips, tail)| {
            let v4 = |a, b, c, d| IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d));
            let v6 = |a, b| IpAddr::V6(std::net::Ipv6Addr::new(a, 0, 0, 0, 0, 0, 0, b));
            let (src, dst) = match sel {
                0 => (v4(192, 0, 2, 1), v4(224, 0, 0, 18)),
                1 => (v4(192, 0, 2, 1), v4(192, 0, 2, 2)),
                2 => (v6(0xfe80, 1), v6(0xff02, 0x12)),
                _ => (v6(0xfe80, 1), v6(0x2001, 2)),
            };
            let addresses = (0..n as u8)
                .map(|i| match src {
                    IpAddr::V4(_) => v4(192, 0, 2, 100 + i),
                    IpAddr::V6(_) => v6(0x2001, u16::from(i)),
                })
                .collect();
            let a = VrrpAdvert {
                vrid: Vhid::new(v).unwrap_or_else(|| unreachable!("1..=255")),
                priority,
                max_adver_int: Centisecs::new(cs).unwrap_or_else(|| unreachable!("1..=4095")),
                addresses,
            };
            let mut b = vec![sel];
            b.extend(vrrp::encode(&a, src, dst));
            let len = b.len();
            for (i, x) in flips {
                b[1 + i % (len - 1)] ^= x;
            }
            b.extend(tail);
            b
        })
}

proptest! {
    #![proptest_config(config(2000))]
    #[test]
    fn vrrp_decode_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..80)) {
        check_vrrp_decode(&data);
    }

    #[test]
    fn vrrp_decode_near_adverts(data in near_vrrp_adverts()) {
        check_vrrp_decode(&data);
    }

    #[test]
    fn decode_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..80)) {
        check_decode(&data);
    }

    #[test]
    fn decode_near_adverts(data in near_adverts()) {
        check_decode(&data);
    }
}

proptest! {
    #![proptest_config(config(1000))]
    #[test]
    fn engine_random_programs(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_engine(&data);
    }
}

#[test]
fn engine_empty_and_tiny_inputs() {
    check_decode(&[]);
    check_vrrp_decode(&[]);
    for len in 0..64 {
        check_engine(&vec![0u8; len]);
        check_engine(&vec![0xffu8; len]);
    }
}
