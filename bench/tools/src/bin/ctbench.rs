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
//! - `kernel N [--runs R] [--threads T]`: the kernel's own ceiling: N creates in one batched
//!   write into an empty table, with no conntrack event listener, then with one listener
//!   reading every event on another thread (as a sync daemon does: the kernel then builds and
//!   queues an event per create), then with a listener to UPDATE and DESTROY only (what a
//!   quiet bulk install leaves), then with no listener from T sockets on T threads at once
//!   (each a shard of the N; default 2); prints `RATE_WITHOUT RATE_WITH RATE_NO_NEW
//!   RATE_PARALLEL` (creates/s, median of R runs, default 3).
//! - `sustained RATE SECS [--first K]`: creates the entries K.. at RATE per second for SECS
//!   seconds, one batch per millisecond on a fixed schedule (late batches catch up); prints
//!   one line per batch, `MONO_NS FIRST COUNT` (CLOCK_MONOTONIC when the batch's write
//!   returned: all its entries exist), and the achieved rate on stderr.
//! - `listen N [--first K] [--timeout S]`: subscribes to NEW events and prints `INDEX MONO_NS`
//!   for each of the benchmark entries K..K+N when its NEW event is read (first time only),
//!   until all N were seen or S seconds (default 60) passed without one; then `END SEEN`.
//! - `lag CREATED LISTENED`: joins the two outputs above (CLOCK_MONOTONIC is one clock for
//!   every network namespace) and prints `P50_MS P99_MS MAX_MS SEEN TOTAL`.
//!
//! The entries: every fifth one UDP 198.51.100.a:p → 192.0.2.b:53 (SEEN_REPLY|ASSURED), the
//! others established TCP 198.51.100.a:p → 192.0.2.b:{443,80,22,8080} (window scaling and
//! SACK in both directions); timeout 3600 s, no NAT. Entry i has source address
//! 198.51.100.(1 + i % 250) and source port 10000 + i / 250, so every tuple is unique up to
//! 250 × 55 000 entries.

use anyhow::{bail, Context, Result};
use conntrack::model::{status, tcp_flags, Conn, ConnKey, PortProto, TcpInfo, TcpState, Tuple, L4};
use linux::conntrack::{Conntrack, EventItem, Events, Groups, Op};
use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TIMEOUT: u32 = 3600;
const MAX_ENTRIES: usize = 250 * 55_000;

fn epoch_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

use linux::conntrack::clock_monotonic_ns as mono_ns;

/// The index of a benchmark entry from its original tuple (the inverse of [`orig`]).
fn index_of(t: &Tuple) -> Option<usize> {
    let (IpAddr::V4(src), L4::Ports { src: sport, .. }) = (t.src, t.l4) else {
        return None;
    };
    let o = src.octets();
    if o[..3] != [198, 51, 100] || o[3] == 0 || o[3] > 250 || sport < 10_000 {
        return None;
    }
    let i = usize::from(sport - 10_000) * 250 + usize::from(o[3] - 1);
    (orig(i) == *t).then_some(i)
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

/// A listener to `groups` on its own thread, reading (and decoding) every event as fast as it
/// can, until `stop` is set.
fn listener(groups: Groups, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(anyhow::anyhow!("tokio runtime: {e}")));
                return;
            }
        };
        rt.block_on(async move {
            let mut ev = match Events::subscribe(groups) {
                Ok(ev) => ev,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("subscribing to events: {e}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut overruns = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(100), ev.next()).await {
                    Ok(Ok(EventItem::Overrun)) => {
                        overruns += 1;
                        eprintln!("ctbench kernel: the listener overran ({overruns})");
                    }
                    Ok(Ok(EventItem::Event(_))) | Err(_) => {}
                    Ok(Err(e)) => eprintln!("ctbench kernel: event: {e}"),
                }
            }
        });
    });
    ready_rx.recv().context("listener thread")?
}

/// Creates of `ops` split into `threads` shards, each written by its own socket on its own
/// thread at the same time, into an empty table.
fn timed_parallel_fill(ct: &mut Conntrack, conns: &[Conn], threads: usize) -> Result<f64> {
    ct.flush().context("flushing the table")?;
    let shards: Vec<Vec<Conn>> = (0..threads)
        .map(|t| conns.iter().skip(t).step_by(threads).cloned().collect())
        .collect();
    let mut sockets = Vec::new();
    for _ in 0..threads {
        sockets.push(Conntrack::open().context("opening ctnetlink")?);
    }
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = shards
        .into_iter()
        .zip(sockets)
        .map(|(shard, mut sock)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let ops: Vec<Op<'_>> = shard.iter().map(Op::Create).collect();
                barrier.wait();
                sock.apply(&ops).iter().filter(|r| r.is_err()).count()
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    let mut failed = 0;
    for h in handles {
        failed += h
            .join()
            .map_err(|_| anyhow::anyhow!("a writer thread panicked"))?;
    }
    let dt = t.elapsed().as_secs_f64();
    if failed > 0 {
        bail!("{failed} parallel creates failed");
    }
    ct.flush().context("flushing the table")?;
    Ok(conns.len() as f64 / dt)
}

fn kernel(n: usize, runs: usize, threads: usize) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let conns: Vec<Conn> = (0..n).map(entry).collect();
    let ops: Vec<Op<'_>> = conns.iter().map(Op::Create).collect();
    let mut ct = Conntrack::open().context("opening ctnetlink")?;
    let mut without = Vec::new();
    for _ in 0..runs {
        without.push(timed_fill(&mut ct, &ops)?);
    }
    let mut parallel = Vec::new();
    for _ in 0..runs {
        parallel.push(timed_parallel_fill(&mut ct, &conns, threads.max(1))?);
    }
    let mut rates = Vec::new();
    for groups in [Groups::ALL, Groups::UPDATE | Groups::DESTROY] {
        let stop = Arc::new(AtomicBool::new(false));
        listener(groups, stop.clone())?;
        let mut with = Vec::new();
        for _ in 0..runs {
            with.push(timed_fill(&mut ct, &ops)?);
            std::thread::sleep(Duration::from_millis(300)); // let the listener catch up
        }
        stop.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200)); // the listener leaves
        rates.push(median(with));
    }
    println!(
        "{:.0} {:.0} {:.0} {:.0}",
        median(without),
        rates[0],
        rates[1],
        median(parallel)
    );
    Ok(())
}

fn sustained(first: usize, rate: u64, secs: u64) -> Result<()> {
    let total = (rate * secs) as usize;
    if first + total > MAX_ENTRIES {
        bail!("at most {MAX_ENTRIES} distinct entries");
    }
    let mut ct = Conntrack::open().context("opening ctnetlink")?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let start = Instant::now();
    let mut done = 0usize;
    let mut failed = 0usize;
    let mut tick = 0u64;
    while done < total {
        tick += 1;
        // Entries due by the end of this millisecond.
        let due = ((rate * tick) / 1000).min(total as u64) as usize;
        if due > done {
            let conns: Vec<Conn> = (first + done..first + due).map(entry).collect();
            let ops: Vec<Op<'_>> = conns.iter().map(Op::Create).collect();
            failed += ct.apply(&ops).iter().filter(|r| r.is_err()).count();
            writeln!(out, "{} {} {}", mono_ns(), first + done, due - done)?;
            done = due;
        }
        let next = start + Duration::from_millis(tick);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    out.flush()?;
    let dt = start.elapsed().as_secs_f64();
    eprintln!(
        "ctbench sustained: {total} entries in {:.0} ms = {:.0}/s (asked {rate}/s), {failed} failed",
        dt * 1e3,
        total as f64 / dt
    );
    if failed > 0 {
        bail!("{failed} creates failed");
    }
    Ok(())
}

fn listen(first: usize, n: usize, idle: Duration) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let mut ev = Events::subscribe(Groups::NEW).context("subscribing to NEW events")?;
        eprintln!("ctbench listen: ready");
        let out = std::io::stdout();
        let mut out = std::io::BufWriter::new(out.lock());
        let mut seen = vec![false; n];
        let mut count = 0usize;
        let mut overruns = 0u64;
        while count < n {
            match tokio::time::timeout(idle, ev.next()).await {
                Err(_) => break,
                Ok(Ok(EventItem::Event(e))) => {
                    let t = mono_ns();
                    if let Some(i) = index_of(&e.conn.orig) {
                        if i >= first && i < first + n && !seen[i - first] {
                            seen[i - first] = true;
                            count += 1;
                            writeln!(out, "{i} {t}")?;
                        }
                    }
                }
                Ok(Ok(EventItem::Overrun)) => overruns += 1,
                Ok(Err(e)) => eprintln!("ctbench listen: {e}"),
            }
        }
        writeln!(out, "END {count}")?;
        out.flush()?;
        if overruns > 0 {
            eprintln!(
                "ctbench listen: {overruns} overruns (events lost: those entries count as unseen)"
            );
        }
        Ok(())
    })
}

fn lag(created: &str, listened: &str) -> Result<()> {
    let mut at: HashMap<usize, u64> = HashMap::new();
    for line in std::fs::read_to_string(created)
        .with_context(|| created.to_string())?
        .lines()
    {
        let v: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [t, first, count] = v[..] {
            for i in first..first + count {
                at.insert(i as usize, t);
            }
        }
    }
    let mut lags = Vec::new();
    for line in std::fs::read_to_string(listened)
        .with_context(|| listened.to_string())?
        .lines()
    {
        let v: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [i, t] = v[..] {
            if let Some(c) = at.get(&(i as usize)) {
                lags.push(t.saturating_sub(*c) as f64 / 1e6);
            }
        }
    }
    let total = at.len();
    let seen = lags.len();
    if lags.is_empty() {
        println!("- - - 0 {total}");
        return Ok(());
    }
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| lags[((p * (seen - 1) as f64).round() as usize).min(seen - 1)];
    println!(
        "{:.2} {:.2} {:.2} {seen} {total}",
        pct(0.50),
        pct(0.99),
        lags[seen - 1]
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ctbench fill N [--first K] | wait N [--timeout S] [--poll-ms MS] [--trace] | count | verify N [--first K] | flush | kernel N [--runs R] [--threads T] | sustained RATE SECS [--first K] | listen N [--first K] [--timeout S] | lag CREATED LISTENED";
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
        "kernel" => kernel(
            num(1)? as usize,
            opt("--runs", 3)?.max(1) as usize,
            opt("--threads", 2)? as usize,
        ),
        "sustained" => sustained(opt("--first", 0)? as usize, num(1)?, num(2)?),
        "listen" => listen(
            opt("--first", 0)? as usize,
            num(1)? as usize,
            Duration::from_secs(opt("--timeout", 60)?),
        ),
        "lag" => match (args.get(1), args.get(2)) {
            (Some(a), Some(b)) => lag(a, b),
            _ => bail!("{usage}"),
        },
        "flush" => Conntrack::open()
            .context("opening ctnetlink")?
            .flush()
            .context("flushing the table"),
        _ => bail!("{usage}"),
    }
}
