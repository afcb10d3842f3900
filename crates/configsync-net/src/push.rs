//! The primary's push loop: one task per peer, driven by a [`PeerTracker`]. It pushes each new
//! generation, retries with backoff while the peer is down or refuses, and heartbeats in
//! between (so a peer learns the primary's generation, and the primary learns the peer's
//! generation and drift).

use crate::client::{CallError, Client};
use configsync::area::Area;
use configsync::book::{Backoff, Failure, PeerTracker, Step};
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
                    let args = ApplyArgs {
                        generation: p.generation,
                        areas: p.areas.clone(),
                        source: self.me.clone(),
                        force,
                    };
                    let mut r = self
                        .client
                        .call(rpc::APPLY_AREAS, rpc::apply_params(&args))
                        .await
                        .map_err(failure)
                        .and_then(|v| {
                            ApplyAnswer::decode(&v)
                                .map(|a| a.message)
                                .map_err(Failure::Error)
                        });
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
