//! The local resolver, Debian's unbound: the include file Tandem renders is replaced
//! atomically (a reader sees the old file or the new one, never half of one), and unbound is
//! told to re-read its config with `unbound-control reload`, run by absolute path (never looked
//! up through `PATH`) and bounded in time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long unbound-control may take before it is killed.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UnboundError {
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot run {path} (is the unbound package installed?): {error}")]
    Spawn {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{program} {command} failed: {message}")]
    Failed {
        program: PathBuf,
        command: String,
        message: String,
    },
    #[error("{0}: unbound-control must be given by absolute path")]
    NotAbsolute(PathBuf),
}

/// Writes `text` to `path` atomically (a temporary file beside it, synced, then renamed over
/// it), mode 0644: what it holds is no secret, and unbound (its own user) must read it.
pub fn write_file(path: &Path, text: &str) -> Result<(), UnboundError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |error| UnboundError::Write {
        path: path.to_path_buf(),
        error,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tandem-tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(err)?;
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            // The umask may have taken bits away.
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

/// The file's content, None when it does not exist (to put it back after a failed change).
pub fn read_file(path: &Path) -> Result<Option<String>, UnboundError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(UnboundError::Write {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// Puts a file back as [`read_file`] found it (None: removes it).
pub fn restore_file(path: &Path, old: Option<&str>) -> Result<(), UnboundError> {
    match old {
        Some(text) => write_file(path, text),
        None => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(UnboundError::Write {
                path: path.to_path_buf(),
                error,
            }),
        },
    }
}

/// unbound-control, with the config (`-c`) and control socket (`-s`) it is told to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnboundControl {
    program: PathBuf,
    config: Option<PathBuf>,
    socket: Option<PathBuf>,
}

impl UnboundControl {
    pub fn new(
        program: impl Into<PathBuf>,
        config: Option<PathBuf>,
        socket: Option<PathBuf>,
    ) -> Result<UnboundControl, UnboundError> {
        let program = program.into();
        if !program.is_absolute() {
            return Err(UnboundError::NotAbsolute(program));
        }
        Ok(UnboundControl {
            program,
            config,
            socket,
        })
    }

    /// `unbound-control reload`: unbound re-reads its config (and the include file). Blocking:
    /// run it off any thread that must stay responsive.
    pub fn reload(&self) -> Result<(), UnboundError> {
        self.run("reload").map(|_| ())
    }

    fn run(&self, command: &str) -> Result<String, UnboundError> {
        let mut cmd = Command::new(&self.program);
        if let Some(c) = &self.config {
            cmd.arg("-c").arg(c);
        }
        if let Some(s) = &self.socket {
            cmd.arg("-s").arg(s);
        }
        cmd.arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|error| UnboundError::Spawn {
            path: self.program.clone(),
            error,
        })?;
        let failed = |message: String| UnboundError::Failed {
            program: self.program.clone(),
            command: command.to_string(),
            message,
        };
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(TIMEOUT) {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                return Err(failed(format!("no answer in {} s", TIMEOUT.as_secs())));
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || stdout.starts_with("error") {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let msg = [stderr.as_str(), stdout.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            let msg: String = msg.chars().take(300).collect();
            return Err(failed(if msg.is_empty() {
                format!("exited with {}", out.status)
            } else {
                msg
            }));
        }
        Ok(stdout)
    }
}

/// The local addresses with a UDP socket bound to `port` in this network namespace
/// (/proc/net/udp and udp6): what a resolver really listens on. Unreadable files count as
/// no sockets.
pub fn udp_bound(port: u16) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(f) {
            out.extend(parse_proc_udp(&text, port));
        }
    }
    out
}

/// The `local_address` column of /proc/net/udp{,6}: the address as the kernel's 32-bit words
/// in host byte order, in hex, then `:PORT` in hex.
fn parse_proc_udp(text: &str, port: u16) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let Some(local) = line.split_whitespace().nth(1) else {
            continue;
        };
        let Some((addr, p)) = local.split_once(':') else {
            continue;
        };
        if u16::from_str_radix(p, 16).ok() != Some(port) {
            continue;
        }
        let mut bytes = Vec::with_capacity(16);
        for i in (0..addr.len()).step_by(8) {
            match addr.get(i..i + 8).map(|w| u32::from_str_radix(w, 16)) {
                Some(Ok(w)) => bytes.extend_from_slice(&w.to_ne_bytes()),
                _ => break,
            }
        }
        if let Ok(b4) = <[u8; 4]>::try_from(bytes.as_slice()) {
            out.push(std::net::IpAddr::from(b4));
        } else if let Ok(b16) = <[u8; 16]>::try_from(bytes.as_slice()) {
            out.push(std::net::IpAddr::from(b16));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn proc_udp_lines_give_addresses_on_the_port() {
        let v4 = "  sl  local_address rem_address   st\n\
   0: 0100007F:0035 00000000:0000 07\n\
   1: 010200C0:0035 00000000:0000 07\n\
   2: 010200C0:14E9 00000000:0000 07\n";
        assert_eq!(
            parse_proc_udp(v4, 53),
            vec![
                "127.0.0.1".parse::<std::net::IpAddr>().expect("ip"),
                "192.0.2.1".parse().expect("ip")
            ]
        );
        let v6 = "  sl  local_address rem_address st\n\
   0: B80D0120000000000000000060000000:0035 00000000000000000000000000000000:0000 07\n";
        assert_eq!(
            parse_proc_udp(v6, 53),
            vec!["2001:db8::60".parse::<std::net::IpAddr>().expect("ip")]
        );
    }

    #[test]
    fn files_are_replaced_whole_and_put_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tandem.conf");
        assert_eq!(read_file(&p).expect("read"), None);
        write_file(&p, "server:\n").expect("write");
        write_file(&p, "server:\n  local-data: \"a. A 192.0.2.1\"\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        restore_file(&p, Some("x\n")).expect("restore");
        assert_eq!(read_file(&p).expect("read").as_deref(), Some("x\n"));
        restore_file(&p, None).expect("remove");
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_panic() {
        assert!(UnboundControl::new("unbound-control", None, None).is_err());
        let c = UnboundControl::new("/nonexistent/unbound-control", None, None).expect("abs");
        let e = c.reload().expect_err("missing");
        assert!(e.to_string().contains("cannot run"), "{e}");
    }
}
