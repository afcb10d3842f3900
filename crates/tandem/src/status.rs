//! The node's whole status, as `tandem status` prints it, `--json` gives it and the XML-RPC
//! method `tandem.status` answers it: one struct, built by the daemon from what each subsystem
//! reports.

use crate::carp_thread::{Demotion, VipStatus};
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
    pub checks: Vec<crate::checks::CheckStatus>,
    /// The last run of each hook (`[hooks]`) that ran.
    #[serde(default)]
    pub hooks: Vec<crate::hooks::HookStatus>,
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

/// The human-readable status table.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} (pid {})  demotion {}",
        s.node, s.pid, s.demotion
    );
    for d in &s.demotions {
        let _ = writeln!(out, "  demoted by {} (+{})", d.source, d.value);
    }
    let _ = writeln!(
        out,
        "{:<5} {:<10} {:<10} {:<7} {:<6} {:>7} {:>7} {:>6} {:>6}  {:<24} REJECTED",
        "VHID",
        "INTERFACE",
        "DEVICE",
        "STATE",
        "AUTH",
        "ADVBASE",
        "ADVSKEW",
        "SENT",
        "RECV",
        "ADDRESSES"
    );
    for v in &s.vips {
        let _ = writeln!(
            out,
            "{:<5} {:<10} {:<10} {:<7} {:<6} {:>7} {:>7} {:>6} {:>6}  {:<24} {}",
            v.vhid,
            v.interface,
            v.device,
            v.state,
            v.auth,
            v.advbase,
            v.advskew,
            v.adverts_sent,
            v.adverts_received,
            v.addresses.join(","),
            counts(&v.adverts_rejected)
        );
    }
    for v in &s.vips {
        if let Some(t) = &v.last_transition {
            let _ = writeln!(
                out,
                "vhid {} {}: {} -> {} ({}, {:.1} s ago)",
                v.vhid, v.interface, t.from, t.to, t.reason, t.seconds_ago
            );
        }
    }
    if !s.rejected.is_empty() {
        let _ = writeln!(
            out,
            "rejected before matching a VIP: {}",
            counts(&s.rejected)
        );
    }
    let _ = writeln!(
        out,
        "config sync: {}  state sync: {}",
        s.sync.config, s.sync.state
    );
    if let Some(cs) = &s.config_sync {
        out.push_str(&crate::config_sync::render(cs));
    }
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
    for h in &s.hooks {
        let _ = writeln!(
            out,
            "hook {} ({}): {} ({:.1} s ago; {} runs, {} failed)",
            h.hook, h.event, h.result, h.seconds_ago, h.runs, h.failures
        );
    }
    out
}
