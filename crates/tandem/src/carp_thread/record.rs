//! The CARP engine as the CARP thread holds it: every call that drives it can be written to a JSONL
//! trace (`tandem run --record FILE`), which `carp::trace::replay` turns back into the same
//! actions: a field problem becomes a deterministic test.

use carp::trace::{Record, TraceLine};
use carp::{Action, Carp, IfaceId, Input, RouterConfig, Vhid};
use std::io::Write;
use std::net::IpAddr;
use std::time::Instant;

pub struct Engine {
    carp: Carp,
    trace: Option<(Instant, std::io::BufWriter<std::fs::File>)>,
}

impl Engine {
    pub fn new(seed: u64, record: Option<&std::path::Path>) -> anyhow::Result<Engine> {
        let trace = match record {
            Some(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    // It holds the CARP key.
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| anyhow::anyhow!("cannot create trace {}: {e}", path.display()))?;
                // An existing file keeps its mode through `open`: set it.
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| {
                        anyhow::anyhow!("cannot restrict trace {}: {e}", path.display())
                    })?;
                Some((Instant::now(), std::io::BufWriter::new(f)))
            }
            None => None,
        };
        let mut e = Engine {
            carp: Carp::new(seed),
            trace,
        };
        e.record(Instant::now(), Record::Seed(seed));
        Ok(e)
    }

    fn record(&mut self, now: Instant, record: Record) {
        let Some((start, out)) = self.trace.as_mut() else {
            return;
        };
        let line = TraceLine {
            at_us: now.saturating_duration_since(*start).as_micros() as u64,
            record,
        };
        let ok = serde_json::to_writer(&mut *out, &line).is_ok()
            && out.write_all(b"\n").is_ok()
            && out.flush().is_ok();
        if !ok {
            tracing::error!("cannot write the engine trace; recording stops");
            self.trace = None;
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        if self.trace.is_some() {
            self.record(now, Record::Input(input.clone()));
        }
        self.carp.handle(now, input);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.record(now, Record::Timeout);
        self.carp.handle_timeout(now);
    }

    pub fn add_router(&mut self, now: Instant, cfg: RouterConfig) {
        if self.trace.is_some() {
            self.record(now, Record::AddRouter(cfg.clone()));
        }
        self.carp.add_router(now, cfg);
    }

    pub fn remove_router(&mut self, iface: IfaceId, vhid: Vhid) {
        self.record(Instant::now(), Record::RemoveRouter { iface, vhid });
        self.carp.remove_router(iface, vhid);
    }

    pub fn set_counter_clock(&mut self, start: u64) {
        self.record(Instant::now(), Record::CounterClock(start));
        self.carp.set_counter_clock(start);
    }

    pub fn set_local_address(&mut self, iface: IfaceId, addr: IpAddr) {
        self.record(Instant::now(), Record::LocalAddress { iface, addr });
        self.carp.set_local_address(iface, addr);
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.carp.poll_action()
    }
}

impl std::ops::Deref for Engine {
    type Target = Carp;
    /// Read-only access (status, timers); everything that changes the engine goes through the
    /// recording methods above.
    fn deref(&self) -> &Carp {
        &self.carp
    }
}
