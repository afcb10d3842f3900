//! The page and the metrics, rendered from a status made up here (with hostile strings where
//! strings come from the wire or a config), and the routes.

use super::*;
use crate::status::StateSyncStatus;
use serde_json::json;

const HOSTILE: &str = "<script>alert(\"x\")</script>&'\n";

/// A primary with two VIPs, a config sync peer and a state sync peer.
fn sample() -> Status {
    let mut s: Status = serde_json::from_value(json!({
        "node": "fw1",
        "pid": 42,
        "demotion": 240,
        "demotions": [{"source": "state-sync", "value": 240}],
        "vips": [
            {"vhid": 7, "interface": "lan", "device": "eth0", "addresses": ["192.0.2.1/24"],
             "state": "MASTER", "advbase": 1, "advskew": 240, "configured_advskew": 0,
             "preempt": true, "last_master": "192.0.2.3",
             "last_transition": {"from": "BACKUP", "to": "MASTER", "reason": HOSTILE,
                                 "seconds_ago": 75.5},
             "transitions": 3, "adverts_sent": 120, "adverts_received": 4,
             "adverts_rejected": {"bad\"hmac": 2}, "send_errors": 0, "auth": "bsd"},
            {"vhid": 8, "interface": "wan", "device": "eth1", "addresses": ["198.51.100.1/24"],
             "state": "BACKUP", "advbase": 1, "advskew": 0, "configured_advskew": 0,
             "preempt": true, "last_master": null, "last_transition": null,
             "adverts_sent": 0, "adverts_received": 9, "adverts_rejected": {},
             "send_errors": 0}
        ],
        "rejected": {"unknown_vhid": 5},
        "firewall": {"managed": true, "rules": 3, "nat": 1, "aliases": 1, "routes": 0,
                     "applied": true, "last_error": null,
                     "forwarding": {"net.ipv4.ip_forward": "1"}},
        "sync": {"config": "primary, generation 4", "state": "ready"},
        "config_sync": {
            "role": "primary", "listen": "203.0.113.1:8443", "fingerprint": "sha256:ab",
            "certificate": "/var/lib/tandem/cert.pem", "state_dir": "/var/lib/tandem",
            "generation": 4, "areas": ["rules", "vips"],
            "peers": [{"name": "fw2", "url": "https://sync:pw@203.0.113.2:8443",
                       "in_sync": false, "acked_generation": 3, "lag_generations": 1,
                       "lag_seconds": 12.0, "last_push_seconds_ago": 1.0,
                       "last_contact_seconds_ago": 1.0,
                       "last_result": format!("rejected: {HOSTILE}"),
                       "last_error_kind": "rejected", "failures": 2, "drift": null,
                       "peer_software": "0.1.0", "peer_protocol": 1, "peer_schema": 1,
                       "version_note": null}],
            "source": null, "applied_at": null, "primary_generation": null,
            "primary_heard_seconds_ago": null, "behind": false, "demoted": false,
            "drift": null, "rolled_back_to": null,
            "running": [{"area": "rules", "origin": "synced", "generation": 4,
                         "source": "fw1", "items": 3, "hash": "abc",
                         "drift": {"area": "rules", "before": 2, "after": 3,
                                   "added": 1, "removed": 0}}],
            "last_apply": null, "applied": 0, "refused": 0,
            "rpc": {"calls": 10, "rejected": {"auth": 1}, "last_rejected": null}
        },
        "state_sync": null,
        "checks": [
            {"name": "gateway", "kind": "ping", "target": "198.51.100.254",
             "state": "down", "result": format!("0/5 replies {HOSTILE}"),
             "since_seconds_ago": 4.0, "weight": 240, "demoting": true, "rise": 2, "fall": 3},
            {"name": "dns", "kind": "exec", "target": "/etc/tandem/dns-ok",
             "state": "up", "result": "exit 0", "since_seconds_ago": 60.0, "weight": 50,
             "demoting": false, "rise": 2, "fall": 3}
        ],
        "hooks": [
            {"hook": "on_master", "program": "/etc/tandem/master.sh",
             "event": "vhid=7 iface=lan BACKUP -> MASTER", "seconds_ago": 75.0,
             "at_unix": 1800000000, "result": "exit 2: no route", "ok": false,
             "runs": 3, "failures": 1}
        ]
    }))
    .expect("a valid status");
    s.state_sync = Some(StateSyncStatus {
        enabled: true,
        listen: "203.0.113.1:7777".into(),
        peers: vec!["203.0.113.2".into()],
        key_id: "1a2b3c4d".into(),
        engine: Some(statesync::Status {
            node: statesync::NodeId(1),
            epoch: 9,
            ready: true,
            bulk: statesync::BulkStatus {
                phase: statesync::BulkPhase::Done,
                attempt: 1,
                from: Some(statesync::NodeId(2)),
                received: 17,
                count: Some(17),
                retry_in_ms: None,
            },
            serving: None,
            serve_queue: 0,
            states: 17,
            pending: 0,
            queue_depth: 0,
            last_stream: 5,
            history: 5,
            counters: statesync::Counters {
                states_sent: 6,
                rejected: [(statesync::RejectReason::WrongKey, 2)].into(),
                ..Default::default()
            },
            peers: vec![],
        }),
        installed: 11,
        removed: 1,
        install_errors: 0,
        overruns: 0,
        last_alarm: None,
        last_error: None,
    });
    s
}

#[test]
fn html_escaping_covers_markup_quotes_and_controls() {
    assert_eq!(
        page::esc("<a href=\"x\">&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
    );
    assert_eq!(page::esc("a\u{1b}[31mb"), "a\u{fffd}[31mb");
}

#[test]
fn the_page_shows_the_node_its_vips_peers_and_sync_and_escapes_every_string() {
    let mut s = sample();
    s.node = HOSTILE.into();
    let html = page::render(&s);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("alert(\""), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&quot;x&quot;)"),
        "{html}"
    );
    let html = page::render(&sample());
    for needle in [
        "<h1 id=\"node\">fw1</h1>",
        "data-vhid=\"7\"",
        ">MASTER<",
        ">BACKUP<",
        "192.0.2.1/24",
        "198.51.100.1/24",
        "state-sync",
        "240 (0 + demotion)",
        "1 min 15 s ago",
        "192.0.2.3",
        "fw2",
        "https://203.0.113.2:8443",
        "rules: 2 -&gt; 3 items (+1 -0)",
        "wrong_key=2",
        "key id <code>1a2b3c4d</code>",
        "applied",
        "net.ipv4.ip_forward",
        "http-equiv=\"refresh\"",
    ] {
        assert!(html.contains(needle), "no {needle:?} in\n{html}");
    }
    // A user:password@ in a peer's URL is never shown; nothing that runs is on the page.
    assert!(!html.contains("sync:pw"), "{html}");
    assert!(!html.contains("<script") && !html.contains("javascript:"));
}

#[test]
fn metrics_carry_vip_state_counters_and_sync_with_escaped_labels() {
    let text = export::render(&sample());
    for line in [
        "tandem_node_info{node=\"fw1\",version=\"",
        "tandem_carp_vip_state{vhid=\"7\",interface=\"lan\",state=\"MASTER\"} 1",
        "tandem_carp_vip_state{vhid=\"7\",interface=\"lan\",state=\"BACKUP\"} 0",
        "tandem_carp_vip_state{vhid=\"8\",interface=\"wan\",state=\"BACKUP\"} 1",
        "tandem_carp_vip_transitions_total{vhid=\"7\",interface=\"lan\"} 3",
        "tandem_carp_vip_transitions_total{vhid=\"8\",interface=\"wan\"} 0",
        "tandem_carp_adverts_sent_total{vhid=\"7\",interface=\"lan\"} 120",
        "tandem_carp_adverts_rejected_total{vhid=\"7\",interface=\"lan\",reason=\"bad\\\"hmac\"} 2",
        "tandem_carp_adverts_unmatched_total{reason=\"unknown_vhid\"} 5",
        "tandem_carp_demotion 240",
        "tandem_carp_demotion_source{source=\"state-sync\"} 240",
        "tandem_statesync_states 17",
        "tandem_statesync_ready 1",
        "tandem_statesync_records_sent_total{kind=\"state\"} 6",
        "tandem_statesync_rejected_total{reason=\"wrong_key\"} 2",
        "tandem_statesync_bulk_phase{phase=\"done\"} 1",
        "tandem_statesync_installed_total 11",
        "tandem_configsync_generation 4",
        "tandem_configsync_peer_lag_generations{peer=\"fw2\"} 1",
        "tandem_configsync_peer_last_result{peer=\"fw2\",result=\"rejected\"} 1",
        "tandem_configsync_area_drift{area=\"rules\"} 1",
        "tandem_configsync_rpc_rejected_total{reason=\"auth\"} 1",
        "tandem_firewall_applied 1",
        "tandem_firewall_items{area=\"rules\"} 3",
        "# TYPE tandem_carp_adverts_sent counter",
        "# TYPE tandem_carp_vip_state gauge",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    // Every sample line is NAME{LABELS} VALUE: no label value broke out of its quotes.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "bad line {l:?}");
    }
}

#[test]
fn label_values_are_escaped_for_openmetrics() {
    assert_eq!(export::label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

#[test]
fn only_two_paths_are_served() {
    assert_eq!(route("/metrics"), Some(Route::Metrics));
    assert_eq!(route("/"), Some(Route::Page));
    assert_eq!(route("/metrics/"), None);
    assert_eq!(route("/../etc/passwd"), None);
}

#[test]
fn ages_read_as_people_say_them() {
    assert_eq!(page::age(4.25), "4.2 s");
    assert_eq!(page::age(185.0), "3 min 5 s");
    assert_eq!(page::age(7_500.0), "2 h 5 min");
    assert_eq!(page::age(300_000.0), "3 d 11 h");
    assert_eq!(page::age(f64::NAN), "-");
}

#[test]
fn checks_and_hooks_are_on_the_page_and_in_the_metrics() {
    let html = page::render(&sample());
    for needle in [
        "id=\"checks\"",
        "gateway",
        "198.51.100.254",
        ">down<",
        "+240",
        "0 (weight 50)",
        "on_master",
        "exit 2: no route",
    ] {
        assert!(html.contains(needle), "{needle} missing:\n{html}");
    }
    assert!(!html.contains("<script"), "{html}");
    let text = export::render(&sample());
    for line in [
        "tandem_check_state{check=\"gateway\",kind=\"ping\",state=\"down\"} 1.0",
        "tandem_check_state{check=\"gateway\",kind=\"ping\",state=\"up\"} 0.0",
        "tandem_check_demotion{check=\"gateway\",kind=\"ping\"} 240.0",
        "tandem_check_demotion{check=\"dns\",kind=\"exec\"} 0.0",
        "tandem_hook_runs_total{hook=\"on_master\"} 3",
        "tandem_hook_failures_total{hook=\"on_master\"} 1",
        "tandem_hook_last_ok{hook=\"on_master\"} 0.0",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}

#[test]
fn certificates_are_on_the_page_and_in_the_metrics() {
    let mut s = sample();
    s.certificates = serde_json::from_value(json!([
        {"name": "web", "subject": format!("CN={HOSTILE}"), "not_before": 1_700_000_000,
         "not_after": 1_900_000_000, "expires": "2030-03-17T17:46:40Z", "days_left": 12,
         "sha256": "ab", "chain": 0, "cert_file": "/var/lib/tandem/certificates/web.crt",
         "key_file": "/var/lib/tandem/certificates/web.key"}
    ]))
    .expect("certificates");
    let html = page::render(&s);
    for needle in [
        "id=\"certificates\"",
        ">web<",
        "2030-03-17T17:46:40Z",
        ">12<",
    ] {
        assert!(html.contains(needle), "{needle} missing:\n{html}");
    }
    assert!(!html.contains("<script"), "{html}");
    let text = export::render(&s);
    let line = "tandem_certificate_expiry_timestamp_seconds{certificate=\"web\"} 1900000000.0";
    assert!(text.contains(line), "{line} missing:\n{text}");
}

/// A status with unbound, Kea in HA (partner down, last apply failed) and a tunnel.
fn with_services() -> Status {
    let mut s = sample();
    s.dns = Some(
        serde_json::from_value(json!({
            "managed": true, "applied": true, "include": "/etc/unbound/tandem.conf",
            "hosts": 1, "domains": 0, "forwarders": 1, "listen": ["192.0.2.1", "192.0.2.2"],
            "not_listening": ["192.0.2.1"], "reloads": 3, "last_error": null
        }))
        .expect("dns"),
    );
    s.dhcp = Some(
        serde_json::from_value(json!({
            "config_file": "/etc/kea/kea-dhcp4.conf", "control_socket": "/run/kea/s",
            "subnets": 1, "reservations": 0, "last_apply": "failed", "error": "refused",
            "ha": {"role": "standby", "state": "partner-down", "serving": ["fw1", "fw2"],
                   "partner": "fw1", "partner_address": "203.0.113.1:8001",
                   "partner_state": "unavailable", "communication_interrupted": true,
                   "error": null}
        }))
        .expect("dhcp"),
    );
    s.wireguard = serde_json::from_value(json!([{
        "name": "wg0", "device": "wg0", "listen_port": 51820, "public_key": "pub",
        "addresses": ["203.0.113.201/30"], "applied": true, "drift": "1 peer added by hand",
        "last_error": null,
        "peers": [
            {"public_key": "3AWbghDAVBzPrzFvb9zsu5BcKrC/zp99cRJGczciMzU=", "endpoint": null,
             "allowed_ips": ["203.0.113.202/32"], "last_handshake_sec": 1_900_000_000_u64,
             "rx_bytes": 1200, "tx_bytes": 3400},
            {"public_key": "new", "endpoint": null, "allowed_ips": [],
             "last_handshake_sec": null, "rx_bytes": 0, "tx_bytes": 0}
        ]
    }]))
    .expect("wireguard");
    s
}

#[test]
fn the_services_of_the_dns_dhcp_and_wireguard_areas_are_on_the_page() {
    let mut s = with_services();
    if let Some(d) = s.dhcp.as_mut() {
        d.error = Some(HOSTILE.to_string());
    }
    let html = page::render(&s);
    for needle in [
        "<section id=\"services\"><h2>Services</h2>",
        "<li class=\"service warn\">dns: 1 host override, 0 domain overrides, 1 forwarder; applied to unbound (3 reloads); NOT listening on 192.0.2.1",
        "<li class=\"service warn\">dhcp: 1 subnet, 0 reservations (Kea config /etc/kea/kea-dhcp4.conf): failed (",
        "<li class=\"service warn\">dhcp HA: partner-down (standby, serving fw1, fw2); partner fw1 at 203.0.113.1:8001: unavailable (unreachable)</li>",
        "<li class=\"service\">wireguard wg0 (wg0): port 51820",
    ] {
        assert!(html.contains(needle), "{needle} missing:\n{html}");
    }
    assert!(!html.contains("<script"), "{html}");
    assert!(!page::render(&sample()).contains("id=\"services\""));
}

#[test]
fn the_services_of_the_dns_dhcp_and_wireguard_areas_are_in_the_metrics() {
    let s = with_services();
    let text = export::render(&s);
    let peer = "tunnel=\"wg0\",peer=\"3AWbghDAVBzPrzFvb9zsu5BcKrC/zp99cRJGczciMzU=\"";
    for line in [
        "tandem_dns_applied 1.0".to_string(),
        "tandem_dns_not_listening_addresses 1.0".into(),
        "tandem_dhcp_applied 0.0".into(),
        "tandem_dhcp_ha_state{role=\"standby\",state=\"partner-down\"} 1.0".into(),
        "tandem_dhcp_ha_state{role=\"standby\",state=\"hot-standby\"} 0.0".into(),
        "tandem_dhcp_ha_communication_interrupted 1.0".into(),
        "tandem_wireguard_applied{tunnel=\"wg0\"} 1.0".into(),
        "tandem_wireguard_drift{tunnel=\"wg0\"} 1.0".into(),
        format!("tandem_wireguard_peer_last_handshake_timestamp_seconds{{{peer}}} 1900000000.0"),
        format!("tandem_wireguard_peer_received_bytes_total{{{peer}}} 1200"),
        format!("tandem_wireguard_peer_sent_bytes_total{{{peer}}} 3400"),
        "tandem_wireguard_peer_sent_bytes_total{tunnel=\"wg0\",peer=\"new\"} 0".into(),
    ] {
        assert!(text.contains(&line), "{line} missing:\n{text}");
    }
    assert!(
        !text.contains("last_handshake_timestamp_seconds{tunnel=\"wg0\",peer=\"new\"}"),
        "{text}"
    );
    // Without the areas, none of their series.
    let bare = export::render(&sample());
    assert!(
        !bare.contains("tandem_dns")
            && !bare.contains("tandem_dhcp")
            && !bare.contains("tandem_wireguard"),
        "{bare}"
    );
}
