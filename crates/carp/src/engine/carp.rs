//! The CARP half of the engine: BSD CARP's timing, HMAC and tandem-mode authentication, and
//! what a CARP router does with an advert.

use super::{
    fkey, Auth, Carp, IfaceId, Reason, RejectReason, RouterConfig, State, MAX_DEMOTED_SKEW,
};
use super::{Action, Family};
use crate::auth::{AuthMode, Authenticator, TandemAuthenticator};
use crate::units::{ticks_to_duration, Advbase, Interval, Skew, Vhid};
use crate::wire::{self, Advert};
use std::net::IpAddr;
use std::time::{Duration, Instant};

impl Carp {
    pub(super) fn advertised_skew(&self, cfg: &RouterConfig) -> Skew {
        let d = self.demotion();
        if d == 0 {
            return cfg.advskew;
        }
        let demoted = (u16::from(cfg.advskew.0) + u16::from(d)).min(u16::from(MAX_DEMOTED_SKEW));
        // A skew configured above the cap is never lowered by demotion.
        Skew((demoted as u8).max(cfg.advskew.0))
    }

    pub(super) fn interval(&self, key: (IfaceId, Vhid)) -> Interval {
        match self.routers.get(&key) {
            Some(r) => Interval::new(r.cfg.advbase, self.advertised_skew(&r.cfg)),
            None => Interval::new(Advbase(255), Skew(255)),
        }
    }

    pub(super) fn master_down_interval(&self, key: (IfaceId, Vhid)) -> std::time::Duration {
        let Some(r) = self.routers.get(&key) else {
            return ticks_to_duration(u32::MAX / 2);
        };
        let skew = self.advertised_skew(&r.cfg);
        ticks_to_duration(3 * u32::from(r.cfg.advbase.0) * 256 + u32::from(skew.0))
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

    /// A CARP advert (anything but a version-3 payload), after the checks every advert gets
    /// (loop, unicast peer, TTL); `claimed` is the router its second byte names, if this node
    /// has it.
    pub(super) fn on_carp_advert(
        &mut self,
        now: Instant,
        iface: IfaceId,
        src: IpAddr,
        claimed: Option<Vhid>,
        payload: &[u8],
    ) {
        let advert = match wire::decode(payload) {
            Ok(a) => a,
            Err(e) => return self.reject(iface, claimed, src, e.into()),
        };
        let key = (iface, advert.vhid);
        if !self.routers.contains_key(&key) {
            return self.reject(iface, Some(advert.vhid), src, RejectReason::UnknownVhid);
        }
        if self.routers.get(&key).is_some_and(|r| r.vrrp.is_some()) {
            return self.reject(
                iface,
                Some(advert.vhid),
                src,
                RejectReason::ProtocolMismatch,
            );
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

    pub(super) fn advertise_carp(&mut self, key: (IfaceId, Vhid), timing: Option<(Advbase, Skew)>) {
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
        let families = r.families.clone();
        let dsts: Vec<Vec<Option<IpAddr>>> = families
            .iter()
            .map(|f| self.destinations(key, *f))
            .collect();
        let Some(r) = self.routers.get_mut(&key) else {
            return;
        };
        for (family, dsts) in families.iter().zip(dsts) {
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
            // CARP has no pseudo-header: the same bytes go to the group or to every peer.
            for dst in dsts {
                r.counters.adverts_sent += 1;
                self.actions.push_back(Action::Send {
                    iface: key.0,
                    vhid: key.1,
                    family: *family,
                    payload: payload.to_vec(),
                    dst,
                });
            }
        }
    }
}
