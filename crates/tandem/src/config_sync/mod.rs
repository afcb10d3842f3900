//! Config sync in the daemon: the HTTPS XML-RPC server and, on a primary, the push tasks
//! (crate `configsync-net`); the primary's generations ([`primary`]); the peer's candidates,
//! store and demotion ([`peer`], [`store`], [`compose`]); and what it reports ([`status`]).
//!
//! It does not know the daemon: calls come in as [`Input`]s, and [`ConfigSync::handle`]
//! returns an [`Outcome`]: an answer, or "activate this candidate", which the daemon does and
//! reports back ([`ConfigSync::finish`]).

pub mod compose;
mod peer;
mod primary;
pub mod status;
mod store;
#[cfg(test)]
mod timing_tests;

pub use compose::load_running;
pub use configsync::peer::Plan;
pub use status::{render, ConfigSyncStatus};

use crate::config::{Config, ParsedFile, Role, SyncSettings};
use anyhow::Context;
use configsync::area::{self, Area};
use configsync::book::{Backoff, PeerTracker};
use configsync::rpc::{AreaText, AreasAnswer, Call, HeartbeatAnswer, Refusal, VersionAnswer};
use configsync_net::push::PushEvent;
use configsync_net::server::{Counters, Incoming};
use configsync_net::tls;
use dxr::Value;
use peer::{applied_generation, Peer};
use primary::{Primary, SOFTWARE};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::FileStore;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// What reaches the daemon from config sync's tasks.
pub enum Input {
    Rpc(Incoming),
    Push(PushEvent),
    /// Once a second: a peer re-checks whether it is behind.
    Tick,
}

pub type RpcReply = oneshot::Sender<Result<Value, Refusal>>;

/// What the daemon must do after [`ConfigSync::handle`].
pub enum Outcome {
    Nothing,
    /// Answer the node's whole status (`tandem.status`).
    Status(RpcReply),
    /// Reload the node's config and answer with the result (`tandem.reload`).
    Reload(RpcReply),
    /// Activate the candidate config, then call [`ConfigSync::finish`] with the result.
    Activate(Box<Config>, Box<Pending>),
}

/// A pushed candidate the daemon is activating: what to store and whom to answer.
pub struct Pending {
    plan: Plan,
    reply: RpcReply,
    started: Instant,
    /// How long the push took to check and compose (before the daemon activates it).
    checked: Duration,
}

impl Pending {
    /// `generation 5 from fw1`.
    pub fn what(&self) -> &str {
        &self.plan.what
    }
}

/// The next input, or never without config sync (for `select!`).
pub async fn recv(rx: &mut Option<mpsc::Receiver<Input>>) -> Option<Input> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

pub struct ConfigSync {
    role: Role,
    node: String,
    listen: SocketAddr,
    state_dir: PathBuf,
    fingerprint: String,
    cert_path: PathBuf,
    counters: Arc<Mutex<Counters>>,
    peers: Vec<crate::config::sync::PeerSettings>,
    primary: Option<Primary>,
    peer: Peer,
    store: FileStore,
    /// Peer: the primary's certificate, as the running config pins it.
    primary_pin: Option<[u8; 32]>,
}

impl ConfigSync {
    /// Starts config sync for a config with `[sync]`: the certificate, the HTTPS server, and
    /// on a primary the push tasks.
    pub async fn start(
        cfg: &Config,
    ) -> anyhow::Result<Option<(ConfigSync, mpsc::Receiver<Input>)>> {
        let Some(s) = cfg.sync.clone() else {
            return Ok(None);
        };
        store::private_dir(&s.state_dir)
            .with_context(|| format!("cannot create sync.state_dir {}", s.state_dir.display()))?;
        let names = vec![s.listen.ip().to_string(), cfg.node.name.clone()];
        let cert = s.cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let id = tls::identity(cert, &s.state_dir, &names).context("config sync: certificate")?;
        let server_tls = tls::server_config(&id).context("config sync: TLS")?;
        let listener = tokio::net::TcpListener::bind(s.listen)
            .await
            .with_context(|| {
                format!(
                    "config sync: cannot listen on {} (sync.listen must be an address of this node)",
                    s.listen
                )
            })?;
        let (tx, rx) = mpsc::channel::<Input>(64);
        let counters = Arc::new(Mutex::new(Counters::default()));
        let (inc_tx, mut inc_rx) = mpsc::channel::<Incoming>(16);
        let fwd = tx.clone();
        tokio::spawn(async move {
            while let Some(i) = inc_rx.recv().await {
                if fwd.send(Input::Rpc(i)).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(configsync_net::server::serve(
            listener,
            server_tls,
            s.credentials.clone(),
            configsync_net::server::Limits::default(),
            inc_tx,
            counters.clone(),
        ));
        let primary = match s.role {
            Role::Primary => {
                let (ev_tx, mut ev_rx) = mpsc::channel::<PushEvent>(16);
                let fwd = tx.clone();
                tokio::spawn(async move {
                    while let Some(e) = ev_rx.recv().await {
                        if fwd.send(Input::Push(e)).await.is_err() {
                            return;
                        }
                    }
                });
                Some(Primary::start(&s, &cfg.node.name, &id, ev_tx)?)
            }
            Role::Peer => {
                let tick = tx.clone();
                tokio::spawn(async move {
                    let mut i = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        i.tick().await;
                        if tick.send(Input::Tick).await.is_err() {
                            return;
                        }
                    }
                });
                None
            }
        };
        let mut cs = ConfigSync {
            role: s.role,
            node: cfg.node.name.clone(),
            listen: s.listen,
            state_dir: s.state_dir.clone(),
            fingerprint: id.fingerprint.clone(),
            cert_path: id.cert_path.clone(),
            counters,
            peers: s.peers.clone(),
            primary,
            peer: Peer::default(),
            store: FileStore::new(&s.state_dir),
            primary_pin: None,
        };
        cs.activated(cfg, None);
        info!(
            "config sync: {} listening on https://{} (certificate {}, fingerprint {})",
            s.role.as_str(),
            s.listen,
            id.cert_path.display(),
            id.fingerprint
        );
        Ok(Some((cs, rx)))
    }

    /// After a config became the running one (start, reload, push, rollback): a primary
    /// publishes its synced areas (a change is a new generation, pushed). `previous`: the
    /// config that ran before, when there was one.
    pub fn activated(&mut self, cfg: &Config, previous: Option<&Config>) {
        if let (Some(p), Some(s)) = (self.primary.as_mut(), cfg.sync.as_ref()) {
            p.publish(cfg, previous, &s.areas);
        }
        let pin = cfg.sync.as_ref().and_then(|s| s.primary_fingerprint);
        if self.role == Role::Peer && pin != self.primary_pin {
            match pin {
                Some(p) => info!(
                    "config sync: takes pushes only from the primary's certificate {}",
                    tls::fingerprint_of_hash(&p)
                ),
                None => warn!(
                    "config sync: no primary pinned ([sync] primary_fingerprint): no push is taken"
                ),
            }
        }
        self.primary_pin = pin;
    }

    /// Peer: whether a call that writes (a push, a heartbeat) comes with the pinned primary's
    /// certificate. The password alone never suffices: every node holds it.
    fn check_primary(&self, client_cert: Option<[u8; 32]>) -> Result<(), Refusal> {
        match (self.primary_pin, client_cert) {
            (None, _) => Err(Refusal::Forbidden(format!(
                "{} has no primary pinned: it takes pushes only from the certificate set in its [sync] primary_fingerprint",
                self.node
            ))),
            (Some(pin), Some(c)) if pin == c => Ok(()),
            (Some(pin), Some(c)) => Err(Refusal::Forbidden(format!(
                "{} takes pushes only from its primary's certificate {}; this caller presented {}",
                self.node,
                tls::fingerprint_of_hash(&pin),
                tls::fingerprint_of_hash(&c)
            ))),
            (Some(pin), None) => Err(Refusal::Forbidden(format!(
                "{} takes pushes only from its primary's certificate {}; this caller presented none",
                self.node,
                tls::fingerprint_of_hash(&pin)
            ))),
        }
    }

    /// Handles one input. `own` is the node's own file as it runs (a push composes with it).
    pub fn handle(&mut self, input: Input, cfg: &Config, own: &ParsedFile) -> Outcome {
        match input {
            Input::Tick => Outcome::Nothing,
            Input::Push(ev) => {
                if let Some(p) = self.primary.as_mut() {
                    p.on_push(ev);
                }
                Outcome::Nothing
            }
            Input::Rpc(inc) => self.call(inc, cfg, own),
        }
    }

    fn call(&mut self, inc: Incoming, cfg: &Config, own: &ParsedFile) -> Outcome {
        let answer = match inc.call {
            Call::Status => return Outcome::Status(inc.reply),
            // Applying the node's own file is the operator's act on the node itself.
            Call::Reload if inc.peer.ip().is_loopback() || inc.peer.ip() == self.listen.ip() => {
                return Outcome::Reload(inc.reply)
            }
            Call::Reload => Err(Refusal::Forbidden(format!(
                "tandem.reload is taken only from this node itself (its own address or loopback), or as `tandem reload`; not from {}",
                inc.peer.ip()
            ))),
            Call::Version => Ok(self.version(cfg).encode()),
            Call::GetAreas => Ok(self.get_areas(cfg).encode()),
            Call::Heartbeat { source, generation } => {
                if self.role != Role::Peer {
                    Err(Refusal::Forbidden(format!(
                        "{} is a primary: it takes no heartbeats",
                        self.node
                    )))
                } else if let Err(r) = self.check_primary(inc.client_cert) {
                    Err(self.peer.refuse(r))
                } else {
                    self.peer
                        .view
                        .heard(Instant::now(), &source.node, generation);
                    Ok(HeartbeatAnswer {
                        node: self.node.clone(),
                        generation: applied_generation(cfg),
                        drift: status::drift_of(cfg.provenance.as_ref()),
                    }
                    .encode())
                }
            }
            Call::Apply(args) => {
                if self.role != Role::Peer {
                    Err(Refusal::Forbidden(format!(
                        "{} is a primary: it pushes areas and accepts none (set role = \"peer\" on the receiving node)",
                        self.node
                    )))
                } else if let Err(r) = self.check_primary(inc.client_cert) {
                    warn!("config sync: push from {} refused: {r}", inc.peer);
                    Err(self.peer.refuse(r))
                } else {
                    let started = Instant::now();
                    let policy = cfg
                        .sync
                        .as_ref()
                        .map_or(configsync::book::DriftPolicy::Refuse, |s| s.drift);
                    match self.peer.apply(
                        &mut self.store,
                        &self.node,
                        own,
                        &cfg.own_file,
                        policy,
                        &args,
                    ) {
                        Ok(Ok(answer)) => Ok(answer.encode()),
                        Ok(Err((config, plan))) => {
                            return Outcome::Activate(
                                Box::new(config),
                                Box::new(Pending {
                                    plan,
                                    reply: inc.reply,
                                    started,
                                    checked: started.elapsed(),
                                }),
                            )
                        }
                        Err(r) => Err(r),
                    }
                }
            }
        };
        let _ = inc.reply.send(answer);
        Outcome::Nothing
    }

    /// After the daemon tried to activate a pushed candidate: stores it and answers the
    /// primary (or refuses with why it failed).
    pub fn finish(&mut self, p: Box<Pending>, activated: Result<(), String>) {
        let answer = self
            .peer
            .finish_apply(
                &mut self.store,
                &self.node,
                &p.plan,
                activated,
                (p.started, p.checked),
            )
            .map(|a| a.encode());
        let _ = p.reply.send(answer);
        // Once the primary has its answer: the push's copy in the history.
        if let Err(e) = self.store.flush_history() {
            warn!("config sync: {e}");
        }
    }

    /// Peer: the config-sync demotion when it changes (call after every input, and on ticks).
    pub fn demotion(&mut self, cfg: &Config) -> Option<u8> {
        let s = cfg.sync.as_ref()?;
        if self.role != Role::Peer {
            return None;
        }
        self.peer.demotion(cfg, s, Instant::now())
    }

    /// `tandem config push [--force]` (primary).
    pub fn push_now(&mut self, force: bool) -> Result<String, String> {
        let Some(p) = self.primary.as_mut() else {
            return Err(format!("{} is a peer: only the primary pushes", self.node));
        };
        let g = p.push_now(force);
        Ok(format!(
            "pushing generation {g} to {}{}",
            self.peers
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
            if force {
                " (force: local changes on the peers are overwritten, backups kept)"
            } else {
                ""
            }
        ))
    }

    /// `tandem config rollback [--to GEN]` (peer): a candidate for the daemon to activate,
    /// then [`ConfigSync::finish_rollback`].
    pub fn rollback(
        &mut self,
        cfg: &Config,
        own: &ParsedFile,
        to: Option<u64>,
    ) -> Result<(Config, Plan), String> {
        if self.role != Role::Peer {
            return Err(format!(
                "{} is the primary: its config is its own file; restore that file and `tandem reload` (the peers follow)",
                self.node
            ));
        }
        self.peer
            .rollback(&mut self.store, &self.node, own, &cfg.own_file, to)
    }

    pub fn finish_rollback(&mut self, plan: &Plan) -> Result<String, String> {
        self.peer.finish_rollback(&mut self.store, &self.node, plan)
    }

    fn version(&self, cfg: &Config) -> VersionAnswer {
        let areas = match self.role {
            Role::Primary => cfg
                .sync
                .as_ref()
                .map(|s| s.areas.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            Role::Peer => cfg
                .provenance
                .as_ref()
                .map(|p| p.meta.areas.keys().map(ToString::to_string).collect())
                .unwrap_or_default(),
        };
        VersionAnswer {
            software: SOFTWARE.into(),
            protocol: configsync::PROTOCOL_VERSION,
            schema: configsync::SCHEMA_VERSION,
            node: self.node.clone(),
            role: self.role.as_str().into(),
            capabilities: configsync::CAPABILITIES
                .iter()
                .map(|c| (*c).to_string())
                .collect(),
            areas,
        }
    }

    fn get_areas(&self, cfg: &Config) -> AreasAnswer {
        let prov = cfg.provenance.as_ref();
        let mut areas = BTreeMap::new();
        for a in Area::ALL {
            let text = area::extract(&cfg.plain, a);
            let origin = prov
                .and_then(|p| p.areas.iter().find(|x| x.area == a))
                .map_or("own file", |x| status::origin_word(&x.origin));
            let hash = area::hash(&text);
            // Keys go to peers in a push only (the primary's certificate pinned), never to a
            // caller that has the shared credentials alone: the hash still says what runs.
            let text = match a {
                Area::Certificates | Area::Wireguard => {
                    area::extract(&status::redacted(&cfg.plain), a)
                }
                _ => text,
            };
            areas.insert(
                a,
                AreaText {
                    hash,
                    origin: origin.to_string(),
                    text,
                },
            );
        }
        AreasAnswer {
            node: self.node.clone(),
            role: self.role.as_str().into(),
            generation: match (&self.primary, prov) {
                (Some(p), _) => p.state.generation,
                (None, Some(p)) => p.meta.generation,
                _ => 0,
            },
            source: prov.map(|p| p.meta.source.clone()).unwrap_or_default(),
            areas,
        }
    }

    /// The one-line summary for `status.sync.config`.
    pub fn summary(&self, cfg: &Config) -> String {
        match &self.primary {
            Some(p) => {
                let trackers = p.trackers.lock().map(|t| t.clone()).unwrap_or_default();
                let peers: Vec<String> = self
                    .peers
                    .iter()
                    .map(|ps| match trackers.get(&ps.name) {
                        Some(t) if t.in_sync(p.state.generation) => format!("{} in sync", ps.name),
                        Some(t) => format!(
                            "{} {}",
                            ps.name,
                            t.last_result
                                .as_ref()
                                .and_then(|r| r.as_ref().err())
                                .map_or_else(|| "pending".to_string(), |f| f.to_string())
                        ),
                        None => format!("{} pending", ps.name),
                    })
                    .collect();
                format!(
                    "primary, generation {}: {}",
                    p.state.generation,
                    peers.join("; ")
                )
            }
            None => {
                let g = applied_generation(cfg);
                let mut s = if g == 0 {
                    "peer, nothing synced yet".to_string()
                } else {
                    let src = cfg
                        .provenance
                        .as_ref()
                        .map(|r| r.meta.source.clone())
                        .unwrap_or_default();
                    format!("peer, generation {g} from {src}")
                };
                if self.peer.view.generation > g {
                    let _ = write!(s, "; BEHIND the primary's {}", self.peer.view.generation);
                }
                if let Some(d) = status::drift_of(cfg.provenance.as_ref()) {
                    let _ = write!(s, "; DRIFT: {d}");
                }
                s
            }
        }
    }

    pub fn status(&self, cfg: &Config) -> ConfigSyncStatus {
        let now = Instant::now();
        let prov = cfg.provenance.as_ref();
        let mut st = ConfigSyncStatus {
            role: self.role.as_str().into(),
            listen: self.listen.to_string(),
            fingerprint: self.fingerprint.clone(),
            certificate: self.cert_path.display().to_string(),
            state_dir: self.state_dir.display().to_string(),
            generation: 0,
            areas: Vec::new(),
            peers: Vec::new(),
            source: None,
            applied_at: None,
            primary_generation: None,
            primary_heard_seconds_ago: None,
            behind: false,
            demoted: self.peer.demoted,
            drift: status::drift_of(prov),
            rolled_back_to: prov.and_then(|p| p.meta.rolled_back_to),
            running: prov.map(status::area_statuses).unwrap_or_default(),
            last_apply: self.peer.last_apply.clone(),
            applied: self.peer.applied,
            refused: self.peer.refused,
            applied_delta: self.peer.applied_delta,
            refused_need_full: self.peer.refused_need_full,
            rpc: self.counters.lock().map(|c| c.clone()).unwrap_or_default(),
            primary_fingerprint: self.primary_pin.map(|p| tls::fingerprint_of_hash(&p)),
        };
        match &self.primary {
            Some(p) => {
                st.generation = p.state.generation;
                st.areas = cfg
                    .sync
                    .as_ref()
                    .map(|s| s.areas.iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                let trackers = p.trackers.lock().map(|t| t.clone()).unwrap_or_default();
                let never = PeerTracker::new(
                    Backoff {
                        first: Duration::ZERO,
                        max: Duration::ZERO,
                    },
                    Duration::ZERO,
                );
                st.peers = self
                    .peers
                    .iter()
                    .map(|ps| {
                        trackers.get(&ps.name).unwrap_or(&never).report(
                            &ps.name,
                            &ps.url,
                            now,
                            p.state.generation,
                            SOFTWARE,
                        )
                    })
                    .collect();
            }
            None => {
                let g = applied_generation(cfg);
                st.generation = g;
                if let Some(p) = prov {
                    st.areas = p.meta.areas.keys().map(ToString::to_string).collect();
                    st.source = Some(p.meta.source.clone());
                    st.applied_at = Some(status::rfc3339(p.meta.time));
                }
                let v = &self.peer.view;
                if let Some(t) = v.heard {
                    st.primary_generation = Some(v.generation);
                    st.primary_heard_seconds_ago =
                        Some(now.saturating_duration_since(t).as_secs_f64());
                }
                let timeout = cfg
                    .sync
                    .as_ref()
                    .map_or(Duration::from_secs(10), |s: &SyncSettings| {
                        s.primary_timeout
                    });
                st.behind = v.behind(now, g, timeout);
            }
        }
        st
    }

    /// `tandem config show`: what runs and where each area came from, secrets hidden.
    pub fn show(&self, cfg: &Config) -> String {
        let mut s = String::new();
        let st = self.status(cfg);
        let _ = writeln!(
            s,
            "# node {} ({}), config sync {}",
            self.node,
            cfg.own_file.display(),
            st.role
        );
        let _ = writeln!(
            s,
            "# this node's certificate: {} ({})",
            self.fingerprint,
            self.cert_path.display()
        );
        let prov = cfg.provenance.as_ref();
        for a in Area::ALL {
            let text = area::extract(&cfg.plain, a);
            let items = area::count(&cfg.plain, a);
            let from = match (
                self.role,
                prov.and_then(|p| p.areas.iter().find(|x| x.area == a)),
            ) {
                (Role::Primary, _) => {
                    if cfg.sync.as_ref().is_some_and(|s| s.areas.contains(&a)) {
                        format!("own file, pushed to peers as generation {}", st.generation)
                    } else {
                        "own file (not synced)".to_string()
                    }
                }
                (Role::Peer, Some(x)) if x.origin != configsync::book::Origin::Own => {
                    let rec = prov.and_then(|p| p.meta.areas.get(&a));
                    let mut f = format!(
                        "{} from {}, generation {}, {}",
                        status::origin_word(&x.origin),
                        rec.map(|r| r.source.clone()).unwrap_or_default(),
                        rec.map_or(0, |r| r.generation),
                        rec.map(|r| status::rfc3339(r.time)).unwrap_or_default()
                    );
                    if let Some(dr) = &x.drift {
                        let _ = write!(f, "; DRIFT {dr}");
                    }
                    f
                }
                _ => "own file (not synced)".to_string(),
            };
            let _ = writeln!(
                s,
                "# area {:<8} {:>6} items  sha256 {}  {from}",
                a.as_str(),
                items,
                &area::hash(&text)[..12]
            );
        }
        s.push('\n');
        s.push_str(&toml::to_string(&status::redacted(&cfg.plain)).unwrap_or_default());
        s
    }
}
