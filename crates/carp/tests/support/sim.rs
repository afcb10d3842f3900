//! A deterministic simulated network of CARP nodes (quinn's `Pair`, smoltcp's netsim).
//!
//! Every node is a real [`Carp`] engine with its own addresses (192.0.2.N on interface 1,
//! 198.51.100.N on interface 2). Time is virtual: one base `Instant` plus a `Duration` offset,
//! advanced from event to event, never slept. Every `Action::Send` is multicast to all other
//! nodes on the same interface through a seeded network: random delay, loss, optional
//! reordering, partitions. Nodes can crash (stop dead, their VIPs vanish), restart (a fresh
//! engine with the same config), shut down cleanly, lose links, and handle their timers late by
//! a seeded amount (clock jitter). All randomness comes from one seed, so a failing run is
//! reproduced by its seed alone.
//!
//! After every event the simulator checks the invariant that ties the engine's state to the
//! addresses it asked for: a running node holds a vhid's addresses exactly while that vhid is
//! MASTER on it.

#![allow(dead_code)]

#[path = "sim_attack.rs"]
mod attack;
#[path = "sim_history.rs"]
mod history;
#[path = "sim_vrrp.rs"]
mod vrrp;
#[allow(unused_imports)]
pub use vrrp::vrrp_router;

use carp::units::ticks_to_duration;
use carp::{
    Action, Carp, IfaceId, Input, Interval, Key, Reason, RouterConfig, RouterStatus, State, Vhid,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

pub const LAN: IfaceId = 1;
pub const WAN: IfaceId = 2;
pub const LAN_VHID: u8 = 7;
pub const WAN_VHID: u8 = 8;

pub type NodeId = usize;
/// An advert as an eavesdropper records it: (time, sender, interface, payload).
pub type Captured = (Duration, NodeId, IfaceId, Vec<u8>);
/// The wall-clock time (since the Unix epoch) at virtual time zero.
pub const WALL_CLOCK_AT_ZERO: Duration = Duration::from_secs(1_700_000_000);
pub type Key2 = (IfaceId, Vhid);

pub fn vhid(v: u8) -> Vhid {
    Vhid::new(v).expect("nonzero vhid")
}

/// The simulated node's own address on an interface: 192.0.2.(id+1) or 198.51.100.(id+1).
pub fn node_addr(id: NodeId, iface: IfaceId) -> IpAddr {
    let host = u8::try_from(id + 1).expect("fewer than 255 nodes");
    match iface {
        LAN => IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
        WAN => IpAddr::V4(Ipv4Addr::new(198, 51, 100, host)),
        other => IpAddr::V4(Ipv4Addr::new(203, 0, 113, u8::try_from(other).unwrap_or(0))),
    }
}

/// The VIP of the standard vhid on an interface.
pub fn vip(iface: IfaceId) -> IpAddr {
    match iface {
        LAN => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
        _ => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100)),
    }
}

/// The standard router of a test node: vhid 7 on LAN or vhid 8 on WAN, passphrase `s3cret`.
pub fn router(iface: IfaceId, advbase: u8, skew: u8, preempt: bool) -> RouterConfig {
    RouterConfig {
        iface,
        vhid: vhid(if iface == LAN { LAN_VHID } else { WAN_VHID }),
        advbase: carp::Advbase(advbase),
        advskew: carp::Skew(skew),
        preempt,
        addresses: vec![vip(iface)],
        key: Key::from_passphrase(b"s3cret"),
        protocol: carp::Protocol::Carp,
        peers: Vec::new(),
    }
}

/// SplitMix64: tiny, seeded, good enough to drive a simulation.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability per_mille / 1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }
    /// Uniform in lo..=hi at nanosecond resolution.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_ns = lo.as_nanos() as u64;
        let hi_ns = hi.as_nanos() as u64;
        Duration::from_nanos(self.range(lo_ns, hi_ns.max(lo_ns)))
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Clone, Debug)]
pub struct NetConfig {
    /// One-way delivery delay, uniform in min..=max.
    pub delay_min: Duration,
    pub delay_max: Duration,
    /// Loss per 1000 packets per receiver.
    pub loss_per_mille: u32,
    /// Whether packets between two nodes may overtake each other.
    pub reorder: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            delay_min: Duration::from_micros(200),
            delay_max: Duration::from_millis(2),
            loss_per_mille: 0,
            reorder: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub routers: Vec<RouterConfig>,
    /// The node handles each timer up to this late (seeded per firing).
    pub jitter: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    Transition {
        key: Key2,
        from: State,
        to: State,
        reason: Reason,
    },
    Added(Key2),
    Removed(Key2),
    Rejected(carp::RejectReason),
    /// An advert was handed to this node's engine.
    Heard {
        key: Key2,
        from: NodeId,
    },
    Crashed,
    Restarted,
    ShutDown,
    Link {
        iface: IfaceId,
        up: bool,
    },
    Partition(Vec<u32>),
    Loss(u32),
    Reloaded(Key2),
    Demoted(carp::DemoteSource, u8),
}

#[derive(Clone, Debug)]
pub struct Record {
    pub at: Duration,
    pub node: NodeId,
    pub what: What,
}

struct Packet {
    from: NodeId,
    to: NodeId,
    iface: IfaceId,
    payload: Vec<u8>,
}

struct Node {
    cfg: NodeConfig,
    carp: Option<Carp>,
    links: BTreeMap<IfaceId, bool>,
    held: BTreeSet<Key2>,
    incarnation: u64,
    /// The deadline last seen from poll_timeout and how late this node will handle it.
    timer: Option<(Instant, Duration)>,
}

pub struct Sim {
    pub seed: u64,
    base: Instant,
    now: Duration,
    rng: SimRng,
    pub net: NetConfig,
    nodes: Vec<Node>,
    queue: BTreeMap<(Duration, u64), Packet>,
    seq: u64,
    group: Vec<u32>,
    fifo: BTreeMap<(NodeId, NodeId), Duration>,
    pub log: Vec<Record>,
    /// Report links before adding routers on (re)start, as a daemon that reads netlink first
    /// would; otherwise after. Chosen per start by the seed unless fixed.
    pub links_first: Option<bool>,
    /// With `Some`, every advert sent: an eavesdropper.
    pub captured: Option<Vec<Captured>>,
}

impl Sim {
    /// Starts every node at virtual time 0, all links up, the network whole.
    pub fn new(seed: u64, net: NetConfig, nodes: Vec<NodeConfig>) -> Sim {
        let n = nodes.len();
        let mut sim = Sim {
            seed,
            base: Instant::now(),
            now: Duration::ZERO,
            rng: SimRng::new(seed ^ 0x005e_ed0f_c1a5_7e12),
            net,
            nodes: nodes
                .into_iter()
                .map(|cfg| Node {
                    links: cfg.routers.iter().map(|r| (r.iface, true)).collect(),
                    cfg,
                    carp: None,
                    held: BTreeSet::new(),
                    incarnation: 0,
                    timer: None,
                })
                .collect(),
            queue: BTreeMap::new(),
            seq: 0,
            group: vec![0; n],
            fifo: BTreeMap::new(),
            log: Vec::new(),
            links_first: None,
            captured: None,
        };
        for id in 0..n {
            sim.start(id);
        }
        sim.check();
        sim
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn config(&self, id: NodeId) -> &NodeConfig {
        &self.nodes[id].cfg
    }

    pub fn alive(&self, id: NodeId) -> bool {
        self.nodes[id].carp.is_some()
    }

    pub fn link(&self, id: NodeId, iface: IfaceId) -> bool {
        self.nodes[id].links.get(&iface).copied().unwrap_or(true)
    }

    pub fn jitter(&self, id: NodeId) -> Duration {
        self.nodes[id].cfg.jitter
    }

    pub fn max_jitter(&self) -> Duration {
        self.nodes
            .iter()
            .map(|n| n.cfg.jitter)
            .max()
            .unwrap_or_default()
    }

    pub fn engine(&self, id: NodeId) -> Option<&Carp> {
        self.nodes[id].carp.as_ref()
    }

    pub fn status(&self, id: NodeId) -> Vec<RouterStatus> {
        self.nodes[id]
            .carp
            .as_ref()
            .map(Carp::status)
            .unwrap_or_default()
    }

    pub fn state(&self, id: NodeId, key: Key2) -> Option<State> {
        self.nodes[id].carp.as_ref()?.state(key.0, key.1)
    }

    /// Every vhid configured anywhere in the cluster.
    pub fn keys(&self) -> BTreeSet<Key2> {
        self.nodes
            .iter()
            .flat_map(|n| n.cfg.routers.iter().map(|r| (r.iface, r.vhid)))
            .collect()
    }

    pub fn masters(&self, key: Key2) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| self.state(i, key) == Some(State::Master))
            .collect()
    }

    pub fn holders(&self, key: Key2) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].held.contains(&key))
            .collect()
    }

    pub fn holds(&self, id: NodeId, key: Key2) -> bool {
        self.nodes[id].held.contains(&key)
    }

    /// A prefix for assertion messages: the seed that reproduces the run, and the time.
    pub fn at(&self) -> String {
        format!("seed={:#x} t={:?}", self.seed, self.now)
    }

    /// The last `n` records, one a line, for failure messages.
    pub fn trace(&self, n: usize) -> String {
        let mut s = String::new();
        let skip = self.log.len().saturating_sub(n);
        for r in &self.log[skip..] {
            if matches!(r.what, What::Heard { .. }) {
                continue;
            }
            let _ = writeln!(s, "  {:>12.6?} node{} {:?}", r.at, r.node, r.what);
        }
        s
    }

    /// Panics with the seed, the time, the message and the recent history.
    pub fn fail(&self, msg: impl std::fmt::Display) -> ! {
        panic!("{}: {}\nrecent events:\n{}", self.at(), msg, self.trace(60))
    }

    fn record(&mut self, node: NodeId, what: What) {
        self.log.push(Record {
            at: self.now,
            node,
            what,
        });
    }

    fn instant(&self, at: Duration) -> Instant {
        self.base + at
    }

    // ---- the event loop ------------------------------------------------------------------

    /// The next timer to fire as (when, node), drawing each new deadline's lateness once.
    fn next_timer(&mut self) -> Option<(Duration, NodeId)> {
        let mut best: Option<(Duration, NodeId)> = None;
        for id in 0..self.nodes.len() {
            let Some(carp) = self.nodes[id].carp.as_ref() else {
                continue;
            };
            let Some((deadline, _)) = carp.poll_timeout() else {
                self.nodes[id].timer = None;
                continue;
            };
            let late = match self.nodes[id].timer {
                Some((d, late)) if d == deadline => late,
                _ => {
                    let j = self.nodes[id].cfg.jitter;
                    let late = self.rng.duration(Duration::ZERO, j);
                    self.nodes[id].timer = Some((deadline, late));
                    late
                }
            };
            let due = (deadline.saturating_duration_since(self.base) + late).max(self.now);
            let earlier = match best {
                Some((t, _)) => due < t,
                None => true,
            };
            if earlier {
                best = Some((due, id));
            }
        }
        best
    }

    /// Runs every event up to and including `end`, then sets the clock to `end`.
    pub fn run_until(&mut self, end: Duration) {
        loop {
            let packet = self.queue.first_key_value().map(|(k, _)| k.0);
            let timer = self.next_timer();
            let next_is_packet = match (packet, timer) {
                (Some(p), Some((t, _))) => p <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if next_is_packet {
                let Some(p) = packet.filter(|p| *p <= end) else {
                    break;
                };
                let Some((_, pkt)) = self.queue.pop_first() else {
                    break;
                };
                self.now = p;
                self.deliver(pkt);
            } else {
                let Some((t, id)) = timer.filter(|(t, _)| *t <= end) else {
                    break;
                };
                self.now = t;
                self.fire(id);
            }
            self.check();
        }
        self.now = self.now.max(end);
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    fn fire(&mut self, id: NodeId) {
        let now = self.instant(self.now);
        let Some(carp) = self.nodes[id].carp.as_mut() else {
            return;
        };
        carp.handle_timeout(now);
        if let Some((a, kind)) = carp.poll_timeout() {
            if a <= now {
                self.fail(format!(
                    "node{id}: handle_timeout left a {kind:?} deadline {:?} due",
                    a.saturating_duration_since(self.base)
                ));
            }
        }
        self.drain(id);
    }

    fn deliver(&mut self, p: Packet) {
        let to = p.to;
        if self.nodes[to].carp.is_none()
            || !self.link(to, p.iface)
            || self.group[p.from] != self.group[to]
        {
            return;
        }
        let src = node_addr(p.from, p.iface);
        if let Some(v) = vrrp::heard_vhid(&p.payload, src) {
            self.record(
                to,
                What::Heard {
                    key: (p.iface, v),
                    from: p.from,
                },
            );
        }
        let now = self.instant(self.now);
        if let Some(carp) = self.nodes[to].carp.as_mut() {
            carp.handle(
                now,
                Input::Advert {
                    iface: p.iface,
                    src,
                    dst: carp::vrrp::group_for(src),
                    ttl: 255,
                    payload: p.payload,
                },
            );
        }
        self.drain(to);
    }

    fn multicast(&mut self, from: NodeId, iface: IfaceId, payload: Vec<u8>) {
        if !self.link(from, iface) {
            return;
        }
        if let Some(c) = self.captured.as_mut() {
            c.push((self.now, from, iface, payload.clone()));
        }
        for to in 0..self.nodes.len() {
            if to == from || self.group[to] != self.group[from] {
                continue;
            }
            if self.rng.chance(self.net.loss_per_mille) {
                continue;
            }
            let delay = self.rng.duration(self.net.delay_min, self.net.delay_max);
            let mut at = self.now + delay;
            if !self.net.reorder {
                let last = self.fifo.entry((from, to)).or_default();
                at = at.max(*last);
                *last = at;
            }
            self.seq += 1;
            self.queue.insert(
                (at, self.seq),
                Packet {
                    from,
                    to,
                    iface,
                    payload: payload.clone(),
                },
            );
        }
    }

    /// Carries out every action the node's engine has queued.
    fn drain(&mut self, id: NodeId) {
        let now = self.instant(self.now);
        loop {
            let Some(carp) = self.nodes[id].carp.as_mut() else {
                return;
            };
            let Some(action) = carp.poll_action() else {
                return;
            };
            match action {
                Action::Send {
                    iface,
                    vhid,
                    payload,
                    ..
                } => {
                    carp.handle(
                        now,
                        Input::SendResult {
                            iface,
                            vhid,
                            ok: true,
                        },
                    );
                    self.multicast(id, iface, payload);
                }
                Action::AddAddresses { iface, vhid } => {
                    self.nodes[id].held.insert((iface, vhid));
                    self.record(id, What::Added((iface, vhid)));
                }
                Action::RemoveAddresses { iface, vhid } => {
                    self.nodes[id].held.remove(&(iface, vhid));
                    self.record(id, What::Removed((iface, vhid)));
                }
                Action::Transition {
                    iface,
                    vhid,
                    from,
                    to,
                    reason,
                } => self.record(
                    id,
                    What::Transition {
                        key: (iface, vhid),
                        from,
                        to,
                        reason,
                    },
                ),
                Action::Rejected { reason, .. } => self.record(id, What::Rejected(reason)),
                Action::Announce { .. } | Action::DemotionChanged { .. } => {}
            }
        }
    }

    /// A running node holds a vhid's addresses exactly while it is MASTER of it.
    fn check(&self) {
        for (id, n) in self.nodes.iter().enumerate() {
            let Some(carp) = n.carp.as_ref() else {
                continue;
            };
            for s in carp.status() {
                let key = (s.iface, s.vhid);
                let holds = n.held.contains(&key);
                if holds != (s.state == State::Master) {
                    self.fail(format!(
                        "node{id} vhid {}: state {} but holds addresses: {holds}",
                        s.vhid, s.state
                    ));
                }
            }
        }
    }

    // ---- things that happen to nodes and the network ---------------------------------------

    fn start(&mut self, id: NodeId) {
        self.nodes[id].incarnation += 1;
        let seed = self.seed
            ^ (id as u64).wrapping_mul(0x1000_0000_01b3)
            ^ self.nodes[id].incarnation.wrapping_mul(0x9e37_79b9);
        let links_first = match self.links_first {
            Some(b) => b,
            None => self.rng.chance(500),
        };
        let now = self.instant(self.now);
        let mut carp = Carp::new(seed);
        // The wall clock at start (tandem-mode counters): a fixed date plus virtual time.
        carp.set_counter_clock(carp::counter_clock(WALL_CLOCK_AT_ZERO + self.now));
        let routers = self.nodes[id].cfg.routers.clone();
        let down: Vec<IfaceId> = self.nodes[id]
            .links
            .iter()
            .filter(|(_, up)| !**up)
            .map(|(i, _)| *i)
            .collect();
        let ifaces: BTreeSet<IfaceId> = routers.iter().map(|r| r.iface).collect();
        for iface in &ifaces {
            carp.set_local_address(*iface, node_addr(id, *iface));
        }
        if links_first {
            for iface in &down {
                carp.handle(
                    now,
                    Input::Link {
                        iface: *iface,
                        up: false,
                    },
                );
            }
        }
        for r in routers {
            carp.add_router(now, r);
        }
        if !links_first {
            for iface in &down {
                carp.handle(
                    now,
                    Input::Link {
                        iface: *iface,
                        up: false,
                    },
                );
            }
        }
        self.nodes[id].carp = Some(carp);
        self.nodes[id].timer = None;
        self.drain(id);
    }

    /// The node stops dead: no more adverts, and its addresses vanish with it.
    pub fn crash(&mut self, id: NodeId) {
        self.nodes[id].carp = None;
        self.nodes[id].held.clear();
        self.nodes[id].timer = None;
        self.record(id, What::Crashed);
    }

    /// A fresh engine with the same configuration and the node's current link states.
    pub fn restart(&mut self, id: NodeId) {
        if self.nodes[id].carp.is_some() {
            self.crash(id);
        }
        self.record(id, What::Restarted);
        self.start(id);
        self.check();
    }

    /// Clean stop: the engine bows out and releases everything, then the process exits.
    pub fn shutdown(&mut self, id: NodeId) {
        let now = self.instant(self.now);
        let Some(carp) = self.nodes[id].carp.as_mut() else {
            return;
        };
        carp.handle(now, Input::Shutdown);
        self.drain(id);
        if !self.nodes[id].held.is_empty() {
            self.fail(format!(
                "node{id} still holds {:?} after a clean shutdown",
                self.nodes[id].held
            ));
        }
        self.nodes[id].carp = None;
        self.nodes[id].timer = None;
        self.record(id, What::ShutDown);
    }

    pub fn set_link(&mut self, id: NodeId, iface: IfaceId, up: bool) {
        if self.nodes[id].links.insert(iface, up) == Some(up) {
            return;
        }
        self.record(id, What::Link { iface, up });
        let now = self.instant(self.now);
        if let Some(carp) = self.nodes[id].carp.as_mut() {
            carp.handle(now, Input::Link { iface, up });
            self.drain(id);
        }
        self.check();
    }

    /// Nodes hear each other only within the same group.
    pub fn partition(&mut self, groups: Vec<u32>) {
        assert_eq!(groups.len(), self.nodes.len());
        self.record(0, What::Partition(groups.clone()));
        self.group = groups;
    }

    pub fn heal(&mut self) {
        self.partition(vec![0; self.nodes.len()]);
    }

    pub fn set_loss(&mut self, per_mille: u32) {
        self.record(0, What::Loss(per_mille));
        self.net.loss_per_mille = per_mille;
    }

    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// Sets one demotion source on a running node.
    pub fn demote(&mut self, id: NodeId, source: carp::DemoteSource, value: u8) {
        self.record(id, What::Demoted(source.clone(), value));
        self.input(id, Input::Demote { source, value });
    }

    /// Applies an input to a running node and carries out its actions.
    pub fn input(&mut self, id: NodeId, input: Input) {
        let now = self.instant(self.now);
        if let Some(carp) = self.nodes[id].carp.as_mut() {
            carp.handle(now, input);
            self.drain(id);
        }
        self.check();
    }

    // ---- timing, from the configuration -------------------------------------------------

    pub fn max_advbase(&self) -> u8 {
        self.nodes
            .iter()
            .flat_map(|n| n.cfg.routers.iter().map(|r| r.advbase.0))
            .max()
            .unwrap_or(1)
    }

    pub fn max_skew(&self) -> u8 {
        self.nodes
            .iter()
            .flat_map(|n| n.cfg.routers.iter().map(|r| r.advskew.0))
            .max()
            .unwrap_or(0)
    }

    /// How long a whole, loss-free network may take to settle: every backup's master-down
    /// (3 * advbase + skew/256), one advert interval (advbase + skew/256), and two deliveries
    /// and two late timers.
    pub fn settle_bound(&self) -> Duration {
        let base = u32::from(self.max_advbase()) * 256;
        let skew = u32::from(self.max_skew());
        ticks_to_duration(3 * base + skew + base + skew)
            + 2 * self.net.delay_max
            + 2 * self.max_jitter()
            + Duration::from_millis(1)
    }

    /// The advert interval a running node uses for `key` now (demotion included).
    pub fn interval_of(&self, id: NodeId, key: Key2) -> Duration {
        let s = self.router_status(id, key);
        Interval::new(s.advbase, s.advertised_skew).as_duration()
    }

    /// A running node's master-down interval for `key`: 3 * advbase + advertised skew/256.
    pub fn master_down_of(&self, id: NodeId, key: Key2) -> Duration {
        let s = self.router_status(id, key);
        ticks_to_duration(3 * u32::from(s.advbase.0) * 256 + u32::from(s.advertised_skew.0))
    }

    /// 3 * advbase of a running node's router: a BACKUP treats a master that advertises more
    /// slowly than this as timed out at once.
    pub fn three_advbases(&self, id: NodeId, key: Key2) -> Duration {
        let s = self.router_status(id, key);
        ticks_to_duration(3 * u32::from(s.advbase.0) * 256)
    }

    pub fn router_status(&self, id: NodeId, key: Key2) -> RouterStatus {
        match self
            .status(id)
            .into_iter()
            .find(|s| (s.iface, s.vhid) == key)
        {
            Some(s) => s,
            None => self.fail(format!("node{id} runs no router for {key:?}")),
        }
    }

    /// The node that should be MASTER of `key` when every node preempts: the running node,
    /// link up, ranked best by [`Sim::rank`] (CARP: the lowest advertised (advbase, skew),
    /// the lower address on a tie; VRRP: the highest priority, the higher address on a tie).
    pub fn best(&self, key: Key2) -> Option<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.state(i, key), Some(State::Backup | State::Master)))
            .min_by_key(|&i| self.rank(i, key))
    }

    /// Asserts exactly one MASTER of `key`, that it alone holds the addresses, and (with
    /// `best`) that it is [`Sim::best`]. Returns it.
    pub fn assert_one_master(&self, key: Key2, best: bool, why: &str) -> NodeId {
        let masters = self.masters(key);
        if masters.len() != 1 {
            self.fail(format!(
                "{why}: vhid {} has masters {masters:?}, want exactly one",
                key.1
            ));
        }
        let m = masters[0];
        let holders = self.holders(key);
        if holders != masters {
            self.fail(format!(
                "{why}: vhid {} master node{m} but addresses held by {holders:?}",
                key.1
            ));
        }
        if best {
            let b = self.best(key);
            if b != Some(m) {
                self.fail(format!(
                    "{why}: vhid {} master is node{m}, but the best (lowest advertised skew) \
                     is {b:?}",
                    key.1
                ));
            }
        }
        m
    }

    /// A config reload that re-adds router `idx` of the node unchanged (the engine replaces
    /// it: a master bows out and the router starts again as BACKUP).
    pub fn reload(&mut self, id: NodeId, idx: usize) {
        let cfg = self.nodes[id].cfg.routers[idx].clone();
        self.record(id, What::Reloaded((cfg.iface, cfg.vhid)));
        let now = self.instant(self.now);
        if let Some(carp) = self.nodes[id].carp.as_mut() {
            carp.add_router(now, cfg);
            self.drain(id);
        }
        self.check();
    }
}
