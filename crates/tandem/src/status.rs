//! The node's whole status, as `tandem status` prints it, `--json` gives it and the XML-RPC
//! method `tandem.status` answers it: one struct, built by the daemon from what each subsystem
//! reports.

pub use crate::carp_thread::{Demotion, VipStatus};
pub use crate::certs_apply::CertificateStatus;
pub use crate::checks::CheckStatus;
pub use crate::config_sync::ConfigSyncStatus;
pub use crate::dhcp_apply::DhcpStatus;
pub use crate::dns_apply::DnsStatus;
pub use crate::firewall_apply::FirewallStatus;
pub use crate::hooks::HookStatus;
pub use crate::state_sync::StateSyncStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: String,
    pub pid: u32,
    /// Sum of the active demotion sources, added to every advertised skew (capped at 240).
    pub demotion: u8,
    pub demotions: Vec<Demotion>,
    pub vips: Vec<VipStatus>,
    /// Adverts dropped before they could be matched to a VIP (unknown vhid, runt packets).
    pub rejected: BTreeMap<String, u64>,
    pub firewall: crate::firewall_apply::FirewallStatus,
    pub sync: SyncStatus,
    /// Config sync in detail (None without `[sync]`).
    #[serde(default)]
    pub config_sync: Option<crate::config_sync::ConfigSyncStatus>,
    /// State sync in detail (None without `[statesync]`, or when it is switched off).
    #[serde(default)]
    pub state_sync: Option<crate::state_sync::StateSyncStatus>,
    /// Health checks (`[[checks]]`), in name order.
    #[serde(default)]
    pub checks: Vec<CheckStatus>,
    /// The last run of each hook (`[hooks]`) that ran.
    #[serde(default)]
    pub hooks: Vec<HookStatus>,
    /// Maintenance mode (`tandem maintenance enter`): the node hands every VIP to its peers
    /// and stays a backup, across restarts, until `tandem maintenance leave`.
    #[serde(default)]
    pub maintenance: bool,
    /// When maintenance mode was entered (seconds since the Unix epoch), if known.
    #[serde(default)]
    pub maintenance_since: Option<u64>,
    /// The certificates of the running config (`[[certificates]]`), in config order.
    #[serde(default)]
    pub certificates: Vec<CertificateStatus>,
    /// The `dhcp` area and this node's Kea (`[dhcp_local]`); absent without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<DhcpStatus>,
    /// The synced `[dns]` area on this node's unbound (None without a `[dns]` area).
    #[serde(default)]
    pub dns: Option<DnsStatus>,
    /// The tunnels of the `wireguard` area, in config order.
    #[serde(default)]
    pub wireguard: Vec<crate::wg_apply::WgStatus>,
}

/// One line each for config sync and state sync ("not configured" without them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncStatus {
    pub config: String,
    pub state: String,
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A VIP's advert interval as people write it: `1s`, `50ms`, `1.391s`.
fn interval(v: &VipStatus) -> String {
    let ms = if v.interval_ms == 0 {
        u32::from(v.advbase) * 1000
    } else {
        v.interval_ms
    };
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// A line each for the services the dns, dhcp and wireguard areas drive (unbound, Kea and its
/// HA, each tunnel): for `tandem status` and the status page.
pub fn service_lines(s: &Status) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = &s.dns {
        out.push(crate::dns_apply::line(d));
    }
    if let Some(d) = &s.dhcp {
        out.push(format!(
            "dhcp: {}, {} (Kea config {}): {}{}",
            crate::words::count(d.subnets, "subnet"),
            crate::words::count(d.reservations, "reservation"),
            d.config_file,
            d.last_apply,
            d.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
        if let Some(h) = &d.ha {
            out.push(dhcp_ha_line(h));
        }
    }
    for w in &s.wireguard {
        out.push(crate::wg_apply::line(w));
    }
    out
}

/// `dhcp HA: hot-standby (primary, serving fw1); partner fw2 at 203.0.113.2:8001: hot-standby`.
fn dhcp_ha_line(h: &crate::dhcp_apply::HaStatus) -> String {
    if let Some(e) = &h.error {
        return format!("dhcp HA: {} ({}; {e})", h.state, h.role);
    }
    let serving = if h.serving.is_empty() {
        "serving no clients".to_string()
    } else {
        format!("serving {}", h.serving.join(", "))
    };
    format!(
        "dhcp HA: {} ({}, {serving}); partner {} at {}: {}{}",
        h.state,
        h.role,
        h.partner,
        h.partner_address,
        h.partner_state.as_deref().unwrap_or("not heard yet"),
        if h.communication_interrupted {
            " (unreachable)"
        } else {
            ""
        }
    )
}

/// The human-readable status table.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} (pid {})  demotion {}",
        s.node, s.pid, s.demotion
    );
    if s.maintenance {
        let _ = writeln!(
            out,
            "  MAINTENANCE MODE: a backup for every VIP until `tandem maintenance leave`"
        );
    }
    for d in &s.demotions {
        let _ = writeln!(out, "  demoted by {} (+{})", d.source, d.value);
    }
    let _ = writeln!(
        out,
        "{:<5} {:<10} {:<10} {:<7} {:<11} {:>8} {:>9} {:>6} {:>6}  {:<24} REJECTED",
        "VHID",
        "INTERFACE",
        "DEVICE",
        "STATE",
        "PROTO",
        "INTERVAL",
        "SKEW/PRIO",
        "SENT",
        "RECV",
        "ADDRESSES"
    );
    for v in &s.vips {
        // CARP: the advertised skew; VRRP: the advertised priority.
        let standing = match v.priority {
            Some(p) => format!("prio {p}"),
            None => v.advskew.to_string(),
        };
        let proto = match v.protocol.as_str() {
            "vrrp" => "vrrp".to_string(),
            _ => format!("carp/{}", v.auth),
        };
        let _ = writeln!(
            out,
            "{:<5} {:<10} {:<10} {:<7} {:<11} {:>8} {:>9} {:>6} {:>6}  {:<24} {}",
            v.vhid,
            v.interface,
            v.device,
            v.state,
            proto,
            interval(v),
            standing,
            v.adverts_sent,
            v.adverts_received,
            v.addresses.join(","),
            counts(&v.adverts_rejected)
        );
    }
    for v in &s.vips {
        let mut parts = Vec::new();
        if let Some(t) = &v.last_transition {
            parts.push(format!(
                "{} -> {} ({}, {:.1} s ago)",
                t.from, t.to, t.reason, t.seconds_ago
            ));
        }
        if let Some(m) = &v.last_master {
            parts.push(format!("last master seen: {m}"));
        }
        if v.mac_mode == "virtual" {
            parts.push(format!(
                "virtual MAC {} on {}",
                v.mac.join(","),
                v.mac_devices.join(",")
            ));
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "vhid {} {}: {}", v.vhid, v.interface, parts.join("; "));
        }
    }
    if !s.rejected.is_empty() {
        let _ = writeln!(
            out,
            "rejected before matching a VIP: {}",
            counts(&s.rejected)
        );
    }
    // The detailed config sync block starts with its own `config sync:` line; the one-line
    // summary stands in only when there is no detail (not configured).
    match &s.config_sync {
        Some(cs) => out.push_str(&crate::config_sync::render(cs)),
        None => {
            let _ = writeln!(out, "config sync: {}", s.sync.config);
        }
    }
    let _ = writeln!(out, "state sync: {}", s.sync.state);
    for c in &s.checks {
        let _ = writeln!(
            out,
            "check {} ({} {}): {} for {:.1} s, {}, weight {}{}",
            c.name,
            c.kind,
            c.target,
            c.state,
            c.since_seconds_ago,
            c.result,
            c.weight,
            if c.demoting { ", DEMOTING" } else { "" }
        );
    }
    for c in &s.certificates {
        let _ = writeln!(
            out,
            "certificate {}: {}, expires {} ({}){}",
            c.name,
            c.subject,
            c.expires,
            if c.days_left < 0 {
                format!("EXPIRED {} days ago", -c.days_left)
            } else {
                format!("{} days left", c.days_left)
            },
            if c.chain > 0 {
                format!(", chain of {}", c.chain)
            } else {
                String::new()
            }
        );
    }
    for l in service_lines(s) {
        let _ = writeln!(out, "{l}");
    }
    for h in &s.hooks {
        let _ = writeln!(
            out,
            "hook {} ({}): {} ({:.1} s ago; {} runs, {} failed)",
            h.hook, h.event, h.result, h.seconds_ago, h.runs, h.failures
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(config_sync: serde_json::Value) -> Status {
        let j = serde_json::json!({
            "node": "fw2", "pid": 7, "demotion": 0, "demotions": [], "rejected": {},
            "vips": [{
                "vhid": 7, "interface": "lan", "device": "eth0", "addresses": ["192.0.2.100/24"],
                "state": "BACKUP", "advbase": 1, "advskew": 100, "configured_advskew": 100,
                "preempt": true, "last_master": "192.0.2.2",
                "last_transition": {"from": "INIT", "to": "BACKUP", "reason": "started", "seconds_ago": 3.0},
                "adverts_sent": 0, "adverts_received": 5, "adverts_rejected": {}, "send_errors": 0,
                "auth": "bsd"
            }],
            "firewall": crate::firewall_apply::FirewallStatus::default(),
            "sync": {"config": "peer, generation 3 from fw1", "state": "ready"},
            "config_sync": config_sync,
        });
        serde_json::from_value(j).expect("status")
    }

    #[test]
    fn text_status_names_config_sync_once_and_shows_the_last_master() {
        let detail = serde_json::json!({
            "role": "peer", "listen": "192.0.2.3:8443", "fingerprint": "ab", "certificate": "c",
            "state_dir": "/var/lib/tandem", "generation": 3, "areas": [], "peers": [],
            "source": "fw1", "applied_at": null, "primary_generation": 3,
            "primary_heard_seconds_ago": 1.0, "behind": false, "demoted": false, "drift": null,
            "rolled_back_to": null, "running": [], "last_apply": null, "applied": 1, "refused": 0,
            "rpc": {"calls": 0, "rejected": {}, "last_rejected": null}
        });
        let text = render(&status(detail));
        assert_eq!(text.matches("config sync:").count(), 1, "{text}");
        assert!(text.contains("state sync: ready"), "{text}");
        assert!(text.contains("last master seen: 192.0.2.2"), "{text}");
        let text = render(&status(serde_json::Value::Null));
        assert!(
            text.contains("config sync: peer, generation 3 from fw1"),
            "{text}"
        );
    }

    #[test]
    fn dhcp_ha_says_kea_state_or_why_it_is_unknown() {
        let mut h = crate::dhcp_apply::HaStatus {
            role: "standby".into(),
            state: "partner-down".into(),
            serving: vec!["fw1".into()],
            partner: "fw1".into(),
            partner_address: "203.0.113.1:8001".into(),
            partner_state: Some("unavailable".into()),
            communication_interrupted: true,
            error: None,
        };
        assert_eq!(
            dhcp_ha_line(&h),
            "dhcp HA: partner-down (standby, serving fw1); partner fw1 at 203.0.113.1:8001: unavailable (unreachable)"
        );
        h.state = "unknown".into();
        h.error = Some("Kea's control socket /run/kea/s: Connection refused".into());
        assert_eq!(
            dhcp_ha_line(&h),
            "dhcp HA: unknown (standby; Kea's control socket /run/kea/s: Connection refused)"
        );
    }
}
