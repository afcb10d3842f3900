//! The `certificates` area on this node's disk: each certificate as `NAME.crt` (0644) and its
//! key as `NAME.key` (0600) in `<[node] state_dir>/certificates/`, for services to use.
//!
//! All or nothing, in two steps: [`stage`] writes every changed file under a temporary name
//! (nothing in use changes; a failure removes what it wrote), [`Staged::commit`] renames them
//! into place and removes the files of certificates no longer in the config. Only files this
//! daemon wrote are ever removed: it lists the names it wrote in `.tandem-written`.

use crate::config::{Certificate, Config};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The names written last time, one a line.
const WRITTEN: &str = ".tandem-written";

/// Where a node's certificates go.
pub fn dir(cfg: &Config) -> PathBuf {
    cfg.node.state_dir.join("certificates")
}

/// Files written under temporary names, waiting to be renamed into place.
#[derive(Debug)]
pub struct Staged {
    dir: PathBuf,
    /// (temporary, final) paths.
    files: Vec<(PathBuf, PathBuf)>,
    names: BTreeSet<String>,
    /// Names written before and now gone from the config.
    stale: Vec<String>,
}

fn written(dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(dir.join(WRITTEN))
        .unwrap_or_default()
        .lines()
        .filter(|n| crate::config::certificates::valid_name(n))
        .map(str::to_string)
        .collect()
}

/// Writes `text` to `path` with `mode`, synced to disk.
fn write_mode(path: &Path, text: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    // The umask (or a file left from before) must not decide the mode.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(text)?;
    f.sync_all()
}

/// Whether `path` already holds `text` with `mode` (then it is not written again).
fn same(path: &Path, text: &[u8], mode: u32) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| {
        m.is_file() && m.permissions().mode() & 0o7777 == mode && m.len() == text.len() as u64
    }) && std::fs::read(path).is_ok_and(|b| b == text)
}

/// Writes what changed under temporary names. Nothing in use changes; on an error what was
/// written is removed again.
pub fn stage(dir: &Path, certs: &[Certificate]) -> std::io::Result<Staged> {
    let before = written(dir);
    let names: BTreeSet<String> = certs.iter().map(|c| c.name.clone()).collect();
    let mut st = Staged {
        dir: dir.to_path_buf(),
        files: Vec::new(),
        stale: before.difference(&names).cloned().collect(),
        names,
    };
    if certs.is_empty() && before.is_empty() {
        return Ok(st);
    }
    // The directory may be entered by anyone its parent lets in: keys are 0600 each.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    for c in certs {
        for (ext, text, mode) in [
            ("crt", c.cert_pem.as_bytes(), 0o644),
            ("key", c.key_pem.expose().as_bytes(), 0o600),
        ] {
            let path = dir.join(format!("{}.{ext}", c.name));
            if same(&path, text, mode) {
                continue;
            }
            let tmp = dir.join(format!(".{}.{ext}.tmp", c.name));
            if let Err(e) = write_mode(&tmp, text, mode) {
                let _ = std::fs::remove_file(&tmp);
                st.abort();
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", path.display()),
                ));
            }
            st.files.push((tmp, path));
        }
    }
    Ok(st)
}

impl Staged {
    /// Whether committing changes anything on disk.
    pub fn changes(&self) -> bool {
        !self.files.is_empty() || !self.stale.is_empty()
    }

    /// Renames the staged files into place, removes the files of certificates gone from the
    /// config, and records the names written.
    pub fn commit(mut self) -> std::io::Result<()> {
        if !self.changes() {
            return Ok(());
        }
        for (tmp, path) in std::mem::take(&mut self.files) {
            std::fs::rename(&tmp, &path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        }
        for name in &self.stale {
            for ext in ["crt", "key"] {
                let _ = std::fs::remove_file(self.dir.join(format!("{name}.{ext}")));
            }
        }
        let mut list: String = self.names.iter().map(|n| format!("{n}\n")).collect();
        if list.is_empty() {
            list.push('\n');
        }
        let tmp = self.dir.join(format!("{WRITTEN}.tmp"));
        write_mode(&tmp, list.as_bytes(), 0o600)?;
        std::fs::rename(&tmp, self.dir.join(WRITTEN))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Removes the staged files (nothing else changed).
    pub fn abort(&mut self) {
        for (tmp, _) in self.files.drain(..) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// A stage dropped without a commit (an activation that failed later) leaves nothing behind.
impl Drop for Staged {
    fn drop(&mut self) {
        self.abort();
    }
}

/// [`stage`] off the async threads, for the daemon.
pub async fn stage_for(cfg: &Config) -> anyhow::Result<Staged> {
    let dir = dir(cfg);
    let certs = cfg.certificates.clone();
    tokio::task::spawn_blocking(move || stage(&dir, &certs))
        .await
        .map_err(|e| anyhow::anyhow!("the certificates thread died: {e}"))?
        .map_err(|e| anyhow::anyhow!("cannot write the certificates: {e}"))
}

/// [`Staged::commit`] off the async threads; says what it did (or why not) for the log.
pub async fn commit(staged: Staged) -> Result<bool, String> {
    let changes = staged.changes();
    tokio::task::spawn_blocking(move || staged.commit())
        .await
        .map_err(|e| format!("the certificates thread died: {e}"))?
        .map_err(|e| format!("cannot put the certificates in place: {e}"))?;
    Ok(changes)
}

/// One certificate in status: what it is, when it expires, where its files are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertificateStatus {
    pub name: String,
    pub subject: String,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// `not_after` in RFC 3339 (UTC).
    pub expires: String,
    /// Whole days until it expires (negative: expired that many days ago).
    pub days_left: i64,
    /// SHA-256 of the certificate (DER), lowercase hex.
    pub sha256: String,
    /// Chain certificates after it.
    pub chain: usize,
    pub cert_file: String,
    pub key_file: String,
}

/// The running config's certificates as status shows them, at `now` (Unix seconds); `date`
/// formats a Unix time.
pub fn status(cfg: &Config, now: i64, date: impl Fn(u64) -> String) -> Vec<CertificateStatus> {
    let dir = dir(cfg);
    cfg.certificates
        .iter()
        .map(|c| CertificateStatus {
            name: c.name.clone(),
            subject: c.info.subject.clone(),
            not_before: c.info.not_before,
            not_after: c.info.not_after,
            expires: date(u64::try_from(c.info.not_after).unwrap_or(0)),
            days_left: (c.info.not_after - now).div_euclid(86_400),
            sha256: c.info.sha256.clone(),
            chain: c.info.chain,
            cert_file: dir.join(format!("{}.crt", c.name)).display().to_string(),
            key_file: dir.join(format!("{}.key", c.name)).display().to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::certificates::{inspect, KeyPem};

    fn cert(name: &str) -> Certificate {
        let ck =
            rcgen::generate_simple_self_signed(vec![format!("{name}.example.org")]).expect("rcgen");
        let (c, k) = (ck.cert.pem(), ck.signing_key.serialize_pem());
        let info = inspect(&c, &k).expect("valid");
        Certificate {
            name: name.into(),
            cert_pem: c,
            key_pem: KeyPem::new(k),
            info,
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn files_are_written_with_their_modes_and_stale_ones_removed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("certificates");
        let (a, b) = (cert("a"), cert("b"));
        stage(&dir, &[a.clone(), b.clone()])
            .expect("stage")
            .commit()
            .expect("commit");
        assert_eq!(mode(&dir.join("a.crt")), 0o644);
        assert_eq!(mode(&dir.join("a.key")), 0o600);
        assert_eq!(
            std::fs::read_to_string(dir.join("b.key")).expect("key"),
            b.key_pem.expose()
        );
        // Someone else's file in the directory stays.
        std::fs::write(dir.join("other.crt"), "x").expect("other");
        let st = stage(&dir, std::slice::from_ref(&b)).expect("stage");
        assert!(st.changes());
        st.commit().expect("commit");
        assert!(!dir.join("a.crt").exists() && !dir.join("a.key").exists());
        assert!(dir.join("b.crt").exists() && dir.join("other.crt").exists());
        // Unchanged: nothing to do.
        assert!(!stage(&dir, &[b]).expect("stage").changes());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn an_aborted_stage_changes_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("certificates");
        let a = cert("a");
        stage(&dir, &[a]).expect("stage").commit().expect("commit");
        let before = std::fs::read(dir.join("a.crt")).expect("crt");
        let mut st = stage(&dir, &[cert("a")]).expect("stage");
        st.abort();
        assert_eq!(std::fs::read(dir.join("a.crt")).expect("crt"), before);
        assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), 3);
    }
}
