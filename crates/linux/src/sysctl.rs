//! Sysctls by their dotted names ("net.ipv4.ip_forward"), read and written under /proc/sys.
//!
//! A name containing '/' is taken as a path relative to /proc/sys instead
//! ("net/ipv4/conf/eth0.100/forwarding"), which is how names whose parts contain dots (VLAN
//! interfaces) are written, as with sysctl(8). Values are per network namespace for `net.*`:
//! the namespace of the calling thread.

use std::path::PathBuf;

use crate::error::LinuxError;

const ROOT: &str = "/proc/sys";

/// The file under /proc/sys for a sysctl name.
pub fn path_of(name: &str) -> Result<PathBuf, LinuxError> {
    let invalid = |why| LinuxError::InvalidSysctlName {
        name: name.to_owned(),
        why,
    };
    let rel = name
        .strip_prefix("/proc/sys/")
        .unwrap_or(name)
        .trim_start_matches('/');
    let parts: Vec<&str> = if rel.contains('/') {
        rel.split('/').collect()
    } else {
        rel.split('.').collect()
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid("empty component"));
    }
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(invalid("'.' or '..' component"));
    }
    if parts.iter().any(|p| p.contains('\0')) {
        return Err(invalid("NUL byte"));
    }
    let mut path = PathBuf::from(ROOT);
    path.extend(parts);
    Ok(path)
}

/// Reads a sysctl; the value without its trailing newline.
pub fn read(name: &str) -> Result<String, LinuxError> {
    let path = path_of(name)?;
    match std::fs::read_to_string(&path) {
        Ok(mut v) => {
            while v.ends_with('\n') {
                v.pop();
            }
            Ok(v)
        }
        Err(source) => Err(LinuxError::Sysctl {
            name: name.to_owned(),
            path,
            op: "reading",
            source,
        }),
    }
}

/// Writes a sysctl.
pub fn write(name: &str, value: &str) -> Result<(), LinuxError> {
    let path = path_of(name)?;
    std::fs::write(&path, value).map_err(|source| LinuxError::Sysctl {
        name: name.to_owned(),
        path,
        op: "writing",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_names_to_paths() {
        let p = |n| path_of(n).map(|p| p.display().to_string());
        assert_eq!(
            p("net.ipv4.ip_forward").ok().as_deref(),
            Some("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            p("net/ipv4/conf/eth0.100/forwarding").ok().as_deref(),
            Some("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        assert_eq!(
            p("/proc/sys/net/ipv6/conf/all/forwarding").ok().as_deref(),
            Some("/proc/sys/net/ipv6/conf/all/forwarding")
        );
        for bad in [
            "",
            "net..ipv4",
            "net/../../etc/passwd",
            "net.ipv4.",
            "net/./x",
        ] {
            assert!(
                matches!(path_of(bad), Err(LinuxError::InvalidSysctlName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reads_without_newline_and_reports_missing() {
        let v = read("kernel.ostype").expect("readable on Linux");
        assert_eq!(v, "Linux");
        let e = read("net.ipv4.no_such_sysctl").expect_err("missing");
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(
            e.to_string().contains("/proc/sys/net/ipv4/no_such_sysctl"),
            "{e}"
        );
    }
}
