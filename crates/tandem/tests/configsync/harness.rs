//! The harness of the config-sync tests (`tests/configsync.rs`): a two-node cluster (fw1
//! primary, fw2 peer) with its config writers, options and helpers (reload, edit, the CLI,
//! fw2's nftables table).

use crate::common::*;
use lab::{Host, Lab};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Generous: a push takes well under a second; a loaded CI machine may be slow.
const SYNC: Duration = Duration::from_secs(15);

pub struct Cluster {
    pub lab: Lab,
    fw1: Option<Node>,
    pub fw2: Node,
    pub h1: Host,
    /// On the lan, 192.0.2.10.
    pub client: Host,
    /// On the wan, 198.51.100.10 (tests/wireguard.rs's remote peer).
    #[allow(dead_code)]
    pub server: Host,
}

/// See [`Opts::before_nodes`].
pub type BeforeNodes<'a> = dyn Fn(&Lab, &Host, &Host) + 'a;

pub struct Opts<'a> {
    /// The areas fw1 pushes (`None`: the default, all).
    pub areas: Option<&'a [&'a str]>,
    /// fw1's password for fw2 (fw2 takes "pw-sync-long-enough").
    pub password: &'a str,
    pub drift: &'a str,
    /// fw1's synced areas (TOML).
    pub fw1_areas: String,
    /// fw2's own areas (TOML).
    pub fw2_areas: &'a str,
    /// fw2 runs from its own folder, `tandem run --config fw2.toml`, with every file named
    /// relative to it (password, passphrase, state dir, state sync key); both run state sync.
    pub fw2_from_its_folder: bool,
    /// fw2 runs with at most this many open files (soft and hard limit).
    pub fw2_open_files: Option<u32>,
    /// Runs once the hosts are wired, before either daemon starts: (lab, fw1's host, fw2's).
    pub before_nodes: Option<&'a BeforeNodes<'a>>,
}

pub const BASE_RULES: &str = r#"
[[aliases]]
name = "web"
type = "port"
entries = [80, 443]

[[rules]]
interface = "sync"
action = "pass"
source = "sync:network"
description = "sync link"

[[rules]]
interface = "lan"
action = "pass"
protocol = "tcp"
destination_port = "web"
description = "base-rule-web"

[[nat.outbound]]
interface = "wan"
source = "lan:network"
translation = "198.51.100.1"
description = "fw1-only-nat"
"#;

pub const VIPS: &str = r#"
[[vips]]
vhid = 7
interface = "lan"
addresses = ["192.0.2.1/24"]

[[vips]]
vhid = 8
interface = "wan"
addresses = ["198.51.100.1/24"]
"#;

pub fn opts() -> Opts<'static> {
    Opts {
        areas: None,
        password: "pw-sync-long-enough",
        drift: "refuse",
        fw1_areas: format!("{VIPS}{BASE_RULES}"),
        fw2_areas: "",
        fw2_from_its_folder: false,
        fw2_open_files: None,
        before_nodes: None,
    }
}

/// fw2's config with every file named relative to its folder, and state sync.
fn fw2_config_relative(drift: &str, own_areas: &str) -> String {
    format!(
        r#"[node]
name = "fw2"
advskew = 100
preempt = true
control_socket = "fw2.sock"
state_dir = "node-state"

[interfaces]
lan = "ens5"
wan = "ens6"
sync = "ens7"

[carp]
passphrase_file = "carp.key"

[statesync]
interface = "sync"
peers = ["203.0.113.1"]
key_file = "statesync.key"

[sync]
role = "peer"
listen = "203.0.113.2:8443"
state_dir = "state"
user = "sync"
password_file = "sync.pw"
drift = "{drift}"
primary_timeout = 6
{own_areas}"#
    )
}

const STATESYNC_FW1: &str = r#"
[statesync]
interface = "sync"
peers = ["203.0.113.2"]
key = "config sync test, state sync key"
"#;

fn fw2_config(lab: &Lab, drift: &str, own_areas: &str) -> String {
    let d = lab.dir();
    format!(
        r#"[node]
name = "fw2"
advskew = 100
preempt = true
control_socket = "{sock}"
state_dir = "{node_state}"

[interfaces]
lan = "ens5"
wan = "ens6"
sync = "ens7"

[carp]
passphrase = "carp-s3cret"

[sync]
role = "peer"
listen = "203.0.113.2:8443"
state_dir = "{state}"
user = "sync"
password = "pw-sync-long-enough"
drift = "{drift}"
primary_timeout = 6
{own_areas}"#,
        sock = d.join("fw2.sock").display(),
        node_state = d.join("fw2-node").display(),
        state = d.join("fw2-state").display(),
    )
}

fn fw1_config(lab: &Lab, o: &Opts<'_>, fingerprint: &str) -> String {
    let d = lab.dir();
    let areas = o.areas.map_or_else(String::new, |a| {
        format!(
            "areas = [{}]\n",
            a.iter()
                .map(|x| format!("\"{x}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    format!(
        r#"[node]
name = "fw1"
advskew = 0
preempt = true
control_socket = "{sock}"
state_dir = "{node_state}"

[interfaces]
lan = "eth0"
wan = "eth1"
sync = "eth2"

[carp]
passphrase = "carp-s3cret"

[sync]
role = "primary"
listen = "203.0.113.1:8443"
state_dir = "{state}"
user = "sync"
password = "{password}"
heartbeat = 0.5
retry_max = 1
{areas}
[[sync.peers]]
name = "fw2"
url = "https://203.0.113.2:8443"
fingerprint = "{fingerprint}"
{fw1_areas}"#,
        sock = d.join("fw1.sock").display(),
        node_state = d.join("fw1-node").display(),
        state = d.join("fw1-state").display(),
        password = o.password,
        fw1_areas = o.fw1_areas,
    )
}

/// lan and wan switches, the sync link; fw2 starts first (it makes its certificate), then
/// fw1 with fw2's fingerprint pinned, as an operator would do it.
pub fn cluster(name: &str, o: &Opts<'_>) -> Cluster {
    let mut lab = Lab::new(name).expect("lab");
    let Standard {
        fw1: h1,
        fw2: h2,
        client,
        server,
        ..
    } = standard(&mut lab, true);
    if let Some(f) = o.before_nodes {
        f(&lab, &h1, &h2);
    }
    let fw2 = if o.fw2_from_its_folder {
        let dir = lab.dir().join("fw2");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (f, text) in [
            ("carp.key", "carp-s3cret\n"),
            ("sync.pw", "pw-sync-long-enough\n"),
            ("statesync.key", "config sync test, state sync key\n"),
        ] {
            std::fs::write(dir.join(f), text).expect("write secret");
        }
        std::fs::write(
            dir.join("fw2.toml"),
            fw2_config_relative(o.drift, o.fw2_areas),
        )
        .expect("write");
        // From the lab's folder, not fw2's: the paths in fw2.toml are relative to the file,
        // not to the daemon's working directory.
        Node::start_in(&h2, lab.dir(), "fw2/fw2.toml")
    } else if let Some(n) = o.fw2_open_files {
        let c2 = lab.dir().join("fw2.toml");
        std::fs::write(&c2, fw2_config(&lab, o.drift, o.fw2_areas)).expect("write");
        Node::start_limited(&h2, c2, n)
    } else {
        let c2 = lab.dir().join("fw2.toml");
        std::fs::write(&c2, fw2_config(&lab, o.drift, o.fw2_areas)).expect("write");
        Node::start(&h2, c2)
    };
    let fp = fw2.status()["config_sync"]["fingerprint"]
        .as_str()
        .expect("fw2 prints its fingerprint")
        .to_string();
    assert!(fp.starts_with("sha256:"), "{fp}");
    let c1 = lab.dir().join("fw1.toml");
    let mut text = fw1_config(&lab, o, &fp);
    if o.fw2_from_its_folder {
        // Node-local, so before the areas: after [sync]'s table, as a table of its own.
        text = text.replacen(
            "[[sync.peers]]",
            &format!("{STATESYNC_FW1}\n[[sync.peers]]"),
            1,
        );
    }
    std::fs::write(&c1, text).expect("write");
    let fw1 = Node::start(&h1, c1);
    // And fw2 takes pushes only from fw1's certificate.
    pin_primary(&fw2, &fw1);
    Cluster {
        lab,
        fw1: Some(fw1),
        fw2,
        h1,
        client,
        server,
    }
}

impl Cluster {
    pub fn fw1(&self) -> &Node {
        self.fw1.as_ref().expect("fw1 runs")
    }

    fn logs(&self) -> String {
        format!(
            "--- fw1 log:\n{}\n--- fw2 log:\n{}\n--- fw1 status: {}\n--- fw2 status: {}",
            self.fw1.as_ref().map(|n| n.log()).unwrap_or_default(),
            self.fw2.log(),
            self.fw1
                .as_ref()
                .and_then(|n| n.try_status())
                .map(|s| s["config_sync"].to_string())
                .unwrap_or_default(),
            self.fw2
                .try_status()
                .map(|s| s["config_sync"].to_string())
                .unwrap_or_default(),
        )
    }

    /// fw1's daemon dies (SIGKILL: no bow-out).
    pub fn kill_fw1(&mut self) {
        if let Some(mut n) = self.fw1.take() {
            n.kill();
        }
    }

    /// fw1's daemon starts again with its config (after [`Cluster::kill_fw1`]).
    #[allow(dead_code)] // not every test that includes the harness restarts fw1
    pub fn start_fw1(&mut self) {
        if self.fw1.is_none() {
            self.fw1 = Some(Node::start(&self.h1, self.lab.dir().join("fw1.toml")));
        }
    }

    pub fn peer(&self) -> Value {
        self.fw1().status()["config_sync"]["peers"][0].clone()
    }

    pub fn wait(&self, what: &str, f: impl FnMut() -> bool) {
        self.wait_long(what, SYNC, f);
    }

    /// As [`Cluster::wait`], for something that takes longer than a push.
    pub fn wait_long(&self, what: &str, within: Duration, f: impl FnMut() -> bool) {
        let ok = lab::wait_until(within, f);
        assert!(ok, "timed out waiting for: {what}\n{}", self.logs());
    }

    pub fn wait_in_sync(&self) {
        self.wait("fw1 reports fw2 in sync", || {
            let p = self.peer();
            p["in_sync"] == true
                && p["acked_generation"] == self.fw1().status()["config_sync"]["generation"]
        });
    }

    /// Edits fw1's config file and reloads it; returns when the reload answered.
    pub fn edit_fw1(&self, f: impl FnOnce(String) -> String) {
        edit(&self.fw1().config, f);
        reload(self.fw1());
    }
}

pub fn edit(path: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).expect("read config");
    std::fs::write(path, f(text)).expect("write config");
}

pub fn reload(n: &Node) {
    let out = n
        .host
        .command(TANDEM)
        .args(["reload", "--config"])
        .arg(&n.config)
        .output()
        .expect("tandem reload");
    assert!(
        out.status.success(),
        "reload on {} failed: {}{}",
        n.host.name(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn tandem(n: &Node, args: &[&str]) -> (bool, String) {
    let out = n
        .host
        .command(TANDEM)
        .args(args)
        .arg("--config")
        .arg(&n.config)
        .output()
        .expect("tandem");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn nft(h: &Host) -> String {
    h.run(&["nft", "list", "table", "inet", "tandem"])
        .unwrap_or_default()
}

/// Runs tests/configsync_client.py (Python's xmlrpc.client) against fw2 from fw1's namespace,
/// across the sync link as the primary would, trusting fw2's certificate `cert`; its JSON.
pub fn python_client(c: &Cluster, cert: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configsync_client.py");
    let out =
        c.h1.command("python3")
            .arg(&script)
            .args([
                "https://203.0.113.2:8443",
                cert.to_str().expect("path"),
                "sync",
                "pw-sync-long-enough",
            ])
            .output()
            .expect("python3");
    assert!(
        out.status.success(),
        "python client failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}
