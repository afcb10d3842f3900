//! The daemon: the composition root. It owns every subsystem (the CARP thread, the firewall,
//! config sync, state sync, the control socket), routes their inputs, and carries out what
//! they return. No subsystem knows it: arrows go from here outwards.
//!
//! - [`start`]: the order a node comes up in (lock first, then firewall, then VIPs).
//! - [`activate`]: reload and activation of a new config, all or nothing.
//! - [`requests`]: control requests, config sync outcomes, the node's status.
//! - [`listener`]: the metrics listener, bound at start and moved by a reload.
//! - [`handover`]: planned hand-overs (maintenance mode, switchover, the clean stop).
//! - [`neighbours`]: the neighbours a takeover needs, resolved before its traffic comes.

mod activate;
mod handover;
mod listener;
mod neighbours;
mod notify;
mod requests;
mod start;

use crate::carp_thread;
use crate::checks::{self, Checks};
use crate::config::{Config, Hook, ParsedFile};
use crate::config_sync::{self, ConfigSync};
use crate::control::Pending;
use crate::hooks::{HookEvent, Hooks};
use crate::lock::NodeLock;
use crate::metrics;
use crate::state_sync;
use carp::DemoteSource;
use linux::netlink::{LinkWatcher, Netlink};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

pub struct Daemon {
    cfg: Config,
    /// The own file as parsed at the last start or reload: a push composes with it.
    own: ParsedFile,
    netlink: Netlink,
    carp: carp_thread::Handle,
    carp_events: mpsc::UnboundedReceiver<carp_thread::Event>,
    /// (interface, vhid) this node is master of, from the CARP thread's transitions.
    masters: BTreeSet<(String, u8)>,
    /// The ruleset in force (None: tandem's table is not there), to put back when a later
    /// step of an activation fails.
    ruleset: Option<firewall::Ruleset>,
    firewall_error: Option<String>,
    /// How the running ruleset went into the kernel.
    firewall_last: Option<crate::firewall_apply::LastApply>,
    /// How the `dhcp` area last went to Kea (None without `[dhcp_local]`).
    dhcp: Option<crate::dhcp_apply::DhcpStatus>,
    /// What this node's unbound runs of the `[dns]` area.
    dns: crate::dns_apply::DnsState,
    /// What the tunnels of the `wireguard` area run.
    wg: crate::wg_apply::WgState,
    sync: Option<ConfigSync>,
    sync_rx: Option<mpsc::Receiver<config_sync::Input>>,
    states: Option<state_sync::Handle>,
    /// ifindex of the state sync link, and whether it went down while this node was master of
    /// nothing (then it must resync before it may take VIPs back).
    sync_link: Option<u32>,
    /// The sync link's state as last seen (the kernel reports every change of a link).
    sync_link_up: Option<bool>,
    resync_pending: bool,
    control: mpsc::Receiver<Pending>,
    /// Status requests of the metrics listener (it holds a clone of `metrics_ask`).
    metrics_rx: mpsc::Receiver<metrics::StatusRequest>,
    metrics_ask: mpsc::Sender<metrics::StatusRequest>,
    /// The listener and the address the config gave it.
    metrics: Option<(std::net::SocketAddr, metrics::Server)>,
    control_socket: PathBuf,
    /// `[hooks]`: run on transitions and node-wide events, off the CARP thread.
    hooks: Hooks,
    /// `[[checks]]`: their state changes demote the node.
    checks: Checks,
    check_events: mpsc::UnboundedReceiver<checks::Event>,
    /// Whether state sync last said it has the whole table (`on_state_sync_ready` on a change).
    state_sync_ready: bool,
    /// systemd's notifications (nothing without `NOTIFY_SOCKET`).
    notifier: notify::Notifier,
    /// In maintenance mode, since when (seconds since the Unix epoch; None: unknown).
    maintenance: Option<Option<u64>>,
    _lock: NodeLock,
}

/// How a run ends.
pub struct Options {
    pub record: Option<PathBuf>,
}

impl Daemon {
    /// Runs until SIGTERM/SIGINT, then bows out and releases every VIP.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        // Link changes of the state sync link (the CARP thread watches the VIP interfaces).
        let mut link_watcher = match self.sync_link {
            Some(_) => Some(LinkWatcher::new().await?),
            None => None,
        };
        info!(
            "node {} running: {} VIPs, advskew {}, preempt {}",
            self.cfg.node.name,
            self.cfg.vips.len(),
            self.cfg.node.advskew.0,
            self.cfg.node.preempt
        );
        // The ruleset is applied and the CARP thread runs: ready.
        self.notify_ready().await;
        // The summary also changes without an event here (a demotion by a link): looked at
        // now and then, and sent only when it changed.
        let mut refresh = tokio::time::interval(Duration::from_secs(5));
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warm = tokio::time::interval(neighbours::WARM_INTERVAL);
        warm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = term.recv() => {
                    info!("SIGTERM: bowing out");
                    self.notify_stopping("SIGTERM: bowing out");
                    break;
                }
                _ = int.recv() => {
                    info!("SIGINT: bowing out");
                    self.notify_stopping("SIGINT: bowing out");
                    break;
                }
                _ = hup.recv() => {
                    info!("SIGHUP: reloading {}", self.cfg.own_file.display());
                    if let Err(e) = self.reload().await {
                        error!("reload failed, running config unchanged: {e}");
                    }
                    self.notify_status().await;
                }
                Some((req, reply)) = self.control.recv() => {
                    let r = self.answer(req).await;
                    let _ = reply.send(r);
                }
                Some(reply) = self.metrics_rx.recv() => {
                    let _ = reply.send(self.status().await);
                }
                Some(input) = config_sync::recv(&mut self.sync_rx) => self.on_sync(input).await,
                Some(n) = state_sync::next_notice(&mut self.states) => {
                    self.on_state_sync(n);
                    self.notify_status().await;
                }
                Some(ev) = self.check_events.recv() => self.on_check(ev),
                _ = refresh.tick(), if self.notifier.on() => self.notify_status().await,
                _ = warm.tick() => self.warm_neighbours(self.backup_devices(), None, "keeping a backup ready"),
                ev = self.carp_events.recv() => match ev {
                    Some(ev) => {
                        self.on_carp(ev);
                        self.notify_status().await;
                    }
                    None => {
                        // It never ends on its own: it failed. Without it nothing advertises or
                        // releases: release the VIPs here and stop, so the peer takes over.
                        error!("the CARP thread ended unexpectedly: releasing the VIPs and stopping");
                        self.release_vips().await;
                        let _ = std::fs::remove_file(&self.control_socket);
                        anyhow::bail!("the CARP thread ended unexpectedly");
                    }
                },
                ev = next_link(&mut link_watcher) => match ev {
                    Ok(ev) if Some(ev.index) == self.sync_link => self.on_sync_link(ev.up).await,
                    Ok(_) => {}
                    Err(e) => {
                        error!("link watcher failed: {e}; the state sync link is no longer watched");
                        link_watcher = None;
                    }
                },
            }
        }
        if let Some((_, m)) = self.metrics.take() {
            m.stop().await;
        }
        // Before the farewell: the backups must hold every state this node knows.
        if !self.masters.is_empty() {
            let (barrier, _) = self.state_barrier(None).await;
            info!("stopping: {barrier}");
        }
        self.carp.shutdown().await;
        let _ = std::fs::remove_file(&self.control_socket);
        info!("node {} stopped", self.cfg.node.name);
        Ok(())
    }

    /// Removes every tagged VIP from the VIP interfaces (when the CARP thread cannot).
    async fn release_vips(&self) {
        for vip in &self.cfg.vips {
            let Ok(link) = self.netlink.link(&vip.device).await else {
                continue;
            };
            for a in &vip.addresses {
                if let Err(e) = self
                    .netlink
                    .release_address(link.index, a.addr(), false)
                    .await
                {
                    error!("cannot remove VIP {a} from {}: {e}", vip.device);
                }
            }
        }
    }

    fn on_carp(&mut self, ev: carp_thread::Event) {
        match ev {
            carp_thread::Event::Transition {
                vhid,
                interface,
                from,
                to,
                reason,
            } => {
                if to == carp::State::Master {
                    self.masters.insert((interface.clone(), vhid));
                    self.on_takeover(&reason);
                    if let Some(dev) = self.vip_device(&interface, vhid) {
                        self.warm_neighbours(vec![dev], None, "takeover");
                    }
                } else {
                    self.masters.remove(&(interface.clone(), vhid));
                }
                if let Some(h) = &self.states {
                    // A node master of nothing may install a bulk sync quietly.
                    h.forwarding.send_replace(!self.masters.is_empty());
                }
                let vip = self
                    .cfg
                    .vips
                    .iter()
                    .find(|v| v.vhid.get() == vhid && v.interface == interface);
                let ev = HookEvent {
                    event: to.to_string().to_lowercase(),
                    vhid: Some(vhid),
                    device: vip.map(|v| v.device.clone()).unwrap_or_default(),
                    addresses: vip
                        .map(|v| v.addresses.iter().map(|a| a.to_string()).collect())
                        .unwrap_or_default(),
                    interface,
                    old: from.to_string(),
                    new: to.to_string(),
                    reason,
                    extra: Vec::new(),
                };
                self.hooks.transition(ev, to);
            }
            carp_thread::Event::Demotion { from, to, sources } => {
                let ev = HookEvent {
                    event: "demotion".into(),
                    old: from.to_string(),
                    new: to.to_string(),
                    reason: sources,
                    extra: vec![("TANDEM_DEMOTION".into(), to.to_string())],
                    ..HookEvent::default()
                };
                self.hooks.node_event(Hook::Demotion, ev);
            }
        }
    }

    /// A health check went down (demote by its weight) or up (no longer).
    fn on_check(&mut self, ev: checks::Event) {
        if self.checks.current(&ev) {
            self.carp.demote(DemoteSource::Check(ev.name), ev.demote);
        }
    }

    /// `[hooks]` and `[[checks]]` of a config just made the running one: changed checks
    /// restart (and stop demoting until they fail again), unchanged ones keep their state.
    fn apply_ops(&mut self) {
        self.hooks
            .update(&self.cfg.node.name, self.cfg.hooks.clone());
        for name in self.checks.reconcile(&self.cfg.checks) {
            self.carp.demote(DemoteSource::Check(name), 0);
        }
    }

    fn on_state_sync(&mut self, n: state_sync::Notice) {
        match n {
            state_sync::Notice::Ready(ready) => {
                if ready {
                    self.resync_pending = false;
                }
                if ready && !self.state_sync_ready {
                    let ev = HookEvent {
                        event: "state-sync-ready".into(),
                        old: "not-ready".into(),
                        new: "ready".into(),
                        reason: "bulk sync complete".into(),
                        ..HookEvent::default()
                    };
                    self.hooks.node_event(Hook::StateSyncReady, ev);
                }
                self.state_sync_ready = ready;
                self.demote_state_sync(!ready);
            }
            state_sync::Notice::Handover { from, to } => self.on_handover_notice(from, to),
            state_sync::Notice::NewEndpoints(addrs) => {
                self.warm_neighbours(self.backup_devices(), Some(addrs), "new connections")
            }
        }
    }

    /// Demotes (or stops demoting) the node because its state table is not complete.
    fn demote_state_sync(&self, demote: bool) {
        let value = if demote {
            carp::engine::DEMOTION_STEP
        } else {
            0
        };
        self.carp.demote(DemoteSource::StateSync, value);
    }

    /// A node cut off from its peers misses their new connections. A master keeps its VIPs
    /// (its own connections are the ones that matter), but a node that is master of nothing
    /// must not take VIPs back until it has fetched the table again.
    async fn on_sync_link(&mut self, up: bool) {
        if self.sync_link_up.replace(up) == Some(up) {
            return;
        }
        if !up {
            if self.masters.is_empty() && !self.resync_pending {
                info!("state sync link down: demoted until a bulk sync after it returns");
                self.resync_pending = true;
                self.demote_state_sync(true);
            }
            return;
        }
        if self.resync_pending {
            if let Some(h) = &self.states {
                info!("state sync link up: asking the peers for the full table");
                let asked = h.commands.send(state_sync::Command::Resync);
                if !matches!(
                    tokio::time::timeout(Duration::from_secs(2), asked).await,
                    Ok(Ok(()))
                ) {
                    warn!("state sync did not take the resync request; it retries its bulk sync by itself");
                }
            }
        }
    }
}

async fn next_link(w: &mut Option<LinkWatcher>) -> Result<linux::LinkEvent, linux::LinuxError> {
    match w {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}
