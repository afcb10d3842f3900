//! Network-namespace test topologies for integration tests and benchmarks (dev only).
//!
//! This crate owns the namespaces, veth pairs and bridges a test builds, and every process it
//! starts inside them. It drives iproute2 (`ip`) as a subprocess: no netlink code, no unsafe.
//! A [`Lab`] names everything with a per-test, per-process prefix and tears it all down on
//! `Drop` (also while unwinding from a panic). Switches are namespaces holding a bridge `br0`;
//! hosts are namespaces attached to switches (or to each other) by veth pairs.
//!
//! Addresses in tests must come from the documentation ranges 192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24 and 2001:db8::/32 (see shared/design.md, "Test hosts").

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Pids spawned through any [`Host`] of a lab; killed when the lab drops.
type Tracked = Arc<Mutex<Vec<u32>>>;

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// FNV-1a, 24 bits: stable across builds, so a later run of the same test finds stale leftovers.
fn short_hash(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h ^ (h >> 24)) & 0x00ff_ffff
}

/// Runs a command; returns stdout, or an error naming the command and carrying its stderr.
fn run_cmd(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    run_cmd(Command::new("ip").args(args))
}

/// `ip -n NS args...`
fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    run_cmd(Command::new("ip").arg("-n").arg(ns).args(args))
}

fn add_addrs(ns: &str, ifname: &str, addrs: &[&str]) -> Result<()> {
    for a in addrs {
        if !a.contains('/') {
            bail!("address {a:?} needs a prefix length (e.g. 192.0.2.2/24)");
        }
        if a.contains(':') {
            ip_in(ns, &["-6", "addr", "add", a, "dev", ifname, "nodad"])?;
        } else {
            ip_in(ns, &["addr", "add", a, "dev", ifname])?;
        }
    }
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn kill_pid(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn list_netns() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Kills every process inside `ns`, then deletes it. Best effort.
fn destroy_netns(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A test topology: every namespace it creates is deleted when it drops.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    tracked: Tracked,
    dir: PathBuf,
    keep_dir: bool,
}

impl Lab {
    /// Creates an empty lab. Namespace names are `t<hash of test_name>p<pid>n<k>-<name>`, so
    /// parallel tests (threads or processes) never collide. Leftover namespaces of an earlier,
    /// dead process running the same test are deleted first.
    pub fn new(test_name: &str) -> Result<Lab> {
        let hash = format!("t{:06x}p", short_hash(test_name));
        let pid = std::process::id();
        let k = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{hash}{pid}n{k}-");
        for ns in list_netns() {
            let Some(rest) = ns.strip_prefix(&hash) else {
                continue;
            };
            let owner = rest.split('n').next().and_then(|p| p.parse::<u32>().ok());
            let stale = match owner {
                Some(p) if p == pid => ns.starts_with(&prefix),
                Some(p) => !pid_alive(p),
                None => false,
            };
            if stale {
                destroy_netns(&ns);
            }
        }
        let dir = std::env::temp_dir().join(format!("lab-{}", prefix.trim_end_matches('-')));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Lab {
            prefix,
            namespaces: Vec::new(),
            tracked: Arc::new(Mutex::new(Vec::new())),
            dir,
            keep_dir: std::env::var_os("LAB_KEEP").is_some(),
        })
    }

    /// The prefix of every namespace of this lab.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A scratch directory (removed on drop unless `LAB_KEEP` is set): for config files,
    /// control sockets, process logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names of the namespaces this lab created, in creation order.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    fn add_ns(&mut self, name: &str) -> Result<String> {
        if name.is_empty() || name.contains(['/', ' ']) {
            bail!("bad namespace name {name:?}");
        }
        let ns = format!("{}{}", self.prefix, name);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip_in(&ns, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A namespace holding bridge `br0`: up, no STP, forward delay 0, multicast snooping off
    /// (so CARP/VRRP multicast floods to every port).
    pub fn switch(&mut self, name: &str) -> Result<Switch> {
        let ns = self.add_ns(name)?;
        ip_in(
            &ns,
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ],
        )?;
        // The bridge itself needs no IPv6 (no RS/MLD noise from it).
        let _ = run_cmd(Command::new("ip").args([
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.br0.disable_ipv6=1",
        ]));
        ip_in(&ns, &["link", "set", "br0", "up"])?;
        Ok(Switch {
            name: name.to_owned(),
            ns,
            ports: Arc::new(Mutex::new(HashMap::new())),
            next_port: Arc::new(AtomicU32::new(0)),
        })
    }

    /// A namespace with `lo` up.
    pub fn host(&mut self, name: &str) -> Result<Host> {
        let ns = self.add_ns(name)?;
        Ok(Host {
            name: name.to_owned(),
            ns,
            tracked: self.tracked.clone(),
            dir: self.dir.clone(),
        })
    }

    /// Attaches `host` to `sw` by a veth pair: the host side is named `ifname` and carries
    /// `addrs` ("192.0.2.2/24", "2001:db8:1::2/64"; IPv6 added with nodad); the switch side is
    /// enslaved to br0. Both ends are up.
    pub fn connect(
        &mut self,
        host: &Host,
        ifname: &str,
        sw: &Switch,
        addrs: &[&str],
    ) -> Result<()> {
        check_ifname(ifname)?;
        let port = format!("p{}", sw.next_port.fetch_add(1, Ordering::Relaxed));
        ip_in(
            &host.ns,
            &[
                "link", "add", ifname, "type", "veth", "peer", "name", &port, "netns", &sw.ns,
            ],
        )?;
        ip_in(&sw.ns, &["link", "set", &port, "master", "br0"])?;
        ip_in(&sw.ns, &["link", "set", &port, "up"])?;
        add_addrs(&host.ns, ifname, addrs)?;
        ip_in(&host.ns, &["link", "set", ifname, "up"])?;
        sw.ports
            .lock()
            .map_err(|_| anyhow!("switch port map poisoned"))?
            .insert((host.ns.clone(), ifname.to_owned()), port);
        Ok(())
    }

    /// A point-to-point veth between two hosts (e.g. the sync link).
    pub fn link(
        &mut self,
        a: &Host,
        a_if: &str,
        a_addrs: &[&str],
        b: &Host,
        b_if: &str,
        b_addrs: &[&str],
    ) -> Result<()> {
        check_ifname(a_if)?;
        check_ifname(b_if)?;
        ip_in(
            &a.ns,
            &[
                "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.ns,
            ],
        )?;
        add_addrs(&a.ns, a_if, a_addrs)?;
        add_addrs(&b.ns, b_if, b_addrs)?;
        ip_in(&a.ns, &["link", "set", a_if, "up"])?;
        ip_in(&b.ns, &["link", "set", b_if, "up"])?;
        Ok(())
    }
}

fn check_ifname(ifname: &str) -> Result<()> {
    if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ']) {
        bail!("bad interface name {ifname:?} (1..=15 chars, no '/' or space)");
    }
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(pids) = self.tracked.lock() {
            for &pid in pids.iter() {
                kill_pid(pid, "KILL");
            }
        }
        // Hosts first, switches are plain namespaces too; order does not matter for veth.
        for ns in self.namespaces.iter().rev() {
            destroy_netns(ns);
        }
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A bridge namespace. Cloning shares the port map.
#[derive(Clone)]
pub struct Switch {
    name: String,
    ns: String,
    /// (host namespace, host ifname) -> switch-side port name.
    ports: Arc<Mutex<HashMap<(String, String), String>>>,
    next_port: Arc<AtomicU32>,
}

impl Switch {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The switch-side port name of `host`'s interface `ifname`.
    pub fn port(&self, host: &Host, ifname: &str) -> Result<String> {
        self.ports
            .lock()
            .map_err(|_| anyhow!("switch port map poisoned"))?
            .get(&(host.ns.clone(), ifname.to_owned()))
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "{}:{} is not connected to switch {}",
                    host.name,
                    ifname,
                    self.name
                )
            })
    }

    /// Sets the switch side of `host`'s link up or down: a cable pull; the host's interface
    /// stays administratively up but loses carrier (NO-CARRIER, operstate LOWERLAYERDOWN).
    pub fn set_port(&self, host: &Host, ifname: &str, up: bool) -> Result<()> {
        let port = self.port(host, ifname)?;
        ip_in(
            &self.ns,
            &["link", "set", &port, if up { "up" } else { "down" }],
        )?;
        Ok(())
    }
}

/// A host namespace. Cheap to clone; the [`Lab`] owns the namespace.
#[derive(Clone)]
pub struct Host {
    name: String,
    ns: String,
    tracked: Tracked,
    dir: PathBuf,
}

static SPAWN_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Host {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// `ip netns exec NS program`; add arguments with `.arg(..)`. (ip execs the program, so the
    /// child's pid is the program's pid.)
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    fn command_args(&self, args: &[&str]) -> Result<Command> {
        let (program, rest) = args.split_first().ok_or_else(|| anyhow!("empty command"))?;
        let mut c = self.command(program);
        c.args(rest);
        Ok(c)
    }

    /// Runs `args` in the namespace and returns its stdout; an error carries the command line
    /// and its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let mut c = self.command_args(args)?;
        run_cmd(&mut c).with_context(|| format!("on host {}", self.name))
    }

    /// Starts `args` in the background, stdout/stderr captured to files in the lab directory.
    /// The process is SIGKILLed when the returned [`Process`] drops (and when the lab drops).
    pub fn spawn(&self, args: &[&str]) -> Result<Process> {
        let mut c = self.command_args(args)?;
        let n = SPAWN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = Path::new(args[0])
            .file_name()
            .map_or("proc".into(), |s| s.to_string_lossy().into_owned());
        let stdout_path = self.dir.join(format!("{}-{}-{}.out", self.name, base, n));
        let stderr_path = self.dir.join(format!("{}-{}-{}.err", self.name, base, n));
        let out =
            fs::File::create(&stdout_path).with_context(|| stdout_path.display().to_string())?;
        let err =
            fs::File::create(&stderr_path).with_context(|| stderr_path.display().to_string())?;
        let child = c
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {c:?}"))?;
        if let Ok(mut t) = self.tracked.lock() {
            t.push(child.id());
        }
        Ok(Process {
            child,
            stdout_path,
            stderr_path,
            tracked: self.tracked.clone(),
            label: format!("{c:?}"),
        })
    }

    /// Sets the host's own interface administratively up or down.
    pub fn set_link(&self, ifname: &str, up: bool) -> Result<()> {
        ip_in(
            &self.ns,
            &["link", "set", ifname, if up { "up" } else { "down" }],
        )?;
        Ok(())
    }

    /// `ping -c count -W timeout_s addr` (200 ms apart); true if any reply came back.
    pub fn ping(&self, addr: &str, count: u32, timeout_s: u32) -> bool {
        self.command("ping")
            .args([
                "-n",
                "-q",
                "-i",
                "0.2",
                "-c",
                &count.max(1).to_string(),
                "-W",
                &timeout_s.max(1).to_string(),
                addr,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Addresses (without prefix length) on `ifname`.
    pub fn addresses(&self, ifname: &str) -> Result<Vec<String>> {
        let out = ip_in(&self.ns, &["-o", "addr", "show", "dev", ifname])?;
        let mut v = Vec::new();
        for line in out.lines() {
            let mut it = line.split_whitespace();
            while let Some(tok) = it.next() {
                if tok == "inet" || tok == "inet6" {
                    if let Some(a) = it.next() {
                        v.push(a.split('/').next().unwrap_or(a).to_owned());
                    }
                }
            }
        }
        Ok(v)
    }

    /// Whether `ifname` carries `addr` (given without prefix length).
    pub fn has_address(&self, ifname: &str, addr: &str) -> bool {
        let want = addr.split('/').next().unwrap_or(addr);
        let norm = |s: &str| {
            s.parse::<std::net::IpAddr>()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| s.to_owned())
        };
        let want = norm(want);
        self.addresses(ifname)
            .map(|v| v.iter().any(|a| norm(a) == want))
            .unwrap_or(false)
    }

    /// The MAC address of `ifname`, lowercase "aa:bb:cc:dd:ee:ff".
    pub fn mac(&self, ifname: &str) -> Result<String> {
        let out = ip_in(&self.ns, &["-o", "link", "show", "dev", ifname])?;
        let mut it = out.split_whitespace();
        while let Some(tok) = it.next() {
            if tok == "link/ether" {
                return it
                    .next()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("no MAC after link/ether"));
            }
        }
        bail!(
            "{}: {} has no ethernet address: {}",
            self.name,
            ifname,
            out.trim()
        )
    }

    /// Whether `ifname` has carrier (false after a cable pull on the switch side).
    pub fn has_carrier(&self, ifname: &str) -> bool {
        let out = ip_in(&self.ns, &["-o", "link", "show", "dev", ifname]).unwrap_or_default();
        !out.contains("NO-CARRIER") && out.contains(",UP")
    }

    /// `sysctl -w key=value` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run(&["sysctl", "-qw", &format!("{key}={value}")])
            .map(|_| ())
    }
}

/// A background process in a host namespace. SIGKILLed and reaped on drop.
pub struct Process {
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    tracked: Tracked,
    label: String,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name ("TERM", "INT", "HUP", "KILL", "USR1", ...) via `kill(1)`.
    pub fn signal(&self, signal: &str) -> Result<()> {
        run_cmd(
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid().to_string()),
        )?;
        Ok(())
    }

    /// Non-blocking exit check.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        Ok(())
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read(&self.stdout_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid())
            .field("cmd", &self.label)
            .finish()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.kill();
        let pid = self.child.id();
        if let Ok(mut t) = self.tracked.lock() {
            t.retain(|&p| p != pid);
        }
    }
}

/// What a probe ([`Host::probe_tcp`], [`Host::probe_udp`], [`Host::probe_icmp`]) saw: the
/// vocabulary of firewall tests (pass, reject, block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The peer answered. Servers started by [`Host::serve`] answer `from <peer address>`;
    /// an ICMP echo reply is `Reply("echo")`.
    Reply(String),
    /// A TCP reset, or ICMP port unreachable for UDP (a `reject`, or a closed port).
    Refused,
    /// Another ICMP unreachable (host, net, admin prohibited), or port unreachable for ICMP.
    Unreachable,
    /// Nothing came back in time: dropped somewhere.
    Timeout,
    /// Anything else (the probe's own words).
    Error(String),
}

impl Outcome {
    /// `Reply("from 198.51.100.1")` for `"from 198.51.100.1"`.
    pub fn from(peer: &str) -> Outcome {
        Outcome::Reply(format!("from {peer}"))
    }
}

/// TCP and UDP servers on every given port, IPv4 and IPv6 (one dual-stack socket each). A TCP
/// connection gets `from <peer>` and is closed; a UDP datagram is answered with `from <peer>`.
/// Each one is logged to stdout as `tcp|udp PORT PEER`.
const SERVE_PY: &str = r#"
import selectors, socket, sys
tcp = [int(p) for p in sys.argv[1].split(',') if p]
udp = [int(p) for p in sys.argv[2].split(',') if p]
sel = selectors.DefaultSelector()
def peer(a):
    h = a[0]
    return h[7:] if h.startswith('::ffff:') else h
def sock(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('::', port))
    return s
for p in tcp:
    s = sock(socket.SOCK_STREAM, p)
    s.listen(64)
    sel.register(s, selectors.EVENT_READ, 'tcp')
for p in udp:
    sel.register(sock(socket.SOCK_DGRAM, p), selectors.EVENT_READ, 'udp')
print('ready', flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        port = s.getsockname()[1]
        try:
            if key.data == 'tcp':
                c, a = s.accept()
                c.sendall(('from ' + peer(a)).encode())
                c.close()
            else:
                d, a = s.recvfrom(2048)
                s.sendto(('from ' + peer(a)).encode(), a)
            print(key.data, port, peer(a), flush=True)
        except OSError as e:
            print('error', port, e, flush=True)
"#;

/// One TCP connection or UDP exchange; prints reply/refused/unreachable/timeout.
const PROBE_PY: &str = r#"
import errno, socket, sys
proto, addr, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
kind = socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM
s = socket.socket(fam, kind)
s.settimeout(timeout)
try:
    s.connect((addr, port))
    if proto == 'udp':
        s.send(b'probe')
    print('reply ' + s.recv(200).decode())
except ConnectionRefusedError:
    print('refused')
except TimeoutError:
    print('timeout')
except OSError as e:
    if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
        print('unreachable')
    else:
        print('error ' + str(e))
"#;

/// A bare IPv4 TCP segment from a raw socket: no connection behind it.
const SEGMENT_PY: &str = r#"
import socket, struct, sys
src, dst, sport, dport, flags = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def cs(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return (~s) & 0xffff
h = struct.pack('!HHIIBBHHH', sport, dport, 12345, 67890, 5 << 4, flags, 65535, 0, 0)
p = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(h))
h = h[:16] + struct.pack('!H', cs(p + h)) + h[18:]
socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).sendto(h, (dst, 0))
"#;

fn join_ports(ports: &[u16]) -> String {
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Traffic for firewall tests (needs python3 and ping in the host).
impl Host {
    /// Starts [`SERVE_PY`]-style servers on `tcp` and `udp` ports (see [`Outcome::Reply`]) and
    /// waits until they listen. Its stdout logs every peer: `tcp 80 198.51.100.1`.
    pub fn serve(&self, tcp: &[u16], udp: &[u16]) -> Result<Process> {
        let (t, u) = (join_ports(tcp), join_ports(udp));
        let p = self.spawn(&["python3", "-c", SERVE_PY, &t, &u])?;
        if !wait_until(Duration::from_secs(10), || p.stdout().starts_with("ready")) {
            bail!(
                "{}: servers on tcp {t} / udp {u} did not start: {}",
                self.name,
                p.stderr()
            );
        }
        Ok(p)
    }

    fn probe(&self, proto: &str, addr: &str, port: u16, timeout: Duration) -> Outcome {
        let out = self
            .command("python3")
            .args(["-c", PROBE_PY, proto, addr])
            .arg(port.to_string())
            .arg(format!("{:.3}", timeout.as_secs_f64()))
            .stdin(Stdio::null())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => return Outcome::Error(format!("cannot run python3: {e}")),
        };
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        match text.as_str() {
            "refused" => Outcome::Refused,
            "timeout" => Outcome::Timeout,
            "unreachable" => Outcome::Unreachable,
            t => match t.strip_prefix("reply ") {
                Some(r) => Outcome::Reply(r.to_owned()),
                None => Outcome::Error(format!(
                    "{t} {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            },
        }
    }

    /// Connects to `addr:port` over TCP and reads the server's answer.
    pub fn probe_tcp(&self, addr: &str, port: u16, timeout: Duration) -> Outcome {
        self.probe("tcp", addr, port, timeout)
    }

    /// Sends one UDP datagram to `addr:port` and waits for an answer.
    pub fn probe_udp(&self, addr: &str, port: u16, timeout: Duration) -> Outcome {
        self.probe("udp", addr, port, timeout)
    }

    /// One ICMP echo request (`ping -c 1`): `Reply("echo")`, `Unreachable` (an ICMP error
    /// came back) or `Timeout`.
    pub fn probe_icmp(&self, addr: &str, timeout: Duration) -> Outcome {
        let secs = timeout.as_secs().max(1).to_string();
        let out = self
            .command("ping")
            .args(["-n", "-c", "1", "-W", &secs, addr])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => Outcome::Reply("echo".into()),
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stdout);
                if text.contains("Unreachable") || text.contains("Prohibited") {
                    Outcome::Unreachable
                } else if o.status.code() == Some(1) {
                    Outcome::Timeout
                } else {
                    Outcome::Error(format!(
                        "{text} {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ))
                }
            }
            Err(e) => Outcome::Error(format!("cannot run ping: {e}")),
        }
    }

    /// Sends one bare IPv4 TCP segment with `flags` (0x02 SYN, 0x10 ACK, ...) from a raw
    /// socket: a packet of no connection, e.g. to show that a mid-stream packet without state
    /// is dropped.
    pub fn send_tcp_segment(
        &self,
        src: &str,
        dst: &str,
        sport: u16,
        dport: u16,
        flags: u8,
    ) -> Result<()> {
        self.run(&[
            "python3",
            "-c",
            SEGMENT_PY,
            src,
            dst,
            &sport.to_string(),
            &dport.to_string(),
            &flags.to_string(),
        ])
        .map(|_| ())
    }

    /// The packet count of the first rule in `nft list chain TABLE CHAIN` whose line contains
    /// `needle` (e.g. a rule's comment); `table` as nft writes it (`"inet tandem"`).
    pub fn nft_counter(&self, table: &str, chain: &str, needle: &str) -> Result<u64> {
        let mut args = vec!["nft", "list", "chain"];
        args.extend(table.split_whitespace());
        args.push(chain);
        let out = self.run(&args)?;
        out.lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.split("packets ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                anyhow!("no counted rule matching {needle:?} in {table} {chain}:\n{out}")
            })
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Call at the start of every namespace test. Returns false (after printing why) when not root
/// and `CI` is not "true": the test should return early. Panics when `CI=true` and not root,
/// or when `ip` is missing: CI must never skip these tests.
pub fn require_netns() -> bool {
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    let why = if !is_root() {
        Some("not running as root")
    } else if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        Some("iproute2 `ip` not found")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if ci => panic!("namespace test cannot run under CI=true: {why}"),
        Some(why) => {
            eprintln!("skipping namespace test: {why} (set up root + iproute2 to run it)");
            false
        }
    }
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns whether it did.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_short() {
        assert_eq!(short_hash("a"), short_hash("a"));
        assert!(short_hash("some::test") <= 0xff_ffff);
        assert_ne!(short_hash("a"), short_hash("b"));
    }

    #[test]
    fn wait_until_times_out_and_succeeds() {
        assert!(!wait_until(Duration::from_millis(50), || false));
        let mut n = 0;
        assert!(wait_until(Duration::from_secs(1), || {
            n += 1;
            n > 2
        }));
    }
}
