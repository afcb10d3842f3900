//! Address and port values → matches. A value is `any`, a literal, an alias, or (addresses
//! only) `IFACE:address` / `IFACE:network`, resolved against this node. One alias alone
//! becomes a reference to its set; anything else is flattened into literals.

use toml::Spanned;

use crate::model::{AliasKind, Family, Value, Values};
use crate::net::{parse_addr, parse_port_int, parse_port_str, AddrLit, Intervals};

use super::aliases::Content;
use super::compiled::{set_name, AddrMatch, PortMatch, Side};
use super::{elem_span, fam_name, is_identifier, Compiler};

/// How an address-context string reads.
pub(super) enum AddrAtom<'s> {
    Any,
    Iface(&'s str, IfaceKeyword),
    Alias(&'s str),
    Lit(&'s str),
}

#[derive(Clone, Copy)]
pub(super) enum IfaceKeyword {
    Address,
    Network,
}

pub(super) fn classify_addr(s: &str) -> AddrAtom<'_> {
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

impl Compiler<'_> {
    /// Resolve a source/destination. `fam` restricts the families (literals of another family
    /// are errors); `what` names the field in messages.
    pub(super) fn addr_match(
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

    /// Resolve a port value; `what` names the field in messages.
    pub(super) fn port_match(&mut self, spec: Option<&Spanned<Values>>, what: &str) -> PortMatch {
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
}
