//! An incremental update (`Table::update`) must leave exactly the table a full replace
//! (`Table::script`) leaves: for each change below, the update is applied over the old
//! ruleset in one namespace, the new ruleset is loaded from scratch in another, and `nft list
//! table inet tandem` must print the same bytes in both. Needs root and nft (in a throwaway
//! namespace each); skipped without them, unless CI == "true", where it fails.

mod common;

use common::Netns;
use firewall::Ruleset;

fn runnable() -> bool {
    common::runnable("nft updates", &[("nft", "--version"), ("ip", "-V")])
}

/// A config big enough that every list is split into parts: 2 000 synthetic rules, a host
/// alias of 20 000 entries (a hash set), a small and a big network alias (interval sets),
/// 300 rules of direction out and 300 port forwards.
fn base() -> String {
    let mut s = firewall::synth::config(2000, 20_000);
    s.push_str("[[aliases]]\nname = \"nets\"\ntype = \"network\"\nentries = [\"203.0.113.0/28\", \"203.0.113.64/27\"]\n\n");
    s.push_str("[[rules]]\ninterface = \"wan\"\naction = \"block\"\nsource = \"nets\"\ndescription = \"nets\"\n\n");
    // A network alias too big to update element by element: flushed and filled again.
    let prefixes: Vec<String> = (0..3000)
        .map(|i| format!("\"2001:db8:{:x}::/64\"", 0x1000 + 2 * i))
        .collect();
    s.push_str(&format!(
        "[[aliases]]\nname = \"bignets\"\ntype = \"network\"\nentries = [{}]\n\n",
        prefixes.join(", ")
    ));
    s.push_str("[[rules]]\ninterface = \"wan\"\naction = \"block\"\nsource = \"bignets\"\ndescription = \"bignets\"\n\n");
    for i in 0..300 {
        s.push_str(&format!(
            "[[rules]]\ninterface = \"wan\"\ndirection = \"out\"\naction = \"{}\"\nprotocol = \"tcp\"\ndestination_port = {}\n\n",
            if i % 3 == 0 { "block" } else { "pass" },
            2000 + i
        ));
        s.push_str(&format!(
            "[[nat.port_forward]]\ninterface = \"wan\"\ndestination = \"198.51.100.1\"\nprotocol = \"tcp\"\nport = {}\ntarget = \"192.0.2.{}\"\n\n",
            30000 + i,
            10 + i % 200
        ));
    }
    s
}

fn render(text: &str) -> Ruleset {
    let areas = firewall::parse_areas(text).expect("test config parses");
    firewall::render(&areas, &firewall::synth::context()).expect("test config is valid")
}

/// Each change: a name and what it does to the config text.
fn changes() -> Vec<(&'static str, String)> {
    let b = base();
    let mut alias = b.clone();
    // 1 % of the host alias: 200 entries out, 200 in.
    for i in 0..200u32 {
        let old = format!("  \"10.0.{}.{}\",\n", (2 * i) / 256, (2 * i) % 256);
        assert!(alias.contains(&old), "{old}");
        alias = alias.replacen(
            &old,
            &format!("  \"10.200.{}.{}\",\n", (2 * i) / 256, (2 * i) % 256),
            1,
        );
    }
    vec![
        (
            "one rule changed in the middle",
            b.replacen("destination_port = 2024\n", "destination_port = 2999\n", 1),
        ),
        (
            "one rule appended",
            format!("{b}[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"udp\"\ndestination_port = 5353\ndescription = \"appended\"\n"),
        ),
        (
            "one rule removed",
            b.replacen(
                "[[rules]]\ninterface = \"lan\"\naction = \"reject\"\nsource = \"192.0.2.8\"\n",
                "",
                1,
            ),
        ),
        ("1% of a 20 000-entry alias", alias),
        (
            "a network alias grows and shrinks",
            b.replacen(
                "[\"203.0.113.0/28\", \"203.0.113.64/27\"]",
                "[\"203.0.113.0/27\", \"203.0.113.128/29\"]",
                1,
            ),
        ),
        (
            "a 3 000-entry network alias changed",
            b.replacen("\"2001:db8:1100::/64\"", "\"2001:db8:ffff::/48\"", 1),
        ),
        (
            "one out rule changed",
            b.replacen("destination_port = 2150\n", "destination_port = 2888\n", 1),
        ),
        (
            "one port forward changed",
            b.replacen("port = 30100\ntarget", "port = 31100\ntarget", 1),
        ),
        (
            "outbound NAT changed",
            b.replacen(
                "translation = \"198.51.100.1\"",
                "translation = \"198.51.100.2\"",
                1,
            ),
        ),
    ]
}

#[test]
fn an_update_leaves_the_table_a_full_replace_leaves() {
    if !runnable() {
        return;
    }
    let old = render(&base());
    let mut incremental = 0;
    for (what, text) in changes() {
        let new = render(&text);
        assert_ne!(new.nft, old.nft, "{what}: the change changed nothing");
        let updated = Netns::new("upd");
        updated.nft_ok(&["-f", "-"], &old.nft, "old ruleset");
        let listed_old = updated.nft_ok(&["list", "table", "inet", "tandem"], "", what);
        let script = match new.table.update(&old.table) {
            Some(u) => {
                incremental += 1;
                assert!(!u.is_empty(), "{what}");
                assert!(!u.script.contains("delete table"), "{what}: {}", u.script);
                u.script
            }
            // Structural (a part boundary moved): the full replace is the update.
            None => new.nft.clone(),
        };
        updated.nft_ok(&["-f", "-"], &script, what);
        let fresh = Netns::new("full");
        fresh.nft_ok(&["-f", "-"], &new.nft, "new ruleset");
        let a = updated.nft_ok(&["list", "table", "inet", "tandem"], "", what);
        let b = fresh.nft_ok(&["list", "table", "inet", "tandem"], "", what);
        assert_ne!(
            a, listed_old,
            "{what}: the update changed nothing in the kernel"
        );
        if a != b {
            let line = a
                .lines()
                .zip(b.lines())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            panic!(
                "{what}: the updated table differs from a fresh load at line {}:\n  updated: {:?}\n  fresh:   {:?}",
                line + 1,
                a.lines().nth(line),
                b.lines().nth(line)
            );
        }
    }
    // Most of these changes must go the incremental way, or the test proves nothing.
    assert!(
        incremental >= 8,
        "only {incremental} changes were incremental"
    );
}

#[test]
fn an_update_is_small() {
    let old = render(&base());
    let (_, text) = &changes()[0];
    let new = render(text);
    let script = new.table.update(&old.table).expect("incremental").script;
    // The rule is in chains input and forward: one part of each.
    assert_eq!(script.matches("flush chain").count(), 2, "{script}");
    assert!(
        script.len() * 20 < new.nft.len(),
        "{} bytes for one rule",
        script.len()
    );
}
