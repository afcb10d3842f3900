//! A deterministic cluster of replicators on a virtual clock: a seeded lossy, duplicating,
//! reordering network with partitions, and a model kernel per node that applies the engine's
//! Install/Remove batches and echoes them back as conntrack events (with the bookkeeping a
//! real kernel and installer add: `CONFIRMED`, `BE_LIBERAL`), as the daemon would feed them.
//!
//! Everything derives from one seed; `Sim::log` keeps the recent events for failure messages.

#![allow(dead_code)]

use statesync::model::{status, tcp_flags, Conn, ConnKey, PortProto, TcpInfo, TcpState, Tuple, L4};
use statesync::{
    replicated_eq, Action, Alarm, Config, Dest, Input, LocalEvent, NodeId, Replicator, SealKey,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

pub const MS: Duration = Duration::from_millis(1);
pub const SEC: Duration = Duration::from_secs(1);

/// SplitMix64: the simulation's only randomness.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Inclusive range.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.next() % 1000 < u64::from(per_mille)
    }
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_micros() as u64;
        lo + Duration::from_micros(if span == 0 {
            0
        } else {
            self.next() % (span + 1)
        })
    }
}

#[derive(Clone, Debug)]
pub struct NetConfig {
    pub delay_min: Duration,
    pub delay_max: Duration,
    pub loss_per_mille: u32,
    pub dup_per_mille: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            delay_min: Duration::from_micros(100),
            delay_max: Duration::from_micros(400),
            loss_per_mille: 0,
            dup_per_mille: 0,
        }
    }
}

pub fn key() -> SealKey {
    SealKey::from_secret(b"the sim cluster's key").unwrap_or_else(|e| panic!("{e}"))
}

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1 + i as u8)), 4567)
}

pub struct Node {
    pub engine: Replicator,
    pub kernel: BTreeMap<ConnKey, Conn>,
    pub alive: bool,
    pub ready: bool,
    pub ready_log: Vec<(Instant, bool)>,
    pub alarms: Vec<Alarm>,
    pub installs: u64,
    pub removes: u64,
    /// Every datagram this node sent (for replay attacks).
    pub sent: Vec<Vec<u8>>,
    pub restarts: u32,
    pub epoch: u64,
    last_echo: Instant,
    /// Barriers completed: nonce, the peers that confirmed, and how many of this node's
    /// conns were missing from those peers' kernels at that moment (should be none).
    pub barriers: Vec<(u64, Vec<NodeId>, usize)>,
    /// Hand-over notices heard: (from, to).
    pub handovers: Vec<(NodeId, NodeId)>,
    /// Listening to NEW events ([`Action::NewEvents`]; if not, the kernel builds none), told
    /// it forwards ([`Input::Forwarding`]), conns opened while not listening (with
    /// `open_on_leave`, one the moment it stops).
    pub new_events: bool,
    pub forwarding: bool,
    pub opened_quiet: u64,
    pub open_on_leave: bool,
}

#[derive(Debug)]
enum Ev {
    Deliver {
        to: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Kernel {
        node: usize,
        epoch: u64,
        ev: LocalEvent,
    },
    Dump {
        node: usize,
        epoch: u64,
    },
}

pub struct Sim {
    pub now: Instant,
    pub start: Instant,
    pub nodes: Vec<Node>,
    pub net: NetConfig,
    pub rng: SimRng,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: BTreeMap<u64, Ev>,
    next_ev: u64,
    /// Links that are cut, as (min, max) node pairs.
    pub cut: BTreeSet<(usize, usize)>,
    /// The cluster's live conns (created by traffic, not yet destroyed), by the node that
    /// handles their traffic.
    pub live: BTreeMap<ConnKey, (usize, Conn)>,
    /// When each live conn was created.
    pub created: BTreeMap<ConnKey, Instant>,
    pub log: VecDeque<String>,
    pub cfg_fn: fn(&mut Config),
    /// Datagrams in flight (for convergence checks).
    pub in_flight: usize,
    pub seed: u64,
    /// SIM_LOG set: log every install and remove too.
    pub log_all: bool,
}

impl Sim {
    pub fn new(seed: u64, n: usize, net: NetConfig, cfg_fn: fn(&mut Config)) -> Sim {
        Sim::with_absent(seed, n, net, cfg_fn, &[])
    }

    /// As [`Sim::new`], but the nodes in `absent` have not started yet: they send nothing and
    /// hear nothing until [`Sim::start`]. Their kernels may be filled meanwhile
    /// ([`Sim::preload`]).
    pub fn with_absent(
        seed: u64,
        n: usize,
        net: NetConfig,
        cfg_fn: fn(&mut Config),
        absent: &[usize],
    ) -> Sim {
        let start = Instant::now();
        let mut sim = Sim {
            now: start,
            start,
            nodes: Vec::new(),
            net,
            rng: SimRng::new(seed),
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_ev: 0,
            cut: BTreeSet::new(),
            live: BTreeMap::new(),
            created: BTreeMap::new(),
            log: VecDeque::new(),
            cfg_fn,
            in_flight: 0,
            seed,
            log_all: std::env::var("SIM_LOG").is_ok(),
        };
        for i in 0..n {
            let epoch = sim.rng.next();
            let engine = sim.make_engine(i, epoch);
            sim.nodes.push(Node {
                engine,
                kernel: BTreeMap::new(),
                alive: true,
                ready: false,
                ready_log: Vec::new(),
                alarms: Vec::new(),
                installs: 0,
                removes: 0,
                sent: Vec::new(),
                restarts: 0,
                epoch,
                last_echo: start,
                barriers: Vec::new(),
                handovers: Vec::new(),
                new_events: true,
                forwarding: false,
                opened_quiet: 0,
                open_on_leave: false,
            });
        }
        for &i in absent {
            sim.nodes[i].alive = false;
            // Not started: what its engine would have said at start never happened.
            while sim.nodes[i].engine.poll_action().is_some() {}
        }
        sim.drain_all();
        sim
    }

    fn make_engine(&mut self, i: usize, epoch: u64) -> Replicator {
        let mut cfg = Config::new(NodeId(i as u32 + 1), epoch, key());
        (self.cfg_fn)(&mut cfg);
        let seed = self.rng.next();
        Replicator::new(self.now, cfg, seed).unwrap_or_else(|e| panic!("config: {e}"))
    }

    pub fn note(&mut self, s: String) {
        let t = self.now.duration_since(self.start).as_micros();
        self.log
            .push_back(format!("{:>9.3}ms {s}", t as f64 / 1000.0));
        let keep = std::env::var("SIM_LOG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        if self.log.len() > keep {
            self.log.pop_front();
        }
    }

    pub fn recent(&self) -> String {
        self.log.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        let id = self.next_ev;
        self.next_ev += 1;
        if matches!(ev, Ev::Deliver { .. }) {
            self.in_flight += 1;
        }
        self.events.insert(id, ev);
        self.queue.push(Reverse((at, id)));
    }

    pub fn linked(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    pub fn partition(&mut self, a: usize, b: usize) {
        self.cut.insert((a.min(b), a.max(b)));
        self.note(format!("partition {a} | {b}"));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
        self.note("heal".into());
    }

    fn send(&mut self, from: usize, to: usize, bytes: &[u8]) {
        if !self.linked(from, to) {
            return;
        }
        if self.rng.chance(self.net.loss_per_mille) {
            if self.log_all {
                self.note(format!("node{} -> node{} lost", from + 1, to + 1));
            }
            return;
        }
        let copies = if self.rng.chance(self.net.dup_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.rng.duration(self.net.delay_min, self.net.delay_max);
            let at = self.now + d;
            self.push(
                at,
                Ev::Deliver {
                    to,
                    from: addr(from),
                    bytes: bytes.to_vec(),
                },
            );
        }
    }

    /// Injects a datagram as if `from` had sent it to `to` (attacks).
    pub fn inject(&mut self, to: usize, from: SocketAddr, bytes: Vec<u8>, after: Duration) {
        let at = self.now + after;
        self.push(at, Ev::Deliver { to, from, bytes });
    }

    /// The kernel's event for a change the daemon made; events reach the daemon in order.
    fn echo(&mut self, node: usize, ev: LocalEvent) {
        if matches!(ev, LocalEvent::New(_)) && !self.nodes[node].new_events {
            return; // Nobody listens to NEW: the kernel builds no event.
        }
        let d = self.rng.duration(Duration::from_micros(50), 2 * MS);
        let at = (self.now + d).max(self.nodes[node].last_echo);
        self.nodes[node].last_echo = at;
        let epoch = self.nodes[node].epoch;
        self.push(at, Ev::Kernel { node, epoch, ev });
    }

    /// Carries out a node's actions.
    pub fn drain(&mut self, i: usize) {
        while let Some(a) = self.nodes[i].engine.poll_action() {
            match a {
                Action::Send { to, bytes } | Action::SendAfterKernel { to, bytes } => {
                    if self.log_all {
                        self.log_datagram(i, &bytes);
                    }
                    self.nodes[i].sent.push(bytes.clone());
                    match to {
                        Dest::All => {
                            for j in 0..self.nodes.len() {
                                if j != i {
                                    self.send(i, j, &bytes);
                                }
                            }
                        }
                        Dest::Peer(a) => {
                            if let Some(j) = (0..self.nodes.len()).find(|j| addr(*j) == a) {
                                self.send(i, j, &bytes);
                            }
                        }
                    }
                }
                Action::Install(conns) => {
                    for c in conns {
                        if self.log_all {
                            self.note(format!("node{} install {}", i + 1, short(&c.key())));
                        }
                        self.nodes[i].installs += 1;
                        let mut k = c.clone();
                        // What the kernel and the installer add.
                        k.status |= status::CONFIRMED;
                        if let Some(t) = &mut k.tcp {
                            t.flags_orig |= tcp_flags::BE_LIBERAL;
                            t.flags_reply |= tcp_flags::BE_LIBERAL;
                        }
                        let existed = self.nodes[i].kernel.insert(c.key(), k.clone()).is_some();
                        self.echo(
                            i,
                            if existed {
                                LocalEvent::Update(k)
                            } else {
                                LocalEvent::New(k)
                            },
                        );
                    }
                }
                Action::Remove(keys) => {
                    for k in keys {
                        if self.log_all {
                            self.note(format!("node{} remove {}", i + 1, short(&k)));
                        }
                        self.nodes[i].removes += 1;
                        if let Some(c) = self.nodes[i].kernel.remove(&k) {
                            self.echo(i, LocalEvent::Destroy(c));
                        }
                    }
                }
                Action::ReadyChanged(r) => {
                    self.nodes[i].ready = r;
                    let now = self.now;
                    self.nodes[i].ready_log.push((now, r));
                    self.note(format!("node{} ready={r}", i + 1));
                }
                Action::Alarm(a) => {
                    self.note(format!("node{} alarm {a}", i + 1));
                    self.nodes[i].alarms.push(a);
                }
                Action::BarrierDone { nonce, confirmed } => {
                    let missing = confirmed
                        .iter()
                        .filter_map(|id| self.nodes.get(id.0 as usize - 1))
                        .map(|peer| {
                            self.nodes[i]
                                .engine
                                .conns()
                                .filter(|c| !peer.kernel.contains_key(&c.key()))
                                .count()
                        })
                        .sum();
                    self.note(format!("node{} barrier {nonce} done: {confirmed:?}", i + 1));
                    self.nodes[i].barriers.push((nonce, confirmed, missing));
                }
                Action::HandoverRequested { from, to } => {
                    self.nodes[i].handovers.push((from, to));
                }
                Action::NewEvents(on) => {
                    let left_forwarding = self.nodes[i].forwarding && !on;
                    assert!(!left_forwarding, "node{} left NEW events forwarding", i + 1);
                    assert_ne!(
                        self.nodes[i].new_events,
                        on,
                        "node{} NewEvents({on}) twice",
                        i + 1
                    );
                    self.note(format!("node{} new events {on}", i + 1));
                    self.nodes[i].new_events = on;
                    let c = random_conn(&mut self.rng);
                    if !on && self.nodes[i].open_on_leave && !self.live.contains_key(&c.key()) {
                        // Traffic the moment the node stops listening: only its kernel knows.
                        self.preload(i, c);
                        self.nodes[i].opened_quiet += 1;
                    }
                    if on {
                        // A dump must follow at once (see Action::NewEvents).
                        let next = self.nodes[i].engine.poll_action();
                        assert!(
                            matches!(next, Some(Action::RequestDump)),
                            "node{}: NewEvents(true) followed by {next:?}",
                            i + 1
                        );
                        let d = self.rng.duration(MS, 5 * MS);
                        let at = self.now + d;
                        let epoch = self.nodes[i].epoch;
                        self.push(at, Ev::Dump { node: i, epoch });
                    }
                }
                Action::RequestDump => {
                    let d = self.rng.duration(MS, 5 * MS);
                    let at = self.now + d;
                    let epoch = self.nodes[i].epoch;
                    self.push(at, Ev::Dump { node: i, epoch });
                }
            }
        }
    }

    fn log_datagram(&mut self, i: usize, bytes: &[u8]) {
        let sealer = statesync::Sealer::new(&key());
        let Ok((h, body)) = sealer.open_datagram(bytes) else {
            return;
        };
        let (stream, recs) = match h.kind {
            statesync::wire::Kind::Stream => match statesync::wire::split_stream(&body) {
                Ok((s, r)) => (Some(s), r.to_vec()),
                Err(_) => return,
            },
            statesync::wire::Kind::Control => (None, body),
        };
        for r in statesync::wire::Records::new(&recs).flatten() {
            let what = match &r {
                statesync::wire::Record::Insert(c) => format!("insert {}", short(&c.key())),
                statesync::wire::Record::Update(c) => format!("update {}", short(&c.key())),
                statesync::wire::Record::BulkState(c) => format!("bulk {}", short(&c.key())),
                statesync::wire::Record::Delete(k) => format!("delete {}", short(k)),
                other => format!("{other:?}"),
            };
            self.note(format!("node{} sends s{stream:?} {what}", i + 1));
        }
    }

    pub fn drain_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
    }

    fn next_time(&self) -> Option<Instant> {
        let q = self.queue.peek().map(|Reverse((t, _))| *t);
        let timers = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.engine.poll_timeout().map(|(t, _)| t))
            .min();
        match (q, timers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs until `until` (virtual).
    pub fn run_until(&mut self, until: Instant) {
        let mut steps = 0u64;
        while let Some(t) = self.next_time() {
            if t > until {
                break;
            }
            steps += 1;
            assert!(steps < 50_000_000, "simulation does not settle");
            self.now = self.now.max(t);
            while let Some(Reverse((t, id))) = self.queue.peek().copied() {
                if t > self.now {
                    break;
                }
                self.queue.pop();
                if let Some(ev) = self.events.remove(&id) {
                    self.event(ev);
                }
            }
            for i in 0..self.nodes.len() {
                if !self.nodes[i].alive {
                    continue;
                }
                if self.nodes[i]
                    .engine
                    .poll_timeout()
                    .is_some_and(|(t, _)| t <= self.now)
                {
                    let now = self.now;
                    self.nodes[i].engine.handle_timeout(now);
                    self.drain(i);
                }
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn event(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Deliver { to, from, bytes } => {
                self.in_flight -= 1;
                if self.nodes[to].alive {
                    self.nodes[to].engine.handle_datagram(now, from, &bytes);
                    self.drain(to);
                }
            }
            Ev::Kernel { node, epoch, ev } => {
                if self.log_all {
                    let (what, c) = match &ev {
                        LocalEvent::New(c) => ("new", c),
                        LocalEvent::Update(c) => ("update", c),
                        LocalEvent::Destroy(c) => ("destroy", c),
                    };
                    let k = short(&c.key());
                    self.note(format!("node{} kernel echo {what} {k}", node + 1));
                }
                if self.nodes[node].alive && self.nodes[node].epoch == epoch {
                    self.nodes[node].engine.handle(now, Input::Local(ev));
                    self.drain(node);
                }
            }
            Ev::Dump { node, epoch } => {
                if self.nodes[node].alive && self.nodes[node].epoch == epoch {
                    let conns: Vec<Conn> = self.nodes[node].kernel.values().cloned().collect();
                    self.nodes[node].engine.handle(now, Input::DumpStarted);
                    self.nodes[node]
                        .engine
                        .handle(now, Input::LocalSnapshot(conns));
                    self.drain(node);
                }
            }
        }
    }

    // ---- traffic ----

    /// A new connection through `node`.
    pub fn open(&mut self, node: usize, c: Conn) {
        let k = c.key();
        self.note(format!("node{} open {}", node + 1, short(&k)));
        self.nodes[node].kernel.insert(k, c.clone());
        self.live.insert(k, (node, c.clone()));
        let now = self.now;
        self.created.insert(k, now);
        if self.nodes[node].alive && !self.nodes[node].new_events {
            self.nodes[node].opened_quiet += 1; // No NEW event: only the kernel knows.
        } else if self.nodes[node].alive {
            self.nodes[node]
                .engine
                .handle(now, Input::Local(LocalEvent::New(c)));
            self.drain(node);
        }
    }

    /// A change to a live connection on the node that handles it. The event carries only
    /// status, timeout and TCP info, as an UPDATE event does.
    pub fn change(&mut self, k: &ConnKey, f: impl FnOnce(&mut Conn)) {
        let Some((node, c)) = self.live.get_mut(k) else {
            return;
        };
        let node = *node;
        f(c);
        let c = c.clone();
        self.nodes[node].kernel.insert(*k, c.clone());
        let mut ev = Conn::new(c.orig, c.reply);
        ev.status = c.status;
        ev.mark = c.mark;
        ev.zone = c.zone;
        ev.timeout = c.timeout;
        ev.tcp = c.tcp;
        if self.nodes[node].alive {
            let now = self.now;
            self.nodes[node]
                .engine
                .handle(now, Input::Local(LocalEvent::Update(ev)));
            self.drain(node);
        }
    }

    pub fn close(&mut self, k: &ConnKey) {
        let Some((node, c)) = self.live.remove(k) else {
            return;
        };
        self.created.remove(k);
        self.note(format!("node{} close {}", node + 1, short(k)));
        self.nodes[node].kernel.remove(k);
        if self.nodes[node].alive {
            let now = self.now;
            self.nodes[node]
                .engine
                .handle(now, Input::Local(LocalEvent::Destroy(c)));
            self.drain(node);
        }
    }

    /// Random traffic step: open, change or close a conn on a random live node among `origins`.
    pub fn traffic_step(&mut self, origins: &[usize]) {
        let node = origins[self.rng.range(0, origins.len() as u64 - 1) as usize];
        if !self.nodes[node].alive {
            return;
        }
        let mine: Vec<ConnKey> = self
            .live
            .iter()
            .filter(|(_, (n, _))| *n == node)
            .map(|(k, _)| *k)
            .collect();
        let roll = self.rng.range(0, 99);
        if mine.is_empty() || roll < 45 {
            let c = random_conn(&mut self.rng);
            if !self.live.contains_key(&c.key()) {
                self.open(node, c);
            }
        } else if roll < 85 {
            let k = mine[self.rng.range(0, mine.len() as u64 - 1) as usize];
            let mark = self.rng.range(0, 3) as u32;
            let assured = self.rng.chance(500);
            self.change(&k, |c| {
                c.mark = mark;
                if assured {
                    c.status |= status::ASSURED | status::SEEN_REPLY;
                }
                if let Some(t) = &mut c.tcp {
                    t.state = match t.state {
                        TcpState::SynSent => TcpState::Established,
                        TcpState::Established => TcpState::FinWait,
                        _ => TcpState::Established,
                    };
                }
            });
        } else {
            let k = mine[self.rng.range(0, mine.len() as u64 - 1) as usize];
            self.close(&k);
        }
    }

    /// Crash: the node stops (its kernel keeps its table unless `flush`).
    pub fn crash(&mut self, i: usize, flush: bool) {
        self.nodes[i].alive = false;
        if flush {
            self.nodes[i].kernel.clear();
            // Its own conns die with it.
            let dead: Vec<ConnKey> = self
                .live
                .iter()
                .filter(|(_, (n, _))| *n == i)
                .map(|(k, _)| *k)
                .collect();
            for k in dead {
                self.live.remove(&k);
                self.created.remove(&k);
            }
        }
        self.note(format!("node{} crash flush={flush}", i + 1));
    }

    /// Restart with a new epoch: a new engine that must bulk-sync.
    pub fn restart(&mut self, i: usize) {
        let epoch = self.rng.next();
        let engine = self.make_engine(i, epoch);
        let n = &mut self.nodes[i];
        n.engine = engine;
        n.epoch = epoch;
        n.alive = true;
        n.ready = false;
        n.ready_log.clear();
        n.alarms.clear();
        n.restarts += 1;
        n.new_events = true; // A new daemon subscribes to every group.
        n.forwarding = false;
        self.note(format!("node{} restart", i + 1));
        self.drain(i);
    }

    /// Starts a node created absent ([`Sim::with_absent`]): a new engine with a new epoch, as
    /// a restart.
    pub fn start(&mut self, i: usize) {
        self.note(format!("node{} starts", i + 1));
        self.restart(i);
        self.nodes[i].restarts = 0;
    }

    /// A conn already in `node`'s kernel (traffic through it) without any event: what a node
    /// that was not running, or whose daemon was away, holds.
    pub fn preload(&mut self, node: usize, c: Conn) {
        let k = c.key();
        self.nodes[node].kernel.insert(k, c.clone());
        self.live.insert(k, (node, c));
        let now = self.now;
        self.created.insert(k, now);
    }

    // ---- checks ----

    /// Every alive node's kernel holds exactly the live conns (replicated view).
    pub fn converged(&self) -> Result<(), String> {
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
            for (k, (_, c)) in &self.live {
                match n.kernel.get(k) {
                    None => return Err(format!("node{} lacks {}", i + 1, short(k))),
                    Some(have) if !replicated_eq(have, c) => {
                        return Err(format!(
                            "node{} has a different {}: {have:?} vs {c:?}",
                            i + 1,
                            short(k)
                        ))
                    }
                    _ => {}
                }
            }
            if let Some(k) = n.kernel.keys().find(|k| !self.live.contains_key(k)) {
                return Err(format!("node{} still has dead {}", i + 1, short(k)));
            }
        }
        Ok(())
    }

    pub fn check_converged(&self, what: &str) {
        if let Err(e) = self.converged() {
            let states: Vec<String> = self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let s = n.engine.status(self.now);
                    format!(
                        "node{}: ready={} pending={} bulk={:?} timer={:?} peers={:?}",
                        i + 1,
                        s.ready,
                        s.pending,
                        s.bulk,
                        n.engine
                            .poll_timeout()
                            .map(|(t, k)| (t.duration_since(self.start), k)),
                        s.peers
                            .iter()
                            .map(|p| (p.node, p.heard, p.applied, p.buffered))
                            .collect::<Vec<_>>()
                    )
                })
                .collect();
            panic!(
                "seed {:#x}: {what}: {e}\n{}\nrecent events:\n{}",
                self.seed,
                states.join("\n"),
                self.recent()
            );
        }
    }
}

pub fn short(k: &ConnKey) -> String {
    match k.orig.l4 {
        L4::Ports { proto, src, dst } => {
            format!("{proto:?} {}:{src}->{}:{dst}", k.orig.src, k.orig.dst)
        }
        l4 => format!("{l4:?} {}->{}", k.orig.src, k.orig.dst),
    }
}

/// A random connection: IPv4 or IPv6, TCP, UDP or ICMP, sometimes NATed, sometimes with a
/// helper, mark or zone.
pub fn random_conn(rng: &mut SimRng) -> Conn {
    let v6 = rng.chance(250);
    let ip = |rng: &mut SimRng, net: u8| -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                u16::from(net),
                0,
                0,
                0,
                rng.range(0, 3) as u16,
                rng.range(1, 60_000) as u16,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                if net == 0 { 192 } else { 198 },
                if net == 0 { 0 } else { 51 },
                if net == 0 { 2 } else { 100 },
                rng.range(2, 250) as u8,
            ))
        }
    };
    let src = ip(rng, 0);
    let dst = ip(rng, 1);
    let kind = rng.range(0, 9);
    let l4 = match kind {
        0..=5 => L4::Ports {
            proto: PortProto::Tcp,
            src: rng.range(1024, 65_535) as u16,
            dst: [80, 443, 22][rng.range(0, 2) as usize],
        },
        6..=8 => L4::Ports {
            proto: PortProto::Udp,
            src: rng.range(1024, 65_535) as u16,
            dst: 53,
        },
        _ => {
            let id = rng.range(0, 65_535) as u16;
            if v6 {
                L4::Icmpv6 {
                    icmp_type: 128,
                    code: 0,
                    id,
                }
            } else {
                L4::Icmp {
                    icmp_type: 8,
                    code: 0,
                    id,
                }
            }
        }
    };
    let orig = Tuple { src, dst, l4 };
    let mut c = Conn::without_nat(orig);
    if rng.chance(400) {
        // Source NAT to the WAN VIP, sometimes with a new port.
        c.reply.dst = if v6 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))
        };
        if let L4::Ports { src, dst, proto } = c.reply.l4 {
            if rng.chance(500) {
                c.reply.l4 = L4::Ports {
                    proto,
                    src,
                    dst: dst.wrapping_add(7),
                };
            }
        }
        c.status |= status::SRC_NAT | status::SRC_NAT_DONE;
    }
    c.status |= status::CONFIRMED;
    c.timeout = Some(match l4 {
        L4::Ports {
            proto: PortProto::Tcp,
            ..
        } => 432_000,
        _ => 3_600,
    });
    if let L4::Ports {
        proto: PortProto::Tcp,
        ..
    } = l4
    {
        c.tcp = Some(TcpInfo {
            state: TcpState::SynSent,
            wscale_orig: 7,
            wscale_reply: 0,
            flags_orig: tcp_flags::WINDOW_SCALE | tcp_flags::SACK_PERM,
            flags_reply: 0,
        });
    }
    if rng.chance(100) {
        c.helper = Some("ftp".into());
    }
    if rng.chance(100) {
        c.mark = rng.range(1, 0xffff) as u32;
    }
    if rng.chance(50) {
        c.zone = rng.range(1, 4) as u16;
    }
    c.id = Some(rng.next() as u32);
    c
}
