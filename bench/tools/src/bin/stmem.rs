//! Memory of the state sync engine's table at sizes the host's conntrack table cannot hold
//! (bench/statesync.sh; `nf_conntrack_max` is host-wide and left alone): two replicators in
//! one process, as fw1 and fw2 of the benchmark, with the network between them in memory.
//!
//! `stmem N`: fw1's engine takes a dump of N conns (the benchmark's entries) and announces
//! them (into the void), then fw2's engine asks for a bulk sync and receives all N, the kernel
//! writes it asks for dropped on the floor. Prints `RSS0 RSS_FW1 RSS_BOTH` (VmRSS in KiB:
//! before, once fw1 holds N, once fw2 holds N too), so fw2's engine costs RSS_BOTH - RSS_FW1
//! for N states. What this leaves out of the daemon: the tokio runtime, sockets and buffers
//! (they do not grow with the table), which the daemons' own RSS at 100k in the benchmark
//! shows.

use anyhow::{bail, Context, Result};
use conntrack::model::{status, tcp_flags, Conn, PortProto, TcpInfo, TcpState, Tuple, L4};
use statesync::{Action, Config, Input, NodeId, Replicator, SealKey};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

fn entry(i: usize) -> Conn {
    // The benchmark's entries (ctbench.rs), widened past 250 × 55 000 by the destination.
    let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1 + (i % 250) as u8));
    let dst = IpAddr::V4(Ipv4Addr::new(
        192,
        0,
        2,
        10 + ((i / 250 / 50_000) % 200) as u8,
    ));
    let sport = 10_000 + ((i / 250) % 50_000) as u16;
    let udp = i % 5 == 4;
    let (proto, dport) = if udp {
        (PortProto::Udp, 53)
    } else {
        (PortProto::Tcp, [443, 80, 22, 8080][i % 4])
    };
    let mut c = Conn::without_nat(Tuple {
        src,
        dst,
        l4: L4::Ports {
            proto,
            src: sport,
            dst: dport,
        },
    });
    c.status = status::SEEN_REPLY | status::ASSURED | status::CONFIRMED;
    c.timeout = Some(3600);
    if !udp {
        let flags = tcp_flags::WINDOW_SCALE | tcp_flags::SACK_PERM;
        c.tcp = Some(TcpInfo {
            state: TcpState::Established,
            wscale_orig: 7,
            wscale_reply: 7,
            flags_orig: flags,
            flags_reply: flags,
        });
    }
    c
}

fn rss_kib() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, n)), 4567)
}

/// Runs the pair for `d` of virtual time; fw1's datagrams reach fw2 only if `deliver`.
fn run(r: &mut [Replicator; 2], now: &mut Instant, d: Duration, deliver: bool) {
    let end = *now + d;
    while *now < end {
        for i in 0..2 {
            let mut out = Vec::new();
            while let Some(a) = r[i].poll_action() {
                if let Action::Send { bytes, .. } | Action::SendAfterKernel { bytes, .. } = a {
                    out.push(bytes);
                }
            }
            if i == 0 && !deliver {
                continue;
            }
            for b in out {
                r[1 - i].handle_datagram(*now, addr(1 + i as u8), &b);
            }
        }
        *now += Duration::from_millis(1);
        for e in r.iter_mut() {
            if e.poll_timeout().is_some_and(|(t, _)| t <= *now) {
                e.handle_timeout(*now);
            }
        }
    }
}

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .context("usage: stmem N")?
        .parse()
        .context("N")?;
    let mut now = Instant::now();
    let mk = |node: u32| {
        let mut c = Config::new(
            NodeId(node),
            0x1000 + u64::from(node),
            SealKey::from_bytes([7; 32]),
        );
        c.dump_interval = None;
        Replicator::new(now, c, u64::from(node)).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let mut r = [mk(1)?, mk(2)?];
    run(&mut r, &mut now, Duration::from_millis(200), true);
    if !(r[0].is_ready() && r[1].is_ready()) {
        bail!("the pair never became ready");
    }
    let rss0 = rss_kib()?;
    // fw1's kernel table, as its dump reports it; announced into the void.
    r[0].handle(now, Input::DumpStarted);
    r[0].handle(now, Input::LocalSnapshot((0..n).map(entry).collect()));
    for _ in 0..600 {
        run(&mut r, &mut now, Duration::from_millis(100), false);
        if r[0].status(now).pending == 0 {
            break;
        }
    }
    let rss1 = rss_kib()?;
    // fw2 asks for the whole table (as after a restart).
    r[1].handle(now, Input::Resync);
    for _ in 0..600 {
        run(&mut r, &mut now, Duration::from_millis(100), true);
        if r[1].is_ready() && r[1].status(now).states >= n {
            break;
        }
    }
    let states = r[1].status(now).states;
    if states < n {
        bail!("fw2's engine holds {states} of {n} states");
    }
    let rss2 = rss_kib()?;
    println!("{rss0} {rss1} {rss2}");
    eprintln!(
        "stmem: {n} states; fw2's engine grew {:.1} MiB = {:.0} bytes per state (fw1's: {:.1} MiB)",
        (rss2.saturating_sub(rss1)) as f64 / 1024.0,
        (rss2.saturating_sub(rss1)) as f64 * 1024.0 / n as f64,
        (rss1.saturating_sub(rss0)) as f64 / 1024.0
    );
    Ok(())
}
