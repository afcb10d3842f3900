//! Virtual MACs: a macvlan (mode private) on a VIP's interface whose MAC is the VRRP / CARP
//! virtual router MAC, as keepalived's `use_vmac`. Tandem marks every macvlan it creates with
//! an interface alias starting with [`TANDEM_LINK_ALIAS`] and only ever deletes or recreates a
//! link that carries it: a link of the same name made by anyone else is an error, left alone.

use futures_util::TryStreamExt;
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkInfo as NlLinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::{LinkMacVlan, LinkUnspec};

use crate::error::{rtnl_to_io, LinuxError};
use crate::netlink::Netlink;

/// The start of the alias (IFLA_IFALIAS, `ip link show` prints it as `alias ...`) of every link
/// Tandem creates.
pub const TANDEM_LINK_ALIAS: &str = "tandem:";

/// 00:00:5e:00:01:ID: BSD CARP's virtual MAC of a vhid, and VRRP's for IPv4 (RFC 5798 7.3).
pub fn mac_v4(id: u8) -> [u8; 6] {
    [0, 0, 0x5e, 0, 1, id]
}

/// 00:00:5e:00:02:ID: VRRP's virtual MAC of a router for IPv6 (RFC 5798 7.3).
pub fn mac_v6(id: u8) -> [u8; 6] {
    [0, 0, 0x5e, 0, 2, id]
}

/// A MAC as `ip link` prints it.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What a link of a given name is, as far as ownership goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOwner {
    pub index: u32,
    pub macvlan: bool,
    /// Its parent (IFLA_LINK).
    pub parent: Option<u32>,
    pub alias: Option<String>,
}

impl LinkOwner {
    fn from_message(m: &LinkMessage) -> LinkOwner {
        let mut o = LinkOwner {
            index: m.header.index,
            macvlan: false,
            parent: None,
            alias: None,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfAlias(s) => o.alias = Some(s.clone()),
                LinkAttribute::Link(p) => o.parent = Some(*p),
                LinkAttribute::LinkInfo(infos) => {
                    o.macvlan |= infos
                        .iter()
                        .any(|i| matches!(i, NlLinkInfo::Kind(InfoKind::MacVlan)));
                }
                _ => {}
            }
        }
        o
    }

    /// Made by Tandem: a macvlan with Tandem's alias.
    pub fn is_tandems(&self) -> bool {
        self.macvlan
            && self
                .alias
                .as_deref()
                .is_some_and(|a| a.starts_with(TANDEM_LINK_ALIAS))
    }

    fn why_not_ours(&self) -> String {
        match (&self.alias, self.macvlan) {
            (_, false) => "it is not a macvlan".into(),
            (None, true) => "a macvlan without tandem's alias".into(),
            (Some(a), true) => format!("a macvlan with alias {a:?}"),
        }
    }
}

impl Netlink {
    /// The link of this name, if there is one.
    pub async fn link_owner(&self, name: &str) -> Result<Option<LinkOwner>, LinuxError> {
        let req = self.handle().link().get().match_name(name.to_owned());
        match req.execute().try_next().await {
            Ok(Some(m)) => Ok(Some(LinkOwner::from_message(&m))),
            Ok(None) => Ok(None),
            Err(e) => {
                let source = rtnl_to_io(e);
                if source.raw_os_error() == Some(libc::ENODEV) {
                    Ok(None)
                } else {
                    Err(LinuxError::Netlink {
                        op: "get link",
                        target: name.to_owned(),
                        source,
                    })
                }
            }
        }
    }

    /// Creates macvlan `name` (mode private, MAC `mac`) on `parent`, marked with `alias` (which
    /// must start with [`TANDEM_LINK_ALIAS`]), and leaves it down. A macvlan of that name that
    /// Tandem made earlier (a previous run) is deleted first, with the VIPs it carried; any
    /// other link of that name is [`LinuxError::NotOurs`] and stays as it is. Returns the
    /// new link's index.
    pub async fn create_macvlan(
        &self,
        name: &str,
        parent: u32,
        mac: [u8; 6],
        alias: &str,
    ) -> Result<u32, LinuxError> {
        debug_assert!(alias.starts_with(TANDEM_LINK_ALIAS));
        if let Some(old) = self.link_owner(name).await? {
            if !old.is_tandems() {
                return Err(LinuxError::NotOurs {
                    ifname: name.to_owned(),
                    what: old.why_not_ours(),
                });
            }
            self.delete_link(old.index, name).await?;
        }
        let msg = LinkMacVlan::new(name, parent, MacVlanMode::Private)
            .address(mac.to_vec())
            .alias(alias)
            .build();
        self.add_link(msg, "create macvlan", format!("{name} on ifindex {parent}"))
            .await?;
        let created = self
            .link_owner(name)
            .await?
            .ok_or_else(|| LinuxError::NoSuchInterface {
                ifname: name.to_owned(),
                source: std::io::Error::from_raw_os_error(libc::ENODEV),
            })?;
        if !created.is_tandems() {
            // A kernel that ignores the alias on creation: set it now.
            let msg = LinkUnspec::new_with_index(created.index)
                .alias(alias)
                .build();
            self.handle()
                .link()
                .set(msg)
                .execute()
                .await
                .map_err(|e| LinuxError::Netlink {
                    op: "set alias",
                    target: name.to_owned(),
                    source: rtnl_to_io(e),
                })?;
        }
        Ok(created.index)
    }

    /// Sets a link administratively up or down.
    pub async fn set_link_up(&self, index: u32, up: bool) -> Result<(), LinuxError> {
        let b = LinkUnspec::new_with_index(index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.handle().link().set(msg).execute().await.map_err(|e| {
            let source = rtnl_to_io(e);
            match source.raw_os_error() {
                Some(libc::ENODEV) => LinuxError::NoSuchIfindex {
                    ifindex: index,
                    source,
                },
                _ => LinuxError::Netlink {
                    op: if up { "set link up" } else { "set link down" },
                    target: format!("ifindex {index}"),
                    source,
                },
            }
        })
    }

    /// Deletes macvlan `name` if Tandem made it (see [`LinkOwner::is_tandems`]); Ok if it is
    /// gone already, [`LinuxError::NotOurs`] (nothing changed) if someone else's.
    pub async fn delete_macvlan(&self, name: &str) -> Result<(), LinuxError> {
        match self.link_owner(name).await? {
            None => Ok(()),
            Some(o) if o.is_tandems() => self.delete_link(o.index, name).await,
            Some(o) => Err(LinuxError::NotOurs {
                ifname: name.to_owned(),
                what: o.why_not_ours(),
            }),
        }
    }

    /// Every macvlan on `parent` that Tandem made: (index, name).
    pub async fn tandem_macvlans(&self, parent: u32) -> Result<Vec<(u32, String)>, LinuxError> {
        let links: Vec<LinkMessage> = self
            .handle()
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| LinuxError::Netlink {
                op: "dump links",
                target: "all links".into(),
                source: rtnl_to_io(e),
            })?;
        Ok(links
            .iter()
            .filter_map(|m| {
                let o = LinkOwner::from_message(m);
                let name = m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })?;
                (o.is_tandems() && o.parent == Some(parent)).then_some((o.index, name))
            })
            .collect())
    }

    /// Creates a link as `msg` describes it (`op` and `target` name it in the error).
    pub(crate) async fn add_link(
        &self,
        msg: netlink_packet_route::link::LinkMessage,
        op: &'static str,
        target: String,
    ) -> Result<(), LinuxError> {
        self.handle()
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| LinuxError::Netlink {
                op,
                target,
                source: rtnl_to_io(e),
            })
    }

    /// Deletes link `index` (`name` for the error); one already gone is no error.
    pub(crate) async fn delete_link(&self, index: u32, name: &str) -> Result<(), LinuxError> {
        match self.handle().link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let source = rtnl_to_io(e);
                if source.raw_os_error() == Some(libc::ENODEV) {
                    return Ok(());
                }
                Err(LinuxError::Netlink {
                    op: "delete link",
                    target: name.to_owned(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_ownership() {
        assert_eq!(mac_string(mac_v4(7)), "00:00:5e:00:01:07");
        assert_eq!(mac_string(mac_v6(255)), "00:00:5e:00:02:ff");
        let mut m = LinkMessage::default();
        m.header.index = 9;
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(
                InfoKind::MacVlan,
            )]));
        m.attributes.push(LinkAttribute::Link(3));
        let o = LinkOwner::from_message(&m);
        assert!(!o.is_tandems() && o.macvlan && o.parent == Some(3));
        m.attributes
            .push(LinkAttribute::IfAlias("tandem: vhid 7".into()));
        assert!(LinkOwner::from_message(&m).is_tandems());
        m.attributes.remove(0);
        assert!(!LinkOwner::from_message(&m).is_tandems());
    }
}
