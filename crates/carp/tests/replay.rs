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
