//! The config pipeline: a file is parsed once into a spanned tree ([`document`]), each owner
//! deserializes its tables from it ([`raw`]), and they become one typed [`Config`] here, with
//! every problem reported as `FILE:LINE:COL: message` ([`error`]).
//!
//! Node-local tables (`[node]`, `[interfaces]`, `[carp]`, `[firewall]`, `[statesync]`,
//! `[sync]`, `[metrics]`, `[hooks]`, `[[checks]]`, `[dhcp_local]`, `[dns_local]`,
//! `[wireguard_local]`) never sync; the synced areas are `vips`, `certificates`, `dhcp`, `dns`
//! and `wireguard` (here) and the firewall crate's areas. A
//! config sync peer composes its running config from its own file and the synced areas in its
//! state dir as data ([`raw::ParsedFile::take_area`]), never by splicing text.

pub mod certificates;
pub mod checks;
pub mod dhcp;
pub mod dhcp_ha;
pub mod dns;
pub mod document;
pub mod error;
pub mod hooks;
pub mod metrics;
pub mod node;
pub mod raw;
pub mod secret;
pub mod statesync;
pub mod sync;
pub mod vips;
pub mod wireguard;

pub use certificates::Certificate;
pub use checks::{CheckKind, CheckSpec};
pub use error::{ConfigError, ConfigErrors};
pub use hooks::{Hook, HookSettings};
pub use metrics::MetricsSettings;
pub use node::{Carp, FirewallSettings, Node};
pub use raw::ParsedFile;
pub use statesync::StateSyncSettings;
pub use sync::{Role, SyncSettings};
pub use vips::{MacMode, Vip};

use configsync::book::{Origin, SyncedMeta};
use configsync::Area;
use document::Sources;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A node's running configuration, typed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The files its values came from (to place errors found later, e.g. by the kernel).
    pub sources: Sources,
    /// The node's own config file: what a reload re-reads.
    pub own_file: PathBuf,
    pub node: Node,
    /// Logical name -> device.
    pub interfaces: BTreeMap<String, String>,
    pub carp: Carp,
    pub vips: Vec<Vip>,
    pub firewall: FirewallSettings,
    /// Connection state sync over the sync link; None without `[statesync]`.
    pub statesync: Option<StateSyncSettings>,
    /// Config sync; None without `[sync]`.
    pub sync: Option<SyncSettings>,
    /// The metrics and status page listener; None without `[metrics]`.
    pub metrics: Option<MetricsSettings>,
    /// Programs run on state changes (`[hooks]`).
    pub hooks: HookSettings,
    /// Health checks that demote (`[[checks]]`).
    pub checks: Vec<CheckSpec>,
    /// The synced firewall areas (aliases, rules, nat, gateways, routes).
    pub areas: firewall::Areas,
    /// The synced area `certificates`, checked (in file order).
    pub certificates: Vec<Certificate>,
    /// The synced area `dhcp`, checked; None when absent.
    pub dhcp: Option<dhcp::Dhcp>,
    /// This node's Kea (`[dhcp_local]`); None: tandem does not manage DHCP here.
    pub dhcp_local: Option<dhcp::DhcpLocal>,
    /// The synced area `dns` (None: absent, and unbound is left alone).
    pub dns: Option<dns::Dns>,
    /// `[dns_local]`: this node's unbound (None: the dns area is held but not applied).
    pub dns_local: Option<dns::DnsLocal>,
    /// The synced area `wireguard`, checked (in file order).
    pub wireguard: Vec<wireguard::WgInterface>,
    /// `[wireguard_local] socket_dir`: where the tunnels' UAPI sockets are.
    pub wireguard_socket_dir: PathBuf,
    /// The running config as plain TOML (area texts and hashes, `config show`).
    pub plain: toml::Table,
    /// On a config sync peer: where each running area came from.
    pub provenance: Option<Provenance>,
    /// Where synced areas lie in the files composed in, to name them in errors.
    pub area_notes: Vec<AreaNote>,
}

/// A synced area's place in a file composed into a config, and what to say about it in an
/// error found there: `(area rules: synced from fw1, generation 5, ...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaNote {
    pub file: PathBuf,
    pub lines: (usize, usize),
    pub note: String,
}

/// Appends the note of the area an error lies in, if any.
pub fn annotate(mut e: ConfigErrors, notes: &[AreaNote]) -> ConfigErrors {
    for err in &mut e.0 {
        if let Some(n) = notes
            .iter()
            .find(|n| n.file == err.file && (n.lines.0..=n.lines.1).contains(&err.line))
        {
            err.message = format!("{} ({})", err.message, n.note);
        }
    }
    e
}

/// Where a peer's running areas came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub meta: SyncedMeta,
    pub areas: Vec<RunningArea>,
}

/// One area as it runs on a peer.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningArea {
    pub area: Area,
    pub origin: Origin,
    pub items: usize,
    pub hash: String,
    pub drift: Option<configsync::area::AreaDiff>,
}

/// Collects located errors while a config is built.
pub struct Errors<'a> {
    sources: &'a Sources,
    own_file: &'a Path,
    pub list: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    pub fn new(sources: &'a Sources, own_file: &'a Path) -> Errors<'a> {
        Errors {
            sources,
            own_file,
            list: Vec::new(),
        }
    }

    pub fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.list.push(self.sources.error(Some(span), message));
    }

    /// A problem of the file as a whole (a missing table).
    pub fn whole(&mut self, message: impl Into<String>) {
        self.list
            .push(ConfigError::unlocated(self.own_file, message.into()));
    }

    pub fn has(&self, f: impl Fn(&str) -> bool) -> bool {
        self.list.iter().any(|e| f(&e.message))
    }

    /// A path as written in a config file: relative to the folder of the file that says it.
    pub fn resolve(&self, p: &Spanned<String>) -> PathBuf {
        let path = Path::new(p.get_ref());
        if path.is_absolute() {
            return path.to_path_buf();
        }
        let file = self.sources.file_of(&p.span()).unwrap_or(self.own_file);
        file.parent()
            .map_or_else(|| path.to_path_buf(), |dir| dir.join(path))
    }

    fn finish(self) -> Result<(), ConfigErrors> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.list))
        }
    }
}

impl Config {
    /// Types and checks a parsed (or composed) file.
    pub fn build(parsed: ParsedFile, own_file: &Path) -> Result<Config, ConfigErrors> {
        let ParsedFile {
            sources,
            raw,
            mut plain,
            ..
        } = parsed;
        let mut errs = Errors::new(&sources, own_file);
        let node = node::node(&mut errs, raw.node.as_ref());
        let mut interfaces = node::interfaces(&mut errs, &raw.interfaces);
        let carp = node::carp(&mut errs, raw.carp.as_ref());
        let vips = vips::vips(&mut errs, &raw.vips, &interfaces, carp.advbase);
        let statesync = raw
            .statesync
            .as_ref()
            .map(|s| statesync::statesync(&mut errs, &interfaces, s));
        let wg_vips: Vec<std::net::IpAddr> = vips
            .iter()
            .flat_map(|v| v.addresses.iter().map(|a| a.addr()))
            .collect();
        let wireguard =
            wireguard::wireguard(&mut errs, &raw.wireguard, &interfaces, &wg_vips, own_file);
        // A tunnel is a logical interface like the others (rules and NAT may name it).
        for w in &wireguard {
            interfaces.entry(w.name.clone()).or_insert(w.device.clone());
        }
        wireguard::inline_keys(&mut plain, &wireguard);
        let wireguard_socket_dir = wireguard::socket_dir(&mut errs, raw.wireguard_local.as_ref());
        let vip_addrs: Vec<(std::net::IpAddr, u8)> = vips
            .iter()
            .flat_map(|v| v.addresses.iter().map(|a| (a.addr(), v.vhid.get())))
            .collect();
        let sync = raw
            .sync
            .as_ref()
            .map(|s| sync::sync(&mut errs, s, &vip_addrs));
        let metrics = raw.metrics.as_ref().map(|m| metrics::metrics(&mut errs, m));
        let firewall = node::firewall(&mut errs, raw.firewall.as_ref(), &raw.areas);
        let hooks = hooks::hooks(&mut errs, raw.hooks.as_ref());
        let checks = checks::checks(&mut errs, &raw.checks, &interfaces);
        let certificates = certificates::certificates(&mut errs, &raw.certificates);
        let dhcp = dhcp::dhcp(&mut errs, raw.dhcp.as_ref(), &interfaces);
        let dhcp_local = dhcp::dhcp_local(
            &mut errs,
            raw.dhcp_local.as_ref(),
            &dhcp_ha::Cluster {
                node: &node.name,
                sync: sync.as_ref(),
                vips: &vip_addrs,
            },
        );
        let dns = raw.dns.as_ref().map(|d| dns::dns(&mut errs, d));
        let dns_local = raw
            .dns_local
            .as_ref()
            .map(|d| dns::dns_local(&mut errs, d, &interfaces));
        errs.finish()?;
        Ok(Config {
            sources,
            own_file: own_file.to_path_buf(),
            node,
            interfaces,
            carp,
            vips,
            firewall,
            statesync,
            sync,
            metrics,
            hooks,
            checks,
            areas: raw.areas,
            certificates,
            dhcp,
            dhcp_local,
            dns,
            dns_local,
            wireguard,
            wireguard_socket_dir,
            plain,
            provenance: None,
            area_notes: Vec::new(),
        })
    }

    /// Places errors of the firewall crate (spans into this config's files).
    pub fn locate(&self, errors: Vec<firewall::ConfigError>) -> ConfigErrors {
        annotate(
            ConfigErrors(
                errors
                    .into_iter()
                    .map(|e| self.sources.error(e.span, e.message))
                    .collect(),
            ),
            &self.area_notes,
        )
    }

    /// Checks the VIPs against the node's own addresses per logical interface (as the kernel
    /// has them): see [`vips::check_against_node`].
    /// Returns the notes (legitimate but unusual VIPs).
    pub fn check_vips(
        &self,
        own: &BTreeMap<String, Vec<IpNet>>,
    ) -> Result<Vec<String>, ConfigErrors> {
        let mut errs = Errors::new(&self.sources, &self.own_file);
        let notes = vips::check_against_node(&mut errs, &self.vips, own);
        errs.finish()
            .map(|()| notes)
            .map_err(|e| annotate(e, &self.area_notes))
    }

    /// The file this config is read from, for messages.
    pub fn file(&self) -> &Path {
        &self.own_file
    }
}

/// Reads, parses and checks a node's own config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    Config::build(ParsedFile::read(path)?, path)
}

/// The control socket named by a config file, read with as little as possible: a scan of its
/// `[node]` table for `control_socket = "..."` (the file may hold megabytes of rules and
/// aliases, and status must work while it is half written), else a full parse (the socket
/// given another way, say as `node.control_socket`).
pub fn control_socket(path: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let resolve = |s: &str| {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            path.parent().map_or_else(|| p.to_path_buf(), |d| d.join(p))
        }
    };
    if let Some(s) = scan_control_socket(&text) {
        return Ok(resolve(&s));
    }
    #[derive(serde::Deserialize)]
    struct Top {
        node: Option<NodeOnly>,
    }
    #[derive(serde::Deserialize)]
    struct NodeOnly {
        control_socket: Option<String>,
    }
    match toml::from_str::<Top>(&text) {
        Ok(top) => top
            .node
            .and_then(|n| n.control_socket)
            .map(|s| resolve(&s))
            .ok_or_else(|| format!("{}: [node] has no control_socket", path.display())),
        Err(_) => Err(format!(
            "{}: cannot find [node] control_socket (the file does not parse; give the socket with --socket)",
            path.display()
        )),
    }
}

/// `control_socket = "..."` on a line of the `[node]` table.
fn scan_control_socket(text: &str) -> Option<String> {
    let mut in_node = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            // `[node]`, maybe with a comment after it; `[[...]]` and `[node.x]` are not it.
            let header = t.trim_start_matches('[').split(']').next().unwrap_or("");
            in_node = !t.starts_with("[[") && header.trim() == "node";
            continue;
        }
        if !in_node {
            continue;
        }
        let Some(rest) = t.strip_prefix("control_socket") else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        // A single TOML value on the line: parse just that.
        #[derive(serde::Deserialize)]
        struct One {
            v: String,
        }
        if let Ok(one) = toml::from_str::<One>(&format!("v = {}", value.trim())) {
            return Some(one.v);
        }
    }
    None
}

#[cfg(test)]
mod dns_tests;
#[cfg(test)]
mod ops_tests;
#[cfg(test)]
mod peers_tests;
#[cfg(test)]
mod tests;
