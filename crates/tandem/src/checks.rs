//! Health checks (`[[checks]]`): each runs in a tokio task of its own, off the CARP thread,
//! one round every `interval`. A check starts `pending`, is `up` after `rise` passing rounds
//! in a row and `down` after `fall` failing rounds in a row. Its state changes are reported as
//! [`Event`]s: the daemon turns them into the CARP demotion source `check(NAME)` (the check's
//! weight while down, nothing otherwise).
//!
//! - ping: one echo request per round; the round passes when, over the last `count` probes,
//!   the loss is at most `max_loss` percent and (with `max_rtt`) the average round-trip time
//!   of the replies at most `max_rtt` ms.
//! - exec: the program exits 0 within `timeout`.
//! - file: the file holds the number 0 (any other number, no number or no file: failing).

use crate::config::{CheckKind, CheckSpec};
use linux::ping::Pinger;
use linux::process::{self, Spec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// A check changed state: demote by `demote` (0: no longer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub demote: u8,
    generation: u64,
}

/// One check as `tandem status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckStatus {
    pub name: String,
    /// `ping`, `exec` or `file`.
    pub kind: String,
    /// The address, the command or the file.
    pub target: String,
    /// `up`, `down` or `pending`.
    pub state: String,
    /// The last round's result: `5/5 replies, rtt 0.4 ms`, `exit 1`, `holds 3`.
    pub result: String,
    /// Seconds since the state last changed (since the start while pending).
    pub since_seconds_ago: f64,
    pub weight: u8,
    /// Whether it demotes the node now (it is down).
    pub demoting: bool,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Up,
    Down,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// Rise/fall counting over rounds.
#[derive(Debug, Clone)]
struct Counter {
    state: State,
    passes: u32,
    fails: u32,
}

impl Counter {
    fn new() -> Counter {
        Counter {
            state: State::Pending,
            passes: 0,
            fails: 0,
        }
    }

    /// Counts a round; returns the new state when it changed.
    fn round(&mut self, ok: bool, rise: u32, fall: u32) -> Option<State> {
        if ok {
            self.passes += 1;
            self.fails = 0;
        } else {
            self.fails += 1;
            self.passes = 0;
        }
        let next = match self.state {
            State::Up | State::Pending if self.fails >= fall => State::Down,
            State::Down | State::Pending if self.passes >= rise => State::Up,
            s => s,
        };
        (next != self.state).then(|| {
            self.state = next;
            next
        })
    }
}

struct Live {
    state: State,
    result: String,
    since: Instant,
}

type Shared = Arc<Mutex<BTreeMap<String, Live>>>;

struct Running {
    spec: CheckSpec,
    generation: u64,
    task: JoinHandle<()>,
}

/// The node's checks.
pub struct Checks {
    running: BTreeMap<String, Running>,
    live: Shared,
    tx: mpsc::UnboundedSender<Event>,
    next_generation: u64,
}

impl Checks {
    pub fn start(specs: &[CheckSpec]) -> (Checks, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut c = Checks {
            running: BTreeMap::new(),
            live: Arc::default(),
            tx,
            next_generation: 0,
        };
        c.reconcile(specs);
        (c, rx)
    }

    /// Runs `specs`: unchanged checks keep running with their state; changed ones restart
    /// (pending); removed ones stop. Returns the names whose demotion must be cleared (every
    /// check stopped or restarted).
    pub fn reconcile(&mut self, specs: &[CheckSpec]) -> Vec<String> {
        let mut cleared = Vec::new();
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let same = specs
                .iter()
                .any(|s| s.name == name && self.running.get(&name).is_some_and(|r| r.spec == *s));
            if !same {
                if let Some(r) = self.running.remove(&name) {
                    r.task.abort();
                }
                if let Ok(mut live) = self.live.lock() {
                    live.remove(&name);
                }
                cleared.push(name);
            }
        }
        for spec in specs {
            if self.running.contains_key(&spec.name) {
                continue;
            }
            self.next_generation += 1;
            let generation = self.next_generation;
            if let Ok(mut live) = self.live.lock() {
                live.insert(
                    spec.name.clone(),
                    Live {
                        state: State::Pending,
                        result: "not run yet".into(),
                        since: Instant::now(),
                    },
                );
            }
            let task = tokio::spawn(run(
                spec.clone(),
                generation,
                self.live.clone(),
                self.tx.clone(),
            ));
            self.running.insert(
                spec.name.clone(),
                Running {
                    spec: spec.clone(),
                    generation,
                    task,
                },
            );
        }
        cleared
    }

    /// Whether an event comes from a check as it runs now (not one stopped or restarted since).
    pub fn current(&self, ev: &Event) -> bool {
        self.running
            .get(&ev.name)
            .is_some_and(|r| r.generation == ev.generation)
    }

    pub fn status(&self) -> Vec<CheckStatus> {
        let Ok(live) = self.live.lock() else {
            return Vec::new();
        };
        self.running
            .values()
            .map(|r| {
                let l = live.get(&r.spec.name);
                let state = l.map_or(State::Pending, |l| l.state);
                CheckStatus {
                    name: r.spec.name.clone(),
                    kind: r.spec.kind.as_str().into(),
                    target: r.spec.kind.target(),
                    state: state.as_str().into(),
                    result: l.map(|l| l.result.clone()).unwrap_or_default(),
                    since_seconds_ago: l.map_or(0.0, |l| l.since.elapsed().as_secs_f64()),
                    weight: r.spec.weight,
                    demoting: state == State::Down,
                    rise: r.spec.rise,
                    fall: r.spec.fall,
                }
            })
            .collect()
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.task.abort();
        }
    }
}

/// What a check keeps between rounds.
enum Probe {
    Ping {
        pinger: Option<Pinger>,
        window: VecDeque<Option<Duration>>,
    },
    Exec,
    File,
}

async fn run(spec: CheckSpec, generation: u64, live: Shared, tx: mpsc::UnboundedSender<Event>) {
    let mut probe = match spec.kind {
        CheckKind::Ping { .. } => Probe::Ping {
            pinger: None,
            window: VecDeque::new(),
        },
        CheckKind::Exec { .. } => Probe::Exec,
        CheckKind::File { .. } => Probe::File,
    };
    let mut counter = Counter::new();
    let mut tick = tokio::time::interval(spec.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (ok, result) = round(&spec, &mut probe).await;
        let changed = counter.round(ok, spec.rise, spec.fall);
        if let Ok(mut l) = live.lock() {
            if let Some(e) = l.get_mut(&spec.name) {
                e.result.clone_from(&result);
                if let Some(s) = changed {
                    e.state = s;
                    e.since = Instant::now();
                }
            }
        }
        let Some(state) = changed else {
            continue;
        };
        let (kind, target) = (spec.kind.as_str(), spec.kind.target());
        let demote = match state {
            State::Down => {
                warn!(
                    "check {} ({kind} {target}) down after {} failing rounds: {result}; demoting by {}",
                    spec.name, spec.fall, spec.weight
                );
                spec.weight
            }
            _ => {
                info!(
                    "check {} ({kind} {target}) up after {} passing rounds: {result}",
                    spec.name, spec.rise
                );
                0
            }
        };
        let _ = tx.send(Event {
            name: spec.name.clone(),
            demote,
            generation,
        });
    }
}

/// One round: passed or not, and what it found.
async fn round(spec: &CheckSpec, probe: &mut Probe) -> (bool, String) {
    match (&spec.kind, probe) {
        (
            CheckKind::Ping {
                address,
                source,
                interface,
                timeout,
                count,
                max_loss,
                max_rtt,
            },
            Probe::Ping { pinger, window },
        ) => {
            let mut note = String::new();
            if pinger.is_none() {
                let dev = interface.as_ref().map(|(_, d)| d.as_str());
                match Pinger::new(*address, *source, dev) {
                    Ok(p) => *pinger = Some(p),
                    Err(e) => note = format!("; {e}"),
                }
            }
            let rtt = match pinger.as_mut() {
                Some(p) => match p.probe(*timeout).await {
                    Ok(r) => r,
                    Err(e) => {
                        note = format!("; {e}");
                        None
                    }
                },
                None => None,
            };
            window.push_back(rtt);
            while window.len() > *count as usize {
                window.pop_front();
            }
            ping_verdict(window, *max_loss, *max_rtt, &note)
        }
        (
            CheckKind::Exec {
                program,
                args,
                timeout,
            },
            _,
        ) => {
            let outcome = process::run(&Spec {
                program: program.clone(),
                args: args.clone(),
                env: vec![("TANDEM_CHECK".into(), spec.name.clone())],
                timeout: *timeout,
            })
            .await;
            (outcome.success(), outcome.describe())
        }
        (CheckKind::File { path }, _) => {
            let p = path.clone();
            let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(p)).await;
            match read {
                Ok(Ok(text)) => file_verdict(&text),
                Ok(Err(e)) => (false, format!("cannot read: {e}")),
                Err(e) => (false, format!("cannot read: {e}")),
            }
        }
        _ => (false, "internal: probe of another kind".into()),
    }
}

/// A ping round's verdict over its window.
fn ping_verdict(
    window: &VecDeque<Option<Duration>>,
    max_loss: f64,
    max_rtt: Option<Duration>,
    note: &str,
) -> (bool, String) {
    let sent = window.len();
    let replies: Vec<Duration> = window.iter().flatten().copied().collect();
    let lost = sent - replies.len();
    let loss = if sent == 0 {
        100.0
    } else {
        lost as f64 * 100.0 / sent as f64
    };
    let avg =
        (!replies.is_empty()).then(|| replies.iter().sum::<Duration>() / replies.len() as u32);
    let mut text = format!("{}/{sent} replies", replies.len());
    if let Some(a) = avg {
        text += &format!(", rtt {:.1} ms", a.as_secs_f64() * 1000.0);
    }
    let mut ok = !replies.is_empty() && loss <= max_loss;
    if loss > max_loss {
        text += &format!(" (loss {loss:.0}% > {max_loss}%)");
    }
    if let (Some(a), Some(m)) = (avg, max_rtt) {
        if a > m {
            ok = false;
            text += &format!(" (rtt > {} ms)", m.as_secs_f64() * 1000.0);
        }
    }
    (ok, text + note)
}

/// A file check's verdict: 0 passes; any other number, or none, fails.
fn file_verdict(text: &str) -> (bool, String) {
    let t = text.trim();
    match t.parse::<i64>() {
        Ok(0) => (true, "holds 0".into()),
        Ok(n) => (false, format!("holds {n}")),
        Err(_) => {
            let shown: String = t.chars().filter(|c| !c.is_control()).take(40).collect();
            (false, format!("not a number: {shown:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall_count_rounds_in_a_row() {
        let mut c = Counter::new();
        assert_eq!(c.round(false, 2, 3), None);
        assert_eq!(c.round(false, 2, 3), None);
        assert_eq!(c.round(false, 2, 3), Some(State::Down));
        assert_eq!(c.round(true, 2, 3), None);
        assert_eq!(c.round(false, 2, 3), None, "a pass in between starts over");
        assert_eq!(c.round(true, 2, 3), None);
        assert_eq!(c.round(true, 2, 3), Some(State::Up));
        assert_eq!(c.round(true, 2, 3), None);
        let mut c = Counter::new();
        assert_eq!(c.round(true, 1, 3), Some(State::Up), "pending to up");
    }

    #[test]
    fn ping_window_loss_and_rtt() {
        let ms = Duration::from_millis;
        let w: VecDeque<_> = [Some(ms(1)), Some(ms(3)), None, Some(ms(2)), Some(ms(2))].into();
        let (ok, text) = ping_verdict(&w, 20.0, None, "");
        assert!(ok, "{text}");
        assert_eq!(text, "4/5 replies, rtt 2.0 ms");
        let (ok, text) = ping_verdict(&w, 10.0, None, "");
        assert!(!ok);
        assert_eq!(text, "4/5 replies, rtt 2.0 ms (loss 20% > 10%)");
        let (ok, text) = ping_verdict(&w, 20.0, Some(ms(1)), "");
        assert!(!ok);
        assert_eq!(text, "4/5 replies, rtt 2.0 ms (rtt > 1 ms)");
        let none: VecDeque<_> = [None, None].into();
        assert!(
            !ping_verdict(&none, 100.0, None, "").0,
            "no reply never passes"
        );
    }

    #[test]
    fn a_file_passes_only_with_zero() {
        assert_eq!(file_verdict("0\n"), (true, "holds 0".to_string()));
        assert_eq!(file_verdict(" 7 "), (false, "holds 7".to_string()));
        assert!(!file_verdict("up").0);
        assert!(!file_verdict("").0);
    }

    fn spec(name: &str, kind: CheckKind) -> CheckSpec {
        CheckSpec {
            name: name.into(),
            kind,
            interval: Duration::from_millis(50),
            rise: 2,
            fall: 2,
            weight: 50,
        }
    }

    async fn wait_event(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("an event")
            .expect("open")
    }

    #[tokio::test]
    async fn exec_and_file_checks_go_down_and_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("state");
        std::fs::write(&file, "0\n").expect("write");
        let flag = dir.path().join("fail");
        let script = format!("test ! -e '{}'", flag.display());
        let specs = vec![
            spec(
                "exec1",
                CheckKind::Exec {
                    program: "/bin/sh".into(),
                    args: vec!["-c".into(), script],
                    timeout: Duration::from_secs(5),
                },
            ),
            spec("file1", CheckKind::File { path: file.clone() }),
        ];
        let (checks, mut rx) = Checks::start(&specs);
        let mut ups: Vec<String> = Vec::new();
        while ups.len() < 2 {
            let ev = wait_event(&mut rx).await;
            assert!(checks.current(&ev));
            assert_eq!(ev.demote, 0, "{ev:?}");
            ups.push(ev.name);
        }
        std::fs::write(&file, "3\n").expect("write");
        std::fs::write(&flag, "").expect("write");
        let mut downs: Vec<Event> = Vec::new();
        while downs.len() < 2 {
            downs.push(wait_event(&mut rx).await);
        }
        assert!(downs.iter().all(|e| e.demote == 50), "{downs:?}");
        let st = checks.status();
        let f = st.iter().find(|c| c.name == "file1").expect("file1");
        assert_eq!((f.state.as_str(), f.result.as_str()), ("down", "holds 3"));
        assert!(f.demoting);
        let e = st.iter().find(|c| c.name == "exec1").expect("exec1");
        assert_eq!((e.state.as_str(), e.result.as_str()), ("down", "exit 1"));
    }

    #[tokio::test]
    async fn reconcile_keeps_unchanged_checks_and_restarts_changed_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = spec(
            "a",
            CheckKind::File {
                path: dir.path().join("a"),
            },
        );
        let b = spec(
            "b",
            CheckKind::File {
                path: dir.path().join("b"),
            },
        );
        let (mut checks, _rx) = Checks::start(&[a.clone(), b.clone()]);
        let gen_a = checks.running["a"].generation;
        let mut b2 = b.clone();
        b2.weight = 10;
        let cleared = checks.reconcile(&[a.clone(), b2]);
        assert_eq!(cleared, vec!["b".to_string()]);
        assert_eq!(checks.running["a"].generation, gen_a, "a kept running");
        let cleared = checks.reconcile(&[b]);
        assert_eq!(cleared, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(checks.status().len(), 1);
    }
}
