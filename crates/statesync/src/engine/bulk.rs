//! Bulk sync, the requesting side: asking the peers for their table, following the transfer,
//! retrying, and becoming ready when a complete one arrives. A node is not ready (CARP demotes
//! it) until then, as with pfsync.

use super::api::{Action, Alarm, Dest, TimerKind};
use super::table::Origin;
use super::tx::Op;
use super::Replicator;
use crate::key::TKey;
use crate::wire::{NodeId, Record};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BulkRx {
    Idle,
    Requesting {
        request: u32,
        attempt: u32,
        target: Option<NodeId>,
        deadline: Instant,
    },
    Receiving {
        from: NodeId,
        request: u32,
        attempt: u32,
        target: Option<NodeId>,
        received: u64,
        start_gen: u64,
        deadline: Instant,
    },
    Done {
        from: NodeId,
        count: u64,
    },
    Failed {
        attempts: u32,
    },
}

impl Replicator {
    /// The bulk timer: when our request or transfer times out.
    pub(super) fn bulk_timer(&self) -> Option<(Instant, TimerKind)> {
        match self.bulk {
            BulkRx::Requesting { deadline, .. } | BulkRx::Receiving { deadline, .. } => {
                Some((deadline, TimerKind::BulkTimeout))
            }
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
            _ => {}
        }
    }

    pub(super) fn start_bulk(&mut self, now: Instant, attempt: u32, target: Option<NodeId>) {
        let request = (self.rng.next() as u32).max(1);
        self.bulk = BulkRx::Requesting {
            request,
            attempt,
            target,
            deadline: now + self.cfg.bulk_timeout,
        };
        let dest = target
            .and_then(|t| self.peers.get(&t))
            .map_or(Dest::All, |p| Dest::Peer(p.addr));
        let own_only = self.ready;
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
            self.bulk = BulkRx::Failed { attempts: attempt };
            self.bulk_tombstones.clear();
            self.counters.bulk_failed += 1;
            self.actions
                .push_back(Action::Alarm(Alarm::BulkFailed { attempts: attempt }));
        } else {
            self.counters.bulk_retries += 1;
            // A targeted request that failed is widened to anyone.
            let target = if attempt >= 2 { None } else { target };
            self.start_bulk(now, attempt + 1, target);
        }
    }

    /// Something was lost for good: ask for a bulk sync unless one is under way.
    pub(super) fn need_resync(&mut self, now: Instant, from: NodeId) {
        if matches!(
            self.bulk,
            BulkRx::Idle | BulkRx::Done { .. } | BulkRx::Failed { .. }
        ) {
            self.start_bulk(now, 1, Some(from));
        }
    }

    pub(super) fn bulk_start(&mut self, now: Instant, from: NodeId, request: u32) {
        let deadline = now + self.cfg.bulk_timeout;
        match self.bulk {
            BulkRx::Requesting {
                request: r,
                attempt,
                target,
                ..
            } if r == request => {
                self.bulk = BulkRx::Receiving {
                    from,
                    request,
                    attempt,
                    target,
                    received: 0,
                    start_gen: self.gen,
                    deadline,
                };
            }
            BulkRx::Receiving {
                from: f,
                request: r,
                attempt,
                target,
                ..
            } if f == from && r == request => {
                // The sender started over (it heard our request twice).
                self.bulk = BulkRx::Receiving {
                    from,
                    request,
                    attempt,
                    target,
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
                self.remember_removed(now, k, e.conn);
            }
            self.pending.remove(&k);
            self.counters.bulk_swept += 1;
            self.push_remove(k);
        }
        self.flush_batches();
        self.counters.bulk_completed += 1;
        self.bulk = BulkRx::Done { from, count };
        self.bulk_tombstones.clear();
        if !self.ready {
            self.ready = true;
            self.actions.push_back(Action::ReadyChanged(true));
            self.announce_deferred(now);
        }
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
