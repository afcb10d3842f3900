//! `nft` is run by absolute path, never found through PATH: `/usr/sbin/nft` unless
//! `[firewall] nft` names another (absolute, existing) file, which every nft call then uses.

mod common;

use common::*;
use lab::Lab;
use std::path::Path;
use std::time::Duration;

const LAN: &[(&str, &str)] = &[("lan", "eth0")];

fn vip7() -> [VipSpec<'static>; 1] {
    [VipSpec {
        vhid: 7,
        interface: "lan",
        addresses: &["192.0.2.100/24"],
    }]
}

/// `tandem check` on a config with `extra` appended: (success, stderr).
fn check(dir: &Path, extra: &str) -> (bool, String) {
    let base = "[node]\nname = \"fw1\"\ncontrol_socket = \"fw1.sock\"\n\n[interfaces]\nlan = \"eth0\"\n\n[carp]\npassphrase = \"s3cret\"\n\n";
    let path = dir.join("check.toml");
    std::fs::write(&path, format!("{base}{extra}")).expect("write config");
    let out = std::process::Command::new(TANDEM)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run tandem check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_relative_or_missing_nft_path_is_refused_with_its_place() {
    let dir = std::env::temp_dir().join(format!("tandem-nft-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("check.toml").display().to_string();
    let (ok, err) = check(&dir, "[firewall]\nenabled = true\nnft = \"nft\"\n");
    assert!(!ok, "a relative nft path was accepted");
    assert!(
        err.contains(&format!(
            "{file}:13:7: firewall.nft \"nft\" is not an absolute path"
        )),
        "{err}"
    );
    let (ok, err) = check(&dir, "[firewall]\nnft = \"/nonexistent/sbin/nft\"\n");
    assert!(!ok, "a missing nft was accepted");
    assert!(
        err.contains(&format!(
            "{file}:12:7: firewall.nft \"/nonexistent/sbin/nft\": no such file"
        )),
        "{err}"
    );
    let (ok, err) = check(&dir, "[firewall]\nnft = \"/usr/sbin/nft\"\n");
    assert!(ok, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fake `nft` early on PATH that only leaves a mark: what an attacker who can write to a
/// directory on root's PATH (or set it for the service) would put there.
fn fake_nft(dir: &Path) -> (String, std::path::PathBuf) {
    let bin = dir.join("evil-bin");
    std::fs::create_dir_all(&bin).expect("dir");
    let mark = dir.join("fake-nft-ran");
    let script = bin.join("nft");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 0\n", mark.display()),
    )
    .expect("write fake nft");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (
        format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
        mark,
    )
}

/// Starts tandem in `host` with `PATH` as given.
fn start_with_path(host: &lab::Host, config: std::path::PathBuf, path: &str) -> Node {
    let cfg = config.display().to_string();
    let env_path = format!("PATH={path}");
    let p = host
        .spawn(&["env", &env_path, TANDEM, "run", "--config", &cfg])
        .expect("spawn tandem");
    let n = Node {
        host: host.clone(),
        config,
        process: Some(p),
    };
    let ok = lab::wait_until(Duration::from_secs(10), || n.try_status().is_some());
    assert!(ok, "tandem never answered status:\n{}", n.log());
    n
}

#[test]
fn the_ruleset_is_applied_by_usr_sbin_nft_whatever_path_says() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("nft_by_absolute_path").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let h = lab.host("fw1").expect("fw1");
    lab.connect(&h, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    let (path, mark) = fake_nft(lab.dir());
    let cfg = write_config_extra(
        &lab,
        "fw1",
        0,
        true,
        "s3cret",
        LAN,
        &vip7(),
        "[firewall]\nenabled = true\nforwarding = false\n",
    );
    let fw1 = start_with_path(&h, cfg, &path);
    fw1.expect_state(7, "MASTER", ELECTION);
    assert!(
        !mark.exists(),
        "the nft found through PATH ran: {}",
        std::fs::read_to_string(&mark).unwrap_or_default()
    );
    let table = h.run(&["/usr/sbin/nft", "list", "table", "inet", "tandem"]);
    assert!(
        table.is_ok_and(|t| t.contains("chain input")),
        "the ruleset was not applied\n{}",
        fw1.log()
    );
}

#[test]
fn a_configured_nft_is_used_for_every_call() {
    if !lab::require_netns() {
        return;
    }
    let mut lab = Lab::new("nft_configured_path").expect("lab");
    let sw = lab.switch("lan").expect("switch");
    let h = lab.host("fw1").expect("fw1");
    lab.connect(&h, "eth0", &sw, &["192.0.2.2/24"])
        .expect("connect");
    // A wrapper that logs each call and runs the real nft.
    let log = lab.dir().join("nft-calls");
    let wrapper = lab.dir().join("nft-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec /usr/sbin/nft \"$@\"\n",
            log.display()
        ),
    )
    .expect("write wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let fw = |enabled: bool| {
        format!(
            "[firewall]\nenabled = {enabled}\nforwarding = false\nnft = \"{}\"\n",
            wrapper.display()
        )
    };
    let cfg = write_config_extra(&lab, "fw1", 0, true, "s3cret", LAN, &vip7(), &fw(true));
    let fw1 = Node::start(&h, cfg.clone());
    fw1.expect_state(7, "MASTER", ELECTION);
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(calls().lines().count(), 1, "{}", calls());
    assert!(h
        .run(&["/usr/sbin/nft", "list", "table", "inet", "tandem"])
        .is_ok());
    // Switching the firewall off removes the table through the same nft.
    let text = std::fs::read_to_string(&cfg).expect("read config");
    std::fs::write(&cfg, text.replace("enabled = true", "enabled = false")).expect("write");
    let (ok, out, err) = fw1.cli(&["reload"]);
    assert!(ok, "{out}{err}\n{}", fw1.log());
    assert_eq!(calls().lines().count(), 2, "{}", calls());
    assert!(h
        .run(&["/usr/sbin/nft", "list", "table", "inet", "tandem"])
        .is_err());
}
