//! The synced area `wireguard` (`[[wireguard]]`, `[[wireguard.peers]]`): tunnel interfaces
//! with their private key, addresses, listen port and peers. Every node holds the same key, so
//! a remote peer reaches the cluster's VIP whichever node is master. Checked here, each
//! problem at its FILE:LINE:COL; applied by the wg_apply subsystem.
//!
//! The key: on the primary `private_key_file` names a file (read when the config is built;
//! only the node's own file may name one), or `private_key` holds it inline; the key then
//! travels inline in the pushed area text, over the mutually authenticated sync channel only,
//! and a peer keeps it in its state dir (0600). It is never shown: not in errors, `Debug`,
//! `config show` or `tandem.get_areas`.

use super::Errors;
use base64::Engine;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWgInterface {
    /// The logical interface name (rules say `interface = "wg0"`).
    name: Spanned<String>,
    #[serde(default)]
    listen_port: Option<Spanned<i64>>,
    /// The VIP remote peers use as this tunnel's endpoint.
    #[serde(default)]
    vip: Option<Spanned<String>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    #[serde(default)]
    private_key: Option<Spanned<String>>,
    #[serde(default)]
    private_key_file: Option<Spanned<String>>,
    #[serde(default)]
    peers: Vec<Spanned<RawWgPeer>>,
    /// For the admin; not used.
    #[serde(default, rename = "description")]
    _description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWgPeer {
    public_key: Spanned<String>,
    #[serde(default)]
    allowed_ips: Vec<Spanned<String>>,
    #[serde(default)]
    endpoint: Option<Spanned<String>>,
    #[serde(default)]
    persistent_keepalive: Option<Spanned<i64>>,
    /// For the admin; not used.
    #[serde(default, rename = "description")]
    _description: Option<String>,
}

/// `[wireguard_local]`: node-local, never synced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWgLocal {
    /// Where the userspace implementation puts the UAPI sockets (`DEVICE.sock`).
    #[serde(default)]
    socket_dir: Option<Spanned<String>>,
}

/// Where boringtun and wireguard-go put their UAPI sockets.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/wireguard";

pub fn socket_dir(errs: &mut Errors<'_>, raw: Option<&Spanned<RawWgLocal>>) -> std::path::PathBuf {
    match raw.and_then(|r| r.get_ref().socket_dir.as_ref()) {
        Some(d) if d.get_ref().is_empty() => {
            errs.at(d.span(), "wireguard_local.socket_dir must name a directory");
            DEFAULT_SOCKET_DIR.into()
        }
        Some(d) => errs.resolve(d),
        None => DEFAULT_SOCKET_DIR.into(),
    }
}

/// A WireGuard private key: its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<secret>)")
    }
}

/// One checked tunnel interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgInterface {
    /// The logical name.
    pub name: String,
    /// The device on this node: `[interfaces]` maps the logical name, else the name itself.
    pub device: String,
    pub listen_port: Option<u16>,
    /// The VIP remote peers reach the tunnel on (checked against the VIPs).
    pub vip: Option<std::net::IpAddr>,
    pub addresses: Vec<IpNet>,
    pub private_key: PrivateKey,
    pub peers: Vec<WgPeer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    pub public_key: [u8; 32],
    pub allowed_ips: Vec<IpNet>,
    pub endpoint: Option<SocketAddr>,
    /// Seconds; 0 or None: off.
    pub persistent_keepalive: Option<u16>,
}

/// A key as `wg genkey` / `wg pubkey` write it: 44 characters of standard base64 for 32
/// bytes. The error never quotes the key.
pub fn decode_key(s: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| "is not base64 (a key as `wg genkey` or `wg pubkey` prints it)".to_string())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "is {} bytes long; a WireGuard key is 32 bytes (44 characters of base64)",
            bytes.len()
        )
    })
}

pub fn encode_key(k: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// An allowed IP: a prefix with no host bits (`192.0.2.0/24`; a lone address is /32 or /128).
fn allowed_ip(s: &str) -> Result<IpNet, String> {
    let net: IpNet = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<std::net::IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                return Err(format!(
                    "{s:?} is not an address prefix (like 192.0.2.0/24)"
                ))
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "{s:?} is not a prefix: it has host bits set (the prefix is {})",
            net.trunc()
        ));
    }
    Ok(net)
}

fn int(errs: &mut Errors<'_>, v: &Spanned<i64>, what: &str, min: i64, max: i64) -> Option<u16> {
    let n = *v.get_ref();
    if n < min || n > max {
        errs.at(v.span(), format!("{what} must be {min} to {max}, not {n}"));
        return None;
    }
    u16::try_from(n).ok()
}

/// Checks the `[[wireguard]]` interfaces; `interfaces` is `[interfaces]` (logical -> device).
pub fn wireguard(
    errs: &mut Errors<'_>,
    raw: &[Spanned<RawWgInterface>],
    interfaces: &BTreeMap<String, String>,
    vips: &[std::net::IpAddr],
    own_file: &std::path::Path,
) -> Vec<WgInterface> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    let mut devices = BTreeSet::new();
    for spanned in raw {
        let r = spanned.get_ref();
        let name = r.name.get_ref().clone();
        let before = errs.list.len();
        if !super::node::valid_name(&name) {
            errs.at(
                r.name.span(),
                format!(
                    "wireguard name {} must be 1-63 letters, digits, '-', '_' or '.' (a logical interface name)",
                    configsync::area::shown(&name)
                ),
            );
            continue;
        }
        if !names.insert(name.clone()) {
            errs.at(
                r.name.span(),
                format!("wireguard interface {name:?} is defined twice"),
            );
            continue;
        }
        let device = interfaces
            .get(&name)
            .cloned()
            .unwrap_or_else(|| name.clone());
        if device.len() > 15 {
            errs.at(
                r.name.span(),
                format!("wireguard {name:?}: the device name {device:?} is longer than 15 characters; map it to a shorter one in [interfaces] ({name} = \"wg0\")"),
            );
        }
        if !devices.insert(device.clone()) {
            errs.at(
                r.name.span(),
                format!(
                    "wireguard {name:?}: device {device} is used by another wireguard interface"
                ),
            );
        }
        let listen_port = r.listen_port.as_ref().and_then(|p| {
            int(
                errs,
                p,
                &format!("wireguard {name:?}: listen_port"),
                1,
                65535,
            )
        });
        if let (Some(p), Some(span)) = (listen_port, r.listen_port.as_ref()) {
            if let Some(other) = ports.insert(p, name.clone()) {
                errs.at(
                    span.span(),
                    format!("wireguard {name:?}: listen_port {p} is also the port of {other:?}"),
                );
            }
        }
        let vip = r.vip.as_ref().and_then(|v| {
            let addr = v.get_ref().parse::<std::net::IpAddr>();
            match (addr, listen_port) {
                (Ok(a), Some(_)) if vips.contains(&a) => Some(a),
                (Ok(a), Some(_)) => {
                    errs.at(v.span(), format!("wireguard {name:?}: vip {a} is not an address of [[vips]]"));
                    None
                }
                (Ok(_), None) => {
                    errs.at(v.span(), format!("wireguard {name:?}: vip needs a listen_port (remote peers reach VIP:PORT)"));
                    None
                }
                (Err(_), _) => {
                    errs.at(v.span(), format!("wireguard {name:?}: vip {} is not an address", configsync::area::shown(v.get_ref())));
                    None
                }
            }
        });
        let mut addresses = Vec::new();
        for a in &r.addresses {
            match a.get_ref().parse::<IpNet>() {
                Ok(n) if addresses.contains(&n) => errs.at(
                    a.span(),
                    format!("wireguard {name:?}: address {n} is listed twice"),
                ),
                Ok(n) => addresses.push(n),
                Err(_) => errs.at(
                    a.span(),
                    format!(
                        "wireguard {name:?}: address {} is not ADDRESS/PREFIX (like 203.0.113.129/25)",
                        configsync::area::shown(a.get_ref())
                    ),
                ),
            }
        }
        let private_key = private_key(errs, spanned, r, &name, own_file);
        let mut peers = Vec::new();
        let mut keys: BTreeSet<[u8; 32]> = BTreeSet::new();
        let mut routed: BTreeMap<IpNet, usize> = BTreeMap::new();
        for (i, p) in r.peers.iter().map(Spanned::get_ref).enumerate() {
            let at = format!("wireguard {name:?}: peer {}", i + 1);
            let public_key = match decode_key(p.public_key.get_ref()) {
                Ok(k) => {
                    if !keys.insert(k) {
                        errs.at(
                            p.public_key.span(),
                            format!("{at}: public_key is also the key of an earlier peer"),
                        );
                    }
                    k
                }
                Err(e) => {
                    errs.at(p.public_key.span(), format!("{at}: public_key {e}"));
                    [0; 32]
                }
            };
            let mut allowed_ips = Vec::new();
            for a in &p.allowed_ips {
                match allowed_ip(a.get_ref()) {
                    Ok(n) => match routed.insert(n, i + 1) {
                        Some(j) if j == i + 1 => errs.at(
                            a.span(),
                            format!("{at}: allowed IP {n} is listed twice"),
                        ),
                        Some(j) => errs.at(
                            a.span(),
                            format!("{at}: allowed IP {n} is also an allowed IP of peer {j} (traffic to it can go to one peer only)"),
                        ),
                        None => allowed_ips.push(n),
                    },
                    Err(e) => errs.at(a.span(), format!("{at}: allowed IP {e}")),
                }
            }
            let endpoint = p.endpoint.as_ref().and_then(|e| match e.get_ref().parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    errs.at(
                        e.span(),
                        format!(
                            "{at}: endpoint {} is not ADDRESS:PORT (like 198.51.100.7:51820 or [2001:db8::7]:51820; no host names)",
                            configsync::area::shown(e.get_ref())
                        ),
                    );
                    None
                }
            });
            let persistent_keepalive = p
                .persistent_keepalive
                .as_ref()
                .and_then(|k| int(errs, k, &format!("{at}: persistent_keepalive"), 0, 65535))
                .filter(|k| *k > 0);
            peers.push(WgPeer {
                public_key,
                allowed_ips,
                endpoint,
                persistent_keepalive,
            });
        }
        if let (Some(private_key), true) = (private_key, errs.list.len() == before) {
            out.push(WgInterface {
                name,
                device,
                listen_port,
                vip,
                addresses,
                private_key,
                peers,
            });
        }
    }
    out
}

fn private_key(
    errs: &mut Errors<'_>,
    table: &Spanned<RawWgInterface>,
    r: &RawWgInterface,
    name: &str,
    own_file: &std::path::Path,
) -> Option<PrivateKey> {
    if let Some(f) = &r.private_key_file {
        if errs.sources.file_of(&f.span()) != Some(own_file) {
            errs.at(
                f.span(),
                format!("wireguard {name:?}: private_key_file is taken from the node's own file only (a synced area carries the key itself)"),
            );
            return None;
        }
    }
    if let Some(file) = r
        .private_key
        .as_ref()
        .and_then(|k| errs.sources.file_of(&k.span()))
    {
        super::secret::warn_if_shared(file, "the config file holding a wireguard private key");
    }
    let inline = format!("wireguard {name:?}: private_key");
    let file = format!("wireguard {name:?}: private_key_file");
    let bytes = super::secret::secret(
        errs,
        table.span(),
        (&r.private_key, &inline),
        (&r.private_key_file, &file),
        1,
    )?;
    let (span, what) = match (&r.private_key, &r.private_key_file) {
        (Some(k), _) => (k.span(), "private_key".to_string()),
        (None, Some(f)) => (
            f.span(),
            format!(
                "private_key_file {}: the key in it",
                errs.resolve(f).display()
            ),
        ),
        (None, None) => return None,
    };
    match std::str::from_utf8(&bytes)
        .map_err(|_| "is not base64 (a key as `wg genkey` prints it)".to_string())
        .and_then(decode_key)
    {
        Ok(k) => Some(PrivateKey(k)),
        Err(e) => {
            errs.at(span, format!("wireguard {name:?}: {what} {e}"));
            None
        }
    }
}

/// Puts every key given by file into the plain config inline (what is hashed, compared and
/// pushed), so a peer gets the key itself and a new key in the file makes a new generation.
pub fn inline_keys(plain: &mut toml::Table, checked: &[WgInterface]) {
    let Some(toml::Value::Array(items)) = plain.get_mut("wireguard") else {
        return;
    };
    for item in items {
        let toml::Value::Table(t) = item else {
            continue;
        };
        if t.remove("private_key_file").is_none() {
            continue;
        }
        let name = t.get("name").and_then(toml::Value::as_str);
        if let Some(i) = checked.iter().find(|i| Some(i.name.as_str()) == name) {
            t.insert(
                "private_key".into(),
                toml::Value::String(encode_key(i.private_key.expose())),
            );
        }
    }
}

#[cfg(test)]
#[path = "wireguard_tests.rs"]
mod tests;
