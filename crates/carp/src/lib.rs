//! CARP for Tandem: the CARP v2 wire format, its HMAC-SHA1 authentication, the VRRPv3 wire
//! format (RFC 5798), and the state machine of every virtual router (vhid) of one node, CARP
//! or VRRP, including node-wide demotion.
//!
//! Pure and deterministic (sans-IO): no sockets, clocks, threads or global randomness. The
//! daemon owns the I/O and drives [`Carp`] with timestamped [`Input`]s; simulations drive it
//! with a virtual clock.

#![forbid(unsafe_code)]

pub mod auth;
pub mod engine;
pub mod trace;
pub mod units;
pub mod vrrp;
pub mod wire;

pub use auth::{AuthMode, Authenticator, Key, TandemAuthenticator};
pub use engine::{
    counter_clock, vrrp_priority, vrrp_skew_micros, Action, Carp, Counters, DemoteSource, Family,
    IfaceId, Input, Protocol, Reason, RejectReason, RouterConfig, RouterStatus, State, TimerKind,
    PRIORITY_RESIGN,
};
pub use units::{Advbase, Centisecs, Interval, Skew, Vhid};
