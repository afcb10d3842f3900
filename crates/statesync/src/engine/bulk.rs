//! Bulk sync, the requesting side: asking the peers for their table, following the transfer,
//! retrying, and becoming ready when a complete one arrives. A node is not ready (CARP demotes
//! it) until then, as with pfsync.
//!
//! A round is the first request plus `bulk_retries` retries, `bulk_timeout` apart (each with a
//! new request id; a targeted request is widened to anyone). When a round fails the engine
//! raises [`Alarm::BulkFailed`] (once, see [`Replicator::bulk_alarmed`]) so the daemon can stop
//! demoting a node that may have no peer at all, but it never gives up: a node without a
//! complete table that stopped asking would stay NOT READY forever (the lab saw it when the
//! peer started during the last attempt, after its request had gone out). So `Failed` is a
//! wait: after `bulk_backoff`, doubling per further failure up to `bulk_backoff_max`, it asks
//! again (one attempt at a time: little traffic when nobody is there), and a peer coming alive
//! ends the wait at once (see [`Replicator::peer_alive`]).

use super::api::{Action, Alarm, Dest, TimerKind};
use super::config::Config;
use super::table::Origin;
use super::tx::Op;
use super::Replicator;
use crate::key::TKey;
use crate::wire::{NodeId, Record};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BulkRx {
    Idle,
    Requesting {
        request: u32,
        attempt: u32,
        target: Option<NodeId>,
        /// We asked for the sender's own conns only (we were ready): every state is the
        /// sender's own. Otherwise (a full bulk) it relays other nodes' conns too.
        own_only: bool,
        deadline: Instant,
    },
    Receiving {
        from: NodeId,
        request: u32,
        attempt: u32,
        target: Option<NodeId>,
        own_only: bool,
        received: u64,
        start_gen: u64,
        deadline: Instant,
    },
    Done {
        from: NodeId,
        count: u64,
    },
    /// The last round failed; the next attempt is due at `retry_at`.
    Failed {
        attempts: u32,
        retry_at: Option<Instant>,
    },
}

/// The wait after the one that was just used: doubled, within `bulk_backoff..=bulk_backoff_max`.
fn next_backoff(cfg: &Config, wait: Duration) -> Duration {
    let max = cfg.bulk_backoff_max.max(cfg.bulk_backoff);
    wait.saturating_mul(2).clamp(cfg.bulk_backoff, max)
}

impl Replicator {
    /// The bulk timer: when our request or transfer times out, or when a failed one is tried
    /// again.
    pub(super) fn bulk_timer(&self) -> Option<(Instant, TimerKind)> {
        match self.bulk {
            BulkRx::Requesting { deadline, .. } | BulkRx::Receiving { deadline, .. } => {
                Some((deadline, TimerKind::BulkTimeout))
            }
            BulkRx::Failed {
                retry_at: Some(t), ..
            } => Some((t, TimerKind::BulkRetry)),
            _ => None,
        }
    }

    pub(super) fn bulk_timers(&mut self, now: Instant) {
        match self.bulk {
            BulkRx::Requesting {
                attempt,
                target,
                deadline,
                ..
            }
            | BulkRx::Receiving {
                attempt,
                target,
                deadline,
                ..
            } if deadline <= now => self.retry_bulk(now, attempt, target),
            BulkRx::Failed {
                attempts,
                retry_at: Some(t),
            } if t <= now => {
                self.counters.bulk_retries += 1;
                self.start_bulk(now, attempts.saturating_add(1), None);
            }
            _ => {}
        }
    }

    /// [`Input::Resync`](super::Input::Resync): whatever was missed while cut off is only
    /// known after a new bulk, so not ready until it completes (CARP demotes meanwhile); a
    /// fresh start, so a failure raises `BulkFailed` again.
    pub(super) fn on_resync(&mut self, now: Instant) {
        if self.ready {
            self.ready = false;
            self.actions.push_back(Action::ReadyChanged(false));
        }
        self.bulk_alarmed = false;
        self.start_bulk(now, 1, None);
    }

    /// A peer came alive: first heard (its epoch confirmed), restarted, heard again after it
    /// was silent for `peer_timeout` or reported down, or reported up by the daemon. If our
    /// bulk failed, a new round starts now instead of after the backoff. If our request is
    /// out, it may have gone before this peer could hear it: it goes again, to this peer (the
    /// same id: a peer that did hear it and answered does not answer twice), and should this
    /// attempt still time out, the next one goes at once even if it was the round's last. If
    /// no bulk is under way and the peer owes us its conns (see [`Self::need_resync`]), it is
    /// asked for them now.
    pub(super) fn peer_alive(&mut self, now: Instant, addr: SocketAddr) {
        match self.bulk {
            BulkRx::Failed { .. } => self.start_bulk(now, 1, None),
            BulkRx::Idle | BulkRx::Done { .. } => {
                // It owes us its conns (a gap we gave up on while it could not be asked).
                let owed = self
                    .resync_owed
                    .keys()
                    .copied()
                    .find(|n| self.peers.get(n).is_some_and(|p| p.addr == addr));
                if let Some(n) = owed {
                    self.start_bulk(now, 1, Some(n));
                }
            }
            BulkRx::Requesting {
                request,
                target,
                own_only,
                ..
            } if target.is_none_or(|t| self.peers.get(&t).is_some_and(|p| p.addr == addr)) => {
                self.bulk_peer_joined = true;
                self.send_control(
                    Dest::Peer(addr),
                    &[Record::BulkRequest {
                        target: target.unwrap_or(NodeId(0)),
                        request,
                        own_only,
                    }],
                );
            }
            _ => {}
        }
    }

    /// Our bulk request again, for a heartbeat to every peer, while it is not answered and a
    /// peer that may answer it is alive. The request is one datagram, sent once per attempt,
    /// `bulk_timeout` apart: on a lossy link a round of them could all be lost while the peer
    /// was there (seen: four in a row, the first into a partition, then the backoff). A peer
    /// answers an id once, so the copies cost nothing more; alone, nothing is repeated.
    pub(super) fn unanswered_request(&self, to: Dest) -> Option<Record> {
        let BulkRx::Requesting {
            request,
            target,
            own_only,
            ..
        } = self.bulk
        else {
            return None;
        };
        let now = self.last_now;
        let alive = |n: &NodeId| {
            self.peers.get(n).is_some_and(|p| {
                p.cur.is_some()
                    && !p.down
                    && now.saturating_duration_since(p.last_seen) < self.cfg.peer_timeout
            })
        };
        let someone = match target {
            Some(t) => alive(&t),
            None => self.peers.keys().any(alive),
        };
        (to == Dest::All && someone).then_some(Record::BulkRequest {
            target: target.unwrap_or(NodeId(0)),
            request,
            own_only,
        })
    }

    pub(super) fn start_bulk(&mut self, now: Instant, attempt: u32, target: Option<NodeId>) {
        if attempt == 1 {
            // A new round (start, Resync, a peer came alive, a gap): the backoff starts over.
            self.bulk_backoff = self.cfg.bulk_backoff;
        }
        self.bulk_peer_joined = false;
        let request = (self.rng.next() as u32).max(1);
        let own_only = self.ready;
        self.bulk = BulkRx::Requesting {
            request,
            attempt,
            target,
            own_only,
            deadline: now + self.cfg.bulk_timeout,
        };
        let dest = target
            .and_then(|t| self.peers.get(&t))
            .map_or(Dest::All, |p| Dest::Peer(p.addr));
        self.send_control(
            dest,
            &[Record::BulkRequest {
                target: target.unwrap_or(NodeId(0)),
                request,
                own_only,
            }],
        );
    }

    pub(super) fn retry_bulk(&mut self, now: Instant, attempt: u32, target: Option<NodeId>) {
        if attempt > self.cfg.bulk_retries {
            let wait = self.bulk_backoff;
            self.bulk_backoff = next_backoff(&self.cfg, wait);
            self.bulk = BulkRx::Failed {
                attempts: attempt,
                retry_at: now.checked_add(wait),
            };
            self.bulk_tombstones.clear();
            self.counters.bulk_failed += 1;
            if !self.bulk_alarmed {
                self.bulk_alarmed = true;
                self.actions
                    .push_back(Action::Alarm(Alarm::BulkFailed { attempts: attempt }));
            }
            if self.bulk_peer_joined {
                // A peer came alive during the attempt: as if it had come after the failure.
                self.start_bulk(now, 1, None);
            }
        } else {
            self.counters.bulk_retries += 1;
            // A targeted request that failed is widened to anyone.
            let target = if attempt >= 2 { None } else { target };
            self.start_bulk(now, attempt + 1, target);
        }
    }

    /// Something from `from` was lost for good: it owes us its conns again. Asked at once
    /// unless a bulk is under way; then when that one is over (see [`Self::next_owed`]). The
    /// bulk under way does not cover the loss: from another peer, it neither brings nor sweeps
    /// `from`'s conns as `from` has them (a full bulk relays what its sender holds, and sweeps
    /// only what its sender announced); from `from` itself, it started before the loss (a
    /// delete lost after a conn's bulk state left that conn behind).
    pub(super) fn need_resync(&mut self, now: Instant, from: NodeId) {
        self.gen += 1;
        self.resync_owed.insert(from, self.gen);
        if matches!(
            self.bulk,
            BulkRx::Idle | BulkRx::Done { .. } | BulkRx::Failed { .. }
        ) {
            self.start_bulk(now, 1, Some(from));
        }
    }

    /// No bulk under way: asks the first peer that still owes us its conns and is alive (the
    /// others are asked when they come alive, see [`Self::peer_alive`]).
    fn next_owed(&mut self, now: Instant) {
        if !matches!(self.bulk, BulkRx::Idle | BulkRx::Done { .. }) {
            return;
        }
        let peer_timeout = self.cfg.peer_timeout;
        let next = self.resync_owed.keys().copied().find(|n| {
            self.peers.get(n).is_some_and(|p| {
                !p.down && now.saturating_duration_since(p.last_seen) < peer_timeout
            })
        });
        if let Some(n) = next {
            self.start_bulk(now, 1, Some(n));
        }
    }

    pub(super) fn bulk_start(&mut self, now: Instant, from: NodeId, request: u32) {
        let deadline = now + self.cfg.bulk_timeout;
        match self.bulk {
            BulkRx::Requesting {
                request: r,
                attempt,
                target,
                own_only,
                ..
            } if r == request => {
                self.bulk = BulkRx::Receiving {
                    from,
                    request,
                    attempt,
                    target,
                    own_only,
                    received: 0,
                    start_gen: self.gen,
                    deadline,
                };
                // Before the installs this datagram brings.
                self.update_quiet();
            }
            BulkRx::Receiving {
                from: f,
                request: r,
                attempt,
                target,
                own_only,
                ..
            } if f == from && r == request => {
                // The sender started over (it heard our request twice).
                self.bulk = BulkRx::Receiving {
                    from,
                    request,
                    attempt,
                    target,
                    own_only,
                    received: 0,
                    start_gen: self.gen,
                    deadline,
                };
            }
            _ => {}
        }
    }

    pub(super) fn bulk_end(&mut self, now: Instant, from: NodeId, request: u32, count: u64) {
        let BulkRx::Receiving {
            from: f,
            request: r,
            attempt,
            target,
            received,
            start_gen,
            ..
        } = self.bulk
        else {
            return;
        };
        if f != from || r != request {
            return;
        }
        if count != received {
            self.counters.bulk_count_mismatch += 1;
            self.retry_bulk(now, attempt, target);
            return;
        }
        // What the sender had announced before and did not send now is gone on the sender.
        let stale: Vec<TKey> = self
            .table
            .iter()
            .filter(|(_, e)| e.origin == Origin::Peer(from) && e.gen < start_gen)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(e) = self.table.remove(&k) {
                self.remember_removed(now, k, e);
            }
            self.pending.remove(&k);
            self.counters.bulk_swept += 1;
            self.push_remove(k);
        }
        self.flush_batches();
        self.counters.bulk_completed += 1;
        self.bulk = BulkRx::Done { from, count };
        self.bulk_tombstones.clear();
        self.bulk_alarmed = false;
        if self
            .resync_owed
            .get(&from)
            .is_some_and(|lost| *lost <= start_gen)
        {
            self.resync_owed.remove(&from);
            // A barrier held back by the gap can be answered now.
            self.ack_barrier_when_applied(from);
        }
        if !self.ready {
            self.ready = true;
            self.actions.push_back(Action::ReadyChanged(true));
            self.announce_deferred(now);
        }
        self.next_owed(now);
    }

    /// Announces the conns of the startup dump that the first bulk did not bring.
    fn announce_deferred(&mut self, now: Instant) {
        let keys: Vec<TKey> = self
            .table
            .iter_mut()
            .filter(|(_, e)| e.unannounced)
            .map(|(k, e)| {
                e.unannounced = false;
                *k
            })
            .collect();
        self.in_snapshot = true;
        for k in keys {
            self.queue(now, k, Op::Insert);
        }
        self.in_snapshot = false;
        if !self.pending.is_empty() {
            self.flush(now, true);
        }
    }

    pub(super) fn tombstone(&mut self, key: TKey) {
        if matches!(
            self.bulk,
            BulkRx::Requesting { .. } | BulkRx::Receiving { .. }
        ) {
            self.bulk_tombstones.insert(key);
        }
    }
}
