//! VIP addresses on the CARP thread: added (after the barrier), released (only what Tandem
//! added: it tags its addresses, and only the tag is trusted), announced (gratuitous ARP,
//! unsolicited NA), and the stale ones of an earlier run swept when an interface is first used.

use super::Barrier;
use carp::{IfaceId, Vhid};
use ipnet::IpNet;
use linux::netlink::{Netlink, Released};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

/// How long an address add waits for the barrier (state sync's flush) at most: the node is
/// master already; a takeover must not wait on a stuck state sync.
const BARRIER_WAIT: Duration = Duration::from_millis(500);

/// An address operation the engine asked for, in the order it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrOp {
    Add(IfaceId, Vhid),
    Announce(IfaceId, Vhid),
    Remove(IfaceId, Vhid),
}

impl AddrOp {
    pub fn target(self) -> (IfaceId, Vhid) {
        match self {
            AddrOp::Add(i, v) | AddrOp::Announce(i, v) | AddrOp::Remove(i, v) => (i, v),
        }
    }
}

/// Address operations held back while the barrier runs. An add waits for the barrier; what
/// comes after it waits behind it, so the order the engine asked for is kept. Nothing else
/// waits: adverts, timers and commands go on.
pub struct Deferred {
    barrier: Option<Barrier>,
    waiting: Option<(oneshot::Receiver<()>, tokio::time::Instant)>,
    queue: VecDeque<AddrOp>,
}

impl Deferred {
    pub fn new(barrier: Option<Barrier>) -> Deferred {
        Deferred {
            barrier,
            waiting: None,
            queue: VecDeque::new(),
        }
    }

    /// Queues an operation; returns what may be carried out now.
    pub fn push(&mut self, op: AddrOp) -> Vec<AddrOp> {
        if let (AddrOp::Add(..), Some(b)) = (op, &self.barrier) {
            if self.waiting.is_none() {
                self.waiting = Some((b(), tokio::time::Instant::now() + BARRIER_WAIT));
            }
        }
        self.queue.push_back(op);
        if self.waiting.is_none() {
            self.queue.drain(..).collect()
        } else {
            Vec::new()
        }
    }

    /// Resolves when the barrier is passed (or timed out); never while nothing waits.
    pub async fn ready(&mut self) {
        let Some((rx, deadline)) = self.waiting.as_mut() else {
            return std::future::pending().await;
        };
        if tokio::time::timeout_at(*deadline, rx).await.is_err() {
            warn!(
                "state sync did not flush within {} ms; taking the VIP anyway",
                BARRIER_WAIT.as_millis()
            );
        }
        self.waiting = None;
    }

    /// Everything queued, once the barrier is passed.
    pub fn take(&mut self) -> Vec<AddrOp> {
        if self.waiting.is_some() {
            return Vec::new();
        }
        self.queue.drain(..).collect()
    }

    /// Shutting down: adds not yet made are dropped (and their announcements), the barrier is
    /// not awaited; removals stay.
    pub fn cancel_adds(&mut self) {
        self.waiting = None;
        self.queue.retain(|op| matches!(op, AddrOp::Remove(..)));
    }
}

/// Adds every address of a vhid; a failure is logged and the rest go on.
pub async fn add(netlink: &Netlink, iface: IfaceId, name: &str, vhid: Vhid, addrs: &[IpNet]) {
    for a in addrs {
        if let Err(e) = netlink.add_address(iface, a.addr(), a.prefix_len()).await {
            error!("vhid={vhid} cannot add VIP {a} on {name}: {e}");
        }
    }
}

/// Removes every address of a vhid that Tandem added; an address it did not add stays.
pub async fn release(netlink: &Netlink, iface: IfaceId, name: &str, vhid: Vhid, addrs: &[IpNet]) {
    for a in addrs {
        match netlink.release_address(iface, a.addr()).await {
            Ok(Released::Removed | Released::NotPresent) => {}
            Ok(Released::NotOurs { prefix }) => warn!(
                "vhid={vhid} VIP {a} on {name}: the address there ({}/{prefix}) was not added by tandem; left in place",
                a.addr()
            ),
            Err(e) => error!("vhid={vhid} cannot remove VIP {a} on {name}: {e}"),
        }
    }
}

/// Gratuitous ARP for each IPv4 address, unsolicited NA for each IPv6 one.
pub fn announce(iface: IfaceId, name: &str, mac: [u8; 6], vhid: Vhid, addrs: &[IpNet]) {
    for a in addrs {
        let r = match a.addr() {
            IpAddr::V4(ip) => linux::announce::gratuitous_arp(iface, mac, ip),
            IpAddr::V6(ip) => linux::announce::unsolicited_na(iface, mac, ip),
        };
        if let Err(e) = r {
            warn!("vhid={vhid} cannot announce {a} on {name}: {e}");
        }
    }
}

/// Readies an interface for VIPs: clears VIPs a previous run left behind (after a crash, or
/// removed from the config since) and keeps secondary addresses when a VIP is removed. Only
/// called by the process that holds the node's lock.
pub async fn prepare_interface(netlink: &Netlink, id: IfaceId, device: &str) -> Result<(), String> {
    // Without it, removing a VIP that had become its subnet's primary address would take the
    // node's other addresses in that subnet with it.
    let knob = format!("net/ipv4/conf/{device}/promote_secondaries");
    if linux::sysctl::read(&knob).ok().as_deref() != Some("1") {
        match linux::sysctl::write(&knob, "1") {
            Ok(()) => info!(
                "set {}=1 (removing a VIP must not take the node's other addresses with it)",
                knob.replace('/', ".")
            ),
            Err(e) => warn!("cannot set {knob}=1: {e}"),
        }
    }
    let addrs = netlink
        .address_details(id)
        .await
        .map_err(|e| format!("cannot list addresses of {device}: {e}"))?;
    for a in addrs.into_iter().filter(|a| a.tandem) {
        info!("removing stale VIP {}/{} from {device}", a.addr, a.prefix);
        netlink
            .del_address(id, a.addr, a.prefix)
            .await
            .map_err(|e| format!("cannot clear stale VIP {} on {device}: {e}", a.addr))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn vhid(n: u8) -> Vhid {
        Vhid::new(n).expect("vhid")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn adds_wait_for_the_barrier_and_keep_their_order() {
        let (tx, rx) = oneshot::channel();
        let slot = Arc::new(std::sync::Mutex::new(Some(rx)));
        let barrier: Barrier = Arc::new(move || {
            slot.lock()
                .ok()
                .and_then(|mut s| s.take())
                .unwrap_or_else(|| oneshot::channel().1)
        });
        let mut d = Deferred::new(Some(barrier));
        assert_eq!(d.push(AddrOp::Add(1, vhid(7))), vec![]);
        assert_eq!(d.push(AddrOp::Announce(1, vhid(7))), vec![]);
        assert_eq!(d.push(AddrOp::Remove(1, vhid(8))), vec![]);
        tx.send(()).expect("send");
        d.ready().await;
        assert_eq!(
            d.take(),
            vec![
                AddrOp::Add(1, vhid(7)),
                AddrOp::Announce(1, vhid(7)),
                AddrOp::Remove(1, vhid(8))
            ]
        );
        // Without a barrier waiting, removals go at once.
        assert_eq!(
            d.push(AddrOp::Remove(1, vhid(7))),
            vec![AddrOp::Remove(1, vhid(7))]
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_stuck_barrier_holds_an_add_back_only_briefly() {
        let never = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = never.clone();
        let barrier: Barrier = Arc::new(move || {
            let (tx, rx) = oneshot::channel::<()>();
            if let Ok(mut v) = keep.lock() {
                v.push(tx);
            }
            rx
        });
        let mut d = Deferred::new(Some(barrier));
        assert!(d.push(AddrOp::Add(1, vhid(7))).is_empty());
        let t = tokio::time::Instant::now();
        d.ready().await;
        assert_eq!(t.elapsed(), BARRIER_WAIT);
        assert_eq!(d.take(), vec![AddrOp::Add(1, vhid(7))]);
        drop(never);
    }

    #[test]
    fn shutting_down_drops_pending_adds_but_not_removals() {
        let barrier: Barrier = Arc::new(|| oneshot::channel().1);
        let mut d = Deferred::new(Some(barrier));
        d.push(AddrOp::Add(1, vhid(7)));
        d.push(AddrOp::Announce(1, vhid(7)));
        d.push(AddrOp::Remove(1, vhid(7)));
        d.cancel_adds();
        assert_eq!(d.take(), vec![AddrOp::Remove(1, vhid(7))]);
    }
}
