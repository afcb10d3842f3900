//! How a node comes up. The OS random generator is read first: a node that cannot read it
//! does not start, and has changed nothing. Then the lock: until this process holds the node,
//! it changes nothing (no stale-VIP sweep, no sysctl, no ruleset, no control socket), so a
//! second start with the same config leaves the running daemon and its VIPs alone. Then the
//! firewall goes up before any VIP can be answered for, and state sync demotes the node until
//! it has the table.

use super::{Daemon, Options};
use crate::carp_thread;
use crate::config::{Config, ParsedFile};
use crate::config_sync::ConfigSync;
use crate::control;
use crate::firewall_apply;
use crate::lock::NodeLock;
use crate::state_sync;
use anyhow::Context;
use linux::netlink::Netlink;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The CARP engine's seed (it picks the initial advert counters), from the OS generator.
fn random_seed() -> anyhow::Result<u64> {
    crate::random::u64("the CARP engine's seed")
}

impl Daemon {
    pub async fn start(cfg: Config, own: ParsedFile, opts: Options) -> anyhow::Result<Daemon> {
        // Every random value this start needs, before anything changes (crate::random says
        // why there is no fallback).
        let carp_seed = random_seed()?;
        let state_sync_random = state_sync::Random::draw()?;
        let lock = NodeLock::acquire(&cfg.node.control_socket, &cfg.node.name)?;
        let access = control::Access {
            status_gid: cfg.node.status_group.as_ref().map(|(_, gid)| *gid),
        };
        let listener = control::bind(&cfg.node.control_socket, access)?;
        let (ctl_tx, ctl_rx) = mpsc::channel::<control::Pending>(16);
        tokio::spawn(control::serve(listener, access, ctl_tx));
        // The metrics listener next: a port that cannot be bound stops the start here, before
        // anything changed. Its requests wait in the channel until the daemon loop runs.
        let (metrics_ask, metrics_rx) = mpsc::channel(16);
        let metrics = match super::listener::wanted(&cfg) {
            Some(addr) => {
                let s = crate::metrics::Server::start(addr, metrics_ask.clone())
                    .await
                    .map_err(anyhow::Error::msg)?;
                tracing::info!("metrics and status page on http://{}/", s.addr());
                Some((addr, s))
            }
            None => None,
        };

        let netlink = Netlink::new().await.context("cannot open rtnetlink")?;
        // Everything is checked before anything changes.
        let own_addrs = firewall_apply::own_addresses(&cfg, &netlink).await;
        let checked = cfg.clone();
        let ruleset =
            tokio::task::spawn_blocking(move || firewall_apply::prepare(&checked, &own_addrs))
                .await
                .context("the ruleset thread died")??;

        // The firewall goes up before any VIP can be answered for.
        let mut firewall_last = None;
        if let Some(r) = &ruleset {
            firewall_last = Some(firewall_apply::apply(&cfg, &netlink, r, None).await?);
            tracing::info!(
                "firewall applied: {}, {}",
                crate::words::count(cfg.areas.rules.len(), "rule"),
                crate::words::count(r.routes.len(), "route")
            );
        }

        // The certificates' files (`[[certificates]]`), before any service is answered for.
        crate::certs_apply::commit(crate::certs_apply::stage_for(&cfg).await?)
            .await
            .map_err(anyhow::Error::msg)?;
        // The dhcp area to this node's Kea (`[dhcp_local]`), checked by Kea first.
        let dhcp = match cfg.dhcp_local {
            Some(_) => crate::dhcp_apply::prepare(
                &cfg,
                &firewall_apply::own_addresses(&cfg, &netlink).await,
            ),
            None => None,
        };
        let (dhcp, note) = crate::dhcp_apply::check_for(dhcp).await?;
        if let Some(n) = note {
            tracing::info!("dhcp: {n}");
        }
        let dhcp = crate::dhcp_apply::commit_for(dhcp).await;
        // The dns area next; unbound may not run yet (it reads the file when it starts): a
        // failed reload is in status, not a reason to stay down.
        let mut dns = crate::dns_apply::DnsState::default();
        if cfg.dns.is_some() {
            let own_addrs = firewall_apply::own_addresses(&cfg, &netlink).await;
            let plan = crate::dns_apply::plan(&cfg, &own_addrs, false);
            if let Err(e) = crate::dns_apply::apply(&mut dns, plan).await {
                tracing::error!("{e:#}");
            }
        }

        // The tunnels (their userspace implementation is the admin's to start first).
        let mut wg = crate::wg_apply::WgState::default();
        if let Err(e) = crate::wg_apply::apply(&mut wg, &cfg, &netlink).await {
            tracing::error!("{e:#}");
        }

        let states = match cfg.statesync.as_ref().filter(|s| s.enabled) {
            Some(ss) => {
                Some(state_sync::start(&cfg.node.name, ss, &netlink, state_sync_random).await?)
            }
            None => None,
        };
        let sync_link = match cfg.statesync.as_ref().filter(|s| s.enabled) {
            Some(ss) => Some(netlink.link(&ss.device).await?.index),
            None => None,
        };
        // Before a VIP is added, state sync writes every state it has received to the kernel.
        let barrier = states.as_ref().map(|h| {
            let tx = h.commands.clone();
            let b: carp_thread::Barrier = Arc::new(move || {
                let (done, rx) = oneshot::channel();
                if tx.try_send(state_sync::Command::Flush(done)).is_err() {
                    tracing::warn!("state sync busy: VIP added without waiting for its flush");
                }
                rx
            });
            b
        });
        let (carp, carp_events) = carp_thread::Handle::spawn(carp_thread::Options {
            seed: carp_seed,
            record: opts.record,
            barrier,
            watchdog: linux::systemd::watchdog_interval(),
        })?;
        let (checks, check_events) = crate::checks::Checks::start(&cfg.checks);
        let hooks = crate::hooks::Hooks::new(&cfg.node.name, cfg.hooks.clone());
        let mut d = Daemon {
            cfg,
            own,
            netlink,
            carp,
            carp_events,
            masters: BTreeSet::new(),
            ruleset,
            firewall_error: None,
            firewall_last,
            dhcp,
            dns,
            wg,
            sync: None,
            sync_rx: None,
            states,
            sync_link,
            sync_link_up: None,
            resync_pending: false,
            control: ctl_rx,
            metrics_rx,
            metrics_ask,
            metrics,
            control_socket: Default::default(),
            hooks,
            checks,
            check_events,
            state_sync_ready: false,
            notifier: super::notify::Notifier::from_env(),
            maintenance: None,
            _lock: lock,
        };
        d.control_socket.clone_from(&d.cfg.node.control_socket);
        if d.states.is_some() {
            // Not ready until the first bulk sync: demoted before any router exists.
            d.demote_state_sync(true);
        }
        d.restore_maintenance();
        d.carp
            .converge(d.routers(&d.cfg))
            .await
            .map_err(anyhow::Error::msg)?;
        if let Some((cs, rx)) = ConfigSync::start(&d.cfg).await? {
            d.sync = Some(cs);
            d.sync_rx = Some(rx);
        }
        Ok(d)
    }

    /// The CARP thread's view of a config.
    pub(super) fn routers(&self, cfg: &Config) -> carp_thread::Routers {
        carp_thread::Routers {
            advskew: cfg.node.advskew,
            preempt: cfg.node.preempt,
            passphrase: cfg.carp.passphrase.clone(),
            auth: cfg.carp.auth,
            vips: cfg.vips.clone(),
        }
    }
}
