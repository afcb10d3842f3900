//! Connection state sync for Tandem, in the spirit of pfsync.
//!
//! This crate owns the connection-state model ([`model`]: a netfilter conntrack entry with
//! everything needed to recreate it on a peer), the replication wire protocol and the replicator
//! engine. It is pure and sans-IO: the kernel side lives in `linux::conntrack`, sockets and
//! timers in the daemon.

pub mod engine;
mod key;
pub mod model;
pub mod replay;
pub mod seal;
pub mod wire;

pub use engine::{
    replicated_eq, Action, Alarm, BulkPhase, BulkStatus, Config, ConfigError, Counters, Dest,
    Input, LocalEvent, PeerStatus, RejectReason, Replicator, ServeStatus, Status, TimerKind,
};
pub use model::{Conn, ConnKey};
pub use seal::{KeyError, SealKey, Sealer};
pub use wire::NodeId;
