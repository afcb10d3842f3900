//! A peer's stream in order: holding out-of-order datagrams, noticing gaps (also from
//! heartbeats, so a lost tail counts), NACKing them, answering our peers' NACKs from the history
//! (or with GONE), and giving up into a bulk resync when a gap cannot be repaired.

use super::api::{Action, Alarm, Dest};
use super::Replicator;
use crate::replay::ReplayWindow;
use crate::wire::{NodeId, Record};
use std::collections::BTreeMap;
use std::time::Instant;

/// Most stream datagrams retransmitted for one NACK.
const MAX_RETRANSMIT_PER_NACK: u64 = 256;

#[derive(Debug)]
pub(super) struct Gap {
    pub(super) next_nack: Instant,
    pub(super) tries: u32,
}

#[derive(Debug)]
pub(super) struct Stream {
    pub(super) epoch: u64,
    pub(super) window: ReplayWindow,
    /// Next stream seq to apply.
    pub(super) expected: u64,
    /// Highest stream seq known to exist.
    pub(super) heard: u64,
    pub(super) reorder: BTreeMap<u64, Vec<u8>>,
    pub(super) gap: Option<Gap>,
    pub(super) ready: bool,
    pub(super) states: u32,
    /// The peer's barrier (nonce, last stream seq) we answer once applied that far.
    pub(super) barrier: Option<(u64, u64)>,
    /// The nonce of the last barrier heard (its hand-over is said once).
    pub(super) last_barrier: Option<u64>,
}

impl Replicator {
    pub(super) fn stream_mut(&mut self, node: NodeId) -> Option<&mut Stream> {
        self.peers.get_mut(&node)?.cur.as_mut()
    }

    pub(super) fn stream_arrival(&mut self, now: Instant, node: NodeId, seq: u64, records: &[u8]) {
        let reorder_limit = self.cfg.reorder_limit;
        let nack_delay = self.cfg.nack_delay;
        let Some(s) = self.stream_mut(node) else {
            return;
        };
        if seq < s.expected || s.reorder.contains_key(&seq) {
            self.counters.duplicate_stream += 1;
            return;
        }
        s.heard = s.heard.max(seq);
        if seq == s.expected {
            s.expected = s.expected.saturating_add(1);
            if let Some(g) = &mut s.gap {
                // Progress: the repair works; ask for the rest soon.
                g.tries = 0;
                g.next_nack = g.next_nack.min(now + nack_delay);
            }
            self.apply(now, node, records);
            self.drain(now, node);
        } else if s.reorder.len() >= reorder_limit {
            s.reorder.insert(seq, records.to_vec());
            self.give_up(now, node, None);
        } else {
            s.reorder.insert(seq, records.to_vec());
        }
        self.update_gap(now, node);
        self.ack_barrier_when_applied(node);
    }

    /// Applies held datagrams that are now in order.
    fn drain(&mut self, now: Instant, node: NodeId) {
        loop {
            let Some(s) = self.stream_mut(node) else {
                return;
            };
            let expected = s.expected;
            // Anything below expected is obsolete (skipped over by a give-up).
            while s
                .reorder
                .first_key_value()
                .is_some_and(|(k, _)| *k < expected)
            {
                s.reorder.pop_first();
            }
            let Some(records) = s.reorder.remove(&expected) else {
                return;
            };
            s.expected = s.expected.saturating_add(1);
            self.apply(now, node, &records);
        }
    }

    pub(super) fn update_gap(&mut self, now: Instant, node: NodeId) {
        let delay = self.cfg.nack_delay;
        if let Some(s) = self.stream_mut(node) {
            if s.expected <= s.heard {
                if s.gap.is_none() {
                    s.gap = Some(Gap {
                        next_nack: now + delay,
                        tries: 0,
                    });
                }
            } else {
                s.gap = None;
            }
        }
    }

    pub(super) fn repair_timers(&mut self, now: Instant) {
        let due: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.cur
                    .as_ref()
                    .and_then(|s| s.gap.as_ref())
                    .is_some_and(|g| g.next_nack <= now)
            })
            .map(|(n, _)| *n)
            .collect();
        for node in due {
            let retries = self.cfg.repair_retries;
            let repair_timeout = self.cfg.repair_timeout;
            let span = self.cfg.history as u64;
            let Some(p) = self.peers.get_mut(&node) else {
                continue;
            };
            let addr = p.addr;
            let Some(s) = p.cur.as_mut() else {
                continue;
            };
            let Some(g) = s.gap.as_mut() else {
                continue;
            };
            if g.tries >= retries {
                self.give_up(now, node, None);
                self.update_gap(now, node);
                continue;
            }
            g.tries += 1;
            g.next_nack = now + repair_timeout;
            let first = s.expected;
            let last = s
                .reorder
                .first_key_value()
                .map_or(s.heard, |(k, _)| k.saturating_sub(1))
                .min(first.saturating_add(span - 1));
            let epoch = s.epoch;
            self.counters.nacks_sent += 1;
            self.send_control(
                Dest::Peer(addr),
                &[Record::Nack {
                    target: node,
                    epoch,
                    first,
                    last,
                }],
            );
        }
    }

    /// The missing datagrams will not come: skip them (to `upto`, or to what is held next),
    /// apply what is held, and ask the peer for its table.
    fn give_up(&mut self, now: Instant, node: NodeId, upto: Option<u64>) {
        let Some(s) = self.stream_mut(node) else {
            return;
        };
        let first = s.expected;
        let to = upto.unwrap_or_else(|| {
            s.reorder
                .first_key_value()
                .map_or(s.heard.saturating_add(1), |(k, _)| *k)
        });
        if to <= first {
            return;
        }
        s.expected = to;
        s.gap = None;
        self.counters.gaps_unrepaired += 1;
        self.actions
            .push_back(Action::Alarm(Alarm::GapUnrepairable {
                peer: node,
                first,
                last: to - 1,
            }));
        self.drain(now, node);
        self.update_gap(now, node);
        self.need_resync(now, node);
    }

    pub(super) fn on_gone(&mut self, now: Instant, node: NodeId, epoch: u64, first_available: u64) {
        let applies = self
            .stream_mut(node)
            .is_some_and(|s| s.epoch == epoch && s.expected < first_available);
        if applies {
            self.give_up(now, node, Some(first_available));
        }
    }

    pub(super) fn serve_nack(&mut self, node: NodeId, first: u64, last: u64) {
        let Some(addr) = self.peers.get(&node).map(|p| p.addr) else {
            return;
        };
        let oldest = self.tx.oldest_kept();
        if first < oldest {
            self.counters.gone_sent += 1;
            self.send_control(
                Dest::Peer(addr),
                &[Record::Gone {
                    target: node,
                    epoch: self.cfg.epoch,
                    first_available: oldest,
                }],
            );
        }
        let from = first.max(oldest);
        let to = last
            .min(self.tx.next_stream - 1)
            .min(from.saturating_add(MAX_RETRANSMIT_PER_NACK - 1));
        for s in from..=to {
            if let Some(bytes) = self.tx.retransmit(s) {
                self.counters.retransmits += 1;
                self.actions.push_back(Action::Send {
                    to: Dest::Peer(addr),
                    bytes,
                });
            }
        }
    }
}
