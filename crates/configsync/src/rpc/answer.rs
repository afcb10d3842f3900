//! The answers of the XML-RPC methods, each encoded and read here and nowhere else. Every
//! string read from an answer comes from another node: it is made [`printable`] (and a node
//! name must be one) before it can reach a log, a status or a terminal.

use super::{int_value, is_node_name, kind, record};
use crate::area::Area;
use crate::book::PeerVersion;
use dxr::Value;
use std::collections::BTreeMap;

fn get<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    match v {
        Value::Struct(m) => m.get(key).ok_or_else(|| format!("answer lacks `{key}`")),
        other => Err(format!("answer is a {}, not a struct", kind(other))),
    }
}

fn get_u64(v: &Value, key: &str) -> Result<u64, String> {
    match get(v, key)? {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| format!("`{key}` is negative")),
        Value::Long(i) => u64::try_from(*i).map_err(|_| format!("`{key}` is negative")),
        other => Err(format!("`{key}` is a {}, not an int", kind(other))),
    }
}

/// Most characters of a string from another node kept for logs and status.
pub const MAX_TEXT: usize = 4000;

/// A string from another node as it may go into a log, a status or a terminal: control
/// characters escaped (a newline becomes `\n`, an escape sequence `\u{1b}[...`), at most
/// [`MAX_TEXT`] characters.
pub fn printable(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| {
            let piece: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            piece
        })
        .collect();
    if escaped.chars().count() <= MAX_TEXT {
        return escaped;
    }
    // Cut so that the result is printable() of itself: at most MAX_TEXT characters in all.
    let mut out: String = escaped.chars().take(MAX_TEXT - 1).collect();
    out.push('…');
    out
}

/// A string member of an answer from another node, made [`printable`].
fn get_str(v: &Value, key: &str) -> Result<String, String> {
    match get(v, key)? {
        Value::String(s) => Ok(printable(s)),
        other => Err(format!("`{key}` is a {}, not a string", kind(other))),
    }
}

/// The `node` member of an answer: a node name, or the answer is refused.
fn get_node(v: &Value) -> Result<String, String> {
    let n = get_str(v, "node")?;
    if is_node_name(&n) {
        Ok(n)
    } else {
        Err(format!("`node` {n:?} is not a node name"))
    }
}

fn get_bool(v: &Value, key: &str) -> Result<bool, String> {
    match get(v, key)? {
        Value::Boolean(b) => Ok(*b),
        other => Err(format!("`{key}` is a {}, not a boolean", kind(other))),
    }
}

fn get_strs(v: &Value, key: &str) -> Result<Vec<String>, String> {
    match get(v, key)? {
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(printable(s)),
                other => Err(format!("`{key}` holds a {}, not a string", kind(other))),
            })
            .collect(),
        other => Err(format!("`{key}` is a {}, not an array", kind(other))),
    }
}

fn strs(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.clone())).collect())
}

/// The answer of `tandem.version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionAnswer {
    pub software: String,
    pub protocol: u32,
    pub schema: u32,
    pub node: String,
    /// `primary` or `peer`.
    pub role: String,
    pub capabilities: Vec<String>,
    /// Primary: the areas it pushes. Peer: the areas it holds from the primary.
    pub areas: Vec<String>,
}

impl VersionAnswer {
    pub fn encode(&self) -> Value {
        record(&[
            ("software", Value::String(self.software.clone())),
            ("protocol", int_value(self.protocol.into())),
            ("schema", int_value(self.schema.into())),
            ("node", Value::String(self.node.clone())),
            ("role", Value::String(self.role.clone())),
            ("capabilities", strs(&self.capabilities)),
            ("areas", strs(&self.areas)),
        ])
    }

    pub fn decode(v: &Value) -> Result<VersionAnswer, String> {
        let num = |k: &str| -> Result<u32, String> {
            u32::try_from(get_u64(v, k)?).map_err(|_| format!("`{k}` out of range"))
        };
        Ok(VersionAnswer {
            software: get_str(v, "software")?,
            protocol: num("protocol")?,
            schema: num("schema")?,
            node: get_node(v)?,
            role: get_str(v, "role")?,
            capabilities: get_strs(v, "capabilities")?,
            areas: get_strs(v, "areas")?,
        })
    }

    /// What the primary keeps of it.
    pub fn peer_version(&self) -> PeerVersion {
        PeerVersion {
            software: self.software.clone(),
            protocol: self.protocol,
            schema: self.schema,
            node: self.node.clone(),
        }
    }
}

/// The answer of `tandem.heartbeat`: the peer's generation and drift (None when in sync).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    pub node: String,
    pub generation: u64,
    pub drift: Option<String>,
}

impl HeartbeatAnswer {
    pub fn encode(&self) -> Value {
        record(&[
            ("node", Value::String(self.node.clone())),
            ("generation", int_value(self.generation)),
            (
                "drift",
                Value::String(self.drift.clone().unwrap_or_default()),
            ),
        ])
    }

    pub fn decode(v: &Value) -> Result<HeartbeatAnswer, String> {
        let drift = get_str(v, "drift")?;
        Ok(HeartbeatAnswer {
            node: get_node(v)?,
            generation: get_u64(v, "generation")?,
            drift: (!drift.is_empty()).then_some(drift),
        })
    }
}

/// The answer of `tandem.apply_areas` when the peer did not refuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyAnswer {
    /// False when the peer already ran that generation.
    pub applied: bool,
    pub generation: u64,
    pub node: String,
    pub message: String,
}

impl ApplyAnswer {
    pub fn encode(&self) -> Value {
        record(&[
            ("applied", Value::Boolean(self.applied)),
            ("generation", int_value(self.generation)),
            ("node", Value::String(self.node.clone())),
            ("message", Value::String(self.message.clone())),
        ])
    }

    pub fn decode(v: &Value) -> Result<ApplyAnswer, String> {
        Ok(ApplyAnswer {
            applied: get_bool(v, "applied")?,
            generation: get_u64(v, "generation")?,
            node: get_node(v)?,
            message: get_str(v, "message")?,
        })
    }
}

/// One area in the answer of `tandem.get_areas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaText {
    pub hash: String,
    /// `own file`, `synced`, `local edit`, `edited copy`.
    pub origin: String,
    pub text: String,
}

/// The answer of `tandem.get_areas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreasAnswer {
    pub node: String,
    pub role: String,
    pub generation: u64,
    pub source: String,
    pub areas: BTreeMap<Area, AreaText>,
}

impl AreasAnswer {
    pub fn encode(&self) -> Value {
        let areas = self
            .areas
            .iter()
            .map(|(a, t)| {
                (
                    a.as_str().to_string(),
                    record(&[
                        ("hash", Value::String(t.hash.clone())),
                        ("origin", Value::String(t.origin.clone())),
                        ("text", Value::String(t.text.clone())),
                    ]),
                )
            })
            .collect();
        record(&[
            ("node", Value::String(self.node.clone())),
            ("role", Value::String(self.role.clone())),
            ("generation", int_value(self.generation)),
            ("source", Value::String(self.source.clone())),
            ("areas", Value::Struct(areas)),
        ])
    }
}

/// The answer of `tandem.reload`.
pub fn reload_answer(message: &str) -> Value {
    record(&[("message", Value::String(message.to_string()))])
}
