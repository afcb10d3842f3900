//! Peers and their epochs: who we have heard from and where, the probe challenge that adopts a
//! new epoch only when the peer echoes our nonce from it (a replayed old epoch cannot), the
//! datagrams held meanwhile, and the daemon's up/down hints.

use super::api::Dest;
use super::bulk::BulkRx;
use super::repair::Stream;
use super::status::RejectReason;
use super::Replicator;
use crate::replay::{Replay, ReplayWindow};
use crate::wire::{self, Header, Kind, NodeId, Record, Records};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

/// Old epochs remembered per peer.
const RETIRED_EPOCHS: usize = 16;
/// Probes sent again on a timer (`probe_interval` apart) while datagrams wait for an epoch to
/// be confirmed and nothing new arrives from it; each new datagram held starts over.
const PROBE_RETRIES: u32 = 8;

/// A peer epoch just confirmed (see [`Replicator::new_epoch`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct NewEpoch {
    addr: SocketAddr,
    /// The peer had another epoch before (it restarted).
    restarted: bool,
    /// Its answer to our bulk request may be in the part of its stream we skip.
    skipped_answer: bool,
}

#[derive(Debug)]
pub(super) struct Held {
    pub(super) epoch: u64,
    pub(super) seq: u64,
    pub(super) kind: Kind,
    pub(super) body: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct Peer {
    pub(super) addr: SocketAddr,
    pub(super) last_seen: Instant,
    pub(super) down: bool,
    pub(super) cur: Option<Stream>,
    pub(super) retired: VecDeque<u64>,
    /// The outstanding probe: its nonce and when it went out.
    pub(super) probe: Option<(u64, Instant)>,
    /// Where it went (where the datagrams held came from) and how often it was sent again on
    /// the timer since a datagram was last held.
    pub(super) probe_to: SocketAddr,
    pub(super) probe_retries: u32,
    /// We answered a probe of the epoch we are still to confirm: the peer may have adopted
    /// ours first, and answered our bulk request in datagrams sent before we hold any.
    pub(super) answered_first: bool,
    pub(super) held: Vec<Held>,
    pub(super) restarts: u64,
}

impl Replicator {
    pub(super) fn on_peer_up(&mut self, now: Instant, addr: SocketAddr) {
        for p in self.peers.values_mut().filter(|p| p.addr == addr) {
            p.down = false;
        }
        self.send_heartbeat(Dest::Peer(addr));
        self.peer_alive(now, addr);
    }

    pub(super) fn on_peer_down(&mut self, now: Instant, addr: SocketAddr) {
        let mut nodes = Vec::new();
        for (n, p) in self.peers.iter_mut().filter(|(_, p)| p.addr == addr) {
            p.down = true;
            nodes.push(*n);
        }
        if let BulkRx::Receiving {
            from,
            attempt,
            target,
            ..
        } = self.bulk
        {
            if nodes.contains(&from) {
                self.retry_bulk(now, attempt, target);
            }
        }
    }

    pub(super) fn authentic(&mut self, now: Instant, from: SocketAddr, hdr: &Header, body: &[u8]) {
        if hdr.node == self.cfg.node {
            // Another node with our id, or our own datagrams from a previous life replayed:
            // they cannot be told apart, so this is only counted.
            return self.reject(RejectReason::OwnNodeId);
        }
        if !self.peers.contains_key(&hdr.node) {
            if self.peers.len() >= self.cfg.max_peers {
                return self.reject(RejectReason::TooManyPeers);
            }
            self.peers.insert(
                hdr.node,
                Peer {
                    addr: from,
                    last_seen: now,
                    down: false,
                    cur: None,
                    retired: VecDeque::new(),
                    probe: None,
                    probe_to: from,
                    probe_retries: 0,
                    answered_first: false,
                    held: Vec::new(),
                    restarts: 0,
                },
            );
        }
        let node = hdr.node;
        // Only a datagram of the confirmed epoch (fresh in its window) moves the peer's
        // address: a replay from elsewhere must not redirect our replies.
        let peer_timeout = self.cfg.peer_timeout;
        let mut revived = false;
        let confirmed = match self.peers.get_mut(&node) {
            Some(p) => match &mut p.cur {
                Some(s) if s.epoch == hdr.epoch => {
                    let _ = s.window.accept(hdr.seq);
                    // Silent for `peer_timeout` or reported down: shown as not alive, so
                    // hearing it again is a peer coming alive (a healed partition, a link
                    // back up).
                    revived = p.down || now.saturating_duration_since(p.last_seen) >= peer_timeout;
                    p.addr = from;
                    p.last_seen = now;
                    p.down = false;
                    true
                }
                _ => false,
            },
            None => return,
        };
        if confirmed {
            self.dispatch(now, node, hdr.kind, body, false);
            if revived {
                self.peer_alive(now, from);
            }
        } else {
            self.unconfirmed(now, from, hdr, body);
        }
    }

    /// An authentic datagram from an epoch not (yet) confirmed.
    fn unconfirmed(&mut self, now: Instant, from: SocketAddr, hdr: &Header, body: &[u8]) {
        let node = hdr.node;
        let me = self.cfg.node;
        let mut confirm = None;
        if hdr.kind == Kind::Control {
            let outstanding = self.peers.get(&node).and_then(|p| p.probe.map(|(n, _)| n));
            for rec in Records::new(body) {
                match rec {
                    Ok(Record::Probe { target, nonce }) if target == me => {
                        if let Some(p) = self.peers.get_mut(&node) {
                            p.answered_first = true;
                        }
                        self.reply_probe(from, node, nonce)
                    }
                    Ok(Record::ProbeReply {
                        target,
                        nonce,
                        last_stream,
                    }) if target == me && Some(nonce) == outstanding => confirm = Some(last_stream),
                    _ => {}
                }
            }
        }
        if let Some(last_stream) = confirm {
            if let Some(p) = self.peers.get_mut(&node) {
                p.addr = from;
                p.last_seen = now;
                p.down = false;
            }
            let new = self.confirm(now, node, hdr.epoch, hdr.seq, last_stream);
            self.dispatch(now, node, hdr.kind, body, true);
            self.release_held(now, node);
            if let Some(new) = new {
                self.new_epoch(now, node, new);
            }
            return;
        }
        let probe_interval = self.cfg.probe_interval;
        let max_held = self.cfg.max_held;
        let Some(p) = self.peers.get_mut(&node) else {
            return;
        };
        let overflow = p.held.len() >= max_held;
        if !overflow {
            p.held.push(Held {
                epoch: hdr.epoch,
                seq: hdr.seq,
                kind: hdr.kind,
                body: body.to_vec(),
            });
        }
        p.probe_retries = 0;
        let due = p
            .probe
            .is_none_or(|(_, sent)| now.saturating_duration_since(sent) >= probe_interval);
        if overflow {
            self.reject(RejectReason::Unconfirmed);
        }
        if due {
            self.send_probe(now, node, from);
        }
    }

    fn send_probe(&mut self, now: Instant, node: NodeId, to: SocketAddr) {
        let nonce = self.rng.next();
        if let Some(p) = self.peers.get_mut(&node) {
            p.probe = Some((nonce, now));
            p.probe_to = to;
        }
        self.counters.probes_sent += 1;
        self.send_control(
            Dest::Peer(to),
            &[Record::Probe {
                target: node,
                nonce,
            }],
        );
    }

    /// When an unanswered probe is sent again: datagrams are held for an epoch that only the
    /// probe's answer can confirm, and the peer may send nothing else for a while (a
    /// heartbeat a second): a lost probe or reply must not leave them waiting that long
    /// (meanwhile this peer's NACKs and bulk requests to us go unanswered).
    pub(super) fn probe_timer(&self) -> Option<Instant> {
        let interval = self.cfg.probe_interval;
        self.peers
            .values()
            .filter(|p| !p.held.is_empty() && p.probe_retries < PROBE_RETRIES)
            .filter_map(|p| p.probe.and_then(|(_, sent)| sent.checked_add(interval)))
            .min()
    }

    pub(super) fn probe_timers(&mut self, now: Instant) {
        let interval = self.cfg.probe_interval;
        let due: Vec<(NodeId, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.held.is_empty() && p.probe_retries < PROBE_RETRIES)
            .filter(|(_, p)| {
                p.probe
                    .is_some_and(|(_, sent)| now.saturating_duration_since(sent) >= interval)
            })
            .map(|(n, p)| (*n, p.probe_to))
            .collect();
        for (node, to) in due {
            if let Some(p) = self.peers.get_mut(&node) {
                p.probe_retries += 1;
            }
            self.send_probe(now, node, to);
        }
    }

    pub(super) fn reply_probe(&mut self, to: SocketAddr, node: NodeId, nonce: u64) {
        let last_stream = self.tx.next_stream - 1;
        self.send_control(
            Dest::Peer(to),
            &[Record::ProbeReply {
                target: node,
                nonce,
                last_stream,
            }],
        );
    }

    /// The peer proved `epoch` live: adopt it. A new epoch is returned, for
    /// [`Self::new_epoch`] once the datagrams held for it are processed.
    pub(super) fn confirm(
        &mut self,
        now: Instant,
        node: NodeId,
        epoch: u64,
        seq: u64,
        last_stream: u64,
    ) -> Option<NewEpoch> {
        let p = self.peers.get_mut(&node)?;
        let addr = p.addr;
        p.probe = None;
        let answered_first = std::mem::take(&mut p.answered_first);
        let mut new_peer_epoch = None;
        if p.cur.as_ref().is_none_or(|s| s.epoch != epoch) {
            let restarted = match p.cur.take() {
                Some(old) => {
                    p.retired.push_back(old.epoch);
                    true
                }
                None => false,
            };
            // A restarted peer numbers its stream from 1 again: we want all of it. On first
            // contact we start from what is held, or from now.
            let expected = if restarted {
                1
            } else {
                p.held
                    .iter()
                    .filter(|h| h.epoch == epoch && h.kind == Kind::Stream)
                    .filter_map(|h| wire::split_stream(&h.body).ok().map(|(s, _)| s))
                    .min()
                    .unwrap_or(last_stream.saturating_add(1))
                    .min(last_stream.saturating_add(1))
            };
            if restarted {
                p.restarts += 1;
                self.counters.peer_restarts += 1;
                // Its request ids start over too.
                self.served.remove(&node);
            }
            new_peer_epoch = Some(NewEpoch {
                addr,
                restarted,
                // Its stream before `expected` is never applied here.
                skipped_answer: answered_first && expected > 1,
            });
            p.cur = Some(Stream {
                epoch,
                window: ReplayWindow::new(),
                expected,
                heard: last_stream,
                reorder: BTreeMap::new(),
                gap: None,
                ready: false,
                states: 0,
                barrier: None,
                last_barrier: None,
            });
        }
        // Held datagrams of other epochs are replays of the past (or of a life the peer has
        // already left): retire those epochs.
        let mut stale = Vec::new();
        p.held.retain(|h| {
            if h.epoch != epoch {
                stale.push(h.epoch);
                false
            } else {
                true
            }
        });
        for e in &stale {
            if !p.retired.contains(e) {
                p.retired.push_back(*e);
            }
        }
        while p.retired.len() > RETIRED_EPOCHS {
            p.retired.pop_front();
        }
        if let Some(s) = &mut p.cur {
            let _ = s.window.accept(seq);
        }
        for _ in &stale {
            self.reject(RejectReason::StaleEpoch);
        }
        self.update_gap(now, node);
        new_peer_epoch
    }

    /// A peer's new epoch is confirmed and what it sent meanwhile is processed: a peer that
    /// restarted or came for the first time is someone (new again) to ask.
    pub(super) fn new_epoch(&mut self, now: Instant, node: NodeId, new: NewEpoch) {
        match self.bulk {
            // The sender of our bulk restarted: that transfer will never end.
            BulkRx::Receiving {
                from,
                attempt,
                target,
                ..
            } if from == node && new.restarted => {
                // It is alive again, though: even after the round's last attempt, the next
                // goes at once.
                self.bulk_peer_joined = true;
                self.retry_bulk(now, attempt, target);
            }
            // It confirmed us first and may have answered our request already, in stream
            // datagrams we never held (lost meanwhile) and now skip: the same request again
            // would not be answered twice, and we would wait `bulk_timeout` for nothing. A new
            // one (a peer still sending the old answer starts over).
            BulkRx::Requesting {
                attempt, target, ..
            } if new.skipped_answer && target.is_none_or(|t| t == node) => {
                self.start_bulk(now, attempt, target);
                self.bulk_peer_joined = true;
            }
            _ => self.peer_alive(now, new.addr),
        }
    }

    fn release_held(&mut self, now: Instant, node: NodeId) {
        let Some(p) = self.peers.get_mut(&node) else {
            return;
        };
        let mut held = std::mem::take(&mut p.held);
        held.sort_by_key(|h| h.seq);
        for h in held {
            let fresh = match self.peers.get_mut(&node).and_then(|p| p.cur.as_mut()) {
                Some(s) if s.epoch == h.epoch => s.window.accept(h.seq),
                _ => Err(Replay::TooOld),
            };
            match fresh {
                Ok(()) => self.dispatch(now, node, h.kind, &h.body, true),
                Err(Replay::Duplicate) => self.reject(RejectReason::Replay),
                Err(Replay::TooOld) => self.reject(RejectReason::TooOld),
            }
        }
    }
}
