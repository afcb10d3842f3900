//! Static routes the firewall config asks for, tagged with our own routing protocol number so
//! that a reload can replace exactly the routes Tandem made and nothing else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::RouteMessageBuilder;

use crate::error::{rtnl_to_io, LinuxError};
use crate::netlink::Netlink;

/// `rtm_protocol` on every route Tandem installs (the kernel reserves values below 4; this is
/// the same number its VIP addresses carry as `IFA_PROTO`).
pub const TANDEM_ROUTE_PROTO: u8 = 0x74;

/// A unicast route in the main table via a gateway.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StaticRoute {
    pub destination: IpAddr,
    pub prefix: u8,
    pub gateway: IpAddr,
    pub ifindex: u32,
}

impl std::fmt::Display for StaticRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} via {} (ifindex {})",
            self.destination, self.prefix, self.gateway, self.ifindex
        )
    }
}

fn message(r: &StaticRoute) -> Result<RouteMessage, LinuxError> {
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.destination, r.prefix)
        .and_then(|b| b.gateway(r.gateway))
        .map(|b| {
            b.output_interface(r.ifindex)
                .protocol(RouteProtocol::Other(TANDEM_ROUTE_PROTO))
                .build()
        })
        .map_err(|e| LinuxError::Netlink {
            op: "build route",
            target: r.to_string(),
            source: std::io::Error::other(e.to_string()),
        })
}

fn parse(msg: &RouteMessage) -> Option<StaticRoute> {
    if msg.header.protocol != RouteProtocol::Other(TANDEM_ROUTE_PROTO) {
        return None;
    }
    parse_gateway_route(msg)
}

/// A route of the main table through a gateway, whoever installed it.
fn parse_gateway_route(msg: &RouteMessage) -> Option<StaticRoute> {
    let mut dst = None;
    let mut gw = None;
    let mut oif = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(v)) => dst = Some(IpAddr::V4(*v)),
            RouteAttribute::Destination(RouteAddress::Inet6(v)) => dst = Some(IpAddr::V6(*v)),
            RouteAttribute::Gateway(RouteAddress::Inet(v)) => gw = Some(IpAddr::V4(*v)),
            RouteAttribute::Gateway(RouteAddress::Inet6(v)) => gw = Some(IpAddr::V6(*v)),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    let prefix = msg.header.destination_prefix_length;
    // A default route has no RTA_DST.
    let destination = dst.or_else(|| {
        gw.map(|g| match g {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        })
    })?;
    Some(StaticRoute {
        destination,
        prefix,
        gateway: gw?,
        ifindex: oif?,
    })
}

impl Netlink {
    /// Every route in the main table that Tandem installed.
    pub async fn tandem_routes(&self) -> Result<Vec<StaticRoute>, LinuxError> {
        let mut out: Vec<StaticRoute> =
            self.dump_routes().await?.iter().filter_map(parse).collect();
        out.sort();
        Ok(out)
    }

    /// The gateways of the main table's routes out of `ifindex` (whoever installed them):
    /// the neighbours traffic to anything not directly attached goes to.
    pub async fn gateways_via(&self, ifindex: u32) -> Result<Vec<IpAddr>, LinuxError> {
        let mut out: Vec<IpAddr> = self
            .dump_routes()
            .await?
            .iter()
            .filter_map(parse_gateway_route)
            .filter(|r| r.ifindex == ifindex)
            .map(|r| r.gateway)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn dump_routes(&self) -> Result<Vec<RouteMessage>, LinuxError> {
        let mut out = Vec::new();
        for probe in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut stream = self.handle().route().get(probe).execute();
            while let Some(msg) = stream.try_next().await.map_err(|e| LinuxError::Netlink {
                op: "dump routes",
                target: "main table".into(),
                source: rtnl_to_io(e),
            })? {
                out.push(msg);
            }
        }
        Ok(out)
    }

    /// Adds or replaces a route.
    pub async fn add_route(&self, r: &StaticRoute) -> Result<(), LinuxError> {
        self.handle()
            .route()
            .add(message(r)?)
            .replace()
            .execute()
            .await
            .map_err(|e| LinuxError::Netlink {
                op: "add route",
                target: r.to_string(),
                source: rtnl_to_io(e),
            })
    }

    /// Deletes a route; one that is already gone is not an error.
    pub async fn del_route(&self, r: &StaticRoute) -> Result<(), LinuxError> {
        match self.handle().route().del(message(r)?).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let io = rtnl_to_io(e);
                // ESRCH is the kernel's answer for a route that is not there.
                if io.raw_os_error() == Some(libc::ESRCH) {
                    return Ok(());
                }
                Err(LinuxError::Netlink {
                    op: "delete route",
                    target: r.to_string(),
                    source: io,
                })
            }
        }
    }

    /// Makes Tandem's routes exactly `wanted`: adds what is missing, removes what is no longer
    /// asked for, and leaves every other route alone. Returns (added, removed).
    pub async fn sync_routes(&self, wanted: &[StaticRoute]) -> Result<(usize, usize), LinuxError> {
        let have = self.tandem_routes().await?;
        let mut added = 0;
        for r in wanted.iter().filter(|r| !have.contains(r)) {
            self.add_route(r).await?;
            added += 1;
        }
        let mut removed = 0;
        for r in have.iter().filter(|r| !wanted.contains(r)) {
            self.del_route(r).await?;
            removed += 1;
        }
        Ok((added, removed))
    }
}
