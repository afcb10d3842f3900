//! The proptest settings the seeded simulation tests share: `PROPTEST_CASES` overrides the
//! number of cases, and no shrinking (the seed is the whole scenario: shrinking it finds only
//! unrelated scenarios).

use proptest::test_runner::Config as ProptestConfig;

pub fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 0,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
