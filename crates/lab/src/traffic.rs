//! Traffic probes for firewall tests: servers that name their peer, TCP/UDP/ICMP probes that
//! report an [`Outcome`], bare TCP segments, and nftables rule counters.

use crate::{wait_until, Host, Process};
use anyhow::{anyhow, bail, Result};
use std::process::Stdio;
use std::time::Duration;

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
