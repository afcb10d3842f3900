//! An on-link attacker in the simulated network: it hears every advert (`Sim::captured`) and
//! can hand any bytes, from any source address, to any node.

use super::{Input, NodeId, Record, Sim, What};
use carp::IfaceId;
use std::net::IpAddr;

impl Sim {
    /// Delivers `payload` to node `to` on `iface` as if sent from `src` (TTL 255), now, and
    /// returns what it made the node do.
    pub fn inject(
        &mut self,
        to: NodeId,
        iface: IfaceId,
        src: IpAddr,
        payload: Vec<u8>,
    ) -> Vec<What> {
        let before = self.log.len();
        self.input(
            to,
            Input::Advert {
                iface,
                src,
                dst: "224.0.0.18".parse().expect("group"),
                ttl: 255,
                payload,
            },
        );
        self.log[before..]
            .iter()
            .map(|r: &Record| r.what.clone())
            .collect()
    }
}
