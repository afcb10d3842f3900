//! All kernel I/O of Tandem, and the only crate where `unsafe` is allowed.
//!
//! - [`carp_socket`]: raw IP protocol 112 sockets (CARP/VRRP), one per interface and family,
//!   bound to the device, multicast group joined, TTL / hop limit 255.
//! - [`netlink`]: rtnetlink on tokio: links, VIP addresses, and a link watcher for demotion.
//! - [`announce`]: gratuitous ARP and unsolicited neighbour advertisements over AF_PACKET.
//! - [`neighbours`]: neighbour resolution on demand (a new master's next hops, before the
//!   traffic comes).
//! - [`vmac`]: macvlan links that carry a VIP on its virtual MAC (created, tagged, deleted).
//! - [`sysctl`]: /proc/sys by dotted name.
//! - [`ping`]: ICMP echo over a raw socket (health checks).
//! - [`unbound`]: the local resolver's include file (replaced atomically) and `unbound-control`.
//! - [`wireguard`]: WireGuard devices over their UAPI socket (`set=1` / `get=1`);
//!   [`wireguard_kernel`]: kernel WireGuard devices over generic netlink.
//! - [`process`]: a program run bounded in time in its own process group (hooks, exec checks).
//! - [`kea`]: a command to Kea (the DHCP server) over its unix control socket.
//!
//! Errors are one [`LinuxError`]; each says what failed on which interface or address and keeps
//! the kernel's errno. Nothing here panics on input from the kernel or the network.
//! `unsafe` is limited to two `setsockopt`/`sendto` calls with C structs the safe wrappers do
//! not offer (each with a SAFETY comment).

pub mod access;
pub mod addrs;
pub mod announce;
pub mod carp_socket;
pub mod conntrack;
mod error;
pub mod kea;
pub mod neighbours;
pub mod netlink;
pub mod nft;
pub mod ping;
pub mod process;
pub mod routes;
pub mod sched;
pub mod sysctl;
pub mod systemd;
pub mod unbound;
pub mod vmac;
pub mod wireguard;
pub mod wireguard_kernel;

pub use addrs::{AddressInfo, TANDEM_ADDR_PROTO};
pub use announce::{gratuitous_arp, unsolicited_na};
pub use carp_socket::{CarpSocket, ReceivedAdvert};
pub use error::{DecodeError, Family, LinuxError};
pub use netlink::{Added, LinkEvent, LinkInfo, LinkWatcher, Netlink, Released};
