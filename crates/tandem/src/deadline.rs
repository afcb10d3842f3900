//! The one sleep every engine loop holds: until the engine's earliest deadline, or forever when
//! it has none (so it can sit in a `select!` with the loop's other inputs).

use std::time::Instant;

pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
