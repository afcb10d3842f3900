//! The primary's side: a generation per change of the synced areas (kept in the state dir),
//! the payload its push tasks push, and what they report.

use super::status::now_unix;
use super::store::{private_dir, write_private};
use crate::config::{Config, SyncSettings};
use anyhow::Context;
use configsync::area::{self, Area};
use configsync::book::{Backoff, PeerTracker, PrimaryState};
use configsync::rpc::Source;
use configsync_net::push::{Payload, PeerTask, PushEvent};
use configsync_net::tls;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

pub const SOFTWARE: &str = env!("CARGO_PKG_VERSION");

pub struct Primary {
    pub state: PrimaryState,
    state_path: PathBuf,
    payload: watch::Sender<Arc<Payload>>,
    pub trackers: Arc<Mutex<BTreeMap<String, PeerTracker>>>,
    nonce: u64,
    /// Each area's canonical text as last published, so an area that did not change is not
    /// serialized again (the rules of a 10 000-rule config are a megabyte of TOML).
    published: BTreeMap<Area, String>,
}

impl Primary {
    /// Loads the generation and starts one push task per peer.
    pub fn start(
        s: &SyncSettings,
        node: &str,
        identity: &tls::Identity,
        events: mpsc::Sender<PushEvent>,
    ) -> anyhow::Result<Primary> {
        let state_path = s.state_dir.join("primary.json");
        let state: PrimaryState = match std::fs::read_to_string(&state_path) {
            Ok(t) => serde_json::from_str(&t)
                .with_context(|| format!("{} is unreadable", state_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PrimaryState::default(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", state_path.display()))
            }
        };
        let (payload, rx) = watch::channel(Arc::new(Payload::default()));
        let trackers = Arc::new(Mutex::new(BTreeMap::new()));
        let me = Source {
            node: node.to_string(),
            software: SOFTWARE.to_string(),
            protocol: configsync::PROTOCOL_VERSION,
            schema: configsync::SCHEMA_VERSION,
        };
        for p in &s.peers {
            let url = configsync_net::client::Url::parse(&p.url).map_err(anyhow::Error::msg)?;
            // The node's own certificate goes with every call: the peer pins it.
            let client_tls = tls::client_config(&p.trust, Some(identity))
                .with_context(|| format!("config sync: TLS for peer {}", p.name))?;
            let task = PeerTask {
                name: p.name.clone(),
                client: configsync_net::client::Client::new(url, client_tls, &s.credentials),
                me: me.clone(),
                backoff: Backoff {
                    first: Duration::from_millis(250),
                    max: s.retry_max,
                },
                heartbeat: s.heartbeat,
            };
            tokio::spawn(task.run(rx.clone(), trackers.clone(), events.clone()));
        }
        Ok(Primary {
            state,
            state_path,
            payload,
            trackers,
            nonce: 0,
            published: BTreeMap::new(),
        })
    }

    fn save(&self) {
        let r = serde_json::to_string_pretty(&self.state)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                private_dir(self.state_path.parent().unwrap_or(Path::new(".")))
                    .and_then(|()| write_private(&self.state_path, &json))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = r {
            error!(
                "config sync: cannot write {}: {e}",
                self.state_path.display()
            );
        }
    }

    /// The synced areas of the running config: a change makes a new generation, persisted,
    /// and the push tasks push it.
    /// `previous`: the config published last, when the caller still has it (its areas that
    /// are equal in `cfg` keep their text).
    pub fn publish(
        &mut self,
        cfg: &Config,
        previous: Option<&Config>,
        areas: &std::collections::BTreeSet<Area>,
    ) {
        let mut texts: BTreeMap<Area, String> = BTreeMap::new();
        for a in areas {
            let same =
                previous.is_some_and(|p| p.plain.get(a.as_str()) == cfg.plain.get(a.as_str()));
            let text = match self.published.get(a) {
                Some(t) if same => t.clone(),
                _ => area::extract(&cfg.plain, *a),
            };
            texts.insert(*a, text);
        }
        self.published = texts.clone();
        if self.state.update(&texts, now_unix()) {
            info!(
                "config sync: generation {} ({})",
                self.state.generation,
                texts
                    .keys()
                    .map(|a| format!("{a} {}", area::count(&cfg.plain, *a)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.save();
        }
        self.send(texts, None);
    }

    /// Pushes the current generation to every peer now (`force`: over their drift).
    pub fn push_now(&mut self, force: bool) -> u64 {
        let areas = self.payload.borrow().areas.clone();
        self.send(areas, Some(force));
        self.state.generation
    }

    /// `now`: push again now even if the peers have this generation (with `force` or not).
    fn send(&mut self, areas: BTreeMap<Area, String>, now: Option<bool>) {
        let old = self.payload.borrow().clone();
        if now.is_some() {
            self.nonce += 1;
        }
        let new = Payload {
            generation: self.state.generation,
            // The hashes of these very texts: `publish` updated the state with them.
            hashes: self.state.hashes.clone(),
            areas,
            nonce: self.nonce,
            force: now.unwrap_or(false),
        };
        if *old != new {
            self.payload.send_replace(Arc::new(new));
        }
    }

    /// What a push task reported.
    pub fn on_push(&mut self, ev: PushEvent) {
        match ev {
            PushEvent::Result { peer, outcome } => {
                if outcome.starts_with("ok") {
                    info!("config sync: peer {peer}: {outcome}");
                } else {
                    warn!("config sync: peer {peer}: {outcome}");
                }
            }
            PushEvent::DeltaRefused { peer, why } => {
                warn!("config sync: peer {peer}: delta push refused ({why}): pushed whole");
            }
            PushEvent::Stale { peer, generation } => {
                warn!(
                    "config sync: peer {peer} holds generation {generation}, newer than ours {}: continuing from {}",
                    self.state.generation,
                    generation + 1
                );
                self.state.jump_past(generation, now_unix());
                self.save();
                let areas = self.payload.borrow().areas.clone();
                self.send(areas, None);
            }
        }
    }
}
