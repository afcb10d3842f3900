//! The peer's side: a push becomes a candidate config for the daemon to activate (the
//! decision is the pure crate's), then is stored once it runs; a rollback does the same with a
//! kept generation; and the peer is demoted while it is behind a primary it hears.

use super::compose::compose;
use super::status::now_unix;
use super::store::FileStore;
use crate::config::{Config, ConfigErrors, ParsedFile, SyncSettings};
use configsync::book::{DriftPolicy, PrimaryView};
use configsync::peer::{self, Decision, Plan};
use configsync::rpc::{ApplyAnswer, ApplyArgs, Refusal};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The demotion while behind the primary (as link-down: every VIP moves together).
pub const BEHIND_DEMOTION: u8 = 240;

#[derive(Default)]
pub struct Peer {
    pub view: PrimaryView,
    pub demoted: bool,
    pub last_apply: Option<String>,
    pub applied: u64,
    pub refused: u64,
    /// Pushes applied that named areas by hash only; delta pushes refused for want of one.
    pub applied_delta: u64,
    pub refused_need_full: u64,
}

fn own_view(own: &ParsedFile) -> &toml::Table {
    &own.plain
}

/// A candidate from a plan: the synced areas written to `incoming.toml` and composed with the
/// node's own file.
fn candidate(
    store: &mut FileStore,
    own: &ParsedFile,
    own_file: &Path,
    plan: Plan,
) -> Result<(Config, Plan), ConfigErrors> {
    let incoming = store.incoming(&plan)?;
    let config = compose(
        own,
        own_file,
        &plan.meta,
        (&incoming, &plan.stored),
        &plan.pushed_doc,
    )?;
    Ok((config, plan))
}

impl Peer {
    pub fn refuse(&mut self, r: Refusal) -> Refusal {
        self.refused += 1;
        if matches!(r, Refusal::NeedFull(_)) {
            self.refused_need_full += 1;
        }
        self.last_apply = Some(format!("refused: {r}"));
        r
    }

    /// A push: refused, already applied, or a candidate to activate.
    pub fn apply(
        &mut self,
        store: &mut FileStore,
        node: &str,
        own: &ParsedFile,
        own_file: &Path,
        policy: DriftPolicy,
        args: &ApplyArgs,
    ) -> Result<Result<ApplyAnswer, (Config, Plan)>, Refusal> {
        let decided = peer::plan_apply(store, node, own_view(own), args, policy, now_unix());
        if !matches!(decided, Err(Refusal::Stale(_))) {
            self.view
                .heard(Instant::now(), &args.source.node, args.generation);
        }
        let plan = match decided {
            Ok(Decision::AlreadyApplied(a)) => return Ok(Ok(a)),
            Ok(Decision::Apply(p)) => *p,
            Err(r) => {
                warn!(
                    "config sync: generation {} from {} refused: {r}",
                    args.generation, args.source.node
                );
                return Err(self.refuse(r));
            }
        };
        let what = plan.what.clone();
        let areas: Vec<String> = plan
            .overwritten
            .iter()
            .map(|r| r.area.to_string())
            .collect();
        match candidate(store, own, own_file, plan) {
            Ok(c) => {
                // What runs now is kept before the push replaces it.
                if let Some(kept) = peer::keep_backup(store, &c.1) {
                    warn!(
                        "config sync: {what} overwrites local changes to {} (backup {kept})",
                        areas.join(", ")
                    );
                }
                Ok(Err(c))
            }
            Err(e) => {
                warn!("config sync: {what} rejected, running config unchanged: {e}");
                Err(self.refuse(Refusal::Invalid(format!("{node} rejected {what}: {e}"))))
            }
        }
    }

    /// After the daemon tried to activate a pushed candidate: store it, or refuse it.
    pub fn finish_apply(
        &mut self,
        store: &mut FileStore,
        node: &str,
        plan: &Plan,
        activated: Result<(), String>,
        (started, checked): (Instant, Duration),
    ) -> Result<ApplyAnswer, Refusal> {
        let active = started.elapsed();
        if let Err(m) = activated {
            warn!(
                "config sync: {} rejected, running config unchanged: {m}",
                plan.what
            );
            return Err(self.refuse(Refusal::Invalid(format!(
                "{node} rejected {}: {m}",
                plan.what
            ))));
        }
        let mut answer = peer::commit(store, node, plan).map_err(|r| self.refuse(r))?;
        if !plan.overwritten.is_empty() {
            warn!("config sync: {}", answer.message);
        }
        let total = started.elapsed();
        answer.message += &format!(
            " in {} ms (checked {}, activated {}, stored {})",
            total.as_millis(),
            checked.as_millis(),
            active.saturating_sub(checked).as_millis(),
            total.saturating_sub(active).as_millis()
        );
        info!("config sync: {}", answer.message);
        self.applied += 1;
        if !plan.by_hash.is_empty() {
            self.applied_delta += 1;
        }
        self.last_apply = Some(format!("ok: {}", answer.message));
        Ok(answer)
    }

    /// `tandem config rollback [--to GEN]`: a candidate with a kept generation's areas.
    pub fn rollback(
        &mut self,
        store: &mut FileStore,
        node: &str,
        own: &ParsedFile,
        own_file: &Path,
        to: Option<u64>,
    ) -> Result<(Config, Plan), String> {
        let plan = peer::plan_rollback(store, node, own_view(own), to)?;
        candidate(store, own, own_file, plan).map_err(|e| e.to_string())
    }

    pub fn finish_rollback(
        &mut self,
        store: &mut FileStore,
        node: &str,
        plan: &Plan,
    ) -> Result<String, String> {
        let m = peer::commit_rollback(store, node, plan)?;
        info!("config sync: {m}");
        Ok(m)
    }

    /// Whether the demotion should change: demoted while behind a primary it hears (unless
    /// the operator turned that off). Returns the new value when it changes.
    pub fn demotion(&mut self, cfg: &Config, s: &SyncSettings, now: Instant) -> Option<u8> {
        let ours = applied_generation(cfg);
        let behind = self.view.behind(now, ours, s.primary_timeout);
        let demote = behind && s.demote_when_behind;
        if demote == self.demoted {
            return None;
        }
        self.demoted = demote;
        if demote {
            warn!(
                "config sync: generation {ours} is behind {}'s {}: demoted by {BEHIND_DEMOTION} until synced",
                self.view.source, self.view.generation
            );
        } else if behind {
            info!("config sync: behind, but demote_when_behind = false: demotion lifted");
        } else if self.view.generation > ours {
            info!(
                "config sync: primary {} not heard for {} s: config-sync demotion lifted (running generation {ours})",
                self.view.source,
                s.primary_timeout.as_secs()
            );
        } else {
            info!("config sync: at generation {ours}, in step with the primary: demotion lifted");
        }
        Some(if demote { BEHIND_DEMOTION } else { 0 })
    }
}

/// The generation a peer runs (0: nothing synced yet).
pub fn applied_generation(cfg: &Config) -> u64 {
    cfg.provenance.as_ref().map_or(0, |p| p.meta.generation)
}
