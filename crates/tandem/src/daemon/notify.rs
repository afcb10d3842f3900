//! What systemd hears (`Type=notify`): `READY=1` once the ruleset is applied and the CARP
//! thread runs, a `STATUS=` line with the node's summary whenever it changes, `STOPPING=1`
//! when it bows out. (`WATCHDOG=1` comes from the CARP thread itself.) Without
//! `NOTIFY_SOCKET` nothing is sent and no status is gathered for it.

use super::Daemon;
use crate::status::Status;
use tracing::{debug, warn};

/// One line: "master of 1/2 VIPs, demotion 0, config gen 5, state sync ready".
pub fn summary(s: &Status) -> String {
    let masters = s.vips.iter().filter(|v| v.state == "MASTER").count();
    let mut line = format!(
        "master of {masters}/{}, demotion {}",
        crate::words::count(s.vips.len(), "VIP"),
        s.demotion
    );
    if let Some(cs) = &s.config_sync {
        line += &format!(", config gen {}", cs.generation);
        if cs.behind {
            line += " (behind)";
        }
    }
    if let Some(ss) = &s.state_sync {
        let ready = ss.engine.as_ref().is_some_and(|e| e.ready);
        line += if ready {
            ", state sync ready"
        } else {
            ", state sync NOT READY"
        };
    }
    line
}

/// The daemon's side of the notifications: whether anyone listens, and the last line sent.
pub struct Notifier {
    on: bool,
    last: Option<String>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            on: linux::systemd::notify_socket(),
            last: None,
        }
    }

    pub fn on(&self) -> bool {
        self.on
    }
}

fn sent(what: &str, r: std::io::Result<()>) {
    if let Err(e) = r {
        warn!("cannot tell systemd {what}: {e}");
    }
}

impl Daemon {
    /// `READY=1` with the first status line.
    pub(super) async fn notify_ready(&mut self) {
        if !self.notifier.on {
            return;
        }
        let line = summary(&self.status().await);
        debug!("systemd: READY=1, STATUS={line}");
        sent("READY=1", linux::systemd::ready(&line));
        self.notifier.last = Some(line);
    }

    /// A new `STATUS=` line, when the summary changed.
    pub(super) async fn notify_status(&mut self) {
        if !self.notifier.on {
            return;
        }
        let line = summary(&self.status().await);
        if self.notifier.last.as_deref() != Some(line.as_str()) {
            sent("STATUS=", linux::systemd::status(&line));
            self.notifier.last = Some(line);
        }
    }

    /// `STOPPING=1`.
    pub(super) fn notify_stopping(&self, why: &str) {
        if self.notifier.on {
            sent("STOPPING=1", linux::systemd::stopping(why));
        }
    }
}
