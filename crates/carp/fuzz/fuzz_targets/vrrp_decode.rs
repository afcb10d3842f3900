//! Arbitrary bytes into `carp::vrrp::decode` (the first byte picks the source and destination
//! addresses): no panic, and what decodes re-encodes to the same bytes but for the reserved
//! bits (see fuzz_checks::check_vrrp_decode).
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_checks::check_vrrp_decode(data);
});
