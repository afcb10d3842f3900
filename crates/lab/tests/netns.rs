//! Namespace tests for the lab itself (need root; see `lab::require_netns`).

use lab::{require_netns, wait_until, Lab};
use std::process::Command;
use std::time::Duration;

fn netns_list() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_hosts_on_a_switch_ping_each_other() {
    if !require_netns() {
        return;
    }
    let mut lab = Lab::new("two_hosts_on_a_switch_ping_each_other").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let a = lab.host("a").expect("host a");
    let b = lab.host("b").expect("host b");
    lab.connect(&a, "eth0", &sw, &["192.0.2.2/24", "2001:db8:1::2/64"])
        .expect("connect a");
    lab.connect(&b, "eth0", &sw, &["192.0.2.3/24", "2001:db8:1::3/64"])
        .expect("connect b");

    assert!(a.has_address("eth0", "192.0.2.2"));
    assert!(a.has_address("eth0", "2001:db8:1::2"));
    assert!(!a.has_address("eth0", "192.0.2.3"));
    assert!(a.ping("192.0.2.3", 1, 2), "a -> b IPv4");
    assert!(b.ping("192.0.2.2", 1, 2), "b -> a IPv4");
    assert!(a.ping("2001:db8:1::3", 1, 2), "a -> b IPv6");
    let mac = a.mac("eth0").expect("mac");
    assert_eq!(mac.len(), 17, "{mac}");
    assert!(b
        .run(&["ip", "neigh", "show", "192.0.2.2"])
        .expect("neigh")
        .contains(&mac));

    // A cable pull on the switch side: the host sees NO-CARRIER and pings fail.
    assert!(a.has_carrier("eth0"));
    sw.set_port(&a, "eth0", false).expect("port down");
    assert!(wait_until(Duration::from_secs(2), || !a.has_carrier("eth0")));
    assert!(a
        .run(&["ip", "link", "show", "eth0"])
        .expect("link")
        .contains("NO-CARRIER"));
    assert!(!b.ping("192.0.2.2", 1, 1));
    sw.set_port(&a, "eth0", true).expect("port up");
    assert!(wait_until(Duration::from_secs(2), || a.has_carrier("eth0")));
    assert!(b.ping("192.0.2.2", 3, 2));

    // Host-side link down.
    b.set_link("eth0", false).expect("link down");
    assert!(!a.ping("192.0.2.3", 1, 1));

    // Run errors carry stderr.
    let err = a
        .run(&["ip", "link", "show", "nosuchdev"])
        .expect_err("must fail");
    assert!(format!("{err:#}").contains("nosuchdev"), "{err:#}");
}

#[test]
fn point_to_point_link_and_spawn() {
    if !require_netns() {
        return;
    }
    let mut lab = Lab::new("point_to_point_link_and_spawn").expect("lab");
    let fw1 = lab.host("fw1").expect("fw1");
    let fw2 = lab.host("fw2").expect("fw2");
    lab.link(
        &fw1,
        "sync0",
        &["203.0.113.1/24"],
        &fw2,
        "sync0",
        &["203.0.113.2/24"],
    )
    .expect("link");
    assert!(fw1.ping("203.0.113.2", 1, 2));

    let mut p = fw1
        .spawn(&["sh", "-c", "echo hello; echo oops >&2; exec sleep 30"])
        .expect("spawn");
    assert!(wait_until(Duration::from_secs(2), || p
        .stdout()
        .contains("hello")));
    assert!(p.stderr().contains("oops"));
    assert!(fw1
        .run(&["ip", "netns", "identify", &p.pid().to_string()])
        .expect("identify")
        .contains(fw1.ns()));
    p.signal("TERM").expect("term");
    let st = p
        .wait_timeout(Duration::from_secs(2))
        .expect("wait")
        .expect("exited");
    assert!(!st.success());

    let done = fw2
        .spawn(&["true"])
        .expect("spawn true")
        .wait_timeout(Duration::from_secs(2))
        .expect("wait");
    assert!(done.is_some_and(|s| s.success()));
}

#[test]
fn drop_cleans_up_namespaces_and_processes() {
    if !require_netns() {
        return;
    }
    let (names, pid) = {
        let mut lab = Lab::new("drop_cleans_up_namespaces_and_processes").expect("lab");
        let sw = lab.switch("sw").expect("switch");
        let h = lab.host("h").expect("host");
        lab.connect(&h, "eth0", &sw, &["198.51.100.2/24"])
            .expect("connect");
        let p = h.spawn(&["sleep", "60"]).expect("spawn");
        let pid = p.pid();
        std::mem::forget(p); // the lab itself must still kill it
                             // Also a process started outside spawn(): killed because it lives in the namespace.
        let list = netns_list();
        for ns in lab.namespaces() {
            assert!(list.contains(ns.as_str()), "{ns} missing from {list}");
        }
        (lab.namespaces().to_vec(), pid)
    };
    let list = netns_list();
    for ns in &names {
        assert!(!list.contains(ns.as_str()), "{ns} left behind: {list}");
    }
    assert!(wait_until(Duration::from_secs(2), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
    }));
}

#[test]
fn drop_cleans_up_on_panic() {
    if !require_netns() {
        return;
    }
    let names = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let n2 = names.clone();
    let r = std::thread::spawn(move || {
        let mut lab = Lab::new("drop_cleans_up_on_panic").expect("lab");
        lab.host("x").expect("host");
        *n2.lock().expect("lock") = lab.namespaces().to_vec();
        panic!("test panic");
    })
    .join();
    assert!(r.is_err());
    let list = netns_list();
    let names = names.lock().expect("lock");
    assert_eq!(names.len(), 1);
    assert!(!list.contains(names[0].as_str()), "left behind: {list}");
}

#[test]
fn stale_namespaces_of_dead_processes_are_removed() {
    if !require_netns() {
        return;
    }
    // Fake a leftover of a dead process: same test name, a pid that does not exist.
    let probe = Lab::new("stale_namespaces_test").expect("lab");
    let hash_part = probe.prefix().split('p').next().expect("prefix").to_owned();
    drop(probe);
    let stale = format!("{hash_part}p4194999n0-old");
    let _ = Command::new("ip").args(["netns", "add", &stale]).status();
    assert!(netns_list().contains(&stale));
    let _lab = Lab::new("stale_namespaces_test").expect("lab");
    assert!(!netns_list().contains(&stale), "stale namespace survived");
}
