//! One VRRP router fed by hand-made adverts: one test per rule of RFC 5798 §6 (and
//! keepalived's behaviour where the RFC is silent) that the engine implements.

use carp::vrrp::{self, VrrpAdvert};
use carp::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const IF: IfaceId = 1;
const ME: &str = "192.0.2.2";
const LOWER: &str = "192.0.2.1";
const HIGHER: &str = "192.0.2.3";
const VIP: &str = "192.0.2.100";
const GROUP: &str = "224.0.0.18";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

fn cs(v: u16) -> Centisecs {
    Centisecs::new(v).expect("valid interval")
}

fn vhid(v: u8) -> Vhid {
    Vhid::new(v).expect("nonzero")
}

fn us(v: u64) -> Duration {
    Duration::from_micros(v)
}

/// vhid 7 on IF, VRRP every `interval` cs, priority 254 - skew.
fn cfg(skew: u8, interval: u16, preempt: bool) -> RouterConfig {
    RouterConfig {
        iface: IF,
        vhid: vhid(7),
        advbase: Advbase(1),
        advskew: Skew(skew),
        preempt,
        addresses: vec![ip(VIP)],
        key: Key::from_passphrase(b"unused"),
        protocol: Protocol::Vrrp {
            interval: cs(interval),
        },
        peers: Vec::new(),
    }
}

fn node(t0: Instant, c: RouterConfig) -> Carp {
    let mut n = Carp::new(1);
    n.set_local_address(IF, ip(ME));
    n.add_router(t0, c);
    drain(&mut n);
    n
}

fn drain(n: &mut Carp) -> Vec<Action> {
    std::iter::from_fn(|| n.poll_action()).collect()
}

fn sent(acts: &[Action]) -> Vec<VrrpAdvert> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send {
                payload, family, ..
            } => {
                let src = match family {
                    Family::V4 => ip(ME),
                    Family::V6 => ip("fe80::2"),
                };
                Some(vrrp::decode(payload, src, vrrp::group_for(src)).expect("valid advert"))
            }
            _ => None,
        })
        .collect()
}

fn advert(vrid: u8, priority: u8, interval: u16, addrs: &[&str], src: &str) -> Vec<u8> {
    let a = VrrpAdvert {
        vrid: vhid(vrid),
        priority,
        max_adver_int: cs(interval),
        addresses: addrs.iter().map(|a| ip(a)).collect(),
    };
    vrrp::encode(&a, ip(src), vrrp::group_for(ip(src)))
}

fn feed_raw(n: &mut Carp, now: Instant, src: &str, ttl: u8, payload: Vec<u8>) {
    n.handle(
        now,
        Input::Advert {
            iface: IF,
            src: ip(src),
            dst: vrrp::group_for(ip(src)),
            ttl,
            payload,
        },
    );
}

fn feed(n: &mut Carp, now: Instant, src: &str, priority: u8, interval: u16) -> Vec<Action> {
    feed_raw(n, now, src, 255, advert(7, priority, interval, &[VIP], src));
    drain(n)
}

/// Runs the node to its master-down deadline: MASTER.
fn master(t0: Instant, c: RouterConfig) -> (Carp, Instant) {
    let mut n = node(t0, c);
    let (t, kind) = n.poll_timeout().expect("master-down timer");
    assert_eq!(kind, TimerKind::MasterDown);
    n.handle_timeout(t);
    drain(&mut n);
    assert_eq!(n.state(IF, vhid(7)), Some(State::Master));
    (n, t)
}

fn transition(acts: &[Action]) -> Option<(State, State, Reason)> {
    acts.iter().find_map(|a| match a {
        Action::Transition {
            from, to, reason, ..
        } => Some((*from, *to, *reason)),
        _ => None,
    })
}

fn rejected(n: &Carp) -> Vec<(RejectReason, u64)> {
    let mut all: Vec<(RejectReason, u64)> = n.node_rejected().clone().into_iter().collect();
    for s in n.status() {
        all.extend(s.counters.rejected);
    }
    all
}

#[test]
fn priority_is_derived_from_skew_and_demotion() {
    assert_eq!(vrrp_priority(Skew(0), 0), 254);
    assert_eq!(vrrp_priority(Skew(100), 0), 154);
    assert_eq!(vrrp_priority(Skew(100), 100), 54);
    assert_eq!(vrrp_priority(Skew(200), 240), 1);
    assert_eq!(vrrp_priority(Skew(255), 255), 1);
    assert!((0..=255).all(|s| (0..=255).all(|d| {
        let p = vrrp_priority(Skew(s), d);
        (1..=254).contains(&p)
    })));
}

#[test]
fn skew_and_master_down_are_keepalived_microseconds() {
    // docs/research/vrrpv3.md §2.2, keepalived's values.
    assert_eq!(vrrp_skew_micros(100, cs(100)), 609_375);
    assert_eq!(vrrp_skew_micros(150, cs(5)), 20_703);
    assert_eq!(vrrp_skew_micros(254, cs(100)), 7_812);
    assert_eq!(vrrp_skew_micros(1, cs(100)), 996_093);
    let t0 = Instant::now();
    // advskew 154 -> priority 100, 1 s: master down 3 s + 609 375 µs.
    let n = node(t0, cfg(154, 100, true));
    let (t, _) = n.poll_timeout().expect("armed");
    assert_eq!(t - t0, us(3_609_375));
    // advskew 104 -> priority 150, 50 ms: 150 ms + 20 703 µs.
    let n = node(t0, cfg(104, 5, true));
    let (t, _) = n.poll_timeout().expect("armed");
    assert_eq!(t - t0, us(170_703));
}

#[test]
fn status_says_protocol_and_priority_and_demotion_shows_in_the_next_advert() {
    let t0 = Instant::now();
    let (mut n, t) = master(t0, cfg(0, 100, true));
    let s = &n.status()[0];
    assert_eq!(s.protocol, Protocol::Vrrp { interval: cs(100) });
    assert_eq!(s.priority, Some(254));
    n.handle(
        t,
        Input::Demote {
            source: DemoteSource::Operator,
            value: 100,
        },
    );
    assert!(
        sent(&drain(&mut n)).is_empty(),
        "no advert before the timer"
    );
    assert_eq!(n.status()[0].priority, Some(154));
    assert_eq!(n.status()[0].advertised_skew, Skew(100));
    let (next, kind) = n.poll_timeout().expect("advert timer");
    assert_eq!((kind, next - t), (TimerKind::Advertise, us(1_000_000)));
    n.handle_timeout(next);
    let adverts = sent(&drain(&mut n));
    assert_eq!(adverts.len(), 1);
    assert_eq!(adverts[0].priority, 154);
    assert_eq!(adverts[0].max_adver_int, cs(100));
    assert_eq!(adverts[0].addresses, vec![ip(VIP)]);
    // A CARP router has no priority.
    let mut c = cfg(0, 100, true);
    c.protocol = Protocol::Carp;
    assert_eq!(node(t0, c).status()[0].priority, None);
}

#[test]
fn backup_learns_the_masters_interval() {
    let t0 = Instant::now();
    // Ours 1 s, priority 54; the master advertises every 5 cs with priority 200.
    let mut n = node(t0, cfg(200, 100, true));
    let t = t0 + Duration::from_millis(10);
    assert!(transition(&feed(&mut n, t, HIGHER, 200, 5)).is_none());
    let (deadline, _) = n.poll_timeout().expect("armed");
    assert_eq!(deadline - t, us(150_000 + vrrp_skew_micros(54, cs(5))));
    assert_eq!(n.status()[0].last_master, Some(ip(HIGHER)));
    n.handle_timeout(deadline);
    let acts = drain(&mut n);
    assert_eq!(
        transition(&acts),
        Some((State::Backup, State::Master, Reason::MasterDownTimer))
    );
    // As master it advertises at its own interval again.
    assert_eq!(sent(&acts)[0].max_adver_int, cs(100));
    let (next, _) = n.poll_timeout().expect("advert timer");
    assert_eq!(next - deadline, us(1_000_000));
}

#[test]
fn backup_hearing_priority_zero_takes_over_after_the_skew() {
    let t0 = Instant::now();
    let mut n = node(t0, cfg(154, 100, true));
    let t = t0 + Duration::from_secs(1);
    feed(&mut n, t, HIGHER, 200, 100);
    let t = t + Duration::from_secs(1);
    feed(&mut n, t, HIGHER, 0, 100);
    let (deadline, _) = n.poll_timeout().expect("armed");
    assert_eq!(deadline - t, us(609_375));
    n.handle_timeout(deadline);
    assert_eq!(
        transition(&drain(&mut n)),
        Some((State::Backup, State::Master, Reason::PriorityZero))
    );
}

#[test]
fn preempting_backup_ignores_a_lower_master_and_takes_over_when_its_timer_runs_out() {
    let t0 = Instant::now();
    let mut n = node(t0, cfg(0, 100, true)); // priority 254
    let (first, _) = n.poll_timeout().expect("armed");
    for i in 1..=3 {
        feed(
            &mut n,
            t0 + Duration::from_millis(900 * i),
            HIGHER,
            100,
            100,
        );
        assert_eq!(
            n.poll_timeout().map(|t| t.0),
            Some(first),
            "timer not reset"
        );
    }
    assert_eq!(n.status()[0].last_master, None);
    assert_eq!(n.status()[0].counters.adverts_received, 3);
    n.handle_timeout(first);
    let acts = drain(&mut n);
    assert_eq!(
        transition(&acts),
        Some((State::Backup, State::Master, Reason::MasterDownTimer))
    );
    assert_eq!(sent(&acts)[0].priority, 254);
}

#[test]
fn nopreempt_backup_keeps_a_lower_master() {
    let t0 = Instant::now();
    let mut n = node(t0, cfg(0, 100, false)); // priority 254, no preemption
    for i in 1..=10 {
        let t = t0 + Duration::from_millis(900 * i);
        feed(&mut n, t, HIGHER, 100, 100);
        let (deadline, _) = n.poll_timeout().expect("armed");
        assert_eq!(deadline - t, us(3_000_000 + vrrp_skew_micros(254, cs(100))));
        n.handle_timeout(t);
        assert_eq!(n.state(IF, vhid(7)), Some(State::Backup));
    }
    assert_eq!(n.status()[0].last_master, Some(ip(HIGHER)));
}

#[test]
fn master_answers_priority_zero_with_an_advert_at_once() {
    let t0 = Instant::now();
    let (mut n, t) = master(t0, cfg(154, 100, true));
    let t = t + Duration::from_millis(300);
    let acts = feed(&mut n, t, HIGHER, 0, 100);
    assert!(transition(&acts).is_none());
    assert_eq!(sent(&acts).len(), 1);
    assert_eq!(n.poll_timeout().map(|x| x.0 - t), Some(us(1_000_000)));
}

#[test]
fn master_steps_down_for_a_higher_priority_and_learns_its_interval() {
    let t0 = Instant::now();
    let (mut n, t) = master(t0, cfg(154, 100, true)); // priority 100
    let t = t + Duration::from_millis(300);
    let acts = feed(&mut n, t, LOWER, 101, 20);
    assert_eq!(
        transition(&acts),
        Some((State::Master, State::Backup, Reason::HigherPriorityAdvert))
    );
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::RemoveAddresses { .. })));
    assert!(sent(&acts).is_empty());
    let (deadline, kind) = n.poll_timeout().expect("armed");
    assert_eq!(kind, TimerKind::MasterDown);
    assert_eq!(deadline - t, us(600_000 + vrrp_skew_micros(100, cs(20))));
    assert_eq!(n.status()[0].last_master, Some(ip(LOWER)));
}

#[test]
fn equal_priority_the_higher_address_wins() {
    let t0 = Instant::now();
    let (mut n, t) = master(t0, cfg(154, 100, true));
    // From a lower address: we stay and answer at once.
    let acts = feed(&mut n, t, LOWER, 100, 100);
    assert!(transition(&acts).is_none());
    assert_eq!(sent(&acts).len(), 1);
    // From a higher address: we step down.
    let acts = feed(&mut n, t, HIGHER, 100, 100);
    assert_eq!(
        transition(&acts),
        Some((State::Master, State::Backup, Reason::EqualAdvertTieLost))
    );
}

#[test]
fn master_forces_a_new_election_against_a_lower_master() {
    let t0 = Instant::now();
    let (mut n, t) = master(t0, cfg(0, 100, true));
    let t = t + Duration::from_millis(500);
    let acts = feed(&mut n, t, HIGHER, 1, 100);
    assert!(transition(&acts).is_none());
    let a = sent(&acts);
    assert_eq!((a.len(), a[0].priority), (1, 254));
    assert_eq!(n.poll_timeout().map(|x| x.0 - t), Some(us(1_000_000)));
}

#[test]
fn a_departing_master_resigns_with_priority_zero_then_releases() {
    let t0 = Instant::now();
    for remove in [false, true] {
        let (mut n, t) = master(t0, cfg(154, 100, true));
        if remove {
            n.remove_router(IF, vhid(7));
        } else {
            n.handle(t, Input::Shutdown);
        }
        let acts = drain(&mut n);
        let a = sent(&acts);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].priority, 0);
        let send_at = acts.iter().position(|a| matches!(a, Action::Send { .. }));
        let remove_at = acts
            .iter()
            .position(|a| matches!(a, Action::RemoveAddresses { .. }));
        assert!(send_at < remove_at, "advert before release: {acts:?}");
    }
    // A backup leaves silently.
    let mut n = node(t0, cfg(154, 100, true));
    n.handle(t0, Input::Shutdown);
    assert!(sent(&drain(&mut n)).is_empty());
}

#[test]
fn receive_checks_drop_and_count() {
    let t0 = Instant::now();
    let mut n = node(t0, cfg(154, 100, true));
    let good = advert(7, 200, 100, &[VIP], HIGHER);
    feed_raw(&mut n, t0, HIGHER, 64, good.clone());
    let mut ty = good.clone();
    ty[0] = 0x32;
    feed_raw(&mut n, t0, HIGHER, 255, ty);
    feed_raw(&mut n, t0, HIGHER, 255, good[..7].to_vec());
    feed_raw(&mut n, t0, HIGHER, 255, good[..11].to_vec());
    let mut sum = good.clone();
    sum[8] ^= 1;
    feed_raw(&mut n, t0, HIGHER, 255, sum);
    // The checksum covers the destination: a unicast destination breaks a multicast advert.
    n.handle(
        t0,
        Input::Advert {
            iface: IF,
            src: ip(HIGHER),
            dst: ip(ME),
            ttl: 255,
            payload: good.clone(),
        },
    );
    feed_raw(&mut n, t0, HIGHER, 255, advert(9, 200, 100, &[VIP], HIGHER));
    feed_raw(
        &mut n,
        t0,
        HIGHER,
        255,
        advert(7, 200, 100, &[VIP, "192.0.2.101"], HIGHER),
    );
    feed_raw(
        &mut n,
        t0,
        HIGHER,
        255,
        advert(7, 200, 100, &["192.0.2.101"], HIGHER),
    );
    let mut want = vec![
        (RejectReason::BadTtl, 1),
        (RejectReason::BadType, 1),
        (RejectReason::BadChecksum, 2),
        (RejectReason::AddressMismatch, 2),
        (RejectReason::BadLength, 1),
        (RejectReason::UnknownVhid, 1),
        (RejectReason::TooShort, 1),
    ];
    let mut got = rejected(&n);
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(n.status()[0].counters.adverts_received, 0);
    assert_eq!(RejectReason::BadLength.as_str(), "bad_length");
    // Our own advert looping back is ignored, not counted.
    feed_raw(&mut n, t0, ME, 255, advert(7, 200, 100, &[VIP], ME));
    assert_eq!(rejected(&n).iter().map(|x| x.1).sum::<u64>(), 9);
    assert_eq!(n.status()[0].counters.adverts_received, 0);
}

#[test]
fn the_address_set_may_come_in_any_order() {
    let t0 = Instant::now();
    let mut c = cfg(154, 100, true);
    c.addresses = vec![ip(VIP), ip("192.0.2.101"), ip("2001:db8::1")];
    let mut n = node(t0, c);
    feed_raw(
        &mut n,
        t0,
        HIGHER,
        255,
        advert(7, 200, 100, &["192.0.2.101", VIP], HIGHER),
    );
    assert!(rejected(&n).is_empty(), "{:?}", rejected(&n));
    assert_eq!(n.status()[0].counters.adverts_received, 1);
}

#[test]
fn a_vrrp_advert_for_a_carp_vhid_and_the_reverse_are_protocol_mismatches() {
    let t0 = Instant::now();
    let mut c = cfg(154, 100, true);
    c.protocol = Protocol::Carp;
    let mut carp_node = node(t0, c.clone());
    feed_raw(
        &mut carp_node,
        t0,
        HIGHER,
        255,
        advert(7, 200, 100, &[VIP], HIGHER),
    );
    assert_eq!(
        rejected(&carp_node),
        vec![(RejectReason::ProtocolMismatch, 1)]
    );
    let auth = Authenticator::new(c.key.clone(), c.vhid, &c.addresses);
    let carp_advert = wire::encode(&wire::Advert {
        vhid: vhid(7),
        advbase: Advbase(1),
        advskew: Skew(0),
        demote: 0,
        counter: 1,
        hmac: auth.sign(1),
    });
    let mut vrrp_node = node(t0, cfg(154, 100, true));
    feed_raw(&mut vrrp_node, t0, HIGHER, 255, carp_advert.to_vec());
    assert_eq!(
        rejected(&vrrp_node),
        vec![(RejectReason::ProtocolMismatch, 1)]
    );
    assert_eq!(RejectReason::ProtocolMismatch.as_str(), "protocol_mismatch");
}

#[test]
fn one_advert_per_family_from_the_local_address_of_each() {
    let t0 = Instant::now();
    let mut c = cfg(154, 100, true);
    c.addresses = vec![ip("2001:db8::1"), ip(VIP), ip("fe80::1"), ip("192.0.2.101")];
    let mut n = Carp::new(1);
    n.set_local_address(IF, ip(ME));
    n.set_local_address(IF, ip("fe80::2"));
    n.add_router(t0, c);
    let (t, _) = n.poll_timeout().expect("armed");
    n.handle_timeout(t);
    let acts = drain(&mut n);
    // `sent` decodes with fe80::2 -> ff02::12 for IPv6: it would fail with another source.
    let a = sent(&acts);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].addresses, vec![ip(VIP), ip("192.0.2.101")]);
    assert_eq!(a[1].addresses, vec![ip("2001:db8::1"), ip("fe80::1")]);
    assert_eq!(n.status()[0].counters.adverts_sent, 2);
    // An IPv6 advert carries only the IPv6 addresses, and is checked against those.
    let six = vrrp::encode(
        &VrrpAdvert {
            vrid: vhid(7),
            priority: 0,
            max_adver_int: cs(100),
            addresses: vec![ip("fe80::1"), ip("2001:db8::1")],
        },
        ip("fe80::3"),
        vrrp::group_for(ip("fe80::3")),
    );
    feed_raw(&mut n, t, "fe80::3", 255, six);
    assert!(rejected(&n).is_empty(), "{:?}", rejected(&n));
    assert_eq!(
        sent(&drain(&mut n)).len(),
        2,
        "priority 0: answered at once"
    );
}

#[test]
fn traces_without_the_new_fields_still_parse() {
    let old = r#"{"iface":2,"vhid":7,"advbase":1,"advskew":0,"preempt":true,"addresses":["192.0.2.100"],"key":[115,51]}"#;
    let c: RouterConfig = serde_json::from_str(old).expect("old router config");
    assert_eq!(c.protocol, Protocol::Carp);
    let old = r#"{"advert":{"iface":1,"src":"192.0.2.3","ttl":255,"payload":[33]}}"#;
    let i: Input = serde_json::from_str(old).expect("old advert");
    let Input::Advert { dst, .. } = i else {
        panic!("not an advert: {i:?}");
    };
    assert!(dst.is_unspecified());
    let mut v = c.clone();
    v.protocol = Protocol::Vrrp { interval: cs(5) };
    let line = serde_json::to_string(&v).expect("serialize");
    assert!(
        line.contains(r#""protocol":{"vrrp":{"interval":5}}"#),
        "{line}"
    );
    assert_eq!(serde_json::from_str::<RouterConfig>(&line).ok(), Some(v));
    let bad = line.replace(r#""interval":5"#, r#""interval":0"#);
    assert!(serde_json::from_str::<RouterConfig>(&bad).is_err());
}

#[test]
fn a_lost_link_demotes_every_router_and_vrrp_follows() {
    let t0 = Instant::now();
    let mut n = Carp::new(1);
    n.set_local_address(IF, ip(ME));
    n.set_local_address(2, ip("198.51.100.2"));
    n.add_router(t0, cfg(0, 100, true));
    let mut wan = cfg(0, 100, true);
    wan.iface = 2;
    wan.addresses = vec![ip("198.51.100.100")];
    n.add_router(t0, wan);
    n.handle(
        t0,
        Input::Link {
            iface: IF,
            up: false,
        },
    );
    let s = n.status();
    let wan = s.iter().find(|s| s.iface == 2).expect("wan router");
    assert_eq!(wan.priority, Some(14), "254 - 240");
    assert_eq!(GROUP, vrrp::GROUP_V4.to_string());
}

#[test]
fn a_vrrp_trace_replays_identically() {
    let text = r#"
{"at_us":0,"seed":42}
{"at_us":1,"local-address":{"iface":1,"addr":"192.0.2.2"}}
{"at_us":2,"add-router":{"iface":1,"vhid":7,"advbase":1,"advskew":154,"preempt":true,"addresses":["192.0.2.100"],"key":[115],"protocol":{"vrrp":{"interval":5}}}}
{"at_us":200000,"timeout":null}
{"at_us":210000,"input":{"advert":{"iface":1,"src":"192.0.2.3","dst":"224.0.0.18","ttl":255,"payload":[49,7,200,1,0,5,0,0,192,0,2,100]}}}
{"at_us":220000,"input":"shutdown"}
"#;
    let trace = carp::trace::parse(text).expect("parses");
    let actions = carp::trace::replay(&trace).expect("replays");
    let transitions: Vec<(State, State, Reason)> = actions
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Transition {
                from, to, reason, ..
            } => Some((*from, *to, *reason)),
            _ => None,
        })
        .collect();
    // The hand-written advert's checksum is 0: rejected, so the router stays master until
    // it shuts down.
    assert_eq!(
        transitions,
        vec![
            (State::Init, State::Backup, Reason::Startup),
            (State::Backup, State::Master, Reason::MasterDownTimer),
            (State::Master, State::Init, Reason::Shutdown),
        ]
    );
    assert!(actions.iter().any(|(_, a)| matches!(
        a,
        Action::Rejected {
            reason: RejectReason::BadChecksum,
            ..
        }
    )));
    let sent: Vec<u8> = actions
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Send { payload, .. } => Some(payload[2]),
            _ => None,
        })
        .collect();
    assert_eq!(sent.last(), Some(&0), "priority 0 at shutdown: {sent:?}");
    assert_eq!(carp::trace::replay(&trace).expect("again"), actions);
}

/// A master's adverts keep their cadence when each wake-up is late: the next one is due an
/// interval after the last one was due, not after it was sent. (Scheduled from the send time,
/// a timer that fires 1.3 ms late made 10 ms adverts leave every 11.3 ms: bench/README.md,
/// "VRRPv3 adverts under load".) A master stalled for longer than an interval sends one advert,
/// not a burst.
#[test]
fn late_wake_ups_do_not_stretch_the_advert_interval() {
    let t0 = Instant::now();
    let mut n = node(t0, cfg(0, 1, true));
    // Take over (no master heard); then 100 adverts, each handled 1.3 ms after its due time.
    for _ in 0..1000 {
        match n.poll_timeout() {
            Some((due, _)) => {
                n.handle_timeout(due + us(1300));
                drain(&mut n);
            }
            None => break,
        }
        if n.state(IF, vhid(7)) == Some(State::Master) {
            break;
        }
    }
    assert_eq!(n.state(IF, vhid(7)), Some(State::Master));
    let (first, _) = n.poll_timeout().expect("advert timer");
    let mut sends = 0;
    for _ in 0..100 {
        let (due, _) = n.poll_timeout().expect("advert timer");
        n.handle_timeout(due + us(1300));
        sends += sent(&drain(&mut n)).len();
    }
    assert_eq!(sends, 100);
    let (next, _) = n.poll_timeout().expect("advert timer");
    assert_eq!(
        next - first,
        Duration::from_millis(1000),
        "100 intervals of 10 ms"
    );
    // A stall of 35 ms: one advert, then the cadence starts again from then.
    let (due, _) = n.poll_timeout().expect("advert timer");
    let now = due + Duration::from_millis(35);
    n.handle_timeout(now);
    assert_eq!(sent(&drain(&mut n)).len(), 1);
    let (next, _) = n.poll_timeout().expect("advert timer");
    assert_eq!(next, now + Duration::from_millis(10));
}
