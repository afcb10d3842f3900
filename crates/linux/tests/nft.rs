//! `linux::nft` in a namespace: a script is one transaction, so one that fails partway leaves
//! the previous table exactly as it was (handles included), `check` changes nothing, and a
//! good script replaces the table whole (sets included). Needs root and nft.

mod common;

use common::join;
use lab::{require_netns, Host, Lab};
use linux::nft::{Nft, NftError};

/// The table Tandem owns, with a set, a chain and a rule: the "old ruleset".
const OLD: &str = "table inet tandem {}
delete table inet tandem
table inet tandem {
\tset alias_old_v4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 192.0.2.10, 192.0.2.20 }
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tip saddr @alias_old_v4 tcp dport 22 counter accept comment \"rule 1: old\"
\t\tcounter drop comment \"default block\"
\t}
}
";

/// A valid replacement: a different set, different rules.
const NEW: &str = "table inet tandem {}
delete table inet tandem
table inet tandem {
\tset alias_new_v4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 198.51.100.7 }
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr @alias_new_v4 counter accept comment \"rule 1: new\"
\t}
}
";

/// Someone else's table, which no script of ours may touch.
const OTHER: &str = "table ip other {
\tchain c {
\t\ttype filter hook forward priority 10; policy accept;
\t\tip daddr 203.0.113.5 counter drop
\t}
}
";

/// Runs `f` on a thread inside `host`'s namespace: the nft that `linux::nft` spawns runs
/// there too (a child inherits the calling thread's network namespace).
fn in_ns<T: Send + 'static>(host: &Host, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = host.ns().to_owned();
    join(std::thread::spawn(move || {
        common::enter(&ns);
        f()
    }))
}

/// Everything in the namespace, with handles: identical only if nothing was replaced.
fn ruleset(host: &Host) -> String {
    host.run(&["nft", "-a", "list", "ruleset"])
        .expect("nft list ruleset")
}

fn setup(name: &str) -> (Lab, Host) {
    let mut lab = Lab::new(name).expect("lab");
    let h = lab.host("fw").expect("host");
    let file = lab.dir().join("other.nft");
    std::fs::write(&file, OTHER).expect("write");
    h.run(&["nft", "-f", file.to_str().expect("utf-8")])
        .expect("other table");
    in_ns(&h, || Nft::default().apply(OLD)).expect("old ruleset applies");
    (lab, h)
}

/// A valid replacement of the table followed by `tail`: nft must refuse the whole script.
fn replacement_then(tail: &str) -> String {
    format!("{NEW}{tail}")
}

#[test]
fn a_script_failing_partway_leaves_the_old_table_exactly() {
    if !require_netns() {
        return;
    }
    let (_lab, h) = setup("linux_nft_atomic");
    let before = ruleset(&h);
    assert!(before.contains("alias_old_v4"), "{before}");
    assert!(before.contains("table ip other"), "{before}");

    let cases = [
        (
            "a rule naming a set that does not exist",
            replacement_then(
                "add rule inet tandem input ip saddr @alias_missing_v4 counter drop\n",
            ),
            "alias_missing_v4",
        ),
        (
            "a rule in a chain that does not exist",
            replacement_then("add rule inet tandem nosuchchain counter drop\n"),
            "nosuchchain",
        ),
        (
            "a syntax error at the end",
            replacement_then("add rule inet tandem input ip saddr counter drop garbage(\n"),
            "syntax error",
        ),
        (
            "an element of the wrong type in a set",
            replacement_then("add element inet tandem alias_new_v4 { 2001:db8::1 }\n"),
            "Error",
        ),
    ];
    for (what, script, mention) in cases {
        let s = script.clone();
        let err = in_ns(&h, move || Nft::default().apply(&s)).expect_err(what);
        let NftError::Rejected(msg) = &err else {
            panic!("{what}: {err:?}");
        };
        assert!(msg.contains(mention), "{what}: {msg}");
        assert_eq!(
            ruleset(&h),
            before,
            "{what}: the failed apply changed the ruleset"
        );
        // check refuses it too, and changes nothing either.
        let s = script.clone();
        let err = in_ns(&h, move || Nft::default().check(&s)).expect_err(what);
        assert!(matches!(err, NftError::Rejected(_)), "{what}: {err:?}");
        assert_eq!(ruleset(&h), before, "{what}: check changed the ruleset");
    }
    // The test's own negative control: the replacement alone does apply and change things.
    in_ns(&h, || Nft::default().apply(NEW)).expect("the replacement alone applies");
    assert_ne!(ruleset(&h), before);
}

#[test]
fn check_validates_without_touching_anything() {
    if !require_netns() {
        return;
    }
    let (_lab, h) = setup("linux_nft_check");
    let before = ruleset(&h);
    in_ns(&h, || Nft::default().check(NEW)).expect("a good script checks");
    assert_eq!(ruleset(&h), before, "check applied the script");

    // In an empty namespace, check creates nothing.
    let mut lab = Lab::new("linux_nft_check_empty").expect("lab");
    let empty = lab.host("empty").expect("host");
    in_ns(&empty, || Nft::default().check(NEW)).expect("checks");
    assert_eq!(
        in_ns(&empty, || Nft::default().list_table("inet", "tandem")).expect("list"),
        None
    );
    assert_eq!(ruleset(&empty).trim(), "");
}

#[test]
fn apply_replaces_the_table_whole_and_no_other() {
    if !require_netns() {
        return;
    }
    let (_lab, h) = setup("linux_nft_replace");
    let old = in_ns(&h, || Nft::default().list_table("inet", "tandem"))
        .expect("list")
        .expect("table exists");
    assert!(old.contains("192.0.2.10"), "{old}");
    let other_before = h
        .run(&["nft", "-a", "list", "table", "ip", "other"])
        .expect("other");

    in_ns(&h, || Nft::default().apply(NEW)).expect("apply");
    let new = in_ns(&h, || Nft::default().list_table("inet", "tandem"))
        .expect("list")
        .expect("table exists");
    // Sets are replaced too (a `flush table` would have kept alias_old_v4 and its elements).
    assert!(!new.contains("alias_old_v4"), "{new}");
    assert!(!new.contains("192.0.2.10"), "{new}");
    assert!(!new.contains("rule 1: old"), "{new}");
    assert!(new.contains("alias_new_v4"), "{new}");
    assert!(new.contains("198.51.100.7"), "{new}");
    assert!(new.contains("rule 1: new"), "{new}");
    assert_eq!(
        h.run(&["nft", "-a", "list", "table", "ip", "other"])
            .expect("other"),
        other_before,
        "another table was touched"
    );

    // Applying the same script twice is fine (the first line creates the table if missing).
    in_ns(&h, || Nft::default().apply(NEW)).expect("apply again");
    // And on an empty namespace.
    let mut lab = Lab::new("linux_nft_replace_empty").expect("lab");
    let empty = lab.host("empty").expect("host");
    assert_eq!(
        in_ns(&empty, || Nft::default().list_table("inet", "tandem")).expect("list"),
        None
    );
    in_ns(&empty, || Nft::default().apply(NEW)).expect("apply on empty");
    assert!(
        in_ns(&empty, || Nft::default().list_table("inet", "tandem"))
            .expect("list")
            .is_some_and(|t| t.contains("198.51.100.7"))
    );
}
