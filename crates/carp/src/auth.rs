//! CARP's advert authentication, in two modes.
//!
//! **BSD** ([`Authenticator`], the default): HMAC-SHA1 computed as the BSDs do, so that we
//! interoperate with them and ucarp. Key: the passphrase truncated to 19 bytes (BSD ifconfig
//! copies it with strlcpy into a 20-byte buffer), zero-padded; HMAC pads it further, so the
//! padding needs no bytes of its own. Message: version 2, type 1, vhid, every IPv4 address
//! ascending, every IPv6 address ascending (scope zeroed), then the 8 counter bytes as on the
//! wire. It does not cover advskew, advbase or demote, and nobody checks the counter: anyone on
//! the link can lower the skew of a captured advert, or replay it, and it still verifies.
//!
//! **Tandem** ([`TandemAuthenticator`], opt-in, for clusters of tandem nodes only): HMAC-SHA256
//! keyed with the whole passphrase, truncated to the 20 bytes of the advert's HMAC field, over
//! a domain-separated message that covers every byte of the advert but the checksum and the MAC
//! itself, the sender's source address, and the vhid's addresses (see
//! [`TandemAuthenticator::mac`] for the exact layout). The engine also requires the counter to
//! grow strictly per sender (see `engine`).

use crate::units::Vhid;
use crate::wire::{self, Advert, HMAC_LEN, TYPE_ADVERTISEMENT, VERSION};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::Sha256;
use std::fmt;
use std::net::IpAddr;

pub const MAX_KEY_LEN: usize = 19;

/// How adverts are authenticated. Every node of a cluster must use the same mode: each reads
/// the other mode's adverts as forged (`auth_mode_mismatch`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// BSD CARP's HMAC-SHA1 (interoperates with OpenBSD, FreeBSD, pfSense and ucarp).
    #[default]
    Bsd,
    /// HMAC-SHA256 over the whole advert and its source, and a counter that must grow.
    Tandem,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Bsd => "bsd",
            AuthMode::Tandem => "tandem",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CARP passphrase, and the mode it is used in. BSD mode uses its first 19 bytes, as the BSD
/// kernel holds it; tandem mode all of it. (Kept whole in both, so a BSD node can still tell a
/// tandem node's advert apart from a wrong passphrase.)
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "KeyRepr", into = "KeyRepr")]
pub struct Key {
    secret: Vec<u8>,
    mode: AuthMode,
}

/// A BSD key is written as its bytes (as traces always had it), a tandem key as
/// `{"tandem": bytes}`.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum KeyRepr {
    Bsd(Vec<u8>),
    Tandem { tandem: Vec<u8> },
}

impl From<KeyRepr> for Key {
    fn from(r: KeyRepr) -> Key {
        match r {
            KeyRepr::Bsd(secret) => Key::from_passphrase(&secret),
            KeyRepr::Tandem { tandem } => Key::tandem(&tandem),
        }
    }
}

impl From<Key> for KeyRepr {
    fn from(k: Key) -> KeyRepr {
        match k.mode {
            AuthMode::Bsd => KeyRepr::Bsd(k.secret),
            AuthMode::Tandem => KeyRepr::Tandem { tandem: k.secret },
        }
    }
}

impl Key {
    /// A BSD-mode key (its MAC uses the first 19 bytes, as BSD CARP keeps the passphrase).
    pub fn from_passphrase(pass: &[u8]) -> Key {
        Key {
            secret: pass.to_vec(),
            mode: AuthMode::Bsd,
        }
    }

    /// The bytes BSD CARP's HMAC is keyed with: the passphrase truncated to 19 bytes.
    fn bsd_bytes(&self) -> &[u8] {
        &self.secret[..self.secret.len().min(MAX_KEY_LEN)]
    }

    /// A tandem-mode key: the whole passphrase.
    pub fn tandem(pass: &[u8]) -> Key {
        Key {
            secret: pass.to_vec(),
            mode: AuthMode::Tandem,
        }
    }

    /// The key of `mode` for a passphrase.
    pub fn new(mode: AuthMode, pass: &[u8]) -> Key {
        match mode {
            AuthMode::Bsd => Key::from_passphrase(pass),
            AuthMode::Tandem => Key::tandem(pass),
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The same passphrase in the other mode (to tell a mode mismatch apart from a wrong
    /// passphrase).
    pub fn as_mode(&self, mode: AuthMode) -> Key {
        Key::new(mode, &self.secret)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}, ..)", self.mode)
    }
}

/// The vhid's addresses as both MACs hash them: IPv4 ascending, IPv6 ascending with the scope
/// KAME embeds in bytes 2-3 of a link-local address zeroed (as BSD does), each set once.
fn sorted_addresses(addresses: &[IpAddr]) -> (Vec<[u8; 4]>, Vec<[u8; 16]>) {
    let mut v4: Vec<[u8; 4]> = Vec::new();
    let mut v6: Vec<[u8; 16]> = Vec::new();
    for a in addresses {
        match a {
            IpAddr::V4(a) => v4.push(a.octets()),
            IpAddr::V6(a) => {
                let mut o = a.octets();
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
    (v4, v6)
}

/// The fixed part of the HMAC message for one vhid, prepared once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticator {
    key: Key,
    prefix: Vec<u8>,
}

impl Authenticator {
    /// BSD CARP's HMAC-SHA1 for one vhid (whatever the key's mode).
    pub fn new(key: Key, vhid: Vhid, addresses: &[IpAddr]) -> Authenticator {
        let key = key.as_mode(AuthMode::Bsd);
        let (v4, v6) = sorted_addresses(addresses);
        let mut prefix = vec![VERSION, TYPE_ADVERTISEMENT, vhid.get()];
        v4.iter().for_each(|a| prefix.extend_from_slice(a));
        v6.iter().for_each(|a| prefix.extend_from_slice(a));
        Authenticator { key, prefix }
    }

    fn mac(&self, counter: u64) -> Hmac<Sha1> {
        // HMAC accepts keys of any length; this cannot fail.
        let mut m = <Hmac<Sha1> as Mac>::new_from_slice(self.key.bsd_bytes())
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

/// The start of every tandem-mode MAC message: no other message of any protocol starts so.
pub const TANDEM_DOMAIN: &[u8] = b"tandem CARP advert HMAC-SHA256 v1\0";

/// Tandem mode's MAC for one vhid (see the module docs): the key and the encoded address set,
/// prepared once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TandemAuthenticator {
    key: Key,
    addresses: Vec<u8>,
}

impl TandemAuthenticator {
    /// Tandem mode's MAC for one vhid (whatever the key's mode).
    pub fn new(key: Key, addresses: &[IpAddr]) -> TandemAuthenticator {
        let key = key.as_mode(AuthMode::Tandem);
        let (v4, v6) = sorted_addresses(addresses);
        let mut block = Vec::with_capacity(4 + 4 * v4.len() + 16 * v6.len());
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes();
        block.extend_from_slice(&count(v4.len()));
        v4.iter().for_each(|a| block.extend_from_slice(a));
        block.extend_from_slice(&count(v6.len()));
        v6.iter().for_each(|a| block.extend_from_slice(a));
        TandemAuthenticator {
            key,
            addresses: block,
        }
    }

    /// The MAC of an advert payload sent from `src`: HMAC-SHA256 (key: the whole passphrase)
    /// truncated to its first 20 bytes, over
    ///
    /// ```text
    /// TANDEM_DOMAIN                       "tandem CARP advert HMAC-SHA256 v1\0" (34 bytes)
    /// payload[0..6]                       version|type, vhid, advskew, authlen, demote, advbase
    /// payload[8..16]                      counter (two big-endian u32, high then low)
    /// 4, src (4 bytes) | 6, src (16)      the advert's IP source address, family first
    /// n4 (u16 BE), IPv4 addresses         the vhid's addresses, ascending, each once
    /// n6 (u16 BE), IPv6 addresses         ascending, link-local scope bytes zeroed
    /// payload[36..]                       anything after the header (normally nothing)
    /// ```
    ///
    /// The checksum (bytes 6-7, computed after the MAC) and the MAC field (16-35) are all that
    /// is left out. A payload shorter than 36 bytes is hashed as if zero-padded.
    pub fn mac(&self, payload: &[u8], src: IpAddr) -> [u8; HMAC_LEN] {
        let full = self.hmac(payload, src).finalize().into_bytes();
        let mut out = [0u8; HMAC_LEN];
        out.copy_from_slice(&full[..HMAC_LEN]);
        out
    }

    fn hmac(&self, payload: &[u8], src: IpAddr) -> Hmac<Sha256> {
        let mut head = [0u8; wire::ADVERT_LEN];
        let n = payload.len().min(wire::ADVERT_LEN);
        head[..n].copy_from_slice(&payload[..n]);
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(TANDEM_DOMAIN);
        m.update(&head[0..6]);
        m.update(&head[8..16]);
        match src {
            IpAddr::V4(a) => {
                m.update(&[4]);
                m.update(&a.octets());
            }
            IpAddr::V6(a) => {
                m.update(&[6]);
                m.update(&a.octets());
            }
        }
        m.update(&self.addresses);
        m.update(payload.get(wire::ADVERT_LEN..).unwrap_or_default());
        m
    }

    /// Whether the MAC in `payload` (bytes 16-35) is right for it and `src`; constant time.
    pub fn verify(&self, payload: &[u8], src: IpAddr) -> bool {
        let Some(tag) = payload.get(16..16 + HMAC_LEN) else {
            return false;
        };
        self.hmac(payload, src).verify_truncated_left(tag).is_ok()
    }

    /// Encodes an advert sent from `src` with its tandem MAC (its `hmac` field is ignored).
    pub fn seal(&self, advert: &Advert, src: IpAddr) -> [u8; wire::ADVERT_LEN] {
        let mut a = advert.clone();
        a.hmac = [0; HMAC_LEN];
        a.hmac = self.mac(&wire::encode(&a), src);
        wire::encode(&a)
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
        let vhid = Vhid::new(1).expect("nonzero");
        let mac = |k: Key| Authenticator::new(k, vhid, &[]).sign(1);
        let long = b"0123456789abcdefghijKLMN";
        assert_eq!(
            mac(Key::from_passphrase(long)),
            mac(Key::from_passphrase(b"0123456789abcdefghi"))
        );
        assert_ne!(
            mac(Key::from_passphrase(long)),
            mac(Key::from_passphrase(b"0123456789abcdefgh"))
        );
        // Tandem mode uses the whole passphrase.
        let t = |k: Key| {
            TandemAuthenticator::new(k, &[]).mac(&[0; 36], "192.0.2.1".parse().expect("literal"))
        };
        assert_ne!(t(Key::tandem(long)), t(Key::tandem(b"0123456789abcdefghi")));
        assert_eq!(t(Key::from_passphrase(long)), t(Key::tandem(long)));
    }

    #[test]
    fn keys_serialise_as_before_in_bsd_mode() {
        let k = Key::from_passphrase(b"ab");
        assert_eq!(serde_json::to_string(&k).expect("json"), "[97,98]");
        let t = Key::tandem(b"ab");
        let j = serde_json::to_string(&t).expect("json");
        assert_eq!(j, r#"{"tandem":[97,98]}"#);
        assert_eq!(serde_json::from_str::<Key>(&j).expect("parse"), t);
        assert_eq!(serde_json::from_str::<Key>("[97,98]").expect("parse"), k);
        assert_eq!(format!("{t:?}"), "Key(tandem, ..)");
    }

    fn sample() -> Advert {
        Advert {
            vhid: Vhid::new(7).expect("nonzero"),
            advbase: crate::Advbase(1),
            advskew: crate::Skew(100),
            demote: 0,
            counter: 0x6543_2100_0000_0001,
            hmac: [0; HMAC_LEN],
        }
    }

    #[test]
    fn tandem_mac_covers_every_header_byte_the_source_and_the_addresses() {
        let addrs: Vec<IpAddr> = vec!["192.0.2.100".parse().expect("literal")];
        let auth = TandemAuthenticator::new(Key::tandem(b"a long enough passphrase"), &addrs);
        let src: IpAddr = "192.0.2.2".parse().expect("literal");
        let good = auth.seal(&sample(), src);
        assert_eq!(wire::internet_checksum(&good), 0);
        assert!(auth.verify(&good, src));
        // Every byte but the checksum changes the verdict (the checksum is left to decode).
        for i in (0..wire::ADVERT_LEN).filter(|i| ![6, 7].contains(i)) {
            let mut b = good;
            b[i] ^= 0x01;
            assert!(!auth.verify(&b, src), "byte {i} is not covered");
        }
        let mut longer = good.to_vec();
        longer.push(0);
        assert!(!auth.verify(&longer, src), "trailing bytes are not covered");
        assert!(!auth.verify(&good[..20], src));
        assert!(!auth.verify(&good, "192.0.2.3".parse().expect("literal")));
        let other_set = TandemAuthenticator::new(
            Key::tandem(b"a long enough passphrase"),
            &["192.0.2.101".parse().expect("literal")],
        );
        assert!(!other_set.verify(&good, src));
        let other_key = TandemAuthenticator::new(Key::tandem(b"another passphrase!!"), &addrs);
        assert!(!other_key.verify(&good, src));
        // And it is not BSD's MAC of the same advert, nor the other way round.
        let bsd = Authenticator::new(
            Key::from_passphrase(b"a long enough passphrase"),
            sample().vhid,
            &addrs,
        );
        let a = wire::decode(&good).expect("decodes");
        assert!(!bsd.verify(a.counter, &a.hmac));
    }

    #[test]
    fn tandem_mac_message_layout() {
        // The documented layout, computed by hand.
        let addrs: Vec<IpAddr> = vec![
            "2001:db8::1".parse().expect("literal"),
            "192.0.2.100".parse().expect("literal"),
        ];
        let key = b"0123456789abcdef0123";
        let auth = TandemAuthenticator::new(Key::tandem(key), &addrs);
        let src: IpAddr = "fe80::2".parse().expect("literal");
        let payload = auth.seal(&sample(), src);
        let mut msg = TANDEM_DOMAIN.to_vec();
        msg.extend_from_slice(&payload[0..6]);
        msg.extend_from_slice(&payload[8..16]);
        msg.push(6);
        msg.extend_from_slice(
            &"fe80::2"
                .parse::<std::net::Ipv6Addr>()
                .expect("literal")
                .octets(),
        );
        msg.extend_from_slice(&[0, 1, 192, 0, 2, 100, 0, 1]);
        msg.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .expect("literal")
                .octets(),
        );
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key");
        m.update(&msg);
        let full = m.finalize().into_bytes();
        assert_eq!(&payload[16..36], &full[..20]);
        assert_eq!(TANDEM_DOMAIN.len(), 34);
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
