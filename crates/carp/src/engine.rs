//! The CARP and VRRP virtual routers of one node, as a sans-IO state machine.
//!
//! The daemon feeds [`Input`]s with the time they happened, calls [`Carp::handle_timeout`] when
//! [`Carp::poll_timeout`] says so, and carries out the [`Action`]s it drains with
//! [`Carp::poll_action`]. The engine never reads a clock or touches a socket, so a whole cluster
//! can run on a virtual clock in tests.
//!
//! Behaviour follows FreeBSD's carp(4): demotion is added to the advertised skew (capped at 240)
//! and every router of the node carries the same demotion, so all VIPs move together.
//!
//! Each router authenticates adverts in the mode of its [`Key`](crate::Key): BSD CARP's HMAC-SHA1 (the
//! default, interoperable), or tandem mode ([`crate::auth`]), where the MAC covers the whole
//! advert and its source address, and the advert counter must grow strictly per source address
//! and vhid (a replay is rejected as `replayed`). A tandem node's counter is one number for the
//! whole node: it starts at the wall-clock time the daemon passes in
//! ([`Carp::set_counter_clock`], see [`counter_clock`]) and grows by one per advert, so a
//! restarted node starts above every counter it sent before.
//!
//! A router configured with [`Protocol::Vrrp`] speaks VRRPv3 (RFC 5798) instead, beside the
//! CARP routers and sharing their node model: links, demotion, send errors, actions, timers.
//! Its priority is derived from the node's skew and demotion, so one configuration drives
//! both protocols: `priority = 254 - min(253, advskew + demotion)` (1..=254; 255, the address
//! owner, is never derived). A lower skew wins in both; a demoted node loses in both. Timers
//! are keepalived's exact microseconds ([`vrrp_skew_micros`]); a departing master sends
//! priority 0; the other rules (RFC 5798 §6) are listed in src/engine/vrrp.rs. An advert's
//! version nibble (2 CARP, 3 VRRP) picks the path; an advert of the other protocol than its
//! vhid's is rejected as `protocol_mismatch`.

use crate::auth::{AuthMode, Authenticator, TandemAuthenticator};
use crate::units::{Advbase, Centisecs, Skew, Vhid};
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The daemon's name for an interface (its ifindex will do); only compared for equality.
pub type IfaceId = u32;

/// FreeBSD's CARP_MAXSKEW: the most demotion can push an advertised skew to.
pub const MAX_DEMOTED_SKEW: u8 = 240;
/// The demotion one cause adds (FreeBSD uses CARP_MAXSKEW for link down and send errors).
pub const DEMOTION_STEP: u8 = 240;
/// Consecutive send failures that demote the node, and successes that lift it (FreeBSD's values).
const SEND_ERRORS_TO_DEMOTE: u32 = 3;
const SEND_SUCCESSES_TO_RECOVER: u32 = 3;
/// A departing master advertises the slowest possible interval so backups take over at once.
const BOW_OUT: (Advbase, Skew) = (Advbase(255), Skew(255));

mod carp;
mod types;
mod vrrp;

pub use types::{
    Action, Counters, DemoteSource, Family, Input, Protocol, Reason, RejectReason, RouterConfig,
    RouterStatus, State, TimerKind,
};
pub use vrrp::{vrrp_priority, vrrp_skew_micros, PRIORITY_RESIGN};

/// A router's MAC, in its key's mode.
enum Auth {
    Bsd(Authenticator),
    Tandem {
        mac: TandemAuthenticator,
        /// Per source address: the highest counter accepted from it (only adverts whose MAC
        /// verified get here, so nobody without the passphrase can grow or poison it).
        last_counter: BTreeMap<IpAddr, u64>,
    },
}

struct Router {
    cfg: RouterConfig,
    auth: Auth,
    families: Vec<Family>,
    state: State,
    counter: u64,
    next_advert: Option<Instant>,
    master_down_at: Option<Instant>,
    send_error_streak: u32,
    send_ok_streak: u32,
    last_master: Option<IpAddr>,
    counters: Counters,
    /// When an advert with a bad HMAC was last looked into, and what it was found to be
    /// (another address set, the other mode, or plainly bad): at most once a second, so a
    /// flood of forged adverts costs no more.
    diagnosed: Option<(Instant, RejectReason)>,
    /// Set for a VRRP router, whose `auth`, `counter` and `diagnosed` go unused.
    vrrp: Option<VrrpTimers>,
}

/// A VRRP router's timing state (RFC 5798 §6.1).
struct VrrpTimers {
    /// Our own Advertisement_Interval.
    interval: Centisecs,
    /// Learned from the master's adverts while BACKUP; our own interval otherwise.
    master_adver_int: Centisecs,
    /// The master resigned (priority 0): the master-down timer now runs for the skew only.
    resigned: bool,
}

/// All CARP and VRRP virtual routers of one node.
pub struct Carp {
    routers: BTreeMap<(IfaceId, Vhid), Router>,
    links: BTreeMap<IfaceId, bool>,
    local_addrs: BTreeMap<(IfaceId, FamilyKey), IpAddr>,
    demotions: BTreeMap<DemoteSource, u8>,
    node_rejected: BTreeMap<RejectReason, u64>,
    actions: VecDeque<Action>,
    rng: SplitMix64,
    shut_down: bool,
    /// Tandem mode: the last advert counter this node used (for every router: one number).
    clock_counter: u64,
}

// Family as an ordered map key without making the public enum Ord.
type FamilyKey = bool;
fn fkey(f: Family) -> FamilyKey {
    f == Family::V6
}

impl Carp {
    /// `seed` drives the only randomness: each router's initial advert counter.
    pub fn new(seed: u64) -> Carp {
        Carp {
            routers: BTreeMap::new(),
            links: BTreeMap::new(),
            local_addrs: BTreeMap::new(),
            demotions: BTreeMap::new(),
            node_rejected: BTreeMap::new(),
            actions: VecDeque::new(),
            rng: SplitMix64(seed),
            shut_down: false,
            clock_counter: 0,
        }
    }

    /// Where tandem-mode advert counters start: the wall-clock time at start, as
    /// [`counter_clock`] turns it into a counter. Counters only ever grow: an earlier value than
    /// the current counter changes nothing. (BSD-mode routers keep BSD's random counter.)
    pub fn set_counter_clock(&mut self, start: u64) {
        self.clock_counter = self.clock_counter.max(start);
    }

    /// This node's own source address on an interface: adverts from it are ignored (loops) and
    /// it breaks ties between equal masters (lower address wins, as ucarp does).
    pub fn set_local_address(&mut self, iface: IfaceId, addr: IpAddr) {
        self.local_addrs
            .insert((iface, fkey(Family::of(&addr))), addr);
    }

    /// Adds a router; it starts in INIT and goes to BACKUP at once if its link is up (links not
    /// yet reported count as up). Replaces a router with the same interface and vhid.
    pub fn add_router(&mut self, now: Instant, cfg: RouterConfig) {
        let key = (cfg.iface, cfg.vhid);
        if self.routers.contains_key(&key) {
            self.remove_router(cfg.iface, cfg.vhid);
        }
        let auth = match cfg.key.mode() {
            AuthMode::Bsd => Auth::Bsd(Authenticator::new(
                cfg.key.clone(),
                cfg.vhid,
                &cfg.addresses,
            )),
            AuthMode::Tandem => Auth::Tandem {
                mac: TandemAuthenticator::new(cfg.key.clone(), &cfg.addresses),
                last_counter: BTreeMap::new(),
            },
        };
        let mut families: Vec<Family> = cfg.addresses.iter().map(Family::of).collect();
        families.sort_by_key(|f| fkey(*f));
        families.dedup();
        let counter = self.rng.next();
        let vrrp = match cfg.protocol {
            Protocol::Carp => None,
            Protocol::Vrrp { interval } => Some(VrrpTimers {
                interval,
                master_adver_int: interval,
                resigned: false,
            }),
        };
        let r = Router {
            cfg,
            auth,
            families,
            state: State::Init,
            counter,
            next_advert: None,
            master_down_at: None,
            send_error_streak: 0,
            send_ok_streak: 0,
            last_master: None,
            diagnosed: None,
            counters: Counters::default(),
            vrrp,
        };
        let link_up = self.link_up(r.cfg.iface);
        self.routers.insert(key, r);
        if !link_up {
            // The link went down before this interface carried a router (a daemon that reads
            // link state before its config): demote now, or this node's other vhids would
            // preempt while this one cannot follow.
            self.set_demotion(DemoteSource::LinkDown(key.0), DEMOTION_STEP);
        }
        if link_up && !self.shut_down {
            self.become_backup(now, key, Reason::Startup);
        }
    }

    /// Removes a router, bowing out first if it is master.
    pub fn remove_router(&mut self, iface: IfaceId, vhid: Vhid) {
        let key = (iface, vhid);
        self.leave(key, Reason::Removed);
        self.routers.remove(&key);
        self.set_demotion(DemoteSource::SendErrors(iface, vhid), 0);
        // A down link demotes only while it carries a router.
        if !self.routers.keys().any(|k| k.0 == iface) {
            self.set_demotion(DemoteSource::LinkDown(iface), 0);
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Advert {
                iface,
                src,
                dst,
                ttl,
                payload,
            } => self.on_advert(now, iface, src, dst, ttl, &payload),
            Input::Link { iface, up } => self.on_link(now, iface, up),
            Input::Demote { source, value } => self.set_demotion(source, value),
            Input::SendResult { iface, vhid, ok } => self.on_send_result(iface, vhid, ok),
            Input::HandOver => {
                let keys: Vec<_> = self.routers.keys().copied().collect();
                for k in keys {
                    self.hand_over(now, k);
                }
            }
            Input::Shutdown => {
                self.shut_down = true;
                let keys: Vec<_> = self.routers.keys().copied().collect();
                for k in keys {
                    self.leave(k, Reason::Shutdown);
                }
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let keys: Vec<_> = self.routers.keys().copied().collect();
        for key in keys {
            let Some(r) = self.routers.get(&key) else {
                continue;
            };
            match r.state {
                State::Master if r.next_advert.is_some_and(|t| t <= now) => {
                    let due = r.next_advert.unwrap_or(now);
                    self.advertise(key);
                    let interval = self.advert_interval(key);
                    if let Some(r) = self.routers.get_mut(&key) {
                        r.next_advert = Some(next_due(due, now, interval));
                    }
                }
                State::Backup if r.master_down_at.is_some_and(|t| t <= now) => {
                    let reason = match &r.vrrp {
                        Some(v) if v.resigned => Reason::PriorityZero,
                        _ => Reason::MasterDownTimer,
                    };
                    self.become_master(now, key, reason);
                }
                _ => {}
            }
        }
    }

    /// The earliest deadline, if any; the daemon sleeps until then.
    pub fn poll_timeout(&self) -> Option<(Instant, TimerKind)> {
        self.routers
            .values()
            .filter_map(|r| match r.state {
                State::Master => r.next_advert.map(|t| (t, TimerKind::Advertise)),
                State::Backup => r.master_down_at.map(|t| (t, TimerKind::MasterDown)),
                State::Init => None,
            })
            .min_by_key(|(t, _)| *t)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn demotion(&self) -> u8 {
        let sum: u32 = self.demotions.values().map(|v| u32::from(*v)).sum();
        sum.min(255) as u8
    }

    pub fn demotions(&self) -> impl Iterator<Item = (&DemoteSource, u8)> {
        self.demotions.iter().map(|(s, v)| (s, *v))
    }

    /// Adverts dropped before a router could be named (unknown vhid, short packets...).
    pub fn node_rejected(&self) -> &BTreeMap<RejectReason, u64> {
        &self.node_rejected
    }

    pub fn status(&self) -> Vec<RouterStatus> {
        self.routers
            .values()
            .map(|r| RouterStatus {
                iface: r.cfg.iface,
                vhid: r.cfg.vhid,
                state: r.state,
                advbase: r.cfg.advbase,
                advskew: r.cfg.advskew,
                advertised_skew: match r.vrrp {
                    None => self.advertised_skew(&r.cfg),
                    Some(_) => self.vrrp_skew(&r.cfg),
                },
                demotion: self.demotion(),
                preempt: r.cfg.preempt,
                addresses: r.cfg.addresses.clone(),
                last_master: r.last_master,
                counters: r.counters.clone(),
                auth: r.cfg.key.mode(),
                protocol: r.cfg.protocol,
                priority: r.vrrp.as_ref().map(|_| self.priority(&r.cfg)),
            })
            .collect()
    }

    pub fn state(&self, iface: IfaceId, vhid: Vhid) -> Option<State> {
        self.routers.get(&(iface, vhid)).map(|r| r.state)
    }

    fn link_up(&self, iface: IfaceId) -> bool {
        self.links.get(&iface).copied().unwrap_or(true)
    }

    /// How long a master waits between adverts.
    fn advert_interval(&self, key: (IfaceId, Vhid)) -> Duration {
        match self.routers.get(&key).and_then(|r| r.vrrp.as_ref()) {
            Some(v) => v.interval.as_duration(),
            None => self.interval(key).as_duration(),
        }
    }

    /// How long a backup waits for the master's next advert.
    fn master_down(&self, key: (IfaceId, Vhid)) -> Duration {
        match self.routers.get(&key) {
            Some(r) if r.vrrp.is_some() => self.vrrp_master_down(r),
            _ => self.master_down_interval(key),
        }
    }

    /// Dispatches on the version nibble, after dropping our own adverts looping back.
    fn on_advert(
        &mut self,
        now: Instant,
        iface: IfaceId,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        payload: &[u8],
    ) {
        // Our own adverts looping back are not news.
        if self.local_addrs.get(&(iface, fkey(Family::of(&src)))) == Some(&src) {
            return;
        }
        // Name the router as early as possible so a rejection is counted against it (both
        // protocols carry the vhid / VRID in their second byte).
        let claimed = payload
            .get(1)
            .and_then(|v| Vhid::new(*v))
            .filter(|v| self.routers.contains_key(&(iface, *v)));
        // Unicast peers: only a listed peer may speak for the vhid it names.
        if let Some(r) = claimed.and_then(|v| self.routers.get(&(iface, v))) {
            let peers = self.peers_of(r, Family::of(&src));
            if !peers.is_empty() && !peers.contains(&src) {
                return self.reject(iface, claimed, src, RejectReason::UnknownPeer);
            }
        }
        if ttl != 255 && self.ttl_required(iface, claimed, src, dst) {
            return self.reject(iface, claimed, src, RejectReason::BadTtl);
        }
        if payload.first().map(|b| b >> 4) == Some(crate::vrrp::VERSION) {
            self.on_vrrp_advert(now, iface, src, dst, claimed, payload);
        } else {
            self.on_carp_advert(now, iface, src, claimed, payload);
        }
    }

    /// A router's unicast peers of one family, without this node's own address on the
    /// interface (so one synced list can name every node). Empty: that family is multicast.
    fn peers_of(&self, r: &Router, family: Family) -> Vec<IpAddr> {
        let own = self.local_addrs.get(&(r.cfg.iface, fkey(family)));
        r.cfg
            .peers
            .iter()
            .filter(|p| Family::of(p) == family && Some(*p) != own)
            .copied()
            .collect()
    }

    /// Whether an advert must arrive with TTL / hop limit 255: always, except a unicast one
    /// (to an address of ours, not a group) for a router with peers of its family, as carp(4)
    /// and keepalived skip the check for unicast peers (keepalived sends IPv6 with 64).
    /// Adverts from traces without a destination (unspecified) keep the check.
    fn ttl_required(&self, iface: IfaceId, vhid: Option<Vhid>, src: IpAddr, dst: IpAddr) -> bool {
        if dst.is_multicast() || dst.is_unspecified() {
            return true;
        }
        match vhid.and_then(|v| self.routers.get(&(iface, v))) {
            Some(r) => self.peers_of(r, Family::of(&src)).is_empty(),
            None => true,
        }
    }

    /// Where one advert of `family` goes: each unicast peer, or the group (`None`).
    fn destinations(&self, key: (IfaceId, Vhid), family: Family) -> Vec<Option<IpAddr>> {
        let peers = match self.routers.get(&key) {
            Some(r) => self.peers_of(r, family),
            None => Vec::new(),
        };
        if peers.is_empty() {
            vec![None]
        } else {
            peers.into_iter().map(Some).collect()
        }
    }

    fn set_demotion(&mut self, source: DemoteSource, value: u8) {
        let before = self.demotion();
        if value == 0 {
            self.demotions.remove(&source);
        } else {
            self.demotions.insert(source, value);
        }
        let after = self.demotion();
        if before != after {
            self.actions.push_back(Action::DemotionChanged {
                from: before,
                to: after,
            });
        }
    }

    fn on_link(&mut self, now: Instant, iface: IfaceId, up: bool) {
        let was = self.links.insert(iface, up);
        if was == Some(up) {
            return;
        }
        let keys: Vec<_> = self
            .routers
            .keys()
            .filter(|k| k.0 == iface)
            .copied()
            .collect();
        if up {
            self.set_demotion(DemoteSource::LinkDown(iface), 0);
            if !self.shut_down {
                for k in keys {
                    if self.routers.get(&k).is_some_and(|r| r.state == State::Init) {
                        self.become_backup(now, k, Reason::LinkUp);
                    }
                }
            }
        } else {
            // Only interfaces that carry a router demote: other links are none of CARP's business.
            if !keys.is_empty() {
                self.set_demotion(DemoteSource::LinkDown(iface), DEMOTION_STEP);
            }
            for k in keys {
                self.become_init(k, Reason::LinkDown);
            }
        }
    }

    fn on_send_result(&mut self, iface: IfaceId, vhid: Vhid, ok: bool) {
        let Some(r) = self.routers.get_mut(&(iface, vhid)) else {
            return;
        };
        let mut change = None;
        if ok {
            r.send_error_streak = 0;
            r.send_ok_streak = r.send_ok_streak.saturating_add(1);
            if r.send_ok_streak == SEND_SUCCESSES_TO_RECOVER {
                change = Some(0);
            }
        } else {
            r.counters.send_errors += 1;
            r.send_ok_streak = 0;
            r.send_error_streak = r.send_error_streak.saturating_add(1);
            if r.send_error_streak == SEND_ERRORS_TO_DEMOTE {
                change = Some(DEMOTION_STEP);
            }
        }
        if let Some(v) = change {
            self.set_demotion(DemoteSource::SendErrors(iface, vhid), v);
        }
    }

    fn reject(&mut self, iface: IfaceId, vhid: Option<Vhid>, src: IpAddr, reason: RejectReason) {
        match vhid.and_then(|v| self.routers.get_mut(&(iface, v))) {
            Some(r) => *r.counters.rejected.entry(reason).or_default() += 1,
            None => *self.node_rejected.entry(reason).or_default() += 1,
        }
        self.actions.push_back(Action::Rejected {
            iface,
            vhid,
            src,
            reason,
        });
    }

    fn transition(&mut self, key: (IfaceId, Vhid), to: State, reason: Reason) -> Option<State> {
        let r = self.routers.get_mut(&key)?;
        let from = r.state;
        if from == to {
            return None;
        }
        r.state = to;
        r.next_advert = None;
        r.master_down_at = None;
        if let Some(v) = r.vrrp.as_mut() {
            v.resigned = false;
            // A master advertises at its own interval; a backup re-learns it (RFC 5798 §6.4).
            if to != State::Backup {
                v.master_adver_int = v.interval;
            }
        }
        self.actions.push_back(Action::Transition {
            iface: key.0,
            vhid: key.1,
            from,
            to,
            reason,
        });
        Some(from)
    }

    fn become_backup(&mut self, now: Instant, key: (IfaceId, Vhid), reason: Reason) {
        if self.transition(key, State::Backup, reason).is_some() {
            let md = self.master_down(key);
            if let Some(r) = self.routers.get_mut(&key) {
                r.master_down_at = Some(now + md);
            }
        }
    }

    fn master_to_backup(&mut self, now: Instant, key: (IfaceId, Vhid), reason: Reason) {
        self.become_backup(now, key, reason);
        self.actions.push_back(Action::RemoveAddresses {
            iface: key.0,
            vhid: key.1,
        });
    }

    fn become_master(&mut self, now: Instant, key: (IfaceId, Vhid), reason: Reason) {
        if self.transition(key, State::Master, reason).is_none() {
            return;
        }
        // Addresses first so that the advert and the announcements never point at nothing.
        self.actions.push_back(Action::AddAddresses {
            iface: key.0,
            vhid: key.1,
        });
        self.advertise(key);
        self.actions.push_back(Action::Announce {
            iface: key.0,
            vhid: key.1,
        });
        let interval = self.advert_interval(key);
        if let Some(r) = self.routers.get_mut(&key) {
            r.next_advert = Some(now + interval);
        }
    }

    /// INIT without a farewell: the link is gone, so nothing could be sent anyway.
    fn become_init(&mut self, key: (IfaceId, Vhid), reason: Reason) {
        if self.transition(key, State::Init, reason) == Some(State::Master) {
            self.actions.push_back(Action::RemoveAddresses {
                iface: key.0,
                vhid: key.1,
            });
        }
    }

    /// Leaves service cleanly: a master bows out so a backup takes over at once (CARP: the
    /// slowest timing; VRRP: priority 0).
    fn leave(&mut self, key: (IfaceId, Vhid), reason: Reason) {
        match self.routers.get(&key) {
            Some(r) if r.state == State::Master && r.vrrp.is_some() => {
                self.advertise_vrrp(key, Some(PRIORITY_RESIGN));
            }
            Some(r) if r.state == State::Master => self.advertise_carp(key, Some(BOW_OUT)),
            _ => {}
        }
        self.become_init(key, reason);
    }

    /// A master bows out with the same farewell as [`Self::leave`] and stays on as a backup.
    fn hand_over(&mut self, now: Instant, key: (IfaceId, Vhid)) {
        match self.routers.get(&key) {
            Some(r) if r.state == State::Master && r.vrrp.is_some() => {
                self.advertise_vrrp(key, Some(PRIORITY_RESIGN));
            }
            Some(r) if r.state == State::Master => self.advertise_carp(key, Some(BOW_OUT)),
            _ => return,
        }
        self.master_to_backup(now, key, Reason::HandedOver);
    }

    /// One advert per family, in the router's protocol, with its current timing.
    fn advertise(&mut self, key: (IfaceId, Vhid)) {
        match self.routers.get(&key) {
            Some(r) if r.vrrp.is_some() => self.advertise_vrrp(key, None),
            Some(_) => self.advertise_carp(key, None),
            None => {}
        }
    }
}

/// A tandem-mode counter start from the wall-clock time since the Unix epoch, as 32.32 fixed
/// point: whole seconds in the high 32 bits, the fraction of a second in the low 32. Adverts
/// add one each, so a node that restarts even a fraction of a second later starts above every
/// counter of its previous run (it would have to have sent 2^32 adverts a second to catch up).
/// Seconds wrap in 2106.
pub fn counter_clock(since_epoch: Duration) -> u64 {
    let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (since_epoch.as_secs() << 32) | frac
}

/// Tiny seeded generator (SplitMix64): deterministic, no dependency, good enough for counters.
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

/// When the advert after one due at `due` (and sent at `now`) is due: one interval after
/// `due`, not after `now`, so the lateness of each wake-up (a timer rounds up to its tick,
/// about 1 ms) does not add up from advert to advert (with 10 ms adverts it made the interval
/// 11.3 ms, eating the backup's margin). A master that fell more than an interval behind
/// (a stall) does not send a burst to catch up: it starts over from `now`.
fn next_due(due: Instant, now: Instant, interval: Duration) -> Instant {
    let next = due + interval;
    if next <= now {
        now + interval
    } else {
        next
    }
}
