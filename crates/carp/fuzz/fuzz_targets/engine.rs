//! Arbitrary bytes read as a program of engine inputs (adverts raw and validly signed with
//! fuzzed timing, TTLs, sources, links, demotions, send results, shutdown, time passing):
//! no panic, timers never left due, addresses held exactly while MASTER
//! (see fuzz_checks::check_engine).
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_checks::check_engine(data);
});
