//! CARP adverts under load: the master keeps advertising, and the backup never takes over,
//! while its daemon is busy with everything else it does.
//!
//! The standard cluster with config sync (fw2 the primary, fw1 the peer, so a push lands on
//! the master) and state sync over a sync switch, which also holds a flood host. tcpdump in
//! the client captures every CARP packet on the lan while fw1 (master, advskew 0) is loaded in
//! turn: idle; idle connections plus TLS handshakes on its config-sync port; a push of a few
//! thousand rules from fw2; a burst of new conntrack entries replicated by state sync; a
//! reload of its own file with a few thousand rules (nft -f); parallel `tandem status` loops.
//!
//! Only functional invariants are asserted, no speeds: fw2 never takes over (no advert of its
//! own on the wire, none counted in its status, BACKUP after every load), and no two
//! consecutive adverts of fw1 are 1.5 × advbase or more apart (no advert is late by half an
//! interval: the daemon's work never holds up the CARP thread; the previous daemon, whose one
//! runtime also took in pushes, let one fall 0.68 s late with a 20k-rule push). The longest interval per load is printed; bench/adverts.sh measures the same
//! with production sizes.

mod common;

use common::*;
use lab::{Host, Lab, Process};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds, as in every node config of the harness (`write_config`).
const ADVBASE: f64 = 1.0;
/// The shortest stretch of capture per load (at least three intervals).
const WINDOW: Duration = Duration::from_secs(4);
const RULES: usize = 10_000;
const STATES: usize = 50_000;
const CONNS: usize = 300;
const HANDSHAKERS: usize = 2;
const STATUS_LOOPS: usize = 4;

const FW1: &str = "192.0.2.2";
const FW2: &str = "192.0.2.3";

const BASE_RULES: &str = r#"
[[rules]]
interface = "sync"
action = "pass"
source = "sync:network"
description = "sync link"

[[rules]]
interface = "lan"
action = "pass"
source = "lan:network"
description = "lan"
"#;

/// Idle TCP connections to `host:port` held open, plus threads doing TLS handshakes back to
/// back, for `duration` seconds; prints what it managed.
const FLOOD_PY: &str = r#"
import resource, socket, ssl, sys, threading, time
host, port, conns, threads, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = conns + 4 * threads + 64
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
end = time.time() + duration
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
done = [0] * threads
def handshakes(k):
    while time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                with ctx.wrap_socket(s):
                    done[k] += 1
        except OSError:
            time.sleep(0.01)
workers = [threading.Thread(target=handshakes, args=(k,), daemon=True) for k in range(threads)]
for w in workers:
    w.start()
idle = []
for _ in range(conns):
    try:
        idle.append(socket.create_connection((host, port), timeout=5))
    except OSError:
        pass
for w in workers:
    w.join()
print(f"{len(idle)} idle connections, {sum(done)} TLS handshakes", flush=True)
"#;

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Under CI=true a missing tool fails the test; elsewhere it is skipped (as require_netns).
fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{tool} not found under CI=true (scripts/deps.sh installs it)"
        );
        eprintln!("skipping: {tool} not found (bash scripts/deps.sh installs it)");
    }
    ok
}

fn vips() -> [VipSpec<'static>; 2] {
    [
        VipSpec {
            vhid: 1,
            interface: "lan",
            addresses: &["192.0.2.1/24"],
        },
        VipSpec {
            vhid: 2,
            interface: "wan",
            addresses: &["198.51.100.1/24"],
        },
    ]
}

/// fwN's file: node-local parts, config sync (`sync`), state sync, the VIPs, `areas`.
fn node_config(lab: &Lab, n: u8, sync: &str, areas: &str) -> PathBuf {
    let (skew, devs) = if n == 1 {
        (0, ["eth0", "eth1", "eth2"])
    } else {
        (100, ["ens5", "ens6", "ens7"])
    };
    let extra = format!(
        "{sync}\n[statesync]\ninterface = \"sync\"\npeers = [\"203.0.113.{}\"]\nkey = \"advert load test state sync key\"\n{areas}",
        3 - n
    );
    write_config_extra(
        lab,
        &format!("fw{n}"),
        skew,
        true,
        "adverts",
        &[("lan", devs[0]), ("wan", devs[1]), ("sync", devs[2])],
        &vips(),
        &extra,
    )
}

/// fw1's [sync]: a peer, taking pushes from `primary` (its certificate), when known.
fn fw1_sync(lab: &Lab, primary: Option<&str>) -> String {
    format!(
        "[sync]\nrole = \"peer\"\nlisten = \"203.0.113.1:8443\"\nstate_dir = \"{}\"\nuser = \"sync\"\npassword = \"pw-sync-long-enough\"\n{}",
        lab.dir().join("fw1-state").display(),
        primary.map_or_else(String::new, |p| format!("primary_fingerprint = \"{p}\"\n"))
    )
}

fn fw2_sync(lab: &Lab, fingerprint: &str) -> String {
    format!(
        "[sync]\nrole = \"primary\"\nlisten = \"203.0.113.2:8443\"\nstate_dir = \"{}\"\nuser = \"sync\"\npassword = \"pw-sync-long-enough\"\n\n[[sync.peers]]\nname = \"fw1\"\nurl = \"https://203.0.113.1:8443\"\nfingerprint = \"{fingerprint}\"\n",
        lab.dir().join("fw2-state").display()
    )
}

/// `firewall::synth::config` without its own `[interfaces]` table.
fn big_areas(rules: usize) -> String {
    let s = firewall::synth::config(rules, 100);
    s.split_once("\n\n")
        .map(|(_, rest)| rest.to_string())
        .expect("synthetic config")
}

struct Cluster {
    /// Owns every namespace and so every process of the test.
    lab: Lab,
    client: Host,
    flood: Host,
    fw1: Node,
    fw2: Node,
    /// fw1's certificate, pinned by fw2.
    fingerprint: String,
    /// fw2's certificate, which fw1 pins as its primary's.
    primary: String,
}

impl Cluster {
    fn logs(&self) -> String {
        format!(
            "--- fw1 log:\n{}\n--- fw2 log:\n{}",
            tail(&self.fw1.log()),
            tail(&self.fw2.log())
        )
    }

    /// A value from `n`'s status by JSON pointer (`/state_sync/engine/ready`); null if none.
    fn json(&self, n: &Node, pointer: &str) -> serde_json::Value {
        n.try_status()
            .and_then(|s| s.pointer(pointer).cloned())
            .unwrap_or_default()
    }

    fn wait(&self, what: &str, within: Duration, f: impl FnMut() -> bool) {
        assert!(
            lab::wait_until(within, f),
            "timed out waiting for: {what}\n{}",
            self.logs()
        );
    }

    /// fw1 master and fw2 backup of both VIPs, state sync ready with nothing queued.
    fn settled(&self) -> bool {
        let ready = |n: &Node| {
            self.json(n, "/state_sync/engine/ready") == true
                && self.json(n, "/state_sync/engine/queue_depth") == 0
        };
        [1, 2]
            .iter()
            .all(|v| self.fw1.state(*v) == "MASTER" && self.fw2.state(*v) == "BACKUP")
            && ready(&self.fw1)
            && ready(&self.fw2)
    }

    fn generation(&self, n: &Node) -> u64 {
        self.json(n, "/config_sync/generation")
            .as_u64()
            .unwrap_or(0)
    }

    fn adverts_sent(&self, n: &Node) -> u64 {
        (0..2)
            .map(|i| {
                self.json(n, &format!("/vips/{i}/adverts_sent"))
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn cluster() -> Cluster {
    let mut lab = Lab::new("advert_load").expect("lab");
    let Standard {
        client,
        fw1: h1,
        fw2: h2,
        ..
    } = standard(&mut lab, false);
    // The sync link as a switch: the flood host reaches fw1's config-sync port on it, and the
    // rule passing the sync network lets it in.
    let sync = lab.switch("sync").expect("sync switch");
    let flood = lab.host("flood").expect("flood host");
    for (host, dev, addr) in [
        (&h1, "eth2", "203.0.113.1/24"),
        (&h2, "ens7", "203.0.113.2/24"),
        (&flood, "eth0", "203.0.113.10/24"),
    ] {
        lab.connect(host, dev, &sync, &[addr]).expect("connect");
    }
    // The peer first: it makes the certificate the primary pins.
    let c1 = node_config(&lab, 1, &fw1_sync(&lab, None), BASE_RULES);
    let fw1 = Node::start(&h1, c1);
    let fp = fw1.status()["config_sync"]["fingerprint"]
        .as_str()
        .expect("fw1 prints its fingerprint")
        .to_string();
    let c2 = node_config(&lab, 2, &fw2_sync(&lab, &fp), BASE_RULES);
    let fw2 = Node::start(&h2, c2);
    // fw1 takes pushes only from fw2's certificate.
    pin_primary(&fw1, &fw2);
    let primary = fw2.status()["config_sync"]["fingerprint"]
        .as_str()
        .expect("fw2 prints its fingerprint")
        .to_string();
    let c = Cluster {
        lab,
        client,
        flood,
        fw1,
        fw2,
        fingerprint: fp,
        primary,
    };
    c.wait("fw2 has fw1 in sync", Duration::from_secs(30), || {
        c.json(&c.fw2, "/config_sync/peers/0/in_sync") == true
    });
    c.wait(
        "fw1 master, fw2 backup, state sync ready",
        ELECTION + Duration::from_secs(10),
        || c.settled(),
    );
    c
}

/// tcpdump in the client: every CARP packet on the lan, microsecond wall-clock timestamps.
fn capture(client: &Host) -> Process {
    let p = client
        .spawn(&[
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-l",
            "-p",
            "-tt",
            "--time-stamp-precision=micro",
            "ip proto 112",
        ])
        .expect("tcpdump");
    assert!(
        lab::wait_until(Duration::from_secs(10), || p
            .stderr()
            .contains("listening on")),
        "tcpdump did not start: {}",
        p.stderr()
    );
    p
}

/// (timestamp, source address) of every CARP packet captured so far.
fn adverts(p: &Process) -> Vec<(f64, String)> {
    p.stdout()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let t = it.next()?.parse().ok()?;
            (it.next()? == "IP").then_some(())?;
            Some((t, it.next()?.to_string()))
        })
        .collect()
}

/// A load: what it did, when it ran (epoch seconds), fw2's states right after it.
struct Window {
    name: &'static str,
    from: f64,
    to: f64,
    did: String,
    fw2: [String; 2],
}

/// Runs `load`, keeping the window open for at least [`WINDOW`]; the load's own wait
/// conditions make it last until its work is done.
fn window(c: &Cluster, name: &'static str, load: impl FnOnce() -> String) -> Window {
    let from = epoch();
    let t = Instant::now();
    let did = load();
    if let Some(rest) = WINDOW.checked_sub(t.elapsed()) {
        std::thread::sleep(rest);
    }
    Window {
        name,
        from,
        to: epoch(),
        did,
        fw2: [c.fw2.state(1), c.fw2.state(2)],
    }
}

/// `tandem status --json` in [`STATUS_LOOPS`] parallel loops until `until`: the calls answered.
/// The client reads the file it is given to find the control socket, so the loops get one with
/// fw1's node-local part only: the load is the requests, not the parsing of thousands of rules.
fn status_loops(c: &Cluster, until: Instant) -> usize {
    let cfg = c.lab.dir().join("fw1-status.toml");
    let text = format!(
        "[node]\nname = \"fw1\"\nadvskew = 0\ncontrol_socket = \"{}\"\n\n[interfaces]\nlan = \"eth0\"\n\n[carp]\npassphrase = \"adverts\"\n",
        c.lab.dir().join("fw1.sock").display()
    );
    std::fs::write(&cfg, text).expect("write status config");
    let call = || {
        c.fw1
            .host
            .command(TANDEM)
            .args(["status", "--json", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::thread::scope(|s| {
        let loops: Vec<_> = (0..STATUS_LOOPS)
            .map(|_| {
                s.spawn(|| {
                    let mut calls = 0;
                    while Instant::now() < until {
                        if call() {
                            calls += 1;
                        }
                    }
                    calls
                })
            })
            .collect();
        loops.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    })
}

/// `conntrack -R` lines creating `n` established TCP entries 198.51.100.x → 192.0.2.y:443.
fn conntrack_batch(n: usize) -> String {
    let mut s = String::with_capacity(n * 130);
    for i in 0..n {
        let _ = writeln!(
            s,
            "-I -p tcp -s 198.51.100.{} -d 192.0.2.{} --sport {} --dport 443 --state ESTABLISHED -t 3600 -u SEEN_REPLY,ASSURED",
            1 + i % 250,
            10 + (i / 250) % 20,
            10_000 + i / 5000
        );
    }
    s
}

fn ct_count(h: &Host) -> usize {
    h.run(&["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn adverts_keep_their_interval_under_load_and_the_backup_never_takes_over() {
    if !lab::require_netns() {
        return;
    }
    for tool in ["tcpdump", "nft", "conntrack", "python3"] {
        if !have(tool) {
            return;
        }
    }
    let started = Instant::now();
    let c = cluster();
    let setup = started.elapsed();
    let sent_before = c.adverts_sent(&c.fw2);
    let cap = capture(&c.client);
    let mut windows = Vec::new();

    windows.push(window(&c, "0 idle", || "-".into()));

    windows.push(window(&c, "1 flood", || {
        let secs = WINDOW.as_secs().to_string();
        let out = c
            .flood
            .run(&[
                "python3",
                "-c",
                FLOOD_PY,
                "203.0.113.1",
                "8443",
                &CONNS.to_string(),
                &HANDSHAKERS.to_string(),
                &secs,
            ])
            .expect("flood");
        out.trim().to_string()
    }));

    windows.push(window(&c, "2 push", || {
        let before = c.generation(&c.fw2);
        node_config(
            &c.lab,
            2,
            &fw2_sync(&c.lab, &c.fingerprint),
            &format!("{BASE_RULES}{}", big_areas(RULES)),
        );
        let t = Instant::now();
        let (ok, out, err) = c.fw2.cli(&["reload"]);
        assert!(ok, "reload on fw2: {out}{err}\n{}", c.logs());
        let g = c.generation(&c.fw2);
        assert!(g > before, "fw2's generation did not move: {g}");
        c.wait(
            "fw1 runs the pushed generation",
            Duration::from_secs(60),
            || c.generation(&c.fw1) >= g,
        );
        format!(
            "{RULES} rules, generation {g} on fw1 after {} ms",
            t.elapsed().as_millis()
        )
    }));

    windows.push(window(&c, "3 states", || {
        let batch = c.lab.dir().join("conntrack.batch");
        std::fs::write(&batch, conntrack_batch(STATES)).expect("write batch");
        let t = Instant::now();
        c.fw1
            .host
            .run(&["conntrack", "-R", &batch.to_string_lossy()])
            .expect("conntrack -R");
        let written = t.elapsed();
        // The table also holds the flood's connections, expiring meanwhile: "at least STATES
        // entries" stands for "the burst arrived" (off by those few at most).
        let ok = lab::wait_until(Duration::from_secs(60), || ct_count(&c.fw2.host) >= STATES);
        assert!(
            ok,
            "fw2's kernel never held the burst: fw1 {} entries, fw2 {}\nfw1 {}\nfw2 {}\n{}",
            ct_count(&c.fw1.host),
            ct_count(&c.fw2.host),
            c.json(&c.fw1, "/state_sync"),
            c.json(&c.fw2, "/state_sync"),
            c.logs()
        );
        format!(
            "{STATES} states written in {} ms, in fw2's kernel after {} ms",
            written.as_millis(),
            t.elapsed().as_millis()
        )
    }));
    // Back to an empty table (and the deletions replicated) before the next load.
    c.fw1.host.run(&["conntrack", "-F"]).expect("conntrack -F");
    c.wait("fw2's table emptied", Duration::from_secs(60), || {
        ct_count(&c.fw2.host) < 1000
    });

    windows.push(window(&c, "4 reload", || {
        node_config(
            &c.lab,
            1,
            &fw1_sync(&c.lab, Some(&c.primary)),
            &format!("{BASE_RULES}{}", big_areas(RULES + 1)),
        );
        let t = Instant::now();
        let (ok, out, err) = c.fw1.cli(&["reload"]);
        assert!(ok, "reload on fw1: {out}{err}\n{}", c.logs());
        format!("{} rules, reload {} ms", RULES + 1, t.elapsed().as_millis())
    }));

    windows.push(window(&c, "5 status", || {
        let calls = status_loops(&c, Instant::now() + WINDOW);
        format!("{STATUS_LOOPS} loops, {calls} status calls")
    }));

    // One more interval after the last load, so its tail is measured too.
    std::thread::sleep(Duration::from_secs_f64(ADVBASE * 1.5));
    let end = epoch();
    let seen = adverts(&cap);
    drop(cap);

    let mine: Vec<f64> = seen
        .iter()
        .filter(|(_, src)| src == FW1)
        .map(|(t, _)| *t)
        .collect();
    let theirs = seen.iter().filter(|(_, src)| src == FW2).count();
    let mut report =
        String::from("load | intervals | longest interval (ms) | fw2 after | what the load did\n");
    for w in &windows {
        // Intervals that end inside the window (or within one advbase after it).
        let ends: Vec<usize> = (1..mine.len())
            .filter(|&i| mine[i] > w.from && mine[i] <= w.to + ADVBASE)
            .collect();
        let longest = ends
            .iter()
            .map(|&i| mine[i] - mine[i - 1])
            .fold(0.0_f64, f64::max);
        let _ = writeln!(
            report,
            "{} | {} | {:.0} | {}/{} | {}",
            w.name,
            ends.len(),
            longest * 1000.0,
            w.fw2[0],
            w.fw2[1],
            w.did
        );
    }
    // Every gap, the ones from the start of the capture to fw1's first advert and from its
    // last advert to the end included: no advert can go missing unseen at either edge.
    let mut times = vec![windows[0].from];
    times.extend(&mine);
    times.push(end);
    let longest = times
        .windows(2)
        .map(|p| p[1] - p[0])
        .fold(0.0_f64, f64::max);
    eprintln!(
        "{report}overall: {} adverts from fw1, longest gap {:.0} ms; {} adverts from fw2; set-up {} ms, whole test {} ms",
        mine.len(),
        longest * 1000.0,
        theirs,
        setup.as_millis(),
        started.elapsed().as_millis()
    );

    assert_eq!(
        theirs,
        0,
        "fw2 advertised on the lan: it took over\n{report}\n{}",
        c.logs()
    );
    assert_eq!(
        c.adverts_sent(&c.fw2),
        sent_before,
        "fw2 sent adverts: it was master for a while\n{report}\n{}",
        c.logs()
    );
    for w in &windows {
        assert_eq!(
            w.fw2,
            ["BACKUP", "BACKUP"],
            "fw2 after load {}\n{report}\n{}",
            w.name,
            c.logs()
        );
    }
    for v in [1, 2] {
        assert_eq!(c.fw1.state(v), "MASTER", "{report}\n{}", c.logs());
    }
    assert!(
        longest < 1.5 * ADVBASE,
        "fw1 went {:.0} ms without an advert: one was late by half an interval or more\n{report}\n{}",
        longest * 1000.0,
        c.logs()
    );
}
