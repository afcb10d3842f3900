//! The XML-RPC client a primary uses to reach a peer: one HTTPS connection per call, the
//! peer's certificate checked by [`crate::tls::Trust`], credentials in the Authorization header.

use bytes::Bytes;
use configsync::auth::Credentials;
use configsync::rpc::Refusal;
use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;

/// The largest answer read from a peer.
pub const MAX_ANSWER: usize = 32 << 20;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Could not connect, TLS failed (e.g. not the pinned certificate), or timed out.
    #[error("{0}")]
    Transport(String),
    /// HTTP 401: the peer refused the credentials.
    #[error("HTTP 401: the peer refused our credentials")]
    Auth,
    #[error("HTTP {0}: {1}")]
    Http(u16, String),
    /// The peer refused the call (an XML-RPC fault).
    #[error("{0}")]
    Refused(Refusal),
    /// The answer could not be read.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

/// `https://HOST:PORT/PATH`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = s
            .strip_prefix("https://")
            .ok_or_else(|| format!("{s:?}: the URL must start with https://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("{s:?}: unclosed [ in the address"))?;
            let host = &r[..end];
            let port = r[end + 1..].strip_prefix(':');
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("{s:?}: bad port {p:?}"))?,
            None => 443,
        };
        Ok(Url {
            host,
            port,
            path: path.to_string(),
        })
    }
}

/// A configured peer to call.
#[derive(Clone)]
pub struct Client {
    pub url: Url,
    tls: Arc<rustls::ClientConfig>,
    auth: Option<String>,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
}

impl Client {
    pub fn new(url: Url, tls: Arc<rustls::ClientConfig>, creds: &Credentials) -> Client {
        Client {
            url,
            tls,
            auth: creds.header(),
            connect_timeout: Duration::from_secs(3),
            call_timeout: Duration::from_secs(120),
        }
    }

    async fn connect(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, CallError> {
        let addr: SocketAddr = match self.url.host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.url.port),
            Err(_) => tokio::net::lookup_host((self.url.host.as_str(), self.url.port))
                .await
                .map_err(|e| {
                    CallError::Transport(format!("cannot resolve {}: {e}", self.url.host))
                })?
                .next()
                .ok_or_else(|| CallError::Transport(format!("{} has no address", self.url.host)))?,
        };
        let tcp = tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| CallError::Transport(format!("connect to {addr} timed out")))?
            .map_err(|e| CallError::Transport(format!("connect to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = match self.url.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(self.url.host.clone())
                .map_err(|e| CallError::Transport(format!("bad host name: {e}")))?,
        };
        tokio::time::timeout(
            self.connect_timeout,
            TlsConnector::from(self.tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| CallError::Transport(format!("TLS handshake with {addr} timed out")))?
        .map_err(|e| CallError::Transport(format!("TLS with {addr}: {e}")))
    }

    /// Calls `method` and returns its value, or why not.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, CallError> {
        tokio::time::timeout(self.call_timeout, self.call_inner(method, params))
            .await
            .map_err(|_| {
                CallError::Transport(format!(
                    "{method}: no answer within {} s",
                    self.call_timeout.as_secs()
                ))
            })?
    }

    async fn call_inner(&self, method: &str, params: Vec<Value>) -> Result<Value, CallError> {
        let body = MethodCall {
            name: method.into(),
            params,
        }
        .to_xml()
        .map_err(|e| CallError::BadAnswer(format!("cannot encode the call: {e}")))?;
        let body = format!("<?xml version=\"1.0\"?>\n{body}");
        let stream = self.connect().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| CallError::Transport(format!("HTTP: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::post(&self.url.path)
            .header(HOST, format!("{}:{}", self.url.host, self.url.port))
            .header(CONTENT_TYPE, "text/xml")
            .header(CONTENT_LENGTH, body.len());
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Transport(format!("bad request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| CallError::Transport(format!("HTTP: {e}")))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| CallError::Transport(format!("reading the answer: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if status == StatusCode::UNAUTHORIZED {
            return Err(CallError::Auth);
        }
        if status != StatusCode::OK {
            return Err(CallError::Http(
                status.as_u16(),
                text.trim().chars().take(200).collect(),
            ));
        }
        if text.contains("<fault>") {
            let f = FaultResponse::from_xml(&text)
                .map_err(|_| CallError::BadAnswer("unreadable fault".into()))?;
            return Err(CallError::Refused(Refusal::from_fault(
                f.fault.code(),
                f.fault.string(),
            )));
        }
        MethodResponse::from_xml(&text)
            .map(|r| r.value)
            .map_err(|_| CallError::BadAnswer("not an XML-RPC methodResponse".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            Url::parse("https://203.0.113.2:8443"),
            Ok(Url {
                host: "203.0.113.2".into(),
                port: 8443,
                path: "/".into()
            })
        );
        assert_eq!(
            Url::parse("https://[2001:db8::2]:8443/rpc"),
            Ok(Url {
                host: "2001:db8::2".into(),
                port: 8443,
                path: "/rpc".into()
            })
        );
        assert_eq!(Url::parse("https://fw2").map(|u| u.port), Ok(443));
        assert!(Url::parse("http://fw2").is_err());
        assert!(Url::parse("https://fw2:x").is_err());
    }
}
