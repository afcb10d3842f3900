//! The CARP thread: the virtual routers of this node on a thread of their own, with their own
//! runtime, sockets, link watcher and rtnetlink socket. Its only inputs are its sockets and a
//! command channel, so nothing else the daemon does (TLS handshakes, a huge push, a state sync
//! burst, a slow `nft -f`, a status request) can delay an advert, a takeover or an
//! announcement.
//!
//! The daemon sends [`Command`]s (converge to a VIP set, demote, status, shut down) and reads
//! [`Event`]s (transitions). Before a VIP's addresses are added, the thread waits, bounded and
//! without holding up anything else, for a [`Barrier`] the daemon provides (state sync: every
//! state received is in the kernel before the VIP answers).

mod addresses;
mod record;
mod runner;
mod vmac;

use crate::config::Vip;
use carp::{DemoteSource, IfaceId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What the virtual routers should be: the node's settings and its VIPs.
#[derive(Debug, Clone, PartialEq)]
pub struct Routers {
    pub advskew: carp::Skew,
    pub preempt: bool,
    pub passphrase: Vec<u8>,
    /// How adverts are authenticated (`[carp] auth`).
    pub auth: carp::AuthMode,
    pub vips: Vec<Vip>,
}

/// Waits for something before a VIP is added; resolves when it may be (or when dropped).
pub type Barrier = Arc<dyn Fn() -> oneshot::Receiver<()> + Send + Sync>;

pub enum Command {
    /// Brings the routers in line: gone or changed ones leave (a master bows out), new ones
    /// start as backup, unchanged ones run on undisturbed. A device that does not exist
    /// changes nothing and is the error.
    Converge {
        routers: Routers,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Sets (value > 0) or clears one demotion source.
    Demote {
        source: DemoteSource,
        value: u8,
    },
    Status(oneshot::Sender<CarpStatus>),
    /// A planned hand-over: every master bows out and stays on as a backup (the demotion that
    /// keeps it one is set before); answers once the farewells are sent and the addresses gone.
    HandOver(oneshot::Sender<()>),
    /// Every master bows out and releases its addresses; the thread ends.
    Shutdown(oneshot::Sender<()>),
}

/// What happened, for the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Transition {
        vhid: u8,
        interface: String,
        from: carp::State,
        to: carp::State,
        reason: String,
    },
    /// The node's demotion changed; `sources` as status names them (`check(gw)+240, ...`).
    Demotion { from: u8, to: u8, sources: String },
}

/// The routers as `tandem status` shows them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CarpStatus {
    /// Sum of the active demotion sources, added to every advertised skew (capped at 240).
    pub demotion: u8,
    pub demotions: Vec<Demotion>,
    pub vips: Vec<VipStatus>,
    /// Adverts dropped before they could be matched to a VIP (unknown vhid, runt packets).
    pub rejected: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Demotion {
    pub source: String,
    pub value: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VipStatus {
    pub vhid: u8,
    pub interface: String,
    pub device: String,
    pub addresses: Vec<String>,
    pub state: String,
    pub advbase: u8,
    /// As advertised: the configured skew plus demotion.
    pub advskew: u8,
    pub configured_advskew: u8,
    pub preempt: bool,
    /// Source address of the last advert accepted from another node.
    pub last_master: Option<String>,
    /// The last state change and why: "who is master of what, and why".
    pub last_transition: Option<Transition>,
    /// State changes since the daemon started.
    #[serde(default)]
    pub transitions: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub adverts_rejected: BTreeMap<String, u64>,
    pub send_errors: u64,
    /// How its adverts are authenticated: `bsd` or `tandem` (CARP; VRRPv3 has no
    /// authentication: `none`).
    #[serde(default)]
    pub auth: String,
    /// `carp` or `vrrp`.
    #[serde(default)]
    pub protocol: String,
    /// VRRP: the priority advertised (254 - advskew - demotion, at least 1); None for CARP.
    #[serde(default)]
    pub priority: Option<u8>,
    /// The interval between its adverts as a master, in milliseconds (CARP: advbase plus
    /// the advertised skew in 1/256 s; VRRP: the configured interval).
    #[serde(default)]
    pub interval_ms: u32,
    /// `interface` or `virtual` (`mac = "virtual"`).
    #[serde(default)]
    pub mac_mode: String,
    /// The MAC(s) that answer for the VIP: the interface's, or the virtual MAC(s).
    #[serde(default)]
    pub mac: Vec<String>,
    /// The macvlan(s) that carry the VIP's addresses (virtual MAC only).
    #[serde(default)]
    pub mac_devices: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub reason: String,
    pub seconds_ago: f64,
}

/// The daemon's handle on the CARP thread.
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How the CARP thread starts.
pub struct Options {
    pub seed: u64,
    /// `tandem run --record FILE`: every engine input as JSONL.
    pub record: Option<PathBuf>,
    pub barrier: Option<Barrier>,
    /// systemd's watchdog interval (`WATCHDOG_USEC`): the thread pings at half of it.
    pub watchdog: Option<std::time::Duration>,
}

impl Handle {
    /// Starts the thread (its runtime, rtnetlink socket and link watcher) with no routers yet.
    pub fn spawn(opts: Options) -> anyhow::Result<(Handle, mpsc::UnboundedReceiver<Event>)> {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("carp".into())
            .spawn(move || runner::run(opts, cmd_rx, ev_tx, ready_tx))
            .map_err(|e| anyhow::anyhow!("cannot start the CARP thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok((
                Handle {
                    commands: cmd_tx,
                    thread: Some(thread),
                },
                ev_rx,
            )),
            Ok(Err(e)) => Err(anyhow::anyhow!("{e}")),
            Err(_) => Err(anyhow::anyhow!("the CARP thread died while starting")),
        }
    }

    fn send(&self, c: Command) -> Result<(), String> {
        self.commands
            .send(c)
            .map_err(|_| "the CARP thread is gone".to_string())
    }

    pub async fn converge(&self, routers: Routers) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Converge { routers, reply })?;
        rx.await
            .map_err(|_| "the CARP thread is gone".to_string())?
    }

    pub fn demote(&self, source: DemoteSource, value: u8) {
        let _ = self.send(Command::Demote { source, value });
    }

    /// See [`Command::HandOver`].
    pub async fn hand_over(&self) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::HandOver(reply))?;
        rx.await.map_err(|_| "the CARP thread is gone".to_string())
    }

    pub async fn status(&self) -> CarpStatus {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Status(reply)).is_err() {
            return CarpStatus::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Bows out, releases every VIP, and waits for the thread to end.
    pub async fn shutdown(mut self) {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Shutdown(reply)).is_ok() {
            let _ = rx.await;
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// The name of a demotion source as status and logs show it.
pub fn source_name(s: &DemoteSource, iface_name: impl Fn(IfaceId) -> String) -> String {
    match s {
        DemoteSource::LinkDown(i) => format!("link-down({})", iface_name(*i)),
        DemoteSource::SendErrors(i, v) => format!("send-errors({} vhid {v})", iface_name(*i)),
        DemoteSource::StateSync => "state-sync".into(),
        DemoteSource::ConfigSync => "config-sync".into(),
        DemoteSource::Operator => "maintenance".into(),
        DemoteSource::Switchover => "switchover".into(),
        DemoteSource::Check(name) => format!("check({name})"),
    }
}
