//! Arbitrary bytes into a replicator that trusts its peer: raw (rejected, nothing changes) and
//! sealed with the cluster key as a stream or control body (no panic; the table stays what the
//! Install/Remove actions say). The first byte picks the mode.
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let mut pair = fuzz_checks::Pair::new();
    match mode % 4 {
        0 => fuzz_checks::check_engine_raw(&mut pair, rest),
        1 => fuzz_checks::check_engine_sealed(&mut pair, true, rest),
        2 => fuzz_checks::check_engine_sealed(&mut pair, false, rest),
        _ => fuzz_checks::check_engine_tampered(&mut pair, rest, usize::from(*mode)),
    }
});
