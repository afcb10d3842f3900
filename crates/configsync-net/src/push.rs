//! The primary's push loop: one task per peer, driven by a [`PeerTracker`]. It pushes each new
//! generation, retries with backoff while the peer is down or refuses, and heartbeats in
//! between (so a peer learns the primary's generation, and the primary learns the peer's
//! generation and drift). A push names the areas the peer already holds by hash only
//! (`configsync::delta`); when the peer cannot resolve one, the whole areas follow at once.

use crate::client::{CallError, Client};
use configsync::area::Area;
use configsync::book::{Backoff, Failure, PeerTracker, Step};
use configsync::delta::Split;
use configsync::rpc::{
    self, ApplyAnswer, ApplyArgs, HeartbeatAnswer, Refusal, Source, VersionAnswer,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What the primary pushes: the current generation and its synced areas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    pub generation: u64,
    pub areas: BTreeMap<Area, String>,
    /// The hash of each area's text (`area::hash`).
    pub hashes: BTreeMap<Area, String>,
    /// Bumped to make every peer push again now (`force`: overwrite drift).
    pub nonce: u64,
    pub force: bool,
}

/// Something the daemon must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// The peer holds a newer generation than ours.
    Stale { peer: String, generation: u64 },
    /// A push to the peer succeeded or failed (for the log).
    Result { peer: String, outcome: String },
    /// The peer could not resolve a delta push (it does not hold an area named by hash):
    /// the whole areas were pushed at once.
    DeltaRefused { peer: String, why: String },
}

pub struct PeerTask {
    pub name: String,
    pub client: Client,
    pub me: Source,
    pub backoff: Backoff,
    pub heartbeat: Duration,
}

fn failure(e: CallError) -> Failure {
    match e {
        CallError::Transport(s) => Failure::Unreachable(s),
        CallError::Auth => Failure::Auth("HTTP 401: the peer refused our credentials".into()),
        CallError::Http(c, s) => Failure::Error(format!("HTTP {c}: {s}")),
        CallError::BadAnswer(s) => Failure::Error(s),
        CallError::Refused(r) => match r {
            Refusal::Drift(m) => Failure::Drift(m),
            Refusal::Invalid(m) => Failure::Rejected(m),
            Refusal::Version(m) => Failure::Version(m),
            // The generation the peer holds is asked with a heartbeat (see `push`).
            Refusal::Stale(_) => Failure::Stale(0),
            other => Failure::Error(format!("fault {}: {}", other.code(), other.message())),
        },
    }
}

impl PeerTask {
    /// One `tandem.apply_areas` call: `split` says which areas go whole and which by hash.
    async fn apply(
        &self,
        p: &Payload,
        split: &Split,
        force: bool,
    ) -> Result<ApplyAnswer, CallError> {
        let args = ApplyArgs {
            generation: p.generation,
            areas: split.full.clone(),
            unchanged: split.unchanged.clone(),
            source: self.me.clone(),
            force,
        };
        let v = self
            .client
            .call(rpc::APPLY_AREAS, rpc::apply_params(&args))
            .await?;
        ApplyAnswer::decode(&v).map_err(CallError::BadAnswer)
    }

    /// Pushes `p`, as a delta where the peer holds areas; a delta it cannot resolve is
    /// followed at once by the whole areas. What the peer holds is updated.
    async fn push(
        &self,
        t: &mut PeerTracker,
        p: &Payload,
        force: bool,
        events: &mpsc::Sender<PushEvent>,
    ) -> Result<String, Failure> {
        let mut split = t.holds.split(&p.areas, &p.hashes);
        loop {
            t.holds.sent(&split);
            let r = self.apply(p, &split, force).await;
            match r {
                Ok(a) => {
                    t.holds.accepted(&p.hashes);
                    return Ok(a.message);
                }
                Err(CallError::Refused(refusal)) => {
                    if !t.holds.refused(&refusal, &split) {
                        return Err(failure(CallError::Refused(refusal)));
                    }
                    let _ = events
                        .send(PushEvent::DeltaRefused {
                            peer: self.name.clone(),
                            why: refusal.message().to_string(),
                        })
                        .await;
                    // Now nothing is held: the next split is whole (so this loops once).
                    split = t.holds.split(&p.areas, &p.hashes);
                }
                Err(e) => return Err(failure(e)),
            }
        }
    }

    async fn heartbeat(&self, generation: u64) -> Result<HeartbeatAnswer, Failure> {
        let v = self
            .client
            .call(rpc::HEARTBEAT, rpc::heartbeat_params(&self.me, generation))
            .await
            .map_err(failure)?;
        HeartbeatAnswer::decode(&v).map_err(Failure::Error)
    }

    /// Runs until the payload channel closes.
    pub async fn run(
        self,
        mut payload: watch::Receiver<Arc<Payload>>,
        shared: Arc<Mutex<BTreeMap<String, PeerTracker>>>,
        events: mpsc::Sender<PushEvent>,
    ) {
        let mut t = PeerTracker::new(self.backoff, self.heartbeat);
        let mut nonce = 0;
        let mut force = false;
        let mut last_outcome = String::new();
        loop {
            let p = payload.borrow_and_update().clone();
            let now = Instant::now();
            if p.nonce != nonce {
                nonce = p.nonce;
                force = p.force;
                t.acked = None;
            }
            t.note_generation(now, p.generation);
            match t.next(now, p.generation) {
                Step::Wait(until) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
                        changed = payload.changed() => if changed.is_err() { return },
                    }
                    continue;
                }
                Step::Idle => {
                    if payload.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Step::Version => {
                    let r = self.client.call(rpc::VERSION, vec![]).await;
                    let r = r.map_err(failure).and_then(|v| {
                        VersionAnswer::decode(&v)
                            .map(|a| a.peer_version())
                            .map_err(Failure::Error)
                    });
                    t.on_version(Instant::now(), (self.me.protocol, self.me.schema), r);
                }
                Step::Push => {
                    let mut r = self.push(&mut t, &p, force, &events).await;
                    if let Err(Failure::Stale(_)) = &r {
                        // The refusal says stale; the peer's generation comes typed, from a
                        // heartbeat, never out of the refusal's text.
                        match self.heartbeat(p.generation).await {
                            Ok(hb) => {
                                r = Err(Failure::Stale(hb.generation));
                                let _ = events
                                    .send(PushEvent::Stale {
                                        peer: self.name.clone(),
                                        generation: hb.generation,
                                    })
                                    .await;
                            }
                            Err(f) => r = Err(f),
                        }
                    }
                    if r.is_ok() {
                        force = false;
                    }
                    t.on_push(Instant::now(), p.generation, p.generation, r);
                }
                Step::Heartbeat => {
                    let r = self
                        .heartbeat(p.generation)
                        .await
                        .map(|hb| (hb.generation, hb.drift));
                    if let Ok((g, _)) = &r {
                        t.holds.peer_runs(*g, p.generation, &p.hashes);
                    }
                    t.on_heartbeat(Instant::now(), p.generation, r);
                }
            }
            let outcome = match &t.last_result {
                Some(Ok(m)) => format!("ok: {m}"),
                Some(Err(f)) => f.to_string(),
                None => String::new(),
            };
            if outcome != last_outcome {
                last_outcome.clone_from(&outcome);
                let _ = events
                    .send(PushEvent::Result {
                        peer: self.name.clone(),
                        outcome,
                    })
                    .await;
            }
            if let Ok(mut m) = shared.lock() {
                m.insert(self.name.clone(), t.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_failures_by_kind() {
        assert_eq!(
            failure(CallError::Refused(Refusal::Stale(
                "whatever it says".into()
            ))),
            Failure::Stale(0)
        );
        assert!(matches!(
            failure(CallError::Refused(Refusal::Invalid("x".into()))),
            Failure::Rejected(_)
        ));
        assert!(matches!(
            failure(CallError::Refused(Refusal::Drift("x".into()))),
            Failure::Drift(_)
        ));
        assert!(matches!(failure(CallError::Auth), Failure::Auth(_)));
    }
}
