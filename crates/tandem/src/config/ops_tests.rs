//! `[hooks]` and `[[checks]]`: typed values, defaults, and located errors.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const BASE: &str = "[node]\nname = \"fw1\"\ncontrol_socket = \"/run/t.sock\"\n\n[interfaces]\nlan = \"eth0\"\n\n[carp]\npassphrase = \"s3cret\"\n\n";

/// A config file in a temporary folder with an executable `hook.sh` and a plain `data.txt`.
fn setup(extra: &str) -> (tempfile::TempDir, PathBuf, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = dir.path().join("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").expect("write");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.path().join("data.txt"), "0\n").expect("write");
    let file = dir.path().join("fw1.toml");
    std::fs::write(&file, format!("{BASE}{extra}")).expect("write");
    let r = load(&file);
    (dir, file, r)
}

fn errors(extra: &str) -> Vec<String> {
    let (_d, file, r) = setup(extra);
    match r {
        Ok(_) => panic!("expected errors for:\n{extra}"),
        Err(e) => {
            e.0.iter()
                .map(|e| {
                    e.to_string()
                        .replace(&file.display().to_string(), "t.toml")
                        .replace(&_d.path().display().to_string(), "DIR")
                })
                .collect()
        }
    }
}

#[test]
fn hooks_resolve_against_the_config_folder_and_default_to_30_s() {
    let (dir, _f, r) = setup("[hooks]\non_master = \"hook.sh\"\non_transition = \"./hook.sh\"\n");
    let c = r.expect("valid");
    assert_eq!(c.hooks.programs[&Hook::Master], dir.path().join("hook.sh"));
    assert_eq!(
        c.hooks.programs[&Hook::Transition],
        dir.path().join("./hook.sh")
    );
    assert!(!c.hooks.programs.contains_key(&Hook::Backup));
    assert_eq!(c.hooks.timeout, Duration::from_secs(30));
    let (_d, _f, r) = setup("[hooks]\ntimeout = 2.5\n");
    assert_eq!(r.expect("valid").hooks.timeout, Duration::from_millis(2500));
}

#[test]
fn a_missing_or_not_executable_hook_is_refused_at_its_place() {
    let e = errors("[hooks]\non_backup = \"nope.sh\"\non_init = \"data.txt\"\ntimeout = 0\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:12:13: hooks.on_backup \"nope.sh\": no such file"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("t.toml:13:11: hooks.on_init \"data.txt\" is not an executable file"),
        "{e:?}"
    );
    assert_eq!(
        e[2],
        "t.toml:14:11: hooks.timeout must be between 0.1 and 3600 seconds, not 0"
    );
    let e = errors("[hooks]\non_fault = \"hook.sh\"\n");
    assert!(
        e[0].starts_with("t.toml:12:1: unknown field `on_fault`"),
        "{e:?}"
    );
}

#[test]
fn checks_take_their_defaults() {
    let (dir, _f, r) = setup(
        "[[checks]]\nname = \"gw\"\nkind = \"ping\"\naddress = \"198.51.100.1\"\ninterface = \"lan\"\n\n\
         [[checks]]\nname = \"script\"\nkind = \"exec\"\ncommand = [\"hook.sh\", \"-q\"]\n\n\
         [[checks]]\nname = \"maint\"\nkind = \"file\"\npath = \"data.txt\"\nweight = 50\nrise = 1\nfall = 1\ninterval = 0.5\n",
    );
    let c = r.expect("valid");
    assert_eq!(c.checks.len(), 3);
    let gw = &c.checks[0];
    assert_eq!((gw.rise, gw.fall, gw.weight), (2, 3, 240));
    assert_eq!(gw.interval, Duration::from_secs(1));
    assert_eq!(
        gw.kind,
        CheckKind::Ping {
            address: "198.51.100.1".parse().expect("ip"),
            source: None,
            interface: Some(("lan".into(), "eth0".into())),
            timeout: Duration::from_secs(1),
            count: 5,
            max_loss: 20.0,
            max_rtt: None,
        }
    );
    assert_eq!(
        c.checks[1].kind,
        CheckKind::Exec {
            program: dir.path().join("hook.sh"),
            args: vec!["-q".into()],
            timeout: Duration::from_secs(5),
        }
    );
    let m = &c.checks[2];
    assert_eq!(
        m.kind,
        CheckKind::File {
            path: dir.path().join("data.txt")
        }
    );
    assert_eq!((m.rise, m.fall, m.weight), (1, 1, 50));
    assert_eq!(m.interval, Duration::from_millis(500));
}

#[test]
fn check_errors_are_located() {
    let e = errors(
        "[[checks]]\nname = \"gw\"\nkind = \"pong\"\n\n\
         [[checks]]\nname = \"gw2\"\nkind = \"ping\"\naddress = \"gateway\"\n\n\
         [[checks]]\nname = \"f\"\nkind = \"file\"\npath = \"x\"\naddress = \"192.0.2.1\"\nweight = 241\n\n\
         [[checks]]\nname = \"f\"\nkind = \"file\"\npath = \"y\"\n\n\
         [[checks]]\nname = \"e\"\nkind = \"exec\"\ncommand = [\"missing.sh\"]\nfall = 0\n",
    );
    assert_eq!(
        e,
        [
            "t.toml:13:8: checks.kind must be \"ping\", \"exec\" or \"file\", not \"pong\"",
            "t.toml:18:11: checks.address \"gateway\" is not an IP address",
            "t.toml:24:11: checks.address is for kind = \"ping\", not \"file\"",
            "t.toml:25:10: checks.weight must be between 1 and 240, not 241",
            "t.toml:28:8: checks.name \"f\" is used by another check",
            "t.toml:36:8: checks.fall must be between 1 and 100, not 0",
            "t.toml:35:12: checks.command \"missing.sh\": no such file (DIR/missing.sh)",
        ]
    );
}
