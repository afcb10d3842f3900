//! nftables: rulesets are applied by `nft -f -`, which runs a whole script as one kernel
//! transaction: either all of it takes effect or none of it does, so a failed apply leaves the
//! ruleset that was in force.
//!
//! `nft` is run by absolute path ([`DEFAULT_NFT`] unless configured), never looked up through
//! `PATH`: whoever can put a file early on the daemon's PATH would otherwise decide what the
//! firewall is.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian (and most distributions) install nft.
pub const DEFAULT_NFT: &str = "/usr/sbin/nft";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    // The io error is in the message, not the source chain: `{:#}` would print it twice.
    #[error("cannot run {path} (is the nftables package installed?): {error}")]
    Spawn {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("nft rejected the ruleset: {0}")]
    Rejected(String),
    #[error("{0}: the nft program must be given by absolute path")]
    NotAbsolute(PathBuf),
}

/// The nft program, by absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nft {
    path: PathBuf,
}

impl Default for Nft {
    fn default() -> Nft {
        Nft {
            path: PathBuf::from(DEFAULT_NFT),
        }
    }
}

impl Nft {
    /// The nft at `path`, which must be absolute (it is not looked up through PATH).
    pub fn new(path: impl Into<PathBuf>) -> Result<Nft, NftError> {
        let path = path.into();
        if !path.is_absolute() {
            return Err(NftError::NotAbsolute(path));
        }
        Ok(Nft { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn run(&self, args: &[&str], script: &str) -> Result<String, NftError> {
        let spawn = |error| NftError::Spawn {
            path: self.path.clone(),
            error,
        };
        let mut child = Command::new(&self.path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).map_err(spawn)?;
        }
        let out = child.wait_with_output().map_err(spawn)?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(NftError::Rejected(if msg.is_empty() {
                format!("{} exited with {}", self.path.display(), out.status)
            } else {
                msg
            }));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Checks a script without applying it (`nft -c`): the kernel validates every rule.
    pub fn check(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-c", "-f", "-"], script).map(|_| ())
    }

    /// Applies a script atomically.
    pub fn apply(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], script).map(|_| ())
    }

    /// The current contents of one table, as `nft list table` prints it; `None` if it does
    /// not exist.
    pub fn list_table(&self, family: &str, name: &str) -> Result<Option<String>, NftError> {
        match self.run(&["list", "table", family, name], "") {
            Ok(s) => Ok(Some(s)),
            Err(NftError::Rejected(m)) if m.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_nft_is_named_once_with_its_error() {
        let nft = Nft::new("/nonexistent/tandem-test/nft").expect("absolute");
        let e = nft.apply("").expect_err("no such program");
        let text = format!("{e}");
        assert!(text.contains("/nonexistent/tandem-test/nft"), "{text}");
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
        // Nothing in the source chain repeats it when the chain is printed (`{:#}`).
        assert!(std::error::Error::source(&e).is_none(), "{text}");
    }

    #[test]
    fn nft_is_never_looked_up_through_path() {
        assert_eq!(Nft::default().path(), Path::new("/usr/sbin/nft"));
        assert!(matches!(Nft::new("nft"), Err(NftError::NotAbsolute(_))));
        assert!(matches!(
            Nft::new("sbin/nft"),
            Err(NftError::NotAbsolute(_))
        ));
        let n = Nft::new("/opt/nft/bin/nft").expect("absolute");
        assert_eq!(n.path(), Path::new("/opt/nft/bin/nft"));
    }

    #[test]
    fn a_missing_nft_is_named_in_the_error() {
        let e = Nft::new("/nonexistent/nft")
            .expect("absolute")
            .apply("")
            .expect_err("no such program");
        assert!(
            e.to_string().starts_with("cannot run /nonexistent/nft"),
            "{e}"
        );
    }
}
