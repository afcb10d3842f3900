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

/// VRRPv3's Max Adver Int: a 12-bit count of centiseconds, 1..=4095 (10 ms to 40.95 s).
/// Zero is not an interval (it would make every timer fire at once), so it is refused here,
/// once, at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Centisecs(u16);

impl Centisecs {
    pub const MAX: u16 = 4095;

    pub fn new(cs: u16) -> Option<Centisecs> {
        (1..=Self::MAX).contains(&cs).then_some(Centisecs(cs))
    }
    pub fn get(self) -> u16 {
        self.0
    }
    /// Exact: one centisecond is 10 000 µs.
    pub fn as_micros(self) -> u64 {
        u64::from(self.0) * 10_000
    }
    pub fn as_duration(self) -> Duration {
        Duration::from_micros(self.as_micros())
    }
}

impl TryFrom<u16> for Centisecs {
    type Error = &'static str;
    fn try_from(v: u16) -> Result<Self, Self::Error> {
        Centisecs::new(v).ok_or("a VRRP interval must be between 1 and 4095 centiseconds")
    }
}

impl From<Centisecs> for u16 {
    fn from(c: Centisecs) -> u16 {
        c.get()
    }
}

impl fmt::Display for Centisecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}cs", self.0)
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
    fn centisecs_are_twelve_bits_and_never_zero() {
        assert!(Centisecs::new(0).is_none());
        assert!(Centisecs::new(4096).is_none());
        let c = Centisecs::new(4095).expect("max");
        assert_eq!(c.as_duration(), Duration::from_millis(40_950));
        assert_eq!(Centisecs::new(1).map(Centisecs::as_micros), Some(10_000));
        assert!(serde_json::from_str::<Centisecs>("0").is_err());
        assert_eq!(
            serde_json::from_str::<Centisecs>("5").ok(),
            Centisecs::new(5)
        );
    }

    #[test]
    fn vhid_zero_is_rejected() {
        assert!(Vhid::new(0).is_none());
        assert_eq!(Vhid::new(7).map(Vhid::get), Some(7));
    }
}
