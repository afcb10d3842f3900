//! CARP for Tandem: the CARP v2 wire format, its HMAC-SHA1 authentication, and the state
//! machine of every virtual router (vhid) of one node, including node-wide demotion.
//!
//! Pure and deterministic (sans-IO): no sockets, clocks, threads or global randomness. The
//! daemon owns the I/O and drives [`Carp`] with timestamped [`Input`]s; simulations drive it
//! with a virtual clock.

#![forbid(unsafe_code)]

pub mod auth;
pub mod engine;
pub mod trace;
pub mod units;
pub mod wire;

pub use auth::{AuthMode, Authenticator, Key, TandemAuthenticator};
pub use engine::{
    counter_clock, Action, Carp, Counters, DemoteSource, Family, IfaceId, Input, Reason,
    RejectReason, RouterConfig, RouterStatus, State, TimerKind,
};
pub use units::{Advbase, Interval, Skew, Vhid};
