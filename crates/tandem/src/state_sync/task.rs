//! The state sync task: the replicator engine driven by its UDP socket, the kernel's conntrack
//! events and the daemon's commands; its actions carried out (datagrams first, kernel writes
//! batched on the blocking pool).

use super::{Command, Notice, StateSyncStatus, MAX_DRAIN};
use linux::conntrack::{Conntrack, ConntrackError, EventItem, EventKind, Groups, Membership, Op};
use statesync::{Action, Alarm, Dest, Input, LocalEvent, Replicator};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

pub(super) struct Task {
    pub(super) engine: Replicator,
    pub(super) sock: UdpSocket,
    /// Taken while a blocking kernel call runs on the blocking pool.
    pub(super) ct: Option<Conntrack>,
    /// The kernel write under way (installs or removes), if any: it runs on the blocking pool
    /// while this task goes on decoding datagrams (on another core), and gives the request
    /// socket back when done. One at a time, so writes reach the kernel in the engine's order.
    pub(super) inflight: Option<tokio::task::JoinHandle<(Conntrack, Written)>>,
    /// A request socket of its own for dumps, so a dump (the kernel walks the conntrack hash
    /// of every namespace: tens of ms, more with big tables next door) runs beside the
    /// installs instead of holding them up; taken while one runs.
    pub(super) dumper: Option<Conntrack>,
    pub(super) dump_inflight: Option<tokio::task::JoinHandle<(Conntrack, Dumped)>>,
    /// Another dump was asked for while one ran: it starts when that one lands.
    pub(super) dump_again: bool,
    /// Joins and leaves the event socket's NEW group (quiet bulk installs).
    pub(super) membership: Membership,
    /// Whether the node forwards (the daemon's word); `None` once the daemon dropped it.
    pub(super) forwarding: Option<watch::Receiver<bool>>,
    pub(super) peers: Vec<SocketAddr>,
    pub(super) status: StateSyncStatus,
    pub(super) notices: mpsc::Sender<Notice>,
    /// Barriers under way: their nonce and who waits for the answer.
    pub(super) barriers: Vec<(u64, oneshot::Sender<Vec<statesync::NodeId>>)>,
    pub(super) next_nonce: u64,
    /// Endpoints of the conns installed from peers so far (at most [`MAX_ENDPOINTS_SEEN`]),
    /// and the ones the daemon has not been told of yet (it has them resolved on a backup).
    pub(super) endpoints_seen: std::collections::HashSet<std::net::IpAddr>,
    pub(super) endpoints_fresh: Vec<std::net::IpAddr>,
    pub(super) endpoints_told: Instant,
}

/// What a kernel write did: installs or removes, how many, and the errors.
pub(super) struct Written {
    install: bool,
    n: u64,
    failed: Vec<String>,
}

type Dumped = Result<Vec<statesync::model::Conn>, ConntrackError>;

/// Most endpoints remembered as seen (beyond it, the daemon's periodic round covers them).
const MAX_ENDPOINTS_SEEN: usize = 65_536;
/// The daemon hears of new endpoints at most this often.
const ENDPOINTS_NOTICE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl Task {
    pub(super) async fn run(
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
            self.tell_endpoints();
            let sleep = crate::deadline::sleep_until(self.engine.poll_timeout().map(|(t, _)| t));
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
                    Some(ev) => self.on_event(ev).await,
                    None => return,
                },
                _ = sleep => self.engine.handle_timeout(Instant::now()),
                w = landed(&mut self.inflight) => self.written(w),
                d = landed(&mut self.dump_inflight) => self.dumped(d),
                f = forwarding_changed(&mut self.forwarding) => match f {
                    Some(f) => self.engine.handle(Instant::now(), Input::Forwarding(f)),
                    None => self.forwarding = None,
                },
                cmd = ctl.recv() => match cmd {
                    Some(Command::Status(reply)) => {
                        let mut s = self.status.clone();
                        s.engine = Some(self.engine.status(Instant::now()));
                        let _ = reply.send(s);
                    }
                    Some(Command::Flush(reply)) => {
                        // A VIP is about to be added: from now on this node forwards, so it
                        // listens to NEW events again before it answers (see quiet.rs).
                        self.engine.handle(Instant::now(), Input::Forwarding(true));
                        self.drain_socket(&mut buf, usize::MAX);
                        self.execute().await;
                        self.settle().await;
                        let _ = reply.send(());
                    }
                    Some(Command::Resync) => self.engine.handle(Instant::now(), Input::Resync),
                    Some(Command::Endpoints { max, reply }) => {
                        let _ = reply.send(self.endpoints(max));
                    }
                    Some(Command::Barrier { to, reply }) => {
                        // What the kernel reported up to now is part of "every state".
                        while let Ok(ev) = events.try_recv() {
                            self.on_event(ev).await;
                        }
                        self.next_nonce += 1;
                        let nonce = self.next_nonce;
                        self.barriers.retain(|(_, r)| !r.is_closed());
                        self.barriers.push((nonce, reply));
                        let handover_to = to
                            .as_deref()
                            .map_or(statesync::NodeId(0), super::node_id);
                        self.engine
                            .handle(Instant::now(), Input::Barrier { nonce, handover_to });
                    }
                    None => return,
                },
            }
        }
    }

    fn note_endpoints(&mut self, conns: &[statesync::model::Conn]) {
        for c in conns {
            for a in [c.orig.src, c.orig.dst, c.reply.src, c.reply.dst] {
                if self.endpoints_seen.len() < MAX_ENDPOINTS_SEEN && self.endpoints_seen.insert(a) {
                    self.endpoints_fresh.push(a);
                }
            }
        }
    }

    /// Tells the daemon of endpoints it has not heard of (at most every 200 ms; the rest wait
    /// for the next turn of the loop, a heartbeat at the latest).
    fn tell_endpoints(&mut self) {
        if self.endpoints_fresh.is_empty() || self.endpoints_told.elapsed() < ENDPOINTS_NOTICE_EVERY
        {
            return;
        }
        let fresh = std::mem::take(&mut self.endpoints_fresh);
        if let Err(mpsc::error::TrySendError::Full(Notice::NewEndpoints(back))) =
            self.notices.try_send(Notice::NewEndpoints(fresh))
        {
            // The daemon is busy: they go with the next notice.
            self.endpoints_fresh = back;
            return;
        }
        self.endpoints_told = Instant::now();
    }

    fn endpoints(&self, max: usize) -> Vec<std::net::IpAddr> {
        let mut seen = std::collections::BTreeSet::new();
        for c in self.engine.conns() {
            for a in [c.orig.src, c.orig.dst, c.reply.src, c.reply.dst] {
                if seen.len() >= max {
                    return seen.into_iter().collect();
                }
                seen.insert(a);
            }
        }
        seen.into_iter().collect()
    }

    async fn on_event(&mut self, ev: Result<EventItem, ConntrackError>) {
        match ev {
            Ok(EventItem::Event(ev)) => {
                let local = match ev.kind {
                    EventKind::New => LocalEvent::New(ev.conn),
                    EventKind::Update => LocalEvent::Update(ev.conn),
                    EventKind::Destroy => LocalEvent::Destroy(ev.conn),
                };
                self.engine.handle(Instant::now(), Input::Local(local));
            }
            Ok(EventItem::Overrun) => {
                self.status.overruns += 1;
                warn!("conntrack events overran the receive buffer; dumping the table again");
                self.dump();
            }
            Err(e) => {
                self.status.last_error = Some(format!("conntrack events: {e}"));
                error!("conntrack events: {e}");
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

    /// Waits for the kernel write under way, if any.
    async fn settle(&mut self) {
        if self.inflight.is_some() {
            let w = landed(&mut self.inflight).await;
            self.written(w);
        }
    }

    /// A kernel write is done: the request socket is back, its outcome counted.
    fn written(&mut self, w: Result<(Conntrack, Written), tokio::task::JoinError>) {
        match w {
            Ok((ct, w)) => {
                self.ct = Some(ct);
                let failed = w.failed.len() as u64;
                if w.install {
                    self.status.installed += w.n.saturating_sub(failed);
                    self.note_errors("install", w.failed);
                } else {
                    self.status.removed += w.n.saturating_sub(failed);
                    self.note_errors("remove", w.failed);
                }
            }
            Err(e) => {
                error!("conntrack thread died: {e}; state sync stops writing to the kernel")
            }
        }
    }

    /// Starts a kernel write on the blocking pool once the one before it is done; returns at
    /// once ([`Task::settle`] waits for it).
    async fn write(&mut self, f: impl FnOnce(&mut Conntrack) -> Written + Send + 'static) {
        self.settle().await;
        let Some(mut ct) = self.ct.take() else {
            return;
        };
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            let w = f(&mut ct);
            (ct, w)
        }));
    }

    /// Starts a dump on the blocking pool (or, if one runs, another once it lands); the
    /// engine hears [`Input::DumpStarted`] now and the snapshot when it lands, and handles the
    /// events and datagrams in between as usual (what they touch is newer than the dump).
    fn dump(&mut self) {
        if self.dump_inflight.is_some() {
            self.dump_again = true;
            return;
        }
        let Some(mut ct) = self.dumper.take() else {
            return;
        };
        self.engine.handle(Instant::now(), Input::DumpStarted);
        self.dump_inflight = Some(tokio::task::spawn_blocking(move || {
            let r = ct.dump();
            (ct, r)
        }));
    }

    fn dumped(&mut self, d: Result<(Conntrack, Dumped), tokio::task::JoinError>) {
        match d {
            Ok((ct, r)) => {
                self.dumper = Some(ct);
                match r {
                    Ok(conns) => self
                        .engine
                        .handle(Instant::now(), Input::LocalSnapshot(conns)),
                    Err(e) => {
                        self.status.last_error = Some(format!("conntrack dump: {e}"));
                        error!("conntrack dump: {e}");
                    }
                }
            }
            Err(e) => error!("conntrack dump thread died: {e}; no more dumps"),
        }
        if std::mem::take(&mut self.dump_again) {
            self.dump();
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
                Action::SendAfterKernel { to, bytes } => {
                    self.settle().await;
                    self.send(to, &bytes).await
                }
                Action::BarrierDone { nonce, confirmed } => {
                    if let Some(i) = self.barriers.iter().position(|(n, _)| *n == nonce) {
                        let (_, reply) = self.barriers.swap_remove(i);
                        let _ = reply.send(confirmed);
                    }
                }
                Action::HandoverRequested { from, to } => {
                    let _ = self.notices.send(Notice::Handover { from, to }).await;
                }
                Action::Install(mut conns) => {
                    // Consecutive batches (one per datagram) go to the kernel as one.
                    while let Some(Action::Install(more)) = actions.front_mut() {
                        conns.append(more);
                        actions.pop_front();
                    }
                    self.note_endpoints(&conns);
                    self.write(move |ct| {
                        let ops: Vec<Op<'_>> = conns.iter().map(Op::Create).collect();
                        let failed = ct
                            .apply(&ops)
                            .iter()
                            .filter_map(|r| r.as_ref().err().map(ToString::to_string))
                            .collect();
                        Written {
                            install: true,
                            n: ops.len() as u64,
                            failed,
                        }
                    })
                    .await;
                }
                Action::Remove(mut keys) => {
                    while let Some(Action::Remove(more)) = actions.front_mut() {
                        keys.append(more);
                        actions.pop_front();
                    }
                    self.write(move |ct| {
                        let ops: Vec<Op<'_>> = keys.iter().map(Op::Delete).collect();
                        let failed = ct
                            .apply(&ops)
                            .iter()
                            .filter_map(|r| match r {
                                Err(e) if !e.is_not_found() => Some(e.to_string()),
                                _ => None,
                            })
                            .collect();
                        Written {
                            install: false,
                            n: ops.len() as u64,
                            failed,
                        }
                    })
                    .await;
                }
                Action::ReadyChanged(ready) => {
                    // Ready means the states are in the kernel, not on their way.
                    self.settle().await;
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
                Action::RequestDump => self.dump(),
                Action::NewEvents(on) => self.new_events(on),
            }
        }
    }

    /// Joins (`true`) or leaves the kernel's NEW events. A failed leave only costs speed; a
    /// failed join is loud: the dump that follows and the periodic ones still find the conns
    /// whose NEW event does not come.
    fn new_events(&mut self, on: bool) {
        let r = if on {
            self.membership.join(Groups::NEW)
        } else {
            self.membership.leave(Groups::NEW)
        };
        match r {
            Ok(()) if on => debug!("listening to NEW conntrack events again"),
            Ok(()) => debug!("bulk sync: not listening to NEW conntrack events meanwhile"),
            Err(e) => {
                error!("conntrack events: {e}");
                self.status.last_error = Some(format!("conntrack events: {e}"));
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

/// The daemon's next word on forwarding; `None` when it dropped the sender (then never again).
async fn forwarding_changed(rx: &mut Option<watch::Receiver<bool>>) -> Option<bool> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(*rx.borrow_and_update()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// The kernel call under way, once done (never while there is none).
async fn landed<T>(
    h: &mut Option<tokio::task::JoinHandle<(Conntrack, T)>>,
) -> Result<(Conntrack, T), tokio::task::JoinError> {
    let r = match h.as_mut() {
        Some(j) => j.await,
        None => std::future::pending().await,
    };
    *h = None;
    r
}
