//! What config sync reports: its status (in `tandem status` and `tandem.status`), the
//! human-readable block, and `tandem config show`.

use crate::config::Provenance;
use configsync::area::{Area, AreaDiff};
use configsync::book::{Origin, PeerStatus};
use configsync_net::server::Counters;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::time::SystemTime;

pub fn now_unix() -> u64 {
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

/// A running area's origin in one word (status, `tandem.get_areas`).
pub fn origin_word(o: &Origin) -> &'static str {
    match o {
        Origin::Own => "own file",
        Origin::Synced { .. } => "synced",
        Origin::LocalEdit { .. } => "local edit",
        Origin::EditedCopy { .. } => "edited copy",
    }
}

/// Where each of a peer's running areas came from, for status.
pub fn area_statuses(p: &Provenance) -> Vec<AreaStatus> {
    p.areas
        .iter()
        .map(|r| {
            let rec = p.meta.areas.get(&r.area);
            AreaStatus {
                area: r.area,
                origin: origin_word(&r.origin).to_string(),
                generation: rec.map(|r| r.generation),
                source: rec.map(|r| r.source.clone()),
                items: r.items,
                hash: r.hash.chars().take(12).collect(),
                drift: r.drift.clone(),
            }
        })
        .collect()
}

/// The drift of a peer's running areas, summed up (None: no drift).
pub fn drift_of(p: Option<&Provenance>) -> Option<String> {
    let d: Vec<&AreaDiff> = p?.areas.iter().filter_map(|a| a.drift.as_ref()).collect();
    (!d.is_empty()).then(|| configsync::book::drift_summary(&d))
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
    /// Peer: pushes applied that named some areas by hash only (a delta), and delta pushes
    /// refused because it did not hold such an area (the primary then pushed them whole).
    #[serde(default)]
    pub applied_delta: u64,
    #[serde(default)]
    pub refused_need_full: u64,
    /// Calls this node's server refused (auth, bad request, TLS) and the last one.
    pub rpc: Counters,
    /// Peer: the primary's certificate it takes pushes from (None: it takes none).
    #[serde(default)]
    pub primary_fingerprint: Option<String>,
}

/// The secrets of a config (passphrases, passwords, tokens, keys), wherever they are.
const SECRET_KEYS: [&str; 5] = ["passphrase", "password", "token", "key", "private_key"];

/// A config's plain values with every secret replaced by `"<secret>"`.
pub fn redacted(plain: &toml::Table) -> toml::Table {
    fn walk(t: &mut toml::Table) {
        for (k, v) in t.iter_mut() {
            match v {
                toml::Value::String(s) if SECRET_KEYS.contains(&k.as_str()) => {
                    *s = "<secret>".into();
                }
                toml::Value::Table(sub) => walk(sub),
                toml::Value::Array(items) => {
                    for i in items {
                        if let toml::Value::Table(sub) = i {
                            walk(sub);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut t = plain.clone();
    walk(&mut t);
    t
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
        if p.pushes_full + p.pushes_delta > 0 {
            let _ = writeln!(
                out,
                "    pushes: {} whole, {} delta ({} delta refused, then pushed whole)",
                p.pushes_full, p.pushes_delta, p.delta_refused
            );
        }
    }
    if s.role == "peer" {
        let _ = writeln!(
            out,
            "  takes pushes from: {}",
            s.primary_fingerprint.as_deref().unwrap_or(
                "nobody (set [sync] primary_fingerprint to the primary's certificate, then tandem reload)"
            )
        );
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
        let t: toml::Table = toml::from_str(
            "[carp]\npassphrase = \"s3cret\"\n[sync]\npassword=\"pw\"\nuser = \"sync\"\npassword_file = \"pw.txt\"\n[statesync]\nkey = \"k\"\n",
        )
        .expect("toml");
        let r = toml::to_string(&redacted(&t)).expect("toml");
        assert!(
            !r.contains("s3cret") && !r.contains("\"pw\"") && !r.contains("\"k\""),
            "{r}"
        );
        assert!(r.contains("user = \"sync\""), "{r}");
        assert!(r.contains("password_file = \"pw.txt\""), "{r}");
    }

    #[test]
    fn secrets_are_redacted_however_they_are_written() {
        let t: toml::Table = toml::from_str(concat!(
            "carp = { passphrase = 'single-quoted' }\n",
            "[sync]\n\"password\" = \"quoted-key\"\n",
            "token = \"\"\"\nmulti\nline\"\"\"\n",
            "[statesync]\nkey = '''literal'''\n",
        ))
        .expect("toml");
        let r = toml::to_string(&redacted(&t)).expect("toml");
        for secret in ["single-quoted", "quoted-key", "multi", "literal"] {
            assert!(!r.contains(secret), "{secret} in:\n{r}");
        }
    }
}
