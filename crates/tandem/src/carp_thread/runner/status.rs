//! The routers as `tandem status` shows them, from the engine's view and the runner's own
//! records (transitions, devices, addresses, virtual MACs).

use super::*;

impl Carp {
    pub(super) fn status(&self) -> CarpStatus {
        let reason_map = |m: &BTreeMap<RejectReason, u64>| {
            m.iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        let mut vips: Vec<VipStatus> = self
            .engine
            .status()
            .into_iter()
            .map(|r| {
                let vip = self.vips.get(&(r.iface, r.vhid.get()));
                let (mac_mode, mac, mac_devices) = self.vmacs.status(
                    r.iface,
                    r.vhid.get(),
                    self.ifaces.get(&r.iface).map(|i| i.mac),
                );
                VipStatus {
                    vhid: r.vhid.get(),
                    interface: self.name(r.iface),
                    device: self
                        .ifaces
                        .get(&r.iface)
                        .map(|i| i.device.clone())
                        .unwrap_or_default(),
                    addresses: vip
                        .map(|v| v.addresses.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    state: r.state.to_string(),
                    advbase: r.advbase.0,
                    advskew: r.advertised_skew.0,
                    configured_advskew: r.advskew.0,
                    preempt: r.preempt,
                    last_master: r.last_master.map(|a| a.to_string()),
                    last_transition: self.transitions.get(&(r.iface, r.vhid.get())).map(
                        |(from, to, reason, at)| Transition {
                            from: from.to_string(),
                            to: to.to_string(),
                            reason: reason.to_string(),
                            seconds_ago: at.elapsed().as_secs_f64(),
                        },
                    ),
                    transitions: self
                        .transition_counts
                        .get(&(r.iface, r.vhid.get()))
                        .copied()
                        .unwrap_or(0),
                    adverts_sent: r.counters.adverts_sent,
                    adverts_received: r.counters.adverts_received,
                    adverts_rejected: reason_map(&r.counters.rejected),
                    send_errors: r.counters.send_errors,
                    auth: match r.protocol {
                        carp::Protocol::Carp => r.auth.to_string(),
                        carp::Protocol::Vrrp { .. } => "none".to_string(),
                    },
                    protocol: match r.protocol {
                        carp::Protocol::Carp => "carp".to_string(),
                        carp::Protocol::Vrrp { .. } => "vrrp".to_string(),
                    },
                    priority: r.priority,
                    interval_ms: match r.protocol {
                        carp::Protocol::Carp => carp::Interval::new(r.advbase, r.advertised_skew)
                            .as_duration()
                            .as_millis() as u32,
                        carp::Protocol::Vrrp { interval } => u32::from(interval.get()) * 10,
                    },
                    mac_mode: mac_mode.to_string(),
                    mac,
                    mac_devices,
                }
            })
            .collect();
        vips.sort_by(|a, b| (&a.interface, a.vhid).cmp(&(&b.interface, b.vhid)));
        CarpStatus {
            demotion: self.engine.demotion(),
            demotions: self
                .engine
                .demotions()
                .map(|(s, v)| Demotion {
                    source: source_name(s, |i| self.name(i)),
                    value: v,
                })
                .collect(),
            vips,
            rejected: reason_map(self.engine.node_rejected()),
        }
    }
}
