//! The `[dns]` area as this node's unbound runs it: rendered ([`render`], pure) for the
//! addresses of the interfaces `[dns_local]` names, written over the include file atomically,
//! and loaded with `unbound-control reload`. A reload that fails puts the file that was there
//! back (and reloads that), so unbound keeps what it ran. Without a `[dns]` area (and nothing
//! applied before) or without `[dns_local]`, nothing about unbound is touched.

pub mod render;

use crate::config::dns::{Dns, DnsLocal};
use crate::config::Config;
use anyhow::Context;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What unbound should run for a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub local: DnsLocal,
    pub text: String,
    pub listen: render::Listen,
}

/// The addresses and networks of the interfaces unbound listens on: this node's own (as the
/// kernel has them) and the VIPs there (from the config: bound with ip-freebind).
pub fn listen(
    cfg: &Config,
    local: &DnsLocal,
    own: &BTreeMap<String, Vec<IpNet>>,
) -> render::Listen {
    let mut l = render::Listen::default();
    for logical in &local.interfaces {
        let vips = cfg
            .vips
            .iter()
            .filter(|v| &v.interface == logical)
            .flat_map(|v| v.addresses.iter().copied());
        for net in own.get(logical).into_iter().flatten().copied().chain(vips) {
            if !l.addresses.contains(&net.addr()) {
                l.addresses.push(net.addr());
            }
            if !l.networks.contains(&net.trunc()) {
                l.networks.push(net.trunc());
            }
        }
    }
    l
}

/// What to write for `cfg` (None: leave unbound alone). `was_applied`: an earlier config had
/// unbound run a `[dns]` area; a config without one then renders an empty area (so removing
/// the last override syncs).
pub fn plan(cfg: &Config, own: &BTreeMap<String, Vec<IpNet>>, was_applied: bool) -> Option<Plan> {
    let local = cfg.dns_local.as_ref()?;
    let empty = Dns::default();
    let dns = match &cfg.dns {
        Some(d) => d,
        None if was_applied => &empty,
        None => return None,
    };
    let listen = listen(cfg, local, own);
    Some(Plan {
        text: render::render(dns, &listen),
        local: local.clone(),
        listen,
    })
}

/// How to take an applied plan back.
#[derive(Debug)]
pub struct Undo {
    local: DnsLocal,
    /// The include file before (None: there was none).
    file: Option<String>,
    /// The state before.
    state: DnsState,
}

/// What unbound runs, as far as Tandem knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsState {
    /// The text written and loaded last (None: nothing yet).
    pub text: Option<String>,
    pub listen: Vec<String>,
    pub applied: bool,
    pub last_error: Option<String>,
    pub reloads: u64,
}

fn control(local: &DnsLocal) -> anyhow::Result<linux::unbound::UnboundControl> {
    Ok(linux::unbound::UnboundControl::new(
        local.unbound_control.clone(),
        local.unbound_conf.clone(),
        local.control_socket.clone(),
    )?)
}

/// Writes the plan's file and reloads unbound, unless it runs that text already. On a failed
/// reload the file that was there goes back (and unbound reloads it) and the error says so.
/// Returns how to take it back (None: nothing changed).
pub async fn apply(state: &mut DnsState, plan: Option<Plan>) -> anyhow::Result<Option<Undo>> {
    let Some(plan) = plan else {
        return Ok(None);
    };
    if state.text.as_deref() == Some(plan.text.as_str()) && state.applied {
        return Ok(None);
    }
    let before = state.clone();
    let local = plan.local.clone();
    let text = plan.text.clone();
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<String>> {
        let old = linux::unbound::read_file(&local.include)?;
        let ctl = control(&local)?;
        linux::unbound::write_file(&local.include, &text)?;
        if let Err(e) = ctl.reload() {
            let back = linux::unbound::restore_file(&local.include, old.as_deref())
                .map_err(anyhow::Error::from)
                .and_then(|()| ctl.reload().map_err(anyhow::Error::from));
            let note = match back {
                Ok(()) => "the previous file was put back".to_string(),
                Err(b) => format!("putting the previous file back failed too: {b:#}"),
            };
            return Err(anyhow::Error::from(e).context(format!(
                "dns: unbound did not load {} ({note})",
                local.include.display()
            )));
        }
        Ok(old)
    })
    .await
    .context("the dns apply thread died")?;
    state.reloads += 1;
    match r {
        Ok(file) => {
            state.text = Some(plan.text);
            state.listen = plan
                .listen
                .addresses
                .iter()
                .map(|a| a.to_string())
                .collect();
            state.applied = true;
            state.last_error = None;
            tracing::info!(
                "dns: unbound reloaded with {}",
                plan.local.include.display()
            );
            let missing = not_listening(&state.listen);
            if !missing.is_empty() {
                tracing::warn!(
                    "dns: unbound does not listen on {}: it binds addresses only when it starts; restart unbound",
                    missing.join(", ")
                );
            }
            Ok(Some(Undo {
                local: plan.local,
                file,
                state: before,
            }))
        }
        Err(e) => {
            state.last_error = Some(format!("{e:#}"));
            Err(e)
        }
    }
}

/// Takes an applied plan back (a later step of the activation failed). Returns what
/// happened, for the error.
pub async fn undo(state: &mut DnsState, undo: Undo) -> String {
    let Undo {
        local,
        file,
        state: before,
    } = undo;
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        linux::unbound::restore_file(&local.include, file.as_deref())?;
        control(&local)?.reload()?;
        Ok(())
    })
    .await;
    *state = before;
    match r {
        Ok(Ok(())) => "the previous dns config was put back".into(),
        Ok(Err(e)) => format!("putting the previous dns config back failed: {e:#}"),
        Err(e) => format!("putting the previous dns config back failed: {e}"),
    }
}

/// The dns area in status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct DnsStatus {
    /// `[dns_local]` is there: this node's unbound runs the area.
    pub managed: bool,
    /// unbound loaded the running config's area.
    pub applied: bool,
    /// The include file Tandem writes.
    pub include: Option<String>,
    pub hosts: usize,
    pub domains: usize,
    pub forwarders: usize,
    /// The addresses unbound was told to listen on.
    pub listen: Vec<String>,
    /// Those of them with no UDP socket on port 53 right now: unbound binds its addresses
    /// only when it starts (a reload does not), so a new one needs a restart of unbound.
    pub not_listening: Vec<String>,
    /// unbound-control reloads since the daemon started.
    pub reloads: u64,
    pub last_error: Option<String>,
}

/// None when the config has no `[dns]` area and unbound was never given one.
pub fn status(cfg: &Config, state: &DnsState) -> Option<DnsStatus> {
    if cfg.dns.is_none() && state.text.is_none() {
        return None;
    }
    let dns = cfg.dns.clone().unwrap_or_default();
    Some(DnsStatus {
        managed: cfg.dns_local.is_some(),
        applied: state.applied,
        include: cfg
            .dns_local
            .as_ref()
            .map(|l| l.include.display().to_string()),
        hosts: dns.hosts.len(),
        domains: dns.domains.len(),
        forwarders: dns.forwarders.len(),
        listen: state.listen.clone(),
        not_listening: not_listening(&state.listen),
        reloads: state.reloads,
        last_error: state.last_error.clone(),
    })
}

/// The addresses of `listen` unbound has no socket on (port 53, this namespace).
fn not_listening(listen: &[String]) -> Vec<String> {
    if listen.is_empty() {
        return Vec::new();
    }
    let bound = linux::unbound::udp_bound(53);
    listen
        .iter()
        .filter(|a| {
            a.parse::<std::net::IpAddr>()
                .map_or(true, |ip| !bound.contains(&ip))
        })
        .cloned()
        .collect()
}

/// One line for `tandem status`.
pub fn line(s: &DnsStatus) -> String {
    let what = format!(
        "{}, {}, {}",
        crate::words::count(s.hosts, "host override"),
        crate::words::count(s.domains, "domain override"),
        crate::words::count(s.forwarders, "forwarder")
    );
    let state = if !s.managed {
        "held, not applied (no [dns_local])".to_string()
    } else if s.applied {
        format!("applied to unbound ({} reloads)", s.reloads)
    } else {
        "NOT applied".to_string()
    };
    let mut out = format!("dns: {what}; {state}");
    if !s.not_listening.is_empty() {
        out.push_str(&format!(
            "; NOT listening on {} (restart unbound: it binds addresses only when it starts)",
            s.not_listening.join(",")
        ));
    }
    if let Some(e) = &s.last_error {
        out.push_str(&format!("; last error: {e}"));
    }
    out
}
