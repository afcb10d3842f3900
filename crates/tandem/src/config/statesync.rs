//! The node-local `[statesync]` table: connection state sync over the sync link.
//!
//! The key (`key`, or `key_file` without its trailing newline) is taken byte for byte, so a
//! binary key file works; written as `hex:<digits>` or `base64:<text>` it is decoded first.
//! Whichever form, it must hold at least 16 bytes (128 bits) of key material, and the same
//! material in any form is the same key.

use super::secret::secret;
use super::Errors;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use toml::Spanned;

/// Default UDP port of state sync.
pub const STATESYNC_PORT: u16 = 7777;
/// Shortest shared secret accepted (128 bits): it is the only thing keeping forged states out.
const MIN_STATESYNC_KEY: usize = statesync::MIN_SECRET_LEN;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStateSync {
    #[serde(default)]
    enabled: Option<bool>,
    interface: Spanned<String>,
    #[serde(default)]
    port: Option<Spanned<i64>>,
    peers: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    key_file: Option<Spanned<String>>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct StateSyncSettings {
    pub enabled: bool,
    /// Logical interface of the dedicated sync link.
    pub interface: String,
    pub device: String,
    pub port: u16,
    /// Unicast peers (their addresses on the sync link).
    pub peers: Vec<IpAddr>,
    /// The shared secret every message is sealed with: the key material, decoded when it was
    /// written as `hex:` or `base64:`.
    pub key: Vec<u8>,
}

impl fmt::Debug for StateSyncSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSyncSettings")
            .field("enabled", &self.enabled)
            .field("interface", &self.interface)
            .field("device", &self.device)
            .field("port", &self.port)
            .field("peers", &self.peers)
            .field("key", &"<secret>")
            .finish()
    }
}

pub fn statesync(
    errs: &mut Errors<'_>,
    interfaces: &BTreeMap<String, String>,
    raw: &Spanned<RawStateSync>,
) -> StateSyncSettings {
    let r = raw.get_ref();
    let interface = r.interface.get_ref().clone();
    let device = match interfaces.get(&interface) {
        Some(d) => d.clone(),
        None => {
            errs.at(
                r.interface.span(),
                format!("statesync.interface: unknown interface {interface:?}"),
            );
            String::new()
        }
    };
    let port = match &r.port {
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(v) if v > 0 => v,
            _ => {
                errs.at(p.span(), "statesync.port must be between 1 and 65535");
                STATESYNC_PORT
            }
        },
        None => STATESYNC_PORT,
    };
    let mut peers = Vec::new();
    if r.peers.get_ref().is_empty() {
        errs.at(
            r.peers.span(),
            "statesync.peers needs at least one peer address",
        );
    }
    for p in r.peers.get_ref() {
        match p.get_ref().parse::<IpAddr>() {
            Ok(a) => {
                if peers
                    .first()
                    .is_some_and(|f: &IpAddr| f.is_ipv4() != a.is_ipv4())
                {
                    errs.at(
                        p.span(),
                        "statesync.peers must all be of one family (the sync socket has one address)",
                    );
                }
                peers.push(a)
            }
            Err(_) => errs.at(
                p.span(),
                format!("statesync.peers: {:?} is not an IP address", p.get_ref()),
            ),
        }
    }
    // Present and not empty; its length is checked once decoded.
    let key = secret(
        errs,
        raw.span(),
        (&r.key, "statesync.key"),
        (&r.key_file, "statesync.key_file"),
        1,
    )
    .filter(|k| !k.is_empty())
    .and_then(|k| {
        let (span, what) = match (&r.key, &r.key_file) {
            (Some(v), _) => (v.span(), "statesync.key".to_string()),
            (None, Some(f)) => (
                f.span(),
                format!("statesync.key_file {}", errs.resolve(f).display()),
            ),
            (None, None) => return None,
        };
        match key_material(&k) {
            Ok(m) if m.len() >= MIN_STATESYNC_KEY => Some(m),
            Ok(m) => {
                errs.at(
                    span,
                    format!(
                        "{what} must hold at least {MIN_STATESYNC_KEY} bytes (128 bits) of key material{}, not {}",
                        match encoding(&k) {
                            Some(Encoding::Hex) => " (32 hex digits)",
                            Some(Encoding::Base64) => " (24 base64 characters)",
                            None => "",
                        },
                        m.len(),
                    ),
                );
                None
            }
            Err(e) => {
                errs.at(span, format!("{what}: {e}"));
                None
            }
        }
    })
    .unwrap_or_default();
    StateSyncSettings {
        enabled: r.enabled.unwrap_or(true),
        interface,
        device,
        port,
        peers,
        key,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Hex,
    Base64,
}

const HEX_PREFIX: &[u8] = b"hex:";
const BASE64_PREFIX: &[u8] = b"base64:";

fn encoding(key: &[u8]) -> Option<Encoding> {
    if key.starts_with(HEX_PREFIX) {
        Some(Encoding::Hex)
    } else if key.starts_with(BASE64_PREFIX) {
        Some(Encoding::Base64)
    } else {
        None
    }
}

/// The key material a key stands for: `hex:<digits>` and `base64:<text>` decoded, anything else
/// byte for byte. The errors never quote the key.
fn key_material(key: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    match encoding(key) {
        Some(Encoding::Hex) => {
            let digits = &key[HEX_PREFIX.len()..];
            if !digits.len().is_multiple_of(2) {
                return Err("after \"hex:\" comes an even number of hex digits".into());
            }
            digits
                .chunks_exact(2)
                .map(|pair| {
                    let d = |c: u8| char::from(c).to_digit(16);
                    match (d(pair[0]), d(pair[1])) {
                        (Some(hi), Some(lo)) => Ok((hi << 4 | lo) as u8),
                        _ => Err("after \"hex:\" come only hex digits (0-9, a-f)".to_string()),
                    }
                })
                .collect()
        }
        Some(Encoding::Base64) => base64::engine::general_purpose::STANDARD
            .decode(&key[BASE64_PREFIX.len()..])
            .map_err(|_| {
                "after \"base64:\" comes standard base64 (A-Z, a-z, 0-9, +, /, = padding)".into()
            }),
        None => Ok(key.to_vec()),
    }
}
