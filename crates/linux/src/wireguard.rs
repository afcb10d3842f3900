//! WireGuard devices through the cross-platform configuration protocol (UAPI: `set=1` /
//! `get=1` text over the device's Unix socket, `DIR/DEVICE.sock`), which the userspace
//! implementations (boringtun, wireguard-go) speak. Blocking, bounded in time: run it off any
//! thread that must stay responsive. A private key goes into the socket and nowhere else: not
//! in errors, not in `Debug`, and what `get=1` answers about it is dropped unread.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one exchange with a device may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The most a `get=1` answer may hold (a device with thousands of peers stays well below).
const MAX_ANSWER: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WgError {
    #[error("wireguard device {device}: cannot reach its UAPI socket {path}: {error} (is the userspace implementation running for it?)")]
    Connect {
        device: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("wireguard device {device}: {op} over {path}: {error}")]
    Io {
        device: String,
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("wireguard device {device}: the implementation refused the configuration: errno {errno} ({})", std::io::Error::from_raw_os_error(*.errno))]
    Refused { device: String, errno: i32 },
    #[error("wireguard device {device}: unexpected answer: {what}")]
    Protocol { device: String, what: String },
}

/// What a device is set to: its key, port and the whole list of its peers (any peer not
/// listed is removed).
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    pub private_key: [u8; 32],
    pub listen_port: Option<u16>,
    pub peers: Vec<PeerConfig>,
}

impl fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("private_key", &"<secret>")
            .field("listen_port", &self.listen_port)
            .field("peers", &self.peers)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: [u8; 32],
    /// Prefixes as `ADDRESS/LEN`.
    pub allowed_ips: Vec<(std::net::IpAddr, u8)>,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: Option<u16>,
}

/// What a device reports about itself (`get=1`), without its private key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    pub listen_port: Option<u16>,
    /// Some implementations (boringtun) say which public key the device has.
    pub public_key: Option<[u8; 32]>,
    pub peers: Vec<PeerState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerState {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<(std::net::IpAddr, u8)>,
    pub persistent_keepalive: Option<u16>,
    /// Seconds, as the implementation counts it (since 1970 for the kernel and
    /// wireguard-go, since the handshake for boringtun); None: never.
    pub last_handshake_sec: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The UAPI socket of `device` in `dir` (`/var/run/wireguard` by default).
pub fn socket_path(dir: &Path, device: &str) -> PathBuf {
    dir.join(format!("{device}.sock"))
}

fn hex(k: &[u8; 32]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The `set=1` request for `cfg` (peers without an endpoint first: boringtun carries an
/// endpoint over from one peer section to the next).
pub fn set_request(cfg: &DeviceConfig) -> String {
    let mut s = String::from("set=1\n");
    s.push_str(&format!("private_key={}\n", hex(&cfg.private_key)));
    if let Some(p) = cfg.listen_port {
        s.push_str(&format!("listen_port={p}\n"));
    }
    s.push_str("replace_peers=true\n");
    let mut peers: Vec<&PeerConfig> = cfg.peers.iter().collect();
    peers.sort_by_key(|p| p.endpoint.is_some());
    for p in peers {
        s.push_str(&format!("public_key={}\n", hex(&p.public_key)));
        s.push_str("replace_allowed_ips=true\n");
        s.push_str(&format!(
            "persistent_keepalive_interval={}\n",
            p.persistent_keepalive.unwrap_or(0)
        ));
        if let Some(e) = p.endpoint {
            s.push_str(&format!("endpoint={e}\n"));
        }
        for (a, len) in &p.allowed_ips {
            s.push_str(&format!("allowed_ip={a}/{len}\n"));
        }
    }
    s.push('\n');
    s
}

/// Parses a `get=1` answer (the lines before the blank line; `errno=` checked by the caller).
/// The private key line, if any, is skipped unread.
pub fn parse_get(device: &str, text: &str) -> Result<DeviceState, WgError> {
    let bad = |what: String| WgError::Protocol {
        device: device.to_string(),
        what,
    };
    let mut st = DeviceState::default();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(bad(format!("a line without `=` ({} bytes)", line.len())));
        };
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| bad(format!("{k} is not a number")))
        };
        let peer = st.peers.last_mut();
        match (k, peer) {
            ("private_key", _) | ("errno", _) | ("protocol_version", _) | ("fwmark", _) => {}
            ("own_public_key", _) => st.public_key = unhex(v),
            ("listen_port", None) => {
                st.listen_port = Some(num(v)?.try_into().map_err(|_| bad("listen_port".into()))?)
            }
            ("public_key", _) => st.peers.push(PeerState {
                public_key: unhex(v)
                    .ok_or_else(|| bad("a public_key is not 64 hex digits".into()))?,
                ..Default::default()
            }),
            ("endpoint", Some(p)) => p.endpoint = v.parse().ok(),
            ("allowed_ip", Some(p)) => {
                let (a, l) = v
                    .split_once('/')
                    .and_then(|(a, l)| Some((a.parse().ok()?, l.parse().ok()?)))
                    .ok_or_else(|| bad("an allowed_ip is not ADDRESS/LEN".into()))?;
                p.allowed_ips.push((a, l));
            }
            ("persistent_keepalive_interval", Some(p)) => {
                p.persistent_keepalive =
                    Some(num(v)?.try_into().unwrap_or(u16::MAX)).filter(|k| *k > 0)
            }
            ("last_handshake_time_sec", Some(p)) => {
                p.last_handshake_sec = Some(num(v)?).filter(|s| *s > 0)
            }
            ("rx_bytes", Some(p)) => p.rx_bytes = num(v)?,
            ("tx_bytes", Some(p)) => p.tx_bytes = num(v)?,
            // Other keys (the handshake's nanoseconds, keys of newer versions) are not needed.
            _ => {}
        }
    }
    Ok(st)
}

/// One exchange: sends `request`, reads the answer up to its blank line, checks `errno=0`.
/// Returns the lines before `errno=`.
fn exchange(dir: &Path, device: &str, request: &str, op: &'static str) -> Result<String, WgError> {
    let path = socket_path(dir, device);
    let mut s = UnixStream::connect(&path).map_err(|error| WgError::Connect {
        device: device.to_string(),
        path: path.clone(),
        error,
    })?;
    let io = |error| WgError::Io {
        device: device.to_string(),
        op,
        path: path.clone(),
        error,
    };
    s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    s.write_all(request.as_bytes()).map_err(io)?;
    let mut r = BufReader::new(&s);
    let mut answer = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).map_err(io)?;
        if n == 0 {
            return Err(WgError::Protocol {
                device: device.to_string(),
                what: "the socket closed before `errno=`".into(),
            });
        }
        if let Some(e) = line.trim_end().strip_prefix("errno=") {
            let errno: i32 = e.parse().map_err(|_| WgError::Protocol {
                device: device.to_string(),
                what: "errno is not a number".into(),
            })?;
            if errno != 0 {
                return Err(WgError::Refused {
                    device: device.to_string(),
                    errno,
                });
            }
            return Ok(answer);
        }
        if answer.len() + line.len() > MAX_ANSWER {
            return Err(WgError::Protocol {
                device: device.to_string(),
                what: format!("the answer is longer than {MAX_ANSWER} bytes"),
            });
        }
        // The private key is never kept, not even in this buffer.
        if !line.starts_with("private_key=") {
            answer.push_str(&line);
        }
    }
}

/// Sets the device to `cfg`: key, port and exactly these peers.
pub fn set(dir: &Path, device: &str, cfg: &DeviceConfig) -> Result<(), WgError> {
    exchange(dir, device, &set_request(cfg), "set").map(|_| ())
}

/// Takes every peer off the device (what Tandem does when an interface leaves its config:
/// nothing goes through the tunnel any more; the device itself is the admin's).
pub fn clear(dir: &Path, device: &str) -> Result<(), WgError> {
    exchange(dir, device, "set=1\nreplace_peers=true\n\n", "set").map(|_| ())
}

/// What the device runs.
pub fn get(dir: &Path, device: &str) -> Result<DeviceState, WgError> {
    let text = exchange(dir, device, "get=1\n\n", "get")?;
    parse_get(device, &text)
}

/// Whether `device` has a UAPI socket in `dir`.
pub fn has_socket(dir: &Path, device: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(socket_path(dir, device)).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(k: u8, endpoint: Option<&str>) -> PeerConfig {
        PeerConfig {
            public_key: [k; 32],
            allowed_ips: vec![("192.0.2.0".parse().expect("ip"), 24)],
            endpoint: endpoint.map(|e| e.parse().expect("endpoint")),
            persistent_keepalive: Some(25),
        }
    }

    #[test]
    fn set_request_lists_every_peer_endpoints_last() {
        let cfg = DeviceConfig {
            private_key: [0xab; 32],
            listen_port: Some(51820),
            peers: vec![peer(1, Some("198.51.100.7:51820")), peer(2, None)],
        };
        let r = set_request(&cfg);
        let expected = format!(
            "set=1\nprivate_key={}\nlisten_port=51820\nreplace_peers=true\n\
             public_key={}\nreplace_allowed_ips=true\npersistent_keepalive_interval=25\nallowed_ip=192.0.2.0/24\n\
             public_key={}\nreplace_allowed_ips=true\npersistent_keepalive_interval=25\nendpoint=198.51.100.7:51820\nallowed_ip=192.0.2.0/24\n\n",
            "ab".repeat(32),
            "02".repeat(32),
            "01".repeat(32)
        );
        assert_eq!(r, expected);
        assert!(!format!("{cfg:?}").contains("abab"));
    }

    #[test]
    fn get_answers_parse_without_the_private_key() {
        let text = format!(
            "private_key={}\nlisten_port=51820\npublic_key={}\nendpoint=[2001:db8::7]:51820\n\
             allowed_ip=2001:db8:1::/48\nallowed_ip=192.0.2.0/24\nlast_handshake_time_sec=1700000000\n\
             last_handshake_time_nsec=5\nrx_bytes=100\ntx_bytes=200\npersistent_keepalive_interval=0\nprotocol_version=1\n",
            "ab".repeat(32),
            "01".repeat(32)
        );
        let st = parse_get("wg0", &text).expect("parse");
        assert_eq!(st.listen_port, Some(51820));
        assert_eq!(st.peers.len(), 1);
        let p = &st.peers[0];
        assert_eq!(p.public_key, [1; 32]);
        assert_eq!(p.endpoint, Some("[2001:db8::7]:51820".parse().expect("ep")));
        assert_eq!(p.allowed_ips.len(), 2);
        assert_eq!(p.last_handshake_sec, Some(1_700_000_000));
        assert_eq!((p.rx_bytes, p.tx_bytes), (100, 200));
        assert_eq!(p.persistent_keepalive, None);
        assert!(parse_get("wg0", "public_key=zz\n").is_err());
        assert!(parse_get("wg0", "garbage\n").is_err());
    }

    #[test]
    fn exchange_checks_errno_and_drops_the_private_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = socket_path(dir.path(), "wgt0");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in [
                "errno=0\n\n".to_string(),
                "errno=98\n\n".to_string(),
                format!(
                    "private_key={}\nlisten_port=7\nerrno=0\n\n",
                    "cd".repeat(32)
                ),
            ] {
                let (s, _) = listener.accept().expect("accept");
                let mut r = BufReader::new(&s);
                let mut req = String::new();
                while r.read_line(&mut req).expect("read") > 0 && !req.ends_with("\n\n") {}
                seen.push(req);
                (&s).write_all(answer.as_bytes()).expect("write");
            }
            seen
        });
        let cfg = DeviceConfig {
            private_key: [7; 32],
            listen_port: Some(7),
            peers: vec![],
        };
        set(dir.path(), "wgt0", &cfg).expect("set");
        let e = set(dir.path(), "wgt0", &cfg).expect_err("refused");
        assert!(e.to_string().contains("errno 98"), "{e}");
        let st = get(dir.path(), "wgt0").expect("get");
        assert_eq!(st.listen_port, Some(7));
        let seen = server.join().expect("server");
        assert!(seen[0].starts_with("set=1\nprivate_key=0707"), "{seen:?}");
        assert_eq!(seen[2], "get=1\n\n");
        assert!(has_socket(dir.path(), "wgt0"));
        assert!(!has_socket(dir.path(), "wgt1"));
        let e = get(dir.path(), "wgt1").expect_err("no socket");
        assert!(
            e.to_string().contains("cannot reach its UAPI socket"),
            "{e}"
        );
    }
}
