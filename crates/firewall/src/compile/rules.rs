//! Filter rules: interface, the family the protocol implies, addresses and ports.

use toml::Spanned;

use crate::model::{Family, Protocol, Rule};

use super::compiled::CRule;
use super::Compiler;

impl Compiler<'_> {
    /// Compile rule `number` (its position in the file, from 1).
    pub(super) fn rule(&mut self, number: usize, r: &Rule) -> CRule {
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
}
