//! The XML-RPC server and client over real TLS on loopback: pinning, authentication, faults,
//! and the server's counters.

use configsync::auth::Credentials;
use configsync::rpc::{self, code, Call, Refusal, VersionAnswer};
use configsync_net::client::{CallError, Client, Url};
use configsync_net::server::{self, Counters, Incoming};
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
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
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
        tx,
        counters.clone(),
    ));
    // A stand-in for the daemon loop.
    tokio::spawn(async move {
        while let Some(i) = rx.recv().await {
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
        _dir: dir,
    }
}

fn client(s: &Server, fingerprint: &str, password: &str) -> Client {
    let pin = tls::parse_fingerprint(fingerprint).expect("fingerprint");
    Client::new(
        s.url.clone(),
        tls::client_config(&Trust::Pinned(pin)).expect("client tls"),
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
