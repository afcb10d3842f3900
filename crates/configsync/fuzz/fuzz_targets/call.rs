//! An XML-RPC request body as the config-sync server reads it (configsync-net server.rs
//! `handle`: UTF-8, dxr `MethodCall::from_xml`, `configsync::rpc::decode`): no panic; a call
//! that decodes re-encodes to XML that decodes to the same call (and a push is planned on a
//! fresh peer exactly when its versions and texts are right); a refusal is a 400/404 with a
//! short printable message that reads back the same (see fuzz_checks::check_call).
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_checks::check_call(data, fuzz_checks::Open::for_fuzzing());
});
