//! A new config becomes the running one, all or nothing: everything is checked first (the
//! VIPs against the node's addresses, the ruleset rendered, the devices looked up), then the
//! ruleset is applied in one transaction, then the VIPs converge on the CARP thread. A reload
//! that changes what only a restart can apply is refused and says so.

use super::Daemon;
use crate::config::{Config, ParsedFile};
use crate::config_sync;
use crate::firewall_apply;
use anyhow::Context;
use tracing::info;

/// What a reload cannot apply to a running daemon, named for the message.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.node.name != new.node.name {
        v.push("[node] name");
    }
    if old.node.control_socket != new.node.control_socket {
        v.push("[node] control_socket");
    }
    let sync_changed = match (&old.sync, &new.sync) {
        (None, None) => false,
        (Some(a), Some(b)) => a.needs_restart(b),
        _ => true,
    };
    if sync_changed {
        v.push("[sync]");
    }
    if old.statesync != new.statesync {
        v.push("[statesync]");
    }
    v
}

impl Daemon {
    /// After a failed activation: the ruleset (and routes) that ran before go back in.
    /// Returns what happened, for the error.
    async fn put_back_firewall(&mut self) -> String {
        let r = match &self.ruleset {
            // What the kernel holds now is unknown (a failed update, routes half done): the
            // whole table goes back.
            Some(old) => firewall_apply::apply(&self.cfg, &self.netlink, old, None)
                .await
                .map(|last| self.firewall_last = Some(last)),
            None => firewall_apply::remove(&self.cfg).await,
        };
        match r {
            Ok(()) => "the previous ruleset and routes were put back".to_string(),
            Err(e) => format!("putting the previous ruleset back failed too: {e:#}"),
        }
    }

    /// Re-reads the own config file and applies it; a config that fails validation, that the
    /// kernel refuses, or that needs a restart changes nothing and the error says why.
    pub(super) async fn reload(&mut self) -> Result<String, String> {
        let path = self.cfg.own_file.clone();
        let (new, own) = tokio::task::spawn_blocking(move || config_sync::load_running(&path))
            .await
            .map_err(|e| format!("the config thread died: {e}"))?
            .map_err(|e| firewall_apply::describe(&e))?;
        let restart = needs_restart(&self.cfg, &new);
        if !restart.is_empty() {
            return Err(format!(
                "{}: {} changed; a running daemon cannot apply that: restart tandem (nothing was changed)",
                self.cfg.own_file.display(),
                restart.join(", ")
            ));
        }
        let what = format!("reloaded {}", self.cfg.own_file.display());
        // A changed [metrics] listen is bound first: when it cannot be, nothing changes.
        let staged = self.stage_metrics(&new).await?;
        match self.activate(new, Some(own), &what).await {
            Ok(msg) => Ok(msg + &self.commit_metrics(staged).await),
            Err(e) => {
                self.abort_metrics(staged).await;
                Err(firewall_apply::describe(&e))
            }
        }
    }

    /// Makes `new` the running config (firewall, then VIPs), or changes nothing and says why.
    /// `own`: the own file it was composed from, when it was re-read; `what` names the change
    /// in the message (`reloaded FILE`, `generation 5 from fw1`).
    pub(super) async fn activate(
        &mut self,
        new: Config,
        own: Option<ParsedFile>,
        what: &str,
    ) -> anyhow::Result<String> {
        let own_addrs = firewall_apply::own_addresses(&new, &self.netlink).await;
        let was_applied = self.dns.text.is_some();
        let (new, prepared, dns_plan, dhcp) = tokio::task::spawn_blocking(move || {
            let prepared = firewall_apply::prepare(&new, &own_addrs);
            let dns_plan = crate::dns_apply::plan(&new, &own_addrs, was_applied);
            let dhcp = crate::dhcp_apply::prepare(&new, &own_addrs);
            (new, prepared, dns_plan, dhcp)
        })
        .await
        .context("the ruleset thread died")?;
        let ruleset = match prepared {
            Ok(r) => r,
            Err(e) => {
                // The old ruleset stays in force; status says why the new one is not.
                self.firewall_error = Some(e.to_string());
                return Err(e.into());
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
        crate::wg_apply::check(&new).await?;
        // The certificates' files, under temporary names until everything else is in.
        let certs = crate::certs_apply::stage_for(&new).await?;
        // The dhcp area, tested by the running Kea (nothing changes there yet).
        let (dhcp, _) = crate::dhcp_apply::check_for(dhcp).await?;
        let applied = match &ruleset {
            Some(r) => firewall_apply::apply(&new, &self.netlink, r, self.ruleset.as_ref())
                .await
                .map(Some),
            None if self.ruleset.is_some() => firewall_apply::remove(&new).await.map(|()| None),
            None => Ok(None),
        };
        let last_apply = match applied {
            Ok(last) => last,
            Err(e) => {
                // `nft -f` is one transaction, but the routes and sysctls come after it.
                let note = self.put_back_firewall().await;
                self.firewall_error = Some(format!("{e:#}"));
                return Err(e.context(note));
            }
        };
        let dns_undo = match crate::dns_apply::apply(&mut self.dns, dns_plan).await {
            Ok(u) => u,
            Err(e) => {
                let note = self.put_back_firewall().await;
                return Err(e.context(note));
            }
        };
        let wg_undo = match crate::wg_apply::apply(&mut self.wg, &new, &self.netlink).await {
            Ok(u) => u,
            Err(e) => {
                let mut note = self.put_back_firewall().await;
                if let Some(u) = dns_undo {
                    note = format!("{note}; {}", crate::dns_apply::undo(&mut self.dns, u).await);
                }
                return Err(e.context(note));
            }
        };
        let vips = match self.carp.converge(self.routers(&new)).await {
            Ok(v) => v,
            Err(e) => {
                let mut note = self.put_back_firewall().await;
                if let Some(u) = dns_undo {
                    note = format!("{note}; {}", crate::dns_apply::undo(&mut self.dns, u).await);
                }
                if let Some(u) = wg_undo {
                    let back = crate::wg_apply::undo(&mut self.wg, &self.netlink, u).await;
                    note = format!("{note}; {back}");
                }
                return Err(anyhow::anyhow!("{e} ({note})"));
            }
        };
        self.firewall_error = None;
        self.firewall_last = last_apply;
        match crate::certs_apply::commit(certs).await {
            Ok(true) => info!("certificates written: {}", new.certificates.len()),
            Ok(false) => {}
            Err(e) => tracing::error!("{e}"),
        }
        self.dhcp = crate::dhcp_apply::commit_for(dhcp).await;
        if let Some(r) = &ruleset {
            info!(
                "firewall applied: {}, {}",
                crate::words::count(new.areas.rules.len(), "rule"),
                crate::words::count(r.routes.len(), "route")
            );
        }
        // What is replaced is dropped off this task: a 10 000-rule config takes milliseconds
        // to free, and the reply waits for nothing but the new config.
        let old = (
            std::mem::replace(&mut self.ruleset, ruleset),
            std::mem::replace(&mut self.cfg, new),
            own.map(|own| std::mem::replace(&mut self.own, own)),
        );
        if let Some(cs) = self.sync.as_mut() {
            cs.activated(&self.cfg, Some(&old.1));
        }
        tokio::task::spawn_blocking(move || drop(old));
        self.apply_ops();
        let generation = self.sync.as_ref().map(|cs| cs.status(&self.cfg).generation);
        self.hooks.node_event(
            crate::config::Hook::ConfigApplied,
            crate::hooks::HookEvent {
                event: "config-applied".into(),
                new: generation.map(|g| g.to_string()).unwrap_or_default(),
                reason: what.to_string(),
                extra: vec![(
                    "TANDEM_GENERATION".into(),
                    generation.map(|g| g.to_string()).unwrap_or_default(),
                )],
                ..Default::default()
            },
        );
        let msg = format!(
            "{what}: {vips}, firewall {}",
            if self.cfg.firewall.managed {
                crate::words::count(self.cfg.areas.rules.len(), "rule")
            } else {
                "not managed".into()
            }
        );
        info!("{msg}");
        Ok(msg)
    }
}
