//! Arbitrary bytes read as a program for a peer over an in-memory store: pushes (any
//! generation, force, drift policy, areas and texts, wrong schema), local edits of the own
//! file and of the stored copy, commits and rollbacks, through `configsync::peer::plan_apply`
//! and friends. Every decision agrees with generations, drift and texts; deciding changes
//! nothing; a committed push runs without drift and is then "already applied"; a push never
//! rolls back (see fuzz_checks::check_plan).
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_checks::check_plan(data, fuzz_checks::Open::for_fuzzing());
});
