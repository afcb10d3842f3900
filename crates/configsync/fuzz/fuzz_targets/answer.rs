//! An XML-RPC answer body as the primary reads it (configsync-net client.rs and push.rs:
//! lossy UTF-8, `FaultResponse` when it has `<fault>`, else `MethodResponse`, then
//! `VersionAnswer`, `HeartbeatAnswer`, `ApplyAnswer::decode`): no panic; each answer that
//! decodes round-trips through `encode` and the XML, a fault maps to the refusal of its code,
//! the peer's strings are names or printable, and a generation learnt from a peer still
//! travels on the wire (see fuzz_checks::check_answer).
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_checks::check_answer(data, fuzz_checks::Open::for_fuzzing());
});
