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
    /// Maintenance mode: enter (hand every VIP to the peers and stay a backup, across
    /// restarts) or leave.
    Maintenance {
        enter: bool,
    },
    /// Hand this node's VIPs over now, to `peer` if named.
    Switchover {
        peer: Option<String>,
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

impl Request {
    /// Whether it only reads (status, `config show`): what members of `[node] status_group`
    /// may ask.
    pub fn reads_only(&self) -> bool {
        matches!(self, Request::Status | Request::ConfigShow)
    }
}

/// Who may ask what: root everything; members of the status group (by primary or
/// supplementary group) only requests that read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub status_gid: Option<u32>,
}

impl Access {
    /// Checks a caller (from SO_PEERCRED) for a request; the error says why not.
    fn check(&self, uid: u32, gid: u32, pid: Option<i32>, req: &Request) -> Result<(), String> {
        if uid == 0 {
            return Ok(());
        }
        let Some(status_gid) = self.status_gid else {
            return Err(format!(
                "permission denied: uid {uid} is not root (set [node] status_group to let a group read status)"
            ));
        };
        let member = gid == status_gid
            || pid.is_some_and(|p| {
                linux::access::groups_of(p).is_ok_and(|g| g.contains(&status_gid))
            });
        match (member, req.reads_only()) {
            (true, true) => Ok(()),
            (true, false) => Err(format!(
                "permission denied: uid {uid} may read status, not change anything (that takes root)"
            )),
            (false, _) => Err(format!(
                "permission denied: uid {uid} is neither root nor in the status group"
            )),
        }
    }
}

/// Binds the control socket. Only the process holding the node's lock calls this, so a
/// socket file already there is a leftover of a daemon that is gone. The process's umask
/// (077) makes it private from the start; with a status group it is then shared with that
/// group (mode 0660). Every request is still checked against its caller (SO_PEERCRED).
pub fn bind(path: &Path, access: Access) -> anyhow::Result<UnixListener> {
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
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict control socket {}", path.display()))?;
    if let Some(gid) = access.status_gid {
        linux::access::share_with_group(path, gid).with_context(|| {
            format!(
                "cannot share control socket {} with gid {gid}",
                path.display()
            )
        })?;
    }
    Ok(l)
}

/// Accepts clients forever, handing each request the caller may make to the daemon loop.
pub async fn serve(listener: UnixListener, access: Access, to_daemon: mpsc::Sender<Pending>) {
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
            if let Err(e) = answer(stream, access, tx).await {
                tracing::debug!("control client: {e:#}");
            }
        });
    }
}

async fn answer(
    stream: UnixStream,
    access: Access,
    to_daemon: mpsc::Sender<Pending>,
) -> anyhow::Result<()> {
    let cred = stream.peer_cred().context("SO_PEERCRED")?;
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
        Ok(req) => match access.check(cred.uid(), cred.gid(), cred.pid(), &req) {
            Err(why) => {
                tracing::warn!("control socket: {why}");
                Reply::Error(why)
            }
            Ok(()) => {
                let (tx, rx) = oneshot::channel();
                to_daemon
                    .send((req, tx))
                    .await
                    .context("daemon is shutting down")?;
                rx.await.context("daemon dropped the request")?
            }
        },
        Err(e) => Reply::Error(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_string(&reply)?;
    out.push('\n');
    wr.write_all(out.as_bytes()).await?;
    Ok(())
}

/// Client side: sends one request and returns the reply.
pub async fn call(path: &Path, req: &Request) -> anyhow::Result<Reply> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "permission denied on control socket {}: only root, or members of the daemon's [node] status_group for status, may talk to the daemon",
            path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "no daemon answers on control socket {} (is `tandem run` running with this config?)",
                    path.display()
                )
            })
        }
    };
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
