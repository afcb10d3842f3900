//! The primary's push task against a stand-in peer over real TLS on loopback: the first push
//! carries every area whole, the next only what changed (the rest by hash), and when the peer
//! has lost what it held, its need-full refusal is followed at once by a whole push.

use configsync::area::{self, Area};
use configsync::auth::Credentials;
use configsync::book::{Backoff, PeerTracker};
use configsync::rpc::{ApplyAnswer, Call, HeartbeatAnswer, Refusal, Source, VersionAnswer};
use configsync_net::client::{Client, Url};
use configsync_net::push::{Payload, PeerTask, PushEvent};
use configsync_net::server::{self, Counters, Incoming, Limits};
use configsync_net::tls::{self, Trust};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

fn creds() -> Credentials {
    Credentials {
        user: Some("sync".into()),
        password: Some("delta-test-password".into()),
        token: None,
    }
}

/// What the stand-in peer holds (area -> hash of its last push) and the calls it saw.
#[derive(Default)]
struct Peer {
    generation: u64,
    held: BTreeMap<Area, String>,
    /// `version`, `heartbeat`, `apply whole=[..] hash=[..] -> ok|need-full`.
    calls: Vec<String>,
}

fn names(m: &BTreeMap<Area, String>) -> String {
    m.keys().map(|a| a.as_str()).collect::<Vec<_>>().join(",")
}

fn answer(p: &mut Peer, call: Call) -> Result<dxr::Value, Refusal> {
    match call {
        Call::Version => {
            p.calls.push("version".into());
            Ok(VersionAnswer {
                node: "fw2".into(),
                software: "0.1.0".into(),
                protocol: configsync::PROTOCOL_VERSION,
                schema: configsync::SCHEMA_VERSION,
                role: "peer".into(),
                capabilities: vec![],
                areas: vec![],
            }
            .encode())
        }
        Call::Heartbeat { .. } => {
            p.calls.push("heartbeat".into());
            Ok(HeartbeatAnswer {
                node: "fw2".into(),
                generation: p.generation,
                drift: None,
            }
            .encode())
        }
        Call::Apply(a) => {
            let what = format!(
                "apply whole=[{}] hash=[{}]",
                names(&a.areas),
                names(&a.unchanged)
            );
            if let Some((area, _)) = a.unchanged.iter().find(|(x, h)| p.held.get(x) != Some(h)) {
                p.calls.push(format!("{what} -> need-full"));
                return Err(Refusal::NeedFull(format!("fw2 does not hold {area}")));
            }
            p.calls.push(format!("{what} -> ok"));
            p.held = a
                .areas
                .iter()
                .map(|(x, t)| (*x, area::hash(t)))
                .chain(a.unchanged.clone())
                .collect();
            p.generation = a.generation;
            Ok(ApplyAnswer {
                applied: true,
                generation: a.generation,
                node: "fw2".into(),
                message: "applied".into(),
            }
            .encode())
        }
        _ => Err(Refusal::Internal("not in this test".into())),
    }
}

fn payload(generation: u64, rules: &str) -> Arc<Payload> {
    let areas: BTreeMap<Area, String> = [
        (Area::Rules, rules.to_string()),
        (Area::Vips, "[[vips]]\nvhid = 7\n".to_string()),
    ]
    .into_iter()
    .collect();
    let hashes = areas.iter().map(|(a, t)| (*a, area::hash(t))).collect();
    Arc::new(Payload {
        generation,
        areas,
        hashes,
        nonce: 0,
        force: false,
    })
}

async fn wait(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_change_goes_as_a_delta_and_a_refused_delta_is_followed_by_a_whole_push() {
    let dir = tempfile::tempdir().expect("tmp");
    let id = tls::identity(None, dir.path(), &["127.0.0.1".to_string()]).expect("identity");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, mut rx) = mpsc::channel::<Incoming>(4);
    tokio::spawn(server::serve(
        listener,
        tls::server_config(&id).expect("server tls"),
        creds(),
        Limits::default(),
        tx,
        Arc::new(Mutex::new(Counters::default())),
    ));
    let peer = Arc::new(Mutex::new(Peer::default()));
    let p = peer.clone();
    tokio::spawn(async move {
        while let Some(i) = rx.recv().await {
            let a = answer(&mut p.lock().expect("peer"), i.call);
            let _ = i.reply.send(a);
        }
    });
    let pin = tls::parse_fingerprint(&id.fingerprint).expect("fingerprint");
    let task = PeerTask {
        name: "fw2".into(),
        client: Client::new(
            Url::parse(&format!("https://127.0.0.1:{port}")).expect("url"),
            tls::client_config(&Trust::Pinned(pin), None).expect("client tls"),
            &creds(),
        ),
        me: Source {
            node: "fw1".into(),
            software: "0.1.0".into(),
            protocol: configsync::PROTOCOL_VERSION,
            schema: configsync::SCHEMA_VERSION,
        },
        // A retry after a failure would wait long: the whole push after a refused delta
        // must not be one.
        backoff: Backoff {
            first: Duration::from_secs(30),
            max: Duration::from_secs(30),
        },
        heartbeat: Duration::from_millis(50),
    };
    let (pay_tx, pay_rx) = watch::channel(payload(1, "[[rules]]\naction = \"pass\"\n"));
    let trackers: Arc<Mutex<BTreeMap<String, PeerTracker>>> = Arc::default();
    let (ev_tx, mut ev_rx) = mpsc::channel::<PushEvent>(64);
    tokio::spawn(task.run(pay_rx, trackers.clone(), ev_tx));
    let generation = || peer.lock().expect("peer").generation;
    let calls = || peer.lock().expect("peer").calls.clone();
    let applies = || -> Vec<String> {
        calls()
            .into_iter()
            .filter(|c| c.starts_with("apply"))
            .collect()
    };

    wait("generation 1 on the peer", || generation() == 1).await;
    pay_tx.send_replace(payload(2, "[[rules]]\naction = \"block\"\n"));
    wait("generation 2 on the peer", || generation() == 2).await;
    assert_eq!(
        applies(),
        vec![
            "apply whole=[vips,rules] hash=[] -> ok",
            "apply whole=[rules] hash=[vips] -> ok",
        ],
        "{:?}",
        calls()
    );

    // The peer loses what it held: it reports generation 0, the task pushes generation 2
    // again, by hash; refused; the whole areas follow as the very next call.
    {
        let mut p = peer.lock().expect("peer");
        p.generation = 0;
        p.held.clear();
    }
    wait("generation 2 on the peer again", || generation() == 2).await;
    let c = calls();
    let refused = c
        .iter()
        .position(|x| x == "apply whole=[] hash=[vips,rules] -> need-full")
        .unwrap_or_else(|| panic!("no refused delta in {c:?}"));
    assert_eq!(
        c.get(refused + 1).map(String::as_str),
        Some("apply whole=[vips,rules] hash=[] -> ok"),
        "{c:?}"
    );
    wait("the tracker's record of it", || {
        trackers
            .lock()
            .expect("trackers")
            .get("fw2")
            .is_some_and(|t| t.acked == Some(2) && t.holds.knows())
    })
    .await;
    let t = trackers.lock().expect("trackers")["fw2"].clone();
    assert_eq!(t.failures, 0);
    assert!(matches!(t.last_result, Some(Ok(_))), "{:?}", t.last_result);
    let counts = t.holds.counts;
    assert_eq!(
        (counts.full, counts.delta, counts.delta_refused),
        (2, 2, 1),
        "{counts:?}"
    );
    let mut refusals = 0;
    while let Ok(e) = ev_rx.try_recv() {
        if let PushEvent::DeltaRefused { peer, why } = e {
            assert_eq!(peer, "fw2");
            assert!(why.contains("does not hold"), "{why}");
            refusals += 1;
        }
    }
    assert_eq!(refusals, 1);
}
