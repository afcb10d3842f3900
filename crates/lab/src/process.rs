//! Background processes in host namespaces: [`Host::spawn`] starts one, a [`Process`] kills
//! and reaps it on drop, and the lab kills every tracked pid that is left when it drops.

use crate::cmd::run_cmd;
use crate::Host;
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Pids spawned through any [`Host`] of a lab; killed when the lab drops.
pub(crate) type Tracked = Arc<Mutex<Vec<u32>>>;

static SPAWN_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Host {
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
