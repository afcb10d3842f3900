//! Three nodes (advskew 0 / 100 / 200, each a state sync peer of the others): established
//! NATed connections survive two successive failures (fw1 dies and fw2 takes over, then fw2
//! dies and fw3 takes over) and the first node's return (failback with preempt), and make
//! progress through every node that is master on the way.

mod common;

use common::nat_cluster::*;
use common::*;
use std::time::Duration;

const LINKS: [&str; 3] = ["eth0", "eth1", "eth2"];

/// The node loses power: its links go down and its daemon dies without a farewell.
fn power_cut(n: &mut Node) {
    set_links(n, &LINKS, false);
    n.kill();
}

#[test]
fn connections_survive_two_failures_and_the_first_nodes_return() {
    if !lab::require_netns() {
        return;
    }
    let mut c = three_node_cluster("three_nodes_two_failures");
    let mut t = Traffic::start(&c);
    let ok = lab::wait_until(Duration::from_secs(15), || {
        c.fw[1..]
            .iter()
            .all(|n| conntrack_count(&n.host) >= CONNS + UDP_FLOWS)
    });
    assert!(
        ok,
        "the backups hold {} and {} of {} states",
        conntrack_count(&c.fw[1].host),
        conntrack_count(&c.fw[2].host),
        CONNS + UDP_FLOWS
    );

    // fw1 dies: fw2 (the better backup) takes over, and every connection moves through it.
    t.mark();
    power_cut(&mut c.fw[0]);
    for v in [1, 2] {
        c.fw[1].expect_state(v, "MASTER", TAKEOVER);
    }
    for v in [1, 2] {
        assert_eq!(c.fw[2].state(v), "BACKUP");
    }
    // A connection resumes at its next retransmission, backed off to ~3 s.
    std::thread::sleep(Duration::from_secs(6));
    assert_all_alive("fw1 died, fw2 master", &t.report(), &c.fw[1].log());

    // fw2 dies too: fw3 takes over. A connection whose retransmission had just gone out when
    // fw2 died waits for the next one, twice as far off: up to ~13 s.
    t.mark();
    power_cut(&mut c.fw[1]);
    for v in [1, 2] {
        c.fw[2].expect_state(v, "MASTER", TAKEOVER);
    }
    std::thread::sleep(Duration::from_secs(16));
    assert_all_alive("fw2 died, fw3 master", &t.report(), &c.fw[2].log());

    // fw1 comes back: it fetches the table from fw3, then takes its VIPs back (preempt).
    t.mark();
    set_links(&c.fw[0], &LINKS, true);
    c.fw[0].restart();
    for v in [1, 2] {
        c.fw[0].expect_state(v, "MASTER", Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_secs(5));
    assert_all_alive("fw1 back", &t.report(), &c.fw[0].log());
    drop(t);
    drop(c);
}
