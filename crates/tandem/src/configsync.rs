//! Config sync in the daemon: the `[sync]` settings, the running config of a peer (its own
//! file's node-local parts + the synced areas), the XML-RPC calls answered in the daemon loop,
//! the primary's generations and push tasks, drift, rollback, and the config-sync demotion.
//!
//! State dir layout (`sync.state_dir`, one per node):
//! - `cert.pem`, `key.pem`: the node's self-signed certificate (made on first start unless
//!   `sync.cert`/`sync.key` are set);
//! - primary: `primary.json` (generation and per-area hashes);
//! - peer: `synced.toml` (the synced areas as running; an operator may edit it, which is
//!   reported as drift), `pushed.toml` (the same as last pushed, untouched), `synced.json`
//!   (generation, source, time, per-area hashes), `history/gen-N.toml` (the last
//!   [`HISTORY`] generations, for `tandem config rollback`), `backups/` (drifted areas kept
//!   before an overwrite), `incoming.toml` (the last candidate config, where validation errors
//!   point) and `running.toml` (the running config as composed).

use crate::config::{self, Config, ConfigErrors};
use crate::control::{Reply, Request};
use crate::daemon::Daemon;
use anyhow::Context;
use configsync::area::{self, Area, AreaDiff, Section};
use configsync::book::{
    self, AreaRecord, Backoff, DriftPolicy, Origin, PeerStatus, PeerTracker, PrimaryState,
    PrimaryView, SyncedMeta, Verdict,
};
use configsync::push::{Payload, PeerTask, PushEvent};
use configsync::rpc::{self, code, ApplyArgs, Call, Source};
use configsync::server::{Counters, Credentials, Incoming};
use configsync::tls::{self, Trust};
use dxr::{Fault, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
use toml::Spanned;
use tracing::{error, info, warn};

/// Generations a peer keeps for rollback.
pub const HISTORY: usize = 10;
/// The demotion while behind the primary (as link-down: every VIP moves together).
pub const BEHIND_DEMOTION: u8 = 240;
const SOFTWARE: &str = env!("CARGO_PKG_VERSION");

// ---- settings -----------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pushes its synced areas to the peers.
    Primary,
    /// Accepts areas from the primary.
    Peer,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Peer => "peer",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PeerSettings {
    pub name: String,
    pub url: String,
    pub trust: Trust,
}

/// The node-local `[sync]` table (never synced itself).
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
    /// Peer: where each running area came from (set when the synced areas were merged in).
    pub running: Option<Provenance>,
}

/// Where a peer's running areas came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub meta: SyncedMeta,
    pub areas: Vec<AreaStatus>,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AreaStatus {
    pub area: Area,
    /// `own file`, `synced`, `local edit`, `edited copy`.
    pub origin: String,
    pub generation: Option<u64>,
    pub source: Option<String>,
    pub items: usize,
    pub hash: String,
    pub drift: Option<AreaDiff>,
}

#[derive(Deserialize)]
struct Top {
    #[serde(default)]
    sync: Option<Spanned<RawSync>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    fingerprint: Option<Spanned<String>>,
    #[serde(default)]
    ca: Option<Spanned<String>>,
}

fn resolve(file: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    file.parent()
        .map_or_else(|| p.to_path_buf(), |dir| dir.join(p))
}

type Errs = Vec<(Range<usize>, String)>;

fn secret(
    errs: &mut Errs,
    file: &Path,
    inline: &Option<Spanned<String>>,
    from_file: &Option<Spanned<String>>,
    what: &str,
) -> Option<String> {
    match (inline, from_file) {
        (Some(v), None) => {
            if v.get_ref().is_empty() {
                errs.push((v.span(), format!("sync.{what} must not be empty")));
            }
            Some(v.get_ref().clone())
        }
        (None, Some(f)) => {
            let path = resolve(file, f.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(s) => {
                    let s = s.trim_end_matches(['\n', '\r']).to_string();
                    if s.is_empty() {
                        errs.push((
                            f.span(),
                            format!("sync.{what}_file {} is empty", path.display()),
                        ));
                    }
                    Some(s)
                }
                Err(e) => {
                    errs.push((
                        f.span(),
                        format!("cannot read sync.{what}_file {}: {e}", path.display()),
                    ));
                    None
                }
            }
        }
        (Some(v), Some(_)) => {
            errs.push((
                v.span(),
                format!("set sync.{what} or sync.{what}_file, not both"),
            ));
            None
        }
        (None, None) => None,
    }
}

fn seconds(errs: &mut Errs, v: &Option<Spanned<f64>>, what: &str, default: f64) -> Duration {
    match v {
        None => Duration::from_secs_f64(default),
        Some(s) => {
            let n = *s.get_ref();
            if !(0.05..=3600.0).contains(&n) {
                errs.push((
                    s.span(),
                    format!("sync.{what} must be between 0.05 and 3600 seconds, not {n}"),
                ));
                return Duration::from_secs_f64(default);
            }
            Duration::from_secs_f64(n)
        }
    }
}

/// Parses the `[sync]` table of a config text (other tables are config.rs's business).
/// `vips`: every VIP address with its vhid, so `listen` can be refused when it is one.
/// Errors are byte spans in `text` with a message.
pub fn parse_settings(
    file: &Path,
    text: &str,
    vips: &[(IpAddr, u8)],
) -> (Option<SyncSettings>, Errs) {
    let mut errs = Errs::new();
    let top: Top = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            // A syntax error is reported by config.rs already; only [sync]'s own are ours.
            if let Some(span) = e.span() {
                if text.get(..span.start).is_some_and(|t| t.contains("[sync")) {
                    errs.push((span, e.message().to_string()));
                }
            }
            return (None, errs);
        }
    };
    let Some(raw) = top.sync else {
        return (None, errs);
    };
    let r = raw.get_ref();
    let role = match r.role.get_ref().as_str() {
        "primary" => Role::Primary,
        "peer" => Role::Peer,
        other => {
            errs.push((
                r.role.span(),
                format!("sync.role must be \"primary\" or \"peer\", not {other:?}"),
            ));
            Role::Peer
        }
    };
    let listen = match r.listen.get_ref().parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            errs.push((
                r.listen.span(),
                format!(
                    "sync.listen {a} listens on every address, VIPs included: give this node's own management address (the API must never answer on a VIP)"
                ),
            ));
            a
        }
        Ok(a) => {
            if let Some((_, vhid)) = vips.iter().find(|(ip, _)| *ip == a.ip()) {
                errs.push((
                    r.listen.span(),
                    format!(
                        "sync.listen {} is a VIP (vhid {vhid}): config sync must listen on this node's real management address, never on a VIP (it moves between nodes)",
                        a.ip()
                    ),
                ));
            }
            a
        }
        Err(_) => {
            errs.push((
                r.listen.span(),
                format!(
                    "sync.listen {:?} is not ADDRESS:PORT (like \"203.0.113.1:8443\" or \"[2001:db8::1]:8443\")",
                    r.listen.get_ref()
                ),
            ));
            SocketAddr::from(([0, 0, 0, 0], 0))
        }
    };
    if r.state_dir.get_ref().is_empty() {
        errs.push((
            r.state_dir.span(),
            "sync.state_dir must name a directory".into(),
        ));
    }
    let state_dir = resolve(file, r.state_dir.get_ref());
    let password = secret(&mut errs, file, &r.password, &r.password_file, "password");
    let token = secret(&mut errs, file, &r.token, &r.token_file, "token");
    let user = r.user.as_ref().map(|u| u.get_ref().clone());
    match (&user, &password, &token) {
        (Some(_), Some(_), _) | (None, None, Some(_)) => {}
        (Some(u), None, _) => errs.push((
            r.user.as_ref().map_or(raw.span(), Spanned::span),
            format!("sync.user {u:?} needs sync.password or sync.password_file"),
        )),
        (None, Some(_), _) => errs.push((
            r.password
                .as_ref()
                .or(r.password_file.as_ref())
                .map_or(raw.span(), Spanned::span),
            "sync.password needs sync.user".into(),
        )),
        (None, None, None) => {
            if !errs
                .iter()
                .any(|(_, m)| m.contains("sync.password") || m.contains("sync.token"))
            {
                errs.push((
                    raw.span(),
                    "sync needs credentials: user + password (or password_file), or token (or token_file)".into(),
                ))
            }
        }
    }
    let cert = match (&r.cert, &r.key) {
        (Some(c), Some(k)) => Some((resolve(file, c.get_ref()), resolve(file, k.get_ref()))),
        (None, None) => None,
        (Some(s), None) | (None, Some(s)) => {
            errs.push((s.span(), "set both sync.cert and sync.key, or neither (a self-signed pair is then made in state_dir)".into()));
            None
        }
    };
    let mut peers = Vec::new();
    let mut names = BTreeSet::new();
    for p in &r.peers {
        let rp = p.get_ref();
        let name = rp.name.get_ref().trim().to_string();
        if name.is_empty() {
            errs.push((rp.name.span(), "sync.peers: name must not be empty".into()));
        } else if !names.insert(name.clone()) {
            errs.push((
                rp.name.span(),
                format!("sync.peers: {name:?} is listed twice"),
            ));
        }
        if let Err(e) = configsync::client::Url::parse(rp.url.get_ref()) {
            errs.push((rp.url.span(), format!("sync.peers {name}: {e}")));
        }
        let trust = match (&rp.fingerprint, &rp.ca) {
            (Some(f), None) => match tls::parse_fingerprint(f.get_ref()) {
                Ok(h) => Some(Trust::Pinned(h)),
                Err(e) => {
                    errs.push((f.span(), format!("sync.peers {name}: {e}")));
                    None
                }
            },
            (None, Some(c)) => Some(Trust::Ca(resolve(file, c.get_ref()))),
            (Some(f), Some(_)) => {
                errs.push((
                    f.span(),
                    format!("sync.peers {name}: set fingerprint or ca, not both"),
                ));
                None
            }
            (None, None) => {
                errs.push((
                    p.span(),
                    format!("sync.peers {name}: the peer's certificate must be pinned: set fingerprint = \"sha256:...\" (its `tandem status` prints it) or ca = \"cluster-ca.pem\""),
                ));
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
        errs.push((
            raw.span(),
            "sync: a primary needs at least one [[sync.peers]]".into(),
        ));
    }
    if role == Role::Peer && !r.peers.is_empty() {
        errs.push((
            r.peers[0].span(),
            "sync.peers: only the primary pushes; a peer lists no peers (set role = \"primary\" on the node that pushes)".into(),
        ));
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
                    None => errs.push((
                        a.span(),
                        format!(
                            "sync.areas: unknown area {:?} (the synced areas are: {})",
                            a.get_ref(),
                            Area::names()
                        ),
                    )),
                }
            }
            set
        }
    };
    let drift = match r.drift.as_ref().map(|d| (d.get_ref().as_str(), d.span())) {
        None | Some(("refuse", _)) => DriftPolicy::Refuse,
        Some(("overwrite", _)) => DriftPolicy::Overwrite,
        Some((other, span)) => {
            errs.push((
                span,
                format!("sync.drift must be \"refuse\" or \"overwrite\", not {other:?}"),
            ));
            DriftPolicy::Refuse
        }
    };
    let heartbeat = seconds(&mut errs, &r.heartbeat, "heartbeat", 2.0);
    let retry_max = seconds(&mut errs, &r.retry_max, "retry_max", 5.0);
    let primary_timeout = seconds(&mut errs, &r.primary_timeout, "primary_timeout", 10.0);
    let s = SyncSettings {
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
        heartbeat,
        retry_max,
        primary_timeout,
        running: None,
    };
    (Some(s), errs)
}

// ---- the peer's stored state ----------------------------------------------------------------------

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: u64) -> String {
    let days = (t / 86400) as i64;
    let secs = t % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

struct Store {
    dir: PathBuf,
}

fn parse_doc(path: &Path) -> anyhow::Result<toml::Table> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            let (line, col) = e
                .span()
                .map_or((0, 0), |s| config::line_col(&text, s.start));
            anyhow::anyhow!(
                "{}:{line}:{col}: {}",
                path.display(),
                e.message().trim_end()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Areas texts (canonical) as one TOML document, each under a header comment.
fn areas_file(title: &str, meta: &SyncedMeta, texts: &BTreeMap<Area, String>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {title}");
    let _ = writeln!(
        s,
        "# generation {} from {} at {}",
        meta.generation,
        meta.source,
        rfc3339(meta.time)
    );
    for (a, text) in texts {
        let rec = meta.areas.get(a);
        let _ = writeln!(
            s,
            "\n# ---- area {a}: generation {} ----",
            rec.map_or(0, |r| r.generation)
        );
        if text.is_empty() {
            let _ = writeln!(s, "# (empty: no {a})");
        } else {
            s.push_str(text);
        }
    }
    s
}

impl Store {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn meta(&self) -> anyhow::Result<Option<SyncedMeta>> {
        let p = self.path("synced.json");
        match std::fs::read_to_string(&p) {
            Ok(s) => serde_json::from_str(&s)
                .map(Some)
                .with_context(|| format!("{} is unreadable", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", p.display())),
        }
    }

    fn history_path(&self, generation: u64) -> PathBuf {
        self.dir
            .join("history")
            .join(format!("gen-{generation:08}.toml"))
    }

    /// Generations kept for rollback, oldest first.
    fn history(&self) -> Vec<u64> {
        let mut gens: Vec<u64> = std::fs::read_dir(self.dir.join("history"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_prefix("gen-"))
                            .and_then(|n| n.strip_suffix(".toml"))
                            .and_then(|n| n.parse().ok())
                    })
                    .collect()
            })
            .unwrap_or_default();
        gens.sort_unstable();
        gens
    }

    /// Writes the new state: synced.toml (what runs), pushed.toml (as pushed), synced.json, and
    /// (for a new generation) its history file, keeping the last [`HISTORY`].
    fn save(
        &self,
        meta: &SyncedMeta,
        stored: &BTreeMap<Area, String>,
        pushed: &BTreeMap<Area, String>,
        new_generation: bool,
    ) -> anyhow::Result<(String, String)> {
        std::fs::create_dir_all(self.dir.join("history"))
            .with_context(|| format!("cannot create {}/history", self.dir.display()))?;
        let pushed_text = areas_file(
            "areas as last pushed (kept untouched to tell drift; do not edit)",
            meta,
            pushed,
        );
        if new_generation {
            write_atomic(&self.history_path(meta.generation), &pushed_text)?;
            let gens = self.history();
            for g in gens.iter().take(gens.len().saturating_sub(HISTORY)) {
                let _ = std::fs::remove_file(self.history_path(*g));
            }
        }
        write_atomic(&self.path("pushed.toml"), &pushed_text)?;
        let stored_text = areas_file(
            "synced areas running on this node; a local edit here (then `tandem reload`) runs and is reported to the primary as drift",
            meta,
            stored,
        );
        write_atomic(&self.path("synced.toml"), &stored_text)?;
        let json = serde_json::to_string_pretty(meta).context("encoding synced.json")?;
        write_atomic(&self.path("synced.json"), &json)?;
        Ok((stored_text, pushed_text))
    }
}

// ---- composing a peer's running config -----------------------------------------------------------

/// Relative paths of the own file must keep pointing where they did once the text is composed
/// in the state dir: every `*_file` key, and [sync]'s cert, key, state_dir and peers' ca.
fn absolutize(own_file: &Path, doc: &mut toml::Table) {
    fn walk(own_file: &Path, t: &mut toml::Table, in_sync: bool) {
        for (k, v) in t.iter_mut() {
            let is_path = k.ends_with("_file")
                || (in_sync && matches!(k.as_str(), "cert" | "key" | "state_dir" | "ca"));
            match v {
                toml::Value::String(s) if is_path && !s.is_empty() => {
                    *s = resolve(own_file, s).to_string_lossy().into_owned();
                }
                toml::Value::Table(sub) => walk(own_file, sub, in_sync || k == "sync"),
                toml::Value::Array(a) => {
                    for e in a {
                        if let toml::Value::Table(sub) = e {
                            walk(own_file, sub, in_sync || k == "peers");
                        }
                    }
                }
                _ => {}
            }
        }
    }
    walk(own_file, doc, false);
}

fn origin_text(o: &Origin, own_file: &Path) -> String {
    match o {
        Origin::Own => format!("own file {}", own_file.display()),
        Origin::Synced {
            source,
            generation,
            time,
        } => format!(
            "synced from {source}, generation {generation}, {}",
            rfc3339(*time)
        ),
        Origin::LocalEdit { generation } => format!(
            "LOCAL EDIT in {} (differs from synced generation {generation}: drift)",
            own_file.display()
        ),
        Origin::EditedCopy { generation } => {
            format!("EDITED synced.toml (differs from synced generation {generation}: drift)")
        }
    }
}

fn area_statuses(running: &[book::RunningArea], meta: &SyncedMeta) -> Vec<AreaStatus> {
    running
        .iter()
        .map(|r| {
            let rec = meta.areas.get(&r.area);
            AreaStatus {
                area: r.area,
                origin: match r.origin {
                    Origin::Own => "own file",
                    Origin::Synced { .. } => "synced",
                    Origin::LocalEdit { .. } => "local edit",
                    Origin::EditedCopy { .. } => "edited copy",
                }
                .to_string(),
                generation: rec.map(|r| r.generation),
                source: rec.map(|r| r.source.clone()),
                items: r.items,
                hash: area::hash(&r.text).chars().take(12).collect(),
                drift: r.drift.clone(),
            }
        })
        .collect()
}

struct Candidate {
    cfg: Config,
}

/// Composes own file + synced areas, writes it to `incoming.toml` and parses it there (so
/// errors point at a file the operator can open), and names the area of each error.
fn compose_and_parse(
    own_file: &Path,
    own_doc: &toml::Table,
    state_dir: &Path,
    meta: &SyncedMeta,
    stored: &toml::Table,
    pushed: &toml::Table,
) -> anyhow::Result<Candidate> {
    let running = book::resolve(own_doc, stored, pushed, meta);
    let replace: BTreeMap<Area, (String, String)> = running
        .iter()
        .filter(|r| meta.areas.contains_key(&r.area))
        .map(|r| (r.area, (r.text.clone(), origin_text(&r.origin, own_file))))
        .collect();
    let mut own = own_doc.clone();
    absolutize(own_file, &mut own);
    let header = format!(
        "# Running config, composed by tandem: the node-local parts of {}\n# with the synced areas below (generation {} from {}, {}). Do not edit:\n# edit {} or (on the primary) the synced areas.\n",
        own_file.display(),
        meta.generation,
        meta.source,
        rfc3339(meta.time),
        own_file.display()
    );
    let composed = area::compose(&header, &own, &replace);
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let incoming = state_dir.join("incoming.toml");
    write_atomic(&incoming, &composed.text)?;
    let mut cfg = config::parse(&incoming, &composed.text)
        .map_err(|e| anyhow::Error::from(annotate(e, &composed.sections)))?;
    cfg.own_file = own_file.to_path_buf();
    let prov = Provenance {
        meta: meta.clone(),
        areas: area_statuses(&running, meta),
        sections: composed.sections,
    };
    if let Some(s) = cfg.sync.as_mut() {
        s.running = Some(prov);
    }
    Ok(Candidate { cfg })
}

/// Names the synced area (and its origin) of errors located in a composed text.
fn annotate(mut e: ConfigErrors, sections: &[Section]) -> ConfigErrors {
    for err in &mut e.0 {
        if let Some(s) = sections.iter().rev().find(|s| err.line >= s.first_line) {
            err.message = format!("{} (area {}: {})", err.message, s.area, s.origin);
        }
    }
    e
}

/// Annotates the located errors in an activation error, if any.
fn describe(e: &anyhow::Error, sections: &[Section]) -> String {
    match e.downcast_ref::<ConfigErrors>() {
        Some(list) => annotate(list.clone(), sections).to_string(),
        None => format!("{e:#}"),
    }
}

/// The config a node runs: its own file, and on a peer that has received areas, those areas
/// in place of its own (see the module doc). Start-up and `tandem reload` both load this way.
pub fn load_running(path: &Path) -> anyhow::Result<Config> {
    let own = config::load(path)?;
    let Some(s) = own.sync.as_ref().filter(|s| s.role == Role::Peer) else {
        return Ok(own);
    };
    let store = Store {
        dir: s.state_dir.clone(),
    };
    let Some(meta) = store.meta()? else {
        return Ok(own);
    };
    let own_doc: toml::Table = toml::from_str(&own.text)
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let stored = parse_doc(&store.path("synced.toml"))?;
    let pushed = parse_doc(&store.path("pushed.toml"))?;
    Ok(compose_and_parse(path, &own_doc, &s.state_dir, &meta, &stored, &pushed)?.cfg)
}

// ---- the glue in the daemon ---------------------------------------------------------------------

/// What reaches the daemon loop from config sync.
pub enum SyncEvent {
    Rpc(Incoming),
    Push(PushEvent),
    Tick,
}

pub async fn recv(rx: &mut Option<mpsc::Receiver<SyncEvent>>) -> Option<SyncEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// A reload asked over XML-RPC is done by the daemon itself (it needs the glue in place).
pub fn take_reload(
    ev: SyncEvent,
) -> Result<tokio::sync::oneshot::Sender<Result<Value, Fault>>, Box<SyncEvent>> {
    match ev {
        SyncEvent::Rpc(Incoming {
            call: Call::Reload,
            reply,
            ..
        }) => Ok(reply),
        other => Err(Box::new(other)),
    }
}

pub fn reload_answer(r: Result<String, String>) -> Result<Value, Fault> {
    match r {
        Ok(m) => Ok(rpc::record(&[("message", Value::String(m))])),
        Err(e) => Err(rpc::fault(code::INVALID, e)),
    }
}

struct PrimarySide {
    state: PrimaryState,
    payload: watch::Sender<Arc<Payload>>,
    trackers: Arc<Mutex<BTreeMap<String, PeerTracker>>>,
    nonce: u64,
}

#[derive(Default)]
struct PeerSide {
    view: PrimaryView,
    demoted: bool,
    last_apply: Option<String>,
    applied: u64,
    refused: u64,
}

pub struct Glue {
    role: Role,
    node: String,
    listen: SocketAddr,
    state_dir: PathBuf,
    fingerprint: String,
    cert_path: PathBuf,
    counters: Arc<Mutex<Counters>>,
    primary: Option<PrimarySide>,
    peer: PeerSide,
    peers: Vec<PeerSettings>,
    /// The stored files as last written or read, with their parsed form: a push re-parses
    /// only what changed on disk (10k rules are ~1 MB of TOML).
    docs: BTreeMap<PathBuf, (String, toml::Table)>,
}

/// The status of config sync, in `tandem status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigSyncStatus {
    pub role: String,
    pub listen: String,
    /// This node's certificate fingerprint: pin it on the primary.
    pub fingerprint: String,
    pub certificate: String,
    pub state_dir: String,
    /// Primary: the current generation. Peer: the generation it applied last.
    pub generation: u64,
    /// Primary: the areas it pushes. Peer: the areas it holds from the primary.
    pub areas: Vec<String>,
    pub peers: Vec<PeerStatus>,
    pub source: Option<String>,
    pub applied_at: Option<String>,
    pub primary_generation: Option<u64>,
    pub primary_heard_seconds_ago: Option<f64>,
    pub behind: bool,
    pub demoted: bool,
    pub drift: Option<String>,
    pub rolled_back_to: Option<u64>,
    pub running: Vec<AreaStatus>,
    pub last_apply: Option<String>,
    pub applied: u64,
    pub refused: u64,
    /// Calls this node's server refused (auth, bad request, TLS) and the last one.
    pub rpc: Counters,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("primary.json")
}

impl Glue {
    /// Starts config sync when the config has `[sync]`: the certificate, the HTTPS server,
    /// and on a primary the push tasks. Returns the receiver the daemon loop selects on.
    pub async fn start(
        cfg: &mut Config,
    ) -> anyhow::Result<(Option<Glue>, Option<mpsc::Receiver<SyncEvent>>)> {
        let Some(s) = cfg.sync.clone() else {
            return Ok((None, None));
        };
        std::fs::create_dir_all(&s.state_dir)
            .with_context(|| format!("cannot create sync.state_dir {}", s.state_dir.display()))?;
        let names = vec![s.listen.ip().to_string(), cfg.node.name.clone()];
        let cert = s.cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let id = tls::identity(cert, &s.state_dir, &names).context("config sync: certificate")?;
        let server_tls = tls::server_config(&id).context("config sync: TLS")?;
        let listener = tokio::net::TcpListener::bind(s.listen)
            .await
            .with_context(|| {
                format!(
                "config sync: cannot listen on {} (sync.listen must be an address of this node)",
                s.listen
            )
            })?;
        let (tx, rx) = mpsc::channel::<SyncEvent>(64);
        let counters = Arc::new(Mutex::new(Counters::default()));
        let (inc_tx, mut inc_rx) = mpsc::channel::<Incoming>(16);
        let fwd = tx.clone();
        tokio::spawn(async move {
            while let Some(i) = inc_rx.recv().await {
                if fwd.send(SyncEvent::Rpc(i)).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(configsync::server::serve(
            listener,
            server_tls,
            s.credentials.clone(),
            inc_tx,
            counters.clone(),
        ));
        let mut glue = Glue {
            role: s.role,
            node: cfg.node.name.clone(),
            listen: s.listen,
            state_dir: s.state_dir.clone(),
            fingerprint: id.fingerprint.clone(),
            cert_path: id.cert_path.clone(),
            counters,
            primary: None,
            peer: PeerSide::default(),
            peers: s.peers.clone(),
            docs: BTreeMap::new(),
        };
        match s.role {
            Role::Primary => {
                let state: PrimaryState = match std::fs::read_to_string(state_path(&s.state_dir)) {
                    Ok(t) => serde_json::from_str(&t).with_context(|| {
                        format!("{} is unreadable", state_path(&s.state_dir).display())
                    })?,
                    Err(_) => PrimaryState::default(),
                };
                let (ptx, prx) = watch::channel(Arc::new(Payload::default()));
                glue.primary = Some(PrimarySide {
                    state,
                    payload: ptx,
                    trackers: Arc::new(Mutex::new(BTreeMap::new())),
                    nonce: 0,
                });
                glue.publish(cfg);
                let (ev_tx, mut ev_rx) = mpsc::channel::<PushEvent>(16);
                let fwd = tx.clone();
                tokio::spawn(async move {
                    while let Some(e) = ev_rx.recv().await {
                        if fwd.send(SyncEvent::Push(e)).await.is_err() {
                            return;
                        }
                    }
                });
                let me = Source {
                    node: cfg.node.name.clone(),
                    software: SOFTWARE.to_string(),
                    protocol: configsync::PROTOCOL_VERSION,
                    schema: configsync::SCHEMA_VERSION,
                };
                let trackers = glue
                    .primary
                    .as_ref()
                    .map(|p| p.trackers.clone())
                    .unwrap_or_default();
                for p in &s.peers {
                    let url = configsync::client::Url::parse(&p.url).map_err(anyhow::Error::msg)?;
                    let client_tls = tls::client_config(&p.trust)
                        .with_context(|| format!("config sync: TLS for peer {}", p.name))?;
                    let task = PeerTask {
                        name: p.name.clone(),
                        client: configsync::client::Client::new(url, client_tls, &s.credentials),
                        me: me.clone(),
                        backoff: Backoff {
                            first: Duration::from_millis(250),
                            max: s.retry_max,
                        },
                        heartbeat: s.heartbeat,
                    };
                    tokio::spawn(task.run(prx.clone(), trackers.clone(), ev_tx.clone()));
                }
            }
            Role::Peer => {
                let tick = tx.clone();
                tokio::spawn(async move {
                    let mut i = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        i.tick().await;
                        if tick.send(SyncEvent::Tick).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
        glue.activated(cfg);
        info!(
            "config sync: {} listening on https://{} (certificate {}, fingerprint {})",
            s.role.as_str(),
            s.listen,
            id.cert_path.display(),
            id.fingerprint
        );
        Ok((Some(glue), Some(rx)))
    }

    /// After a config became the running one (start, reload, apply, rollback).
    pub fn activated(&mut self, cfg: &mut Config) {
        match self.role {
            Role::Peer => {
                let incoming = self.state_dir.join("incoming.toml");
                if cfg.file == incoming {
                    let running = self.state_dir.join("running.toml");
                    match std::fs::rename(&incoming, &running) {
                        Ok(()) => cfg.file = running,
                        Err(e) => warn!("config sync: cannot rename {}: {e}", incoming.display()),
                    }
                }
            }
            Role::Primary => self.publish(cfg),
        }
    }

    /// Primary: the synced areas of the running config; a change makes a new generation,
    /// persisted, and the push tasks push it.
    fn publish(&mut self, cfg: &Config) {
        let Some(p) = self.primary.as_mut() else {
            return;
        };
        let Some(s) = cfg.sync.as_ref() else {
            return;
        };
        let doc: toml::Table = match toml::from_str(&cfg.text) {
            Ok(d) => d,
            Err(e) => {
                error!("config sync: cannot read the synced areas: {e}");
                return;
            }
        };
        let areas: BTreeMap<Area, String> = s
            .areas
            .iter()
            .map(|a| (*a, area::extract(&doc, *a)))
            .collect();
        if p.state.update(&areas, now_unix()) {
            info!(
                "config sync: generation {} ({})",
                p.state.generation,
                areas
                    .keys()
                    .map(|a| format!("{a} {}", area::count(&doc, *a)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Err(e) = self.save_primary() {
                error!("config sync: {e:#}");
            }
        }
        self.send_payload(areas, false);
    }

    fn send_payload(&mut self, areas: BTreeMap<Area, String>, force_now: bool) {
        let Some(p) = self.primary.as_mut() else {
            return;
        };
        let old = p.payload.borrow().clone();
        if force_now {
            p.nonce += 1;
        }
        let new = Payload {
            generation: p.state.generation,
            areas,
            nonce: p.nonce,
            force: force_now,
        };
        if *old != new {
            p.payload.send_replace(Arc::new(new));
        }
    }

    fn save_primary(&self) -> anyhow::Result<()> {
        let Some(p) = self.primary.as_ref() else {
            return Ok(());
        };
        let json = serde_json::to_string_pretty(&p.state)?;
        write_atomic(&state_path(&self.state_dir), &json)
    }

    /// A stored TOML file, parsed; from the cache when its text is what was last seen.
    fn cached_doc(&mut self, path: &Path) -> anyhow::Result<toml::Table> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(toml::Table::new()),
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        };
        if let Some((t, doc)) = self.docs.get(path) {
            if *t == text {
                return Ok(doc.clone());
            }
        }
        let doc = parse_doc(path)?;
        self.docs.insert(path.to_path_buf(), (text, doc.clone()));
        Ok(doc)
    }

    fn store(&self) -> Store {
        Store {
            dir: self.state_dir.clone(),
        }
    }

    fn applied_generation(cfg: &Config) -> u64 {
        cfg.sync
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .map_or(0, |r| r.meta.generation)
    }

    fn drift_of(cfg: &Config) -> Option<String> {
        let r = cfg.sync.as_ref()?.running.as_ref()?;
        let d: Vec<&AreaDiff> = r.areas.iter().filter_map(|a| a.drift.as_ref()).collect();
        (!d.is_empty()).then(|| book::drift_summary(&d))
    }

    /// Peer: demoted while behind a primary it hears (unless the operator turned it off).
    pub fn update_demotion(&mut self, d: &mut Daemon) {
        if self.role != Role::Peer {
            return;
        }
        let cfg = d.config();
        let (timeout, enabled) = cfg
            .sync
            .as_ref()
            .map_or((Duration::from_secs(10), true), |s| {
                (s.primary_timeout, s.demote_when_behind)
            });
        let ours = Self::applied_generation(cfg);
        let behind = self.peer.view.behind(Instant::now(), ours, timeout);
        let demote = behind && enabled;
        if demote != self.peer.demoted {
            self.peer.demoted = demote;
            if demote {
                warn!(
                    "config sync: generation {ours} is behind {}'s {}: demoted by {BEHIND_DEMOTION} until synced",
                    self.peer.view.source, self.peer.view.generation
                );
            } else if behind {
                info!("config sync: behind, but demote_when_behind = false: demotion lifted");
            } else if self.peer.view.generation > ours {
                info!(
                    "config sync: primary {} not heard for {} s: config-sync demotion lifted (running generation {ours})",
                    self.peer.view.source,
                    timeout.as_secs()
                );
            } else {
                info!(
                    "config sync: at generation {ours}, in step with the primary: demotion lifted"
                );
            }
            d.demote_config_sync(if demote { BEHIND_DEMOTION } else { 0 });
        }
    }

    /// Handles one event from config sync (the daemon has taken the glue out of itself).
    pub async fn handle(&mut self, ev: SyncEvent, d: &mut Daemon) {
        match ev {
            SyncEvent::Tick => self.update_demotion(d),
            SyncEvent::Push(PushEvent::Result { peer, outcome }) => {
                if outcome.starts_with("ok") {
                    info!("config sync: peer {peer}: {outcome}");
                } else {
                    warn!("config sync: peer {peer}: {outcome}");
                }
            }
            SyncEvent::Push(PushEvent::Stale { peer, generation }) => {
                if let Some(p) = self.primary.as_mut() {
                    warn!(
                        "config sync: peer {peer} holds generation {generation}, newer than ours {}: continuing from {}",
                        p.state.generation,
                        generation + 1
                    );
                    p.state.jump_past(generation, now_unix());
                    if let Err(e) = self.save_primary() {
                        error!("config sync: {e:#}");
                    }
                    let areas = self
                        .primary
                        .as_ref()
                        .map(|p| p.payload.borrow().areas.clone())
                        .unwrap_or_default();
                    self.send_payload(areas, false);
                }
            }
            SyncEvent::Rpc(inc) => {
                let answer = self.answer(inc.call, inc.peer, d).await;
                let _ = inc.reply.send(answer);
            }
        }
    }

    async fn answer(
        &mut self,
        call: Call,
        from: SocketAddr,
        d: &mut Daemon,
    ) -> Result<Value, Fault> {
        match call {
            Call::Version => Ok(self.version(d.config())),
            Call::Status => {
                let mut st = d.status();
                st.config_sync = Some(self.status(d.config()));
                st.sync.config = self.summary(d.config());
                serde_json::to_value(&st)
                    .map(|j| rpc::from_json(&j))
                    .map_err(|e| rpc::fault(code::INTERNAL, e.to_string()))
            }
            Call::GetAreas => Ok(self.get_areas(d.config())),
            Call::Heartbeat { source, generation } => {
                if self.role != Role::Peer {
                    return Err(rpc::fault(
                        code::FORBIDDEN,
                        format!("{} is a primary: it takes no heartbeats", self.node),
                    ));
                }
                self.peer
                    .view
                    .heard(Instant::now(), &source.node, generation);
                self.update_demotion(d);
                let cfg = d.config();
                Ok(rpc::record(&[
                    ("node", Value::String(self.node.clone())),
                    ("generation", rpc::int_value(Self::applied_generation(cfg))),
                    (
                        "drift",
                        Value::String(Self::drift_of(cfg).unwrap_or_default()),
                    ),
                ]))
            }
            Call::Apply(args) => {
                let r = self.apply(args, from, d).await;
                self.update_demotion(d);
                r
            }
            // Taken by the daemon (take_reload).
            Call::Reload => Err(rpc::fault(code::INTERNAL, "reload not handled")),
        }
    }

    fn version(&self, cfg: &Config) -> Value {
        let areas: Vec<Value> = match self.role {
            Role::Primary => cfg
                .sync
                .as_ref()
                .map(|s| {
                    s.areas
                        .iter()
                        .map(|a| Value::String(a.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            Role::Peer => cfg
                .sync
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .map(|r| {
                    r.meta
                        .areas
                        .keys()
                        .map(|a| Value::String(a.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        rpc::record(&[
            ("software", Value::String(SOFTWARE.into())),
            (
                "protocol",
                rpc::int_value(configsync::PROTOCOL_VERSION.into()),
            ),
            ("schema", rpc::int_value(configsync::SCHEMA_VERSION.into())),
            ("node", Value::String(self.node.clone())),
            ("role", Value::String(self.role.as_str().into())),
            (
                "capabilities",
                Value::Array(
                    configsync::CAPABILITIES
                        .iter()
                        .map(|c| Value::String((*c).into()))
                        .collect(),
                ),
            ),
            ("areas", Value::Array(areas)),
        ])
    }

    fn get_areas(&self, cfg: &Config) -> Value {
        let doc: toml::Table = toml::from_str(&cfg.text).unwrap_or_default();
        let prov = cfg.sync.as_ref().and_then(|s| s.running.as_ref());
        let mut areas = BTreeMap::new();
        for a in Area::ALL {
            let text = area::extract(&doc, a);
            let origin = prov
                .and_then(|p| p.areas.iter().find(|x| x.area == a))
                .map_or_else(|| "own file".to_string(), |x| x.origin.clone());
            areas.insert(
                a.to_string(),
                rpc::record(&[
                    ("hash", Value::String(area::hash(&text))),
                    ("origin", Value::String(origin)),
                    ("text", Value::String(text)),
                ]),
            );
        }
        let generation = match (&self.primary, prov) {
            (Some(p), _) => p.state.generation,
            (None, Some(p)) => p.meta.generation,
            _ => 0,
        };
        rpc::record(&[
            ("node", Value::String(self.node.clone())),
            ("role", Value::String(self.role.as_str().into())),
            ("generation", rpc::int_value(generation)),
            (
                "source",
                Value::String(prov.map(|p| p.meta.source.clone()).unwrap_or_default()),
            ),
            ("areas", Value::Struct(areas)),
        ])
    }

    fn refuse(&mut self, msg: String, f: Fault) -> Result<Value, Fault> {
        self.peer.refused += 1;
        self.peer.last_apply = Some(format!("refused: {msg}"));
        Err(f)
    }

    /// Peer: validates, activates and stores a push, all or nothing.
    async fn apply(
        &mut self,
        args: ApplyArgs,
        from: SocketAddr,
        d: &mut Daemon,
    ) -> Result<Value, Fault> {
        if self.role != Role::Peer {
            return Err(rpc::fault(
                code::FORBIDDEN,
                format!(
                    "{} is a primary: it pushes areas and accepts none (set role = \"peer\" on the receiving node)",
                    self.node
                ),
            ));
        }
        let g = args.generation;
        let src = args.source.node.clone();
        if (args.source.protocol, args.source.schema)
            != (configsync::PROTOCOL_VERSION, configsync::SCHEMA_VERSION)
        {
            let m = format!(
                "{src} speaks protocol {} / config schema {}, {} speaks {} / {}: upgrade the older node",
                args.source.protocol,
                args.source.schema,
                self.node,
                configsync::PROTOCOL_VERSION,
                configsync::SCHEMA_VERSION
            );
            warn!("config sync: push from {src} ({from}) refused: {m}");
            return self.refuse(m.clone(), rpc::fault(code::VERSION, m));
        }
        let started = Instant::now();
        // Every area text must parse as that area alone; canonical from here on.
        let mut pushed_now = BTreeMap::new();
        let mut pushed_docs = BTreeMap::new();
        for (a, text) in &args.areas {
            match area::doc_of(*a, text) {
                Ok(doc) => {
                    pushed_now.insert(*a, area::extract(&doc, *a));
                    pushed_docs.insert(*a, doc);
                }
                Err(e) => {
                    let m = format!("generation {g} from {src}: {e}");
                    return self.refuse(m.clone(), rpc::fault(code::BAD_REQUEST, m));
                }
            }
        }
        let own_file = d.config().own_file.clone();
        let own_text = match std::fs::read_to_string(&own_file) {
            Ok(t) => t,
            Err(e) => {
                let m = format!(
                    "{}: cannot read this node's own config: {e}",
                    own_file.display()
                );
                return self.refuse(m.clone(), rpc::fault(code::INVALID, m));
            }
        };
        let own_doc: toml::Table = match toml::from_str(&own_text) {
            Ok(t) => t,
            Err(e) => {
                let m = format!(
                    "{}: this node's own config is not valid TOML: {}",
                    own_file.display(),
                    e.message().trim_end()
                );
                return self.refuse(m.clone(), rpc::fault(code::INVALID, m));
            }
        };
        let store = self.store();
        let meta = match store.meta() {
            Ok(m) => m.unwrap_or_default(),
            Err(e) => {
                let m = format!("{e:#}");
                return self.refuse(m.clone(), rpc::fault(code::INTERNAL, m));
            }
        };
        // An unreadable synced.toml counts as edited (drift), not as an error.
        let stored = self
            .cached_doc(&store.path("synced.toml"))
            .unwrap_or_default();
        let pushed = self
            .cached_doc(&store.path("pushed.toml"))
            .unwrap_or_default();
        let running = book::resolve(&own_doc, &stored, &pushed, &meta);
        let policy = d
            .config()
            .sync
            .as_ref()
            .map_or(DriftPolicy::Refuse, |s| s.drift);
        let hashes: BTreeMap<Area, String> = pushed_now
            .iter()
            .map(|(a, t)| (*a, area::hash(t)))
            .collect();
        let verdict = book::judge(&meta, &running, g, &hashes, policy, args.force);
        if !matches!(verdict, Verdict::Stale { .. }) {
            self.peer.view.heard(Instant::now(), &src, g);
        }
        let backup = match verdict {
            Verdict::AlreadyApplied => {
                return Ok(rpc::record(&[
                    ("applied", Value::Boolean(false)),
                    ("generation", rpc::int_value(g)),
                    ("node", Value::String(self.node.clone())),
                    (
                        "message",
                        Value::String(format!("{} already runs generation {g}", self.node)),
                    ),
                ]))
            }
            Verdict::Stale { have } => {
                let m = format!(
                    "stale push: {} has generation {have} (from {}); the push is generation {g}",
                    self.node, meta.source
                );
                warn!("config sync: {m}");
                return self.refuse(m.clone(), rpc::fault(code::STALE, m));
            }
            Verdict::Drift { summary } => {
                let m = format!(
                    "drift on {}: its synced areas were changed locally since generation {} ({summary}); policy refuse: nothing changed. Undo the local change on {}, or push with force (tandem config push --force) to overwrite it (a backup is kept)",
                    self.node, meta.generation, self.node
                );
                warn!("config sync: generation {g} from {src} refused: {m}");
                return self.refuse(m.clone(), rpc::fault(code::DRIFT, m));
            }
            Verdict::Apply { backup } => backup,
        };

        // The new state: pushed areas replace, areas not in this push stay as they are.
        let now = now_unix();
        let mut new_meta = SyncedMeta {
            generation: g,
            source: src.clone(),
            time: now,
            areas: meta.areas.clone(),
            rolled_back_to: None,
        };
        for (a, text) in &pushed_now {
            new_meta.areas.insert(
                *a,
                AreaRecord {
                    hash: area::hash(text),
                    local_hash: area::hash(&area::extract(&own_doc, *a)),
                    generation: g,
                    time: now,
                    source: src.clone(),
                    items: pushed_docs.get(a).map_or(0, |d| area::count(d, *a)),
                },
            );
        }
        let mut stored_texts = BTreeMap::new();
        let mut pushed_texts = BTreeMap::new();
        let mut stored_doc = toml::Table::new();
        let mut pushed_doc = toml::Table::new();
        for a in new_meta.areas.keys() {
            let key = a.as_str();
            match (pushed_now.get(a), pushed_docs.get(a)) {
                (Some(t), Some(d)) => {
                    stored_texts.insert(*a, t.clone());
                    pushed_texts.insert(*a, t.clone());
                    if let Some(v) = d.get(key) {
                        stored_doc.insert(key.to_string(), v.clone());
                        pushed_doc.insert(key.to_string(), v.clone());
                    }
                }
                _ => {
                    stored_texts.insert(*a, area::extract(&stored, *a));
                    pushed_texts.insert(*a, area::extract(&pushed, *a));
                    if let Some(v) = stored.get(key) {
                        stored_doc.insert(key.to_string(), v.clone());
                    }
                    if let Some(v) = pushed.get(key) {
                        pushed_doc.insert(key.to_string(), v.clone());
                    }
                }
            }
        }
        let checked = started.elapsed();
        let what = format!("generation {g} from {src}");
        let r = self
            .activate_candidate(d, &own_file, &own_doc, &new_meta, &stored_doc, &pushed_doc)
            .await;
        let activated = started.elapsed();
        if let Err(m) = r {
            warn!("config sync: {what} rejected, running config unchanged: {m}");
            return self.refuse(
                m.clone(),
                rpc::fault(code::INVALID, format!("{} rejected {what}: {m}", self.node)),
            );
        }
        if !backup.is_empty() {
            let kept = self.backup_drift(&running, &backup, &meta);
            warn!(
                "config sync: {what} overwrote local changes to {} (backup {})",
                backup
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                kept
            );
        }
        match store.save(&new_meta, &stored_texts, &pushed_texts, true) {
            Ok((stored_text, pushed_text)) => {
                self.docs
                    .insert(store.path("synced.toml"), (stored_text, stored_doc));
                self.docs
                    .insert(store.path("pushed.toml"), (pushed_text, pushed_doc));
            }
            Err(e) => {
                let m = format!("{what} is running but could not be stored: {e:#}");
                error!("config sync: {m}");
                return Err(rpc::fault(code::INTERNAL, m));
            }
        }
        self.peer.applied += 1;
        let summary = pushed_docs
            .iter()
            .map(|(a, d)| format!("{a} {}", area::count(d, *a)))
            .collect::<Vec<_>>()
            .join(", ");
        let ms = |d: Duration| d.as_millis();
        let msg = format!(
            "{} applied {what} ({summary}) in {} ms (checked {} ms, activated {} ms, stored {} ms)",
            self.node,
            ms(started.elapsed()),
            ms(checked),
            ms(activated.saturating_sub(checked)),
            ms(started.elapsed().saturating_sub(activated))
        );
        info!("config sync: {msg}");
        self.peer.last_apply = Some(format!("ok: {msg}"));
        Ok(rpc::record(&[
            ("applied", Value::Boolean(true)),
            ("generation", rpc::int_value(g)),
            ("node", Value::String(self.node.clone())),
            ("message", Value::String(msg)),
        ]))
    }

    /// Composes, validates and activates a candidate through the daemon's reload path.
    async fn activate_candidate(
        &mut self,
        d: &mut Daemon,
        own_file: &Path,
        own_doc: &toml::Table,
        meta: &SyncedMeta,
        stored: &toml::Table,
        pushed: &toml::Table,
    ) -> Result<(), String> {
        let cand = compose_and_parse(own_file, own_doc, &self.state_dir, meta, stored, pushed)
            .map_err(|e| crate::ruleset::describe(&e))?;
        let sections = cand
            .cfg
            .sync
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .map(|r| r.sections.clone())
            .unwrap_or_default();
        d.activate(cand.cfg)
            .await
            .map_err(|e| describe(&e, &sections))?;
        self.activated(d.config_mut());
        Ok(())
    }

    fn backup_drift(
        &self,
        running: &[book::RunningArea],
        areas: &[Area],
        meta: &SyncedMeta,
    ) -> String {
        let dir = self.state_dir.join("backups");
        let path = dir.join(format!(
            "drift-gen{}-{}.toml",
            meta.generation,
            rfc3339(now_unix()).replace(':', "")
        ));
        let mut text = format!(
            "# areas as they ran on {} before an overwrite (they had drifted from generation {})\n",
            self.node, meta.generation
        );
        for r in running.iter().filter(|r| areas.contains(&r.area)) {
            let _ = writeln!(text, "\n# ---- area {} ----", r.area);
            text.push_str(&r.text);
        }
        let r = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text));
        match r {
            Ok(()) => path.display().to_string(),
            Err(e) => {
                error!("config sync: cannot write backup {}: {e}", path.display());
                format!("not written: {e}")
            }
        }
    }

    fn summary(&self, cfg: &Config) -> String {
        match self.role {
            Role::Primary => {
                let Some(p) = self.primary.as_ref() else {
                    return "primary".into();
                };
                let trackers = p.trackers.lock().map(|t| t.clone()).unwrap_or_default();
                let peers: Vec<String> = self
                    .peers
                    .iter()
                    .map(|ps| match trackers.get(&ps.name) {
                        Some(t) if t.in_sync(p.state.generation) => format!("{} in sync", ps.name),
                        Some(t) => format!(
                            "{} {}",
                            ps.name,
                            t.last_result
                                .as_ref()
                                .and_then(|r| r.as_ref().err())
                                .map_or_else(|| "pending".to_string(), |f| f.to_string())
                        ),
                        None => format!("{} pending", ps.name),
                    })
                    .collect();
                format!(
                    "primary, generation {}: {}",
                    p.state.generation,
                    peers.join("; ")
                )
            }
            Role::Peer => {
                let g = Self::applied_generation(cfg);
                let mut s = if g == 0 {
                    "peer, nothing synced yet".to_string()
                } else {
                    let src = cfg
                        .sync
                        .as_ref()
                        .and_then(|s| s.running.as_ref())
                        .map(|r| r.meta.source.clone())
                        .unwrap_or_default();
                    format!("peer, generation {g} from {src}")
                };
                if self.peer.view.generation > g {
                    let _ = write!(s, "; BEHIND the primary's {}", self.peer.view.generation);
                }
                if let Some(d) = Self::drift_of(cfg) {
                    let _ = write!(s, "; DRIFT: {d}");
                }
                s
            }
        }
    }

    pub fn status(&self, cfg: &Config) -> ConfigSyncStatus {
        let now = Instant::now();
        let prov = cfg.sync.as_ref().and_then(|s| s.running.as_ref());
        let mut st = ConfigSyncStatus {
            role: self.role.as_str().into(),
            listen: self.listen.to_string(),
            fingerprint: self.fingerprint.clone(),
            certificate: self.cert_path.display().to_string(),
            state_dir: self.state_dir.display().to_string(),
            generation: 0,
            areas: Vec::new(),
            peers: Vec::new(),
            source: None,
            applied_at: None,
            primary_generation: None,
            primary_heard_seconds_ago: None,
            behind: false,
            demoted: self.peer.demoted,
            drift: Self::drift_of(cfg),
            rolled_back_to: prov.and_then(|p| p.meta.rolled_back_to),
            running: prov.map(|p| p.areas.clone()).unwrap_or_default(),
            last_apply: self.peer.last_apply.clone(),
            applied: self.peer.applied,
            refused: self.peer.refused,
            rpc: self.counters.lock().map(|c| c.clone()).unwrap_or_default(),
        };
        match (self.role, &self.primary) {
            (Role::Primary, Some(p)) => {
                st.generation = p.state.generation;
                st.areas = cfg
                    .sync
                    .as_ref()
                    .map(|s| s.areas.iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                let trackers = p.trackers.lock().map(|t| t.clone()).unwrap_or_default();
                st.peers = self
                    .peers
                    .iter()
                    .map(|ps| {
                        trackers
                            .get(&ps.name)
                            .cloned()
                            .unwrap_or_else(|| {
                                PeerTracker::new(
                                    Backoff {
                                        first: Duration::ZERO,
                                        max: Duration::ZERO,
                                    },
                                    Duration::ZERO,
                                )
                            })
                            .report(&ps.name, &ps.url, now, p.state.generation, SOFTWARE)
                    })
                    .collect();
            }
            _ => {
                let g = Self::applied_generation(cfg);
                st.generation = g;
                if let Some(p) = prov {
                    st.areas = p.meta.areas.keys().map(ToString::to_string).collect();
                    st.source = Some(p.meta.source.clone());
                    st.applied_at = Some(rfc3339(p.meta.time));
                }
                let v = &self.peer.view;
                if let Some(t) = v.heard {
                    st.primary_generation = Some(v.generation);
                    st.primary_heard_seconds_ago =
                        Some(now.saturating_duration_since(t).as_secs_f64());
                }
                let timeout = cfg
                    .sync
                    .as_ref()
                    .map_or(Duration::from_secs(10), |s| s.primary_timeout);
                st.behind = v.behind(now, g, timeout);
            }
        }
        st
    }

    /// The one-line summary for `status.sync.config`.
    pub fn summary_line(&self, cfg: &Config) -> String {
        self.summary(cfg)
    }

    /// `tandem config show|rollback|push`. Rollback activates through the same path as a push.
    pub async fn control(&mut self, req: Request, d: &mut Daemon) -> Reply {
        match req {
            Request::ConfigShow => Reply::Done(self.show(d.config())),
            Request::ConfigPush { force } => {
                if self.role != Role::Primary {
                    return Reply::Error(format!(
                        "{} is a peer: only the primary pushes",
                        self.node
                    ));
                }
                let areas = self
                    .primary
                    .as_ref()
                    .map(|p| p.payload.borrow().areas.clone())
                    .unwrap_or_default();
                self.send_payload(areas, true);
                let g = self.primary.as_ref().map_or(0, |p| p.state.generation);
                Reply::Done(format!(
                    "pushing generation {g} to {}{}",
                    self.peers
                        .iter()
                        .map(|p| p.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                    if force {
                        " (force: local changes on the peers are overwritten, backups kept)"
                    } else {
                        ""
                    }
                ))
            }
            Request::ConfigRollback { to } => match self.rollback(to, d).await {
                Ok(m) => Reply::Done(m),
                Err(e) => Reply::Error(e),
            },
            other => Reply::Error(format!("not a config sync request: {other:?}")),
        }
    }

    async fn rollback(&mut self, to: Option<u64>, d: &mut Daemon) -> Result<String, String> {
        if self.role != Role::Peer {
            return Err(format!(
                "{} is the primary: its config is its own file; restore that file and `tandem reload` (the peers follow)",
                self.node
            ));
        }
        let store = self.store();
        let meta = store
            .meta()
            .map_err(|e| format!("{e:#}"))?
            .ok_or_else(|| format!("{} has received no synced areas yet", self.node))?;
        let gens = store.history();
        let current = meta.rolled_back_to.unwrap_or(meta.generation);
        let target = match to {
            Some(t) => {
                if !gens.contains(&t) {
                    return Err(format!(
                        "generation {t} is not kept (kept: {})",
                        gens.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                t
            }
            None => *gens
                .iter()
                .rev()
                .find(|g| **g < current)
                .ok_or_else(|| format!("no generation older than {current} is kept"))?,
        };
        let old = parse_doc(&store.history_path(target)).map_err(|e| format!("{e:#}"))?;
        let own_file = d.config().own_file.clone();
        let own_text = std::fs::read_to_string(&own_file)
            .map_err(|e| format!("cannot read {}: {e}", own_file.display()))?;
        let own_doc: toml::Table = toml::from_str(&own_text)
            .map_err(|e| format!("{}: {}", own_file.display(), e.message()))?;
        let pushed = parse_doc(&store.path("pushed.toml")).map_err(|e| format!("{e:#}"))?;
        // The old areas go into the running copy; the record of the last push stays, so the
        // primary sees the rollback as drift (and with policy refuse does not undo it).
        let mut new_meta = meta.clone();
        new_meta.rolled_back_to = (target != meta.generation).then_some(target);
        let old_text = std::fs::read_to_string(store.history_path(target)).unwrap_or_default();
        let current_stored = parse_doc(&store.path("synced.toml")).unwrap_or_default();
        let mut stored_texts = BTreeMap::new();
        let mut stored_doc = toml::Table::new();
        for a in meta.areas.keys() {
            // An area synced only after that generation keeps its current copy.
            let t = if old_text.contains(&format!("# ---- area {a}:")) {
                area::extract(&old, *a)
            } else {
                area::extract(&current_stored, *a)
            };
            stored_doc.extend(area::doc_of(*a, &t).unwrap_or_default());
            stored_texts.insert(*a, t);
        }
        // A rollback makes the running copy (not the own file) authoritative again.
        for (a, rec) in new_meta.areas.iter_mut() {
            rec.local_hash = area::hash(&area::extract(&own_doc, *a));
        }
        self.activate_candidate(d, &own_file, &own_doc, &new_meta, &stored_doc, &pushed)
            .await?;
        let pushed_texts: BTreeMap<Area, String> = meta
            .areas
            .keys()
            .map(|a| (*a, area::extract(&pushed, *a)))
            .collect();
        store
            .save(&new_meta, &stored_texts, &pushed_texts, false)
            .map_err(|e| format!("rolled back, but could not store it: {e:#}"))?;
        let msg = format!(
            "{} runs the synced areas of generation {target} again (the primary's last push was generation {}){}",
            self.node,
            meta.generation,
            if target == meta.generation {
                ""
            } else {
                "; the primary sees this as drift until its next push"
            }
        );
        info!("config sync: {msg}");
        self.update_demotion(d);
        Ok(msg)
    }

    /// `tandem config show`: what runs and where each area came from, secrets hidden.
    fn show(&self, cfg: &Config) -> String {
        let mut s = String::new();
        let st = self.status(cfg);
        let _ = writeln!(
            s,
            "# node {} ({}), config sync {}",
            self.node,
            cfg.own_file.display(),
            st.role
        );
        let _ = writeln!(
            s,
            "# this node's certificate: {} ({})",
            self.fingerprint,
            self.cert_path.display()
        );
        let _ = writeln!(s, "# running from {}", cfg.file.display());
        let doc: toml::Table = toml::from_str(&cfg.text).unwrap_or_default();
        let prov = cfg.sync.as_ref().and_then(|s| s.running.as_ref());
        for a in Area::ALL {
            let text = area::extract(&doc, a);
            let items = area::count(&doc, a);
            let from = match (
                self.role,
                prov.and_then(|p| p.areas.iter().find(|x| x.area == a)),
            ) {
                (Role::Primary, _) => {
                    let synced = cfg.sync.as_ref().is_some_and(|s| s.areas.contains(&a));
                    if synced {
                        format!("own file, pushed to peers as generation {}", st.generation)
                    } else {
                        "own file (not synced)".to_string()
                    }
                }
                (Role::Peer, Some(x)) if x.origin != "own file" => {
                    let rec = prov.and_then(|p| p.meta.areas.get(&a));
                    let mut f = format!(
                        "{} from {}, generation {}, {}",
                        x.origin,
                        x.source.clone().unwrap_or_default(),
                        x.generation.unwrap_or(0),
                        rec.map(|r| rfc3339(r.time)).unwrap_or_default()
                    );
                    if let Some(dr) = &x.drift {
                        let _ = write!(f, "; DRIFT {dr}");
                    }
                    f
                }
                _ => "own file (not synced)".to_string(),
            };
            let _ = writeln!(
                s,
                "# area {:<8} {:>6} items  sha256 {}  {from}",
                a.as_str(),
                items,
                &area::hash(&text)[..12]
            );
        }
        s.push('\n');
        s.push_str(&redact(&cfg.text));
        s
    }
}

/// The config text with secrets replaced (`passphrase`, `password`, `token`, `key` = "...").
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        let secret = ["passphrase", "password", "token", "key"].iter().any(|k| {
            t.strip_prefix(k)
                .map(str::trim_start)
                .is_some_and(|rest| rest.starts_with('=') && rest.contains('"'))
        });
        if secret {
            let indent = &line[..line.len() - t.len()];
            let key = t.split('=').next().unwrap_or("").trim_end();
            let _ = writeln!(out, "{indent}{key} = \"<secret>\"");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The human-readable block of `tandem status`.
pub fn render(s: &ConfigSyncStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "config sync: {} on https://{}  generation {}  certificate {}",
        s.role, s.listen, s.generation, s.fingerprint
    );
    for p in &s.peers {
        let _ = writeln!(
            out,
            "  peer {} ({}): {}  acked {}  lag {} gen{}  last push {}  {}",
            p.name,
            p.url,
            if p.in_sync { "IN SYNC" } else { "NOT IN SYNC" },
            p.acked_generation
                .map_or_else(|| "-".to_string(), |g| g.to_string()),
            p.lag_generations,
            p.lag_seconds
                .map_or_else(String::new, |l| format!(" ({l:.1} s)")),
            p.last_push_seconds_ago
                .map_or_else(|| "never".to_string(), |a| format!("{a:.1} s ago")),
            p.last_result.clone().unwrap_or_default()
        );
        if let Some(v) = &p.version_note {
            let _ = writeln!(out, "    version: {v}");
        }
        if let Some(d) = &p.drift {
            let _ = writeln!(out, "    drift: {d}");
        }
    }
    if s.role == "peer" {
        let _ = writeln!(
            out,
            "  from {} at {}; primary at generation {} (heard {}){}{}",
            s.source.clone().unwrap_or_else(|| "-".into()),
            s.applied_at.clone().unwrap_or_else(|| "-".into()),
            s.primary_generation
                .map_or_else(|| "?".to_string(), |g| g.to_string()),
            s.primary_heard_seconds_ago
                .map_or_else(|| "never".to_string(), |a| format!("{a:.1} s ago")),
            if s.behind { "  BEHIND" } else { "" },
            if s.demoted { " (demoted)" } else { "" }
        );
        for a in &s.running {
            let _ = writeln!(
                out,
                "  area {:<8} {:<11} gen {:<4} {:>6} items{}",
                a.area.as_str(),
                a.origin,
                a.generation
                    .map_or_else(|| "-".to_string(), |g| g.to_string()),
                a.items,
                a.drift
                    .as_ref()
                    .map_or_else(String::new, |d| format!("  DRIFT {d}"))
            );
        }
        if let Some(l) = &s.last_apply {
            let _ = writeln!(out, "  last push: {l}");
        }
    }
    if !s.rpc.rejected.is_empty() {
        let _ = writeln!(
            out,
            "  refused calls: {}{}",
            s.rpc
                .rejected
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            s.rpc
                .last_rejected
                .as_ref()
                .map_or_else(String::new, |l| format!(" (last {l})"))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn secrets_are_redacted() {
        let t = "[carp]\npassphrase = \"s3cret\"\n[sync]\npassword=\"pw\"\nuser = \"sync\"\npassword_file = \"pw.txt\"\n";
        let r = redact(t);
        assert!(!r.contains("s3cret") && !r.contains("\"pw\""), "{r}");
        assert!(r.contains("user = \"sync\""));
        assert!(r.contains("password_file = \"pw.txt\""));
    }

    fn settings(extra: &str) -> (Option<SyncSettings>, Vec<String>) {
        let text = format!(
            "[sync]\nrole = \"primary\"\nlisten = \"203.0.113.1:8443\"\nstate_dir = \"st\"\nuser = \"sync\"\npassword = \"pw\"\n{extra}"
        );
        let (s, e) = parse_settings(
            Path::new("/etc/tandem/fw1.toml"),
            &text,
            &[("192.0.2.1".parse().expect("ip"), 7)],
        );
        (
            s,
            e.into_iter()
                .map(|(span, m)| format!("{}: {m}", config::line_col(&text, span.start).0))
                .collect(),
        )
    }

    #[test]
    fn sync_settings_parse_and_check() {
        let fp = "sha256:".to_string() + &["AB"; 32].join(":");
        let (s, e) = settings(&format!(
            "areas = [\"rules\", \"vips\"]\n[[sync.peers]]\nname = \"fw2\"\nurl = \"https://203.0.113.2:8443\"\nfingerprint = \"{fp}\"\n"
        ));
        assert!(e.is_empty(), "{e:?}");
        let s = s.expect("settings");
        assert_eq!(s.state_dir, PathBuf::from("/etc/tandem/st"));
        assert_eq!(s.areas.len(), 2);
        assert_eq!(s.peers[0].name, "fw2");
        assert_eq!(s.drift, DriftPolicy::Refuse);

        let (_, e) = settings("");
        assert!(
            e.iter().any(|m| m.contains("a primary needs at least one")),
            "{e:?}"
        );
        let (_, e) =
            settings("areas = [\"users\"]\n[[sync.peers]]\nname = \"fw2\"\nurl = \"http://x\"\n");
        assert!(
            e.iter()
                .any(|m| m.starts_with("7: sync.areas: unknown area \"users\"")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.contains("must start with https://")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("must be pinned")), "{e:?}");
    }

    #[test]
    fn listen_on_a_vip_is_refused() {
        let text = "[sync]\nrole = \"peer\"\nlisten = \"192.0.2.1:8443\"\nstate_dir = \"st\"\ntoken = \"t\"\n";
        let (_, e) = parse_settings(
            Path::new("f.toml"),
            text,
            &[("192.0.2.1".parse().expect("ip"), 7)],
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].1.contains("is a VIP (vhid 7)"), "{e:?}");
        let text = text.replace("192.0.2.1:8443", "0.0.0.0:8443");
        let (_, e) = parse_settings(Path::new("f.toml"), &text, &[]);
        assert!(e[0].1.contains("listens on every address"), "{e:?}");
    }

    #[test]
    fn relative_paths_survive_composition() {
        let mut doc: toml::Table = toml::from_str(
            "[carp]\npassphrase_file = \"carp.key\"\n[sync]\nstate_dir = \"st\"\ncert = \"/abs/c.pem\"\n[[sync.peers]]\nca = \"ca.pem\"\n[statesync]\nkey = \"inline-secret\"\n",
        )
        .expect("toml");
        absolutize(Path::new("/etc/tandem/fw2.toml"), &mut doc);
        assert_eq!(
            doc["carp"]["passphrase_file"].as_str(),
            Some("/etc/tandem/carp.key")
        );
        assert_eq!(doc["sync"]["state_dir"].as_str(), Some("/etc/tandem/st"));
        assert_eq!(doc["sync"]["cert"].as_str(), Some("/abs/c.pem"));
        assert_eq!(
            doc["sync"]["peers"][0]["ca"].as_str(),
            Some("/etc/tandem/ca.pem")
        );
        assert_eq!(doc["statesync"]["key"].as_str(), Some("inline-secret"));
    }
}
