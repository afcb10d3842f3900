//! Planned hand-overs: maintenance mode, `tandem switchover`, and the clean stop.
//!
//! Each hands this node's VIPs over the same way: state sync's barrier first (every peer
//! alive confirms it holds every state this node knows, in its kernel), then the masters bow
//! out as at a clean stop, so a backup takes over at once whatever its preempt setting. The
//! kernel keeps forwarding what still reaches this node (stale ARP caches, packets in flight):
//! the ruleset and the conntrack table stay as they are.
//!
//! Maintenance mode lowers the node's standing (demotion 240) and keeps it so across restarts
//! and reboots: a file in `[node] state_dir` says so until `tandem maintenance leave`. A
//! switchover lowers it the same way until this node is master again (its peer failed, or
//! handed the VIPs back); with a peer named, the other nodes stand back too, so that the one
//! named takes over.

use super::Daemon;
use crate::state_sync;
use carp::DemoteSource;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// How far maintenance mode and a switchover lower the node: the most a demotion can (CARP
/// caps the advertised skew at 240; VRRP's priority goes to 254 - advskew - 240).
pub const STAND_BACK: u8 = 240;

/// How long a hand-over waits for the peers to confirm state sync's barrier. A peer that
/// does not answer in time (gone, or cut off) is not waited for: the hand-over goes on, and
/// says so.
const BARRIER_DEADLINE: Duration = Duration::from_secs(2);

/// The file whose presence means maintenance mode.
pub fn maintenance_file(state_dir: &Path) -> PathBuf {
    state_dir.join("maintenance")
}

/// When maintenance mode was entered (seconds since the Unix epoch), if the node is in it.
/// A file that cannot be read or parsed still means maintenance (its time is then unknown):
/// an unreadable flag must not put a node back in service.
pub fn read_maintenance(state_dir: &Path) -> Option<Option<u64>> {
    let path = maintenance_file(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(
            text.lines()
                .find_map(|l| l.strip_prefix("since "))
                .and_then(|s| s.trim().parse().ok()),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            warn!(
                "cannot read {} ({e}): taken as maintenance mode",
                path.display()
            );
            Some(None)
        }
    }
}

fn write_maintenance(state_dir: &Path, since: u64) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)?;
    let path = maintenance_file(state_dir);
    let tmp = state_dir.join(".maintenance.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(
        f,
        "# tandem maintenance mode: this node stays a backup until `tandem maintenance leave`"
    )?;
    writeln!(f, "since {since}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    // The rename must survive a power cut as well as the content.
    std::fs::File::open(state_dir)?.sync_all()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Daemon {
    /// At start: a node left in maintenance mode comes up in it, demoted before any router
    /// exists, so it never takes a VIP it should not.
    pub(super) fn restore_maintenance(&mut self) {
        if let Some(since) = read_maintenance(&self.cfg.node.state_dir) {
            info!(
                "maintenance mode (entered {}): staying a backup until `tandem maintenance leave`",
                since.map_or_else(|| "at an unknown time".into(), |s| format!("at {s}"))
            );
            self.maintenance = Some(since);
            self.carp.demote(DemoteSource::Operator, STAND_BACK);
        }
    }

    /// `tandem maintenance enter`: persist first (a crash or reboot right after keeps the node
    /// out), then stand back and hand over.
    pub(super) async fn enter_maintenance(&mut self) -> Result<String, String> {
        if self.maintenance.is_some() {
            return Ok(format!(
                "{} is already in maintenance mode (master of {})",
                self.cfg.node.name,
                self.masters_text()
            ));
        }
        let since = unix_now();
        let dir = self.cfg.node.state_dir.clone();
        write_maintenance(&dir, since).map_err(|e| {
            format!(
                "cannot record maintenance mode in {}: {e}; nothing changed",
                maintenance_file(&dir).display()
            )
        })?;
        self.maintenance = Some(Some(since));
        info!("entering maintenance mode: handing every VIP to the peers");
        self.carp.demote(DemoteSource::Operator, STAND_BACK);
        let handed = self.hand_over("maintenance", None).await;
        Ok(format!(
            "{} is in maintenance mode (recorded in {}); {handed}",
            self.cfg.node.name,
            maintenance_file(&dir).display()
        ))
    }

    /// `tandem maintenance leave`: back in service; with preempt, VIPs it is preferred for
    /// come back.
    pub(super) fn leave_maintenance(&mut self) -> Result<String, String> {
        let path = maintenance_file(&self.cfg.node.state_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot remove {} ({e}): still in maintenance mode",
                    path.display()
                ))
            }
        }
        if self.maintenance.take().is_none() {
            return Ok(format!("{} is not in maintenance mode", self.cfg.node.name));
        }
        info!("leaving maintenance mode");
        self.carp.demote(DemoteSource::Operator, 0);
        Ok(format!(
            "{} left maintenance mode ({})",
            self.cfg.node.name,
            if self.cfg.node.preempt {
                "it takes back the VIPs it is preferred for"
            } else {
                "preempt is off: VIPs stay where they are"
            }
        ))
    }

    /// `tandem switchover [PEER]`.
    pub(super) async fn switchover(&mut self, peer: Option<String>) -> Result<String, String> {
        if self.masters.is_empty() {
            return Err(format!(
                "{} is master of no VIP: nothing to hand over",
                self.cfg.node.name
            ));
        }
        match &peer {
            Some(p) => self.check_peer(p).await?,
            None => {
                if self.live_state_sync_peers().await == Some(0) {
                    return Err(
                        "state sync hears no peer: there is nobody to hand over to (nothing changed)"
                            .into(),
                    );
                }
            }
        }
        self.carp.demote(DemoteSource::Switchover, STAND_BACK);
        let handed = self.hand_over("switchover", peer.as_deref()).await;
        Ok(match peer {
            Some(p) => format!("handing over to {p}: {handed}"),
            None => handed,
        })
    }

    /// How many peers state sync hears now (None: no state sync, or it does not answer).
    async fn live_state_sync_peers(&self) -> Option<usize> {
        let status = self.state_sync_engine_status().await.ok()?;
        Some(status.peers.iter().filter(|p| p.alive).count())
    }

    async fn state_sync_engine_status(&self) -> Result<statesync::Status, String> {
        let Some(h) = &self.states else {
            return Err("no state sync".into());
        };
        state_sync::ask(
            &h.commands,
            state_sync::Command::Status,
            Duration::from_secs(2),
        )
        .await
        .ok()
        .and_then(|s| s.engine)
        .ok_or_else(|| "state sync is not answering".to_string())
    }

    /// A named peer must be one state sync hears now (that is how the others learn whom to
    /// stand back for).
    async fn check_peer(&self, peer: &str) -> Result<(), String> {
        if peer == self.cfg.node.name {
            return Err(format!("{peer} is this node"));
        }
        if !configsync::rpc::is_node_name(peer) {
            return Err(format!("{peer:?} is not a node name"));
        }
        if self.states.is_none() {
            return Err(
                "naming the peer needs state sync ([statesync]): it carries the hand-over notice; \
                 `tandem switchover` without a name hands over to the best backup"
                    .into(),
            );
        }
        let status = self.state_sync_engine_status().await?;
        let id = state_sync::node_id(peer);
        match status.peers.iter().find(|p| p.node == id) {
            Some(p) if p.alive => Ok(()),
            Some(_) => Err(format!(
                "{peer} is not alive (state sync has not heard from it lately)"
            )),
            None => Err(format!(
                "state sync knows no node {peer} (it hears {} peer(s); node names must match their [node] name)",
                status.peers.len()
            )),
        }
    }

    /// A peer is about to hand its VIPs over: to this node, or to whichever backup wins (stop
    /// standing back: a new election), or to another node (stand back so that one wins).
    pub(super) fn on_handover_notice(&mut self, from: statesync::NodeId, to: statesync::NodeId) {
        if to == state_sync::node_id(&self.cfg.node.name) {
            info!("peer {} hands its VIPs to this node", from.0);
            self.carp.demote(DemoteSource::Switchover, 0);
        } else if to.0 == 0 {
            info!("peer {} hands its VIPs over", from.0);
            self.carp.demote(DemoteSource::Switchover, 0);
        } else {
            info!(
                "peer {} hands its VIPs to node {}: standing back until this node is master again",
                from.0, to.0
            );
            self.carp.demote(DemoteSource::Switchover, STAND_BACK);
        }
    }

    /// A switchover's standing back ends when this node takes over because its master went
    /// silent (the node it stood back for failed). Not when it takes over on a bow-out or by
    /// preempting: every backup may do that for a moment during a hand-over.
    pub(super) fn on_takeover(&mut self, reason: &str) {
        if reason == carp::Reason::MasterDownTimer.to_string() {
            self.carp.demote(DemoteSource::Switchover, 0);
        }
    }

    /// The hand-over itself: state sync's barrier (telling the peers whom the VIPs go to),
    /// then the masters bow out. Says what it did.
    pub(super) async fn hand_over(&mut self, why: &str, to: Option<&str>) -> String {
        if self.masters.is_empty() {
            return "master of no VIP: nothing to hand over".into();
        }
        let vips = self.masters_text();
        let (barrier, confirmed) = self.state_barrier(to).await;
        if confirmed == Some(0) {
            // State sync hears no peer: bowing out would leave the VIPs unserved until this
            // node's own master-down timer brought them back. It stays master, demoted, and
            // a peer that comes takes them.
            info!("{why}: no live peer to hand {vips} to: staying master until one comes");
            return format!(
                "no live peer to hand {vips} to: still master, demoted, until a peer comes"
            );
        }
        if let Err(e) = self.carp.hand_over().await {
            return format!("cannot hand over: {e}");
        }
        info!("{why}: handed over {vips} ({barrier})");
        format!("handed over {vips} ({barrier})")
    }

    /// State sync's barrier, bounded: what it achieved, in words, and how many peers
    /// confirmed it when all that were alive did.
    pub(super) async fn state_barrier(&self, to: Option<&str>) -> (String, Option<usize>) {
        let Some(h) = &self.states else {
            return ("no state sync".into(), None);
        };
        let started = std::time::Instant::now();
        let barrier = |reply| state_sync::Command::Barrier {
            to: to.map(String::from),
            reply,
        };
        match state_sync::ask(&h.commands, barrier, BARRIER_DEADLINE).await {
            Ok(confirmed) => (
                format!(
                    "states confirmed by {} in {} ms",
                    crate::words::count(confirmed.len(), "peer"),
                    started.elapsed().as_millis()
                ),
                Some(confirmed.len()),
            ),
            Err(state_sync::Unanswered::Gone) => {
                warn!("state sync could not run the barrier: handing over without it");
                ("state sync barrier failed".into(), None)
            }
            Err(state_sync::Unanswered::Late) => {
                warn!(
                    "state sync barrier: not every peer confirmed within {} s; handing over anyway",
                    BARRIER_DEADLINE.as_secs()
                );
                (
                    format!(
                        "states not confirmed by every peer within {} s",
                        BARRIER_DEADLINE.as_secs()
                    ),
                    None,
                )
            }
        }
    }

    fn masters_text(&self) -> String {
        if self.masters.is_empty() {
            return "no VIP".into();
        }
        self.masters
            .iter()
            .map(|(i, v)| format!("vhid {v} on {i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
