//! The XML-RPC methods between nodes: names, parameter decoding (every bad parameter becomes a
//! fault naming the problem), fault codes, and conversions. Pure: no I/O.
//!
//! | method | params | returns |
//! |---|---|---|
//! | `tandem.version` | | `{software, protocol, schema, node, role, capabilities, areas}` |
//! | `tandem.status` | | the node's status (as `tandem status --json`) |
//! | `tandem.get_areas` | | `{node, role, generation, source, areas: {NAME: {text, origin, hash}}}` |
//! | `tandem.apply_areas` | generation (int), areas (struct NAME -> TOML text, or NAME -> `{hash}` for an area unchanged since the push the peer holds), source (struct `{node, software, protocol, schema}`), force (bool) | `{applied, generation, node, message}` |
//! | `tandem.heartbeat` | source (struct), generation (int) | `{node, generation, drift}` |
//! | `tandem.reload` | | `{message}` |

use crate::area::Area;
use dxr::{Fault, Value};
use std::collections::BTreeMap;

mod answer;

pub use answer::{
    printable, reload_answer, ApplyAnswer, AreaText, AreasAnswer, HeartbeatAnswer, VersionAnswer,
    MAX_TEXT,
};

pub const VERSION: &str = "tandem.version";
pub const STATUS: &str = "tandem.status";
pub const GET_AREAS: &str = "tandem.get_areas";
pub const APPLY_AREAS: &str = "tandem.apply_areas";
pub const HEARTBEAT: &str = "tandem.heartbeat";
pub const RELOAD: &str = "tandem.reload";

pub const METHODS: [&str; 6] = [VERSION, STATUS, GET_AREAS, APPLY_AREAS, HEARTBEAT, RELOAD];

/// Fault codes (XML-RPC leaves them to the application; these follow HTTP's meanings).
pub mod code {
    /// Malformed call or parameters.
    pub const BAD_REQUEST: i32 = 400;
    /// This node does not take that call (e.g. `apply_areas` to a primary).
    pub const FORBIDDEN: i32 = 403;
    pub const UNKNOWN_METHOD: i32 = 404;
    /// Drift and the peer's policy is refuse.
    pub const DRIFT: i32 = 409;
    /// The push is older than what the peer has.
    pub const STALE: i32 = 410;
    /// A delta push names an area by a hash the peer does not hold: push the whole areas.
    pub const NEED_FULL: i32 = 412;
    /// The pushed areas failed validation or apply.
    pub const INVALID: i32 = 422;
    /// Protocol or config schema versions differ.
    pub const VERSION: i32 = 426;
    pub const INTERNAL: i32 = 500;
}

/// Why a node refused a call: the typed form of an XML-RPC fault. The code carries the kind
/// across the wire, the message is for people; nothing is ever parsed back out of a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Malformed call or parameters (400).
    #[error("{0}")]
    BadRequest(String),
    /// This node does not take that call (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such method (404).
    #[error("{0}")]
    UnknownMethod(String),
    /// The peer's synced areas were changed locally and its policy is refuse (409).
    #[error("{0}")]
    Drift(String),
    /// The push is older than what the peer runs (410); its generation is in a heartbeat.
    #[error("{0}")]
    Stale(String),
    /// A delta push named an area by a hash this node does not hold (412): the primary
    /// pushes the whole areas at once.
    #[error("{0}")]
    NeedFull(String),
    /// The pushed areas failed validation or activation (422).
    #[error("{0}")]
    Invalid(String),
    /// Protocol or config schema versions differ (426).
    #[error("{0}")]
    Version(String),
    /// Anything else, and fault codes this version does not know (500).
    #[error("{0}")]
    Internal(String),
}

impl Refusal {
    pub fn code(&self) -> i32 {
        match self {
            Refusal::BadRequest(_) => code::BAD_REQUEST,
            Refusal::Forbidden(_) => code::FORBIDDEN,
            Refusal::UnknownMethod(_) => code::UNKNOWN_METHOD,
            Refusal::Drift(_) => code::DRIFT,
            Refusal::Stale(_) => code::STALE,
            Refusal::NeedFull(_) => code::NEED_FULL,
            Refusal::Invalid(_) => code::INVALID,
            Refusal::Version(_) => code::VERSION,
            Refusal::Internal(_) => code::INTERNAL,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refusal::BadRequest(m)
            | Refusal::Forbidden(m)
            | Refusal::UnknownMethod(m)
            | Refusal::Drift(m)
            | Refusal::Stale(m)
            | Refusal::NeedFull(m)
            | Refusal::Invalid(m)
            | Refusal::Version(m)
            | Refusal::Internal(m) => m,
        }
    }

    /// The name of the kind, for counters and status (`bad-request`, `drift`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => "bad-request",
            Refusal::Forbidden(_) => "forbidden",
            Refusal::UnknownMethod(_) => "unknown-method",
            Refusal::Drift(_) => "drift",
            Refusal::Stale(_) => "stale",
            Refusal::NeedFull(_) => "need-full",
            Refusal::Invalid(_) => "invalid",
            Refusal::Version(_) => "version",
            Refusal::Internal(_) => "internal",
        }
    }

    /// Whether the caller sent something this node cannot read (counted as a refused call).
    pub fn is_bad_call(&self) -> bool {
        matches!(self, Refusal::BadRequest(_) | Refusal::UnknownMethod(_))
    }

    pub fn to_fault(&self) -> Fault {
        Fault::new(self.code(), self.message().to_string())
    }

    /// The refusal a fault from another node stands for (by its code; an unknown code is
    /// `Internal`); its message made [`printable`].
    pub fn from_fault(code: i32, message: impl Into<String>) -> Refusal {
        let m = printable(&message.into());
        match code {
            code::BAD_REQUEST => Refusal::BadRequest(m),
            code::FORBIDDEN => Refusal::Forbidden(m),
            code::UNKNOWN_METHOD => Refusal::UnknownMethod(m),
            code::DRIFT => Refusal::Drift(m),
            code::STALE => Refusal::Stale(m),
            code::NEED_FULL => Refusal::NeedFull(m),
            code::INVALID => Refusal::Invalid(m),
            code::VERSION => Refusal::Version(m),
            code::INTERNAL => Refusal::Internal(m),
            other => Refusal::Internal(format!("fault {other}: {m}")),
        }
    }
}

/// Who sends a push or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub node: String,
    pub software: String,
    pub protocol: u32,
    pub schema: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyArgs {
    pub generation: u64,
    /// Areas sent whole: area -> canonical TOML text.
    pub areas: BTreeMap<Area, String>,
    /// Areas sent as hash only (unchanged since the push the peer holds): area -> hash
    /// (checked: [`crate::delta::is_hash`]). No area is in both maps.
    pub unchanged: BTreeMap<Area, String>,
    pub source: Source,
    pub force: bool,
}

/// A decoded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Version,
    Status,
    GetAreas,
    Apply(ApplyArgs),
    Heartbeat { source: Source, generation: u64 },
    Reload,
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) => "int",
        Value::Long(_) => "i8",
        Value::Boolean(_) => "boolean",
        Value::String(_) => "string",
        Value::Double(_) => "double",
        Value::DateTime(_) => "dateTime.iso8601",
        Value::Base64(_) => "base64",
        Value::Struct(_) => "struct",
        Value::Array(_) => "array",
        _ => "other",
    }
}

fn bad(method: &str, msg: impl std::fmt::Display) -> Refusal {
    Refusal::BadRequest(format!("{method}: {msg}"))
}

fn arity(method: &str, params: &[Value], names: &[&str]) -> Result<(), Refusal> {
    if params.len() != names.len() {
        return Err(bad(
            method,
            format!(
                "takes {} parameter(s) ({}), got {}",
                names.len(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                },
                params.len()
            ),
        ));
    }
    Ok(())
}

fn int(method: &str, what: &str, v: &Value) -> Result<i64, Refusal> {
    match v {
        Value::Integer(i) => Ok(i64::from(*i)),
        Value::Long(i) => Ok(*i),
        other => Err(bad(
            method,
            format!("{what} must be an int, not {}", kind(other)),
        )),
    }
}

fn generation(method: &str, v: &Value) -> Result<u64, Refusal> {
    let g = int(method, "generation", v)?;
    if g < 1 {
        return Err(bad(
            method,
            format!("generation must be 1 or more, not {g}"),
        ));
    }
    u64::try_from(g).map_err(|_| bad(method, "generation out of range"))
}

fn string<'a>(method: &str, what: &str, v: &'a Value) -> Result<&'a str, Refusal> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(bad(
            method,
            format!("{what} must be a string, not {}", kind(other)),
        )),
    }
}

fn member<'a>(
    method: &str,
    what: &str,
    m: &'a BTreeMap<String, Value>,
    key: &str,
) -> Result<&'a Value, Refusal> {
    m.get(key)
        .ok_or_else(|| bad(method, format!("{what} lacks the member `{key}`")))
}

fn source(method: &str, v: &Value) -> Result<Source, Refusal> {
    let Value::Struct(m) = v else {
        return Err(bad(
            method,
            format!(
                "source must be a struct {{node, software, protocol, schema}}, not {}",
                kind(v)
            ),
        ));
    };
    let num = |key: &str| -> Result<u32, Refusal> {
        let n = int(
            method,
            &format!("source.{key}"),
            member(method, "source", m, key)?,
        )?;
        u32::try_from(n).map_err(|_| bad(method, format!("source.{key} out of range: {n}")))
    };
    let node = string(method, "source.node", member(method, "source", m, "node")?)?;
    if !is_node_name(node) {
        return Err(bad(
            method,
            format!(
                "source.node {:?} is not a node name (1-63 letters, digits, '-', '_', '.')",
                node.chars().take(64).collect::<String>()
            ),
        ));
    }
    let software = string(
        method,
        "source.software",
        member(method, "source", m, "software")?,
    )?;
    if software.is_empty()
        || software.len() > 64
        || !software
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    {
        return Err(bad(
            method,
            "source.software must be 1-64 printable characters (a version like \"0.1.0\")",
        ));
    }
    Ok(Source {
        node: node.to_string(),
        software: software.to_string(),
        protocol: num("protocol")?,
        schema: num("schema")?,
    })
}

/// A node name as it may travel between nodes and land in files, logs and terminals: 1 to 63
/// letters, digits, `-`, `_` and `.` (no newline, quote or control character can get through).
pub fn is_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A hash-only area of a push: `{hash: HEX}`, exactly that member, the hash checked.
fn hash_only(method: &str, name: &str, m: &BTreeMap<String, Value>) -> Result<String, Refusal> {
    let what = format!("areas.{name}");
    if m.len() != 1 {
        return Err(bad(
            method,
            format!(
                "{what} as a struct must be {{hash}} alone, it has {} members",
                m.len()
            ),
        ));
    }
    let h = string(
        method,
        &format!("{what}.hash"),
        member(method, &what, m, "hash")?,
    )?;
    if !crate::delta::is_hash(h) {
        return Err(bad(
            method,
            format!(
                "{what}.hash {} is not a SHA-256 hash ({} lowercase hex digits)",
                crate::area::shown(h),
                crate::delta::HASH_LEN
            ),
        ));
    }
    Ok(h.to_string())
}

/// Decodes a call; unknown methods and bad parameters are faults that say what is wrong.
pub fn decode(method: &str, params: &[Value]) -> Result<Call, Refusal> {
    match method {
        VERSION => arity(method, params, &[]).map(|()| Call::Version),
        STATUS => arity(method, params, &[]).map(|()| Call::Status),
        GET_AREAS => arity(method, params, &[]).map(|()| Call::GetAreas),
        RELOAD => arity(method, params, &[]).map(|()| Call::Reload),
        HEARTBEAT => {
            arity(method, params, &["source", "generation"])?;
            Ok(Call::Heartbeat {
                source: source(method, &params[0])?,
                generation: generation(method, &params[1])?,
            })
        }
        APPLY_AREAS => {
            arity(method, params, &["generation", "areas", "source", "force"])?;
            let generation = generation(method, &params[0])?;
            let Value::Struct(m) = &params[1] else {
                return Err(bad(
                    method,
                    format!(
                        "areas must be a struct of area name -> TOML text (or {{hash}}), not {}",
                        kind(&params[1])
                    ),
                ));
            };
            let mut areas = BTreeMap::new();
            let mut unchanged = BTreeMap::new();
            for (name, text) in m {
                let area = Area::parse(name).ok_or_else(|| {
                    bad(
                        method,
                        format!(
                            "unknown area {} (areas are: {})",
                            crate::area::shown(name),
                            Area::names()
                        ),
                    )
                })?;
                if let Value::Struct(h) = text {
                    unchanged.insert(area, hash_only(method, name, h)?);
                    continue;
                }
                areas.insert(
                    area,
                    string(method, &format!("areas.{name}"), text)?.to_string(),
                );
            }
            let source = source(method, &params[2])?;
            let force = match &params[3] {
                Value::Boolean(b) => *b,
                other => {
                    return Err(bad(
                        method,
                        format!("force must be a boolean, not {}", kind(other)),
                    ))
                }
            };
            Ok(Call::Apply(ApplyArgs {
                generation,
                areas,
                unchanged,
                source,
                force,
            }))
        }
        other => Err(Refusal::UnknownMethod(format!(
            "unknown method {} (this node has: {})",
            crate::area::shown(other),
            METHODS.join(", ")
        ))),
    }
}

fn gen_value(g: u64) -> Value {
    match i32::try_from(g) {
        Ok(i) => Value::Integer(i),
        Err(_) => Value::Long(i64::try_from(g).unwrap_or(i64::MAX)),
    }
}

pub fn source_value(s: &Source) -> Value {
    let mut m = BTreeMap::new();
    m.insert("node".to_string(), Value::String(s.node.clone()));
    m.insert("software".to_string(), Value::String(s.software.clone()));
    m.insert(
        "protocol".to_string(),
        Value::Integer(i32::try_from(s.protocol).unwrap_or(i32::MAX)),
    );
    m.insert(
        "schema".to_string(),
        Value::Integer(i32::try_from(s.schema).unwrap_or(i32::MAX)),
    );
    Value::Struct(m)
}

/// The parameters of `tandem.apply_areas`.
pub fn apply_params(a: &ApplyArgs) -> Vec<Value> {
    let hash_only = a.unchanged.iter().map(|(k, h)| {
        (
            k.as_str().to_string(),
            record(&[("hash", Value::String(h.clone()))]),
        )
    });
    let areas = a
        .areas
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
        .chain(hash_only)
        .collect();
    vec![
        gen_value(a.generation),
        Value::Struct(areas),
        source_value(&a.source),
        Value::Boolean(a.force),
    ]
}

pub fn heartbeat_params(s: &Source, generation: u64) -> Vec<Value> {
    vec![source_value(s), gen_value(generation)]
}

/// Any JSON value as XML-RPC (null members are left out; XML-RPC has no null).
pub fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::String(String::new()),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => match i32::try_from(i) {
                Ok(i) => Value::Integer(i),
                Err(_) => Value::Long(i),
            },
            (None, Some(f)) => Value::Double(f),
            (None, None) => Value::String(n.to_string()),
        },
        J::String(s) => Value::String(s.clone()),
        J::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        J::Object(o) => Value::Struct(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect(),
        ),
    }
}

/// XML-RPC as JSON (for reading answers generically).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Integer(i) => J::from(*i),
        Value::Long(i) => J::from(*i),
        Value::Boolean(b) => J::Bool(*b),
        Value::String(s) => J::String(s.clone()),
        Value::Double(d) => J::from(*d),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Struct(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        other => J::String(format!("<{}>", kind(other))),
    }
}

/// A struct built from pairs.
pub(crate) fn record(members: &[(&str, Value)]) -> Value {
    Value::Struct(
        members
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect(),
    )
}

pub(crate) fn int_value(n: u64) -> Value {
    gen_value(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Source {
        Source {
            node: "fw1".into(),
            software: "0.1.0".into(),
            protocol: 1,
            schema: 1,
        }
    }

    #[test]
    fn apply_round_trips_through_xml() {
        let mut areas = BTreeMap::new();
        areas.insert(
            Area::Rules,
            "[[rules]]\naction = \"pass\" # <&>\n".to_string(),
        );
        areas.insert(Area::Nat, String::new());
        let mut unchanged = BTreeMap::new();
        unchanged.insert(Area::Vips, crate::area::hash("v"));
        let a = ApplyArgs {
            generation: 7,
            areas,
            unchanged,
            source: src(),
            force: false,
        };
        let call = dxr::MethodCall {
            name: APPLY_AREAS.into(),
            params: apply_params(&a),
        };
        let xml = call.to_xml().expect("xml");
        let back = dxr::MethodCall::from_xml(&xml).expect("parse");
        assert_eq!(decode(&back.name, &back.params), Ok(Call::Apply(a)));
    }

    #[test]
    fn bad_parameters_are_faults_that_name_the_problem() {
        let f = |m: &str, p: Vec<Value>| decode(m, &p).expect_err("fault");
        let e = f(APPLY_AREAS, vec![]);
        assert_eq!(e.code(), code::BAD_REQUEST);
        assert_eq!(
            e.message(),
            "tandem.apply_areas: takes 4 parameter(s) (generation, areas, source, force), got 0"
        );
        let mut ok = apply_params(&ApplyArgs {
            generation: 1,
            areas: BTreeMap::new(),
            unchanged: BTreeMap::new(),
            source: src(),
            force: false,
        });
        ok[0] = Value::Integer(0);
        assert!(f(APPLY_AREAS, ok.clone())
            .message()
            .contains("generation must be 1 or more, not 0"));
        ok[0] = Value::Integer(1);
        let mut areas = BTreeMap::new();
        areas.insert("users".to_string(), Value::String(String::new()));
        ok[1] = Value::Struct(areas);
        assert!(f(APPLY_AREAS, ok.clone())
            .message()
            .contains("unknown area \"users\""));
        // A hash-only area: `{hash}` alone, a SHA-256 in lowercase hex, nothing else.
        let good = crate::area::hash("x");
        for (members, problem) in [
            (
                vec![("hash", Value::String(good.to_uppercase()))],
                "is not a SHA-256 hash (64 lowercase hex digits)",
            ),
            (
                vec![("hash", Value::String(format!("{good}\n")))],
                "is not a SHA-256 hash",
            ),
            (vec![("hash", Value::Integer(1))], "hash must be a string"),
            (
                vec![("text", Value::String(good.clone()))],
                "lacks the member `hash`",
            ),
            (
                vec![
                    ("hash", Value::String(good.clone())),
                    ("text", Value::String(String::new())),
                ],
                "must be {hash} alone",
            ),
        ] {
            let mut areas = BTreeMap::new();
            areas.insert("rules".to_string(), record(&members));
            ok[1] = Value::Struct(areas);
            let e = f(APPLY_AREAS, ok.clone());
            assert!(e.message().contains(problem), "{e}");
            assert!(!e.message().contains('\n'), "{e}");
        }
        ok[1] = Value::Struct(BTreeMap::new());
        ok[2] = Value::String("fw1".into());
        assert!(f(APPLY_AREAS, ok.clone())
            .message()
            .contains("source must be a struct"));
        ok[2] = source_value(&src());
        ok[3] = Value::Integer(1);
        assert!(f(APPLY_AREAS, ok)
            .message()
            .contains("force must be a boolean"));
        let e = f("system.exec", vec![]);
        assert_eq!(e.code(), code::UNKNOWN_METHOD);
        assert!(e.message().contains("tandem.version"));
        assert_eq!(decode(VERSION, &[]), Ok(Call::Version));
        assert!(f(STATUS, vec![Value::Integer(1)])
            .message()
            .contains("takes 0"));
    }

    #[test]
    fn json_converts_both_ways() {
        let j =
            serde_json::json!({"a": 1, "b": [true, "x", 2.5], "c": null, "d": 5_000_000_000u64});
        let v = from_json(&j);
        let back = to_json(&v);
        assert_eq!(
            back,
            serde_json::json!({"a": 1, "b": [true, "x", 2.5], "d": 5_000_000_000u64})
        );
    }

    #[test]
    fn answers_round_trip_and_bad_ones_are_named() {
        let v = VersionAnswer {
            software: "0.1.0".into(),
            protocol: 1,
            schema: 1,
            node: "fw2".into(),
            role: "peer".into(),
            capabilities: vec!["apply_areas".into()],
            areas: vec!["rules".into()],
        };
        assert_eq!(VersionAnswer::decode(&v.encode()), Ok(v.clone()));
        assert_eq!(
            HeartbeatAnswer::decode(&v.encode()).expect_err("no drift"),
            "answer lacks `drift`"
        );
        let hb = HeartbeatAnswer {
            node: "fw2".into(),
            generation: 3,
            drift: None,
        };
        assert_eq!(HeartbeatAnswer::decode(&hb.encode()), Ok(hb));
        let ap = ApplyAnswer {
            applied: true,
            generation: 5_000_000_000,
            node: "fw2".into(),
            message: "ok".into(),
        };
        assert_eq!(ApplyAnswer::decode(&ap.encode()), Ok(ap));
    }

    #[test]
    fn strings_from_a_peer_are_checked_before_they_go_anywhere() {
        for (node, software) in [
            ("fw1\n[firewall]\nenabled = false", "0.1.0"),
            ("", "0.1.0"),
            ("fw\"1", "0.1.0"),
            ("fw1", "0.1.0\n# injected"),
            ("fw1", ""),
        ] {
            let mut s = src();
            s.node = node.into();
            s.software = software.into();
            let e = decode(HEARTBEAT, &heartbeat_params(&s, 1)).expect_err("refused");
            assert_eq!(e.code(), code::BAD_REQUEST, "{node:?} {software:?}");
            assert!(!e.message().contains('\n'), "{e}");
        }
        assert!(decode(HEARTBEAT, &heartbeat_params(&src(), 1)).is_ok());
    }

    #[test]
    fn strings_in_answers_from_a_peer_are_made_printable() {
        let hb = record(&[
            ("node", Value::String("fw2".into())),
            ("generation", Value::Integer(3)),
            (
                "drift",
                Value::String("rules\n2026 ERROR forged\u{1b}[31m".into()),
            ),
        ]);
        let d = HeartbeatAnswer::decode(&hb)
            .expect("decodes")
            .drift
            .expect("drift");
        assert!(!d.chars().any(char::is_control), "{d:?}");
        assert!(d.contains("\\n") && d.contains("\\u{1b}"), "{d}");
        let bad_node = record(&[
            ("node", Value::String("fw2\nfw3".into())),
            ("generation", Value::Integer(3)),
            ("drift", Value::String(String::new())),
        ]);
        assert!(HeartbeatAnswer::decode(&bad_node).is_err());
        let r = Refusal::from_fault(code::INVALID, "x\r\ny".repeat(5000));
        assert!(!r.message().chars().any(char::is_control));
        assert!(r.message().chars().count() <= MAX_TEXT + 1);
    }

    #[test]
    fn refusals_travel_as_fault_codes() {
        for r in [
            Refusal::BadRequest("b".into()),
            Refusal::Forbidden("f".into()),
            Refusal::UnknownMethod("u".into()),
            Refusal::Drift("d".into()),
            Refusal::Stale("s".into()),
            Refusal::NeedFull("n".into()),
            Refusal::Invalid("i".into()),
            Refusal::Version("v".into()),
            Refusal::Internal("x".into()),
        ] {
            let f = r.to_fault();
            assert_eq!(Refusal::from_fault(f.code(), f.string()), r);
        }
        assert_eq!(
            Refusal::from_fault(499, "odd"),
            Refusal::Internal("fault 499: odd".into())
        );
    }
}
