//! Planned hand-overs: the sync barrier and the hand-over notice.
//!
//! Before a master hands its VIPs over, it makes sure the peers hold every state it knows:
//! [`Input::Barrier`](super::Input::Barrier) sends what is pending, then a BARRIER record
//! naming the last stream seq sent. A peer answers with a BARRIER-ACK once it has applied
//! that much of the stream (gaps repaired first, the NACKs going out as for a heartbeat's
//! seq) and its kernel holds the result: the ack is an
//! [`Action::SendAfterKernel`](super::Action::SendAfterKernel), sent only after the kernel
//! work queued before it. When every peer alive at the start has answered, the engine says
//! [`Action::BarrierDone`](super::Action::BarrierDone); waiting for the ones that never do is
//! the daemon's (it has the clock for a deadline).
//!
//! The BARRIER names the node that is to take the VIPs (or none: the best backup): each peer
//! hears of it before it confirms ([`Action::HandoverRequested`](super::Action::HandoverRequested)),
//! so the others can stand back and the one named wins the election whatever their
//! priorities. Riding on the barrier, the notice is resent until confirmed like it.

use super::api::{Action, Dest};
use super::Replicator;
use crate::wire::{NodeId, Record};
use std::collections::BTreeSet;
use std::time::Instant;

/// Our own barrier while it is under way.
#[derive(Debug)]
pub(super) struct OwnBarrier {
    nonce: u64,
    /// The BARRIER record went out (it waits for what is pending to be sent first).
    sent: bool,
    /// The stream seq it names.
    last_stream: u64,
    handover_to: NodeId,
    /// When it goes again to the peers that have not confirmed (it, or their answer, may
    /// be lost: control datagrams are not retransmitted otherwise).
    resend_at: Option<Instant>,
    waiting: BTreeSet<NodeId>,
    confirmed: Vec<NodeId>,
}

impl Replicator {
    pub(super) fn start_barrier(&mut self, now: Instant, nonce: u64, handover_to: NodeId) {
        let peer_timeout = self.cfg.peer_timeout;
        let waiting = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.cur.is_some()
                    && !p.down
                    && now.saturating_duration_since(p.last_seen) < peer_timeout
            })
            .map(|(n, _)| *n)
            .collect();
        self.barrier = Some(OwnBarrier {
            nonce,
            sent: false,
            last_stream: 0,
            handover_to,
            resend_at: None,
            waiting,
            confirmed: Vec::new(),
        });
        self.flush(now, false);
        self.send_barrier_when_flushed(now);
    }

    /// Sends our BARRIER once nothing waits to be sent any more (pacing may hold part of a
    /// burst back: the barrier must come after all of it).
    pub(super) fn send_barrier_when_flushed(&mut self, now: Instant) {
        if !self.pending.is_empty() {
            return;
        }
        let last_stream = self.tx.next_stream - 1;
        let resend = now + self.cfg.repair_timeout;
        let Some(b) = self.barrier.as_mut().filter(|b| !b.sent) else {
            return;
        };
        b.sent = true;
        b.last_stream = last_stream;
        b.resend_at = Some(resend);
        let record = Record::Barrier {
            nonce: b.nonce,
            last_stream,
            handover_to: b.handover_to,
        };
        self.send_control(Dest::All, &[record]);
        self.finish_barrier_if_confirmed();
    }

    pub(super) fn barrier_timer(&self) -> Option<Instant> {
        self.barrier.as_ref().and_then(|b| b.resend_at)
    }

    /// Sends the barrier again to each peer that has not confirmed it, and stops waiting for
    /// a peer that went silent (down, or not heard for `peer_timeout`): a dead peer never
    /// answers, and the barrier would go to it for ever.
    pub(super) fn barrier_timers(&mut self, now: Instant) {
        let repeat = self.cfg.repair_timeout;
        let peer_timeout = self.cfg.peer_timeout;
        let peers = &self.peers;
        if let Some(b) = self.barrier.as_mut() {
            b.waiting.retain(|n| {
                peers.get(n).is_some_and(|p| {
                    !p.down && now.saturating_duration_since(p.last_seen) < peer_timeout
                })
            });
        }
        self.finish_barrier_if_confirmed();
        let Some(b) = self
            .barrier
            .as_mut()
            .filter(|b| b.resend_at.is_some_and(|t| t <= now))
        else {
            return;
        };
        b.resend_at = Some(now + repeat);
        let record = Record::Barrier {
            nonce: b.nonce,
            last_stream: b.last_stream,
            handover_to: b.handover_to,
        };
        let addrs: Vec<_> = b
            .waiting
            .iter()
            .filter_map(|n| self.peers.get(n).map(|p| p.addr))
            .collect();
        for a in addrs {
            self.send_control(Dest::Peer(a), std::slice::from_ref(&record));
        }
    }

    /// The peers still to confirm our barrier (empty when none is under way).
    pub fn barrier_waiting(&self) -> Vec<NodeId> {
        self.barrier
            .as_ref()
            .map(|b| b.waiting.iter().copied().collect())
            .unwrap_or_default()
    }

    pub(super) fn on_barrier_ack(&mut self, node: NodeId, nonce: u64) {
        let Some(b) = self.barrier.as_mut().filter(|b| b.nonce == nonce && b.sent) else {
            return;
        };
        if b.waiting.remove(&node) {
            b.confirmed.push(node);
        }
        self.finish_barrier_if_confirmed();
    }

    fn finish_barrier_if_confirmed(&mut self) {
        if self.barrier.as_ref().is_some_and(|b| b.waiting.is_empty()) {
            if let Some(b) = self.barrier.take() {
                self.actions.push_back(Action::BarrierDone {
                    nonce: b.nonce,
                    confirmed: b.confirmed,
                });
            }
        }
    }

    /// A peer's BARRIER: its stream exists up to `last_stream` (noticed like a heartbeat's),
    /// and it wants to hear when we have applied that much; its hand-over is said once.
    pub(super) fn on_barrier(
        &mut self,
        now: Instant,
        node: NodeId,
        nonce: u64,
        last_stream: u64,
        handover_to: NodeId,
    ) {
        let Some(s) = self.stream_mut(node) else {
            return;
        };
        s.heard = s.heard.max(last_stream);
        s.barrier = Some((nonce, last_stream));
        if s.last_barrier.replace(nonce) != Some(nonce) {
            self.actions.push_back(Action::HandoverRequested {
                from: node,
                to: handover_to,
            });
        }
        self.update_gap(now, node);
        self.ack_barrier_when_applied(node);
    }

    /// Answers a peer's barrier once its stream is applied up to the barrier's seq (and no
    /// part of it was skipped: after a gap we gave up on, only the bulk sync from that peer
    /// makes up for it). The answer leaves after the kernel writes queued before it.
    pub(super) fn ack_barrier_when_applied(&mut self, node: NodeId) {
        if self.resync_owed.contains_key(&node) {
            return;
        }
        let Some(p) = self.peers.get_mut(&node) else {
            return;
        };
        let addr = p.addr;
        let Some(s) = p.cur.as_mut() else {
            return;
        };
        let Some((nonce, last)) = s.barrier else {
            return;
        };
        if s.expected <= last {
            return;
        }
        s.barrier = None;
        // Installs still being collected for this datagram go to the kernel first.
        self.flush_batches();
        let bytes = self.seal_control(&[Record::BarrierAck {
            target: node,
            nonce,
        }]);
        self.counters.barriers_confirmed += 1;
        self.actions.push_back(Action::SendAfterKernel {
            to: Dest::Peer(addr),
            bytes,
        });
    }
}
