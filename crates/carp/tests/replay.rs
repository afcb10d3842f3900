//! Golden replay: a trace recorded from a real daemon (`tandem run --record`) in a namespace
//! cluster replays through a fresh engine to the same state changes, in the same order.
//!
//! Recorded on fw2 (advskew 100) of a two-node cluster, vhid 7, passphrase "s3cret": start,
//! fw1's link down (fw2 takes over), fw1's link up (fw1 preempts), SIGTERM on fw1 (bow-out,
//! fw2 takes over at once), SIGTERM on fw2.

use carp::trace::{parse, replay};
use carp::{Action, Reason, State};

#[test]
fn recorded_failover_and_failback_replays_identically() {
    let text = include_str!("traces/fw2-failover-failback.jsonl");
    let trace = parse(text).expect("trace parses");
    let actions = replay(&trace).expect("trace replays");
    let transitions: Vec<(State, State, Reason)> = actions
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Transition {
                from, to, reason, ..
            } => Some((*from, *to, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions,
        vec![
            (State::Init, State::Backup, Reason::Startup),
            (State::Backup, State::Master, Reason::MasterDownTimer),
            (State::Master, State::Backup, Reason::MoreFrequentAdvert),
            (State::Backup, State::Master, Reason::MasterWillTimeOut),
            (State::Master, State::Init, Reason::Shutdown),
        ]
    );
    // Replay is deterministic: the same trace gives the same actions, adverts included.
    assert_eq!(replay(&trace).expect("replays again"), actions);
    let adverts = actions
        .iter()
        .filter(|(_, a)| matches!(a, Action::Send { .. }))
        .count();
    assert!(adverts >= 3, "fw2 advertised while master: {adverts}");
}

#[test]
fn a_trace_without_seed_or_with_garbage_is_an_error() {
    assert!(replay(&parse(r#"{"at_us":1,"timeout":null}"#).expect("parses")).is_err());
    let e = parse("{\"at_us\":1,\"seed\":1}\nnot json\n").expect_err("garbage");
    assert!(e.to_string().starts_with("trace line 2:"), "{e}");
}

#[test]
fn a_tandem_mode_trace_replays_with_its_counter_clock() {
    // As `tandem run --record` writes it for `[carp] auth = "tandem"`: the counter clock
    // follows the seed, and the key says its mode.
    let text = r#"
{"at_us":0,"seed":42}
{"at_us":1,"counter-clock":7301444403200000000}
{"at_us":2,"local-address":{"iface":2,"addr":"192.0.2.2"}}
{"at_us":3,"add-router":{"iface":2,"vhid":7,"advbase":1,"advskew":0,"preempt":true,"addresses":["192.0.2.100"],"key":{"tandem":[116,97,110,100,101,109,32,109,111,100,101,32,112,97,115,115]}}}
{"at_us":3100000,"timeout":null}
"#;
    let trace = parse(text).expect("trace parses");
    let actions = replay(&trace).expect("replays");
    let payload = actions
        .iter()
        .find_map(|(_, a)| match a {
            Action::Send { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .expect("the new master advertises");
    let a = carp::wire::decode(&payload).expect("decodes");
    assert_eq!(a.counter, 7_301_444_403_200_000_001);
    let auth = carp::TandemAuthenticator::new(
        carp::Key::tandem(b"tandem mode pass"),
        &["192.0.2.100".parse().expect("literal")],
    );
    assert!(auth.verify(&payload, "192.0.2.2".parse().expect("literal")));
    assert_eq!(replay(&trace).expect("replays again"), actions);
}

#[test]
fn a_check_demotion_round_trips_through_a_trace_line() {
    let input = carp::Input::Demote {
        source: carp::DemoteSource::Check("gw".into()),
        value: 240,
    };
    let line = serde_json::to_string(&input).expect("serialize");
    assert_eq!(
        line, r#"{"demote":{"source":{"check":"gw"},"value":240}}"#,
        "the recorded form of a check's demotion"
    );
    let back: carp::Input = serde_json::from_str(&line).expect("deserialize");
    assert_eq!(back, input);
}
