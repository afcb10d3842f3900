//! Connection state sync for Tandem, in the spirit of pfsync.
//!
//! This crate owns the replication wire protocol and the replicator engine. What it replicates
//! is the conntrack crate's model (a netfilter conntrack entry with everything needed to
//! recreate it on a peer), re-exported here as [`model`]. It is pure and sans-IO: the kernel
//! side lives in `linux::conntrack` (with the ctnetlink codec in the conntrack crate), sockets
//! and timers in the daemon.

pub mod engine;
mod key;
/// The conntrack entry model ([`conntrack::model`]), re-exported so `statesync::model::Conn`
/// keeps working.
pub use conntrack::model;
pub mod replay;
pub mod seal;
pub mod wire;

pub use engine::{
    replicated_eq, Action, Alarm, BulkPhase, BulkStatus, Config, ConfigError, Counters, Dest,
    Input, LocalEvent, PeerStatus, RejectReason, Replicator, ServeStatus, Status, TimerKind,
};
pub use model::{Conn, ConnKey};
pub use seal::{KeyError, SealKey, Sealer, MIN_SECRET_LEN};
pub use wire::NodeId;
