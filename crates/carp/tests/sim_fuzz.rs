//! The fuzz targets' checks (tests/support/fuzz_checks.rs, also run by cargo-fuzz from
//! crates/carp/fuzz) on random bytes under proptest, so they run in every `cargo test`.

#[path = "support/fuzz_checks.rs"]
mod fuzz_checks;

use carp::wire::{self, Advert};
use carp::{Advbase, Skew, Vhid};
use fuzz_checks::{check_decode, check_engine};
use proptest::prelude::*;

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

proptest! {
    #![proptest_config(config(2000))]
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
    for len in 0..64 {
        check_engine(&vec![0u8; len]);
        check_engine(&vec![0xffu8; len]);
    }
}
