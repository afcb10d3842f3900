//! Validation and resolution: areas + node context → a resolved model that rendering only has
//! to print. Every problem found is collected (not just the first), each with its span.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use toml::Spanned;

use crate::error::ConfigError;
use crate::model::{Action, AliasKind, Areas, Direction, Family, Protocol, Rule, Value, Values};
use crate::net::{parse_addr, parse_port_int, parse_port_str, AddrForm, AddrLit, Intervals};
use crate::{NodeContext, Route};

/// Aliases may nest at most this deep (keeps resolution's recursion bounded).
pub const MAX_ALIAS_DEPTH: usize = 32;
/// Longest alias or gateway name (as pfSense).
pub const MAX_NAME_LEN: usize = 31;

/// The resolved contents of an alias.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddrContent {
    pub v4: Intervals<u32>,
    pub v6: Intervals<u128>,
}

#[derive(Debug, Clone)]
pub(crate) enum Content {
    Addr(AddrContent),
    Port(Intervals<u16>),
}

/// One side (family) of an address match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Side<T> {
    /// No constraint.
    Any,
    /// Matches nothing in this family.
    Nothing,
    /// A named set (`@alias_NAME_v4`).
    Set(String),
    /// Literal addresses.
    Lits(Intervals<T>),
}

impl<T> Side<T> {
    pub fn is_nothing(&self) -> bool {
        matches!(self, Side::Nothing)
    }
    pub fn is_any(&self) -> bool {
        matches!(self, Side::Any)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AddrMatch {
    pub v4: Side<u32>,
    pub v6: Side<u128>,
}

impl AddrMatch {
    fn any() -> Self {
        AddrMatch {
            v4: Side::Any,
            v6: Side::Any,
        }
    }
    fn restrict(mut self, fam: Family) -> Self {
        match fam {
            Family::Inet => self.v6 = Side::Nothing,
            Family::Inet6 => self.v4 = Side::Nothing,
            Family::Any => {}
        }
        self
    }
}

#[derive(Debug, Clone)]
pub(crate) enum PortMatch {
    Any,
    Nothing,
    Set(String),
    Lits(Intervals<u16>),
}

pub(crate) struct CRule {
    pub number: usize,
    pub enabled: bool,
    pub description: Option<String>,
    pub device: Option<String>,
    pub direction: Direction,
    pub action: Action,
    pub protocol: Protocol,
    /// Family implied by the rule's `family` and protocol (icmp → inet, icmpv6 → inet6).
    pub family: Family,
    pub src: AddrMatch,
    pub dst: AddrMatch,
    pub sport: PortMatch,
    pub dport: PortMatch,
    pub log: bool,
    pub stateful: bool,
}

pub(crate) struct COutbound {
    pub number: usize,
    pub description: Option<String>,
    pub device: String,
    pub src: AddrMatch,
    pub dst: AddrMatch,
    pub to: IpAddr,
}

pub(crate) struct CForward {
    pub number: usize,
    pub description: Option<String>,
    pub device: String,
    pub protocol: Protocol,
    pub src: AddrMatch,
    pub destination: IpAddr,
    pub port: PortMatch,
    pub target: IpAddr,
    pub target_port: Option<u16>,
    pub pass_rule: bool,
    pub log: bool,
}

pub(crate) struct COneToOne {
    pub number: usize,
    pub description: Option<String>,
    pub device: String,
    pub external: IpAddr,
    pub internal: IpAddr,
}

pub(crate) enum SetElems {
    V4(Intervals<u32>),
    V6(Intervals<u128>),
    Port(Intervals<u16>),
}

pub(crate) struct Compiled {
    /// Named sets, sorted by name.
    pub sets: BTreeMap<String, SetElems>,
    pub rules: Vec<CRule>,
    pub outbound: Vec<COutbound>,
    pub forwards: Vec<CForward>,
    pub one_to_one: Vec<COneToOne>,
    pub routes: Vec<Route>,
}

pub(crate) fn set_name(alias: &str, suffix: &str) -> String {
    format!("alias_{alias}_{suffix}")
}

/// `[A-Za-z_][A-Za-z0-9_]*`: alias and gateway names (also valid nft identifiers).
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

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

/// How an address-context string reads.
enum AddrAtom<'s> {
    Any,
    Iface(&'s str, IfaceKeyword),
    Alias(&'s str),
    Lit(&'s str),
}

#[derive(Clone, Copy)]
enum IfaceKeyword {
    Address,
    Network,
}

fn classify_addr(s: &str) -> AddrAtom<'_> {
    let t = s.trim();
    if t == "any" {
        return AddrAtom::Any;
    }
    if let Some((iface, kw)) = t.rsplit_once(':') {
        let kw = match kw {
            "address" => Some(IfaceKeyword::Address),
            "network" => Some(IfaceKeyword::Network),
            _ => None,
        };
        if let Some(kw) = kw {
            if is_iface_name(iface) {
                return AddrAtom::Iface(iface, kw);
            }
        }
    }
    if is_identifier(t) {
        AddrAtom::Alias(t)
    } else {
        AddrAtom::Lit(t)
    }
}

fn is_iface_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

struct AliasEntry {
    kind: AliasKind,
    /// Index in `areas.aliases` of the first alias with this name.
    index: usize,
}

#[derive(Clone)]
enum Resolve {
    Todo,
    InProgress,
    Done,
}

struct Compiler<'a> {
    areas: &'a Areas,
    ctx: &'a NodeContext,
    errors: Vec<ConfigError>,
    alias_by_name: BTreeMap<&'a str, AliasEntry>,
    state: Vec<Resolve>,
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
    if c.errors.is_empty() {
        Ok(Compiled {
            sets,
            rules,
            outbound,
            forwards,
            one_to_one,
            routes,
        })
    } else {
        Err(c.errors)
    }
}

impl<'a> Compiler<'a> {
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

    // ----- aliases -----

    fn aliases(&mut self) -> BTreeMap<String, SetElems> {
        let areas = self.areas;
        for (i, a) in areas.aliases.iter().enumerate() {
            let name = a.name.get_ref().as_str();
            if !is_identifier(name) || name.len() > MAX_NAME_LEN {
                self.err(
                    a.name.span(),
                    format!("invalid alias name `{name}`: use letters, digits and _ (at most {MAX_NAME_LEN}, not starting with a digit)"),
                );
            } else if name == "any" {
                self.err(a.name.span(), "`any` is reserved and cannot name an alias");
            }
            if self.alias_by_name.contains_key(name) {
                self.err(a.name.span(), format!("duplicate alias name `{name}`"));
            } else {
                self.alias_by_name.insert(
                    name,
                    AliasEntry {
                        kind: *a.kind.get_ref(),
                        index: i,
                    },
                );
            }
        }
        let mut sets = BTreeMap::new();
        for i in 0..areas.aliases.len() {
            let mut stack = Vec::new();
            self.resolve_alias(i, &mut stack);
            let name = areas.aliases[i].name.get_ref();
            if self.alias_by_name.get(name.as_str()).map(|e| e.index) != Some(i) {
                continue; // a duplicate: already reported
            }
            match &self.content[i] {
                Some(Content::Addr(c)) => {
                    if !c.v4.is_empty() {
                        sets.insert(set_name(name, "v4"), SetElems::V4(c.v4.clone()));
                    }
                    if !c.v6.is_empty() {
                        sets.insert(set_name(name, "v6"), SetElems::V6(c.v6.clone()));
                    }
                }
                Some(Content::Port(p)) if !p.is_empty() => {
                    sets.insert(set_name(name, "ports"), SetElems::Port(p.clone()));
                }
                _ => {}
            }
        }
        sets
    }

    /// Depth-first resolution with loop detection; each alias is flattened once.
    fn resolve_alias(&mut self, i: usize, stack: &mut Vec<usize>) {
        match self.state[i] {
            Resolve::Done => return,
            Resolve::InProgress => return, // the caller reports the loop
            Resolve::Todo => {}
        }
        self.state[i] = Resolve::InProgress;
        stack.push(i);
        let areas = self.areas;
        let alias = &areas.aliases[i];
        let kind = *alias.kind.get_ref();
        let aname = alias.name.get_ref();
        let outer = alias.entries.span();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut ports = Vec::new();
        for e in &alias.entries.get_ref().0 {
            let span = elem_span(&outer, e);
            // Strings that read as names are references to other aliases.
            let text = match e.get_ref() {
                Value::Int(p) => {
                    if kind == AliasKind::Port {
                        match parse_port_int(*p) {
                            Ok(r) => ports.push(r),
                            Err(m) => self.err(span, m),
                        }
                    } else {
                        self.err(
                            span,
                            format!("{kind} alias `{aname}` cannot hold the number {p} (only port aliases hold ports)"),
                        );
                    }
                    continue;
                }
                Value::Str(s) => s.as_str(),
            };
            let t = text.trim();
            if is_identifier(t) && t != "any" {
                let Some(entry) = self.alias_by_name.get(t) else {
                    self.err(span, format!("unknown alias `{t}` in alias `{aname}`"));
                    continue;
                };
                let (ckind, ci) = (entry.kind, entry.index);
                let compatible = match kind {
                    AliasKind::Host => ckind == AliasKind::Host,
                    AliasKind::Network => ckind != AliasKind::Port,
                    AliasKind::Port => ckind == AliasKind::Port,
                };
                if !compatible {
                    let allowed = match kind {
                        AliasKind::Host => "host aliases",
                        AliasKind::Network => "host or network aliases",
                        AliasKind::Port => "port aliases",
                    };
                    self.err(
                        span,
                        format!("alias `{t}` is a {ckind} alias; {kind} alias `{aname}` can only contain {allowed}"),
                    );
                    continue;
                }
                if let Some(pos) = stack.iter().position(|&s| s == ci) {
                    let mut path: Vec<&str> = stack[pos..]
                        .iter()
                        .map(|&s| areas.aliases[s].name.get_ref().as_str())
                        .collect();
                    path.push(t);
                    self.err(span, format!("alias loop: {}", path.join(" -> ")));
                    continue;
                }
                if stack.len() >= MAX_ALIAS_DEPTH {
                    self.err(
                        span,
                        format!("aliases nested more than {MAX_ALIAS_DEPTH} deep at `{t}`"),
                    );
                    continue;
                }
                self.resolve_alias(ci, stack);
                match &self.content[ci] {
                    Some(Content::Addr(c)) => {
                        c.v4.extend_into(&mut v4);
                        c.v6.extend_into(&mut v6);
                    }
                    Some(Content::Port(p)) => p.extend_into(&mut ports),
                    None => {}
                }
                continue;
            }
            match kind {
                AliasKind::Port => match parse_port_str(t) {
                    Ok(r) => ports.push(r),
                    Err(m) => self.err(span, m),
                },
                AliasKind::Host | AliasKind::Network => {
                    if matches!(classify_addr(t), AddrAtom::Iface(..) | AddrAtom::Any) {
                        self.err(
                            span,
                            format!("`{t}` cannot be used in an alias (only in rules and NAT)"),
                        );
                        continue;
                    }
                    match parse_addr(t) {
                        Ok((_, AddrForm::Network)) if kind == AliasKind::Host => self.err(
                            span,
                            format!("`{t}` is a network; host alias `{aname}` holds addresses and ranges only (use a network alias)"),
                        ),
                        Ok((AddrLit::V4(a, b), _)) => v4.push((a, b)),
                        Ok((AddrLit::V6(a, b), _)) => v6.push((a, b)),
                        Err(m) => self.err(span, m),
                    }
                }
            }
        }
        let content = match kind {
            AliasKind::Port => Content::Port(Intervals::from_unsorted(ports)),
            _ => Content::Addr(AddrContent {
                v4: Intervals::from_unsorted(v4),
                v6: Intervals::from_unsorted(v6),
            }),
        };
        self.content[i] = Some(content);
        self.state[i] = Resolve::Done;
        stack.pop();
    }

    fn alias_content(&self, name: &str) -> Option<(AliasKind, Option<&Content>)> {
        let e = self.alias_by_name.get(name)?;
        Some((e.kind, self.content[e.index].as_ref()))
    }

    // ----- address and port matches -----

    /// Resolve a source/destination. `fam` restricts the families (literals of another family
    /// are errors); `what` names the field in messages.
    fn addr_match(
        &mut self,
        spec: Option<&Spanned<Values>>,
        fam: Family,
        what: &str,
        only: &str,
    ) -> AddrMatch {
        let Some(spec) = spec else {
            return AddrMatch::any().restrict(fam);
        };
        let outer = spec.span();
        let items = &spec.get_ref().0;
        if items.is_empty() {
            self.err(
                outer,
                format!("{what} is an empty list (write \"any\" to match everything)"),
            );
            return AddrMatch::any().restrict(fam);
        }
        // One alias alone: refer to its named set(s).
        if let [one] = items.as_slice() {
            if let Value::Str(s) = one.get_ref() {
                if let AddrAtom::Alias(name) = classify_addr(s) {
                    let span = elem_span(&outer, one);
                    return match self.alias_content(name) {
                        Some((AliasKind::Port, _)) => {
                            self.err(
                                span,
                                format!(
                                    "alias `{name}` is a port alias and cannot be used as {what}"
                                ),
                            );
                            AddrMatch::any()
                        }
                        Some((_, Some(Content::Addr(c)))) => AddrMatch {
                            v4: if c.v4.is_empty() {
                                Side::Nothing
                            } else {
                                Side::Set(set_name(name, "v4"))
                            },
                            v6: if c.v6.is_empty() {
                                Side::Nothing
                            } else {
                                Side::Set(set_name(name, "v6"))
                            },
                        }
                        .restrict(fam),
                        Some(_) => AddrMatch::any(), // broken alias, already reported
                        None => {
                            self.err(span, format!("unknown alias `{name}` in {what}"));
                            AddrMatch::any()
                        }
                    };
                }
            }
        }
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for item in items {
            let span = elem_span(&outer, item);
            let s = match item.get_ref() {
                Value::Str(s) => s.as_str(),
                Value::Int(i) => {
                    self.err(span, format!("{what}: expected an address, network, alias or \"any\", found the number {i}"));
                    continue;
                }
            };
            match classify_addr(s) {
                AddrAtom::Any => {
                    if items.len() > 1 {
                        self.err(
                            span,
                            format!("\"any\" cannot be combined with other entries in {what}"),
                        );
                    }
                    return AddrMatch::any().restrict(fam);
                }
                AddrAtom::Alias(name) => match self.alias_content(name) {
                    Some((AliasKind::Port, _)) => self.err(
                        span,
                        format!("alias `{name}` is a port alias and cannot be used as {what}"),
                    ),
                    Some((_, Some(Content::Addr(c)))) => {
                        c.v4.extend_into(&mut v4);
                        c.v6.extend_into(&mut v6);
                    }
                    Some(_) => {}
                    None => self.err(span, format!("unknown alias `{name}` in {what}")),
                },
                AddrAtom::Iface(iface, kw) => {
                    if !self.ctx.interfaces.contains_key(iface) {
                        self.err(span, format!("unknown interface `{iface}` in `{s}`"));
                        continue;
                    }
                    let addrs = self.ctx.interface_addrs.get(iface);
                    let mut lits: Vec<AddrLit> = Vec::new();
                    match kw {
                        IfaceKeyword::Address => lits
                            .extend(addrs.into_iter().flatten().map(|n| AddrLit::host(n.addr()))),
                        IfaceKeyword::Network => {
                            lits.extend(addrs.into_iter().flatten().map(|n| AddrLit::net(*n)));
                            lits.extend(
                                self.ctx
                                    .vips
                                    .iter()
                                    .filter(|(i, _)| i == iface)
                                    .map(|(_, n)| AddrLit::net(*n)),
                            );
                        }
                    }
                    for l in lits {
                        match l {
                            AddrLit::V4(a, b) => v4.push((a, b)),
                            AddrLit::V6(a, b) => v6.push((a, b)),
                        }
                    }
                }
                AddrAtom::Lit(t) => match parse_addr(t) {
                    Ok((lit, _)) => {
                        let wrong = match fam {
                            Family::Inet => lit.is_v6(),
                            Family::Inet6 => !lit.is_v6(),
                            Family::Any => false,
                        };
                        if wrong {
                            self.err(
                                span,
                                format!("`{t}` is an {} address but {only}", fam_name(lit.is_v6())),
                            );
                            continue;
                        }
                        match lit {
                            AddrLit::V4(a, b) => v4.push((a, b)),
                            AddrLit::V6(a, b) => v6.push((a, b)),
                        }
                    }
                    Err(m) => self.err(span, m),
                },
            }
        }
        let v4 = Intervals::from_unsorted(v4);
        let v6 = Intervals::from_unsorted(v6);
        AddrMatch {
            v4: if v4.is_empty() {
                Side::Nothing
            } else {
                Side::Lits(v4)
            },
            v6: if v6.is_empty() {
                Side::Nothing
            } else {
                Side::Lits(v6)
            },
        }
        .restrict(fam)
    }

    fn port_match(&mut self, spec: Option<&Spanned<Values>>, what: &str) -> PortMatch {
        let Some(spec) = spec else {
            return PortMatch::Any;
        };
        let outer = spec.span();
        let items = &spec.get_ref().0;
        if items.is_empty() {
            self.err(
                outer,
                format!("{what} is an empty list (leave it out to match every port)"),
            );
            return PortMatch::Any;
        }
        if let [one] = items.as_slice() {
            if let Value::Str(s) = one.get_ref() {
                let t = s.trim();
                if is_identifier(t) && t != "any" {
                    let span = elem_span(&outer, one);
                    return match self.alias_content(t) {
                        Some((AliasKind::Port, Some(Content::Port(p)))) => {
                            if p.is_empty() {
                                PortMatch::Nothing
                            } else {
                                PortMatch::Set(set_name(t, "ports"))
                            }
                        }
                        Some((AliasKind::Port, _)) => PortMatch::Any,
                        Some((kind, _)) => {
                            self.err(
                                span,
                                format!(
                                    "alias `{t}` is a {kind} alias and cannot be used as {what}"
                                ),
                            );
                            PortMatch::Any
                        }
                        None => {
                            self.err(span, format!("unknown alias `{t}` in {what}"));
                            PortMatch::Any
                        }
                    };
                }
            }
        }
        let mut ports = Vec::new();
        for item in items {
            let span = elem_span(&outer, item);
            match item.get_ref() {
                Value::Int(i) => match parse_port_int(*i) {
                    Ok(r) => ports.push(r),
                    Err(m) => self.err(span, m),
                },
                Value::Str(s) => {
                    let t = s.trim();
                    if t == "any" {
                        if items.len() > 1 {
                            self.err(
                                span,
                                format!("\"any\" cannot be combined with other entries in {what}"),
                            );
                        }
                        return PortMatch::Any;
                    }
                    if is_identifier(t) {
                        match self.alias_content(t) {
                            Some((AliasKind::Port, Some(Content::Port(p)))) => {
                                p.extend_into(&mut ports)
                            }
                            Some((AliasKind::Port, _)) => {}
                            Some((kind, _)) => self.err(
                                span,
                                format!(
                                    "alias `{t}` is a {kind} alias and cannot be used as {what}"
                                ),
                            ),
                            None => self.err(span, format!("unknown alias `{t}` in {what}")),
                        }
                        continue;
                    }
                    match parse_port_str(t) {
                        Ok(r) => ports.push(r),
                        Err(m) => self.err(span, m),
                    }
                }
            }
        }
        let ports = Intervals::from_unsorted(ports);
        if ports.is_empty() {
            PortMatch::Nothing
        } else {
            PortMatch::Lits(ports)
        }
    }

    // ----- rules -----

    fn rule(&mut self, number: usize, r: &Rule) -> CRule {
        let device = self.device(&r.interface, true).flatten();
        let protocol = r.protocol.as_ref().map_or(Protocol::Any, |p| *p.get_ref());
        let family = r.family.as_ref().map_or(Family::Any, |f| *f.get_ref());
        let eff = match (protocol, family) {
            (Protocol::Icmp, Family::Inet6) => {
                let span = r.protocol.as_ref().map_or(0..0, Spanned::span);
                self.err(
                    span,
                    "protocol icmp is IPv4 only: use icmpv6 with family inet6",
                );
                family
            }
            (Protocol::Icmpv6, Family::Inet) => {
                let span = r.protocol.as_ref().map_or(0..0, Spanned::span);
                self.err(
                    span,
                    "protocol icmpv6 is IPv6 only: use icmp with family inet",
                );
                family
            }
            (Protocol::Icmp, _) => Family::Inet,
            (Protocol::Icmpv6, _) => Family::Inet6,
            (_, f) => f,
        };
        let only = match (protocol, eff) {
            (Protocol::Icmp, _) => "protocol icmp is IPv4 only",
            (Protocol::Icmpv6, _) => "protocol icmpv6 is IPv6 only",
            (_, Family::Inet) => "the rule's family is inet (IPv4)",
            _ => "the rule's family is inet6 (IPv6)",
        };
        let src = self.addr_match(r.source.as_ref(), eff, "source", only);
        let dst = self.addr_match(r.destination.as_ref(), eff, "destination", only);
        for (spec, what) in [
            (&r.source_port, "source_port"),
            (&r.destination_port, "destination_port"),
        ] {
            if let Some(p) = spec {
                if !protocol.has_ports() {
                    self.err(
                        p.span(),
                        format!("{what} needs protocol tcp, udp or tcp/udp (this rule's protocol is {protocol})"),
                    );
                }
            }
        }
        let sport = self.port_match(r.source_port.as_ref(), "source_port");
        let dport = self.port_match(r.destination_port.as_ref(), "destination_port");
        CRule {
            number,
            enabled: r.enabled,
            description: r.description.clone(),
            device,
            direction: r.direction,
            action: *r.action.get_ref(),
            protocol,
            family: eff,
            src,
            dst,
            sport,
            dport,
            log: r.log,
            stateful: r.stateful,
        }
    }

    // ----- NAT -----

    /// An address of this node on `iface` that NAT may translate to: a VIP or a real address.
    fn nat_address(&mut self, iface: &str, addr: &Spanned<String>, what: &str) -> Option<IpAddr> {
        let text = addr.get_ref().trim();
        let Ok(ip) = text.parse::<IpAddr>() else {
            self.err(addr.span(), format!("invalid {what} address `{text}`"));
            return None;
        };
        let is_vip = self
            .ctx
            .vips
            .iter()
            .any(|(i, n)| i == iface && n.addr() == ip);
        let is_real = self
            .ctx
            .interface_addrs
            .get(iface)
            .is_some_and(|v| v.iter().any(|n| n.addr() == ip));
        if !is_vip && !is_real {
            self.err(
                addr.span(),
                format!("{what} {ip} is not a VIP or address of interface {iface}"),
            );
            return None;
        }
        Some(ip)
    }

    fn outbound(&mut self) -> Vec<COutbound> {
        let mut out = Vec::new();
        for (i, n) in self.areas.nat.outbound.iter().enumerate() {
            let Some(device) = self.device(&n.interface, false).flatten() else {
                continue;
            };
            let iface = n.interface.get_ref().as_str();
            let tr = n.translation.get_ref().trim();
            let to = if tr == "interface" {
                let first = self
                    .ctx
                    .interface_addrs
                    .get(iface)
                    .and_then(|v| v.iter().find(|n| n.addr().is_ipv4()));
                match first {
                    Some(a) => Some(a.addr()),
                    None => {
                        self.err(
                            n.translation.span(),
                            format!("interface {iface} has no IPv4 address on this node to translate to"),
                        );
                        None
                    }
                }
            } else {
                self.nat_address(iface, &n.translation, "translation")
            };
            let Some(to) = to else { continue };
            let (fam, only) = if to.is_ipv4() {
                (Family::Inet, "the translation address is IPv4")
            } else {
                (Family::Inet6, "the translation address is IPv6")
            };
            let src = self.addr_match(n.source.as_ref(), fam, "source", only);
            let dst = self.addr_match(n.destination.as_ref(), fam, "destination", only);
            if n.enabled {
                out.push(COutbound {
                    number: i + 1,
                    description: n.description.clone(),
                    device,
                    src,
                    dst,
                    to,
                });
            }
        }
        out
    }

    fn forwards(&mut self) -> Vec<CForward> {
        let mut out: Vec<CForward> = Vec::new();
        for (i, f) in self.areas.nat.port_forward.iter().enumerate() {
            let device = self.device(&f.interface, false).flatten();
            let iface = f.interface.get_ref().as_str();
            let destination = match &device {
                Some(_) => self.nat_address(iface, &f.destination, "destination"),
                None => None,
            };
            let protocol = *f.protocol.get_ref();
            if !protocol.has_ports() {
                self.err(
                    f.protocol.span(),
                    format!("a port forward needs protocol tcp, udp or tcp/udp, not {protocol}"),
                );
            }
            let is_any = f
                .port
                .get_ref()
                .0
                .iter()
                .any(|v| matches!(v.get_ref(), Value::Str(s) if s.trim() == "any"));
            if is_any {
                self.err(f.port.span(), "a port forward needs a port, not \"any\"");
                continue;
            }
            let port = self.port_match(Some(&f.port), "port");
            let target_port = match &f.target_port {
                None => None,
                Some(tp) => {
                    let r = match tp.get_ref() {
                        Value::Int(p) => parse_port_int(*p),
                        Value::Str(s) => parse_port_str(s),
                    };
                    match r {
                        Ok((a, b)) if a == b => {
                            let single =
                                matches!(&port, PortMatch::Lits(l) if l.single().is_some());
                            if !single {
                                self.err(tp.span(), "target_port needs `port` to be a single port (leave target_port out to keep the original ports)");
                            }
                            Some(a)
                        }
                        Ok(_) => {
                            self.err(tp.span(), "target_port must be a single port, not a range");
                            None
                        }
                        Err(m) => {
                            self.err(tp.span(), m);
                            None
                        }
                    }
                }
            };
            let t = f.target.get_ref().trim();
            let target = match t.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.err(f.target.span(), format!("invalid target address `{t}`"));
                    None
                }
            };
            let (Some(destination), Some(target)) = (destination, target) else {
                continue;
            };
            if destination.is_ipv4() != target.is_ipv4() {
                self.err(
                    f.target.span(),
                    format!(
                        "target {target} is {} but destination {destination} is {}",
                        fam_name(target.is_ipv6()),
                        fam_name(destination.is_ipv6())
                    ),
                );
                continue;
            }
            let (fam, only) = if destination.is_ipv4() {
                (Family::Inet, "the port forward's destination is IPv4")
            } else {
                (Family::Inet6, "the port forward's destination is IPv6")
            };
            let src = self.addr_match(f.source.as_ref(), fam, "source", only);
            let Some(device) = device else { continue };
            if !f.enabled {
                continue;
            }
            // Two forwards of the same address, protocol and port: the second never applies.
            if let PortMatch::Lits(ports) = &port {
                let dup = out.iter().find(|o| {
                    o.device == device
                        && o.destination == destination
                        && protocols_overlap(o.protocol, protocol)
                        && matches!(&o.port, PortMatch::Lits(p) if p.overlaps(ports))
                });
                if let Some(o) = dup {
                    let n = o.number;
                    self.err(
                        f.port.span(),
                        format!("port forward overlaps port forward {n} (same interface, destination, protocol and port)"),
                    );
                    continue;
                }
            }
            out.push(CForward {
                number: i + 1,
                description: f.description.clone(),
                device,
                protocol,
                src,
                destination,
                port,
                target,
                target_port,
                pass_rule: f.pass_rule,
                log: f.log,
            });
        }
        out
    }

    fn one_to_one(&mut self) -> Vec<COneToOne> {
        let mut out: Vec<COneToOne> = Vec::new();
        for (i, o) in self.areas.nat.one_to_one.iter().enumerate() {
            let Some(device) = self.device(&o.interface, false).flatten() else {
                continue;
            };
            let iface = o.interface.get_ref().as_str();
            let external = self.nat_address(iface, &o.external, "external");
            let t = o.internal.get_ref().trim();
            let internal = match t.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.err(o.internal.span(), format!("invalid internal address `{t}`"));
                    None
                }
            };
            let (Some(external), Some(internal)) = (external, internal) else {
                continue;
            };
            if external.is_ipv4() != internal.is_ipv4() {
                self.err(
                    o.internal.span(),
                    format!("internal {internal} and external {external} are of different address families"),
                );
                continue;
            }
            if !o.enabled {
                continue;
            }
            if let Some(p) = out.iter().find(|p| p.external == external) {
                let n = p.number;
                self.err(
                    o.external.span(),
                    format!("external address {external} is already mapped by 1:1 NAT {n}"),
                );
                continue;
            }
            if let Some(p) = out.iter().find(|p| p.internal == internal) {
                let n = p.number;
                self.err(
                    o.internal.span(),
                    format!("internal address {internal} is already mapped by 1:1 NAT {n}"),
                );
                continue;
            }
            out.push(COneToOne {
                number: i + 1,
                description: o.description.clone(),
                device,
                external,
                internal,
            });
        }
        out
    }

    // ----- gateways and routes -----

    fn routes(&mut self) -> Vec<Route> {
        // name -> Some((address, device)) when valid, None when broken (already reported).
        let mut gws: BTreeMap<&str, Option<(IpAddr, String)>> = BTreeMap::new();
        let areas = self.areas;
        for g in &areas.gateways {
            let name = g.name.get_ref().as_str();
            if !is_identifier(name) || name.len() > MAX_NAME_LEN {
                self.err(
                    g.name.span(),
                    format!("invalid gateway name `{name}`: use letters, digits and _ (at most {MAX_NAME_LEN}, not starting with a digit)"),
                );
            }
            if gws.contains_key(name) {
                self.err(g.name.span(), format!("duplicate gateway name `{name}`"));
                continue;
            }
            let device = self.device(&g.interface, false).flatten();
            let t = g.address.get_ref().trim();
            let addr = match t.parse::<IpAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.err(g.address.span(), format!("invalid gateway address `{t}`"));
                    None
                }
            };
            let resolved = match (device, addr) {
                (Some(device), Some(addr)) => {
                    let iface = g.interface.get_ref().as_str();
                    let nets: Vec<IpNet> = self
                        .ctx
                        .interface_addrs
                        .get(iface)
                        .into_iter()
                        .flatten()
                        .copied()
                        .chain(
                            self.ctx
                                .vips
                                .iter()
                                .filter(|(i, _)| i == iface)
                                .map(|(_, n)| *n),
                        )
                        .collect();
                    if nets.iter().any(|n| n.addr() == addr) {
                        self.err(
                            g.address.span(),
                            format!("gateway {name}: {addr} is this node's own address on {iface}"),
                        );
                        None
                    } else if !nets.iter().any(|n| n.contains(&addr)) {
                        let mut list: Vec<IpNet> = nets.iter().map(IpNet::trunc).collect();
                        list.sort();
                        list.dedup();
                        let list: Vec<String> = list.iter().map(IpNet::to_string).collect();
                        let list = if list.is_empty() {
                            "none".to_owned()
                        } else {
                            list.join(", ")
                        };
                        self.err(
                            g.address.span(),
                            format!("gateway {name}: {addr} is not on a connected network of interface {iface} (connected: {list})"),
                        );
                        None
                    } else {
                        Some((addr, device))
                    }
                }
                _ => None,
            };
            gws.insert(name, resolved);
        }
        let mut routes = Vec::new();
        let mut seen: BTreeMap<IpNet, usize> = BTreeMap::new();
        for (i, r) in areas.routes.iter().enumerate() {
            let t = r.network.get_ref().trim();
            let net = match t.parse::<IpNet>() {
                Ok(n) => Some(n.trunc()),
                Err(_) => {
                    match t.parse::<IpAddr>() {
                        Ok(a) => Some(IpNet::from(a)),
                        Err(_) => {
                            self.err(r.network.span(), format!("invalid route network `{t}` (expected CIDR like 203.0.113.0/24)"));
                            None
                        }
                    }
                }
            };
            let gname = r.gateway.get_ref().as_str();
            let gw = match gws.get(gname) {
                Some(g) => g.clone(),
                None => {
                    self.err(
                        r.gateway.span(),
                        format!("route via unknown gateway `{gname}`"),
                    );
                    None
                }
            };
            let Some(net) = net else { continue };
            if let Some(prev) = seen.get(&net) {
                self.err(
                    r.network.span(),
                    format!("duplicate route to {net} (also route {prev})"),
                );
                continue;
            }
            seen.insert(net, i + 1);
            let Some((gateway, device)) = gw else {
                continue;
            };
            if net.addr().is_ipv4() != gateway.is_ipv4() {
                self.err(
                    r.gateway.span(),
                    format!(
                        "route to {net} ({}) via gateway {gname} at {gateway} ({})",
                        fam_name(net.addr().is_ipv6()),
                        fam_name(gateway.is_ipv6())
                    ),
                );
                continue;
            }
            if r.enabled {
                routes.push(Route {
                    destination: net,
                    gateway,
                    device,
                    gateway_name: gname.to_owned(),
                });
            }
        }
        routes
    }
}

fn protocols_overlap(a: Protocol, b: Protocol) -> bool {
    let tcp = |p| matches!(p, Protocol::Tcp | Protocol::TcpUdp);
    let udp = |p| matches!(p, Protocol::Udp | Protocol::TcpUdp);
    (tcp(a) && tcp(b)) || (udp(a) && udp(b))
}
