//! The daemon: one loop that feeds kernel events to the CARP engine and carries out what the
//! engine asks for. All I/O is here or in the linux crate; all decisions are in the engine.

use crate::config::{Config, Vip};
use crate::control::{
    self, Demotion, Pending, Reply, Request, Status, SyncStatus, Transition, VipStatus,
};
use crate::record::Engine;
use crate::ruleset;
use crate::state_sync;
use anyhow::Context;
use carp::{Action, DemoteSource, Family, IfaceId, Input, Key, RejectReason, RouterConfig};
use linux::announce;
use linux::carp_socket::CarpSocket;
use linux::netlink::{LinkWatcher, Netlink};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// One interface that carries VIPs.
struct Iface {
    logical: String,
    device: String,
    mac: [u8; 6],
    v4: Option<Arc<CarpSocket>>,
    v6: Option<Arc<CarpSocket>>,
}

enum Event {
    Advert {
        iface: IfaceId,
        src: IpAddr,
        ttl: u8,
        payload: Vec<u8>,
    },
    Link {
        iface: IfaceId,
        up: bool,
    },
    /// The state sync link went down or came up.
    SyncLink {
        up: bool,
    },
}

pub struct Daemon {
    cfg: Config,
    ev_tx: mpsc::Sender<Event>,
    ev_rx: mpsc::Receiver<Event>,
    watcher: Option<LinkWatcher>,
    /// CARP sockets not open yet, as (interface, family).
    pending: Vec<(IfaceId, Family)>,
    engine: Engine,
    netlink: Netlink,
    ifaces: BTreeMap<IfaceId, Iface>,
    vips: HashMap<(IfaceId, u8), Vip>,
    /// The engine's routers as configured, to tell on reload which ones changed.
    routers: HashMap<(IfaceId, u8), RouterConfig>,
    firewall_applied: bool,
    firewall_error: Option<String>,
    /// (iface, vhid, reason) -> rejections seen, to keep a flood of bad adverts out of the log.
    reject_log: HashMap<(IfaceId, Option<u8>, RejectReason), u64>,
    /// (iface, vhid) -> the last transition, for status.
    transitions: HashMap<(IfaceId, u8), (carp::State, carp::State, carp::Reason, Instant)>,
    /// Config sync (None without `[sync]`); see configsync.rs.
    sync: Option<crate::configsync::Glue>,
    /// Connection state sync (None without `[statesync]`); see state_sync.rs.
    states: Option<mpsc::Sender<state_sync::Command>>,
    state_notices: Option<mpsc::Receiver<state_sync::Notice>>,
    /// ifindex of the state sync link, and whether it went down while this node was master of
    /// nothing (then it must resync before it may take VIPs back).
    sync_link: Option<u32>,
    resync_pending: bool,
}

fn random_seed() -> u64 {
    // The seed only picks initial advert counters; the OS pool is plenty.
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u64::from_ne_bytes(b) ^ u64::from(std::process::id())
}

impl Daemon {
    pub async fn start(cfg: Config, record: Option<&std::path::Path>) -> anyhow::Result<Daemon> {
        let netlink = Netlink::new().await.context("cannot open rtnetlink")?;
        // Watch before reading link states, so no change falls between the two.
        let watcher = LinkWatcher::new()
            .await
            .context("cannot watch links over rtnetlink")?;
        let (ev_tx, ev_rx) = mpsc::channel::<Event>(1024);
        let mut d = Daemon {
            cfg: cfg.clone(),
            ev_tx,
            ev_rx,
            watcher: Some(watcher),
            pending: Vec::new(),
            engine: Engine::new(random_seed(), record)?,
            netlink,
            ifaces: BTreeMap::new(),
            vips: HashMap::new(),
            routers: HashMap::new(),
            reject_log: HashMap::new(),
            transitions: HashMap::new(),
            firewall_applied: false,
            firewall_error: None,
            sync: None,
            states: None,
            state_notices: None,
            sync_link: None,
            resync_pending: false,
        };
        // The firewall goes up before any VIP can be answered for.
        let ruleset = d.prepare_firewall(&cfg).await?;
        d.apply_firewall(&cfg, ruleset.as_ref()).await?;
        if let Some(ss) = cfg.statesync.as_ref().filter(|s| s.enabled) {
            let h = state_sync::start(&cfg.node.name, ss, &d.netlink).await?;
            d.states = Some(h.commands);
            d.state_notices = Some(h.notices);
            d.sync_link = Some(d.netlink.link(&ss.device).await?.index);
            // Not ready until the first bulk sync: demoted before any router exists.
            d.demote_state_sync(true);
        }
        d.converge_vips(&cfg, true).await?;
        Ok(d)
    }

    /// Awaits `work` while still receiving adverts and link changes and sending this node's
    /// adverts: a slow kernel operation must neither let a master fall silent nor make a
    /// backup miss the master and take over.
    async fn serving_carp<T>(&mut self, work: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(work);
        loop {
            self.execute().await;
            let sleep = sleep_until(self.engine.poll_timeout().map(|(t, _)| t));
            tokio::select! {
                biased;
                r = &mut work => {
                    self.execute().await;
                    return r;
                }
                _ = sleep => self.engine.handle_timeout(Instant::now()),
                Some(ev) = self.ev_rx.recv() => self.on_event(ev),
            }
        }
    }

    /// Validates and renders the ruleset of `cfg` when this node manages its firewall.
    async fn prepare_firewall(
        &mut self,
        cfg: &Config,
    ) -> anyhow::Result<Option<firewall::Ruleset>> {
        if !cfg.firewall.managed {
            return Ok(None);
        }
        let ctx = ruleset::context(cfg, &self.netlink).await;
        // Rendering 10k rules is real CPU work: on the blocking pool, CARP served meanwhile.
        let cfg = cfg.clone();
        self.serving_carp(async move {
            tokio::task::spawn_blocking(move || ruleset::prepare(&cfg, &ctx).map(Some))
                .await
                .context("the ruleset thread died")?
        })
        .await
    }

    async fn apply_firewall(
        &mut self,
        cfg: &Config,
        ruleset: Option<&firewall::Ruleset>,
    ) -> anyhow::Result<()> {
        let result = match ruleset {
            Some(r) => {
                // nft takes about a second for 10k rules: CARP must not wait for it.
                let (cfg, netlink, r) = (cfg.clone(), self.netlink.clone(), r.clone());
                self.serving_carp(async move { ruleset::apply(&cfg, &netlink, &r).await })
                    .await
            }
            // Switched off: our table goes, every other table stays.
            None if self.firewall_applied => linux::nft::apply(&format!(
                "table {t} {{}}\ndelete table {t}\n",
                t = firewall::TABLE
            ))
            .map_err(anyhow::Error::from),
            None => Ok(()),
        };
        match &result {
            Ok(()) => {
                self.firewall_applied = ruleset.is_some();
                self.firewall_error = None;
                if let Some(r) = ruleset {
                    info!(
                        "firewall applied: {} rules, {} routes",
                        cfg.areas.rules.len(),
                        r.routes.len()
                    );
                }
            }
            Err(e) => self.firewall_error = Some(format!("{e:#}")),
        }
        result
    }

    /// Brings the CARP routers, interfaces and sockets in line with `cfg`: routers that are
    /// gone or changed leave (a master bows out), new and changed ones start as BACKUP.
    /// Unchanged routers keep running undisturbed.
    async fn converge_vips(&mut self, cfg: &Config, starting: bool) -> anyhow::Result<()> {
        let now = Instant::now();
        let key = Key::from_passphrase(&cfg.carp.passphrase);
        // Resolve every device first, so a missing one changes nothing.
        let mut links = BTreeMap::new();
        for vip in &cfg.vips {
            if links.contains_key(&vip.device) {
                continue;
            }
            let link = self.netlink.link(&vip.device).await.with_context(|| {
                format!(
                    "interface {:?} (device {}) of vhid {}",
                    vip.interface, vip.device, vip.vhid
                )
            })?;
            links.insert(vip.device.clone(), link);
        }
        let mut wanted: HashMap<(IfaceId, u8), (Vip, RouterConfig)> = HashMap::new();
        for vip in &cfg.vips {
            let Some(link) = links.get(&vip.device) else {
                continue;
            };
            let rc = RouterConfig {
                iface: link.index,
                vhid: vip.vhid,
                advbase: vip.advbase,
                advskew: cfg.node.advskew,
                preempt: cfg.node.preempt,
                addresses: vip.addresses.iter().map(|a| a.addr()).collect(),
                key: key.clone(),
            };
            wanted.insert((link.index, vip.vhid.get()), (vip.clone(), rc));
        }

        let leaving: Vec<(IfaceId, u8)> = self
            .routers
            .iter()
            .filter(|(k, rc)| wanted.get(k).is_none_or(|(_, w)| w != *rc))
            .map(|(k, _)| *k)
            .collect();
        for (iface, vhid) in &leaving {
            if let Some(v) = carp::Vhid::new(*vhid) {
                self.engine.remove_router(*iface, v);
            }
        }
        // The bow-out adverts and address removals need the old VIP table.
        self.execute().await;
        for k in &leaving {
            self.routers.remove(k);
            self.vips.remove(k);
        }

        for vip in &cfg.vips {
            let Some(link) = links.get(&vip.device) else {
                continue;
            };
            let id: IfaceId = link.index;
            if let std::collections::btree_map::Entry::Vacant(slot) = self.ifaces.entry(id) {
                prepare_interface(&self.netlink, id, &vip.device).await?;
                slot.insert(Iface {
                    logical: vip.interface.clone(),
                    device: vip.device.clone(),
                    mac: link.mac,
                    v4: None,
                    v6: None,
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
        self.open_pending(starting)?;

        let mut joining: Vec<_> = wanted
            .into_iter()
            .filter(|(k, _)| !self.routers.contains_key(k))
            .collect();
        joining.sort_by_key(|(k, _)| *k);
        for (k, (vip, rc)) in joining {
            if !starting {
                info!(
                    "vhid={} iface={}: VIP {} joins",
                    vip.vhid,
                    vip.interface,
                    addr_list(&vip)
                );
            }
            self.engine.add_router(now, rc.clone());
            self.vips.insert(k, vip);
            self.routers.insert(k, rc);
        }
        Ok(())
    }

    /// Re-reads the config file and applies it; a config that fails validation (or that the
    /// kernel refuses) changes nothing and the error names the problem.
    async fn reload(&mut self) -> anyhow::Result<String> {
        let own = self.cfg.own_file.clone();
        let new = self
            .serving_carp(async move {
                tokio::task::spawn_blocking(move || crate::configsync::load_running(&own))
                    .await
                    .context("the config thread died")?
            })
            .await?;
        self.activate(new).await
    }

    /// Makes `new` the running config (firewall, then VIPs), or changes nothing and says why.
    pub(crate) async fn activate(&mut self, mut new: Config) -> anyhow::Result<String> {
        if new.node.name != self.cfg.node.name
            || new.node.control_socket != self.cfg.node.control_socket
        {
            warn!("node.name and node.control_socket take effect at the next restart");
            new.node.name.clone_from(&self.cfg.node.name);
            new.node
                .control_socket
                .clone_from(&self.cfg.node.control_socket);
        }
        let ruleset = match self.prepare_firewall(&new).await {
            Ok(r) => r,
            Err(e) => {
                // The old ruleset stays in force; status says why the new one is not.
                self.firewall_error = Some(ruleset::describe(&e));
                return Err(e);
            }
        };
        for vip in &new.vips {
            self.netlink.link(&vip.device).await.with_context(|| {
                format!(
                    "interface {:?} (device {}) of vhid {}",
                    vip.interface, vip.device, vip.vhid
                )
            })?;
        }
        self.apply_firewall(&new, ruleset.as_ref()).await?;
        self.converge_vips(&new, false).await?;
        self.cfg = new;
        let msg = format!(
            "reloaded {}: {} VIPs, firewall {}",
            self.cfg.file.display(),
            self.vips.len(),
            if self.cfg.firewall.managed {
                format!("{} rules", self.cfg.areas.rules.len())
            } else {
                "not managed".into()
            }
        );
        info!("{msg}");
        if let Some(g) = self.sync.as_mut() {
            g.activated(&mut self.cfg);
        }
        Ok(msg)
    }

    /// Opens the CARP sockets still missing. An IPv6 link-local address appears only once the
    /// link has carrier, so that case is retried; anything else is fatal at start-up.
    fn open_pending(&mut self, starting: bool) -> anyhow::Result<()> {
        for (id, family) in std::mem::take(&mut self.pending) {
            let Some(iface) = self.ifaces.get_mut(&id) else {
                continue;
            };
            let opened = match family {
                Family::V4 => CarpSocket::open_v4(&iface.device),
                Family::V6 => CarpSocket::open_v6(&iface.device),
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
                    tokio::spawn(receive(
                        id,
                        iface.device.clone(),
                        sock.clone(),
                        self.ev_tx.clone(),
                    ));
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
                    return Err(e).with_context(|| {
                        format!(
                            "cannot open CARP socket on {} ({})",
                            iface.logical, iface.device
                        )
                    })
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
        Ok(())
    }

    /// Runs until SIGTERM/SIGINT, then bows out and releases every VIP.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let listener = control::bind(&self.cfg.node.control_socket).await?;
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<Pending>(16);
        tokio::spawn(control::serve(listener, ctl_tx));
        let (glue, mut sync_rx) = crate::configsync::Glue::start(&mut self.cfg).await?;
        self.sync = glue;

        let mut watcher = self.watcher.take().context("daemon run twice")?;
        let known: BTreeMap<u32, IfaceId> = self.ifaces.keys().map(|id| (*id, *id)).collect();
        let sync_link = self.sync_link;
        let link_tx = self.ev_tx.clone();
        tokio::spawn(async move {
            loop {
                match watcher.next().await {
                    Ok(ev) => {
                        if Some(ev.index) == sync_link {
                            let _ = link_tx.send(Event::SyncLink { up: ev.up }).await;
                        }
                        if let Some(id) = known.get(&ev.index) {
                            let _ = link_tx
                                .send(Event::Link {
                                    iface: *id,
                                    up: ev.up,
                                })
                                .await;
                        }
                    }
                    Err(e) => {
                        error!("link watcher failed: {e}; link changes are no longer seen");
                        return;
                    }
                }
            }
        });

        let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
        info!(
            "node {} running: {} VIPs on {} interfaces, advskew {}, preempt {}",
            self.cfg.node.name,
            self.vips.len(),
            self.ifaces.len(),
            self.cfg.node.advskew.0,
            self.cfg.node.preempt
        );

        let mut retry = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut state_notices = self.state_notices.take();
        loop {
            self.execute().await;
            let sleep = sleep_until(self.engine.poll_timeout().map(|(t, _)| t));
            tokio::select! {
                biased;
                _ = term.recv() => { info!("SIGTERM: bowing out"); break; }
                _ = int.recv() => { info!("SIGINT: bowing out"); break; }
                _ = sleep => self.engine.handle_timeout(Instant::now()),
                Some(ev) = self.ev_rx.recv() => self.on_event(ev),
                _ = retry.tick(), if !self.pending.is_empty() => {
                    let _ = self.open_pending(false);
                }
                _ = hup.recv() => {
                    info!("SIGHUP: reloading {}", self.cfg.file.display());
                    if let Err(e) = self.reload().await {
                        error!("reload failed, running config unchanged: {}", ruleset::describe(&e));
                    }
                }
                Some((req, reply)) = ctl_rx.recv() => {
                    let r = self.answer(req).await;
                    let _ = reply.send(r);
                }
                Some(ev) = crate::configsync::recv(&mut sync_rx) => self.on_sync(ev).await,
                Some(n) = state_sync::next_notice(&mut state_notices) => match n {
                    state_sync::Notice::Ready(ready) => {
                        if ready {
                            self.resync_pending = false;
                        }
                        self.demote_state_sync(!ready);
                    }
                },
            }
        }
        self.engine.handle(Instant::now(), Input::Shutdown);
        self.execute().await;
        let _ = std::fs::remove_file(&self.cfg.node.control_socket);
        info!("node {} stopped", self.cfg.node.name);
        Ok(())
    }

    fn on_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Advert {
                iface,
                src,
                ttl,
                payload,
            } => self.engine.handle(
                now,
                Input::Advert {
                    iface,
                    src,
                    ttl,
                    payload,
                },
            ),
            Event::Link { iface, up } => self.engine.handle(now, Input::Link { iface, up }),
            Event::SyncLink { up } => self.on_sync_link(up),
        }
    }

    fn name(&self, iface: IfaceId) -> String {
        self.ifaces
            .get(&iface)
            .map_or_else(|| format!("ifindex {iface}"), |i| i.logical.clone())
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
                } => {
                    let sock = self.ifaces.get(&iface).and_then(|i| match family {
                        Family::V4 => i.v4.clone(),
                        Family::V6 => i.v6.clone(),
                    });
                    let ok = match sock {
                        Some(s) => match s.send(&payload).await {
                            Ok(()) => true,
                            Err(e) => {
                                warn!(
                                    "vhid={vhid} iface={} advert not sent: {e}",
                                    self.name(iface)
                                );
                                false
                            }
                        },
                        None => false,
                    };
                    self.engine
                        .handle(Instant::now(), Input::SendResult { iface, vhid, ok });
                }
                Action::AddAddresses { iface, vhid } => {
                    // The states must be in the kernel before the VIP answers.
                    self.flush_states().await;
                    self.set_vip_addresses(iface, vhid, true).await;
                }
                Action::RemoveAddresses { iface, vhid } => {
                    self.set_vip_addresses(iface, vhid, false).await;
                }
                Action::Announce { iface, vhid } => {
                    let Some(mac) = self.ifaces.get(&iface).map(|i| i.mac) else {
                        continue;
                    };
                    for a in self.addresses(iface, vhid.get()) {
                        let r = match a.addr() {
                            IpAddr::V4(ip) => announce::gratuitous_arp(iface, mac, ip),
                            IpAddr::V6(ip) => announce::unsolicited_na(iface, mac, ip),
                        };
                        if let Err(e) = r {
                            warn!(
                                "vhid={vhid} cannot announce {a} on {}: {e}",
                                self.name(iface)
                            );
                        }
                    }
                }
                Action::Transition {
                    iface,
                    vhid,
                    from,
                    to,
                    reason,
                } => {
                    info!(
                        "vhid={vhid} iface={} {from} -> {to} reason={reason}",
                        self.name(iface)
                    );
                    self.transitions
                        .insert((iface, vhid.get()), (from, to, reason, Instant::now()));
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
                        warn!(
                            "vhid={v} iface={} advert from {src} rejected reason={reason} (seen {n} times)",
                            self.name(iface)
                        );
                    }
                }
                Action::DemotionChanged { from, to } => {
                    let why: Vec<String> = self
                        .engine
                        .demotions()
                        .map(|(s, v)| format!("{}+{v}", self.source_name(s)))
                        .collect();
                    info!("demotion {from} -> {to} ({})", why.join(", "));
                }
            }
        }
    }

    /// Adds (or removes) every address of a vhid; a failure is logged and the rest go on.
    async fn set_vip_addresses(&self, iface: IfaceId, vhid: carp::Vhid, present: bool) {
        for a in self.addresses(iface, vhid.get()) {
            let r = if present {
                self.netlink
                    .add_address(iface, a.addr(), a.prefix_len())
                    .await
            } else {
                self.netlink
                    .del_address(iface, a.addr(), a.prefix_len())
                    .await
            };
            if let Err(e) = r {
                error!(
                    "vhid={vhid} cannot {} VIP {a} on {}: {e}",
                    if present { "add" } else { "remove" },
                    self.name(iface)
                );
            }
        }
    }

    fn addresses(&self, iface: IfaceId, vhid: u8) -> Vec<ipnet::IpNet> {
        self.vips
            .get(&(iface, vhid))
            .map(|v| v.addresses.clone())
            .unwrap_or_default()
    }

    fn source_name(&self, s: &DemoteSource) -> String {
        match s {
            DemoteSource::LinkDown(i) => format!("link-down({})", self.name(*i)),
            DemoteSource::SendErrors(i, v) => format!("send-errors({} vhid {v})", self.name(*i)),
            DemoteSource::StateSync => "state-sync".into(),
            DemoteSource::ConfigSync => "config-sync".into(),
            DemoteSource::Operator => "operator".into(),
        }
    }

    async fn answer(&mut self, req: Request) -> Reply {
        match req {
            Request::Status => {
                let mut s = self.status();
                s.state_sync = self.state_sync_status().await;
                if let Some(ss) = &s.state_sync {
                    s.sync.state = state_sync::summary(ss);
                }
                Reply::Status(Box::new(s))
            }
            Request::Reload => match self.reload().await {
                Ok(msg) => Reply::Done(msg),
                Err(e) => {
                    let msg = ruleset::describe(&e);
                    error!("reload failed, running config unchanged: {msg}");
                    Reply::Error(msg)
                }
            },
            req @ (Request::ConfigShow
            | Request::ConfigRollback { .. }
            | Request::ConfigPush { .. }) => match self.sync.take() {
                Some(mut g) => {
                    let r = g.control(req, self).await;
                    self.sync = Some(g);
                    r
                }
                None => Reply::Error(format!(
                    "config sync is not configured on {} (no [sync] in {})",
                    self.cfg.node.name,
                    self.cfg.own_file.display()
                )),
            },
        }
    }

    /// An event from config sync: an XML-RPC call, a push result, a tick.
    async fn on_sync(&mut self, ev: crate::configsync::SyncEvent) {
        let ev = match crate::configsync::take_reload(ev) {
            Ok(reply) => {
                let r = self.reload().await.map_err(|e| ruleset::describe(&e));
                let _ = reply.send(crate::configsync::reload_answer(r));
                return;
            }
            Err(ev) => *ev,
        };
        if let Some(mut g) = self.sync.take() {
            g.handle(ev, self).await;
            self.sync = Some(g);
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn config_mut(&mut self) -> &mut Config {
        &mut self.cfg
    }

    /// Demotes (or stops demoting) the node because its state table is not complete.
    fn demote_state_sync(&mut self, demote: bool) {
        self.engine.handle(
            Instant::now(),
            Input::Demote {
                source: DemoteSource::StateSync,
                value: if demote {
                    carp::engine::DEMOTION_STEP
                } else {
                    0
                },
            },
        );
    }

    /// A node cut off from its peers misses their new connections. A master keeps its VIPs
    /// (its own connections are the ones that matter), but a node that is master of nothing
    /// must not take VIPs back until it has fetched the table again.
    fn on_sync_link(&mut self, up: bool) {
        let master = self
            .engine
            .status()
            .iter()
            .any(|r| r.state == carp::State::Master);
        if !up {
            if !master && !self.resync_pending {
                info!("state sync link down: demoted until a bulk sync after it returns");
                self.resync_pending = true;
                self.demote_state_sync(true);
            }
            return;
        }
        if self.resync_pending {
            if let Some(tx) = &self.states {
                info!("state sync link up: asking the peers for the full table");
                if tx.try_send(state_sync::Command::Resync).is_err() {
                    warn!("state sync task busy; resync request dropped");
                }
            }
        }
    }

    /// Waits (briefly) until state sync has installed everything already received.
    async fn flush_states(&self) {
        let Some(tx) = &self.states else {
            return;
        };
        let (done, rx) = tokio::sync::oneshot::channel();
        if tx.send(state_sync::Command::Flush(done)).await.is_ok()
            && tokio::time::timeout(std::time::Duration::from_millis(500), rx)
                .await
                .is_err()
        {
            warn!("state sync did not flush within 500 ms; taking the VIP anyway");
        }
    }

    /// State sync's own status, asked of its task.
    async fn state_sync_status(&self) -> Option<state_sync::StateSyncStatus> {
        let tx = self.states.as_ref()?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        tx.send(state_sync::Command::Status(reply)).await.ok()?;
        tokio::time::timeout(std::time::Duration::from_secs(2), rx)
            .await
            .ok()?
            .ok()
    }

    /// Sets (value > 0) or clears the config-sync demotion.
    pub(crate) fn demote_config_sync(&mut self, value: u8) {
        self.engine.handle(
            Instant::now(),
            Input::Demote {
                source: DemoteSource::ConfigSync,
                value,
            },
        );
    }

    pub(crate) fn status(&self) -> Status {
        let reason_map = |m: &BTreeMap<RejectReason, u64>| {
            m.iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        let mut vips: Vec<VipStatus> = self
            .engine
            .status()
            .into_iter()
            .map(|r| {
                let vip = self.vips.get(&(r.iface, r.vhid.get()));
                VipStatus {
                    vhid: r.vhid.get(),
                    interface: self.name(r.iface),
                    device: self
                        .ifaces
                        .get(&r.iface)
                        .map(|i| i.device.clone())
                        .unwrap_or_default(),
                    addresses: vip
                        .map(|v| v.addresses.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    state: r.state.to_string(),
                    advbase: r.advbase.0,
                    advskew: r.advertised_skew.0,
                    configured_advskew: r.advskew.0,
                    preempt: r.preempt,
                    last_master: r.last_master.map(|a| a.to_string()),
                    last_transition: self.transitions.get(&(r.iface, r.vhid.get())).map(
                        |(from, to, reason, at)| Transition {
                            from: from.to_string(),
                            to: to.to_string(),
                            reason: reason.to_string(),
                            seconds_ago: at.elapsed().as_secs_f64(),
                        },
                    ),
                    adverts_sent: r.counters.adverts_sent,
                    adverts_received: r.counters.adverts_received,
                    adverts_rejected: reason_map(&r.counters.rejected),
                    send_errors: r.counters.send_errors,
                }
            })
            .collect();
        vips.sort_by(|a, b| (&a.interface, a.vhid).cmp(&(&b.interface, b.vhid)));
        Status {
            node: self.cfg.node.name.clone(),
            pid: std::process::id(),
            demotion: self.engine.demotion(),
            demotions: self
                .engine
                .demotions()
                .map(|(s, v)| Demotion {
                    source: self.source_name(s),
                    value: v,
                })
                .collect(),
            vips,
            rejected: reason_map(self.engine.node_rejected()),
            firewall: ruleset::status(
                &self.cfg,
                self.firewall_applied,
                self.firewall_error.clone(),
            ),
            sync: SyncStatus {
                config: self
                    .sync
                    .as_ref()
                    .map_or_else(|| "not configured".into(), |g| g.summary_line(&self.cfg)),
                state: "not configured".into(),
            },
            config_sync: self.sync.as_ref().map(|g| g.status(&self.cfg)),
            state_sync: None,
        }
    }
}

/// Sleeps until an engine's next deadline, or forever when it has none (for `select!`).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

fn addr_list(v: &Vip) -> String {
    v.addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Readies an interface for VIPs: clears VIPs a previous run left behind (after a crash, or
/// removed from the config since) and keeps secondary addresses when a VIP is removed.
async fn prepare_interface(netlink: &Netlink, id: IfaceId, device: &str) -> anyhow::Result<()> {
    // Without it, removing a VIP that had become its subnet's primary address would take the
    // node's other addresses in that subnet with it.
    let knob = format!("net/ipv4/conf/{device}/promote_secondaries");
    if let Err(e) = linux::sysctl::write(&knob, "1") {
        warn!("cannot set {knob}=1: {e}");
    }
    let addrs = netlink
        .address_details(id)
        .await
        .with_context(|| format!("cannot list addresses of {device}"))?;
    for a in addrs.into_iter().filter(|a| a.tandem) {
        info!("removing stale VIP {}/{} from {device}", a.addr, a.prefix);
        netlink
            .del_address(id, a.addr, a.prefix)
            .await
            .with_context(|| format!("cannot clear stale VIP {} on {device}", a.addr))?;
    }
    Ok(())
}

/// Reads adverts from one socket forever and hands them to the loop.
async fn receive(iface: IfaceId, device: String, sock: Arc<CarpSocket>, tx: mpsc::Sender<Event>) {
    let mut failures = 0u32;
    loop {
        match sock.recv().await {
            Ok(a) => {
                failures = 0;
                let ev = Event::Advert {
                    iface,
                    src: a.src,
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
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Devices the config names that this machine (or namespace) does not have.
pub fn missing_devices(cfg: &Config) -> Vec<(String, String)> {
    cfg.interfaces
        .iter()
        .filter(|(_, dev)| !std::path::Path::new("/sys/class/net").join(dev).exists())
        .map(|(l, d)| (l.clone(), d.clone()))
        .collect()
}
