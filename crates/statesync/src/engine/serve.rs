//! Bulk sync, the serving side: answering bulk requests from the table (no kernel dump), one
//! requester at a time, paced and in key order with masters before their related conns, in the
//! same stream as live changes.

use super::api::{Action, Dest};
use super::table::Origin;
use super::Replicator;
use crate::key::TKey;
use crate::wire::{self, rtype, NodeId, Record};
use std::ops::Bound;
use std::time::Instant;

#[derive(Debug)]
pub(super) struct Serve {
    pub(super) to: NodeId,
    pub(super) request: u32,
    /// Only the conns this node announced (origin local).
    pub(super) own_only: bool,
    /// 0: conns without a master, 1: related conns, 2: only the end record is left.
    pub(super) pass: u8,
    pub(super) cursor: Option<TKey>,
    pub(super) sent: u64,
    pub(super) started: bool,
}

impl Replicator {
    pub(super) fn queue_serve(&mut self, now: Instant, to: NodeId, request: u32, own_only: bool) {
        if self.served.get(&to) == Some(&request) {
            // Answered in full already. A requester that lost the answer asks with a new id
            // after its timeout; the same id again is only the request sent once more to a
            // peer that came alive, in case it had not heard it: serving it twice would send
            // the whole table for nothing.
            self.counters.bulk_requests_repeated += 1;
            return;
        }
        if let Some(s) = &mut self.serving {
            if s.to == to {
                if s.request != request {
                    *s = Serve {
                        to,
                        request,
                        own_only,
                        pass: 0,
                        cursor: None,
                        sent: 0,
                        started: false,
                    };
                    self.counters.bulk_requests_served += 1;
                }
                return;
            }
        }
        if let Some(q) = self.serve_queue.iter_mut().find(|q| q.0 == to) {
            *q = (to, request, own_only);
            return;
        }
        self.serve_queue.push_back((to, request, own_only));
        if self.serving.is_none() {
            self.next_serve(now);
        }
    }

    fn next_serve(&mut self, now: Instant) {
        self.serving = self
            .serve_queue
            .pop_front()
            .map(|(to, request, own_only)| Serve {
                to,
                request,
                own_only,
                pass: 0,
                cursor: None,
                sent: 0,
                started: false,
            });
        if self.serving.is_some() {
            self.counters.bulk_requests_served += 1;
            self.serve_at = Some(now);
        }
    }

    pub(super) fn serve_tick(&mut self, now: Instant) {
        // Live changes go first.
        if !self.pending.is_empty() && self.flush_at.is_some_and(|t| t <= now) {
            self.flush_at = None;
            self.flush(now, false);
        }
        let mut budget = self.take_tokens(now);
        let cap = self.record_budget();
        let mut out = Vec::new();
        let mut finished = false;
        {
            let Replicator {
                serving,
                table,
                stage,
                tx,
                counters,
                ..
            } = self;
            let Some(s) = serving.as_mut() else {
                return;
            };
            while budget > 0 && !finished {
                stage.clear();
                if !s.started {
                    let _ = Record::BulkStart {
                        requester: s.to,
                        request: s.request,
                    }
                    .emit(stage);
                    s.started = true;
                }
                let mut full = false;
                while s.pass < 2 && !full {
                    let range = match s.cursor {
                        Some(c) => table.range((Bound::Excluded(c), Bound::Unbounded)),
                        None => table.range::<TKey, _>(..),
                    };
                    let mut exhausted = true;
                    for (key, e) in range {
                        if e.conn.master.is_some() != (s.pass == 1)
                            || (s.own_only && e.origin != Origin::Local)
                        {
                            s.cursor = Some(*key);
                            continue;
                        }
                        let mark = stage.len();
                        match wire::emit_conn_record(
                            stage,
                            rtype::BULK_STATE,
                            &e.conn,
                            e.remaining(now),
                        ) {
                            Ok(()) if stage.len() <= cap => {
                                s.sent += 1;
                                counters.bulk_states_sent += 1;
                                s.cursor = Some(*key);
                            }
                            Ok(()) => {
                                stage.truncate(mark);
                                full = true;
                                exhausted = false;
                                break;
                            }
                            Err(_) => {
                                stage.truncate(mark);
                                counters.unencodable += 1;
                                s.cursor = Some(*key);
                            }
                        }
                    }
                    if exhausted {
                        s.pass += 1;
                        s.cursor = None;
                    }
                }
                if s.pass >= 2 {
                    let mark = stage.len();
                    let _ = Record::BulkEnd {
                        requester: s.to,
                        request: s.request,
                        count: s.sent,
                    }
                    .emit(stage);
                    if stage.len() <= cap {
                        finished = true;
                    } else {
                        stage.truncate(mark);
                    }
                }
                out.push(tx.stream(stage));
                budget -= 1;
                stage.clear();
            }
        }
        self.tokens = budget;
        if !out.is_empty() {
            self.stream_sent(now);
        }
        for bytes in out {
            self.actions.push_back(Action::Send {
                to: Dest::All,
                bytes,
            });
        }
        if finished {
            if let Some(s) = self.serving.take() {
                self.served.insert(s.to, s.request);
            }
            self.next_serve(now);
        } else {
            self.serve_at = Some(self.next_refill().max(now));
        }
    }
}
