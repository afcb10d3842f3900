//! Sealing: every datagram is XChaCha20-Poly1305 under a key derived from the cluster's
//! pre-shared key, with the 28-byte header as associated data.
//!
//! - The pre-shared key is 32 bytes ([`SealKey::from_bytes`], [`SealKey::from_hex`]) or a
//!   shared secret of any bytes, at least [`MIN_SECRET_LEN`] (128 bits), put through
//!   HKDF-SHA256 extract ([`SealKey::from_secret`]; HKDF is not a password hash: use random
//!   key material, not a word someone could guess).
//! - Two subkeys are derived from it with HKDF-SHA256: the AEAD key and a 32-bit key id that
//!   the header carries, so that a peer with another key is counted as foreign (wrong key)
//!   rather than as tampering, without the id revealing anything about the AEAD key. The same
//!   id ([`SealKey::key_id`]) is the key's public fingerprint: operators compare it between
//!   nodes.
//! - The 24-byte XChaCha nonce is `node id (4) | epoch (8) | seq (8) | 0 (4)`, all from the
//!   header: it never repeats as long as node ids are unique and each daemon start picks a new
//!   random epoch (the engine never reuses a seq within an epoch).

use crate::wire::{Header, Packet, HEADER_LEN, OVERHEAD, TAG_LEN};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use std::fmt;

const PASSPHRASE_SALT: &[u8] = b"tandem statesync v1 passphrase";
const INFO_AEAD: &[u8] = b"tandem statesync v1 aead key";
const INFO_KEY_ID: &[u8] = b"tandem statesync v1 key id";

/// The cluster's pre-shared sync key. Its Debug output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey([u8; 32]);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(..)")
    }
}

/// Shortest shared secret [`SealKey::from_secret`] takes: 16 bytes, 128 bits.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a hex key must be 64 hex digits (32 bytes)")]
    BadHex,
    #[error("the shared secret has {len} bytes; at least {MIN_SECRET_LEN} (128 bits) are needed")]
    TooShort { len: usize },
}

impl SealKey {
    pub fn from_bytes(key: [u8; 32]) -> SealKey {
        SealKey(key)
    }

    /// 64 hex digits.
    pub fn from_hex(s: &str) -> Result<SealKey, KeyError> {
        let s = s.trim().as_bytes();
        if s.len() != 64 {
            return Err(KeyError::BadHex);
        }
        let mut key = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hi = hex_digit(pair[0]).ok_or(KeyError::BadHex)?;
            let lo = hex_digit(pair[1]).ok_or(KeyError::BadHex)?;
            key[i] = (hi << 4) | lo;
        }
        Ok(SealKey(key))
    }

    /// HKDF-SHA256 extract of a shared secret with a fixed salt. The secret is taken byte for
    /// byte (any bytes: binary key files are not text), and must hold at least
    /// [`MIN_SECRET_LEN`] bytes. A UTF-8 passphrase gives the key it always gave.
    pub fn from_secret(secret: &[u8]) -> Result<SealKey, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort { len: secret.len() });
        }
        let (prk, _) = Hkdf::<Sha256>::extract(Some(PASSPHRASE_SALT), secret);
        let mut key = [0u8; 32];
        key.copy_from_slice(&prk);
        Ok(SealKey(key))
    }

    /// The key's public id: the 32-bit value every datagram sealed under it carries in its
    /// header (HKDF-expand under a label of its own, so it says nothing about the AEAD key).
    /// Nodes that show the same id use the same key.
    pub fn key_id(&self) -> u32 {
        subkeys(self).1
    }
}

/// The AEAD key and the key id, both HKDF-SHA256-expanded from the key under their own labels.
fn subkeys(key: &SealKey) -> ([u8; 32], u32) {
    let hk = Hkdf::<Sha256>::from_prk(&key.0).unwrap_or_else(|_| Hkdf::new(None, &key.0));
    let mut aead_key = [0u8; 32];
    let mut id = [0u8; 4];
    // Both lengths are far below HKDF's limit (255 * 32 bytes); the calls cannot fail.
    let _ = hk.expand(INFO_AEAD, &mut aead_key);
    let _ = hk.expand(INFO_KEY_ID, &mut id);
    (aead_key, u32::from_be_bytes(id))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("datagram too short")]
    TooShort,
    #[error("authentication failed (tampered, or sealed under another key)")]
    BadSeal,
}

/// Seals and opens datagrams under one key. Cheap to use; build it once.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    key_id: u32,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish()
    }
}

fn nonce(header: &[u8]) -> XNonce {
    // node (header 8..12), epoch (12..20), seq (20..28), then zeros.
    let mut n = [0u8; 24];
    if let Some(src) = header.get(8..28) {
        n[..20].copy_from_slice(src);
    }
    XNonce::from(n)
}

impl Sealer {
    pub fn new(key: &SealKey) -> Sealer {
        let (aead_key, key_id) = subkeys(key);
        Sealer {
            cipher: XChaCha20Poly1305::new(&aead_key.into()),
            key_id,
        }
    }

    /// The id that headers sealed under this key carry.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Seals in place: `buf` holds an emitted header followed by the plaintext body; the body is
    /// encrypted and the tag appended.
    pub fn seal(&self, buf: &mut Vec<u8>) {
        if buf.len() < HEADER_LEN {
            return;
        }
        let (header, body) = buf.split_at_mut(HEADER_LEN);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce(header), header, body);
        match tag {
            Ok(tag) => buf.extend_from_slice(&tag),
            // Only for bodies over 256 GiB; never for a datagram.
            Err(_) => buf.truncate(0),
        }
    }

    /// Opens a whole datagram in place: on success the plaintext body is
    /// `buf[HEADER_LEN..returned]`. On failure `buf` holds garbage.
    pub fn open(&self, buf: &mut [u8]) -> Result<usize, OpenError> {
        if buf.len() < OVERHEAD {
            return Err(OpenError::TooShort);
        }
        let end = buf.len() - TAG_LEN;
        let (msg, tag) = buf.split_at_mut(end);
        let tag = Tag::clone_from_slice(tag);
        let (header, body) = msg.split_at_mut(HEADER_LEN);
        self.cipher
            .decrypt_in_place_detached(&nonce(header), header, body, &tag)
            .map_err(|_| OpenError::BadSeal)?;
        Ok(end)
    }

    /// Builds and seals a datagram from a header and a plaintext body.
    pub fn seal_datagram(&self, header: &Header, body: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(OVERHEAD + body.len());
        buf.extend_from_slice(&header.to_bytes());
        buf.extend_from_slice(body);
        self.seal(&mut buf);
        buf
    }

    /// Parses, checks and opens a datagram into a new buffer: the header and the plaintext body.
    /// (The engine uses [`Sealer::open`] on a reused buffer instead.)
    pub fn open_datagram(&self, datagram: &[u8]) -> Result<(Header, Vec<u8>), OpenOrDecode> {
        let header = Header::parse(&Packet::new_checked(datagram)?)?;
        let mut buf = datagram.to_vec();
        let end = self.open(&mut buf)?;
        buf.truncate(end);
        buf.drain(..HEADER_LEN);
        Ok((header, buf))
    }
}

/// Either failure of [`Sealer::open_datagram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenOrDecode {
    #[error(transparent)]
    Decode(#[from] crate::wire::DecodeError),
    #[error(transparent)]
    Open(#[from] OpenError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Kind, NodeId};

    fn header(seq: u64, key_id: u32) -> Header {
        Header {
            kind: Kind::Control,
            key_id,
            node: NodeId(7),
            epoch: 0x0102_0304_0506_0708,
            seq,
        }
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let s = Sealer::new(&SealKey::from_bytes([7; 32]));
        let d = s.seal_datagram(&header(1, s.key_id()), b"hello");
        assert_eq!(d.len(), OVERHEAD + 5);
        let (h, body) = s.open_datagram(&d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h, header(1, s.key_id()));
        assert_eq!(body, b"hello");
        for i in 0..d.len() {
            let mut t = d.clone();
            t[i] ^= 0x01;
            assert!(s.open_datagram(&t).is_err(), "flip at byte {i} accepted");
        }
        let other = Sealer::new(&SealKey::from_bytes([8; 32]));
        assert_ne!(other.key_id(), s.key_id());
        assert_eq!(
            other.open_datagram(&d),
            Err(OpenOrDecode::Open(OpenError::BadSeal))
        );
    }

    #[test]
    fn keys_parse() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let k = SealKey::from_hex(hex).unwrap_or_else(|e| panic!("{e}"));
        let mut want = [0u8; 32];
        for (i, b) in want.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(k, SealKey::from_bytes(want));
        assert_eq!(SealKey::from_hex("00"), Err(KeyError::BadHex));
        assert_eq!(
            SealKey::from_hex(&hex.replace('0', "g")),
            Err(KeyError::BadHex)
        );
        assert_eq!(
            SealKey::from_secret(b""),
            Err(KeyError::TooShort { len: 0 })
        );
        // 128 bits is the least key material taken.
        assert_eq!(
            SealKey::from_secret(b"fifteen bytes!!"),
            Err(KeyError::TooShort { len: 15 })
        );
        let ok = |s: &[u8]| SealKey::from_secret(s).unwrap_or_else(|e| panic!("{e}"));
        let a = ok(b"correct horse battery");
        assert_eq!(a, ok(b"correct horse battery"));
        assert_ne!(a, ok(b"correct horse battery staple"));
        assert_eq!(ok(b"sixteen bytes!!!"), ok(b"sixteen bytes!!!"));
        assert_eq!(format!("{a:?}"), "SealKey(..)");
    }

    /// A key file holds bytes, not text: two binary keys that differ only in bytes that are
    /// not UTF-8 are two keys (read as text, each such byte became U+FFFD and both were one).
    #[test]
    fn binary_secrets_differing_only_in_non_utf8_bytes_are_different_keys() {
        // Lone continuation bytes and bytes that never occur in UTF-8: each reads as U+FFFD.
        let a: Vec<u8> = [
            b"tandem ".as_slice(),
            &[0xff, 0xfe, 0x80, 0x81, 0x9f, 0xbf, 0xc0, 0xf8, 0xfd],
        ]
        .concat();
        let b: Vec<u8> = [
            b"tandem ".as_slice(),
            &[0xfe, 0xff, 0xbf, 0xa0, 0x80, 0x90, 0xc1, 0xf9, 0xfc],
        ]
        .concat();
        assert_eq!(
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b),
            "the two keys must look alike as text for this test to mean anything"
        );
        let ka = SealKey::from_secret(&a).unwrap_or_else(|e| panic!("{e}"));
        let kb = SealKey::from_secret(&b).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(ka, kb);
        assert_ne!(ka.key_id(), kb.key_id());
        // And a datagram sealed under one does not open under the other.
        let d = Sealer::new(&ka).seal_datagram(&header(1, ka.key_id()), b"state");
        assert_eq!(
            Sealer::new(&kb).open_datagram(&d),
            Err(OpenOrDecode::Open(OpenError::BadSeal))
        );
    }

    #[test]
    fn the_key_id_is_the_one_headers_carry() {
        for secret in [
            &b"correct horse battery staple"[..],
            &[0u8; 16],
            &[0xff; 64],
        ] {
            let k = SealKey::from_secret(secret).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(k.key_id(), Sealer::new(&k).key_id());
        }
    }
}
