//! rtnetlink: links and addresses (the `rtnetlink` crate on tokio), and a link watcher.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_channel::mpsc::UnboundedReceiver;
use futures_util::{StreamExt, TryStreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressProtocol};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::AsyncSocket;
use rtnetlink::{AddressMessageBuilder, Handle, LinkGetRequest, MulticastGroup};

use crate::addrs::{nodad_header_flag, AddressInfo, TANDEM_ADDR_PROTO};
use crate::error::{rtnl_to_io, LinuxError};

/// A link as the daemon needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// The link's hardware address; all zero when it has no Ethernet address.
    pub mac: [u8; 6],
    /// Administratively up and with carrier: IFF_UP, IFF_LOWER_UP and IFF_RUNNING.
    pub up: bool,
}

impl LinkInfo {
    fn from_message(msg: &LinkMessage) -> LinkInfo {
        let mut name = String::new();
        let mut mac = [0u8; 6];
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name.clone_from(n),
                LinkAttribute::Address(a) => {
                    if let Ok(m) = <[u8; 6]>::try_from(a.as_slice()) {
                        mac = m;
                    }
                }
                _ => {}
            }
        }
        LinkInfo {
            index: msg.header.index,
            name,
            mac,
            up: link_is_up(msg.header.flags),
        }
    }
}

fn link_is_up(flags: LinkFlags) -> bool {
    flags.contains(LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running)
}

/// A handle on one rtnetlink socket. Cheap to clone; the socket's I/O runs as a task on the
/// tokio runtime `new` was called on, and ends when the last clone drops.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
}

fn ensure_runtime(what: &'static str) -> Result<tokio::runtime::Handle, LinuxError> {
    tokio::runtime::Handle::try_current().map_err(|e| LinuxError::NoRuntime {
        what,
        source: io::Error::other(e.to_string()),
    })
}

impl Netlink {
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Opens an rtnetlink socket in the caller's network namespace.
    pub async fn new() -> Result<Self, LinuxError> {
        let rt = ensure_runtime("Netlink::new")?;
        let (conn, handle, _unsolicited) =
            rtnetlink::new_connection().map_err(|source| LinuxError::Netlink {
                op: "open socket",
                target: "NETLINK_ROUTE".into(),
                source,
            })?;
        rt.spawn(conn);
        Ok(Netlink { handle })
    }

    /// Looks a link up by name.
    pub async fn link(&self, name: &str) -> Result<LinkInfo, LinuxError> {
        let req = self.handle.link().get().match_name(name.to_owned());
        get_link(
            req,
            || name.to_owned(),
            |source| LinuxError::NoSuchInterface {
                ifname: name.to_owned(),
                source,
            },
        )
        .await
    }

    /// Looks a link up by index.
    pub async fn link_by_index(&self, index: u32) -> Result<LinkInfo, LinuxError> {
        let req = self.handle.link().get().match_index(index);
        get_link(
            req,
            || format!("ifindex {index}"),
            |source| LinuxError::NoSuchIfindex {
                ifindex: index,
                source,
            },
        )
        .await
    }

    /// Every link of the namespace.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, LinuxError> {
        dump_links(&self.handle).await
    }

    /// Adds `addr/prefix` to the interface; says whether it added it or found it there already.
    /// IPv6 addresses are added with IFA_F_NODAD so they are usable at once. Every address
    /// added here is tagged with [`TANDEM_ADDR_PROTO`] (IFA_PROTO, kept by Linux 5.18 and
    /// later), so it is recognisable as a VIP later.
    pub async fn add_address(
        &self,
        ifindex: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<Added, LinuxError> {
        let mut req = self.handle.address().add(ifindex, addr, prefix);
        let msg = req.message_mut();
        msg.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(
                TANDEM_ADDR_PROTO,
            )));
        if addr.is_ipv6() {
            msg.header.flags |= nodad_header_flag();
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(Added::New),
            Err(e) => {
                let source = rtnl_to_io(e);
                match source.raw_os_error() {
                    Some(libc::EEXIST) => Ok(Added::AlreadyThere),
                    Some(libc::ENODEV) => Err(LinuxError::NoSuchIfindex { ifindex, source }),
                    _ => Err(LinuxError::Netlink {
                        op: "add address",
                        target: format!("{addr}/{prefix} on ifindex {ifindex}"),
                        source,
                    }),
                }
            }
        }
    }

    /// Removes `addr/prefix` from the interface; Ok if it is not there.
    pub async fn del_address(
        &self,
        ifindex: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), LinuxError> {
        let msg = match addr {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(ifindex)
                .address(a, prefix)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(ifindex)
                .address(a, prefix)
                .build(),
        };
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let source = rtnl_to_io(e);
                match source.raw_os_error() {
                    Some(libc::EADDRNOTAVAIL) => Ok(()),
                    Some(libc::ENODEV) => Err(LinuxError::NoSuchIfindex { ifindex, source }),
                    _ => Err(LinuxError::Netlink {
                        op: "delete address",
                        target: format!("{addr}/{prefix} on ifindex {ifindex}"),
                        source,
                    }),
                }
            }
        }
    }

    /// Removes `addr` from the interface only if Tandem added it: it carries
    /// [`TANDEM_ADDR_PROTO`], or `ours` says so (the caller added it itself, on a kernel older
    /// than 5.18 that drops the tag). An address someone else configured, equal to a VIP by
    /// mistake or added by hand, is never taken away. Says what it found.
    pub async fn release_address(
        &self,
        ifindex: u32,
        addr: IpAddr,
        ours: bool,
    ) -> Result<Released, LinuxError> {
        let present = self
            .address_details(ifindex)
            .await?
            .into_iter()
            .find(|a| a.addr == addr);
        match present {
            None => Ok(Released::NotPresent),
            Some(a) if !a.tandem && !ours => Ok(Released::NotOurs { prefix: a.prefix }),
            Some(a) => {
                // With the prefix the kernel has (the config's may have been edited since).
                self.del_address(ifindex, addr, a.prefix).await?;
                Ok(Released::Removed)
            }
        }
    }

    /// The addresses of an interface with their prefix lengths (both families, kernel order).
    pub async fn addresses(&self, ifindex: u32) -> Result<Vec<(IpAddr, u8)>, LinuxError> {
        Ok(self
            .address_details(ifindex)
            .await?
            .into_iter()
            .map(|a| (a.addr, a.prefix))
            .collect())
    }

    /// The addresses of an interface with flags: secondary, tentative, link scope, and whether
    /// Tandem added it (a VIP, maybe left behind by an earlier run).
    pub async fn address_details(&self, ifindex: u32) -> Result<Vec<AddressInfo>, LinuxError> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute()
            .map_ok(|m| AddressInfo::from_message(&m))
            .try_filter_map(|a| async move { Ok(a) })
            .try_collect()
            .await
            .map_err(|e| LinuxError::Netlink {
                op: "dump addresses",
                target: format!("ifindex {ifindex}"),
                source: rtnl_to_io(e),
            })
    }
}

/// Runs a request for one link: its info; `not_found` when there is no such link (no answer or
/// ENODEV); any other failure as a "get link" error on `target`.
async fn get_link(
    req: LinkGetRequest,
    target: impl FnOnce() -> String,
    not_found: impl FnOnce(io::Error) -> LinuxError,
) -> Result<LinkInfo, LinuxError> {
    let mut links = req.execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(LinkInfo::from_message(&msg)),
        Ok(None) => Err(not_found(io::Error::from_raw_os_error(libc::ENODEV))),
        Err(e) => {
            let source = rtnl_to_io(e);
            if source.raw_os_error() == Some(libc::ENODEV) {
                Err(not_found(source))
            } else {
                Err(LinuxError::Netlink {
                    op: "get link",
                    target: target(),
                    source,
                })
            }
        }
    }
}

async fn dump_links(handle: &Handle) -> Result<Vec<LinkInfo>, LinuxError> {
    handle
        .link()
        .get()
        .execute()
        .map_ok(|m| LinkInfo::from_message(&m))
        .try_collect()
        .await
        .map_err(|e| LinuxError::Netlink {
            op: "dump links",
            target: "all links".into(),
            source: rtnl_to_io(e),
        })
}

/// What [`Netlink::add_address`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    /// The address was on the interface already (tandem's from before, or someone else's).
    AlreadyThere,
}

/// What [`Netlink::release_address`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    Removed,
    /// The address was not on the interface.
    NotPresent,
    /// The address is there but Tandem did not add it: left alone.
    NotOurs {
        prefix: u8,
    },
}

/// A link changed (RTM_NEWLINK) or went away (RTM_DELLINK, reported with `up == false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    pub index: u32,
    pub name: String,
    /// Same meaning as [`LinkInfo::up`].
    pub up: bool,
}

type Unsolicited =
    UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>;

/// Link notifications from a netlink socket of its own subscribed to RTMGRP_LINK.
///
/// Create it before reading the links' initial state, so no change falls in between. The kernel
/// sends a message for every change of a link (not only up/down), so the same state often comes
/// twice: the caller dedups. If the socket's buffer overflowed (events lost), the watcher
/// re-reads every link and reports each one's current state.
pub struct LinkWatcher {
    handle: Handle,
    messages: Unsolicited,
    pending: VecDeque<LinkEvent>,
    /// Events were lost; every link must be re-read before the next event.
    resync: bool,
}

impl std::fmt::Debug for LinkWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkWatcher")
            .field("pending", &self.pending)
            .field("resync", &self.resync)
            .finish()
    }
}

impl LinkWatcher {
    /// Subscribes to link notifications in the caller's network namespace.
    pub async fn new() -> Result<Self, LinuxError> {
        Self::with_buffer_size(1 << 20).await
    }

    /// As [`LinkWatcher::new`] with a socket receive buffer of `bytes` (the default, 1 MiB,
    /// holds bursts of hundreds of link changes before the kernel drops events).
    pub async fn with_buffer_size(bytes: usize) -> Result<Self, LinuxError> {
        let rt = ensure_runtime("LinkWatcher::new")?;
        let err = |op: &'static str| {
            move |source: io::Error| LinuxError::Netlink {
                op,
                target: "RTMGRP_LINK".into(),
                source,
            }
        };
        let (mut conn, handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(err("subscribe"))?;
        conn.socket_mut()
            .socket_mut()
            .set_rx_buf_sz(bytes)
            .map_err(err("SO_RCVBUF"))?;
        rt.spawn(conn);
        Ok(LinkWatcher {
            handle,
            messages,
            pending: VecDeque::new(),
            resync: false,
        })
    }

    /// The next link event. Cancel-safe (usable in `tokio::select!`): an event is either
    /// returned or kept for the next call.
    pub async fn next(&mut self) -> Result<LinkEvent, LinuxError> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(ev);
            }
            if self.resync {
                // Events were lost: report every link's current state instead. (If this await
                // is cancelled, `resync` stays set and the next call dumps again.)
                let links = dump_links(&self.handle).await?;
                self.resync = false;
                self.pending.extend(links.into_iter().map(|l| LinkEvent {
                    index: l.index,
                    name: l.name,
                    up: l.up,
                }));
                continue;
            }
            let Some((msg, _)) = self.messages.next().await else {
                return Err(LinuxError::Netlink {
                    op: "watch links",
                    target: "RTMGRP_LINK".into(),
                    source: io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "netlink connection task ended",
                    ),
                });
            };
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                    let info = LinkInfo::from_message(&m);
                    return Ok(LinkEvent {
                        index: info.index,
                        name: info.name,
                        up: info.up,
                    });
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                    let info = LinkInfo::from_message(&m);
                    return Ok(LinkEvent {
                        index: info.index,
                        name: info.name,
                        up: false,
                    });
                }
                NetlinkPayload::Overrun(_) => self.resync = true,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_needs_admin_up_and_carrier() {
        assert!(link_is_up(
            LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running | LinkFlags::Broadcast
        ));
        assert!(!link_is_up(LinkFlags::Up | LinkFlags::Broadcast)); // NO-CARRIER
        assert!(!link_is_up(LinkFlags::LowerUp | LinkFlags::Running)); // admin down
    }

    #[test]
    fn link_info_reads_name_and_mac() {
        let mut m = LinkMessage::default();
        m.header.index = 4;
        m.header.flags = LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running;
        m.attributes.push(LinkAttribute::IfName("eth0".into()));
        m.attributes
            .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]));
        let i = LinkInfo::from_message(&m);
        assert_eq!(
            i,
            LinkInfo {
                index: 4,
                name: "eth0".into(),
                mac: [2, 0, 0, 0, 0, 1],
                up: true
            }
        );
        // No (or a non-Ethernet) hardware address: zeros.
        m.attributes = vec![LinkAttribute::Address(vec![1, 2, 3, 4])];
        assert_eq!(LinkInfo::from_message(&m).mac, [0; 6]);
    }
}
