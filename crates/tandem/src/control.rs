//! The control API: one JSON request line in, one JSON reply line out, over the Unix socket
//! named in the config. The CLI only ever talks to the daemon through it.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    Status,
    /// Re-read the config file and apply it (as SIGHUP does), answering with the outcome.
    Reload,
    /// Config sync: the running config and where each area came from.
    ConfigShow,
    /// Config sync (peer): run the synced areas of an earlier generation again.
    ConfigRollback {
        to: Option<u64>,
    },
    /// Config sync (primary): push the current generation to every peer now.
    ConfigPush {
        force: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    Status(Box<Status>),
    Done(String),
    Error(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: String,
    pub pid: u32,
    /// Sum of the active demotion sources, added to every advertised skew (capped at 240).
    pub demotion: u8,
    pub demotions: Vec<Demotion>,
    pub vips: Vec<VipStatus>,
    /// Adverts dropped before they could be matched to a VIP (unknown vhid, runt packets).
    pub rejected: BTreeMap<String, u64>,
    pub firewall: crate::ruleset::FirewallStatus,
    pub sync: SyncStatus,
    /// Config sync in detail (None without `[sync]`).
    #[serde(default)]
    pub config_sync: Option<crate::configsync::ConfigSyncStatus>,
    /// State sync in detail (None without `[statesync]`, or when it is switched off).
    #[serde(default)]
    pub state_sync: Option<crate::state_sync::StateSyncStatus>,
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
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub adverts_rejected: BTreeMap<String, u64>,
    pub send_errors: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub reason: String,
    pub seconds_ago: f64,
}

/// Config and state sync are later issues; status says so rather than inventing a value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncStatus {
    pub config: String,
    pub state: String,
}

/// A request from a control client, with the channel for its answer.
pub type Pending = (Request, oneshot::Sender<Reply>);

/// Binds the control socket, refusing to steal it from a daemon that still answers there.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!(
                "another daemon is answering on control socket {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale control socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let l = UnixListener::bind(path)
        .with_context(|| format!("cannot bind control socket {}", path.display()))?;
    // Only root may talk to the daemon.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict control socket {}", path.display()))?;
    Ok(l)
}

/// Accepts clients forever, handing each request to the daemon loop.
pub async fn serve(listener: UnixListener, to_daemon: mpsc::Sender<Pending>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let tx = to_daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, tx).await {
                tracing::debug!("control client: {e:#}");
            }
        });
    }
}

async fn answer(stream: UnixStream, to_daemon: mpsc::Sender<Pending>) -> anyhow::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    // A bounded read: a client cannot make the daemon buffer without end.
    let n = BufReader::new(rd.take(64 * 1024))
        .read_line(&mut line)
        .await?;
    if n == 0 {
        return Ok(());
    }
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => {
            let (tx, rx) = oneshot::channel();
            to_daemon
                .send((req, tx))
                .await
                .context("daemon is shutting down")?;
            rx.await.context("daemon dropped the request")?
        }
        Err(e) => Reply::Error(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_string(&reply)?;
    out.push('\n');
    wr.write_all(out.as_bytes()).await?;
    Ok(())
}

/// Client side: sends one request and returns the reply.
pub async fn call(path: &Path, req: &Request) -> anyhow::Result<Reply> {
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "no daemon answers on control socket {} (is `tandem run` running with this config?)",
            path.display()
        )
    })?;
    let (rd, mut wr) = stream.into_split();
    let mut msg = serde_json::to_string(req)?;
    msg.push('\n');
    wr.write_all(msg.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(rd).read_line(&mut line).await?;
    if line.is_empty() {
        bail!("daemon on {} closed the connection", path.display());
    }
    serde_json::from_str(&line).with_context(|| format!("unreadable reply from daemon: {line}"))
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The human-readable status table.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} (pid {})  demotion {}",
        s.node, s.pid, s.demotion
    );
    for d in &s.demotions {
        let _ = writeln!(out, "  demoted by {} (+{})", d.source, d.value);
    }
    let _ = writeln!(
        out,
        "{:<5} {:<10} {:<10} {:<7} {:>7} {:>7} {:>6} {:>6}  {:<24} REJECTED",
        "VHID", "INTERFACE", "DEVICE", "STATE", "ADVBASE", "ADVSKEW", "SENT", "RECV", "ADDRESSES"
    );
    for v in &s.vips {
        let _ = writeln!(
            out,
            "{:<5} {:<10} {:<10} {:<7} {:>7} {:>7} {:>6} {:>6}  {:<24} {}",
            v.vhid,
            v.interface,
            v.device,
            v.state,
            v.advbase,
            v.advskew,
            v.adverts_sent,
            v.adverts_received,
            v.addresses.join(","),
            counts(&v.adverts_rejected)
        );
    }
    for v in &s.vips {
        if let Some(t) = &v.last_transition {
            let _ = writeln!(
                out,
                "vhid {} {}: {} -> {} ({}, {:.1} s ago)",
                v.vhid, v.interface, t.from, t.to, t.reason, t.seconds_ago
            );
        }
    }
    if !s.rejected.is_empty() {
        let _ = writeln!(
            out,
            "rejected before matching a VIP: {}",
            counts(&s.rejected)
        );
    }
    let _ = writeln!(
        out,
        "config sync: {}  state sync: {}",
        s.sync.config, s.sync.state
    );
    if let Some(cs) = &s.config_sync {
        out.push_str(&crate::configsync::render(cs));
    }
    out
}
