//! Neighbour resolution on demand: a node about to forward for others (a new master) has the
//! link-layer addresses of the hosts it will send to looked up before the traffic comes.
//!
//! The kernel queues packets for a neighbour it is still resolving only up to
//! `unres_qlen_bytes` per neighbour and drops the rest. At a takeover the connections cut by the
//! failure retransmit within a millisecond of each other, all to the same few neighbours (the
//! server, the gateway), so a new master that never talked to them drops most of that burst,
//! and each connection dropped waits one more retransmission timeout (bench/README.md,
//! "Three nodes: connections that miss the second master").

use std::net::IpAddr;

use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};

use crate::error::{rtnl_to_io, LinuxError};
use crate::netlink::Netlink;

impl Netlink {
    /// Has the kernel resolve `addr` on `ifindex` now, as if a packet were waiting for it
    /// (`ip neigh replace ADDR dev DEV use`): an entry that is missing is created and
    /// resolved, a stale one is confirmed, a reachable one is left alone. The entry is the
    /// kernel's like any other (it ages and is collected as usual).
    pub async fn resolve_neighbour(&self, ifindex: u32, addr: IpAddr) -> Result<(), LinuxError> {
        self.handle()
            .neighbours()
            .add(ifindex, addr)
            // Not PERMANENT (the request's default): that would exempt the entry from aging.
            .state(NeighbourState::None)
            .flags(NeighbourFlags::Use)
            .replace()
            .execute()
            .await
            .map_err(|e| LinuxError::Netlink {
                op: "resolve neighbour",
                target: format!("{addr} on ifindex {ifindex}"),
                source: rtnl_to_io(e),
            })
    }
}
