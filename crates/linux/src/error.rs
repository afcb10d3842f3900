//! The one error type of this crate.
//!
//! Every variant names what failed and where (interface, address, sysctl path) and keeps the
//! kernel's answer: an [`io::Error`] with its errno (netlink errors are turned into the errno the
//! kernel sent back), or a [`DecodeError`] for a malformed packet.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

/// Address family of a CARP socket, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// Why a received packet could not be decoded. Never fatal for the socket: the next `recv`
/// works as before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {len} bytes is shorter than an IPv4 header (20 bytes)")]
    TooShort { len: usize },
    #[error("IP version {version} where 4 was expected")]
    NotIpv4 { version: u8 },
    #[error(
        "IPv4 header length {header_len} bytes (IHL {ihl}) is invalid for a {len}-byte packet"
    )]
    BadHeaderLength {
        ihl: u8,
        header_len: usize,
        len: usize,
    },
    #[error("IPv4 total length {total_len} is invalid (header {header_len} bytes, {len} bytes received)")]
    BadTotalLength {
        total_len: usize,
        header_len: usize,
        len: usize,
    },
    #[error("IP protocol {protocol} where 112 was expected")]
    WrongProtocol { protocol: u8 },
    #[error("packet longer than the {capacity}-byte receive buffer (truncated)")]
    Truncated { capacity: usize },
    #[error("the kernel gave no {what} control message")]
    MissingControl { what: &'static str },
}

/// Every error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinuxError {
    /// The interface name does not exist in this network namespace.
    #[error("interface {ifname:?} does not exist")]
    NoSuchInterface {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// No interface has this index in this network namespace.
    #[error("interface index {ifindex} does not exist")]
    NoSuchIfindex {
        ifindex: u32,
        #[source]
        source: io::Error,
    },
    /// A CARP IPv4 socket needs a real (non-VIP) IPv4 address on the interface to send from.
    #[error("interface {ifname} has no IPv4 address of its own to send CARP advertisements from (add the node's real address first)")]
    NoIpv4Address { ifname: String },
    /// A CARP IPv6 socket needs the interface's link-local address to send from.
    #[error("interface {ifname} has no IPv6 link-local address to send CARP advertisements from (is IPv6 disabled on it, or the link not yet up?)")]
    NoLinkLocalAddress { ifname: String },
    /// Creating, configuring, sending on or receiving from a CARP raw socket failed.
    #[error("CARP {family} socket on {ifname}: {op} failed")]
    Socket {
        ifname: String,
        family: Family,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A received packet was malformed; the socket stays usable.
    #[error("CARP {family} socket on {ifname}: malformed packet{}", from.map(|a| format!(" from {a}")).unwrap_or_default())]
    Decode {
        ifname: String,
        family: Family,
        from: Option<IpAddr>,
        #[source]
        source: DecodeError,
    },
    /// A tokio runtime (with I/O enabled) is needed but the caller is not inside one.
    #[error("{what} must be called inside a tokio runtime with I/O enabled")]
    NoRuntime {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// An rtnetlink request failed. `target` names the interface/address it was about.
    #[error("netlink {op} ({target}) failed")]
    Netlink {
        op: &'static str,
        target: String,
        #[source]
        source: io::Error,
    },
    /// Sending a gratuitous ARP or unsolicited neighbour advertisement failed.
    #[error("sending {what} for {addr} on interface index {ifindex} failed")]
    Announce {
        what: &'static str,
        ifindex: u32,
        addr: IpAddr,
        #[source]
        source: io::Error,
    },
    /// An ICMP echo socket (health checks): creating, binding, sending or receiving failed.
    #[error("ping {target}: {op} failed")]
    Ping {
        target: IpAddr,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A sysctl name that does not map to a file under /proc/sys.
    #[error("invalid sysctl name {name:?}: {why}")]
    InvalidSysctlName { name: String, why: &'static str },
    /// Reading or writing a sysctl file failed.
    #[error("sysctl {name}: {op} {} failed", path.display())]
    Sysctl {
        name: String,
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A link of the name Tandem wants for a virtual MAC exists and was not made by Tandem:
    /// Tandem never changes or deletes it.
    #[error("interface {ifname:?} exists and was not created by tandem ({what}); tandem leaves it alone: delete or rename it, or choose another vhid")]
    NotOurs { ifname: String, what: String },
}

impl LinuxError {
    /// The kernel errno behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinuxError::NoSuchInterface { source, .. }
            | LinuxError::NoSuchIfindex { source, .. }
            | LinuxError::Socket { source, .. }
            | LinuxError::NoRuntime { source, .. }
            | LinuxError::Netlink { source, .. }
            | LinuxError::Announce { source, .. }
            | LinuxError::Ping { source, .. }
            | LinuxError::Sysctl { source, .. } => source.raw_os_error(),
            LinuxError::NoIpv4Address { .. }
            | LinuxError::NoLinkLocalAddress { .. }
            | LinuxError::Decode { .. }
            | LinuxError::InvalidSysctlName { .. }
            | LinuxError::NotOurs { .. } => None,
        }
    }

    /// True for errors about one packet (a malformed advertisement): count it and call `recv`
    /// again; the socket is fine.
    pub fn is_per_packet(&self) -> bool {
        matches!(self, LinuxError::Decode { .. })
    }
}

/// Turns an rtnetlink error into an `io::Error` that keeps the kernel's errno where it sent one.
pub(crate) fn rtnl_to_io(err: rtnetlink::Error) -> io::Error {
    match err {
        rtnetlink::Error::NetlinkError(msg) if msg.code.is_some() => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}
