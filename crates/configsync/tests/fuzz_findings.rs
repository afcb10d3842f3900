//! What the fuzz runs of crates/configsync/fuzz found, kept as byte-vector tests on the
//! targets' own checks (tests/support/fuzz_checks.rs).
//!
//! - `finding_*`: a contract the product code breaks today. Each runs the minimized input with
//!   every assertion on (`Open::NONE`) and is `#[ignore]`d until the fix lands; the fuzz
//!   targets skip that one assertion meanwhile (`Open::KNOWN`). A fix removes the `#[ignore]`
//!   and clears the flag in `Open::KNOWN`. `cargo test -p configsync --test fuzz_findings --
//!   --include-ignored` shows which are still open.
//! - `kept_*`: inputs a run found that reach paths the seeds do not; they pass and must keep
//!   passing.

#[path = "support/fuzz_checks.rs"]
mod fuzz_checks;

use fuzz_checks::{check_answer, check_area, check_area_bytes, check_call, check_plan, Open};

fn response(members: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\"?>\n<methodResponse><params><param><value><struct>{members}</struct></value></param></params></methodResponse>"
    )
    .into_bytes()
}

fn member(name: &str, value: &str) -> String {
    format!("<member><name>{name}</name><value>{value}</value></member>")
}

// ---- open findings -------------------------------------------------------------------------

/// answer: a peer's heartbeat answer carries a drift summary with a NUL byte; the primary takes
/// it as it comes (`HeartbeatAnswer::decode`) into its log and `tandem status`. Found by the
/// `answer` target in under a second (a seed with bytes inserted).
#[test]
fn finding_answer_drift_with_control_characters() {
    let body = response(&format!(
        "{}{}{}",
        member("node", "<string>fw2</string>"),
        member("generation", "<int>3</int>"),
        member("drift", "<string>rules: 1\0 items (+1 -0)</string>"),
    ));
    check_answer(&body, Open::NONE);
}

/// answer: the node name in a version answer is not checked like `source.node` in a call: a
/// newline and a terminal escape reach the primary's status (`PeerVersion::node`).
#[test]
fn finding_answer_version_node_not_a_name() {
    let body = response(&format!(
        "{}{}{}{}{}{}{}",
        member("software", "<string>0.1.0</string>"),
        member("protocol", "<int>1</int>"),
        member("schema", "<int>1</int>"),
        member("node", "<string>fw2\n\x1b[2Jfw9</string>"),
        member("role", "<string>peer</string>"),
        member("capabilities", "<array><data></data></array>"),
        member("areas", "<array><data></data></array>"),
    ));
    check_answer(&body, Open::NONE);
}

/// answer: a fault string from a peer goes into `Refusal` (and from there into the primary's
/// log and status) with its control characters.
#[test]
fn finding_answer_fault_string_with_control_characters() {
    let body = b"<?xml version=\"1.0\"?>\n<methodResponse><fault><value><struct>\
<member><name>faultCode</name><value><int>422</int></value></member>\
<member><name>faultString</name><value><string>rejected\n\x1b]0;owned\x07</string></value></member>\
</struct></value></fault></methodResponse>";
    check_answer(body, Open::NONE);
}

/// answer: a peer answers a heartbeat with generation i64::MAX; the primary jumps past it to
/// 2^63, which `rpc::heartbeat_params` / `apply_params` send saturated as i64::MAX, so the
/// next push carries a generation other than the primary's.
#[test]
fn finding_answer_generation_past_the_wire() {
    let body = response(&format!(
        "{}{}{}",
        member("node", "<string>fw2</string>"),
        member("generation", "<i8>9223372036854775807</i8>"),
        member("drift", "<string></string>"),
    ));
    check_answer(&body, Open::NONE);
}

/// call: an unknown method name is echoed whole in the refusal (logged, and kept in status as
/// the last refused call), while `source.node` is cut at 64 characters. Found by the `call`
/// target (a 539-character refusal).
#[test]
fn finding_call_long_method_name_echoed() {
    let body = format!(
        "<?xml version=\"1.0\"?>\n<methodCall><methodName>tandem.{}</methodName><params></params></methodCall>",
        "x".repeat(600)
    );
    check_call(body.as_bytes(), Open::NONE);
}

/// area: canonical text of an area whose value is not a table (`rules = 5`, `rules =
/// ["10.0.0.0/8"]`) is a bare `key = value` line; the peer's store writes the areas one after
/// the other (tandem `areas_file`), so it lands inside the area before it (`aliases[0].rules`)
/// and the area itself reads back as absent. `area::compose` does the same.
#[test]
fn finding_area_bare_value_splices_into_the_area_before() {
    check_area(
        configsync::Area::Rules,
        "rules = [\"10.0.0.0/8\"]\n",
        Open::NONE,
    );
}

/// area: a pushed area text with a foreign table whose quoted name holds a control character
/// (TOML's `\x0d` escape): the refusal names the key as it is (`AreaError::ForeignKey`), so a
/// primary's text puts CR, ESC or a key of any length into the peer's log and into the refusal
/// it sends back. Found by the `area` target in a 30 s run (the first input, as found: its
/// first byte `=` picks `aliases`); the second is the same with a terminal escape.
#[test]
fn finding_area_foreign_key_echoed_raw() {
    check_area_bytes(
        b"= [\"1FFF\\x0dFFFFFFFFFFFFF'''FFFFFFFFFF.0.0.0/8\"]\n",
        Open::NONE,
    );
    check_area(
        configsync::Area::Rules,
        "[\"\\u001b[2J\"]\nx = 1\n",
        Open::NONE,
    );
}

/// plan: a forced push of generation 1 to a peer that runs generation 4 is applied (issue 9:
/// `force` overrides drift only; an older generation is never applied by a push). Found by
/// the `plan` target at once.
#[test]
fn finding_plan_forced_push_rolls_back() {
    check_plan(
        &[
            0, 0, 255, 0, 4, 0b100, 1, // push generation 4 with rules, commit
            0, 1, 255, 0, 1, 0b100, 2, // forced push of generation 1
        ],
        Open::NONE,
    );
}

// ---- kept inputs ---------------------------------------------------------------------------

fn apply_call(areas: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\"?>\n<methodCall><methodName>tandem.apply_areas</methodName><params>\
<param><value><int>2</int></value></param>\
<param><value><struct>{areas}</struct></value></param>\
<param><value><struct>{}{}{}{}</struct></value></param>\
<param><value><boolean>0</boolean></value></param></params></methodCall>",
        member("node", "<string>fw1</string>"),
        member("software", "<string>0.1.0</string>"),
        member("protocol", "<int>2</int>"),
        member("schema", "<int>1</int>"),
    )
    .into_bytes()
}

fn decoded_rules(body: &[u8]) -> String {
    let call = dxr::MethodCall::from_xml(std::str::from_utf8(body).expect("utf-8")).expect("xml");
    match configsync::rpc::decode(&call.name, &call.params) {
        Ok(configsync::rpc::Call::Apply(a)) => a.areas[&configsync::Area::Rules].clone(),
        other => panic!("{other:?}"),
    }
}

/// call (a shape the corpus found): area text with line ends and control characters. A raw
/// CRLF in the XML reads as LF, `&#13;` as CR (which dxr writes back as `&#13;`), a raw ESC as
/// itself: each survives the primary → peer trip, and the CRLF text is still TOML to the peer.
#[test]
fn kept_call_area_text_line_ends_and_controls() {
    let body = apply_call(&member(
        "rules",
        "<string>[[rules]]&#13;\ninterface = \"lan\"\r\naction = \"pass\" # \x1b\n</string>",
    ));
    assert_eq!(
        decoded_rules(&body),
        "[[rules]]\r\ninterface = \"lan\"\naction = \"pass\" # \x1b\n"
    );
    check_call(&body, Open::NONE);
}

/// call (a shape the corpus found): area text in CDATA, with `<` and `&` taken literally; our
/// encoder escapes them on the way back.
#[test]
fn kept_call_area_text_in_cdata() {
    let body = apply_call(&member(
        "rules",
        "<string><![CDATA[[[rules]]\ninterface = \"lan\" # <&amp;>\n]]></string>",
    ));
    assert_eq!(
        decoded_rules(&body),
        "[[rules]]\ninterface = \"lan\" # <&amp;>\n"
    );
    check_call(&body, Open::NONE);
}

/// area: forms the canonical text rewrites (dotted keys, literal and multi-line strings, quoted
/// keys, datetimes with an offset and nanoseconds, inline arrays of tables, special floats,
/// empty sub-tables).
#[test]
fn kept_area_rewritten_forms() {
    use configsync::Area;
    for (area, text) in [
        (Area::Rules, "[rules]\na.b = 1\n"),
        (Area::Aliases, "[[aliases]]\nx = '''\nmulti\nline'''\n"),
        (
            Area::Routes,
            "[[routes]]\n\"a b\" = 1979-05-27T07:32:00.123456789+01:30\n",
        ),
        (
            Area::Rules,
            "rules = [{ interface = \"lan\" }, { x = -inf, y = -nan, z = 0x1f }]\n",
        ),
        (Area::Nat, "[nat]\noutbound = []\n[nat.port_forward]\n"),
    ] {
        check_area(area, text, Open::NONE);
    }
    assert_eq!(
        configsync::area::canonical(Area::Rules, "[rules]\na.b = 1\n"),
        Ok("[rules.a]\nb = 1\n".to_string())
    );
    assert_eq!(
        configsync::area::canonical(Area::Nat, "[nat]\noutbound = []\n[nat.port_forward]\n"),
        Ok(String::new())
    );
}

/// plan: a drifted copy overwritten by policy (backup kept), a rollback, then the same
/// generation again: refused as drift under policy refuse, applied under overwrite.
#[test]
fn kept_plan_overwrite_rollback_and_push_again() {
    let store = check_plan(
        &[
            0, 0, 4, 0b100, 1, // generation 1: rules (lan pass), commit
            6, 2, 2, // the operator edits the stored copy of rules
            0, 0b10, 4, 0b100, 2, // generation 2 under policy overwrite: backup, commit
            7, 0, // rollback to the generation before (1)
            0, 0, 3, 0b100, 2, // generation 2 again, policy refuse: drift
            0, 0b10, 3, 0b100, 2, // generation 2 again, policy overwrite: applied
        ],
        Open::NONE,
    );
    let meta = store.meta.expect("pushed");
    assert_eq!(meta.generation, 2);
    assert_eq!(meta.rolled_back_to, None);
    assert_eq!(store.history.keys().copied().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(store.backups, 2);
}
