//! Running a program (a hook, an exec health check) bounded in time: by absolute path, with
//! arguments and extra environment, stdin from /dev/null, in a process group of its own so that
//! at the timeout the whole group (the program and whatever it started) is killed.
//!
//! The outcome keeps the exit status and the first line of what it wrote to stderr (for the
//! log); stdout is discarded.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// At most this much of stderr is kept (the first line of it is reported).
const STDERR_KEEP: usize = 4096;
/// After the program exits (or is killed), how long its stderr may stay open (a child it left
/// behind in another group may hold it) before it is read no further.
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The program, by path (the caller resolves and checks it; it is not looked up in PATH).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to the daemon's environment.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ended by itself: its exit code (None when a signal ended it, then `signal`).
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        /// The first non-empty line it wrote to stderr (cut at 200 characters).
        stderr: String,
        took: Duration,
    },
    /// It ran past its timeout: its process group was killed (SIGKILL).
    TimedOut { stderr: String, timeout: Duration },
    /// It could not be started.
    SpawnFailed(String),
}

impl Outcome {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        matches!(self, Outcome::Exited { code: Some(0), .. })
    }

    /// "exit 0", "exit 3: no route", "killed by signal 9", "timed out after 2 s (killed)",
    /// "cannot run: ...".
    pub fn describe(&self) -> String {
        let with = |s: String, err: &str| {
            if err.is_empty() {
                s
            } else {
                format!("{s}: {err}")
            }
        };
        match self {
            Outcome::Exited {
                code: Some(c),
                stderr,
                ..
            } => with(format!("exit {c}"), stderr),
            Outcome::Exited { signal, stderr, .. } => with(
                format!("killed by signal {}", signal.unwrap_or_default()),
                stderr,
            ),
            Outcome::TimedOut { stderr, timeout } => with(
                format!(
                    "timed out after {} s (process group killed)",
                    timeout.as_secs_f64()
                ),
                stderr,
            ),
            Outcome::SpawnFailed(e) => format!("cannot run: {e}"),
        }
    }
}

fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    // Only printable characters reach a log line.
    line.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Runs `spec` to its end or its timeout. Never panics; a program that cannot be started is
/// [`Outcome::SpawnFailed`].
pub async fn run(spec: &Spec) -> Outcome {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::SpawnFailed(format!("{}: {e}", spec.program.display())),
    };
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let mut stderr = child.stderr.take();
    let mut buf = Vec::new();
    // stderr is read while the program runs (a full pipe would block it).
    let reading = async {
        if let Some(s) = stderr.as_mut() {
            let mut chunk = [0u8; 1024];
            loop {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if buf.len() < STDERR_KEEP {
                            buf.extend_from_slice(&chunk[..n.min(STDERR_KEEP - buf.len())]);
                        }
                    }
                }
            }
        }
    };
    tokio::pin!(reading);
    let mut read_all = false;
    let waited = tokio::select! {
        w = tokio::time::timeout(spec.timeout, child.wait()) => w,
        () = &mut reading => {
            // stderr closed; the program may still run.
            read_all = true;
            let left = spec.timeout.saturating_sub(started.elapsed());
            tokio::time::timeout(left, child.wait()).await
        }
    };
    let status = match waited {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => {
            kill_group(pgid);
            let _ = child.wait().await;
            return Outcome::SpawnFailed(format!("waiting for {}: {e}", spec.program.display()));
        }
        Err(_elapsed) => {
            kill_group(pgid);
            let _ = child.wait().await;
            None
        }
    };
    if !read_all {
        let _ = tokio::time::timeout(STDERR_GRACE, &mut reading).await;
    }
    let err = first_line(&buf);
    match status {
        Some(st) => {
            use std::os::unix::process::ExitStatusExt;
            Outcome::Exited {
                code: st.code(),
                signal: st.signal(),
                stderr: err,
                took: started.elapsed(),
            }
        }
        None => Outcome::TimedOut {
            stderr: err,
            timeout: spec.timeout,
        },
    }
}

/// SIGKILL to the program's whole process group.
fn kill_group(pgid: Option<i32>) {
    if let Some(p) = pgid.filter(|p| *p > 0) {
        let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Spec {
        Spec {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            env: vec![("TANDEM_TEST".into(), "hello".into())],
            timeout,
        }
    }

    #[tokio::test]
    async fn exit_status_env_and_first_stderr_line() {
        let o = run(&sh(
            "echo \"$TANDEM_TEST\" >&2; echo second >&2; exit 3",
            Duration::from_secs(5),
        ))
        .await;
        assert!(!o.success());
        assert_eq!(o.describe(), "exit 3: hello");
        let o = run(&sh("exit 0", Duration::from_secs(5))).await;
        assert!(o.success(), "{o:?}");
        assert_eq!(o.describe(), "exit 0");
    }

    #[tokio::test]
    async fn a_hanging_group_is_killed_at_the_timeout() {
        let dir = std::env::temp_dir().join(format!("tandem-proc-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let marker = dir.join("child-survived");
        let _ = std::fs::remove_file(&marker);
        // A child of the program (same group) would write the marker after 2 s.
        let script = format!("(sleep 2; touch '{}') & sleep 30", marker.display());
        let o = run(&sh(&script, Duration::from_millis(500))).await;
        assert!(matches!(o, Outcome::TimedOut { .. }), "{o:?}");
        assert!(o.describe().starts_with("timed out after 0.5 s"), "{o:?}");
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the program's child outlived the kill");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_missing_program_is_reported() {
        let mut s = sh("", Duration::from_secs(1));
        s.program = PathBuf::from("/nonexistent/hook");
        let o = run(&s).await;
        assert!(
            o.describe().starts_with("cannot run: /nonexistent/hook"),
            "{o:?}"
        );
    }
}
