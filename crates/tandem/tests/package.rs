//! The Debian package: it builds (scripts/package.sh), holds what it must with the right modes,
//! its unit passes `systemd-analyze verify`, and the PACKAGED binary runs the PACKAGED example
//! config (adapted to a namespace) under the unit's limits: it tells systemd it is ready,
//! reports status lines, pings the watchdog, takes its VIP, and on SIGTERM says it stops and
//! releases the VIP.
//!
//! The package is `$TANDEM_DEB` when set (scripts/test.sh builds the release package and sets
//! it), else one built here by scripts/package.sh from the test build of the binary. Nothing
//! is installed on the host: the package is unpacked with `dpkg -x` into a temp dir.

use lab::Lab;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The .deb under test, and the folder that holds a freshly built one.
fn deb() -> (PathBuf, Option<tempfile::TempDir>) {
    if let Some(d) = std::env::var_os("TANDEM_DEB").filter(|d| !d.is_empty()) {
        return (PathBuf::from(d), None);
    }
    let out = tempfile::tempdir().expect("tempdir");
    let printed = run(Command::new("bash")
        .arg(repo().join("scripts/package.sh"))
        .args(["--binary", TANDEM, "--out"])
        .arg(out.path()));
    let path = PathBuf::from(
        printed
            .lines()
            .last()
            .expect("package.sh printed the .deb")
            .trim(),
    );
    assert!(path.exists(), "{} missing", path.display());
    (path, Some(out))
}

/// The package unpacked into a fresh root.
fn unpack(deb: &Path) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    run(Command::new("dpkg").arg("-x").arg(deb).arg(root.path()));
    root
}

#[test]
fn the_package_holds_what_it_must_and_its_unit_verifies() {
    let (deb, _keep) = deb();
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for want in [
        "Package: tandem",
        "Depends: libc6",
        "conffiles",
        "postinst",
        "postrm",
    ] {
        assert!(info.contains(want), "{want} not in --info:\n{info}");
    }
    let conffiles = run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/tandem/tandem.toml");
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let entry = |path: &str| {
        contents
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{contents}"))
            .to_string()
    };
    assert!(entry("./usr/sbin/tandem").starts_with("-rwxr-xr-x root/root"));
    assert!(entry("./lib/systemd/system/tandem.service").starts_with("-rw-r--r-- root/root"));
    assert!(entry("./etc/tandem/tandem.toml").starts_with("-rw------- root/root"));
    assert!(entry("./var/lib/tandem/").starts_with("drwx------ root/root"));
    entry("./usr/share/man/man8/tandem.8.gz");
    entry("./usr/share/man/man8/tandem-run.8.gz");
    entry("./usr/share/doc/tandem/copyright");

    // The maintainer scripts parse (they are not run: that would change the host's systemd).
    let control = tempfile::tempdir().expect("tempdir");
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(control.path()));
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh")
            .arg("-n")
            .arg(control.path().join(script)));
    }
    // lintian, where it is installed (it is not in scripts/deps.sh: big, and only advisory).
    if let Ok(out) = Command::new("lintian").arg(&deb).output() {
        let said = String::from_utf8_lossy(&out.stdout);
        let bad: Vec<&str> = said
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
            .collect();
        assert!(bad.is_empty(), "lintian:\n{said}");
    }

    let root = unpack(&deb);
    let r = root.path();
    let mode = std::fs::metadata(r.join("var/lib/tandem"))
        .expect("var/lib/tandem")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(r.join("usr/share/man/man8/tandem.8.gz")));
    assert!(man.contains(".TH tandem 8"), "{man}");
    assert!(man.contains("/etc/tandem/tandem.toml"), "{man}");

    let unit = std::fs::read_to_string(r.join("lib/systemd/system/tandem.service")).expect("unit");
    for want in [
        "Type=notify",
        "ExecStart=/usr/sbin/tandem run",
        "ExecReload=/usr/sbin/tandem reload",
        "WatchdogSec=10",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/tandem /run/tandem",
        "RuntimeDirectory=tandem",
        "StateDirectory=tandem",
        "StateDirectoryMode=0700",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
    ] {
        assert!(
            unit.lines().any(|l| l == want),
            "{want} not in the unit:\n{unit}"
        );
    }
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("ProtectKernelTunables=")),
        "the daemon writes sysctls under /proc/sys/net"
    );

    // `systemd-analyze verify` in the unpacked root, so it finds the packaged binary; the
    // units the service refers to (targets) are the host's, copied in.
    let sd = Path::new("/usr/lib/systemd/system");
    if !sd.is_dir()
        || Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze or /usr/lib/systemd/system missing (scripts/deps.sh installs systemd)"
        );
        eprintln!("skipping systemd-analyze verify: systemd is not installed");
        return;
    }
    std::fs::create_dir_all(r.join("usr/lib/systemd")).expect("mkdir");
    run(Command::new("cp")
        .arg("-a")
        .arg(sd)
        .arg(r.join("usr/lib/systemd/")));
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", r.display()))
        .arg("/lib/systemd/system/tandem.service")
        .output()
        .expect("systemd-analyze");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    assert!(
        !said.contains("tandem.service"),
        "systemd-analyze verify warns:\n{said}"
    );
}

/// `+net_admin,+net_raw,...` from the unit's `CapabilityBoundingSet=`.
fn bounding_set(unit: &str) -> String {
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet in the unit");
    let mut s = String::from("-all");
    for c in caps.split_whitespace() {
        s += ",+";
        s += &c.trim_start_matches("CAP_").to_lowercase();
    }
    s
}

/// Every datagram the daemon sent to the notify socket so far.
struct Notifications {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        let sock = UnixDatagram::bind(path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Notifications {
            sock,
            seen: Vec::new(),
        }
    }

    /// Reads until one notification satisfies `f`, or `within` passes.
    fn wait_for(&mut self, within: Duration, f: impl Fn(&str) -> bool) -> bool {
        self.wait_count(within, 1, f)
    }

    /// Reads until `n` notifications satisfy `f`, or `within` passes.
    fn wait_count(&mut self, within: Duration, n: usize, f: impl Fn(&str) -> bool) -> bool {
        let end = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            if self.seen.iter().filter(|m| f(m)).count() >= n {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            if let Ok(len) = self.sock.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
        }
    }
}

#[test]
fn the_packaged_binary_runs_the_packaged_example_under_the_units_limits() {
    if !lab::require_netns() {
        return;
    }
    let (deb, _keep) = deb();
    let root = unpack(&deb);
    let r = root.path();
    let tandem = r.join("usr/sbin/tandem");
    let tandem = tandem.to_str().expect("utf-8 path");
    let unit = std::fs::read_to_string(r.join("lib/systemd/system/tandem.service")).expect("unit");

    let mut lab = Lab::new("package_runs_packaged_example").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let fw = lab.host("fw").expect("host");
    lab.connect(&fw, "lan0", &sw, &["198.51.100.2/24"])
        .expect("connect");

    // The packaged example, adapted: this lab's device, addresses and a socket in the lab.
    let example = std::fs::read_to_string(r.join("etc/tandem/tandem.toml")).expect("example");
    let socket = lab.dir().join("tandem.sock");
    let adapted = example
        .replace("lan = \"eth0\"", "lan = \"lan0\"")
        .replace("\"192.0.2.1/24\"", "\"198.51.100.1/24\"")
        .replace(
            "\"/run/tandem/tandem.sock\"",
            &format!("\"{}\"", socket.display()),
        )
        // The example's firewall rule, switched on: nft and the forwarding sysctls run too.
        .replace(
            "# [[rules]]\n# interface = \"lan\"\n# action = \"pass\"\n# protocol = \"tcp\"\n# destination_port = 22\n",
            "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"tcp\"\ndestination_port = 22\n",
        );
    for (was, now) in [
        ("lan = \"eth0\"", "lan0"),
        ("192.0.2.1/24", "198.51.100.1"),
        ("/run/tandem/tandem.sock", "tandem.sock"),
        ("# [[rules]]", "\n[[rules]]\n"),
    ] {
        assert!(example.contains(was), "the example lost {was}");
        assert!(adapted.contains(now));
    }
    let config = lab.dir().join("tandem.toml");
    std::fs::write(&config, &adapted).expect("write config");
    let config = config.to_str().expect("utf-8 path");

    // `tandem check` with no --config reads TANDEM_CONFIG (the default's override).
    let out = fw
        .command(tandem)
        .arg("check")
        .env("TANDEM_CONFIG", config)
        .output()
        .expect("check");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("OK (node fw1, 1 VIP on 1 interface)"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... and without it, /etc/tandem/tandem.toml (only read, and only looked at when absent).
    if !Path::new("/etc/tandem/tandem.toml").exists() {
        let out = fw
            .command(tandem)
            .arg("check")
            .env_remove("TANDEM_CONFIG")
            .output()
            .expect("check");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("/etc/tandem/tandem.toml"), "{err}");
    }

    // As systemd starts it: a notify socket, a watchdog for this very pid, the unit's
    // capability bounding set, no new privileges, and (ProtectSystem=strict) every file
    // system read-only but /proc, /sys, /dev and the lab's folder, which stands in for
    // ReadWritePaths (the adapted config keeps its socket there). In a mount namespace of its
    // own: the host's mounts are not changed.
    let notify_path = lab.dir().join("notify.sock");
    let mut notes = Notifications::bind(&notify_path);
    let script = format!(
        r#"set -e
mount --bind '{dir}' '{dir}'
for mp in $(awk '{{print $2}}' /proc/self/mounts | sort -u); do
    case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|'{dir}') continue ;; esac
    mount -o remount,bind,ro "$mp" 2>/dev/null || true
done
awk '$2 == "/" {{ print $4 }}' /proc/self/mounts | grep -q '^ro' || {{ echo "/ is not read-only" >&2; exit 1; }}
export NOTIFY_SOCKET='{notify}' WATCHDOG_USEC=2000000 TANDEM_CONFIG='{config}' WATCHDOG_PID=$$
exec setpriv --bounding-set={caps} --no-new-privs -- '{tandem}' run
"#,
        dir = lab.dir().display(),
        notify = notify_path.display(),
        caps = bounding_set(&unit)
    );
    let mut p = fw
        .spawn(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .expect("spawn tandem");
    let status = || {
        let out = fw
            .command(tandem)
            .args(["status", "--json"])
            .env("TANDEM_CONFIG", config)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    };
    assert!(
        notes.wait_for(Duration::from_secs(15), |m| m.contains("READY=1")),
        "no READY=1: {:?}\n{}",
        notes.seen,
        p.stderr()
    );
    let ready = notes.seen.iter().find(|m| m.contains("READY=1")).cloned();
    assert!(
        ready
            .as_deref()
            .is_some_and(|m| m.contains("STATUS=master of ")),
        "{ready:?}"
    );
    let master = lab::wait_until(Duration::from_secs(15), || {
        status().is_some_and(|s| s["vips"][0]["state"] == "MASTER")
    });
    assert!(master, "never MASTER: {:?}\n{}", status(), p.stderr());
    assert!(fw.has_address("lan0", "198.51.100.1"), "VIP not on lan0");
    // The ruleset went in (nft under the unit's limits), and the forwarding sysctl.
    let tables = fw.run(&["nft", "list", "tables"]).expect("nft list tables");
    assert!(tables.contains("inet tandem"), "{tables}");
    let fwd = fw
        .run(&["sysctl", "-n", "net.ipv4.ip_forward"])
        .expect("sysctl");
    assert_eq!(fwd.trim(), "1");
    assert!(
        notes.wait_for(Duration::from_secs(15), |m| m
            .contains("STATUS=master of 1/1 VIP, demotion 0")),
        "no status line for the transition: {:?}",
        notes.seen
    );
    // At half of WATCHDOG_USEC: more than one ping comes within a few seconds.
    assert!(
        notes.wait_for(Duration::from_secs(10), |m| m.contains("WATCHDOG=1")),
        "no WATCHDOG=1: {:?}",
        notes.seen
    );
    assert!(
        notes.wait_count(Duration::from_secs(10), 3, |m| m.contains("WATCHDOG=1")),
        "WATCHDOG=1 is not repeated: {:?}",
        notes.seen
    );

    let log = p.stderr();
    // The unit's capabilities are enough: no step of the start was refused.
    for refused in [
        "cannot raise the CARP thread's priority",
        "Operation not permitted",
        "ERROR",
    ] {
        assert!(!log.contains(refused), "{refused} in the log:\n{log}");
    }
    assert!(
        log.contains("vhid=1 iface=lan INIT -> BACKUP") || log.contains("-> MASTER"),
        "{log}"
    );

    p.signal("TERM").expect("SIGTERM");
    let st = p.wait_timeout(Duration::from_secs(15)).expect("wait");
    assert!(
        st.is_some_and(|s| s.success()),
        "no clean exit on SIGTERM: {st:?}\n{}",
        p.stderr()
    );
    assert!(
        notes.wait_for(Duration::from_secs(2), |m| m.contains("STOPPING=1")),
        "no STOPPING=1: {:?}",
        notes.seen
    );
    assert!(
        !fw.has_address("lan0", "198.51.100.1"),
        "the VIP stayed after SIGTERM"
    );
    assert!(!socket.exists(), "the control socket stayed");
}
