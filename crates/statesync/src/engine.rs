//! The replicator: one node's half of state sync, as a sans-IO state machine.
//!
//! The daemon feeds [`Input`]s (kernel events, its table dumps, received datagrams, peer
//! hints) with the time they happened, calls [`Replicator::handle_timeout`] when
//! [`Replicator::poll_timeout`] says so, and carries out the [`Action`]s it drains with
//! [`Replicator::poll_action`]: datagrams to send, batches of conns to install into or remove
//! from the kernel, readiness changes (demote CARP while not ready) and alarms. The engine never
//! reads a clock, touches a socket or draws OS randomness.
//!
//! # The table
//! The engine keeps its own table of every conn this node's kernel holds as far as sync is
//! concerned: conns reported by local kernel events (origin *local*) and conns installed from
//! peers (origin *peer*). Bulk requests are answered from it (no dump needed), UPDATE events
//! that carry only what changed are merged into it, and timeouts are kept relative to the time
//! they were observed so that what goes on the wire is the time left *now*.
//!
//! # Echo suppression
//! A conn installed from a peer comes back as a NEW/UPDATE event from our own kernel, and a
//! conn removed on a peer's request comes back as a DESTROY. The engine does not re-broadcast
//! them because:
//! - a local NEW/UPDATE is announced only if it changes the conn's *replicated view*
//!   ([`replicated_eq`]: tuples, status bits that describe the connection, mark, zone, TCP
//!   state/wscale/window flags, seq-adj, helper, labels, master — not the timeout, the kernel
//!   id or kernel-managed bits such as `CONFIRMED` or `BE_LIBERAL`) or pushes its expiry
//!   later by more than the refresh slack; the echo of our own install carries exactly what we
//!   installed, so it changes nothing and is counted as `echo_suppressed`;
//! - a local DESTROY of a key the table no longer holds (we removed it on a peer's request) is
//!   ignored, and a DESTROY of a conn whose origin is a peer is not announced either: our copy
//!   expiring (its timer is only refreshed by the origin's updates) must never delete the
//!   origin's live conn. Only conns this node announced itself are deleted cluster-wide;
//! - should the kernel normalise something the view compares, the first echo is announced
//!   once, the origin installs it and its own echo then matches: a fixpoint after one round.
//!
//! # Reliability
//! State records travel in *stream* datagrams numbered 1, 2, ... per epoch and sent to every
//! peer; each receiver applies a peer's stream in order, holding out-of-order datagrams (up to
//! `reorder_limit`), and asks for what is missing with a NACK after `nack_delay`, then every
//! `repair_timeout`. The sender retransmits from its last `history` stream datagrams (re-sealed
//! with a fresh datagram seq) or answers GONE, and the receiver then asks that peer for a bulk
//! sync. Heartbeats carry the last stream seq, so a lost tail is noticed too.
//!
//! # Epochs
//! A datagram from a peer epoch we do not know is authenticated, held, and answered with a
//! PROBE carrying a random nonce; the epoch is adopted only when the peer echoes the nonce in a
//! PROBE-REPLY sealed in that epoch. A replayed datagram from an old epoch authenticates, but
//! cannot answer a fresh probe: it is never acted on, and old epochs are remembered as retired.

use crate::key::{FastHash, TKey};
use crate::model::{status, tcp_flags, Conn, ConnKey};
use crate::replay::{Replay, ReplayWindow};
use crate::seal::{SealKey, Sealer};
use crate::wire::{
    self, conn_record_len, delete_record_len, rtype, EncodeError, Header, Kind, NodeId, Record,
    Records, HEADER_LEN, MAX_RECORD_LEN, OVERHEAD, STREAM_SEQ_LEN,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Bound;
use std::time::{Duration, Instant};

/// The smallest datagram size the engine accepts as its MTU.
pub const MIN_MTU: usize = 512;
/// The largest (a UDP payload over IPv4).
pub const MAX_MTU: usize = 65_507;
/// Most stream datagrams retransmitted for one NACK.
const MAX_RETRANSMIT_PER_NACK: u64 = 256;
/// Conns removed on a peer's word remembered at most (see [`Replicator::removed`]).
const MAX_REMEMBERED_REMOVES: usize = 65_536;
/// Superseded installs remembered per conn (see [`Config::echo_window`]).
const MAX_SUPERSEDED: usize = 16;
/// Old epochs remembered per peer.
const RETIRED_EPOCHS: usize = 16;

/// Engine configuration. [`Config::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id: non-zero and unique in the cluster.
    pub node: NodeId,
    /// This daemon start's boot id: random, never reused (it is part of every nonce).
    pub epoch: u64,
    pub key: SealKey,
    /// Largest datagram (UDP payload) we send, overhead included. Default 1400.
    pub mtu: usize,
    /// How long a changed conn may wait to be collapsed with later changes. Default 20 ms.
    pub flush_delay: Duration,
    /// Default 1 s.
    pub heartbeat_interval: Duration,
    /// A peer not heard from for this long is shown as not alive. Default 3.5 s.
    pub peer_timeout: Duration,
    /// Stream datagrams kept for retransmission. Default 4096.
    pub history: usize,
    /// Out-of-order stream datagrams held per peer while waiting for a repair. Default 1024.
    pub reorder_limit: usize,
    /// Wait before the first NACK of a gap (reordering is not loss). Default 5 ms.
    pub nack_delay: Duration,
    /// Wait between NACKs of the same gap. Default 50 ms.
    pub repair_timeout: Duration,
    /// NACKs sent for a gap before giving up and asking for a bulk sync. Default 5.
    pub repair_retries: u32,
    /// A bulk request or transfer that makes no progress for this long is retried. Default 3 s.
    pub bulk_timeout: Duration,
    /// Retries after the first bulk attempt before [`Alarm::BulkFailed`]. Default 3.
    pub bulk_retries: u32,
    /// Stream datagrams (live and bulk) sent per `pace` at most. Default 16 per 1 ms.
    pub burst: u32,
    pub pace: Duration,
    /// A conn whose expiry moved later by more than max(this, timeout / 4) is re-announced
    /// (or re-installed) even if nothing else changed. Default 5 s.
    pub refresh_min: Duration,
    /// Table entries are forgotten this long after their timeout ran out. Default 30 s.
    pub expiry_grace: Duration,
    /// Default 10 s.
    pub sweep_interval: Duration,
    /// How often to ask the daemon for a dump ([`Action::RequestDump`]) so that conns
    /// refreshed by traffic (the kernel sends no event for that) are re-announced before the
    /// peers' copies expire. `None`: only at start. Default 30 s.
    pub dump_interval: Option<Duration>,
    /// Least time between two probes of the same peer. Default 200 ms.
    pub probe_interval: Duration,
    /// Peers tracked at most (others are rejected). Default 32.
    pub max_peers: usize,
    /// Datagrams held per peer while its epoch is being confirmed. Default 256.
    pub max_held: usize,
    /// How long the kernel's echo of a superseded install is still recognised. Default 5 s.
    pub echo_window: Duration,
}

impl Config {
    pub fn new(node: NodeId, epoch: u64, key: SealKey) -> Config {
        Config {
            node,
            epoch,
            key,
            mtu: 1400,
            flush_delay: Duration::from_millis(20),
            heartbeat_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_millis(3500),
            history: 4096,
            reorder_limit: 1024,
            nack_delay: Duration::from_millis(5),
            repair_timeout: Duration::from_millis(50),
            repair_retries: 5,
            bulk_timeout: Duration::from_secs(3),
            bulk_retries: 3,
            burst: 16,
            pace: Duration::from_millis(1),
            refresh_min: Duration::from_secs(5),
            expiry_grace: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(10),
            dump_interval: Some(Duration::from_secs(30)),
            probe_interval: Duration::from_millis(200),
            max_peers: 32,
            max_held: 256,
            echo_window: Duration::from_secs(5),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.0 == 0 {
            return Err(ConfigError::ZeroNode);
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        let zero = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("pace", self.pace),
            ("repair_timeout", self.repair_timeout),
            ("bulk_timeout", self.bulk_timeout),
            ("sweep_interval", self.sweep_interval),
            ("probe_interval", self.probe_interval),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::Zero(name));
        }
        if self.dump_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Zero("dump_interval"));
        }
        let counts = [
            ("history", self.history),
            ("burst", self.burst as usize),
            ("max_peers", self.max_peers),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(ConfigError::Zero(name));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node id 0 is reserved")]
    ZeroNode,
    #[error("mtu {0} is outside {MIN_MTU}..={MAX_MTU}")]
    Mtu(usize),
    #[error("{0} must not be zero")]
    Zero(&'static str),
}

/// A conntrack event from this node's kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalEvent {
    New(Conn),
    /// May carry only what changed (see [`Conn::merge_from`]).
    Update(Conn),
    Destroy(Conn),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Input {
    Local(LocalEvent),
    /// The daemon is about to send a dump request to the kernel; conns that events touch from
    /// now on are newer than what the dump will say about them.
    DumpStarted,
    /// The complete dump. New conns, changed conns and conns refreshed by traffic are
    /// announced; nothing is deleted (entries the kernel no longer has age out of the table).
    LocalSnapshot(Vec<Conn>),
    /// The kernel's table was flushed (`conntrack -F`): forget everything, and tell peers to
    /// drop what this node announced.
    LocalFlush,
    /// A UDP payload received on the sync socket.
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A configured peer became reachable (sync link up): say hello now.
    PeerUp(SocketAddr),
    /// A configured peer became unreachable.
    PeerDown(SocketAddr),
    /// The operator asks for a new bulk sync.
    Resync,
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dest {
    /// Every peer: the multicast group, or each configured unicast peer.
    All,
    /// One peer, at the address its datagrams come from.
    Peer(SocketAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alarm {
    /// The bulk sync did not complete after every retry. Not ready stays not ready; the
    /// engine tries again when a new peer shows up, on [`Input::Resync`] or [`Input::PeerUp`].
    BulkFailed { attempts: u32 },
    /// Stream seqs `first..=last` from `peer` could not be repaired; a bulk sync from that
    /// peer was requested.
    GapUnrepairable { peer: NodeId, first: u64, last: u64 },
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alarm::BulkFailed { attempts } => {
                write!(f, "bulk sync failed after {attempts} attempts")
            }
            Alarm::GapUnrepairable { peer, first, last } => {
                write!(
                    f,
                    "lost updates {first}..={last} from {peer}; bulk sync requested"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Send {
        to: Dest,
        bytes: Vec<u8>,
    },
    /// Create or update these conns in the kernel (one batched netlink write), in order:
    /// masters come before their related conns.
    Install(Vec<Conn>),
    /// Delete these conns from the kernel.
    Remove(Vec<ConnKey>),
    /// Ready (the first bulk sync completed): CARP may stop demoting this node.
    ReadyChanged(bool),
    Alarm(Alarm),
    /// Please dump the kernel's table: [`Input::DumpStarted`], then [`Input::LocalSnapshot`].
    RequestDump,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimerKind {
    Flush,
    BulkSend,
    Heartbeat,
    Repair,
    BulkTimeout,
    Sweep,
    Dump,
}

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
    pub bulk_completed: u64,
    pub bulk_count_mismatch: u64,
    pub bulk_retries: u64,
    pub bulk_failed: u64,
    /// Entries a completed bulk showed to be gone on the sender.
    pub bulk_swept: u64,
    /// Bulk states not applied: for another node's bulk, or deleted since we asked.
    pub bulk_states_ignored: u64,
    /// Entries forgotten after their timeout ran out.
    pub expired: u64,
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
    /// Reported down by the daemon ([`Input::PeerDown`]).
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

/// Status bits that describe the connection (the rest is the kernel's bookkeeping).
pub const REPLICATED_STATUS: u32 = status::EXPECTED
    | status::SEEN_REPLY
    | status::ASSURED
    | status::SRC_NAT
    | status::DST_NAT
    | status::SEQ_ADJUST
    | status::FIXED_TIMEOUT
    | status::HELPER;
/// TCP window flags that describe the connection (`BE_LIBERAL` is what an installer adds,
/// the others move with every packet).
pub const REPLICATED_TCP_FLAGS: u8 =
    tcp_flags::WINDOW_SCALE | tcp_flags::SACK_PERM | tcp_flags::CLOSE_INIT;

/// Equality of what replication is about: everything but the timeout, the kernel's id and the
/// kernel-managed status bits and TCP flags. Echo suppression is built on it.
pub fn replicated_eq(a: &Conn, b: &Conn) -> bool {
    let tcp = |c: &Conn| {
        c.tcp.map(|t| {
            (
                t.state,
                t.wscale_orig,
                t.wscale_reply,
                t.flags_orig & REPLICATED_TCP_FLAGS,
                t.flags_reply & REPLICATED_TCP_FLAGS,
            )
        })
    };
    a.orig == b.orig
        && a.reply == b.reply
        && a.status & REPLICATED_STATUS == b.status & REPLICATED_STATUS
        && a.mark == b.mark
        && a.zone == b.zone
        && tcp(a) == tcp(b)
        && a.seq_adj_orig == b.seq_adj_orig
        && a.seq_adj_reply == b.seq_adj_reply
        && a.helper == b.helper
        && a.labels == b.labels
        && a.master == b.master
}

// ---- internal state ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Peer(NodeId),
}

#[derive(Debug, Clone)]
struct Entry {
    conn: Conn,
    /// When `conn.timeout` was observed (received, or reported by the kernel).
    seen: Instant,
    origin: Origin,
    /// Modification counter value at the last touch.
    gen: u64,
    /// From a dump taken before the first bulk sync: announced only after it, if the bulk
    /// did not bring a peer's version (a peer that kept running knows better).
    unannounced: bool,
    /// Versions we installed from peers and then replaced, with when: the kernel's echo of
    /// an older install can arrive after a newer one was installed.
    #[allow(clippy::box_collection)] // 8 bytes in every entry; a list only in a few
    superseded: Option<Box<VecDeque<(Instant, Conn)>>>,
}

impl Entry {
    fn expiry(&self) -> Option<Instant> {
        self.conn
            .timeout
            .and_then(|t| self.seen.checked_add(Duration::from_secs(u64::from(t))))
    }

    /// Seconds left now, at least 1.
    fn remaining(&self, now: Instant) -> Option<u32> {
        self.conn.timeout.map(|t| {
            let elapsed = now.saturating_duration_since(self.seen).as_secs();
            u64::from(t).saturating_sub(elapsed).max(1) as u32
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert,
    Update,
    Delete,
}

#[derive(Debug)]
struct Gap {
    next_nack: Instant,
    tries: u32,
}

#[derive(Debug)]
struct Stream {
    epoch: u64,
    window: ReplayWindow,
    /// Next stream seq to apply.
    expected: u64,
    /// Highest stream seq known to exist.
    heard: u64,
    reorder: BTreeMap<u64, Vec<u8>>,
    gap: Option<Gap>,
    ready: bool,
    states: u32,
}

#[derive(Debug)]
struct Held {
    epoch: u64,
    seq: u64,
    kind: Kind,
    body: Vec<u8>,
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    last_seen: Instant,
    down: bool,
    cur: Option<Stream>,
    retired: VecDeque<u64>,
    probe: Option<(u64, Instant)>,
    held: Vec<Held>,
    restarts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BulkRx {
    Idle,
    Requesting {
        request: u32,
        attempt: u32,
        target: Option<NodeId>,
        deadline: Instant,
    },
    Receiving {
        from: NodeId,
        request: u32,
        attempt: u32,
        target: Option<NodeId>,
        received: u64,
        start_gen: u64,
        deadline: Instant,
    },
    Done {
        from: NodeId,
        count: u64,
    },
    Failed {
        attempts: u32,
    },
}

#[derive(Debug)]
struct Serve {
    to: NodeId,
    request: u32,
    /// Only the conns this node announced (origin local).
    own_only: bool,
    /// 0: conns without a master, 1: related conns, 2: only the end record is left.
    pass: u8,
    cursor: Option<TKey>,
    sent: u64,
    started: bool,
}

/// The sending half: sequence numbers, sealing and the retransmission history.
struct Tx {
    sealer: Sealer,
    node: NodeId,
    epoch: u64,
    next_seq: u64,
    next_stream: u64,
    history: VecDeque<(u64, Vec<u8>)>,
    history_cap: usize,
    spare: Vec<Vec<u8>>,
    datagrams: u64,
    bytes: u64,
}

impl Tx {
    fn header(&mut self, kind: Kind) -> Header {
        let seq = self.next_seq;
        self.next_seq += 1;
        Header {
            kind,
            key_id: self.sealer.key_id(),
            node: self.node,
            epoch: self.epoch,
            seq,
        }
    }

    fn seal(&mut self, kind: Kind, stream: Option<u64>, records: &[u8]) -> Vec<u8> {
        let header = self.header(kind);
        let mut buf = Vec::with_capacity(OVERHEAD + STREAM_SEQ_LEN + records.len());
        buf.extend_from_slice(&header.to_bytes());
        if let Some(s) = stream {
            buf.extend_from_slice(&s.to_be_bytes());
        }
        buf.extend_from_slice(records);
        self.sealer.seal(&mut buf);
        self.datagrams += 1;
        self.bytes += buf.len() as u64;
        buf
    }

    /// A new stream datagram: numbered, kept for retransmission, sealed.
    fn stream(&mut self, records: &[u8]) -> Vec<u8> {
        let s = self.next_stream;
        self.next_stream += 1;
        let mut kept = self.spare.pop().unwrap_or_default();
        kept.clear();
        kept.extend_from_slice(records);
        self.history.push_back((s, kept));
        while self.history.len() > self.history_cap {
            if let Some((_, old)) = self.history.pop_front() {
                self.spare.push(old);
            }
        }
        self.seal(Kind::Stream, Some(s), records)
    }

    fn oldest_kept(&self) -> u64 {
        self.history.front().map_or(self.next_stream, |h| h.0)
    }

    fn retransmit(&mut self, s: u64) -> Option<Vec<u8>> {
        let first = self.history.front()?.0;
        let idx = usize::try_from(s.checked_sub(first)?).ok()?;
        let records = std::mem::take(&mut self.history.get_mut(idx)?.1);
        let d = self.seal(Kind::Stream, Some(s), &records);
        if let Some(h) = self.history.get_mut(idx) {
            h.1 = records;
        }
        Some(d)
    }
}

/// Tiny seeded generator (SplitMix64): request ids and probe nonces.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One node's replicator. See the module documentation.
pub struct Replicator {
    cfg: Config,
    tx: Tx,
    rng: SplitMix64,
    /// Records of the stream datagram being built.
    stage: Vec<u8>,
    /// Receive buffer, reused.
    rx: Vec<u8>,
    table: BTreeMap<TKey, Entry>,
    gen: u64,
    dump_gen: Option<u64>,
    pending: BTreeMap<TKey, Op>,
    pending_bytes: usize,
    flush_at: Option<Instant>,
    in_snapshot: bool,
    tokens: u32,
    refilled: Instant,
    serving: Option<Serve>,
    serve_queue: VecDeque<(NodeId, u32, bool)>,
    serve_at: Option<Instant>,
    peers: BTreeMap<NodeId, Peer>,
    bulk: BulkRx,
    /// Keys deleted while our bulk request is under way: a bulk snapshot taken before the
    /// sender heard of the delete must not bring them back.
    bulk_tombstones: std::collections::BTreeSet<TKey>,
    /// Conns we removed from the kernel on a peer's word, kept for `echo_window`: their
    /// kernel echo (an install just before the remove) must not look like a new local conn.
    removed: BTreeMap<TKey, (Instant, Conn)>,
    removed_order: VecDeque<(Instant, TKey)>,
    ready: bool,
    next_heartbeat: Instant,
    next_sweep: Instant,
    next_dump: Option<Instant>,
    installs: Vec<Conn>,
    /// Where each conn of `installs` is (not for order: for collapsing).
    install_idx: std::collections::HashMap<TKey, usize, FastHash>,
    removes: Vec<TKey>,
    actions: VecDeque<Action>,
    counters: Counters,
    /// The `now` of the call being handled.
    last_now: Instant,
}

impl fmt::Debug for Replicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replicator")
            .field("node", &self.cfg.node)
            .field("epoch", &self.cfg.epoch)
            .field("ready", &self.ready)
            .field("states", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl Replicator {
    /// A replicator that starts not ready: it says hello, asks the daemon for a dump and asks
    /// the peers for a bulk sync at once. `seed` drives request ids and probe nonces (the
    /// daemon passes OS randomness; tests pass a fixed seed).
    pub fn new(now: Instant, cfg: Config, seed: u64) -> Result<Replicator, ConfigError> {
        cfg.validate()?;
        let tx = Tx {
            sealer: Sealer::new(&cfg.key),
            node: cfg.node,
            epoch: cfg.epoch,
            next_seq: 1,
            next_stream: 1,
            history: VecDeque::new(),
            history_cap: cfg.history,
            spare: Vec::new(),
            datagrams: 0,
            bytes: 0,
        };
        let mut r = Replicator {
            tx,
            rng: SplitMix64(seed),
            stage: Vec::with_capacity(cfg.mtu),
            rx: Vec::with_capacity(cfg.mtu),
            table: BTreeMap::new(),
            gen: 0,
            dump_gen: None,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            flush_at: None,
            in_snapshot: false,
            tokens: cfg.burst,
            refilled: now,
            serving: None,
            serve_queue: VecDeque::new(),
            serve_at: None,
            peers: BTreeMap::new(),
            bulk: BulkRx::Idle,
            bulk_tombstones: std::collections::BTreeSet::new(),
            removed: BTreeMap::new(),
            removed_order: VecDeque::new(),
            ready: false,
            next_heartbeat: now + cfg.heartbeat_interval,
            next_sweep: now + cfg.sweep_interval,
            next_dump: cfg.dump_interval.map(|d| now + d),
            installs: Vec::new(),
            install_idx: std::collections::HashMap::with_hasher(FastHash),
            removes: Vec::new(),
            actions: VecDeque::new(),
            counters: Counters::default(),
            last_now: now,
            cfg,
        };
        r.send_heartbeat(Dest::All);
        r.actions.push_back(Action::RequestDump);
        r.start_bulk(now, 1, None);
        Ok(r)
    }

    pub fn node(&self) -> NodeId {
        self.cfg.node
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The conns this node holds (its kernel's table as far as sync knows), in key order.
    pub fn conns(&self) -> impl Iterator<Item = &Conn> {
        self.table.values().map(|e| &e.conn)
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        self.last_now = now;
        match input {
            Input::Local(ev) => self.on_local(now, ev),
            Input::DumpStarted => self.dump_gen = Some(self.gen),
            Input::LocalSnapshot(conns) => self.on_snapshot(now, conns),
            Input::LocalFlush => self.on_flush(),
            Input::Datagram { from, bytes } => self.handle_datagram(now, from, &bytes),
            Input::PeerUp(addr) => self.on_peer_up(now, addr),
            Input::PeerDown(addr) => self.on_peer_down(now, addr),
            Input::Resync => {
                // Whatever was missed while cut off is only known after the new bulk: not
                // ready until it completes (CARP demotes meanwhile).
                if self.ready {
                    self.ready = false;
                    self.actions.push_back(Action::ReadyChanged(false));
                }
                self.start_bulk(now, 1, None)
            }
        }
    }

    /// [`Input::Local`] without the enum.
    pub fn handle_local(&mut self, now: Instant, ev: LocalEvent) {
        self.last_now = now;
        self.on_local(now, ev);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        if self.flush_at.is_some_and(|t| t <= now) {
            self.flush_at = None;
            self.flush(now, false);
        }
        if self.serve_at.is_some_and(|t| t <= now) {
            self.serve_at = None;
            self.serve_tick(now);
        }
        if self.next_heartbeat <= now {
            self.send_heartbeat(Dest::All);
            self.next_heartbeat = now + self.cfg.heartbeat_interval;
        }
        self.repair_timers(now);
        match self.bulk {
            BulkRx::Requesting {
                attempt,
                target,
                deadline,
                ..
            }
            | BulkRx::Receiving {
                attempt,
                target,
                deadline,
                ..
            } if deadline <= now => self.retry_bulk(now, attempt, target),
            _ => {}
        }
        if self.next_sweep <= now {
            self.sweep_expired(now);
            self.next_sweep = now + self.cfg.sweep_interval;
        }
        if let (Some(t), Some(d)) = (self.next_dump, self.cfg.dump_interval) {
            if t <= now {
                self.actions.push_back(Action::RequestDump);
                self.next_dump = Some(now + d);
            }
        }
    }

    /// The earliest deadline; the daemon sleeps until then.
    pub fn poll_timeout(&self) -> Option<(Instant, TimerKind)> {
        let mut best: Option<(Instant, TimerKind)> = None;
        let mut consider = |t: Option<Instant>, k: TimerKind| {
            if let Some(t) = t {
                if best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, k));
                }
            }
        };
        consider(self.flush_at, TimerKind::Flush);
        consider(self.serve_at, TimerKind::BulkSend);
        consider(Some(self.next_heartbeat), TimerKind::Heartbeat);
        let repair = self
            .peers
            .values()
            .filter_map(|p| p.cur.as_ref()?.gap.as_ref().map(|g| g.next_nack))
            .min();
        consider(repair, TimerKind::Repair);
        let bulk = match self.bulk {
            BulkRx::Requesting { deadline, .. } | BulkRx::Receiving { deadline, .. } => {
                Some(deadline)
            }
            _ => None,
        };
        consider(bulk, TimerKind::BulkTimeout);
        consider(Some(self.next_sweep), TimerKind::Sweep);
        consider(self.next_dump, TimerKind::Dump);
        best
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn status(&self, now: Instant) -> Status {
        let bulk = match self.bulk {
            BulkRx::Idle => BulkStatus {
                phase: BulkPhase::Idle,
                attempt: 0,
                from: None,
                received: 0,
                count: None,
            },
            BulkRx::Requesting { attempt, .. } => BulkStatus {
                phase: BulkPhase::Requesting,
                attempt,
                from: None,
                received: 0,
                count: None,
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
            },
            BulkRx::Done { from, count } => BulkStatus {
                phase: BulkPhase::Done,
                attempt: 0,
                from: Some(from),
                received: count,
                count: Some(count),
            },
            BulkRx::Failed { attempts } => BulkStatus {
                phase: BulkPhase::Failed,
                attempt: attempts,
                from: None,
                received: 0,
                count: None,
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

    // ---- local side ----

    fn on_local(&mut self, now: Instant, ev: LocalEvent) {
        match ev {
            LocalEvent::New(c) | LocalEvent::Update(c) => self.observe_local(now, c, false),
            LocalEvent::Destroy(c) => {
                let key = TKey::of(&c);
                self.gen += 1;
                self.tombstone(key);
                match self.table.remove(&key) {
                    Some(e) if e.origin == Origin::Local => self.queue(now, key, Op::Delete),
                    Some(_) => {
                        self.counters.peer_conns_expired += 1;
                        self.pending.remove(&key);
                    }
                    None => self.counters.echo_suppressed += 1,
                }
            }
        }
    }

    /// A conn as the kernel reports it: announced if it is news.
    fn observe_local(&mut self, now: Instant, c: Conn, replace: bool) {
        let key = TKey::of(&c);
        self.gen += 1;
        let gen = self.gen;
        let refresh_min = self.cfg.refresh_min;
        let echo_window = self.cfg.echo_window;
        let defer = replace && !self.ready;
        if !replace && !self.table.contains_key(&key) {
            if let Some((t, gone)) = self.removed.get(&key) {
                let mut m = gone.clone();
                m.merge_from(&c);
                if now.saturating_duration_since(*t) < echo_window && replicated_eq(&m, gone) {
                    // The echo of an install that a peer's delete has since taken back.
                    self.counters.echo_suppressed += 1;
                    return;
                }
            }
        }
        let op = match self.table.get_mut(&key) {
            None => {
                self.table.insert(
                    key,
                    Entry {
                        conn: c,
                        seen: now,
                        origin: Origin::Local,
                        gen,
                        unannounced: defer,
                        superseded: None,
                    },
                );
                (!defer).then_some(Op::Insert)
            }
            Some(e) => {
                let echo_of_older = !replace && echoes_superseded(e, &c, now, echo_window);
                let reported_timeout = c.timeout;
                let c_has_timeout = reported_timeout.is_some();
                let merged = if replace {
                    c
                } else {
                    let mut m = e.conn.clone();
                    m.merge_from(&c);
                    m
                };
                let changed = !replicated_eq(&merged, &e.conn);
                if changed && echo_of_older {
                    // The echo of an install we have since replaced.
                    self.counters.echo_suppressed += 1;
                    return;
                }
                if changed || later(now, e, reported_timeout, refresh_min) {
                    // The timeout ages from when it was reported.
                    if replace || c_has_timeout {
                        e.seen = now;
                    }
                    e.conn = merged;
                    e.origin = Origin::Local;
                    e.gen = gen;
                    if defer && !self.pending.contains_key(&key) {
                        e.unannounced = true;
                        None
                    } else {
                        e.unannounced = false;
                        Some(Op::Update)
                    }
                } else {
                    e.gen = gen;
                    if merged.id.is_some() {
                        e.conn.id = merged.id;
                    }
                    None
                }
            }
        };
        match op {
            Some(op) => self.queue(now, key, op),
            None if !replace => self.counters.echo_suppressed += 1,
            None => {}
        }
    }

    fn queue(&mut self, now: Instant, key: TKey, op: Op) {
        use std::collections::btree_map::Entry as E;
        match self.pending.entry(key) {
            E::Vacant(v) => {
                v.insert(op);
                self.pending_bytes += match op {
                    Op::Delete => delete_record_len(&key.conn_key()),
                    _ => self
                        .table
                        .get(&key)
                        .map_or(0, |e| conn_record_len(&e.conn, true)),
                };
            }
            E::Occupied(mut o) => {
                self.counters.collapsed += 1;
                match (*o.get(), op) {
                    // Not announced live, but a bulk may have carried it: the delete goes
                    // out (a delete of an unknown conn costs the receiver nothing).
                    (Op::Insert, Op::Delete) => {
                        o.insert(Op::Delete);
                    }
                    (Op::Insert, _) => {}
                    (Op::Delete, Op::Insert) => {
                        o.insert(Op::Update);
                    }
                    (_, op) => {
                        o.insert(op);
                    }
                }
            }
        }
        if self.pending.is_empty() {
            self.flush_at = None;
            self.pending_bytes = 0;
            return;
        }
        if self.flush_at.is_none() {
            self.flush_at = Some(now + self.cfg.flush_delay);
        }
        if self.pending_bytes >= self.record_budget() && !self.in_snapshot {
            self.flush(now, true);
        }
    }

    fn record_budget(&self) -> usize {
        self.cfg.mtu - OVERHEAD - STREAM_SEQ_LEN
    }

    fn take_tokens(&mut self, now: Instant) -> u32 {
        let pace = self.cfg.pace.as_nanos().max(1);
        let ticks = now.saturating_duration_since(self.refilled).as_nanos() / pace;
        if ticks > 0 {
            let add = u128::from(self.cfg.burst) * ticks;
            self.tokens = (u128::from(self.tokens) + add).min(u128::from(self.cfg.burst)) as u32;
            self.refilled += self.cfg.pace * (ticks.min(u128::from(u32::MAX)) as u32);
        }
        self.tokens
    }

    fn next_refill(&self) -> Instant {
        self.refilled + self.cfg.pace
    }

    /// Sends pending changes, as many datagrams as the pacing allows. Masters go before
    /// related conns (the kernel needs the master to create an expected conn).
    fn flush(&mut self, now: Instant, full_only: bool) {
        if self.pending.is_empty() {
            self.flush_at = None;
            self.pending_bytes = 0;
            return;
        }
        let mut budget = self.take_tokens(now);
        if budget == 0 {
            self.flush_at = Some(self.next_refill().max(now));
            return;
        }
        let cap = self.record_budget();
        // Keys whose records went out (or could not be encoded).
        let mut done: Vec<TKey> = Vec::new();
        // Keys whose records are in the datagram being built.
        let mut staged: Vec<(TKey, Op, bool)> = Vec::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut complete = true;
        let mut unencodable = 0;
        {
            let Replicator {
                pending,
                table,
                stage,
                tx,
                counters,
                ..
            } = self;
            let mut ship =
                |stage: &mut Vec<u8>, staged: &mut Vec<(TKey, Op, bool)>, done: &mut Vec<TKey>| {
                    out.push(tx.stream(stage));
                    stage.clear();
                    for (k, op, has_entry) in staged.drain(..) {
                        match op {
                            Op::Delete => counters.deletes_sent += 1,
                            _ if has_entry => counters.states_sent += 1,
                            _ => {}
                        }
                        done.push(k);
                    }
                };
            stage.clear();
            'passes: for pass in 0..2 {
                for (key, op) in pending.iter() {
                    let entry = table.get(key);
                    let related =
                        *op != Op::Delete && entry.is_some_and(|e| e.conn.master.is_some());
                    if related != (pass == 1) {
                        continue;
                    }
                    let mark = stage.len();
                    if emit_op(stage, key, *op, entry, now).is_err() {
                        stage.truncate(mark);
                        unencodable += 1;
                        done.push(*key);
                        continue;
                    }
                    if stage.len() > cap {
                        // Full: ship what fits, start the next datagram with this record.
                        stage.truncate(mark);
                        ship(stage, &mut staged, &mut done);
                        budget -= 1;
                        if budget == 0 {
                            complete = false;
                            break 'passes;
                        }
                        let _ = emit_op(stage, key, *op, entry, now);
                    }
                    staged.push((*key, *op, entry.is_some()));
                }
            }
            if !stage.is_empty() {
                if full_only {
                    // The rest waits for its deadline (or for more to fill a datagram).
                    complete = false;
                } else {
                    ship(stage, &mut staged, &mut done);
                    budget = budget.saturating_sub(1);
                }
            }
            stage.clear();
            for k in &done {
                pending.remove(k);
            }
        }
        self.counters.unencodable += unencodable;
        self.tokens = budget;
        for bytes in out {
            self.actions.push_back(Action::Send {
                to: Dest::All,
                bytes,
            });
        }
        self.recount_pending();
        self.flush_at = if self.pending.is_empty() {
            None
        } else if full_only && budget > 0 {
            self.flush_at.or(Some(now + self.cfg.flush_delay))
        } else if complete {
            Some(now + self.cfg.flush_delay)
        } else {
            Some(self.next_refill().max(now))
        };
    }

    fn recount_pending(&mut self) {
        self.pending_bytes = self
            .pending
            .iter()
            .map(|(k, op)| match op {
                Op::Delete => delete_record_len(&k.conn_key()),
                _ => self
                    .table
                    .get(k)
                    .map_or(0, |e| conn_record_len(&e.conn, true)),
            })
            .sum();
    }

    fn on_snapshot(&mut self, now: Instant, conns: Vec<Conn>) {
        let since = self.dump_gen.take().unwrap_or(u64::MAX);
        self.in_snapshot = true;
        for c in conns {
            let touched_since_dump = self
                .table
                .get(&TKey::of(&c))
                .is_some_and(|e| since != u64::MAX && e.gen > since);
            if !touched_since_dump {
                self.observe_local(now, c, true);
            }
        }
        self.in_snapshot = false;
        if self.pending_bytes >= self.record_budget() {
            self.flush(now, true);
        }
    }

    fn on_flush(&mut self) {
        self.table.clear();
        self.pending.clear();
        self.pending_bytes = 0;
        self.flush_at = None;
        self.gen += 1;
        self.stage.clear();
        if Record::Clear.emit(&mut self.stage).is_ok() {
            let d = self.tx.stream(&self.stage);
            self.stage.clear();
            self.counters.clears_sent += 1;
            self.actions.push_back(Action::Send {
                to: Dest::All,
                bytes: d,
            });
        }
    }

    fn sweep_expired(&mut self, now: Instant) {
        let grace = self.cfg.expiry_grace;
        let before = self.table.len();
        self.table.retain(|_, e| match e.expiry() {
            Some(t) => t + grace > now,
            None => e.seen + grace > now,
        });
        self.counters.expired += (before - self.table.len()) as u64;
        let window = self.cfg.echo_window;
        while let Some((t, k)) = self.removed_order.front().copied() {
            if now.saturating_duration_since(t) < window {
                break;
            }
            self.removed_order.pop_front();
            if self.removed.get(&k).is_some_and(|(t2, _)| *t2 == t) {
                self.removed.remove(&k);
            }
        }
        for e in self.table.values_mut() {
            if let Some(list) = &mut e.superseded {
                list.retain(|(t, _)| now.saturating_duration_since(*t) < window);
                if list.is_empty() {
                    e.superseded = None;
                }
            }
        }
        let table = &self.table;
        self.pending
            .retain(|k, op| *op == Op::Delete || table.contains_key(k));
    }

    // ---- sending helpers ----

    fn send_control(&mut self, to: Dest, records: &[Record]) {
        self.stage.clear();
        for r in records {
            let _ = r.emit(&mut self.stage);
        }
        let bytes = self.tx.seal(Kind::Control, None, &self.stage);
        self.stage.clear();
        self.actions.push_back(Action::Send { to, bytes });
    }

    fn send_heartbeat(&mut self, to: Dest) {
        let hb = Record::Heartbeat {
            last_stream: self.tx.next_stream - 1,
            ready: self.ready,
            states: u32::try_from(self.table.len()).unwrap_or(u32::MAX),
        };
        self.send_control(to, &[hb]);
    }

    // ---- bulk: requesting side ----

    fn start_bulk(&mut self, now: Instant, attempt: u32, target: Option<NodeId>) {
        let request = (self.rng.next() as u32).max(1);
        self.bulk = BulkRx::Requesting {
            request,
            attempt,
            target,
            deadline: now + self.cfg.bulk_timeout,
        };
        let dest = target
            .and_then(|t| self.peers.get(&t))
            .map_or(Dest::All, |p| Dest::Peer(p.addr));
        let own_only = self.ready;
        self.send_control(
            dest,
            &[Record::BulkRequest {
                target: target.unwrap_or(NodeId(0)),
                request,
                own_only,
            }],
        );
    }

    fn retry_bulk(&mut self, now: Instant, attempt: u32, target: Option<NodeId>) {
        if attempt > self.cfg.bulk_retries {
            self.bulk = BulkRx::Failed { attempts: attempt };
            self.bulk_tombstones.clear();
            self.counters.bulk_failed += 1;
            self.actions
                .push_back(Action::Alarm(Alarm::BulkFailed { attempts: attempt }));
        } else {
            self.counters.bulk_retries += 1;
            // A targeted request that failed is widened to anyone.
            let target = if attempt >= 2 { None } else { target };
            self.start_bulk(now, attempt + 1, target);
        }
    }

    /// Something was lost for good: ask for a bulk sync unless one is under way.
    fn need_resync(&mut self, now: Instant, from: NodeId) {
        if matches!(
            self.bulk,
            BulkRx::Idle | BulkRx::Done { .. } | BulkRx::Failed { .. }
        ) {
            self.start_bulk(now, 1, Some(from));
        }
    }

    fn bulk_start(&mut self, now: Instant, from: NodeId, request: u32) {
        let deadline = now + self.cfg.bulk_timeout;
        match self.bulk {
            BulkRx::Requesting {
                request: r,
                attempt,
                target,
                ..
            } if r == request => {
                self.bulk = BulkRx::Receiving {
                    from,
                    request,
                    attempt,
                    target,
                    received: 0,
                    start_gen: self.gen,
                    deadline,
                };
            }
            BulkRx::Receiving {
                from: f,
                request: r,
                attempt,
                target,
                ..
            } if f == from && r == request => {
                // The sender started over (it heard our request twice).
                self.bulk = BulkRx::Receiving {
                    from,
                    request,
                    attempt,
                    target,
                    received: 0,
                    start_gen: self.gen,
                    deadline,
                };
            }
            _ => {}
        }
    }

    fn bulk_end(&mut self, now: Instant, from: NodeId, request: u32, count: u64) {
        let BulkRx::Receiving {
            from: f,
            request: r,
            attempt,
            target,
            received,
            start_gen,
            ..
        } = self.bulk
        else {
            return;
        };
        if f != from || r != request {
            return;
        }
        if count != received {
            self.counters.bulk_count_mismatch += 1;
            self.retry_bulk(now, attempt, target);
            return;
        }
        // What the sender had announced before and did not send now is gone on the sender.
        let stale: Vec<TKey> = self
            .table
            .iter()
            .filter(|(_, e)| e.origin == Origin::Peer(from) && e.gen < start_gen)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(e) = self.table.remove(&k) {
                self.remember_removed(now, k, e.conn);
            }
            self.pending.remove(&k);
            self.counters.bulk_swept += 1;
            self.push_remove(k);
        }
        self.flush_batches();
        self.counters.bulk_completed += 1;
        self.bulk = BulkRx::Done { from, count };
        self.bulk_tombstones.clear();
        if !self.ready {
            self.ready = true;
            self.actions.push_back(Action::ReadyChanged(true));
            self.announce_deferred(now);
        }
    }

    /// Announces the conns of the startup dump that the first bulk did not bring.
    fn announce_deferred(&mut self, now: Instant) {
        let keys: Vec<TKey> = self
            .table
            .iter_mut()
            .filter(|(_, e)| e.unannounced)
            .map(|(k, e)| {
                e.unannounced = false;
                *k
            })
            .collect();
        self.in_snapshot = true;
        for k in keys {
            self.queue(now, k, Op::Insert);
        }
        self.in_snapshot = false;
        if !self.pending.is_empty() {
            self.flush(now, true);
        }
    }

    // ---- bulk: serving side ----

    fn queue_serve(&mut self, now: Instant, to: NodeId, request: u32, own_only: bool) {
        if let Some(s) = &mut self.serving {
            if s.to == to {
                if s.request != request {
                    *s = Serve {
                        to,
                        request,
                        own_only,
                        pass: 0,
                        cursor: None,
                        sent: 0,
                        started: false,
                    };
                    self.counters.bulk_requests_served += 1;
                }
                return;
            }
        }
        if let Some(q) = self.serve_queue.iter_mut().find(|q| q.0 == to) {
            *q = (to, request, own_only);
            return;
        }
        self.serve_queue.push_back((to, request, own_only));
        if self.serving.is_none() {
            self.next_serve(now);
        }
    }

    fn next_serve(&mut self, now: Instant) {
        self.serving = self
            .serve_queue
            .pop_front()
            .map(|(to, request, own_only)| Serve {
                to,
                request,
                own_only,
                pass: 0,
                cursor: None,
                sent: 0,
                started: false,
            });
        if self.serving.is_some() {
            self.counters.bulk_requests_served += 1;
            self.serve_at = Some(now);
        }
    }

    fn serve_tick(&mut self, now: Instant) {
        // Live changes go first.
        if !self.pending.is_empty() && self.flush_at.is_some_and(|t| t <= now) {
            self.flush_at = None;
            self.flush(now, false);
        }
        let mut budget = self.take_tokens(now);
        let cap = self.record_budget();
        let mut out = Vec::new();
        let mut finished = false;
        {
            let Replicator {
                serving,
                table,
                stage,
                tx,
                counters,
                ..
            } = self;
            let Some(s) = serving.as_mut() else {
                return;
            };
            while budget > 0 && !finished {
                stage.clear();
                if !s.started {
                    let _ = Record::BulkStart {
                        requester: s.to,
                        request: s.request,
                    }
                    .emit(stage);
                    s.started = true;
                }
                let mut full = false;
                while s.pass < 2 && !full {
                    let range = match s.cursor {
                        Some(c) => table.range((Bound::Excluded(c), Bound::Unbounded)),
                        None => table.range::<TKey, _>(..),
                    };
                    let mut exhausted = true;
                    for (key, e) in range {
                        if e.conn.master.is_some() != (s.pass == 1)
                            || (s.own_only && e.origin != Origin::Local)
                        {
                            s.cursor = Some(*key);
                            continue;
                        }
                        let mark = stage.len();
                        match wire::emit_conn_record(
                            stage,
                            rtype::BULK_STATE,
                            &e.conn,
                            e.remaining(now),
                        ) {
                            Ok(()) if stage.len() <= cap => {
                                s.sent += 1;
                                counters.bulk_states_sent += 1;
                                s.cursor = Some(*key);
                            }
                            Ok(()) => {
                                stage.truncate(mark);
                                full = true;
                                exhausted = false;
                                break;
                            }
                            Err(_) => {
                                stage.truncate(mark);
                                counters.unencodable += 1;
                                s.cursor = Some(*key);
                            }
                        }
                    }
                    if exhausted {
                        s.pass += 1;
                        s.cursor = None;
                    }
                }
                if s.pass >= 2 {
                    let mark = stage.len();
                    let _ = Record::BulkEnd {
                        requester: s.to,
                        request: s.request,
                        count: s.sent,
                    }
                    .emit(stage);
                    if stage.len() <= cap {
                        finished = true;
                    } else {
                        stage.truncate(mark);
                    }
                }
                out.push(tx.stream(stage));
                budget -= 1;
                stage.clear();
            }
        }
        self.tokens = budget;
        for bytes in out {
            self.actions.push_back(Action::Send {
                to: Dest::All,
                bytes,
            });
        }
        if finished {
            self.serving = None;
            self.next_serve(now);
        } else {
            self.serve_at = Some(self.next_refill().max(now));
        }
    }

    // ---- peers ----

    fn on_peer_up(&mut self, now: Instant, addr: SocketAddr) {
        for p in self.peers.values_mut().filter(|p| p.addr == addr) {
            p.down = false;
        }
        self.send_heartbeat(Dest::Peer(addr));
        match self.bulk {
            BulkRx::Failed { .. } => self.start_bulk(now, 1, None),
            BulkRx::Requesting {
                request, target, ..
            } => {
                let own_only = self.ready;
                self.send_control(
                    Dest::Peer(addr),
                    &[Record::BulkRequest {
                        target: target.unwrap_or(NodeId(0)),
                        request,
                        own_only,
                    }],
                )
            }
            _ => {}
        }
    }

    fn on_peer_down(&mut self, now: Instant, addr: SocketAddr) {
        let mut nodes = Vec::new();
        for (n, p) in self.peers.iter_mut().filter(|(_, p)| p.addr == addr) {
            p.down = true;
            nodes.push(*n);
        }
        if let BulkRx::Receiving {
            from,
            attempt,
            target,
            ..
        } = self.bulk
        {
            if nodes.contains(&from) {
                self.retry_bulk(now, attempt, target);
            }
        }
    }

    fn reject(&mut self, reason: RejectReason) {
        *self.counters.rejected.entry(reason).or_default() += 1;
    }

    /// [`Input::Datagram`] without copying the bytes.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.last_now = now;
        self.counters.datagrams_received += 1;
        self.counters.bytes_received += bytes.len() as u64;
        let hdr = match Header::decode(bytes) {
            Ok(h) => h,
            Err(e) => return self.reject(e.into()),
        };
        if hdr.key_id != self.tx.sealer.key_id() {
            return self.reject(RejectReason::WrongKey);
        }
        if hdr.node == self.cfg.node && hdr.epoch == self.cfg.epoch {
            self.counters.own_looped += 1;
            return;
        }
        if let Some(p) = self.peers.get(&hdr.node) {
            match &p.cur {
                Some(s) if s.epoch == hdr.epoch => match s.window.check(hdr.seq) {
                    Ok(()) => {}
                    Err(Replay::Duplicate) => return self.reject(RejectReason::Replay),
                    Err(Replay::TooOld) => return self.reject(RejectReason::TooOld),
                },
                _ if p.retired.contains(&hdr.epoch) => {
                    return self.reject(RejectReason::StaleEpoch)
                }
                _ => {}
            }
        }
        let mut buf = std::mem::take(&mut self.rx);
        buf.clear();
        buf.extend_from_slice(bytes);
        match self.tx.sealer.open(&mut buf) {
            Ok(end) => {
                let body = buf.get(HEADER_LEN..end).unwrap_or(&[]);
                self.authentic(now, from, &hdr, body);
            }
            Err(_) => self.reject(RejectReason::BadSeal),
        }
        self.rx = buf;
        self.flush_batches();
    }

    fn authentic(&mut self, now: Instant, from: SocketAddr, hdr: &Header, body: &[u8]) {
        if hdr.node == self.cfg.node {
            // Another node with our id, or our own datagrams from a previous life replayed:
            // they cannot be told apart, so this is only counted.
            return self.reject(RejectReason::OwnNodeId);
        }
        if !self.peers.contains_key(&hdr.node) {
            if self.peers.len() >= self.cfg.max_peers {
                return self.reject(RejectReason::TooManyPeers);
            }
            self.peers.insert(
                hdr.node,
                Peer {
                    addr: from,
                    last_seen: now,
                    down: false,
                    cur: None,
                    retired: VecDeque::new(),
                    probe: None,
                    held: Vec::new(),
                    restarts: 0,
                },
            );
        }
        let node = hdr.node;
        // Only a datagram of the confirmed epoch (fresh in its window) moves the peer's
        // address: a replay from elsewhere must not redirect our replies.
        let confirmed = match self.peers.get_mut(&node) {
            Some(p) => match &mut p.cur {
                Some(s) if s.epoch == hdr.epoch => {
                    let _ = s.window.accept(hdr.seq);
                    p.addr = from;
                    p.last_seen = now;
                    p.down = false;
                    true
                }
                _ => false,
            },
            None => return,
        };
        if confirmed {
            self.dispatch(now, node, hdr.kind, body, false);
        } else {
            self.unconfirmed(now, from, hdr, body);
        }
    }

    /// An authentic datagram from an epoch not (yet) confirmed.
    fn unconfirmed(&mut self, now: Instant, from: SocketAddr, hdr: &Header, body: &[u8]) {
        let node = hdr.node;
        let me = self.cfg.node;
        let mut confirm = None;
        if hdr.kind == Kind::Control {
            let outstanding = self.peers.get(&node).and_then(|p| p.probe.map(|(n, _)| n));
            for rec in Records::new(body) {
                match rec {
                    Ok(Record::Probe { target, nonce }) if target == me => {
                        self.reply_probe(from, node, nonce)
                    }
                    Ok(Record::ProbeReply {
                        target,
                        nonce,
                        last_stream,
                    }) if target == me && Some(nonce) == outstanding => confirm = Some(last_stream),
                    _ => {}
                }
            }
        }
        if let Some(last_stream) = confirm {
            if let Some(p) = self.peers.get_mut(&node) {
                p.addr = from;
                p.last_seen = now;
                p.down = false;
            }
            self.confirm(now, node, hdr.epoch, hdr.seq, last_stream);
            self.dispatch(now, node, hdr.kind, body, true);
            self.release_held(now, node);
            return;
        }
        let probe_interval = self.cfg.probe_interval;
        let max_held = self.cfg.max_held;
        let Some(p) = self.peers.get_mut(&node) else {
            return;
        };
        let overflow = p.held.len() >= max_held;
        if !overflow {
            p.held.push(Held {
                epoch: hdr.epoch,
                seq: hdr.seq,
                kind: hdr.kind,
                body: body.to_vec(),
            });
        }
        let due = p
            .probe
            .is_none_or(|(_, sent)| now.saturating_duration_since(sent) >= probe_interval);
        if overflow {
            self.reject(RejectReason::Unconfirmed);
        }
        if due {
            let nonce = self.rng.next();
            if let Some(p) = self.peers.get_mut(&node) {
                p.probe = Some((nonce, now));
            }
            self.counters.probes_sent += 1;
            self.send_control(
                Dest::Peer(from),
                &[Record::Probe {
                    target: node,
                    nonce,
                }],
            );
        }
    }

    fn reply_probe(&mut self, to: SocketAddr, node: NodeId, nonce: u64) {
        let last_stream = self.tx.next_stream - 1;
        self.send_control(
            Dest::Peer(to),
            &[Record::ProbeReply {
                target: node,
                nonce,
                last_stream,
            }],
        );
    }

    /// The peer proved `epoch` live: adopt it.
    fn confirm(&mut self, now: Instant, node: NodeId, epoch: u64, seq: u64, last_stream: u64) {
        let Some(p) = self.peers.get_mut(&node) else {
            return;
        };
        p.probe = None;
        let mut new_peer_epoch = false;
        let mut peer_restarted = false;
        if p.cur.as_ref().is_none_or(|s| s.epoch != epoch) {
            let restarted = match p.cur.take() {
                Some(old) => {
                    p.retired.push_back(old.epoch);
                    true
                }
                None => false,
            };
            // A restarted peer numbers its stream from 1 again: we want all of it. On first
            // contact we start from what is held, or from now.
            let expected = if restarted {
                1
            } else {
                p.held
                    .iter()
                    .filter(|h| h.epoch == epoch && h.kind == Kind::Stream)
                    .filter_map(|h| wire::split_stream(&h.body).ok().map(|(s, _)| s))
                    .min()
                    .unwrap_or(last_stream.saturating_add(1))
                    .min(last_stream.saturating_add(1))
            };
            if restarted {
                p.restarts += 1;
                self.counters.peer_restarts += 1;
                peer_restarted = true;
            }
            p.cur = Some(Stream {
                epoch,
                window: ReplayWindow::new(),
                expected,
                heard: last_stream,
                reorder: BTreeMap::new(),
                gap: None,
                ready: false,
                states: 0,
            });
            new_peer_epoch = true;
        }
        // Held datagrams of other epochs are replays of the past (or of a life the peer has
        // already left): retire those epochs.
        let mut stale = Vec::new();
        p.held.retain(|h| {
            if h.epoch != epoch {
                stale.push(h.epoch);
                false
            } else {
                true
            }
        });
        for e in &stale {
            if !p.retired.contains(e) {
                p.retired.push_back(*e);
            }
        }
        while p.retired.len() > RETIRED_EPOCHS {
            p.retired.pop_front();
        }
        if let Some(s) = &mut p.cur {
            let _ = s.window.accept(seq);
        }
        for _ in &stale {
            self.reject(RejectReason::StaleEpoch);
        }
        self.update_gap(now, node);
        if new_peer_epoch {
            match self.bulk {
                // Someone new to ask.
                BulkRx::Failed { .. } => self.start_bulk(now, 1, None),
                // The sender of our bulk restarted: that transfer will never end.
                BulkRx::Receiving {
                    from,
                    attempt,
                    target,
                    ..
                } if from == node && peer_restarted => self.retry_bulk(now, attempt, target),
                _ => {}
            }
        }
    }

    fn release_held(&mut self, now: Instant, node: NodeId) {
        let Some(p) = self.peers.get_mut(&node) else {
            return;
        };
        let mut held = std::mem::take(&mut p.held);
        held.sort_by_key(|h| h.seq);
        for h in held {
            let fresh = match self.peers.get_mut(&node).and_then(|p| p.cur.as_mut()) {
                Some(s) if s.epoch == h.epoch => s.window.accept(h.seq),
                _ => Err(Replay::TooOld),
            };
            match fresh {
                Ok(()) => self.dispatch(now, node, h.kind, &h.body, true),
                Err(Replay::Duplicate) => self.reject(RejectReason::Replay),
                Err(Replay::TooOld) => self.reject(RejectReason::TooOld),
            }
        }
    }

    fn dispatch(&mut self, now: Instant, node: NodeId, kind: Kind, body: &[u8], held: bool) {
        match kind {
            Kind::Control => self.control(now, node, body, held),
            Kind::Stream => match wire::split_stream(body) {
                Ok((s, records)) => self.stream_arrival(now, node, s, records),
                Err(_) => self.counters.malformed_records += 1,
            },
        }
    }

    fn control(&mut self, now: Instant, node: NodeId, body: &[u8], held: bool) {
        let me = self.cfg.node;
        for rec in Records::new(body) {
            match rec {
                Ok(Record::Heartbeat {
                    last_stream,
                    ready,
                    states,
                }) => {
                    if let Some(s) = self.stream_mut(node) {
                        s.heard = s.heard.max(last_stream);
                        s.ready = ready;
                        s.states = states;
                    }
                    self.update_gap(now, node);
                }
                Ok(Record::Nack {
                    target,
                    epoch,
                    first,
                    last,
                }) if target == me && epoch == self.cfg.epoch => {
                    self.counters.nacks_received += 1;
                    self.serve_nack(node, first, last);
                }
                Ok(Record::Gone {
                    target,
                    epoch,
                    first_available,
                }) if target == me => self.on_gone(now, node, epoch, first_available),
                Ok(Record::BulkRequest {
                    target,
                    request,
                    own_only,
                }) if target == me || target.0 == 0 => {
                    self.queue_serve(now, node, request, own_only)
                }
                Ok(Record::Probe { target, nonce }) if target == me && !held => {
                    if let Some(addr) = self.peers.get(&node).map(|p| p.addr) {
                        self.reply_probe(addr, node, nonce);
                    }
                }
                Ok(Record::ProbeReply { target, nonce, .. }) if target == me && !held => {
                    // A re-probe (after a replay of an old epoch) answered from the epoch we
                    // already trust: forget the held replays.
                    let matches = self
                        .peers
                        .get(&node)
                        .is_some_and(|p| p.probe.is_some_and(|(n, _)| n == nonce));
                    if matches {
                        let epoch = self.stream_mut(node).map(|s| s.epoch);
                        if let Some(epoch) = epoch {
                            let last = self.stream_mut(node).map_or(0, |s| s.heard);
                            self.confirm(now, node, epoch, 0, last);
                        }
                    }
                }
                Ok(Record::Unknown { .. }) => self.counters.unknown_records += 1,
                Ok(r) if r.is_state() => self.counters.unexpected_records += 1,
                Ok(_) => {}
                Err(_) => self.counters.malformed_records += 1,
            }
        }
    }

    fn stream_mut(&mut self, node: NodeId) -> Option<&mut Stream> {
        self.peers.get_mut(&node)?.cur.as_mut()
    }

    fn stream_arrival(&mut self, now: Instant, node: NodeId, seq: u64, records: &[u8]) {
        let reorder_limit = self.cfg.reorder_limit;
        let nack_delay = self.cfg.nack_delay;
        let Some(s) = self.stream_mut(node) else {
            return;
        };
        if seq < s.expected || s.reorder.contains_key(&seq) {
            self.counters.duplicate_stream += 1;
            return;
        }
        s.heard = s.heard.max(seq);
        if seq == s.expected {
            s.expected = s.expected.saturating_add(1);
            if let Some(g) = &mut s.gap {
                // Progress: the repair works; ask for the rest soon.
                g.tries = 0;
                g.next_nack = g.next_nack.min(now + nack_delay);
            }
            self.apply(now, node, records);
            self.drain(now, node);
        } else if s.reorder.len() >= reorder_limit {
            s.reorder.insert(seq, records.to_vec());
            self.give_up(now, node, None);
        } else {
            s.reorder.insert(seq, records.to_vec());
        }
        self.update_gap(now, node);
    }

    /// Applies held datagrams that are now in order.
    fn drain(&mut self, now: Instant, node: NodeId) {
        loop {
            let Some(s) = self.stream_mut(node) else {
                return;
            };
            let expected = s.expected;
            // Anything below expected is obsolete (skipped over by a give-up).
            while s
                .reorder
                .first_key_value()
                .is_some_and(|(k, _)| *k < expected)
            {
                s.reorder.pop_first();
            }
            let Some(records) = s.reorder.remove(&expected) else {
                return;
            };
            s.expected = s.expected.saturating_add(1);
            self.apply(now, node, &records);
        }
    }

    fn update_gap(&mut self, now: Instant, node: NodeId) {
        let delay = self.cfg.nack_delay;
        if let Some(s) = self.stream_mut(node) {
            if s.expected <= s.heard {
                if s.gap.is_none() {
                    s.gap = Some(Gap {
                        next_nack: now + delay,
                        tries: 0,
                    });
                }
            } else {
                s.gap = None;
            }
        }
    }

    fn repair_timers(&mut self, now: Instant) {
        let due: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.cur
                    .as_ref()
                    .and_then(|s| s.gap.as_ref())
                    .is_some_and(|g| g.next_nack <= now)
            })
            .map(|(n, _)| *n)
            .collect();
        for node in due {
            let retries = self.cfg.repair_retries;
            let repair_timeout = self.cfg.repair_timeout;
            let span = self.cfg.history as u64;
            let Some(p) = self.peers.get_mut(&node) else {
                continue;
            };
            let addr = p.addr;
            let Some(s) = p.cur.as_mut() else {
                continue;
            };
            let Some(g) = s.gap.as_mut() else {
                continue;
            };
            if g.tries >= retries {
                self.give_up(now, node, None);
                self.update_gap(now, node);
                continue;
            }
            g.tries += 1;
            g.next_nack = now + repair_timeout;
            let first = s.expected;
            let last = s
                .reorder
                .first_key_value()
                .map_or(s.heard, |(k, _)| k.saturating_sub(1))
                .min(first.saturating_add(span - 1));
            let epoch = s.epoch;
            self.counters.nacks_sent += 1;
            self.send_control(
                Dest::Peer(addr),
                &[Record::Nack {
                    target: node,
                    epoch,
                    first,
                    last,
                }],
            );
        }
    }

    /// The missing datagrams will not come: skip them (to `upto`, or to what is held next),
    /// apply what is held, and ask the peer for its table.
    fn give_up(&mut self, now: Instant, node: NodeId, upto: Option<u64>) {
        let Some(s) = self.stream_mut(node) else {
            return;
        };
        let first = s.expected;
        let to = upto.unwrap_or_else(|| {
            s.reorder
                .first_key_value()
                .map_or(s.heard.saturating_add(1), |(k, _)| *k)
        });
        if to <= first {
            return;
        }
        s.expected = to;
        s.gap = None;
        self.counters.gaps_unrepaired += 1;
        self.actions
            .push_back(Action::Alarm(Alarm::GapUnrepairable {
                peer: node,
                first,
                last: to - 1,
            }));
        self.drain(now, node);
        self.update_gap(now, node);
        self.need_resync(now, node);
    }

    fn on_gone(&mut self, now: Instant, node: NodeId, epoch: u64, first_available: u64) {
        let applies = self
            .stream_mut(node)
            .is_some_and(|s| s.epoch == epoch && s.expected < first_available);
        if applies {
            self.give_up(now, node, Some(first_available));
        }
    }

    fn serve_nack(&mut self, node: NodeId, first: u64, last: u64) {
        let Some(addr) = self.peers.get(&node).map(|p| p.addr) else {
            return;
        };
        let oldest = self.tx.oldest_kept();
        if first < oldest {
            self.counters.gone_sent += 1;
            self.send_control(
                Dest::Peer(addr),
                &[Record::Gone {
                    target: node,
                    epoch: self.cfg.epoch,
                    first_available: oldest,
                }],
            );
        }
        let from = first.max(oldest);
        let to = last
            .min(self.tx.next_stream - 1)
            .min(from.saturating_add(MAX_RETRANSMIT_PER_NACK - 1));
        for s in from..=to {
            if let Some(bytes) = self.tx.retransmit(s) {
                self.counters.retransmits += 1;
                self.actions.push_back(Action::Send {
                    to: Dest::Peer(addr),
                    bytes,
                });
            }
        }
    }

    // ---- applying a peer's stream ----

    fn apply(&mut self, now: Instant, node: NodeId, records: &[u8]) {
        let me = self.cfg.node;
        for rec in Records::new(records) {
            match rec {
                Ok(Record::Insert(c)) | Ok(Record::Update(c)) => {
                    self.receive_state(now, node, c, false)
                }
                Ok(Record::BulkState(c)) => self.receive_state(now, node, c, true),
                Ok(Record::Delete(k)) => self.receive_delete(TKey::from_key(&k)),
                Ok(Record::Clear) => self.receive_clear(node),
                Ok(Record::BulkStart { requester, request }) if requester == me => {
                    self.bulk_start(now, node, request)
                }
                Ok(Record::BulkEnd {
                    requester,
                    request,
                    count,
                }) if requester == me => {
                    self.flush_batches();
                    self.bulk_end(now, node, request, count)
                }
                Ok(Record::BulkStart { .. }) | Ok(Record::BulkEnd { .. }) => {}
                Ok(Record::Unknown { .. }) => self.counters.unknown_records += 1,
                Ok(_) => self.counters.unexpected_records += 1,
                Err(_) => self.counters.malformed_records += 1,
            }
        }
        // Batches go out at the end of the whole datagram (with everything it released from
        // the reorder buffer): one install per conn however often it changed meanwhile.
    }

    fn receive_state(&mut self, now: Instant, node: NodeId, mut c: Conn, bulk: bool) {
        c.id = None;
        self.gen += 1;
        let key = TKey::of(&c);
        if bulk {
            // Bulk states are for the requester only (they travel in the sender's stream to
            // everyone); they count even when a delete we saw since makes them moot.
            match &mut self.bulk {
                BulkRx::Receiving {
                    from,
                    received,
                    deadline,
                    ..
                } if *from == node => {
                    *received += 1;
                    *deadline = now + self.cfg.bulk_timeout;
                }
                _ => {
                    self.counters.bulk_states_ignored += 1;
                    return;
                }
            }
            if self.bulk_tombstones.contains(&key) {
                self.counters.bulk_states_ignored += 1;
                return;
            }
            self.counters.bulk_states_received += 1;
        }
        self.counters.states_received += 1;
        let refresh_min = self.cfg.refresh_min;
        match self.table.get_mut(&key) {
            // A bulk fills in what we lack; it never overrides a conn this node's own kernel
            // reported and announced (we handle its traffic: our view is the live one).
            Some(e) if bulk && e.origin == Origin::Local && !e.unannounced => {
                e.gen = self.gen;
                self.counters.unchanged_received += 1;
            }
            Some(e) if replicated_eq(&e.conn, &c) && !later(now, e, c.timeout, refresh_min) => {
                e.gen = self.gen;
                e.unannounced = false;
                self.counters.unchanged_received += 1;
                self.pending.remove(&key);
            }
            _ => {
                // The peer's snapshot is newer than a local change not sent yet.
                self.pending.remove(&key);
                self.removed.remove(&key);
                let entry = Entry {
                    conn: c.clone(),
                    seen: now,
                    origin: Origin::Peer(node),
                    gen: self.gen,
                    unannounced: false,
                    superseded: None,
                };
                let window = self.cfg.echo_window;
                match self.table.insert(key, entry) {
                    Some(old) if matches!(old.origin, Origin::Peer(_)) => {
                        // Its echo may still be on its way from the kernel.
                        let mut list = old.superseded.unwrap_or_default();
                        list.retain(|(t, _)| now.saturating_duration_since(*t) < window);
                        list.push_back((now, old.conn));
                        while list.len() > MAX_SUPERSEDED {
                            list.pop_front();
                        }
                        if let Some(e) = self.table.get_mut(&key) {
                            e.superseded = Some(list);
                        }
                    }
                    _ => {}
                }
                self.push_install(c);
            }
        }
    }

    fn receive_delete(&mut self, key: TKey) {
        let now = self.last_now;
        self.gen += 1;
        self.tombstone(key);
        self.counters.deletes_received += 1;
        // A pending local change is overtaken; a pending delete of our own still has to
        // reach the peers that heard our announcement.
        if self.pending.get(&key).is_some_and(|op| *op != Op::Delete) {
            self.pending.remove(&key);
        }
        if let Some(e) = self.table.remove(&key) {
            self.remember_removed(now, key, e.conn);
            self.push_remove(key);
        }
    }

    fn remember_removed(&mut self, now: Instant, key: TKey, conn: Conn) {
        let window = self.cfg.echo_window;
        while let Some((t, k)) = self.removed_order.front().copied() {
            if now.saturating_duration_since(t) < window
                && self.removed_order.len() < MAX_REMEMBERED_REMOVES
            {
                break;
            }
            self.removed_order.pop_front();
            if self.removed.get(&k).is_some_and(|(t2, _)| *t2 == t) {
                self.removed.remove(&k);
            }
        }
        self.removed.insert(key, (now, conn));
        self.removed_order.push_back((now, key));
    }

    fn receive_clear(&mut self, node: NodeId) {
        self.gen += 1;
        self.counters.clears_received += 1;
        let keys: Vec<TKey> = self
            .table
            .iter()
            .filter(|(_, e)| e.origin == Origin::Peer(node))
            .map(|(k, _)| *k)
            .collect();
        let now = self.last_now;
        for k in keys {
            if let Some(e) = self.table.remove(&k) {
                self.remember_removed(now, k, e.conn);
            }
            self.pending.remove(&k);
            self.tombstone(k);
            self.push_remove(k);
        }
    }

    fn tombstone(&mut self, key: TKey) {
        if matches!(
            self.bulk,
            BulkRx::Requesting { .. } | BulkRx::Receiving { .. }
        ) {
            self.bulk_tombstones.insert(key);
        }
    }

    fn push_install(&mut self, c: Conn) {
        if !self.removes.is_empty() {
            let r = std::mem::take(&mut self.removes);
            self.actions
                .push_back(Action::Remove(r.iter().map(TKey::conn_key).collect()));
        }
        let key = TKey::of(&c);
        match self.install_idx.get(&key) {
            Some(&i) if i < self.installs.len() => self.installs[i] = c,
            _ => {
                self.counters.installs += 1;
                self.install_idx.insert(key, self.installs.len());
                self.installs.push(c);
            }
        }
    }

    fn push_remove(&mut self, k: TKey) {
        if !self.installs.is_empty() {
            self.install_idx.clear();
            let i = std::mem::take(&mut self.installs);
            self.actions.push_back(Action::Install(i));
        }
        self.counters.removes += 1;
        self.removes.push(k);
    }

    fn flush_batches(&mut self) {
        if !self.installs.is_empty() {
            self.install_idx.clear();
            let i = std::mem::take(&mut self.installs);
            self.actions.push_back(Action::Install(i));
        }
        if !self.removes.is_empty() {
            let r = std::mem::take(&mut self.removes);
            self.actions
                .push_back(Action::Remove(r.iter().map(TKey::conn_key).collect()));
        }
    }
}

/// True if the local event `ev` says nothing that a recently superseded install of ours did
/// not say: it is that install's echo.
fn echoes_superseded(e: &Entry, ev: &Conn, now: Instant, window: Duration) -> bool {
    let Some(list) = &e.superseded else {
        return false;
    };
    list.iter()
        .filter(|(t, _)| now.saturating_duration_since(*t) < window)
        .any(|(_, installed)| {
            let mut m = installed.clone();
            m.merge_from(ev);
            replicated_eq(&m, installed)
        })
}

/// True if a report with `timeout` seconds left now pushes the entry's expiry later by more
/// than the refresh slack (max(`refresh_min`, timeout / 4)).
fn later(now: Instant, e: &Entry, timeout: Option<u32>, refresh_min: Duration) -> bool {
    let Some(t) = timeout else {
        return false;
    };
    let t = Duration::from_secs(u64::from(t));
    let Some(new) = now.checked_add(t) else {
        return false;
    };
    match e.expiry() {
        None => true,
        Some(old) => old
            .checked_add(refresh_min.max(t / 4))
            .is_some_and(|o| new > o),
    }
}

fn emit_op(
    stage: &mut Vec<u8>,
    key: &TKey,
    op: Op,
    entry: Option<&Entry>,
    now: Instant,
) -> Result<(), EncodeError> {
    match (op, entry) {
        (Op::Delete, _) => wire::emit_delete(stage, &key.conn_key()),
        (Op::Insert, Some(e)) => {
            wire::emit_conn_record(stage, rtype::INSERT, &e.conn, e.remaining(now))
        }
        (Op::Update, Some(e)) => {
            wire::emit_conn_record(stage, rtype::UPDATE, &e.conn, e.remaining(now))
        }
        (_, None) => Ok(()),
    }
}

// Keep the constant referenced (the minimum MTU leaves room for the largest record).
const _: () = assert!(MIN_MTU >= OVERHEAD + STREAM_SEQ_LEN + MAX_RECORD_LEN);
