//! Netfilter conntrack for Tandem, without the I/O: the kernel's conntrack entry ([`model`])
//! and the ctnetlink messages that carry it ([`msg`]), byte for byte.
//!
//! - [`model`]: one conntrack entry ([`Conn`]) with everything needed to recreate it on a
//!   peer (tuples, status, timeout, mark, zone, TCP protoinfo, seq-adjust, helper, labels,
//!   master), its cluster-wide identity ([`ConnKey`]) and the NAT it implies.
//! - [`msg`]: building ctnetlink requests (create, update, delete, get, dump, flush) and
//!   parsing what the kernel sends (entries, events, errors with extended-ack text).
//!
//! Pure: no sockets, no syscalls, no clock. The socket side (`NETLINK_NETFILTER`, batching,
//! events on tokio) lives in `linux::conntrack`; the replication of entries between nodes in
//! `statesync`, which re-exports [`model`] as `statesync::model`.

#![forbid(unsafe_code)]

pub mod model;
pub mod msg;

pub use model::{Conn, ConnKey};
pub use msg::{CtDecodeError, DecodeProblem, EncodeError};
