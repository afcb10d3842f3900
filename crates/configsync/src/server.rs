//! The XML-RPC server: HTTPS (rustls) on the node's management address, HTTP Basic or bearer
//! authentication compared in constant time, calls decoded here and handed to the daemon loop
//! through a channel (like the control socket), answers encoded back.

use crate::rpc::{self, code, Call};
use bytes::Bytes;
use dxr::{Fault, FaultResponse, MethodCall, MethodResponse, Value};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as Body;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

/// The largest request accepted (a config of 100k rules is ~20 MB of XML).
pub const MAX_BODY: usize = 64 << 20;
/// How long a client may take to send its request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The credentials a node accepts (and sends as a primary).
#[derive(Clone, Default)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equal in constant time (both sides hashed first, so lengths leak nothing either).
fn same(a: &[u8], b: &[u8]) -> bool {
    digest(a).ct_eq(&digest(b)).into()
}

impl Credentials {
    /// The `Authorization` header a client sends: Basic when a user and password are set,
    /// else Bearer with the token.
    pub fn header(&self) -> Option<String> {
        use base64::Engine as _;
        match (&self.user, &self.password, &self.token) {
            (Some(u), Some(p), _) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            (_, _, Some(t)) => Some(format!("Bearer {t}")),
            _ => None,
        }
    }

    /// Checks an `Authorization` header; the error says why (for the log, not the client).
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), &'static str> {
        use base64::Engine as _;
        let Some(h) = header else {
            return Err("no credentials");
        };
        let h = std::str::from_utf8(h).map_err(|_| "unreadable Authorization header")?;
        if let Some(b64) = h.strip_prefix("Basic ") {
            let (Some(user), Some(password)) = (&self.user, &self.password) else {
                return Err("Basic credentials, but this node takes a token");
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| "bad Basic credentials encoding")?;
            let colon = raw
                .iter()
                .position(|b| *b == b':')
                .ok_or("bad Basic credentials (no ':')")?;
            let (u, p) = (&raw[..colon], &raw[colon + 1..]);
            // Both compared, always, so timing does not tell which one was wrong.
            let ok_user = same(u, user.as_bytes());
            let ok_password = same(p, password.as_bytes());
            if ok_user & ok_password {
                Ok(())
            } else {
                Err("wrong user or password")
            }
        } else if let Some(t) = h.strip_prefix("Bearer ") {
            let Some(token) = &self.token else {
                return Err("a token, but this node takes a user and password");
            };
            if same(t.trim().as_bytes(), token.as_bytes()) {
                Ok(())
            } else {
                Err("wrong token")
            }
        } else {
            Err("unknown authorization scheme")
        }
    }
}

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
    pub reply: oneshot::Sender<Result<Value, Fault>>,
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
pub fn encode(answer: Result<Value, Fault>) -> String {
    let body = match answer {
        Ok(value) => MethodResponse { value }.to_xml(),
        Err(fault) => FaultResponse { fault }.to_xml(),
    };
    let body = body.unwrap_or_else(|e| {
        FaultResponse {
            fault: rpc::fault(code::INTERNAL, format!("cannot encode the answer: {e}")),
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
        Err(_) => Err(rpc::fault(code::BAD_REQUEST, "the request is not UTF-8")),
        Ok(text) => match MethodCall::from_xml(text) {
            // dxr's error repeats the whole input; the fault names the problem instead.
            Err(_) => Err(rpc::fault(
                code::BAD_REQUEST,
                "malformed XML-RPC request (expected <methodCall> with <methodName> and typed <params>)",
            )),
            Ok(call) => match rpc::decode(&call.name, &call.params) {
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
                        Err(_) => Err(rpc::fault(code::INTERNAL, "the daemon is shutting down")),
                        Ok(()) => rx.await.unwrap_or_else(|_| {
                            Err(rpc::fault(code::INTERNAL, "the daemon dropped the call"))
                        }),
                    }
                }
            },
        },
    };
    match &answer {
        Err(f) if f.code() == code::BAD_REQUEST || f.code() == code::UNKNOWN_METHOD => {
            s.reject(peer, "bad-request", f.string());
        }
        _ => {
            if let Ok(mut c) = s.counters.lock() {
                c.calls += 1;
            }
        }
    }
    xml(encode(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_are_checked() {
        let c = Credentials {
            user: Some("sync".into()),
            password: Some("pw".into()),
            token: None,
        };
        let h = c.header().expect("header");
        assert_eq!(c.check(Some(h.as_bytes())), Ok(()));
        let wrong = Credentials {
            password: Some("px".into()),
            ..c.clone()
        };
        assert_eq!(
            c.check(wrong.header().as_deref().map(str::as_bytes)),
            Err("wrong user or password")
        );
        assert_eq!(c.check(None), Err("no credentials"));
        assert_eq!(
            c.check(Some(b"Bearer abc")),
            Err("a token, but this node takes a user and password")
        );
        assert_eq!(
            c.check(Some(b"Basic !!!")),
            Err("bad Basic credentials encoding")
        );
        let t = Credentials {
            token: Some("tok".into()),
            ..Default::default()
        };
        assert_eq!(t.check(Some(b"Bearer tok")), Ok(()));
        assert_eq!(t.check(Some(b"Bearer tok2")), Err("wrong token"));
        assert!(!format!("{c:?}").contains("pw"));
    }
}
