//! Units in types: CARP mixes seconds and 1/256ths of a second; keeping them apart stops unit bugs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU8;
use std::time::Duration;

/// Virtual host id, 1..=255.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Vhid(NonZeroU8);

impl Vhid {
    pub fn new(v: u8) -> Option<Vhid> {
        NonZeroU8::new(v).map(Vhid)
    }
    pub fn get(self) -> u8 {
        self.0.get()
    }
}

impl TryFrom<u8> for Vhid {
    type Error = &'static str;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        Vhid::new(v).ok_or("vhid must be between 1 and 255")
    }
}

impl From<Vhid> for u8 {
    fn from(v: Vhid) -> u8 {
        v.get()
    }
}

impl fmt::Display for Vhid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Advertisement base interval in whole seconds (the `advbase` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Advbase(pub u8);

/// Skew in 1/256ths of a second added to advbase (the `advskew` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Skew(pub u8);

/// The advertisement interval a (advbase, advskew) pair stands for, as 1/256 s ticks, so
/// comparisons are exact integers (which is how BSD compares them, as timevals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Interval(u32);

impl Interval {
    pub fn new(advbase: Advbase, skew: Skew) -> Interval {
        Interval(u32::from(advbase.0) * 256 + u32::from(skew.0))
    }
    pub fn ticks(self) -> u32 {
        self.0
    }
    pub fn as_duration(self) -> Duration {
        ticks_to_duration(self.0)
    }
}

/// 1/256 s ticks to a Duration, exactly (256 divides 10^9 * 2^-8 = 3_906_250 ns).
pub fn ticks_to_duration(ticks: u32) -> Duration {
    Duration::from_nanos(u64::from(ticks) * 3_906_250)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_orders_by_base_then_skew() {
        assert!(Interval::new(Advbase(1), Skew(255)) < Interval::new(Advbase(2), Skew(0)));
        assert_eq!(
            Interval::new(Advbase(1), Skew(128)).as_duration(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn vhid_zero_is_rejected() {
        assert!(Vhid::new(0).is_none());
        assert_eq!(Vhid::new(7).map(Vhid::get), Some(7));
    }
}
