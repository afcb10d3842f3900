//! Gateways and static routes: a gateway is a next hop on a network connected to its
//! interface; a route goes through a gateway of its family and comes out resolved to address and
//! device.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::Route;

use super::{fam_name, is_identifier, Compiler, MAX_NAME_LEN};

impl Compiler<'_> {
    /// Check the gateways, then resolve the routes through them (in config order).
    pub(super) fn routes(&mut self) -> Vec<Route> {
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
