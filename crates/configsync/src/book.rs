//! The bookkeeping of config sync, without I/O or clock reads (times are passed in):
//! the primary's generation, what a peer holds and where each running area came from, drift,
//! the push retry schedule, each peer's push state, and when a peer counts as behind.

use crate::area::{self, Area, AreaDiff};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

// ---- primary: generations ------------------------------------------------------------------

/// The largest generation: what XML-RPC's `i8` carries.
pub const MAX_GENERATION: u64 = i64::MAX as u64;

/// What a primary last pushed: its generation and the hash of each synced area. Persisted in
/// the state dir so the generation survives restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryState {
    pub generation: u64,
    /// Area -> hash of its canonical text at that generation.
    pub hashes: BTreeMap<Area, String>,
    /// Unix seconds when the generation was made.
    #[serde(default)]
    pub time: u64,
}

impl PrimaryState {
    /// Takes the current synced areas (canonical texts); bumps the generation when any of them
    /// differs from the last generation (or the set of synced areas changed). Returns whether
    /// it bumped.
    pub fn update(&mut self, areas: &BTreeMap<Area, String>, now_unix: u64) -> bool {
        let hashes: BTreeMap<Area, String> =
            areas.iter().map(|(a, t)| (*a, area::hash(t))).collect();
        if hashes == self.hashes && self.generation > 0 {
            return false;
        }
        self.generation = self.generation.saturating_add(1).min(MAX_GENERATION);
        self.hashes = hashes;
        self.time = now_unix;
        true
    }

    /// A peer holds a newer generation than ours (our state was lost or another primary was
    /// here): jump past it so our next push is accepted as newer.
    pub fn jump_past(&mut self, peer_generation: u64, now_unix: u64) {
        if peer_generation >= self.generation {
            // A number from the wire: never wraps, and never goes past what the wire carries
            // (a peer claiming the largest pins us there).
            self.generation = peer_generation.saturating_add(1).min(MAX_GENERATION);
            self.time = now_unix;
        }
    }
}

// ---- peer: what it holds ----------------------------------------------------------------------

/// One synced area as a peer recorded it when it applied a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaRecord {
    /// Hash of the area as pushed.
    pub hash: String,
    /// Hash of the node's own file's version of the area at that moment: if the own file's
    /// version changes later, the operator edited it locally, and that edit runs (drift).
    pub local_hash: String,
    pub generation: u64,
    /// Unix seconds of the apply.
    pub time: u64,
    pub source: String,
    pub items: usize,
}

/// The peer's record of the last applied push (`synced.json` in the state dir).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedMeta {
    pub generation: u64,
    pub source: String,
    pub time: u64,
    pub areas: BTreeMap<Area, AreaRecord>,
    /// Set by `tandem config rollback`: the generation whose areas were put back.
    #[serde(default)]
    pub rolled_back_to: Option<u64>,
}

/// Where a running area came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Origin {
    /// Not synced: the node's own config file.
    Own,
    /// As pushed by `source` in `generation` (at unix time `time`).
    Synced {
        source: String,
        generation: u64,
        time: u64,
    },
    /// Synced, but the node's own file's version was edited after the last sync: that runs.
    LocalEdit { generation: u64 },
    /// Synced, but the stored synced copy was edited (or rolled back) after the last sync.
    EditedCopy { generation: u64 },
}

/// A running area: its text, origin and drift (difference from the last synced version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningArea {
    pub area: Area,
    pub text: String,
    pub origin: Origin,
    pub drift: Option<AreaDiff>,
    pub items: usize,
}

/// Decides, for every area, which text runs on a peer: the own file's (not synced, or edited
/// locally since the last sync) or the stored synced copy; and whether it drifted from what
/// was last pushed (`pushed`: the areas as the last push delivered them).
pub fn resolve(
    own: &toml::Table,
    stored: &toml::Table,
    pushed: &toml::Table,
    meta: &SyncedMeta,
) -> Vec<RunningArea> {
    resolve_known(own, stored, pushed, meta, &BTreeMap::new())
}

/// [`resolve`], with the canonical texts of `stored`'s areas where the caller knows them
/// (`known`: what it wrote; 10k rules take longer to serialize again than to compare).
pub fn resolve_known(
    own: &toml::Table,
    stored: &toml::Table,
    pushed: &toml::Table,
    meta: &SyncedMeta,
    known: &BTreeMap<Area, String>,
) -> Vec<RunningArea> {
    Area::ALL
        .into_iter()
        .map(|a| {
            let own_text = area::extract(own, a);
            let Some(rec) = meta.areas.get(&a) else {
                return RunningArea {
                    area: a,
                    text: own_text,
                    origin: Origin::Own,
                    drift: None,
                    items: area::count(own, a),
                };
            };
            let (text, origin, doc) = if area::hash(&own_text) != rec.local_hash {
                (
                    own_text,
                    Origin::LocalEdit {
                        generation: rec.generation,
                    },
                    own,
                )
            } else {
                let stored_text = known
                    .get(&a)
                    .cloned()
                    .unwrap_or_else(|| area::extract(stored, a));
                let origin = if area::hash(&stored_text) == rec.hash {
                    Origin::Synced {
                        source: rec.source.clone(),
                        generation: rec.generation,
                        time: rec.time,
                    }
                } else {
                    Origin::EditedCopy {
                        generation: rec.generation,
                    }
                };
                (stored_text, origin, stored)
            };
            let drift = (area::hash(&text) != rec.hash).then(|| area::diff(a, pushed, doc));
            RunningArea {
                area: a,
                text,
                origin,
                drift,
                items: area::count(doc, a),
            }
        })
        .collect()
}

/// The drifted areas among `areas` (what a push would overwrite).
pub fn drifted<'a>(running: &'a [RunningArea], areas: &BTreeSet<Area>) -> Vec<&'a AreaDiff> {
    running
        .iter()
        .filter(|r| areas.contains(&r.area))
        .filter_map(|r| r.drift.as_ref())
        .collect()
}

/// One line for a drift report: `rules: 3 -> 4 items (+1 -0); nat: ...`.
pub fn drift_summary(diffs: &[&AreaDiff]) -> String {
    diffs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the peer does with drift when a push arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Refuse the push; nothing changes; the primary is told.
    Refuse,
    /// Keep a backup of the drifted areas, then apply the push.
    Overwrite,
}

/// What a peer should do with a push of `generation` (before validating its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Already running exactly this: answer OK, change nothing.
    AlreadyApplied,
    /// Older than what the peer has. `force` does not change that: a push never rolls a peer
    /// back (a rollback is the peer's own, explicit act).
    Stale { have: u64 },
    /// Local changes would be overwritten and the policy says refuse (and not forced).
    Drift { summary: String },
    /// Go ahead; `backup` lists drifted areas to keep a copy of first.
    Apply { backup: Vec<Area> },
}

/// Decides about a push (pure): generation order, idempotence, drift and policy.
pub fn judge(
    meta: &SyncedMeta,
    running: &[RunningArea],
    generation: u64,
    pushed_hashes: &BTreeMap<Area, String>,
    policy: DriftPolicy,
    force: bool,
) -> Verdict {
    let keys: BTreeSet<Area> = pushed_hashes.keys().copied().collect();
    let drift = drifted(running, &keys);
    if generation == meta.generation
        && drift.is_empty()
        && pushed_hashes
            .iter()
            .all(|(a, h)| meta.areas.get(a).is_some_and(|r| &r.hash == h))
    {
        return Verdict::AlreadyApplied;
    }
    if generation < meta.generation {
        return Verdict::Stale {
            have: meta.generation,
        };
    }
    if !drift.is_empty() && policy == DriftPolicy::Refuse && !force {
        return Verdict::Drift {
            summary: drift_summary(&drift),
        };
    }
    Verdict::Apply {
        backup: drift.iter().map(|d| d.area).collect(),
    }
}

// ---- primary: pushing to one peer -------------------------------------------------------------

/// The retry schedule after failures: 0.5 s, 1 s, 2 s, ... capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// How a call to a peer failed, as the primary reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum Failure {
    /// No connection, timeout, TLS handshake failed (certificate not the pinned one, ...).
    Unreachable(String),
    /// The peer refused our credentials.
    Auth(String),
    /// The peer speaks another protocol or config schema version.
    Version(String),
    /// The peer validated the pushed areas and refused them (the located errors).
    Rejected(String),
    /// The peer's synced areas were changed locally and its policy is refuse.
    Drift(String),
    /// The peer has a newer generation than ours.
    Stale(u64),
    /// Anything else (bad answer, fault).
    Error(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(s) => write!(f, "unreachable: {s}"),
            Failure::Auth(s) => write!(f, "authentication failed: {s}"),
            Failure::Version(s) => write!(f, "version mismatch: {s}"),
            Failure::Rejected(s) => write!(f, "rejected: {s}"),
            Failure::Drift(s) => write!(f, "drift: {s}"),
            Failure::Stale(g) => write!(f, "peer has a newer generation {g}"),
            Failure::Error(s) => write!(f, "error: {s}"),
        }
    }
}

/// What the push loop for one peer should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ask the peer's versions (first contact, and after a failure).
    Version,
    /// Push the current generation.
    Push,
    /// Tell the peer our generation (it answers with its own and its drift).
    Heartbeat,
    /// Nothing until then (or until the generation changes).
    Wait(Instant),
    /// Nothing until the first generation is published (generation 0 is no config).
    Idle,
}

/// A peer's versions as it reported them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerVersion {
    pub software: String,
    pub protocol: u32,
    pub schema: u32,
    pub node: String,
}

/// The push state of one peer (sans-IO: the push task asks [`PeerTracker::next`], makes the
/// call, and reports the outcome).
#[derive(Debug, Clone)]
pub struct PeerTracker {
    pub backoff: Backoff,
    pub heartbeat: Duration,
    /// The generation the peer confirmed it runs.
    pub acked: Option<u64>,
    pub failures: u32,
    retry_at: Option<Instant>,
    pub last_contact: Option<Instant>,
    pub last_push: Option<Instant>,
    pub last_result: Option<Result<String, Failure>>,
    pub version: Option<PeerVersion>,
    /// Drift the peer reported (heartbeat or refused push).
    pub drift: Option<String>,
    /// Since when the peer has been behind the current generation.
    pub behind_since: Option<Instant>,
    /// What the peer holds of our areas (for delta pushes), and the pushes by kind.
    pub holds: crate::delta::PeerHolds,
}

impl PeerTracker {
    pub fn new(backoff: Backoff, heartbeat: Duration) -> PeerTracker {
        PeerTracker {
            backoff,
            heartbeat,
            acked: None,
            failures: 0,
            retry_at: None,
            last_contact: None,
            last_push: None,
            last_result: None,
            version: None,
            drift: None,
            behind_since: None,
            holds: crate::delta::PeerHolds::default(),
        }
    }

    pub fn next(&self, now: Instant, current: u64) -> Step {
        if current == 0 {
            return Step::Idle;
        }
        if let Some(t) = self.retry_at {
            if now < t {
                return Step::Wait(t);
            }
        }
        if self.version.is_none() {
            return Step::Version;
        }
        if self.acked != Some(current) {
            return Step::Push;
        }
        match self.last_contact {
            Some(t) if t + self.heartbeat > now => Step::Wait(t + self.heartbeat),
            _ => Step::Heartbeat,
        }
    }

    /// The current generation changed (or was first set): the lag clock starts.
    pub fn note_generation(&mut self, now: Instant, current: u64) {
        if current != 0 && self.acked != Some(current) && self.behind_since.is_none() {
            self.behind_since = Some(now);
        }
    }

    fn failed(&mut self, now: Instant, f: Failure) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + self.backoff.delay(self.failures));
        // Unknown state after a transport failure: ask the versions again on reconnect.
        if matches!(f, Failure::Unreachable(_) | Failure::Auth(_)) {
            self.version = None;
        }
        self.last_result = Some(Err(f));
    }

    fn succeeded(&mut self, now: Instant) {
        self.failures = 0;
        self.retry_at = None;
        self.last_contact = Some(now);
    }

    fn set_acked(&mut self, now: Instant, acked: u64, current: u64) {
        self.acked = Some(acked);
        if acked == current {
            self.behind_since = None;
        } else if self.behind_since.is_none() {
            self.behind_since = Some(now);
        }
    }

    pub fn on_version(&mut self, now: Instant, ours: (u32, u32), r: Result<PeerVersion, Failure>) {
        match r {
            Ok(v) if (v.protocol, v.schema) != ours => {
                let msg = format!(
                    "peer {} speaks protocol {} / config schema {}, this node {} / {}",
                    v.node, v.protocol, v.schema, ours.0, ours.1
                );
                self.failed(now, Failure::Version(msg));
                // Keep asking, with the backoff, until someone upgrades.
                self.version = None;
            }
            Ok(v) => {
                self.succeeded(now);
                self.version = Some(v);
            }
            Err(f) => self.failed(now, f),
        }
    }

    pub fn on_push(&mut self, now: Instant, pushed: u64, current: u64, r: Result<String, Failure>) {
        self.last_push = Some(now);
        match r {
            Ok(msg) => {
                self.succeeded(now);
                self.drift = None;
                self.set_acked(now, pushed, current);
                self.last_result = Some(Ok(msg));
            }
            Err(f) => {
                if let Failure::Drift(s) = &f {
                    self.drift = Some(s.clone());
                }
                self.failed(now, f);
            }
        }
    }

    /// A heartbeat answer: the peer's generation and drift (None: in sync).
    pub fn on_heartbeat(
        &mut self,
        now: Instant,
        current: u64,
        r: Result<(u64, Option<String>), Failure>,
    ) {
        match r {
            Ok((generation, drift)) => {
                self.succeeded(now);
                self.drift = drift;
                self.set_acked(now, generation, current);
            }
            Err(f) => self.failed(now, f),
        }
    }

    pub fn in_sync(&self, current: u64) -> bool {
        self.acked == Some(current) && self.drift.is_none() && self.retry_at.is_none()
    }
}

/// One peer as the primary's status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub url: String,
    /// The peer runs the current generation, reports no drift, and the last call succeeded.
    pub in_sync: bool,
    pub acked_generation: Option<u64>,
    /// Generations the peer is behind.
    pub lag_generations: u64,
    /// Seconds since the peer fell behind (None: not behind).
    pub lag_seconds: Option<f64>,
    pub last_push_seconds_ago: Option<f64>,
    pub last_contact_seconds_ago: Option<f64>,
    /// "ok: ..." or the failure.
    pub last_result: Option<String>,
    /// The failure kind (`unreachable`, `auth`, `version`, `rejected`, `drift`, `stale`, `error`).
    pub last_error_kind: Option<String>,
    pub failures: u32,
    pub drift: Option<String>,
    pub peer_software: Option<String>,
    pub peer_protocol: Option<u32>,
    pub peer_schema: Option<u32>,
    /// Set when the peer runs other software than this node.
    pub version_note: Option<String>,
    /// Pushes with every area whole, pushes with some areas by hash only, and delta pushes
    /// the peer could not resolve (each followed at once by a full push).
    #[serde(default)]
    pub pushes_full: u64,
    #[serde(default)]
    pub pushes_delta: u64,
    #[serde(default)]
    pub delta_refused: u64,
}

impl PeerTracker {
    pub fn report(
        &self,
        name: &str,
        url: &str,
        now: Instant,
        current: u64,
        our_software: &str,
    ) -> PeerStatus {
        let ago = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
        let kind = |f: &Failure| match f {
            Failure::Unreachable(_) => "unreachable",
            Failure::Auth(_) => "auth",
            Failure::Version(_) => "version",
            Failure::Rejected(_) => "rejected",
            Failure::Drift(_) => "drift",
            Failure::Stale(_) => "stale",
            Failure::Error(_) => "error",
        };
        let version_note = match (&self.version, &self.last_result) {
            (_, Some(Err(Failure::Version(m)))) => Some(m.clone()),
            (Some(v), _) if v.software != our_software => Some(format!(
                "peer runs tandem {}, this node {}",
                v.software, our_software
            )),
            _ => None,
        };
        PeerStatus {
            name: name.to_string(),
            url: url.to_string(),
            in_sync: self.in_sync(current),
            acked_generation: self.acked,
            lag_generations: current.saturating_sub(self.acked.unwrap_or(0)),
            lag_seconds: if self.acked == Some(current) {
                None
            } else {
                ago(self.behind_since)
            },
            last_push_seconds_ago: ago(self.last_push),
            last_contact_seconds_ago: ago(self.last_contact),
            last_result: self.last_result.as_ref().map(|r| match r {
                Ok(m) => format!("ok: {m}"),
                Err(f) => f.to_string(),
            }),
            last_error_kind: match &self.last_result {
                Some(Err(f)) => Some(kind(f).to_string()),
                _ => None,
            },
            failures: self.failures,
            drift: self.drift.clone(),
            peer_software: self.version.as_ref().map(|v| v.software.clone()),
            peer_protocol: self.version.as_ref().map(|v| v.protocol),
            peer_schema: self.version.as_ref().map(|v| v.schema),
            version_note,
            pushes_full: self.holds.counts.full,
            pushes_delta: self.holds.counts.delta,
            delta_refused: self.holds.counts.delta_refused,
        }
    }
}

// ---- peer: behind or not ----------------------------------------------------------------------

/// What a peer heard from its primary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrimaryView {
    pub source: String,
    pub generation: u64,
    pub heard: Option<Instant>,
}

impl PrimaryView {
    pub fn heard(&mut self, now: Instant, source: &str, generation: u64) {
        self.source = source.to_string();
        self.generation = generation;
        self.heard = Some(now);
    }

    /// Behind: the primary, heard within `timeout`, is at a newer generation than `ours`.
    /// A primary not heard from within `timeout` (down, partitioned) demotes no one: a peer
    /// with a stale config is still better than no master at all.
    pub fn behind(&self, now: Instant, ours: u64, timeout: Duration) -> bool {
        self.heard
            .is_some_and(|t| now.saturating_duration_since(t) <= timeout)
            && self.generation > ours
    }

    /// When `behind` will next change by itself (the primary going silent).
    pub fn expires(&self, timeout: Duration) -> Option<Instant> {
        self.heard.map(|t| t + timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> toml::Table {
        toml::from_str(s).expect("toml")
    }

    const R1: &str = "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\n";
    const R2: &str =
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\n[[rules]]\ninterface = \"wan\"\naction = \"block\"\n";

    fn meta_with_rules(pushed: &str, own: &str) -> SyncedMeta {
        let mut m = SyncedMeta {
            generation: 3,
            source: "fw1".into(),
            time: 100,
            ..Default::default()
        };
        m.areas.insert(
            Area::Rules,
            AreaRecord {
                hash: area::hash(&area::extract(&t(pushed), Area::Rules)),
                local_hash: area::hash(&area::extract(&t(own), Area::Rules)),
                generation: 3,
                time: 100,
                source: "fw1".into(),
                items: 1,
            },
        );
        m
    }

    #[test]
    fn generation_bumps_only_on_change() {
        let mut p = PrimaryState::default();
        let mut areas = BTreeMap::new();
        areas.insert(Area::Rules, "x".to_string());
        assert!(p.update(&areas, 1));
        assert_eq!(p.generation, 1);
        assert!(!p.update(&areas, 2));
        areas.insert(Area::Rules, "y".to_string());
        assert!(p.update(&areas, 3));
        assert_eq!(p.generation, 2);
        // Switching an area off for sync is a change too.
        areas.insert(Area::Nat, String::new());
        assert!(p.update(&areas, 4));
        assert_eq!(p.generation, 3);
        p.jump_past(10, 5);
        assert_eq!(p.generation, 11);
        p.jump_past(4, 6);
        assert_eq!(p.generation, 11);
        // A peer claiming the largest generation there is: no wrap (a debug build would panic).
        p.jump_past(u64::MAX, 7);
        assert_eq!(p.generation, MAX_GENERATION);
        assert!(p.update(&BTreeMap::new(), 8));
        assert_eq!(p.generation, MAX_GENERATION);
        // The empty set of areas still makes a first generation.
        let mut q = PrimaryState::default();
        assert!(q.update(&BTreeMap::new(), 1));
        assert_eq!(q.generation, 1);
    }

    #[test]
    fn synced_copy_runs_and_unsynced_areas_are_own() {
        let own = t("[[aliases]]\nname = \"a\"\ntype = \"host\"\nentries = []\n");
        let stored = t(R1);
        let meta = meta_with_rules(R1, "");
        let r = resolve(&own, &stored, &stored, &meta);
        let rules = r.iter().find(|x| x.area == Area::Rules).expect("rules");
        assert_eq!(rules.text, area::extract(&stored, Area::Rules));
        assert!(matches!(rules.origin, Origin::Synced { generation: 3, .. }));
        assert_eq!(rules.drift, None);
        let aliases = r.iter().find(|x| x.area == Area::Aliases).expect("aliases");
        assert_eq!(aliases.origin, Origin::Own);
        assert!(aliases.text.contains("[[aliases]]"));
    }

    #[test]
    fn local_edit_of_own_file_runs_and_is_drift() {
        // At sync time the own file had R1; the operator then edited it to R2.
        let meta = meta_with_rules(R1, R1);
        let own = t(R2);
        let r = resolve(&own, &t(R1), &t(R1), &meta);
        let rules = r.iter().find(|x| x.area == Area::Rules).expect("rules");
        assert_eq!(rules.origin, Origin::LocalEdit { generation: 3 });
        assert_eq!(rules.text, area::extract(&own, Area::Rules));
        let d = rules.drift.as_ref().expect("drift");
        assert_eq!((d.before, d.after, d.added, d.removed), (1, 2, 1, 0));
    }

    #[test]
    fn edited_synced_copy_is_drift() {
        let meta = meta_with_rules(R1, "");
        let r = resolve(&t(""), &t(R2), &t(R1), &meta);
        let rules = r.iter().find(|x| x.area == Area::Rules).expect("rules");
        assert_eq!(rules.origin, Origin::EditedCopy { generation: 3 });
        assert!(rules.drift.is_some());
    }

    #[test]
    fn judge_follows_generation_drift_and_policy() {
        let meta = meta_with_rules(R1, R1);
        let clean = resolve(&t(R1), &t(R1), &t(R1), &meta);
        let drifted = resolve(&t(R2), &t(R1), &t(R1), &meta);
        let mut h = BTreeMap::new();
        h.insert(Area::Rules, area::hash(&area::extract(&t(R1), Area::Rules)));
        assert_eq!(
            judge(&meta, &clean, 3, &h, DriftPolicy::Refuse, false),
            Verdict::AlreadyApplied
        );
        assert_eq!(
            judge(&meta, &clean, 2, &h, DriftPolicy::Refuse, false),
            Verdict::Stale { have: 3 }
        );
        assert_eq!(
            judge(&meta, &clean, 4, &h, DriftPolicy::Refuse, false),
            Verdict::Apply { backup: vec![] }
        );
        match judge(&meta, &drifted, 4, &h, DriftPolicy::Refuse, false) {
            Verdict::Drift { summary } => {
                assert_eq!(summary, "rules: 1 -> 2 items (+1 -0)")
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            judge(&meta, &drifted, 4, &h, DriftPolicy::Overwrite, false),
            Verdict::Apply {
                backup: vec![Area::Rules]
            }
        );
        assert_eq!(
            judge(&meta, &drifted, 4, &h, DriftPolicy::Refuse, true),
            Verdict::Apply {
                backup: vec![Area::Rules]
            }
        );
        // Drift in an area the push does not carry is not this push's business.
        let mut only_nat = BTreeMap::new();
        only_nat.insert(Area::Nat, area::hash(""));
        assert_eq!(
            judge(&meta, &drifted, 4, &only_nat, DriftPolicy::Refuse, false),
            Verdict::Apply { backup: vec![] }
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(5),
        };
        let d: Vec<u128> = (0..7).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(d, vec![0, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(5));
    }

    fn version(protocol: u32) -> PeerVersion {
        PeerVersion {
            software: "0.1.0".into(),
            protocol,
            schema: 1,
            node: "fw2".into(),
        }
    }

    #[test]
    fn tracker_pushes_retries_with_backoff_and_heartbeats() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_millis(n);
        let mut p = PeerTracker::new(
            Backoff {
                first: Duration::from_millis(500),
                max: Duration::from_secs(5),
            },
            Duration::from_secs(2),
        );
        p.note_generation(t0, 1);
        assert_eq!(p.next(t0, 1), Step::Version);
        p.on_version(t0, (1, 1), Err(Failure::Unreachable("refused".into())));
        assert_eq!(p.next(s(100), 1), Step::Wait(s(500)));
        assert_eq!(p.next(s(500), 1), Step::Version);
        p.on_version(s(500), (1, 1), Err(Failure::Unreachable("refused".into())));
        assert_eq!(p.next(s(600), 1), Step::Wait(s(1500)));
        p.on_version(s(1500), (1, 1), Ok(version(1)));
        assert_eq!(p.next(s(1500), 1), Step::Push);
        assert!(!p.in_sync(1));
        p.on_push(s(1600), 1, 1, Ok("applied".into()));
        assert!(p.in_sync(1));
        assert_eq!(p.behind_since, None);
        assert_eq!(p.next(s(1700), 1), Step::Wait(s(3600)));
        assert_eq!(p.next(s(3600), 1), Step::Heartbeat);
        // A new generation is pushed at once.
        p.note_generation(s(3000), 2);
        assert_eq!(p.next(s(3000), 2), Step::Push);
        p.on_push(s(3100), 2, 2, Err(Failure::Drift("rules: 1 -> 2".into())));
        assert_eq!(p.drift.as_deref(), Some("rules: 1 -> 2"));
        assert_eq!(p.behind_since, Some(s(3000)));
        assert_eq!(p.next(s(3200), 2), Step::Wait(s(3600)));
        // The heartbeat answer tells the peer's generation: behind means push again.
        p.on_heartbeat(s(3600), 2, Ok((1, None)));
        assert_eq!(p.next(s(3600), 2), Step::Push);
    }

    #[test]
    fn tracker_pushes_nothing_before_the_first_generation() {
        // Generation 0 means nothing published yet: a push of it is a call the peer refuses.
        let t0 = Instant::now();
        let mut p = PeerTracker::new(
            Backoff {
                first: Duration::from_millis(500),
                max: Duration::from_secs(5),
            },
            Duration::from_secs(2),
        );
        p.note_generation(t0, 0);
        assert_eq!(p.behind_since, None);
        assert_eq!(p.next(t0, 0), Step::Idle);
        p.on_version(t0, (1, 1), Ok(version(1)));
        assert_eq!(p.next(t0, 0), Step::Idle);
        p.note_generation(t0, 1);
        assert_eq!(p.next(t0, 1), Step::Push);
    }

    #[test]
    fn tracker_reports_version_mismatch() {
        let t0 = Instant::now();
        let mut p = PeerTracker::new(
            Backoff {
                first: Duration::from_millis(500),
                max: Duration::from_secs(5),
            },
            Duration::from_secs(2),
        );
        p.on_version(t0, (1, 1), Ok(version(2)));
        match &p.last_result {
            Some(Err(Failure::Version(m))) => assert!(m.contains("protocol 2"), "{m}"),
            r => panic!("{r:?}"),
        }
        assert!(matches!(p.next(t0, 1), Step::Wait(_)));
    }

    #[test]
    fn behind_only_while_the_primary_is_heard() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut v = PrimaryView::default();
        assert!(!v.behind(t0, 0, timeout), "never heard: not behind");
        v.heard(t0, "fw1", 5);
        assert!(v.behind(t0, 4, timeout));
        assert!(!v.behind(t0, 5, timeout));
        assert!(v.behind(t0 + Duration::from_secs(10), 4, timeout));
        assert!(!v.behind(t0 + Duration::from_secs(11), 4, timeout));
        assert_eq!(v.expires(timeout), Some(t0 + timeout));
    }
}
