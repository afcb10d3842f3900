//! Questions about a simulation's history (its log of records).

use super::{Duration, Key2, NodeId, Record, Sim, State, What};

impl Sim {
    /// Transitions to MASTER of `key` strictly after `since`, as (time, node).
    pub fn takeovers(&self, key: Key2, since: Duration) -> Vec<(Duration, NodeId)> {
        self.log
            .iter()
            .filter(|r| r.at > since)
            .filter_map(|r| match r.what {
                What::Transition {
                    key: k,
                    to: State::Master,
                    ..
                } if k == key => Some((r.at, r.node)),
                _ => None,
            })
            .collect()
    }

    /// Every transition after `since`.
    pub fn transitions_since(&self, since: Duration) -> Vec<&Record> {
        self.log
            .iter()
            .filter(|r| r.at > since && matches!(r.what, What::Transition { .. }))
            .collect()
    }

    /// When `node` last had an advert for `key` from `from` handed to it, up to `until`.
    pub fn last_heard(
        &self,
        node: NodeId,
        key: Key2,
        from: NodeId,
        until: Duration,
    ) -> Option<Duration> {
        self.log
            .iter()
            .rev()
            .filter(|r| r.at <= until && r.node == node)
            .find_map(|r| match r.what {
                What::Heard { key: k, from: f } if k == key && f == from => Some(r.at),
                _ => None,
            })
    }
}
