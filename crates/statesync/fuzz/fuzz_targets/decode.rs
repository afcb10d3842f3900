//! Arbitrary bytes into the header and record decoders (canonical: what decodes re-encodes
//! to the same bytes) and the sealer (never opens). See fuzz_checks::check_decode/check_open.
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_checks::check_decode(data);
    fuzz_checks::check_open(data);
});
