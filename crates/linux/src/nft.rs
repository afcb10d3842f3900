//! nftables: rulesets are applied by `nft -f -`, which runs a whole script as one kernel
//! transaction: either all of it takes effect or none of it does, so a failed apply leaves the
//! ruleset that was in force.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft (is the nftables package installed?): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft rejected the ruleset: {0}")]
    Rejected(String),
}

fn run(args: &[&str], script: &str) -> Result<String, NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(NftError::Rejected(if msg.is_empty() {
            format!("nft exited with {}", out.status)
        } else {
            msg
        }));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks a script without applying it (`nft -c`): the kernel validates every rule.
pub fn check(script: &str) -> Result<(), NftError> {
    run(&["-c", "-f", "-"], script).map(|_| ())
}

/// Applies a script atomically.
pub fn apply(script: &str) -> Result<(), NftError> {
    run(&["-f", "-"], script).map(|_| ())
}

/// The current contents of one table, as `nft list table` prints it; `None` if it does not exist.
pub fn list_table(family: &str, name: &str) -> Result<Option<String>, NftError> {
    match run(&["list", "table", family, name], "") {
        Ok(s) => Ok(Some(s)),
        Err(NftError::Rejected(m)) if m.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}
