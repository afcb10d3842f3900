//! Config sync between Tandem nodes, the network half: the node's certificate and how a peer's
//! is pinned ([`tls`]), the HTTPS XML-RPC server that hands decoded calls to the daemon through
//! a channel ([`server`]), the client ([`client`]) and the primary's per-peer push task
//! ([`push`]). Everything it decides is decided in the pure crate `configsync`.

#![forbid(unsafe_code)]

pub mod client;
pub mod push;
pub mod server;
pub mod tls;
