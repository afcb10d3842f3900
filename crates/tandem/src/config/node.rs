//! The node's own tables: `[node]`, `[interfaces]`, `[carp]`, `[firewall]`; never synced.

use super::secret::secret;
use super::Errors;
use carp::{Advbase, Skew};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use toml::Spanned;

/// Highest advbase/advskew a user may set; 255 is the bow-out value.
pub const MAX_ADVBASE: u8 = 254;
pub const MAX_ADVSKEW: u8 = 254;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    name: Spanned<String>,
    #[serde(default)]
    advskew: Option<Spanned<i64>>,
    #[serde(default = "default_true")]
    preempt: bool,
    control_socket: Spanned<String>,
    #[serde(default)]
    status_group: Option<Spanned<String>>,
    #[serde(default)]
    state_dir: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCarp {
    #[serde(default)]
    passphrase: Option<Spanned<String>>,
    #[serde(default)]
    passphrase_file: Option<Spanned<String>>,
    #[serde(default)]
    advbase: Option<Spanned<i64>>,
    #[serde(default)]
    auth: Option<Spanned<String>>,
}

/// The shortest passphrase `auth = "tandem"` takes: an advert anyone on the link captures is
/// enough to test guesses offline, so the passphrase must be worth guessing.
pub const MIN_TANDEM_PASSPHRASE: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirewall {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default = "default_true")]
    forwarding: bool,
    /// The nft program, by absolute path (never looked up through PATH).
    #[serde(default)]
    nft: Option<Spanned<String>>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub advskew: Skew,
    pub preempt: bool,
    pub control_socket: PathBuf,
    /// A group whose members may ask for status (and `config show`) without being root.
    pub status_group: Option<(String, u32)>,
    /// Where the node keeps what must outlive a restart or a reboot (maintenance mode).
    pub state_dir: PathBuf,
}

/// `[node] state_dir` when not set (the package creates it, mode 0700).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tandem";

#[derive(Clone, PartialEq, Eq)]
pub struct Carp {
    pub passphrase: Vec<u8>,
    pub advbase: Advbase,
    /// `bsd` (BSD CARP's HMAC, interoperable) or `tandem` (the whole advert authenticated,
    /// replays refused; every node of the cluster must say the same).
    pub auth: carp::AuthMode,
}

impl fmt::Debug for Carp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Carp")
            .field("passphrase", &"<secret>")
            .field("advbase", &self.advbase)
            .field("auth", &self.auth)
            .finish()
    }
}

/// The node-local `[firewall]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSettings {
    /// Whether this node applies the ruleset: `enabled` if given, else whether the config has
    /// any firewall area at all (a VIP-only config must not get a default-drop ruleset).
    pub managed: bool,
    /// Turn on IPv4 and IPv6 forwarding (a firewall routes).
    pub forwarding: bool,
    /// The nft every ruleset is applied with: absolute, `/usr/sbin/nft` by default.
    pub nft: PathBuf,
}

/// A number in `lo..=hi`, or an error at its place.
pub fn ranged(errs: &mut Errors<'_>, v: &Spanned<i64>, what: &str, lo: i64, hi: i64) -> Option<u8> {
    let n = *v.get_ref();
    if n < lo || n > hi {
        errs.at(
            v.span(),
            format!("{what} must be between {lo} and {hi}, not {n}"),
        );
        return None;
    }
    u8::try_from(n).ok()
}

/// A node name or other identifier that travels between nodes and lands in logs, files and
/// terminals: letters, digits, `-`, `_`, `.`; 1 to 63 characters (the rule peers are held to).
pub use configsync::rpc::is_node_name as valid_name;

pub fn node(errs: &mut Errors<'_>, raw: Option<&Spanned<RawNode>>) -> Node {
    let Some(raw) = raw else {
        errs.whole("missing table [node] (name, control_socket)");
        return Node {
            name: String::new(),
            advskew: Skew(0),
            preempt: true,
            control_socket: PathBuf::new(),
            status_group: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        };
    };
    let n = raw.get_ref();
    let name = n.name.get_ref().trim().to_string();
    if !valid_name(&name) {
        errs.at(
            n.name.span(),
            format!("node.name {name:?} must be 1-63 letters, digits, '-', '_' or '.'"),
        );
    }
    let advskew = match &n.advskew {
        Some(v) => ranged(errs, v, "node.advskew", 0, MAX_ADVSKEW.into()).unwrap_or(0),
        None => 0,
    };
    let control_socket = PathBuf::from(n.control_socket.get_ref());
    if control_socket.as_os_str().is_empty() {
        errs.at(
            n.control_socket.span(),
            "node.control_socket must name a path",
        );
    }
    let status_group =
        n.status_group
            .as_ref()
            .and_then(|g| match linux::access::group_id(g.get_ref()) {
                Ok(Some(gid)) => Some((g.get_ref().clone(), gid)),
                Ok(None) => {
                    errs.at(
                        g.span(),
                        format!(
                            "node.status_group: no group {:?} on this machine",
                            g.get_ref()
                        ),
                    );
                    None
                }
                Err(e) => {
                    errs.at(
                        g.span(),
                        format!(
                            "node.status_group {:?}: cannot look it up: {e}",
                            g.get_ref()
                        ),
                    );
                    None
                }
            });
    let state_dir = match &n.state_dir {
        Some(d) if d.get_ref().is_empty() => {
            errs.at(d.span(), "node.state_dir must name a directory");
            PathBuf::from(DEFAULT_STATE_DIR)
        }
        Some(d) => errs.resolve(d),
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    Node {
        name,
        advskew: Skew(advskew),
        preempt: n.preempt,
        control_socket: errs.resolve(&n.control_socket),
        status_group,
        state_dir,
    }
}

pub fn interfaces(
    errs: &mut Errors<'_>,
    raw: &BTreeMap<String, Spanned<String>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (logical, dev) in raw {
        let d = dev.get_ref();
        if d.is_empty() || d.len() > 15 || d.contains(['/', ' ']) {
            errs.at(
                dev.span(),
                format!("interfaces.{logical}: {d:?} is not a valid device name (1-15 characters, no '/' or space)"),
            );
        }
        if !valid_name(logical) {
            errs.at(
                dev.span(),
                format!("interfaces: {logical:?} is not a valid logical name (letters, digits, '-', '_', '.')"),
            );
        }
        out.insert(logical.clone(), d.clone());
    }
    out
}

pub fn carp(errs: &mut Errors<'_>, raw: Option<&Spanned<RawCarp>>) -> Carp {
    let Some(raw) = raw else {
        errs.whole("missing table [carp] (passphrase or passphrase_file)");
        return Carp {
            passphrase: Vec::new(),
            advbase: Advbase(1),
            auth: carp::AuthMode::Bsd,
        };
    };
    let c = raw.get_ref();
    let passphrase = secret(
        errs,
        raw.span(),
        (&c.passphrase, "carp.passphrase"),
        (&c.passphrase_file, "carp.passphrase_file"),
        1,
    )
    .unwrap_or_default();
    let auth = match &c.auth {
        None => carp::AuthMode::Bsd,
        Some(v) => match v.get_ref().as_str() {
            "bsd" => carp::AuthMode::Bsd,
            "tandem" => carp::AuthMode::Tandem,
            other => {
                errs.at(
                    v.span(),
                    format!("carp.auth must be \"bsd\" or \"tandem\", not {other:?}"),
                );
                carp::AuthMode::Bsd
            }
        },
    };
    if auth == carp::AuthMode::Tandem
        && !passphrase.is_empty()
        && passphrase.len() < MIN_TANDEM_PASSPHRASE
    {
        if let Some(v) = &c.auth {
            errs.at(
                v.span(),
                format!(
                    "carp.auth = \"tandem\" needs a passphrase of at least {MIN_TANDEM_PASSPHRASE} bytes (this one has {}): an advert captured on the link is enough to test guesses offline",
                    passphrase.len()
                ),
            );
        }
    }
    if auth == carp::AuthMode::Bsd && passphrase.len() > carp::auth::MAX_KEY_LEN {
        tracing::warn!(
            "carp passphrase is longer than {} bytes; like BSD CARP only the first {} are used",
            carp::auth::MAX_KEY_LEN,
            carp::auth::MAX_KEY_LEN
        );
    }
    let advbase = match &c.advbase {
        Some(v) => ranged(errs, v, "carp.advbase", 1, MAX_ADVBASE.into()).unwrap_or(1),
        None => 1,
    };
    Carp {
        passphrase,
        advbase: Advbase(advbase),
        auth,
    }
}

pub fn firewall(
    errs: &mut Errors<'_>,
    raw: Option<&RawFirewall>,
    areas: &firewall::Areas,
) -> FirewallSettings {
    let nft = match raw.and_then(|f| f.nft.as_ref()) {
        Some(v) => nft_path(errs, v),
        None => PathBuf::from(linux::nft::DEFAULT_NFT),
    };
    FirewallSettings {
        managed: raw
            .and_then(|f| f.enabled)
            .unwrap_or(*areas != firewall::Areas::default()),
        forwarding: raw.is_none_or(|f| f.forwarding),
        nft,
    }
}

/// `[firewall] nft`: an absolute path to an executable file. Not relative to the config file
/// like other paths: the program that writes the firewall is named in full.
fn nft_path(errs: &mut Errors<'_>, v: &Spanned<String>) -> PathBuf {
    let path = PathBuf::from(v.get_ref());
    let shown = v.get_ref();
    if !path.is_absolute() {
        errs.at(
            v.span(),
            format!("firewall.nft {shown:?} is not an absolute path (nft is never looked up through PATH)"),
        );
        return path;
    }
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            errs.at(v.span(), format!("firewall.nft {shown:?}: no such file"));
        }
        Err(e) => errs.at(v.span(), format!("firewall.nft {shown:?}: {e}")),
        Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => {
            errs.at(
                v.span(),
                format!("firewall.nft {shown:?} is not an executable file"),
            );
        }
        Ok(_) => {}
    }
    path
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigErrors, ParsedFile};
    use std::path::Path;

    const BASE: &str = "[node]\nname = \"fw1\"\ncontrol_socket = \"/run/t.sock\"\n\n[interfaces]\nlan = \"eth0\"\n\n[carp]\n";

    fn parse(carp: &str) -> Result<Config, ConfigErrors> {
        let text = format!("{BASE}{carp}");
        Config::build(
            ParsedFile::parse(Path::new("t.toml"), text)?,
            Path::new("t.toml"),
        )
    }

    fn errors(carp: &str) -> Vec<String> {
        match parse(carp) {
            Ok(_) => panic!("expected errors for {carp}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn carp_auth_is_bsd_unless_tandem_is_asked_for() {
        let c = parse("passphrase = \"s3cret\"\n").expect("valid");
        assert_eq!(c.carp.auth, carp::AuthMode::Bsd);
        let c = parse("passphrase = \"s3cret\"\nauth = \"bsd\"\n").expect("valid");
        assert_eq!(c.carp.auth, carp::AuthMode::Bsd);
        let c =
            parse("passphrase = \"a long cluster secret\"\nauth = \"tandem\"\n").expect("valid");
        assert_eq!(c.carp.auth, carp::AuthMode::Tandem);
        assert!(format!("{:?}", c.carp).contains("Tandem"));
        assert!(!format!("{:?}", c.carp).contains("cluster secret"));
    }

    #[test]
    fn nft_is_usr_sbin_nft_unless_an_absolute_executable_is_named() {
        let c = parse("passphrase = \"s3cret\"\n").expect("valid");
        assert_eq!(c.firewall.nft, Path::new("/usr/sbin/nft"));
        let c = parse("passphrase = \"s3cret\"\n[firewall]\nnft = \"/bin/sh\"\n").expect("valid");
        assert_eq!(c.firewall.nft, Path::new("/bin/sh"));
        let e = errors("passphrase = \"s3cret\"\n[firewall]\nnft = \"./nft\"\n");
        assert_eq!(
            e,
            vec!["t.toml:11:7: firewall.nft \"./nft\" is not an absolute path (nft is never looked up through PATH)".to_string()]
        );
        let e = errors("passphrase = \"s3cret\"\n[firewall]\nnft = \"/etc\"\n");
        assert_eq!(
            e,
            vec!["t.toml:11:7: firewall.nft \"/etc\" is not an executable file".to_string()]
        );
    }

    #[test]
    fn carp_auth_refuses_other_modes_and_short_passphrases_with_their_place() {
        let e = errors("passphrase = \"s3cret\"\nauth = \"sha256\"\n");
        assert_eq!(
            e,
            vec![
                "t.toml:10:8: carp.auth must be \"bsd\" or \"tandem\", not \"sha256\"".to_string()
            ]
        );
        let e = errors("passphrase = \"s3cret\"\nauth = \"tandem\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:10:8: carp.auth = \"tandem\" needs a passphrase of at least 16 bytes (this one has 6)"),
            "{e:?}"
        );
    }
}
