//! Hooks: the programs of `[hooks]`, run on state changes, off the CARP thread.
//!
//! Each VIP (interface, vhid) has a queue of its own and node-wide events another, each worked
//! by a tokio task that runs one hook at a time: the hooks of one VIP run in the order of its
//! transitions, and a slow hook of one VIP never holds up another's. Every run is bounded by
//! `[hooks] timeout` (its process group is killed then) and logged: info on exit 0, warn
//! otherwise with the first line of its stderr.
//!
//! A hook gets six arguments, `EVENT VHID INTERFACE OLD NEW REASON` (VHID and INTERFACE empty
//! for node-wide events), and the same in `TANDEM_*` environment variables.

use crate::config::{Hook, HookSettings};
use linux::process::{self, Spec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// What happened, as a hook is told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookEvent {
    /// `master`, `backup`, `init`, `demotion`, `state-sync-ready`, `config-applied`.
    pub event: String,
    pub vhid: Option<u8>,
    pub interface: String,
    pub device: String,
    pub addresses: Vec<String>,
    pub old: String,
    pub new: String,
    pub reason: String,
    /// Further variables (`TANDEM_DEMOTION`, `TANDEM_GENERATION`).
    pub extra: Vec<(String, String)>,
}

impl HookEvent {
    fn args(&self) -> Vec<String> {
        vec![
            self.event.clone(),
            self.vhid.map(|v| v.to_string()).unwrap_or_default(),
            self.interface.clone(),
            self.old.clone(),
            self.new.clone(),
            self.reason.clone(),
        ]
    }

    fn env(&self, node: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = [
            ("TANDEM_EVENT", self.event.clone()),
            (
                "TANDEM_VHID",
                self.vhid.map(|v| v.to_string()).unwrap_or_default(),
            ),
            ("TANDEM_INTERFACE", self.interface.clone()),
            ("TANDEM_DEVICE", self.device.clone()),
            ("TANDEM_ADDRESSES", self.addresses.join(" ")),
            ("TANDEM_OLD_STATE", self.old.clone()),
            ("TANDEM_NEW_STATE", self.new.clone()),
            ("TANDEM_REASON", self.reason.clone()),
            ("TANDEM_NODE", node.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        v.extend(self.extra.iter().cloned());
        v
    }

    /// For logs: `vhid=7 iface=lan BACKUP -> MASTER` or `demotion 0 -> 240`.
    fn label(&self) -> String {
        match self.vhid {
            Some(v) => format!(
                "vhid={v} iface={} {} -> {}",
                self.interface, self.old, self.new
            ),
            None => format!("{} {} -> {}", self.event, self.old, self.new),
        }
    }
}

/// The last run of one hook, for status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HookStatus {
    /// `on_master`, `on_backup`, ...
    pub hook: String,
    pub program: String,
    /// The event of its last run and what it was about (`vhid=7 iface=lan BACKUP -> MASTER`).
    pub event: String,
    /// Seconds since the last run ended.
    pub seconds_ago: f64,
    /// When it ended, in seconds since the Unix epoch.
    pub at_unix: u64,
    /// `exit 0`, `exit 2: first line of stderr`, `timed out after 30 s (process group killed)`.
    pub result: String,
    pub ok: bool,
    pub runs: u64,
    pub failures: u64,
}

#[derive(Debug, Clone)]
struct LastRun {
    program: String,
    event: String,
    ended: Instant,
    at_unix: u64,
    result: String,
    ok: bool,
    runs: u64,
    failures: u64,
}

type Shared = Arc<Mutex<BTreeMap<Hook, LastRun>>>;

/// Which queue a hook runs in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Queue {
    Vip(String, u8),
    Node,
}

struct Job {
    hook: Hook,
    spec: Spec,
    label: String,
}

/// The hooks of a node: its settings, its queues and the last run of each hook.
pub struct Hooks {
    node: String,
    settings: HookSettings,
    queues: BTreeMap<Queue, mpsc::UnboundedSender<Job>>,
    last: Shared,
}

impl Hooks {
    pub fn new(node: &str, settings: HookSettings) -> Hooks {
        Hooks {
            node: node.to_string(),
            settings,
            queues: BTreeMap::new(),
            last: Arc::default(),
        }
    }

    /// New settings (a reload): hooks queued before run as they were queued.
    pub fn update(&mut self, node: &str, settings: HookSettings) {
        node.clone_into(&mut self.node);
        self.settings = settings;
    }

    /// A VIP changed state: the hook for its new state, then `on_transition`.
    pub fn transition(&mut self, ev: HookEvent, to: carp::State) {
        let specific = match to {
            carp::State::Master => Hook::Master,
            carp::State::Backup => Hook::Backup,
            carp::State::Init => Hook::Init,
        };
        let queue = Queue::Vip(ev.interface.clone(), ev.vhid.unwrap_or_default());
        for hook in [specific, Hook::Transition] {
            self.queue(queue.clone(), hook, &ev);
        }
    }

    /// A node-wide event for `hook` (`on_demotion`, `on_state_sync_ready`, `on_config_applied`).
    pub fn node_event(&mut self, hook: Hook, ev: HookEvent) {
        self.queue(Queue::Node, hook, &ev);
    }

    fn queue(&mut self, queue: Queue, hook: Hook, ev: &HookEvent) {
        let Some(program) = self.settings.programs.get(&hook) else {
            return;
        };
        let job = Job {
            hook,
            spec: Spec {
                program: program.clone(),
                args: ev.args(),
                env: ev.env(&self.node),
                timeout: self.settings.timeout,
            },
            label: ev.label(),
        };
        let tx = self.queues.entry(queue).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(work(rx, self.last.clone()));
            tx
        });
        // The worker ends only when its sender (held here) is dropped.
        let _ = tx.send(job);
    }

    /// The last run of each hook that ran.
    pub fn status(&self) -> Vec<HookStatus> {
        let Ok(last) = self.last.lock() else {
            return Vec::new();
        };
        last.iter()
            .map(|(hook, r)| HookStatus {
                hook: hook.as_str().to_string(),
                program: r.program.clone(),
                event: r.event.clone(),
                seconds_ago: r.ended.elapsed().as_secs_f64(),
                at_unix: r.at_unix,
                result: r.result.clone(),
                ok: r.ok,
                runs: r.runs,
                failures: r.failures,
            })
            .collect()
    }
}

/// One queue's worker: its hooks one after another.
async fn work(mut rx: mpsc::UnboundedReceiver<Job>, last: Shared) {
    while let Some(job) = rx.recv().await {
        let outcome = process::run(&job.spec).await;
        let result = outcome.describe();
        let name = job.hook.as_str();
        let program = job.spec.program.display().to_string();
        if outcome.success() {
            info!("hook {name} ({}): {program} {result}", job.label);
        } else {
            warn!("hook {name} ({}): {program} {result}", job.label);
        }
        let at_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        if let Ok(mut last) = last.lock() {
            let (runs, failures) = last.get(&job.hook).map_or((0, 0), |r| (r.runs, r.failures));
            last.insert(
                job.hook,
                LastRun {
                    program,
                    event: job.label,
                    ended: Instant::now(),
                    at_unix,
                    ok: outcome.success(),
                    runs: runs + 1,
                    failures: failures + u64::from(!outcome.success()),
                    result,
                },
            );
        }
    }
}
