//! The CARP thread's loop: the engine, its sockets, timers and link events, and the actions it
//! asks for. All decisions are the engine's (crate `carp`); this carries them out.

mod status;

use super::addresses::{self, AddrOp, Deferred, Ledger, Queued};
use super::record::Engine;
use super::vmac::Vmacs;
use super::{
    source_name, CarpStatus, Command, Demotion, Event, Options, Routers, Transition, VipStatus,
};
use crate::config::Vip;
use crate::deadline::sleep_until;
use carp::{Action, Family, IfaceId, Input, Key, RejectReason, RouterConfig};
use linux::carp_socket::CarpSocket;
use linux::netlink::{LinkWatcher, Netlink};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// Nice value of the CARP thread: picked before busy threads when the CPUs are loaded.
const CARP_NICE: i32 = -10;

/// One interface that carries VIPs.
struct Iface {
    logical: String,
    device: String,
    mac: [u8; 6],
    up: bool,
    v4: Option<Arc<CarpSocket>>,
    v6: Option<Arc<CarpSocket>>,
    /// IPv6 unicast peers: the receive-only socket for adverts to our global addresses is open.
    v6_unicast_rx: bool,
    /// The tasks reading its sockets, ended when the interface carries no VIP any more.
    receivers: Vec<tokio::task::JoinHandle<()>>,
    /// The tasks reading its IPv6 sockets, ended when they are reopened (IPv6 peers changed).
    v6_receivers: Vec<tokio::task::JoinHandle<()>>,
}

struct Advert {
    iface: IfaceId,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    payload: Vec<u8>,
}

struct Carp {
    engine: Engine,
    netlink: Netlink,
    ifaces: BTreeMap<IfaceId, Iface>,
    /// CARP sockets not open yet, as (interface, family).
    pending: Vec<(IfaceId, Family)>,
    /// Interfaces with a VIP that has IPv6 unicast peers, and those peers.
    unicast6: BTreeMap<IfaceId, Vec<std::net::Ipv6Addr>>,
    vips: HashMap<(IfaceId, u8), Vip>,
    /// The engine's routers as configured, to tell on converge which ones changed.
    routers: HashMap<(IfaceId, u8), RouterConfig>,
    adverts: mpsc::Sender<Advert>,
    /// (iface, vhid, reason) -> rejections seen, to keep a flood of bad adverts out of the log.
    reject_log: HashMap<(IfaceId, Option<u8>, RejectReason), u64>,
    transitions: HashMap<(IfaceId, u8), (carp::State, carp::State, carp::Reason, Instant)>,
    /// State changes per router since this daemon started (metrics).
    transition_counts: HashMap<(IfaceId, u8), u64>,
    events: mpsc::UnboundedSender<Event>,
    deferred: Deferred,
    ledger: Ledger,
    /// The macvlans of VIPs with `mac = "virtual"`.
    vmacs: Vmacs,
    /// Announcements repeated after a takeover with a virtual MAC (the first one can be lost
    /// while the macvlan comes up, and a switch must learn where the MAC went).
    reannounce: Vec<(tokio::time::Instant, IfaceId, carp::Vhid)>,
    /// systemd's watchdog interval, when the unit set one.
    watchdog: Option<Duration>,
}

/// The thread's body: its own current-thread runtime, then the loop until shut down.
pub fn run(
    opts: Options,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    if let Err(e) = linux::sched::set_current_thread_nice(CARP_NICE) {
        warn!("cannot raise the CARP thread's priority (nice {CARP_NICE}): {e}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start the CARP runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let netlink = match Netlink::new().await {
            Ok(n) => n,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot open rtnetlink: {e}")));
                return;
            }
        };
        // Watch before reading any link's state, so no change falls between the two.
        let watcher = match LinkWatcher::new().await {
            Ok(w) => w,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot watch links over rtnetlink: {e}")));
                return;
            }
        };
        let mut engine = match Engine::new(opts.seed, opts.record.as_deref()) {
            Ok(e) => e,
            Err(e) => {
                let _ = ready.send(Err(format!("{e:#}")));
                return;
            }
        };
        // Tandem-mode advert counters start at the wall clock, so they grow across restarts.
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => engine.set_counter_clock(carp::counter_clock(since)),
            Err(_) => warn!(
                "the wall clock is before 1970: tandem-mode CARP peers will take this node's adverts for replays until it is set"
            ),
        }
        let (adv_tx, adv_rx) = mpsc::channel(1024);
        let carp = Carp {
            engine,
            netlink,
            ifaces: BTreeMap::new(),
            pending: Vec::new(),
            unicast6: BTreeMap::new(),
            vips: HashMap::new(),
            routers: HashMap::new(),
            adverts: adv_tx,
            reject_log: HashMap::new(),
            transitions: HashMap::new(),
            transition_counts: HashMap::new(),
            events,
            deferred: Deferred::new(opts.barrier),
            ledger: Ledger::default(),
            vmacs: Vmacs::default(),
            reannounce: Vec::new(),
            watchdog: opts.watchdog,
        };
        let _ = ready.send(Ok(()));
        carp.run(commands, adv_rx, watcher).await;
    });
}

impl Carp {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut adverts: mpsc::Receiver<Advert>,
        mut watcher: LinkWatcher,
    ) {
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        let mut watching = true;
        // systemd's watchdog (`WatchdogSec=`): pinged from this loop at half the interval, so
        // a stuck CARP thread gets the daemon restarted. Off: the branch never runs.
        let mut watchdog = tokio::time::interval(
            self.watchdog
                .map(|d| d / 2)
                .unwrap_or(Duration::from_secs(3600))
                .max(Duration::from_millis(10)),
        );
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watchdog_failed = false;
        loop {
            self.execute().await;
            let sleep = sleep_until(self.engine.poll_timeout().map(|(t, _)| t));
            tokio::select! {
                biased;
                _ = sleep => self.engine.handle_timeout(Instant::now()),
                _ = watchdog.tick(), if self.watchdog.is_some() => {
                    if let Err(e) = linux::systemd::watchdog() {
                        if !std::mem::replace(&mut watchdog_failed, true) {
                            warn!("cannot ping systemd's watchdog: {e}");
                        }
                    }
                }
                () = self.deferred.ready() => {
                    let ops = self.deferred.take();
                    self.carry_out(ops).await;
                }
                () = sleep_until(self.reannounce.iter().map(|r| r.0.into_std()).min()) => {
                    let now = tokio::time::Instant::now();
                    let (due, later) = std::mem::take(&mut self.reannounce)
                        .into_iter()
                        .partition(|r| r.0 <= now);
                    self.reannounce = later;
                    for (_, iface, vhid) in due {
                        // Only a master announces (carry_out checks).
                        self.address_op(AddrOp::Announce(iface, vhid)).await;
                    }
                }
                ev = watcher.next(), if watching => match ev {
                    Ok(ev) => self.on_link(ev.index, ev.up),
                    Err(e) => {
                        error!("link watcher failed: {e}; link changes are no longer seen");
                        watching = false;
                    }
                },
                cmd = commands.recv() => match cmd {
                    Some(Command::Converge { routers, reply }) => {
                        let r = self.converge(&routers).await;
                        let _ = reply.send(r);
                    }
                    Some(Command::Demote { source, value }) => {
                        self.engine.handle(Instant::now(), Input::Demote { source, value });
                    }
                    Some(Command::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                    Some(Command::HandOver(reply)) => {
                        self.engine.handle(Instant::now(), Input::HandOver);
                        self.execute().await;
                        let _ = reply.send(());
                    }
                    Some(Command::Shutdown(reply)) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        // The daemon is gone without a shutdown: still bow out.
                        self.shutdown().await;
                        return;
                    }
                },
                // Last of the inputs: a flood of adverts from the LAN never holds up a command,
                // a VIP add or a link change (timers come first anyway).
                Some(a) = adverts.recv() => self.engine.handle(
                    Instant::now(),
                    Input::Advert { iface: a.iface, src: a.src, dst: a.dst, ttl: a.ttl, payload: a.payload },
                ),
                _ = retry.tick(), if !self.pending.is_empty() => {
                    let _ = self.open_pending(false);
                }
            }
        }
    }

    async fn shutdown(&mut self) {
        self.engine.handle(Instant::now(), Input::Shutdown);
        self.deferred.cancel_adds();
        self.execute().await;
        let ops = self.deferred.take();
        self.carry_out(ops).await;
        self.vmacs.delete_all(&self.netlink).await;
    }

    fn on_link(&mut self, index: u32, up: bool) {
        let Some(iface) = self.ifaces.get_mut(&index) else {
            return;
        };
        // The kernel reports every change of a link; only up/down matters here.
        if iface.up == up {
            return;
        }
        iface.up = up;
        self.engine
            .handle(Instant::now(), Input::Link { iface: index, up });
    }

    fn name(&self, iface: IfaceId) -> String {
        self.ifaces
            .get(&iface)
            .map_or_else(|| format!("ifindex {iface}"), |i| i.logical.clone())
    }

    /// See [`Command::Converge`].
    async fn converge(&mut self, r: &Routers) -> Result<String, String> {
        let now = Instant::now();
        let key = Key::new(r.auth, &r.passphrase);
        // Resolve every device first, so a missing one changes nothing.
        let mut links = BTreeMap::new();
        for vip in &r.vips {
            if links.contains_key(&vip.device) {
                continue;
            }
            let link = self.netlink.link(&vip.device).await.map_err(|e| {
                format!(
                    "interface {:?} (device {}) of vhid {}: {e}",
                    vip.interface, vip.device, vip.vhid
                )
            })?;
            links.insert(vip.device.clone(), link);
        }
        // One peer list serves every node: this node's own addresses in it are skipped.
        let mut own: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for vip in r.vips.iter().filter(|v| !v.peers.is_empty()) {
            let Some(link) = links.get(&vip.device) else {
                continue;
            };
            if !own.contains_key(&vip.device) {
                let addrs = self
                    .netlink
                    .address_details(link.index)
                    .await
                    .unwrap_or_default();
                let mine = addrs.into_iter().filter(|a| !a.tandem).map(|a| a.addr);
                own.insert(vip.device.clone(), mine.collect());
            }
        }
        let mut wanted: HashMap<(IfaceId, u8), (Vip, RouterConfig)> = HashMap::new();
        for vip in &r.vips {
            let Some(link) = links.get(&vip.device) else {
                continue;
            };
            let rc = RouterConfig {
                iface: link.index,
                vhid: vip.vhid,
                advbase: vip.advbase,
                advskew: r.advskew,
                preempt: r.preempt,
                addresses: vip.addresses.iter().map(|a| a.addr()).collect(),
                key: key.clone(),
                protocol: vip.protocol,
                peers: vip
                    .peers
                    .iter()
                    .filter(|p| !own.get(&vip.device).is_some_and(|o| o.contains(p)))
                    .copied()
                    .collect(),
            };
            wanted.insert((link.index, vip.vhid.get()), (vip.clone(), rc));
        }
        // A macvlan name taken by someone else changes nothing and is the error.
        let virtual_wanted: Vec<(IfaceId, &Vip)> = wanted
            .iter()
            .filter(|(k, (v, _))| self.vips.get(k).is_none_or(|old| old.mac != v.mac))
            .map(|((i, _), (v, _))| (*i, v))
            .collect();
        self.vmacs.check(&self.netlink, &virtual_wanted).await?;

        let mut leaving: Vec<(IfaceId, u8)> = self
            .routers
            .iter()
            .filter(|(k, rc)| {
                wanted.get(k).is_none_or(|(v, w)| {
                    w != *rc || self.vips.get(k).is_some_and(|old| old.mac != v.mac)
                })
            })
            .map(|(k, _)| *k)
            .collect();
        leaving.sort_unstable();
        for (iface, vhid) in &leaving {
            if let Some(v) = carp::Vhid::new(*vhid) {
                let vip = self.vips.get(&(*iface, *vhid));
                info!(
                    "vhid={vhid} iface={}: VIP {} leaves",
                    self.name(*iface),
                    vip.map(addr_list).unwrap_or_default()
                );
                self.engine.remove_router(*iface, v);
            }
        }
        // The bow-out adverts and address removals need the old VIP table.
        self.execute().await;
        for k in &leaving {
            self.routers.remove(k);
            self.vips.remove(k);
            self.vmacs.delete(&self.netlink, k.0, k.1).await;
        }
        // An interface no VIP uses any more: its sockets and their readers go.
        let used: std::collections::BTreeSet<IfaceId> = wanted.keys().map(|(i, _)| *i).collect();
        let unused: Vec<IfaceId> = self
            .ifaces
            .keys()
            .filter(|i| !used.contains(i))
            .copied()
            .collect();
        for id in unused {
            if let Some(i) = self.ifaces.remove(&id) {
                i.receivers.iter().for_each(tokio::task::JoinHandle::abort);
                i.v6_receivers
                    .iter()
                    .for_each(tokio::task::JoinHandle::abort);
                info!(
                    "interface {} ({}) carries no VIP any more: its CARP sockets are closed",
                    i.logical, i.device
                );
            }
            self.pending.retain(|(p, _)| *p != id);
        }

        let first = self.routers.is_empty() && self.ifaces.is_empty();
        for vip in &r.vips {
            let Some(link) = links.get(&vip.device) else {
                continue;
            };
            let id: IfaceId = link.index;
            if let std::collections::btree_map::Entry::Vacant(slot) = self.ifaces.entry(id) {
                addresses::prepare_interface(&self.netlink, id, &vip.device).await?;
                super::vmac::sweep(&self.netlink, id, &vip.device).await?;
                slot.insert(Iface {
                    logical: vip.interface.clone(),
                    device: vip.device.clone(),
                    mac: link.mac,
                    up: link.up,
                    v4: None,
                    v6: None,
                    v6_unicast_rx: false,
                    receivers: Vec::new(),
                    v6_receivers: Vec::new(),
                });
                self.engine.handle(
                    now,
                    Input::Link {
                        iface: id,
                        up: link.up,
                    },
                );
                info!(
                    "interface {} (device {}) is {}",
                    vip.interface,
                    vip.device,
                    if link.up { "up" } else { "down" }
                );
            }
            for family in vip.addresses.iter().map(|a| Family::of(&a.addr())) {
                let open = self.ifaces.get(&id).is_some_and(|i| match family {
                    Family::V4 => i.v4.is_some(),
                    Family::V6 => i.v6.is_some(),
                });
                if !open && !self.pending.contains(&(id, family)) {
                    self.pending.push((id, family));
                }
            }
        }
        let before = std::mem::take(&mut self.unicast6);
        for v in &r.vips {
            let Some(link) = links.get(&v.device) else {
                continue;
            };
            for p in &v.peers {
                if let IpAddr::V6(p) = p {
                    self.unicast6.entry(link.index).or_default().push(*p);
                }
            }
        }
        // IPv6 peers pick the socket's source address: where they changed, reopen it.
        for (id, iface) in self.ifaces.iter_mut() {
            if iface.v6.is_some() && before.get(id) != self.unicast6.get(id) {
                iface.v6_receivers.drain(..).for_each(|t| t.abort());
                iface.v6 = None;
                iface.v6_unicast_rx = false;
                if !self.pending.contains(&(*id, Family::V6)) {
                    self.pending.push((*id, Family::V6));
                }
            }
        }
        self.open_pending(first)?;

        let mut joining: Vec<_> = wanted
            .into_iter()
            .filter(|(k, _)| !self.routers.contains_key(k))
            .collect();
        joining.sort_by_key(|(k, _)| *k);
        for (k, (vip, rc)) in joining {
            if !first {
                info!(
                    "vhid={} iface={}: VIP {} joins",
                    vip.vhid,
                    vip.interface,
                    addr_list(&vip)
                );
            }
            self.vmacs
                .create(&self.netlink, k.0, &vip.device, &vip)
                .await;
            self.engine.add_router(now, rc.clone());
            self.vips.insert(k, vip);
            self.routers.insert(k, rc);
        }
        Ok(format!(
            "{} on {}",
            crate::words::count(self.vips.len(), "VIP"),
            crate::words::count(
                self.vips
                    .keys()
                    .map(|(i, _)| *i)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                "interface"
            )
        ))
    }

    /// Opens the CARP sockets still missing. An IPv6 link-local address appears only once the
    /// link has carrier, so that case is retried every second; any other failure is retried
    /// too, except at start, where it is the error.
    fn open_pending(&mut self, starting: bool) -> Result<(), String> {
        let mut fatal = None;
        for (id, family) in std::mem::take(&mut self.pending) {
            let Some(iface) = self.ifaces.get_mut(&id) else {
                continue;
            };
            let opened = match family {
                Family::V4 => CarpSocket::open_v4(&iface.device),
                Family::V6 => match self.unicast6.get(&id) {
                    Some(peers) => CarpSocket::open_v6_for_peers(&iface.device, peers),
                    None => CarpSocket::open_v6(&iface.device),
                },
            };
            match opened {
                Ok(sock) => {
                    let sock = Arc::new(sock);
                    if !starting {
                        info!(
                            "{} ({}): {family:?} CARP socket open",
                            iface.logical, iface.device
                        );
                    }
                    self.engine.set_local_address(id, sock.local_addr());
                    let task = tokio::spawn(receive(
                        id,
                        iface.device.clone(),
                        sock.clone(),
                        self.adverts.clone(),
                    ));
                    match family {
                        Family::V4 => iface.receivers.push(task),
                        Family::V6 => iface.v6_receivers.push(task),
                    }
                    match family {
                        Family::V4 => iface.v4 = Some(sock),
                        Family::V6 => iface.v6 = Some(sock),
                    }
                }
                Err(linux::LinuxError::NoLinkLocalAddress { .. }) => {
                    if starting {
                        warn!(
                            "{} ({}) has no IPv6 link-local address yet; IPv6 CARP starts when it has one",
                            iface.logical, iface.device
                        );
                    }
                    self.pending.push((id, family));
                }
                Err(e) if starting => {
                    fatal.get_or_insert(format!(
                        "cannot open the {family:?} CARP socket on {} ({}): {e}",
                        iface.logical, iface.device
                    ));
                    self.pending.push((id, family));
                }
                Err(e) => {
                    debug!(
                        "{}: still cannot open {family:?} CARP socket: {e}",
                        iface.device
                    );
                    self.pending.push((id, family));
                }
            }
        }
        self.open_unicast_rx();
        fatal.map_or(Ok(()), Err)
    }

    /// IPv6 unicast peers send to one of our addresses, which the socket bound to the
    /// link-local address does not receive: a receive-only socket per such interface does.
    fn open_unicast_rx(&mut self) {
        let ids: Vec<IfaceId> = self.unicast6.keys().copied().collect();
        for id in ids {
            let Some(iface) = self.ifaces.get_mut(&id) else {
                continue;
            };
            let Some(IpAddr::V6(bound)) = iface.v6.as_ref().map(|s| s.local_addr()) else {
                continue;
            };
            if iface.v6_unicast_rx {
                continue;
            }
            match CarpSocket::open_v6_unicast_rx(&iface.device, bound) {
                Ok(sock) => {
                    iface.v6_unicast_rx = true;
                    iface.v6_receivers.push(tokio::spawn(receive(
                        id,
                        iface.device.clone(),
                        Arc::new(sock),
                        self.adverts.clone(),
                    )));
                }
                Err(e) => warn!(
                    "{} ({}): cannot open the IPv6 socket for unicast peers' adverts: {e}",
                    iface.logical, iface.device
                ),
            }
        }
    }

    /// Carries out every pending action, in order; results that matter go back to the engine.
    async fn execute(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send {
                    iface,
                    vhid,
                    family,
                    payload,
                    dst,
                } => {
                    let sock = self.ifaces.get(&iface).and_then(|i| match family {
                        Family::V4 => i.v4.clone(),
                        Family::V6 => i.v6.clone(),
                    });
                    let sent = match (&sock, dst) {
                        (Some(s), Some(peer)) => Some(s.send_to(&payload, peer).await),
                        (Some(s), None) => Some(s.send(&payload).await),
                        (None, _) => None,
                    };
                    let ok = match sent {
                        Some(Ok(())) => true,
                        Some(Err(e)) => {
                            let to = dst.map(|d| format!(" to peer {d}")).unwrap_or_default();
                            warn!(
                                "vhid={vhid} iface={} advert{to} not sent: {e}",
                                self.name(iface)
                            );
                            false
                        }
                        None => false,
                    };
                    self.engine
                        .handle(Instant::now(), Input::SendResult { iface, vhid, ok });
                }
                Action::AddAddresses { iface, vhid } => {
                    self.address_op(AddrOp::Add(iface, vhid)).await;
                }
                Action::RemoveAddresses { iface, vhid } => {
                    self.address_op(AddrOp::Remove(iface, vhid)).await;
                }
                Action::Announce { iface, vhid } => {
                    if self.vmacs.has(iface, vhid.get()) {
                        let now = tokio::time::Instant::now();
                        for s in [1, 3] {
                            self.reannounce
                                .push((now + Duration::from_secs(s), iface, vhid));
                        }
                    }
                    self.address_op(AddrOp::Announce(iface, vhid)).await;
                }
                Action::Transition {
                    iface,
                    vhid,
                    from,
                    to,
                    reason,
                } => {
                    // The fields are the journal's (VHID, INTERFACE, STATE, ...); stderr
                    // shows the message alone, which says the same.
                    let name = self.name(iface);
                    let device = self.ifaces.get(&iface).map(|i| i.device.clone());
                    info!(
                        vhid = vhid.get(),
                        interface = %name,
                        device = %device.as_deref().unwrap_or("?"),
                        state = %to,
                        from = %from,
                        reason = %reason,
                        "vhid={vhid} iface={name} {from} -> {to} reason={reason}"
                    );
                    self.transitions
                        .insert((iface, vhid.get()), (from, to, reason, Instant::now()));
                    *self
                        .transition_counts
                        .entry((iface, vhid.get()))
                        .or_default() += 1;
                    let _ = self.events.send(Event::Transition {
                        vhid: vhid.get(),
                        interface: self.name(iface),
                        from,
                        to,
                        reason: reason.to_string(),
                    });
                }
                Action::Rejected {
                    iface,
                    vhid,
                    src,
                    reason,
                } => {
                    let seen = self
                        .reject_log
                        .entry((iface, vhid.map(|v| v.get()), reason))
                        .or_default();
                    *seen += 1;
                    let n = *seen;
                    // The first one, then every 60th: a misconfigured peer sends one a second.
                    if n % 60 == 1 {
                        let v = vhid.map_or_else(|| "?".to_string(), |v| v.to_string());
                        let seen = if n == 1 {
                            "first one".to_string()
                        } else {
                            format!("seen {n} times")
                        };
                        warn!(
                            "vhid={v} iface={} advert from {src} rejected reason={reason} ({seen})",
                            self.name(iface)
                        );
                    }
                }
                Action::DemotionChanged { from, to } => {
                    let why: Vec<String> = self
                        .engine
                        .demotions()
                        .map(|(s, v)| format!("{}+{v}", source_name(s, |i| self.name(i))))
                        .collect();
                    if why.is_empty() {
                        info!("demotion {from} -> {to} (no source left)");
                    } else {
                        info!("demotion {from} -> {to} ({})", why.join(", "));
                    }
                    let _ = self.events.send(Event::Demotion {
                        from,
                        to,
                        sources: why.join(", "),
                    });
                }
            }
        }
    }

    /// Queues an address operation with the vhid's addresses as they are now, and carries out
    /// what the barrier does not hold back.
    async fn address_op(&mut self, op: AddrOp) {
        let (iface, vhid) = op.target();
        let addrs = self
            .vips
            .get(&(iface, vhid.get()))
            .map(|v| v.addresses.clone())
            .unwrap_or_default();
        let ready = self.deferred.push(op, addrs);
        self.carry_out(ready).await;
    }

    /// Carries out address operations the barrier no longer holds back, in order.
    async fn carry_out(&mut self, ops: Vec<Queued>) {
        for Queued { op, addrs } in ops {
            let (iface, vhid) = op.target();
            let name = self.name(iface);
            match op {
                AddrOp::Add(..) => {
                    for (target, tname, addrs) in self.vmacs.split(iface, vhid.get(), &name, &addrs)
                    {
                        if target != iface {
                            // A virtual MAC's macvlan is up only while it is master.
                            if let Err(e) = self.netlink.set_link_up(target, true).await {
                                error!("vhid={vhid} cannot set {tname} up: {e}");
                            }
                        }
                        self.ledger
                            .add(&self.netlink, target, &tname, vhid, &addrs)
                            .await;
                    }
                }
                AddrOp::Remove(..) => {
                    for (target, tname, addrs) in self.vmacs.split(iface, vhid.get(), &name, &addrs)
                    {
                        if target != iface {
                            // Down first: nothing (an MLD leave) goes out from the virtual MAC
                            // once another node has it.
                            if let Err(e) = self.netlink.set_link_up(target, false).await {
                                warn!("vhid={vhid} cannot set {tname} down: {e}");
                            }
                        }
                        self.ledger
                            .release(&self.netlink, target, &tname, vhid, &addrs)
                            .await;
                    }
                }
                AddrOp::Announce(..) => {
                    // Only a master tells the neighbours where the VIP is.
                    if self.engine.state(iface, vhid) != Some(carp::State::Master) {
                        continue;
                    }
                    let Some(mac) = self.ifaces.get(&iface).map(|i| i.mac) else {
                        continue;
                    };
                    for (target, tname, addrs) in self.vmacs.split(iface, vhid.get(), &name, &addrs)
                    {
                        // From the virtual MAC, out of its macvlan, when it has one.
                        let mac = self
                            .vmacs
                            .links(iface, vhid.get())
                            .iter()
                            .find(|l| l.index == target)
                            .map_or(mac, |l| l.mac);
                        addresses::announce(target, &tname, mac, vhid, &addrs);
                    }
                }
            }
        }
    }
}

fn addr_list(v: &Vip) -> String {
    v.addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads adverts from one socket forever and hands them to the loop.
async fn receive(iface: IfaceId, device: String, sock: Arc<CarpSocket>, tx: mpsc::Sender<Advert>) {
    let mut failures = 0u32;
    loop {
        match sock.recv().await {
            Ok(a) => {
                failures = 0;
                let ev = Advert {
                    iface,
                    src: a.src,
                    dst: a.dst,
                    ttl: a.ttl,
                    payload: a.payload,
                };
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                failures += 1;
                debug!("CARP receive on {device}: {e}");
                if failures > 100 {
                    // Something is persistently wrong with the socket; don't spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}
