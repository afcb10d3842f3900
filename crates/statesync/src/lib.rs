//! Connection state sync for Tandem, in the spirit of pfsync.
//!
//! This crate owns the connection-state model ([`model`]: a netfilter conntrack entry with
//! everything needed to recreate it on a peer), the replication wire protocol and the replicator
//! engine. It is pure and sans-IO: the kernel side lives in `linux::conntrack`, sockets and
//! timers in the daemon.

pub mod model;
