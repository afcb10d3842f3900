//! VRRP in the simulated network: which vhid an advert of either protocol is for, how nodes
//! rank, and the standard VRRP router of a test node.

use super::{node_addr, vhid, vip, Key2, NodeId, Sim, LAN, LAN_VHID, WAN_VHID};
use carp::{
    vrrp_skew_micros, wire, Centisecs, IfaceId, Interval, Key, Protocol, RouterConfig, Vhid,
};
use std::net::IpAddr;
use std::time::Duration;

/// The vhid an advert (CARP or VRRP, by its version nibble) is for, if it decodes.
pub fn heard_vhid(payload: &[u8], src: IpAddr) -> Option<Vhid> {
    if payload.first().map(|b| b >> 4) == Some(carp::vrrp::VERSION) {
        let dst = carp::vrrp::group_for(src);
        carp::vrrp::decode(payload, src, dst).ok().map(|a| a.vrid)
    } else {
        wire::decode(payload).ok().map(|a| a.vhid)
    }
}

fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The standard VRRP router of a test node: vhid 7 on LAN or 8 on WAN, priority 254 - skew.
pub fn vrrp_router(iface: IfaceId, skew: u8, interval_cs: u16, preempt: bool) -> RouterConfig {
    RouterConfig {
        iface,
        vhid: vhid(if iface == LAN { LAN_VHID } else { WAN_VHID }),
        advbase: carp::Advbase(1),
        advskew: carp::Skew(skew),
        preempt,
        addresses: vec![vip(iface)],
        key: Key::from_passphrase(b"unused by VRRP"),
        protocol: Protocol::Vrrp {
            interval: Centisecs::new(interval_cs).expect("valid interval"),
        },
        peers: Vec::new(),
    }
}

impl Sim {
    /// A node's standing for `key`, lower is better.
    pub fn rank(&self, id: NodeId, key: Key2) -> (u32, u128) {
        let s = self.router_status(id, key);
        let addr = addr_bits(node_addr(id, key.0));
        match s.priority {
            Some(p) => (255 - u32::from(p), u128::MAX - addr),
            None => (Interval::new(s.advbase, s.advertised_skew).ticks(), addr),
        }
    }

    /// A running VRRP node's own interval for `key`.
    pub fn vrrp_interval_of(&self, id: NodeId, key: Key2) -> Centisecs {
        match self.router_status(id, key).protocol {
            Protocol::Vrrp { interval } => interval,
            Protocol::Carp => self.fail(format!("node{id} runs CARP for {key:?}")),
        }
    }

    /// A running VRRP node's Skew_Time for `key` at its current priority and own interval.
    pub fn vrrp_skew_of(&self, id: NodeId, key: Key2) -> Duration {
        let p = self.router_status(id, key).priority.unwrap_or(1);
        Duration::from_micros(vrrp_skew_micros(p, self.vrrp_interval_of(id, key)))
    }

    /// A running VRRP node's Master_Down_Interval when its master advertises as it does.
    pub fn vrrp_master_down_of(&self, id: NodeId, key: Key2) -> Duration {
        3 * self.vrrp_interval_of(id, key).as_duration() + self.vrrp_skew_of(id, key)
    }
}
