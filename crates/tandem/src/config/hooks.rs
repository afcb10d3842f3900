//! The node-local `[hooks]` table: programs run on state changes (never synced).
//!
//! Each hook is a path to an executable, relative to the folder of the file that names it, and
//! checked when the config is read (it must exist and be executable).

use super::Errors;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// Default time a hook may run before its process group is killed.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    #[serde(default)]
    on_master: Option<Spanned<String>>,
    #[serde(default)]
    on_backup: Option<Spanned<String>>,
    #[serde(default)]
    on_init: Option<Spanned<String>>,
    #[serde(default)]
    on_transition: Option<Spanned<String>>,
    #[serde(default)]
    on_demotion: Option<Spanned<String>>,
    #[serde(default)]
    on_state_sync_ready: Option<Spanned<String>>,
    #[serde(default)]
    on_config_applied: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<f64>>,
}

/// The events a hook can be set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// A VIP became MASTER.
    Master,
    /// A VIP became BACKUP.
    Backup,
    /// A VIP went to INIT (its link is down, it was removed, or the daemon stops).
    Init,
    /// Every transition of a VIP (after the hook for its new state).
    Transition,
    /// The node's demotion changed.
    Demotion,
    /// State sync has the whole table.
    StateSyncReady,
    /// A config (a reload, a pushed generation, a rollback) was applied.
    ConfigApplied,
}

impl Hook {
    /// The key in `[hooks]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Master => "on_master",
            Hook::Backup => "on_backup",
            Hook::Init => "on_init",
            Hook::Transition => "on_transition",
            Hook::Demotion => "on_demotion",
            Hook::StateSyncReady => "on_state_sync_ready",
            Hook::ConfigApplied => "on_config_applied",
        }
    }
}

/// `[hooks]` as typed: the program of each hook set, and how long each may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSettings {
    pub programs: BTreeMap<Hook, PathBuf>,
    pub timeout: Duration,
}

impl Default for HookSettings {
    fn default() -> HookSettings {
        HookSettings {
            programs: BTreeMap::new(),
            timeout: DEFAULT_HOOK_TIMEOUT,
        }
    }
}

/// A number of seconds in `lo..=hi`, or an error at its place.
pub fn seconds(
    errs: &mut Errors<'_>,
    v: &Spanned<f64>,
    what: &str,
    lo: f64,
    hi: f64,
) -> Option<Duration> {
    let n = *v.get_ref();
    if !n.is_finite() || n < lo || n > hi {
        errs.at(
            v.span(),
            format!("{what} must be between {lo} and {hi} seconds, not {n}"),
        );
        return None;
    }
    Some(Duration::from_secs_f64(n))
}

/// A program named in the config: resolved against the folder of its file, and checked to be
/// an executable file.
pub fn executable(errs: &mut Errors<'_>, v: &Spanned<String>, what: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = errs.resolve(v);
    let shown = v.get_ref();
    if shown.is_empty() {
        errs.at(v.span(), format!("{what} is empty"));
        return path;
    }
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => errs.at(
            v.span(),
            format!("{what} {shown:?}: no such file ({})", path.display()),
        ),
        Err(e) => errs.at(v.span(), format!("{what} {shown:?}: {e}")),
        Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => errs.at(
            v.span(),
            format!(
                "{what} {shown:?} is not an executable file ({})",
                path.display()
            ),
        ),
        Ok(_) => {}
    }
    path
}

pub fn hooks(errs: &mut Errors<'_>, raw: Option<&Spanned<RawHooks>>) -> HookSettings {
    let Some(raw) = raw else {
        return HookSettings::default();
    };
    let r = raw.get_ref();
    let mut programs = BTreeMap::new();
    for (hook, v) in [
        (Hook::Master, &r.on_master),
        (Hook::Backup, &r.on_backup),
        (Hook::Init, &r.on_init),
        (Hook::Transition, &r.on_transition),
        (Hook::Demotion, &r.on_demotion),
        (Hook::StateSyncReady, &r.on_state_sync_ready),
        (Hook::ConfigApplied, &r.on_config_applied),
    ] {
        if let Some(v) = v {
            let path = executable(errs, v, &format!("hooks.{}", hook.as_str()));
            programs.insert(hook, path);
        }
    }
    let timeout = r
        .timeout
        .as_ref()
        .and_then(|t| seconds(errs, t, "hooks.timeout", 0.1, 3600.0))
        .unwrap_or(DEFAULT_HOOK_TIMEOUT);
    HookSettings { programs, timeout }
}
