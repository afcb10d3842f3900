//! Firewall render + apply benchmark (run by bench/firewall.sh; needs root, nft, and for the
//! peer rows iptables and ipset).
//!
//! For each case (config rules, alias entries) of `firewall::synth::config`:
//! - parse (TOML → areas) and render (validate + render to one nft script), in-process;
//! - `nft -c -f -` and `nft -f -` of that script in a throwaway namespace, replacing the table
//!   the previous run left (what a reload does; one untimed warm-up run creates it first);
//! - the peer: the same rules written for `iptables-restore` (nft backend and legacy backend),
//!   the alias as an ipset loaded by `ipset restore` and swapped in (ipset's atomic replace).
//!
//! Every timing is the median of `--runs` runs. Prints a markdown report on stdout.
//!
//! Usage: fwbench [--runs N] [--cases RULES:ENTRIES,...] [--no-iptables]

use anyhow::{bail, Context, Result};
use lab::{Host, Lab};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Case {
    rules: usize,
    entries: usize,
}

#[derive(Default)]
struct Row {
    rules: usize,
    entries: usize,
    nft_rules: usize,
    script_kib: usize,
    parse: Vec<Duration>,
    render: Vec<Duration>,
    check: Vec<Duration>,
    apply: Vec<Duration>,
    ipt_rules: usize,
    ipt_nft: Vec<Duration>,
    ipt_legacy: Vec<Duration>,
}

fn median(v: &[Duration]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    Some(if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    })
}

fn fmt_ms(v: &[Duration]) -> String {
    match median(v) {
        Some(m) if m < 10.0 => format!("{m:.2}"),
        Some(m) if m < 100.0 => format!("{m:.1}"),
        Some(m) => format!("{m:.0}"),
        None => "–".into(),
    }
}

fn log(msg: &str) {
    eprintln!("[fwbench] {msg}");
}

/// Runs `args` in `host` with `stdin` fed in; the wall time of the whole command.
fn timed(host: &Host, args: &[&str], stdin: &[u8]) -> Result<Duration> {
    let mut cmd = host.command(args[0]);
    cmd.args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawn {args:?}"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin).context("write stdin")?;
    }
    let out = child.wait_with_output()?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// The alias `big` of `synth::config`: every other address from 10.0.0.0.
fn big_entry(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0A00_0000u32.wrapping_add((i as u32).wrapping_mul(2)))
}

/// `synth::config(rules, _)` written for iptables-restore, rule for rule as tandem renders it:
/// every `in` rule goes to INPUT (to the firewall) and FORWARD (through it); stateful passes
/// match SYN only; a logged rule is a LOG rule plus its verdict; a reject of any protocol is a
/// TCP reset plus an ICMP unreachable; the port alias is a multiport match; the big alias is
/// the ipset `big`. Returns the script and its rule count.
fn iptables_script(rules: usize) -> (String, usize) {
    let mut s = String::with_capacity(200 * rules + 2048);
    let mut n = 0;
    s.push_str("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for chain in ["INPUT", "FORWARD"] {
        let mut add = |line: String| {
            s.push_str(&line);
            s.push('\n');
            n += 1;
        };
        if chain == "INPUT" {
            add("-A INPUT -i lo -j ACCEPT".into());
            add("-A INPUT -p 112 -m comment --comment \"CARP/VRRP\" -j ACCEPT".into());
        }
        add(format!(
            "-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));
        add(format!("-A {chain} -m conntrack --ctstate INVALID -j DROP"));
        for i in 0..rules {
            let port = 1024 + (i % 60000);
            let c = format!("-m comment --comment \"rule {}\"", i + 1);
            match i % 4 {
                0 => add(format!(
                    "-A {chain} -i eth0 -s 192.0.2.0/24 -p tcp -m tcp --dport {port} --tcp-flags SYN,ACK SYN {c} -j ACCEPT"
                )),
                1 => {
                    let m = format!(
                        "-A {chain} -i eth1 -p udp -m set --match-set big src -m udp --dport {port} {c}"
                    );
                    add(format!("{m} -j LOG --log-prefix \"tandem rule {}: \"", i + 1));
                    add(format!("{m} -j DROP"));
                }
                2 => add(format!(
                    "-A {chain} -i eth1 -d 198.51.100.{}/32 -p tcp -m multiport --dports 80,443,8000:8080 -m tcp --tcp-flags SYN,ACK SYN {c} -j ACCEPT",
                    1 + i % 250
                )),
                _ => {
                    let m = format!("-A {chain} -i eth0 -s 192.0.2.{}/32", 1 + i % 250);
                    add(format!("{m} -p tcp {c} -j REJECT --reject-with tcp-reset"));
                    add(format!("{m} {c} -j REJECT --reject-with icmp-port-unreachable"));
                }
            }
        }
        add(format!(
            "-A {chain} -m comment --comment \"default block\" -j DROP"
        ));
    }
    s.push_str("COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    s.push_str("-A POSTROUTING -o eth1 -s 192.0.2.0/24 -m comment --comment \"outbound NAT 1\" -j SNAT --to-source 198.51.100.1\nCOMMIT\n");
    (s, n + 1)
}

/// `ipset restore` input that creates `name` with the alias's entries.
fn ipset_script(name: &str, entries: usize) -> String {
    let mut s = String::with_capacity(30 * entries + 200);
    let _ = writeln!(
        s,
        "create {name} hash:ip family inet hashsize {} maxelem {}",
        (entries.max(1024)).next_power_of_two(),
        (entries * 2).max(65536)
    );
    for i in 0..entries {
        let _ = writeln!(s, "add {name} {}", big_entry(i));
    }
    s
}

fn tool_ok(t: &str, arg: &str) -> bool {
    Command::new(t)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn version(t: &str) -> String {
    Command::new(t)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// Times `ipset restore` (swap in a new set) + `iptables-restore` with `restore` (one shell,
/// one namespace entry, as a reload script would), after an untimed run that creates it all.
fn iptables_runs(
    lab: &mut Lab,
    label: &str,
    restore: &str,
    ipt: &str,
    entries: usize,
    runs: usize,
) -> Result<Vec<Duration>> {
    let h = lab.host(label)?;
    let dir = lab.dir().to_owned();
    let rules = dir.join(format!("{label}.rules"));
    let init = dir.join(format!("{label}.ipset-init"));
    let swap = dir.join(format!("{label}.ipset-swap"));
    std::fs::write(&rules, ipt)?;
    std::fs::write(&init, ipset_script("big", entries))?;
    std::fs::write(
        &swap,
        ipset_script("big_new", entries) + "swap big_new big\ndestroy big_new\n",
    )?;
    let p = |f: &std::path::Path| f.display().to_string();
    timed(
        &h,
        &[
            "sh",
            "-c",
            &format!("ipset restore < {} && {restore} < {}", p(&init), p(&rules)),
        ],
        b"",
    )?;
    let mut v = Vec::new();
    for _ in 0..runs {
        v.push(timed(
            &h,
            &[
                "sh",
                "-c",
                &format!("ipset restore < {} && {restore} < {}", p(&swap), p(&rules)),
            ],
            b"",
        )?);
    }
    // Sanity: the rules are in.
    let listed = h.run(&[restore.replace("-restore", "-save").as_str()])?;
    let n = listed.lines().filter(|l| l.starts_with("-A ")).count();
    if n == 0 {
        bail!("{restore}: nothing loaded");
    }
    Ok(v)
}

fn run_case(c: &Case, runs: usize, iptables: bool) -> Result<Row> {
    let mut row = Row {
        rules: c.rules,
        entries: c.entries,
        ..Default::default()
    };
    let text = firewall::synth::config(c.rules, c.entries);
    let ctx = firewall::synth::context();
    let mut script = String::new();
    for _ in 0..runs {
        let t = Instant::now();
        let areas = firewall::parse_areas(&text).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        row.parse.push(t.elapsed());
        let t = Instant::now();
        let r = firewall::render(&areas, &ctx).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        row.render.push(t.elapsed());
        script = r.nft;
    }
    row.script_kib = script.len() / 1024;
    row.nft_rules = script
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.contains(" accept")
                || t.contains(" drop")
                || t.contains(" reject")
                || t.contains(" snat")
                || t.contains(" dnat")
                || t.starts_with("jump ")
        })
        .filter(|l| !l.trim_start().starts_with('#') && !l.contains("policy "))
        .count();

    let mut lab = Lab::new(&format!("fwbench_{}_{}", c.rules, c.entries))?;
    let h = lab.host("nft")?;
    let bytes = script.as_bytes();
    timed(&h, &["nft", "-f", "-"], bytes).context("warm-up apply")?;
    for _ in 0..runs {
        row.check.push(timed(&h, &["nft", "-c", "-f", "-"], bytes)?);
        row.apply.push(timed(&h, &["nft", "-f", "-"], bytes)?);
    }
    let listed = h.run(&["nft", "list", "table", "inet", "tandem"])?;
    if !listed.contains("default block") {
        bail!("the applied table lacks its rules");
    }

    if iptables {
        let (ipt, n) = iptables_script(c.rules);
        row.ipt_rules = n;
        row.ipt_nft = iptables_runs(
            &mut lab,
            "iptnft",
            "iptables-nft-restore",
            &ipt,
            c.entries,
            runs,
        )?;
        row.ipt_legacy = iptables_runs(
            &mut lab,
            "iptlegacy",
            "iptables-legacy-restore",
            &ipt,
            c.entries,
            runs,
        )?;
    }
    Ok(row)
}

fn main() -> Result<()> {
    let mut runs = 5usize;
    let mut cases = "1000:100,10000:100,1000:100000".to_owned();
    let mut iptables = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" | "-n" => runs = args.next().context("--runs N")?.parse()?,
            "--cases" => cases = args.next().context("--cases R:E,...")?,
            "--no-iptables" => iptables = false,
            "-h" | "--help" => {
                println!("usage: fwbench [--runs N] [--cases RULES:ENTRIES,...] [--no-iptables]");
                return Ok(());
            }
            _ => bail!("unknown argument {a}"),
        }
    }
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !lab::require_netns() {
        bail!("fwbench needs root and iproute2 (network namespaces)");
    }
    if !tool_ok("nft", "--version") {
        bail!("nft not found (Debian package nftables)");
    }
    let mut peer_note = String::new();
    if iptables
        && !(tool_ok("iptables-nft-restore", "--version")
            && tool_ok("iptables-legacy-restore", "--version")
            && tool_ok("ipset", "--version"))
    {
        iptables = false;
        peer_note =
            "iptables/ipset not installed (Debian packages iptables, ipset): peer rows skipped.\n"
                .into();
    }
    let cases: Vec<Case> = cases
        .split(',')
        .map(|c| {
            let (r, e) = c.split_once(':').context("case is RULES:ENTRIES")?;
            Ok(Case {
                rules: r.trim().parse()?,
                entries: e.trim().parse()?,
            })
        })
        .collect::<Result<_>>()?;

    // Entering a namespace and starting a program is part of every timed command.
    let mut base_lab = Lab::new("fwbench_baseline")?;
    let bh = base_lab.host("b")?;
    let mut base = Vec::new();
    for _ in 0..runs.max(5) {
        base.push(timed(&bh, &["true"], b"")?);
    }
    let mut empty = Vec::new();
    for _ in 0..runs.max(5) {
        empty.push(timed(&bh, &["nft", "-f", "-"], b"")?);
    }
    drop(base_lab);

    let mut rows = Vec::new();
    for c in &cases {
        log(&format!(
            "{} rules, {}-entry alias: {runs} runs",
            c.rules, c.entries
        ));
        rows.push(run_case(c, runs, iptables)?);
    }

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Linux {}, {cpus} CPUs; median of {runs} runs; {}{}{}.\n",
        kernel.trim(),
        version("nft"),
        if iptables {
            format!(", {}", version("iptables-nft-restore"))
        } else {
            String::new()
        },
        if iptables {
            format!(", {}", version("ipset"))
        } else {
            String::new()
        },
    );
    o.push_str("**tandem** (times in ms; render is in-process, release build):\n\n");
    o.push_str("| config rules | alias entries | nft rules | script KiB | parse | render | nft -c | nft -f (apply) | total |\n");
    o.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &rows {
        let total: f64 = [&r.parse, &r.render, &r.check, &r.apply]
            .iter()
            .filter_map(|v| median(v))
            .sum();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            r.rules,
            r.entries,
            r.nft_rules,
            r.script_kib,
            fmt_ms(&r.parse),
            fmt_ms(&r.render),
            fmt_ms(&r.check),
            fmt_ms(&r.apply),
            total
        );
    }
    if iptables {
        o.push_str("\n**peer**: the same rules for `iptables-restore`, the alias as an ipset (`ipset restore` of a new set + `swap`), one shell per apply (ms):\n\n");
        o.push_str("| config rules | alias entries | iptables rules | ipset + iptables-nft-restore | ipset + iptables-legacy-restore | tandem nft -f | iptables-nft / tandem | legacy / tandem |\n");
        o.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &rows {
            let ratio = |v: &[Duration]| match (median(v), median(&r.apply)) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "–".into(),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.rules,
                r.entries,
                r.ipt_rules,
                fmt_ms(&r.ipt_nft),
                fmt_ms(&r.ipt_legacy),
                fmt_ms(&r.apply),
                ratio(&r.ipt_nft),
                ratio(&r.ipt_legacy)
            );
        }
    }
    let _ = writeln!(
        o,
        "\n{peer_note}Every apply replaces what the previous run loaded (a reload), after one untimed warm-up that loads it into an empty namespace. Each timed command includes entering the namespace and starting the program: `ip netns exec NS true` takes {} ms here, `nft -f -` of an empty script {} ms.",
        fmt_ms(&base),
        fmt_ms(&empty)
    );
    print!("{o}");
    Ok(())
}
