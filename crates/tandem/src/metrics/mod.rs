//! The metrics listener (`[metrics] listen`): a small HTTP/1.1 server with two read-only
//! pages, GET /metrics (Prometheus, [`export`]) and GET / (the status page, [`page`]).
//! Anything else is 404, another method 405. No TLS: it is meant for a local address (or one
//! the firewall keeps to the monitoring host).
//!
//! It never touches the CARP thread: for each request it asks the daemon for the node's
//! [`Status`] over a channel (as the control socket does) and waits at most
//! [`STATUS_TIMEOUT`]; a daemon that does not answer in time gets a 503. A status is reused
//! for [`FRESH`], and connections and requests waiting are bounded, so a flood of the port
//! costs only itself.

pub mod export;
pub mod page;

use crate::status::Status;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

/// A request for the node's status, with the channel for the answer.
pub type StatusRequest = oneshot::Sender<Status>;

/// How long a request waits for the daemon's status.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at a time; more are closed at once.
const MAX_CONNECTIONS: usize = 32;
/// Requests waiting for the daemon at a time (each holds a connection).
const MAX_ASKING: usize = 4;
/// A connection's whole life: headers, the daemon's answer, the response.
const CONNECTION_TIME: Duration = Duration::from_secs(15);
/// A status this young is served again rather than asked for anew: however often the port
/// is hit, the daemon is asked at most about once a second.
const FRESH: Duration = Duration::from_secs(1);

/// The last status the daemon gave, and when.
type Cache = Arc<tokio::sync::Mutex<Option<(Instant, Arc<Status>)>>>;

/// The running listener; stopping it (or dropping it) closes the port.
pub struct Server {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves it; the error says what could not be bound.
    pub async fn start(
        addr: SocketAddr,
        ask: mpsc::Sender<StatusRequest>,
    ) -> Result<Server, String> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("[metrics] cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        let task = tokio::spawn(serve(listener, ask));
        Ok(Server {
            addr,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the port (waits until the listening socket is gone, so it can be bound again).
    pub async fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn serve(listener: TcpListener, ask: mpsc::Sender<StatusRequest>) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let asking = Arc::new(Semaphore::new(MAX_ASKING));
    let cache = Cache::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!("metrics listener: too many connections, closing one from {peer}");
            continue;
        };
        let ask = ask.clone();
        let asking = asking.clone();
        let cache = cache.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let ask = ask.clone();
                let asking = asking.clone();
                let cache = cache.clone();
                async move { Ok::<_, Infallible>(answer(&req, &ask, &asking, &cache).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            match tokio::time::timeout(CONNECTION_TIME, conn).await {
                Ok(Err(e)) => tracing::debug!("metrics client {peer}: {e}"),
                Err(_) => tracing::debug!("metrics client {peer}: took too long, closed"),
                Ok(Ok(())) => {}
            }
        });
    }
}

/// What a path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Metrics,
    Page,
}

fn route(path: &str) -> Option<Route> {
    match path {
        "/metrics" => Some(Route::Metrics),
        "/" | "/index.html" => Some(Route::Page),
        _ => None,
    }
}

fn response(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn answer(
    req: &Request<Incoming>,
    ask: &mpsc::Sender<StatusRequest>,
    asking: &Semaphore,
    cache: &Cache,
) -> Response<Full<Bytes>> {
    let Some(route) = route(req.uri().path()) else {
        return response(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: this listener serves / (status page) and /metrics\n".into(),
        );
    };
    if req.method() != Method::GET {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "method not allowed: only GET (the pages are read-only)\n".into(),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let Ok(_turn) = asking.try_acquire() else {
        return response(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "busy: too many requests at once\n".into(),
        );
    };
    let Some(status) = cached_status(ask, cache).await else {
        return response(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "the daemon did not answer in time\n".into(),
        );
    };
    match route {
        Route::Metrics => response(
            StatusCode::OK,
            export::CONTENT_TYPE,
            export::render(&status),
        ),
        Route::Page => {
            let mut r = response(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::render(&status),
            );
            // Inline CSS only: no script, no frames, nothing fetched from elsewhere.
            r.headers_mut().insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                ),
            );
            r
        }
    }
}

/// The daemon's status: the cached one while it is [`FRESH`], else asked for (one request
/// asks at a time; the others then find it in the cache).
async fn cached_status(ask: &mpsc::Sender<StatusRequest>, cache: &Cache) -> Option<Arc<Status>> {
    let mut c = cache.lock().await;
    if let Some((at, s)) = c.as_ref() {
        if at.elapsed() < FRESH {
            return Some(s.clone());
        }
    }
    let s = Arc::new(status(ask).await?);
    *c = Some((Instant::now(), s.clone()));
    Some(s)
}

/// Asks the daemon for its status, waiting at most [`STATUS_TIMEOUT`].
async fn status(ask: &mpsc::Sender<StatusRequest>) -> Option<Status> {
    let (tx, rx) = oneshot::channel();
    let asked = async {
        ask.send(tx).await.ok()?;
        rx.await.ok()
    };
    tokio::time::timeout(STATUS_TIMEOUT, asked)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests;
