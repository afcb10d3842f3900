//! Where a peer spends its time on a push of a 10k-rule config, without the firewall apply
//! (the daemon's part): `cargo test --release -p tandem --bins -- --ignored push_timing
//! --nocapture`. Prints the check (decode to candidate) and store times per push: a full
//! push, then a one-rule change pushed whole and as a delta.

use super::compose::load_running;
use super::peer::Peer;
use super::store::FileStore;
use configsync::area::{self, Area};
use configsync::book::DriftPolicy;
use configsync::rpc::{ApplyArgs, Source};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn own(dir: &std::path::Path) -> String {
    format!(
        "[node]\nname = \"fw2\"\nadvskew = 100\ncontrol_socket = \"{}\"\n\n[interfaces]\nlan = \"ens5\"\nwan = \"ens6\"\nsync = \"ens7\"\n\n[carp]\npassphrase = \"x\"\n\n[sync]\nrole = \"peer\"\nlisten = \"203.0.113.2:8443\"\nstate_dir = \"{}\"\nuser = \"sync\"\npassword = \"timing-password-long-enough\"\n",
        dir.join("fw2.sock").display(),
        dir.join("state").display()
    )
}

fn texts(rules: usize, extra: usize) -> BTreeMap<Area, String> {
    let mut synth = firewall::synth::config(rules, 100);
    for i in 0..extra {
        synth.push_str(&format!(
            "\n[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"udp\"\ndestination_port = {}\n",
            20000 + i
        ));
    }
    synth.push_str("\n[[vips]]\nvhid = 7\ninterface = \"lan\"\naddresses = [\"192.0.2.1/24\"]\n");
    let doc: toml::Table = toml::from_str(&synth).expect("synthetic config");
    Area::ALL
        .into_iter()
        .map(|a| (a, area::extract(&doc, a)))
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn push_timing() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("fw2.toml");
    std::fs::write(&path, own(dir.path())).expect("write");
    let (cfg, own) = load_running(&path).expect("own config");
    let mut store = FileStore::new(&dir.path().join("state"));
    let mut peer = Peer::default();
    let source = Source {
        node: "fw1".into(),
        software: "t".into(),
        protocol: configsync::PROTOCOL_VERSION,
        schema: configsync::SCHEMA_VERSION,
    };
    let mut held: BTreeMap<Area, String> = BTreeMap::new();
    let runs: [(&str, usize, bool); 5] = [
        ("first push, whole", 0, false),
        ("one rule more, whole", 1, false),
        ("one rule more, delta", 2, true),
        ("one rule more, delta", 3, true),
        ("one rule more, delta", 4, true),
    ];
    for (g, (what, extra, delta)) in runs.into_iter().enumerate() {
        let t = texts(10_000, extra);
        let hashes: BTreeMap<Area, String> = t.iter().map(|(a, x)| (*a, area::hash(x))).collect();
        let mut args = ApplyArgs {
            generation: g as u64 + 1,
            areas: BTreeMap::new(),
            unchanged: BTreeMap::new(),
            source: source.clone(),
            force: false,
        };
        for (a, x) in &t {
            if delta && held.get(a) == hashes.get(a) {
                args.unchanged.insert(*a, hashes[a].clone());
            } else {
                args.areas.insert(*a, x.clone());
            }
        }
        let t0 = Instant::now();
        let r = peer.apply(
            &mut store,
            "fw2",
            &own,
            &cfg.own_file,
            DriftPolicy::Refuse,
            &args,
        );
        let checked = t0.elapsed();
        let Ok(Err((_config, plan))) = r else {
            panic!("no candidate: {:?}", r.err());
        };
        let t1 = Instant::now();
        let answer = peer
            .finish_apply(&mut store, "fw2", &plan, Ok(()), (t0, checked))
            .expect("stored");
        let stored = t1.elapsed();
        let t2 = Instant::now();
        store.flush_history().expect("history");
        eprintln!(
            "{what}: {} areas whole, {} by hash: checked {:.0} ms, stored {:.0} ms, then history {:.0} ms ({})",
            args.areas.len(),
            args.unchanged.len(),
            ms(checked),
            ms(stored),
            ms(t2.elapsed()),
            answer.message
        );
        held = hashes;
    }
}
