//! ctnetlink against the real kernel, in network namespaces (needs root; see
//! `lab::require_netns`): create with and without NAT, read back with `conntrack -L` and with
//! our dump, update, delete, events for real traffic and for CLI writes, overrun, bulk apply.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{block_in_ns, enter};
use conntrack::model::{
    status, tcp_flags, Conn, ConnKey, PortProto, SeqAdj, TcpInfo, TcpState, Tuple, L4,
};
use lab::{require_netns, Host, Lab};
use linux::conntrack::{
    required_sysctls, Applied, Conntrack, EventItem, EventKind, Events, Groups, Op,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn tup(proto: PortProto, src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        l4: L4::Ports {
            proto,
            src: sport,
            dst: dport,
        },
    }
}

fn icmp(src: &str, dst: &str, ty: u8, id: u16) -> Tuple {
    let l4 = if ip(src).is_ipv6() {
        L4::Icmpv6 {
            icmp_type: ty,
            code: 0,
            id,
        }
    } else {
        L4::Icmp {
            icmp_type: ty,
            code: 0,
            id,
        }
    };
    Tuple {
        src: ip(src),
        dst: ip(dst),
        l4,
    }
}

fn sysctls(h: &Host) {
    for s in required_sysctls() {
        h.sysctl(s.name, s.value).expect("sysctl");
    }
}

/// One line of `conntrack -L -o extended`, split into fields.
#[derive(Debug, Default)]
struct CliEntry {
    l3: String,
    proto: u8,
    timeout: u32,
    state: Option<String>,
    orig: Vec<(String, String)>,
    reply: Vec<(String, String)>,
    flags: Vec<String>,
    mark: u32,
    zone: u16,
}

fn parse_cli(line: &str) -> CliEntry {
    let t: Vec<&str> = line.split_whitespace().collect();
    let mut e = CliEntry {
        l3: t[0].to_owned(),
        proto: t[3].parse().expect("proto"),
        timeout: t[4].parse().expect("timeout"),
        ..CliEntry::default()
    };
    let mut side = 0;
    for tok in &t[5..] {
        if let Some((k, v)) = tok.split_once('=') {
            match k {
                "mark" => e.mark = v.parse().expect("mark"),
                "zone" => e.zone = v.parse().expect("zone"),
                "use" | "secctx" | "labels" | "helper" | "delta-time" => {}
                _ => {
                    if k == "src" {
                        side += 1;
                    }
                    let kv = (k.to_owned(), v.to_owned());
                    if side <= 1 {
                        e.orig.push(kv);
                    } else {
                        e.reply.push(kv);
                    }
                }
            }
        } else if tok.starts_with('[') {
            e.flags.push(tok.trim_matches(['[', ']']).to_owned());
        } else {
            e.state = Some((*tok).to_owned());
        }
    }
    e
}

/// The fields `conntrack -L` prints for a tuple.
fn cli_fields(t: &Tuple) -> Vec<(String, String)> {
    let mut v = vec![
        ("src".to_owned(), t.src.to_string()),
        ("dst".to_owned(), t.dst.to_string()),
    ];
    match t.l4 {
        L4::Ports { src, dst, .. } => {
            v.push(("sport".into(), src.to_string()));
            v.push(("dport".into(), dst.to_string()));
        }
        L4::Icmp {
            icmp_type,
            code,
            id,
        }
        | L4::Icmpv6 {
            icmp_type,
            code,
            id,
        } => {
            v.push(("type".into(), icmp_type.to_string()));
            v.push(("code".into(), code.to_string()));
            v.push(("id".into(), id.to_string()));
        }
        L4::Other(_) => {}
    }
    v
}

fn cli_list(h: &Host) -> Vec<CliEntry> {
    let out = h
        .run(&["conntrack", "-L", "-o", "extended"])
        .expect("conntrack -L");
    out.lines()
        .filter(|l| l.starts_with("ipv"))
        .map(parse_cli)
        .collect()
}

fn find_cli<'a>(list: &'a [CliEntry], c: &Conn) -> &'a CliEntry {
    let want = cli_fields(&c.orig);
    list.iter()
        .find(|e| e.orig == want && e.zone == c.zone)
        .unwrap_or_else(|| panic!("conntrack -L does not list {:?}", c.orig))
}

fn find<'a>(dump: &'a [Conn], key: &ConnKey) -> &'a Conn {
    dump.iter()
        .find(|c| c.key() == *key)
        .unwrap_or_else(|| panic!("our dump does not have {key:?}"))
}

/// The entries of the create test: every protocol, with and without NAT, v4 and v6.
fn sample_conns() -> Vec<Conn> {
    let est = |ws: u8| TcpInfo {
        state: TcpState::Established,
        wscale_orig: ws,
        wscale_reply: ws,
        flags_orig: tcp_flags::WINDOW_SCALE | tcp_flags::SACK_PERM,
        flags_reply: tcp_flags::WINDOW_SCALE | tcp_flags::SACK_PERM,
    };
    let mut v = Vec::new();
    // TCP, established, window scaling, no NAT.
    let mut c = Conn::without_nat(tup(
        PortProto::Tcp,
        "192.0.2.10",
        40000,
        "198.51.100.20",
        80,
    ));
    c.status = status::SEEN_REPLY | status::ASSURED;
    c.timeout = Some(300);
    c.mark = 42;
    c.tcp = Some(est(7));
    v.push(c);
    // TCP, masqueraded to the WAN VIP, port kept; with sequence adjustment.
    let mut c = Conn::new(
        tup(PortProto::Tcp, "192.0.2.11", 40001, "198.51.100.20", 443),
        tup(PortProto::Tcp, "198.51.100.20", 443, "198.51.100.1", 40001),
    );
    c.status = status::SEEN_REPLY | status::ASSURED | status::SRC_NAT;
    c.timeout = Some(400);
    c.tcp = Some(est(9));
    c.seq_adj_orig = Some(SeqAdj {
        correction_pos: 1000,
        offset_before: 0,
        offset_after: 12,
    });
    c.seq_adj_reply = Some(SeqAdj {
        correction_pos: 2000,
        offset_before: 0,
        offset_after: u32::MAX - 11,
    });
    v.push(c);
    // UDP, source NAT with a port change.
    let mut c = Conn::new(
        tup(PortProto::Udp, "192.0.2.12", 5353, "198.51.100.53", 53),
        tup(PortProto::Udp, "198.51.100.53", 53, "198.51.100.1", 1025),
    );
    c.status = status::SEEN_REPLY;
    c.timeout = Some(30);
    v.push(c);
    // UDP, port forward (destination NAT), zone 5.
    let mut c = Conn::new(
        tup(PortProto::Udp, "198.51.100.77", 6000, "198.51.100.1", 5060),
        tup(PortProto::Udp, "192.0.2.50", 5061, "198.51.100.77", 6000),
    );
    c.timeout = Some(60);
    c.zone = 5;
    v.push(c);
    // TCP, source and destination NAT.
    let mut c = Conn::new(
        tup(PortProto::Tcp, "198.51.100.78", 50000, "198.51.100.1", 8080),
        tup(PortProto::Tcp, "192.0.2.50", 80, "192.0.2.1", 61000),
    );
    c.status = status::SEEN_REPLY | status::ASSURED;
    c.timeout = Some(500);
    c.tcp = Some(est(0));
    v.push(c);
    // ICMP echo, no NAT.
    let mut c = Conn::without_nat(icmp("192.0.2.13", "198.51.100.20", 8, 77));
    c.timeout = Some(30);
    v.push(c);
    // ICMP echo, source NAT with a new id.
    let mut c = Conn::new(
        icmp("192.0.2.14", "198.51.100.20", 8, 78),
        icmp("198.51.100.20", "198.51.100.1", 0, 3000),
    );
    c.status = status::SEEN_REPLY;
    c.timeout = Some(30);
    v.push(c);
    // IPv6 UDP, no NAT; IPv6 TCP with destination NAT; ICMPv6 echo.
    let mut c = Conn::without_nat(tup(
        PortProto::Udp,
        "2001:db8::10",
        7000,
        "2001:db8:1::20",
        7001,
    ));
    c.status = status::SEEN_REPLY | status::ASSURED;
    c.timeout = Some(120);
    c.mark = 1;
    v.push(c);
    let mut c = Conn::new(
        tup(PortProto::Tcp, "2001:db8:1::20", 50000, "2001:db8::1", 8080),
        tup(PortProto::Tcp, "2001:db8::50", 80, "2001:db8:1::20", 50000),
    );
    c.status = status::SEEN_REPLY | status::ASSURED;
    c.timeout = Some(600);
    c.tcp = Some(est(5));
    v.push(c);
    let mut c = Conn::without_nat(icmp("2001:db8::10", "2001:db8:1::20", 128, 9));
    c.timeout = Some(30);
    v.push(c);
    v
}

#[test]
fn create_with_and_without_nat_reads_back_exactly() {
    if !require_netns() {
        return;
    }
    let mut lab = Lab::new("linux_conntrack_create").expect("lab");
    let h = lab.host("fw").expect("host");
    let conns = sample_conns();
    let want = conns.clone();
    let dump = block_in_ns(h.ns(), move || async move {
        let mut ct = Conntrack::open().expect("open");
        for c in &want {
            assert_eq!(ct.create(c).expect("create"), Applied::Created, "{c:?}");
        }
        ct.dump().expect("dump")
    });
    assert_eq!(dump.len(), conns.len(), "{dump:#?}");
    let cli = cli_list(&h);
    assert_eq!(cli.len(), conns.len());
    for c in &conns {
        let d = find(&dump, &c.key());
        // Tuples: the kernel's reply tuple is the translated one we asked for.
        assert_eq!(d.orig, c.orig);
        assert_eq!(d.reply, c.reply, "reply tuple of {:?}", c.orig);
        assert_eq!(d.nat(), c.nat());
        // Status: what we gave, CONFIRMED, and the NAT bits the kernel sets for NAT entries.
        let mut st = c.status & !status::NAT_MASK | status::CONFIRMED;
        let nat = c.nat();
        if nat.src.is_some() {
            st |= status::SRC_NAT;
        }
        if nat.dst.is_some() {
            st |= status::DST_NAT;
        }
        if !nat.is_none() {
            st |= status::SRC_NAT_DONE | status::DST_NAT_DONE;
        }
        if c.seq_adj_orig.is_some() {
            st |= status::SEQ_ADJUST;
        }
        assert_eq!(d.status, st, "status of {:?}", c.orig);
        let (t, dt) = (c.timeout.expect("timeout"), d.timeout.expect("timeout"));
        assert!(dt <= t && dt + 5 >= t, "timeout {dt} for {t}");
        assert_eq!(d.mark, c.mark);
        assert_eq!(d.zone, c.zone);
        assert_eq!(d.seq_adj_orig, c.seq_adj_orig);
        assert_eq!(d.seq_adj_reply, c.seq_adj_reply);
        assert!(d.id.is_some());
        if let Some(want) = c.tcp {
            let got = d.tcp.expect("tcp protoinfo");
            assert_eq!(got.state, want.state);
            assert_eq!(
                (got.wscale_orig, got.wscale_reply),
                (want.wscale_orig, want.wscale_reply)
            );
            assert_eq!(got.flags_orig, want.flags_orig | tcp_flags::BE_LIBERAL);
            assert_eq!(got.flags_reply, want.flags_reply | tcp_flags::BE_LIBERAL);
        }
        // The same fields as conntrack(8) prints them.
        let e = find_cli(&cli, c);
        assert_eq!(e.l3, if c.orig.is_ipv6() { "ipv6" } else { "ipv4" });
        assert_eq!(e.proto, c.orig.l4.proto_number());
        assert_eq!(e.reply, cli_fields(&c.reply));
        assert_eq!(e.mark, c.mark);
        assert!(e.timeout <= t && e.timeout + 5 >= t);
        assert_eq!(
            e.flags.contains(&"ASSURED".to_owned()),
            c.status & status::ASSURED != 0
        );
        assert_eq!(
            e.flags.contains(&"UNREPLIED".to_owned()),
            c.status & status::SEEN_REPLY == 0
        );
        if c.tcp.is_some() {
            assert_eq!(e.state.as_deref(), Some("ESTABLISHED"));
        }
    }
}

#[test]
fn wscale_needs_the_window_scale_flag_in_both_directions() {
    if !require_netns() {
        return;
    }
    let mut lab = Lab::new("linux_conntrack_wscale").expect("lab");
    let h = lab.host("fw").expect("host");
    block_in_ns(h.ns(), || async {
        let mut ct = Conntrack::open().expect("open");
        let mut c = Conn::without_nat(tup(PortProto::Tcp, "192.0.2.1", 1, "192.0.2.2", 2));
        c.timeout = Some(100);
        c.tcp = Some(TcpInfo {
            state: TcpState::Established,
            wscale_orig: 7,
            wscale_reply: 7,
            flags_orig: tcp_flags::WINDOW_SCALE,
            flags_reply: 0,
        });
        ct.create(&c).expect("create");
        let got = ct.get(&c.key()).expect("get").expect("present");
        let tcp = got.tcp.expect("tcp");
        assert_eq!((tcp.wscale_orig, tcp.wscale_reply), (0, 0), "{tcp:?}");
        assert_eq!(
            tcp.flags_orig,
            tcp_flags::WINDOW_SCALE | tcp_flags::BE_LIBERAL
        );
    });
}

#[test]
fn update_delete_and_create_or_update() {
    if !require_netns() {
        return;
    }
    let mut lab = Lab::new("linux_conntrack_update").expect("lab");
    let h = lab.host("fw").expect("host");
    let conns = sample_conns();
    let hh = h.clone();
    block_in_ns(h.ns(), move || async move {
        let mut ct = Conntrack::open().expect("open");
        let nat_tcp = conns[1].clone();
        let udp_fwd = conns[3].clone();
        ct.create(&nat_tcp).expect("create");
        ct.create(&udp_fwd).expect("create");

        // Update timeout and mark (NAT entry: NAT is not resent, so the kernel accepts it).
        let mut u = nat_tcp.clone();
        u.timeout = Some(10_000);
        u.mark = 9;
        u.tcp = Some(TcpInfo {
            state: TcpState::FinWait,
            ..u.tcp.expect("tcp")
        });
        ct.update(&u).expect("update");
        let got = ct.get(&u.key()).expect("get").expect("present");
        assert_eq!(got.mark, 9);
        assert!(got.timeout.expect("timeout") > 9_990);
        assert_eq!(got.tcp.expect("tcp").state, TcpState::FinWait);
        assert_eq!(got.reply, nat_tcp.reply, "NAT untouched");
        let cli = cli_list(&hh);
        let e = find_cli(&cli, &u);
        assert_eq!(e.mark, 9);
        assert!(e.timeout > 9_990);
        assert_eq!(e.state.as_deref(), Some("FIN_WAIT"));

        // An update that would clear ASSURED is retried without the status.
        let mut u2 = u.clone();
        u2.status = 0;
        u2.mark = 10;
        ct.update(&u2).expect("update without ASSURED");
        let got = ct.get(&u.key()).expect("get").expect("present");
        assert_eq!(got.mark, 10);
        assert!(got.status & status::ASSURED != 0);

        // Mark back to 0.
        let mut u3 = u.clone();
        u3.mark = 0;
        ct.update(&u3).expect("update");
        assert_eq!(ct.get(&u.key()).expect("get").expect("present").mark, 0);

        // create() of an existing entry updates it.
        let mut again = udp_fwd.clone();
        again.mark = 77;
        again.timeout = Some(999);
        assert_eq!(ct.create(&again).expect("create"), Applied::Updated);
        let got = ct.get(&again.key()).expect("get").expect("present");
        assert_eq!(got.mark, 77);
        assert_eq!(got.reply, udp_fwd.reply);

        // Update of something absent: ENOENT.
        let absent = conns[2].clone();
        let e = ct.update(&absent).expect_err("absent");
        assert!(e.is_not_found(), "{e}");

        // Delete, then delete again.
        ct.delete(&udp_fwd.key()).expect("delete");
        assert!(ct.get(&udp_fwd.key()).expect("get").is_none());
        let e = ct.delete(&udp_fwd.key()).expect_err("gone");
        assert!(e.is_not_found(), "{e}");

        // A zone is part of the key: the same tuple in zone 0 is another entry.
        let mut z0 = udp_fwd.clone();
        z0.zone = 0;
        assert_eq!(ct.create(&z0).expect("create"), Applied::Created);
        assert_eq!(ct.create(&udp_fwd).expect("create"), Applied::Created);
        assert_eq!(ct.dump().expect("dump").len(), 3);

        // A related entry after its master.
        let master = conns[0].clone();
        ct.create(&master).expect("master");
        let mut rel = Conn::without_nat(tup(
            PortProto::Tcp,
            "198.51.100.20",
            20,
            "192.0.2.10",
            40100,
        ));
        rel.timeout = Some(100);
        rel.status = status::EXPECTED; // the peer's bit: not sent on create
        rel.master = Some(master.orig);
        ct.create(&rel).expect("related");
        let got = ct.get(&rel.key()).expect("get").expect("present");
        assert!(got.status & status::EXPECTED != 0);
        assert_eq!(got.master, Some(master.orig));
        rel.mark = 5;
        ct.update(&rel).expect("update related");

        ct.flush().expect("flush");
        assert!(ct.dump().expect("dump").is_empty());
    });
    assert!(cli_list(&h).is_empty());
}

/// The next IPv4 event (IPv6 traffic of the fresh link is not what the test looks at).
async fn next(ev: &mut Events) -> linux::conntrack::Event {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ev.next()).await {
            Ok(Ok(EventItem::Event(e))) if e.conn.orig.is_ipv6() => continue,
            Ok(Ok(EventItem::Event(e))) => return e,
            other => panic!("no event: {other:?}"),
        }
    }
}

#[test]
fn events_for_traffic_cli_and_own_writes() {
    if !require_netns() {
        return;
    }
    let (_lab, a, _b) = common::two_hosts(
        "linux_conntrack_events",
        &["192.0.2.1/24"],
        &["192.0.2.2/24"],
    );
    assert!(lab::wait_until(Duration::from_secs(5), || a.has_carrier("eth0")));
    sysctls(&a);
    assert_eq!(
        a.run(&["sysctl", "-n", "net.netfilter.nf_conntrack_events"])
            .expect("sysctl")
            .trim(),
        "1"
    );
    // Conntrack hooks are registered in a namespace only when a ruleset uses them.
    a.run(&[
        "nft",
        "add table inet t; add chain inet t out { type filter hook output priority 0; }; \
         add rule inet t out ct state new,established accept",
    ])
    .expect("nft");
    let aa = a.clone();
    block_in_ns(a.ns(), move || async move {
        let mut ev =
            Events::subscribe(Groups::NEW | Groups::UPDATE | Groups::DESTROY).expect("subscribe");
        assert!(ev.rcvbuf() >= 32 << 20, "rcvbuf {}", ev.rcvbuf());
        // Real traffic: one ping from a to b.
        assert!(aa.ping("192.0.2.2", 1, 2));
        let e = next(&mut ev).await;
        assert_eq!(e.kind, EventKind::New, "{e:?}");
        assert_eq!(e.portid, 0, "caused by a packet");
        let key = e.conn.key();
        assert!(matches!(e.conn.orig.l4, L4::Icmp { icmp_type: 8, .. }));
        assert_eq!(e.conn.orig.src, ip("192.0.2.1"));
        let e = next(&mut ev).await;
        assert_eq!(e.kind, EventKind::Update, "{e:?}");
        assert_eq!(e.conn.key(), key);
        assert!(e.conn.status & status::SEEN_REPLY != 0);

        // Deleted from the CLI: DESTROY.
        aa.run(&["conntrack", "-D", "-p", "icmp"])
            .expect("conntrack -D");
        let e = next(&mut ev).await;
        assert_eq!(e.kind, EventKind::Destroy, "{e:?}");
        assert_eq!(e.conn.key(), key);

        // Inserted from the CLI: NEW, with the CLI's socket as the cause.
        aa.run(&[
            "conntrack",
            "-I",
            "-s",
            "192.0.2.9",
            "-d",
            "192.0.2.8",
            "-p",
            "udp",
            "--sport",
            "1",
            "--dport",
            "2",
            "-t",
            "50",
        ])
        .expect("conntrack -I");
        let e = next(&mut ev).await;
        assert_eq!(e.kind, EventKind::New);
        assert_ne!(e.portid, 0);
        assert_eq!(e.conn.orig.src, ip("192.0.2.9"));

        // Our own writes carry our port id (so the daemon can ignore its own echo).
        let mut ct = Conntrack::open().expect("open");
        let mut c = Conn::without_nat(tup(PortProto::Tcp, "192.0.2.5", 1, "192.0.2.6", 2));
        c.timeout = Some(100);
        c.tcp = Some(TcpInfo {
            state: TcpState::Established,
            wscale_orig: 0,
            wscale_reply: 0,
            flags_orig: 0,
            flags_reply: 0,
        });
        ct.create(&c).expect("create");
        let e = next(&mut ev).await;
        assert_eq!((e.kind, e.portid), (EventKind::New, ct.portid()));
        assert_eq!(e.conn.orig, c.orig);
        c.mark = 3;
        ct.update(&c).expect("update");
        let e = next(&mut ev).await;
        assert_eq!((e.kind, e.portid), (EventKind::Update, ct.portid()));
        assert_eq!(e.conn.mark, 3);
        ct.delete(&c.key()).expect("delete");
        let e = next(&mut ev).await;
        assert_eq!((e.kind, e.portid), (EventKind::Destroy, ct.portid()));
        assert_eq!(e.conn.key(), c.key());
    });
}

#[test]
fn tiny_receive_buffer_reports_overrun() {
    if !require_netns() {
        return;
    }
    let mut lab = Lab::new("linux_conntrack_overrun").expect("lab");
    let h = lab.host("fw").expect("host");
    sysctls(&h);
    block_in_ns(h.ns(), || async {
        let mut ev = Events::subscribe_with_rcvbuf(Groups::NEW, 4096).expect("subscribe");
        let mut ct = Conntrack::open().expect("open");
        let conns = udp_flows(2000, 0);
        let ops: Vec<Op<'_>> = conns.iter().map(Op::Create).collect();
        assert!(ct.apply(&ops).iter().all(Result::is_ok));
        let mut seen = 0;
        let mut overrun = false;
        while let Ok(item) = tokio::time::timeout(Duration::from_secs(2), ev.next()).await {
            match item.expect("event") {
                EventItem::Event(_) => seen += 1,
                EventItem::Overrun => {
                    overrun = true;
                    break;
                }
            }
        }
        assert!(overrun, "no overrun after {seen} events");
        assert!(seen < 2000);
        // The stream goes on after an overrun (once what was queued is read).
        while tokio::time::timeout(Duration::from_millis(300), ev.next())
            .await
            .is_ok()
        {}
        ct.flush().expect("flush");
        let c = &udp_flows(1, 9)[0];
        ct.create(c).expect("create");
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ev.next()).await {
                Ok(Ok(EventItem::Event(e))) if e.conn.key() == c.key() => break,
                Ok(Ok(_)) => {}
                other => panic!("no event after overrun: {other:?}"),
            }
        }
    });
}

/// `n` distinct UDP entries (v4), SNATed every other one.
fn udp_flows(n: usize, salt: u8) -> Vec<Conn> {
    (0..n)
        .map(|i| {
            let a = format!("10.{}.{}.{}", salt, (i >> 16) & 0xff, (i >> 8) & 0xff);
            let sport = 1024 + (i & 0xff) as u16;
            let orig = tup(PortProto::Udp, &a, sport, "198.51.100.20", 53);
            let mut c = if i % 2 == 0 {
                Conn::without_nat(orig)
            } else {
                Conn::new(
                    orig,
                    // Distinct translated ports: reply tuples must be unique too.
                    tup(
                        PortProto::Udp,
                        "198.51.100.20",
                        53,
                        "198.51.100.1",
                        1024 + ((i / 2) % 64000) as u16,
                    ),
                )
            };
            c.status = status::SEEN_REPLY | status::ASSURED;
            c.timeout = Some(600);
            c
        })
        .collect()
}

#[test]
fn batched_apply_of_100k_entries() {
    if !require_netns() {
        return;
    }
    let mut lab = Lab::new("linux_conntrack_bulk").expect("lab");
    let h = lab.host("fw").expect("host");
    sysctls(&h);
    let ns = h.ns().to_owned();
    let n = 100_000;
    common::join(std::thread::spawn(move || {
        enter(&ns);
        let conns = udp_flows(n, 1);
        let mut ct = Conntrack::open().expect("open");
        let ops: Vec<Op<'_>> = conns.iter().map(Op::Create).collect();
        let t = Instant::now();
        let res = ct.apply(&ops);
        let dt = t.elapsed();
        let failed: Vec<_> = res.iter().filter(|r| r.is_err()).take(3).collect();
        assert!(failed.is_empty(), "{failed:?}");
        assert!(res.iter().all(|r| matches!(r, Ok(Applied::Created))));
        eprintln!(
            "conntrack bulk create: {n} entries in {:.3} s = {:.0} entries/s",
            dt.as_secs_f64(),
            n as f64 / dt.as_secs_f64()
        );
        let t = Instant::now();
        let mut count = 0usize;
        ct.dump_with(|_| count += 1).expect("dump");
        let dt = t.elapsed();
        assert_eq!(count, n);
        eprintln!(
            "conntrack dump: {n} entries in {:.3} s = {:.0} entries/s",
            dt.as_secs_f64(),
            n as f64 / dt.as_secs_f64()
        );
        // Again: every create finds its entry and becomes an update (second pass).
        let t = Instant::now();
        let res = ct.apply(&ops);
        let dt = t.elapsed();
        assert!(res.iter().all(|r| matches!(r, Ok(Applied::Updated))));
        eprintln!(
            "conntrack bulk create-over-existing (EEXIST, then update): {n} in {:.3} s = {:.0}/s",
            dt.as_secs_f64(),
            n as f64 / dt.as_secs_f64()
        );
        let keys: Vec<ConnKey> = conns.iter().map(Conn::key).collect();
        let dels: Vec<Op<'_>> = keys.iter().map(Op::Delete).collect();
        let t = Instant::now();
        let res = ct.apply(&dels);
        let dt = t.elapsed();
        assert!(res.iter().all(|r| matches!(r, Ok(Applied::Deleted))));
        eprintln!(
            "conntrack bulk delete: {n} entries in {:.3} s = {:.0} entries/s",
            dt.as_secs_f64(),
            n as f64 / dt.as_secs_f64()
        );
        assert_eq!(ct.dump().expect("dump").len(), 0);

        // As on a node whose daemon listens to events: every create is also an event.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let _ev = Events::subscribe(Groups::ALL).expect("subscribe");
        let t = Instant::now();
        let res = ct.apply(&ops);
        let dt = t.elapsed();
        assert!(res.iter().all(|r| matches!(r, Ok(Applied::Created))));
        eprintln!(
            "conntrack bulk create with an event listener: {n} entries in {:.3} s = {:.0} entries/s",
            dt.as_secs_f64(),
            n as f64 / dt.as_secs_f64()
        );
        ct.flush().expect("flush");
    }));
}

#[test]
fn batch_errors_are_matched_to_their_entries() {
    if !require_netns() {
        return;
    }
    let mut lab = Lab::new("linux_conntrack_batch_errors").expect("lab");
    let h = lab.host("fw").expect("host");
    block_in_ns(h.ns(), || async {
        let mut ct = Conntrack::open().expect("open");
        ct.set_batch_bytes(4096); // many sendmsgs
        let conns = udp_flows(300, 2);
        let keys: Vec<ConnKey> = conns.iter().map(Conn::key).collect();
        let mut no_timeout = conns[5].clone();
        no_timeout.timeout = None;
        let mut ops: Vec<Op<'_>> = conns.iter().map(Op::Create).collect();
        ops[5] = Op::Create(&no_timeout); // refused before sending
        ops[100] = Op::Delete(&keys[299]); // absent: ENOENT from the kernel
        ops[200] = Op::Update(&conns[250]); // absent yet: ENOENT
        let res = ct.apply(&ops);
        for (i, r) in res.iter().enumerate() {
            match i {
                5 => assert!(matches!(
                    r,
                    Err(linux::conntrack::ConntrackError::Encode(_))
                )),
                100 | 200 => {
                    let e = r.as_ref().expect_err("absent");
                    assert!(e.is_not_found(), "{i}: {e}");
                }
                _ => assert!(matches!(r, Ok(Applied::Created)), "{i}: {r:?}"),
            }
        }
        assert_eq!(ct.dump().expect("dump").len(), 300 - 3);
    });
}
