//! The VRRPv3 half of the engine (RFC 5798 §6, and keepalived 2.2.7 where the RFC is silent;
//! see docs/research/vrrpv3.md).
//!
//! - **Priority** comes from the node's skew and demotion, so one configuration drives CARP
//!   and VRRP alike: `priority = 254 - min(253, advskew + demotion)` ([`vrrp_priority`]), so
//!   1..=254; 255 (the address owner) is never derived. A demotion change shows in the next
//!   advert.
//! - **Timers** in exact integer microseconds, as keepalived computes them:
//!   `skew = floor((256 - priority) * cs * 10000 / 256)` µs ([`vrrp_skew_micros`]) and
//!   `master_down = 3 * Master_Adver_Interval + skew`. Master_Adver_Interval is learned from
//!   the master's adverts while BACKUP and reset to our own interval on becoming MASTER.
//! - **Backup** hearing priority 0: master-down timer = skew. Otherwise, without preemption or
//!   from a priority at least ours: learn the interval, restart the timer. Otherwise (preempt,
//!   lower priority): ignore it, so the timer runs out and this router takes over.
//! - **Master** hearing priority 0: advertise at once. A higher priority, or an equal one from
//!   a higher source address than ours: step down to BACKUP. Anything else: advertise at once
//!   (keepalived's "forcing a new election"), so a lower master steps down without delay.
//! - **Leaving** (shutdown, removal): a master sends one advert with priority 0, then releases
//!   its addresses.
//! - **Receive checks**, each dropped and counted: a listed source when the router has unicast
//!   peers of the family, TTL/hop limit 255 (not for a unicast advert to a router with peers),
//!   version and type, exact
//!   length, checksum over the packet's source and destination, a vhid configured on the
//!   interface, as VRRP, and the same address set of that family (order free; keepalived
//!   drops a mismatch too).
//! - **Sending**: one advert per family the router has addresses of, each listing that
//!   family's addresses in configuration order, from the engine's local address of that
//!   family (IPv6: the link-local) to 224.0.0.18 / ff02::12, or to each unicast peer of that
//!   family, with the checksum computed for that peer as destination.

use super::{fkey, Action, Carp, Family, IfaceId, Reason, RejectReason, Router, State};
use crate::units::{Centisecs, Skew, Vhid};
use crate::vrrp::{self as wire, VrrpAdvert};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The priority a departing master advertises (RFC 5798 §5.2.4).
pub const PRIORITY_RESIGN: u8 = 0;
/// The most the node's skew and demotion can take off 254.
const MAX_PRIORITY_LOSS: u16 = 253;

/// A VRRP router's priority: `254 - min(253, advskew + demotion)`, in 1..=254.
pub fn vrrp_priority(advskew: Skew, demotion: u8) -> u8 {
    let loss = (u16::from(advskew.0) + u16::from(demotion)).min(MAX_PRIORITY_LOSS);
    // 254 - loss is in 1..=254.
    u8::try_from(254 - loss).unwrap_or(1)
}

/// Skew_Time in µs as keepalived computes it: `floor((256 - priority) * cs * 10000 / 256)`.
pub fn vrrp_skew_micros(priority: u8, interval: Centisecs) -> u64 {
    (256 - u64::from(priority)) * interval.as_micros() / 256
}

impl Carp {
    /// The router's priority now (demotion included).
    pub(super) fn priority(&self, cfg: &super::RouterConfig) -> u8 {
        vrrp_priority(cfg.advskew, self.demotion())
    }

    /// What `RouterStatus::advertised_skew` shows for a VRRP router: advskew + demotion,
    /// saturating (its priority is 254 minus this, at most 253).
    pub(super) fn vrrp_skew(&self, cfg: &super::RouterConfig) -> Skew {
        Skew(cfg.advskew.0.saturating_add(self.demotion()))
    }

    /// Skew_Time, for the interval learned from the master.
    fn vrrp_skew_time(&self, r: &Router) -> Duration {
        match r.vrrp.as_ref() {
            Some(v) => {
                Duration::from_micros(vrrp_skew_micros(self.priority(&r.cfg), v.master_adver_int))
            }
            None => Duration::ZERO,
        }
    }

    /// Master_Down_Interval: 3 * Master_Adver_Interval + Skew_Time.
    pub(super) fn vrrp_master_down(&self, r: &Router) -> Duration {
        match r.vrrp.as_ref() {
            Some(v) => 3 * v.master_adver_int.as_duration() + self.vrrp_skew_time(r),
            None => Duration::ZERO,
        }
    }

    /// A version-3 payload, after the checks every advert gets (loop,
    /// unicast peer, TTL); `claimed` is the router its second byte names, if this node has it.
    pub(super) fn on_vrrp_advert(
        &mut self,
        now: Instant,
        iface: IfaceId,
        src: IpAddr,
        dst: IpAddr,
        claimed: Option<Vhid>,
        payload: &[u8],
    ) {
        let advert = match wire::decode(payload, src, dst) {
            Ok(a) => a,
            Err(e) => return self.reject(iface, claimed, src, e.into()),
        };
        let key = (iface, advert.vrid);
        let Some(r) = self.routers.get(&key) else {
            return self.reject(iface, Some(advert.vrid), src, RejectReason::UnknownVhid);
        };
        if r.vrrp.is_none() {
            return self.reject(
                iface,
                Some(advert.vrid),
                src,
                RejectReason::ProtocolMismatch,
            );
        }
        let family = Family::of(&src);
        let mut ours: Vec<IpAddr> = r
            .cfg
            .addresses
            .iter()
            .filter(|a| Family::of(a) == family)
            .copied()
            .collect();
        let mut theirs = advert.addresses.clone();
        ours.sort();
        theirs.sort();
        if ours.is_empty() || ours != theirs {
            return self.reject(iface, Some(advert.vrid), src, RejectReason::AddressMismatch);
        }
        let state = r.state;
        let preempt = r.cfg.preempt;
        let mine = self.priority(&r.cfg);
        let own_addr = self.local_addrs.get(&(iface, fkey(family))).copied();
        let Some(r) = self.routers.get_mut(&key) else {
            return;
        };
        r.counters.adverts_received += 1;
        match state {
            State::Init => {}
            State::Backup => {
                if advert.priority == PRIORITY_RESIGN {
                    if let Some(v) = r.vrrp.as_mut() {
                        v.resigned = true;
                    }
                    let skew = self.routers.get(&key).map(|r| self.vrrp_skew_time(r));
                    if let (Some(r), Some(skew)) = (self.routers.get_mut(&key), skew) {
                        r.master_down_at = Some(now + skew);
                    }
                } else if !preempt || advert.priority >= mine {
                    r.last_master = Some(src);
                    if let Some(v) = r.vrrp.as_mut() {
                        v.master_adver_int = advert.max_adver_int;
                        v.resigned = false;
                    }
                    let md = self.routers.get(&key).map(|r| self.vrrp_master_down(r));
                    if let (Some(r), Some(md)) = (self.routers.get_mut(&key), md) {
                        r.master_down_at = Some(now + md);
                    }
                }
                // else: preempt and a lower priority: let the timer run out.
            }
            State::Master => {
                let step_down = if advert.priority == PRIORITY_RESIGN {
                    None
                } else if advert.priority > mine {
                    Some(Reason::HigherPriorityAdvert)
                } else if advert.priority == mine {
                    // The higher primary address wins; without our own, step down as CARP does.
                    match own_addr {
                        Some(own) if own >= src => None,
                        _ => Some(Reason::EqualAdvertTieLost),
                    }
                } else {
                    None
                };
                match step_down {
                    Some(reason) => {
                        r.last_master = Some(src);
                        if let Some(v) = r.vrrp.as_mut() {
                            v.master_adver_int = advert.max_adver_int;
                        }
                        self.master_to_backup(now, key, reason);
                    }
                    None => {
                        // A resigning master, or a lower one: answer at once so the other
                        // steps down (or backups see us) without waiting for our timer.
                        self.advertise_vrrp(key, None);
                        let interval = self.advert_interval(key);
                        if let Some(r) = self.routers.get_mut(&key) {
                            r.next_advert = Some(now + interval);
                        }
                    }
                }
            }
        }
    }

    /// One advert per family; `priority` overrides the router's (a resignation).
    pub(super) fn advertise_vrrp(&mut self, key: (IfaceId, Vhid), priority: Option<u8>) {
        let Some(r) = self.routers.get(&key) else {
            return;
        };
        let Some(v) = r.vrrp.as_ref() else {
            return;
        };
        let advert = VrrpAdvert {
            vrid: key.1,
            priority: priority.unwrap_or_else(|| self.priority(&r.cfg)),
            max_adver_int: v.interval,
            addresses: r.cfg.addresses.clone(),
        };
        let mut sends: Vec<(Family, Vec<u8>, Option<IpAddr>)> = Vec::new();
        for family in &r.families {
            // Without a local address (no socket yet) the send fails anyway.
            let src = self
                .local_addrs
                .get(&(key.0, fkey(*family)))
                .copied()
                .unwrap_or(match family {
                    Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                });
            // The checksum covers the destination: one encoding per unicast peer.
            for dst in self.destinations(key, *family) {
                let to = dst.unwrap_or_else(|| wire::group_for(src));
                sends.push((*family, wire::encode(&advert, src, to), dst));
            }
        }
        let Some(r) = self.routers.get_mut(&key) else {
            return;
        };
        for (family, payload, dst) in sends {
            r.counters.adverts_sent += 1;
            self.actions.push_back(Action::Send {
                iface: key.0,
                vhid: key.1,
                family,
                payload,
                dst,
            });
        }
    }
}
