//! Shared test helpers: building a node context from a test config.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use firewall::{IpNet, NodeContext};

/// The node context a test config describes: `[interfaces]` (logical name → device) and
/// `[[vips]]` as the daemon reads them, plus the test-only `[test.addresses]` (logical name →
/// this node's real addresses, which the daemon learns from the kernel).
pub fn context(text: &str) -> NodeContext {
    let table: toml::Table = toml::from_str(text).expect("test config is TOML");
    let mut ctx = NodeContext::default();
    if let Some(ifs) = table.get("interfaces").and_then(|v| v.as_table()) {
        for (k, v) in ifs {
            ctx.interfaces
                .insert(k.clone(), v.as_str().expect("device").to_owned());
        }
    }
    if let Some(vips) = table.get("vips").and_then(|v| v.as_array()) {
        for vip in vips {
            let iface = vip["interface"].as_str().expect("vip interface");
            for a in vip["addresses"].as_array().expect("vip addresses") {
                let net: IpNet = a.as_str().expect("address").parse().expect("vip cidr");
                ctx.vips.push((iface.to_owned(), net));
            }
        }
    }
    if let Some(addrs) = table
        .get("test")
        .and_then(|t| t.get("addresses"))
        .and_then(|v| v.as_table())
    {
        for (k, v) in addrs {
            let nets = v
                .as_array()
                .expect("address list")
                .iter()
                .map(|a| a.as_str().expect("address").parse().expect("cidr"))
                .collect();
            ctx.interface_addrs.insert(k.clone(), nets);
        }
    }
    ctx
}

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every golden case: (name, config text), sorted by name.
pub fn golden_cases() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .filter_map(|e| {
            let p = e.expect("dir entry").path();
            (p.extension()? == "toml").then(|| {
                let name = p.file_stem()?.to_str()?.to_owned();
                let text = std::fs::read_to_string(&p).expect("read golden config");
                Some((name, text))
            })?
        })
        .collect();
    v.push(("readme".to_owned(), readme_example()));
    v.sort();
    v
}

/// The whole-config example of README.md, with this node's real addresses added, so the
/// documentation's example is golden-tested and checked by nft like the others.
pub fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("read README.md");
    let start = readme.find("```toml\n").expect("README has a toml example") + 8;
    let len = readme[start..].find("```").expect("example block ends");
    let mut text = readme[start..start + len].to_owned();
    text.push_str(
        "\n[test.addresses]\nlan = [\"192.0.2.2/24\"]\nwan = [\"198.51.100.2/24\"]\nsync = [\"203.0.113.2/24\"]\n",
    );
    text
}

/// Render a golden config, panicking with file:line messages on errors.
pub fn render_case(name: &str, text: &str) -> firewall::Ruleset {
    let file = format!("{name}.toml");
    let located = |e: Vec<firewall::ConfigError>| {
        e.iter()
            .map(|e| e.located(&file, text))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let areas = firewall::parse_areas(text).unwrap_or_else(|e| panic!("{}", located(e)));
    firewall::render(&areas, &context(text)).unwrap_or_else(|e| panic!("{}", located(e)))
}

/// Whether a namespace test can run here: root, and every `(tool, version flag)` in `tools`
/// answers. Panics in CI (CI == "true") when it cannot; elsewhere prints why and returns false.
/// `what` names the test(s) in those messages.
pub fn runnable(what: &str, tools: &[(&str, &str)]) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    let found = tools.iter().all(|(t, v)| {
        std::process::Command::new(t)
            .arg(v)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if root && found {
        return true;
    }
    let names: Vec<&str> = tools.iter().map(|(t, _)| *t).collect();
    assert!(
        !ci,
        "CI=true but the {what} cannot run (root: {root}, {names:?} found: {found})"
    );
    eprintln!("skipping {what}: need root and {names:?}");
    false
}

pub fn routes_text(r: &firewall::Ruleset) -> String {
    r.routes
        .iter()
        .map(|r| {
            format!(
                "{} via {} dev {} (gateway {})\n",
                r.destination, r.gateway, r.device, r.gateway_name
            )
        })
        .collect()
}

/// A network namespace deleted on drop (also on panic).
pub struct Netns(String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "tandem-fwtest-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns(name)
    }

    /// Run `nft ARGS` in the namespace with `stdin` as input.
    pub fn nft(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nft");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write ruleset to nft");
        child.wait_with_output().expect("wait for nft")
    }

    pub fn nft_ok(&self, args: &[&str], stdin: &str, what: &str) -> String {
        let out = self.nft(args, stdin);
        assert!(
            out.status.success(),
            "{what}: nft {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}
