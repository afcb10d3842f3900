//! The synced areas as written in the config file: plain serde types with the byte span of
//! every field a user can get wrong, so errors can point at `file:line:col`.
//!
//! Nothing here is checked beyond TOML syntax and types; [`crate::validate`] does the rest.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The synced areas of a config: everything this crate owns.
///
/// Deserialized from the whole config file; tables owned by the daemon (`[node]`,
/// `[interfaces]`, `[carp]`, `[[vips]]`, ...) are ignored here.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Areas {
    pub aliases: Vec<Alias>,
    pub rules: Vec<Rule>,
    pub nat: Nat,
    pub gateways: Vec<Gateway>,
    pub routes: Vec<StaticRoute>,
}

/// `[[aliases]]`: a named list of hosts, networks or ports; entries may name other aliases.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Alias {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<AliasKind>,
    pub entries: Spanned<Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AliasKind {
    /// Single addresses and address ranges.
    Host,
    /// Networks (CIDR), single addresses and ranges; may contain host aliases.
    Network,
    /// Ports and port ranges.
    Port,
}

impl fmt::Display for AliasKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AliasKind::Host => "host",
            AliasKind::Network => "network",
            AliasKind::Port => "port",
        })
    }
}

/// `[[rules]]`: one filter rule. Rules are evaluated in file order; the first match wins.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Logical interface name, or `"any"`.
    pub interface: Spanned<String>,
    #[serde(default)]
    pub direction: Direction,
    pub action: Spanned<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Spanned<Protocol>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Spanned<Family>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Spanned<Values>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port: Option<Spanned<Values>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Spanned<Values>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<Spanned<Values>>,
    #[serde(default)]
    pub log: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "yes")]
    pub stateful: bool,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Packets arriving on the interface (to this node or forwarded through it).
    #[default]
    In,
    /// Packets leaving through the interface (from this node or forwarded through it).
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pass,
    Block,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// Both TCP and UDP (pfSense's "TCP/UDP").
    #[serde(rename = "tcp/udp")]
    TcpUdp,
    Icmp,
    Icmpv6,
    Any,
}

impl Protocol {
    /// Whether ports may be given with this protocol.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp | Protocol::TcpUdp)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::TcpUdp => "tcp/udp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "icmpv6",
            Protocol::Any => "any",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4 only.
    Inet,
    /// IPv6 only.
    Inet6,
    /// Both.
    Any,
}

/// The `[nat]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nat {
    pub outbound: Vec<OutboundNat>,
    pub port_forward: Vec<PortForward>,
    pub one_to_one: Vec<OneToOne>,
}

/// `[[nat.outbound]]`: source NAT for traffic leaving an interface.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundNat {
    pub interface: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Spanned<Values>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Spanned<Values>>,
    /// A VIP or address of `interface`, or `"interface"` for the interface's own IPv4 address.
    pub translation: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// `[[nat.port_forward]]`: destination NAT of a VIP's port to an inside host.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    pub interface: Spanned<String>,
    /// A VIP or address of `interface`.
    pub destination: Spanned<String>,
    pub protocol: Spanned<Protocol>,
    pub port: Spanned<Values>,
    pub target: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<Spanned<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Spanned<Values>>,
    /// Generate the matching pass rule (after the user's rules).
    #[serde(default = "yes")]
    pub pass_rule: bool,
    #[serde(default)]
    pub log: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// `[[nat.one_to_one]]`: an external address mapped both ways to an internal one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OneToOne {
    pub interface: Spanned<String>,
    pub external: Spanned<String>,
    pub internal: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// `[[gateways]]`: a named next hop on a connected network of an interface.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub name: Spanned<String>,
    pub interface: Spanned<String>,
    pub address: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `[[routes]]`: a static route through a named gateway.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    pub network: Spanned<String>,
    pub gateway: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// One scalar of a value list: an integer (ports) or a string (anything).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Int(i64),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Int(i) => s.serialize_i64(*i),
            Value::Str(v) => s.serialize_str(v),
        }
    }
}

struct ValueVisitor;

impl Visitor<'_> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an integer")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
}

/// A single value or a list of values: `"web"`, `443`, `["10.0.0.0/8", "dmz_hosts"]`.
///
/// Elements of a list carry their own span; a single value's span is empty (`0..0`) and the
/// enclosing field's span applies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Values(pub Vec<Spanned<Value>>);

impl Values {
    /// A list of plain strings without spans (for configs built in code).
    pub fn strs<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Self {
        Values(
            items
                .into_iter()
                .map(|s| Spanned::new(0..0, Value::Str(s.into())))
                .collect(),
        )
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValuesVisitor)
    }
}

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in &self.0 {
            seq.serialize_element(v.get_ref())?;
        }
        seq.end()
    }
}

struct ValuesVisitor;

impl<'de> Visitor<'de> for ValuesVisitor {
    type Value = Values;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an integer or an array of them")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Values, E> {
        Ok(Values(vec![Spanned::new(0..0, Value::Int(v))]))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Values, E> {
        let v = ValueVisitor.visit_u64(v)?;
        Ok(Values(vec![Spanned::new(0..0, v)]))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Values, E> {
        Ok(Values(vec![Spanned::new(0..0, Value::Str(v.to_owned()))]))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Values, E> {
        Ok(Values(vec![Spanned::new(0..0, Value::Str(v))]))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element::<Spanned<Value>>()? {
            out.push(v);
        }
        Ok(Values(out))
    }
}
