//! The firewall as this node runs it: the synced areas checked against this node's interfaces
//! and addresses, rendered to nftables, validated by the kernel, then applied in one
//! transaction together with the static routes and the forwarding sysctls.

use crate::config::{Config, ConfigErrors};
use anyhow::Context;
use linux::netlink::Netlink;
use linux::routes::StaticRoute;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What this node knows that the synced areas refer to: devices, real addresses, VIPs.
pub async fn context(cfg: &Config, netlink: &Netlink) -> firewall::NodeContext {
    let mut ctx = firewall::NodeContext {
        interfaces: cfg.interfaces.clone(),
        ..Default::default()
    };
    for (logical, dev) in &cfg.interfaces {
        let mut nets = Vec::new();
        if let Ok(link) = netlink.link(dev).await {
            for a in netlink
                .address_details(link.index)
                .await
                .unwrap_or_default()
            {
                // VIPs come from the config, not from whoever holds them right now.
                if a.tandem || a.link_scope {
                    continue;
                }
                if let Ok(net) = firewall::IpNet::new(a.addr, a.prefix) {
                    nets.push(net);
                }
            }
        }
        ctx.interface_addrs.insert(logical.clone(), nets);
    }
    for v in &cfg.vips {
        for a in &v.addresses {
            ctx.vips.push((v.interface.clone(), *a));
        }
    }
    ctx
}

/// Validates and renders the ruleset; nothing is changed. There is no separate `nft -c` pass:
/// `nft -f` runs the script as one transaction, so a script the kernel refuses at apply time
/// changes nothing either, and checking first would double the time a change takes.
pub fn prepare(
    cfg: &Config,
    ctx: &firewall::NodeContext,
) -> Result<firewall::Ruleset, anyhow::Error> {
    Ok(firewall::render(&cfg.areas, ctx).map_err(|e| cfg.locate(e))?)
}

/// What the last apply did, for status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FirewallStatus {
    pub managed: bool,
    /// Rules and NAT entries in the running config.
    pub rules: usize,
    pub nat: usize,
    pub aliases: usize,
    pub routes: usize,
    pub applied: bool,
    pub last_error: Option<String>,
    /// Current values of the forwarding sysctls.
    pub forwarding: BTreeMap<String, String>,
}

pub const FORWARDING_SYSCTLS: [&str; 2] = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];

/// Applies a prepared ruleset: nftables first (atomic), then routes, then forwarding.
pub async fn apply(
    cfg: &Config,
    netlink: &Netlink,
    ruleset: &firewall::Ruleset,
) -> anyhow::Result<()> {
    let script = ruleset.nft.clone();
    // A blocking child process: off the async thread, so the daemon keeps serving CARP.
    tokio::task::spawn_blocking(move || linux::nft::apply(&script))
        .await
        .context("the nft apply thread died")?
        .with_context(|| {
            format!(
                "{}: the kernel refused the ruleset; the previous one stays in force",
                cfg.file.display()
            )
        })?;
    let mut routes = Vec::new();
    for r in &ruleset.routes {
        let link = netlink
            .link(&r.device)
            .await
            .with_context(|| format!("route to {} via {}", r.destination, r.gateway_name))?;
        routes.push(StaticRoute {
            destination: r.destination.network(),
            prefix: r.destination.prefix_len(),
            gateway: r.gateway,
            ifindex: link.index,
        });
    }
    let (added, removed) = netlink
        .sync_routes(&routes)
        .await
        .context("installing static routes")?;
    if added + removed > 0 {
        tracing::info!("routes: {added} added, {removed} removed");
    }
    if cfg.firewall.forwarding {
        for knob in FORWARDING_SYSCTLS {
            linux::sysctl::write(knob, "1").with_context(|| format!("setting {knob}=1"))?;
        }
    }
    Ok(())
}

pub fn status(cfg: &Config, applied: bool, last_error: Option<String>) -> FirewallStatus {
    let a = &cfg.areas;
    FirewallStatus {
        managed: cfg.firewall.managed,
        rules: a.rules.len(),
        nat: a.nat.outbound.len() + a.nat.port_forward.len() + a.nat.one_to_one.len(),
        aliases: a.aliases.len(),
        routes: a.routes.len(),
        applied,
        last_error,
        forwarding: FORWARDING_SYSCTLS
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    linux::sysctl::read(k).unwrap_or_else(|e| format!("unreadable: {e}")),
                )
            })
            .collect(),
    }
}

/// Turns located config errors into one message for a control reply or the log.
pub fn describe(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ConfigErrors>() {
        Some(list) => list.to_string(),
        None => format!("{e:#}"),
    }
}
