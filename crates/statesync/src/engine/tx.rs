//! Sending: the pending map where changes wait and collapse, batching records into stream
//! datagrams up to the MTU, pacing, sealing, and the history kept for retransmission. Live
//! changes and bulk transfers share one numbered stream per epoch, so a receiver that applies it
//! in order never sees a bulk state overtake a later live change.

use super::api::{Action, Dest};
use super::config::Config;
use super::table::Entry;
use super::Replicator;
use crate::key::TKey;
use crate::seal::Sealer;
use crate::wire::{
    self, conn_record_len, delete_record_len, rtype, EncodeError, Header, Kind, NodeId, Record,
    OVERHEAD, STREAM_SEQ_LEN,
};
use std::collections::VecDeque;
use std::time::Instant;

/// What a pending change will announce (collapsed per conn until it is sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Insert,
    Update,
    Delete,
}

/// The sending half: sequence numbers, sealing and the retransmission history.
pub(super) struct Tx {
    pub(super) sealer: Sealer,
    node: NodeId,
    epoch: u64,
    next_seq: u64,
    pub(super) next_stream: u64,
    pub(super) history: VecDeque<(u64, Vec<u8>)>,
    history_cap: usize,
    spare: Vec<Vec<u8>>,
    pub(super) datagrams: u64,
    pub(super) bytes: u64,
}

impl Tx {
    pub(super) fn new(cfg: &Config) -> Tx {
        Tx {
            sealer: Sealer::new(&cfg.key),
            node: cfg.node,
            epoch: cfg.epoch,
            next_seq: 1,
            next_stream: 1,
            history: VecDeque::new(),
            history_cap: cfg.history,
            spare: Vec::new(),
            datagrams: 0,
            bytes: 0,
        }
    }

    fn header(&mut self, kind: Kind) -> Header {
        let seq = self.next_seq;
        self.next_seq += 1;
        Header {
            kind,
            key_id: self.sealer.key_id(),
            node: self.node,
            epoch: self.epoch,
            seq,
        }
    }

    fn seal(&mut self, kind: Kind, stream: Option<u64>, records: &[u8]) -> Vec<u8> {
        let header = self.header(kind);
        let mut buf = Vec::with_capacity(OVERHEAD + STREAM_SEQ_LEN + records.len());
        buf.extend_from_slice(&header.to_bytes());
        if let Some(s) = stream {
            buf.extend_from_slice(&s.to_be_bytes());
        }
        buf.extend_from_slice(records);
        self.sealer.seal(&mut buf);
        self.datagrams += 1;
        self.bytes += buf.len() as u64;
        buf
    }

    /// A new stream datagram: numbered, kept for retransmission, sealed.
    pub(super) fn stream(&mut self, records: &[u8]) -> Vec<u8> {
        let s = self.next_stream;
        self.next_stream += 1;
        let mut kept = self.spare.pop().unwrap_or_default();
        kept.clear();
        kept.extend_from_slice(records);
        self.history.push_back((s, kept));
        while self.history.len() > self.history_cap {
            if let Some((_, old)) = self.history.pop_front() {
                self.spare.push(old);
            }
        }
        self.seal(Kind::Stream, Some(s), records)
    }

    pub(super) fn oldest_kept(&self) -> u64 {
        self.history.front().map_or(self.next_stream, |h| h.0)
    }

    pub(super) fn retransmit(&mut self, s: u64) -> Option<Vec<u8>> {
        let first = self.history.front()?.0;
        let idx = usize::try_from(s.checked_sub(first)?).ok()?;
        let records = std::mem::take(&mut self.history.get_mut(idx)?.1);
        let d = self.seal(Kind::Stream, Some(s), &records);
        if let Some(h) = self.history.get_mut(idx) {
            h.1 = records;
        }
        Some(d)
    }
}

impl Replicator {
    pub(super) fn queue(&mut self, now: Instant, key: TKey, op: Op) {
        match self.pending.get(&key).copied() {
            None => {
                self.pending.push(key, op);
                self.pending_bytes += match op {
                    Op::Delete => delete_record_len(&key.conn_key()),
                    _ => self
                        .table
                        .get(&key)
                        .map_or(0, |e| conn_record_len(&e.conn, true)),
                };
            }
            Some(waiting) => {
                self.counters.collapsed += 1;
                let collapsed = match (waiting, op) {
                    // Not announced live, but a bulk may have carried it: the delete goes
                    // out (a delete of an unknown conn costs the receiver nothing).
                    (Op::Insert, Op::Delete) => Op::Delete,
                    (Op::Insert, _) => Op::Insert,
                    (Op::Delete, Op::Insert) => Op::Update,
                    (_, op) => op,
                };
                self.pending.set(&key, collapsed);
            }
        }
        if self.pending.is_empty() {
            self.flush_at = None;
            self.pending_bytes = 0;
            return;
        }
        if self.flush_at.is_none() {
            self.flush_at = Some(now + self.cfg.flush_delay);
        }
        if self.pending_bytes >= self.record_budget() && !self.in_snapshot {
            self.flush(now, true);
        }
    }

    pub(super) fn record_budget(&self) -> usize {
        self.cfg.mtu - OVERHEAD - STREAM_SEQ_LEN
    }

    pub(super) fn take_tokens(&mut self, now: Instant) -> u32 {
        let pace = self.cfg.pace.as_nanos().max(1);
        let ticks = now.saturating_duration_since(self.refilled).as_nanos() / pace;
        if ticks > 0 {
            let add = u128::from(self.cfg.burst) * ticks;
            self.tokens = (u128::from(self.tokens) + add).min(u128::from(self.cfg.burst)) as u32;
            self.refilled += self.cfg.pace * (ticks.min(u128::from(u32::MAX)) as u32);
        }
        self.tokens
    }

    pub(super) fn next_refill(&self) -> Instant {
        self.refilled + self.cfg.pace
    }

    /// Sends pending changes, as many datagrams as the pacing allows. Masters go before
    /// related conns (the kernel needs the master to create an expected conn).
    pub(super) fn flush(&mut self, now: Instant, full_only: bool) {
        if self.pending.is_empty() {
            self.flush_at = None;
            self.pending_bytes = 0;
            return;
        }
        let mut budget = self.take_tokens(now);
        if budget == 0 {
            self.flush_at = Some(self.next_refill().max(now));
            return;
        }
        let cap = self.record_budget();
        // Keys whose records went out (or could not be encoded).
        let mut done: Vec<TKey> = Vec::new();
        // Keys whose records are in the datagram being built.
        let mut staged: Vec<(TKey, Op, bool)> = Vec::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut complete = true;
        let mut unencodable = 0;
        {
            let Replicator {
                pending,
                table,
                stage,
                tx,
                counters,
                ..
            } = self;
            let mut ship =
                |stage: &mut Vec<u8>, staged: &mut Vec<(TKey, Op, bool)>, done: &mut Vec<TKey>| {
                    out.push(tx.stream(stage));
                    stage.clear();
                    for (k, op, has_entry) in staged.drain(..) {
                        match op {
                            Op::Delete => counters.deletes_sent += 1,
                            _ if has_entry => counters.states_sent += 1,
                            _ => {}
                        }
                        done.push(k);
                    }
                };
            stage.clear();
            'passes: for pass in 0..2 {
                for (key, op) in pending.iter() {
                    let entry = table.get(key);
                    let related =
                        *op != Op::Delete && entry.is_some_and(|e| e.conn.master.is_some());
                    if related != (pass == 1) {
                        continue;
                    }
                    let mark = stage.len();
                    if emit_op(stage, key, *op, entry, now).is_err() {
                        stage.truncate(mark);
                        unencodable += 1;
                        done.push(*key);
                        continue;
                    }
                    if stage.len() > cap {
                        // Full: ship what fits, start the next datagram with this record.
                        stage.truncate(mark);
                        ship(stage, &mut staged, &mut done);
                        budget -= 1;
                        if budget == 0 {
                            complete = false;
                            break 'passes;
                        }
                        let _ = emit_op(stage, key, *op, entry, now);
                    }
                    staged.push((*key, *op, entry.is_some()));
                }
            }
            if !stage.is_empty() {
                if full_only {
                    // The rest waits for its deadline (or for more to fill a datagram).
                    complete = false;
                } else {
                    ship(stage, &mut staged, &mut done);
                    budget = budget.saturating_sub(1);
                }
            }
            stage.clear();
            for k in &done {
                pending.remove(k);
            }
        }
        self.counters.unencodable += unencodable;
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
        self.recount_pending();
        self.flush_at = if self.pending.is_empty() {
            None
        } else if full_only && budget > 0 {
            self.flush_at.or(Some(now + self.cfg.flush_delay))
        } else if complete {
            Some(now + self.cfg.flush_delay)
        } else {
            Some(self.next_refill().max(now))
        };
    }

    fn recount_pending(&mut self) {
        self.pending_bytes = self
            .pending
            .iter()
            .map(|(k, op)| match op {
                Op::Delete => delete_record_len(&k.conn_key()),
                _ => self
                    .table
                    .get(k)
                    .map_or(0, |e| conn_record_len(&e.conn, true)),
            })
            .sum();
    }

    /// A control datagram with these records, sealed.
    pub(super) fn seal_control(&mut self, records: &[Record]) -> Vec<u8> {
        self.stage.clear();
        for r in records {
            let _ = r.emit(&mut self.stage);
        }
        let bytes = self.tx.seal(Kind::Control, None, &self.stage);
        self.stage.clear();
        bytes
    }

    pub(super) fn send_control(&mut self, to: Dest, records: &[Record]) {
        let bytes = self.seal_control(records);
        self.actions.push_back(Action::Send { to, bytes });
    }

    /// Stream datagrams went out: a heartbeat follows `repair_timeout` after the last of a
    /// burst. Receivers notice a lost datagram from the next one, or from a heartbeat's last
    /// stream seq; a lost last datagram of a burst was noticed only at the next regular
    /// heartbeat, up to `heartbeat_interval` later (and a second more per heartbeat lost),
    /// while those conns were missing on the peers.
    pub(super) fn stream_sent(&mut self, now: Instant) {
        self.tail_heartbeat = Some(now + self.cfg.repair_timeout);
    }

    pub(super) fn send_heartbeat(&mut self, to: Dest) {
        if to == Dest::All {
            self.tail_heartbeat = None;
        }
        let hb = Record::Heartbeat {
            last_stream: self.tx.next_stream - 1,
            ready: self.ready,
            states: u32::try_from(self.table.len()).unwrap_or(u32::MAX),
        };
        match self.unanswered_request(to) {
            Some(req) => self.send_control(to, &[hb, req]),
            None => self.send_control(to, &[hb]),
        }
    }
}

fn emit_op(
    stage: &mut Vec<u8>,
    key: &TKey,
    op: Op,
    entry: Option<&Entry>,
    now: Instant,
) -> Result<(), EncodeError> {
    match (op, entry) {
        (Op::Delete, _) => wire::emit_delete(stage, &key.conn_key()),
        (Op::Insert, Some(e)) => {
            wire::emit_conn_record(stage, rtype::INSERT, &e.conn, e.remaining(now))
        }
        (Op::Update, Some(e)) => {
            wire::emit_conn_record(stage, rtype::UPDATE, &e.conn, e.remaining(now))
        }
        (_, None) => Ok(()),
    }
}
