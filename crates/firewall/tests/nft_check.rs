//! The real nft must accept every golden ruleset: `nft -c` (dry run) and a real apply, inside a
//! throwaway network namespace so the host's own ruleset is never touched. Needs root and nft;
//! without them the tests are skipped, unless CI == "true", where they fail.

mod common;

use common::Netns;

/// Whether the tests can run here; panics in CI when they cannot.
fn runnable() -> bool {
    common::runnable("nft checks", &[("nft", "--version"), ("ip", "-V")])
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
