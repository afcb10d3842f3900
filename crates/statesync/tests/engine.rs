//! The replicator driven by hand: collapsing, batching to the MTU, relative timeouts, pacing,
//! ordering of related conns, echo suppression, readiness and the serde forms.

use statesync::model::{status, Conn, ConnKey, PortProto, TcpInfo, TcpState, Tuple, L4};
use statesync::wire::{self, Kind, Record, Records};
use statesync::{
    Action, BulkPhase, Config, ConfigError, Dest, Input, LocalEvent, NodeId, Replicator, SealKey,
    Sealer, TimerKind,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);

fn key() -> SealKey {
    SealKey::from_bytes([0x5a; 32])
}

fn cfg(node: u32) -> Config {
    let mut c = Config::new(NodeId(node), 0x1000 + u64::from(node), key());
    c.dump_interval = None;
    c
}

fn addr(node: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, node as u8)), 4567)
}

fn conn(i: u32) -> Conn {
    let mut c = Conn::without_nat(Tuple {
        src: IpAddr::V4(Ipv4Addr::from(0xc000_0200 + (i >> 16))),
        dst: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20)),
        l4: L4::Ports {
            proto: PortProto::Tcp,
            src: (i & 0xffff) as u16,
            dst: 80,
        },
    });
    c.status = status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
    c.timeout = Some(432_000);
    c.tcp = Some(TcpInfo {
        state: TcpState::Established,
        wscale_orig: 7,
        wscale_reply: 7,
        flags_orig: 3,
        flags_reply: 3,
    });
    c
}

struct Node {
    r: Replicator,
    node: u32,
    sent: Vec<(Dest, Vec<u8>)>,
    installed: Vec<Conn>,
    removed: Vec<ConnKey>,
    ready: Vec<bool>,
    dumps: usize,
    new_events: Vec<bool>,
}

impl Node {
    fn new(now: Instant, c: Config) -> Node {
        let node = c.node.0;
        let r = Replicator::new(now, c, u64::from(node)).unwrap_or_else(|e| panic!("{e}"));
        let mut n = Node {
            r,
            node,
            sent: Vec::new(),
            installed: Vec::new(),
            removed: Vec::new(),
            ready: Vec::new(),
            dumps: 0,
            new_events: Vec::new(),
        };
        n.drain();
        n
    }

    fn drain(&mut self) {
        while let Some(a) = self.r.poll_action() {
            match a {
                Action::Send { to, bytes } | Action::SendAfterKernel { to, bytes } => {
                    self.sent.push((to, bytes))
                }
                Action::Install(c) => self.installed.extend(c),
                Action::Remove(k) => self.removed.extend(k),
                Action::ReadyChanged(r) => self.ready.push(r),
                Action::Alarm(_)
                | Action::BarrierDone { .. }
                | Action::HandoverRequested { .. } => {}
                Action::RequestDump => self.dumps += 1,
                Action::NewEvents(on) => self.new_events.push(on),
            }
        }
    }

    fn local(&mut self, now: Instant, ev: LocalEvent) {
        self.r.handle(now, Input::Local(ev));
        self.drain();
    }

    fn tick(&mut self, now: Instant) {
        if self.r.poll_timeout().is_some_and(|(t, _)| t <= now) {
            self.r.handle_timeout(now);
        }
        self.drain();
    }

    /// Stream records sent so far (opened with the shared key).
    fn stream_records(&self) -> Vec<Record> {
        let s = Sealer::new(&key());
        let mut out = Vec::new();
        for (_, d) in &self.sent {
            let (h, body) = s.open_datagram(d).unwrap_or_else(|e| panic!("{e}"));
            if h.kind == Kind::Stream {
                let (_, recs) = wire::split_stream(&body).unwrap_or_else(|e| panic!("{e}"));
                out.extend(Records::new(recs).map(|r| r.unwrap_or_else(|e| panic!("{e}"))));
            }
        }
        out
    }
}

/// Delivers everything each node sent to the other, repeatedly, advancing time by `step`,
/// until nothing is sent for a while.
fn exchange(a: &mut Node, b: &mut Node, now: &mut Instant, until: Instant) {
    while *now < until {
        for (from, to) in [(0, 1), (1, 0)] {
            let (src, dst) = if from == 0 {
                (&mut *a, &mut *b)
            } else {
                (&mut *b, &mut *a)
            };
            let msgs: Vec<_> = src.sent.drain(..).collect();
            for (_, d) in msgs {
                dst.r.handle_datagram(*now, addr(src.node), &d);
                dst.drain();
            }
            let _ = to;
        }
        *now += MS;
        a.tick(*now);
        b.tick(*now);
    }
}

fn pair(now: &mut Instant) -> (Node, Node) {
    let mut a = Node::new(*now, cfg(1));
    let mut b = Node::new(*now, cfg(2));
    let until = *now + Duration::from_millis(50);
    exchange(&mut a, &mut b, now, until);
    assert_eq!(a.ready, vec![true]);
    assert_eq!(b.ready, vec![true]);
    (a, b)
}

#[test]
fn hundred_updates_collapse_into_one_record() {
    let mut now = Instant::now();
    let mut a = Node::new(now, cfg(1));
    a.sent.clear();
    let mut c = conn(1);
    a.local(now, LocalEvent::New(c.clone()));
    for i in 0..100u32 {
        now += Duration::from_micros(150);
        c.mark = i + 1;
        a.local(now, LocalEvent::Update(c.clone()));
    }
    // Nothing before the flush deadline (20 ms after the first change)...
    assert!(a.stream_records().is_empty());
    assert_eq!(a.r.poll_timeout().map(|t| t.1), Some(TimerKind::Flush));
    now += 10 * MS;
    a.tick(now);
    let recs = a.stream_records();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let Record::Insert(sent) = &recs[0] else {
        panic!("{recs:?}")
    };
    assert_eq!(sent.mark, 100);
    assert_eq!(a.r.status(now).counters.collapsed, 100);
}

#[test]
fn datagrams_fill_up_to_the_mtu() {
    let mut now = Instant::now();
    let mut c = cfg(1);
    c.mtu = 600;
    let mut a = Node::new(now, c);
    a.sent.clear();
    for i in 0..1000 {
        a.local(now, LocalEvent::New(conn(i)));
    }
    for _ in 0..100 {
        now += MS;
        a.tick(now);
    }
    let sizes: Vec<usize> = a.sent.iter().map(|(_, d)| d.len()).collect();
    assert!(sizes.iter().all(|s| *s <= 600), "{sizes:?}");
    let recs = a.stream_records();
    assert_eq!(recs.len(), 1000);
    let per = wire::conn_record_len(&conn(0), true);
    let fit = (600 - wire::OVERHEAD - wire::STREAM_SEQ_LEN) / per;
    // Stream datagrams (a heartbeat follows the burst).
    let stream = a
        .sent
        .iter()
        .filter(|(_, d)| wire::Header::decode(d).is_ok_and(|h| h.kind == Kind::Stream))
        .count();
    assert_eq!(stream, 1000usize.div_ceil(fit), "{sizes:?}");
}

#[test]
fn timeouts_are_sent_relative() {
    let mut now = Instant::now();
    let mut a = Node::new(now, cfg(1));
    a.sent.clear();
    let mut c = conn(1);
    c.timeout = Some(100);
    a.local(now, LocalEvent::New(c.clone()));
    // Flushed 20 ms later: still 100 s left (whole seconds).
    now += 25 * MS;
    a.tick(now);
    // A change 30 s later re-sends the snapshot; the kernel said 100 s at the time.
    now += Duration::from_secs(30);
    c.mark = 1;
    let mut partial = Conn::new(c.orig, c.reply);
    partial.status = c.status;
    partial.mark = 1;
    // No timeout in this event: the one from 30 s ago ages.
    a.local(now, LocalEvent::Update(partial));
    now += 25 * MS;
    a.tick(now);
    let recs = a.stream_records();
    let timeouts: Vec<Option<u32>> = recs
        .iter()
        .map(|r| match r {
            Record::Insert(c) | Record::Update(c) => c.timeout,
            _ => None,
        })
        .collect();
    assert_eq!(timeouts, vec![Some(100), Some(70)]);
    // The partial event kept the TCP info of the snapshot.
    let Record::Update(u) = &recs[1] else {
        panic!()
    };
    assert_eq!(u.tcp.map(|t| t.state), Some(TcpState::Established));
}

#[test]
fn echo_of_install_is_not_sent_back() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(&mut now);
    a.local(now, LocalEvent::New(conn(1)));
    let until = now + 50 * MS;
    exchange(&mut a, &mut b, &mut now, until);
    assert_eq!(b.installed.len(), 1);
    let mut echo = b.installed[0].clone();
    echo.status |= status::CONFIRMED;
    if let Some(t) = &mut echo.tcp {
        t.flags_orig |= statesync::model::tcp_flags::BE_LIBERAL;
    }
    echo.id = Some(99);
    echo.timeout = Some(431_999);
    b.local(now, LocalEvent::New(echo.clone()));
    b.local(now, LocalEvent::Update(echo.clone()));
    let until = now + 50 * MS;
    exchange(&mut a, &mut b, &mut now, until);
    let bs = b.r.status(now);
    assert_eq!(bs.counters.states_sent, 0);
    assert_eq!(bs.counters.echo_suppressed, 2);
    // Our copy expiring is not news for the origin either.
    b.local(now, LocalEvent::Destroy(echo));
    let until = now + 50 * MS;
    exchange(&mut a, &mut b, &mut now, until);
    let bs = b.r.status(now);
    assert_eq!(bs.counters.deletes_sent, 0);
    assert_eq!(bs.counters.peer_conns_expired, 1);
    assert!(a.removed.is_empty());
}

#[test]
fn related_conns_follow_their_masters() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(&mut now);
    // Conns whose keys sort before their masters.
    // (The kernel reports the master first: its traffic created the expectations.)
    let master = conn(5000);
    a.local(now, LocalEvent::New(master.clone()));
    for i in 0..50 {
        let mut related = conn(i);
        related.master = Some(master.orig);
        related.status |= status::EXPECTED;
        a.local(now, LocalEvent::New(related));
    }
    let until = now + 100 * MS;
    exchange(&mut a, &mut b, &mut now, until);
    assert_eq!(b.installed.len(), 51);
    assert_eq!(b.installed[0].key(), master.key(), "live: master first");
    // And in a bulk: a third node joins.
    let mut c = Node::new(now, cfg(3));
    let mut t = now;
    for _ in 0..200 {
        for (_, d) in c.sent.drain(..).collect::<Vec<_>>() {
            a.r.handle_datagram(t, addr(3), &d);
        }
        a.drain();
        for (_, d) in a.sent.drain(..).collect::<Vec<_>>() {
            c.r.handle_datagram(t, addr(1), &d);
        }
        c.drain();
        t += MS;
        a.tick(t);
        c.tick(t);
    }
    assert_eq!(c.ready, vec![true]);
    assert_eq!(c.installed.len(), 51);
    assert_eq!(c.installed[0].key(), master.key(), "bulk: master first");
}

#[test]
fn bulk_is_paced() {
    let mut now = Instant::now();
    let mut c1 = cfg(1);
    c1.burst = 4;
    let mut a = Node::new(now, c1);
    for i in 0..12_000 {
        a.local(now, LocalEvent::New(conn(i)));
    }
    // Let the live announcements drain first.
    for _ in 0..1000 {
        now += MS;
        a.tick(now);
    }
    a.sent.clear();
    let mut b = Node::new(now, cfg(2));
    let hello: Vec<_> = b.sent.drain(..).collect();
    // B's request (and the epoch handshake) reach A.
    for _ in 0..5 {
        for (_, d) in &hello {
            a.r.handle_datagram(now, addr(2), d);
        }
        a.drain();
        for (_, d) in a.sent.drain(..).collect::<Vec<_>>() {
            b.r.handle_datagram(now, addr(1), &d);
        }
        b.drain();
        for (_, d) in b.sent.drain(..).collect::<Vec<_>>() {
            a.r.handle_datagram(now, addr(2), &d);
        }
        a.drain();
    }
    let serving = a.r.status(now).serving.is_some();
    assert!(serving, "{:?}", a.r.status(now));
    let mut per_tick = Vec::new();
    for _ in 0..50 {
        now += MS;
        a.sent.clear();
        a.tick(now);
        per_tick.push(a.sent.len());
    }
    assert!(per_tick.iter().all(|n| *n <= 4), "{per_tick:?}");
    assert!(
        per_tick.iter().filter(|n| **n == 4).count() > 40,
        "{per_tick:?}"
    );
    let st = a.r.status(now);
    assert!(st.serving.is_some() && st.queue_depth > 0, "{st:?}");
}

#[test]
fn snapshot_announces_news_only_and_respects_newer_events() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(&mut now);
    a.local(now, LocalEvent::New(conn(1)));
    a.local(now, LocalEvent::New(conn(2)));
    let until = now + 50 * MS;
    exchange(&mut a, &mut b, &mut now, until);
    let sent_before = a.r.status(now).counters.states_sent;
    // A dump starts; meanwhile conn 2 changes; the dump then says the old conn 2, the same
    // conn 1, and a conn 3 whose event was lost.
    a.r.handle(now, Input::DumpStarted);
    let mut c2 = conn(2);
    c2.mark = 5;
    a.local(now, LocalEvent::Update(c2.clone()));
    a.r.handle(now, Input::LocalSnapshot(vec![conn(1), conn(2), conn(3)]));
    a.drain();
    let until = now + 50 * MS;
    exchange(&mut a, &mut b, &mut now, until);
    assert_eq!(a.r.status(now).counters.states_sent - sent_before, 2);
    let got: Vec<(ConnKey, u32)> = b
        .installed
        .iter()
        .skip(2)
        .map(|c| (c.key(), c.mark))
        .collect();
    assert_eq!(got, vec![(conn(2).key(), 5), (conn(3).key(), 0)]);
}

#[test]
fn local_flush_clears_the_peers_copies() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(&mut now);
    for i in 0..10 {
        a.local(now, LocalEvent::New(conn(i)));
    }
    let until = now + 50 * MS;
    exchange(&mut a, &mut b, &mut now, until);
    assert_eq!(b.installed.len(), 10);
    a.r.handle(now, Input::LocalFlush);
    a.drain();
    let until = now + 50 * MS;
    exchange(&mut a, &mut b, &mut now, until);
    assert_eq!(b.removed.len(), 10);
    assert_eq!(b.r.conns().count(), 0);
}

#[test]
fn config_is_validated() {
    let bad = |f: fn(&mut Config)| {
        let mut c = cfg(1);
        f(&mut c);
        Replicator::new(Instant::now(), c, 0).err()
    };
    assert_eq!(bad(|c| c.node = NodeId(0)), Some(ConfigError::ZeroNode));
    assert_eq!(bad(|c| c.mtu = 100), Some(ConfigError::Mtu(100)));
    assert_eq!(bad(|c| c.burst = 0), Some(ConfigError::Zero("burst")));
    assert_eq!(
        bad(|c| c.pace = Duration::ZERO),
        Some(ConfigError::Zero("pace"))
    );
    assert!(bad(|_| {}).is_none());
}

#[test]
fn starts_not_ready_and_asks() {
    let now = Instant::now();
    let mut a = Node::new(now, cfg(1));
    assert!(!a.r.is_ready());
    assert_eq!(a.dumps, 1);
    let s = Sealer::new(&key());
    let kinds: Vec<Record> = a
        .sent
        .drain(..)
        .flat_map(|(to, d)| {
            assert_eq!(to, Dest::All);
            let (_, body) = s.open_datagram(&d).unwrap_or_else(|e| panic!("{e}"));
            Records::new(&body)
                .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(matches!(kinds[0], Record::Heartbeat { ready: false, .. }));
    assert!(matches!(
        kinds[1],
        Record::BulkRequest {
            own_only: false,
            ..
        }
    ));
    assert_eq!(a.r.status(now).bulk.phase, BulkPhase::Requesting);
}

#[test]
fn serde_forms() {
    let now = Instant::now();
    let (a, _) = pair(&mut { now });
    let json = serde_json::to_string(&a.r.status(now)).unwrap_or_else(|e| panic!("{e}"));
    assert!(json.contains("\"ready\":true"), "{json}");
    let inputs = vec![
        Input::Local(LocalEvent::New(conn(1))),
        Input::DumpStarted,
        Input::LocalSnapshot(vec![conn(2)]),
        Input::Datagram {
            from: addr(2),
            bytes: vec![1, 2, 3],
        },
        Input::PeerUp(addr(2)),
        Input::Resync,
    ];
    for i in inputs {
        let s = serde_json::to_string(&i).unwrap_or_else(|e| panic!("{e}"));
        let back: Input = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(back, i);
    }
    let actions = vec![
        Action::Send {
            to: Dest::Peer(addr(1)),
            bytes: vec![9],
        },
        Action::Install(vec![conn(3)]),
        Action::Remove(vec![conn(3).key()]),
        Action::ReadyChanged(true),
        Action::Alarm(statesync::Alarm::BulkFailed { attempts: 4 }),
        Action::RequestDump,
    ];
    for a in actions {
        let s = serde_json::to_string(&a).unwrap_or_else(|e| panic!("{e}"));
        let back: Action = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(back, a);
    }
}

/// Bulk requests among the datagrams `sent`, with when they went out.
fn bulk_requests(sent: &[(Instant, Vec<u8>)]) -> Vec<(Instant, Record)> {
    let s = Sealer::new(&key());
    let mut out = Vec::new();
    for (t, d) in sent {
        let (h, body) = s.open_datagram(d).unwrap_or_else(|e| panic!("{e}"));
        if h.kind == Kind::Control {
            for r in Records::new(&body).map(|r| r.unwrap_or_else(|e| panic!("{e}"))) {
                if matches!(r, Record::BulkRequest { .. }) {
                    out.push((*t, r));
                }
            }
        }
    }
    out
}

/// Alone, a node never gives up: four attempts `bulk_timeout` apart, one BulkFailed, then one
/// attempt at a time, waiting `bulk_backoff` after the first failure and twice as long after
/// each further one, up to `bulk_backoff_max`. It stays not ready, always has a timer, and
/// sends little.
#[test]
fn bulk_retries_back_off_while_alone() {
    let start = Instant::now();
    let mut c = cfg(1);
    // Out of the way: the bulk timers are the earliest.
    c.heartbeat_interval = Duration::from_secs(3600);
    c.sweep_interval = Duration::from_secs(3600);
    let (timeout, first_wait, max_wait) = (c.bulk_timeout, c.bulk_backoff, c.bulk_backoff_max);
    let mut r = Replicator::new(start, c, 1).unwrap_or_else(|e| panic!("{e}"));
    let mut sent = Vec::new();
    let mut alarms = Vec::new();
    let mut now = start;
    let mut saw_retry_timer = false;
    loop {
        while let Some(a) = r.poll_action() {
            match a {
                Action::Send { bytes, .. } => sent.push((now, bytes)),
                Action::Alarm(a) => alarms.push((now - start, a)),
                Action::ReadyChanged(_) => panic!("ready alone"),
                _ => {}
            }
        }
        let (t, kind) = r.poll_timeout().unwrap_or_else(|| panic!("no timer"));
        if kind == TimerKind::BulkRetry {
            saw_retry_timer = true;
            let st = r.status(now).bulk;
            assert_eq!(st.phase, BulkPhase::Failed);
            assert_eq!(st.retry_in_ms, Some((t - now).as_millis() as u64));
        }
        if t > start + Duration::from_secs(600) {
            break;
        }
        now = t;
        r.handle_timeout(now);
    }
    assert!(saw_retry_timer);
    assert!(!r.is_ready());
    let reqs: Vec<Duration> = bulk_requests(&sent)
        .iter()
        .map(|(t, _)| *t - start)
        .collect();
    // The bounded round, then the alarm, once.
    assert_eq!(
        &reqs[..4],
        &[Duration::ZERO, timeout, 2 * timeout, 3 * timeout]
    );
    assert_eq!(
        alarms,
        vec![(4 * timeout, statesync::Alarm::BulkFailed { attempts: 4 })]
    );
    // Then the backoff: each attempt times out after `timeout`, then waits.
    let later = &reqs[4..];
    assert_eq!(later[0], 4 * timeout + first_wait);
    let mut wait = first_wait;
    for w in later.windows(2) {
        wait = (wait * 2).min(max_wait);
        assert_eq!(w[1] - w[0], timeout + wait, "requests at {reqs:?}");
    }
    assert_eq!(wait, max_wait, "the cap is reached");
    // Ten minutes alone: a bulk request every half minute or so (and the hello).
    assert!(later.len() >= 15, "{reqs:?}");
    assert!(reqs.len() <= 4 + 600 / (timeout + first_wait).as_secs() as usize);
    assert_eq!(sent.len(), reqs.len() + 1);
    let st = r.status(now);
    assert_eq!(st.counters.bulk_failed, later.len() as u64 + 1);
    // A peer coming up ends the wait at once.
    assert_eq!(st.bulk.phase, BulkPhase::Failed);
    sent.clear();
    r.handle(now, Input::PeerUp(addr(2)));
    while let Some(a) = r.poll_action() {
        if let Action::Send { bytes, .. } = a {
            sent.push((now, bytes));
        }
    }
    assert_eq!(bulk_requests(&sent).len(), 1);
    assert_eq!(r.status(now).bulk.phase, BulkPhase::Requesting);
}

/// A peer that starts while our last bounded attempt is out never heard that request: it gets
/// it again as soon as its epoch is confirmed, answers it, and we are ready at once, without
/// BulkFailed. Two nodes starting together each get the other's request twice (once held, once
/// resent) and answer it once.
#[test]
fn peer_starting_during_the_last_attempt_gets_the_request() {
    let start = Instant::now();
    let mut now = start;
    let mut a = Node::new(now, cfg(1));
    let late = start + Duration::from_secs(10);
    while now < late {
        now += MS;
        a.tick(now);
    }
    a.sent.clear();
    assert_eq!(a.r.status(now).bulk.attempt, 4);
    let mut b = Node::new(now, cfg(2));
    let until = now + Duration::from_millis(50);
    exchange(&mut a, &mut b, &mut now, until);
    assert_eq!(a.ready, vec![true]);
    assert_eq!(b.ready, vec![true]);
    let (sa, sb) = (a.r.status(now), b.r.status(now));
    assert_eq!(sa.bulk.phase, BulkPhase::Done);
    assert_eq!(sa.counters.bulk_failed, 0);
    assert_eq!(sb.counters.bulk_requests_served, 1, "{:#?}", sb.counters);
    assert_eq!(sa.counters.bulk_requests_served, 1, "{:#?}", sa.counters);

    let mut now = Instant::now();
    let (a, b) = pair(&mut now);
    for n in [&a, &b] {
        let c = n.r.status(now).counters;
        assert_eq!(c.bulk_requests_served, 1, "{c:#?}");
        assert_eq!(c.bulk_completed, 1, "{c:#?}");
        assert_eq!(c.bulk_states_ignored, 0, "{c:#?}");
    }
}

/// A peer reported up while our last bounded attempt is out (it may not have heard the
/// request) that still does not answer: when the attempt times out, BulkFailed is raised as
/// usual, but the next round starts at once instead of after the backoff. When that round
/// fails too, the backoff applies, without a second alarm.
#[test]
fn peer_up_during_the_last_attempt_retries_at_once() {
    let start = Instant::now();
    let mut now = start;
    let mut a = Node::new(now, cfg(1));
    let mut alarms = Vec::new();
    let mut requests = Vec::new();
    let mut step = |a: &mut Node, now: Instant, alarms: &mut Vec<(Duration, statesync::Alarm)>| {
        while let Some(x) = a.r.poll_action() {
            match x {
                Action::Alarm(x) => alarms.push((now - start, x)),
                Action::Send { bytes, .. } => requests.extend(
                    bulk_requests(&[(now, bytes)])
                        .into_iter()
                        .map(|(t, _)| t - start),
                ),
                _ => {}
            }
        }
    };
    let peer_up = start + Duration::from_secs(10);
    let end = start + Duration::from_secs(60);
    while now < end {
        now += MS;
        if now == peer_up {
            a.r.handle(now, Input::PeerUp(addr(2)));
        }
        if a.r.poll_timeout().is_some_and(|(t, _)| t <= now) {
            a.r.handle_timeout(now);
        }
        step(&mut a, now, &mut alarms);
    }
    let s = Duration::from_secs;
    assert_eq!(
        alarms,
        vec![(s(12), statesync::Alarm::BulkFailed { attempts: 4 })]
    );
    // The round (the first request went out in `Node::new`), the resend to the peer, a new
    // round at once, then the backoff.
    assert_eq!(a.sent.len(), 2);
    assert_eq!(
        requests,
        vec![
            s(3),
            s(6),
            s(9),
            s(10),
            s(12),
            s(15),
            s(18),
            s(21),
            s(24 + 10),
            s(37 + 20)
        ]
    );
}

#[test]
fn the_oldest_change_goes_out_first_whatever_its_key() {
    let now = Instant::now();
    let mut a = Node::new(now, cfg(1));
    a.sent.clear();
    // The first conn has the highest key; 200 newer ones with lower keys fill datagrams.
    let first = conn(60_000);
    a.local(now, LocalEvent::New(first.clone()));
    for i in 0..200 {
        a.local(now, LocalEvent::New(conn(i)));
    }
    // Full datagrams went out at once; the partial rest waits for the flush timer. The
    // oldest change is in the first datagram, not left waiting behind newer ones.
    let recs = a.stream_records();
    assert!(
        !recs.is_empty() && recs.len() < 201,
        "{} records",
        recs.len()
    );
    let Record::Insert(c) = &recs[0] else {
        panic!("{:?}", recs[0])
    };
    assert_eq!(c.orig, first.orig, "the oldest change did not go first");
}
