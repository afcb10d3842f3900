//! `[dhcp_local.ha]`: this node's Kea in high availability (hot-standby) with the other
//! node's Kea. What the cluster already says is derived from it: Kea's `this-server-name` is
//! `[node] name`; the role follows config sync (its primary is Kea's primary); this node's
//! listener is its `[sync] listen` address; on a config sync primary with one peer, the partner
//! is that `[[sync.peers]]` entry (its name, its URL's address). What cannot be derived (a peer
//! does not know the primary's address) must be given; a given value always wins.

use super::sync::{Role, SyncSettings};
use super::Errors;
use configsync::area::shown;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use toml::Spanned;

/// The port of Kea's HA listener when only an address is derived (Kea's documentation uses
/// 8001 for the hook's own listener).
pub const DEFAULT_HA_PORT: u16 = 8001;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHa {
    /// This node's HA listener, ADDRESS:PORT on its own (sync) address; default: the address
    /// of `[sync] listen`, port 8001.
    #[serde(default)]
    listen: Option<Spanned<String>>,
    /// The other node's name (`[node] name` there); default: the one `[[sync.peers]]` name.
    #[serde(default)]
    partner: Option<Spanned<String>>,
    /// The other node's HA listener; default: that peer's URL address, with this node's port.
    #[serde(default)]
    partner_address: Option<Spanned<String>>,
    /// `primary` or `standby`; default: the config sync primary is Kea's primary.
    #[serde(default)]
    role: Option<Spanned<String>>,
}

/// Checked `[dhcp_local.ha]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ha {
    /// This node's name (Kea's `this-server-name`).
    pub this: String,
    pub listen: SocketAddr,
    pub partner: String,
    pub partner_address: SocketAddr,
    /// Whether this node is Kea's primary (else standby).
    pub primary: bool,
}

/// The node facts `[dhcp_local.ha]` is derived from.
pub struct Cluster<'a> {
    pub node: &'a str,
    /// `[sync]`, when config sync is on.
    pub sync: Option<&'a SyncSettings>,
    /// Every VIP address (an HA listener must not be one: a VIP moves).
    pub vips: &'a [(IpAddr, u8)],
}

impl Cluster<'_> {
    /// The one config sync peer (on a primary with exactly one), and its address.
    fn sync_peer(&self) -> Option<(&str, Option<IpAddr>)> {
        let s = self.sync?;
        match &s.peers[..] {
            [p] if s.role == Role::Primary => {
                let ip = configsync_net::client::Url::parse(&p.url)
                    .ok()
                    .and_then(|u| u.host.parse::<IpAddr>().ok());
                Some((&p.name, ip))
            }
            _ => None,
        }
    }
}

fn socket(
    errs: &mut Errors<'_>,
    a: &Spanned<String>,
    what: &str,
    c: &Cluster<'_>,
) -> Option<SocketAddr> {
    match a.get_ref().parse::<SocketAddr>() {
        Ok(sa) if c.vips.iter().any(|(ip, _)| *ip == sa.ip()) => {
            errs.at(
                a.span(),
                format!("dhcp_local.ha {what} {sa} is a VIP: give the node's own (sync) address, a VIP moves"),
            );
            None
        }
        Ok(sa) if sa.ip().is_unspecified() || sa.port() == 0 => {
            errs.at(
                a.span(),
                format!("dhcp_local.ha {what} {sa}: give an address and a port"),
            );
            None
        }
        Ok(sa) => Some(sa),
        Err(_) => {
            errs.at(
                a.span(),
                format!(
                    "dhcp_local.ha {what} {} is not ADDRESS:PORT",
                    shown(a.get_ref())
                ),
            );
            None
        }
    }
}

/// Checks `[dhcp_local.ha]` and fills in what the cluster says.
pub fn ha(errs: &mut Errors<'_>, raw: &Spanned<RawHa>, c: &Cluster<'_>) -> Option<Ha> {
    let r = raw.get_ref();
    let listen = match &r.listen {
        Some(l) => socket(errs, l, "listen", c),
        None => match c.sync.map(|s| s.listen.ip()) {
            // [sync] listen is never a VIP nor unspecified (its own checks refuse them).
            Some(ip) => Some(SocketAddr::new(ip, DEFAULT_HA_PORT)),
            None => {
                errs.at(
                    raw.span(),
                    "dhcp_local.ha: give `listen` (ADDRESS:PORT on this node's own address); without [sync] it cannot be derived",
                );
                None
            }
        },
    };
    let peer = c.sync_peer();
    let partner = match (&r.partner, peer) {
        (Some(p), _) => {
            let name = p.get_ref();
            if name == c.node || name.is_empty() {
                errs.at(
                    p.span(),
                    format!(
                        "dhcp_local.ha partner must be the other node's name, not {}",
                        shown(name)
                    ),
                );
                None
            } else {
                Some(name.clone())
            }
        }
        (None, Some((name, _))) => Some(name.to_string()),
        (None, None) => {
            errs.at(
                raw.span(),
                "dhcp_local.ha: give `partner` (the other node's [node] name); it is derived only on a config sync primary with one [[sync.peers]]",
            );
            None
        }
    };
    let partner_address = match (&r.partner_address, peer.and_then(|(_, ip)| ip)) {
        (Some(a), _) => socket(errs, a, "partner_address", c),
        (None, Some(ip)) => listen.map(|l| SocketAddr::new(ip, l.port())),
        (None, None) => {
            errs.at(
                raw.span(),
                "dhcp_local.ha: give `partner_address` (ADDRESS:PORT of the other node's HA listener); it is derived only on a config sync primary whose one [[sync.peers]] url has an IP address",
            );
            None
        }
    };
    let primary = match (&r.role, c.sync.map(|s| s.role)) {
        (Some(role), _) => match role.get_ref().as_str() {
            "primary" => Some(true),
            "standby" => Some(false),
            other => {
                errs.at(
                    role.span(),
                    format!(
                        "dhcp_local.ha role must be `primary` or `standby`, not {}",
                        shown(other)
                    ),
                );
                None
            }
        },
        (None, Some(role)) => Some(role == Role::Primary),
        (None, None) => {
            errs.at(
                raw.span(),
                "dhcp_local.ha: give `role` (primary or standby); without [sync] it cannot be derived",
            );
            None
        }
    };
    let (listen, partner_address) = (listen?, partner_address?);
    if listen == partner_address {
        let span = r.partner_address.as_ref().map_or(raw.span(), Spanned::span);
        errs.at(
            span,
            format!("dhcp_local.ha partner_address {partner_address} is this node's own listener"),
        );
        return None;
    }
    Some(Ha {
        this: c.node.to_string(),
        listen,
        partner: partner?,
        partner_address,
        primary: primary?,
    })
}

#[cfg(test)]
mod tests {
    const NODE: &str = "[node]\nname = \"fw1\"\ncontrol_socket = \"/run/t.sock\"\n[interfaces]\nlan = \"eth0\"\n[carp]\npassphrase = \"s3cret\"\n[[vips]]\nvhid = 1\ninterface = \"lan\"\naddresses = [\"192.0.2.1/24\"]\n";

    fn primary() -> String {
        let fp = "sha256:".to_string() + &["AB"; 32].join(":");
        format!("[sync]\nrole = \"primary\"\nlisten = \"203.0.113.1:8443\"\nstate_dir = \"st\"\nuser = \"sync\"\npassword = \"a-password-long-enough\"\n[[sync.peers]]\nname = \"fw2\"\nurl = \"https://203.0.113.2:8443\"\nfingerprint = \"{fp}\"\n")
    }

    const PEER: &str = "[sync]\nrole = \"peer\"\nlisten = \"203.0.113.2:8443\"\nstate_dir = \"st\"\nuser = \"sync\"\npassword = \"a-password-long-enough\"\n";

    fn build(text: &str) -> Result<super::Ha, Vec<String>> {
        let file = std::path::Path::new("t.toml");
        crate::config::ParsedFile::parse(file, text.to_string())
            .and_then(|p| crate::config::Config::build(p, file))
            .map(|c| c.dhcp_local.and_then(|l| l.ha).expect("ha"))
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_primary_derives_everything() {
        let ha = build(&format!("{NODE}{}[dhcp_local.ha]\n", primary())).expect("valid");
        assert_eq!(
            ha,
            super::Ha {
                this: "fw1".into(),
                listen: "203.0.113.1:8001".parse().expect("addr"),
                partner: "fw2".into(),
                partner_address: "203.0.113.2:8001".parse().expect("addr"),
                primary: true,
            }
        );
        // A given value wins; the derived partner address takes the given port.
        let ha = build(&format!(
            "{NODE}{}[dhcp_local.ha]\nlisten = \"203.0.113.1:8100\"\nrole = \"standby\"\n",
            primary()
        ))
        .expect("valid");
        assert_eq!(
            ha.partner_address,
            "203.0.113.2:8100".parse().expect("addr")
        );
        assert!(!ha.primary);
    }

    #[test]
    fn a_peer_names_its_partner_and_is_standby() {
        let text = format!("{NODE}{PEER}[dhcp_local.ha]\n");
        let e = build(&text).expect_err("partner unknown");
        assert!(
            e.iter().any(|e| e.contains("give `partner`"))
                && e.iter().any(|e| e.contains("give `partner_address`")),
            "{e:?}"
        );
        let ha = build(&format!(
            "{NODE}{PEER}[dhcp_local.ha]\npartner = \"fw2\"\npartner_address = \"203.0.113.1:8001\"\n"
        ))
        .expect("valid");
        assert_eq!(ha.listen, "203.0.113.2:8001".parse().expect("addr"));
        assert!(!ha.primary);
        assert_eq!(ha.partner, "fw2");
    }

    #[test]
    fn errors_are_located() {
        let line =
            |t: &str, needle: &str| t.lines().position(|l| l.contains(needle)).expect("line") + 1;
        for (extra, needle, col, msg) in [
            (
                "partner_address = \"192.0.2.1:8001\"",
                "partner_address",
                19,
                "is a VIP",
            ),
            (
                "listen = \"0.0.0.0:8001\"",
                "0.0.0.0",
                10,
                "give an address and a port",
            ),
            (
                "partner = \"fw1\"",
                "partner =",
                11,
                "the other node's name",
            ),
            ("role = \"boss\"", "boss", 8, "`primary` or `standby`"),
            (
                "partner_address = \"203.0.113.1:8001\"",
                "partner_address",
                19,
                "this node's own listener",
            ),
        ] {
            let text = format!("{NODE}{}[dhcp_local.ha]\n{extra}\n", primary());
            let e = build(&text).expect_err(extra);
            let at = format!("t.toml:{}:{col}:", line(&text, needle));
            assert!(
                e.iter().any(|e| e.starts_with(&at) && e.contains(msg)),
                "{extra}: {e:?}"
            );
        }
        let e = build(&format!("{NODE}[dhcp_local.ha]\npartner = \"fw2\"\n")).expect_err("no sync");
        assert!(
            e.iter().any(|e| e.contains("give `listen`"))
                && e.iter().any(|e| e.contains("give `role`")),
            "{e:?}"
        );
    }
}
