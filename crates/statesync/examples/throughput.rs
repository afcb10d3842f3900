//! Rough single-core throughput of the sync path, without the kernel:
//!
//! ```text
//! cargo run --release -p statesync --example throughput [STATES]
//! ```
//!
//! 1. codec: encode + seal full datagrams of conn records, then open + decode them;
//! 2. bulk sync between two engines: the sender's bulk (table walk, encode, seal) and the
//!    receiver's datagram handling (open, decode, table, install batches), timed separately.

use statesync::model::{status, Conn, PortProto, TcpInfo, TcpState, Tuple, L4};
use statesync::wire::{self, Header, Kind, NodeId, Records, HEADER_LEN, OVERHEAD};
use statesync::{Action, Config, LocalEvent, Replicator, SealKey, Sealer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

fn conn(i: u32) -> Conn {
    let mut c = Conn::without_nat(Tuple {
        src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i >> 14))),
        dst: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20)),
        l4: L4::Ports {
            proto: PortProto::Tcp,
            src: 1024 + (i & 0x3fff) as u16,
            dst: 443,
        },
    });
    // Half of them source-NATed to the WAN VIP.
    if i & 1 == 0 {
        c.reply.dst = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        c.status |= status::SRC_NAT | status::SRC_NAT_DONE;
    }
    c.status |= status::CONFIRMED | status::ASSURED | status::SEEN_REPLY;
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

fn rate(n: usize, d: Duration) -> String {
    format!("{:>10.0} states/s", n as f64 / d.as_secs_f64())
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300_000);
    let conns: Vec<Conn> = (0..n as u32).map(conn).collect();
    let key = SealKey::from_bytes([7; 32]);
    let sealer = Sealer::new(&key);

    // 1. codec
    let t = Instant::now();
    let mut datagrams = Vec::new();
    let mut buf = Vec::with_capacity(1400);
    let mut seq = 0u64;
    let budget = 1400 - OVERHEAD;
    let mut i = 0;
    while i < conns.len() {
        buf.clear();
        seq += 1;
        let h = Header {
            kind: Kind::Stream,
            key_id: sealer.key_id(),
            node: NodeId(1),
            epoch: 1,
            seq,
        };
        buf.extend_from_slice(&h.to_bytes());
        buf.extend_from_slice(&seq.to_be_bytes());
        while i < conns.len() {
            let mark = buf.len();
            let c = &conns[i];
            let _ = wire::emit_conn_record(&mut buf, wire::rtype::BULK_STATE, c, c.timeout);
            if buf.len() - HEADER_LEN > budget {
                buf.truncate(mark);
                break;
            }
            i += 1;
        }
        sealer.seal(&mut buf);
        datagrams.push(buf.clone());
    }
    let enc = t.elapsed();
    let bytes: usize = datagrams.iter().map(|d| d.len()).sum();
    let t = Instant::now();
    let mut decoded = 0;
    let mut scratch = Vec::with_capacity(1500);
    for d in &datagrams {
        scratch.clear();
        scratch.extend_from_slice(d);
        let end = sealer
            .open(&mut scratch)
            .unwrap_or_else(|e| panic!("open: {e}"));
        let (_, recs) =
            wire::split_stream(&scratch[HEADER_LEN..end]).unwrap_or_else(|e| panic!("{e}"));
        decoded += Records::new(recs).filter(|r| r.is_ok()).count();
    }
    let dec = t.elapsed();
    assert_eq!(decoded, n);
    println!(
        "codec: {n} states in {} datagrams ({:.1} states/datagram, {} bytes)",
        datagrams.len(),
        n as f64 / datagrams.len() as f64,
        bytes
    );
    println!("  encode + seal  {}  ({enc:?})", rate(n, enc));
    println!("  open + decode  {}  ({dec:?})", rate(n, dec));

    // 2. engines: bulk sync of the whole table
    let mut now = Instant::now();
    let cfg = |node: u32| {
        let mut c = Config::new(NodeId(node), u64::from(node), key.clone());
        c.burst = 1_000_000;
        c.dump_interval = None;
        c
    };
    let a_addr = SocketAddr::from(([203, 0, 113, 1], 4567));
    let b_addr = SocketAddr::from(([203, 0, 113, 2], 4567));
    let mut a = Replicator::new(now, cfg(1), 1).unwrap_or_else(|e| panic!("{e}"));
    for c in &conns {
        a.handle_local(now, LocalEvent::New(c.clone()));
    }
    now += Duration::from_millis(50);
    a.handle_timeout(now);
    while a.poll_action().is_some() {}
    let mut b = Replicator::new(now, cfg(2), 2).unwrap_or_else(|e| panic!("{e}"));
    let (mut send_time, mut recv_time) = (Duration::ZERO, Duration::ZERO);
    let mut installed = 0usize;
    for _ in 0..50 {
        let t = Instant::now();
        let mut to_b = Vec::new();
        a.handle_timeout(now);
        while let Some(x) = a.poll_action() {
            if let Action::Send { bytes, .. } = x {
                to_b.push(bytes);
            }
        }
        send_time += t.elapsed();
        let mut to_a = Vec::new();
        let t = Instant::now();
        for d in &to_b {
            b.handle_datagram(now, a_addr, d);
        }
        b.handle_timeout(now);
        while let Some(x) = b.poll_action() {
            match x {
                Action::Send { bytes, .. } => to_a.push(bytes),
                Action::Install(cs) => installed += cs.len(),
                _ => {}
            }
        }
        recv_time += t.elapsed();
        for d in &to_a {
            a.handle_datagram(now, b_addr, d);
        }
        now += Duration::from_millis(1);
        if b.is_ready() {
            break;
        }
    }
    assert!(b.is_ready(), "bulk did not complete");
    assert_eq!(installed, n);
    println!("bulk sync between engines ({n} states):");
    println!(
        "  sender (walk, encode, seal)       {}  ({send_time:?})",
        rate(n, send_time)
    );
    println!(
        "  receiver (open, decode, install)  {}  ({recv_time:?})",
        rate(n, recv_time)
    );
}
