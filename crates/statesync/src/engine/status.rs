//! What `tandem status` shows: the [`Status`] snapshot (bulk phase, serving, per-peer lag),
//! the [`Counters`] and the [`RejectReason`]s dropped datagrams are counted by. Read-only: building
//! a status never changes the engine.

use super::bulk::BulkRx;
use super::Replicator;
use crate::wire::{self, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// Why a datagram was dropped. Each is counted; none changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    TooShort,
    BadMagic,
    BadVersion,
    UnknownKind,
    /// Sealed under another cluster's key.
    WrongKey,
    /// Authentication failed: tampered (or a forged key id).
    BadSeal,
    /// A datagram seq seen before in the current epoch.
    Replay,
    /// Older than the replay window.
    TooOld,
    /// From an epoch the peer has left.
    StaleEpoch,
    /// Too many datagrams held from an epoch not yet confirmed.
    Unconfirmed,
    TooManyPeers,
    /// Our own node id with another epoch: a node sharing our id, or our own datagrams
    /// from before a restart, replayed.
    OwnNodeId,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooShort => "too_short",
            RejectReason::BadMagic => "bad_magic",
            RejectReason::BadVersion => "bad_version",
            RejectReason::UnknownKind => "unknown_kind",
            RejectReason::WrongKey => "wrong_key",
            RejectReason::BadSeal => "bad_seal",
            RejectReason::Replay => "replay",
            RejectReason::TooOld => "too_old",
            RejectReason::StaleEpoch => "stale_epoch",
            RejectReason::Unconfirmed => "unconfirmed",
            RejectReason::TooManyPeers => "too_many_peers",
            RejectReason::OwnNodeId => "own_node_id",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<wire::DecodeError> for RejectReason {
    fn from(e: wire::DecodeError) -> Self {
        match e {
            wire::DecodeError::BadMagic => RejectReason::BadMagic,
            wire::DecodeError::BadVersion(_) => RejectReason::BadVersion,
            wire::DecodeError::UnknownKind(_) => RejectReason::UnknownKind,
            _ => RejectReason::TooShort,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Peers' barriers answered (their states all applied before a planned hand-over).
    #[serde(default)]
    pub barriers_confirmed: u64,
    /// Insert/update records sent live (not bulk).
    pub states_sent: u64,
    pub deletes_sent: u64,
    pub clears_sent: u64,
    pub bulk_states_sent: u64,
    /// Insert/update/bulk records received and applied.
    pub states_received: u64,
    pub bulk_states_received: u64,
    pub deletes_received: u64,
    pub clears_received: u64,
    /// Conns handed to the daemon to install / remove.
    pub installs: u64,
    pub removes: u64,
    /// Received states identical to what the table holds (not installed again).
    pub unchanged_received: u64,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub retransmits: u64,
    pub nacks_sent: u64,
    pub nacks_received: u64,
    pub gone_sent: u64,
    pub gaps_unrepaired: u64,
    /// Stream datagrams received twice (retransmission raced the original).
    pub duplicate_stream: u64,
    /// Changes absorbed by a pending change of the same conn before it was sent.
    pub collapsed: u64,
    /// Local events that changed nothing (the echo of our own installs, mostly).
    pub echo_suppressed: u64,
    /// Local DESTROY of a peer's conn: not announced (our copy expired).
    pub peer_conns_expired: u64,
    pub unknown_records: u64,
    pub malformed_records: u64,
    /// Records in the wrong kind of datagram.
    pub unexpected_records: u64,
    /// Conns too big to encode (helper name or labels over the limit): never sent.
    pub unencodable: u64,
    /// Our own datagrams looped back (multicast).
    pub own_looped: u64,
    pub probes_sent: u64,
    pub peer_restarts: u64,
    pub bulk_requests_served: u64,
    /// Bulk requests received again after they were answered in full (not served twice).
    #[serde(default)]
    pub bulk_requests_repeated: u64,
    pub bulk_completed: u64,
    pub bulk_count_mismatch: u64,
    /// Bulk requests sent again after a timeout, within a round or after its backoff.
    pub bulk_retries: u64,
    /// Bulk attempts that left us without a complete table and waiting to retry: the end of
    /// every round, and every later attempt. Only the first raises `Alarm::BulkFailed`.
    pub bulk_failed: u64,
    /// Entries a completed bulk showed to be gone on the sender.
    pub bulk_swept: u64,
    /// Bulk states not applied: for another node's bulk, or deleted since we asked.
    pub bulk_states_ignored: u64,
    /// Entries forgotten after their timeout ran out.
    pub expired: u64,
    /// Bulk syncs installed without listening for the kernel's NEW events (see
    /// [`Action::NewEvents`](super::Action::NewEvents)).
    #[serde(default)]
    pub quiet_bulks: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BulkPhase {
    Idle,
    Requesting,
    Receiving,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkStatus {
    pub phase: BulkPhase,
    pub attempt: u32,
    /// The peer sending (receiving) or that sent (done) the bulk.
    pub from: Option<NodeId>,
    pub received: u64,
    /// The count of the completed bulk.
    pub count: Option<u64>,
    /// Failed: the next attempt goes out in this many ms (sooner if a peer comes alive).
    #[serde(default)]
    pub retry_in_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeStatus {
    pub to: NodeId,
    pub sent: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node: NodeId,
    pub addr: SocketAddr,
    /// The confirmed epoch.
    pub epoch: Option<u64>,
    pub alive: bool,
    /// Reported down by the daemon ([`Input::PeerDown`](super::Input::PeerDown)).
    pub down: bool,
    pub silent_ms: u64,
    /// The last stream seq the peer said it sent.
    pub heard: u64,
    /// The last stream seq applied in order.
    pub applied: u64,
    /// heard - applied.
    pub lag: u64,
    /// Out-of-order datagrams held.
    pub buffered: usize,
    pub repairing: bool,
    /// As the peer's heartbeat says.
    pub ready: bool,
    pub states: u32,
    pub restarts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node: NodeId,
    pub epoch: u64,
    pub ready: bool,
    pub bulk: BulkStatus,
    pub serving: Option<ServeStatus>,
    pub serve_queue: usize,
    /// Conns in the table.
    pub states: usize,
    /// Changes waiting to be sent.
    pub pending: usize,
    /// Estimate of records still to send: pending changes plus what bulk transfers have left.
    pub queue_depth: usize,
    pub last_stream: u64,
    pub history: usize,
    pub counters: Counters,
    pub peers: Vec<PeerStatus>,
}

impl Replicator {
    pub fn status(&self, now: Instant) -> Status {
        let bulk = match self.bulk {
            BulkRx::Idle => BulkStatus {
                phase: BulkPhase::Idle,
                attempt: 0,
                from: None,
                received: 0,
                count: None,
                retry_in_ms: None,
            },
            BulkRx::Requesting { attempt, .. } => BulkStatus {
                phase: BulkPhase::Requesting,
                attempt,
                from: None,
                received: 0,
                count: None,
                retry_in_ms: None,
            },
            BulkRx::Receiving {
                from,
                attempt,
                received,
                ..
            } => BulkStatus {
                phase: BulkPhase::Receiving,
                attempt,
                from: Some(from),
                received,
                count: None,
                retry_in_ms: None,
            },
            BulkRx::Done { from, count } => BulkStatus {
                phase: BulkPhase::Done,
                attempt: 0,
                from: Some(from),
                received: count,
                count: Some(count),
                retry_in_ms: None,
            },
            BulkRx::Failed { attempts, retry_at } => BulkStatus {
                phase: BulkPhase::Failed,
                attempt: attempts,
                from: None,
                received: 0,
                count: None,
                retry_in_ms: retry_at.map(|t| t.saturating_duration_since(now).as_millis() as u64),
            },
        };
        let serve_left = self
            .serving
            .as_ref()
            .map_or(0, |s| self.table.len().saturating_sub(s.sent as usize));
        let peers = self
            .peers
            .iter()
            .map(|(node, p)| {
                let silent = now.saturating_duration_since(p.last_seen);
                let (epoch, heard, applied, buffered, repairing, ready, states) = match &p.cur {
                    Some(s) => (
                        Some(s.epoch),
                        s.heard,
                        s.expected.saturating_sub(1),
                        s.reorder.len(),
                        s.gap.is_some(),
                        s.ready,
                        s.states,
                    ),
                    None => (None, 0, 0, 0, false, false, 0),
                };
                PeerStatus {
                    node: *node,
                    addr: p.addr,
                    epoch,
                    alive: !p.down && silent < self.cfg.peer_timeout,
                    down: p.down,
                    silent_ms: silent.as_millis() as u64,
                    heard,
                    applied,
                    lag: heard.saturating_sub(applied),
                    buffered,
                    repairing,
                    ready,
                    states,
                    restarts: p.restarts,
                }
            })
            .collect();
        let mut counters = self.counters.clone();
        counters.datagrams_sent = self.tx.datagrams;
        counters.bytes_sent = self.tx.bytes;
        Status {
            node: self.cfg.node,
            epoch: self.cfg.epoch,
            ready: self.ready,
            bulk,
            serving: self.serving.as_ref().map(|s| ServeStatus {
                to: s.to,
                sent: s.sent,
            }),
            serve_queue: self.serve_queue.len(),
            states: self.table.len(),
            pending: self.pending.len(),
            queue_depth: self.pending.len()
                + serve_left
                + self.serve_queue.len() * self.table.len(),
            last_stream: self.tx.next_stream - 1,
            history: self.tx.history.len(),
            counters,
            peers,
        }
    }
}
