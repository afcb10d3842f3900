//! The `dhcp` area on this node: rendered as Kea's DHCPv4 config ([`kea`]), checked by the
//! running Kea (`config-test`) before anything of an activation changes, then written to
//! `[dhcp_local] config_file` atomically (a temporary file renamed) and loaded with
//! `config-reload` over Kea's control socket. Kea runs as its own service; when it is not
//! running the file is still written and Kea reads it when it starts.
//! Only with `[dhcp_local]`: without it tandem leaves DHCP alone.

pub mod kea;

use crate::config::dhcp::DhcpLocal;
use crate::config::Config;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long Kea may take to answer a command (a reload of a big config takes a while).
const KEA_TIMEOUT: Duration = Duration::from_secs(10);

/// A config rendered for this node's Kea, checked, not yet in place.
#[derive(Debug, Clone)]
pub struct Prepared {
    file: PathBuf,
    socket: PathBuf,
    text: String,
    config: serde_json::Value,
    /// Subnets and reservations, for the log and status.
    subnets: usize,
    reservations: usize,
}

/// Renders the running config's `dhcp` area for this node (`own`: its own addresses per
/// logical interface); None without `[dhcp_local]`.
pub fn prepare(cfg: &Config, own: &kea::OwnAddresses) -> Option<Prepared> {
    let local = cfg.dhcp_local.as_ref()?;
    let config = kea::render(cfg.dhcp.as_ref(), local, own);
    let subnets = cfg.dhcp.as_ref().map_or(&[][..], |d| &d.subnets[..]);
    Some(Prepared {
        file: local.config_file.clone(),
        socket: local.control_socket.clone(),
        text: kea::text(&config),
        config,
        subnets: subnets.len(),
        reservations: subnets.iter().map(|s| s.reservations.len()).sum(),
    })
}

fn send(socket: &Path, command: &serde_json::Value) -> Result<(String, serde_json::Value), String> {
    let raw = linux::kea::command(socket, &command.to_string(), KEA_TIMEOUT)
        .map_err(|e| format!("Kea's control socket {e}"))?;
    kea::answer(&raw)
}

/// Whether Kea listens on its control socket (a socket file that takes a connection).
fn kea_up(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// Asks the running Kea whether it takes the config (`config-test`; nothing changes). Ok
/// with a note when Kea is not running (then nothing can be checked beyond tandem's checks).
pub fn check(p: &Prepared) -> Result<Option<String>, String> {
    // Kea would refuse a hook library that is not there; say which, also when Kea is down.
    let hooks = p.config["Dhcp4"]["hooks-libraries"].as_array();
    for lib in hooks
        .into_iter()
        .flatten()
        .filter_map(|h| h["library"].as_str())
    {
        if !Path::new(lib).is_file() {
            return Err(format!(
                "the dhcp area: Kea's hook library {lib} is missing (Debian's kea-dhcp4-server has it; or set [dhcp_local] hooks_dir)"
            ));
        }
    }
    if !kea_up(&p.socket) {
        return Ok(Some(format!(
            "Kea is not running ({} takes no connection): its config is not tested",
            p.socket.display()
        )));
    }
    send(
        &p.socket,
        &json!({"command": "config-test", "arguments": p.config}),
    )
    .map(|_| None)
    .map_err(|e| format!("the dhcp area: {e}"))
}

/// Writes `text` to `path` atomically (a temporary file beside it, synced, renamed). A file
/// that is there already keeps its mode, owner and group (Debian's Kea runs as `_kea` and
/// must read it); a new one is 0644 (Kea's config holds no secret: the HA hook talks over the
/// sync link without credentials).
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let name = path
        .file_name()
        .map_or_else(|| "kea".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tandem.tmp"));
    let old = std::fs::metadata(path).ok();
    let r = (|| {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Some(m) = &old {
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
        }
        let mode = old.as_ref().map_or(0o644, |m| m.mode() & 0o7777);
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// What the last apply did, for status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DhcpStatus {
    /// Where Kea's config is written.
    pub config_file: String,
    pub control_socket: String,
    pub subnets: usize,
    pub reservations: usize,
    /// The last apply: `loaded` (Kea reloaded it), `unchanged`, `written` (Kea not running:
    /// it reads the file when it starts), or `failed`.
    pub last_apply: String,
    /// Why the last apply failed, or a note (Kea not running).
    pub error: Option<String>,
    /// Kea's high availability, asked at status time; None without `[dhcp_local.ha]`.
    #[serde(default)]
    pub ha: Option<HaStatus>,
}

/// Kea's HA as its `status-get` says it now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HaStatus {
    /// `primary` or `standby` (this node's Kea).
    pub role: String,
    /// This server's HA state (`hot-standby`, `partner-down`, `waiting`, `syncing`, `ready`,
    /// ...), or `unknown` when Kea does not answer.
    pub state: String,
    /// Whose clients this server answers now (HA scopes: a server name each).
    pub serving: Vec<String>,
    pub partner: String,
    pub partner_address: String,
    /// The partner's state as this server last heard it (`unavailable` when it is gone).
    pub partner_state: Option<String>,
    /// Whether heartbeats to the partner fail now.
    pub communication_interrupted: bool,
    /// Why the state is unknown (Kea not answering).
    pub error: Option<String>,
}

/// How long a status waits for Kea's `status-get`.
const HA_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks this node's Kea for its HA state (blocking).
pub fn ha_status(local: &DhcpLocal) -> Option<HaStatus> {
    let ha = local.ha.as_ref()?;
    let mut st = HaStatus {
        role: if ha.primary { "primary" } else { "standby" }.into(),
        state: "unknown".into(),
        partner: ha.partner.clone(),
        partner_address: ha.partner_address.to_string(),
        ..HaStatus::default()
    };
    let asked = linux::kea::command(
        &local.control_socket,
        &json!({"command": "status-get"}).to_string(),
        HA_STATUS_TIMEOUT,
    )
    .map_err(|e| format!("Kea's control socket {e}"))
    .and_then(|raw| kea::answer(&raw))
    .and_then(|(_, args)| kea::ha_state(&args));
    match asked {
        Ok(k) => {
            st.state = k.state;
            st.serving = k.scopes;
            st.partner_state = k.partner_state;
            st.communication_interrupted = k.communication_interrupted;
            if !k.role.is_empty() {
                st.role = k.role;
            }
        }
        Err(e) => st.error = Some(e),
    }
    Some(st)
}

/// The last apply's status with Kea's HA state now (off the async threads).
pub async fn status_now(last: Option<DhcpStatus>, cfg: &Config) -> Option<DhcpStatus> {
    let mut st = last?;
    let Some(local) = cfg.dhcp_local.clone().filter(|l| l.ha.is_some()) else {
        return Some(st);
    };
    st.ha = tokio::task::spawn_blocking(move || ha_status(&local))
        .await
        .unwrap_or_else(|e| {
            Some(HaStatus {
                state: "unknown".into(),
                error: Some(format!("the dhcp thread died: {e}")),
                ..HaStatus::default()
            })
        });
    Some(st)
}

/// Puts the config in place and makes Kea load it. An unchanged file is not written again,
/// but Kea is still asked to reload when it runs (it may have been restarted with another).
pub fn commit(p: &Prepared) -> DhcpStatus {
    let mut st = DhcpStatus {
        config_file: p.file.display().to_string(),
        control_socket: p.socket.display().to_string(),
        subnets: p.subnets,
        reservations: p.reservations,
        ..DhcpStatus::default()
    };
    let unchanged = std::fs::read_to_string(&p.file).is_ok_and(|t| t == p.text);
    if !unchanged {
        if let Err(e) = write_atomic(&p.file, &p.text) {
            st.last_apply = "failed".into();
            st.error = Some(format!("cannot write Kea's config: {e}"));
            return st;
        }
    }
    if !kea_up(&p.socket) {
        st.last_apply = "written".into();
        st.error = Some(format!(
            "Kea is not running ({}): it reads the config when it starts",
            p.socket.display()
        ));
        return st;
    }
    if unchanged {
        st.last_apply = "unchanged".into();
        return st;
    }
    match send(&p.socket, &json!({"command": "config-reload"})) {
        Ok(_) => st.last_apply = "loaded".into(),
        Err(e) => {
            st.last_apply = "failed".into();
            st.error = Some(e);
        }
    }
    st
}

/// [`check`] off the async threads.
pub async fn check_for(p: Option<Prepared>) -> anyhow::Result<(Option<Prepared>, Option<String>)> {
    let Some(p) = p else { return Ok((None, None)) };
    tokio::task::spawn_blocking(move || check(&p).map(|note| (Some(p), note)))
        .await
        .map_err(|e| anyhow::anyhow!("the dhcp thread died: {e}"))?
        .map_err(anyhow::Error::msg)
}

/// [`commit`] off the async threads; None without `[dhcp_local]`.
pub async fn commit_for(p: Option<Prepared>) -> Option<DhcpStatus> {
    let p = p?;
    let failed = |e| DhcpStatus {
        last_apply: "failed".into(),
        error: Some(format!("the dhcp thread died: {e}")),
        ..DhcpStatus::default()
    };
    let st = tokio::task::spawn_blocking(move || commit(&p))
        .await
        .unwrap_or_else(failed);
    match (&st.last_apply[..], &st.error) {
        ("failed", Some(e)) => tracing::error!("dhcp: {e}"),
        ("loaded", _) => tracing::info!(
            "dhcp: Kea loaded {}, {}",
            crate::words::count(st.subnets, "subnet"),
            crate::words::count(st.reservations, "reservation")
        ),
        (_, Some(e)) => tracing::warn!("dhcp: {e}"),
        _ => {}
    }
    Some(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_written_whole_and_kea_down_is_said() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = Prepared {
            file: tmp.path().join("kea.conf"),
            socket: tmp.path().join("none.sock"),
            text: "{}\n".into(),
            config: json!({}),
            subnets: 1,
            reservations: 0,
        };
        let st = commit(&p);
        assert_eq!(st.last_apply, "written", "{st:?}");
        assert!(st
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not running")));
        assert_eq!(std::fs::read_to_string(&p.file).expect("read"), "{}\n");
        let mode = |f: &Path| {
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(f).expect("meta").permissions(),
            ) & 0o777
        };
        assert_eq!(mode(&p.file), 0o644);
        // A file there already keeps its mode.
        std::fs::set_permissions(&p.file, std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .expect("chmod");
        commit(&Prepared {
            text: "{ }\n".into(),
            ..p.clone()
        });
        assert_eq!(std::fs::read_to_string(&p.file).expect("read"), "{ }\n");
        assert_eq!(mode(&p.file), 0o640);
        assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 1);
        assert!(check(&p).expect("no kea").is_some());
        let with_hook = Prepared {
            config: json!({"Dhcp4": {"hooks-libraries": [{"library": "/nonexistent/libdhcp_ha.so"}]}}),
            ..p.clone()
        };
        let e = check(&with_hook).expect_err("missing hook");
        assert!(e.contains("/nonexistent/libdhcp_ha.so is missing"), "{e}");
        let bad = Prepared {
            file: tmp.path().join("no/such/dir/kea.conf"),
            ..p
        };
        assert_eq!(commit(&bad).last_apply, "failed");
    }
}
