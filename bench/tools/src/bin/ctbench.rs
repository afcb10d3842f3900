//! Conntrack helper for the state sync benchmark (bench/statesync.sh). Every subcommand works
//! on the conntrack table of the network namespace it runs in (`ip netns exec NS ctbench ...`).
//!
//! - `fill N [--first K]`: inserts the benchmark entries K..K+N (default K = 0) with one
//!   batched ctnetlink write ([`linux::conntrack::Conntrack::apply`]); prints
//!   `START_NS END_NS` (wall clock, ns since the epoch) on stdout, the rate on stderr.
//! - `wait N [--timeout S] [--poll-ms MS] [--trace]`: polls `net.netfilter.nf_conntrack_count`
//!   until the table holds at least N entries; prints the wall clock (ns) of the first poll
//!   that saw them. Exit status 1 on timeout (last count on stderr). `--trace`: every change
//!   of the count on stderr as `MS_SINCE_START COUNT`.
//! - `count`: prints `nf_conntrack_count`.
//! - `verify N [--first K]`: dumps the table and checks that it holds exactly the benchmark
//!   entries K..K+N (by original tuple) with their protocol state and a timeout left; prints a
//!   one-line summary, exit status 1 if anything is missing or wrong.
//! - `flush`: empties the table.
//! - `kernel N [--runs R]`: the kernel's own ceiling: N creates in one batched write into an
//!   empty table, with no conntrack event listener and then with one listener reading every
//!   event on another thread (as a sync daemon does: the kernel then builds and queues an
//!   event per create); prints `RATE_WITHOUT RATE_WITH` (creates/s, median of R runs, default 3).
//!
//! The entries: every fifth one UDP 198.51.100.a:p → 192.0.2.b:53 (SEEN_REPLY|ASSURED), the
//! others established TCP 198.51.100.a:p → 192.0.2.b:{443,80,22,8080} (window scaling and
//! SACK in both directions); timeout 3600 s, no NAT. Entry i has source address
//! 198.51.100.(1 + i % 250) and source port 10000 + i / 250, so every tuple is unique up to
//! 250 × 55 000 entries.

use anyhow::{bail, Context, Result};
use conntrack::model::{status, tcp_flags, Conn, ConnKey, PortProto, TcpInfo, TcpState, Tuple, L4};
use linux::conntrack::{Conntrack, EventItem, Events, Groups, Op};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TIMEOUT: u32 = 3600;
const MAX_ENTRIES: usize = 250 * 55_000;

fn epoch_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn is_udp(i: usize) -> bool {
    i % 5 == 4
}

fn orig(i: usize) -> Tuple {
    let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1 + (i % 250) as u8));
    let dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + ((i / 7) % 20) as u8));
    let sport = 10_000 + (i / 250) as u16;
    let (proto, dport) = if is_udp(i) {
        (PortProto::Udp, 53)
    } else {
        (PortProto::Tcp, [443, 80, 22, 8080][i % 4])
    };
    Tuple {
        src,
        dst,
        l4: L4::Ports {
            proto,
            src: sport,
            dst: dport,
        },
    }
}

fn entry(i: usize) -> Conn {
    let mut c = Conn::without_nat(orig(i));
    c.status = status::SEEN_REPLY | status::ASSURED;
    c.timeout = Some(TIMEOUT);
    if !is_udp(i) {
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

fn count() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .context("reading /proc/sys/net/netfilter/nf_conntrack_count (nf_conntrack loaded?)")?;
    s.trim().parse().context("parsing nf_conntrack_count")
}

fn fill(first: usize, n: usize) -> Result<()> {
    if first + n > MAX_ENTRIES {
        bail!("at most {MAX_ENTRIES} distinct entries");
    }
    let conns: Vec<Conn> = (first..first + n).map(entry).collect();
    let ops: Vec<Op<'_>> = conns.iter().map(Op::Create).collect();
    let mut ct = Conntrack::open().context("opening ctnetlink")?;
    let start = epoch_ns();
    let t = Instant::now();
    let res = ct.apply(&ops);
    let dt = t.elapsed();
    let end = epoch_ns();
    let failed: Vec<String> = res
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    eprintln!(
        "ctbench fill: {} entries in {:.1} ms = {:.0}/s{}",
        n,
        dt.as_secs_f64() * 1e3,
        n as f64 / dt.as_secs_f64(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; {} failed, first: {}", failed.len(), failed[0])
        }
    );
    if !failed.is_empty() {
        bail!("{} creates failed", failed.len());
    }
    println!("{start} {end}");
    Ok(())
}

fn wait(n: u64, timeout: Duration, poll: Duration, trace: bool) -> Result<()> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut last = u64::MAX;
    loop {
        let c = count()?;
        if trace && c != last {
            eprintln!("{:.1} {c}", start.elapsed().as_secs_f64() * 1e3);
            last = c;
        }
        if c >= n {
            println!("{}", epoch_ns());
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!("ctbench wait: timed out after {timeout:?} with {c} of {n} entries");
            std::process::exit(1);
        }
        std::thread::sleep(poll);
    }
}

fn verify(first: usize, n: usize) -> Result<()> {
    let want: HashSet<ConnKey> = (first..first + n).map(|i| entry(i).key()).collect();
    let mut ct = Conntrack::open().context("opening ctnetlink")?;
    let mut seen = HashSet::new();
    let (mut other, mut wrong, mut no_timeout) = (0usize, 0usize, 0usize);
    let mut example = None;
    let bad = ct
        .dump_with(|c| {
            let k = c.key();
            if !want.contains(&k) {
                other += 1;
                return;
            }
            seen.insert(k);
            let tcp_ok = match c.orig.l4 {
                L4::Ports {
                    proto: PortProto::Tcp,
                    ..
                } => c.tcp.is_some_and(|t| t.state == TcpState::Established),
                _ => true,
            };
            if !tcp_ok || c.reply != c.orig.inverted() || c.status & status::ASSURED == 0 {
                wrong += 1;
                example.get_or_insert_with(|| format!("{c:?}"));
            }
            if c.timeout.unwrap_or(0) == 0 || c.timeout.unwrap_or(0) > TIMEOUT {
                no_timeout += 1;
            }
        })
        .context("dumping the table")?;
    let missing = n - seen.len();
    println!(
        "{} of {} entries present, {} missing, {} with wrong state, {} without a sane timeout, {} other entries, {} undecodable",
        seen.len(),
        n,
        missing,
        wrong,
        no_timeout,
        other,
        bad
    );
    if let Some(e) = example {
        eprintln!("ctbench verify: first wrong entry: {e}");
    }
    if missing > 0 || wrong > 0 || no_timeout > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// One timed batched create of entries 0..n into an empty table; the table is emptied again.
fn timed_fill(ct: &mut Conntrack, ops: &[Op<'_>]) -> Result<f64> {
    ct.flush().context("flushing the table")?;
    let t = Instant::now();
    let res = ct.apply(ops);
    let dt = t.elapsed().as_secs_f64();
    if let Some(Err(e)) = res.iter().find(|r| r.is_err()) {
        bail!("create failed: {e}");
    }
    ct.flush().context("flushing the table")?;
    Ok(ops.len() as f64 / dt)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn kernel(n: usize, runs: usize) -> Result<()> {
    let conns: Vec<Conn> = (0..n).map(entry).collect();
    let ops: Vec<Op<'_>> = conns.iter().map(Op::Create).collect();
    let mut ct = Conntrack::open().context("opening ctnetlink")?;
    let mut without = Vec::new();
    for _ in 0..runs {
        without.push(timed_fill(&mut ct, &ops)?);
    }
    // A listener on its own thread, reading (and decoding) every event as fast as it can.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(anyhow::anyhow!("tokio runtime: {e}")));
                return;
            }
        };
        rt.block_on(async move {
            let mut ev = match Events::subscribe(Groups::ALL) {
                Ok(ev) => ev,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("subscribing to events: {e}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut overruns = 0u64;
            loop {
                match ev.next().await {
                    Ok(EventItem::Overrun) => {
                        overruns += 1;
                        eprintln!("ctbench kernel: the listener overran ({overruns})");
                    }
                    Ok(EventItem::Event(_)) => {}
                    Err(e) => eprintln!("ctbench kernel: event: {e}"),
                }
            }
        });
    });
    ready_rx.recv().context("listener thread")??;
    let mut with = Vec::new();
    for _ in 0..runs {
        with.push(timed_fill(&mut ct, &ops)?);
        std::thread::sleep(Duration::from_millis(300)); // let the listener catch up
    }
    println!("{:.0} {:.0}", median(without), median(with));
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ctbench fill N [--first K] | wait N [--timeout S] [--poll-ms MS] [--trace] | count | verify N [--first K] | flush | kernel N [--runs R]";
    let Some(cmd) = args.first() else {
        bail!("{usage}");
    };
    let num = |i: usize| -> Result<u64> {
        args.get(i)
            .with_context(|| format!("{cmd}: missing number\n{usage}"))?
            .parse::<u64>()
            .with_context(|| format!("{cmd}: not a number: {}", args[i]))
    };
    let opt = |name: &str, default: u64| -> Result<u64> {
        match args.iter().position(|a| a == name) {
            Some(i) => num(i + 1),
            None => Ok(default),
        }
    };
    match cmd.as_str() {
        "fill" => fill(opt("--first", 0)? as usize, num(1)? as usize),
        "wait" => wait(
            num(1)?,
            Duration::from_secs(opt("--timeout", 120)?),
            Duration::from_millis(opt("--poll-ms", 10)?),
            args.iter().any(|a| a == "--trace"),
        ),
        "count" => {
            println!("{}", count()?);
            Ok(())
        }
        "verify" => verify(opt("--first", 0)? as usize, num(1)? as usize),
        "kernel" => kernel(num(1)? as usize, opt("--runs", 3)?.max(1) as usize),
        "flush" => Conntrack::open()
            .context("opening ctnetlink")?
            .flush()
            .context("flushing the table"),
        _ => bail!("{usage}"),
    }
}
