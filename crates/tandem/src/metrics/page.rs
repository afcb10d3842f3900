//! GET /: the status page. One read-only HTML page rendered here from the node's [`Status`]
//! (inline CSS, no script; a meta refresh reloads it): this node and its demotion, its peers,
//! every VIP with its state and last transition, certificates, the services of the dns, dhcp
//! and wireguard areas, state sync, config sync with drift per area, the firewall. Every string is HTML-escaped: names come from config files, reasons and
//! results partly from the wire. [`Status`] holds no secret (no passphrase, key, password or
//! token: the state sync key shows only by its public id).

use crate::status::{ConfigSyncStatus, FirewallStatus, StateSyncStatus, Status, VipStatus};
use std::fmt::Write as _;

/// Seconds between the page's reloads.
pub const REFRESH_SECONDS: u32 = 5;

/// Text made safe for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A duration for people: `4.2 s`, `3 min 5 s`, `2 h 7 min`, `3 d 4 h`.
pub fn age(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let s = secs as u64;
    match s {
        0..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A URL without any user:password@ part (a config should hold none; never show one).
fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// A badge: `ok`, `warn`, `bad` or `info` colours.
fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"b {class}\">{}</span>", esc(text))
}

fn yes_no(b: bool, good_when: bool) -> String {
    let class = if b == good_when { "ok" } else { "bad" };
    badge(class, if b { "yes" } else { "no" })
}

fn state_badge(state: &str) -> String {
    let class = match state {
        "MASTER" => "ok",
        "BACKUP" => "info",
        _ => "warn",
    };
    badge(class, state)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| esc(&v.to_string()))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2430}\
header{background:#1d2b3a;color:#fff;padding:12px 20px}header h1{margin:0;font-size:20px}\
header .sub{opacity:.8;font-size:13px}main{padding:12px 20px}\
section{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:0 0 14px;padding:10px 14px}\
h2{font-size:16px;margin:2px 0 8px}h3{font-size:14px;margin:10px 0 4px}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef2;vertical-align:top}\
th{background:#f0f2f5;font-weight:600;font-size:12px;text-transform:uppercase;color:#4a5568}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.b{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600}\
.ok{background:#d5f5df;color:#13652f}.bad{background:#fbd9d9;color:#8a1414}.warn{background:#fdefc8;color:#7a5200}\
.info{background:#dde8fb;color:#1b4191}.muted{color:#6b7280}dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:0}\
dt{color:#4a5568}dd{margin:0}code{font-size:12px}footer{padding:0 20px 14px;color:#6b7280;font-size:12px}";

/// The whole page.
pub fn render(s: &Status) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let masters = s.vips.iter().filter(|v| v.state == "MASTER").count();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>tandem {node}: status</title><style>{STYLE}</style></head><body>\
<header><h1 id=\"node\">{node}</h1><div class=\"sub\">tandem {ver} &middot; pid {pid} &middot; \
master of <span id=\"masters\">{masters}</span> of {total} VIPs &middot; demotion {demotion}</div></header><main>",
        node = esc(&s.node),
        ver = env!("CARGO_PKG_VERSION"),
        pid = s.pid,
        total = s.vips.len(),
        demotion = s.demotion,
    );
    this_node(&mut h, s);
    vips(&mut h, &s.vips);
    peers(&mut h, s);
    checks(&mut h, s);
    certificates(&mut h, s);
    services(&mut h, s);
    state_sync(&mut h, &s.sync.state, s.state_sync.as_ref());
    config_sync(&mut h, &s.sync.config, s.config_sync.as_ref());
    firewall(&mut h, &s.firewall);
    let _ = writeln!(
        h,
        "</main><footer>Read-only. Reloads every {REFRESH_SECONDS} s. \
Prometheus metrics: <a href=\"/metrics\">/metrics</a>.</footer></body></html>"
    );
    h
}

fn this_node(h: &mut String, s: &Status) {
    let _ = write!(
        h,
        "<section id=\"this-node\"><h2>This node</h2><dl><dt>Name</dt><dd>{}</dd>\
<dt>Maintenance</dt><dd id=\"maintenance\">{}</dd>\
<dt>Demotion</dt><dd id=\"demotion\">{}</dd><dt>Demoted by</dt><dd>",
        esc(&s.node),
        if s.maintenance {
            badge("warn", "maintenance mode")
        } else {
            badge("ok", "in service")
        },
        if s.demotion == 0 {
            badge("ok", "0")
        } else {
            badge("warn", &s.demotion.to_string())
        }
    );
    if s.demotions.is_empty() {
        h.push_str("<span class=\"muted\">nothing</span>");
    }
    for d in &s.demotions {
        let _ = write!(
            h,
            "<span class=\"demotion-source\">{}</span> (+{}) ",
            badge("warn", &d.source),
            d.value
        );
    }
    h.push_str("</dd>");
    if !s.rejected.is_empty() {
        let r: Vec<String> = s.rejected.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(
            h,
            "<dt>Adverts matching no VIP</dt><dd>{}</dd>",
            esc(&r.join(", "))
        );
    }
    h.push_str("</dl></section>");
}

fn vips(h: &mut String, vips: &[VipStatus]) {
    h.push_str(
        "<section id=\"vips\"><h2>Virtual IPs</h2><table><thead><tr><th>VHID</th>\
<th>Interface</th><th>Addresses</th><th>State</th><th>Protocol</th><th>Interval</th><th>Advskew / priority</th>\
<th>Last master</th><th>Last transition</th><th>Transitions</th><th>Adverts sent / received</th>\
<th>Rejected</th></tr></thead><tbody>",
    );
    if vips.is_empty() {
        h.push_str("<tr><td colspan=\"12\" class=\"muted\">no VIPs configured</td></tr>");
    }
    for v in vips {
        let skew = match v.priority {
            Some(p) if v.advskew == v.configured_advskew => format!("priority {p}"),
            Some(p) => format!("priority {p} (demoted)"),
            None if v.advskew == v.configured_advskew => v.advskew.to_string(),
            None => format!("{} ({} + demotion)", v.advskew, v.configured_advskew),
        };
        let protocol = if v.protocol == "vrrp" {
            "VRRPv3".to_string()
        } else {
            format!("CARP ({})", v.auth)
        };
        let interval_ms = if v.interval_ms == 0 {
            u32::from(v.advbase) * 1000
        } else {
            v.interval_ms
        };
        let last = v.last_transition.as_ref().map_or_else(
            || "<span class=\"muted\">none</span>".to_string(),
            |t| {
                format!(
                    "{} &rarr; {} <span class=\"muted\">({}, {} ago)</span>",
                    esc(&t.from),
                    esc(&t.to),
                    esc(&t.reason),
                    age(t.seconds_ago)
                )
            },
        );
        let rejected: Vec<String> = v
            .adverts_rejected
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let _ = write!(
            h,
            "<tr class=\"vip\" data-vhid=\"{vhid}\"><td class=\"n\">{vhid}</td><td>{iface} <span class=\"muted\">{dev}</span></td>\
<td>{addrs}</td><td class=\"state\">{state}</td><td>{protocol}</td><td class=\"n\">{interval_ms} ms</td><td>{skew}{preempt}</td>\
<td>{master}</td><td>{last}</td><td class=\"n\">{transitions}</td><td class=\"n\">{sent} / {recv}</td><td>{rej}</td></tr>",
            vhid = v.vhid,
            iface = esc(&v.interface),
            dev = esc(&v.device),
            addrs = esc(&v.addresses.join(", ")),
            state = state_badge(&v.state),
            protocol = esc(&protocol),
            skew = esc(&skew),
            preempt = if v.preempt { "" } else { " <span class=\"muted\">no preempt</span>" },
            master = opt(v.last_master.as_ref()),
            transitions = v.transitions,
            sent = v.adverts_sent,
            recv = v.adverts_received,
            rej = if rejected.is_empty() {
                "-".to_string()
            } else {
                esc(&rejected.join(", "))
            },
        );
    }
    h.push_str("</tbody></table></section>");
}

fn peers(h: &mut String, s: &Status) {
    h.push_str("<section id=\"peers\"><h2>Peers</h2>");
    let cs_peers = s.config_sync.as_ref().map_or(&[][..], |c| &c.peers[..]);
    let ss_peers = s
        .state_sync
        .as_ref()
        .and_then(|s| s.engine.as_ref())
        .map_or(&[][..], |e| &e.peers[..]);
    if cs_peers.is_empty() && ss_peers.is_empty() {
        h.push_str("<p class=\"muted\">No peers: neither config sync (as primary) nor state sync names one.</p>");
    }
    if !cs_peers.is_empty() {
        h.push_str(
            "<h3>Config sync peers</h3><table><thead><tr><th>Peer</th><th>URL</th><th>In sync</th>\
<th>Generation acked</th><th>Lag</th><th>Last contact</th><th>Last result</th><th>Software</th><th>Drift</th>\
</tr></thead><tbody>",
        );
        for p in cs_peers {
            let lag = if p.lag_generations == 0 {
                "0".to_string()
            } else {
                format!(
                    "{} generations{}",
                    p.lag_generations,
                    p.lag_seconds
                        .map_or_else(String::new, |l| format!(", {}", age(l)))
                )
            };
            let _ = write!(
                h,
                "<tr class=\"cs-peer\"><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td>\
<td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                esc(&p.name),
                esc(&without_userinfo(&p.url)),
                yes_no(p.in_sync, true),
                opt(p.acked_generation),
                esc(&lag),
                p.last_contact_seconds_ago
                    .map_or_else(|| "never".into(), |a| format!("{} ago", age(a))),
                opt(p.last_result.as_ref()),
                opt(p.peer_software.as_ref()),
                p.version_note
                    .as_ref()
                    .map_or_else(String::new, |n| format!(" {}", badge("warn", n))),
                p.drift
                    .as_ref()
                    .map_or_else(|| "-".into(), |d| badge("warn", d)),
            );
        }
        h.push_str("</tbody></table>");
    }
    if !ss_peers.is_empty() {
        h.push_str(
            "<h3>State sync peers</h3><table><thead><tr><th>Peer</th><th>Address</th><th>Up</th>\
<th>Ready</th><th>States</th><th>Lag</th><th>Last heard</th><th>Restarts</th></tr></thead><tbody>",
        );
        for p in ss_peers {
            let _ = write!(
                h,
                "<tr class=\"ss-peer\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
<td class=\"n\">{}</td><td class=\"n\">{}</td><td>{} ago</td><td class=\"n\">{}</td></tr>",
                esc(&p.node.to_string()),
                esc(&p.addr.to_string()),
                yes_no(p.alive && !p.down, true),
                yes_no(p.ready, true),
                p.states,
                p.lag,
                age(p.silent_ms as f64 / 1000.0),
                p.restarts
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
}

/// Health checks (`[[checks]]`) and the hooks' last runs (`[hooks]`).
fn checks(h: &mut String, s: &Status) {
    if s.checks.is_empty() && s.hooks.is_empty() {
        return;
    }
    h.push_str("<section id=\"checks\"><h2>Health checks and hooks</h2>");
    if !s.checks.is_empty() {
        h.push_str(
            "<table><thead><tr><th>Check</th><th>Kind</th><th>Target</th><th>State</th>\
<th>Last result</th><th>Rise / fall</th><th>Demotion</th></tr></thead><tbody>",
        );
        for c in &s.checks {
            let class = match c.state.as_str() {
                "up" => "ok",
                "down" => "bad",
                _ => "warn",
            };
            let _ = write!(
                h,
                "<tr class=\"check\"><td>{}</td><td>{}</td><td><code>{}</code></td>\
<td class=\"state\">{} <span class=\"muted\">for {}</span></td><td>{}</td>\
<td class=\"n\">{} / {}</td><td class=\"n\">{}</td></tr>",
                esc(&c.name),
                esc(&c.kind),
                esc(&c.target),
                badge(class, &c.state),
                age(c.since_seconds_ago),
                esc(&c.result),
                c.rise,
                c.fall,
                if c.demoting {
                    format!("+{}", c.weight)
                } else {
                    format!("<span class=\"muted\">0 (weight {})</span>", c.weight)
                }
            );
        }
        h.push_str("</tbody></table>");
    }
    if !s.hooks.is_empty() {
        h.push_str(
            "<h3>Hooks: last runs</h3><table><thead><tr><th>Hook</th><th>Event</th>\
<th>Result</th><th>When</th><th>Runs</th><th>Failed</th></tr></thead><tbody>",
        );
        for k in &s.hooks {
            let _ = write!(
                h,
                "<tr class=\"hook\"><td>{}</td><td>{}</td><td>{}</td><td>{} ago</td>\
<td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&k.hook),
                esc(&k.event),
                badge(if k.ok { "ok" } else { "bad" }, &k.result),
                age(k.seconds_ago),
                k.runs,
                k.failures
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
}

/// The certificates of the running config (`[[certificates]]`) and when they expire.
fn certificates(h: &mut String, s: &Status) {
    if s.certificates.is_empty() {
        return;
    }
    h.push_str(
        "<section id=\"certificates\"><h2>Certificates</h2><table><thead><tr><th>Name</th>\
<th>Subject</th><th>Expires</th><th>Days left</th></tr></thead><tbody>",
    );
    for c in &s.certificates {
        let class = match c.days_left {
            d if d < 0 => "bad",
            d if d < 30 => "warn",
            _ => "ok",
        };
        let _ = write!(
            h,
            "<tr class=\"certificate\"><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&c.name),
            esc(&c.subject),
            esc(&c.expires),
            badge(class, &c.days_left.to_string())
        );
    }
    h.push_str("</tbody></table></section>");
}

/// The services the dns, dhcp and wireguard areas drive, a line each as `tandem status` says
/// them; a line that says something is wrong is marked.
fn services(h: &mut String, s: &Status) {
    let lines = crate::status::service_lines(s);
    if lines.is_empty() {
        return;
    }
    h.push_str("<section id=\"services\"><h2>Services</h2><ul>");
    for l in &lines {
        let bad = l.contains("NOT ")
            || l.contains("failed")
            || l.contains("error")
            || l.contains("unknown")
            || l.contains("partner-down")
            || l.contains("unreachable");
        let _ = write!(
            h,
            "<li class=\"service{}\">{}</li>",
            if bad { " warn" } else { "" },
            esc(l)
        );
    }
    h.push_str("</ul></section>");
}

fn state_sync(h: &mut String, line: &str, ss: Option<&StateSyncStatus>) {
    let _ = write!(
        h,
        "<section id=\"state-sync\"><h2>State sync</h2><p class=\"summary\">{}</p>",
        esc(line)
    );
    if let Some(ss) = ss {
        h.push_str("<dl>");
        if let Some(e) = &ss.engine {
            let _ = write!(
                h,
                "<dt>Table</dt><dd>{} <span id=\"states\">{}</span> states, {} pending</dd>\
<dt>Bulk sync</dt><dd>{} (attempt {}, {} received)</dd>",
                yes_no(e.ready, true)
                    .replace(">yes<", ">ready<")
                    .replace(">no<", ">not ready<"),
                e.states,
                e.pending,
                esc(&format!("{:?}", e.bulk.phase).to_lowercase()),
                e.bulk.attempt,
                e.bulk.received
            );
            let c = &e.counters;
            let _ = write!(
                h,
                "<dt>Records</dt><dd>sent {} (+{} bulk), received {} (+{} bulk), deleted {}/{}</dd>",
                c.states_sent,
                c.bulk_states_sent,
                c.states_received,
                c.bulk_states_received,
                c.deletes_sent,
                c.deletes_received
            );
            if !c.rejected.is_empty() {
                let r: Vec<String> = c
                    .rejected
                    .iter()
                    .map(|(k, v)| format!("{}={v}", k.as_str()))
                    .collect();
                let _ = write!(h, "<dt>Rejected</dt><dd>{}</dd>", esc(&r.join(", ")));
            }
        }
        let _ = write!(
            h,
            "<dt>Kernel</dt><dd>installed {}, removed {}, errors {}, overruns {}</dd>\
<dt>Listen</dt><dd><code>{}</code>, key id <code>{}</code></dd>",
            ss.installed,
            ss.removed,
            ss.install_errors,
            ss.overruns,
            esc(&ss.listen),
            esc(&ss.key_id)
        );
        if let Some(a) = &ss.last_alarm {
            let _ = write!(h, "<dt>Alarm</dt><dd>{}</dd>", badge("bad", a));
        }
        if let Some(e) = &ss.last_error {
            let _ = write!(h, "<dt>Last error</dt><dd>{}</dd>", esc(e));
        }
        h.push_str("</dl>");
    }
    h.push_str("</section>");
}

fn config_sync(h: &mut String, line: &str, cs: Option<&ConfigSyncStatus>) {
    let _ = write!(
        h,
        "<section id=\"config-sync\"><h2>Config sync</h2><p class=\"summary\">{}</p>",
        esc(line)
    );
    if let Some(cs) = cs {
        let _ = write!(
            h,
            "<dl><dt>Role</dt><dd>{}</dd><dt>Generation</dt><dd id=\"generation\">{}</dd>",
            esc(&cs.role),
            cs.generation
        );
        if let Some(src) = &cs.source {
            let _ = write!(
                h,
                "<dt>From</dt><dd>{}{}</dd>",
                esc(src),
                cs.applied_at
                    .as_ref()
                    .map_or_else(String::new, |t| format!(" at {}", esc(t)))
            );
        }
        if let Some(g) = cs.primary_generation {
            let _ = write!(
                h,
                "<dt>Primary</dt><dd>generation {g}{}; {}{}</dd>",
                cs.primary_heard_seconds_ago
                    .map_or_else(String::new, |a| format!(", heard {} ago", age(a))),
                if cs.behind {
                    badge("bad", "behind")
                } else {
                    badge("ok", "up to date")
                },
                if cs.demoted {
                    format!(" {}", badge("warn", "demoted"))
                } else {
                    String::new()
                }
            );
        }
        let _ = write!(
            h,
            "<dt>Drift</dt><dd id=\"drift\">{}</dd>",
            cs.drift
                .as_ref()
                .map_or_else(|| badge("ok", "none"), |d| badge("warn", d))
        );
        if let Some(r) = &cs.last_apply {
            let _ = write!(h, "<dt>Last apply</dt><dd>{}</dd>", esc(r));
        }
        if !cs.rpc.rejected.is_empty() {
            let r: Vec<String> = cs
                .rpc
                .rejected
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = write!(
                h,
                "<dt>Calls refused</dt><dd>{}{}</dd>",
                esc(&r.join(", ")),
                cs.rpc
                    .last_rejected
                    .as_ref()
                    .map_or_else(String::new, |l| format!(" (last: {})", esc(l)))
            );
        }
        h.push_str("</dl>");
        if !cs.running.is_empty() {
            h.push_str(
                "<h3>Areas</h3><table><thead><tr><th>Area</th><th>Origin</th><th>Generation</th>\
<th>Items</th><th>Drift</th></tr></thead><tbody>",
            );
            for a in &cs.running {
                let _ = write!(
                    h,
                    "<tr class=\"area\"><td>{}</td><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    esc(a.area.as_str()),
                    esc(&a.origin),
                    a.source
                        .as_ref()
                        .map_or_else(String::new, |s| format!(" from {}", esc(s))),
                    opt(a.generation),
                    a.items,
                    a.drift
                        .as_ref()
                        .map_or_else(|| badge("ok", "none"), |d| badge("warn", &d.to_string()))
                );
            }
            h.push_str("</tbody></table>");
        } else if !cs.areas.is_empty() {
            let _ = write!(h, "<p>Pushes: {}</p>", esc(&cs.areas.join(", ")));
        }
    }
    h.push_str("</section>");
}

fn firewall(h: &mut String, f: &FirewallStatus) {
    let state = match (f.managed, f.applied, &f.last_error) {
        (false, _, _) => badge("info", "not managed"),
        (true, _, Some(_)) => badge("bad", "last apply failed"),
        (true, true, None) => badge("ok", "applied"),
        (true, false, None) => badge("warn", "not applied"),
    };
    let _ = write!(
        h,
        "<section id=\"firewall\"><h2>Firewall</h2><dl><dt>Ruleset</dt><dd id=\"firewall-state\">{state}</dd>\
<dt>Items</dt><dd>{} rules, {} NAT, {} aliases, {} routes</dd>",
        f.rules, f.nat, f.aliases, f.routes
    );
    if let Some(e) = &f.last_error {
        let _ = write!(h, "<dt>Last error</dt><dd>{}</dd>", esc(e));
    }
    for (k, v) in &f.forwarding {
        let _ = write!(h, "<dt><code>{}</code></dt><dd>{}</dd>", esc(k), esc(v));
    }
    h.push_str("</dl></section>");
}
