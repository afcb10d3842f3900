//! Config sync between Tandem nodes, as pfSense's XML-RPC sync does it but verified: the
//! primary pushes the synced areas (as canonical TOML text, or only the hash of an area the
//! peer already holds) over XML-RPC on HTTPS to each peer; a peer validates and activates them
//! all or nothing, keeps the previous generations, detects local drift, and answers with the
//! result.
//!
//! This crate is the pure half: the areas ([`area`]), the bookkeeping of generations, drift
//! and push schedules ([`book`]), what a push sends whole or as hash only ([`delta`]), every
//! XML-RPC call and answer encoded and decoded ([`rpc`]), the peer's decision on a push over
//! its store ([`peer`]), and the shared credentials ([`auth`]). No I/O, no clock reads: times
//! are passed in. The network half (TLS, the HTTPS server, the client and the primary's push
//! tasks) is the crate `configsync-net`.

#![forbid(unsafe_code)]

pub mod area;
pub mod auth;
pub mod book;
pub mod delta;
pub mod peer;
pub mod rpc;

pub use area::Area;

/// The wire protocol of the methods in [`rpc`]; nodes only sync with the same number.
/// 2: `tandem.apply_areas` may name an area by its hash only ([`delta`]).
pub const PROTOCOL_VERSION: u32 = 2;
/// The config schema of the areas' TOML; a peer refuses areas of another schema.
pub const SCHEMA_VERSION: u32 = 1;
/// What this implementation offers (`tandem.version`'s `capabilities`).
pub const CAPABILITIES: [&str; 5] = ["apply_areas", "heartbeat", "drift", "rollback", "delta"];
