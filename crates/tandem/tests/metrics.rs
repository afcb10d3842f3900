//! The metrics listener of real daemons in network namespaces: a two-node cluster (fw1
//! primary, fw2 peer; config sync and state sync between them, as in tests/configsync.rs)
//! with `[metrics]` on both. /metrics is scraped from inside each namespace, the status page
//! is loaded in headless Chromium (Debian's `chromium`), and a failover shows in the counters.
//!
//! `TANDEM_SCREENSHOT=docs/status-page.png cargo test -p tandem --test metrics` also saves a
//! screenshot of fw1's page (the README's).

mod common;
#[path = "configsync/harness.rs"]
#[allow(dead_code)]
mod harness;

use common::*;
use harness::*;
use lab::Host;
use std::path::Path;
use std::time::Duration;

/// GETs (or POSTs) a URL from inside a host: (HTTP status, body); status 0 when nothing
/// answers.
fn http(h: &Host, method: &str, url: &str) -> (u16, String) {
    const SCRIPT: &str = r#"
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[2], method=sys.argv[1], data=b"" if sys.argv[1] == "POST" else None)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except Exception as e:
    code, body = 0, str(e).encode()
sys.stdout.write(str(code) + "\n")
sys.stdout.buffer.write(body)
"#;
    let out = h
        .command("python3")
        .args(["-c", SCRIPT, method, url])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, body) = text.split_once('\n').unwrap_or(("0", ""));
    (code.parse().unwrap_or(0), body.to_string())
}

/// The value of one sample (`NAME{LABELS}` exactly as exposed) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn scrape(h: &Host, url: &str) -> String {
    let (code, body) = http(h, "GET", url);
    assert_eq!(code, 200, "GET {url} from {}: {body}", h.name());
    body
}

/// Headless Chromium inside a host: the page's DOM after it rendered.
fn chromium(h: &Host, dir: &Path, args: &[&str]) -> String {
    let profile = dir.join(format!("chromium-{}", h.name()));
    let out = h
        .command("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium (scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const VIP7_MASTER: &str = "tandem_carp_vip_state{vhid=\"7\",interface=\"lan\",state=\"MASTER\"}";
const VIP7_SENT: &str = "tandem_carp_adverts_sent_total{vhid=\"7\",interface=\"lan\"}";
const VIP7_TRANSITIONS: &str = "tandem_carp_vip_transitions_total{vhid=\"7\",interface=\"lan\"}";

#[test]
fn metrics_and_the_status_page_show_a_cluster_and_its_failover() {
    if !lab::require_netns() {
        return;
    }
    let o = Opts {
        fw2_from_its_folder: true,
        ..opts()
    };
    let mut c = cluster("metrics_page", &o);
    c.fw1().expect_state(7, "MASTER", ELECTION);
    c.fw2.expect_state(7, "BACKUP", ELECTION);
    c.wait_in_sync();
    // [metrics] added by a reload: fw1 on IPv4, fw2 on IPv6 loopback.
    c.edit_fw1(|t| {
        t.replacen(
            "[sync]\n",
            "[metrics]\nlisten = \"127.0.0.1:9720\"\n\n[sync]\n",
            1,
        )
    });
    edit(&c.fw2.config, |t| {
        t.replacen(
            "[sync]\n",
            "[metrics]\nlisten = \"[::1]:9720\"\n\n[sync]\n",
            1,
        )
    });
    reload(&c.fw2);
    let h1 = c.h1.clone();
    let h2 = c.fw2.host.clone();
    let m1 = "http://127.0.0.1:9720/metrics";
    let m2 = "http://[::1]:9720/metrics";

    // fw1: master of vhid 7, sending adverts; state sync has its table; fw2 in sync.
    c.wait(
        "fw1's metrics: master, adverts sent, state sync ready, fw2 in sync",
        || {
            let t = scrape(&h1, m1);
            sample(&t, VIP7_MASTER) == Some(1.0)
                && sample(&t, VIP7_SENT).is_some_and(|n| n > 0.0)
                && sample(&t, "tandem_statesync_ready") == Some(1.0)
                && sample(&t, "tandem_configsync_peer_in_sync{peer=\"fw2\"}") == Some(1.0)
        },
    );
    let t1 = scrape(&h1, m1);
    let gen = c.fw1().status()["config_sync"]["generation"]
        .as_f64()
        .expect("generation");
    assert_eq!(
        sample(&t1, "tandem_configsync_generation"),
        Some(gen),
        "{t1}"
    );
    assert_eq!(sample(&t1, "tandem_firewall_applied"), Some(1.0), "{t1}");
    assert!(
        sample(
            &t1,
            "tandem_configsync_peer_pushes_total{peer=\"fw2\",kind=\"full\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{t1}"
    );
    assert!(t1.contains("tandem_node_info{node=\"fw1\""), "{t1}");
    assert!(t1.ends_with("# EOF\n"), "{t1}");
    // fw2 over IPv6: backup, hearing fw1.
    let t2 = scrape(&h2, m2);
    assert_eq!(
        sample(
            &t2,
            "tandem_carp_vip_state{vhid=\"7\",interface=\"lan\",state=\"BACKUP\"}"
        ),
        Some(1.0),
        "{t2}"
    );
    assert!(
        sample(
            &t2,
            "tandem_carp_adverts_received_total{vhid=\"7\",interface=\"lan\"}"
        )
        .is_some_and(|n| n > 0.0),
        "{t2}"
    );
    assert_eq!(sample(&t2, "tandem_configsync_behind"), Some(0.0), "{t2}");

    // Only GET / and GET /metrics.
    assert_eq!(http(&h1, "GET", "http://127.0.0.1:9720/nope").0, 404);
    assert_eq!(http(&h1, "POST", m1).0, 405);
    // Loopback only: not on fw1's lan address.
    assert_eq!(http(&c.client, "GET", "http://192.0.2.2:9720/metrics").0, 0);

    // The page in a real browser.
    let dom = chromium(&h1, c.lab.dir(), &["--dump-dom", "http://127.0.0.1:9720/"]);
    for needle in [
        "<h1 id=\"node\">fw1</h1>",
        "data-vhid=\"7\"",
        "data-vhid=\"8\"",
        "MASTER",
        "192.0.2.1/24",
        "Config sync peers",
        "fw2",
        "State sync peers",
        "203.0.113.2:7777",
        "Firewall",
    ] {
        assert!(
            dom.contains(needle),
            "no {needle:?} in the rendered page:\n{dom}"
        );
    }
    for secret in ["carp-s3cret", "pw-sync-long-enough", "state sync key"] {
        assert!(!dom.contains(secret), "{secret:?} on the page");
    }
    if let Ok(path) = std::env::var("TANDEM_SCREENSHOT") {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path);
        chromium(
            &h1,
            c.lab.dir(),
            &[
                &format!("--screenshot={}", path.display()),
                "--window-size=1280,1320",
                "http://127.0.0.1:9720/",
            ],
        );
    }

    // A reload moves fw2's listener: the new port answers, the old one is closed.
    edit(&c.fw2.config, |t| t.replacen("[::1]:9720", "[::1]:9721", 1));
    reload(&c.fw2);
    let m2 = "http://[::1]:9721/metrics";
    let before = sample(&scrape(&h2, m2), VIP7_TRANSITIONS).expect("transitions");
    assert_eq!(http(&h2, "GET", "http://[::1]:9720/metrics").0, 0);

    // fw1 dies: fw2 takes vhid 7 over, and its counters say so.
    c.kill_fw1();
    c.fw2.expect_state(7, "MASTER", TAKEOVER);
    c.wait(
        "fw2's metrics: master of vhid 7, one more transition",
        || {
            let t = scrape(&h2, m2);
            sample(&t, VIP7_MASTER) == Some(1.0)
                && sample(&t, VIP7_TRANSITIONS).is_some_and(|n| n > before)
        },
    );
    let dom = chromium(&h2, c.lab.dir(), &["--dump-dom", "http://[::1]:9721/"]);
    assert!(dom.contains("<h1 id=\"node\">fw2</h1>"), "{dom}");
    assert!(
        dom.contains("BACKUP &rarr; MASTER") || dom.contains("BACKUP → MASTER"),
        "{dom}"
    );
}

#[test]
fn a_metrics_port_in_use_stops_the_start_and_says_where() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = lab::Lab::new("metrics_port_busy").expect("lab");
    let h = lab.host("fw1").expect("fw1");
    let sw = lab.switch("lan").expect("lan");
    lab.connect(&h, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    let busy = h
        .spawn(&[
            "python3",
            "-c",
            "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',9720))\ns.listen()\ntime.sleep(60)",
        ])
        .expect("python3");
    let cfg = write_config_extra(
        &lab,
        "fw1",
        0,
        true,
        "s3cret",
        &[("lan", "eth0")],
        &[VipSpec {
            vhid: 7,
            interface: "lan",
            addresses: &["192.0.2.1/24"],
        }],
        "[metrics]\nlisten = \"127.0.0.1:9720\"\n",
    );
    assert!(lab::wait_until(Duration::from_secs(5), || {
        h.run(&["ss", "-ltn", "sport = :9720"])
            .is_ok_and(|o| o.contains("127.0.0.1:9720"))
    }));
    let out = h
        .command(TANDEM)
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .expect("tandem run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("[metrics] cannot listen on 127.0.0.1:9720"),
        "{err}"
    );
    // It stopped before adding anything.
    assert!(!h.has_address("eth0", "192.0.2.1"));
    drop(busy);
}
