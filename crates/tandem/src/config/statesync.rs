//! The node-local `[statesync]` table: connection state sync over the sync link.

use super::secret::secret;
use super::Errors;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use toml::Spanned;

/// Default UDP port of state sync.
pub const STATESYNC_PORT: u16 = 7777;
/// Shortest shared secret accepted: it is the only thing keeping forged states out.
const MIN_STATESYNC_KEY: usize = 16;

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
    /// The shared secret every message is sealed with.
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
    let key = secret(
        errs,
        raw.span(),
        (&r.key, "statesync.key"),
        (&r.key_file, "statesync.key_file"),
        MIN_STATESYNC_KEY,
    )
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
