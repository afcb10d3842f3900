//! The `wireguard` area as this node runs it: each tunnel device set (key, port, exactly the
//! configured peers), brought up, and given the configured addresses (tagged as Tandem's, so
//! only those are ever removed). A device with a UAPI socket (a userspace implementation the
//! admin runs: boringtun, wireguard-go) is set over it; else a kernel WireGuard link of that
//! name is set over generic netlink, and where there is none Tandem creates one (and deletes
//! only those it created). All or nothing with the rest of an activation: [`check`] before
//! anything changes, and a failed step puts back what ran before.

use crate::config::wireguard::WgInterface;
use crate::config::Config;
use anyhow::Context;
use ipnet::IpNet;
use linux::netlink::Netlink;
use linux::wireguard::{DeviceConfig, PeerConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What Tandem set on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub name: String,
    pub config: DeviceConfig,
    pub addresses: Vec<IpNet>,
}

/// How a device is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Its UAPI socket.
    Uapi,
    /// Kernel WireGuard over generic netlink (the family's id); `created`: Tandem made the link.
    Kernel { family: u16, created: bool },
}

/// What runs, per device, as far as Tandem knows.
#[derive(Debug, Clone, Default)]
pub struct WgState {
    pub applied: BTreeMap<String, Applied>,
    pub backends: BTreeMap<String, Backend>,
    pub dir: PathBuf,
    pub last_error: Option<String>,
}

fn target(cfg: &Config) -> BTreeMap<String, Applied> {
    cfg.wireguard
        .iter()
        .map(|w| (w.device.clone(), applied(w)))
        .collect()
}

fn applied(w: &WgInterface) -> Applied {
    Applied {
        name: w.name.clone(),
        config: DeviceConfig {
            private_key: *w.private_key.expose(),
            listen_port: w.listen_port,
            peers: w
                .peers
                .iter()
                .map(|p| PeerConfig {
                    public_key: p.public_key,
                    allowed_ips: p
                        .allowed_ips
                        .iter()
                        .map(|n| (n.addr(), n.prefix_len()))
                        .collect(),
                    endpoint: p.endpoint,
                    persistent_keepalive: p.persistent_keepalive,
                })
                .collect(),
        },
        addresses: w.addresses.clone(),
    }
}

/// The kernel's WireGuard family id, None when it has no WireGuard.
async fn kernel_family(device: &str) -> anyhow::Result<Option<u16>> {
    let d = device.to_string();
    uapi(move || linux::wireguard_kernel::family(&d)).await
}

/// Before anything changes: every tunnel of `cfg` has a device Tandem can set (its UAPI
/// socket, or kernel WireGuard).
pub async fn check(cfg: &Config) -> anyhow::Result<()> {
    let dir = &cfg.wireguard_socket_dir;
    for w in &cfg.wireguard {
        if linux::wireguard::has_socket(dir, &w.device) {
            continue;
        }
        if kernel_family(&w.device).await?.is_none() {
            anyhow::bail!(
                "wireguard {:?}: no UAPI socket {} for device {}, and the kernel has no WireGuard: start the userspace implementation for it (boringtun, wireguard-go) before Tandem configures it",
                w.name,
                linux::wireguard::socket_path(dir, &w.device).display(),
                w.device
            );
        }
    }
    Ok(())
}

/// How `dev` is set: its UAPI socket, else its kernel link (made now if there is none).
async fn backend(dir: &Path, dev: &str, netlink: &Netlink) -> anyhow::Result<Backend> {
    if linux::wireguard::has_socket(dir, dev) {
        return Ok(Backend::Uapi);
    }
    let family = kernel_family(dev).await?.with_context(|| {
        format!(
            "wireguard device {dev}: no UAPI socket in {} and no kernel WireGuard",
            dir.display()
        )
    })?;
    match netlink.wireguard_link(dev).await? {
        Some(l) => Ok(Backend::Kernel {
            family,
            created: l.tandems,
        }),
        None => {
            netlink.create_wireguard_link(dev).await?;
            Ok(Backend::Kernel {
                family,
                created: true,
            })
        }
    }
}

async fn set_device(b: Backend, dir: &Path, dev: &str, c: &DeviceConfig) -> anyhow::Result<()> {
    let (d, dv, c) = (dir.to_path_buf(), dev.to_string(), c.clone());
    match b {
        Backend::Uapi => uapi(move || linux::wireguard::set(&d, &dv, &c)).await,
        Backend::Kernel { family, .. } => {
            uapi(move || linux::wireguard_kernel::set(family, &dv, &c)).await
        }
    }
}

/// Takes the device out of Tandem's hands: peers off, and a link Tandem made deleted.
async fn release_device(
    b: Backend,
    dir: &Path,
    dev: &str,
    netlink: &Netlink,
) -> anyhow::Result<()> {
    let (d, dv) = (dir.to_path_buf(), dev.to_string());
    match b {
        Backend::Uapi if linux::wireguard::has_socket(dir, dev) => {
            uapi(move || linux::wireguard::clear(&d, &dv)).await
        }
        Backend::Uapi => Ok(()),
        Backend::Kernel { created: true, .. } => Ok(netlink.delete_wireguard_link(dev).await?),
        Backend::Kernel { family, .. } => {
            uapi(move || linux::wireguard_kernel::clear(family, &dv)).await
        }
    }
}

async fn uapi<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, linux::wireguard::WgError> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .context("the wireguard thread died")??)
}

/// Moves the devices from what `state` says runs to `want`, recording each step as it is
/// done (so a failure leaves `state` true).
async fn converge(
    state: &mut WgState,
    dir: &Path,
    want: &BTreeMap<String, Applied>,
    netlink: &Netlink,
) -> anyhow::Result<usize> {
    let mut changed = 0;
    // Devices that leave: no peers any more, Tandem's addresses off.
    // (A device set up but not applied, a failed step, counts too: a link Tandem made goes.)
    let leaving: std::collections::BTreeSet<String> = state
        .applied
        .keys()
        .chain(state.backends.keys())
        .filter(|d| !want.contains_key(*d))
        .cloned()
        .collect();
    for dev in leaving {
        if let Some(old) = state.applied.get(&dev) {
            release(netlink, &dev, &old.addresses, &[]).await?;
        }
        if let Some(b) = state.backends.get(&dev).copied() {
            release_device(b, dir, &dev, netlink).await?;
        }
        state.applied.remove(&dev);
        state.backends.remove(&dev);
        changed += 1;
    }
    for (dev, a) in want {
        let before = state.applied.get(dev).cloned();
        if before.as_ref() == Some(a) {
            continue;
        }
        let b = match state.backends.get(dev).copied() {
            Some(b) => b,
            None => {
                let b = backend(dir, dev, netlink).await?;
                state.backends.insert(dev.clone(), b);
                b
            }
        };
        if before.as_ref().map(|b| &b.config) != Some(&a.config) {
            set_device(b, dir, dev, &a.config).await?;
        }
        let link = netlink
            .link(dev)
            .await
            .with_context(|| format!("wireguard {:?}: device {dev}", a.name))?;
        netlink.set_link_up(link.index, true).await?;
        for n in &a.addresses {
            netlink
                .add_address(link.index, n.addr(), n.prefix_len())
                .await?;
        }
        // Tandem's addresses the config no longer has (also those a previous run left).
        let stale: Vec<IpNet> = netlink
            .address_details(link.index)
            .await?
            .into_iter()
            .filter(|x| x.tandem)
            .filter_map(|x| IpNet::new(x.addr, x.prefix).ok())
            .chain(before.iter().flat_map(|b| b.addresses.iter().copied()))
            .collect();
        release(netlink, dev, &stale, &a.addresses).await?;
        state.applied.insert(dev.clone(), a.clone());
        changed += 1;
    }
    Ok(changed)
}

/// Removes `addrs` but those in `keep` from `dev` (only Tandem's: tagged, or added this run).
async fn release(
    netlink: &Netlink,
    dev: &str,
    addrs: &[IpNet],
    keep: &[IpNet],
) -> anyhow::Result<()> {
    let Ok(link) = netlink.link(dev).await else {
        return Ok(());
    };
    for n in addrs.iter().filter(|n| !keep.contains(n)) {
        netlink.release_address(link.index, n.addr(), true).await?;
    }
    Ok(())
}

/// How to put back what ran before an apply.
#[derive(Debug)]
pub struct Undo(BTreeMap<String, Applied>);

/// Makes the devices run `cfg`'s tunnels; on failure puts back what ran before and says so.
/// None: nothing changed.
pub async fn apply(
    state: &mut WgState,
    cfg: &Config,
    netlink: &Netlink,
) -> anyhow::Result<Option<Undo>> {
    let dir = cfg.wireguard_socket_dir.clone();
    state.dir.clone_from(&dir);
    let before = state.applied.clone();
    let want = target(cfg);
    match converge(state, &dir, &want, netlink).await {
        Ok(0) => Ok(None),
        Ok(n) => {
            state.last_error = None;
            tracing::info!("wireguard: {} configured", crate::words::count(n, "tunnel"));
            Ok(Some(Undo(before)))
        }
        Err(e) => {
            state.last_error = Some(format!("{e:#}"));
            let note = match converge(state, &dir, &before, netlink).await {
                Ok(_) => "the tunnels were put back as they were".to_string(),
                Err(b) => format!("putting the tunnels back failed too: {b:#}"),
            };
            Err(e.context(note))
        }
    }
}

/// Puts back what ran before an apply (a later step of the activation failed).
pub async fn undo(state: &mut WgState, netlink: &Netlink, undo: Undo) -> String {
    let dir = state.dir.clone();
    match converge(state, &dir, &undo.0, netlink).await {
        Ok(_) => "the tunnels were put back".into(),
        Err(e) => format!("putting the tunnels back failed too: {e:#}"),
    }
}

/// One tunnel in `tandem status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct WgStatus {
    pub name: String,
    pub device: String,
    pub listen_port: Option<u16>,
    /// The device's public key (base64), when the implementation says it.
    pub public_key: Option<String>,
    pub addresses: Vec<String>,
    /// Tandem set the device to the running config.
    pub applied: bool,
    /// What differs between the device and the config (someone changed it by hand), or why it
    /// cannot be read.
    pub drift: Option<String>,
    pub peers: Vec<WgPeerStatus>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct WgPeerStatus {
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    pub last_handshake_sec: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// What differs between the device and what Tandem set (never the private key: the UAPI
/// answer's key line is dropped unread).
fn drift(want: &DeviceConfig, got: &linux::wireguard::DeviceState) -> Option<String> {
    let mut d = Vec::new();
    if want.listen_port.is_some() && want.listen_port != got.listen_port {
        d.push(format!(
            "listen port {:?} (config {:?})",
            got.listen_port, want.listen_port
        ));
    }
    let key = |k: &[u8; 32]| crate::config::wireguard::encode_key(k);
    for p in &want.peers {
        match got.peers.iter().find(|g| g.public_key == p.public_key) {
            None => d.push(format!("peer {} missing", key(&p.public_key))),
            Some(g) => {
                let (mut a, mut b) = (g.allowed_ips.clone(), p.allowed_ips.clone());
                a.sort();
                b.sort();
                if a != b {
                    d.push(format!("peer {} allowed IPs differ", key(&p.public_key)));
                }
            }
        }
    }
    for g in &got.peers {
        if !want.peers.iter().any(|p| p.public_key == g.public_key) {
            d.push(format!("peer {} not in the config", key(&g.public_key)));
        }
    }
    (!d.is_empty()).then(|| d.join("; "))
}

/// The tunnels' status: the config, and what each device says (read now, bounded in time).
pub async fn status(cfg: &Config, state: &WgState) -> Vec<WgStatus> {
    let mut out = Vec::new();
    for w in &cfg.wireguard {
        let applied = state.applied.get(&w.device);
        let (d, dv) = (cfg.wireguard_socket_dir.clone(), w.device.clone());
        let got = match state.backends.get(&w.device) {
            Some(Backend::Kernel { family, .. }) => {
                let f = *family;
                uapi(move || linux::wireguard_kernel::get(f, &dv)).await
            }
            _ => uapi(move || linux::wireguard::get(&d, &dv)).await,
        };
        let key = crate::config::wireguard::encode_key;
        let mut s = WgStatus {
            name: w.name.clone(),
            device: w.device.clone(),
            listen_port: w.listen_port,
            addresses: w.addresses.iter().map(ToString::to_string).collect(),
            applied: applied.is_some_and(|a| a.config == self::applied(w).config),
            last_error: state.last_error.clone(),
            ..Default::default()
        };
        match got {
            Ok(g) => {
                s.public_key = g.public_key.as_ref().map(key);
                s.listen_port = g.listen_port.or(w.listen_port);
                s.drift = drift(&self::applied(w).config, &g);
                s.peers = g
                    .peers
                    .iter()
                    .map(|p| WgPeerStatus {
                        public_key: key(&p.public_key),
                        endpoint: p.endpoint.map(|e| e.to_string()),
                        allowed_ips: p
                            .allowed_ips
                            .iter()
                            .map(|(a, l)| format!("{a}/{l}"))
                            .collect(),
                        last_handshake_sec: p.last_handshake_sec,
                        rx_bytes: p.rx_bytes,
                        tx_bytes: p.tx_bytes,
                    })
                    .collect();
            }
            Err(e) => s.drift = Some(format!("{e:#}")),
        }
        out.push(s);
    }
    out
}

/// The status line of one tunnel.
pub fn line(s: &WgStatus) -> String {
    let handshakes = s
        .peers
        .iter()
        .filter(|p| p.last_handshake_sec.is_some())
        .count();
    let mut l = format!(
        "wireguard {} ({}): port {}, {} ({} with a handshake), {}",
        s.name,
        s.device,
        s.listen_port.map_or("-".into(), |p| p.to_string()),
        crate::words::count(s.peers.len(), "peer"),
        handshakes,
        if s.applied { "applied" } else { "NOT applied" }
    );
    if let Some(k) = &s.public_key {
        l.push_str(&format!(", public key {k}"));
    }
    if let Some(d) = &s.drift {
        l.push_str(&format!("; DRIFT {d}"));
    }
    if let Some(e) = &s.last_error {
        l.push_str(&format!("; last error: {e}"));
    }
    l
}
