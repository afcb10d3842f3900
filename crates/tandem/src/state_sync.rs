//! Connection state sync as the daemon runs it: the replicator engine (crate `statesync`) tied
//! to its UDP socket on the sync link and to the kernel's conntrack table.
//!
//! It runs as its own task so a bulk install never stalls CARP; the daemon talks to it over a
//! channel: status, readiness (which demotes CARP), and a flush before VIPs are taken.

use crate::config::StateSyncSettings;
use anyhow::Context;
use linux::conntrack::{Conntrack, ConntrackError, EventItem, EventKind, Events, Groups, Op};
use serde::{Deserialize, Serialize};
use statesync::{Action, Alarm, Dest, Input, LocalEvent, Replicator, SealKey};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

/// What the daemon can ask of the state sync task.
pub enum Command {
    Status(oneshot::Sender<StateSyncStatus>),
    /// Read every datagram already queued and install what it carries, then answer: a node
    /// about to take over VIPs must have the states in its kernel first.
    Flush(oneshot::Sender<()>),
    /// Ask the peers for a full table again (after this node was cut off from them).
    Resync,
}

/// What the task tells the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Whether CARP may stop demoting this node for state sync.
    Ready(bool),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateSyncStatus {
    pub enabled: bool,
    pub listen: String,
    pub peers: Vec<String>,
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
}

/// The next notice, or never when state sync is off (for `select!`).
pub async fn next_notice(rx: &mut Option<mpsc::Receiver<Notice>>) -> Option<Notice> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One line for `tandem status`.
pub fn summary(s: &StateSyncStatus) -> String {
    let Some(e) = &s.engine else {
        return format!("{} (no engine status)", s.listen);
    };
    let alive = e.peers.iter().filter(|p| p.alive).count();
    let mut line = format!(
        "{} on {}, {} states, bulk {:?}, peers {}/{} alive, installed {} removed {}",
        if e.ready { "ready" } else { "NOT READY" },
        s.listen,
        e.states,
        e.bulk.phase,
        alive,
        e.peers.len().max(s.peers.len()),
        s.installed,
        s.removed
    );
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
fn node_id(name: &str) -> statesync::NodeId {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    statesync::NodeId(h.max(1))
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u64::from_ne_bytes(b)
}

/// Opens everything (so configuration problems stop the daemon at start) and spawns the task.
pub async fn start(
    node: &str,
    settings: &StateSyncSettings,
    netlink: &linux::netlink::Netlink,
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
    let key = SealKey::from_passphrase(&String::from_utf8_lossy(&settings.key))
        .map_err(|e| anyhow::anyhow!("statesync key: {e}"))?;
    let mut cfg = statesync::Config::new(node_id(node), random_u64(), key);
    cfg.mtu = 1400;
    let engine = Replicator::new(Instant::now(), cfg, random_u64())
        .map_err(|e| anyhow::anyhow!("statesync: {e}"))?;
    // Subscribe before the first dump, so no change falls between the two.
    let events = Events::subscribe(Groups::ALL).context("subscribing to conntrack events")?;
    let ct = tokio::task::spawn_blocking(Conntrack::open)
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
    info!(
        "state sync on {} ({}) {}:{} with {} peer(s), node id {}",
        settings.interface,
        settings.device,
        local,
        settings.port,
        peers.len(),
        node_id(node).0
    );
    let task = Task {
        engine,
        sock,
        ct: Some(ct),
        peers,
        status: StateSyncStatus {
            enabled: true,
            listen: format!("{local}:{}", settings.port),
            peers: settings.peers.iter().map(ToString::to_string).collect(),
            engine: None,
            installed: 0,
            removed: 0,
            install_errors: 0,
            overruns: 0,
            last_alarm: None,
            last_error: None,
        },
        notices: note_tx,
    };
    tokio::spawn(task.run(ev_rx, ctl_rx));
    Ok(Handle {
        commands: ctl_tx,
        notices: note_rx,
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

struct Task {
    engine: Replicator,
    sock: UdpSocket,
    /// Taken while a blocking kernel call runs on the blocking pool.
    ct: Option<Conntrack>,
    peers: Vec<SocketAddr>,
    status: StateSyncStatus,
    notices: mpsc::Sender<Notice>,
}

impl Task {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Result<EventItem, ConntrackError>>,
        mut ctl: mpsc::Receiver<Command>,
    ) {
        let now = Instant::now();
        for p in self.peers.clone() {
            self.engine.handle(now, Input::PeerUp(p));
        }
        // The first dump comes when the engine asks for it (Action::RequestDump, at start).
        let mut buf = vec![0u8; 65_536];
        loop {
            self.execute().await;
            let sleep = crate::daemon::sleep_until(self.engine.poll_timeout().map(|(t, _)| t));
            tokio::select! {
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        self.engine.handle(
                            Instant::now(),
                            Input::Datagram { from, bytes: buf[..n].to_vec() },
                        );
                        self.drain_socket(&mut buf, MAX_DRAIN);
                    }
                    Err(e) => debug!("statesync receive: {e}"),
                },
                ev = events.recv() => match ev {
                    Some(Ok(EventItem::Event(ev))) => {
                        let local = match ev.kind {
                            EventKind::New => LocalEvent::New(ev.conn),
                            EventKind::Update => LocalEvent::Update(ev.conn),
                            EventKind::Destroy => LocalEvent::Destroy(ev.conn),
                        };
                        self.engine.handle(Instant::now(), Input::Local(local));
                    }
                    Some(Ok(EventItem::Overrun)) => {
                        self.status.overruns += 1;
                        warn!("conntrack events overran the receive buffer; dumping the table again");
                        self.dump().await;
                    }
                    Some(Err(e)) => {
                        self.status.last_error = Some(format!("conntrack events: {e}"));
                        error!("conntrack events: {e}");
                    }
                    None => return,
                },
                _ = sleep => self.engine.handle_timeout(Instant::now()),
                cmd = ctl.recv() => match cmd {
                    Some(Command::Status(reply)) => {
                        let mut s = self.status.clone();
                        s.engine = Some(self.engine.status(Instant::now()));
                        let _ = reply.send(s);
                    }
                    Some(Command::Flush(reply)) => {
                        self.drain_socket(&mut buf, usize::MAX);
                        self.execute().await;
                        let _ = reply.send(());
                    }
                    Some(Command::Resync) => self.engine.handle(Instant::now(), Input::Resync),
                    None => return,
                },
            }
        }
    }

    /// Hands the engine up to `max` datagrams the socket already holds.
    fn drain_socket(&mut self, buf: &mut [u8], max: usize) {
        let mut left = max;
        while left > 0 {
            let Ok((n, from)) = self.sock.try_recv_from(buf) else {
                break;
            };
            left -= 1;
            self.engine.handle(
                Instant::now(),
                Input::Datagram {
                    from,
                    bytes: buf[..n].to_vec(),
                },
            );
        }
    }

    /// Runs a blocking conntrack call on the blocking pool.
    async fn kernel<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Conntrack) -> T + Send + 'static,
    ) -> Option<T> {
        let mut ct = self.ct.take()?;
        match tokio::task::spawn_blocking(move || {
            let r = f(&mut ct);
            (ct, r)
        })
        .await
        {
            Ok((ct, r)) => {
                self.ct = Some(ct);
                Some(r)
            }
            Err(e) => {
                error!("conntrack thread died: {e}; state sync stops writing to the kernel");
                None
            }
        }
    }

    async fn dump(&mut self) {
        self.engine.handle(Instant::now(), Input::DumpStarted);
        match self.kernel(|ct| ct.dump()).await {
            Some(Ok(conns)) => self
                .engine
                .handle(Instant::now(), Input::LocalSnapshot(conns)),
            Some(Err(e)) => {
                self.status.last_error = Some(format!("conntrack dump: {e}"));
                error!("conntrack dump: {e}");
            }
            None => {}
        }
    }

    async fn send(&mut self, to: Dest, bytes: &[u8]) {
        let targets = match to {
            Dest::All => self.peers.clone(),
            Dest::Peer(p) => vec![p],
        };
        for t in targets {
            if let Err(e) = self.sock.send_to(bytes, t).await {
                debug!("statesync send to {t}: {e}");
            }
        }
    }

    async fn execute(&mut self) {
        let mut sends = std::collections::VecDeque::new();
        let mut actions = std::collections::VecDeque::new();
        loop {
            for a in std::iter::from_fn(|| self.engine.poll_action()) {
                match a {
                    Action::Send { to, bytes } => sends.push_back((to, bytes)),
                    other => actions.push_back(other),
                }
            }
            // Datagrams go first: a peer waiting for us (a bulk request, a probe's answer, a
            // NACK) is not kept waiting behind kernel work queued before it (the start-up dump
            // alone takes 10-30 ms: the kernel walks the whole, all-namespace conntrack hash).
            if let Some((to, bytes)) = sends.pop_front() {
                self.send(to, &bytes).await;
                continue;
            }
            let Some(action) = actions.pop_front() else {
                return;
            };
            match action {
                Action::Send { to, bytes } => self.send(to, &bytes).await,
                Action::Install(mut conns) => {
                    // Consecutive batches (one per datagram) go to the kernel as one.
                    while let Some(Action::Install(more)) = actions.front_mut() {
                        conns.append(more);
                        actions.pop_front();
                    }
                    let n = conns.len() as u64;
                    let failed = self
                        .kernel(move |ct| {
                            let ops: Vec<Op<'_>> = conns.iter().map(Op::Create).collect();
                            let res = ct.apply(&ops);
                            let errs: Vec<String> = res
                                .iter()
                                .filter_map(|r| r.as_ref().err().map(ToString::to_string))
                                .collect();
                            errs
                        })
                        .await
                        .unwrap_or_default();
                    self.status.installed += n - failed.len() as u64;
                    self.note_errors("install", failed);
                }
                Action::Remove(mut keys) => {
                    while let Some(Action::Remove(more)) = actions.front_mut() {
                        keys.append(more);
                        actions.pop_front();
                    }
                    let n = keys.len() as u64;
                    let failed = self
                        .kernel(move |ct| {
                            let ops: Vec<Op<'_>> = keys.iter().map(Op::Delete).collect();
                            ct.apply(&ops)
                                .iter()
                                .filter_map(|r| match r {
                                    Err(e) if !e.is_not_found() => Some(e.to_string()),
                                    _ => None,
                                })
                                .collect::<Vec<_>>()
                        })
                        .await
                        .unwrap_or_default();
                    self.status.removed += n - failed.len() as u64;
                    self.note_errors("remove", failed);
                }
                Action::ReadyChanged(ready) => {
                    info!(
                        "state sync {}",
                        if ready {
                            "ready: bulk sync complete"
                        } else {
                            "not ready"
                        }
                    );
                    let _ = self.notices.send(Notice::Ready(ready)).await;
                }
                Action::Alarm(alarm) => {
                    error!("state sync alarm: {alarm}");
                    self.status.last_alarm = Some(alarm.to_string());
                    // Like pfsync: after the bounded retries, stop holding the node back (there
                    // may be no peer at all), but say so loudly and keep it in status.
                    if matches!(alarm, Alarm::BulkFailed { .. }) {
                        let _ = self.notices.send(Notice::Ready(true)).await;
                    }
                }
                Action::RequestDump => self.dump().await,
            }
        }
    }

    fn note_errors(&mut self, what: &str, errors: Vec<String>) {
        if let Some(first) = errors.first() {
            self.status.install_errors += errors.len() as u64;
            warn!("conntrack {what}: {} failed, first: {first}", errors.len());
            self.status.last_error = Some(format!("{what}: {first}"));
        }
    }
}
