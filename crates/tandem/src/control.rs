//! The control API: one JSON request line in, one JSON reply line out, over the Unix socket
//! named in the config. The CLI only ever talks to the daemon through it.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
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
    Status(Box<crate::status::Status>),
    Done(String),
    Error(String),
}

/// A request from a control client, with the channel for its answer.
pub type Pending = (Request, oneshot::Sender<Reply>);

/// Binds the control socket. Only the process holding the node's lock calls this, so a
/// socket file already there is a leftover of a daemon that is gone.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot remove stale control socket {}", path.display()))
        }
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
