//! Arbitrary bytes into the ctnetlink parser, as a datagram and as one message body: no panic,
//! and every entry that decodes survives encode → decode (see fuzz_checks::check_decode).
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_checks::check_decode(data);
});
