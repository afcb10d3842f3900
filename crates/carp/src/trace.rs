//! Record and replay: everything that drives an engine, as JSON lines, so that a trace taken
//! from a running daemon (`tandem run --record FILE`) replays here as a deterministic test.
//!
//! A trace holds the passphrase-derived key of each router: treat it like the config file.

use crate::engine::{Action, Carp, IfaceId, Input, RouterConfig};
use crate::units::Vhid;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One thing that happened to the engine, `at_us` microseconds after the trace began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceLine {
    pub at_us: u64,
    #[serde(flatten)]
    pub record: Record,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Record {
    /// The engine's RNG seed; always the first line.
    Seed(u64),
    /// Where tandem-mode advert counters start ([`Carp::set_counter_clock`]).
    CounterClock(u64),
    LocalAddress {
        iface: IfaceId,
        addr: IpAddr,
    },
    AddRouter(RouterConfig),
    RemoveRouter {
        iface: IfaceId,
        vhid: Vhid,
    },
    Input(Input),
    Timeout,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("trace line {line}: {source}")]
    Parse {
        line: usize,
        source: serde_json::Error,
    },
    #[error("trace does not start with a seed line")]
    NoSeed,
}

/// Parses a JSONL trace (blank lines ignored).
pub fn parse(text: &str) -> Result<Vec<TraceLine>, TraceError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| TraceError::Parse {
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Runs a trace through a fresh engine; returns every action with the time it was emitted.
pub fn replay(trace: &[TraceLine]) -> Result<Vec<(u64, Action)>, TraceError> {
    let Some(TraceLine {
        record: Record::Seed(seed),
        ..
    }) = trace.first()
    else {
        return Err(TraceError::NoSeed);
    };
    let base = Instant::now();
    let mut engine = Carp::new(*seed);
    let mut out = Vec::new();
    for line in &trace[1..] {
        let now = base + Duration::from_micros(line.at_us);
        match &line.record {
            Record::Seed(_) => {}
            Record::CounterClock(start) => engine.set_counter_clock(*start),
            Record::LocalAddress { iface, addr } => engine.set_local_address(*iface, *addr),
            Record::AddRouter(cfg) => engine.add_router(now, cfg.clone()),
            Record::RemoveRouter { iface, vhid } => engine.remove_router(*iface, *vhid),
            Record::Input(input) => engine.handle(now, input.clone()),
            Record::Timeout => engine.handle_timeout(now),
        }
        while let Some(a) = engine.poll_action() {
            out.push((line.at_us, a));
        }
    }
    Ok(out)
}
