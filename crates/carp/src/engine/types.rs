//! What goes into the engine and what comes out of it: router configuration, inputs,
//! actions, reasons and status.

use super::IfaceId;
use crate::auth::{AuthMode, Key};
use crate::units::{Advbase, Centisecs, Skew, Vhid};
use crate::vrrp::VrrpDecodeError;
use crate::wire::DecodeError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterConfig {
    pub iface: IfaceId,
    pub vhid: Vhid,
    pub advbase: Advbase,
    pub advskew: Skew,
    pub preempt: bool,
    /// Every address of the vhid; all nodes must carry the same set (it is in the HMAC).
    pub addresses: Vec<IpAddr>,
    /// The passphrase, and with it the authentication mode ([`Key::mode`]). CARP only.
    pub key: Key,
    /// CARP (the default, also for traces recorded before VRRP existed) or VRRPv3. A VRRP
    /// router takes its priority from `advskew` and the node's demotion (see
    /// [`RouterStatus::priority`]); `advbase` and `key` are CARP's only.
    #[serde(default)]
    pub protocol: Protocol,
    /// Unicast peers: the other nodes' addresses on this link. A family with peers sends one
    /// advert per peer of that family (instead of to the group) and accepts adverts only from
    /// them (else `unknown_peer`); a unicast advert from a peer needs no TTL of 255 (carp(4),
    /// keepalived). A family without peers stays multicast. This node's own address is skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<IpAddr>,
}

/// Which protocol a virtual router speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    #[default]
    Carp,
    /// VRRPv3 (RFC 5798), advertising every `interval`.
    Vrrp { interval: Centisecs },
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Carp => f.write_str("carp"),
            Protocol::Vrrp { .. } => f.write_str("vrrp"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Init,
    Backup,
    Master,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(a: &IpAddr) -> Family {
        match a {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Why a router changed state; logged with every transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Startup,
    LinkUp,
    LinkDown,
    MasterDownTimer,
    PreemptSlowerMaster,
    MasterWillTimeOut,
    MoreFrequentAdvert,
    EqualAdvertTieLost,
    Shutdown,
    Removed,
    /// VRRP: a master heard an advert of a higher priority.
    HigherPriorityAdvert,
    /// VRRP: the master resigned (an advert with priority 0) and the skew time ran out.
    PriorityZero,
    /// The operator handed the VIPs to a peer (maintenance mode, a switchover).
    HandedOver,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Startup => "startup",
            Reason::LinkUp => "link-up",
            Reason::LinkDown => "link-down",
            Reason::MasterDownTimer => "master-down-timer",
            Reason::PreemptSlowerMaster => "preempt-slower-master",
            Reason::MasterWillTimeOut => "master-will-time-out",
            Reason::MoreFrequentAdvert => "more-frequent-advert",
            Reason::EqualAdvertTieLost => "equal-advert-tie-lost",
            Reason::Shutdown => "shutdown",
            Reason::Removed => "removed",
            Reason::HigherPriorityAdvert => "higher-priority-advert",
            Reason::PriorityZero => "priority-zero",
            Reason::HandedOver => "handed-over",
        })
    }
}

/// Why an advert was dropped. Each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    BadTtl,
    TooShort,
    BadVersion,
    BadType,
    BadChecksum,
    BadVhid,
    UnknownVhid,
    BadHmac,
    /// The HMAC verifies with a subset of this vhid's addresses: right passphrase, but the
    /// sender's vhid carries other addresses (every node must carry the same set).
    AddressMismatch,
    /// Tandem mode: the MAC is right but the counter is not above the last one accepted from
    /// that source for the vhid (a replayed advert, or a peer whose clock went back).
    Replayed,
    /// The advert verifies in the other authentication mode: the nodes disagree on
    /// `[carp] auth`.
    AuthModeMismatch,
    /// A VRRP advert for a vhid configured as CARP, or a CARP advert for a VRRP one.
    ProtocolMismatch,
    /// A VRRP advert whose length is not exactly 8 bytes and its count of addresses.
    BadLength,
    /// A VRRP advert with a Max Adver Int of 0.
    BadInterval,
    /// The router has unicast peers of the advert's family and its source is none of them.
    UnknownPeer,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadTtl => "bad_ttl",
            RejectReason::TooShort => "too_short",
            RejectReason::BadVersion => "bad_version",
            RejectReason::BadType => "bad_type",
            RejectReason::BadChecksum => "bad_checksum",
            RejectReason::BadVhid => "bad_vhid",
            RejectReason::UnknownVhid => "unknown_vhid",
            RejectReason::BadHmac => "bad_hmac",
            RejectReason::AddressMismatch => "address_mismatch",
            RejectReason::Replayed => "replayed",
            RejectReason::AuthModeMismatch => "auth_mode_mismatch",
            RejectReason::ProtocolMismatch => "protocol_mismatch",
            RejectReason::BadLength => "bad_length",
            RejectReason::BadInterval => "bad_interval",
            RejectReason::UnknownPeer => "unknown_peer",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<DecodeError> for RejectReason {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::TooShort(_) => RejectReason::TooShort,
            DecodeError::BadVersion(_) => RejectReason::BadVersion,
            DecodeError::BadType(_) => RejectReason::BadType,
            DecodeError::ZeroVhid => RejectReason::BadVhid,
            DecodeError::BadChecksum => RejectReason::BadChecksum,
        }
    }
}

impl From<VrrpDecodeError> for RejectReason {
    fn from(e: VrrpDecodeError) -> Self {
        match e {
            VrrpDecodeError::TooShort(_) => RejectReason::TooShort,
            VrrpDecodeError::BadVersion(_) => RejectReason::BadVersion,
            VrrpDecodeError::BadType(_) => RejectReason::BadType,
            VrrpDecodeError::BadLength { .. } => RejectReason::BadLength,
            // No pseudo-header can be built, so the checksum cannot verify.
            VrrpDecodeError::MixedFamilies | VrrpDecodeError::BadChecksum => {
                RejectReason::BadChecksum
            }
            VrrpDecodeError::ZeroVrid => RejectReason::BadVhid,
            VrrpDecodeError::ZeroInterval => RejectReason::BadInterval,
        }
    }
}

/// Something that lowers this node's standing; the node's demotion is the sum of the active ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DemoteSource {
    LinkDown(IfaceId),
    SendErrors(IfaceId, Vhid),
    /// State sync has not finished its bulk transfer.
    StateSync,
    /// Config generation behind the cluster's.
    ConfigSync,
    /// Set by the operator (maintenance mode).
    Operator,
    /// This node handed its VIPs to a peer (`tandem switchover`), or a peer asked it to
    /// stand back while it hands its VIPs to another node.
    Switchover,
    /// A health check of this name is failing.
    Check(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Input {
    /// A CARP or VRRP payload (after the IP header) received on `iface`.
    Advert {
        iface: IfaceId,
        src: IpAddr,
        /// The packet's IP destination (VRRP's checksum covers it; CARP ignores it).
        /// Traces recorded before it existed read as unspecified.
        #[serde(default = "unspecified")]
        dst: IpAddr,
        ttl: u8,
        payload: Vec<u8>,
    },
    /// Link state of an interface (administratively up and carrier).
    Link { iface: IfaceId, up: bool },
    /// Sets (or with 0 clears) one demotion source.
    Demote { source: DemoteSource, value: u8 },
    /// The outcome of carrying out a [`Action::Send`].
    SendResult {
        iface: IfaceId,
        vhid: Vhid,
        ok: bool,
    },
    /// Clean stop: masters bow out and release their addresses.
    Shutdown,
    /// A planned hand-over: masters bow out (as at a clean stop, so a backup takes over at
    /// once whatever its preempt setting) and stay on as backups. The node's standing is
    /// the caller's to lower first (a demotion), or it may take the VIPs back by preempting.
    HandOver,
}

fn unspecified() -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Send this payload on `iface`: to `dst` (a unicast peer) when set, else multicast
    /// (224.0.0.18 or ff02::12, TTL 255). A VRRP payload's checksum is computed for the
    /// engine's local address of `family` as source and `dst` (or the group) as destination.
    Send {
        iface: IfaceId,
        vhid: Vhid,
        family: Family,
        payload: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dst: Option<IpAddr>,
    },
    AddAddresses {
        iface: IfaceId,
        vhid: Vhid,
    },
    RemoveAddresses {
        iface: IfaceId,
        vhid: Vhid,
    },
    /// Gratuitous ARP / unsolicited NA for every address of the vhid.
    Announce {
        iface: IfaceId,
        vhid: Vhid,
    },
    Transition {
        iface: IfaceId,
        vhid: Vhid,
        from: State,
        to: State,
        reason: Reason,
    },
    Rejected {
        iface: IfaceId,
        vhid: Option<Vhid>,
        src: IpAddr,
        reason: RejectReason,
    },
    DemotionChanged {
        from: u8,
        to: u8,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub send_errors: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterStatus {
    pub iface: IfaceId,
    pub vhid: Vhid,
    pub state: State,
    pub advbase: Advbase,
    /// Configured skew.
    pub advskew: Skew,
    /// Skew as advertised, demotion included (CARP: capped at 240, never below the
    /// configured skew; VRRP: advskew + demotion, saturating at 255).
    pub advertised_skew: Skew,
    pub demotion: u8,
    pub preempt: bool,
    pub addresses: Vec<IpAddr>,
    /// Source of the last accepted advert from another node.
    pub last_master: Option<IpAddr>,
    pub counters: Counters,
    /// How its adverts are authenticated (CARP).
    pub auth: AuthMode,
    pub protocol: Protocol,
    /// VRRP's effective priority, `254 - min(253, advskew + demotion)` (so 1..=254; 255,
    /// the address owner, is never derived); `None` for CARP.
    pub priority: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimerKind {
    Advertise,
    MasterDown,
}
