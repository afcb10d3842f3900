//! The XML-RPC server and client over real TLS on loopback: pinning, authentication, faults,
//! and the server's counters.

use configsync::auth::Credentials;
use configsync::rpc::{self, code, Call, Refusal, VersionAnswer};
use configsync_net::client::{CallError, Client, Url};
use configsync_net::server::{self, Counters, Incoming, Limits};
use configsync_net::tls::{self, Trust};
use dxr::Value;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

fn creds(password: &str) -> Credentials {
    Credentials {
        user: Some("sync".into()),
        password: Some(password.into()),
        token: None,
    }
}

struct Server {
    url: Url,
    fingerprint: String,
    counters: Arc<Mutex<Counters>>,
    /// The client certificate of the last call the stand-in daemon saw.
    client_cert: Arc<Mutex<Option<[u8; 32]>>>,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    server_with(Limits::default()).await
}

async fn server_with(limits: Limits) -> Server {
    let dir = tempfile::tempdir().expect("tmp");
    let id = tls::identity(None, dir.path(), &["127.0.0.1".to_string()]).expect("identity");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let counters = Arc::new(Mutex::new(Counters::default()));
    let (tx, mut rx) = mpsc::channel::<Incoming>(4);
    tokio::spawn(server::serve(
        listener,
        tls::server_config(&id).expect("server tls"),
        creds("right"),
        limits,
        tx,
        counters.clone(),
    ));
    let client_cert = Arc::new(Mutex::new(None));
    let seen = client_cert.clone();
    // A stand-in for the daemon loop.
    tokio::spawn(async move {
        while let Some(i) = rx.recv().await {
            if let Ok(mut c) = seen.lock() {
                *c = i.client_cert;
            }
            let answer = match i.call {
                Call::Version => Ok(VersionAnswer {
                    node: "fw2".into(),
                    software: "0.1.0".into(),
                    protocol: 1,
                    schema: 1,
                    role: "peer".into(),
                    capabilities: vec![],
                    areas: vec![],
                }
                .encode()),
                Call::Apply(a) => Err(Refusal::Invalid(format!(
                    "rejected generation {}",
                    a.generation
                ))),
                _ => Err(Refusal::Internal("not in this test".into())),
            };
            let _ = i.reply.send(answer);
        }
    });
    Server {
        url: Url::parse(&format!("https://127.0.0.1:{port}")).expect("url"),
        fingerprint: id.fingerprint,
        counters,
        client_cert,
        _dir: dir,
    }
}

fn client(s: &Server, fingerprint: &str, password: &str) -> Client {
    let pin = tls::parse_fingerprint(fingerprint).expect("fingerprint");
    Client::new(
        s.url.clone(),
        tls::client_config(&Trust::Pinned(pin), None).expect("client tls"),
        &creds(password),
    )
}

#[tokio::test]
async fn pinned_authenticated_calls_work_and_everything_else_is_refused() {
    let s = server().await;
    let good = client(&s, &s.fingerprint, "right");
    let v = good.call(rpc::VERSION, vec![]).await.expect("version");
    assert_eq!(VersionAnswer::decode(&v).expect("read").node, "fw2");

    // A fault comes back as one, with its code and message.
    let mut areas = std::collections::BTreeMap::new();
    areas.insert(configsync::Area::Rules, String::new());
    let apply = rpc::ApplyArgs {
        generation: 3,
        areas,
        unchanged: Default::default(),
        source: rpc::Source {
            node: "fw1".into(),
            software: "0.1.0".into(),
            protocol: 1,
            schema: 1,
        },
        force: false,
    };
    assert_eq!(
        good.call(rpc::APPLY_AREAS, rpc::apply_params(&apply)).await,
        Err(CallError::Refused(Refusal::Invalid(
            "rejected generation 3".into()
        )))
    );
    // Bad parameters never reach the daemon: the server answers the fault itself.
    match good.call(rpc::APPLY_AREAS, vec![Value::Integer(1)]).await {
        Err(CallError::Refused(r)) => {
            assert_eq!(r.code(), code::BAD_REQUEST);
            assert!(r.message().contains("takes 4 parameter(s)"), "{r}");
        }
        other => panic!("{other:?}"),
    }
    match good.call("system.shell", vec![]).await {
        Err(CallError::Refused(r)) => assert_eq!(r.code(), code::UNKNOWN_METHOD),
        other => panic!("{other:?}"),
    }

    // Wrong password: HTTP 401.
    let wrong = client(&s, &s.fingerprint, "wrong");
    assert_eq!(wrong.call(rpc::VERSION, vec![]).await, Err(CallError::Auth));

    // Another certificate than the pinned one: no connection at all.
    let other = "sha256:".to_string() + &["00"; 32].join(":");
    match client(&s, &other, "right").call(rpc::VERSION, vec![]).await {
        Err(CallError::Transport(m)) => assert!(m.contains("not the pinned one"), "{m}"),
        r => panic!("{r:?}"),
    }

    // The server sees the failed handshake a moment after the client gave up.
    for _ in 0..100 {
        if s.counters
            .lock()
            .expect("counters")
            .rejected
            .contains_key("tls")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let c = s.counters.lock().expect("counters").clone();
    assert_eq!(c.rejected.get("auth"), Some(&1), "{c:?}");
    assert_eq!(c.rejected.get("bad-request"), Some(&2), "{c:?}");
    assert_eq!(c.rejected.get("tls"), Some(&1), "{c:?}");
    assert!(c
        .last_rejected
        .as_deref()
        .is_some_and(|l| l.contains("127.0.0.1")));
}

/// Random damage to a valid call: decoding never panics, and whatever decodes is a known call.
#[test]
fn damaged_calls_never_panic() {
    let mut areas = std::collections::BTreeMap::new();
    areas.insert(
        configsync::Area::Rules,
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\n".to_string(),
    );
    let args = rpc::ApplyArgs {
        generation: 7,
        areas,
        unchanged: Default::default(),
        source: rpc::Source {
            node: "fw1".into(),
            software: "0.1.0".into(),
            protocol: 1,
            schema: 1,
        },
        force: true,
    };
    let xml = dxr::MethodCall {
        name: rpc::APPLY_AREAS.into(),
        params: rpc::apply_params(&args),
    }
    .to_xml()
    .expect("xml");
    let bytes = xml.as_bytes();
    // A small xorshift: deterministic, no extra dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut decoded = 0;
    for _ in 0..5000 {
        let mut b = bytes.to_vec();
        for _ in 0..(1 + next() % 4) {
            let i = (next() as usize) % b.len();
            match next() % 3 {
                0 => b[i] = (next() % 256) as u8,
                1 => {
                    b.remove(i);
                }
                _ => b.insert(i, b"<>/&\"0x"[(next() % 7) as usize]),
            }
        }
        let Ok(text) = std::str::from_utf8(&b) else {
            continue;
        };
        if let Ok(call) = dxr::MethodCall::from_xml(text) {
            if rpc::decode(&call.name, &call.params).is_ok() {
                decoded += 1;
            }
        }
    }
    // Some mutations hit only text (a description): those still decode.
    assert!(decoded > 0);
}

fn count(s: &Server, reason: &str) -> u64 {
    s.counters
        .lock()
        .expect("counters")
        .rejected
        .get(reason)
        .copied()
        .unwrap_or(0)
}

/// A password guesser on one kept-alive connection, then on new ones: after the allowed number
/// of failures its address is locked out, so it gets a handful of guesses a minute, not
/// thousands a second.
#[tokio::test]
async fn failed_logins_lock_the_address_out() {
    let s = server().await;
    let wrong = client(&s, &s.fingerprint, "wrong");
    let mut refused = 0;
    for _ in 0..50 {
        match wrong.call(rpc::VERSION, vec![]).await {
            Err(CallError::Auth) => {}
            Err(CallError::Http(429, _)) | Err(CallError::Transport(_)) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    let limit = u64::from(Limits::default().failed_logins);
    assert_eq!(count(&s, "auth"), limit, "guesses checked");
    assert_eq!(refused, 50 - limit, "the rest were not even checked");
    // The right password from the locked-out address waits too.
    let right = client(&s, &s.fingerprint, "right");
    assert!(right.call(rpc::VERSION, vec![]).await.is_err());
}

/// Idle connections beyond the caps are closed at once; the server keeps its slots for others.
#[tokio::test]
async fn idle_connections_beyond_the_caps_are_closed() {
    let limits = Limits {
        connections: 6,
        per_source: 4,
        ..Limits::default()
    };
    let s = server_with(limits).await;
    let addr = format!("{}:{}", s.url.host, s.url.port);
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    // The kernel accepted all ten; the server closed the six beyond its per-source cap.
    let mut closed = 0;
    for c in &mut held {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 1];
        match tokio::time::timeout(std::time::Duration::from_millis(500), c.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, 6, "connections closed by the server");
    assert_eq!(count(&s, "too-many-connections"), 6);
}

/// A body over the limit is refused (and not kept); a request that finds every body slot
/// taken is told the server is busy instead of queueing without end.
#[tokio::test]
async fn large_and_concurrent_bodies_are_bounded() {
    let limits = Limits {
        max_body: 64 << 10,
        bodies: 1,
        body_wait: std::time::Duration::from_millis(200),
        ..Limits::default()
    };
    let s = server_with(limits).await;
    let c = client(&s, &s.fingerprint, "right");
    let mut areas = std::collections::BTreeMap::new();
    areas.insert(configsync::Area::Rules, "# x\n".repeat(40_000));
    let big = rpc::ApplyArgs {
        generation: 3,
        areas,
        unchanged: Default::default(),
        source: rpc::Source {
            node: "fw1".into(),
            software: "0.1.0".into(),
            protocol: 1,
            schema: 1,
        },
        force: false,
    };
    match c.call(rpc::APPLY_AREAS, rpc::apply_params(&big)).await {
        Err(CallError::Http(413, m)) => assert!(m.contains("limit 65536 bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&s, "too-large"), 1);

    // One slow client holds the only body slot: it sends its headers, then trickles.
    let tls = tls::client_config(
        &Trust::Pinned(tls::parse_fingerprint(&s.fingerprint).expect("fp")),
        None,
    )
    .expect("tls");
    let tcp = tokio::net::TcpStream::connect(format!("{}:{}", s.url.host, s.url.port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut slow = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("tls");
    use tokio::io::AsyncWriteExt;
    let auth = creds("right").header().expect("header");
    slow.write_all(
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 1000\r\n\r\n<"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    match c.call(rpc::VERSION, vec![]).await {
        Err(CallError::Http(503, _)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&s, "busy"), 1);
    drop(slow);
}

/// A client that presents a certificate is told apart: the daemon sees its fingerprint (a
/// peer takes pushes only from its primary's); one without gets the password-only calls.
#[tokio::test]
async fn the_callers_certificate_reaches_the_daemon() {
    let s = server().await;
    let dir = tempfile::tempdir().expect("tmp");
    let me = tls::identity(None, dir.path(), &["fw1".to_string()]).expect("identity");
    let pin = tls::parse_fingerprint(&s.fingerprint).expect("fp");
    let with = Client::new(
        s.url.clone(),
        tls::client_config(&Trust::Pinned(pin), Some(&me)).expect("tls"),
        &creds("right"),
    );
    with.call(rpc::VERSION, vec![]).await.expect("version");
    let seen = *s.client_cert.lock().expect("seen");
    assert_eq!(
        seen.map(|h| tls::fingerprint_of_hash(&h)),
        Some(me.fingerprint.clone())
    );
    client(&s, &s.fingerprint, "right")
        .call(rpc::VERSION, vec![])
        .await
        .expect("version without a certificate");
    assert_eq!(*s.client_cert.lock().expect("seen"), None);
}
