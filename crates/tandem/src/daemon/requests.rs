//! What the daemon answers: control requests (the CLI), config sync's outcomes (XML-RPC
//! calls, pushed candidates), and the node's one status for both.

use super::Daemon;
use crate::config_sync::{self, Outcome};
use crate::control::{Reply, Request};
use crate::firewall_apply;
use crate::state_sync;
use crate::status::{Status, SyncStatus};
use carp::DemoteSource;
use configsync::rpc::Refusal;
use std::time::Duration;
use tracing::error;

impl Daemon {
    pub(super) async fn answer(&mut self, req: Request) -> Reply {
        match req {
            Request::Status => Reply::Status(Box::new(self.status().await)),
            Request::Reload => match self.reload().await {
                Ok(msg) => Reply::Done(msg),
                Err(e) => {
                    error!("reload failed, running config unchanged: {e}");
                    Reply::Error(e)
                }
            },
            Request::Maintenance { enter } => {
                let r = if enter {
                    self.enter_maintenance().await
                } else {
                    self.leave_maintenance()
                };
                match r {
                    Ok(m) => Reply::Done(m),
                    Err(e) => Reply::Error(e),
                }
            }
            Request::Switchover { peer } => match self.switchover(peer).await {
                Ok(m) => Reply::Done(m),
                Err(e) => Reply::Error(e),
            },
            Request::ConfigShow => match &self.sync {
                Some(cs) => Reply::Done(cs.show(&self.cfg)),
                None => self.no_sync(),
            },
            Request::ConfigPush { force } => match self.sync.as_mut() {
                Some(cs) => match cs.push_now(force) {
                    Ok(m) => Reply::Done(m),
                    Err(e) => Reply::Error(e),
                },
                None => self.no_sync(),
            },
            Request::ConfigRollback { to } => {
                let Some(cs) = self.sync.as_mut() else {
                    return self.no_sync();
                };
                let (cfg, plan) = match cs.rollback(&self.cfg, &self.own, to) {
                    Ok(c) => c,
                    Err(e) => return Reply::Error(e),
                };
                if let Err(e) = self.activate(cfg, None, &plan.what).await {
                    return Reply::Error(firewall_apply::describe(&e));
                }
                let r = match self.sync.as_mut() {
                    Some(cs) => cs.finish_rollback(&plan),
                    None => Err("config sync stopped".into()),
                };
                self.update_config_sync_demotion();
                match r {
                    Ok(m) => Reply::Done(m),
                    Err(e) => Reply::Error(e),
                }
            }
        }
    }

    fn no_sync(&self) -> Reply {
        Reply::Error(format!(
            "config sync is not configured on {} (no [sync] in {})",
            self.cfg.node.name,
            self.cfg.own_file.display()
        ))
    }

    /// An input from config sync: an XML-RPC call, a push result, a tick.
    pub(super) async fn on_sync(&mut self, input: config_sync::Input) {
        let Some(cs) = self.sync.as_mut() else {
            return;
        };
        match cs.handle(input, &self.cfg, &self.own) {
            Outcome::Nothing => {}
            Outcome::Status(reply) => {
                let st = self.status().await;
                let answer = serde_json::to_value(&st)
                    .map(|j| configsync::rpc::from_json(&j))
                    .map_err(|e| Refusal::Internal(e.to_string()));
                let _ = reply.send(answer);
            }
            Outcome::Reload(reply) => {
                let r = self.reload().await;
                let _ = reply.send(match r {
                    Ok(m) => Ok(configsync::rpc::reload_answer(&m)),
                    Err(e) => Err(Refusal::Invalid(e)),
                });
            }
            Outcome::Activate(cfg, pending) => {
                let what = format!("activated {}", pending.what());
                let r = self
                    .activate(*cfg, None, &what)
                    .await
                    .map(|_| ())
                    .map_err(|e| firewall_apply::describe(&e));
                if let Some(cs) = self.sync.as_mut() {
                    cs.finish(pending, r);
                }
            }
        }
        self.update_config_sync_demotion();
    }

    fn update_config_sync_demotion(&mut self) {
        let Some(cs) = self.sync.as_mut() else {
            return;
        };
        if let Some(v) = cs.demotion(&self.cfg) {
            self.carp.demote(DemoteSource::ConfigSync, v);
        }
    }

    /// The node's status: one struct for `tandem status` and `tandem.status`.
    pub(super) async fn status(&self) -> Status {
        let carp = self.carp.status().await;
        // State sync answers between two pieces of work; a status never waits long for it.
        let state_sync = match &self.states {
            Some(h) => state_sync::ask(
                &h.commands,
                state_sync::Command::Status,
                Duration::from_secs(2),
            )
            .await
            .ok(),
            None => None,
        };
        let state_line = match (&self.cfg.statesync, &state_sync) {
            (None, _) => "not configured".to_string(),
            (Some(s), _) if !s.enabled => "disabled ([statesync] enabled = false)".to_string(),
            (Some(_), Some(ss)) => state_sync::summary(ss),
            (Some(_), None) => "not answering".to_string(),
        };
        Status {
            node: self.cfg.node.name.clone(),
            pid: std::process::id(),
            demotion: carp.demotion,
            demotions: carp.demotions,
            vips: carp.vips,
            rejected: carp.rejected,
            firewall: firewall_apply::status(
                &self.cfg,
                self.ruleset.is_some(),
                self.firewall_error.clone(),
                self.firewall_last.clone(),
            ),
            sync: SyncStatus {
                config: self
                    .sync
                    .as_ref()
                    .map_or_else(|| "not configured".into(), |cs| cs.summary(&self.cfg)),
                state: state_line,
            },
            config_sync: self.sync.as_ref().map(|cs| cs.status(&self.cfg)),
            state_sync,
            checks: self.checks.status(),
            hooks: self.hooks.status(),
            maintenance: self.maintenance.is_some(),
            maintenance_since: self.maintenance.flatten(),
            certificates: crate::certs_apply::status(
                &self.cfg,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                config_sync::status::rfc3339,
            ),
            dhcp: crate::dhcp_apply::status_now(self.dhcp.clone(), &self.cfg).await,
            dns: crate::dns_apply::status(&self.cfg, &self.dns),
            wireguard: crate::wg_apply::status(&self.cfg, &self.wg).await,
        }
    }
}
