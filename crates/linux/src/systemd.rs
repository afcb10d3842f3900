//! The service manager (systemd): readiness, status and watchdog notifications over
//! `$NOTIFY_SOCKET` (sd_notify(3), through the `sd-notify` crate), and whether stderr is the
//! journal's stream (`$JOURNAL_STREAM`, systemd.exec(5)).
//!
//! Without `NOTIFY_SOCKET` (not started by systemd, or not `Type=notify`) every notification is
//! a no-op. The environment is never changed here (other threads read it), so the CARP thread
//! can keep sending `WATCHDOG=1` after the daemon said `READY=1`. A notification is one
//! datagram on a fresh unix socket: it never blocks (a full queue is an error, not a wait).

use sd_notify::NotifyState;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// `READY=1` (with a first `STATUS=` line): the service is up.
pub fn ready(status: &str) -> io::Result<()> {
    sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)])
}

/// `STATUS=...`: one line that `systemctl status` shows.
pub fn status(status: &str) -> io::Result<()> {
    sd_notify::notify(false, &[NotifyState::Status(status)])
}

/// `STOPPING=1` (with a last status line): the service is shutting down.
pub fn stopping(status: &str) -> io::Result<()> {
    sd_notify::notify(false, &[NotifyState::Stopping, NotifyState::Status(status)])
}

/// `WATCHDOG=1`: the service is alive.
pub fn watchdog() -> io::Result<()> {
    sd_notify::notify(false, &[NotifyState::Watchdog])
}

/// Whether notifications go anywhere (`NOTIFY_SOCKET` is set).
pub fn notify_socket() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

/// The watchdog interval the unit asked for (`WatchdogSec=`: `WATCHDOG_USEC`, for this very
/// process by `WATCHDOG_PID`), or None when no watchdog is armed or nothing listens.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    if notify_socket() && sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec))
    } else {
        None
    }
}

/// Whether stderr is connected to the journal: `JOURNAL_STREAM` (`DEVICE:INODE`, set by
/// systemd for `StandardError=journal`) names the very file stderr is.
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}
