//! The per-peer anti-replay window over datagram sequence numbers within one epoch (as IPsec's,
//! RFC 4303 §3.4.3): the highest seq accepted and a bitmap of the [`WINDOW`] seqs below it.
//! [`ReplayWindow::check`] runs before the (costlier) authentication, [`ReplayWindow::accept`]
//! only after it, so forged packets never move the window.

use serde::{Deserialize, Serialize};

/// Sequence numbers tracked below the highest one seen.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replay {
    /// Seen before.
    Duplicate,
    /// Older than the window (or 0, which is never sent).
    TooOld,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

impl ReplayWindow {
    pub fn new() -> ReplayWindow {
        ReplayWindow {
            top: 0,
            bits: [0; WORDS],
        }
    }

    /// The highest seq accepted so far (0: none).
    pub fn top(&self) -> u64 {
        self.top
    }

    fn slot(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    pub fn check(&self, seq: u64) -> Result<(), Replay> {
        if seq == 0 {
            return Err(Replay::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= WINDOW {
            return Err(Replay::TooOld);
        }
        let (w, b) = Self::slot(seq);
        if self.bits[w] & b != 0 {
            Err(Replay::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Checks and records `seq`.
    pub fn accept(&mut self, seq: u64) -> Result<(), Replay> {
        self.check(seq)?;
        if seq > self.top {
            let advance = seq - self.top;
            if advance >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for s in self.top + 1..=seq {
                    let (w, b) = Self::slot(s);
                    self.bits[w] &= !b;
                }
            }
            self.top = seq;
        }
        let (w, b) = Self::slot(seq);
        self.bits[w] |= b;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_basics() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(0), Err(Replay::TooOld));
        assert_eq!(w.accept(1), Ok(()));
        assert_eq!(w.accept(1), Err(Replay::Duplicate));
        assert_eq!(w.accept(5), Ok(()));
        assert_eq!(w.accept(3), Ok(()));
        assert_eq!(w.accept(3), Err(Replay::Duplicate));
        assert_eq!(w.accept(4), Ok(()));
        assert_eq!(w.accept(5 + WINDOW), Ok(()));
        assert_eq!(w.check(5), Err(Replay::TooOld));
        assert_eq!(w.check(6), Ok(()));
        assert_eq!(w.accept(6), Ok(()));
        assert_eq!(w.accept(6), Err(Replay::Duplicate));
        assert_eq!(w.accept(10_000_000), Ok(()));
        assert_eq!(w.check(10_000_000 - WINDOW + 1), Ok(()));
        assert_eq!(w.check(10_000_000 - WINDOW), Err(Replay::TooOld));
    }

    #[test]
    fn matches_a_set_model() {
        // Deterministic pseudo-random walk against a HashSet model.
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::HashSet::new();
        let mut top = 0u64;
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seq = (top + 50).saturating_sub(x % 1500).max(1);
            let want = if seq + WINDOW <= top {
                Err(Replay::TooOld)
            } else if seen.contains(&seq) {
                Err(Replay::Duplicate)
            } else {
                Ok(())
            };
            assert_eq!(w.accept(seq), want, "seq {seq} top {top}");
            if want.is_ok() {
                seen.insert(seq);
                top = top.max(seq);
            }
        }
    }
}
