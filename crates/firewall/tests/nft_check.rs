//! The real nft must accept every golden ruleset: `nft -c` (dry run) and a real apply, inside a
//! throwaway network namespace so the host's own ruleset is never touched. Needs root and nft;
//! without them the tests are skipped, unless CI == "true", where they fail.

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether the tests can run here; panics in CI when they cannot.
fn runnable() -> bool {
    common::runnable("nft checks", &[("nft", "--version"), ("ip", "-V")])
}

/// A network namespace deleted on drop (also on panic).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
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
    fn nft(&self, args: &[&str], stdin: &str) -> Output {
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

    fn nft_ok(&self, args: &[&str], stdin: &str, what: &str) -> String {
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

const OTHER_TABLE: &str = "table inet other {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n\t\ttcp dport 9 counter accept\n\t}\n}\n";

#[test]
fn nft_accepts_every_golden_ruleset() {
    if !runnable() {
        return;
    }
    let ns = Netns::new("golden");
    // Someone else's table, which no apply of ours may touch.
    ns.nft_ok(&["-f", "-"], OTHER_TABLE, "other table");
    let other_before = ns.nft_ok(&["list", "table", "inet", "other"], "", "list other");
    let cases = common::golden_cases();
    assert!(!cases.is_empty());
    for (name, text) in &cases {
        let nft = common::render_case(name, text).nft;
        // The dry run the daemon does first...
        ns.nft_ok(&["-c", "-f", "-"], &nft, name);
        // ...then the real thing, twice: from scratch (or over the previous case) and over itself.
        ns.nft_ok(&["-f", "-"], &nft, name);
        ns.nft_ok(&["-f", "-"], &nft, name);
        let listed = ns.nft_ok(&["list", "table", "inet", "tandem"], "", name);
        assert!(listed.contains("chain input"), "{name}: table not in place");
    }
    let other_after = ns.nft_ok(&["list", "table", "inet", "other"], "", "list other");
    assert_eq!(other_before, other_after, "another table was touched");
}

#[test]
fn nft_accepts_10k_rules_and_a_100k_alias() {
    if !runnable() {
        return;
    }
    let text = firewall::synth::config(10_000, 100_000);
    let areas = firewall::parse_areas(&text).expect("synthetic config parses");
    let r =
        firewall::render(&areas, &firewall::synth::context()).expect("synthetic config is valid");
    let ns = Netns::new("scale");
    ns.nft_ok(&["-c", "-f", "-"], &r.nft, "10k rules + 100k alias");
}
