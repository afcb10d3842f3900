//! The node-local `[sync]` table: config sync (never synced itself).

use super::node::valid_name;
use super::secret::secret;
use super::Errors;
use configsync::auth::Credentials;
use configsync::book::DriftPolicy;
use configsync::Area;
use configsync_net::tls::{self, Trust};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pushes its synced areas to the peers.
    Primary,
    /// Accepts areas from the primary.
    Peer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Peer => "peer",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerSettings {
    pub name: String,
    pub url: String,
    pub trust: Trust,
}

/// The node-local `[sync]` table.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub role: Role,
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub credentials: Credentials,
    pub cert: Option<(PathBuf, PathBuf)>,
    pub peers: Vec<PeerSettings>,
    /// Primary: the areas it pushes (an area not listed is never copied).
    pub areas: BTreeSet<Area>,
    pub drift: DriftPolicy,
    /// Peer: stay demoted while behind the primary (the operator's override: false).
    pub demote_when_behind: bool,
    pub heartbeat: Duration,
    pub retry_max: Duration,
    pub primary_timeout: Duration,
    /// Peer: the primary's certificate (SHA-256), the only one whose calls may push areas or
    /// heartbeats here. None: no push is taken until it is set (a reload applies it).
    pub primary_fingerprint: Option<[u8; 32]>,
}

/// Shortest password or token accepted: it is all that keeps a stranger with network access
/// from the read-only calls, and from guessing at the others.
pub const MIN_SYNC_SECRET: usize = 16;

impl SyncSettings {
    /// Whether two settings differ in anything a running daemon would have to restart config
    /// sync for (everything but the list of areas and the primary's fingerprint, which a
    /// reload applies).
    pub fn needs_restart(&self, other: &SyncSettings) -> bool {
        let creds = |c: &Credentials| (c.user.clone(), c.password.clone(), c.token.clone());
        (
            self.role,
            self.listen,
            &self.state_dir,
            creds(&self.credentials),
            &self.cert,
            &self.peers,
            self.drift,
            self.demote_when_behind,
            self.heartbeat,
            self.retry_max,
            self.primary_timeout,
        ) != (
            other.role,
            other.listen,
            &other.state_dir,
            creds(&other.credentials),
            &other.cert,
            &other.peers,
            other.drift,
            other.demote_when_behind,
            other.heartbeat,
            other.retry_max,
            other.primary_timeout,
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    role: Spanned<String>,
    listen: Spanned<String>,
    state_dir: Spanned<String>,
    #[serde(default)]
    user: Option<Spanned<String>>,
    #[serde(default)]
    password: Option<Spanned<String>>,
    #[serde(default)]
    password_file: Option<Spanned<String>>,
    #[serde(default)]
    token: Option<Spanned<String>>,
    #[serde(default)]
    token_file: Option<Spanned<String>>,
    #[serde(default)]
    cert: Option<Spanned<String>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    peers: Vec<Spanned<RawPeer>>,
    #[serde(default)]
    areas: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    drift: Option<Spanned<String>>,
    #[serde(default)]
    demote_when_behind: Option<bool>,
    #[serde(default)]
    heartbeat: Option<Spanned<f64>>,
    #[serde(default)]
    retry_max: Option<Spanned<f64>>,
    #[serde(default)]
    primary_timeout: Option<Spanned<f64>>,
    #[serde(default)]
    primary_fingerprint: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    name: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    fingerprint: Option<Spanned<String>>,
    #[serde(default)]
    ca: Option<Spanned<String>>,
}

fn seconds(errs: &mut Errors<'_>, v: &Option<Spanned<f64>>, what: &str, default: f64) -> Duration {
    match v {
        None => Duration::from_secs_f64(default),
        Some(s) => {
            let n = *s.get_ref();
            if !(0.05..=3600.0).contains(&n) {
                errs.at(
                    s.span(),
                    format!("sync.{what} must be between 0.05 and 3600 seconds, not {n}"),
                );
                return Duration::from_secs_f64(default);
            }
            Duration::from_secs_f64(n)
        }
    }
}

fn text_secret(
    errs: &mut Errors<'_>,
    table: std::ops::Range<usize>,
    inline: &Option<Spanned<String>>,
    from_file: &Option<Spanned<String>>,
    what: &str,
) -> Option<String> {
    let inline_name = format!("sync.{what}");
    let file_name = format!("sync.{what}_file");
    let bytes = secret(
        errs,
        table,
        (inline, &inline_name),
        (from_file, &file_name),
        0,
    )?;
    match String::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(_) => {
            let span = from_file.as_ref().or(inline.as_ref()).map(Spanned::span);
            errs.at(
                span.unwrap_or(0..0),
                format!("{file_name} is not UTF-8 text"),
            );
            None
        }
    }
}

/// Parses `[sync]`. `vips`: every VIP address with its vhid, so `listen` can be refused when
/// it is one.
pub fn sync(errs: &mut Errors<'_>, raw: &Spanned<RawSync>, vips: &[(IpAddr, u8)]) -> SyncSettings {
    let r = raw.get_ref();
    let role = match r.role.get_ref().as_str() {
        "primary" => Role::Primary,
        "peer" => Role::Peer,
        other => {
            errs.at(
                r.role.span(),
                format!("sync.role must be \"primary\" or \"peer\", not {other:?}"),
            );
            Role::Peer
        }
    };
    let listen = match r.listen.get_ref().parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            errs.at(
                r.listen.span(),
                format!(
                    "sync.listen {a} listens on every address, VIPs included: give this node's own management address (the API must never answer on a VIP)"
                ),
            );
            a
        }
        Ok(a) => {
            if let Some((_, vhid)) = vips.iter().find(|(ip, _)| *ip == a.ip()) {
                errs.at(
                    r.listen.span(),
                    format!(
                        "sync.listen {} is a VIP (vhid {vhid}): config sync must listen on this node's real management address, never on a VIP (it moves between nodes)",
                        a.ip()
                    ),
                );
            }
            a
        }
        Err(_) => {
            errs.at(
                r.listen.span(),
                format!(
                    "sync.listen {:?} is not ADDRESS:PORT (like \"203.0.113.1:8443\" or \"[2001:db8::1]:8443\")",
                    r.listen.get_ref()
                ),
            );
            SocketAddr::from(([0, 0, 0, 0], 0))
        }
    };
    if r.state_dir.get_ref().is_empty() {
        errs.at(r.state_dir.span(), "sync.state_dir must name a directory");
    }
    let state_dir = errs.resolve(&r.state_dir);
    let password = text_secret(errs, raw.span(), &r.password, &r.password_file, "password");
    let token = text_secret(errs, raw.span(), &r.token, &r.token_file, "token");
    for (value, inline, file, what) in [
        (&password, &r.password, &r.password_file, "password"),
        (&token, &r.token, &r.token_file, "token"),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.chars().count() < MIN_SYNC_SECRET)
        {
            let span = inline
                .as_ref()
                .or(file.as_ref())
                .map_or(raw.span(), Spanned::span);
            errs.at(
                span,
                format!(
                    "sync.{what} must be at least {MIN_SYNC_SECRET} characters (it is all that stands between the network and the sync API; e.g. `openssl rand -base64 24`)"
                ),
            );
        }
    }
    let user = r.user.as_ref().map(|u| u.get_ref().clone());
    let secret_error = errs.has(|m| m.contains("sync.password") || m.contains("sync.token"));
    match (&user, &password, &token) {
        (Some(_), Some(_), _) | (None, None, Some(_)) => {}
        (Some(u), None, _) => {
            if !secret_error {
                errs.at(
                    r.user.as_ref().map_or(raw.span(), Spanned::span),
                    format!("sync.user {u:?} needs sync.password or sync.password_file"),
                )
            }
        }
        (None, Some(_), _) => errs.at(
            r.password
                .as_ref()
                .or(r.password_file.as_ref())
                .map_or(raw.span(), Spanned::span),
            "sync.password needs sync.user",
        ),
        (None, None, None) => {
            if !secret_error {
                errs.at(
                    raw.span(),
                    "sync needs credentials: user + password (or password_file), or token (or token_file)",
                )
            }
        }
    }
    let cert = match (&r.cert, &r.key) {
        (Some(c), Some(k)) => Some((errs.resolve(c), errs.resolve(k))),
        (None, None) => None,
        (Some(s), None) | (None, Some(s)) => {
            errs.at(s.span(), "set both sync.cert and sync.key, or neither (a self-signed pair is then made in state_dir)");
            None
        }
    };
    let mut peers = Vec::new();
    let mut names = BTreeSet::new();
    for p in &r.peers {
        let rp = p.get_ref();
        let name = rp.name.get_ref().trim().to_string();
        if !valid_name(&name) {
            errs.at(
                rp.name.span(),
                format!("sync.peers: name {name:?} must be 1-63 letters, digits, '-', '_' or '.'"),
            );
        } else if !names.insert(name.clone()) {
            errs.at(
                rp.name.span(),
                format!("sync.peers: {name:?} is listed twice"),
            );
        }
        if let Err(e) = configsync_net::client::Url::parse(rp.url.get_ref()) {
            errs.at(rp.url.span(), format!("sync.peers {name}: {e}"));
        }
        let trust = match (&rp.fingerprint, &rp.ca) {
            (Some(f), None) => match tls::parse_fingerprint(f.get_ref()) {
                Ok(h) => Some(Trust::Pinned(h)),
                Err(e) => {
                    errs.at(f.span(), format!("sync.peers {name}: {e}"));
                    None
                }
            },
            (None, Some(c)) => Some(Trust::Ca(errs.resolve(c))),
            (Some(f), Some(_)) => {
                errs.at(
                    f.span(),
                    format!("sync.peers {name}: set fingerprint or ca, not both"),
                );
                None
            }
            (None, None) => {
                errs.at(
                    p.span(),
                    format!("sync.peers {name}: the peer's certificate must be pinned: set fingerprint = \"sha256:...\" (its `tandem status` prints it) or ca = \"cluster-ca.pem\""),
                );
                None
            }
        };
        if let Some(trust) = trust {
            peers.push(PeerSettings {
                name,
                url: rp.url.get_ref().clone(),
                trust,
            });
        }
    }
    if role == Role::Primary && r.peers.is_empty() {
        errs.at(
            raw.span(),
            "sync: a primary needs at least one [[sync.peers]]",
        );
    }
    if role == Role::Peer && !r.peers.is_empty() {
        errs.at(
            r.peers[0].span(),
            "sync.peers: only the primary pushes; a peer lists no peers (set role = \"primary\" on the node that pushes)",
        );
    }
    let areas = match &r.areas {
        None => Area::ALL.into_iter().collect(),
        Some(list) => {
            let mut set = BTreeSet::new();
            for a in list.get_ref() {
                match Area::parse(a.get_ref()) {
                    Some(x) => {
                        set.insert(x);
                    }
                    None => errs.at(
                        a.span(),
                        format!(
                            "sync.areas: unknown area {:?} (the synced areas are: {})",
                            a.get_ref(),
                            Area::names()
                        ),
                    ),
                }
            }
            set
        }
    };
    let drift = match r.drift.as_ref().map(|d| (d.get_ref().as_str(), d.span())) {
        None | Some(("refuse", _)) => DriftPolicy::Refuse,
        Some(("overwrite", _)) => DriftPolicy::Overwrite,
        Some((other, span)) => {
            errs.at(
                span,
                format!("sync.drift must be \"refuse\" or \"overwrite\", not {other:?}"),
            );
            DriftPolicy::Refuse
        }
    };
    let primary_fingerprint = match (&r.primary_fingerprint, role) {
        (None, _) => None,
        (Some(f), Role::Primary) => {
            errs.at(
                f.span(),
                "sync.primary_fingerprint is a peer's setting (the certificate of its primary); a primary pins its peers in [[sync.peers]]",
            );
            None
        }
        (Some(f), Role::Peer) => match tls::parse_fingerprint(f.get_ref()) {
            Ok(h) => Some(h),
            Err(e) => {
                errs.at(f.span(), format!("sync.primary_fingerprint: {e}"));
                None
            }
        },
    };
    SyncSettings {
        role,
        listen,
        state_dir,
        credentials: Credentials {
            user,
            password,
            token,
        },
        cert,
        peers,
        areas,
        drift,
        demote_when_behind: r.demote_when_behind.unwrap_or(true),
        heartbeat: seconds(errs, &r.heartbeat, "heartbeat", 2.0),
        retry_max: seconds(errs, &r.retry_max, "retry_max", 5.0),
        primary_timeout: seconds(errs, &r.primary_timeout, "primary_timeout", 10.0),
        primary_fingerprint,
    }
}
