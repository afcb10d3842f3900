//! Config sync between real tandem daemons in network namespaces: fw1 (primary, devices
//! eth0/eth1/eth2) pushes to fw2 (peer, devices ens5/ens6/ens7) over the sync link
//! 203.0.113.0/24, XML-RPC on HTTPS with the peer's certificate pinned.

mod common;
#[path = "configsync/harness.rs"]
mod harness;

use common::*;
use harness::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NEW_RULE: &str = r#"
[[rules]]
interface = "lan"
action = "pass"
protocol = "udp"
destination_port = 5353
description = "added-on-fw1"
"#;

#[test]
fn a_rule_added_on_the_primary_is_active_on_the_peer() {
    if !lab::require_netns() {
        return;
    }
    // nat is not switched on for sync: it must never reach fw2.
    let o = Opts {
        areas: Some(&["vips", "aliases", "rules", "gateways", "routes"]),
        ..opts()
    };
    let c = cluster("configsync_rule_added", &o);
    let fw2_text_before = std::fs::read_to_string(&c.fw2.config).expect("read");
    c.wait_in_sync();
    let h2 = &c.fw2.host;
    c.wait("fw2 runs the synced base rule", || {
        nft(h2).contains("base-rule-web")
    });

    let start = Instant::now();
    c.edit_fw1(|t| format!("{t}{NEW_RULE}"));
    c.wait("the new rule in fw2's nftables", || {
        nft(h2).contains("added-on-fw1")
    });
    eprintln!(
        "rule active on fw2 {} ms after `tandem reload` on fw1 returned",
        start.elapsed().as_millis()
    );
    let ruleset = nft(h2);
    // Logical names became fw2's own devices.
    assert!(ruleset.contains("iifname \"ens5\""), "{ruleset}");
    assert!(!ruleset.contains("eth0"), "{ruleset}");
    // The area switched off for sync was not copied.
    assert!(!ruleset.contains("fw1-only-nat"), "{ruleset}");
    assert!(!ruleset.contains("snat"), "{ruleset}");
    assert!(nft(&c.h1).contains("fw1-only-nat"));

    // Node-local settings never change on fw2; synced VIPs keep fw2's skew and devices.
    let s2 = c.fw2.status();
    assert_eq!(s2["node"], "fw2");
    assert_eq!(
        std::fs::read_to_string(&c.fw2.config).expect("read"),
        fw2_text_before,
        "fw2's own file was touched"
    );
    c.wait("fw2 runs both synced VIPs", || {
        c.fw2.status()["vips"].as_array().map_or(0, Vec::len) == 2
    });
    for (vhid, dev) in [(7, "ens5"), (8, "ens6")] {
        let v = c.fw2.vip(vhid);
        assert_eq!(v["device"], dev, "{v}");
        assert_eq!(v["configured_advskew"], 100, "{v}");
        let v1 = c.fw1().vip(vhid);
        assert_eq!(v1["configured_advskew"], 0, "{v1}");
    }
    // A VIP added on fw1 arrives with fw2's skew.
    c.edit_fw1(|t| {
        format!("{t}\n[[vips]]\nvhid = 9\ninterface = \"lan\"\naddresses = [\"192.0.2.9/24\"]\n")
    });
    c.wait("vhid 9 on fw2", || {
        c.fw2.status()["vips"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x["vhid"] == 9))
    });
    assert_eq!(c.fw2.vip(9)["configured_advskew"], 100);
    assert_eq!(c.fw2.vip(9)["device"], "ens5");
    c.fw1().expect_state(9, "MASTER", ELECTION);
    c.fw2.expect_state(9, "BACKUP", ELECTION);

    // Status on both sides; `config show` on fw2 says where each area came from.
    c.wait_in_sync();
    let cs2 = c.fw2.status()["config_sync"].clone();
    assert_eq!(cs2["role"], "peer");
    assert_eq!(cs2["source"], "fw1");
    assert_eq!(
        cs2["generation"],
        c.fw1().status()["config_sync"]["generation"]
    );
    assert_eq!(cs2["drift"], Value::Null);
    // A normal start makes no call the peer refuses (there was one: generation 0, pushed
    // before the primary had published its first).
    assert_eq!(
        cs2["rpc"]["rejected"],
        serde_json::json!({}),
        "{}",
        cs2["rpc"]
    );
    let (ok, show) = tandem(&c.fw2, &["config", "show"]);
    assert!(ok, "{show}");
    assert!(show.contains("synced from fw1, generation"), "{show}");
    assert!(
        show.contains("# area nat") && show.contains("own file (not synced)"),
        "{show}"
    );
    assert!(show.contains("added-on-fw1"), "{show}");
    assert!(
        !show.contains("pw-sync") && !show.contains("carp-s3cret"),
        "secrets shown:\n{show}"
    );
    assert!(
        show.contains(cs2["fingerprint"].as_str().unwrap_or("?")),
        "{show}"
    );
    let (_, text) = tandem(&c.fw2, &["status"]);
    assert!(text.contains("config sync: peer"), "{text}");
    let (_, text) = tandem(c.fw1(), &["status"]);
    assert!(
        text.contains("peer fw2") && text.contains("IN SYNC"),
        "{text}"
    );

    // Deleting the last rule syncs too (an area synced empty replaces).
    let base = &BASE_RULES[BASE_RULES.find("[[rules]]").expect("rules")
        ..BASE_RULES.find("[[nat.outbound]]").expect("nat")];
    c.edit_fw1(|t| t.replace(base, "").replace(NEW_RULE, ""));
    c.wait("fw2 runs no rule any more", || {
        let r = nft(h2);
        !r.contains("added-on-fw1") && !r.contains("base-rule-web")
    });
}

#[test]
fn wrong_password_is_refused_and_both_sides_report_it() {
    if !lab::require_netns() {
        return;
    }
    let o = Opts {
        password: "not-the-password",
        ..opts()
    };
    let c = cluster("configsync_wrong_password", &o);
    c.wait("fw1 reports the auth failure", || {
        c.peer()["last_error_kind"] == "auth"
    });
    let p = c.peer();
    assert_eq!(p["in_sync"], false, "{p}");
    assert!(
        p["last_result"]
            .as_str()
            .is_some_and(|r| r.contains("authentication failed")),
        "{p}"
    );
    c.wait("fw2 counts the refused call", || {
        c.fw2.status()["config_sync"]["rpc"]["rejected"]["auth"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    });
    let cs2 = c.fw2.status()["config_sync"].clone();
    assert!(
        cs2["rpc"]["last_rejected"]
            .as_str()
            .is_some_and(|l| l.contains("203.0.113.1") && l.contains("wrong user or password")),
        "{cs2}"
    );
    assert!(
        c.fw2.log().contains("refused: wrong user or password"),
        "{}",
        c.fw2.log()
    );
    // Nothing changed on fw2.
    assert_eq!(cs2["generation"], 0, "{cs2}");
    assert_eq!(nft(&c.fw2.host), "", "fw2 got a ruleset");
    assert!(c.fw2.status()["vips"].as_array().is_some_and(Vec::is_empty));
    let (_, text) = tandem(c.fw1(), &["status"]);
    assert!(text.contains("authentication failed"), "{text}");
}

#[test]
fn an_invalid_push_is_refused_and_a_peer_behind_stays_demoted_until_synced() {
    if !lab::require_netns() {
        return;
    }
    // Only rules sync: fw2 has no alias "dns", so a rule naming it cannot validate there.
    let o = Opts {
        areas: Some(&["vips", "rules"]),
        fw1_areas: format!(
            "{VIPS}{BASE_RULES}\n[[aliases]]\nname = \"dns\"\ntype = \"port\"\nentries = [53]\n"
        ),
        // fw2's own firewall must pass the sync link before the first push (then the synced
        // rules, which pass it too, replace its own).
        fw2_areas: "\n[[aliases]]\nname = \"web\"\ntype = \"port\"\nentries = [80, 443]\n\n[[rules]]\ninterface = \"sync\"\naction = \"pass\"\nsource = \"sync:network\"\n",
        ..opts()
    };
    let c = cluster("configsync_invalid_push", &o);
    c.wait_in_sync();
    let h2 = &c.fw2.host;
    c.wait("fw2 runs the base rules", || {
        nft(h2).contains("base-rule-web")
    });
    c.fw1().expect_state(7, "MASTER", ELECTION);
    c.fw2.expect_state(7, "BACKUP", ELECTION);
    let good_gen = c.fw2.status()["config_sync"]["generation"].clone();

    c.edit_fw1(|t| {
        format!(
            "{t}\n[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"udp\"\ndestination_port = \"dns\"\ndescription = \"needs-alias-dns\"\n"
        )
    });
    c.wait("fw1 shows fw2's rejection", || {
        c.peer()["last_error_kind"] == "rejected"
    });
    let p = c.peer();
    let why = p["last_result"].as_str().unwrap_or_default().to_string();
    // The located error: file:line:col in fw2's candidate, the message, and the area.
    assert!(why.contains("unknown alias"), "{p}");
    assert!(why.contains("incoming.toml:"), "{p}");
    assert!(why.contains("(area rules: synced from fw1"), "{p}");
    // The line named is the rule's line in the candidate file (each area is parsed on its own
    // at its place in the file).
    let line: usize = why
        .split("incoming.toml:")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line in {why}"));
    let incoming = std::fs::read_to_string(c.lab.dir().join("fw2-state/incoming.toml"))
        .expect("fw2's incoming.toml");
    let at = incoming.lines().nth(line - 1).unwrap_or_default();
    assert!(at.contains("\"dns\""), "line {line} is {at:?}:\n{incoming}");
    assert_eq!(p["in_sync"], false);
    assert!(p["lag_generations"].as_u64().is_some_and(|l| l >= 1), "{p}");
    // The old config keeps running on fw2.
    let r = nft(h2);
    assert!(
        r.contains("base-rule-web") && !r.contains("needs-alias-dns"),
        "{r}"
    );
    assert_eq!(c.fw2.status()["config_sync"]["generation"], good_gen);

    // Behind the primary: demoted, every VIP advertises the demoted skew.
    c.wait("fw2 demoted by config sync", || {
        let s = c.fw2.status();
        s["demotions"].as_array().is_some_and(|d| {
            d.iter()
                .any(|x| x["source"] == "config-sync" && x["value"] == 240)
        })
    });
    let s2 = c.fw2.status();
    assert_eq!(s2["config_sync"]["behind"], true, "{s2}");
    assert_eq!(s2["config_sync"]["demoted"], true, "{s2}");
    assert_eq!(c.fw2.vip(7)["advskew"], 240);
    assert_eq!(c.fw2.vip(7)["configured_advskew"], 100);
    assert!(
        c.fw2.log().contains("demoted by 240 until synced"),
        "{}",
        c.fw2.log()
    );

    // Fixed on fw1: synced, demotion lifted.
    c.edit_fw1(|t| t.replace("destination_port = \"dns\"", "destination_port = 53"));
    c.wait("fw2 runs the fixed rule", || {
        nft(h2).contains("needs-alias-dns")
    });
    c.wait_in_sync();
    c.wait("fw2's config-sync demotion lifted", || {
        c.fw2.status()["demotions"]
            .as_array()
            .is_some_and(|d| !d.iter().any(|x| x["source"] == "config-sync"))
    });
    assert_eq!(c.fw2.vip(7)["advskew"], 100);
}

#[test]
fn a_change_made_while_the_peer_is_down_arrives_when_it_returns() {
    if !lab::require_netns() {
        return;
    }
    let mut c = cluster("configsync_peer_down", &opts());
    c.wait_in_sync();
    c.fw2.kill();
    c.edit_fw1(|t| format!("{t}{NEW_RULE}"));
    c.wait("fw1 sees fw2 unreachable and behind", || {
        let p = c.peer();
        p["last_error_kind"] == "unreachable" && p["lag_generations"] == 1
    });
    let p = c.peer();
    assert_eq!(p["in_sync"], false, "{p}");
    assert!(p["lag_seconds"].as_f64().is_some(), "{p}");
    let (_, text) = tandem(c.fw1(), &["status"]);
    assert!(
        text.contains("NOT IN SYNC") && text.contains("unreachable"),
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!nft(&c.fw2.host).contains("added-on-fw1"));

    c.fw2.restart();
    let h2 = c.fw2.host.clone();
    c.wait("the change on fw2 after its return", || {
        nft(&h2).contains("added-on-fw1")
    });
    c.wait_in_sync();
}

/// fw1's push counters for fw2: (whole, delta, delta refused).
fn pushes(c: &Cluster) -> (u64, u64, u64) {
    let p = c.peer();
    let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}"));
    (n("pushes_full"), n("pushes_delta"), n("delta_refused"))
}

/// Pushes the (restarted) fw2 applied.
fn applied(c: &Cluster) -> u64 {
    c.fw2.status()["config_sync"]["applied"]
        .as_u64()
        .unwrap_or(0)
}

/// fw2's state dir with its sync state (not its certificate) replaced: `from` None deletes it.
fn replace_sync_state(state: &std::path::Path, from: Option<&std::path::Path>) {
    for f in ["synced.json", "synced.toml", "pushed.toml"] {
        let _ = std::fs::remove_file(state.join(f));
        if let Some(from) = from {
            std::fs::copy(from.join(f), state.join(f)).expect("restore");
        }
    }
    let _ = std::fs::remove_dir_all(state.join("history"));
}

#[test]
fn a_one_area_change_goes_as_a_delta_and_a_peer_with_other_state_gets_the_whole_areas() {
    if !lab::require_netns() {
        return;
    }
    let mut c = cluster("configsync_delta", &opts());
    c.wait_in_sync();
    let h2 = c.fw2.host.clone();
    c.wait("base rules on fw2", || nft(&h2).contains("base-rule-web"));
    // The first push carried everything: fw2 held nothing.
    let (full0, delta0, refused0) = pushes(&c);
    assert!(full0 >= 1, "{}", c.peer());
    assert_eq!((delta0, refused0), (0, 0), "{}", c.peer());
    let state = c.lab.dir().join("fw2-state");
    let kept = c.lab.dir().join("fw2-state-kept");
    std::fs::create_dir_all(&kept).expect("mkdir");
    replace_sync_state(&kept, Some(&state));

    // One rule more: only rules travel whole, every other area by hash.
    c.edit_fw1(|t| format!("{t}{NEW_RULE}"));
    c.wait("the new rule on fw2", || nft(&h2).contains("added-on-fw1"));
    c.wait_in_sync();
    assert_eq!(pushes(&c), (full0, 1, 0), "{}", c.peer());
    let cs2 = c.fw2.status()["config_sync"].clone();
    assert_eq!(cs2["applied_delta"], 1, "{cs2}");
    assert_eq!(cs2["refused_need_full"], 0, "{cs2}");
    assert!(
        c.fw2.log().contains(&format!(
            "1 sent whole, {} by hash",
            configsync::Area::ALL.len() - 1
        )),
        "{}",
        c.fw2.log()
    );
    // It runs exactly what a whole push gives: the synced copy is fw1's areas, no drift.
    assert_eq!(cs2["drift"], Value::Null, "{cs2}");
    let (ok, show) = tandem(&c.fw2, &["config", "show"]);
    assert!(ok && show.contains("added-on-fw1"), "{show}");
    let (_, show1) = tandem(c.fw1(), &["config", "show"]);
    let hashes = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("# area"))
            .map(|l| {
                l.split("sha256 ")
                    .nth(1)
                    .unwrap_or("")
                    .chars()
                    .take(12)
                    .collect()
            })
            .collect()
    };
    assert_eq!(hashes(&show), hashes(&show1), "{show}\n{show1}");

    // fw2 comes back with other state (restored from before that change): its last push is
    // not what fw1 believes, so the delta is refused and the whole areas follow at once.
    c.fw2.kill();
    replace_sync_state(&state, Some(&kept));
    c.fw2.restart();
    c.wait("the restarted fw2 applies a push", || applied(&c) == 1);
    assert!(nft(&h2).contains("added-on-fw1"));
    c.wait_in_sync();
    let (_, delta1, refused1) = pushes(&c);
    assert_eq!(refused1, 1, "{}", c.peer());
    assert_eq!(delta1, 2, "{}", c.peer());
    let cs2 = c.fw2.status()["config_sync"].clone();
    assert_eq!(cs2["refused_need_full"], 1, "{cs2}");
    assert_eq!(cs2["drift"], Value::Null, "{cs2}");
    assert!(c.fw2.log().contains("as a delta"), "{}", c.fw2.log());
    assert!(
        c.fw1().log().contains("delta push refused"),
        "{}",
        c.fw1().log()
    );

    // fw2 lost its sync state altogether: the same, and it runs everything again.
    c.fw2.kill();
    replace_sync_state(&state, None);
    c.fw2.restart();
    assert_eq!(c.fw2.status()["config_sync"]["generation"], 0);
    c.wait("fw2 applies a push after it lost its state", || {
        applied(&c) == 1
    });
    let r = nft(&h2);
    assert!(
        r.contains("added-on-fw1") && r.contains("base-rule-web"),
        "{r}"
    );
    c.wait_in_sync();
    assert_eq!(pushes(&c).2, 2, "{}", c.peer());
    let cs2 = c.fw2.status()["config_sync"].clone();
    assert_eq!(cs2["refused_need_full"], 1, "{cs2}");
    assert_eq!(cs2["applied_delta"], 0, "{cs2}");
    assert!(
        c.fw2.log().contains("holds no pushed copy"),
        "{}",
        c.fw2.log()
    );
}

fn drift_case(policy: &str) {
    let o = Opts {
        drift: policy,
        ..opts()
    };
    let c = cluster(&format!("configsync_drift_{policy}"), &o);
    c.wait_in_sync();
    let h2 = c.fw2.host.clone();
    c.wait("base rules on fw2", || nft(&h2).contains("base-rule-web"));

    // A local edit on fw2: its own file gets the synced rules plus one more, then reload.
    let synced_rules = BASE_RULES[..BASE_RULES.find("[[nat.outbound]]").expect("nat")].to_string();
    edit(&c.fw2.config, |t| {
        format!(
            "{t}{synced_rules}\n[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"udp\"\ndestination_port = 4444\ndescription = \"local-edit-on-fw2\"\n"
        )
    });
    reload(&c.fw2);
    assert!(
        nft(&h2).contains("local-edit-on-fw2"),
        "the local edit runs"
    );
    // Detected and reported on both sides before any push.
    let cs2 = c.fw2.status()["config_sync"].clone();
    assert!(
        cs2["drift"]
            .as_str()
            .is_some_and(|d| d.contains("rules: 2 -> 3 items (+1 -0)")),
        "{cs2}"
    );
    let (_, show) = tandem(&c.fw2, &["config", "show"]);
    assert!(
        show.contains("local edit") && show.contains("DRIFT"),
        "{show}"
    );
    c.wait("fw1 shows fw2's drift", || {
        c.peer()["drift"]
            .as_str()
            .is_some_and(|d| d.contains("rules: 2 -> 3"))
    });
    assert_eq!(c.peer()["in_sync"], false);

    // A change on fw1 now meets the drift.
    c.edit_fw1(|t| format!("{t}{NEW_RULE}"));
    let state2 = c.lab.dir().join("fw2-state");
    if policy == "refuse" {
        c.wait("fw1 shows the refused push", || {
            c.peer()["last_error_kind"] == "drift"
        });
        let p = c.peer();
        assert!(
            p["last_result"].as_str().is_some_and(
                |r| r.contains("rules: 2 -> 3 items (+1 -0)") && r.contains("nothing changed")
            ),
            "{p}"
        );
        std::thread::sleep(Duration::from_secs(2));
        let r = nft(&h2);
        assert!(
            r.contains("local-edit-on-fw2") && !r.contains("added-on-fw1"),
            "overwritten:\n{r}"
        );
        assert!(!state2.join("backups").exists());
        // Resolved by force from the primary: overwritten, with a backup.
        let (ok, out) = tandem(c.fw1(), &["config", "push", "--force"]);
        assert!(ok, "{out}");
    }
    c.wait("fw1's change on fw2", || nft(&h2).contains("added-on-fw1"));
    let r = nft(&h2);
    assert!(!r.contains("local-edit-on-fw2"), "{r}");
    let backups: Vec<PathBuf> = std::fs::read_dir(state2.join("backups"))
        .expect("backups dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let kept = std::fs::read_to_string(&backups[0]).expect("backup");
    assert!(kept.contains("local-edit-on-fw2"), "{kept}");
    c.wait("fw2 logs the overwrite", || {
        c.fw2.log().contains("overwrote local changes to rules")
    });
    c.wait_in_sync();
    assert_eq!(c.fw2.status()["config_sync"]["drift"], Value::Null);
}

#[test]
fn drift_is_reported_and_refused_before_any_overwrite() {
    if !lab::require_netns() {
        return;
    }
    drift_case("refuse");
}

#[test]
fn drift_with_policy_overwrite_keeps_a_backup() {
    if !lab::require_netns() {
        return;
    }
    drift_case("overwrite");
}

#[test]
fn rollback_runs_an_earlier_generation_and_counts_as_drift() {
    if !lab::require_netns() {
        return;
    }
    let c = cluster("configsync_rollback", &opts());
    c.wait_in_sync();
    let g1 = c.fw1().status()["config_sync"]["generation"]
        .as_u64()
        .expect("gen");
    c.edit_fw1(|t| format!("{t}{NEW_RULE}"));
    let h2 = c.fw2.host.clone();
    c.wait("new rule on fw2", || nft(&h2).contains("added-on-fw1"));
    let (ok, out) = tandem(&c.fw2, &["config", "rollback"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("generation {g1} again")), "{out}");
    assert!(!nft(&h2).contains("added-on-fw1"));
    let cs2 = c.fw2.status()["config_sync"].clone();
    assert_eq!(cs2["rolled_back_to"], g1, "{cs2}");
    assert!(cs2["drift"].as_str().is_some(), "{cs2}");
    c.wait("fw1 sees the rollback as drift", || {
        c.peer()["drift"].is_string()
    });
    let (ok, out) = tandem(c.fw1(), &["config", "rollback"]);
    assert!(!ok && out.contains("is the primary"), "{out}");
}

#[test]
fn python_xmlrpc_client_calls_status_and_version_over_https() {
    if !lab::require_netns() {
        return;
    }
    let c = cluster("configsync_python", &opts());
    c.wait_in_sync();
    let cert = c.lab.dir().join("fw2-state").join("cert.pem");
    let r = python_client(&c, &cert);
    let v = &r["version"];
    assert_eq!(v["node"], "fw2", "{r}");
    assert_eq!(v["role"], "peer", "{r}");
    assert_eq!(v["protocol"], 2, "{r}");
    assert_eq!(v["schema"], 1, "{r}");
    assert_eq!(v["software"], env!("CARGO_PKG_VERSION"), "{r}");
    assert!(
        v["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x == "apply_areas")),
        "{r}"
    );
    assert_eq!(r["status_node"], "fw2", "{r}");
    assert_eq!(r["status_has_vips"], true, "{r}");
    assert_eq!(r["status_config_sync_role"], "peer", "{r}");
    assert_eq!(r["bad_apply"]["code"], 400, "{r}");
    assert!(
        r["bad_apply"]["string"]
            .as_str()
            .is_some_and(|s| s.contains("generation must be 1 or more, not 0")),
        "{r}"
    );
    assert_eq!(r["unknown_method"]["code"], 404, "{r}");
    // Holding the password is not enough to steer fw2: pushes and heartbeats only from fw1's
    // certificate, reloads only from fw2 itself.
    for call in ["foreign_push", "foreign_heartbeat", "foreign_reload"] {
        assert_eq!(r[call]["code"], 403, "{call}: {r}");
    }
    assert!(
        r["foreign_push"]["string"]
            .as_str()
            .is_some_and(|s| s.contains("only from its primary's certificate")),
        "{r}"
    );
    assert_eq!(r["no_auth"]["http"], 401, "{r}");
    assert_eq!(r["wrong_auth"]["http"], 401, "{r}");
    assert!(r["untrusted_cert"]["ssl_error"].is_string(), "{r}");
    // The refused calls are counted on fw2; the bad call changed nothing.
    let cs2 = c.fw2.status()["config_sync"].clone();
    assert!(
        cs2["rpc"]["rejected"]["auth"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "{cs2}"
    );
    assert!(
        cs2["rpc"]["rejected"]["bad-request"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "{cs2}"
    );
    assert_eq!(
        cs2["generation"],
        c.fw1().status()["config_sync"]["generation"]
    );
}

#[test]
fn a_peer_run_from_its_folder_with_relative_paths_takes_pushes_and_reports_state_sync() {
    if !lab::require_netns() {
        return;
    }
    let o = Opts {
        fw2_from_its_folder: true,
        ..opts()
    };
    let c = cluster("configsync_relative_paths", &o);
    c.wait_in_sync();
    let h2 = c.fw2.host.clone();
    c.wait("base rules on fw2", || nft(&h2).contains("base-rule-web"));
    // The files fw2 names relative to its folder stay there, and the state dir is private.
    let dir = c.lab.dir().join("fw2");
    assert!(dir.join("state").join("synced.toml").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("state"))
        .expect("state dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "state dir mode {mode:o}");
    // No node-local secret is ever copied into the state dir.
    let mut files = vec![dir.join("state")];
    while let Some(f) = files.pop() {
        if f.is_dir() {
            files.extend(
                std::fs::read_dir(&f)
                    .expect("read dir")
                    .filter_map(|e| e.ok().map(|e| e.path())),
            );
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&f).expect("read")).into_owned();
        for secret in [
            "carp-s3cret",
            "pw-sync-long-enough",
            "config sync test, state sync key",
        ] {
            assert!(!text.contains(secret), "{secret} in {}", f.display());
        }
        let mode = std::fs::metadata(&f).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} mode {mode:o}", f.display());
    }
    // tandem.status over XML-RPC tells the same as `tandem status`: state sync runs here.
    let cert = dir.join("state").join("cert.pem");
    let r = python_client(&c, &cert);
    let state = r["status_sync_state"].as_str().unwrap_or_default();
    assert!(
        state.starts_with("ready") || state.starts_with("NOT READY"),
        "state sync over XML-RPC: {r}"
    );
    assert_eq!(r["status_has_state_sync"], true, "{r}");
    status_json_is_documented(&[c.fw1(), &c.fw2]);
}

/// Every key `tandem status --json` gives, on a primary and on a peer that both run the
/// firewall, config sync and state sync, is in docs/status-json.md.
fn status_json_is_documented(nodes: &[&Node]) {
    for n in nodes {
        let missing = undocumented_status_keys(&n.status());
        assert!(
            missing.is_empty(),
            "{}: status fields missing from docs/status-json.md: {missing:?}",
            n.host.name()
        );
    }
}

#[test]
fn sync_listen_on_a_vip_is_refused_with_its_place() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("fw.toml");
    std::fs::write(
        &path,
        "[node]\nname = \"fw1\"\ncontrol_socket = \"/tmp/x.sock\"\n[interfaces]\nlan = \"eth0\"\n[carp]\npassphrase = \"p\"\n[[vips]]\nvhid = 7\ninterface = \"lan\"\naddresses = [\"192.0.2.1/24\"]\n[sync]\nrole = \"peer\"\nlisten = \"192.0.2.1:8443\"\nstate_dir = \"st\"\ntoken = \"t\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(TANDEM)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("tandem check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("fw.toml:14:10: sync.listen 192.0.2.1 is a VIP (vhid 7)"),
        "{err}"
    );
}

/// Holds `n` idle TCP connections to `addr:port` (no TLS bytes) open for `secs`; prints
/// `connected K` once it has tried them all.
const IDLE_FLOOD_PY: &str = r#"
import resource, socket, sys, time
addr, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 64)), hard))
held = []
for _ in range(n):
    try:
        held.append(socket.create_connection((addr, port), timeout=2))
    except OSError:
        pass
print("connected", len(held), flush=True)
time.sleep(secs)
"#;

#[test]
fn a_flood_of_idle_connections_on_the_sync_port_never_stops_a_takeover_from_being_announced() {
    if !lab::require_netns() {
        return;
    }
    // fw2, the backup, may hold 256 files at most; 300 idle connections come at its
    // config-sync port (they send nothing: no credentials are needed for this).
    let o = Opts {
        fw2_open_files: Some(256),
        ..opts()
    };
    let mut c = cluster("configsync_fd_flood", &o);
    c.wait_in_sync();
    c.fw1().expect_state(7, "MASTER", ELECTION);
    c.fw2.expect_state(7, "BACKUP", ELECTION);
    let arp = c
        .client
        .spawn(&["tcpdump", "-i", "eth0", "-n", "-l", "arp"])
        .expect("tcpdump (is it installed?)");
    let flood =
        c.h1.spawn(&[
            "python3",
            "-c",
            IDLE_FLOOD_PY,
            "203.0.113.2",
            "8443",
            "300",
            "60",
        ])
        .expect("flood");
    assert!(
        lab::wait_until(Duration::from_secs(20), || flood
            .stdout()
            .contains("connected")),
        "the flood never connected: {}",
        flood.stderr()
    );
    // The master dies; fw2 takes over and tells the LAN at once.
    c.kill_fw1();
    c.fw2.expect_state(7, "MASTER", TAKEOVER);
    let announced = lab::wait_until(Duration::from_secs(5), || {
        arp.stdout()
            .lines()
            .any(|l| l.contains("tell 192.0.2.1") || l.contains("Announcement, 192.0.2.1"))
    });
    assert!(
        announced,
        "fw2 took over but did not announce 192.0.2.1:\n{}\n{}",
        arp.stdout(),
        c.fw2.log()
    );
    assert!(!c.fw2.log().contains("cannot announce"), "{}", c.fw2.log());
    let refused = c.fw2.status()["config_sync"]["rpc"]["rejected"]["too-many-connections"]
        .as_u64()
        .unwrap_or(0);
    assert!(refused > 0, "{}", c.fw2.status()["config_sync"]["rpc"]);
    drop(flood);
}
