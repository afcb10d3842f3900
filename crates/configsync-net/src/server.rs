//! The XML-RPC server: HTTPS (rustls) on the node's management address, HTTP Basic or bearer
//! authentication compared in constant time, calls decoded here and handed to the daemon loop
//! through a channel (like the control socket), answers encoded back.

use bytes::Bytes;
use configsync::auth::Credentials;
use configsync::rpc::{Call, Refusal};
use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as Body;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

/// The largest request accepted (a config of 100k rules is ~20 MB of XML).
pub const MAX_BODY: usize = 64 << 20;
/// How long a client may take to send its request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the server counts, for status: calls answered and calls refused by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub calls: u64,
    /// reason -> count: `auth`, `bad-request`, `tls`, `too-large`, ...
    pub rejected: BTreeMap<String, u64>,
    /// The last refused call: `from ADDR: reason`.
    pub last_rejected: Option<String>,
}

/// A decoded, authenticated call for the daemon, with the channel for its answer.
pub struct Incoming {
    pub call: Call,
    pub peer: SocketAddr,
    pub reply: oneshot::Sender<Result<Value, Refusal>>,
}

struct Shared {
    auth: Credentials,
    to_daemon: mpsc::Sender<Incoming>,
    counters: Arc<Mutex<Counters>>,
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
}

/// Accepts connections forever. Each connection: TLS handshake (10 s limit), then HTTP/1.1.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    auth: Credentials,
    to_daemon: mpsc::Sender<Incoming>,
    counters: Arc<Mutex<Counters>>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let shared = Arc::new(Shared {
        auth,
        to_daemon,
        counters,
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("config sync: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        shared.reject(peer, "tls", &format!("TLS handshake failed: {e}"));
                        return;
                    }
                    Err(_) => {
                        shared.reject(peer, "tls", "TLS handshake timed out");
                        return;
                    }
                };
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, peer, &shared).await) }
            });
            // A client that sends its headers too slowly is dropped.
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
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

async fn handle(req: Request<Body>, peer: SocketAddr, s: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        s.reject(peer, "bad-request", &format!("HTTP {}", req.method()));
        return plain(StatusCode::METHOD_NOT_ALLOWED, "XML-RPC: POST a methodCall");
    }
    if let Err(why) = s
        .auth
        .check(req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes))
    {
        s.reject(peer, "auth", why);
        let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required");
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tandem\""),
        );
        return r;
    }
    let body = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Ok(Ok(b)) => b.to_bytes(),
        Err(_) => {
            s.reject(peer, "bad-request", "request body not received in time");
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            );
        }
        Ok(Err(e)) => {
            s.reject(peer, "too-large", &format!("request body: {e}"));
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body refused: {e} (limit {MAX_BODY} bytes)"),
            );
        }
    };
    let answer = match std::str::from_utf8(&body) {
        Err(_) => Err(Refusal::BadRequest("the request is not UTF-8".into())),
        Ok(text) => match MethodCall::from_xml(text) {
            // dxr's error repeats the whole input; the fault names the problem instead.
            Err(_) => Err(Refusal::BadRequest(
                "malformed XML-RPC request (expected <methodCall> with <methodName> and typed <params>)".into(),
            )),
            Ok(call) => match configsync::rpc::decode(&call.name, &call.params) {
                Err(f) => Err(f),
                Ok(call) => {
                    let (tx, rx) = oneshot::channel();
                    let sent = s
                        .to_daemon
                        .send(Incoming {
                            call,
                            peer,
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
            },
        },
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
