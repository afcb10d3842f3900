//! Kernel WireGuard devices over generic netlink (family `wireguard`, as `wg` uses it): the
//! same [`DeviceConfig`] as the UAPI path, set with `WG_CMD_SET_DEVICE` (replace peers,
//! replace each peer's allowed IPs), read with `WG_CMD_GET_DEVICE`. Blocking, bounded in time.
//! The private key goes into the request and nowhere else; what the kernel answers about it is
//! dropped unread.

use crate::wireguard::{DeviceConfig, DeviceState, PeerState, WgError};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardDeviceFlags, WireguardMessage, WireguardPeer, WireguardPeerAttribute,
    WireguardPeerFlags,
};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

fn io(device: &str, op: &'static str, error: std::io::Error) -> WgError {
    WgError::Io {
        device: device.to_string(),
        op,
        path: "generic netlink".into(),
        error,
    }
}

fn bad(device: &str, what: impl Into<String>) -> WgError {
    WgError::Protocol {
        device: device.to_string(),
        what: what.into(),
    }
}

fn open(device: &str) -> Result<Socket, WgError> {
    let mut s = Socket::new(NETLINK_GENERIC).map_err(|e| io(device, "open", e))?;
    s.bind_auto().map_err(|e| io(device, "bind", e))?;
    s.connect(&SocketAddr::new(0, 0))
        .map_err(|e| io(device, "connect", e))?;
    socket2::SockRef::from(&s)
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| io(device, "set timeout", e))?;
    Ok(s)
}

/// Sends one request and collects the answers up to the ack (or the end of a dump).
fn request<F>(
    s: &Socket,
    device: &str,
    mut msg: NetlinkMessage<GenlMessage<F>>,
) -> Result<Vec<F>, WgError>
where
    F: GenlFamily
        + netlink_packet_core::Emitable
        + netlink_packet_core::ParseableParametrized<[u8], netlink_packet_generic::GenlHeader>
        + std::fmt::Debug,
{
    msg.finalize();
    let mut tx = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut tx);
    s.send(&tx, 0).map_err(|e| io(device, "send", e))?;
    let mut out = Vec::new();
    loop {
        let mut rx: Vec<u8> = Vec::with_capacity(1 << 16);
        let n = s.recv(&mut rx, 0).map_err(|e| io(device, "receive", e))?;
        let mut offset = 0;
        while offset < n {
            let buf = rx.get(offset..n).unwrap_or_default();
            let m = NetlinkMessage::<GenlMessage<F>>::deserialize(buf)
                .map_err(|e| bad(device, format!("undecodable answer: {e}")))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) if e.code.is_none() => return Ok(out),
                NetlinkPayload::Error(e) => {
                    let err = e.to_io();
                    return Err(WgError::Refused {
                        device: device.to_string(),
                        errno: err.raw_os_error().unwrap_or(libc::EIO),
                    });
                }
                NetlinkPayload::InnerMessage(g) => out.push(g.payload),
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

/// The id of the `wireguard` family; `None` when the kernel has no WireGuard.
pub fn family(device: &str) -> Result<Option<u16>, WgError> {
    let s = open(device)?;
    let mut msg = NetlinkMessage::from(GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName("wireguard".into())],
    }));
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    match request(&s, device, msg) {
        Ok(answers) => Ok(answers
            .iter()
            .flat_map(|a| a.nlas.iter())
            .find_map(|n| match n {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })),
        Err(WgError::Refused { errno, .. }) if errno == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

fn message(
    family: u16,
    cmd: WireguardCmd,
    attributes: Vec<WireguardAttribute>,
    flags: u16,
) -> NetlinkMessage<GenlMessage<WireguardMessage>> {
    let mut g = GenlMessage::from_payload(WireguardMessage { cmd, attributes });
    g.set_resolved_family_id(family);
    let mut msg = NetlinkMessage::from(g);
    msg.header.flags = flags;
    msg
}

/// The `WG_CMD_SET_DEVICE` attributes for `cfg`.
pub fn set_attributes(device: &str, cfg: &DeviceConfig) -> Vec<WireguardAttribute> {
    let mut a = vec![
        WireguardAttribute::IfName(device.to_string()),
        WireguardAttribute::Flags(WireguardDeviceFlags::ReplacePeers),
        WireguardAttribute::PrivateKey(cfg.private_key),
    ];
    if let Some(p) = cfg.listen_port {
        a.push(WireguardAttribute::ListenPort(p));
    }
    let peers = cfg
        .peers
        .iter()
        .map(|p| {
            let mut pa = vec![
                WireguardPeerAttribute::PublicKey(p.public_key),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
                WireguardPeerAttribute::PersistentKeepalive(p.persistent_keepalive.unwrap_or(0)),
                WireguardPeerAttribute::AllowedIps(
                    p.allowed_ips
                        .iter()
                        .map(|(addr, len)| {
                            WireguardAllowedIp(vec![
                                WireguardAllowedIpAttr::Family(if addr.is_ipv4() {
                                    WireguardAddressFamily::Ipv4
                                } else {
                                    WireguardAddressFamily::Ipv6
                                }),
                                WireguardAllowedIpAttr::IpAddr(*addr),
                                WireguardAllowedIpAttr::Cidr(*len),
                            ])
                        })
                        .collect(),
                ),
            ];
            if let Some(e) = p.endpoint {
                pa.push(WireguardPeerAttribute::Endpoint(e));
            }
            WireguardPeer(pa)
        })
        .collect();
    a.push(WireguardAttribute::Peers(peers));
    a
}

/// Sets the kernel device to `cfg`: key, port and exactly these peers.
pub fn set(family: u16, device: &str, cfg: &DeviceConfig) -> Result<(), WgError> {
    let s = open(device)?;
    let msg = message(
        family,
        WireguardCmd::SetDevice,
        set_attributes(device, cfg),
        NLM_F_REQUEST | NLM_F_ACK,
    );
    request(&s, device, msg).map(|_| ())
}

/// Takes every peer off the kernel device.
pub fn clear(family: u16, device: &str) -> Result<(), WgError> {
    let s = open(device)?;
    let msg = message(
        family,
        WireguardCmd::SetDevice,
        vec![
            WireguardAttribute::IfName(device.to_string()),
            WireguardAttribute::Flags(WireguardDeviceFlags::ReplacePeers),
        ],
        NLM_F_REQUEST | NLM_F_ACK,
    );
    request(&s, device, msg).map(|_| ())
}

/// What the kernel device runs (its private key dropped unread).
pub fn get(family: u16, device: &str) -> Result<DeviceState, WgError> {
    let s = open(device)?;
    let msg = message(
        family,
        WireguardCmd::GetDevice,
        vec![WireguardAttribute::IfName(device.to_string())],
        NLM_F_REQUEST | NLM_F_DUMP,
    );
    Ok(state(request(&s, device, msg)?))
}

/// A dump's messages as one device state (a device with many peers comes in several).
pub fn state(answers: Vec<WireguardMessage>) -> DeviceState {
    let mut st = DeviceState::default();
    for m in answers {
        for a in m.attributes {
            match a {
                WireguardAttribute::ListenPort(p) if p != 0 => st.listen_port = Some(p),
                WireguardAttribute::PublicKey(k) => st.public_key = Some(k),
                WireguardAttribute::Peers(peers) => {
                    for WireguardPeer(attrs) in peers {
                        let mut p = PeerState::default();
                        for pa in attrs {
                            match pa {
                                WireguardPeerAttribute::PublicKey(k) => p.public_key = k,
                                WireguardPeerAttribute::Endpoint(e) => p.endpoint = Some(e),
                                WireguardPeerAttribute::PersistentKeepalive(k) => {
                                    p.persistent_keepalive = Some(k).filter(|k| *k > 0)
                                }
                                WireguardPeerAttribute::LastHandshake(t) => {
                                    p.last_handshake_sec =
                                        u64::try_from(t.seconds).ok().filter(|s| *s > 0)
                                }
                                WireguardPeerAttribute::RxBytes(b) => p.rx_bytes = b,
                                WireguardPeerAttribute::TxBytes(b) => p.tx_bytes = b,
                                WireguardPeerAttribute::AllowedIps(ips) => {
                                    for WireguardAllowedIp(ip) in ips {
                                        let addr = ip.iter().find_map(|x| match x {
                                            WireguardAllowedIpAttr::IpAddr(a) => Some(*a),
                                            _ => None,
                                        });
                                        let cidr = ip.iter().find_map(|x| match x {
                                            WireguardAllowedIpAttr::Cidr(c) => Some(*c),
                                            _ => None,
                                        });
                                        if let (Some(a), Some(c)) = (addr, cidr) {
                                            p.allowed_ips.push((a, c));
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        // A peer continued from the previous message of the dump.
                        match st.peers.iter_mut().find(|x| x.public_key == p.public_key) {
                            Some(x) => x.allowed_ips.extend(p.allowed_ips),
                            None => st.peers.push(p),
                        }
                    }
                }
                // The private key, flags, names: not kept.
                _ => {}
            }
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::PeerConfig;
    use netlink_packet_core::{Emitable, ParseableParametrized};

    #[test]
    fn set_attributes_round_trip_through_the_codec() {
        let cfg = DeviceConfig {
            private_key: [9; 32],
            listen_port: Some(51820),
            peers: vec![PeerConfig {
                public_key: [1; 32],
                allowed_ips: vec![("192.0.2.0".parse().expect("ip"), 24)],
                endpoint: Some("198.51.100.7:51820".parse().expect("ep")),
                persistent_keepalive: Some(25),
            }],
        };
        let m = WireguardMessage {
            cmd: WireguardCmd::SetDevice,
            attributes: set_attributes("wg0", &cfg),
        };
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        let header = netlink_packet_generic::GenlHeader {
            cmd: m.command(),
            version: m.version(),
        };
        let back = WireguardMessage::parse_with_param(&buf, header).expect("parse");
        let st = state(vec![back]);
        assert_eq!(st.listen_port, Some(51820));
        assert_eq!(st.peers.len(), 1);
        assert_eq!(st.peers[0].public_key, [1; 32]);
        assert_eq!(st.peers[0].allowed_ips, cfg.peers[0].allowed_ips);
        assert_eq!(st.peers[0].endpoint, cfg.peers[0].endpoint);
        assert_eq!(st.peers[0].persistent_keepalive, Some(25));
    }

    #[test]
    fn the_family_lookup_answers_whether_the_kernel_has_wireguard() {
        // Whatever this kernel has: a lookup either finds the family or says it is absent
        // (`ip link add type wireguard` fails exactly when it is absent).
        match family("wg-test") {
            Ok(Some(id)) => assert!(id > 0),
            Ok(None) => {}
            Err(e) => panic!("the lookup itself failed: {e}"),
        }
    }
}

/// A kernel WireGuard link as found: its index and whether Tandem made it (its alias).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelLink {
    pub index: u32,
    pub tandems: bool,
}

/// The alias of the kernel WireGuard links Tandem creates (and the only ones it deletes).
pub const WG_LINK_ALIAS: &str = "tandem:wireguard";

impl crate::Netlink {
    /// The link `name` if it is a kernel WireGuard device; None if there is no such link or it
    /// is another kind (a userspace implementation's tun device).
    pub async fn wireguard_link(
        &self,
        name: &str,
    ) -> Result<Option<KernelLink>, crate::LinuxError> {
        use futures_util::TryStreamExt;
        use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
        let req = self.handle().link().get().match_name(name.to_owned());
        let m = match req.execute().try_next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(e) => {
                let source = crate::error::rtnl_to_io(e);
                if source.raw_os_error() == Some(libc::ENODEV) {
                    return Ok(None);
                }
                return Err(crate::LinuxError::Netlink {
                    op: "get link",
                    target: name.to_owned(),
                    source,
                });
            }
        };
        let mut wg = false;
        let mut tandems = false;
        for a in &m.attributes {
            match a {
                LinkAttribute::LinkInfo(i) => {
                    wg |= i
                        .iter()
                        .any(|x| matches!(x, LinkInfo::Kind(InfoKind::Wireguard)))
                }
                LinkAttribute::IfAlias(s) => tandems = s == WG_LINK_ALIAS,
                _ => {}
            }
        }
        Ok(wg.then_some(KernelLink {
            index: m.header.index,
            tandems,
        }))
    }

    /// Creates kernel WireGuard link `name` with Tandem's alias (fails where the kernel has no
    /// WireGuard: `EOPNOTSUPP`).
    pub async fn create_wireguard_link(&self, name: &str) -> Result<(), crate::LinuxError> {
        let msg = rtnetlink::LinkWireguard::new(name)
            .alias(WG_LINK_ALIAS)
            .build();
        self.add_link(msg, "create wireguard link", name.to_owned())
            .await
    }

    /// Deletes kernel WireGuard link `name` if Tandem made it; any other link stays.
    pub async fn delete_wireguard_link(&self, name: &str) -> Result<(), crate::LinuxError> {
        match self.wireguard_link(name).await? {
            Some(l) if l.tandems => self.delete_link(l.index, name).await,
            _ => Ok(()),
        }
    }
}
