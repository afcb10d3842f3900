//! The compiled representation: what `compile` produces and rendering prints. Everything in it
//! is resolved (devices, addresses, alias sets), so rendering needs no lookups and finds no
//! errors.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::{Action, Direction, Family, Protocol};
use crate::net::Intervals;
use crate::Route;

/// One side (family) of an address match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Side<T> {
    /// No constraint.
    Any,
    /// Matches nothing in this family.
    Nothing,
    /// A named set (`@alias_NAME_v4`).
    Set(String),
    /// Literal addresses.
    Lits(Intervals<T>),
}

impl<T> Side<T> {
    pub fn is_nothing(&self) -> bool {
        matches!(self, Side::Nothing)
    }
    pub fn is_any(&self) -> bool {
        matches!(self, Side::Any)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AddrMatch {
    pub v4: Side<u32>,
    pub v6: Side<u128>,
}

impl AddrMatch {
    pub(super) fn any() -> Self {
        AddrMatch {
            v4: Side::Any,
            v6: Side::Any,
        }
    }
    pub(super) fn restrict(mut self, fam: Family) -> Self {
        match fam {
            Family::Inet => self.v6 = Side::Nothing,
            Family::Inet6 => self.v4 = Side::Nothing,
            Family::Any => {}
        }
        self
    }
}

#[derive(Debug, Clone)]
pub(crate) enum PortMatch {
    Any,
    Nothing,
    Set(String),
    Lits(Intervals<u16>),
}

pub(crate) struct CRule {
    pub number: usize,
    pub enabled: bool,
    pub description: Option<String>,
    pub device: Option<String>,
    pub direction: Direction,
    pub action: Action,
    pub protocol: Protocol,
    /// Family implied by the rule's `family` and protocol (icmp → inet, icmpv6 → inet6).
    pub family: Family,
    pub src: AddrMatch,
    pub dst: AddrMatch,
    pub sport: PortMatch,
    pub dport: PortMatch,
    pub log: bool,
    pub stateful: bool,
}

pub(crate) struct COutbound {
    pub number: usize,
    pub description: Option<String>,
    pub device: String,
    pub src: AddrMatch,
    pub dst: AddrMatch,
    pub to: IpAddr,
}

pub(crate) struct CForward {
    pub number: usize,
    pub description: Option<String>,
    pub device: String,
    pub protocol: Protocol,
    pub src: AddrMatch,
    pub destination: IpAddr,
    pub port: PortMatch,
    pub target: IpAddr,
    pub target_port: Option<u16>,
    pub pass_rule: bool,
    pub log: bool,
}

pub(crate) struct COneToOne {
    pub number: usize,
    pub description: Option<String>,
    pub device: String,
    pub external: IpAddr,
    pub internal: IpAddr,
}

pub(crate) enum SetElems {
    V4(Intervals<u32>),
    V6(Intervals<u128>),
    Port(Intervals<u16>),
}

pub(crate) struct Compiled {
    /// Named sets, sorted by name.
    pub sets: BTreeMap<String, SetElems>,
    pub rules: Vec<CRule>,
    pub outbound: Vec<COutbound>,
    pub forwards: Vec<CForward>,
    pub one_to_one: Vec<COneToOne>,
    pub routes: Vec<Route>,
    /// Devices whose VIPs need CARP/VRRP (IP protocol 112) over IPv4, and over IPv6: sorted,
    /// each once. Protocol 112 is passed there and nowhere else.
    pub carp_v4: Vec<String>,
    pub carp_v6: Vec<String>,
    /// Listeners only one peer may reach (see [`crate::NodeContext::peer_only`]).
    pub peer_only: Vec<crate::PeerOnly>,
}

/// The name of an alias's set in `Compiled::sets` and in the script (`suffix`: `v4`, `v6` or
/// `ports`).
pub(super) fn set_name(alias: &str, suffix: &str) -> String {
    format!("alias_{alias}_{suffix}")
}
