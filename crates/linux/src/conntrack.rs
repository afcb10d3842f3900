//! Netfilter conntrack over ctnetlink: dump, events, and create / update / delete, NAT included.
//!
//! No crate covers creating entries with NAT, so the messages are written against the kernel's
//! attributes (see `nf_conntrack_netlink.c`) in the pure conntrack crate: [`conntrack::msg`] is
//! the codec, [`conntrack::model::Conn`] the model (also reachable as `statesync::model`).
//! This module does the socket I/O.
//!
//! Two handles, one socket each:
//! - [`Conntrack`]: requests. **Blocking** (the kernel processes netlink requests inside
//!   `sendmsg`, so a call takes microseconds, a bulk [`Conntrack::apply`] of 100k entries a
//!   few hundred milliseconds): run it on a dedicated thread or `spawn_blocking`. Bulk writes
//!   put as many messages as fit in [`Conntrack::set_batch_bytes`] (64 KiB by default, the
//!   best measured) into one `sendmsg`; only the last asks for an ACK, errors come back by
//!   sequence number.
//! - [`Events`]: NEW / UPDATE / DESTROY multicast events, **async** on tokio (needs a runtime
//!   with I/O enabled). A full receive buffer shows up as [`EventItem::Overrun`]: events were
//!   lost and the caller must dump again. Subscribe *before* dumping, so nothing falls between.
//!
//! Kernel behaviour this relies on (checked against 6.18):
//! - a create needs `CTA_TIMEOUT`; `CTA_STATUS` must keep `IPS_CONFIRMED` (set by the kernel
//!   before it applies the status) and must not carry `IPS_EXPECTED` / `IPS_DYING` (EBUSY);
//!   NAT bits in it are ignored: NAT comes from `CTA_NAT_SRC` / `CTA_NAT_DST`, applied to the
//!   untranslated reply tuple, which is what sets `IPS_SRC_NAT` / `IPS_DST_NAT`;
//! - NAT, helper and master can only be given on create: an update carrying them is refused
//!   (EOPNOTSUPP). So [`Conntrack::create`] is create-or-update: `NLM_F_CREATE|NLM_F_EXCL`, and
//!   on EEXIST a second message with what may change. (EEXIST also comes when another entry
//!   already has the same *reply* tuple; the update then fails with ENOENT.)
//! - TCP window edges are not exposed, so injected TCP entries get `IP_CT_TCP_FLAG_BE_LIBERAL`
//!   in both directions (on by default, [`Conntrack::set_tcp_be_liberal`]); the window scale is
//!   applied only if `IP_CT_TCP_FLAG_WINDOW_SCALE` is set in both directions' flags;
//! - `SEEN_REPLY` and `ASSURED` can only be set, never cleared (EBUSY): an update that would
//!   clear them is retried without `CTA_STATUS`.
//! - events need `net.netfilter.nf_conntrack_events=1`: see [`required_sysctls`].

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use conntrack::model::{Conn, ConnKey};
use conntrack::msg::{self, BuildOpts, Message, MsgBuf};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use tokio::io::unix::AsyncFd;

pub use conntrack::msg::{CtDecodeError, DecodeProblem, EncodeError};

/// Default receive buffer of an [`Events`] socket (the kernel doubles what is asked).
pub const DEFAULT_EVENT_RCVBUF: usize = 32 << 20;
/// Receive buffer of a [`Conntrack`] socket: room for the errors of one batch.
const REQUEST_RCVBUF: usize = 8 << 20;
/// Send buffer of a [`Conntrack`] socket: a batch must fit (`len <= sk_sndbuf - 32`).
const REQUEST_SNDBUF: usize = 4 << 20;
/// Largest datagram a recv accepts; dump datagrams are at most 32 KiB.
const RECV_BUF: usize = 256 << 10;
/// A request socket gives up on the kernel after this long.
const RECV_TIMEOUT: Duration = Duration::from_secs(30);

/// Every error of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConntrackError {
    /// A socket operation failed.
    #[error("conntrack netlink: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a request (the errno it sent back).
    #[error("kernel refused conntrack {op}: {source}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        /// "create", "update", "delete", "get", "dump", "flush".
        op: &'static str,
        /// The errno as an io::Error (`raw_os_error()` gives it).
        #[source]
        source: io::Error,
        /// The kernel's extended-ack message, if it gave one.
        message: Option<String>,
    },
    /// A message from the kernel did not decode.
    #[error("malformed conntrack message: {0}")]
    Decode(#[from] CtDecodeError),
    /// The connection cannot be put into a request.
    #[error("cannot encode conntrack entry: {0}")]
    Encode(#[from] EncodeError),
    /// The kernel's answer to this request was lost (our receive buffer overflowed): whether it
    /// was applied is unknown.
    #[error("the kernel's answer to this conntrack request was lost (receive buffer overrun)")]
    Lost,
}

impl ConntrackError {
    /// The kernel's errno, for [`ConntrackError::Kernel`] (and I/O errors that carry one).
    pub fn errno(&self) -> Option<i32> {
        match self {
            ConntrackError::Kernel { source, .. } | ConntrackError::Io { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }

    /// The entry does not exist (ENOENT).
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }

    /// The entry already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    fn kernel(op: &'static str, errno: i32, message: Option<String>) -> ConntrackError {
        ConntrackError::Kernel {
            op,
            source: io::Error::from_raw_os_error(errno),
            message,
        }
    }

    fn io(what: &'static str, source: io::Error) -> ConntrackError {
        ConntrackError::Io { what, source }
    }
}

/// One write of a batch.
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    /// Create the entry, or update it if it exists ([`Conntrack::create`]).
    Create(&'a Conn),
    /// Update an existing entry ([`Conntrack::update`]).
    Update(&'a Conn),
    /// Delete an entry ([`Conntrack::delete`]).
    Delete(&'a ConnKey),
}

/// What a successful write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new entry.
    Created,
    /// An existing entry was changed.
    Updated,
    /// The entry was deleted.
    Deleted,
}

/// A sysctl the daemon sets (and reports) for conntrack sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredSysctl {
    /// Dotted name, for [`crate::sysctl`].
    pub name: &'static str,
    /// Value to set.
    pub value: &'static str,
    /// Why, for the operator.
    pub why: &'static str,
}

/// The sysctls conntrack sync needs, per network namespace. Kernel defaults that are already
/// right are listed too, so the daemon can report if someone changed them.
///
/// `net.netfilter.nf_conntrack_tcp_be_liberal` is *not* needed: injected entries carry the
/// per-connection BE_LIBERAL flag instead.
pub fn required_sysctls() -> &'static [RequiredSysctl] {
    &[
        RequiredSysctl {
            name: "net.netfilter.nf_conntrack_events",
            value: "1",
            why: "with the default 2 (\"auto\") the kernel attaches the event cache to a \
                  connection only if a ctnetlink listener exists when it is created: \
                  connections opened before the daemon subscribed (or while it restarted) \
                  would never report UPDATE or DESTROY",
        },
        RequiredSysctl {
            name: "net.netfilter.nf_conntrack_tcp_loose",
            value: "1",
            why: "(the default) lets a node pick up an established TCP connection mid-stream \
                  when its state has not been synced yet, instead of dropping it as invalid",
        },
    ]
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every network namespace of the machine, so
/// a create in one namespace and its replica's event in another can be compared (the state
/// sync benchmark's lag).
pub fn clock_monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Which events to subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Groups(u32);

impl Groups {
    /// `NFNLGRP_CONNTRACK_NEW`.
    pub const NEW: Groups = Groups(1 << 0);
    /// `NFNLGRP_CONNTRACK_UPDATE`.
    pub const UPDATE: Groups = Groups(1 << 1);
    /// `NFNLGRP_CONNTRACK_DESTROY`.
    pub const DESTROY: Groups = Groups(1 << 2);
    /// All three.
    pub const ALL: Groups = Groups(0b111);
}

impl std::ops::BitOr for Groups {
    type Output = Groups;
    fn bitor(self, rhs: Groups) -> Groups {
        Groups(self.0 | rhs.0)
    }
}

/// Kind of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new entry (`IPCT_NEW` / `IPCT_RELATED`).
    New,
    /// A change: status, protoinfo, mark, timeout refresh on state change... Fields the kernel
    /// did not report are `None` in the [`Conn`] (see [`Conn::merge_from`]).
    Update,
    /// The entry is gone. The kernel reports tuples, status, id, mark, zone and the TCP state
    /// only (no flags or window scale).
    Destroy,
}

/// One conntrack event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// New, update or destroy.
    pub kind: EventKind,
    /// The entry as the kernel reported it.
    pub conn: Conn,
    /// Port id of the netlink socket whose request caused the event (0 when packets did):
    /// compare with [`Conntrack::portid`] to recognise the echo of one's own writes.
    pub portid: u32,
}

/// What [`Events::next`] yields.
// Overrun is rare; boxing every event to shrink it would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventItem {
    /// An event.
    Event(Event),
    /// The receive buffer overflowed (ENOBUFS): events were lost. Dump the table again.
    Overrun,
}

fn new_socket(what: &'static str) -> Result<Socket, ConntrackError> {
    Socket::new(NETLINK_NETFILTER).map_err(|e| ConntrackError::io(what, e))
}

/// SO_RCVBUFFORCE (root), else SO_RCVBUF (capped by net.core.rmem_max).
fn set_rcvbuf(sock: &Socket, bytes: usize) -> Result<(), ConntrackError> {
    if setsockopt(&sock.as_fd(), sockopt::RcvBufForce, &bytes).is_err() {
        setsockopt(&sock.as_fd(), sockopt::RcvBuf, &bytes)
            .map_err(|e| ConntrackError::io("setting the receive buffer", e.into()))?;
    }
    Ok(())
}

fn set_sndbuf(sock: &Socket, bytes: usize) -> Result<(), ConntrackError> {
    if setsockopt(&sock.as_fd(), sockopt::SndBufForce, &bytes).is_err() {
        setsockopt(&sock.as_fd(), sockopt::SndBuf, &bytes)
            .map_err(|e| ConntrackError::io("setting the send buffer", e.into()))?;
    }
    Ok(())
}

/// Receives one datagram into `buf` (cleared first). Errors on truncation.
fn recv_datagram(sock: &Socket, buf: &mut Vec<u8>, flags: libc::c_int) -> io::Result<usize> {
    buf.clear();
    if buf.capacity() < RECV_BUF {
        buf.reserve(RECV_BUF);
    }
    let cap = buf.capacity();
    let n = sock.recv(buf, flags | libc::MSG_TRUNC)?;
    if n > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("netlink datagram of {n} bytes truncated to {cap}"),
        ));
    }
    Ok(n)
}

/// Request handle: dump, create, update, delete, batched apply, flush. Blocking.
pub struct Conntrack {
    sock: Socket,
    portid: u32,
    seq: u32,
    rx: Vec<u8>,
    tx: MsgBuf,
    opts: BuildOpts,
    batch_bytes: usize,
}

impl Conntrack {
    /// Opens a ctnetlink request socket in the calling thread's network namespace.
    pub fn open() -> Result<Conntrack, ConntrackError> {
        let mut sock = new_socket("opening a NETLINK_NETFILTER socket")?;
        let addr = sock
            .bind_auto()
            .map_err(|e| ConntrackError::io("binding the netlink socket", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| ConntrackError::io("connecting to the kernel", e))?;
        // Errors carry only the failed message's header, plus the kernel's text if any.
        sock.set_cap_ack(true)
            .map_err(|e| ConntrackError::io("setting NETLINK_CAP_ACK", e))?;
        sock.set_ext_ack(true)
            .map_err(|e| ConntrackError::io("setting NETLINK_EXT_ACK", e))?;
        set_rcvbuf(&sock, REQUEST_RCVBUF)?;
        set_sndbuf(&sock, REQUEST_SNDBUF)?;
        setsockopt(
            &sock.as_fd(),
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0),
        )
        .map_err(|e| ConntrackError::io("setting SO_RCVTIMEO", e.into()))?;
        Ok(Conntrack {
            sock,
            portid: addr.port_number(),
            seq: std::process::id().wrapping_mul(0x9e37_79b9),
            rx: Vec::with_capacity(RECV_BUF),
            tx: MsgBuf::default(),
            opts: BuildOpts {
                tcp_be_liberal: true,
            },
            batch_bytes: 64 << 10,
        })
    }

    /// This socket's netlink port id: events caused by its writes carry it
    /// ([`Event::portid`]).
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// Whether injected TCP entries get `IP_CT_TCP_FLAG_BE_LIBERAL` in both directions (default
    /// on: window tracking cannot be synced, so without it the first packets after a failover
    /// may be judged out of window and dropped).
    pub fn set_tcp_be_liberal(&mut self, on: bool) {
        self.opts.tcp_be_liberal = on;
    }

    /// Bytes of messages per `sendmsg` in [`Conntrack::apply`] (clamped to 4 KiB ..= 2 MiB).
    pub fn set_batch_bytes(&mut self, bytes: usize) {
        self.batch_bytes = bytes.clamp(4 << 10, 2 << 20);
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.seq = 1;
        }
        self.seq
    }

    fn send_tx(&mut self) -> Result<(), ConntrackError> {
        let r = self.sock.send(self.tx.as_bytes(), 0);
        self.tx.clear();
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(ConntrackError::io("sending to the kernel", e)),
        }
    }

    /// Every entry, IPv4 and IPv6, all zones.
    pub fn dump(&mut self) -> Result<Vec<Conn>, ConntrackError> {
        let mut out = Vec::new();
        self.dump_with(|c| out.push(c))?;
        Ok(out)
    }

    /// Streams every entry to `each` (no intermediate Vec). Entries that do not decode are
    /// skipped and counted in the return value.
    pub fn dump_with(&mut self, mut each: impl FnMut(Conn)) -> Result<usize, ConntrackError> {
        let seq = self.next_seq();
        self.tx.clear();
        msg::build_dump(&mut self.tx, seq);
        self.send_tx()?;
        let mut bad = 0usize;
        loop {
            recv_datagram(&self.sock, &mut self.rx, 0)
                .map_err(|e| ConntrackError::io("receiving a dump", e))?;
            let mut done = false;
            let mut failure = None;
            msg::parse_datagram(&self.rx, |m| match m {
                Message::Conn { seq: s, conn, .. } if s == seq => each(*conn),
                Message::Bad { seq: s, .. } if s == seq => bad += 1,
                Message::Done { seq: s } if s == seq => done = true,
                Message::Error {
                    seq: s,
                    errno,
                    message,
                } if s == seq => {
                    done = true;
                    if errno != 0 {
                        failure = Some(ConntrackError::kernel("dump", errno, message));
                    }
                }
                _ => {}
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            if done {
                return Ok(bad);
            }
        }
    }

    /// One entry by key, or None.
    pub fn get(&mut self, key: &ConnKey) -> Result<Option<Conn>, ConntrackError> {
        let seq = self.next_seq();
        self.tx.clear();
        msg::build_get(&mut self.tx, key, seq)?;
        self.send_tx()?;
        let mut found = None;
        loop {
            recv_datagram(&self.sock, &mut self.rx, 0)
                .map_err(|e| ConntrackError::io("receiving a get", e))?;
            let mut result: Option<Result<(), ConntrackError>> = None;
            msg::parse_datagram(&self.rx, |m| match m {
                Message::Conn { seq: s, conn, .. } if s == seq => found = Some(*conn),
                Message::Bad { seq: s, error } if s == seq => {
                    result = Some(Err(ConntrackError::Decode(error)))
                }
                Message::Error {
                    seq: s,
                    errno,
                    message,
                } if s == seq => {
                    result = Some(if errno == 0 || errno == libc::ENOENT {
                        Ok(())
                    } else {
                        Err(ConntrackError::kernel("get", errno, message))
                    })
                }
                _ => {}
            })?;
            if let Some(r) = result {
                r?;
                return Ok(found);
            }
        }
    }

    /// Creates the entry, or updates it if one with the same key exists.
    pub fn create(&mut self, conn: &Conn) -> Result<Applied, ConntrackError> {
        one(self.apply(&[Op::Create(conn)]))
    }

    /// Updates an existing entry: timeout, status, TCP state and flags, mark, seq-adjust,
    /// labels. ENOENT if there is none ([`ConntrackError::is_not_found`]).
    pub fn update(&mut self, conn: &Conn) -> Result<(), ConntrackError> {
        one(self.apply(&[Op::Update(conn)])).map(|_| ())
    }

    /// Deletes the entry with this key. ENOENT if there is none.
    pub fn delete(&mut self, key: &ConnKey) -> Result<(), ConntrackError> {
        one(self.apply(&[Op::Delete(key)])).map(|_| ())
    }

    /// Deletes every entry (both families, all zones).
    pub fn flush(&mut self) -> Result<(), ConntrackError> {
        let seq = self.next_seq();
        self.tx.clear();
        msg::build_flush(&mut self.tx, seq);
        self.send_tx()?;
        let mut results = vec![None];
        self.collect(&[seq], seq, &mut results)?;
        match results.pop().flatten() {
            Some(Err((errno, message))) => Err(ConntrackError::kernel("flush", errno, message)),
            _ => Ok(()),
        }
    }

    /// Applies many writes with as few syscalls as possible: messages are packed into
    /// `sendmsg`s of up to [`Conntrack::set_batch_bytes`], errors matched back by sequence
    /// number. Creates that hit an existing entry are sent again as updates, updates refused
    /// for their status (EBUSY) again without it. One result per op, in order.
    pub fn apply(&mut self, ops: &[Op<'_>]) -> Vec<Result<Applied, ConntrackError>> {
        let mut results: Vec<Option<Result<Applied, ConntrackError>>> =
            (0..ops.len()).map(|_| None).collect();

        // Pass 1: as given.
        let pass1: Vec<(usize, Msg<'_>)> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                (
                    i,
                    match *op {
                        Op::Create(c) => Msg::Create(c),
                        Op::Update(c) => Msg::Update(c, true),
                        Op::Delete(k) => Msg::Delete(k),
                    },
                )
            })
            .collect();
        let mut retry = Vec::new();
        self.run_pass(&pass1, &mut results, |i, m, errno| match (m, errno) {
            (Msg::Create(c), libc::EEXIST) => {
                retry.push((i, Msg::Update(c, true)));
                true
            }
            (Msg::Update(c, true), libc::EBUSY) => {
                retry.push((i, Msg::Update(c, false)));
                true
            }
            _ => false,
        });
        // Pass 2: creates that existed become updates; updates refused for status go again
        // without it.
        if !retry.is_empty() {
            let mut retry2 = Vec::new();
            self.run_pass(&retry, &mut results, |i, m, errno| match (m, errno) {
                (Msg::Update(c, true), libc::EBUSY) => {
                    retry2.push((i, Msg::Update(c, false)));
                    true
                }
                _ => false,
            });
            if !retry2.is_empty() {
                self.run_pass(&retry2, &mut results, |_, _, _| false);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(ConntrackError::Lost)))
            .collect()
    }

    /// Sends `msgs` in batches; fills `results` for each index. `retry(i, msg, errno)` may take
    /// over an error (returns true), leaving the result unset for a later pass.
    fn run_pass<'a>(
        &mut self,
        msgs: &[(usize, Msg<'a>)],
        results: &mut [Option<Result<Applied, ConntrackError>>],
        mut retry: impl FnMut(usize, Msg<'a>, i32) -> bool,
    ) {
        let mut pos = 0;
        while pos < msgs.len() {
            // Build one batch.
            self.tx.clear();
            let mut seqs: Vec<u32> = Vec::new();
            let mut members: Vec<usize> = Vec::new(); // positions in msgs
            let mut last_start = None;
            while pos < msgs.len() && (self.tx.len() < self.batch_bytes || seqs.is_empty()) {
                let (i, m) = msgs[pos];
                let seq = self.next_seq();
                let start = self.tx.len();
                let built = match m {
                    Msg::Create(c) => msg::build_create(&mut self.tx, c, seq, 0, self.opts),
                    Msg::Update(c, st) => msg::build_update(&mut self.tx, c, seq, 0, st, self.opts),
                    Msg::Delete(k) => msg::build_delete(&mut self.tx, k, seq, 0),
                };
                match built {
                    Ok(()) => {
                        seqs.push(seq);
                        members.push(pos);
                        last_start = Some(start);
                    }
                    Err(e) => results[i] = Some(Err(e.into())),
                }
                pos += 1;
            }
            let Some(last_start) = last_start else {
                continue;
            };
            // Only the last message asks for an ACK: errors come back anyway, and the ACK (or
            // the last message's error) marks the end of the batch's answers.
            self.tx.or_flags(last_start, msg::NLM_F_ACK);
            let last_seq = seqs[seqs.len() - 1];
            let mut answers: Vec<Option<Answer>> = vec![None; seqs.len()];
            let outcome = self
                .send_tx()
                .and_then(|()| self.collect(&seqs, last_seq, &mut answers));
            for (k, &p) in members.iter().enumerate() {
                let (i, m) = msgs[p];
                let answer = match (&outcome, answers[k].take()) {
                    (_, Some(Err((errno, message)))) => {
                        if retry(i, m, errno) {
                            continue;
                        }
                        Err(ConntrackError::kernel(m.op(), errno, message))
                    }
                    (Ok(true), _) | (_, Some(Ok(()))) => Ok(m.applied()),
                    (Ok(false), None) => Err(ConntrackError::Lost),
                    (Err(e), None) => Err(replicate(e)),
                };
                results[i] = Some(answer);
            }
        }
    }

    /// Reads answers until the one for `last_seq`. `answers[k]` gets the error (or ACK) for
    /// `seqs[k]`. Returns Ok(true) if every message without an error is known to have
    /// succeeded, Ok(false) if answers were lost to a receive-buffer overrun.
    fn collect(
        &mut self,
        seqs: &[u32],
        last_seq: u32,
        answers: &mut [Option<Answer>],
    ) -> Result<bool, ConntrackError> {
        let first = seqs.first().copied().unwrap_or(last_seq);
        let mut overrun = false;
        loop {
            // After an overrun the answers that survived are already queued (the kernel
            // processes a batch inside sendmsg): drain without blocking.
            let flags = if overrun { libc::MSG_DONTWAIT } else { 0 };
            match recv_datagram(&self.sock, &mut self.rx, flags) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    overrun = true;
                    continue;
                }
                Err(e) if overrun && e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(ConntrackError::io("receiving answers", e)),
            }
            let mut finished = false;
            msg::parse_datagram(&self.rx, |m| {
                if let Message::Error {
                    seq,
                    errno,
                    message,
                } = m
                {
                    // Sequence numbers of a batch are consecutive (mod 2^32).
                    let k = seq.wrapping_sub(first) as usize;
                    if k < answers.len() && seqs[k] == seq {
                        answers[k] = Some(if errno == 0 {
                            Ok(())
                        } else {
                            Err((errno, message))
                        });
                    }
                    if seq == last_seq {
                        finished = true;
                    }
                }
            })?;
            if finished {
                return Ok(!overrun);
            }
        }
    }
}

/// The kernel's answer to one message: ACK, or errno and extended-ack text.
type Answer = Result<(), (i32, Option<String>)>;

/// A message of a pass.
#[derive(Clone, Copy)]
enum Msg<'a> {
    Create(&'a Conn),
    /// With or without `CTA_STATUS`.
    Update(&'a Conn, bool),
    Delete(&'a ConnKey),
}

impl Msg<'_> {
    fn op(&self) -> &'static str {
        match self {
            Msg::Create(_) => "create",
            Msg::Update(..) => "update",
            Msg::Delete(_) => "delete",
        }
    }

    fn applied(&self) -> Applied {
        match self {
            Msg::Create(_) => Applied::Created,
            Msg::Update(..) => Applied::Updated,
            Msg::Delete(_) => Applied::Deleted,
        }
    }
}

fn one(mut v: Vec<Result<Applied, ConntrackError>>) -> Result<Applied, ConntrackError> {
    v.pop().unwrap_or(Err(ConntrackError::Lost))
}

/// Copies an error for every op of a failed batch.
fn replicate(e: &ConntrackError) -> ConntrackError {
    match e {
        ConntrackError::Io { what, source } => ConntrackError::Io {
            what,
            source: match source.raw_os_error() {
                Some(n) => io::Error::from_raw_os_error(n),
                None => io::Error::new(source.kind(), source.to_string()),
            },
        },
        ConntrackError::Decode(d) => ConntrackError::Decode(d.clone()),
        _ => ConntrackError::Lost,
    }
}

/// Joins and leaves event groups of an [`Events`] subscription ([`Events::membership`]).
///
/// ctnetlink builds an event only while its group has a listener (unless the request asked
/// for an echo): leaving [`Groups::NEW`] makes every create cheaper for the whole namespace
/// (about 2x for batched creates), while UPDATE and DESTROY keep coming.
pub struct Membership {
    fd: std::os::fd::OwnedFd,
}

impl Membership {
    /// Joins every group in `groups` (NETLINK_ADD_MEMBERSHIP).
    pub fn join(&self, groups: Groups) -> Result<(), ConntrackError> {
        self.each(
            groups,
            libc::NETLINK_ADD_MEMBERSHIP,
            "joining a conntrack event group",
        )
    }

    /// Leaves every group in `groups` (NETLINK_DROP_MEMBERSHIP).
    pub fn leave(&self, groups: Groups) -> Result<(), ConntrackError> {
        self.each(
            groups,
            libc::NETLINK_DROP_MEMBERSHIP,
            "leaving a conntrack event group",
        )
    }

    fn each(
        &self,
        groups: Groups,
        op: libc::c_int,
        what: &'static str,
    ) -> Result<(), ConntrackError> {
        use std::os::fd::AsRawFd;
        for bit in 0..3u32 {
            if groups.0 & (1 << bit) == 0 {
                continue;
            }
            // Group numbers start at 1: bit 0 of the bind mask is group 1 (NFNLGRP_CONNTRACK_NEW).
            let group: libc::c_int = (bit + 1) as libc::c_int;
            // SAFETY: a valid descriptor we own, a pointer to a c_int and its exact size.
            let r = unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    op,
                    (&group as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r != 0 {
                return Err(ConntrackError::io(what, io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}

/// Event subscription (async, tokio).
pub struct Events {
    fd: AsyncFd<Socket>,
    rx: Vec<u8>,
    queue: VecDeque<Result<EventItem, ConntrackError>>,
}

impl Events {
    /// Subscribes to `groups` in the calling thread's network namespace, with a
    /// [`DEFAULT_EVENT_RCVBUF`] receive buffer. Needs a tokio runtime.
    pub fn subscribe(groups: Groups) -> Result<Events, ConntrackError> {
        Events::subscribe_with_rcvbuf(groups, DEFAULT_EVENT_RCVBUF)
    }

    /// As [`Events::subscribe`] with a receive buffer of `bytes` (SO_RCVBUFFORCE as root).
    pub fn subscribe_with_rcvbuf(groups: Groups, bytes: usize) -> Result<Events, ConntrackError> {
        let mut sock = new_socket("opening a NETLINK_NETFILTER event socket")?;
        set_rcvbuf(&sock, bytes)?;
        sock.bind(&SocketAddr::new(0, groups.0))
            .map_err(|e| ConntrackError::io("binding to the conntrack event groups", e))?;
        sock.set_non_blocking(true)
            .map_err(|e| ConntrackError::io("setting O_NONBLOCK", e))?;
        // Registering panics outside a runtime: make that an error.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConntrackError::io(
                "registering with the tokio reactor",
                io::Error::other("no tokio runtime in this thread"),
            ));
        }
        // SAFETY (I/O safety, tokio#8587): `Socket` owns its fd; the AsyncFd owns the `Socket`
        // and nothing replaces or closes that fd while it is registered (it is closed only when
        // the AsyncFd drops, after deregistering).
        let fd = unsafe { AsyncFd::register(sock) }
            .map_err(|e| ConntrackError::io("registering with the tokio reactor", e.into()))?;
        Ok(Events {
            fd,
            rx: Vec::with_capacity(RECV_BUF),
            queue: VecDeque::new(),
        })
    }

    /// A handle that joins and leaves this subscription's groups from another task or thread
    /// (it holds a duplicate of the socket's descriptor: the same socket). Events already
    /// queued stay queued when a group is left.
    pub fn membership(&self) -> Result<Membership, ConntrackError> {
        let fd = self
            .fd
            .get_ref()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| ConntrackError::io("duplicating the event socket", e))?;
        Ok(Membership { fd })
    }

    /// The receive buffer the kernel granted (bytes, as SO_RCVBUF reports it).
    pub fn rcvbuf(&self) -> usize {
        self.fd.get_ref().get_rx_buf_sz().unwrap_or(0)
    }

    /// The next event, or [`EventItem::Overrun`] after lost events. An event that does not
    /// decode is an `Err(ConntrackError::Decode)`; the stream goes on after it.
    pub async fn next(&mut self) -> Result<EventItem, ConntrackError> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return item;
            }
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(|e| ConntrackError::io("waiting for events", e))?;
            let rx = &mut self.rx;
            match guard.try_io(|fd| recv_datagram(fd.get_ref(), rx, 0)) {
                Err(_would_block) => continue,
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Ok(EventItem::Overrun)
                }
                Ok(Err(e)) => return Err(ConntrackError::io("receiving events", e)),
                Ok(Ok(_)) => {}
            }
            let queue = &mut self.queue;
            let parsed = msg::parse_datagram(&self.rx, |m| match m {
                Message::Conn {
                    msg,
                    flags,
                    portid,
                    conn,
                    ..
                } => {
                    let kind = if msg == msg::IPCTNL_MSG_CT_DELETE {
                        EventKind::Destroy
                    } else if flags & (msg::NLM_F_CREATE | msg::NLM_F_EXCL) != 0 {
                        EventKind::New
                    } else {
                        EventKind::Update
                    };
                    queue.push_back(Ok(EventItem::Event(Event {
                        kind,
                        conn: *conn,
                        portid,
                    })));
                }
                Message::Bad { error, .. } => queue.push_back(Err(error.into())),
                _ => {}
            });
            if let Err(e) = parsed {
                self.queue.push_back(Err(e.into()));
            }
        }
    }
}
