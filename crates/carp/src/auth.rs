//! CARP's HMAC-SHA1, computed as the BSDs do so that we interoperate with them and ucarp.
//!
//! Key: the passphrase truncated to 19 bytes (BSD ifconfig copies it with strlcpy into a 20-byte
//! buffer), zero-padded; HMAC pads it further, so the padding needs no bytes of its own.
//! Message: version 2, type 1, vhid, every IPv4 address ascending, every IPv6 address ascending
//! (scope zeroed), then the 8 counter bytes as on the wire.

use crate::units::Vhid;
use crate::wire::{HMAC_LEN, TYPE_ADVERTISEMENT, VERSION};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use std::fmt;
use std::net::IpAddr;

pub const MAX_KEY_LEN: usize = 19;

/// A CARP passphrase as the kernel would hold it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn from_passphrase(pass: &[u8]) -> Key {
        Key(pass[..pass.len().min(MAX_KEY_LEN)].to_vec())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The fixed part of the HMAC message for one vhid, prepared once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticator {
    key: Key,
    prefix: Vec<u8>,
}

impl Authenticator {
    pub fn new(key: Key, vhid: Vhid, addresses: &[IpAddr]) -> Authenticator {
        let mut v4: Vec<[u8; 4]> = Vec::new();
        let mut v6: Vec<[u8; 16]> = Vec::new();
        for a in addresses {
            match a {
                IpAddr::V4(a) => v4.push(a.octets()),
                IpAddr::V6(a) => {
                    let mut o = a.octets();
                    // KAME embeds the scope id in bytes 2-3 of link-local addresses; BSD zeroes it.
                    if o[0] == 0xfe && o[1] & 0xc0 == 0x80 {
                        o[2] = 0;
                        o[3] = 0;
                    }
                    v6.push(o)
                }
            }
        }
        v4.sort_unstable();
        v4.dedup();
        v6.sort_unstable();
        v6.dedup();
        let mut prefix = vec![VERSION, TYPE_ADVERTISEMENT, vhid.get()];
        v4.iter().for_each(|a| prefix.extend_from_slice(a));
        v6.iter().for_each(|a| prefix.extend_from_slice(a));
        Authenticator { key, prefix }
    }

    fn mac(&self, counter: u64) -> Hmac<Sha1> {
        // HMAC accepts keys of any length; this cannot fail.
        let mut m = <Hmac<Sha1> as Mac>::new_from_slice(&self.key.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(&self.prefix);
        m.update(&counter.to_be_bytes());
        m
    }

    pub fn sign(&self, counter: u64) -> [u8; HMAC_LEN] {
        self.mac(counter).finalize().into_bytes().into()
    }

    /// Constant-time comparison.
    pub fn verify(&self, counter: u64, digest: &[u8; HMAC_LEN]) -> bool {
        self.mac(counter).verify_slice(digest).is_ok()
    }
}

/// Most addresses a vhid may have for [`matching_subset`] to try each of its subsets.
pub const MAX_SUBSET_ADDRESSES: usize = 8;

/// For an advert whose HMAC does not verify: the proper, non-empty subset of `addresses` it
/// would verify with, if any. Then the passphrase is right and the peer's vhid carries fewer
/// addresses than ours (ucarp hashes one IPv4 address; a BSD node may be configured with
/// fewer), which reads very differently from a wrong passphrase. Tries at most
/// 2^[`MAX_SUBSET_ADDRESSES`] sets.
pub fn matching_subset(
    key: &Key,
    vhid: Vhid,
    addresses: &[IpAddr],
    counter: u64,
    digest: &[u8; HMAC_LEN],
) -> Option<Vec<IpAddr>> {
    let mut all = addresses.to_vec();
    all.sort_unstable();
    all.dedup();
    let n = all.len();
    if !(2..=MAX_SUBSET_ADDRESSES).contains(&n) {
        return None;
    }
    (1u32..(1 << n) - 1).find_map(|mask| {
        let subset: Vec<IpAddr> = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| all[i])
            .collect();
        Authenticator::new(key.clone(), vhid, &subset)
            .verify(counter, digest)
            .then_some(subset)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_sorted_and_families_grouped() {
        let vhid = Vhid::new(1).expect("nonzero");
        let a: Vec<IpAddr> = ["2001:db8::1", "192.0.2.9", "192.0.2.1"]
            .iter()
            .map(|s| s.parse().expect("literal"))
            .collect();
        let auth = Authenticator::new(Key::from_passphrase(b"x"), vhid, &a);
        assert_eq!(&auth.prefix[..11], &[2, 1, 1, 192, 0, 2, 1, 192, 0, 2, 9]);
        assert_eq!(auth.prefix.len(), 3 + 8 + 16);
        let mut reversed = a.clone();
        reversed.reverse();
        assert_eq!(
            auth,
            Authenticator::new(Key::from_passphrase(b"x"), vhid, &reversed)
        );
    }

    #[test]
    fn key_is_truncated_to_19_bytes() {
        let long = Key::from_passphrase(b"0123456789abcdefghijKLMN");
        assert_eq!(long, Key::from_passphrase(b"0123456789abcdefghi"));
    }

    #[test]
    fn verify_detects_tampering() {
        let vhid = Vhid::new(3).expect("nonzero");
        let auth = Authenticator::new(Key::from_passphrase(b"pw"), vhid, &[]);
        let d = auth.sign(42);
        assert!(auth.verify(42, &d));
        assert!(!auth.verify(43, &d));
        let other = Authenticator::new(Key::from_passphrase(b"pv"), vhid, &[]);
        assert!(!other.verify(42, &d));
    }
}
