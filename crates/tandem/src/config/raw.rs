//! A config file as written: each owner's tables deserialized from the one parse of the file
//! (spans kept), not yet checked. Composition works on these: a peer's running config takes
//! some synced areas from another file, as data.

use super::certificates::RawCertificate;
use super::checks::RawCheck;
use super::dhcp::{RawDhcp, RawDhcpLocal};
use super::dns::{RawDns, RawDnsLocal};
use super::document::{self, Sources, Tree};
use super::error::{ConfigError, ConfigErrors};
use super::hooks::RawHooks;
use super::metrics::RawMetrics;
use super::node::{RawCarp, RawFirewall, RawNode};
use super::statesync::RawStateSync;
use super::sync::RawSync;
use super::vips::RawVip;
use super::wireguard::{RawWgInterface, RawWgLocal};
use configsync::Area;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

/// The node-local tables: never synced.
pub const NODE_TABLES: [&str; 12] = [
    "node",
    "interfaces",
    "carp",
    "firewall",
    "statesync",
    "sync",
    "metrics",
    "hooks",
    "checks",
    "dhcp_local",
    "dns_local",
    "wireguard_local",
];

/// The synced areas owned elsewhere than in the firewall crate.
const NOT_FIREWALL: [Area; 5] = [
    Area::Vips,
    Area::Certificates,
    Area::Dhcp,
    Area::Dns,
    Area::Wireguard,
];

/// The synced areas the firewall crate owns.
fn firewall_keys() -> Vec<&'static str> {
    Area::ALL
        .into_iter()
        .filter(|a| !NOT_FIREWALL.contains(a))
        .map(Area::as_str)
        .collect()
}

/// Every table of a config file, as written.
#[derive(Debug, Clone, Default)]
pub struct RawFile {
    pub node: Option<Spanned<RawNode>>,
    pub interfaces: BTreeMap<String, Spanned<String>>,
    pub carp: Option<Spanned<RawCarp>>,
    pub firewall: Option<RawFirewall>,
    pub statesync: Option<Spanned<RawStateSync>>,
    pub sync: Option<Spanned<RawSync>>,
    pub metrics: Option<Spanned<RawMetrics>>,
    pub hooks: Option<Spanned<RawHooks>>,
    pub checks: Vec<Spanned<RawCheck>>,
    /// The synced area `vips`.
    pub vips: Vec<Spanned<RawVip>>,
    /// The synced areas of the firewall crate.
    pub areas: firewall::Areas,
    /// The synced area `certificates`.
    pub certificates: Vec<Spanned<RawCertificate>>,
    /// The synced area `dhcp`.
    pub dhcp: Option<Spanned<RawDhcp>>,
    /// The node-local `[dhcp_local]`.
    pub dhcp_local: Option<Spanned<RawDhcpLocal>>,
    /// The synced area `dns`, and the node-local `[dns_local]`.
    pub dns: Option<Spanned<RawDns>>,
    pub dns_local: Option<Spanned<RawDnsLocal>>,
    /// The synced area `wireguard`.
    pub wireguard: Vec<Spanned<RawWgInterface>>,
    pub wireguard_local: Option<Spanned<RawWgLocal>>,
}

impl RawFile {
    /// Puts `from`'s version of a synced area in place of this file's.
    pub fn take_area(&mut self, area: Area, from: &RawFile) {
        match area {
            Area::Vips => self.vips.clone_from(&from.vips),
            Area::Aliases => self.areas.aliases.clone_from(&from.areas.aliases),
            Area::Rules => self.areas.rules.clone_from(&from.areas.rules),
            Area::Nat => self.areas.nat.clone_from(&from.areas.nat),
            Area::Gateways => self.areas.gateways.clone_from(&from.areas.gateways),
            Area::Routes => self.areas.routes.clone_from(&from.areas.routes),
            Area::Certificates => self.certificates.clone_from(&from.certificates),
            Area::Dhcp => self.dhcp.clone_from(&from.dhcp),
            Area::Dns => self.dns.clone_from(&from.dns),
            Area::Wireguard => self.wireguard.clone_from(&from.wireguard),
        }
    }

    /// Deserializes every table; `extra` are top-level keys that are not tables of a config
    /// but may be there (a stored areas file lists its areas).
    fn take(tree: &mut Tree<'_>, extra: &[&str]) -> (RawFile, Vec<ConfigError>) {
        fn ok<T>(errors: &mut Vec<ConfigError>, r: Result<Option<T>, ConfigError>) -> Option<T> {
            r.unwrap_or_else(|e| {
                errors.push(e);
                None
            })
        }
        // Unknown tables first: what is taken below is no longer in the tree.
        let mut unknown: Vec<ConfigError> = tree
            .keys()
            .filter(|(key, _)| {
                !NODE_TABLES.contains(key) && Area::parse(key).is_none() && !extra.contains(key)
            })
            .map(|(key, span)| {
                tree.error(
                    Some(span),
                    format!(
                        "unknown table `{key}` (node tables: {}; synced areas: {})",
                        NODE_TABLES.join(", "),
                        Area::names()
                    ),
                )
            })
            .collect();
        let mut errors = Vec::new();
        let e = &mut errors;
        let fw = firewall_keys();
        let raw = RawFile {
            node: ok(e, tree.take("node")),
            interfaces: ok(e, tree.take("interfaces")).unwrap_or_default(),
            carp: ok(e, tree.take("carp")),
            firewall: ok(e, tree.take("firewall")),
            statesync: ok(e, tree.take("statesync")),
            sync: ok(e, tree.take("sync")),
            metrics: ok(e, tree.take("metrics")),
            hooks: ok(e, tree.take("hooks")),
            checks: ok(e, tree.take("checks")).unwrap_or_default(),
            vips: ok(e, tree.take("vips")).unwrap_or_default(),
            areas: ok(e, tree.take_table(&fw).map(Some)).unwrap_or_default(),
            certificates: ok(e, tree.take("certificates")).unwrap_or_default(),
            dhcp: ok(e, tree.take("dhcp")),
            dhcp_local: ok(e, tree.take("dhcp_local")),
            dns: ok(e, tree.take("dns")),
            dns_local: ok(e, tree.take("dns_local")),
            wireguard: ok(e, tree.take("wireguard")).unwrap_or_default(),
            wireguard_local: ok(e, tree.take("wireguard_local")),
        };
        errors.append(&mut unknown);
        (raw, errors)
    }
}

/// What is taken from a file's tree while it is parsed.
struct Taken {
    raw: RawFile,
    errors: Vec<ConfigError>,
    plain: toml::Table,
    area_lines: Vec<(Area, usize, usize)>,
}

impl Taken {
    fn from(t: &mut Tree<'_>, extra: &[&str]) -> Taken {
        // What reads the whole tree comes before the tables are taken out of it.
        let plain = t.plain();
        let area_lines = Area::ALL
            .into_iter()
            .filter_map(|a| t.lines_of(a.as_str()).map(|(f, l)| (a, f, l)))
            .collect();
        let (raw, errors) = RawFile::take(t, extra);
        Taken {
            raw,
            errors,
            plain,
            area_lines,
        }
    }
}

/// One file parsed: where its values came from, its tables, and its plain TOML (what areas are
/// hashed and compared as).
#[derive(Debug, Clone)]
pub struct ParsedFile {
    pub sources: Sources,
    pub raw: RawFile,
    pub plain: toml::Table,
    /// Lines of each synced area in the file (to name the area of an error found later).
    area_lines: Vec<(Area, usize, usize)>,
}

impl ParsedFile {
    fn from(r: Result<(Sources, Taken), ConfigErrors>) -> Result<ParsedFile, ConfigErrors> {
        let (sources, t) = r?;
        if !t.errors.is_empty() {
            return Err(ConfigErrors(t.errors));
        }
        Ok(ParsedFile {
            sources,
            raw: t.raw,
            plain: t.plain,
            area_lines: t.area_lines,
        })
    }

    /// Where each synced area lies in this file (not in files composed in).
    pub fn area_lines(&self) -> &[(Area, usize, usize)] {
        &self.area_lines
    }

    /// Reads and parses a config file (one parse; every owner's tables taken from it).
    pub fn read(path: &Path) -> Result<ParsedFile, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::unlocated(
                path,
                format!("cannot read config: {e}"),
            )])
        })?;
        ParsedFile::parse(path, text)
    }

    /// Parses a config file's text.
    pub fn parse(path: &Path, text: String) -> Result<ParsedFile, ConfigErrors> {
        ParsedFile::from(document::parse(path, text, |t| Taken::from(t, &[])))
    }

    /// Parses a stored areas file (config sync's state dir), given its text.
    pub fn parse_stored(path: &Path, text: String) -> Result<ParsedFile, ConfigErrors> {
        ParsedFile::from(document::parse(path, text, |t| {
            Taken::from(t, &[configsync::peer::HELD_KEY])
        }))
    }

    /// An areas file whose areas were parsed one by one (each at its own lines of the file,
    /// so errors still point into it): the parts' areas, and where each lies in the file.
    pub fn from_parts(
        parts: &[(Area, &ParsedFile)],
        area_lines: Vec<(Area, usize, usize)>,
    ) -> ParsedFile {
        let mut f = ParsedFile {
            sources: Sources::default(),
            raw: RawFile::default(),
            plain: toml::Table::new(),
            area_lines,
        };
        for (a, part) in parts {
            f.take_area(*a, part);
        }
        f
    }

    /// This file with `area` taken from `from` (tables, plain values and their sources).
    pub fn take_area(&mut self, area: Area, from: &ParsedFile) {
        self.raw.take_area(area, &from.raw);
        let key = area.as_str();
        self.plain.remove(key);
        if let Some(v) = from.plain.get(key) {
            self.plain.insert(key.to_string(), v.clone());
        }
        self.sources.merge(&from.sources);
    }
}
