//! GET /metrics: the node's [`Status`] as Prometheus metrics (OpenMetrics text, encoded by
//! the `prometheus-client` crate). Every scrape builds a fresh registry from one status
//! snapshot: counters are the daemon's own counters (they start at 0 when it starts), gauges
//! its current values. Names follow Prometheus' conventions: `tandem_` prefix, the unit in the
//! name (`_seconds`, `_bytes`), counters end in `_total` (the encoder adds it).

use crate::status::{ConfigSyncStatus, FirewallStatus, StateSyncStatus, Status, VipStatus};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

/// The content type of what [`render`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The CARP states every VIP has a one-hot series for (a state outside these gets its own).
const VIP_STATES: [&str; 3] = ["INIT", "BACKUP", "MASTER"];
/// A health check's states, one-hot.
const CHECK_STATES: [&str; 3] = ["pending", "up", "down"];
/// State sync's bulk phases, one-hot.
const BULK_PHASES: [&str; 5] = ["idle", "requesting", "receiving", "done", "failed"];

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// A label value as OpenMetrics text must hold it: the encoder writes values as they are, so
/// a backslash, a double quote or a line break (names come from config, reasons partly from
/// the wire) is escaped here.
pub fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One scrape's registry: families are registered when first used.
#[derive(Default)]
struct Out {
    reg: Registry,
    gauges: BTreeMap<&'static str, Family<Labels, FloatGauge>>,
    counters: BTreeMap<&'static str, Family<Labels, Counter<u64>>>,
}

fn labels(l: &[(&str, &str)]) -> Labels {
    l.iter()
        .map(|(k, v)| ((*k).to_string(), label_value(v)))
        .collect()
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

impl Out {
    /// A one-hot gauge over `known` states (label `state`, after `l`): 1 for `current`, 0 for
    /// the others; a current state outside `known` gets its own series.
    fn one_hot(
        &mut self,
        name: &'static str,
        help: &str,
        l: &[(&str, &str)],
        known: &[&str],
        current: &str,
    ) {
        let extra = (!known.contains(&current)).then_some(current);
        for st in known.iter().copied().chain(extra) {
            let mut with_state = l.to_vec();
            with_state.push(("state", st));
            self.gauge(name, help, &with_state, flag(st == current));
        }
    }

    fn gauge(&mut self, name: &'static str, help: &str, l: &[(&str, &str)], v: f64) {
        if l.is_empty() {
            // A single series: no family, no `{}`.
            let g = FloatGauge::default();
            g.set(v);
            self.reg.register(name, help, g);
            return;
        }
        let reg = &mut self.reg;
        let fam = self.gauges.entry(name).or_insert_with(|| {
            let f = Family::<Labels, FloatGauge>::default();
            reg.register(name, help, f.clone());
            f
        });
        fam.get_or_create(&labels(l)).set(v);
    }

    fn counter(&mut self, name: &'static str, help: &str, l: &[(&str, &str)], v: u64) {
        if l.is_empty() {
            let c = Counter::<u64>::default();
            c.inc_by(v);
            self.reg.register(name, help, c);
            return;
        }
        let reg = &mut self.reg;
        let fam = self.counters.entry(name).or_insert_with(|| {
            let f = Family::<Labels, Counter<u64>>::default();
            reg.register(name, help, f.clone());
            f
        });
        fam.get_or_create(&labels(l)).inc_by(v);
    }
}

/// Kea's HA states (its `status-get`), one-hot; a state outside these gets its own series.
const KEA_HA_STATES: [&str; 8] = [
    "hot-standby",
    "partner-down",
    "waiting",
    "syncing",
    "ready",
    "terminated",
    "in-maintenance",
    "unknown",
];

/// The services the dns, dhcp and wireguard areas drive: whether each runs the config, Kea's HA
/// state, the tunnels' peers.
fn services(o: &mut Out, s: &Status) {
    if let Some(d) = s.dns.as_ref().filter(|d| d.managed) {
        o.gauge(
            "tandem_dns_applied",
            "1 when unbound runs the config's dns area, 0 when the last reload failed",
            &[],
            flag(d.applied),
        );
        o.gauge(
            "tandem_dns_not_listening_addresses",
            "Addresses unbound was told to listen on and has no socket on (it binds them only when it starts)",
            &[],
            d.not_listening.len() as f64,
        );
    }
    if let Some(d) = &s.dhcp {
        o.gauge(
            "tandem_dhcp_applied",
            "1 when Kea has the config's dhcp area (loaded, unchanged, or written for its start), 0 when the last apply failed",
            &[],
            flag(d.last_apply != "failed"),
        );
        if let Some(ha) = &d.ha {
            o.one_hot(
                "tandem_dhcp_ha_state",
                "Kea's HA state on this node, one-hot: 1 for the state it is in (unknown: Kea does not answer)",
                &[("role", ha.role.as_str())],
                &KEA_HA_STATES,
                &ha.state,
            );
            o.gauge(
                "tandem_dhcp_ha_communication_interrupted",
                "1 when Kea's heartbeats to its partner fail",
                &[],
                flag(ha.communication_interrupted),
            );
        }
    }
    for t in &s.wireguard {
        let tunnel = [("tunnel", t.name.as_str())];
        o.gauge(
            "tandem_wireguard_applied",
            "1 when the tunnel's device runs the config's key, port and peers",
            &tunnel,
            flag(t.applied),
        );
        o.gauge(
            "tandem_wireguard_drift",
            "1 when the device runs something the config does not (changed by hand), or cannot be read",
            &tunnel,
            flag(t.drift.is_some()),
        );
        for p in &t.peers {
            let l = [("tunnel", t.name.as_str()), ("peer", p.public_key.as_str())];
            if let Some(h) = p.last_handshake_sec.filter(|h| *h > 0) {
                o.gauge(
                    "tandem_wireguard_peer_last_handshake_timestamp_seconds",
                    "When the peer's last handshake completed, in Unix time (none yet: no series)",
                    &l,
                    h as f64,
                );
            }
            o.counter(
                "tandem_wireguard_peer_received_bytes",
                "Bytes received from the peer through the tunnel, as the device counts them",
                &l,
                p.rx_bytes,
            );
            o.counter(
                "tandem_wireguard_peer_sent_bytes",
                "Bytes sent to the peer through the tunnel, as the device counts them",
                &l,
                p.tx_bytes,
            );
        }
    }
}

/// The whole status as OpenMetrics text.
pub fn render(s: &Status) -> String {
    let mut o = Out::default();
    node(&mut o, s);
    for v in &s.vips {
        vip(&mut o, v);
    }
    for (reason, n) in &s.rejected {
        o.counter(
            "tandem_carp_adverts_unmatched",
            "Adverts dropped before they could be matched to a VIP, by reason",
            &[("reason", reason)],
            *n,
        );
    }
    checks(&mut o, s);
    for c in &s.certificates {
        o.gauge(
            "tandem_certificate_expiry_timestamp_seconds",
            "When the certificate ([[certificates]]) expires (its notAfter), in Unix time",
            &[("certificate", c.name.as_str())],
            c.not_after as f64,
        );
    }
    services(&mut o, s);
    if let Some(ss) = &s.state_sync {
        state_sync(&mut o, ss);
    }
    if let Some(cs) = &s.config_sync {
        config_sync(&mut o, cs);
    }
    firewall(&mut o, &s.firewall);
    let mut text = String::new();
    if encode(&mut text, &o.reg).is_err() {
        // Writing into a String cannot fail; should it ever, say so rather than half a page.
        return "# EOF\n".into();
    }
    text
}

fn node(o: &mut Out, s: &Status) {
    o.gauge(
        "tandem_node_info",
        "This node: its name and the software version (always 1)",
        &[("node", &s.node), ("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    o.gauge(
        "tandem_carp_demotion",
        "Demotion added to every advertised skew: the sum of the active sources, capped at 240",
        &[],
        f64::from(s.demotion),
    );
    o.gauge(
        "tandem_maintenance",
        "1 while the node is in maintenance mode (a backup for every VIP until `tandem maintenance leave`)",
        &[],
        if s.maintenance { 1.0 } else { 0.0 },
    );
    for d in &s.demotions {
        o.gauge(
            "tandem_carp_demotion_source",
            "Demotion by source (link-down, send-errors, state-sync, config-sync, maintenance, switchover, checks)",
            &[("source", &d.source)],
            f64::from(d.value),
        );
    }
}

fn vip(o: &mut Out, v: &VipStatus) {
    let vhid = v.vhid.to_string();
    let id = [("vhid", vhid.as_str()), ("interface", v.interface.as_str())];
    o.one_hot(
        "tandem_carp_vip_state",
        "The VIP's CARP state, one-hot: 1 for the state it is in, 0 for the others",
        &id,
        &VIP_STATES,
        &v.state,
    );
    o.gauge(
        "tandem_carp_vip_advskew",
        "The skew the VIP advertises (configured skew plus demotion)",
        &id,
        f64::from(v.advskew),
    );
    o.gauge(
        "tandem_carp_vip_advbase_seconds",
        "The VIP's advertisement base interval",
        &id,
        f64::from(v.advbase),
    );
    o.gauge(
        "tandem_carp_vip_interval_seconds",
        "The interval between the VIP's adverts as a master (CARP: advbase plus skew; VRRP: its interval)",
        &id,
        f64::from(v.interval_ms) / 1000.0,
    );
    o.gauge(
        "tandem_carp_vip_protocol",
        "Always 1: the VIP's protocol (carp or vrrp)",
        &[id[0], id[1], ("protocol", v.protocol.as_str())],
        1.0,
    );
    if let Some(p) = v.priority {
        o.gauge(
            "tandem_carp_vip_vrrp_priority",
            "VRRP: the priority the VIP advertises (254 - advskew - demotion, at least 1)",
            &id,
            f64::from(p),
        );
    }
    o.counter(
        "tandem_carp_vip_transitions",
        "CARP state changes of the VIP since the daemon started",
        &id,
        v.transitions,
    );
    if let Some(t) = &v.last_transition {
        o.gauge(
            "tandem_carp_vip_last_transition_age_seconds",
            "Seconds since the VIP's last state change",
            &id,
            t.seconds_ago,
        );
    }
    o.counter(
        "tandem_carp_adverts_sent",
        "CARP advertisements sent",
        &id,
        v.adverts_sent,
    );
    o.counter(
        "tandem_carp_adverts_received",
        "CARP advertisements received and accepted from other nodes",
        &id,
        v.adverts_received,
    );
    for (reason, n) in &v.adverts_rejected {
        o.counter(
            "tandem_carp_adverts_rejected",
            "CARP advertisements for the VIP dropped, by reason",
            &[id[0], id[1], ("reason", reason)],
            *n,
        );
    }
    o.counter(
        "tandem_carp_send_errors",
        "CARP advertisements that could not be sent",
        &id,
        v.send_errors,
    );
}

/// Health checks (`[[checks]]`) and hooks (`[hooks]`).
fn checks(o: &mut Out, s: &Status) {
    for c in &s.checks {
        let id = [("check", c.name.as_str()), ("kind", c.kind.as_str())];
        for state in CHECK_STATES {
            o.gauge(
                "tandem_check_state",
                "One-hot: 1 for the health check's state (pending, up, down)",
                &[id[0], id[1], ("state", state)],
                flag(c.state == state),
            );
        }
        o.gauge(
            "tandem_check_demotion",
            "Demotion the health check adds now (its weight while down, else 0)",
            &id,
            if c.demoting { f64::from(c.weight) } else { 0.0 },
        );
        o.gauge(
            "tandem_check_state_age_seconds",
            "Time since the health check's state last changed",
            &id,
            c.since_seconds_ago,
        );
    }
    for h in &s.hooks {
        let id = [("hook", h.hook.as_str())];
        o.counter("tandem_hook_runs", "Runs of the hook", &id, h.runs);
        o.counter(
            "tandem_hook_failures",
            "Runs of the hook that exited non-zero or timed out",
            &id,
            h.failures,
        );
        o.gauge(
            "tandem_hook_last_ok",
            "1 when the hook's last run exited 0",
            &id,
            flag(h.ok),
        );
    }
}

fn state_sync(o: &mut Out, ss: &StateSyncStatus) {
    o.counter(
        "tandem_statesync_installed",
        "Connections written into the kernel's conntrack table from peers",
        &[],
        ss.installed,
    );
    o.counter(
        "tandem_statesync_removed",
        "Connections removed from the kernel's table on a peer's word",
        &[],
        ss.removed,
    );
    o.counter(
        "tandem_statesync_install_errors",
        "Kernel writes of synced connections that failed",
        &[],
        ss.install_errors,
    );
    o.counter(
        "tandem_statesync_overruns",
        "Times the conntrack event socket overran (the table is dumped again)",
        &[],
        ss.overruns,
    );
    o.gauge(
        "tandem_statesync_ready",
        "1 when this node holds the complete state table (bulk sync done)",
        &[],
        flag(ss.engine.as_ref().is_some_and(|e| e.ready)),
    );
    let Some(e) = &ss.engine else {
        return;
    };
    o.gauge(
        "tandem_statesync_states",
        "Connections in the replicated state table",
        &[],
        e.states as f64,
    );
    o.gauge(
        "tandem_statesync_pending_records",
        "Changes waiting to be sent",
        &[],
        e.pending as f64,
    );
    o.gauge(
        "tandem_statesync_queue_depth_records",
        "Records still to send: pending changes plus what bulk transfers have left",
        &[],
        e.queue_depth as f64,
    );
    let c = &e.counters;
    for (kind, n) in [
        ("state", c.states_sent),
        ("delete", c.deletes_sent),
        ("clear", c.clears_sent),
        ("bulk", c.bulk_states_sent),
    ] {
        o.counter(
            "tandem_statesync_records_sent",
            "State records sent, by kind",
            &[("kind", kind)],
            n,
        );
    }
    for (kind, n) in [
        ("state", c.states_received),
        ("delete", c.deletes_received),
        ("clear", c.clears_received),
        ("bulk", c.bulk_states_received),
        ("unchanged", c.unchanged_received),
    ] {
        o.counter(
            "tandem_statesync_records_received",
            "State records received and applied, by kind",
            &[("kind", kind)],
            n,
        );
    }
    for (name, help, n) in [
        (
            "tandem_statesync_datagrams_sent",
            "Sealed datagrams sent",
            c.datagrams_sent,
        ),
        (
            "tandem_statesync_datagrams_received",
            "Sealed datagrams received",
            c.datagrams_received,
        ),
        (
            "tandem_statesync_sent_bytes",
            "Bytes of datagrams sent",
            c.bytes_sent,
        ),
        (
            "tandem_statesync_received_bytes",
            "Bytes of datagrams received",
            c.bytes_received,
        ),
        (
            "tandem_statesync_retransmits",
            "Datagrams sent again to repair a peer's gap",
            c.retransmits,
        ),
        (
            "tandem_statesync_gaps_unrepaired",
            "Gaps that history could not repair (a bulk sync follows)",
            c.gaps_unrepaired,
        ),
        (
            "tandem_statesync_bulk_completed",
            "Bulk syncs received in full",
            c.bulk_completed,
        ),
        (
            "tandem_statesync_bulk_failed",
            "Bulk sync attempts that ended without a complete table",
            c.bulk_failed,
        ),
        (
            "tandem_statesync_bulk_served",
            "Bulk sync requests served to peers",
            c.bulk_requests_served,
        ),
    ] {
        o.counter(name, help, &[], n);
    }
    for (reason, n) in &c.rejected {
        o.counter(
            "tandem_statesync_rejected",
            "Datagrams dropped, by reason (wrong_key, bad_seal, replay, ...)",
            &[("reason", reason.as_str())],
            *n,
        );
    }
    let phase = serde_json::to_value(e.bulk.phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    for p in BULK_PHASES {
        o.gauge(
            "tandem_statesync_bulk_phase",
            "The bulk sync's phase, one-hot",
            &[("phase", p)],
            flag(p == phase),
        );
    }
    for p in &e.peers {
        let node = p.node.to_string();
        let addr = p.addr.to_string();
        let id = [("peer", node.as_str()), ("address", addr.as_str())];
        o.gauge(
            "tandem_statesync_peer_up",
            "1 while the peer is heard (heartbeats)",
            &id,
            flag(p.alive && !p.down),
        );
        o.gauge(
            "tandem_statesync_peer_ready",
            "1 when the peer says it holds the complete table",
            &id,
            flag(p.ready),
        );
        o.gauge(
            "tandem_statesync_peer_lag_datagrams",
            "Datagrams the peer sent that are not applied here yet",
            &id,
            p.lag as f64,
        );
        o.gauge(
            "tandem_statesync_peer_silence_seconds",
            "Seconds since the peer was last heard",
            &id,
            p.silent_ms as f64 / 1000.0,
        );
        o.gauge(
            "tandem_statesync_peer_states",
            "Connections in the peer's table, as its heartbeat says",
            &id,
            f64::from(p.states),
        );
        o.counter(
            "tandem_statesync_peer_restarts",
            "Restarts of the peer seen (new epochs)",
            &id,
            p.restarts,
        );
    }
}

fn config_sync(o: &mut Out, cs: &ConfigSyncStatus) {
    o.gauge(
        "tandem_configsync_role",
        "This node's config sync role (primary or peer; always 1)",
        &[("role", &cs.role)],
        1.0,
    );
    o.gauge(
        "tandem_configsync_generation",
        "Primary: the current generation. Peer: the generation it runs",
        &[],
        cs.generation as f64,
    );
    if let Some(g) = cs.primary_generation {
        o.gauge(
            "tandem_configsync_primary_generation",
            "Peer: the primary's generation as last heard",
            &[],
            g as f64,
        );
    }
    if let Some(a) = cs.primary_heard_seconds_ago {
        o.gauge(
            "tandem_configsync_primary_heard_age_seconds",
            "Peer: seconds since the primary was last heard",
            &[],
            a,
        );
    }
    o.gauge(
        "tandem_configsync_behind",
        "Peer: 1 while behind the primary's generation",
        &[],
        flag(cs.behind),
    );
    o.gauge(
        "tandem_configsync_demoted",
        "Peer: 1 while demoted for being behind",
        &[],
        flag(cs.demoted),
    );
    o.gauge(
        "tandem_configsync_drift",
        "1 when a synced area runs a local edit (drift)",
        &[],
        flag(cs.drift.is_some()),
    );
    for a in &cs.running {
        o.gauge(
            "tandem_configsync_area_drift",
            "Peer: 1 for each synced area that runs a local edit",
            &[("area", a.area.as_str())],
            flag(a.drift.is_some()),
        );
    }
    o.counter(
        "tandem_configsync_applied",
        "Peer: pushes applied",
        &[],
        cs.applied,
    );
    o.counter(
        "tandem_configsync_refused",
        "Peer: pushes refused (invalid, drift, stale)",
        &[],
        cs.refused,
    );
    o.counter(
        "tandem_configsync_applied_delta",
        "Peer: pushes applied that sent unchanged areas by hash only",
        &[],
        cs.applied_delta,
    );
    o.counter(
        "tandem_configsync_refused_need_full",
        "Peer: delta pushes refused because an area's hash was not the one held (the primary then pushes whole)",
        &[],
        cs.refused_need_full,
    );
    o.counter(
        "tandem_configsync_rpc_calls",
        "XML-RPC calls this node's server answered",
        &[],
        cs.rpc.calls,
    );
    for (reason, n) in &cs.rpc.rejected {
        o.counter(
            "tandem_configsync_rpc_rejected",
            "XML-RPC calls refused, by reason (auth, bad-request, tls, ...)",
            &[("reason", reason)],
            *n,
        );
    }
    for p in &cs.peers {
        let id = [("peer", p.name.as_str())];
        o.gauge(
            "tandem_configsync_peer_in_sync",
            "Primary: 1 when the peer runs the current generation without drift",
            &id,
            flag(p.in_sync),
        );
        if let Some(g) = p.acked_generation {
            o.gauge(
                "tandem_configsync_peer_acked_generation",
                "Primary: the generation the peer acknowledged",
                &id,
                g as f64,
            );
        }
        for (kind, n) in [
            ("full", p.pushes_full),
            ("delta", p.pushes_delta),
            ("delta-refused", p.delta_refused),
        ] {
            o.counter(
                "tandem_configsync_peer_pushes",
                "Primary: pushes to the peer, by kind (full, delta, delta-refused)",
                &[("peer", p.name.as_str()), ("kind", kind)],
                n,
            );
        }
        o.gauge(
            "tandem_configsync_peer_lag_generations",
            "Primary: generations the peer is behind",
            &id,
            p.lag_generations as f64,
        );
        o.gauge(
            "tandem_configsync_peer_lag_seconds",
            "Primary: seconds since the peer fell behind (0 when it is not)",
            &id,
            p.lag_seconds.unwrap_or(0.0),
        );
        if let Some(a) = p.last_contact_seconds_ago {
            o.gauge(
                "tandem_configsync_peer_last_contact_age_seconds",
                "Primary: seconds since the last successful call to the peer",
                &id,
                a,
            );
        }
        let result = last_result(p.last_result.as_deref(), p.last_error_kind.as_deref());
        o.gauge(
            "tandem_configsync_peer_last_result",
            "Primary: the last call's result (ok, unreachable, auth, version, rejected, drift, stale, error), one series at 1",
            &[("peer", &p.name), ("result", result)],
            1.0,
        );
        o.gauge(
            "tandem_configsync_peer_failures",
            "Primary: calls to the peer that failed in a row",
            &id,
            f64::from(p.failures),
        );
    }
}

/// The last call's result in one word: `none` before any, `ok`, or the failure kind.
fn last_result<'a>(result: Option<&str>, kind: Option<&'a str>) -> &'a str {
    match (result, kind) {
        (None, _) => "none",
        (Some(_), Some(k)) => k,
        (Some(_), None) => "ok",
    }
}

fn firewall(o: &mut Out, f: &FirewallStatus) {
    o.gauge(
        "tandem_firewall_managed",
        "1 when this node applies the nftables ruleset",
        &[],
        flag(f.managed),
    );
    o.gauge(
        "tandem_firewall_applied",
        "1 when tandem's nftables table is in place",
        &[],
        flag(f.applied),
    );
    o.gauge(
        "tandem_firewall_error",
        "1 when the last apply failed (the previous ruleset runs)",
        &[],
        flag(f.last_error.is_some()),
    );
    if let Some(l) = &f.last_apply {
        o.gauge(
            "tandem_firewall_last_apply_seconds",
            "How long nft took to apply the running ruleset, by mode (updated: only what changed; replaced: the whole table)",
            &[("mode", l.mode.as_str())],
            l.seconds,
        );
    }
    for (area, n) in [
        ("rules", f.rules),
        ("nat", f.nat),
        ("aliases", f.aliases),
        ("routes", f.routes),
    ] {
        o.gauge(
            "tandem_firewall_items",
            "Items in the running config, by area",
            &[("area", area)],
            n as f64,
        );
    }
}
