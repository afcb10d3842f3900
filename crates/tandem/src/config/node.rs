//! The node's own tables: `[node]`, `[interfaces]`, `[carp]`, `[firewall]`; never synced.

use super::secret::secret;
use super::Errors;
use carp::{Advbase, Skew};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use toml::Spanned;

/// Highest advbase/advskew a user may set; 255 is the bow-out value.
pub const MAX_ADVBASE: u8 = 254;
pub const MAX_ADVSKEW: u8 = 254;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    name: Spanned<String>,
    #[serde(default)]
    advskew: Option<Spanned<i64>>,
    #[serde(default = "default_true")]
    preempt: bool,
    control_socket: Spanned<String>,
    #[serde(default)]
    status_group: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCarp {
    #[serde(default)]
    passphrase: Option<Spanned<String>>,
    #[serde(default)]
    passphrase_file: Option<Spanned<String>>,
    #[serde(default)]
    advbase: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirewall {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default = "default_true")]
    forwarding: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub advskew: Skew,
    pub preempt: bool,
    pub control_socket: PathBuf,
    /// A group whose members may ask for status (and `config show`) without being root.
    pub status_group: Option<(String, u32)>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Carp {
    pub passphrase: Vec<u8>,
    pub advbase: Advbase,
}

impl fmt::Debug for Carp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Carp")
            .field("passphrase", &"<secret>")
            .field("advbase", &self.advbase)
            .finish()
    }
}

/// The node-local `[firewall]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirewallSettings {
    /// Whether this node applies the ruleset: `enabled` if given, else whether the config has
    /// any firewall area at all (a VIP-only config must not get a default-drop ruleset).
    pub managed: bool,
    /// Turn on IPv4 and IPv6 forwarding (a firewall routes).
    pub forwarding: bool,
}

/// A number in `lo..=hi`, or an error at its place.
pub fn ranged(errs: &mut Errors<'_>, v: &Spanned<i64>, what: &str, lo: i64, hi: i64) -> Option<u8> {
    let n = *v.get_ref();
    if n < lo || n > hi {
        errs.at(
            v.span(),
            format!("{what} must be between {lo} and {hi}, not {n}"),
        );
        return None;
    }
    u8::try_from(n).ok()
}

/// A node name or other identifier that travels between nodes and lands in logs, files and
/// terminals: letters, digits, `-`, `_`, `.`; 1 to 63 characters (the rule peers are held to).
pub use configsync::rpc::is_node_name as valid_name;

pub fn node(errs: &mut Errors<'_>, raw: Option<&Spanned<RawNode>>) -> Node {
    let Some(raw) = raw else {
        errs.whole("missing table [node] (name, control_socket)");
        return Node {
            name: String::new(),
            advskew: Skew(0),
            preempt: true,
            control_socket: PathBuf::new(),
            status_group: None,
        };
    };
    let n = raw.get_ref();
    let name = n.name.get_ref().trim().to_string();
    if !valid_name(&name) {
        errs.at(
            n.name.span(),
            format!("node.name {name:?} must be 1-63 letters, digits, '-', '_' or '.'"),
        );
    }
    let advskew = match &n.advskew {
        Some(v) => ranged(errs, v, "node.advskew", 0, MAX_ADVSKEW.into()).unwrap_or(0),
        None => 0,
    };
    let control_socket = PathBuf::from(n.control_socket.get_ref());
    if control_socket.as_os_str().is_empty() {
        errs.at(
            n.control_socket.span(),
            "node.control_socket must name a path",
        );
    }
    let status_group =
        n.status_group
            .as_ref()
            .and_then(|g| match linux::access::group_id(g.get_ref()) {
                Ok(Some(gid)) => Some((g.get_ref().clone(), gid)),
                Ok(None) => {
                    errs.at(
                        g.span(),
                        format!(
                            "node.status_group: no group {:?} on this machine",
                            g.get_ref()
                        ),
                    );
                    None
                }
                Err(e) => {
                    errs.at(
                        g.span(),
                        format!(
                            "node.status_group {:?}: cannot look it up: {e}",
                            g.get_ref()
                        ),
                    );
                    None
                }
            });
    Node {
        name,
        advskew: Skew(advskew),
        preempt: n.preempt,
        control_socket: errs.resolve(&n.control_socket),
        status_group,
    }
}

pub fn interfaces(
    errs: &mut Errors<'_>,
    raw: &BTreeMap<String, Spanned<String>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (logical, dev) in raw {
        let d = dev.get_ref();
        if d.is_empty() || d.len() > 15 || d.contains(['/', ' ']) {
            errs.at(
                dev.span(),
                format!("interfaces.{logical}: {d:?} is not a valid device name (1-15 characters, no '/' or space)"),
            );
        }
        if !valid_name(logical) {
            errs.at(
                dev.span(),
                format!("interfaces: {logical:?} is not a valid logical name (letters, digits, '-', '_', '.')"),
            );
        }
        out.insert(logical.clone(), d.clone());
    }
    out
}

pub fn carp(errs: &mut Errors<'_>, raw: Option<&Spanned<RawCarp>>) -> Carp {
    let Some(raw) = raw else {
        errs.whole("missing table [carp] (passphrase or passphrase_file)");
        return Carp {
            passphrase: Vec::new(),
            advbase: Advbase(1),
        };
    };
    let c = raw.get_ref();
    let passphrase = secret(
        errs,
        raw.span(),
        (&c.passphrase, "carp.passphrase"),
        (&c.passphrase_file, "carp.passphrase_file"),
        1,
    )
    .unwrap_or_default();
    if passphrase.len() > carp::auth::MAX_KEY_LEN {
        tracing::warn!(
            "carp passphrase is longer than {} bytes; like BSD CARP only the first {} are used",
            carp::auth::MAX_KEY_LEN,
            carp::auth::MAX_KEY_LEN
        );
    }
    let advbase = match &c.advbase {
        Some(v) => ranged(errs, v, "carp.advbase", 1, MAX_ADVBASE.into()).unwrap_or(1),
        None => 1,
    };
    Carp {
        passphrase,
        advbase: Advbase(advbase),
    }
}

pub fn firewall(raw: Option<&RawFirewall>, areas: &firewall::Areas) -> FirewallSettings {
    FirewallSettings {
        managed: raw
            .and_then(|f| f.enabled)
            .unwrap_or(*areas != firewall::Areas::default()),
        forwarding: raw.is_none_or(|f| f.forwarding),
    }
}
