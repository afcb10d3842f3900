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
//!   origin's live conn. Only conns this node announced itself are deleted cluster-wide. The
//!   DESTROY of a remove we did is recognised too when a peer's version was installed again
//!   since (the entry stays), and so are the echoes of every version installed before a
//!   remove;
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
//!
//! # Layout
//! One [`Replicator`] behind one API, its machinery split by concern (as quinn-proto splits its
//! `Connection`); each module adds an `impl Replicator` block for its part:
//! - `api`: what the daemon and the engine exchange ([`Input`], [`Action`], [`Alarm`], ...);
//! - `config`: [`Config`], its defaults and validation;
//! - `status`: [`Status`], [`Counters`], [`RejectReason`];
//! - `table`: table entries, local kernel events and dumps, echo suppression, expiry;
//! - `tx`: the pending map, batching into stream datagrams, pacing, sealing, history;
//! - `bulk`: bulk sync, requesting side (retries, readiness);
//! - `serve`: bulk sync, serving side;
//! - `peers`: peers, epochs and the probe challenge, up/down hints;
//! - `rx`: datagram checks before and after decryption, control records;
//! - `repair`: a peer's stream in order, gaps, NACK / GONE, retransmission;
//! - `apply`: a peer's records into the table and the kernel's Install / Remove batches;
//! - `barrier`: planned hand-overs (the sync barrier, the hand-over notice);
//! - `quiet`: NEW events left while a non-forwarding node installs a bulk sync.

mod api;
mod apply;
mod barrier;
mod bulk;
mod config;
mod peers;
mod pending;
mod quiet;
mod repair;
mod rx;
mod serve;
mod status;
mod table;
mod tx;

pub use api::{Action, Alarm, Dest, Input, LocalEvent, TimerKind};
pub use config::{Config, ConfigError, MAX_MTU, MIN_MTU};
pub use status::{BulkPhase, BulkStatus, Counters, PeerStatus, RejectReason, ServeStatus, Status};
pub use table::{replicated_eq, REPLICATED_STATUS, REPLICATED_TCP_FLAGS};

use crate::key::{FastHash, TKey};
use crate::model::Conn;
use crate::wire::NodeId;
use apply::Removed;
use bulk::BulkRx;
use peers::Peer;
use serve::Serve;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};
use table::Entry;
use tx::Tx;

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
///
/// The fields are grouped by the module that owns them; every module may read the others'.
pub struct Replicator {
    cfg: Config,
    rng: SplitMix64,
    /// The `now` of the call being handled.
    last_now: Instant,
    actions: VecDeque<Action>,
    counters: Counters,

    // table (table.rs): the table, and when dumps and events touched it.
    table: BTreeMap<TKey, Entry>,
    /// Modification counter: every change to the table takes the next value.
    gen: u64,
    dump_gen: Option<u64>,
    in_snapshot: bool,
    next_sweep: Instant,
    next_dump: Option<Instant>,

    // tx (tx.rs): what waits to be sent, and the pacing budget.
    tx: Tx,
    /// Records of the stream datagram being built.
    stage: Vec<u8>,
    pending: pending::Pending,
    pending_bytes: usize,
    flush_at: Option<Instant>,
    tokens: u32,
    refilled: Instant,
    next_heartbeat: Instant,
    /// A heartbeat soon after the stream goes quiet (see [`Replicator::stream_sent`]).
    tail_heartbeat: Option<Instant>,

    // bulk (bulk.rs): our own bulk request and readiness.
    bulk: BulkRx,
    ready: bool,
    /// The wait after the next failed bulk attempt.
    bulk_backoff: Duration,
    /// BulkFailed was raised and no bulk completed since (nor did a Resync start over).
    bulk_alarmed: bool,
    /// A peer came alive while our current request was out: it may not have heard it.
    bulk_peer_joined: bool,
    /// Keys deleted while our bulk request is under way: a bulk snapshot taken before the
    /// sender heard of the delete must not bring them back.
    bulk_tombstones: BTreeSet<TKey>,
    /// Peers whose stream had a gap we gave up on, and so still owe us their own conns (an
    /// own-only bulk sync), with the modification counter at the give-up: only a bulk from
    /// that peer which starts after it covers what the gap lost.
    resync_owed: BTreeMap<NodeId, u64>,

    // serve (serve.rs): bulk transfers to peers.
    serving: Option<Serve>,
    serve_queue: VecDeque<(NodeId, u32, bool)>,
    serve_at: Option<Instant>,
    /// The last request answered in full, per requester.
    served: BTreeMap<NodeId, u32>,

    // peers (peers.rs, rx.rs, repair.rs): who we hear from, and their streams.
    peers: BTreeMap<NodeId, Peer>,
    /// Receive buffer, reused.
    rx: Vec<u8>,

    // apply (apply.rs): kernel batches being built, and what we removed on a peer's word.
    installs: Vec<Conn>,
    /// Where each conn of `installs` is (not for order: for collapsing).
    install_idx: HashMap<TKey, usize, FastHash>,
    removes: Vec<TKey>,
    /// Conns we removed from the kernel on a peer's word, kept for `echo_window`: their
    /// kernel echoes (of installs just before the remove, and of the remove itself) must not
    /// look like local news.
    removed: BTreeMap<TKey, Removed>,
    removed_order: VecDeque<(Instant, TKey)>,

    // barrier (barrier.rs): our own barrier while it is under way.
    barrier: Option<barrier::OwnBarrier>,

    // quiet (quiet.rs): whether this node forwards, and whether NEW events are off.
    forwarding: bool,
    quiet: bool,
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
    /// the peers for a bulk sync at once (and keeps asking until one completes, see `bulk`).
    /// `seed` drives request ids and probe nonces (the daemon passes OS randomness; tests pass
    /// a fixed seed).
    pub fn new(now: Instant, cfg: Config, seed: u64) -> Result<Replicator, ConfigError> {
        cfg.validate()?;
        let mut r = Replicator {
            tx: Tx::new(&cfg),
            rng: SplitMix64(seed),
            stage: Vec::with_capacity(cfg.mtu),
            rx: Vec::with_capacity(cfg.mtu),
            table: BTreeMap::new(),
            gen: 0,
            dump_gen: None,
            pending: pending::Pending::default(),
            pending_bytes: 0,
            flush_at: None,
            in_snapshot: false,
            tokens: cfg.burst,
            refilled: now,
            serving: None,
            serve_queue: VecDeque::new(),
            serve_at: None,
            served: BTreeMap::new(),
            peers: BTreeMap::new(),
            bulk: BulkRx::Idle,
            bulk_backoff: cfg.bulk_backoff,
            bulk_alarmed: false,
            bulk_peer_joined: false,
            bulk_tombstones: BTreeSet::new(),
            resync_owed: BTreeMap::new(),
            removed: BTreeMap::new(),
            removed_order: VecDeque::new(),
            barrier: None,
            forwarding: false,
            quiet: false,
            ready: false,
            next_heartbeat: now + cfg.heartbeat_interval,
            tail_heartbeat: None,
            next_sweep: now + cfg.sweep_interval,
            next_dump: cfg.dump_interval.map(|d| now + d),
            installs: Vec::new(),
            install_idx: HashMap::with_hasher(FastHash),
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
            Input::Resync => self.on_resync(now),
            Input::Barrier { nonce, handover_to } => self.start_barrier(now, nonce, handover_to),
            Input::Forwarding(f) => self.on_forwarding(f),
        }
        self.update_quiet();
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
            self.send_barrier_when_flushed(now);
        }
        if self.serve_at.is_some_and(|t| t <= now) {
            self.serve_at = None;
            self.serve_tick(now);
        }
        if self.next_heartbeat <= now {
            self.send_heartbeat(Dest::All);
            self.next_heartbeat = now + self.cfg.heartbeat_interval;
        }
        if self.tail_heartbeat.is_some_and(|t| t <= now) {
            self.send_heartbeat(Dest::All);
        }
        self.repair_timers(now);
        self.barrier_timers(now);
        self.probe_timers(now);
        self.bulk_timers(now);
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
        self.update_quiet();
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
        consider(self.tail_heartbeat, TimerKind::Heartbeat);
        let repair = self
            .peers
            .values()
            .filter_map(|p| p.cur.as_ref()?.gap.as_ref().map(|g| g.next_nack))
            .min();
        consider(repair, TimerKind::Repair);
        consider(self.probe_timer(), TimerKind::Probe);
        consider(self.barrier_timer(), TimerKind::Barrier);
        if let Some((t, k)) = self.bulk_timer() {
            consider(Some(t), k);
        }
        consider(Some(self.next_sweep), TimerKind::Sweep);
        consider(self.next_dump, TimerKind::Dump);
        best
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}
