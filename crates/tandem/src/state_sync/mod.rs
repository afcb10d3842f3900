//! Connection state sync as the daemon runs it: the replicator engine (crate `statesync`) tied
//! to its UDP socket on the sync link and to the kernel's conntrack table.
//!
//! It runs as its own task (kernel writes on the blocking pool), away from the CARP thread; the
//! daemon talks to it over a channel: status, readiness (which demotes CARP), and a flush
//! before VIPs are taken (the CARP thread's barrier).

mod task;

use crate::config::StateSyncSettings;
use anyhow::Context;
use linux::conntrack::{Conntrack, ConntrackError, EventItem, Events, Groups};
use serde::{Deserialize, Serialize};
use statesync::{Replicator, SealKey};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

/// What the daemon can ask of the state sync task.
pub enum Command {
    Status(oneshot::Sender<StateSyncStatus>),
    /// Read every datagram already queued and install what it carries, then answer: a node
    /// about to take over VIPs must have the states in its kernel first.
    Flush(oneshot::Sender<()>),
    /// Ask the peers for a full table again (after this node was cut off from them).
    Resync,
    /// A planned hand-over (to the node named, or to whichever backup wins) is near: take in
    /// the kernel events already queued, send every state, and answer with the peers that
    /// confirmed holding all of it (every live peer; if the daemon's deadline passes first,
    /// the answer never comes). The peers hear whom the hand-over is for before they confirm.
    Barrier {
        to: Option<String>,
        reply: oneshot::Sender<Vec<statesync::NodeId>>,
    },
    /// The addresses the synced connections talk between (both ends of both directions, so
    /// NAT's too), each once, at most `max` of them.
    Endpoints {
        max: usize,
        reply: oneshot::Sender<Vec<IpAddr>>,
    },
}

/// What the task tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Whether CARP may stop demoting this node for state sync.
    Ready(bool),
    /// Conns installed from peers talk to these addresses, new since the last notice (a backup
    /// has the ones on its VIP interfaces resolved before it may need them).
    NewEndpoints(Vec<IpAddr>),
    /// Peer `from` is about to hand its VIPs to the node `to` (0: whichever backup wins).
    Handover {
        from: statesync::NodeId,
        to: statesync::NodeId,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateSyncStatus {
    pub enabled: bool,
    pub listen: String,
    pub peers: Vec<String>,
    /// The sealing key's public id (8 hex digits, the id every datagram's header carries):
    /// every node of the cluster must show the same one.
    #[serde(default)]
    pub key_id: String,
    /// The engine's own view: readiness, bulk sync, counters, per-peer lag.
    pub engine: Option<statesync::Status>,
    /// Kernel writes: conns installed and removed, and failures.
    pub installed: u64,
    pub removed: u64,
    pub install_errors: u64,
    pub overruns: u64,
    pub last_alarm: Option<String>,
    pub last_error: Option<String>,
}

/// Datagrams read in one go after the first (whatever the socket already holds): their
/// installs reach the kernel as one batch instead of one blocking call per datagram.
const MAX_DRAIN: usize = 64;
/// Conntrack events decoded ahead of the state sync task.
const EVENT_QUEUE: usize = 65_536;

pub struct Handle {
    pub commands: mpsc::Sender<Command>,
    pub notices: mpsc::Receiver<Notice>,
    /// Whether this node forwards new connections (master of at least one VIP): the daemon
    /// sets it on every transition. A node that does not forward installs a bulk sync without
    /// listening to the kernel's NEW events (see `statesync::Action::NewEvents`); one that
    /// does never stops listening. (A flush before a VIP is added counts as forwarding too.)
    pub forwarding: watch::Sender<bool>,
}

/// Why the state sync task gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The task is gone (or dropped the request).
    Gone,
    /// No answer within the deadline.
    Late,
}

/// Asks the state sync task something that it answers on a oneshot channel, waiting at most
/// `deadline` for the request to be taken and answered.
pub async fn ask<T>(
    commands: &mpsc::Sender<Command>,
    request: impl FnOnce(oneshot::Sender<T>) -> Command,
    deadline: Duration,
) -> Result<T, Unanswered> {
    let (reply, rx) = oneshot::channel();
    let asked = async {
        commands
            .send(request(reply))
            .await
            .map_err(|_| Unanswered::Gone)?;
        rx.await.map_err(|_| Unanswered::Gone)
    };
    tokio::time::timeout(deadline, asked)
        .await
        .map_err(|_| Unanswered::Late)?
}

/// The next notice, or never when state sync is off (for `select!`).
pub async fn next_notice(h: &mut Option<Handle>) -> Option<Notice> {
    match h {
        Some(h) => h.notices.recv().await,
        None => std::future::pending().await,
    }
}

/// A bulk phase as status and metrics name it (`done`, as in `--json`).
fn bulk_phase(p: statesync::BulkPhase) -> &'static str {
    match p {
        statesync::BulkPhase::Idle => "idle",
        statesync::BulkPhase::Requesting => "requesting",
        statesync::BulkPhase::Receiving => "receiving",
        statesync::BulkPhase::Done => "done",
        statesync::BulkPhase::Failed => "failed",
    }
}

/// One line for `tandem status`.
pub fn summary(s: &StateSyncStatus) -> String {
    let Some(e) = &s.engine else {
        return format!("{} key id {} (no engine status)", s.listen, s.key_id);
    };
    let alive = e.peers.iter().filter(|p| p.alive).count();
    let mut line = format!(
        "{} on {} key id {}, {} states, bulk {}, peers {}/{} alive, installed {} removed {}",
        if e.ready { "ready" } else { "NOT READY" },
        s.listen,
        s.key_id,
        e.states,
        bulk_phase(e.bulk.phase),
        alive,
        e.peers.len().max(s.peers.len()),
        s.installed,
        s.removed
    );
    let foreign = e
        .counters
        .rejected
        .get(&statesync::RejectReason::WrongKey)
        .copied()
        .unwrap_or(0);
    if foreign > 0 {
        line += &format!("; {foreign} datagrams under another key (compare key ids)");
    }
    if let Some(a) = &s.last_alarm {
        line += &format!("; alarm: {a}");
    }
    if let Some(err) = &s.last_error {
        line += &format!("; last error: {err}");
    }
    line
}

/// TCP window edges are not in ctnetlink, so they cannot be synced: after a failover (and a
/// failback) the taking node's entries, its own included, hold windows the connection has left
/// behind, and strict tracking would call the next segments invalid.
const TCP_BE_LIBERAL: (&str, &str, &str) = (
    "net.netfilter.nf_conntrack_tcp_be_liberal",
    "1",
    "TCP windows cannot be synced: after a takeover, segments must not be judged against windows the connection has moved past",
);

/// A node id every peer tells apart: derived from the node name (FNV-1a), never 0.
pub fn node_id(name: &str) -> statesync::NodeId {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    statesync::NodeId(h.max(1))
}

/// The sealing key of `[statesync] key`: its key material (as the config decoded it) byte
/// for byte, never read as text (where every byte that is not UTF-8 would read as U+FFFD, and
/// binary keys that differ only in such bytes would be one key).
fn seal_key(material: &[u8]) -> anyhow::Result<SealKey> {
    SealKey::from_secret(material).map_err(|e| anyhow::anyhow!("statesync key: {e}"))
}

/// A key id as status shows it: 8 hex digits.
fn key_id_text(key: &SealKey) -> String {
    format!("{:08x}", key.key_id())
}

/// What state sync takes from the OS generator at each start. The daemon draws it before it
/// changes anything (sysctls, ruleset, VIPs): a node that cannot read the generator does not
/// start (see `crate::random`).
pub struct Random {
    /// A new epoch every start: it is part of every nonce sealed under the cluster's key.
    epoch: u64,
    /// The engine's seed (its challenges).
    seed: u64,
}

impl Random {
    pub fn draw() -> anyhow::Result<Random> {
        Ok(Random {
            epoch: crate::random::u64("the state sync epoch")?,
            seed: crate::random::u64("the state sync engine's seed")?,
        })
    }
}

/// Opens everything (so configuration problems stop the daemon at start) and spawns the task.
pub async fn start(
    node: &str,
    settings: &StateSyncSettings,
    netlink: &linux::netlink::Netlink,
    random: Random,
) -> anyhow::Result<Handle> {
    for (name, value, why) in linux::conntrack::required_sysctls()
        .iter()
        .map(|s| (s.name, s.value, s.why))
        .chain(std::iter::once(TCP_BE_LIBERAL))
    {
        if linux::sysctl::read(name).ok().as_deref() != Some(value) {
            linux::sysctl::write(name, value)
                .with_context(|| format!("setting {name}={value} ({why})"))?;
            info!("set {name}={value} ({why})");
        }
    }
    let link = netlink.link(&settings.device).await.with_context(|| {
        format!(
            "statesync interface {} ({})",
            settings.interface, settings.device
        )
    })?;
    let local = netlink
        .address_details(link.index)
        .await?
        .into_iter()
        .find(|a| !a.tandem && !a.link_scope && a.addr.is_ipv4() == settings.peers[0].is_ipv4())
        .map(|a| a.addr)
        .with_context(|| {
            format!(
                "statesync interface {} ({}) has no address of the peers' family to listen on",
                settings.interface, settings.device
            )
        })?;
    let sock = bind(local, settings.port, &settings.device)?;
    let key = seal_key(&settings.key)?;
    let key_id = key_id_text(&key);
    let mut cfg = statesync::Config::new(node_id(node), random.epoch, key);
    cfg.mtu = 1400;
    // 64 datagrams per 1 ms tick (the engine default is 16): tokio wakes its timers late on a
    // busy machine, and with quiet bulk installs the receiver takes more than 16 per tick.
    cfg.burst = 64;
    let engine = Replicator::new(Instant::now(), cfg, random.seed)
        .map_err(|e| anyhow::anyhow!("statesync: {e}"))?;
    // Subscribe before the first dump, so no change falls between the two.
    let events = Events::subscribe(Groups::ALL).context("subscribing to conntrack events")?;
    let membership = events
        .membership()
        .context("a handle on the conntrack event groups")?;
    let ct = tokio::task::spawn_blocking(Conntrack::open)
        .await
        .context("conntrack thread")?
        .context("opening ctnetlink")?;
    let dumper = tokio::task::spawn_blocking(Conntrack::open)
        .await
        .context("conntrack thread")?
        .context("opening ctnetlink")?;
    let own_portid = ct.portid();
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    tokio::spawn(read_events(events, own_portid, ev_tx));
    let peers: Vec<SocketAddr> = settings
        .peers
        .iter()
        .map(|a| SocketAddr::new(*a, settings.port))
        .collect();
    let (ctl_tx, ctl_rx) = mpsc::channel(16);
    let (note_tx, note_rx) = mpsc::channel(16);
    let (fwd_tx, fwd_rx) = watch::channel(false);
    info!(
        "state sync on {} ({}) {}:{} with {} peer(s), node id {}, key id {key_id}",
        settings.interface,
        settings.device,
        local,
        settings.port,
        peers.len(),
        node_id(node).0
    );
    let task = task::Task {
        engine,
        sock,
        ct: Some(ct),
        inflight: None,
        dumper: Some(dumper),
        dump_inflight: None,
        dump_again: false,
        membership,
        forwarding: Some(fwd_rx),
        peers,
        status: StateSyncStatus {
            enabled: true,
            listen: format!("{local}:{}", settings.port),
            peers: settings.peers.iter().map(ToString::to_string).collect(),
            key_id: key_id.clone(),
            engine: None,
            installed: 0,
            removed: 0,
            install_errors: 0,
            overruns: 0,
            last_alarm: None,
            last_error: None,
        },
        notices: note_tx,
        barriers: Vec::new(),
        next_nonce: 0,
        endpoints_seen: Default::default(),
        endpoints_fresh: Vec::new(),
        endpoints_told: Instant::now(),
    };
    tokio::spawn(task.run(ev_rx, ctl_rx));
    Ok(Handle {
        commands: ctl_tx,
        notices: note_rx,
        forwarding: fwd_tx,
    })
}

/// Reads conntrack events on a task of its own, so the kernel's event queue keeps draining
/// while the state sync task waits for a batch install on the blocking pool (a bulk sync of
/// 100k states used to overrun a 32 MiB event buffer with the echoes of its own installs, and
/// the re-dump that follows an overrun stalled it for ~150 ms). Our own installs come back as
/// events carrying our request socket's port id; they are dropped here (the engine would
/// recognise them, but they need not even get that far).
///
/// An overrun is passed on only once the socket's queue has been read empty. The kernel
/// reports ENOBUFS once and then drops further events *silently* until the queue has been
/// emptied (netlink's NETLINK_S_CONGESTED): a dump taken before that point misses the conns
/// whose events are dropped after it started, and they stayed unknown until the next periodic
/// dump (30 s; a burst of 200k new conns on fw1 reached fw2 after ~26-30 s). Once the queue
/// is empty, any further loss is reported again, and the dump that follows covers everything
/// lost so far.
async fn read_events(
    mut events: Events,
    own_portid: u32,
    tx: mpsc::Sender<Result<EventItem, ConntrackError>>,
) {
    let mut overrun = false;
    loop {
        let item = if overrun {
            // `Events::next` only awaits the socket's readiness: cancelling it loses nothing.
            match tokio::time::timeout(Duration::ZERO, events.next()).await {
                Ok(item) => item,
                Err(_) => {
                    overrun = false;
                    if tx.send(Ok(EventItem::Overrun)).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        } else {
            events.next().await
        };
        if matches!(item, Ok(EventItem::Overrun)) {
            overrun = true;
            continue;
        }
        let failed = item.is_err();
        if let Ok(EventItem::Event(ev)) = &item {
            if own_portid != 0 && ev.portid == own_portid {
                continue;
            }
        }
        if tx.send(item).await.is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn bind(local: IpAddr, port: u16, device: &str) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if local.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // Only the sync link carries state sync.
    s.bind_device(Some(device.as_bytes()))
        .with_context(|| format!("binding the statesync socket to {device}"))?;
    s.set_recv_buffer_size(8 << 20).ok();
    s.set_send_buffer_size(8 << 20).ok();
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(local, port).into())
        .with_context(|| format!("binding the statesync socket to {local}:{port}"))?;
    Ok(UdpSocket::from_std(s.into())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two key files that differ only in bytes that are not UTF-8 are two keys: a node holding
    /// the other one is foreign, its datagrams do not open.
    #[test]
    fn binary_keys_differing_only_in_non_utf8_bytes_seal_apart() {
        let a = [&b"tandem sync key "[..], &[0xff, 0x80, 0xfe, 0xc0]].concat();
        let b = [&b"tandem sync key "[..], &[0xfe, 0xbf, 0xff, 0xc1]].concat();
        let ka = seal_key(&a).expect("key a");
        let kb = seal_key(&b).expect("key b");
        assert_ne!(ka.key_id(), kb.key_id());
        let header = statesync::wire::Header {
            kind: statesync::wire::Kind::Control,
            key_id: ka.key_id(),
            node: statesync::NodeId(1),
            epoch: 1,
            seq: 1,
        };
        let d = statesync::Sealer::new(&ka).seal_datagram(&header, b"forged states");
        assert!(statesync::Sealer::new(&kb).open_datagram(&d).is_err());
        // Text keys keep the key they had.
        assert_eq!(
            seal_key(b"correct horse battery staple")
                .expect("text")
                .key_id(),
            0x6284_d9a2
        );
    }
}
