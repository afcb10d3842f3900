//! Scale: 10k rules and a 100k-entry alias render (linear work; bench/ times it), with the
//! alias as one set of 100k elements rather than 100k rules.

#[test]
fn renders_10k_rules_and_a_100k_entry_alias() {
    let text = firewall::synth::config(10_000, 100_000);
    let areas = firewall::parse_areas(&text).expect("synthetic config parses");
    let ctx = firewall::synth::context();
    let r = firewall::render(&areas, &ctx).expect("synthetic config is valid");
    let set = r
        .nft
        .split("\tset alias_big_v4 {\n")
        .nth(1)
        .and_then(|s| s.split("\t\t}\n").next())
        .expect("the alias is one set");
    assert_eq!(
        set.lines().filter(|l| l.starts_with("\t\t\t")).count(),
        100_000
    );
    // Each rule is referenced by the set, not expanded: rule lines stay proportional to rules.
    let rule_lines = r
        .nft
        .lines()
        .filter(|l| l.contains("comment \"rule "))
        .count();
    assert!(
        rule_lines <= 10_000 * 4,
        "{rule_lines} nft rules for 10k rules"
    );
    assert_eq!(r.nft.matches("@alias_big_v4").count(), 2 * 2_500);
    // Same input, same bytes.
    assert_eq!(r, firewall::render(&areas, &ctx).expect("valid"));
}
