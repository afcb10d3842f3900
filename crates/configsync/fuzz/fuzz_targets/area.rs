//! Pushed area text as a peer parses it (`configsync::area::parse_area`, `doc_of`,
//! `canonical`; the first byte picks the area): the three agree; canonical is idempotent,
//! keeps the meaning (NaN aside), is empty only for an empty area, and reads back as itself
//! when the peer's store concatenates the areas; an error is short and printable (see
//! fuzz_checks::check_area).
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_checks::check_area_bytes(data, fuzz_checks::Open::for_fuzzing());
});
