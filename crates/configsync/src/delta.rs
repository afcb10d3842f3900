//! Delta pushes: a push carries each synced area either whole (its canonical text) or, when
//! the peer already holds exactly that text, only its hash. Pure: no I/O, no clock.
//!
//! - The primary remembers, per peer, the hashes of the areas of the last push the peer
//!   accepted ([`Held`]); an area whose hash is unchanged since then goes as hash only
//!   ([`split`]).
//! - The peer takes the text of a hash-only area from its record of the last push (`pushed`,
//!   as stored) when both the record and that text have the same hash ([`resolve`]). When
//!   not (the peer restarted with other state, lost it, was restored, a new peer, ...) it
//!   refuses with [`Refusal::NeedFull`], and the primary pushes the whole areas at once, with
//!   no backoff. A hash-only area thus always resolves to the very text the primary hashed,
//!   or the push is refused: nothing diverges silently.

use crate::area::{self, Area};
use crate::book::SyncedMeta;
use crate::rpc::Refusal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Hex digits of an area hash (SHA-256).
pub const HASH_LEN: usize = 64;

/// An area hash as it may come from the wire: exactly [`HASH_LEN`] lowercase hex digits.
pub fn is_hash(s: &str) -> bool {
    s.len() == HASH_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The first 12 digits of a hash, for messages.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// What the primary knows a peer holds as its last accepted push: area -> hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub areas: BTreeMap<Area, String>,
}

/// A push split in two: areas sent whole (area -> text) and areas sent as hash only
/// (area -> hash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub full: BTreeMap<Area, String>,
    pub unchanged: BTreeMap<Area, String>,
}

/// Splits the current areas (`texts`, with their `hashes`) for a peer that holds `held`
/// (`None`: nothing known, everything goes whole). An area goes as hash only when the peer
/// holds the same hash for it.
pub fn split(
    texts: &BTreeMap<Area, String>,
    hashes: &BTreeMap<Area, String>,
    held: Option<&Held>,
) -> Split {
    let mut s = Split::default();
    for (a, text) in texts {
        let h = hashes.get(a);
        match (h, held.and_then(|x| x.areas.get(a))) {
            (Some(h), Some(have)) if h == have => {
                s.unchanged.insert(*a, h.clone());
            }
            _ => {
                s.full.insert(*a, text.clone());
            }
        }
    }
    s
}

/// The primary's delta state for one peer: what the peer holds, and the pushes by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerHolds {
    held: Option<Held>,
    pub counts: PushCounts,
}

impl PeerHolds {
    /// What the next push sends whole and by hash.
    pub fn split(&self, texts: &BTreeMap<Area, String>, hashes: &BTreeMap<Area, String>) -> Split {
        split(texts, hashes, self.held.as_ref())
    }

    /// A push of `s` is being sent.
    pub fn sent(&mut self, s: &Split) {
        if s.unchanged.is_empty() {
            self.counts.full += 1;
        } else {
            self.counts.delta += 1;
        }
    }

    /// The peer accepted a push of areas with these hashes (whole or by hash, applied or
    /// already running): it holds them.
    pub fn accepted(&mut self, hashes: &BTreeMap<Area, String>) {
        self.held = Some(Held {
            areas: hashes.clone(),
        });
    }

    /// The peer refused a push of `s`. Returns whether to push the whole areas now (no
    /// backoff): a delta it could not resolve. What it holds is unknown after a refusal that
    /// says so (need-full, stale: another primary's areas).
    pub fn refused(&mut self, r: &Refusal, s: &Split) -> bool {
        match r {
            Refusal::NeedFull(_) => {
                self.held = None;
                if s.unchanged.is_empty() {
                    return false;
                }
                self.counts.delta_refused += 1;
                true
            }
            Refusal::Stale(_) => {
                self.held = None;
                false
            }
            _ => false,
        }
    }

    /// A heartbeat says the peer runs generation `peer` while ours is `current` (with these
    /// `hashes`): when nothing is known yet (this primary restarted), take it that the peer
    /// holds them. A wrong guess costs one need-full refusal, never a wrong area.
    pub fn peer_runs(&mut self, peer: u64, current: u64, hashes: &BTreeMap<Area, String>) {
        if self.held.is_none() && peer == current && current != 0 {
            self.accepted(hashes);
        }
    }

    /// Whether the primary believes the peer holds some areas (a delta is possible).
    pub fn knows(&self) -> bool {
        self.held.is_some()
    }
}

/// The pushes to one peer, by kind (the primary's status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushCounts {
    /// Pushes that carried every area whole.
    pub full: u64,
    /// Pushes that carried some areas as hash only.
    pub delta: u64,
    /// Delta pushes the peer could not resolve (it did not hold an area's hash): each was
    /// followed at once by a full push.
    pub delta_refused: u64,
}

/// Peer: the canonical text of every hash-only area of a push, from the record of the last
/// push (`meta`) and the areas as last pushed (`pushed`, `text_of` giving an area's canonical
/// text there). Refused with [`Refusal::NeedFull`] when an area's recorded hash or its stored
/// text's hash is not the one pushed.
pub fn resolve(
    meta: &SyncedMeta,
    unchanged: &BTreeMap<Area, String>,
    mut text_of: impl FnMut(Area) -> String,
    node: &str,
    what: &str,
) -> Result<BTreeMap<Area, String>, Refusal> {
    let mut out = BTreeMap::new();
    for (a, h) in unchanged {
        let need = |why: String| {
            Refusal::NeedFull(format!(
                "{node} cannot take {what} as a delta: {why}; the primary sends the whole areas"
            ))
        };
        let Some(rec) = meta.areas.get(a) else {
            return Err(need(format!(
                "it holds no pushed copy of {a} (hash {} was named)",
                short(h)
            )));
        };
        if rec.hash != *h {
            return Err(need(format!(
                "its last pushed {a} has hash {}, the push names {}",
                short(&rec.hash),
                short(h)
            )));
        }
        let text = text_of(*a);
        let got = area::hash(&text);
        if got != *h {
            return Err(need(format!(
                "its stored copy of the last pushed {a} has hash {}, not the recorded {}",
                short(&got),
                short(h)
            )));
        }
        out.insert(*a, text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::AreaRecord;

    fn h(s: &str) -> String {
        area::hash(s)
    }

    #[test]
    fn hashes_from_the_wire_are_checked() {
        assert!(is_hash(&h("x")));
        assert!(!is_hash(&h("x").to_uppercase()));
        assert!(!is_hash(&h("x")[1..]));
        assert!(!is_hash(&format!("{}0", h("x"))));
        assert!(!is_hash(
            &h("x").replacen('0', "g", 1).replacen('1', "g", 1)
        ));
        assert!(!is_hash(""));
        assert!(!is_hash(&"é".repeat(32)));
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn only_areas_the_peer_holds_unchanged_go_as_hash() {
        let texts: BTreeMap<Area, String> = [(Area::Rules, "r2"), (Area::Vips, "v1")]
            .into_iter()
            .map(|(a, t)| (a, t.to_string()))
            .collect();
        let hashes: BTreeMap<Area, String> = texts.iter().map(|(a, t)| (*a, h(t))).collect();
        // Nothing known: all whole.
        let s = split(&texts, &hashes, None);
        assert_eq!(s.full, texts);
        assert!(s.unchanged.is_empty());
        // The peer holds v1 and an older rules: vips by hash, rules whole.
        let mut held = Held::default();
        held.areas.insert(Area::Rules, h("r1"));
        held.areas.insert(Area::Vips, h("v1"));
        let s = split(&texts, &hashes, Some(&held));
        assert_eq!(s.full.keys().collect::<Vec<_>>(), vec![&Area::Rules]);
        assert_eq!(s.unchanged.get(&Area::Vips), Some(&h("v1")));
        // After it accepted that push it holds both as they are now.
        let mut p = PeerHolds::default();
        p.accepted(&hashes);
        let s = p.split(&texts, &hashes);
        assert!(s.full.is_empty());
        assert_eq!(s.unchanged, hashes);
    }

    #[test]
    fn a_delta_the_peer_cannot_resolve_is_followed_by_a_full_push_at_once() {
        let texts: BTreeMap<Area, String> = [(Area::Rules, "r1"), (Area::Vips, "v1")]
            .into_iter()
            .map(|(a, t)| (a, t.to_string()))
            .collect();
        let hashes: BTreeMap<Area, String> = texts.iter().map(|(a, t)| (*a, h(t))).collect();
        let mut p = PeerHolds::default();
        // First contact: whole.
        let s = p.split(&texts, &hashes);
        assert!(s.unchanged.is_empty());
        p.sent(&s);
        p.accepted(&hashes);
        // Rules change: rules whole, vips by hash.
        let mut texts2 = texts.clone();
        texts2.insert(Area::Rules, "r2".into());
        let hashes2: BTreeMap<Area, String> = texts2.iter().map(|(a, t)| (*a, h(t))).collect();
        let s = p.split(&texts2, &hashes2);
        assert_eq!(s.full.keys().collect::<Vec<_>>(), vec![&Area::Rules]);
        assert_eq!(s.unchanged.keys().collect::<Vec<_>>(), vec![&Area::Vips]);
        p.sent(&s);
        // The peer lost its state: need-full. Push whole now, and from then on until it
        // accepts again.
        let r = Refusal::NeedFull("fw2 cannot take generation 2 as a delta".into());
        assert!(p.refused(&r, &s));
        assert!(!p.knows());
        let s2 = p.split(&texts2, &hashes2);
        assert_eq!(s2.full, texts2);
        assert!(s2.unchanged.is_empty());
        p.sent(&s2);
        // A full push refused as need-full (a peer that should not say so): no loop.
        assert!(!p.refused(&r, &s2));
        p.accepted(&hashes2);
        assert!(p.knows());
        assert_eq!(
            p.counts,
            PushCounts {
                full: 2,
                delta: 1,
                delta_refused: 1
            }
        );
        // Other refusals keep what the peer holds (drift, invalid: it ran nothing new) but
        // stale means another primary's areas: forget.
        assert!(!p.refused(&Refusal::Drift("d".into()), &s));
        assert!(p.knows());
        assert!(!p.refused(&Refusal::Stale("s".into()), &s));
        assert!(!p.knows());
        // A restarted primary learns from a heartbeat that the peer runs its generation.
        p.peer_runs(1, 2, &hashes2);
        assert!(!p.knows());
        p.peer_runs(2, 2, &hashes2);
        assert!(p.knows());
        assert!(p.split(&texts2, &hashes2).full.is_empty());
    }

    fn meta(area: Area, text: &str) -> SyncedMeta {
        let mut m = SyncedMeta {
            generation: 4,
            ..Default::default()
        };
        m.areas.insert(
            area,
            AreaRecord {
                hash: h(text),
                local_hash: h(""),
                generation: 4,
                time: 0,
                source: "fw1".into(),
                items: 1,
            },
        );
        m
    }

    #[test]
    fn the_peer_resolves_what_it_holds_and_refuses_the_rest() {
        let m = meta(Area::Rules, "r1");
        let ask = |a: Area, hash: String| {
            let mut u = BTreeMap::new();
            u.insert(a, hash);
            u
        };
        let ok = resolve(&m, &ask(Area::Rules, h("r1")), |_| "r1".into(), "fw2", "g5");
        assert_eq!(
            ok.expect("resolved").get(&Area::Rules).map(String::as_str),
            Some("r1")
        );
        // Another hash than the record's.
        let e = resolve(&m, &ask(Area::Rules, h("r0")), |_| "r1".into(), "fw2", "g5")
            .expect_err("refused");
        assert_eq!(e.code(), crate::rpc::code::NEED_FULL);
        assert!(
            e.message().contains("its last pushed rules has hash"),
            "{e}"
        );
        // An area the peer never received.
        let e = resolve(&m, &ask(Area::Nat, h("")), |_| String::new(), "fw2", "g5")
            .expect_err("refused");
        assert!(matches!(e, Refusal::NeedFull(_)), "{e:?}");
        assert!(e.message().contains("holds no pushed copy of nat"), "{e}");
        // The record says r1 but the stored copy is something else (edited, restored, lost).
        let e = resolve(&m, &ask(Area::Rules, h("r1")), |_| "r9".into(), "fw2", "g5")
            .expect_err("refused");
        assert!(e.message().contains("stored copy"), "{e}");
        // Nothing asked: nothing needed.
        assert!(resolve(
            &SyncedMeta::default(),
            &BTreeMap::new(),
            |_| unreachable!(),
            "fw2",
            "g"
        )
        .expect("empty")
        .is_empty());
    }
}
