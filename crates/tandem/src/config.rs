//! The node's TOML configuration: parsed once at the edge into typed values, every error
//! reported as `FILE:LINE:COL: message`.
//!
//! Node-local settings ([node], [interfaces], [carp]) never sync; `vips` is the first synced area.

use anyhow::Context;
use carp::{Advbase, Skew, Vhid};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Highest advbase/advskew a user may set; 255 is the bow-out value.
const MAX_ADVBASE: u8 = 254;
const MAX_ADVSKEW: u8 = 254;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from and what it said, to place errors found later (the firewall
    /// areas can only be fully checked against the kernel's addresses).
    pub file: PathBuf,
    pub text: String,
    /// The node's own config file, what a reload re-reads: `file` itself, except on a config
    /// sync peer whose running config is composed in its state dir (see configsync.rs).
    pub own_file: PathBuf,
    /// The node-local `[sync]` table (config sync); None without one.
    pub sync: Option<crate::configsync::SyncSettings>,
    pub node: Node,
    /// Logical name -> device.
    pub interfaces: BTreeMap<String, String>,
    pub carp: Carp,
    pub vips: Vec<Vip>,
    pub firewall: FirewallSettings,
    /// Connection state sync over the sync link; None when the config has no [statesync].
    pub statesync: Option<StateSyncSettings>,
    /// The synced firewall areas (aliases, rules, nat, gateways, routes).
    pub areas: firewall::Areas,
}

/// The node-local `[statesync]` table.
#[derive(Clone, PartialEq, Eq)]
pub struct StateSyncSettings {
    pub enabled: bool,
    /// Logical interface of the dedicated sync link.
    pub interface: String,
    pub device: String,
    pub port: u16,
    /// Unicast peers (their addresses on the sync link).
    pub peers: Vec<std::net::IpAddr>,
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

/// Default UDP port of state sync.
pub const STATESYNC_PORT: u16 = 7777;
/// Shortest shared secret accepted: it is the only thing keeping forged states out.
const MIN_STATESYNC_KEY: usize = 16;

/// The node-local `[firewall]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirewallSettings {
    /// Whether this node applies the ruleset: `enabled` if given, else whether the config has
    /// any firewall area at all (a VIP-only config must not get a default-drop ruleset).
    pub managed: bool,
    /// Turn on IPv4 and IPv6 forwarding (a firewall routes).
    pub forwarding: bool,
}

impl Config {
    /// Places errors from the firewall crate (byte spans) in the file.
    pub fn locate(&self, errors: Vec<firewall::ConfigError>) -> ConfigErrors {
        ConfigErrors(
            errors
                .into_iter()
                .map(|e| {
                    let (line, col) = e.line_col(&self.text).unwrap_or((0, 0));
                    ConfigError {
                        file: self.file.clone(),
                        line,
                        col,
                        message: e.message,
                    }
                })
                .collect(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub advskew: Skew,
    pub preempt: bool,
    pub control_socket: PathBuf,
}

#[derive(Clone)]
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

#[derive(Debug, Clone)]
pub struct Vip {
    pub vhid: Vhid,
    /// Logical interface name.
    pub interface: String,
    /// Device on this node.
    pub device: String,
    pub addresses: Vec<IpNet>,
    pub advbase: Advbase,
}

/// A problem in the config file, located in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every problem found, one per line.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---- raw, as written ----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: Spanned<RawNode>,
    #[serde(default)]
    interfaces: BTreeMap<String, Spanned<String>>,
    carp: Spanned<RawCarp>,
    #[serde(default)]
    vips: Vec<Spanned<RawVip>>,
    #[serde(default)]
    firewall: Option<RawFirewall>,
    #[serde(default)]
    statesync: Option<Spanned<RawStateSync>>,
    // Synced firewall areas, owned by the firewall crate; accepted here so one file holds all.
    #[allow(dead_code)]
    #[serde(default)]
    aliases: Option<toml::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    rules: Option<toml::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    nat: Option<toml::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    gateways: Option<toml::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    routes: Option<toml::Value>,
    // Config sync settings, parsed with their own spans by configsync::parse_settings.
    #[allow(dead_code)]
    #[serde(default)]
    sync: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStateSync {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirewall {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default = "default_true")]
    forwarding: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    #[serde(default)]
    advskew: Option<Spanned<i64>>,
    #[serde(default = "default_true")]
    preempt: bool,
    control_socket: Spanned<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCarp {
    #[serde(default)]
    passphrase: Option<Spanned<String>>,
    #[serde(default)]
    passphrase_file: Option<Spanned<String>>,
    #[serde(default)]
    advbase: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    vhid: Spanned<i64>,
    interface: Spanned<String>,
    addresses: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    advbase: Option<Spanned<i64>>,
}

// ---- loading --------------------------------------------------------------------------------

/// Reads and validates a config file.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    Ok(parse(path, &text)?)
}

struct Errors<'a> {
    file: &'a Path,
    text: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = line_col(self.text, span.start);
        self.list.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            col,
            message: message.into(),
        });
    }
}

pub use firewall::line_col;

fn ranged(errs: &mut Errors<'_>, v: &Spanned<i64>, what: &str, lo: i64, hi: i64) -> Option<u8> {
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

/// Parses and validates config text; `file` is only used to name locations.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut errs = Errors {
        file,
        text,
        list: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            errs.at(span, e.message().to_string());
            return Err(ConfigErrors(errs.list));
        }
    };

    let node = raw.node.get_ref();
    let name = node.name.get_ref().trim().to_string();
    if name.is_empty() {
        errs.at(node.name.span(), "node.name must not be empty");
    }
    let advskew = match &node.advskew {
        Some(v) => ranged(&mut errs, v, "node.advskew", 0, MAX_ADVSKEW.into()).unwrap_or(0),
        None => 0,
    };
    let control_socket = PathBuf::from(node.control_socket.get_ref());
    if control_socket.as_os_str().is_empty() {
        errs.at(
            node.control_socket.span(),
            "node.control_socket must name a path",
        );
    }

    let mut interfaces = BTreeMap::new();
    for (logical, dev) in &raw.interfaces {
        let d = dev.get_ref();
        if d.is_empty() || d.len() > 15 || d.contains(['/', ' ']) {
            errs.at(
                dev.span(),
                format!("interfaces.{logical}: {d:?} is not a valid device name (1-15 characters, no '/' or space)"),
            );
        }
        interfaces.insert(logical.clone(), d.clone());
    }

    let carp_raw = raw.carp.get_ref();
    let passphrase = secret(
        &mut errs,
        file,
        raw.carp.span(),
        (&carp_raw.passphrase, "carp.passphrase"),
        (&carp_raw.passphrase_file, "carp.passphrase_file"),
        1,
    );
    if passphrase.len() > carp::auth::MAX_KEY_LEN {
        tracing::warn!(
            "carp passphrase is longer than {} bytes; like BSD CARP only the first {} are used",
            carp::auth::MAX_KEY_LEN,
            carp::auth::MAX_KEY_LEN
        );
    }
    let advbase = match &carp_raw.advbase {
        Some(v) => ranged(&mut errs, v, "carp.advbase", 1, MAX_ADVBASE.into()).unwrap_or(1),
        None => 1,
    };

    let mut vips = Vec::new();
    let mut seen: BTreeSet<(String, u8)> = BTreeSet::new();
    let mut owner: BTreeMap<std::net::IpAddr, u8> = BTreeMap::new();
    for v in &raw.vips {
        let rv = v.get_ref();
        let vhid = ranged(&mut errs, &rv.vhid, "vips.vhid", 1, 255).and_then(Vhid::new);
        let logical = rv.interface.get_ref().clone();
        let device = match interfaces.get(&logical) {
            Some(d) => d.clone(),
            None => {
                let known: Vec<&str> = interfaces.keys().map(String::as_str).collect();
                errs.at(
                    rv.interface.span(),
                    format!(
                        "unknown interface {logical:?} (the [interfaces] table has: {})",
                        if known.is_empty() {
                            "nothing".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                String::new()
            }
        };
        if let Some(vh) = vhid {
            if !seen.insert((logical.clone(), vh.get())) {
                errs.at(
                    rv.vhid.span(),
                    format!("vhid {vh} is used twice on interface {logical:?}"),
                );
            }
        }
        let mut addresses = Vec::new();
        if rv.addresses.get_ref().is_empty() {
            errs.at(rv.addresses.span(), "a VIP needs at least one address");
        }
        for a in rv.addresses.get_ref() {
            match a.get_ref().parse::<IpNet>() {
                Ok(net) => {
                    if let Some(prev) = owner.insert(net.addr(), vhid.map_or(0, Vhid::get)) {
                        errs.at(
                            a.span(),
                            format!("address {} is already a VIP of vhid {prev}", net.addr()),
                        );
                    }
                    addresses.push(net)
                }
                Err(_) => errs.at(
                    a.span(),
                    format!(
                        "{:?} is not an address with prefix length, like \"192.0.2.1/24\" or \"2001:db8::1/64\"",
                        a.get_ref()
                    ),
                ),
            }
        }
        let vip_advbase = match &rv.advbase {
            Some(b) => {
                ranged(&mut errs, b, "vips.advbase", 1, MAX_ADVBASE.into()).unwrap_or(advbase)
            }
            None => advbase,
        };
        if let Some(vhid) = vhid {
            vips.push(Vip {
                vhid,
                interface: logical,
                device,
                addresses,
                advbase: Advbase(vip_advbase),
            });
        }
    }

    let statesync = raw
        .statesync
        .as_ref()
        .map(|ss| parse_statesync(&mut errs, file, &interfaces, ss));

    let areas = match firewall::parse_areas(text) {
        Ok(a) => a,
        Err(list) => {
            for e in list {
                errs.at(e.span.clone().unwrap_or(0..0), e.message);
            }
            firewall::Areas::default()
        }
    };
    let fw = FirewallSettings {
        managed: raw
            .firewall
            .as_ref()
            .and_then(|f| f.enabled)
            .unwrap_or(areas != firewall::Areas::default()),
        forwarding: raw.firewall.as_ref().is_none_or(|f| f.forwarding),
    };

    let vip_addrs: Vec<(std::net::IpAddr, u8)> = vips
        .iter()
        .flat_map(|v| v.addresses.iter().map(|a| (a.addr(), v.vhid.get())))
        .collect();
    let (sync, sync_errors) = crate::configsync::parse_settings(file, text, &vip_addrs);
    for (span, message) in sync_errors {
        errs.at(span, message);
    }

    if !errs.list.is_empty() {
        return Err(ConfigErrors(errs.list));
    }
    Ok(Config {
        file: file.to_path_buf(),
        text: text.to_string(),
        firewall: fw,
        statesync,
        areas,
        node: Node {
            name,
            advskew: Skew(advskew),
            preempt: node.preempt,
            control_socket,
        },
        interfaces,
        carp: Carp {
            passphrase,
            advbase: Advbase(advbase),
        },
        vips,
        own_file: file.to_path_buf(),
        sync,
    })
}

fn parse_statesync(
    errs: &mut Errors<'_>,
    file: &Path,
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
        match p.get_ref().parse::<std::net::IpAddr>() {
            Ok(a) => peers.push(a),
            Err(_) => errs.at(
                p.span(),
                format!("statesync.peers: {:?} is not an IP address", p.get_ref()),
            ),
        }
    }
    let key = secret(
        errs,
        file,
        raw.span(),
        (&r.key, "statesync.key"),
        (&r.key_file, "statesync.key_file"),
        MIN_STATESYNC_KEY,
    );
    StateSyncSettings {
        enabled: r.enabled.unwrap_or(true),
        interface,
        device,
        port,
        peers,
        key,
    }
}

/// A secret given inline or in a file (exactly one of the two), at least `min` bytes; a file's
/// trailing newline is not part of it.
fn secret(
    errs: &mut Errors<'_>,
    file: &Path,
    table: Range<usize>,
    inline: (&Option<Spanned<String>>, &str),
    from_file: (&Option<Spanned<String>>, &str),
    min: usize,
) -> Vec<u8> {
    let too_short = |what: String| {
        if min <= 1 {
            format!("{what} must not be empty")
        } else {
            format!("{what} must be at least {min} bytes")
        }
    };
    match (inline.0, from_file.0) {
        (Some(v), None) => {
            if v.get_ref().len() < min {
                errs.at(v.span(), too_short(inline.1.to_string()));
            }
            v.get_ref().as_bytes().to_vec()
        }
        (None, Some(f)) => {
            let path = resolve(file, f.get_ref());
            match std::fs::read(&path) {
                Ok(mut bytes) => {
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    if bytes.len() < min {
                        errs.at(
                            f.span(),
                            too_short(format!("{} {}", from_file.1, path.display())),
                        );
                    }
                    bytes
                }
                Err(e) => {
                    errs.at(
                        f.span(),
                        format!("cannot read {} {}: {e}", from_file.1, path.display()),
                    );
                    Vec::new()
                }
            }
        }
        (Some(v), Some(_)) => {
            errs.at(
                v.span(),
                format!("set {} or {}, not both", inline.1, from_file.1),
            );
            Vec::new()
        }
        (None, None) => {
            errs.at(
                table,
                format!("{} or {} is required", inline.1, from_file.1),
            );
            Vec::new()
        }
    }
}

/// Paths in the config are relative to the config file's folder.
fn resolve(config_file: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    config_file
        .parent()
        .map_or_else(|| p.to_path_buf(), |dir| dir.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "fw1"
advskew = 0                 # this node's skew for every vhid; a secondary typically uses 100
preempt = true
control_socket = "/run/tandem/fw1.sock"

[interfaces]
lan = "eth0"                # logical name = device on this node

[carp]
passphrase = "s3cret"       # or passphrase_file = "/etc/tandem/carp.key"
advbase = 1

[[vips]]
vhid = 7
interface = "lan"
addresses = ["192.0.2.100/24"]
"#;

    fn errors(text: &str) -> Vec<String> {
        match parse(Path::new("t.toml"), text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_contract_example_parses() {
        let c = parse(Path::new("t.toml"), GOOD).expect("valid");
        assert_eq!(c.node.name, "fw1");
        assert_eq!(c.vips.len(), 1);
        assert_eq!(c.vips[0].device, "eth0");
        assert_eq!(c.vips[0].vhid.get(), 7);
        assert_eq!(c.vips[0].advbase, Advbase(1));
        assert_eq!(c.carp.passphrase, b"s3cret");
    }

    #[test]
    fn unknown_interface_is_reported_with_line() {
        let e = errors(&GOOD.replace("interface = \"lan\"", "interface = \"wan\""));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("t.toml:17:13: unknown interface \"wan\""),
            "{e:?}"
        );
    }

    #[test]
    fn bad_address_vhid_and_skew_are_all_reported() {
        let text = GOOD
            .replace("192.0.2.100/24", "192.0.2.300/24")
            .replace("vhid = 7", "vhid = 0")
            .replace("advskew = 0 ", "advskew = 300 ");
        let e = errors(&text);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].contains(":4:11: node.advskew must be between 0 and 254, not 300"),
            "{e:?}"
        );
        assert!(
            e[1].contains(":16:8: vips.vhid must be between 1 and 255, not 0"),
            "{e:?}"
        );
        assert!(
            e[2].contains("\"192.0.2.300/24\" is not an address"),
            "{e:?}"
        );
    }

    #[test]
    fn typos_and_syntax_errors_name_the_place() {
        let e = errors(&GOOD.replace("preempt = true", "prempt = true"));
        assert!(
            e[0].starts_with("t.toml:5:1:") && e[0].contains("prempt"),
            "{e:?}"
        );
        let e = errors("[node\nname = 1");
        assert!(e[0].starts_with("t.toml:1:"), "{e:?}");
    }

    #[test]
    fn passphrase_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("carp.key"), "from-file\n").expect("write");
        let text = GOOD.replace("passphrase = \"s3cret\"", "passphrase_file = \"carp.key\"");
        let c = parse(&dir.path().join("node.toml"), &text).expect("valid");
        assert_eq!(c.carp.passphrase, b"from-file");
        let e = errors(&text.replace("carp.key", "/nonexistent/carp.key"));
        assert!(
            e[0].contains("cannot read carp.passphrase_file /nonexistent/carp.key"),
            "{e:?}"
        );
    }

    #[test]
    fn duplicate_vhid_and_address_are_rejected() {
        let text = format!(
            "{GOOD}\n[[vips]]\nvhid = 7\ninterface = \"lan\"\naddresses = [\"192.0.2.100/24\"]\n"
        );
        let e = errors(&text);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("vhid 7 is used twice"), "{e:?}");
        assert!(e[1].contains("already a VIP of vhid 7"), "{e:?}");
    }
}
