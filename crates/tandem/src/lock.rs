//! The node's lock: one `tandem run` per node. It is taken before the daemon changes anything
//! (a VIP, a sysctl, the ruleset, the control socket), so a second start with the same config
//! fails at once and leaves the running daemon and its node untouched.

use anyhow::Context;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held for the daemon's lifetime; the kernel releases it when the process ends, however it
/// ends, so a crash never leaves a stale lock.
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
}

/// The lock file of a node: next to its control socket (both are per node, and several nodes
/// may run on one machine in network namespaces).
pub fn path_for(control_socket: &Path) -> PathBuf {
    let mut p = control_socket.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl NodeLock {
    pub fn acquire(control_socket: &Path, node: &str) -> anyhow::Result<NodeLock> {
        let path = path_for(control_socket);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                anyhow::bail!(
                    "node {node} is already run by tandem{} (lock {} is held); this start changes nothing",
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" pid {holder}")
                    },
                    path.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        // Who holds it, for the message above.
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(NodeLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_node_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("fw1.sock");
        let first = NodeLock::acquire(&sock, "fw1").expect("first");
        let e = NodeLock::acquire(&sock, "fw1")
            .expect_err("second")
            .to_string();
        assert!(e.contains("already run by tandem pid"), "{e}");
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        drop(first);
        NodeLock::acquire(&sock, "fw1").expect("free again");
    }
}
