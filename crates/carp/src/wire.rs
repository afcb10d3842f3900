//! The CARP v2 advertisement: 36 bytes after the IP header.
//!
//! ```text
//!  0: version(4) | type(4)   1: vhid   2: advskew   3: authlen
//!  4: demote (OpenBSD; 0 on FreeBSD)   5: advbase   6-7: checksum
//!  8-15: counter (two big-endian u32, high then low)   16-35: HMAC-SHA1
//! ```
//! The checksum is the internet checksum over the whole CARP payload, no pseudo-header.

use crate::units::{Advbase, Skew, Vhid};
use serde::{Deserialize, Serialize};

pub const ADVERT_LEN: usize = 36;
pub const VERSION: u8 = 2;
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// authlen as every implementation sends it: the header size in 32-bit words minus the fixed 2.
pub const AUTHLEN: u8 = 7;
pub const HMAC_LEN: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    pub vhid: Vhid,
    pub advbase: Advbase,
    pub advskew: Skew,
    /// OpenBSD's demotion byte; FreeBSD and ucarp send 0.
    pub demote: u8,
    pub counter: u64,
    pub hmac: [u8; HMAC_LEN],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("advert too short: {0} bytes, need {ADVERT_LEN}")]
    TooShort(usize),
    #[error("unsupported CARP version {0}")]
    BadVersion(u8),
    #[error("unsupported CARP message type {0}")]
    BadType(u8),
    #[error("vhid 0 is not valid")]
    ZeroVhid,
    #[error("checksum mismatch")]
    BadChecksum,
}

/// Parses an advertisement. Length is checked once; nothing after it can panic.
pub fn decode(payload: &[u8]) -> Result<Advert, DecodeError> {
    let Some(h) = payload.first_chunk::<ADVERT_LEN>() else {
        return Err(DecodeError::TooShort(payload.len()));
    };
    if h[0] >> 4 != VERSION {
        return Err(DecodeError::BadVersion(h[0] >> 4));
    }
    if h[0] & 0x0f != TYPE_ADVERTISEMENT {
        return Err(DecodeError::BadType(h[0] & 0x0f));
    }
    // BSD sums the whole payload, trailing bytes included.
    if internet_checksum(payload) != 0 {
        return Err(DecodeError::BadChecksum);
    }
    let vhid = Vhid::new(h[1]).ok_or(DecodeError::ZeroVhid)?;
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&h[8..16]);
    let mut hmac = [0u8; HMAC_LEN];
    hmac.copy_from_slice(&h[16..36]);
    Ok(Advert {
        vhid,
        advskew: Skew(h[2]),
        demote: h[4],
        advbase: Advbase(h[5]),
        counter: u64::from_be_bytes(counter),
        hmac,
    })
}

/// Serialises an advertisement, computing the checksum last.
pub fn encode(a: &Advert) -> [u8; ADVERT_LEN] {
    let mut b = [0u8; ADVERT_LEN];
    b[0] = (VERSION << 4) | TYPE_ADVERTISEMENT;
    b[1] = a.vhid.get();
    b[2] = a.advskew.0;
    b[3] = AUTHLEN;
    b[4] = a.demote;
    b[5] = a.advbase.0;
    b[8..16].copy_from_slice(&a.counter.to_be_bytes());
    b[16..36].copy_from_slice(&a.hmac);
    let sum = internet_checksum(&b);
    b[6..8].copy_from_slice(&sum.to_be_bytes());
    b
}

/// RFC 1071 one's-complement sum; returns 0 when run over data that carries a valid checksum.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Advert {
        Advert {
            vhid: Vhid::new(7).expect("nonzero"),
            advbase: Advbase(1),
            advskew: Skew(100),
            demote: 0,
            counter: 0x0102_0304_0506_0708,
            hmac: [0xab; 20],
        }
    }

    #[test]
    fn round_trip() {
        let a = sample();
        let b = encode(&a);
        assert_eq!(b[0], 0x21);
        assert_eq!(b[3], 7);
        assert_eq!(internet_checksum(&b), 0);
        assert_eq!(decode(&b), Ok(a));
    }

    #[test]
    fn rejects_each_broken_field() {
        let good = encode(&sample());
        assert_eq!(decode(&good[..35]), Err(DecodeError::TooShort(35)));
        assert_eq!(decode(&[]), Err(DecodeError::TooShort(0)));
        let mut v = good;
        v[0] = 0x31;
        assert_eq!(decode(&v), Err(DecodeError::BadVersion(3)));
        let mut t = good;
        t[0] = 0x22;
        assert_eq!(decode(&t), Err(DecodeError::BadType(2)));
        let mut c = good;
        c[20] ^= 1;
        assert_eq!(decode(&c), Err(DecodeError::BadChecksum));
    }

    #[test]
    fn checksum_of_odd_length() {
        // 0x0102 + 0x0300 = 0x0402 -> !0x0402
        assert_eq!(internet_checksum(&[1, 2, 3]), !0x0402);
    }
}
