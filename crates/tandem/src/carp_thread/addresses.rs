//! VIP addresses on the CARP thread: added (after the barrier), released (only what Tandem
//! added: it tags its addresses, and only the tag is trusted), announced (gratuitous ARP,
//! unsolicited NA), and the stale ones of an earlier run swept when an interface is first used.

use super::Barrier;
use carp::{IfaceId, Vhid};
use ipnet::IpNet;
use linux::netlink::{Added, Netlink, Released};
use std::collections::{HashSet, VecDeque};
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

/// An operation with the vhid's addresses as they were when the engine asked: a reload that
/// changes or drops the vhid meanwhile does not change what it acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub op: AddrOp,
    pub addrs: Vec<IpNet>,
}

/// Address operations held back while the barrier runs. An add waits for the barrier; what
/// comes after it waits behind it, so the order the engine asked for is kept; a removal drops
/// the add (and announcement) of the same vhid still waiting, so a node that stepped down
/// meanwhile neither adds the VIP nor announces it. Nothing else waits: adverts, timers and
/// commands go on.
pub struct Deferred {
    barrier: Option<Barrier>,
    waiting: Option<(oneshot::Receiver<()>, tokio::time::Instant)>,
    queue: VecDeque<Queued>,
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
    pub fn push(&mut self, op: AddrOp, addrs: Vec<IpNet>) -> Vec<Queued> {
        match op {
            AddrOp::Add(..) => {
                if let (Some(b), None) = (&self.barrier, &self.waiting) {
                    self.waiting = Some((b(), tokio::time::Instant::now() + BARRIER_WAIT));
                }
            }
            AddrOp::Remove(i, v) => self.queue.retain(|q| {
                !matches!(q.op, AddrOp::Add(qi, qv) | AddrOp::Announce(qi, qv) if (qi, qv) == (i, v))
            }),
            AddrOp::Announce(..) => {}
        }
        self.queue.push_back(Queued { op, addrs });
        if self.waiting.is_some() && self.queue.iter().any(|q| matches!(q.op, AddrOp::Add(..))) {
            return Vec::new();
        }
        // Nothing left to wait for (no barrier, or its adds were dropped).
        self.waiting = None;
        self.queue.drain(..).collect()
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
    pub fn take(&mut self) -> Vec<Queued> {
        if self.waiting.is_some() {
            return Vec::new();
        }
        self.queue.drain(..).collect()
    }

    /// Shutting down: adds not yet made are dropped (and their announcements), the barrier is
    /// not awaited; removals stay.
    pub fn cancel_adds(&mut self) {
        self.waiting = None;
        self.queue.retain(|q| matches!(q.op, AddrOp::Remove(..)));
    }
}

/// The addresses this process added itself. On Linux 5.18 and later the tag on an address
/// says it is Tandem's; an older kernel drops the tag, and then only this record tells.
#[derive(Default)]
pub struct Ledger {
    ours: HashSet<(IfaceId, IpAddr)>,
    /// Whether the kernel was seen to keep the tag (checked on the first address added).
    tag_kept: Option<bool>,
}

impl Ledger {
    /// Adds every address of a vhid; a failure is logged and the rest go on.
    pub async fn add(
        &mut self,
        netlink: &Netlink,
        iface: IfaceId,
        name: &str,
        vhid: Vhid,
        addrs: &[IpNet],
    ) {
        for a in addrs {
            match netlink.add_address(iface, a.addr(), a.prefix_len()).await {
                Ok(Added::New) => {
                    self.ours.insert((iface, a.addr()));
                    if self.tag_kept.is_none() {
                        self.check_tag(netlink, iface, a.addr()).await;
                    }
                }
                Ok(Added::AlreadyThere) => {}
                Err(e) => error!("vhid={vhid} cannot add VIP {a} on {name}: {e}"),
            }
        }
    }

    async fn check_tag(&mut self, netlink: &Netlink, iface: IfaceId, addr: IpAddr) {
        let Ok(details) = netlink.address_details(iface).await else {
            return;
        };
        let kept = details.iter().any(|d| d.addr == addr && d.tandem);
        self.tag_kept = Some(kept);
        if !kept {
            warn!(
                "this kernel does not keep the tag tandem puts on its addresses (IFA_PROTO; Linux 5.18 and later do): tandem removes only the VIPs it added in this run, and VIPs left by a crash are not swept at the next start"
            );
        }
    }

    /// Removes every address of a vhid that Tandem added; an address it did not add stays.
    pub async fn release(
        &mut self,
        netlink: &Netlink,
        iface: IfaceId,
        name: &str,
        vhid: Vhid,
        addrs: &[IpNet],
    ) {
        for a in addrs {
            let ours = self.ours.contains(&(iface, a.addr()));
            match netlink.release_address(iface, a.addr(), ours).await {
                Ok(Released::Removed | Released::NotPresent) => {
                    self.ours.remove(&(iface, a.addr()));
                }
                Ok(Released::NotOurs { prefix }) => warn!(
                    "vhid={vhid} VIP {a} on {name}: the address there ({}/{prefix}) was not added by tandem; left in place",
                    a.addr()
                ),
                Err(e) => error!("vhid={vhid} cannot remove VIP {a} on {name}: {e}"),
            }
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

    fn net(s: &str) -> Vec<IpNet> {
        vec![s.parse().expect("net")]
    }

    fn ops(q: Vec<Queued>) -> Vec<AddrOp> {
        q.into_iter().map(|q| q.op).collect()
    }

    /// A barrier whose flushes never answer, kept so they stay pending.
    fn stuck() -> (Barrier, Arc<std::sync::Mutex<Vec<oneshot::Sender<()>>>>) {
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = held.clone();
        let b: Barrier = Arc::new(move || {
            let (tx, rx) = oneshot::channel::<()>();
            if let Ok(mut v) = keep.lock() {
                v.push(tx);
            }
            rx
        });
        (b, held)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn adds_wait_for_the_barrier_and_keep_their_order_and_addresses() {
        let (tx, rx) = oneshot::channel();
        let slot = Arc::new(std::sync::Mutex::new(Some(rx)));
        let barrier: Barrier = Arc::new(move || {
            slot.lock()
                .ok()
                .and_then(|mut s| s.take())
                .unwrap_or_else(|| oneshot::channel().1)
        });
        let mut d = Deferred::new(Some(barrier));
        assert_eq!(
            d.push(AddrOp::Add(1, vhid(7)), net("192.0.2.100/24")),
            vec![]
        );
        assert_eq!(
            d.push(AddrOp::Announce(1, vhid(7)), net("192.0.2.100/24")),
            vec![]
        );
        assert_eq!(
            d.push(AddrOp::Remove(1, vhid(8)), net("192.0.2.108/24")),
            vec![]
        );
        tx.send(()).expect("send");
        d.ready().await;
        let done = d.take();
        assert_eq!(
            ops(done.clone()),
            vec![
                AddrOp::Add(1, vhid(7)),
                AddrOp::Announce(1, vhid(7)),
                AddrOp::Remove(1, vhid(8))
            ]
        );
        assert_eq!(done[2].addrs, net("192.0.2.108/24"));
        // Without a barrier waiting, removals go at once.
        assert_eq!(
            ops(d.push(AddrOp::Remove(1, vhid(7)), net("192.0.2.100/24"))),
            vec![AddrOp::Remove(1, vhid(7))]
        );
    }

    #[test]
    fn a_step_down_drops_the_add_and_announcement_still_waiting() {
        let (b, held) = stuck();
        let mut d = Deferred::new(Some(b));
        assert!(d
            .push(AddrOp::Add(1, vhid(7)), net("192.0.2.100/24"))
            .is_empty());
        assert!(d
            .push(AddrOp::Announce(1, vhid(7)), net("192.0.2.100/24"))
            .is_empty());
        // The node heard a better master before the flush came back.
        assert_eq!(
            ops(d.push(AddrOp::Remove(1, vhid(7)), net("192.0.2.100/24"))),
            vec![AddrOp::Remove(1, vhid(7))]
        );
        assert!(d.take().is_empty());
        drop(held);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_stuck_barrier_holds_an_add_back_only_briefly() {
        let (b, held) = stuck();
        let mut d = Deferred::new(Some(b));
        assert!(d
            .push(AddrOp::Add(1, vhid(7)), net("192.0.2.100/24"))
            .is_empty());
        let t = tokio::time::Instant::now();
        d.ready().await;
        assert_eq!(t.elapsed(), BARRIER_WAIT);
        assert_eq!(ops(d.take()), vec![AddrOp::Add(1, vhid(7))]);
        drop(held);
    }

    #[test]
    fn shutting_down_drops_pending_adds_but_not_removals() {
        let (b, held) = stuck();
        let mut d = Deferred::new(Some(b));
        d.push(AddrOp::Add(1, vhid(7)), net("192.0.2.100/24"));
        d.push(AddrOp::Announce(1, vhid(7)), net("192.0.2.100/24"));
        d.push(AddrOp::Remove(1, vhid(8)), net("192.0.2.108/24"));
        d.cancel_adds();
        assert_eq!(ops(d.take()), vec![AddrOp::Remove(1, vhid(8))]);
        drop(held);
    }
}
