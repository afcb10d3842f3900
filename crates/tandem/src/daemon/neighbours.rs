//! Neighbours resolved before the traffic needs them.
//!
//! When a node takes over, the connections cut by the failure retransmit within a millisecond
//! of each other, to the few neighbours they all go through (the server, the gateway). The
//! kernel holds packets for a neighbour it is still resolving only up to `unres_qlen_bytes`
//! and drops the rest, and each connection dropped waits one more retransmission timeout (3 s
//! after the first failure, 6 s after a second one): bench/README.md, "Three nodes:
//! connections that miss the second master". So a backup keeps those neighbours resolved
//! (every [`WARM_INTERVAL`], for the VIP devices it is not master on) and a new master resolves
//! them again at once: the endpoints of the synced connections that are directly attached to
//! the device, and the gateways of the routes out of it.

use super::Daemon;
use crate::state_sync;
use linux::netlink::Netlink;
use std::net::IpAddr;
use std::time::Duration;
use tracing::debug;

/// How often a backup refreshes the neighbours of its VIP devices.
pub const WARM_INTERVAL: Duration = Duration::from_secs(30);
/// Most endpoints taken from state sync's table at a time.
const MAX_ENDPOINTS: usize = 65_536;
/// Most neighbours resolved per device at a time (a LAN rarely has more hosts that matter;
/// each costs one ARP request or neighbour solicitation).
const MAX_PER_DEVICE: usize = 4096;

/// Whether `a` is inside `net`/`prefix` (same family only).
fn in_subnet(a: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = u32::from(prefix.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = u32::from(prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The neighbours a device needs: the endpoints inside one of its subnets (`own`: its
/// addresses with their prefixes; never one of those addresses itself), then the gateways of
/// routes out of it; each once, at most `max`.
pub fn wanted(
    endpoints: &[IpAddr],
    own: &[(IpAddr, u8)],
    gateways: &[IpAddr],
    max: usize,
) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    // Gateways first: every connection that is not directly attached goes through one.
    let attached = endpoints
        .iter()
        .filter(|a| own.iter().any(|(n, p)| in_subnet(**a, *n, *p)));
    for a in gateways.iter().chain(attached) {
        if out.len() >= max {
            break;
        }
        let is_own = own.iter().any(|(o, _)| o == a);
        let unusable = a.is_unspecified() || a.is_multicast() || a.is_loopback();
        if !is_own && !unusable && !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

/// Resolves what `device` needs; says how many were asked for and how many failed.
async fn warm_device(
    netlink: &Netlink,
    device: &str,
    endpoints: &[IpAddr],
) -> Result<(usize, usize), String> {
    let link = netlink.link(device).await.map_err(|e| e.to_string())?;
    let own: Vec<(IpAddr, u8)> = netlink
        .address_details(link.index)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|a| !a.link_scope)
        .map(|a| (a.addr, a.prefix))
        .collect();
    let gateways = netlink
        .gateways_via(link.index)
        .await
        .map_err(|e| e.to_string())?;
    let want = wanted(endpoints, &own, &gateways, MAX_PER_DEVICE);
    let mut failed = 0;
    for a in &want {
        if let Err(e) = netlink.resolve_neighbour(link.index, *a).await {
            debug!("{e}");
            failed += 1;
        }
    }
    Ok((want.len(), failed))
}

impl Daemon {
    /// Resolves the neighbours of these VIP devices off the daemon loop (nothing waits for it),
    /// for `endpoints`, or for every endpoint state sync knows.
    pub(super) fn warm_neighbours(
        &self,
        devices: Vec<String>,
        endpoints: Option<Vec<IpAddr>>,
        why: &'static str,
    ) {
        if devices.is_empty() {
            return;
        }
        let states = self.states.as_ref().map(|h| h.commands.clone());
        let netlink = self.netlink.clone();
        tokio::spawn(async move {
            let endpoints = match (endpoints, states) {
                (Some(e), _) => e,
                (None, Some(tx)) => {
                    let endpoints = |reply| state_sync::Command::Endpoints {
                        max: MAX_ENDPOINTS,
                        reply,
                    };
                    state_sync::ask(&tx, endpoints, Duration::from_secs(2))
                        .await
                        .unwrap_or_default()
                }
                (None, None) => Vec::new(),
            };
            for d in devices {
                match warm_device(&netlink, &d, &endpoints).await {
                    Ok((n, failed)) => {
                        debug!("{why}: resolving {n} neighbours on {d} ({failed} refused)")
                    }
                    Err(e) => debug!("{why}: cannot resolve the neighbours on {d}: {e}"),
                }
            }
        });
    }

    /// The VIP devices this node is not master on (where a takeover would find cold
    /// neighbours).
    pub(super) fn backup_devices(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .cfg
            .vips
            .iter()
            .filter(|v| !self.masters.contains(&(v.interface.clone(), v.vhid.get())))
            .map(|v| v.device.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The device of a VIP by interface and vhid.
    pub(super) fn vip_device(&self, interface: &str, vhid: u8) -> Option<String> {
        self.cfg
            .vips
            .iter()
            .find(|v| v.interface == interface && v.vhid.get() == vhid)
            .map(|v| v.device.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn attached_endpoints_and_gateways_once_never_our_own() {
        let own = [(ip("198.51.100.2"), 24), (ip("198.51.100.1"), 24)];
        let endpoints = [
            ip("198.51.100.10"),
            ip("192.0.2.10"),     // another subnet: not this device's
            ip("198.51.100.1"),   // our VIP
            ip("203.0.113.9"),    // behind the gateway
            ip("198.51.100.10"),  // twice
            ip("2001:db8::10"),   // other family
            ip("198.51.100.254"), // also the gateway
        ];
        let gateways = [ip("198.51.100.254")];
        assert_eq!(
            wanted(&endpoints, &own, &gateways, 100),
            vec![ip("198.51.100.254"), ip("198.51.100.10"),]
        );
        assert_eq!(
            wanted(&endpoints, &own, &gateways, 1),
            vec![ip("198.51.100.254")]
        );
    }

    #[test]
    fn subnets_of_both_families_and_odd_prefixes() {
        assert!(in_subnet(ip("2001:db8::10"), ip("2001:db8::1"), 64));
        assert!(!in_subnet(ip("2001:db8:1::10"), ip("2001:db8::1"), 64));
        assert!(in_subnet(ip("192.0.2.77"), ip("192.0.2.1"), 25));
        assert!(!in_subnet(ip("192.0.2.200"), ip("192.0.2.1"), 25));
        assert!(in_subnet(ip("203.0.113.5"), ip("192.0.2.1"), 0));
        assert!(!in_subnet(ip("192.0.2.2"), ip("192.0.2.1"), 32));
        assert!(!in_subnet(ip("192.0.2.2"), ip("2001:db8::1"), 0));
    }
}
