//! The XML-RPC server: HTTPS (rustls) on the node's management address, HTTP Basic or bearer
//! authentication compared in constant time, calls decoded here and handed to the daemon loop
//! through a channel (like the control socket), answers encoded back.
//!
//! Everything an unauthenticated client can make it hold is bounded ([`Limits`]): connections
//! in all and per source address, TLS handshakes at a time, the time each step may take, the
//! bodies read at a time and their size, and failed logins per source address (then that
//! address is locked out for a while). So a flood of the port never takes the descriptors,
//! memory or CPU the rest of the daemon needs, and guessing the password is slow.

use bytes::Bytes;
use configsync::auth::Credentials;
use configsync::rpc::{Call, Refusal};
use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as Body;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_rustls::TlsAcceptor;

/// What the server holds at most, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, from everyone.
    pub connections: usize,
    /// Connections open at once from one source address.
    pub per_source: usize,
    /// TLS handshakes in progress at once.
    pub handshakes: usize,
    pub handshake_timeout: Duration,
    /// For the request line and headers of each request.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// The largest request body (a push of 100k rules is about 20 MB of XML).
    pub max_body: usize,
    /// Request bodies being read and parsed at once (each up to `max_body`)...
    pub bodies: usize,
    /// ...and how long a request waits for its turn before it is told the server is busy.
    pub body_wait: Duration,
    /// Failed logins from one source address before it is locked out...
    pub failed_logins: u32,
    /// ...for this long (counted from the first failure of the run).
    pub lockout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 64,
            per_source: 8,
            handshakes: 8,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_body: 32 << 20,
            bodies: 2,
            body_wait: Duration::from_secs(5),
            failed_logins: 10,
            lockout: Duration::from_secs(60),
        }
    }
}

/// What the server counts, for status: calls answered and calls refused by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub calls: u64,
    /// reason -> count: `auth`, `bad-request`, `tls`, `too-large`, `busy`,
    /// `too-many-connections`, `locked-out`, ...
    pub rejected: BTreeMap<String, u64>,
    /// The last refused call: `from ADDR: reason`.
    pub last_rejected: Option<String>,
}

/// A decoded, authenticated call for the daemon, with the channel for its answer.
pub struct Incoming {
    pub call: Call,
    pub peer: SocketAddr,
    /// SHA-256 of the certificate the caller presented in the TLS handshake (its key proven
    /// by the handshake), if any: the primary's calls carry the primary's certificate.
    pub client_cert: Option<[u8; 32]>,
    pub reply: oneshot::Sender<Result<Value, Refusal>>,
}

/// Connections open, in all and per source address.
#[derive(Default)]
struct Open {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// Failed logins per source address in the current window.
#[derive(Default)]
struct Failures {
    by_source: HashMap<IpAddr, (Instant, u32)>,
}

struct Shared {
    auth: Credentials,
    limits: Limits,
    to_daemon: mpsc::Sender<Incoming>,
    counters: Arc<Mutex<Counters>>,
    open: Mutex<Open>,
    failures: Mutex<Failures>,
    handshakes: Arc<Semaphore>,
    bodies: Arc<Semaphore>,
}

impl Shared {
    fn reject(&self, peer: SocketAddr, reason: &str, detail: &str) {
        let n = match self.counters.lock() {
            Ok(mut c) => {
                let n = c.rejected.entry(reason.to_string()).or_default();
                *n += 1;
                let n = *n;
                c.last_rejected = Some(format!("from {peer}: {detail}"));
                n
            }
            Err(_) => 0,
        };
        // The first, then every 60th: a misconfigured peer retries forever.
        if n % 60 == 1 {
            tracing::warn!(
                "config sync: call from {peer} refused: {detail} ({reason}, seen {n} times)"
            );
        }
    }

    /// Takes a connection slot, or says why not.
    fn open(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut o = self.open.lock().map_err(|_| "server state poisoned")?;
        let mine = o.per_source.get(&ip).copied().unwrap_or(0);
        if o.total >= self.limits.connections {
            return Err("too many connections");
        }
        if mine >= self.limits.per_source {
            return Err("too many connections from this address");
        }
        o.total += 1;
        o.per_source.insert(ip, mine + 1);
        Ok(Slot {
            shared: self.clone(),
            ip,
        })
    }

    /// How long `ip` stays locked out after too many failed logins, if it is.
    fn locked_out(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let f = self.failures.lock().ok()?;
        let (since, n) = f.by_source.get(&ip)?;
        let left = self
            .limits
            .lockout
            .checked_sub(now.saturating_duration_since(*since))?;
        (*n >= self.limits.failed_logins).then_some(left)
    }

    fn login_failed(&self, ip: IpAddr, now: Instant) {
        if let Ok(mut f) = self.failures.lock() {
            let lockout = self.limits.lockout;
            let e = f.by_source.entry(ip).or_insert((now, 0));
            if now.saturating_duration_since(e.0) >= lockout {
                *e = (now, 0);
            }
            e.1 = e.1.saturating_add(1);
            // Forget windows that are over, so the map stays small.
            f.by_source
                .retain(|_, (since, _)| now.saturating_duration_since(*since) < lockout);
        }
    }
}

/// A connection's place; given back when the connection ends.
struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut o) = self.shared.open.lock() {
            o.total = o.total.saturating_sub(1);
            if let Some(n) = o.per_source.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    o.per_source.remove(&self.ip);
                }
            }
        }
    }
}

/// Accepts connections forever, within `limits`. Each connection: TLS handshake, then
/// HTTP/1.1.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    auth: Credentials,
    limits: Limits,
    to_daemon: mpsc::Sender<Incoming>,
    counters: Arc<Mutex<Counters>>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let shared = Arc::new(Shared {
        auth,
        limits,
        to_daemon,
        counters,
        open: Mutex::new(Open::default()),
        failures: Mutex::new(Failures::default()),
        handshakes: Arc::new(Semaphore::new(limits.handshakes)),
        bodies: Arc::new(Semaphore::new(limits.bodies)),
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and the like: the limits should prevent it; never spin on it.
                tracing::warn!("config sync: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Refused before anything is read: closing costs nothing and holds nothing.
        if shared.locked_out(peer.ip(), Instant::now()).is_some() {
            shared.reject(
                peer,
                "locked-out",
                "too many failed logins from this address",
            );
            continue;
        }
        let slot = match shared.open(peer.ip()) {
            Ok(s) => s,
            Err(why) => {
                shared.reject(peer, "too-many-connections", why);
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let limits = shared.limits;
            let handshake = async {
                let _permit = shared.handshakes.clone().acquire_owned().await.ok()?;
                Some(acceptor.accept(tcp).await)
            };
            let stream = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
                Ok(Some(Ok(s))) => s,
                Ok(Some(Err(e))) => {
                    shared.reject(peer, "tls", &format!("TLS handshake failed: {e}"));
                    return;
                }
                Ok(None) => return,
                Err(_) => {
                    shared.reject(peer, "tls", "TLS handshake not done in time");
                    return;
                }
            };
            let client_cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| {
                    let d = ring::digest::digest(&ring::digest::SHA256, c.as_ref());
                    let mut out = [0u8; 32];
                    out.copy_from_slice(d.as_ref());
                    out
                });
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, peer, client_cert, &shared).await) }
            });
            // A client that sends its headers too slowly is dropped.
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("config sync: connection from {peer}: {e}");
            }
        });
    }
}

fn plain(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn xml(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    r
}

/// The XML of an answer.
pub fn encode(answer: Result<Value, Refusal>) -> String {
    let body = match answer {
        Ok(value) => MethodResponse { value }.to_xml(),
        Err(r) => FaultResponse {
            fault: r.to_fault(),
        }
        .to_xml(),
    };
    let body = body.unwrap_or_else(|e| {
        FaultResponse {
            fault: Refusal::Internal(format!("cannot encode the answer: {e}")).to_fault(),
        }
        .to_xml()
        .unwrap_or_default()
    });
    format!("<?xml version=\"1.0\"?>\n{body}")
}

/// A refusal that also ends the connection (no more attempts on a kept-alive one).
fn closing(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A request body as a call, or why not (CPU work on a large body: run it on a blocking
/// thread).
fn parse(body: &[u8]) -> Result<Call, Refusal> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Refusal::BadRequest("the request is not UTF-8".into()))?;
    // dxr's error repeats the whole input; the fault names the problem instead.
    let call = MethodCall::from_xml(text).map_err(|_| {
        Refusal::BadRequest(
            "malformed XML-RPC request (expected <methodCall> with <methodName> and typed <params>)"
                .into(),
        )
    })?;
    configsync::rpc::decode(&call.name, &call.params)
}

async fn handle(
    req: Request<Body>,
    peer: SocketAddr,
    client_cert: Option<[u8; 32]>,
    s: &Shared,
) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        s.reject(peer, "bad-request", &format!("HTTP {}", req.method()));
        return plain(StatusCode::METHOD_NOT_ALLOWED, "XML-RPC: POST a methodCall");
    }
    let now = Instant::now();
    if let Some(left) = s.locked_out(peer.ip(), now) {
        s.reject(
            peer,
            "locked-out",
            "too many failed logins from this address",
        );
        return closing(plain(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many failed logins from {}: try again in {} s",
                peer.ip(),
                left.as_secs() + 1
            ),
        ));
    }
    if let Err(why) = s
        .auth
        .check(req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes))
    {
        s.login_failed(peer.ip(), now);
        s.reject(peer, "auth", why);
        let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required");
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tandem\""),
        );
        return closing(r);
    }
    let limits = s.limits;
    // At most `bodies` requests are read and parsed at once; the others wait a little, then
    // are told to come back.
    let Ok(Ok(_permit)) =
        tokio::time::timeout(limits.body_wait, s.bodies.clone().acquire_owned()).await
    else {
        s.reject(peer, "busy", "other requests are being read");
        return closing(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy with other requests: try again",
        ));
    };
    let body = Limited::new(req.into_body(), limits.max_body).collect();
    let body = match tokio::time::timeout(limits.body_timeout, body).await {
        Ok(Ok(b)) => b.to_bytes(),
        Err(_) => {
            s.reject(peer, "bad-request", "request body not received in time");
            return closing(plain(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            ));
        }
        Ok(Err(e)) => {
            s.reject(peer, "too-large", &format!("request body: {e}"));
            return closing(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "request body refused: {e} (limit {} bytes)",
                    limits.max_body
                ),
            ));
        }
    };
    let parsed = tokio::task::spawn_blocking(move || parse(&body))
        .await
        .unwrap_or_else(|e| Err(Refusal::Internal(format!("the parser died: {e}"))));
    let answer = match parsed {
        Err(f) => Err(f),
        Ok(call) => {
            let (tx, rx) = oneshot::channel();
            let sent = s
                .to_daemon
                .send(Incoming {
                    call,
                    peer,
                    client_cert,
                    reply: tx,
                })
                .await;
            match sent {
                Err(_) => Err(Refusal::Internal("the daemon is shutting down".into())),
                Ok(()) => rx.await.unwrap_or_else(|_| {
                    Err(Refusal::Internal("the daemon dropped the call".into()))
                }),
            }
        }
    };
    match &answer {
        Err(r) if r.is_bad_call() => {
            s.reject(peer, "bad-request", r.message());
        }
        _ => {
            if let Ok(mut c) = s.counters.lock() {
                c.calls += 1;
            }
        }
    }
    xml(encode(answer))
}
