//! Config sync between Tandem nodes, as pfSense's XML-RPC sync does it but verified: the
//! primary pushes the synced areas (whole, as canonical TOML text) over XML-RPC on HTTPS to
//! each peer; a peer validates and activates them all or nothing, keeps the previous
//! generations, detects local drift, and answers with the result.
//!
//! Pure bookkeeping lives in [`area`], [`book`] and [`rpc`] (no I/O, no clock reads: times
//! are passed in). The I/O is in [`tls`] (certificates, pinning), [`server`] (HTTPS XML-RPC
//! server handing calls to the daemon loop through a channel), [`client`] and [`push`] (the
//! primary's per-peer push task with retry and heartbeat).

#![forbid(unsafe_code)]

pub mod area;
pub mod book;
pub mod client;
pub mod push;
pub mod rpc;
pub mod server;
pub mod tls;

pub use area::Area;

/// The wire protocol of the methods in [`rpc`]; nodes only sync with the same number.
pub const PROTOCOL_VERSION: u32 = 1;
/// The config schema of the areas' TOML; a peer refuses areas of another schema.
pub const SCHEMA_VERSION: u32 = 1;
/// What this implementation offers (`tandem.version`'s `capabilities`).
pub const CAPABILITIES: [&str; 4] = ["apply_areas", "heartbeat", "drift", "rollback"];
