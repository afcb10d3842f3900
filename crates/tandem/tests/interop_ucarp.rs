//! Interop with ucarp (Debian's package), an independent CARP implementation, in one vhid.

mod common;

use common::*;
use lab::{Host, Lab, Process};
use std::time::Duration;

const VIP: &str = "192.0.2.100";

/// tandem on fw1 (192.0.2.2), ucarp on fw2 (192.0.2.3), one switch.
fn setup(lab: &mut Lab) -> (Host, Host) {
    let sw = lab.switch("lan").expect("switch");
    let h1 = lab.host("fw1").expect("fw1");
    let h2 = lab.host("fw2").expect("fw2");
    lab.connect(&h1, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    lab.connect(&h2, "eth0", &sw, &["192.0.2.3/24"])
        .expect("connect");
    (h1, h2)
}

fn start_tandem(lab: &Lab, host: &Host, skew: u8, pass: &str) -> Node {
    let vips = [VipSpec {
        vhid: 7,
        interface: "lan",
        addresses: &["192.0.2.100/24"],
    }];
    let cfg = write_config(lab, "fw1", skew, true, pass, &[("lan", "eth0")], &vips);
    Node::start(host, cfg)
}

/// ucarp with up/down scripts that add and remove the VIP, so "who holds the VIP" is comparable.
fn start_ucarp(lab: &Lab, host: &Host, skew: u8, pass: &str) -> Process {
    let up = lab.dir().join("ucarp-up.sh");
    let down = lab.dir().join("ucarp-down.sh");
    std::fs::write(&up, "#!/bin/sh\nip addr add \"$2\"/24 dev \"$1\"\n").expect("write script");
    std::fs::write(&down, "#!/bin/sh\nip addr del \"$2\"/24 dev \"$1\"\n").expect("write script");
    for f in [&up, &down] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let skew = skew.to_string();
    let upscript = format!("--upscript={}", up.display());
    let downscript = format!("--downscript={}", down.display());
    host.spawn(&[
        "ucarp",
        "-i",
        "eth0",
        "-s",
        "192.0.2.3",
        "-v",
        "7",
        "-p",
        pass,
        "-a",
        VIP,
        "-b",
        "1",
        "-k",
        &skew,
        "-P",
        "-z",
        &upscript,
        &downscript,
    ])
    .expect("spawn ucarp (is the ucarp package installed?)")
}

fn ucarp_holds(h: &Host) -> bool {
    h.has_address("eth0", VIP)
}

#[test]
fn tandem_with_lower_skew_is_master_over_ucarp() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("tandem_with_lower_skew_is_master_over_ucarp").expect("lab");
    let (h1, h2) = setup(&mut lab);
    let _ucarp = start_ucarp(&lab, &h2, 100, "s3cret");
    let fw1 = start_tandem(&lab, &h1, 0, "s3cret");
    fw1.expect_state(7, "MASTER", ELECTION);
    // ucarp may have become master before tandem started; it must step down and stay down.
    assert!(
        lab::wait_until(TAKEOVER, || !ucarp_holds(&h2)),
        "ucarp still holds the VIP"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(!ucarp_holds(&h2), "ucarp took the VIP back");
    assert_eq!(fw1.state(7), "MASTER");
    assert!(h1.has_address("eth0", VIP));
    let v = fw1.vip(7);
    assert!(
        v["adverts_rejected"]
            .as_object()
            .is_some_and(|m| m.is_empty()),
        "{v}"
    );
}

#[test]
fn ucarp_with_lower_skew_is_master_and_tandem_follows() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("ucarp_with_lower_skew_is_master_and_tandem_follows").expect("lab");
    let (h1, h2) = setup(&mut lab);
    let fw1 = start_tandem(&lab, &h1, 100, "s3cret");
    let mut ucarp = start_ucarp(&lab, &h2, 0, "s3cret");
    assert!(
        lab::wait_until(ELECTION, || ucarp_holds(&h2)),
        "ucarp never became master"
    );
    fw1.expect_state(7, "BACKUP", TAKEOVER);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(fw1.state(7), "BACKUP", "tandem preempted a faster ucarp");
    assert!(!h1.has_address("eth0", VIP));
    let v = fw1.vip(7);
    assert_eq!(v["last_master"], "192.0.2.3", "{v}");
    assert!(v["adverts_received"].as_u64().unwrap_or(0) >= 2, "{v}");
    // ucarp dies (it sends no bow-out): tandem takes over after master-down.
    ucarp.kill().expect("kill ucarp");
    fw1.expect_state(7, "MASTER", TAKEOVER);
    assert!(h1.has_address("eth0", VIP));
}

#[test]
fn wrong_passphrase_isolates_both_sides_and_is_counted() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("wrong_passphrase_isolates_both_sides_and_is_counted").expect("lab");
    let (h1, h2) = setup(&mut lab);
    let _ucarp = start_ucarp(&lab, &h2, 0, "other");
    let fw1 = start_tandem(&lab, &h1, 100, "s3cret");
    // Neither accepts the other's adverts, so both end up master.
    fw1.expect_state(7, "MASTER", ELECTION);
    assert!(
        lab::wait_until(ELECTION, || ucarp_holds(&h2)),
        "ucarp never became master"
    );
    let ok = lab::wait_until(Duration::from_secs(5), || {
        fw1.vip(7)["adverts_rejected"]["bad_hmac"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    });
    assert!(ok, "bad HMAC not counted: {}", fw1.vip(7));
    assert_eq!(fw1.vip(7)["adverts_received"], 0);
    assert!(
        fw1.log()
            .contains("advert from 192.0.2.3 rejected reason=bad_hmac"),
        "{}",
        fw1.log()
    );
}
