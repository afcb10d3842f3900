//! The CARP virtual routers of one node, as a sans-IO state machine.
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

use crate::auth::{AuthMode, Authenticator, TandemAuthenticator};
use crate::units::{ticks_to_duration, Advbase, Interval, Skew, Vhid};
use crate::wire::{self, Advert};
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

mod types;

pub use types::{
    Action, Counters, DemoteSource, Family, Input, Reason, RejectReason, RouterConfig,
    RouterStatus, State, TimerKind,
};

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
}

/// All CARP virtual routers of one node.
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
                ttl,
                payload,
            } => self.on_advert(now, iface, src, ttl, &payload),
            Input::Link { iface, up } => self.on_link(now, iface, up),
            Input::Demote { source, value } => self.set_demotion(source, value),
            Input::SendResult { iface, vhid, ok } => self.on_send_result(iface, vhid, ok),
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
                    self.advertise(key, None);
                    let interval = self.interval(key);
                    if let Some(r) = self.routers.get_mut(&key) {
                        r.next_advert = Some(now + interval.as_duration());
                    }
                }
                State::Backup if r.master_down_at.is_some_and(|t| t <= now) => {
                    self.become_master(now, key, Reason::MasterDownTimer);
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
                advertised_skew: self.advertised_skew(&r.cfg),
                demotion: self.demotion(),
                preempt: r.cfg.preempt,
                addresses: r.cfg.addresses.clone(),
                last_master: r.last_master,
                counters: r.counters.clone(),
                auth: r.cfg.key.mode(),
            })
            .collect()
    }

    pub fn state(&self, iface: IfaceId, vhid: Vhid) -> Option<State> {
        self.routers.get(&(iface, vhid)).map(|r| r.state)
    }

    fn link_up(&self, iface: IfaceId) -> bool {
        self.links.get(&iface).copied().unwrap_or(true)
    }

    fn advertised_skew(&self, cfg: &RouterConfig) -> Skew {
        let d = self.demotion();
        if d == 0 {
            return cfg.advskew;
        }
        let demoted = (u16::from(cfg.advskew.0) + u16::from(d)).min(u16::from(MAX_DEMOTED_SKEW));
        // A skew configured above the cap is never lowered by demotion.
        Skew((demoted as u8).max(cfg.advskew.0))
    }

    fn interval(&self, key: (IfaceId, Vhid)) -> Interval {
        match self.routers.get(&key) {
            Some(r) => Interval::new(r.cfg.advbase, self.advertised_skew(&r.cfg)),
            None => Interval::new(Advbase(255), Skew(255)),
        }
    }

    fn master_down_interval(&self, key: (IfaceId, Vhid)) -> std::time::Duration {
        let Some(r) = self.routers.get(&key) else {
            return ticks_to_duration(u32::MAX / 2);
        };
        let skew = self.advertised_skew(&r.cfg);
        ticks_to_duration(3 * u32::from(r.cfg.advbase.0) * 256 + u32::from(skew.0))
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

    /// What an advert whose MAC does not verify is: one that verifies with a (smaller) set of
    /// the vhid's addresses (BSD mode), one that verifies in the other mode, or a bad HMAC.
    fn diagnose(
        &mut self,
        now: Instant,
        key: (IfaceId, Vhid),
        a: &Advert,
        src: IpAddr,
        payload: &[u8],
    ) -> RejectReason {
        let Some(r) = self.routers.get_mut(&key) else {
            return RejectReason::BadHmac;
        };
        if let Some((at, found)) = r.diagnosed {
            if now.saturating_duration_since(at) < Duration::from_secs(1) {
                return found;
            }
        }
        let (k, addrs) = (&r.cfg.key, &r.cfg.addresses);
        let found = match r.cfg.key.mode() {
            AuthMode::Bsd => {
                if crate::auth::matching_subset(k, key.1, addrs, a.counter, &a.hmac).is_some() {
                    RejectReason::AddressMismatch
                } else if TandemAuthenticator::new(k.clone(), addrs).verify(payload, src) {
                    RejectReason::AuthModeMismatch
                } else {
                    RejectReason::BadHmac
                }
            }
            AuthMode::Tandem => {
                let bsd = k.as_mode(AuthMode::Bsd);
                if Authenticator::new(bsd.clone(), key.1, addrs).verify(a.counter, &a.hmac)
                    || crate::auth::matching_subset(&bsd, key.1, addrs, a.counter, &a.hmac)
                        .is_some()
                {
                    RejectReason::AuthModeMismatch
                } else {
                    RejectReason::BadHmac
                }
            }
        };
        r.diagnosed = Some((now, found));
        found
    }

    /// Checks an advert's MAC (and in tandem mode its counter, which it then records).
    fn authenticate(
        &mut self,
        now: Instant,
        key: (IfaceId, Vhid),
        a: &Advert,
        src: IpAddr,
        payload: &[u8],
    ) -> Result<(), RejectReason> {
        let Some(r) = self.routers.get_mut(&key) else {
            return Err(RejectReason::UnknownVhid);
        };
        let verified = match &mut r.auth {
            Auth::Bsd(auth) => auth.verify(a.counter, &a.hmac),
            Auth::Tandem { mac, last_counter } => {
                if mac.verify(payload, src) {
                    if last_counter
                        .get(&src)
                        .is_some_and(|last| a.counter <= *last)
                    {
                        return Err(RejectReason::Replayed);
                    }
                    last_counter.insert(src, a.counter);
                    true
                } else {
                    false
                }
            }
        };
        if verified {
            Ok(())
        } else {
            Err(self.diagnose(now, key, a, src, payload))
        }
    }

    fn on_advert(&mut self, now: Instant, iface: IfaceId, src: IpAddr, ttl: u8, payload: &[u8]) {
        // Our own adverts looping back are not news.
        if self.local_addrs.get(&(iface, fkey(Family::of(&src)))) == Some(&src) {
            return;
        }
        // Name the router as early as possible so the rejection is counted against it.
        let claimed = payload
            .get(1)
            .and_then(|v| Vhid::new(*v))
            .filter(|v| self.routers.contains_key(&(iface, *v)));
        if ttl != 255 {
            return self.reject(iface, claimed, src, RejectReason::BadTtl);
        }
        let advert = match wire::decode(payload) {
            Ok(a) => a,
            Err(e) => return self.reject(iface, claimed, src, e.into()),
        };
        let key = (iface, advert.vhid);
        if !self.routers.contains_key(&key) {
            return self.reject(iface, Some(advert.vhid), src, RejectReason::UnknownVhid);
        }
        if let Err(reason) = self.authenticate(now, key, &advert, src, payload) {
            return self.reject(iface, Some(advert.vhid), src, reason);
        }
        let Some(r) = self.routers.get(&key) else {
            return;
        };
        let state = r.state;
        let preempt = r.cfg.preempt;
        let our_base = r.cfg.advbase;
        if let Some(r) = self.routers.get_mut(&key) {
            r.counters.adverts_received += 1;
        }
        if state == State::Init {
            return;
        }
        let theirs = (advert.demote, Interval::new(advert.advbase, advert.advskew));
        let ours = (0u8, self.interval(key));
        match state {
            State::Master => {
                let step_down = match theirs.cmp(&ours) {
                    std::cmp::Ordering::Less => Some(Reason::MoreFrequentAdvert),
                    std::cmp::Ordering::Equal => {
                        // ucarp's tie-break: the lower address stays master. Without our own
                        // address to compare, step down as the BSDs do.
                        match self.local_addrs.get(&(iface, fkey(Family::of(&src)))) {
                            Some(own) if *own < src => None,
                            _ => Some(Reason::EqualAdvertTieLost),
                        }
                    }
                    std::cmp::Ordering::Greater => None,
                };
                if let Some(reason) = step_down {
                    if let Some(r) = self.routers.get_mut(&key) {
                        r.last_master = Some(src);
                    }
                    self.master_to_backup(now, key, reason);
                }
            }
            State::Backup => {
                if let Some(r) = self.routers.get_mut(&key) {
                    r.last_master = Some(src);
                }
                let three_bases = 3 * u32::from(our_base.0) * 256;
                // Checked before preemption so that a bow-out is logged as what it is.
                if theirs.1.ticks() > three_bases {
                    // The master announced an interval we would time out on anyway (a bow-out).
                    self.become_master(now, key, Reason::MasterWillTimeOut);
                } else if preempt && theirs > ours {
                    self.become_master(now, key, Reason::PreemptSlowerMaster);
                } else {
                    let md = self.master_down_interval(key);
                    if let Some(r) = self.routers.get_mut(&key) {
                        r.master_down_at = Some(now + md);
                    }
                }
            }
            State::Init => {}
        }
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
        let md = self.master_down_interval(key);
        if self.transition(key, State::Backup, reason).is_some() {
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
        self.advertise(key, None);
        self.actions.push_back(Action::Announce {
            iface: key.0,
            vhid: key.1,
        });
        let interval = self.interval(key);
        if let Some(r) = self.routers.get_mut(&key) {
            r.next_advert = Some(now + interval.as_duration());
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

    /// Leaves service cleanly: a master bows out so a backup takes over at once.
    fn leave(&mut self, key: (IfaceId, Vhid), reason: Reason) {
        let is_master = self
            .routers
            .get(&key)
            .is_some_and(|r| r.state == State::Master);
        if is_master {
            self.advertise(key, Some(BOW_OUT));
        }
        self.become_init(key, reason);
    }

    fn advertise(&mut self, key: (IfaceId, Vhid), timing: Option<(Advbase, Skew)>) {
        let skew = match self.routers.get(&key) {
            Some(r) => self.advertised_skew(&r.cfg),
            None => return,
        };
        let Some(r) = self.routers.get_mut(&key) else {
            return;
        };
        let (advbase, advskew) = timing.unwrap_or((r.cfg.advbase, skew));
        let counter = match r.auth {
            Auth::Bsd(_) => {
                r.counter = r.counter.wrapping_add(1);
                r.counter
            }
            Auth::Tandem { .. } => {
                self.clock_counter = self.clock_counter.wrapping_add(1);
                self.clock_counter
            }
        };
        let mut advert = Advert {
            vhid: r.cfg.vhid,
            advbase,
            advskew,
            demote: 0,
            counter,
            hmac: [0; wire::HMAC_LEN],
        };
        for family in &r.families {
            let payload = match &r.auth {
                Auth::Bsd(auth) => {
                    advert.hmac = auth.sign(counter);
                    wire::encode(&advert)
                }
                // Signed for the source address the advert leaves from; without one (no socket
                // yet) the send fails anyway.
                Auth::Tandem { mac, .. } => {
                    let src = self
                        .local_addrs
                        .get(&(key.0, fkey(*family)))
                        .copied()
                        .unwrap_or(match family {
                            Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                            Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                        });
                    mac.seal(&advert, src)
                }
            };
            r.counters.adverts_sent += 1;
            self.actions.push_back(Action::Send {
                iface: key.0,
                vhid: key.1,
                family: *family,
                payload: payload.to_vec(),
            });
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
