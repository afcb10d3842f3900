//! Validation and resolution: areas + node context → a resolved model (`Compiled`) that
//! rendering only has to print. Every problem found is collected (not just the first), each with
//! its span.
//!
//! One `Compiler` walks the areas in passes; their order is the order errors are reported in:
//!
//! - the node context: device names that could not be written into nft safely (here);
//! - `aliases`: alias names, references between aliases, flattening into sets;
//! - `rules`: each rule, in file order;
//! - `nat`: outbound NAT, port forwards, 1:1 NAT;
//! - `routes`: gateways, then the static routes through them.
//!
//! Rules and NAT turn their source, destination and port values into matches with `matches`,
//! which reads the aliases the first pass resolved. `compiled` holds the output types. This
//! module holds the compiler's state and what every pass uses: error collection, logical
//! interface → device, name syntax, element spans.

mod aliases;
mod compiled;
mod matches;
mod nat;
mod routes;
mod rules;

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use crate::error::ConfigError;
use crate::model::{Areas, Value};
use crate::NodeContext;

pub use aliases::MAX_ALIAS_DEPTH;
pub(crate) use compiled::{
    AddrMatch, CForward, COneToOne, COutbound, CRule, Compiled, PortMatch, SetElems, Side,
};

use aliases::{AliasEntry, Content, Resolve};

/// Longest alias or gateway name (as pfSense).
pub const MAX_NAME_LEN: usize = 31;

/// `[A-Za-z_][A-Za-z0-9_]*`: alias and gateway names (also valid nft identifiers).
fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where to report a list element: its own span, or the whole list's when it has none (areas
/// built in code rather than parsed).
fn elem_span(outer: &Range<usize>, v: &Spanned<Value>) -> Range<usize> {
    let s = v.span();
    if s == (0..0) {
        outer.clone()
    } else {
        s
    }
}

fn fam_name(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// One compilation: its input, the errors found so far, and the alias table that the alias pass
/// fills and the later passes read.
struct Compiler<'a> {
    areas: &'a Areas,
    ctx: &'a NodeContext,
    errors: Vec<ConfigError>,
    alias_by_name: BTreeMap<&'a str, AliasEntry>,
    /// Per alias, by index in `areas.aliases`: how far its resolution got.
    state: Vec<Resolve>,
    /// Per alias, by index in `areas.aliases`: its flattened entries, once resolved.
    content: Vec<Option<Content>>,
}

pub(crate) fn compile(areas: &Areas, ctx: &NodeContext) -> Result<Compiled, Vec<ConfigError>> {
    let mut c = Compiler {
        areas,
        ctx,
        errors: Vec::new(),
        alias_by_name: BTreeMap::new(),
        state: vec![Resolve::Todo; areas.aliases.len()],
        content: vec![None; areas.aliases.len()],
    };
    c.check_context();
    let sets = c.aliases();
    let rules = areas
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| c.rule(i + 1, r))
        .collect();
    let outbound = c.outbound();
    let forwards = c.forwards();
    let one_to_one = c.one_to_one();
    let routes = c.routes();
    let (carp_v4, carp_v6) = c.carp_devices();
    if c.errors.is_empty() {
        Ok(Compiled {
            sets,
            rules,
            outbound,
            forwards,
            one_to_one,
            routes,
            carp_v4,
            carp_v6,
            peer_only: c.ctx.peer_only.clone(),
        })
    } else {
        Err(c.errors)
    }
}

impl Compiler<'_> {
    fn err(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.errors.push(ConfigError::at(span, msg));
    }

    /// Device names end up inside nft strings: refuse what could break out of one.
    fn check_context(&mut self) {
        for (logical, dev) in &self.ctx.interfaces {
            let ok = !dev.is_empty()
                && dev.len() <= 15
                && dev
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' && c != '/');
            if !ok {
                self.errors.push(ConfigError::new(
                    None,
                    format!("interface {logical}: device name `{dev}` is not a usable Linux interface name"),
                ));
            }
        }
    }

    /// The devices that carry a VIP, per family of their VIPs (a VIP whose logical interface
    /// this node does not map is refused by the daemon; here it opens nothing).
    fn carp_devices(&self) -> (Vec<String>, Vec<String>) {
        let mut v4 = std::collections::BTreeSet::new();
        let mut v6 = std::collections::BTreeSet::new();
        for (iface, net) in &self.ctx.vips {
            let Some(dev) = self.ctx.interfaces.get(iface) else {
                continue;
            };
            match net {
                crate::IpNet::V4(_) => v4.insert(dev.clone()),
                crate::IpNet::V6(_) => v6.insert(dev.clone()),
            };
        }
        (v4.into_iter().collect(), v6.into_iter().collect())
    }

    fn device(&mut self, iface: &Spanned<String>, allow_any: bool) -> Option<Option<String>> {
        let name = iface.get_ref().as_str();
        if allow_any && name == "any" {
            return Some(None);
        }
        match self.ctx.interfaces.get(name) {
            Some(dev) => Some(Some(dev.clone())),
            None => {
                let known: Vec<&str> = self.ctx.interfaces.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                self.err(
                    iface.span(),
                    format!("unknown interface `{name}` (this node's interfaces: {known})"),
                );
                None
            }
        }
    }
}
