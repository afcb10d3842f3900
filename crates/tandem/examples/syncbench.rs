//! Config sync benchmark (run by bench/configsync.sh; needs root, iproute2, nftables, python3).
//!
//! Two tandem nodes in network namespaces, fw1 (primary) and fw2 (peer) with the sync link
//! 203.0.113.0/24 between them, both running `firewall::synth::config(RULES, ENTRIES)` plus a
//! rule passing the sync link. Each run appends one rule to fw1's file and times from the start
//! of `tandem reload` on fw1 until fw2 reports the new generation applied (its ruleset is in
//! the kernel by then; the rule's presence is checked afterwards, untimed).
//!
//! The peer figure is the hand-made approach: the nft script fw2 runs (as `tandem ruleset`
//! prints it) copied over the same sync link with a plain TCP socket (python3, a stand-in for
//! scp/rsync: no sshd here) and loaded with `nft -f` on fw2, from the first byte sent to
//! `nft -f` done. It does nothing else (no validation, no per-node devices, no VIPs).
//!
//! Usage: syncbench --tandem PATH [--rules N] [--entries N] [--runs N] [--change rule|alias]

use anyhow::{bail, Context, Result};
use lab::{Host, Lab, Process};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Args {
    tandem: PathBuf,
    rules: usize,
    entries: usize,
    runs: usize,
    /// What each run changes: `rule` (one rule appended) or `alias` (1 % of the big alias's
    /// entries replaced).
    change: String,
}

fn args() -> Result<Args> {
    let mut a = Args {
        tandem: PathBuf::from("target/release/tandem"),
        rules: 10_000,
        entries: 100,
        runs: 5,
        change: "rule".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--tandem" => a.tandem = PathBuf::from(v),
            "--rules" => a.rules = v.parse()?,
            "--entries" => a.entries = v.parse()?,
            "--runs" => a.runs = v.parse()?,
            "--change" if v == "rule" || v == "alias" => a.change = v,
            _ => bail!("unknown argument {k} {v}"),
        }
    }
    Ok(a)
}

struct Node {
    host: Host,
    config: PathBuf,
    _process: Process,
}

fn status(tandem: &Path, host: &Host, config: &Path) -> Option<Value> {
    let out = host
        .command(&tandem.to_string_lossy())
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn start(tandem: &Path, host: &Host, config: PathBuf) -> Result<Node> {
    let p = host.spawn(&[
        &tandem.to_string_lossy(),
        "run",
        "--config",
        &config.to_string_lossy(),
    ])?;
    if !lab::wait_until(Duration::from_secs(60), || {
        status(tandem, host, &config).is_some()
    }) {
        bail!("{} did not start:\n{}", host.name(), p.stderr());
    }
    Ok(Node {
        host: host.clone(),
        config,
        _process: p,
    })
}

const SYNC_RULE: &str = "[[rules]]\ninterface = \"sync\"\naction = \"pass\"\nsource = \"sync:network\"\ndescription = \"sync link\"\n\n";

fn node_local(lab: &Lab, name: &str, devs: [&str; 3], skew: u8, sync: &str) -> String {
    format!(
        "[node]\nname = \"{name}\"\nadvskew = {skew}\ncontrol_socket = \"{}\"\n\n[interfaces]\nlan = \"{}\"\nwan = \"{}\"\nsync = \"{}\"\n\n[carp]\npassphrase = \"bench\"\n\n{sync}\n",
        lab.dir().join(format!("{name}.sock")).display(),
        devs[0],
        devs[1],
        devs[2]
    )
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn row(name: &str, v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    format!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} |",
        v.len(),
        median(v),
        min,
        max
    )
}

const RECEIVER: &str = r#"
import socket, subprocess, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.2", 9000)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
with open(sys.argv[1], "wb") as f:
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        f.write(b)
subprocess.run(["nft", "-f", sys.argv[1]], check=True)
print(repr(time.time()), flush=True)
"#;

const SENDER: &str = r#"
import socket, sys, time
data = open(sys.argv[1], "rb").read()
t0 = time.time()
c = socket.create_connection(("203.0.113.2", 9000))
c.sendall(data); c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
print(repr(t0))
"#;

fn main() -> Result<()> {
    let a = args()?;
    let tandem = std::fs::canonicalize(&a.tandem)
        .with_context(|| format!("{} (build it first)", a.tandem.display()))?;
    let mut lab = Lab::new("syncbench")?;
    let lan = lab.switch("lan")?;
    let wan = lab.switch("wan")?;
    let h1 = lab.host("fw1")?;
    let h2 = lab.host("fw2")?;
    lab.connect(&h1, "eth0", &lan, &["192.0.2.2/24"])?;
    lab.connect(&h2, "ens5", &lan, &["192.0.2.3/24"])?;
    lab.connect(&h1, "eth1", &wan, &["198.51.100.2/24"])?;
    lab.connect(&h2, "ens6", &wan, &["198.51.100.3/24"])?;
    lab.link(
        &h1,
        "eth2",
        &["203.0.113.1/24"],
        &h2,
        "ens7",
        &["203.0.113.2/24"],
    )?;

    let sync2 = format!(
        "[sync]\nrole = \"peer\"\nlisten = \"203.0.113.2:8443\"\nstate_dir = \"{}\"\nuser = \"sync\"\npassword = \"bench-password-long-enough\"\n",
        lab.dir().join("fw2-state").display()
    );
    let c2 = lab.dir().join("fw2.toml");
    std::fs::write(
        &c2,
        format!(
            "{}{SYNC_RULE}",
            node_local(&lab, "fw2", ["ens5", "ens6", "ens7"], 100, &sync2)
        ),
    )?;
    let fw2 = start(&tandem, &h2, c2)?;
    let fp = status(&tandem, &fw2.host, &fw2.config)
        .and_then(|s| s["config_sync"]["fingerprint"].as_str().map(String::from))
        .context("fw2 fingerprint")?;

    let synth = firewall::synth::config(a.rules, a.entries);
    // Its [interfaces] table is replaced by each node's own.
    let areas = synth
        .split_once("\n\n")
        .map(|(_, rest)| rest.to_string())
        .context("synthetic config")?;
    let sync1 = format!(
        "[sync]\nrole = \"primary\"\nlisten = \"203.0.113.1:8443\"\nstate_dir = \"{}\"\nuser = \"sync\"\npassword = \"bench-password-long-enough\"\nretry_max = 1\n\n[[sync.peers]]\nname = \"fw2\"\nurl = \"https://203.0.113.2:8443\"\nfingerprint = \"{fp}\"\n",
        lab.dir().join("fw1-state").display()
    );
    let vips = "[[vips]]\nvhid = 7\ninterface = \"lan\"\naddresses = [\"192.0.2.1/24\"]\n\n[[vips]]\nvhid = 8\ninterface = \"wan\"\naddresses = [\"198.51.100.1/24\"]\n\n";
    let base1 = format!(
        "{}{vips}{SYNC_RULE}{areas}",
        node_local(&lab, "fw1", ["eth0", "eth1", "eth2"], 0, &sync1)
    );
    let c1 = lab.dir().join("fw1.toml");
    std::fs::write(&c1, &base1)?;
    let fw1 = start(&tandem, &h1, c1.clone())?;
    // fw2 takes pushes only from fw1's certificate: pin it there and reload fw2.
    let fp1 = status(&tandem, &fw1.host, &fw1.config)
        .and_then(|s| s["config_sync"]["fingerprint"].as_str().map(String::from))
        .context("fw1 fingerprint")?;
    let c2_text = std::fs::read_to_string(&fw2.config)?.replacen(
        "[sync]\n",
        &format!("[sync]\nprimary_fingerprint = \"{fp1}\"\n"),
        1,
    );
    std::fs::write(&fw2.config, c2_text)?;
    let out = fw2
        .host
        .command(&tandem.to_string_lossy())
        .args(["reload", "--config"])
        .arg(&fw2.config)
        .output()?;
    if !out.status.success() {
        bail!(
            "reload of fw2 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let in_sync = || {
        status(&tandem, &fw1.host, &fw1.config)
            .is_some_and(|s| s["config_sync"]["peers"][0]["in_sync"] == true)
    };
    if !lab::wait_until(Duration::from_secs(120), in_sync) {
        bail!(
            "fw2 never got in sync: {:?}",
            status(&tandem, &fw1.host, &fw1.config).map(|s| s["config_sync"].clone())
        );
    }

    let mut sync_ms = Vec::new();
    let mut reload_ms = Vec::new();
    let mut after_ms = Vec::new();
    let mut copy_ms = Vec::new();
    let mut text = base1.clone();
    // The big alias's entries, as the synthetic config writes them (one per line).
    let (alias_start, alias_end) = {
        let start = text.find("name = \"big\"").context("alias big")?;
        let open = start + text[start..].find("entries = [\n").context("entries")? + 12;
        let close = open + text[open..].find("]\n").context("entries end")?;
        (open, close)
    };
    let (head, tail) = (
        text[..alias_start].to_string(),
        text[alias_end..].to_string(),
    );
    let mut entries: Vec<String> = text[alias_start..alias_end]
        .lines()
        .map(String::from)
        .collect();
    let mut markers = Vec::new();
    for i in 0..a.runs {
        if a.change == "alias" {
            // 1 % of the entries replaced by addresses from 10.128.0.0 on.
            let n = (entries.len() / 100).max(1);
            for k in 0..n {
                let slot = (i * n + k) % entries.len();
                let addr = std::net::Ipv4Addr::from(0x0A80_0000u32 + (i * n + k) as u32 * 2);
                entries[slot] = format!("  \"{addr}\",");
            }
            markers.push(format!(
                "10.128.{}.{}",
                (i * n * 2) / 256 % 256,
                (i * n * 2) % 256
            ));
            text = format!("{head}{}\n{tail}", entries.join("\n"));
        } else {
            markers.push(format!("bench-marker-{i}"));
            text.push_str(&format!(
                "\n[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"udp\"\ndestination_port = {}\ndescription = \"bench-marker-{i}\"\n",
                20000 + i
            ));
        }
        std::fs::write(&c1, &text)?;
        let t0 = Instant::now();
        let out = fw1
            .host
            .command(&tandem.to_string_lossy())
            .args(["reload", "--config"])
            .arg(&c1)
            .output()?;
        let reloaded = t0.elapsed();
        if !out.status.success() {
            bail!("reload failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let target = status(&tandem, &fw1.host, &fw1.config)
            .and_then(|s| s["config_sync"]["generation"].as_u64())
            .context("fw1 generation")?;
        let ok = lab::wait_until(Duration::from_secs(120), || {
            status(&tandem, &fw2.host, &fw2.config)
                .and_then(|s| s["config_sync"]["generation"].as_u64())
                .is_some_and(|g| g >= target)
        });
        let total = t0.elapsed();
        if !ok {
            bail!("run {i}: fw2 never applied generation {target}");
        }
        let nft = fw2.host.run(&["nft", "list", "table", "inet", "tandem"])?;
        if !nft.contains(&markers[i]) {
            bail!(
                "run {i}: generation applied but {} is not in fw2's nftables",
                markers[i]
            );
        }
        sync_ms.push(total.as_secs_f64() * 1000.0);
        reload_ms.push(reloaded.as_secs_f64() * 1000.0);
        after_ms.push((total - reloaded).as_secs_f64() * 1000.0);
        // fw2's own account of the push: `fw2 applied generation N ... in T ms (checked C,
        // activated A, stored S)`.
        let peer_line = status(&tandem, &fw2.host, &fw2.config)
            .and_then(|s| s["config_sync"]["last_apply"].as_str().map(String::from))
            .unwrap_or_default();
        eprintln!(
            "run {i}: tandem {:.0} ms (reload on fw1 {:.0} ms); fw2: {peer_line}",
            total.as_secs_f64() * 1000.0,
            reloaded.as_secs_f64() * 1000.0
        );
    }

    // SYNCBENCH_LOGS=DIR keeps both daemons' logs (where the time goes: fw2 prints its apply).
    if let Some(dir) = std::env::var_os("SYNCBENCH_LOGS") {
        for n in [&fw1, &fw2] {
            let to = Path::new(&dir).join(format!("{}.log", n.host.name()));
            std::fs::write(&to, n._process.stderr())?;
        }
    }

    // The peer: fw2's own nft script, copied over the sync link and loaded with nft -f.
    let script = fw2.host.run(&[
        &tandem.to_string_lossy(),
        "ruleset",
        "--config",
        &fw2.config.to_string_lossy(),
    ])?;
    let script: String = script
        .lines()
        .filter(|l| !l.starts_with("# route"))
        .map(|l| format!("{l}\n"))
        .collect();
    let nft_rules = script.matches(" counter ").count();
    let file = lab.dir().join("ruleset.nft");
    std::fs::write(&file, &script)?;
    let recv_file = lab.dir().join("received.nft");
    for i in 0..a.runs {
        let mut r = h2.spawn(&["python3", "-c", RECEIVER, &recv_file.to_string_lossy()])?;
        if !lab::wait_until(Duration::from_secs(10), || r.stdout().contains("listening")) {
            bail!("receiver did not start: {}", r.stderr());
        }
        let out = h1
            .command("python3")
            .args(["-c", SENDER, &file.to_string_lossy()])
            .output()?;
        let t0: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        r.wait_timeout(Duration::from_secs(120))?;
        let done: f64 = r
            .stdout()
            .lines()
            .last()
            .context("receiver output")?
            .trim()
            .parse()
            .with_context(|| format!("receiver: {}", r.stderr()))?;
        copy_ms.push((done - t0) * 1000.0);
        eprintln!("run {i}: copy + nft -f {:.0} ms", (done - t0) * 1000.0);
    }

    let kib = |n: usize| n.div_ceil(1024);
    println!(
        "{} rules + alias of {} entries ({} KiB of TOML; fw2's nft script {} KiB, {} counted nft rules); each run {}; {} runs each; median, min, max in ms.\n",
        a.rules,
        a.entries,
        kib(text.len()),
        kib(script.len()),
        nft_rules,
        if a.change == "alias" {
            format!(
                "replaces 1 % of the alias ({} entries)",
                (a.entries / 100).max(1)
            )
        } else {
            "appends one rule".to_string()
        },
        a.runs
    );
    println!("| from a change on fw1 to active on fw2 | runs | median (ms) | min | max |");
    println!("|---|---|---|---|---|");
    println!(
        "{}",
        row(
            "tandem: `tandem reload` on fw1 → generation applied on fw2",
            &sync_ms
        )
    );
    println!(
        "{}",
        row(
            "  of which `tandem reload` on fw1 (its own validate + apply)",
            &reload_ms
        )
    );
    println!(
        "{}",
        row(
            "  of which the rest: push over XML-RPC/TLS + fw2's validate + apply",
            &after_ms
        )
    );
    println!(
        "{}",
        row(
            "by hand: copy the nft script over the sync link + `nft -f` on fw2",
            &copy_ms
        )
    );
    println!(
        "\nThe by-hand row compares with tandem's last row (both start once fw1 runs the change): tandem / by hand = {:.1}×; for the whole path (fw1's own apply included) {:.1}×.",
        median(&after_ms) / median(&copy_ms),
        median(&sync_ms) / median(&copy_ms)
    );
    println!(
        "tandem's time includes fw1's own reload, XML-RPC over TLS of the areas, fw2's composition, validation against its own devices and addresses, rendering, `nft -f`, routes and the VIP set; the hand-made copy does none of the checks and needs the same device names on both nodes."
    );
    Ok(())
}
