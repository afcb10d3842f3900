//! Receiving: from a UDP payload to records. Everything cheap is checked before decryption
//! (header, key id, our own loopback, the replay window); only an authenticated datagram reaches
//! the peer logic, and control records are dispatched here.

use super::status::RejectReason;
use super::Replicator;
use crate::replay::Replay;
use crate::wire::{self, Header, Kind, NodeId, Record, Records, HEADER_LEN};
use std::net::SocketAddr;
use std::time::Instant;

impl Replicator {
    pub(super) fn reject(&mut self, reason: RejectReason) {
        *self.counters.rejected.entry(reason).or_default() += 1;
    }

    /// [`Input::Datagram`](super::Input::Datagram) without copying the bytes.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.last_now = now;
        self.counters.datagrams_received += 1;
        self.counters.bytes_received += bytes.len() as u64;
        let hdr = match Header::decode(bytes) {
            Ok(h) => h,
            Err(e) => return self.reject(e.into()),
        };
        if hdr.key_id != self.tx.sealer.key_id() {
            return self.reject(RejectReason::WrongKey);
        }
        if hdr.node == self.cfg.node && hdr.epoch == self.cfg.epoch {
            self.counters.own_looped += 1;
            return;
        }
        if let Some(p) = self.peers.get(&hdr.node) {
            match &p.cur {
                Some(s) if s.epoch == hdr.epoch => match s.window.check(hdr.seq) {
                    Ok(()) => {}
                    Err(Replay::Duplicate) => return self.reject(RejectReason::Replay),
                    Err(Replay::TooOld) => return self.reject(RejectReason::TooOld),
                },
                _ if p.retired.contains(&hdr.epoch) => {
                    return self.reject(RejectReason::StaleEpoch)
                }
                _ => {}
            }
        }
        let mut buf = std::mem::take(&mut self.rx);
        buf.clear();
        buf.extend_from_slice(bytes);
        match self.tx.sealer.open(&mut buf) {
            Ok(end) => {
                let body = buf.get(HEADER_LEN..end).unwrap_or(&[]);
                self.authentic(now, from, &hdr, body);
            }
            Err(_) => self.reject(RejectReason::BadSeal),
        }
        self.rx = buf;
        self.flush_batches();
        self.update_quiet();
    }

    pub(super) fn dispatch(
        &mut self,
        now: Instant,
        node: NodeId,
        kind: Kind,
        body: &[u8],
        held: bool,
    ) {
        match kind {
            Kind::Control => self.control(now, node, body, held),
            Kind::Stream => match wire::split_stream(body) {
                Ok((s, records)) => self.stream_arrival(now, node, s, records),
                Err(_) => self.counters.malformed_records += 1,
            },
        }
    }

    fn control(&mut self, now: Instant, node: NodeId, body: &[u8], held: bool) {
        let me = self.cfg.node;
        for rec in Records::new(body) {
            match rec {
                Ok(Record::Heartbeat {
                    last_stream,
                    ready,
                    states,
                }) => {
                    if let Some(s) = self.stream_mut(node) {
                        s.heard = s.heard.max(last_stream);
                        s.ready = ready;
                        s.states = states;
                    }
                    self.update_gap(now, node);
                }
                Ok(Record::Nack {
                    target,
                    epoch,
                    first,
                    last,
                }) if target == me && epoch == self.cfg.epoch => {
                    self.counters.nacks_received += 1;
                    self.serve_nack(node, first, last);
                }
                Ok(Record::Gone {
                    target,
                    epoch,
                    first_available,
                }) if target == me => self.on_gone(now, node, epoch, first_available),
                Ok(Record::BulkRequest {
                    target,
                    request,
                    own_only,
                }) if target == me || target.0 == 0 => {
                    self.queue_serve(now, node, request, own_only)
                }
                Ok(Record::Probe { target, nonce }) if target == me && !held => {
                    if let Some(addr) = self.peers.get(&node).map(|p| p.addr) {
                        self.reply_probe(addr, node, nonce);
                    }
                }
                Ok(Record::ProbeReply { target, nonce, .. }) if target == me && !held => {
                    // A re-probe (after a replay of an old epoch) answered from the epoch we
                    // already trust: forget the held replays.
                    let matches = self
                        .peers
                        .get(&node)
                        .is_some_and(|p| p.probe.is_some_and(|(n, _)| n == nonce));
                    if matches {
                        let epoch = self.stream_mut(node).map(|s| s.epoch);
                        if let Some(epoch) = epoch {
                            let last = self.stream_mut(node).map_or(0, |s| s.heard);
                            // The same epoch: nothing new to handle.
                            let _ = self.confirm(now, node, epoch, 0, last);
                        }
                    }
                }
                Ok(Record::Barrier {
                    nonce,
                    last_stream,
                    handover_to,
                }) if !held => self.on_barrier(now, node, nonce, last_stream, handover_to),
                Ok(Record::BarrierAck { target, nonce }) if target == me && !held => {
                    self.on_barrier_ack(node, nonce)
                }
                Ok(Record::Unknown { .. }) => self.counters.unknown_records += 1,
                Ok(r) if r.is_state() => self.counters.unexpected_records += 1,
                Ok(_) => {}
                Err(_) => self.counters.malformed_records += 1,
            }
        }
    }
}
