//! The synced areas as TOML text: extracted from a config document in a canonical form (so a
//! hash says "same content" whatever the formatting and comments), hashed, compared item by
//! item, and composed with a node's own config. Pure: no I/O, no clock.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A config area that can be synced. Each is a top-level key of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Vips,
    Aliases,
    Rules,
    Nat,
    Gateways,
    Routes,
    Certificates,
    Dhcp,
    Dns,
    Wireguard,
}

impl Area {
    pub const ALL: [Area; 10] = [
        Area::Vips,
        Area::Aliases,
        Area::Rules,
        Area::Nat,
        Area::Gateways,
        Area::Routes,
        Area::Certificates,
        Area::Dhcp,
        Area::Dns,
        Area::Wireguard,
    ];

    /// The top-level key in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Vips => "vips",
            Area::Aliases => "aliases",
            Area::Rules => "rules",
            Area::Nat => "nat",
            Area::Gateways => "gateways",
            Area::Routes => "routes",
            Area::Certificates => "certificates",
            Area::Dhcp => "dhcp",
            Area::Dns => "dns",
            Area::Wireguard => "wireguard",
        }
    }

    pub fn parse(s: &str) -> Option<Area> {
        Area::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Every area name, for error messages.
    pub fn names() -> String {
        Area::ALL.map(Area::as_str).join(", ")
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem with area text (only possible with text that did not come from [`extract`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AreaError {
    #[error("area {area}: not valid TOML: {message}")]
    Syntax { area: Area, message: String },
    #[error("area {area}: the text may only hold the key `{area}`, it also has {other}")]
    ForeignKey { area: Area, other: String },
    #[error("area {area}: must be a table (`[{area}]`) or tables (`[[{area}]]`), not {found}")]
    NotTables { area: Area, found: &'static str },
}

/// A name from pushed text, as an error may show it: quoted, control characters escaped, at
/// most 64 characters (the error goes to the peer's log and back to the primary).
pub fn shown(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// What an area's value is: a table, or an array of tables. Anything else has no canonical
/// text of its own: a bare `key = value` line would land inside the table before it when the
/// areas are written one after the other (the peer's store, `compose`).
fn check_shape(area: Area, v: &toml::Value) -> Result<(), AreaError> {
    let found = match v {
        toml::Value::Table(_) => return Ok(()),
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => return Ok(()),
        toml::Value::Array(_) => "an array of values",
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
    };
    Err(AreaError::NotTables { area, found })
}

fn is_empty(v: &toml::Value) -> bool {
    match v {
        toml::Value::Array(a) => a.is_empty(),
        toml::Value::Table(t) => t.values().all(is_empty),
        _ => false,
    }
}

/// The canonical text of `area` in a parsed config document: `""` when the area is absent or
/// empty (so "no rules" has one form), else the TOML serialization of the single key.
pub fn extract(doc: &toml::Table, area: Area) -> String {
    match doc.get(area.as_str()) {
        None => String::new(),
        Some(v) if is_empty(v) => String::new(),
        Some(v) => {
            let mut t = toml::Table::new();
            t.insert(area.as_str().to_string(), v.clone());
            // A table of plain TOML values always serializes.
            toml::to_string(&t).unwrap_or_default()
        }
    }
}

/// Parses area text (as sent by a primary or stored on a peer) and returns its value, checking
/// that it holds only its own key. `None` for an empty area.
pub fn parse_area(area: Area, text: &str) -> Result<Option<toml::Value>, AreaError> {
    let t: toml::Table = toml::from_str(text).map_err(|e| AreaError::Syntax {
        area,
        message: crate::rpc::printable(
            &e.message().trim_end().chars().take(200).collect::<String>(),
        ),
    })?;
    for k in t.keys() {
        if k != area.as_str() {
            return Err(AreaError::ForeignKey {
                area,
                other: shown(k),
            });
        }
    }
    match t.get(area.as_str()).filter(|v| !is_empty(v)) {
        Some(v) => check_shape(area, v).map(|()| Some(v.clone())),
        None => Ok(None),
    }
}

/// Re-canonicalizes area text (comments and formatting go).
pub fn canonical(area: Area, text: &str) -> Result<String, AreaError> {
    let mut t = toml::Table::new();
    if let Some(v) = parse_area(area, text)? {
        t.insert(area.as_str().to_string(), v);
    }
    Ok(extract(&t, area))
}

/// SHA-256 of the text, lowercase hex.
pub fn hash(text: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The items of an area, each in a canonical one-line form (for counting and diffing): the
/// elements of `[[vips]]`, `[[rules]]`, ...; for `[nat]` the elements of each of its lists,
/// prefixed by the list's name.
pub fn items(doc: &toml::Table, area: Area) -> Vec<String> {
    let one = |v: &toml::Value| serde_json::to_string(v).unwrap_or_default();
    match doc.get(area.as_str()) {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a.iter().map(one).collect(),
        Some(toml::Value::Table(t)) => t
            .iter()
            .flat_map(|(k, v)| match v {
                toml::Value::Array(a) => a.iter().map(|e| format!("{k}:{}", one(e))).collect(),
                other => vec![format!("{k}:{}", one(other))],
            })
            .collect(),
        Some(other) => vec![one(other)],
    }
}

/// How many items the area has (as [`items`] would list, without serializing them).
pub fn count(doc: &toml::Table, area: Area) -> usize {
    match doc.get(area.as_str()) {
        None => 0,
        Some(toml::Value::Array(a)) => a.len(),
        Some(toml::Value::Table(t)) => t
            .values()
            .map(|v| match v {
                toml::Value::Array(a) => a.len(),
                _ => 1,
            })
            .sum(),
        Some(_) => 1,
    }
}

/// How one area differs between two versions: item counts and items added / removed
/// (compared as multisets; a changed item counts as one removed and one added).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaDiff {
    pub area: Area,
    pub before: usize,
    pub after: usize,
    pub added: usize,
    pub removed: usize,
}

impl fmt::Display for AreaDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {} items (+{} -{})",
            self.area, self.before, self.after, self.added, self.removed
        )
    }
}

/// Compares the area's items in two documents.
pub fn diff(area: Area, before: &toml::Table, after: &toml::Table) -> AreaDiff {
    let count = |items: Vec<String>| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for i in items {
            *m.entry(i).or_default() += 1;
        }
        m
    };
    let b = count(items(before, area));
    let a = count(items(after, area));
    let minus = |x: &BTreeMap<String, usize>, y: &BTreeMap<String, usize>| {
        x.iter()
            .map(|(k, n)| n.saturating_sub(y.get(k).copied().unwrap_or(0)))
            .sum::<usize>()
    };
    AreaDiff {
        area,
        before: b.values().sum(),
        after: a.values().sum(),
        added: minus(&a, &b),
        removed: minus(&b, &a),
    }
}

/// Parses area text into a one-key document (empty for empty text).
pub fn doc_of(area: Area, text: &str) -> Result<toml::Table, AreaError> {
    let mut t = toml::Table::new();
    if let Some(v) = parse_area(area, text)? {
        t.insert(area.as_str().to_string(), v);
    }
    Ok(t)
}

/// One section of a composed config text: which area, from which line (1-based, the header
/// comment), and a description of where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub area: Area,
    pub first_line: usize,
    pub origin: String,
}

/// A node's own config document with some areas replaced: the own document minus those areas,
/// serialized, then each replacing area's canonical text under a header comment. An area
/// replaced by empty text is simply gone (so deleting the last rule syncs).
pub struct Composed {
    pub text: String,
    pub sections: Vec<Section>,
}

impl Composed {
    /// The section a 1-based line of the composed text falls in (None: the node's own part).
    pub fn section_of(&self, line: usize) -> Option<&Section> {
        self.sections.iter().rev().find(|s| line >= s.first_line)
    }
}

/// See [`Composed`]. `header` is a comment block put first (without trailing newline handling:
/// every line should start with `#`).
pub fn compose(
    header: &str,
    own: &toml::Table,
    replace: &BTreeMap<Area, (String, String)>,
) -> Composed {
    let mut base = own.clone();
    for area in replace.keys() {
        base.remove(area.as_str());
    }
    let mut text = String::new();
    text.push_str(header);
    if !header.is_empty() && !header.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&toml::to_string(&base).unwrap_or_default());
    let mut sections = Vec::new();
    for (area, (area_text, origin)) in replace {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push('\n');
        let first_line = text.matches('\n').count() + 1;
        text.push_str(&format!("# ---- area {area}: {origin} ----\n"));
        if area_text.is_empty() {
            text.push_str(&format!("# (empty: no {area})\n"));
        } else {
            text.push_str(area_text);
        }
        sections.push(Section {
            area: *area,
            first_line,
            origin: origin.clone(),
        });
    }
    Composed { text, sections }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
[node]
name = "fw1"   # comment

[[rules]]
interface = "lan"
action = "pass"

[[rules]]
interface = "wan"
action = "block"

[[nat.outbound]]
interface = "wan"
translation = "198.51.100.1"
"#;

    fn doc(s: &str) -> toml::Table {
        toml::from_str(s).expect("toml")
    }

    #[test]
    fn canonical_text_ignores_formatting_and_comments() {
        let a = extract(&doc(DOC), Area::Rules);
        let reformatted = DOC
            .replace("action = \"pass\"", "action=\"pass\" # allow")
            .replace(
                "[node]\nname = \"fw1\"   # comment",
                "[node]\nname = \"fw2\"",
            );
        let b = extract(&doc(&reformatted), Area::Rules);
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b));
        assert!(a.starts_with("[[rules]]\n"), "{a}");
        assert_eq!(canonical(Area::Rules, &a).expect("canonical"), a);
        assert_ne!(
            hash(&a),
            hash(&extract(&doc(&DOC.replace("block", "reject")), Area::Rules))
        );
    }

    #[test]
    fn empty_and_absent_areas_are_one_form() {
        assert_eq!(extract(&doc(DOC), Area::Vips), "");
        assert_eq!(extract(&doc("rules = []"), Area::Rules), "");
        assert_eq!(
            extract(&doc("[nat]\noutbound = []\nport_forward = []"), Area::Nat),
            ""
        );
        assert_eq!(parse_area(Area::Rules, "").expect("empty"), None);
    }

    #[test]
    fn area_text_may_hold_only_its_key() {
        let e = parse_area(Area::Rules, "[node]\nname = \"x\"\n").expect_err("foreign");
        assert_eq!(
            e.to_string(),
            "area rules: the text may only hold the key `rules`, it also has \"node\""
        );
        let e = parse_area(Area::Rules, "[[rules]\n").expect_err("syntax");
        assert!(
            e.to_string().starts_with("area rules: not valid TOML"),
            "{e}"
        );
    }

    #[test]
    fn diff_counts_items() {
        let before = doc(DOC);
        let after = doc(&format!(
            "{}\n[[rules]]\ninterface = \"lan\"\naction = \"reject\"\n",
            DOC.replace("block", "reject")
        ));
        let d = diff(Area::Rules, &before, &after);
        assert_eq!(
            d,
            AreaDiff {
                area: Area::Rules,
                before: 2,
                after: 3,
                added: 2,
                removed: 1
            }
        );
        assert_eq!(d.to_string(), "rules: 2 -> 3 items (+2 -1)");
        assert_eq!(items(&before, Area::Nat).len(), 1);
        for a in Area::ALL {
            assert_eq!(count(&after, a), items(&after, a).len());
            assert_eq!(count(&before, a), items(&before, a).len());
        }
        assert!(items(&before, Area::Nat)[0].starts_with("outbound:"));
    }

    #[test]
    fn compose_replaces_areas_and_maps_lines() {
        let own = doc(DOC);
        let mut replace = BTreeMap::new();
        replace.insert(
            Area::Rules,
            (
                "[[rules]]\ninterface = \"dmz\"\naction = \"pass\"\n".to_string(),
                "from fw1".to_string(),
            ),
        );
        replace.insert(Area::Nat, (String::new(), "from fw1".to_string()));
        let c = compose("# header", &own, &replace);
        let parsed = doc(&c.text);
        assert_eq!(parsed["node"]["name"].as_str(), Some("fw1"));
        assert_eq!(items(&parsed, Area::Rules).len(), 1);
        assert!(parsed.get("nat").is_none());
        let rules_line = c
            .text
            .lines()
            .position(|l| l == "interface = \"dmz\"")
            .expect("line")
            + 1;
        assert_eq!(c.section_of(rules_line).map(|s| s.area), Some(Area::Rules));
        assert_eq!(c.section_of(2), None);
        assert!(c.text.contains("# (empty: no nat)"));
    }

    #[test]
    fn area_names_round_trip() {
        for a in Area::ALL {
            assert_eq!(Area::parse(a.as_str()), Some(a));
        }
        assert_eq!(Area::parse("users"), None);
    }
}
