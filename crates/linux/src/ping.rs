//! ICMP echo (ping) for health checks, over a raw ICMP / ICMPv6 socket (the daemon has
//! CAP_NET_RAW; unprivileged ping sockets are off by default in a new network namespace).
//!
//! A raw ICMP socket sees every ICMP packet of the namespace: replies are matched by source
//! address, identifier, sequence number and an 8-byte token in the payload, so several
//! pingers (or a system `ping`) never take each other's replies.

use crate::carp_socket::register;
use crate::LinuxError;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// ICMP header (8) + token (8) + padding: a 56-byte payload as ping(8) sends.
const PACKET_LEN: usize = 64;

/// Identifiers differ between the pingers of one process.
static NEXT_IDENT: AtomicU16 = AtomicU16::new(0);

/// One target, pinged one probe at a time.
pub struct Pinger {
    fd: AsyncFd<Socket>,
    target: IpAddr,
    ident: u16,
    seq: u16,
    token: [u8; 8],
}

fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = match chunk {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Pinger {
    /// A raw socket towards `target`, sending from `source` and/or out of `device` if given.
    pub fn new(
        target: IpAddr,
        source: Option<IpAddr>,
        device: Option<&str>,
    ) -> Result<Pinger, LinuxError> {
        let err = |op, source| LinuxError::Ping { target, op, source };
        let (domain, proto) = match target {
            IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
            IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
        };
        let sock = Socket::new(domain, Type::RAW, Some(proto)).map_err(|e| err("socket", e))?;
        sock.set_nonblocking(true)
            .map_err(|e| err("set_nonblocking", e))?;
        if let Some(dev) = device {
            sock.bind_device(Some(dev.as_bytes()))
                .map_err(|e| err("SO_BINDTODEVICE", e))?;
        }
        if let Some(src) = source {
            sock.bind(&SocketAddr::new(src, 0).into())
                .map_err(|e| err("bind", e))?;
        }
        let fd = register(sock, "a ping socket")?;
        let ident = (std::process::id() as u16)
            .wrapping_mul(31)
            .wrapping_add(NEXT_IDENT.fetch_add(1, Ordering::Relaxed));
        let mut token = [0u8; 8];
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        token.copy_from_slice(&(nanos ^ u64::from(ident) << 48).to_be_bytes());
        Ok(Pinger {
            fd,
            target,
            ident,
            seq: 0,
            token,
        })
    }

    pub fn target(&self) -> IpAddr {
        self.target
    }

    fn echo_request(&self) -> Vec<u8> {
        let mut p = vec![0u8; PACKET_LEN];
        p[0] = match self.target {
            IpAddr::V4(_) => ECHO_REQUEST_V4,
            IpAddr::V6(_) => ECHO_REQUEST_V6,
        };
        p[4..6].copy_from_slice(&self.ident.to_be_bytes());
        p[6..8].copy_from_slice(&self.seq.to_be_bytes());
        p[8..16].copy_from_slice(&self.token);
        if self.target.is_ipv4() {
            // ICMPv6's checksum covers a pseudo-header: the kernel fills it in for raw
            // ICMPv6 sockets. ICMPv4's is ours to compute.
            let c = internet_checksum(&p);
            p[2..4].copy_from_slice(&c.to_be_bytes());
        }
        p
    }

    /// Whether `packet` (as a raw socket gives it: with the IPv4 header for IPv4, without one
    /// for IPv6) from `from` is the reply to the probe in flight.
    fn is_reply(&self, packet: &[u8], from: Option<IpAddr>) -> bool {
        if from != Some(self.target) {
            return false;
        }
        let icmp = match self.target {
            IpAddr::V4(_) => {
                let Some(first) = packet.first() else {
                    return false;
                };
                let ihl = usize::from(first & 0x0f) * 4;
                if first >> 4 != 4 || ihl < 20 {
                    return false;
                }
                match packet.get(ihl..) {
                    Some(p) => p,
                    None => return false,
                }
            }
            IpAddr::V6(_) => packet,
        };
        let reply = if self.target.is_ipv4() {
            ECHO_REPLY_V4
        } else {
            ECHO_REPLY_V6
        };
        icmp.len() >= 16
            && icmp[0] == reply
            && icmp[1] == 0
            && icmp[4..6] == self.ident.to_be_bytes()
            && icmp[6..8] == self.seq.to_be_bytes()
            && icmp[8..16] == self.token
    }

    /// Sends one echo request and waits up to `timeout` for its reply: the round-trip time,
    /// or None when none came. An error is about the socket (e.g. no route to the target).
    pub async fn probe(&mut self, timeout: Duration) -> Result<Option<Duration>, LinuxError> {
        let target = self.target;
        let err = |op, source| LinuxError::Ping { target, op, source };
        self.seq = self.seq.wrapping_add(1);
        let packet = self.echo_request();
        let dst = socket2::SockAddr::from(SocketAddr::new(target, 0));
        let sent = Instant::now();
        loop {
            let mut guard = self.fd.writable().await.map_err(|e| err("poll", e))?;
            match guard.try_io(|inner| inner.get_ref().send_to(&packet, &dst)) {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => return Err(err("sendto", e)),
                Err(_would_block) => continue,
            }
        }
        let deadline = tokio::time::Instant::from_std(sent + timeout);
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        loop {
            let readable = tokio::time::timeout_at(deadline, self.fd.readable()).await;
            let mut guard = match readable {
                Err(_elapsed) => return Ok(None),
                Ok(g) => g.map_err(|e| err("poll", e))?,
            };
            let got = guard.try_io(|inner| inner.get_ref().recv_from(&mut buf));
            let (n, from) = match got {
                Ok(Ok((n, from))) => (n, from),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(err("recvfrom", e)),
                Err(_would_block) => continue,
            };
            let n = n.min(buf.len());
            let data: Vec<u8> = buf[..n]
                .iter()
                // SAFETY: recv_from initialised the first `n` bytes of `buf`.
                .map(|b| unsafe { b.assume_init() })
                .collect();
            let from_ip = from.as_socket().map(|s| s.ip());
            if self.is_reply(&data, from_ip) {
                return Ok(Some(sent.elapsed()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_echo_request() {
        // ping -c1 127.0.0.1 style header: type 8, id 0x1234, seq 1, no payload.
        let mut p = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let c = internet_checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(internet_checksum(&p), 0);
        assert_eq!(c, !(0x0800u16 + 0x1234 + 1));
    }

    #[tokio::test]
    async fn loopback_answers_when_we_may_open_raw_sockets() {
        let Ok(mut p) = Pinger::new("127.0.0.1".parse().expect("ip"), None, None) else {
            // Not root / no CAP_NET_RAW: nothing to test here (namespace tests cover it).
            return;
        };
        let rtt = p.probe(Duration::from_secs(2)).await.expect("probe");
        assert!(rtt.is_some(), "no echo reply from 127.0.0.1");
        assert_eq!(p.seq, 1);
        // IPv6 too, where the host has it (ICMPv6's checksum is the kernel's).
        if let Ok(mut p6) = Pinger::new("::1".parse().expect("ip"), None, None) {
            if let Ok(rtt) = p6.probe(Duration::from_secs(2)).await {
                assert!(rtt.is_some(), "no echo reply from ::1");
            }
        }
    }
}
