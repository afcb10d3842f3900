//! The cluster firewall of Tandem: the synced config areas `aliases`, `rules`, `nat`,
//! `gateways` and `routes`, their validation (every error with its place in the file), and
//! their rendering to one nftables script that atomically replaces the table `inet tandem`
//! (and touches no other table), plus the resolved static routes.
//!
//! Pure: no I/O, no clock, no tokio. The daemon parses the node-local parts of the config
//! (`[node]`, `[interfaces]`, `[carp]`, `[[vips]]`), builds a [`NodeContext`], and applies
//! the [`Ruleset`] (crates/linux). The config format is documented in this crate's README.
//!
//! ```
//! let text = r#"
//! [interfaces]
//! lan = "eth0"
//! [[rules]]
//! interface = "lan"
//! action = "pass"
//! protocol = "tcp"
//! destination_port = 22
//! "#;
//! let areas = firewall::parse_areas(text).expect("parses");
//! let mut ctx = firewall::NodeContext::default();
//! ctx.interfaces.insert("lan".into(), "eth0".into());
//! let ruleset = firewall::render(&areas, &ctx).expect("valid");
//! assert!(ruleset.nft.contains("iifname \"eth0\" tcp dport 22"));
//! ```

#![forbid(unsafe_code)]

mod compile;
pub mod error;
pub mod model;
mod net;
mod render;
pub mod synth;
pub mod table;

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use ipnet::IpNet;

pub use compile::{MAX_ALIAS_DEPTH, MAX_NAME_LEN};
pub use error::{line_col, ConfigError};
pub use model::{
    Action, Alias, AliasKind, Areas, Direction, Family, Gateway, Nat, OneToOne, OutboundNat,
    PortForward, Protocol, Rule, StaticRoute, Value, Values,
};
pub use render::TABLE;
pub use table::{Table, Update};

/// What the firewall needs to know about this node (node-local, never synced).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeContext {
    /// Logical interface name → Linux device (`lan` → `eth0`).
    pub interfaces: BTreeMap<String, String>,
    /// Logical interface name → this node's real addresses on it, with prefix length.
    pub interface_addrs: BTreeMap<String, Vec<IpNet>>,
    /// The cluster's VIPs: (logical interface, address with prefix length).
    pub vips: Vec<(String, IpNet)>,
    /// Tunnels remote peers reach on a VIP (WireGuard): (VIP, UDP port). Their packets to it
    /// go untracked, and what this node sends from the port leaves from the VIP, whichever
    /// address the implementation answers from.
    pub tunnel_endpoints: Vec<(IpAddr, u16)>,
    /// Listeners of this node that only one peer may reach (Kea's HA listener, which takes
    /// commands without credentials): TCP to them from any other source is dropped in the
    /// input chain, whatever the rules pass.
    pub peer_only: Vec<PeerOnly>,
}

/// A TCP listener of this node that only `peer` may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOnly {
    pub listen: std::net::SocketAddr,
    pub peer: IpAddr,
    /// What it is, for the rule's comment (letters, digits, spaces and `-` only).
    pub what: &'static str,
}

/// The rendered result: what the daemon applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// A script for `nft -f -`: replaces table `inet tandem` in one transaction.
    pub nft: String,
    /// The same table as objects: what an update compares with the running one.
    pub table: Table,
    /// Static routes, resolved to gateway address and device, in config order.
    pub routes: Vec<Route>,
}

/// A resolved static route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub destination: IpNet,
    pub gateway: IpAddr,
    pub device: String,
    /// The gateway's name in the config.
    pub gateway_name: String,
}

/// Parse the synced areas from the whole config file (other top-level tables are ignored).
/// Only syntax, types and unknown keys are checked here; see [`validate`].
pub fn parse_areas(toml_text: &str) -> Result<Areas, Vec<ConfigError>> {
    toml::from_str::<Areas>(toml_text).map_err(|e| {
        vec![ConfigError::new(
            e.span(),
            e.message().trim_end().to_owned(),
        )]
    })
}

/// Check the areas against this node: names, references, addresses, ports, interfaces, NAT
/// addresses, gateways. Returns every problem found.
pub fn validate(areas: &Areas, ctx: &NodeContext) -> Result<(), Vec<ConfigError>> {
    compile::compile(areas, ctx).map(|_| ())
}

/// Validate and render the nftables script and the routes.
pub fn render(areas: &Areas, ctx: &NodeContext) -> Result<Ruleset, Vec<ConfigError>> {
    let compiled = compile::compile(areas, ctx)?;
    let mut table = render::table(&compiled);
    render::tunnel_endpoints(&mut table, &ctx.tunnel_endpoints);
    Ok(Ruleset {
        nft: table.script(),
        table,
        routes: compiled.routes,
    })
}
