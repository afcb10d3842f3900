//! Logging to journald: when stderr is the journal's stream (`JOURNAL_STREAM` names it, as
//! systemd sets it), the daemon writes its log to the journal socket with priorities and
//! structured fields; a state change carries VHID, INTERFACE, STATE and REASON.
//!
//! The journal here is a stand-in: a datagram socket at /run/systemd/journal/socket on a
//! tmpfs mounted over /run in a private mount namespace of the test's own network namespace,
//! so the host's /run (and its journal, if any) is never touched.

mod common;

use common::*;
use lab::Lab;
use std::time::Duration;

/// The stand-in journal: reads native-protocol datagrams (`NAME=value\n`, or `NAME\n`, a
/// 64-bit little-endian length, the value, `\n`) and writes each record as one JSON line.
const RECEIVER: &str = r#"
import json, os, socket, sys, time
path, out = sys.argv[1], sys.argv[2]

def parse(d):
    rec, i = {}, 0
    while i < len(d):
        j = d.index(b"\n", i)
        line = d[i:j]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = j + 1
        else:
            n = int.from_bytes(d[j + 1:j + 9], "little")
            k, v = line, d[j + 9:j + 9 + n]
            i = j + 9 + n + 1
        rec[k.decode()] = v.decode("utf-8", "replace")
    return rec

s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(0.5)
parent = os.getppid()
end = time.time() + 120
with open(out, "a", buffering=1) as f:
    # Until the daemon (this process's parent, after its exec) is gone, at most 2 minutes.
    while time.time() < end and os.getppid() == parent:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        if d:
            f.write(json.dumps(parse(d)) + "\n")
"#;

#[test]
fn under_systemd_the_log_goes_to_the_journal_with_fields() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("journald_fields").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let h = lab.host("fw1").expect("host");
    lab.connect(&h, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    let vips = [VipSpec {
        vhid: 3,
        interface: "lan",
        addresses: &["192.0.2.100/24"],
    }];
    let config = write_config(&lab, "fw1", 0, true, "s3cret", &[("lan", "eth0")], &vips);
    let receiver = lab.dir().join("journal.py");
    std::fs::write(&receiver, RECEIVER).expect("write receiver");
    let records = lab.dir().join("journal.records");
    let script = format!(
        r#"set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal
python3 '{receiver}' /run/systemd/journal/socket '{records}' &
while [ ! -S /run/systemd/journal/socket ]; do sleep 0.05; done
export JOURNAL_STREAM="$(stat -L -c %d:%i /proc/self/fd/2)"
exec {TANDEM} run --config '{config}'
"#,
        receiver = receiver.display(),
        records = records.display(),
        config = config.display(),
    );
    let mut p = h
        .spawn(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .expect("spawn");
    let node = Node {
        host: h.clone(),
        config: config.clone(),
        process: None,
    };
    node.expect_state(3, "MASTER", ELECTION);
    let read = || std::fs::read_to_string(&records).unwrap_or_default();
    let transition = |text: &str| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| {
                r["MESSAGE"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("vhid=3 iface=lan BACKUP -> MASTER"))
            })
    };
    let found = lab::wait_until(Duration::from_secs(5), || transition(&read()).is_some());
    assert!(
        found,
        "no transition record in the journal:\n{}\nstderr:\n{}",
        read(),
        p.stderr()
    );
    let rec = transition(&read()).unwrap_or_default();
    for (field, value) in [
        ("VHID", "3"),
        ("INTERFACE", "lan"),
        ("DEVICE", "eth0"),
        ("STATE", "MASTER"),
        ("FROM", "BACKUP"),
        ("REASON", "master-down-timer"),
        ("PRIORITY", "5"),
        ("SYSLOG_IDENTIFIER", "tandem"),
    ] {
        assert_eq!(rec[field], value, "{field} in {rec}");
    }
    // Journald's own formatting only: the log did not also go to stderr.
    assert!(
        !p.stderr().contains("BACKUP -> MASTER"),
        "logged to stderr too:\n{}",
        p.stderr()
    );

    p.signal("TERM").expect("SIGTERM");
    let st = p.wait_timeout(Duration::from_secs(10)).expect("wait");
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", p.stderr());
    assert!(
        read().contains(r#""MESSAGE": "node fw1 stopped""#),
        "no last line:\n{}",
        read()
    );
}

#[test]
fn outside_systemd_the_log_goes_to_stderr() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("journald_not_under_systemd").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let h = lab.host("fw1").expect("host");
    lab.connect(&h, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    let vips = [VipSpec {
        vhid: 4,
        interface: "lan",
        addresses: &["192.0.2.100/24"],
    }];
    let config = write_config(&lab, "fw1", 0, true, "s3cret", &[("lan", "eth0")], &vips);
    // A JOURNAL_STREAM that names another file (inherited from a parent under systemd) is
    // not stderr: the log stays on stderr.
    let script = format!(
        "export JOURNAL_STREAM=\"$(stat -L -c %d:%i /)\"; exec {TANDEM} run --config '{}'",
        config.display()
    );
    let mut node = Node {
        host: h.clone(),
        config,
        process: Some(h.spawn(&["sh", "-c", &script]).expect("spawn")),
    };
    node.expect_state(4, "MASTER", ELECTION);
    let log = node.log();
    assert!(
        log.contains("vhid=4 iface=lan BACKUP -> MASTER reason=master-down-timer device=eth0"),
        "{log}"
    );
    // Fields the message already says are not repeated.
    assert!(
        !log.contains("vhid=4 interface=") && !log.contains("state="),
        "{log}"
    );
    node.sigterm();
}
