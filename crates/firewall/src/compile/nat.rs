//! NAT: outbound (source) NAT, port forwards (destination NAT) and 1:1 NAT. Translations must
//! be addresses of this node (a VIP or a real address) on the interface; overlapping port
//! forwards and 1:1 mappings are errors.

use std::net::IpAddr;

use toml::Spanned;

use crate::model::{Family, Protocol, Value};
use crate::net::{parse_port_int, parse_port_str};

use super::compiled::{CForward, COneToOne, COutbound, PortMatch};
use super::{fam_name, Compiler};

impl Compiler<'_> {
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

    pub(super) fn outbound(&mut self) -> Vec<COutbound> {
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

    pub(super) fn forwards(&mut self) -> Vec<CForward> {
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

    pub(super) fn one_to_one(&mut self) -> Vec<COneToOne> {
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
}

fn protocols_overlap(a: Protocol, b: Protocol) -> bool {
    let tcp = |p| matches!(p, Protocol::Tcp | Protocol::TcpUdp);
    let udp = |p| matches!(p, Protocol::Udp | Protocol::TcpUdp);
    (tcp(a) && tcp(b)) || (udp(a) && udp(b))
}
