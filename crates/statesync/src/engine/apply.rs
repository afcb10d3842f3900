//! Applying a peer's stream: its state, delete and clear records into the table, and the
//! kernel batches ([`Action::Install`] / [`Action::Remove`]) that carry them out, collapsed per
//! datagram and kept in order. Removes are remembered for a while so their kernel echoes are
//! recognised (see the echo suppression in [`super`]).

use super::api::Action;
use super::bulk::BulkRx;
use super::table::{later, replicated_eq, Entry, Origin};
use super::tx::Op;
use super::Replicator;
use crate::key::TKey;
use crate::model::Conn;
use crate::wire::{NodeId, Record, Records};
use std::time::Instant;

/// Conns removed on a peer's word remembered at most (see [`Replicator::removed`]).
const MAX_REMEMBERED_REMOVES: usize = 65_536;
/// Superseded installs remembered per conn (see
/// [`Config::echo_window`](super::Config::echo_window)).
const MAX_SUPERSEDED: usize = 16;

/// A conn we removed from the kernel on a peer's word (see [`Replicator::removed`]).
#[derive(Debug)]
pub(super) struct Removed {
    pub(super) at: Instant,
    /// The versions we had installed and whose echoes may still come: the last one and those
    /// it superseded within the echo window. Empty once a peer's version is installed again.
    pub(super) versions: Vec<Conn>,
    /// Removes whose DESTROY echo has not come yet.
    pub(super) destroys: u32,
}

impl Removed {
    /// True if the local event `ev` says nothing that one of the removed versions did not
    /// say: the echo of its install.
    pub(super) fn echoes(&self, ev: &Conn) -> bool {
        self.versions.iter().any(|gone| {
            let mut m = gone.clone();
            m.merge_from(ev);
            replicated_eq(&m, gone)
        })
    }
}

impl Replicator {
    pub(super) fn apply(&mut self, now: Instant, node: NodeId, records: &[u8]) {
        let me = self.cfg.node;
        for rec in Records::new(records) {
            match rec {
                Ok(Record::Insert(c)) | Ok(Record::Update(c)) => {
                    self.receive_state(now, node, c, false)
                }
                Ok(Record::BulkState(c)) => self.receive_state(now, node, c, true),
                Ok(Record::Delete(k)) => self.receive_delete(TKey::from_key(&k)),
                Ok(Record::Clear) => self.receive_clear(node),
                Ok(Record::BulkStart { requester, request }) if requester == me => {
                    self.bulk_start(now, node, request)
                }
                Ok(Record::BulkEnd {
                    requester,
                    request,
                    count,
                }) if requester == me => {
                    self.flush_batches();
                    self.bulk_end(now, node, request, count)
                }
                Ok(Record::BulkStart { .. }) | Ok(Record::BulkEnd { .. }) => {}
                Ok(Record::Unknown { .. }) => self.counters.unknown_records += 1,
                Ok(_) => self.counters.unexpected_records += 1,
                Err(_) => self.counters.malformed_records += 1,
            }
        }
        // Batches go out at the end of the whole datagram (with everything it released from
        // the reorder buffer): one install per conn however often it changed meanwhile.
    }

    fn receive_state(&mut self, now: Instant, node: NodeId, mut c: Conn, bulk: bool) {
        c.id = None;
        self.gen += 1;
        let key = TKey::of(&c);
        // A state relayed by a full bulk: the sender's copy of a conn whose origin may be
        // another node.
        let mut relayed = false;
        if bulk {
            // Bulk states are for the requester only (they travel in the sender's stream to
            // everyone); they count even when a delete we saw since makes them moot.
            match &mut self.bulk {
                BulkRx::Receiving {
                    from,
                    received,
                    deadline,
                    own_only,
                    ..
                } if *from == node => {
                    *received += 1;
                    *deadline = now + self.cfg.bulk_timeout;
                    relayed = !*own_only;
                }
                _ => {
                    self.counters.bulk_states_ignored += 1;
                    return;
                }
            }
            if self.bulk_tombstones.contains(&key) {
                self.counters.bulk_states_ignored += 1;
                return;
            }
            self.counters.bulk_states_received += 1;
        }
        self.counters.states_received += 1;
        let refresh_min = self.cfg.refresh_min;
        match self.table.get_mut(&key) {
            // A bulk fills in what we lack; it never overrides a conn this node's own kernel
            // reported and announced (we handle its traffic: our view is the live one).
            Some(e) if bulk && e.origin == Origin::Local && !e.unannounced => {
                e.gen = self.gen;
                self.counters.unchanged_received += 1;
            }
            // Nor does a full bulk override a copy we had from another peer: it came from that
            // peer's stream (its origin's, or its own relayed snapshot), and a relayed snapshot
            // is no newer: the sender holds the origin's conn only as far as the origin's stream
            // reached it, and the origin's stream brings us anything newer, in order (or its
            // own-only bulk after a gap we could not repair). Letting it win regressed a conn
            // for good when the relay's snapshot overtook the origin's later update.
            Some(e) if relayed && matches!(e.origin, Origin::Peer(o) if o != node) => {
                self.counters.unchanged_received += 1;
            }
            Some(e) if replicated_eq(&e.conn, &c) && !later(now, e, c.timeout, refresh_min) => {
                e.gen = self.gen;
                e.unannounced = false;
                self.counters.unchanged_received += 1;
                self.pending.remove(&key);
            }
            _ => {
                // The peer's snapshot is newer than a local change not sent yet.
                self.pending.remove(&key);
                // Installed again: its echo says what the table says now. The DESTROY echo of
                // an earlier remove may still come (see `destroy_echo`).
                if let Some(r) = self.removed.get_mut(&key) {
                    r.versions.clear();
                }
                let entry = Entry {
                    conn: c.clone(),
                    seen: now,
                    origin: Origin::Peer(node),
                    gen: self.gen,
                    unannounced: false,
                    superseded: None,
                };
                let window = self.cfg.echo_window;
                match self.table.insert(key, entry) {
                    Some(old) if matches!(old.origin, Origin::Peer(_)) => {
                        // Its echo may still be on its way from the kernel.
                        let mut list = old.superseded.unwrap_or_default();
                        list.retain(|(t, _)| now.saturating_duration_since(*t) < window);
                        list.push_back((now, old.conn));
                        while list.len() > MAX_SUPERSEDED {
                            list.pop_front();
                        }
                        if let Some(e) = self.table.get_mut(&key) {
                            e.superseded = Some(list);
                        }
                    }
                    _ => {}
                }
                self.push_install(c);
            }
        }
    }

    fn receive_delete(&mut self, key: TKey) {
        let now = self.last_now;
        self.gen += 1;
        self.tombstone(key);
        self.counters.deletes_received += 1;
        // A pending local change is overtaken; a pending delete of our own still has to
        // reach the peers that heard our announcement.
        if self.pending.get(&key).is_some_and(|op| *op != Op::Delete) {
            self.pending.remove(&key);
        }
        if let Some(e) = self.table.remove(&key) {
            self.remember_removed(now, key, e);
            self.push_remove(key);
        }
    }

    /// `e` was taken out of the table and goes out of the kernel: its echoes are expected.
    pub(super) fn remember_removed(&mut self, now: Instant, key: TKey, e: Entry) {
        let window = self.cfg.echo_window;
        while let Some((t, k)) = self.removed_order.front().copied() {
            if now.saturating_duration_since(t) < window
                && self.removed_order.len() < MAX_REMEMBERED_REMOVES
            {
                break;
            }
            self.removed_order.pop_front();
            if self.removed.get(&k).is_some_and(|r| r.at == t) {
                self.removed.remove(&k);
            }
        }
        // The superseded installs too: their echoes can come after the remove (seen: two
        // installs and the remove in a row, the first install's echo taken for a new conn).
        let mut versions: Vec<Conn> = e
            .superseded
            .into_iter()
            .flat_map(|list| list.into_iter())
            .filter(|(t, _)| now.saturating_duration_since(*t) < window)
            .map(|(_, c)| c)
            .collect();
        versions.push(e.conn);
        // The DESTROY of an earlier remove (installed again since) may still be on its way.
        let destroys = self
            .removed
            .get(&key)
            .filter(|r| now.saturating_duration_since(r.at) < window)
            .map_or(0, |r| r.destroys);
        self.removed.insert(
            key,
            Removed {
                at: now,
                versions,
                destroys: destroys.saturating_add(1),
            },
        );
        self.removed_order.push_back((now, key));
    }

    fn receive_clear(&mut self, node: NodeId) {
        self.gen += 1;
        self.counters.clears_received += 1;
        let keys: Vec<TKey> = self
            .table
            .iter()
            .filter(|(_, e)| e.origin == Origin::Peer(node))
            .map(|(k, _)| *k)
            .collect();
        let now = self.last_now;
        for k in keys {
            if let Some(e) = self.table.remove(&k) {
                self.remember_removed(now, k, e);
            }
            self.pending.remove(&k);
            self.tombstone(k);
            self.push_remove(k);
        }
    }

    fn push_install(&mut self, c: Conn) {
        if !self.removes.is_empty() {
            let r = std::mem::take(&mut self.removes);
            self.actions
                .push_back(Action::Remove(r.iter().map(TKey::conn_key).collect()));
        }
        let key = TKey::of(&c);
        match self.install_idx.get(&key) {
            Some(&i) if i < self.installs.len() => self.installs[i] = c,
            _ => {
                self.counters.installs += 1;
                self.install_idx.insert(key, self.installs.len());
                self.installs.push(c);
            }
        }
    }

    pub(super) fn push_remove(&mut self, k: TKey) {
        if !self.installs.is_empty() {
            self.install_idx.clear();
            let i = std::mem::take(&mut self.installs);
            self.actions.push_back(Action::Install(i));
        }
        self.counters.removes += 1;
        self.removes.push(k);
    }

    pub(super) fn flush_batches(&mut self) {
        if !self.installs.is_empty() {
            self.install_idx.clear();
            let i = std::mem::take(&mut self.installs);
            self.actions.push_back(Action::Install(i));
        }
        if !self.removes.is_empty() {
            let r = std::mem::take(&mut self.removes);
            self.actions
                .push_back(Action::Remove(r.iter().map(TKey::conn_key).collect()));
        }
    }
}
