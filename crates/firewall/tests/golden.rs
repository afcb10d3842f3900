//! Golden tests: every tests/golden/NAME.toml renders to exactly tests/golden/NAME.nft (and,
//! when it has routes, NAME.routes). `UPDATE_GOLDEN=1 cargo test -p firewall --test golden`
//! rewrites the expected files; review the diff before committing.

mod common;

use std::path::Path;

fn check(path: &Path, actual: &str, update: bool, failures: &mut Vec<String>) {
    if update {
        std::fs::write(path, actual).expect("write golden");
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => {
            let line = expected
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()))
                + 1;
            failures.push(format!(
                "{}: differs from line {line}:\n--- expected\n{}\n--- actual\n{}",
                path.display(),
                expected.lines().nth(line - 1).unwrap_or("<end>"),
                actual.lines().nth(line - 1).unwrap_or("<end>")
            ));
        }
        Err(_) => failures.push(format!(
            "{}: missing (run with UPDATE_GOLDEN=1)",
            path.display()
        )),
    }
}

#[test]
fn golden_rulesets() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let cases = common::golden_cases();
    assert!(cases.len() >= 8, "golden cases missing");
    let mut failures = Vec::new();
    for (name, text) in &cases {
        let r = common::render_case(name, text);
        // Deterministic: rendering twice gives the same bytes.
        assert_eq!(
            r,
            common::render_case(name, text),
            "{name}: not deterministic"
        );
        let dir = common::golden_dir();
        check(
            &dir.join(format!("{name}.nft")),
            &r.nft,
            update,
            &mut failures,
        );
        let routes = common::routes_text(&r);
        let rpath = dir.join(format!("{name}.routes"));
        if !routes.is_empty() || rpath.exists() {
            check(&rpath, &routes, update, &mut failures);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
