//! `[hooks]`: programs run on transitions and node-wide events, with their arguments and
//! environment, in order per VIP, bounded in time, their exit status logged.

mod common;

use common::*;
use lab::Lab;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const LAN: &[(&str, &str)] = &[("lan", "eth0")];
const VIP4: &[&str] = &["192.0.2.100/24"];

fn vip7() -> [VipSpec<'static>; 1] {
    [VipSpec {
        vhid: 7,
        interface: "lan",
        addresses: VIP4,
    }]
}

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write hook");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod hook");
}

/// A hook that appends `NAME | args | env` as one line to `log`.
fn recorder(dir: &Path, name: &str, log: &Path) {
    script(
        &dir.join(format!("{name}.sh")),
        &format!(
            "echo \"{name} | $* | $TANDEM_EVENT,$TANDEM_VHID,$TANDEM_INTERFACE,$TANDEM_DEVICE,$TANDEM_ADDRESSES,$TANDEM_OLD_STATE,$TANDEM_NEW_STATE,$TANDEM_REASON,$TANDEM_NODE,$TANDEM_DEMOTION\" >> '{}'",
            log.display()
        ),
    );
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_lines(log: &Path, n: usize, node: &Node) -> Vec<String> {
    let ok = lab::wait_until(Duration::from_secs(20), || lines(log).len() >= n);
    assert!(
        ok,
        "expected {n} hook lines, got {:?}\nlog:\n{}",
        lines(log),
        node.log()
    );
    lines(log)
}

#[test]
fn transitions_run_their_hooks_in_order_with_arguments_and_environment() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("hooks_transitions_in_order").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let h1 = lab.host("fw1").expect("fw1");
    lab.connect(&h1, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    let dir = lab.dir().to_path_buf();
    let log = dir.join("hooks.log");
    for name in ["master", "backup", "init", "transition", "demotion"] {
        recorder(&dir, name, &log);
    }
    let cfg = write_config_extra(
        &lab,
        "fw1",
        0,
        true,
        "s3cret",
        LAN,
        &vip7(),
        "[hooks]\non_master = \"master.sh\"\non_backup = \"backup.sh\"\non_init = \"init.sh\"\n\
         on_transition = \"transition.sh\"\non_demotion = \"demotion.sh\"\ntimeout = 10\n",
    );
    let fw1 = Node::start(&h1, cfg);
    fw1.expect_state(7, "MASTER", ELECTION);
    let got = wait_lines(&log, 4, &fw1);
    assert_eq!(
        got[..4],
        [
            "backup | backup 7 lan INIT BACKUP startup | backup,7,lan,eth0,192.0.2.100/24,INIT,BACKUP,startup,fw1,",
            "transition | backup 7 lan INIT BACKUP startup | backup,7,lan,eth0,192.0.2.100/24,INIT,BACKUP,startup,fw1,",
            "master | master 7 lan BACKUP MASTER master-down-timer | master,7,lan,eth0,192.0.2.100/24,BACKUP,MASTER,master-down-timer,fw1,",
            "transition | master 7 lan BACKUP MASTER master-down-timer | master,7,lan,eth0,192.0.2.100/24,BACKUP,MASTER,master-down-timer,fw1,",
        ],
        "{}",
        fw1.log()
    );

    // Link down: the VIP goes to INIT and the node is demoted (node-wide queue).
    fw1.host.set_link("eth0", false).expect("link down");
    fw1.expect_state(7, "INIT", TAKEOVER);
    let got = wait_lines(&log, 7, &fw1);
    let rest = &got[4..];
    let vip: Vec<&String> = rest.iter().filter(|l| !l.starts_with("demotion")).collect();
    assert_eq!(
        vip,
        [
            "init | init 7 lan MASTER INIT link-down | init,7,lan,eth0,192.0.2.100/24,MASTER,INIT,link-down,fw1,",
            "transition | init 7 lan MASTER INIT link-down | init,7,lan,eth0,192.0.2.100/24,MASTER,INIT,link-down,fw1,",
        ],
        "{got:?}"
    );
    let demotion: Vec<&String> = rest.iter().filter(|l| l.starts_with("demotion")).collect();
    assert_eq!(
        demotion,
        ["demotion | demotion   0 240 link-down(lan)+240 | demotion,,,,,0,240,link-down(lan)+240,fw1,240"],
        "{got:?}"
    );
    let st = fw1.status();
    let hooks = st["hooks"].as_array().expect("hooks in status");
    let master = hooks
        .iter()
        .find(|h| h["hook"] == "on_master")
        .expect("on_master in status");
    assert_eq!(master["result"], "exit 0", "{st}");
    assert_eq!(master["runs"], 1, "{st}");
    assert!(fw1
        .log()
        .contains("hook on_master (vhid=7 iface=lan BACKUP -> MASTER)"));
}

#[test]
fn a_hanging_hook_is_killed_at_its_timeout_and_a_failing_one_is_logged() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("hooks_hang_and_fail").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let h1 = lab.host("fw1").expect("fw1");
    lab.connect(&h1, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    let dir = lab.dir().to_path_buf();
    let log = dir.join("hooks.log");
    let survived = dir.join("survived");
    recorder(&dir, "transition", &log);
    recorder(&dir, "applied", &log);
    script(
        &dir.join("backup.sh"),
        "echo 'backup hook failed hard' >&2; echo 'second line' >&2; exit 3",
    );
    // Starts a child in its group that would leave a mark after 4 s, then hangs.
    script(
        &dir.join("master.sh"),
        &format!("(sleep 4; touch '{}') &\nsleep 60", survived.display()),
    );
    let cfg = write_config_extra(
        &lab,
        "fw1",
        0,
        true,
        "s3cret",
        LAN,
        &vip7(),
        "[hooks]\non_master = \"master.sh\"\non_backup = \"backup.sh\"\n\
         on_transition = \"transition.sh\"\non_config_applied = \"applied.sh\"\ntimeout = 1\n",
    );
    let fw1 = Node::start(&h1, cfg);
    fw1.expect_state(7, "MASTER", ELECTION);
    // on_transition for BACKUP -> MASTER runs only after on_master was killed.
    let got = wait_lines(&log, 2, &fw1);
    assert!(
        got[0].starts_with("transition | backup 7 lan INIT BACKUP"),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("transition | master 7 lan BACKUP MASTER"),
        "{got:?}"
    );
    let ok = lab::wait_until(Duration::from_secs(10), || {
        fw1.log()
            .contains("timed out after 1 s (process group killed)")
    });
    assert!(ok, "no timeout logged:\n{}", fw1.log());
    let daemon_log = fw1.log();
    assert!(
        daemon_log.contains("hook on_backup (vhid=7 iface=lan INIT -> BACKUP)")
            && daemon_log.contains("exit 3: backup hook failed hard"),
        "{daemon_log}"
    );
    assert!(daemon_log.contains(" WARN "), "{daemon_log}");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !survived.exists(),
        "the hanging hook's child outlived the kill of its process group"
    );
    let st = fw1.status();
    let hooks = st["hooks"].as_array().expect("hooks");
    let find = |n: &str| {
        hooks
            .iter()
            .find(|h| h["hook"] == n)
            .unwrap_or_else(|| panic!("{n} missing in {st}"))
    };
    assert_eq!(
        find("on_backup")["result"],
        "exit 3: backup hook failed hard"
    );
    assert_eq!(find("on_backup")["failures"], 1);
    assert!(find("on_master")["result"]
        .as_str()
        .is_some_and(|r| r.starts_with("timed out after 1 s")));
    let (_, text, _) = fw1.cli(&["status"]);
    assert!(
        text.contains(
            "hook on_backup (vhid=7 iface=lan INIT -> BACKUP): exit 3: backup hook failed hard"
        ),
        "{text}"
    );

    // A reload is a config applied: its hook runs with the reason.
    let (ok, out, err) = fw1.cli(&["reload"]);
    assert!(ok, "{out}{err}");
    let got = wait_lines(&log, 3, &fw1);
    assert!(
        got[2].starts_with("applied | config-applied   ") && got[2].contains("reloaded "),
        "{got:?}"
    );
}
