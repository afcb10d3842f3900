//! Arbitrary bytes into `carp::wire::decode`: no panic, and what decodes re-encodes to the
//! same 36-byte header (see fuzz_checks::check_decode).
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_checks::check_decode(data);
});
