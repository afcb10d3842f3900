//! The checks behind the fuzz targets (crates/configsync/fuzz) and the stand-in that runs them
//! in `cargo test -p configsync` (tests/fuzz.rs). Both include this file, so they check the
//! same. Every check takes the bytes a peer could send and asserts invariants, not only "no
//! panic":
//!
//! - [`check_call`]: an XML-RPC request body as the config-sync server reads it (UTF-8, dxr
//!   `MethodCall::from_xml`, `rpc::decode`); a decoded call re-encodes (as the primary sends
//!   it) to XML that decodes to the same call; a refused one is a 400/404 whose message is
//!   short and printable and survives the trip back as a fault.
//! - [`check_answer`]: an XML-RPC answer body as the primary reads it (lossy UTF-8, a
//!   `<fault>` as `FaultResponse`, else `MethodResponse`, then `VersionAnswer`,
//!   `HeartbeatAnswer`, `ApplyAnswer`); each answer that decodes round-trips through `encode`
//!   and the XML; strings from the peer are names or printable; a generation learnt from a
//!   peer still travels on the wire.
//! - [`check_area`]: pushed area text as a peer parses it (`area::parse_area`, `doc_of`,
//!   `canonical`); the three agree; canonical is idempotent, keeps the meaning, is empty only
//!   for an empty area, and is self-contained (the peer's store concatenates the areas'
//!   texts); an error is short and printable (it is logged and sent back as the refusal).
//! - [`check_plan`]: a run of pushes, local edits, commits and rollbacks on a peer over an
//!   in-memory store (`peer::plan_apply`); every decision agrees with the generations, drift
//!   and texts, a committed push is then "already applied", and a push never rolls back.

#![allow(dead_code)]

use configsync::area::{self, Area};
use configsync::book::{self, DriftPolicy, Origin, SyncedMeta};
use configsync::peer::{self, Decision, Plan, Store, HELD_KEY};
use configsync::rpc::{
    self, code, ApplyAnswer, ApplyArgs, Call, HeartbeatAnswer, Refusal, Source, VersionAnswer,
};
use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use std::collections::BTreeMap;

/// Contracts the fuzz runs found broken in product code, which the fuzz work does not fix
/// (see tests/fuzz_findings.rs: one ignored test per finding, with the minimized input).
/// The fuzz targets and the `cargo test` stand-in check with [`Open::KNOWN`], which skips
/// exactly these assertions so a run keeps exploring past a known finding; the finding tests
/// check with [`Open::NONE`]. When a fix lands: set its flag to false in `KNOWN` and remove
/// the test's `#[ignore]`.
#[derive(Debug, Clone, Copy)]
pub struct Open {
    /// Strings in a peer's answers (node, software, role, drift, message, fault string) are
    /// taken as they come: control characters and unbounded lengths reach the primary's logs
    /// and `tandem status`.
    pub answer_strings: bool,
    /// A refusal echoes an unknown method or area name at any length.
    pub refusal_length: bool,
    /// A generation a peer reports can push the primary's generation past what the wire
    /// carries (`i64::MAX`): the next push is sent with a saturated generation.
    pub generation_wire: bool,
    /// Canonical area text can be a bare `key = value` line, which lands inside the table
    /// before it when the peer's store concatenates the areas (and in `area::compose`).
    pub canonical_splice: bool,
    /// `force` applies a push older than the generation the peer runs (issue 9).
    pub forced_rollback: bool,
    /// An area error names a foreign key of the pushed text as it is (control characters,
    /// any length): it goes into the peer's log and back to the primary as the refusal.
    pub area_error_key: bool,
}

impl Open {
    /// Check everything.
    pub const NONE: Open = Open {
        answer_strings: false,
        refusal_length: false,
        generation_wire: false,
        canonical_splice: false,
        forced_rollback: false,
        area_error_key: false,
    };
    /// Skip the findings that are still open.
    pub const KNOWN: Open = Open {
        answer_strings: false,
        refusal_length: false,
        generation_wire: false,
        canonical_splice: false,
        forced_rollback: false,
        area_error_key: false,
    };

    /// What the fuzz targets check: [`Open::KNOWN`], or everything when the environment has
    /// `TANDEM_FUZZ_STRICT=1` (to reproduce, minimize or re-find an open finding).
    pub fn for_fuzzing() -> Open {
        static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *STRICT.get_or_init(|| std::env::var_os("TANDEM_FUZZ_STRICT").is_some_and(|v| v == "1"))
        {
            Open::NONE
        } else {
            Open::KNOWN
        }
    }
}

/// The longest refusal message a node sends back for a bad call.
pub const MAX_REFUSAL: usize = 512;
/// The longest string from a peer's answer the primary keeps (a drift summary or an apply
/// message can list every area).
pub const MAX_ANSWER_STRING: usize = 4096;

/// No control characters: safe for a log line and a terminal.
pub fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

// ---- XML-RPC calls, as the config-sync server reads them ------------------------------------

/// The XML a node sends for an answer (configsync-net `server::encode`).
pub fn answer_xml(answer: Result<Value, Refusal>) -> String {
    let body = match answer {
        Ok(value) => MethodResponse { value }.to_xml(),
        Err(r) => FaultResponse {
            fault: r.to_fault(),
        }
        .to_xml(),
    };
    format!(
        "<?xml version=\"1.0\"?>\n{}",
        body.expect("an answer always encodes")
    )
}

/// The XML-RPC method and parameters of a call (as the primary, or `tandem` tools, send it);
/// None for a kind of call this file does not know yet.
pub fn call_params(call: &Call) -> Option<(&'static str, Vec<Value>)> {
    #[allow(unreachable_patterns)]
    Some(match call {
        Call::Version => (rpc::VERSION, vec![]),
        Call::Status => (rpc::STATUS, vec![]),
        Call::GetAreas => (rpc::GET_AREAS, vec![]),
        Call::Reload => (rpc::RELOAD, vec![]),
        Call::Heartbeat { source, generation } => {
            (rpc::HEARTBEAT, rpc::heartbeat_params(source, *generation))
        }
        Call::Apply(a) => (rpc::APPLY_AREAS, rpc::apply_params(a)),
        _ => return None,
    })
}

/// A request body into the server's decoding, then the decoded call back out and in again.
pub fn check_call(data: &[u8], open: Open) {
    // The server refuses a body that is not UTF-8 before it parses anything.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(call) = MethodCall::from_xml(text) else {
        return;
    };
    match rpc::decode(&call.name, &call.params) {
        Ok(decoded) => {
            let Some((name, params)) = call_params(&decoded) else {
                return;
            };
            assert_eq!(call.name, name, "decoded as another method");
            let xml = MethodCall {
                name: name.into(),
                params,
            }
            .to_xml()
            .expect("a decoded call encodes");
            let back = MethodCall::from_xml(&xml).expect("our own call XML parses");
            assert_eq!(
                rpc::decode(&back.name, &back.params).as_ref(),
                Ok(&decoded),
                "decode(encode(call)) != call; XML: {xml:?}"
            );
            if let Call::Apply(args) = &decoded {
                check_apply_fresh(args);
            }
            if let Call::Heartbeat { source, .. } | Call::Apply(ApplyArgs { source, .. }) = &decoded
            {
                assert!(rpc::is_node_name(&source.node), "{source:?}");
                assert!(printable(&source.software), "{source:?}");
            }
        }
        Err(r) => {
            assert!(
                matches!(r.code(), code::BAD_REQUEST | code::UNKNOWN_METHOD),
                "decode refused with {}: {r}",
                r.code()
            );
            assert!(r.is_bad_call());
            assert!(printable(r.message()), "refusal not printable: {r:?}");
            if !open.refusal_length {
                assert!(
                    r.message().chars().count() <= MAX_REFUSAL,
                    "refusal of {} characters",
                    r.message().chars().count()
                );
            }
            // What the caller reads back is what was meant.
            let xml = answer_xml(Err(r.clone()));
            let f = FaultResponse::from_xml(&xml).expect("our own fault XML parses");
            assert_eq!(Refusal::from_fault(f.fault.code(), f.fault.string()), r);
        }
    }
}

/// A decoded push on a peer that has never been pushed to: refused for its versions or its
/// texts exactly when they are wrong, else planned with the texts' canonical forms.
fn check_apply_fresh(args: &ApplyArgs) {
    let mut store = Mem::default();
    let d = peer::plan_apply(
        &mut store,
        "fw2",
        &own_doc(),
        args,
        DriftPolicy::Refuse,
        100,
    );
    let versions_ok = (args.source.protocol, args.source.schema)
        == (configsync::PROTOCOL_VERSION, configsync::SCHEMA_VERSION);
    let texts_ok = args.areas.iter().all(|(a, t)| area::doc_of(*a, t).is_ok());
    match d {
        Err(Refusal::Version(_)) => assert!(!versions_ok),
        // A fresh peer holds nothing: any hash-only area is refused.
        Err(Refusal::NeedFull(m)) => {
            let hashes = !args.unchanged.is_empty();
            assert!(versions_ok && texts_ok && hashes && printable(&m), "{m:?}");
        }
        Err(Refusal::BadRequest(m)) => {
            assert!(versions_ok && !texts_ok, "{m}");
            assert!(printable(&m), "{m:?}");
        }
        Ok(Decision::Apply(p)) => {
            assert!(versions_ok && texts_ok);
            for (a, t) in &args.areas {
                let c = area::canonical(*a, t).expect("parsed above");
                assert_eq!(p.stored.get(a), Some(&c));
                assert_eq!(p.pushed.get(a), Some(&c));
            }
        }
        other => panic!("a first push decided {other:?}"),
    }
}

// ---- XML-RPC answers, as the primary reads them ---------------------------------------------

/// An answer body into the primary's decoding (configsync-net `client.rs`, then `push.rs`).
pub fn check_answer(data: &[u8], open: Open) {
    // The client reads the body lossily and takes anything with `<fault>` for a fault.
    let text = String::from_utf8_lossy(data);
    if text.contains("<fault>") {
        let Ok(f) = FaultResponse::from_xml(&text) else {
            return;
        };
        let r = Refusal::from_fault(f.fault.code(), f.fault.string());
        let known = [
            code::BAD_REQUEST,
            code::FORBIDDEN,
            code::UNKNOWN_METHOD,
            code::DRIFT,
            code::STALE,
            code::INVALID,
            code::VERSION,
            code::INTERNAL,
        ];
        if known.contains(&f.fault.code()) {
            assert_eq!(r.code(), f.fault.code());
            assert_eq!(r.message(), rpc::printable(f.fault.string()));
        } else {
            assert!(matches!(r, Refusal::Internal(_)), "{r:?}");
        }
        // A refusal passed on (as a node's own fault) reads back the same.
        let back = FaultResponse::from_xml(&answer_xml(Err(r.clone()))).expect("own fault");
        assert_eq!(
            Refusal::from_fault(back.fault.code(), back.fault.string()),
            r
        );
        if !open.answer_strings {
            peer_string("fault string", r.message());
        }
        return;
    }
    let Ok(resp) = MethodResponse::from_xml(&text) else {
        return;
    };
    let v = resp.value;
    if let Ok(a) = VersionAnswer::decode(&v) {
        assert_eq!(VersionAnswer::decode(&a.encode()).as_ref(), Ok(&a));
        assert_eq!(VersionAnswer::decode(&via_xml(a.encode())).as_ref(), Ok(&a));
        if !open.answer_strings {
            peer_name("node", &a.node);
            peer_string("software", &a.software);
            peer_string("role", &a.role);
            for s in a.capabilities.iter().chain(&a.areas) {
                peer_string("capability or area", s);
            }
        }
        let pv = a.peer_version();
        assert_eq!((pv.node, pv.protocol), (a.node.clone(), a.protocol));
    }
    if let Ok(a) = HeartbeatAnswer::decode(&v) {
        assert_eq!(HeartbeatAnswer::decode(&a.encode()).as_ref(), Ok(&a));
        assert_eq!(
            HeartbeatAnswer::decode(&via_xml(a.encode())).as_ref(),
            Ok(&a)
        );
        assert_ne!(a.drift.as_deref(), Some(""));
        if !open.answer_strings {
            peer_name("node", &a.node);
            if let Some(d) = &a.drift {
                peer_string("drift", d);
            }
        }
        // A peer that holds a newer generation makes the primary jump past it; that
        // generation must still travel (it is sent in every push and heartbeat).
        let mut state = book::PrimaryState {
            generation: 1,
            ..Default::default()
        };
        state.jump_past(a.generation, 0);
        // Past the peer's, unless the peer claims the largest there is (then level with it).
        assert!(state.generation > a.generation || state.generation == book::MAX_GENERATION);
        if !open.generation_wire {
            let src = source("fw1");
            let sent = rpc::decode(
                rpc::HEARTBEAT,
                &rpc::heartbeat_params(&src, state.generation),
            );
            assert_eq!(
                sent,
                Ok(Call::Heartbeat {
                    source: src,
                    generation: state.generation
                }),
                "a generation of {} learnt from a peer does not travel",
                state.generation
            );
        }
    }
    if let Ok(a) = ApplyAnswer::decode(&v) {
        assert_eq!(ApplyAnswer::decode(&a.encode()).as_ref(), Ok(&a));
        assert_eq!(ApplyAnswer::decode(&via_xml(a.encode())).as_ref(), Ok(&a));
        if !open.answer_strings {
            peer_name("node", &a.node);
            peer_string("message", &a.message);
        }
    }
}

fn via_xml(v: Value) -> Value {
    let xml = answer_xml(Ok(v));
    MethodResponse::from_xml(&xml)
        .expect("our own answer XML parses")
        .value
}

fn peer_name(what: &str, s: &str) {
    assert!(
        rpc::is_node_name(s),
        "a peer's {what} {s:?} is not a node name"
    );
}

fn peer_string(what: &str, s: &str) {
    assert!(printable(s), "a peer's {what} {s:?} is not printable");
    assert!(
        s.len() <= MAX_ANSWER_STRING,
        "a peer's {what} of {} bytes",
        s.len()
    );
}

// ---- pushed area text, as a peer parses it --------------------------------------------------

/// The first byte picks the area; the rest is the text.
pub fn check_area_bytes(data: &[u8], open: Open) {
    let Some((sel, rest)) = data.split_first() else {
        return;
    };
    // Area text arrives as an XML-RPC string: always UTF-8.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    check_area(Area::ALL[usize::from(*sel) % Area::ALL.len()], text, open);
}

pub fn check_area(a: Area, text: &str, open: Open) {
    let parsed = area::parse_area(a, text);
    let doc = area::doc_of(a, text);
    let canon = area::canonical(a, text);
    let (parsed, doc, canon) = match (parsed, doc, canon) {
        (Ok(p), Ok(d), Ok(c)) => (p, d, c),
        (Err(e1), Err(e2), Err(e3)) => {
            assert_eq!(e1, e2);
            assert_eq!(e1, e3);
            if !open.area_error_key {
                let m = e1.to_string();
                assert!(
                    printable(&m) && m.chars().count() <= MAX_REFUSAL,
                    "an area error of {} characters: {m:?}",
                    m.chars().count()
                );
            }
            return;
        }
        other => panic!("parse_area, doc_of and canonical disagree: {other:?}"),
    };
    // One key at most, the area's own.
    assert!(doc.keys().all(|k| k == a.as_str()), "{doc:?}");
    assert_eq!(canon, area::extract(&doc, a));
    // Empty exactly when there is nothing: an area never silently becomes "no rules".
    assert_eq!(canon.is_empty(), parsed.is_none(), "{text:?} -> {canon:?}");
    // Idempotent, and keeps the meaning.
    assert_eq!(
        area::canonical(a, &canon).as_ref(),
        Ok(&canon),
        "canonical is not idempotent on {text:?}"
    );
    let again = area::doc_of(a, &canon).expect("canonical text parses");
    assert!(same_table(&again, &doc), "{text:?} -> {canon:?}");
    assert_eq!(area::hash(&canon), area::hash(&canon.clone()));
    assert_eq!(area::count(&doc, a), area::items(&doc, a).len());
    if !open.canonical_splice {
        check_self_contained(a, &canon, &doc);
    }
}

/// Canonical texts of the other areas, each ending inside a table (as most real areas do).
fn neighbour(b: Area) -> String {
    area::canonical(b, &format!("[[{b}]]\nname = \"n\"\nentries = [1]\n"))
        .expect("literal area text")
}

/// The peer's store writes the synced areas into one file, one canonical text after the other
/// under a comment (tandem `config_sync::store::areas_file`), and `area::compose` does the
/// same after a node's own tables: each area must read back as itself.
fn check_self_contained(a: Area, canon: &str, doc: &toml::Table) {
    let mut file = format!("# synced areas\n{HELD_KEY} = [\"{a}\"]\n");
    for b in Area::ALL {
        file.push_str(&format!("\n# ---- area {b}: generation 1 ----\n"));
        if b == a {
            if canon.is_empty() {
                file.push_str(&format!("# (empty: no {b})\n"));
            } else {
                file.push_str(canon);
            }
        } else {
            file.push_str(&neighbour(b));
        }
    }
    let back: toml::Table = toml::from_str(&file).expect("concatenated areas parse");
    for b in Area::ALL {
        let want = if b == a {
            doc.get(a.as_str()).cloned()
        } else {
            area::doc_of(b, &neighbour(b))
                .expect("literal")
                .get(b.as_str())
                .cloned()
        };
        assert!(
            same_opt(back.get(b.as_str()), want.as_ref()),
            "area {b} reads back as {:?} from {file:?}",
            back.get(b.as_str())
        );
    }
    let own = own_doc();
    let mut replace = BTreeMap::new();
    replace.insert(a, (canon.to_string(), "fuzz".to_string()));
    let composed = area::compose("# composed", &own, &replace);
    let back: toml::Table = toml::from_str(&composed.text).expect("composed config parses");
    assert!(
        same_opt(back.get(a.as_str()), doc.get(a.as_str())),
        "area {a} reads back from the composed config as {:?}",
        back.get(a.as_str())
    );
    for (k, v) in &own {
        if k != a.as_str() {
            assert!(same_opt(back.get(k), Some(v)), "own table {k} changed");
        }
    }
}

/// TOML values equal, where NaN equals NaN (the serializer writes `-nan` as `nan`; no
/// config value means anything by either).
pub fn same(x: &toml::Value, y: &toml::Value) -> bool {
    use toml::Value as V;
    match (x, y) {
        (V::Float(p), V::Float(q)) => p == q || (p.is_nan() && q.is_nan()),
        (V::Array(p), V::Array(q)) => {
            p.len() == q.len() && p.iter().zip(q).all(|(x, y)| same(x, y))
        }
        (V::Table(p), V::Table(q)) => same_table(p, q),
        _ => x == y,
    }
}

pub fn same_table(p: &toml::Table, q: &toml::Table) -> bool {
    p.len() == q.len() && p.iter().all(|(k, v)| q.get(k).is_some_and(|w| same(v, w)))
}

fn same_opt(x: Option<&toml::Value>, y: Option<&toml::Value>) -> bool {
    match (x, y) {
        (Some(x), Some(y)) => same(x, y),
        (None, None) => true,
        _ => false,
    }
}

// ---- a peer's decisions over its store ------------------------------------------------------

/// The in-memory store of configsync's peer tests (crates/configsync/src/peer.rs), which is
/// private there.
#[derive(Default)]
pub struct Mem {
    pub meta: Option<SyncedMeta>,
    pub stored: toml::Table,
    pub pushed: toml::Table,
    pub history: BTreeMap<u64, toml::Table>,
    pub backups: usize,
}

impl Store for Mem {
    fn meta(&self) -> Result<Option<SyncedMeta>, String> {
        Ok(self.meta.clone())
    }
    fn stored(&mut self) -> Result<peer::Doc, String> {
        Ok(peer::Doc::new(self.stored.clone()))
    }
    fn pushed(&mut self) -> Result<peer::Doc, String> {
        Ok(peer::Doc::new(self.pushed.clone()))
    }
    fn generation(&mut self, g: u64) -> Result<Option<toml::Table>, String> {
        Ok(self.history.get(&g).cloned())
    }
    fn history(&self) -> Vec<u64> {
        self.history.keys().copied().collect()
    }
    fn save(&mut self, plan: &Plan, new_generation: bool) -> Result<(), String> {
        self.meta = Some(plan.meta.clone());
        self.stored = (*plan.stored_doc).clone();
        self.pushed = (*plan.pushed_doc).clone();
        if new_generation {
            let mut h = (*plan.pushed_doc).clone();
            h.insert(
                HELD_KEY.into(),
                toml::Value::Array(
                    plan.pushed
                        .keys()
                        .map(|a| toml::Value::String(a.to_string()))
                        .collect(),
                ),
            );
            self.history.insert(plan.meta.generation, h);
        }
        Ok(())
    }
    fn backup(&mut self, _plan: &Plan) -> Result<String, String> {
        self.backups += 1;
        Ok("mem".into())
    }
}

/// A node's own config: node-local tables, and its own version of two synced areas.
pub fn own_doc() -> toml::Table {
    toml::from_str(
        "[node]\nname = \"fw2\"\n\n[sync]\nrole = \"peer\"\n\n\
         [[rules]]\ninterface = \"lan\"\naction = \"pass\"\n\n\
         [[aliases]]\nname = \"web\"\ntype = \"host\"\nentries = [\"192.0.2.10\"]\n",
    )
    .expect("literal config")
}

pub fn source(node: &str) -> Source {
    Source {
        node: node.into(),
        software: "0.1.0".into(),
        protocol: configsync::PROTOCOL_VERSION,
        schema: configsync::SCHEMA_VERSION,
    }
}

/// Area texts a push may carry: the usual shapes, the empty forms, and broken ones.
const PALETTE: [&str; 14] = [
    "",
    "[[{a}]]\ninterface = \"lan\"\naction = \"pass\"\n",
    "[[{a}]]\ninterface = \"wan\"\naction = \"block\"\n\n[[{a}]]\ninterface = \"lan\"\naction = \"pass\" # c\n",
    "{a} = []\n",
    "[{a}]\noutbound = [{ interface = \"wan\" }]\n",
    "[{a}]\noutbound = []\nport_forward = []\n",
    "{a} = [\"10.0.0.0/8\"]\n",
    "{a} = 5\n",
    "[[{a}]\n",
    "[node]\nname = \"evil\"\n",
    "[[{a}]]\nx = nan\nt = 1979-05-27T07:32:00Z\n",
    "{a} = { inner = [] }\n",
    "# nothing\n",
    "[[{a}]]\nname = \"x\"\n[{a}.0]\n",
];

/// Reads fuzz bytes as a little program; every read past the end yields 0.
pub struct Cursor<'a>(pub &'a [u8]);

impl Cursor<'_> {
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    pub fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fn text(c: &mut Cursor<'_>, a: Area) -> String {
    let k = c.byte();
    if usize::from(k) < 0xe0 {
        PALETTE[usize::from(k) % PALETTE.len()].replace("{a}", a.as_str())
    } else {
        let n = usize::from(c.byte());
        String::from_utf8_lossy(c.bytes(n)).into_owned()
    }
}

fn generation(c: &mut Cursor<'_>, current: u64) -> u64 {
    const MAX: u64 = i64::MAX as u64;
    let g = match c.byte() {
        b @ 0..=199 => (current + u64::from(b % 7)).saturating_sub(3),
        200..=219 => 1,
        220..=239 => MAX - u64::from(c.byte() % 3),
        _ => u64::from(c.byte()) << 8 | u64::from(c.byte()),
    };
    // rpc::decode takes 1..=i64::MAX.
    g.clamp(1, MAX)
}

/// A peer through a program of pushes (any generation, force, policy, areas and texts), local
/// edits of its own file and of its stored copy, commits and rollbacks. Returns the store as
/// the program left it.
pub fn check_plan(data: &[u8], open: Open) -> Mem {
    let mut c = Cursor(data);
    let mut store = Mem::default();
    let mut own = own_doc();
    let mut steps = 0;
    while !c.done() && steps < 64 {
        steps += 1;
        match c.byte() % 8 {
            0..=4 => {
                let current = store.meta.as_ref().map_or(0, |m| m.generation);
                let flags = c.byte();
                let mut args = ApplyArgs {
                    generation: generation(&mut c, current),
                    areas: BTreeMap::new(),
                    unchanged: BTreeMap::new(),
                    source: source(["fw1", "fw3"][usize::from(flags >> 7)]),
                    force: flags & 1 != 0,
                };
                if flags & 0x60 == 0x60 {
                    args.source.schema += 1;
                }
                // Bits 0-5: the areas. 6: by the hash of the last push held; 7: by a new hash.
                let mask = c.byte();
                for (i, a) in Area::ALL.into_iter().enumerate() {
                    if i < 6 && mask & (1 << i) != 0 {
                        let t = text(&mut c, a);
                        let recorded = store.meta.iter().any(|m| m.areas.contains_key(&a));
                        if mask & 0x40 != 0 && recorded {
                            let h = area::hash(&area::extract(&store.pushed, a));
                            args.unchanged.insert(a, h);
                        } else if mask & 0xc0 == 0x80 {
                            args.unchanged.insert(a, area::hash(&t));
                        } else {
                            args.areas.insert(a, t);
                        }
                    }
                }
                let policy = if flags & 2 == 0 {
                    DriftPolicy::Refuse
                } else {
                    DriftPolicy::Overwrite
                };
                let commit = flags & 4 == 0;
                push(&mut store, &own, &args, policy, commit, open);
            }
            5 => {
                // An operator edits the node's own file.
                let a = Area::ALL[usize::from(c.byte()) % Area::ALL.len()];
                let t = text(&mut c, a);
                if let Ok(d) = area::doc_of(a, &t) {
                    own.remove(a.as_str());
                    own.extend(d);
                }
            }
            6 => {
                // An operator edits the stored synced copy.
                let a = Area::ALL[usize::from(c.byte()) % Area::ALL.len()];
                let t = text(&mut c, a);
                if let Ok(d) = area::doc_of(a, &t) {
                    store.stored.remove(a.as_str());
                    store.stored.extend(d);
                }
            }
            _ => {
                let to = match c.byte() {
                    0..=127 => None,
                    b => Some(u64::from(b & 7)),
                };
                rollback(&mut store, &own, to);
            }
        }
    }
    store
}

fn push(
    store: &mut Mem,
    own: &toml::Table,
    args: &ApplyArgs,
    policy: DriftPolicy,
    commit: bool,
    open: Open,
) {
    let before = store.meta.clone().unwrap_or_default();
    let (stored, pushed, kept) = (
        store.stored.clone(),
        store.pushed.clone(),
        store.history.len(),
    );
    let d = peer::plan_apply(
        store,
        "fw2",
        own,
        args,
        policy,
        1000 + args.generation % 1000,
    );
    // Deciding changes nothing.
    assert_eq!(store.meta.clone().unwrap_or_default(), before);
    assert!(same_table(&store.stored, &stored) && same_table(&store.pushed, &pushed));
    assert_eq!(store.history.len(), kept);
    let g = args.generation;
    let versions_ok = (args.source.protocol, args.source.schema)
        == (configsync::PROTOCOL_VERSION, configsync::SCHEMA_VERSION);
    let texts_ok = args.areas.iter().all(|(a, t)| area::doc_of(*a, t).is_ok());
    let plan = match d {
        Err(Refusal::Version(_)) => {
            assert!(!versions_ok);
            return;
        }
        Err(Refusal::BadRequest(m)) => {
            assert!(versions_ok && !texts_ok, "{m}");
            return;
        }
        Err(Refusal::Stale(m)) => {
            assert!(versions_ok && texts_ok);
            assert!(g < before.generation, "{m}");
            assert!(!open.forced_rollback || !args.force, "{m}");
            return;
        }
        Err(Refusal::Drift(m)) => {
            assert!(versions_ok && texts_ok);
            assert!(policy == DriftPolicy::Refuse && !args.force, "{m}");
            return;
        }
        Err(Refusal::NeedFull(m)) => {
            // Only when a hash-only area is not what the peer holds as its last push.
            let unheld = |(a, h): (&Area, &String)| !holds(&before, &pushed, *a, h);
            let unheld = args.unchanged.iter().any(unheld);
            assert!(versions_ok && texts_ok && unheld && printable(&m), "{m:?}");
            return;
        }
        Err(other) => panic!("plan_apply refused with {other:?}"),
        Ok(Decision::AlreadyApplied(a)) => {
            assert!(versions_ok && texts_ok);
            assert_eq!(g, before.generation);
            assert!(!a.applied && a.generation == g, "{a:?}");
            return;
        }
        Ok(Decision::Apply(p)) => {
            assert!(versions_ok && texts_ok);
            for (a, h) in &args.unchanged {
                assert!(holds(&before, &pushed, *a, h), "area {a} by an unheld hash");
            }
            *p
        }
    };
    assert_eq!(plan.meta.generation, g);
    assert_eq!(plan.previous, before);
    if !args.force {
        assert!(
            g >= before.generation,
            "a push of {g} over {}",
            before.generation
        );
    }
    if !open.forced_rollback {
        assert!(
            g >= before.generation,
            "a forced push of generation {g} rolled back generation {}",
            before.generation
        );
    }
    if policy == DriftPolicy::Refuse && !args.force {
        assert!(plan.overwritten.is_empty(), "{:?}", plan.overwritten);
    }
    for r in &plan.overwritten {
        assert!(in_push(args, r.area) && r.drift.is_some(), "{r:?}");
    }
    let areas: Vec<Area> = plan.meta.areas.keys().copied().collect();
    assert_eq!(plan.stored.keys().copied().collect::<Vec<_>>(), areas);
    assert_eq!(plan.pushed.keys().copied().collect::<Vec<_>>(), areas);
    for a in &areas {
        let rec = &plan.meta.areas[a];
        match args.areas.get(a) {
            Some(t) => {
                let canon = area::canonical(*a, t).expect("parsed");
                assert_eq!(plan.stored[a], canon);
                assert_eq!(plan.pushed[a], canon);
                assert_eq!(rec.hash, area::hash(&canon));
                assert_eq!(rec.generation, g);
                assert_eq!(rec.source, args.source.node);
                assert_eq!(plan.stored_doc.contains_key(a.as_str()), !canon.is_empty());
            }
            None => match args.unchanged.get(a) {
                // A hash-only area runs and is recorded as its last push had it.
                Some(h) => {
                    let text = area::extract(&pushed, *a);
                    assert_eq!((&plan.stored[a], &plan.pushed[a]), (&text, &text));
                    let src = &args.source.node;
                    assert_eq!((&rec.hash, rec.generation, &rec.source), (h, g, src));
                }
                None => assert_eq!(Some(rec), before.areas.get(a)),
            },
        }
    }
    if !commit {
        return;
    }
    let _ = peer::keep_backup(store, &plan);
    let answer = peer::commit(store, "fw2", &plan).expect("the memory store saves");
    assert!(answer.applied && answer.generation == g, "{answer:?}");
    assert!(printable(&answer.message), "{answer:?}");
    // What was just pushed runs as pushed: no drift, and the same push again changes nothing.
    let meta = store.meta.clone().unwrap_or_default();
    for r in book::resolve(own, &store.stored, &store.pushed, &meta) {
        if in_push(args, r.area) {
            assert!(
                r.drift.is_none() && matches!(r.origin, Origin::Synced { .. }),
                "area {} after its push: {:?} {:?}",
                r.area,
                r.origin,
                r.drift
            );
        }
    }
    match peer::plan_apply(store, "fw2", own, args, policy, 5000) {
        Ok(Decision::AlreadyApplied(a)) => assert!(!a.applied && a.generation == g),
        other => panic!("the same push again decided {other:?}"),
    }
}

/// Whether the push carries the area, whole or as hash only; whether a peer with this record and last-pushed copy holds area `a` with hash `h`.
fn in_push(args: &ApplyArgs, a: Area) -> bool {
    args.areas.contains_key(&a) || args.unchanged.contains_key(&a)
}
fn holds(meta: &SyncedMeta, pushed: &toml::Table, a: Area, h: &str) -> bool {
    meta.areas.get(&a).is_some_and(|r| r.hash == h) && area::hash(&area::extract(pushed, a)) == h
}

fn rollback(store: &mut Mem, own: &toml::Table, to: Option<u64>) {
    let before = store.meta.clone();
    let Ok(plan) = peer::plan_rollback(store, "fw2", own, to) else {
        assert_eq!(store.meta, before);
        return;
    };
    let meta = before.expect("a rollback needs a push first");
    let target = plan.meta.rolled_back_to.unwrap_or(meta.generation);
    assert!(store.history.contains_key(&target), "{target}");
    if let Some(t) = to {
        assert_eq!(target, t);
    }
    assert_eq!(plan.meta.generation, meta.generation);
    let kept = store.history[&target].clone();
    let m = peer::commit_rollback(store, "fw2", &plan).expect("the memory store saves");
    assert!(printable(&m), "{m:?}");
    for a in plan.meta.areas.keys() {
        let held = kept
            .get(HELD_KEY)
            .and_then(toml::Value::as_array)
            .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(a.as_str())));
        if held {
            assert!(
                same_opt(store.stored.get(a.as_str()), kept.get(a.as_str())),
                "area {a} after a rollback to {target}"
            );
        }
    }
}
