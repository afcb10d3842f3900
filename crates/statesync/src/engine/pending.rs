//! The changes waiting to be sent, one per conn (a later change collapses into it), kept in
//! the order they were first queued: a flush sends the oldest first, so under a steady stream
//! of new conns nothing waits behind newer ones for the flush timer (sent in key order, a
//! change with a high key kept losing its place to newer, lower keys: p99 18-42 ms at 50 000
//! new conns/s, bench/README.md).

use super::tx::Op;
use crate::key::TKey;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Each conn's change and when it was first queued (its place in `order`).
    ops: BTreeMap<TKey, (Op, u64)>,
    order: BTreeMap<u64, TKey>,
    next: u64,
}

impl Pending {
    pub(super) fn get(&self, key: &TKey) -> Option<&Op> {
        self.ops.get(key).map(|(op, _)| op)
    }

    pub(super) fn contains_key(&self, key: &TKey) -> bool {
        self.ops.contains_key(key)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.ops.len()
    }

    pub(super) fn clear(&mut self) {
        self.ops.clear();
        self.order.clear();
    }

    pub(super) fn remove(&mut self, key: &TKey) -> Option<Op> {
        let (op, at) = self.ops.remove(key)?;
        self.order.remove(&at);
        Some(op)
    }

    /// Queues a change for a conn that has none waiting (it goes last); see [`Pending::set`].
    pub(super) fn push(&mut self, key: TKey, op: Op) {
        let at = self.next;
        self.next += 1;
        self.order.insert(at, key);
        self.ops.insert(key, (op, at));
    }

    /// Replaces the change waiting for a conn, keeping its place.
    pub(super) fn set(&mut self, key: &TKey, op: Op) {
        if let Some((o, _)) = self.ops.get_mut(key) {
            *o = op;
        }
    }

    /// Oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&TKey, &Op)> {
        self.order
            .values()
            .filter_map(|k| self.ops.get_key_value(k).map(|(k, (op, _))| (k, op)))
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&TKey, &Op) -> bool) {
        let order = &mut self.order;
        self.ops.retain(|k, (op, at)| {
            let kept = keep(k, op);
            if !kept {
                order.remove(at);
            }
            kept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> TKey {
        TKey::for_test(i)
    }

    #[test]
    fn the_oldest_goes_first_whatever_its_key() {
        let mut p = Pending::default();
        for i in [9, 3, 7, 1] {
            p.push(key(i), Op::Insert);
        }
        // A later change to conn 9 keeps its place (first).
        p.set(&key(9), Op::Update);
        let order: Vec<(TKey, Op)> = p.iter().map(|(k, o)| (*k, *o)).collect();
        assert_eq!(
            order,
            vec![
                (key(9), Op::Update),
                (key(3), Op::Insert),
                (key(7), Op::Insert),
                (key(1), Op::Insert)
            ]
        );
        p.remove(&key(3));
        p.retain(|k, _| *k != key(7));
        p.push(key(3), Op::Delete);
        let order: Vec<TKey> = p.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, vec![key(9), key(1), key(3)]);
        assert_eq!(p.len(), 3);
        p.clear();
        assert!(p.is_empty() && p.iter().next().is_none());
    }
}
