//! Virtual MACs (`mac = "virtual"`): each such VIP gets a macvlan (mode private) of its
//! interface whose MAC is the virtual router MAC: CARP 00:00:5e:00:01:VHID for both families,
//! VRRP 00:00:5e:00:01:VRID for IPv4 and 00:00:5e:00:02:VRID for IPv6 (one macvlan each). The
//! VIP's addresses live on it. A backup keeps it down and without addresses, so it never
//! answers for the VIP nor sends from the virtual MAC; a master brings it up, adds the
//! addresses and announces them from the virtual MAC. Only macvlans Tandem made are ever
//! deleted (see `linux::vmac`).

use crate::config::{MacMode, Vip};
use carp::{Family, IfaceId, Protocol};
use ipnet::IpNet;
use linux::netlink::Netlink;
use linux::vmac::{mac_string, mac_v4, mac_v6, TANDEM_LINK_ALIAS};
use std::collections::HashMap;
use std::net::IpAddr;
use tracing::{error, info, warn};

/// One macvlan carrying (some of) a VIP's addresses.
#[derive(Debug, Clone)]
pub struct VmacLink {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    /// The family whose addresses it carries; None: both (CARP).
    family: Option<Family>,
}

impl VmacLink {
    fn carries(&self, a: &IpAddr) -> bool {
        self.family.is_none_or(|f| f == Family::of(a))
    }
}

/// The macvlans a VIP needs: (name, MAC, family) for each. The name says the vhid and the
/// parent's ifindex (`tdm51.3`, VRRP's IPv6 one `tdm51.3v6`), so the same vhid on two
/// interfaces gets two names; at most 15 bytes, as Linux wants.
pub fn plan(vip: &Vip, parent: IfaceId) -> Vec<(String, [u8; 6], Option<Family>)> {
    let v = vip.vhid.get();
    let base = format!("tdm{v}.{parent}");
    match vip.protocol {
        Protocol::Carp => vec![(base, mac_v4(v), None)],
        Protocol::Vrrp { .. } => {
            let mut out = Vec::new();
            let has = |f: Family| vip.addresses.iter().any(|a| Family::of(&a.addr()) == f);
            if has(Family::V4) {
                out.push((base.clone(), mac_v4(v), Some(Family::V4)));
            }
            if has(Family::V6) {
                out.push((format!("{base}v6"), mac_v6(v), Some(Family::V6)));
            }
            out
        }
    }
}

/// Sets a sysctl unless it has the value already, and logs it (as promote_secondaries).
fn knob(name: &str, value: &str, why: &str) {
    if linux::sysctl::read(name).ok().as_deref() == Some(value) {
        return;
    }
    match linux::sysctl::write(name, value) {
        Ok(()) => info!("set {}={value} ({why})", name.replace('/', ".")),
        Err(e) => warn!("cannot set {name}={value}: {e}"),
    }
}

#[derive(Default)]
pub struct Vmacs {
    links: HashMap<(IfaceId, u8), Vec<VmacLink>>,
}

impl Vmacs {
    /// Checks, without changing anything, that every macvlan the VIPs with a virtual MAC need
    /// can be made: a link of its name either does not exist or is Tandem's.
    pub async fn check(&self, netlink: &Netlink, wanted: &[(IfaceId, &Vip)]) -> Result<(), String> {
        for (parent, vip) in wanted {
            if vip.mac != MacMode::Virtual || self.links.contains_key(&(*parent, vip.vhid.get())) {
                continue;
            }
            for (name, _, _) in plan(vip, *parent) {
                if name.len() > 15 {
                    return Err(format!(
                        "vhid {} on {}: the macvlan name {name} is longer than 15 bytes",
                        vip.vhid, vip.interface
                    ));
                }
                match netlink.link_owner(&name).await {
                    Ok(Some(o)) if !o.is_tandems() => {
                        return Err(format!(
                            "vhid {} on {} (mac = \"virtual\"): {}",
                            vip.vhid,
                            vip.interface,
                            linux::LinuxError::NotOurs {
                                ifname: name,
                                what: if o.macvlan {
                                    "a macvlan without tandem's alias".into()
                                } else {
                                    "not a macvlan".into()
                                },
                            }
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("vhid {}: {e}", vip.vhid)),
                }
            }
        }
        Ok(())
    }

    /// Creates the macvlans of a VIP with a virtual MAC (down, no addresses) and sets the
    /// sysctls the parent and they need. A failure is logged: the VIP then lives on the
    /// interface itself.
    pub async fn create(&mut self, netlink: &Netlink, parent: IfaceId, device: &str, vip: &Vip) {
        if vip.mac != MacMode::Virtual {
            return;
        }
        // The parent must not answer ARP for addresses that live on the macvlan.
        knob(
            &format!("net/ipv4/conf/{device}/arp_ignore"),
            "1",
            "virtual MAC: answer ARP only for the interface's own addresses",
        );
        // Its own ARP requests (for a client the master answers from the VIP) must not carry
        // the VIP with the interface's MAC: that would teach the client the wrong MAC.
        knob(
            &format!("net/ipv4/conf/{device}/arp_announce"),
            "2",
            "virtual MAC: ARP requests from the interface's own address",
        );
        knob(
            &format!("net/ipv4/conf/{device}/arp_filter"),
            "1",
            "virtual MAC: answer ARP only on the interface the route points to",
        );
        let mut made = Vec::new();
        for (name, mac, family) in plan(vip, parent) {
            let alias = format!(
                "{TANDEM_LINK_ALIAS} virtual MAC of vhid {} on {device}",
                vip.vhid
            );
            let index = match netlink.create_macvlan(&name, parent, mac, &alias).await {
                Ok(i) => i,
                Err(e) => {
                    error!(
                        "vhid={} cannot create macvlan {name} for the virtual MAC {}: {e}; the VIP lives on {device} with its MAC",
                        vip.vhid,
                        mac_string(mac)
                    );
                    continue;
                }
            };
            let v4 = format!("net/ipv4/conf/{name}");
            let why = "virtual MAC macvlan";
            knob(&format!("{v4}/arp_ignore"), "1", why);
            knob(&format!("{v4}/accept_local"), "1", why);
            knob(&format!("{v4}/rp_filter"), "0", why);
            knob(&format!("{v4}/promote_secondaries"), "1", why);
            // No IPv6 link-local from the virtual MAC (RFC 5798 7.4); set before it is up.
            let v6 = format!("net/ipv6/conf/{name}");
            knob(&format!("{v6}/addr_gen_mode"), "1", why);
            let has_v6 = vip
                .addresses
                .iter()
                .any(|a| a.addr().is_ipv6() && family.is_none_or(|f| f == Family::V6));
            if !has_v6 {
                // Nothing (MLD, router solicitations) ever leaves from the virtual MAC.
                knob(&format!("{v6}/disable_ipv6"), "1", why);
            }
            if linux::sysctl::read("net.ipv4.conf.all.rp_filter")
                .ok()
                .as_deref()
                == Some("1")
            {
                warn!(
                    "net.ipv4.conf.all.rp_filter is 1 (strict): traffic to a VIP on {name} may be dropped; set it to 0 or 2"
                );
            }
            info!(
                "vhid={} virtual MAC {} on macvlan {name} of {device}",
                vip.vhid,
                mac_string(mac)
            );
            made.push(VmacLink {
                index,
                name,
                mac,
                family,
            });
        }
        if !made.is_empty() {
            self.links.insert((parent, vip.vhid.get()), made);
        }
    }

    /// Deletes the macvlans of a VIP (and with them any address still on them).
    pub async fn delete(&mut self, netlink: &Netlink, parent: IfaceId, vhid: u8) {
        for l in self.links.remove(&(parent, vhid)).unwrap_or_default() {
            match netlink.delete_macvlan(&l.name).await {
                Ok(()) => info!("vhid={vhid} macvlan {} deleted", l.name),
                Err(e) => error!("vhid={vhid} cannot delete macvlan {}: {e}", l.name),
            }
        }
    }

    pub async fn delete_all(&mut self, netlink: &Netlink) {
        let mut keys: Vec<_> = self.links.keys().copied().collect();
        keys.sort_unstable();
        for (p, v) in keys {
            self.delete(netlink, p, v).await;
        }
    }

    pub fn has(&self, parent: IfaceId, vhid: u8) -> bool {
        self.links.contains_key(&(parent, vhid))
    }

    /// The macvlan that carries `addr` of the VIP, if it has a virtual MAC.
    pub fn carrier(&self, parent: IfaceId, vhid: u8, addr: &IpAddr) -> Option<&VmacLink> {
        self.links
            .get(&(parent, vhid))?
            .iter()
            .find(|l| l.carries(addr))
    }

    /// A VIP's addresses by the link that carries them: the interface, or the macvlan(s) of
    /// its virtual MAC: (ifindex, name for logs, addresses).
    pub fn split(
        &self,
        iface: IfaceId,
        vhid: u8,
        name: &str,
        addrs: &[IpNet],
    ) -> Vec<(IfaceId, String, Vec<IpNet>)> {
        let mut out: Vec<(IfaceId, String, Vec<IpNet>)> = Vec::new();
        for a in addrs {
            let (target, tname) = match self.carrier(iface, vhid, &a.addr()) {
                Some(l) => (l.index, l.name.clone()),
                None => (iface, name.to_string()),
            };
            match out.iter_mut().find(|(t, _, _)| *t == target) {
                Some((_, _, v)) => v.push(*a),
                None => out.push((target, tname, vec![*a])),
            }
        }
        out
    }

    /// For status: the MAC mode, the MAC(s) that answer, the macvlan(s).
    pub fn status(
        &self,
        iface: IfaceId,
        vhid: u8,
        iface_mac: Option<[u8; 6]>,
    ) -> (&'static str, Vec<String>, Vec<String>) {
        match self.links(iface, vhid) {
            [] => (
                "interface",
                iface_mac.map(mac_string).into_iter().collect(),
                Vec::new(),
            ),
            links => (
                "virtual",
                links.iter().map(|l| mac_string(l.mac)).collect(),
                links.iter().map(|l| l.name.clone()).collect(),
            ),
        }
    }

    pub fn links(&self, parent: IfaceId, vhid: u8) -> &[VmacLink] {
        self.links.get(&(parent, vhid)).map_or(&[], Vec::as_slice)
    }
}

/// Deletes the macvlans a previous run left on `parent` (with the VIPs they carry), so a
/// restarted node never answers for a VIP it does not own.
pub async fn sweep(netlink: &Netlink, parent: IfaceId, device: &str) -> Result<(), String> {
    let stale = netlink
        .tandem_macvlans(parent)
        .await
        .map_err(|e| format!("cannot list the macvlans of {device}: {e}"))?;
    for (_, name) in stale {
        info!("removing stale virtual MAC macvlan {name} of {device}");
        netlink
            .delete_macvlan(&name)
            .await
            .map_err(|e| format!("cannot delete stale macvlan {name}: {e}"))?;
    }
    Ok(())
}
