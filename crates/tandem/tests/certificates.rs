//! The synced area `certificates` between real daemons in network namespaces (the config-sync
//! cluster of `tests/configsync.rs`): a certificate added on fw1 is written on fw2 with the
//! right modes, shows in status with its expiry, and its key shows nowhere (status, `config
//! show`, logs) and lands in no file that others may read.

mod common;
#[allow(dead_code)]
#[path = "configsync/harness.rs"]
mod harness;

use common::*;
use harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A self-signed certificate and its key (PKCS#8), PEM.
fn pair(cn: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![cn.to_string()]).expect("rcgen");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

fn entry(name: &str, (cert, key): &(String, String)) -> String {
    format!("\n[[certificates]]\nname = \"{name}\"\ncert = '''\n{cert}'''\nkey = '''\n{key}'''\n")
}

/// A line from the middle of a PEM block: what must never show.
fn secret_line(key: &str) -> String {
    key.lines().nth(1).expect("key body").to_string()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every file under `dir` (recursively).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// No file under `dir` that holds `secret` can be read by anyone but its owner.
fn secret_files_are_private(dir: &Path, secret: &str) -> usize {
    let mut n = 0;
    for f in files(dir) {
        if std::fs::read_to_string(&f).is_ok_and(|t| t.contains(secret)) {
            assert_eq!(mode(&f) & 0o077, 0, "{} holds a key", f.display());
            n += 1;
        }
    }
    n
}

#[test]
fn a_certificate_added_on_the_primary_is_written_on_the_peer() {
    if !lab::require_netns() {
        return;
    }
    let c = cluster("certs_synced", &opts());
    c.wait_in_sync();
    let web = pair("web.example.org");
    let mail = pair("mail.example.org");
    c.edit_fw1(|t| format!("{t}{}", entry("web", &web)));

    let dir2 = c.lab.dir().join("fw2-node/certificates");
    c.wait("web.crt on fw2", || dir2.join("web.key").exists());
    c.wait_in_sync();
    assert_eq!(
        std::fs::read_to_string(dir2.join("web.crt")).expect("crt"),
        web.0
    );
    assert_eq!(
        std::fs::read_to_string(dir2.join("web.key")).expect("key"),
        web.1
    );
    assert_eq!(mode(&dir2.join("web.crt")), 0o644);
    assert_eq!(mode(&dir2.join("web.key")), 0o600);
    // The primary writes its own too.
    let dir1 = c.lab.dir().join("fw1-node/certificates");
    assert_eq!(mode(&dir1.join("web.key")), 0o600);

    // Status: name, subject, expiry; text and JSON.
    let s2 = c.fw2.status();
    let certs = s2["certificates"].as_array().expect("certificates");
    assert_eq!(certs.len(), 1, "{s2}");
    assert_eq!(certs[0]["name"], "web");
    assert!(
        certs[0]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("CN=")),
        "{}",
        certs[0]
    );
    // rcgen's certificates are valid until 4096.
    assert!(certs[0]["days_left"].as_i64().is_some_and(|d| d > 365));
    assert!(certs[0]["expires"]
        .as_str()
        .is_some_and(|e| e.ends_with('Z')));
    let (ok, text) = tandem(&c.fw2, &["status"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("certificate web: ") && text.contains("days left"),
        "{text}"
    );

    // The key shows nowhere.
    let secret = secret_line(&web.1);
    let (ok, show2) = tandem(&c.fw2, &["config", "show"]);
    assert!(ok, "{show2}");
    assert!(
        show2.contains("# area certificates") && show2.contains("synced from fw1"),
        "{show2}"
    );
    let (ok, show1) = tandem(c.fw1(), &["config", "show"]);
    assert!(ok, "{show1}");
    let (_, json2) = tandem(&c.fw2, &["status", "--json"]);
    for (what, text) in [
        ("fw2 config show", show2),
        ("fw1 config show", show1),
        ("fw2 status", text),
        ("fw2 status --json", json2),
        ("fw1 status", c.fw1().status().to_string()),
        ("fw1 log", c.fw1().log()),
        ("fw2 log", c.fw2.log()),
    ] {
        assert!(!text.contains(&secret), "the key is in {what}:\n{text}");
    }
    // tandem.get_areas, which the shared credentials alone allow, hides it.
    let r = python_client(&c, &c.lab.dir().join("fw2-state/cert.pem"));
    let area = &r["get_areas_certificates"];
    let text = area["text"].as_str().expect("certificates text");
    assert!(
        text.contains("name = \"web\"") && text.contains("<secret>"),
        "{area}"
    );
    assert!(!text.contains(&secret), "{area}");
    assert_eq!(area["hash"].as_str().map(str::len), Some(64), "{area}");
    // Config sync's files that hold it (synced.toml, pushed.toml, incoming.toml, history)
    // are the owner's only, and so is the state dir.
    let state2 = c.lab.dir().join("fw2-state");
    assert!(secret_files_are_private(&state2, &secret) >= 3);
    assert_eq!(mode(&state2) & 0o077, 0);
    for f in ["synced.toml", "pushed.toml", "incoming.toml"] {
        assert_eq!(mode(&state2.join(f)), 0o600, "{f}");
    }
    secret_files_are_private(&c.lab.dir().join("fw1-state"), &secret);

    // Replaced by another: the old one's files go, the new one's come; a file the daemon
    // did not write stays.
    std::fs::write(dir2.join("admin.crt"), "not ours").expect("write");
    c.edit_fw1(|t| t.replace(&entry("web", &web), &entry("mail", &mail)));
    c.wait("mail.key on fw2 and web gone", || {
        dir2.join("mail.key").exists() && !dir2.join("web.key").exists()
    });
    assert!(!dir2.join("web.crt").exists());
    assert!(dir2.join("admin.crt").exists());
    c.wait("fw2's status shows mail only", || {
        let s = c.fw2.status();
        s["certificates"].as_array().map(Vec::len) == Some(1)
            && s["certificates"][0]["name"] == "mail"
    });
    assert_eq!(mode(&dir2.join("mail.key")), 0o600);

    // A key that does not match its certificate: refused on fw1 with FILE:LINE:COL, and
    // nothing changes anywhere.
    let bad = (web.0.clone(), mail.1.clone());
    edit(&c.fw1().config, |t| format!("{t}{}", entry("bad", &bad)));
    let (ok, out) = tandem(c.fw1(), &["reload"]);
    assert!(!ok, "{out}");
    let cfg1 = std::fs::read_to_string(&c.fw1().config).expect("read");
    let bad_at = cfg1.rfind("name = \"bad\"").expect("bad");
    let key_line = cfg1[..bad_at].matches('\n').count() + 1 + 1 + web.0.lines().count() + 2;
    assert!(
        out.contains(&format!(
            "{}:{key_line}:7: certificate \"bad\": key: the key does not match",
            c.fw1().config.display()
        )),
        "{out}"
    );
    assert!(!out.contains(&secret_line(&mail.1)), "{out}");
    assert!(!dir2.join("bad.crt").exists());
    status_keys_documented(&c);
}

fn status_keys_documented(c: &Cluster) {
    for n in [c.fw1(), &c.fw2] {
        let missing = undocumented_status_keys(&n.status());
        assert!(
            missing.is_empty(),
            "not in docs/status-json.md: {missing:?}"
        );
    }
}
