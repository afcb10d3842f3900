//! The metrics listener's life after the start (start.rs binds it first): moved by a reload that changes
//! `[metrics]`, all or nothing: the new address is bound before the config is activated, and
//! the old one is back if the activation fails.

use super::Daemon;
use crate::config::Config;
use crate::metrics::Server;
use std::net::SocketAddr;
use tracing::{info, warn};

/// The listen address a config asks for (None: no listener).
pub(super) fn wanted(cfg: &Config) -> Option<SocketAddr> {
    cfg.metrics.filter(|m| m.enabled).map(|m| m.listen)
}

/// A reload's listener, bound but not yet in place.
pub(super) enum Staged {
    Same,
    /// The new config has no listener.
    Stop,
    /// Bound next to the old one (if any).
    Start(SocketAddr, Server),
    /// The old one had to close first (same port); it is reopened if the reload fails.
    Replaced {
        new: (SocketAddr, Server),
        old: SocketAddr,
    },
}

impl Daemon {
    /// Binds what `new` asks for; Err changes nothing.
    pub(super) async fn stage_metrics(&mut self, new: &Config) -> Result<Staged, String> {
        let want = wanted(new);
        let have = self.metrics.as_ref().map(|(a, _)| *a);
        let Some(addr) = want else {
            return Ok(if have.is_none() {
                Staged::Same
            } else {
                Staged::Stop
            });
        };
        if have == Some(addr) {
            return Ok(Staged::Same);
        }
        let first = match Server::start(addr, self.metrics_ask.clone()).await {
            Ok(s) => return Ok(Staged::Start(addr, s)),
            Err(e) => e,
        };
        // Maybe the old listener holds the port (127.0.0.1:9720 -> 0.0.0.0:9720).
        let Some((old, server)) = self.metrics.take() else {
            return Err(first);
        };
        server.stop().await;
        match Server::start(addr, self.metrics_ask.clone()).await {
            Ok(s) => Ok(Staged::Replaced {
                new: (addr, s),
                old,
            }),
            Err(e) => {
                self.reopen_metrics(old).await;
                Err(e)
            }
        }
    }

    /// The reload went through: the staged listener takes over. Returns a note for its message.
    pub(super) async fn commit_metrics(&mut self, staged: Staged) -> String {
        let new = match staged {
            Staged::Same => return String::new(),
            Staged::Stop => {
                if let Some((_, s)) = self.metrics.take() {
                    s.stop().await;
                }
                info!("metrics listener closed");
                return ", metrics listener closed".into();
            }
            Staged::Start(a, s) => (a, s),
            Staged::Replaced { new, .. } => new,
        };
        if let Some((_, s)) = self.metrics.take() {
            s.stop().await;
        }
        let note = format!(", metrics on http://{}/", new.1.addr());
        info!("metrics and status page moved to http://{}/", new.1.addr());
        self.metrics = Some(new);
        note
    }

    /// The reload failed: the listener is as it was.
    pub(super) async fn abort_metrics(&mut self, staged: Staged) {
        match staged {
            Staged::Same | Staged::Stop => {}
            Staged::Start(_, s) => s.stop().await,
            Staged::Replaced { new, old } => {
                new.1.stop().await;
                self.reopen_metrics(old).await;
            }
        }
    }

    async fn reopen_metrics(&mut self, addr: SocketAddr) {
        match Server::start(addr, self.metrics_ask.clone()).await {
            Ok(s) => self.metrics = Some((addr, s)),
            Err(e) => warn!("{e}: the metrics listener stays closed until the next reload"),
        }
    }
}
