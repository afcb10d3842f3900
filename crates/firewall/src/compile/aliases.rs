//! Aliases: their names, references between them (checked for kind, loops and depth), and
//! their flattening into the sets the ruleset holds. Later passes look resolved aliases up here.

use std::collections::BTreeMap;

use crate::model::{AliasKind, Value};
use crate::net::{parse_addr, parse_port_int, parse_port_str, AddrForm, AddrLit, Intervals};

use super::compiled::{set_name, SetElems};
use super::matches::{classify_addr, AddrAtom};
use super::{elem_span, is_identifier, Compiler, MAX_NAME_LEN};

/// Aliases may nest at most this deep (keeps resolution's recursion bounded).
pub const MAX_ALIAS_DEPTH: usize = 32;

/// The resolved contents of an alias.
#[derive(Debug, Clone, Default)]
pub(super) struct AddrContent {
    pub v4: Intervals<u32>,
    pub v6: Intervals<u128>,
}

#[derive(Debug, Clone)]
pub(super) enum Content {
    Addr(AddrContent),
    Port(Intervals<u16>),
}

pub(super) struct AliasEntry {
    kind: AliasKind,
    /// Index in `areas.aliases` of the first alias with this name.
    index: usize,
}

#[derive(Clone)]
pub(super) enum Resolve {
    Todo,
    InProgress,
    Done,
}

impl Compiler<'_> {
    /// Check the alias names, resolve every alias, and return the sets of the aliases that are
    /// not duplicates (an empty alias or family gets no set).
    pub(super) fn aliases(&mut self) -> BTreeMap<String, SetElems> {
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

    /// A resolved alias by name: its kind, and its content unless it was broken.
    pub(super) fn alias_content(&self, name: &str) -> Option<(AliasKind, Option<&Content>)> {
        let e = self.alias_by_name.get(name)?;
        Some((e.kind, self.content[e.index].as_ref()))
    }
}
