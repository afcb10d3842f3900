//! Network-namespace test topologies for integration tests and benchmarks (dev only).
//!
//! This crate owns the namespaces, veth pairs and bridges a test builds, and every process it
//! starts inside them. It drives iproute2 (`ip`) as a subprocess: no netlink code, no unsafe.
//! A [`Lab`] names everything with a per-test, per-process prefix and tears it all down on
//! `Drop` (also while unwinding from a panic). Switches are namespaces holding a bridge `br0`;
//! hosts are namespaces attached to switches (or to each other) by veth pairs.
//!
//! Addresses in tests must come from the documentation ranges 192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24 and 2001:db8::/32 (see shared/design.md, "Test hosts").
//!
//! Modules, one concern each (everything public is re-exported here):
//! - `topology`: [`Lab`] (namespace naming, creation, teardown) and [`Switch`] (bridges, ports);
//! - `host`: [`Host`] commands and queries (links, addresses, MAC, carrier, sysctls);
//! - `process`: [`Host::spawn`] and the [`Process`] it returns;
//! - `traffic`: servers and probes for firewall tests ([`Outcome`]);
//! - `preflight`: [`require_netns`]; `wait`: [`wait_until`];
//! - `cmd`: the `ip` / `kill` subprocess helpers behind all of them.

mod cmd;
mod host;
mod preflight;
mod process;
mod topology;
mod traffic;
mod wait;

pub use host::Host;
pub use preflight::require_netns;
pub use process::Process;
pub use topology::{Lab, Switch};
pub use traffic::Outcome;
pub use wait::wait_until;
