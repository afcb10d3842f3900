//! The node-local `[[checks]]`: health checks that demote the node while they fail (never
//! synced).
//!
//! Kinds: `ping` (an address answers ICMP echo within the loss and latency limits), `exec` (a
//! program exits 0), `file` (a file holds the number 0). A check is `up` after `rise`
//! passing rounds in a row, `down` after `fall` failing rounds in a row; while down it adds
//! `weight` to the node's demotion.

use super::hooks::{executable, seconds};
use super::node::{ranged, valid_name};
use super::Errors;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
pub const DEFAULT_WEIGHT: u8 = 240;
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_PING_COUNT: u32 = 5;
pub const DEFAULT_MAX_LOSS: f64 = 20.0;
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    name: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    interval: Option<Spanned<f64>>,
    #[serde(default)]
    rise: Option<Spanned<i64>>,
    #[serde(default)]
    fall: Option<Spanned<i64>>,
    #[serde(default)]
    weight: Option<Spanned<i64>>,
    #[serde(default)]
    timeout: Option<Spanned<f64>>,
    // ping
    #[serde(default)]
    address: Option<Spanned<String>>,
    #[serde(default)]
    count: Option<Spanned<i64>>,
    #[serde(default)]
    max_loss: Option<Spanned<f64>>,
    #[serde(default)]
    max_rtt: Option<Spanned<f64>>,
    #[serde(default)]
    source: Option<Spanned<String>>,
    #[serde(default)]
    interface: Option<Spanned<String>>,
    // exec
    #[serde(default)]
    command: Option<Spanned<Vec<Spanned<String>>>>,
    // file
    #[serde(default)]
    path: Option<Spanned<String>>,
}

/// One health check, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Added to the node's demotion while the check is down (1..240).
    pub weight: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Ping {
        address: IpAddr,
        source: Option<IpAddr>,
        /// The logical interface and its device, when the probes must leave through it.
        interface: Option<(String, String)>,
        timeout: Duration,
        /// The window: the last `count` probes.
        count: u32,
        /// Most lost probes in the window, in percent, for a passing round.
        max_loss: f64,
        /// Highest average round-trip time over the window's replies, for a passing round.
        max_rtt: Option<Duration>,
    },
    Exec {
        program: PathBuf,
        args: Vec<String>,
        timeout: Duration,
    },
    File {
        path: PathBuf,
    },
}

impl CheckKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckKind::Ping { .. } => "ping",
            CheckKind::Exec { .. } => "exec",
            CheckKind::File { .. } => "file",
        }
    }

    /// What it looks at, for status: the address, the command, the file.
    pub fn target(&self) -> String {
        match self {
            CheckKind::Ping { address, .. } => address.to_string(),
            CheckKind::Exec { program, args, .. } => {
                let mut v = vec![program.display().to_string()];
                v.extend(args.iter().cloned());
                v.join(" ")
            }
            CheckKind::File { path } => path.display().to_string(),
        }
    }
}

fn count(errs: &mut Errors<'_>, v: &Option<Spanned<i64>>, what: &str, hi: i64, def: u32) -> u32 {
    match v {
        Some(v) => {
            let n = *v.get_ref();
            if !(1..=hi).contains(&n) {
                errs.at(
                    v.span(),
                    format!("{what} must be between 1 and {hi}, not {n}"),
                );
                return def;
            }
            u32::try_from(n).unwrap_or(def)
        }
        None => def,
    }
}

/// Fields of one kind given for another are refused (a typo must not pass silently).
fn only_for(
    errs: &mut Errors<'_>,
    kind: &str,
    fields: &[(&str, Option<std::ops::Range<usize>>, &str)],
) {
    for (field, span, for_kind) in fields {
        if let Some(span) = span {
            if *for_kind != kind {
                errs.at(
                    span.clone(),
                    format!("checks.{field} is for kind = \"{for_kind}\", not \"{kind}\""),
                );
            }
        }
    }
}

fn check(
    errs: &mut Errors<'_>,
    raw: &Spanned<RawCheck>,
    interfaces: &BTreeMap<String, String>,
) -> Option<CheckSpec> {
    let r = raw.get_ref();
    let name = r.name.get_ref().clone();
    if !valid_name(&name) {
        errs.at(
            r.name.span(),
            format!("checks.name {name:?}: use 1 to 63 letters, digits, '-', '_', '.'"),
        );
    }
    let kind = r.kind.get_ref().as_str();
    let span = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
    only_for(
        errs,
        kind,
        &[
            ("address", span(&r.address), "ping"),
            ("count", r.count.as_ref().map(Spanned::span), "ping"),
            ("max_loss", r.max_loss.as_ref().map(Spanned::span), "ping"),
            ("max_rtt", r.max_rtt.as_ref().map(Spanned::span), "ping"),
            ("source", span(&r.source), "ping"),
            ("interface", span(&r.interface), "ping"),
            ("command", r.command.as_ref().map(Spanned::span), "exec"),
            ("path", span(&r.path), "file"),
        ],
    );
    let interval = r
        .interval
        .as_ref()
        .and_then(|v| seconds(errs, v, "checks.interval", 0.1, 3600.0))
        .unwrap_or(DEFAULT_INTERVAL);
    let rise = count(errs, &r.rise, "checks.rise", 100, DEFAULT_RISE);
    let fall = count(errs, &r.fall, "checks.fall", 100, DEFAULT_FALL);
    let weight = match &r.weight {
        Some(w) => ranged(errs, w, "checks.weight", 1, 240).unwrap_or(DEFAULT_WEIGHT),
        None => DEFAULT_WEIGHT,
    };
    let timeout = |errs: &mut Errors<'_>, def| {
        r.timeout
            .as_ref()
            .and_then(|v| seconds(errs, v, "checks.timeout", 0.01, 3600.0))
            .unwrap_or(def)
    };
    let kind = match kind {
        "ping" => {
            let Some(a) = &r.address else {
                errs.at(
                    raw.span(),
                    format!("check {name:?}: kind = \"ping\" needs an address"),
                );
                return None;
            };
            let address = match a.get_ref().parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => {
                    errs.at(
                        a.span(),
                        format!("checks.address {:?} is not an IP address", a.get_ref()),
                    );
                    return None;
                }
            };
            let source = r
                .source
                .as_ref()
                .and_then(|s| match s.get_ref().parse::<IpAddr>() {
                    Ok(ip) if ip.is_ipv4() == address.is_ipv4() => Some(ip),
                    Ok(_) => {
                        errs.at(s.span(), "checks.source must be of the address's family");
                        None
                    }
                    Err(_) => {
                        errs.at(
                            s.span(),
                            format!("checks.source {:?} is not an IP address", s.get_ref()),
                        );
                        None
                    }
                });
            let interface = r
                .interface
                .as_ref()
                .and_then(|i| match interfaces.get(i.get_ref()) {
                    Some(dev) => Some((i.get_ref().clone(), dev.clone())),
                    None => {
                        errs.at(
                            i.span(),
                            format!("checks.interface: unknown interface {:?}", i.get_ref()),
                        );
                        None
                    }
                });
            let max_loss = match &r.max_loss {
                Some(v) if !(0.0..=100.0).contains(v.get_ref()) => {
                    errs.at(
                        v.span(),
                        format!(
                            "checks.max_loss must be between 0 and 100 (percent), not {}",
                            v.get_ref()
                        ),
                    );
                    DEFAULT_MAX_LOSS
                }
                Some(v) => *v.get_ref(),
                None => DEFAULT_MAX_LOSS,
            };
            let max_rtt = r.max_rtt.as_ref().and_then(|v| {
                let ms = *v.get_ref();
                if !ms.is_finite() || ms <= 0.0 || ms > 60_000.0 {
                    errs.at(
                        v.span(),
                        format!(
                            "checks.max_rtt must be between 0 and 60000 (milliseconds), not {ms}"
                        ),
                    );
                    return None;
                }
                Some(Duration::from_secs_f64(ms / 1000.0))
            });
            CheckKind::Ping {
                address,
                source,
                interface,
                timeout: timeout(errs, DEFAULT_PING_TIMEOUT),
                count: count(errs, &r.count, "checks.count", 100, DEFAULT_PING_COUNT),
                max_loss,
                max_rtt,
            }
        }
        "exec" => {
            let Some(cmd) = &r.command else {
                errs.at(
                    raw.span(),
                    format!(
                        "check {name:?}: kind = \"exec\" needs a command (program and arguments)"
                    ),
                );
                return None;
            };
            let Some((first, rest)) = cmd.get_ref().split_first() else {
                errs.at(cmd.span(), "checks.command needs at least the program");
                return None;
            };
            CheckKind::Exec {
                program: executable(errs, first, "checks.command"),
                args: rest.iter().map(|a| a.get_ref().clone()).collect(),
                timeout: timeout(errs, DEFAULT_EXEC_TIMEOUT),
            }
        }
        "file" => {
            let Some(p) = &r.path else {
                errs.at(
                    raw.span(),
                    format!("check {name:?}: kind = \"file\" needs a path"),
                );
                return None;
            };
            if let Some(t) = &r.timeout {
                errs.at(
                    t.span(),
                    "checks.timeout is for kind = \"ping\" or \"exec\", not \"file\"",
                );
            }
            CheckKind::File {
                path: errs.resolve(p),
            }
        }
        other => {
            errs.at(
                r.kind.span(),
                format!("checks.kind must be \"ping\", \"exec\" or \"file\", not {other:?}"),
            );
            return None;
        }
    };
    Some(CheckSpec {
        name,
        kind,
        interval,
        rise,
        fall,
        weight,
    })
}

pub fn checks(
    errs: &mut Errors<'_>,
    raw: &[Spanned<RawCheck>],
    interfaces: &BTreeMap<String, String>,
) -> Vec<CheckSpec> {
    let mut out: Vec<CheckSpec> = Vec::new();
    for r in raw {
        let name = r.get_ref().name.get_ref();
        if out.iter().any(|c| &c.name == name) {
            errs.at(
                r.get_ref().name.span(),
                format!("checks.name {name:?} is used by another check"),
            );
            continue;
        }
        if let Some(c) = check(errs, r, interfaces) {
            out.push(c);
        }
    }
    out
}
