//! What a peer decides about a push or a rollback, over its store: whether it is stale, already
//! applied, blocked by drift, or to be applied (and what its new record and stored areas are).
//! Pure: the store is a trait, times are passed in, and activation is the caller's: it gets a
//! [`Plan`], activates the candidate it describes, and only then [`commit`]s it.

use crate::area::{self, Area};
use crate::book::{self, AreaRecord, DriftPolicy, RunningArea, SyncedMeta, Verdict};
use crate::delta;
use crate::rpc::{ApplyAnswer, ApplyArgs, Refusal};
use std::collections::BTreeMap;

/// A parsed areas document, shared: 10k rules take longer to copy than to point at.
pub type Doc = std::sync::Arc<toml::Table>;

/// A peer's stored sync state (the daemon keeps it in files in its state dir).
pub trait Store {
    /// The record of the last applied push; None before the first.
    fn meta(&self) -> Result<Option<SyncedMeta>, String>;
    /// The synced areas as they run (an operator may have edited them: that is drift).
    fn stored(&mut self) -> Result<Doc, String>;
    /// The synced areas as last pushed (kept untouched to tell drift).
    fn pushed(&mut self) -> Result<Doc, String>;
    /// The areas of a kept generation (None when it is not kept).
    fn generation(&mut self, generation: u64) -> Result<Option<toml::Table>, String>;
    /// Generations kept for rollback, oldest first.
    fn history(&self) -> Vec<u64>;
    /// Writes the new state; `new_generation` also keeps it in the history.
    fn save(&mut self, plan: &Plan, new_generation: bool) -> Result<(), String>;
    /// Keeps the drifted areas (as they ran) before an overwrite; returns where.
    fn backup(&mut self, plan: &Plan) -> Result<String, String>;
    /// The canonical text of each area of what [`Store::stored`] / [`Store::pushed`] last
    /// returned, where the store knows it without serializing (it wrote that very file);
    /// the areas left out are extracted from the table.
    fn known_stored(&self) -> BTreeMap<Area, String> {
        BTreeMap::new()
    }
    fn known_pushed(&self) -> BTreeMap<Area, String> {
        BTreeMap::new()
    }
}

/// What is about to run on the peer, and what is stored once it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `generation N from fw1` (or `rollback to generation N`), for messages.
    pub what: String,
    pub meta: SyncedMeta,
    /// Canonical texts of every synced area: as they will run, and as pushed.
    pub stored: BTreeMap<Area, String>,
    pub pushed: BTreeMap<Area, String>,
    /// The same areas parsed (one key each).
    pub stored_doc: Doc,
    pub pushed_doc: Doc,
    /// Drifted areas that the push overwrites (policy overwrite or force), with their running
    /// text, kept as a backup at commit.
    pub overwritten: Vec<RunningArea>,
    /// `rules 12, vips 1`: what the push carries.
    pub summary: String,
    /// The previous record (for the message of a rollback).
    pub previous: SyncedMeta,
    /// The areas the push named by hash only (taken from the last push the peer held).
    pub by_hash: Vec<Area>,
}

/// The outcome of looking at a push.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The peer already runs that generation: nothing to do, answer this.
    AlreadyApplied(ApplyAnswer),
    /// Activate the candidate, then [`commit`].
    Apply(Box<Plan>),
}

fn internal(e: String) -> Refusal {
    Refusal::Internal(e)
}

/// Looks at a push: versions, area texts, generation, drift. `own` is the node's own config
/// document (as it runs: its version of every area is what a local edit changes).
pub fn plan_apply(
    store: &mut impl Store,
    node: &str,
    own: &toml::Table,
    args: &ApplyArgs,
    policy: DriftPolicy,
    now_unix: u64,
) -> Result<Decision, Refusal> {
    let g = args.generation;
    let src = &args.source.node;
    let ours = (crate::PROTOCOL_VERSION, crate::SCHEMA_VERSION);
    if (args.source.protocol, args.source.schema) != ours {
        return Err(Refusal::Version(format!(
            "{src} speaks protocol {} / config schema {}, {node} speaks {} / {}: upgrade the older node",
            args.source.protocol, args.source.schema, ours.0, ours.1
        )));
    }
    // Every area text must parse as that area alone; canonical from here on.
    let mut pushed_now = BTreeMap::new();
    let mut pushed_docs = BTreeMap::new();
    for (a, text) in &args.areas {
        let doc = area::doc_of(*a, text)
            .map_err(|e| Refusal::BadRequest(format!("generation {g} from {src}: {e}")))?;
        pushed_now.insert(*a, area::extract(&doc, *a));
        pushed_docs.insert(*a, doc);
    }
    let meta = store.meta().map_err(internal)?.unwrap_or_default();
    // An unreadable stored copy counts as edited (drift), not as an error.
    let stored = store.stored().unwrap_or_default();
    let pushed = store.pushed().unwrap_or_default();
    let (known_stored, known_pushed) = (store.known_stored(), store.known_pushed());
    let running = book::resolve_known(own, &stored, &pushed, &meta, &known_stored);
    // Hash-only areas are judged by the hash pushed; their text is looked up only to apply.
    let hashes: BTreeMap<Area, String> = pushed_now
        .iter()
        .map(|(a, t)| (*a, area::hash(t)))
        .chain(args.unchanged.iter().map(|(a, h)| (*a, h.clone())))
        .collect();
    let overwrite = match book::judge(&meta, &running, g, &hashes, policy, args.force) {
        Verdict::AlreadyApplied => {
            return Ok(Decision::AlreadyApplied(ApplyAnswer {
                applied: false,
                generation: g,
                node: node.to_string(),
                message: format!("{node} already runs generation {g}"),
            }))
        }
        Verdict::Stale { have } => {
            return Err(Refusal::Stale(format!(
                "stale push: {node} has generation {have} (from {}); the push is generation {g}",
                meta.source
            )))
        }
        Verdict::Drift { summary } => {
            return Err(Refusal::Drift(format!(
                "drift on {node}: its synced areas were changed locally since generation {} ({summary}); policy refuse: nothing changed. Undo the local change on {node}, or push with force (tandem config push --force) to overwrite it (a backup is kept)",
                meta.generation
            )))
        }
        Verdict::Apply { backup } => backup,
    };
    // Hash-only areas: the text of the last push, if it is the one named; else refused, and
    // the primary pushes them whole.
    let what = format!("generation {g} from {src}");
    let by_hash: Vec<Area> = args.unchanged.keys().copied().collect();
    let held = delta::resolve(
        &meta,
        &args.unchanged,
        |a| {
            known_pushed
                .get(&a)
                .cloned()
                .unwrap_or_else(|| area::extract(&pushed, a))
        },
        node,
        &what,
    )?;
    for (a, text) in held {
        let mut doc = toml::Table::new();
        if let Some(v) = pushed.get(a.as_str()) {
            doc.insert(a.as_str().to_string(), v.clone());
        }
        pushed_docs.insert(a, doc);
        pushed_now.insert(a, text);
    }

    // The new record: pushed areas replace, areas not in this push stay as they are.
    let mut new_meta = SyncedMeta {
        generation: g,
        source: src.clone(),
        time: now_unix,
        areas: meta.areas.clone(),
        rolled_back_to: None,
    };
    for (a, text) in &pushed_now {
        new_meta.areas.insert(
            *a,
            AreaRecord {
                hash: area::hash(text),
                local_hash: area::hash(&area::extract(own, *a)),
                generation: g,
                time: now_unix,
                source: src.clone(),
                items: pushed_docs.get(a).map_or(0, |d| area::count(d, *a)),
            },
        );
    }
    let mut summary = pushed_docs
        .iter()
        .map(|(a, d)| format!("{a} {}", area::count(d, *a)))
        .collect::<Vec<_>>()
        .join(", ");
    if !by_hash.is_empty() {
        summary += &format!(
            "; {} sent whole, {} by hash",
            pushed_docs.len() - by_hash.len(),
            by_hash.len()
        );
    }
    let mut plan = Plan {
        what,
        meta: new_meta,
        stored: BTreeMap::new(),
        pushed: BTreeMap::new(),
        stored_doc: Doc::default(),
        pushed_doc: Doc::default(),
        overwritten: running
            .into_iter()
            .filter(|r| overwrite.contains(&r.area))
            .collect(),
        summary,
        previous: meta,
        by_hash,
    };
    let areas: Vec<Area> = plan.meta.areas.keys().copied().collect();
    for a in areas {
        let key = a.as_str();
        match (pushed_now.remove(&a), pushed_docs.remove(&a)) {
            (Some(t), Some(mut d)) => {
                plan.stored.insert(a, t.clone());
                plan.pushed.insert(a, t);
                if let Some(v) = d.remove(key) {
                    Doc::make_mut(&mut plan.stored_doc).insert(key.to_string(), v.clone());
                    Doc::make_mut(&mut plan.pushed_doc).insert(key.to_string(), v);
                }
            }
            _ => {
                let known = |k: &BTreeMap<Area, String>, doc: &toml::Table| {
                    k.get(&a).cloned().unwrap_or_else(|| area::extract(doc, a))
                };
                plan.stored.insert(a, known(&known_stored, &stored));
                plan.pushed.insert(a, known(&known_pushed, &pushed));
                if let Some(v) = stored.get(key) {
                    Doc::make_mut(&mut plan.stored_doc).insert(key.to_string(), v.clone());
                }
                if let Some(v) = pushed.get(key) {
                    Doc::make_mut(&mut plan.pushed_doc).insert(key.to_string(), v.clone());
                }
            }
        }
    }
    Ok(Decision::Apply(Box::new(plan)))
}

/// Keeps the drifted areas a push overwrites, as they run, before it is activated. Returns
/// where (or why not), None when it overwrites nothing.
pub fn keep_backup(store: &mut impl Store, plan: &Plan) -> Option<String> {
    if plan.overwritten.is_empty() {
        return None;
    }
    Some(
        store
            .backup(plan)
            .unwrap_or_else(|e| format!("not written: {e}")),
    )
}

/// Stores an applied push (after its candidate was activated): the new record, the stored
/// areas, the history.
pub fn commit(store: &mut impl Store, node: &str, plan: &Plan) -> Result<ApplyAnswer, Refusal> {
    store.save(plan, true).map_err(|e| {
        Refusal::Internal(format!(
            "{} is running but could not be stored: {e}",
            plan.what
        ))
    })?;
    let mut message = format!("{node} applied {} ({})", plan.what, plan.summary);
    if !plan.overwritten.is_empty() {
        message += &format!(
            "; overwrote local changes to {} (a backup was kept)",
            plan.overwritten
                .iter()
                .map(|r| r.area.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ApplyAnswer {
        applied: true,
        generation: plan.meta.generation,
        node: node.to_string(),
        message,
    })
}

/// A rollback on a peer: the synced areas of a kept generation run again (default: the one
/// before what runs now). The record of the last push stays, so the primary sees the rollback
/// as drift and, with policy refuse, does not undo it.
pub fn plan_rollback(
    store: &mut impl Store,
    node: &str,
    own: &toml::Table,
    to: Option<u64>,
) -> Result<Plan, String> {
    let meta = store
        .meta()?
        .ok_or_else(|| format!("{node} has received no synced areas yet"))?;
    let gens = store.history();
    let current = meta.rolled_back_to.unwrap_or(meta.generation);
    let target = match to {
        Some(t) if gens.contains(&t) => t,
        Some(t) => {
            return Err(format!(
                "generation {t} is not kept (kept: {})",
                gens.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        None => *gens
            .iter()
            .rev()
            .find(|g| **g < current)
            .ok_or_else(|| format!("no generation older than {current} is kept"))?,
    };
    let old = store
        .generation(target)?
        .ok_or_else(|| format!("generation {target} is not kept"))?;
    let current_stored = store.stored().unwrap_or_default();
    let pushed = store.pushed()?;
    let mut new_meta = meta.clone();
    new_meta.rolled_back_to = (target != meta.generation).then_some(target);
    // The rolled-back copy (not the own file) runs: the own file's current version of each
    // area is its baseline again.
    for (a, rec) in new_meta.areas.iter_mut() {
        rec.local_hash = area::hash(&area::extract(own, *a));
    }
    let mut plan = Plan {
        what: format!("rollback to generation {target}"),
        meta: new_meta,
        stored: BTreeMap::new(),
        pushed: BTreeMap::new(),
        stored_doc: Doc::default(),
        pushed_doc: pushed.clone(),
        overwritten: Vec::new(),
        summary: String::new(),
        previous: meta,
        by_hash: Vec::new(),
    };
    let areas: Vec<Area> = plan.meta.areas.keys().copied().collect();
    for a in areas {
        // An area first synced after that generation keeps its current copy.
        let from = if old.contains_key(a.as_str()) || area_listed(&old, a) {
            &old
        } else {
            &current_stored
        };
        let text = area::extract(from, a);
        if let Some(v) = from.get(a.as_str()) {
            Doc::make_mut(&mut plan.stored_doc).insert(a.as_str().to_string(), v.clone());
        }
        plan.stored.insert(a, text);
        plan.pushed.insert(a, area::extract(&pushed, a));
    }
    Ok(plan)
}

/// Whether a kept generation carried `area` (empty areas have no key, so the history file
/// lists the areas it holds under the key `areas_held`).
fn area_listed(doc: &toml::Table, a: Area) -> bool {
    doc.get(HELD_KEY)
        .and_then(toml::Value::as_array)
        .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(a.as_str())))
}

/// The key under which a stored areas document lists every area it holds (empty ones too).
pub const HELD_KEY: &str = "areas_held";

/// Stores a rollback after its candidate was activated.
pub fn commit_rollback(store: &mut impl Store, node: &str, plan: &Plan) -> Result<String, String> {
    store
        .save(plan, false)
        .map_err(|e| format!("rolled back, but could not store it: {e}"))?;
    let target = plan.meta.rolled_back_to.unwrap_or(plan.meta.generation);
    Ok(format!(
        "{node} runs the synced areas of generation {target} again (the primary's last push was generation {}){}",
        plan.previous.generation,
        if target == plan.previous.generation {
            ""
        } else {
            "; the primary sees this as drift until its next push"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Source;

    #[derive(Default)]
    struct Mem {
        meta: Option<SyncedMeta>,
        stored: toml::Table,
        pushed: toml::Table,
        history: BTreeMap<u64, toml::Table>,
        backups: usize,
    }

    impl Store for Mem {
        fn meta(&self) -> Result<Option<SyncedMeta>, String> {
            Ok(self.meta.clone())
        }
        fn stored(&mut self) -> Result<Doc, String> {
            Ok(Doc::new(self.stored.clone()))
        }
        fn pushed(&mut self) -> Result<Doc, String> {
            Ok(Doc::new(self.pushed.clone()))
        }
        fn generation(&mut self, g: u64) -> Result<Option<toml::Table>, String> {
            Ok(self.history.get(&g).cloned())
        }
        fn history(&self) -> Vec<u64> {
            self.history.keys().copied().collect()
        }
        fn save(&mut self, plan: &Plan, new_generation: bool) -> Result<(), String> {
            self.meta = Some(plan.meta.clone());
            self.stored = (*plan.stored_doc).clone();
            self.pushed = (*plan.pushed_doc).clone();
            if new_generation {
                let mut h = (*plan.pushed_doc).clone();
                h.insert(
                    HELD_KEY.into(),
                    toml::Value::Array(
                        plan.pushed
                            .keys()
                            .map(|a| toml::Value::String(a.to_string()))
                            .collect(),
                    ),
                );
                self.history.insert(plan.meta.generation, h);
            }
            Ok(())
        }
        fn backup(&mut self, _plan: &Plan) -> Result<String, String> {
            self.backups += 1;
            Ok("mem".into())
        }
    }

    fn args(g: u64, rules: &str) -> ApplyArgs {
        let mut areas = BTreeMap::new();
        areas.insert(Area::Rules, rules.to_string());
        ApplyArgs {
            generation: g,
            areas,
            unchanged: BTreeMap::new(),
            source: Source {
                node: "fw1".into(),
                software: "t".into(),
                protocol: crate::PROTOCOL_VERSION,
                schema: crate::SCHEMA_VERSION,
            },
            force: false,
        }
    }

    const R1: &str = "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\n";
    const R2: &str = "[[rules]]\ninterface = \"wan\"\naction = \"block\"\n";

    fn apply(s: &mut Mem, a: &ApplyArgs) -> Result<Decision, Refusal> {
        plan_apply(s, "fw2", &toml::Table::new(), a, DriftPolicy::Refuse, 100)
    }

    #[test]
    fn a_push_is_planned_committed_then_already_applied_and_older_ones_stale() {
        let mut s = Mem::default();
        let Ok(Decision::Apply(p)) = apply(&mut s, &args(3, R1)) else {
            panic!("expected a plan");
        };
        assert_eq!(p.what, "generation 3 from fw1");
        assert_eq!(p.summary, "rules 1");
        let a = commit(&mut s, "fw2", &p).expect("commit");
        assert!(a.applied && a.generation == 3, "{a:?}");
        assert!(matches!(
            apply(&mut s, &args(3, R1)),
            Ok(Decision::AlreadyApplied(_))
        ));
        let e = apply(&mut s, &args(2, R2)).expect_err("stale");
        assert_eq!(e.code(), crate::rpc::code::STALE);
        // `force` overrides drift, never the generation order: no rollback by push.
        let mut forced = args(2, R2);
        forced.force = true;
        let e = apply(&mut s, &forced).expect_err("stale even with force");
        assert_eq!(e.code(), crate::rpc::code::STALE);
        let mut bad = args(4, "[[rules]\n");
        assert!(matches!(apply(&mut s, &bad), Err(Refusal::BadRequest(_))));
        bad.source.schema += 1;
        assert!(matches!(apply(&mut s, &bad), Err(Refusal::Version(_))));
    }

    #[test]
    fn drift_is_refused_and_force_overwrites_with_a_backup() {
        let mut s = Mem::default();
        let Ok(Decision::Apply(p)) = apply(&mut s, &args(1, R1)) else {
            panic!("plan");
        };
        commit(&mut s, "fw2", &p).expect("commit");
        // Someone edits the stored copy.
        s.stored = toml::from_str(R2).expect("toml");
        let e = apply(&mut s, &args(2, R2)).expect_err("drift");
        assert!(matches!(e, Refusal::Drift(_)), "{e:?}");
        assert!(e.message().contains("nothing changed"), "{e}");
        let mut forced = args(2, R2);
        forced.force = true;
        let Ok(Decision::Apply(p)) = apply(&mut s, &forced) else {
            panic!("forced plan");
        };
        assert_eq!(p.overwritten.len(), 1);
        assert_eq!(keep_backup(&mut s, &p).as_deref(), Some("mem"));
        let a = commit(&mut s, "fw2", &p).expect("commit");
        assert_eq!(s.backups, 1);
        assert!(
            a.message.contains("overwrote local changes to rules"),
            "{a:?}"
        );
    }

    #[test]
    fn rollback_takes_the_previous_generation() {
        let mut s = Mem::default();
        for (g, r) in [(1, R1), (2, R2)] {
            let Ok(Decision::Apply(p)) = apply(&mut s, &args(g, r)) else {
                panic!("plan");
            };
            commit(&mut s, "fw2", &p).expect("commit");
        }
        let p = plan_rollback(&mut s, "fw2", &toml::Table::new(), None).expect("rollback");
        assert_eq!(p.meta.rolled_back_to, Some(1));
        let r1 = area::canonical(Area::Rules, R1).expect("canonical");
        assert_eq!(p.stored.get(&Area::Rules), Some(&r1));
        let m = commit_rollback(&mut s, "fw2", &p).expect("commit");
        assert!(m.contains("generation 1 again"), "{m}");
        assert!(plan_rollback(&mut s, "fw2", &toml::Table::new(), Some(9)).is_err());
    }

    /// fw1 pushes rules and aliases; the next push names aliases by hash only.
    fn two_areas(g: u64, rules: &str, aliases: Option<&str>) -> ApplyArgs {
        let mut a = args(g, rules);
        let text = "[[aliases]]\nname = \"web\"\ntype = \"port\"\nentries = [80]\n";
        let text = area::canonical(Area::Aliases, text).expect("canonical");
        match aliases {
            Some("hash") => {
                a.unchanged.insert(Area::Aliases, area::hash(&text));
            }
            Some(other) => {
                a.unchanged.insert(Area::Aliases, other.to_string());
            }
            None => {
                a.areas.insert(Area::Aliases, text);
            }
        }
        a
    }

    #[test]
    fn a_hash_only_area_takes_the_text_of_the_last_push() {
        let mut s = Mem::default();
        let Ok(Decision::Apply(p)) = apply(&mut s, &two_areas(1, R1, None)) else {
            panic!("plan");
        };
        assert!(p.by_hash.is_empty());
        commit(&mut s, "fw2", &p).expect("commit");
        let Ok(Decision::Apply(p)) = apply(&mut s, &two_areas(2, R2, Some("hash"))) else {
            panic!("delta plan");
        };
        assert_eq!(p.by_hash, vec![Area::Aliases]);
        assert_eq!(p.summary, "aliases 1, rules 1; 1 sent whole, 1 by hash");
        // The area runs and is recorded exactly as a whole push would have it.
        let whole = {
            let mut t = Mem::default();
            let Ok(Decision::Apply(q)) = apply(&mut t, &two_areas(2, R2, None)) else {
                panic!("plan");
            };
            q
        };
        assert_eq!(p.stored, whole.stored);
        assert_eq!(p.pushed, whole.pushed);
        assert_eq!(p.stored_doc, whole.stored_doc);
        assert_eq!(p.pushed_doc, whole.pushed_doc);
        assert_eq!(
            p.meta.areas[&Area::Aliases].hash,
            whole.meta.areas[&Area::Aliases].hash
        );
        assert_eq!(p.meta.areas[&Area::Aliases].items, 1);
        assert_eq!(p.meta.areas[&Area::Aliases].generation, 2);
        let a = commit(&mut s, "fw2", &p).expect("commit");
        assert!(a.message.contains("1 by hash"), "{a:?}");
        // The same generation again, by hash: already applied.
        assert!(matches!(
            apply(&mut s, &two_areas(2, R2, Some("hash"))),
            Ok(Decision::AlreadyApplied(_))
        ));
    }

    #[test]
    fn a_hash_the_peer_does_not_hold_is_refused_as_need_full() {
        let mut s = Mem::default();
        // A new peer: it holds nothing.
        let e = apply(&mut s, &two_areas(1, R1, Some("hash"))).expect_err("need full");
        assert_eq!(e.code(), crate::rpc::code::NEED_FULL);
        assert!(
            e.message().contains("holds no pushed copy of aliases"),
            "{e}"
        );
        let Ok(Decision::Apply(p)) = apply(&mut s, &two_areas(1, R1, None)) else {
            panic!("plan");
        };
        commit(&mut s, "fw2", &p).expect("commit");
        // Another hash than the one it holds (the primary's idea of it is wrong).
        let other = area::hash("something else");
        let e = apply(&mut s, &two_areas(2, R2, Some(&other))).expect_err("mismatch");
        assert!(matches!(e, Refusal::NeedFull(_)), "{e:?}");
        assert!(e.message().contains("the push names"), "{e}");
        // The stored copy of the last push lost (restored from elsewhere, emptied): the
        // record's hash matches, the text does not.
        let kept = s.pushed.clone();
        s.pushed = toml::Table::new();
        let e = apply(&mut s, &two_areas(2, R2, Some("hash"))).expect_err("lost");
        assert!(e.message().contains("stored copy"), "{e}");
        // Nothing was stored by any refusal; with the copy back the delta goes through.
        assert_eq!(s.meta.as_ref().map(|m| m.generation), Some(1));
        s.pushed = kept;
        assert!(matches!(
            apply(&mut s, &two_areas(2, R2, Some("hash"))),
            Ok(Decision::Apply(_))
        ));
        // Stale and drift are judged before the delta is resolved: a stale delta is stale.
        let e = apply(&mut s, &two_areas(0, R2, Some(&other)));
        assert!(e.is_err());
    }

    #[test]
    fn a_delta_after_a_rollback_restores_the_pushed_copy_like_a_whole_push() {
        let mut s = Mem::default();
        for (g, r) in [(1, R1), (2, R2)] {
            let Ok(Decision::Apply(p)) = apply(&mut s, &two_areas(g, r, None)) else {
                panic!("plan");
            };
            commit(&mut s, "fw2", &p).expect("commit");
        }
        let p = plan_rollback(&mut s, "fw2", &toml::Table::new(), Some(1)).expect("rollback");
        commit_rollback(&mut s, "fw2", &p).expect("commit");
        // The rollback is drift: refused under policy refuse, delta or not.
        let e = apply(&mut s, &two_areas(3, R2, Some("hash"))).expect_err("drift");
        assert!(matches!(e, Refusal::Drift(_)), "{e:?}");
        // Forced: the hash-only aliases come from the last push (generation 2), not from
        // the rolled-back copy.
        let mut forced = two_areas(3, R2, Some("hash"));
        forced.force = true;
        let Ok(Decision::Apply(p)) = apply(&mut s, &forced) else {
            panic!("forced delta");
        };
        assert_eq!(p.stored.get(&Area::Aliases), p.pushed.get(&Area::Aliases));
        assert_eq!(p.meta.rolled_back_to, None);
    }
}
