//! The table and the local side: what an entry is, how kernel events and dumps of this node
//! update it, and the echo suppression that keeps our own installs from being announced back
//! (see the module documentation of [`super`]); entries age out here too.

use super::api::{Action, Dest, LocalEvent};
use super::tx::Op;
use super::Replicator;
use crate::key::TKey;
use crate::model::{status, tcp_flags, Conn};
use crate::wire::{NodeId, Record};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Status bits that describe the connection (the rest is the kernel's bookkeeping).
pub const REPLICATED_STATUS: u32 = status::EXPECTED
    | status::SEEN_REPLY
    | status::ASSURED
    | status::SRC_NAT
    | status::DST_NAT
    | status::SEQ_ADJUST
    | status::FIXED_TIMEOUT
    | status::HELPER;
/// TCP window flags that describe the connection (`BE_LIBERAL` is what an installer adds,
/// the others move with every packet).
pub const REPLICATED_TCP_FLAGS: u8 =
    tcp_flags::WINDOW_SCALE | tcp_flags::SACK_PERM | tcp_flags::CLOSE_INIT;

/// Equality of what replication is about: everything but the timeout, the kernel's id and the
/// kernel-managed status bits and TCP flags. Echo suppression is built on it.
pub fn replicated_eq(a: &Conn, b: &Conn) -> bool {
    let tcp = |c: &Conn| {
        c.tcp.map(|t| {
            (
                t.state,
                t.wscale_orig,
                t.wscale_reply,
                t.flags_orig & REPLICATED_TCP_FLAGS,
                t.flags_reply & REPLICATED_TCP_FLAGS,
            )
        })
    };
    a.orig == b.orig
        && a.reply == b.reply
        && a.status & REPLICATED_STATUS == b.status & REPLICATED_STATUS
        && a.mark == b.mark
        && a.zone == b.zone
        && tcp(a) == tcp(b)
        && a.seq_adj_orig == b.seq_adj_orig
        && a.seq_adj_reply == b.seq_adj_reply
        && a.helper == b.helper
        && a.labels == b.labels
        && a.master == b.master
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    Local,
    Peer(NodeId),
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) conn: Conn,
    /// When `conn.timeout` was observed (received, or reported by the kernel).
    pub(super) seen: Instant,
    pub(super) origin: Origin,
    /// Modification counter value at the last touch.
    pub(super) gen: u64,
    /// From a dump taken before the first bulk sync: announced only after it, if the bulk
    /// did not bring a peer's version (a peer that kept running knows better).
    pub(super) unannounced: bool,
    /// Versions we installed from peers and then replaced, with when: the kernel's echo of
    /// an older install can arrive after a newer one was installed.
    #[allow(clippy::box_collection)] // 8 bytes in every entry; a list only in a few
    pub(super) superseded: Option<Box<VecDeque<(Instant, Conn)>>>,
}

impl Entry {
    fn expiry(&self) -> Option<Instant> {
        self.conn
            .timeout
            .and_then(|t| self.seen.checked_add(Duration::from_secs(u64::from(t))))
    }

    /// Seconds left now, at least 1.
    pub(super) fn remaining(&self, now: Instant) -> Option<u32> {
        self.conn.timeout.map(|t| {
            let elapsed = now.saturating_duration_since(self.seen).as_secs();
            u64::from(t).saturating_sub(elapsed).max(1) as u32
        })
    }
}

impl Replicator {
    pub(super) fn on_local(&mut self, now: Instant, ev: LocalEvent) {
        match ev {
            LocalEvent::New(c) | LocalEvent::Update(c) => self.observe_local(now, c, false),
            LocalEvent::Destroy(c) => {
                let key = TKey::of(&c);
                if self.destroy_echo(now, key) {
                    return;
                }
                self.gen += 1;
                self.tombstone(key);
                match self.table.remove(&key) {
                    Some(e) if e.origin == Origin::Local => self.queue(now, key, Op::Delete),
                    Some(_) => {
                        self.counters.peer_conns_expired += 1;
                        self.pending.remove(&key);
                    }
                    None => self.counters.echo_suppressed += 1,
                }
            }
        }
    }

    /// True if a DESTROY of `key` is the echo of a remove we did on a peer's word, and what
    /// the table holds now stands: nothing, or a peer's version installed since (the kernel
    /// removed the conn and then created it again; its DESTROY comes before that NEW). Taking
    /// that entry out as if our copy had expired lost it from the table, and the NEW echo that
    /// followed then looked like a new conn of ours: announced, it brought a conn deleted
    /// meanwhile back to life on the other nodes.
    fn destroy_echo(&mut self, now: Instant, key: TKey) -> bool {
        let window = self.cfg.echo_window;
        let Some(r) = self.removed.get_mut(&key) else {
            return false;
        };
        if r.destroys == 0 || now.saturating_duration_since(r.at) >= window {
            return false;
        }
        r.destroys -= 1;
        if self
            .table
            .get(&key)
            .is_some_and(|e| e.origin == Origin::Local)
        {
            // A conn of ours the kernel reported after all: gone, as usual.
            return false;
        }
        self.counters.echo_suppressed += 1;
        true
    }

    /// A conn as the kernel reports it: announced if it is news.
    fn observe_local(&mut self, now: Instant, c: Conn, replace: bool) {
        let key = TKey::of(&c);
        self.gen += 1;
        let gen = self.gen;
        let refresh_min = self.cfg.refresh_min;
        let echo_window = self.cfg.echo_window;
        let defer = replace && !self.ready;
        if !replace && !self.table.contains_key(&key) {
            if let Some(r) = self.removed.get(&key) {
                if now.saturating_duration_since(r.at) < echo_window && r.echoes(&c) {
                    // The echo of an install that a peer's delete has since taken back.
                    self.counters.echo_suppressed += 1;
                    return;
                }
            }
        }
        let op = match self.table.get_mut(&key) {
            None => {
                self.table.insert(
                    key,
                    Entry {
                        conn: c,
                        seen: now,
                        origin: Origin::Local,
                        gen,
                        unannounced: defer,
                        superseded: None,
                    },
                );
                (!defer).then_some(Op::Insert)
            }
            Some(e) => {
                let echo_of_older = !replace && echoes_superseded(e, &c, now, echo_window);
                let reported_timeout = c.timeout;
                let c_has_timeout = reported_timeout.is_some();
                let merged = if replace {
                    c
                } else {
                    let mut m = e.conn.clone();
                    m.merge_from(&c);
                    m
                };
                let changed = !replicated_eq(&merged, &e.conn);
                if changed && echo_of_older {
                    // The echo of an install we have since replaced.
                    self.counters.echo_suppressed += 1;
                    return;
                }
                if changed || later(now, e, reported_timeout, refresh_min) {
                    // The timeout ages from when it was reported.
                    if replace || c_has_timeout {
                        e.seen = now;
                    }
                    e.conn = merged;
                    e.origin = Origin::Local;
                    e.gen = gen;
                    if defer && !self.pending.contains_key(&key) {
                        e.unannounced = true;
                        None
                    } else {
                        e.unannounced = false;
                        Some(Op::Update)
                    }
                } else {
                    e.gen = gen;
                    if merged.id.is_some() {
                        e.conn.id = merged.id;
                    }
                    None
                }
            }
        };
        match op {
            Some(op) => self.queue(now, key, op),
            None if !replace => self.counters.echo_suppressed += 1,
            None => {}
        }
    }

    pub(super) fn on_snapshot(&mut self, now: Instant, conns: Vec<Conn>) {
        let since = self.dump_gen.take().unwrap_or(u64::MAX);
        self.in_snapshot = true;
        for c in conns {
            let touched_since_dump = self
                .table
                .get(&TKey::of(&c))
                .is_some_and(|e| since != u64::MAX && e.gen > since);
            if !touched_since_dump {
                self.observe_local(now, c, true);
            }
        }
        self.in_snapshot = false;
        if self.pending_bytes >= self.record_budget() {
            self.flush(now, true);
        }
    }

    pub(super) fn on_flush(&mut self) {
        self.table.clear();
        self.pending.clear();
        self.pending_bytes = 0;
        self.flush_at = None;
        self.gen += 1;
        self.stage.clear();
        if Record::Clear.emit(&mut self.stage).is_ok() {
            let d = self.tx.stream(&self.stage);
            self.stage.clear();
            self.stream_sent(self.last_now);
            self.counters.clears_sent += 1;
            self.actions.push_back(Action::Send {
                to: Dest::All,
                bytes: d,
            });
        }
    }

    pub(super) fn sweep_expired(&mut self, now: Instant) {
        let grace = self.cfg.expiry_grace;
        let before = self.table.len();
        self.table.retain(|_, e| match e.expiry() {
            Some(t) => t + grace > now,
            None => e.seen + grace > now,
        });
        self.counters.expired += (before - self.table.len()) as u64;
        let window = self.cfg.echo_window;
        while let Some((t, k)) = self.removed_order.front().copied() {
            if now.saturating_duration_since(t) < window {
                break;
            }
            self.removed_order.pop_front();
            if self.removed.get(&k).is_some_and(|r| r.at == t) {
                self.removed.remove(&k);
            }
        }
        for e in self.table.values_mut() {
            if let Some(list) = &mut e.superseded {
                list.retain(|(t, _)| now.saturating_duration_since(*t) < window);
                if list.is_empty() {
                    e.superseded = None;
                }
            }
        }
        let table = &self.table;
        self.pending
            .retain(|k, op| *op == Op::Delete || table.contains_key(k));
    }
}

/// True if the local event `ev` says nothing that a recently superseded install of ours did
/// not say: it is that install's echo.
fn echoes_superseded(e: &Entry, ev: &Conn, now: Instant, window: Duration) -> bool {
    let Some(list) = &e.superseded else {
        return false;
    };
    list.iter()
        .filter(|(t, _)| now.saturating_duration_since(*t) < window)
        .any(|(_, installed)| {
            let mut m = installed.clone();
            m.merge_from(ev);
            replicated_eq(&m, installed)
        })
}

/// True if a report with `timeout` seconds left now pushes the entry's expiry later by more
/// than the refresh slack (max(`refresh_min`, timeout / 4)).
pub(super) fn later(now: Instant, e: &Entry, timeout: Option<u32>, refresh_min: Duration) -> bool {
    let Some(t) = timeout else {
        return false;
    };
    let t = Duration::from_secs(u64::from(t));
    let Some(new) = now.checked_add(t) else {
        return false;
    };
    match e.expiry() {
        None => true,
        Some(old) => old
            .checked_add(refresh_min.max(t / 4))
            .is_some_and(|o| new > o),
    }
}
