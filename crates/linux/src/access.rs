//! Who may talk to the daemon: the process's file creation mask, groups by name, and the
//! groups of a connecting process.

use std::io;

/// Makes every file and socket the process creates from now on private to its owner (umask
/// 077), so none is ever open to others, even for the moment before a chmod.
pub fn private_umask() {
    use nix::sys::stat::{umask, Mode};
    umask(Mode::from_bits_truncate(0o077));
}

/// The id of a group by name; None when there is no such group.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    nix::unistd::Group::from_name(name)
        .map(|g| g.map(|g| g.gid.as_raw()))
        .map_err(io::Error::from)
}

/// Gives a file (the control socket) to `gid` and lets that group read and write it
/// (mode 0660); the owner stays.
pub fn share_with_group(path: &std::path::Path, gid: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
        .map_err(io::Error::from)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
}

/// The supplementary groups of a running process (`Groups:` in /proc/PID/status).
pub fn groups_of(pid: i32) -> io::Result<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_name_and_of_a_process() {
        assert_eq!(group_id("root").expect("lookup"), Some(0));
        assert_eq!(group_id("no-such-group-here").expect("lookup"), None);
        let pid = i32::try_from(std::process::id()).expect("pid");
        groups_of(pid).expect("own groups");
    }
}
