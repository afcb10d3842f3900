//! The firewall as this node runs it: the synced areas checked against this node's interfaces
//! and addresses, rendered to nftables, then applied in one transaction together with the
//! static routes and the forwarding sysctls. Also what the node's interfaces really have,
//! which the VIPs are checked against.

use crate::config::{Config, ConfigErrors};
use anyhow::Context;
use ipnet::IpNet;
use linux::netlink::Netlink;
use linux::routes::StaticRoute;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What this node's interfaces have, per logical name: its own addresses (not VIPs, not
/// link-local). A logical interface whose device does not exist here is absent.
pub async fn own_addresses(cfg: &Config, netlink: &Netlink) -> BTreeMap<String, Vec<IpNet>> {
    let mut out = BTreeMap::new();
    for (logical, dev) in &cfg.interfaces {
        let Ok(link) = netlink.link(dev).await else {
            continue;
        };
        let mut nets = Vec::new();
        for a in netlink
            .address_details(link.index)
            .await
            .unwrap_or_default()
        {
            // VIPs come from the config, not from whoever holds them right now.
            if a.tandem || a.link_scope {
                continue;
            }
            if let Ok(net) = IpNet::new(a.addr, a.prefix) {
                nets.push(net);
            }
        }
        out.insert(logical.clone(), nets);
    }
    out
}

/// What the firewall areas refer to on this node: devices, real addresses, VIPs.
pub fn context(cfg: &Config, own: &BTreeMap<String, Vec<IpNet>>) -> firewall::NodeContext {
    let mut ctx = firewall::NodeContext {
        interfaces: cfg.interfaces.clone(),
        ..Default::default()
    };
    for logical in cfg.interfaces.keys() {
        ctx.interface_addrs.insert(
            logical.clone(),
            own.get(logical).cloned().unwrap_or_default(),
        );
    }
    // A tunnel's addresses are the config's (Tandem adds them, tagged, so they are not among
    // the node's own).
    for w in &cfg.wireguard {
        ctx.interface_addrs
            .insert(w.name.clone(), w.addresses.clone());
        if let (Some(vip), Some(port)) = (w.vip, w.listen_port) {
            ctx.tunnel_endpoints.push((vip, port));
        }
    }
    for v in &cfg.vips {
        for a in &v.addresses {
            ctx.vips.push((v.interface.clone(), *a));
        }
    }
    // Kea's HA listener takes lease and HA commands without credentials: the partner only.
    if let Some(ha) = cfg.dhcp_local.as_ref().and_then(|l| l.ha.as_ref()) {
        ctx.peer_only.push(firewall::PeerOnly {
            listen: ha.listen,
            peer: ha.partner_address.ip(),
            what: "Kea HA listener",
        });
    }
    ctx
}

/// Everything that can be checked without changing anything: the VIPs against the node's
/// addresses and, when this node manages its firewall, the ruleset (rendered: CPU work, run
/// it off any thread that must stay responsive). There is no separate `nft -c` pass: `nft -f`
/// runs the script as one transaction, so a script the kernel refuses at apply time changes
/// nothing either, and checking first would double the time a change takes.
/// Logs the notes about unusual VIPs (see [`Config::check_vips`]).
pub fn prepare(
    cfg: &Config,
    own: &BTreeMap<String, Vec<IpNet>>,
) -> Result<Option<firewall::Ruleset>, ConfigErrors> {
    let vips = cfg.check_vips(own).map(|notes| {
        for n in notes {
            tracing::warn!("note: {n}");
        }
    });
    let ruleset = if cfg.firewall.managed {
        firewall::render(&cfg.areas, &context(cfg, own))
            .map(Some)
            .map_err(|e| cfg.locate(e))
    } else {
        Ok(None)
    };
    match (vips, ruleset) {
        (Ok(()), r) => r,
        (Err(e), Ok(_)) => Err(e),
        (Err(mut a), Err(b)) => {
            a.0.extend(b.0);
            Err(a)
        }
    }
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
    /// How the running ruleset went into the kernel (null before the first apply).
    pub last_apply: Option<LastApply>,
    /// Current values of the forwarding sysctls.
    pub forwarding: BTreeMap<String, String>,
}

pub const FORWARDING_SYSCTLS: [&str; 2] = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];

/// Applies a prepared ruleset: nftables first (atomic), then routes, then forwarding.
/// `running` is the ruleset the last apply put in the kernel, if any: then only what changed
/// is applied ([`firewall::Table::update`]: set elements, the chains whose rules changed),
/// and the whole table is replaced when the change is structural or the kernel refuses the
/// update (someone changed the table by hand), and also when nothing in it changed: a reload
/// that changes nothing is how an operator puts back what a hand edit of the table changed.
/// Either way it is one transaction.
pub async fn apply(
    cfg: &Config,
    netlink: &Netlink,
    ruleset: &firewall::Ruleset,
    running: Option<&firewall::Ruleset>,
) -> anyhow::Result<LastApply> {
    let (update, why) = match running.map(|old| ruleset.table.update(&old.table)) {
        None => (None, ""),
        Some(None) => (None, " (a structural change)"),
        Some(Some(u)) if u.is_empty() => (None, " (no change: put back whole)"),
        Some(Some(u)) => (Some(u), ""),
    };
    let full = ruleset.nft.clone();
    let nft = nft(cfg)?;
    let started = std::time::Instant::now();
    let (mode, detail) = tokio::task::spawn_blocking(move || {
        if let Some(u) = update {
            match nft.apply(&u.script) {
                Ok(()) => return Ok(("updated", u.to_string())),
                Err(e) => tracing::warn!(
                    "nftables: the update in place was refused ({e}); replacing table {} instead",
                    firewall::TABLE
                ),
            }
        }
        nft.apply(&full).map(|()| {
            (
                "replaced",
                format!("table {} replaced{why}", firewall::TABLE),
            )
        })
    })
    .await
    .context("the nft apply thread died")?
    .with_context(|| {
        format!(
            "{}: the ruleset was not applied; the one in force before stays",
            cfg.file().display()
        )
    })?;
    let last = LastApply {
        mode: mode.to_string(),
        detail,
        seconds: started.elapsed().as_secs_f64(),
    };
    match mode {
        "updated" => tracing::info!(
            "nftables: updated in place: {} in {} ms",
            last.detail,
            started.elapsed().as_millis()
        ),
        _ => tracing::info!(
            "nftables: {} in {} ms",
            last.detail,
            started.elapsed().as_millis()
        ),
    }
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
            if linux::sysctl::read(knob).ok().as_deref() != Some("1") {
                linux::sysctl::write(knob, "1").with_context(|| format!("setting {knob}=1"))?;
                tracing::info!("set {knob}=1 (a firewall routes; [firewall] forwarding = false leaves it alone)");
            }
        }
    }
    Ok(last)
}

/// How the last ruleset went into the kernel, for status and metrics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LastApply {
    /// `updated` (only what changed) or `replaced` (the whole table).
    pub mode: String,
    /// What changed (`2 chain(s) refilled with 112 rule(s), ...`) or why the table was replaced.
    pub detail: String,
    /// How long nft took.
    pub seconds: f64,
}

/// The nft this config applies rulesets with (`[firewall] nft`, absolute).
fn nft(cfg: &Config) -> anyhow::Result<linux::nft::Nft> {
    Ok(linux::nft::Nft::new(cfg.firewall.nft.clone())?)
}

/// Removes Tandem's table (the firewall was switched off); every other table stays.
pub async fn remove(cfg: &Config) -> anyhow::Result<()> {
    let script = format!("table {t} {{}}\ndelete table {t}\n", t = firewall::TABLE);
    let nft = nft(cfg)?;
    tokio::task::spawn_blocking(move || nft.apply(&script))
        .await
        .context("the nft apply thread died")?
        .map_err(anyhow::Error::from)
}

pub fn status(
    cfg: &Config,
    applied: bool,
    last_error: Option<String>,
    last_apply: Option<LastApply>,
) -> FirewallStatus {
    let a = &cfg.areas;
    FirewallStatus {
        managed: cfg.firewall.managed,
        rules: a.rules.len(),
        nat: a.nat.outbound.len() + a.nat.port_forward.len() + a.nat.one_to_one.len(),
        aliases: a.aliases.len(),
        routes: a.routes.len(),
        applied,
        last_error,
        last_apply,
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
