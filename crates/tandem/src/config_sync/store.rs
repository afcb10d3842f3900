//! A peer's sync state on disk, in its state dir (`sync.state_dir`):
//! `synced.toml` (the synced areas as running; an operator may edit it, which is reported as
//! drift), `pushed.toml` (the same as last pushed, untouched), `synced.json` (generation,
//! source, time, per-area hashes), `history/gen-N.toml` (the last [`HISTORY`] generations,
//! for `tandem config rollback`), `backups/` (drifted areas kept before an overwrite) and
//! `incoming.toml` (the last candidate's synced areas, where validation errors point).
//! Files are written whole (to a temporary name, then renamed) and readable by root only.

use super::status::rfc3339;
use crate::config::{ConfigErrors, ParsedFile};
use configsync::area::Area;
use configsync::book::SyncedMeta;
use configsync::peer::{Doc, Plan, Store, HELD_KEY};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Generations a peer keeps for rollback.
pub const HISTORY: usize = 10;

/// Writes a file whole and readable by root only: to a temporary name, synced to disk, then
/// renamed.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    write_file(path, text, true)
}

/// As [`write_private`]; `sync`: wait until the data is on disk (state that must survive a
/// crash), or not (a copy for the operator, remade by the next push).
fn write_file(path: &Path, text: &str, sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // A file left from before keeps its mode through `open`: set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    if sync {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Creates a directory (and its parents) readable by root only.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // One made before (by hand, or by an older version) is made private too.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Areas as one TOML document, each under a header comment, and the list of the areas it
/// holds (empty ones too) under [`HELD_KEY`].
pub fn areas_file(title: &str, meta: &SyncedMeta, texts: &BTreeMap<Area, String>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {title}");
    let _ = writeln!(
        s,
        "# generation {} from {} at {}",
        meta.generation,
        meta.source,
        rfc3339(meta.time)
    );
    let held: Vec<String> = texts.keys().map(|a| format!("{:?}", a.as_str())).collect();
    let _ = writeln!(s, "{HELD_KEY} = [{}]", held.join(", "));
    for (a, text) in texts {
        let rec = meta.areas.get(a);
        let _ = writeln!(
            s,
            "\n# ---- area {a}: generation {} ----",
            rec.map_or(0, |r| r.generation)
        );
        if text.is_empty() {
            let _ = writeln!(s, "# (empty: no {a})");
        } else {
            s.push_str(text);
        }
    }
    s
}

/// An areas file (`synced.toml`, `pushed.toml`) as this store last read or wrote it: its
/// text, its plain table, and the canonical text of each area when known (it wrote them).
struct Cached {
    text: String,
    table: Doc,
    areas: BTreeMap<Area, String>,
}

/// The state dir of a peer, with the files it read kept parsed and the areas files it wrote
/// kept as written: a push parses or serializes again only what changed on disk (10k rules
/// are about 1 MB of TOML).
pub struct FileStore {
    pub dir: PathBuf,
    parsed: BTreeMap<PathBuf, (String, ParsedFile)>,
    areas: BTreeMap<PathBuf, Cached>,
    /// The history file of the last push, written after the primary has its answer
    /// ([`FileStore::flush_history`]).
    pending_history: Option<(PathBuf, String)>,
    /// Each area of the last candidate, parsed on its own at its lines of `incoming.toml`
    /// (the text parsed, with the newlines that put it there): an area a push did not change
    /// is not parsed again.
    incoming_parts: BTreeMap<Area, (String, ParsedFile)>,
}

impl FileStore {
    pub fn new(dir: &Path) -> FileStore {
        FileStore {
            dir: dir.to_path_buf(),
            parsed: BTreeMap::new(),
            areas: BTreeMap::new(),
            pending_history: None,
            incoming_parts: BTreeMap::new(),
        }
    }

    /// Writes the history file of the last push, if not yet, and keeps the last [`HISTORY`].
    /// Not synced to disk: the state files are, and the history is a copy for rollbacks.
    pub fn flush_history(&mut self) -> Result<(), String> {
        let Some((path, text)) = self.pending_history.take() else {
            return Ok(());
        };
        write_file(&path, &text, false)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let gens = self.history();
        for g in gens.iter().take(gens.len().saturating_sub(HISTORY)) {
            let _ = std::fs::remove_file(self.history_path(*g));
        }
        Ok(())
    }

    /// An areas file's plain table: as this store last read or wrote it when the file still
    /// holds that text, else parsed.
    fn areas_doc(&mut self, name: &str) -> Result<Doc, String> {
        let path = self.path(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if let Some(c) = self.areas.get(&path).filter(|c| c.text == text) {
            return Ok(c.table.clone());
        }
        let table = Doc::new(
            ParsedFile::parse_stored(&path, text.clone())
                .map_err(|e| e.to_string())?
                .plain,
        );
        self.areas.insert(
            path,
            Cached {
                text,
                table: table.clone(),
                areas: BTreeMap::new(),
            },
        );
        Ok(table)
    }

    /// Writes an areas file and keeps it as written (`doc`: its areas' values, which is
    /// what parsing it gives but for the list of the areas it holds; `texts`: their
    /// canonical texts).
    fn write_areas(
        &mut self,
        name: &str,
        text: String,
        doc: &Doc,
        texts: &BTreeMap<Area, String>,
    ) -> Result<(), String> {
        let path = self.path(name);
        self.areas.remove(&path);
        write_private(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.areas.insert(
            path,
            Cached {
                text,
                table: doc.clone(),
                areas: texts.clone(),
            },
        );
        Ok(())
    }

    fn known(&self, name: &str) -> BTreeMap<Area, String> {
        self.areas
            .get(&self.path(name))
            .map(|c| c.areas.clone())
            .unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn history_path(&self, generation: u64) -> PathBuf {
        self.dir
            .join("history")
            .join(format!("gen-{generation:08}.toml"))
    }

    /// A stored areas file, parsed (an absent file is empty); from the cache when its text is
    /// what was last seen.
    pub fn parsed(&mut self, path: &Path) -> Result<ParsedFile, ConfigErrors> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(ConfigErrors(vec![crate::config::ConfigError::unlocated(
                    path,
                    format!("cannot read: {e}"),
                )]))
            }
        };
        if let Some((t, p)) = self.parsed.get(path) {
            if *t == text {
                return Ok(p.clone());
            }
        }
        let p = ParsedFile::parse_stored(path, text.clone())?;
        self.parsed.insert(path.to_path_buf(), (text, p.clone()));
        Ok(p)
    }

    /// Writes the candidate's synced areas to `incoming.toml` and parses them from there, so
    /// that errors point at a file the operator can open.
    pub fn incoming(&mut self, plan: &Plan) -> Result<ParsedFile, ConfigErrors> {
        let path = self.path("incoming.toml");
        let text = areas_file(
            &format!(
                "candidate: {} (its errors point here; it runs once accepted)",
                plan.what
            ),
            &plan.meta,
            &plan.stored,
        );
        let unwritable = |e: std::io::Error| {
            ConfigErrors(vec![crate::config::ConfigError::unlocated(
                &path,
                format!("cannot write: {e}"),
            )])
        };
        private_dir(&self.dir).map_err(unwritable)?;
        // Where errors point, remade by every push: not worth a wait for the disk.
        write_file(&path, &text, false).map_err(unwritable)?;
        // Each area is parsed on its own, preceded by as many newlines as there are lines
        // before it in the file, so its errors point at the file's lines; an area whose text
        // and place are those of the last candidate is taken as parsed then.
        let lines: Vec<&str> = text.lines().collect();
        let mut parts = BTreeMap::new();
        let mut errors = Vec::new();
        for a in plan.stored.keys() {
            let marker = format!("# ---- area {a}:");
            let Some(at) = lines.iter().position(|l| l.starts_with(&marker)) else {
                continue;
            };
            let body = plan.stored.get(a).map(String::as_str).unwrap_or_default();
            let part_text = format!("{}{body}", "\n".repeat(at + 1));
            let cached = self
                .incoming_parts
                .remove(a)
                .filter(|(t, _)| *t == part_text);
            let parsed = match cached {
                Some((_, p)) => p,
                None => match ParsedFile::parse_stored(&path, part_text.clone()) {
                    Ok(p) => p,
                    Err(e) => {
                        errors.extend(e.0);
                        continue;
                    }
                },
            };
            parts.insert(*a, (part_text, parsed));
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        // An area runs from its first line to the line before the next area's.
        let mut firsts: Vec<(Area, usize)> = parts
            .iter()
            .flat_map(|(_, (_, p))| p.area_lines().iter().map(|(a, f, _)| (*a, *f)))
            .collect();
        firsts.sort_by_key(|(_, f)| *f);
        let area_lines = firsts
            .iter()
            .enumerate()
            .map(|(i, (a, f))| {
                let last = firsts.get(i + 1).map_or(usize::MAX, |(_, n)| n - 1);
                (*a, *f, last.max(*f))
            })
            .collect();
        let refs: Vec<(Area, &ParsedFile)> = parts.iter().map(|(a, (_, p))| (*a, p)).collect();
        let candidate = ParsedFile::from_parts(&refs, area_lines);
        self.incoming_parts = parts;
        Ok(candidate)
    }
}

impl Store for FileStore {
    fn meta(&self) -> Result<Option<SyncedMeta>, String> {
        let p = self.path("synced.json");
        match std::fs::read_to_string(&p) {
            Ok(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| format!("{} is unreadable: {e}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", p.display())),
        }
    }

    fn stored(&mut self) -> Result<Doc, String> {
        self.areas_doc("synced.toml")
    }

    fn pushed(&mut self) -> Result<Doc, String> {
        self.areas_doc("pushed.toml")
    }

    fn known_stored(&self) -> BTreeMap<Area, String> {
        self.known("synced.toml")
    }

    fn known_pushed(&self) -> BTreeMap<Area, String> {
        self.known("pushed.toml")
    }

    fn generation(&mut self, generation: u64) -> Result<Option<toml::Table>, String> {
        self.flush_history()?;
        let path = self.history_path(generation);
        if !path.exists() {
            return Ok(None);
        }
        self.parsed(&path)
            .map(|p| Some(p.plain))
            .map_err(|e| e.to_string())
    }

    /// Kept generations, oldest first (with the last push's, even before it is written).
    fn history(&self) -> Vec<u64> {
        let mut gens: Vec<u64> = std::fs::read_dir(self.dir.join("history"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_prefix("gen-"))
                            .and_then(|n| n.strip_suffix(".toml"))
                            .and_then(|n| n.parse().ok())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(g) = self.pending_history.as_ref().and_then(|(p, _)| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("gen-"))
                .and_then(|n| n.strip_suffix(".toml"))
                .and_then(|n| n.parse().ok())
        }) {
            gens.push(g);
        }
        gens.sort_unstable();
        gens.dedup();
        gens
    }

    fn save(&mut self, plan: &Plan, new_generation: bool) -> Result<(), String> {
        let io = |what: &Path| {
            let what = what.display().to_string();
            move |e: std::io::Error| format!("cannot write {what}: {e}")
        };
        let history = self.dir.join("history");
        private_dir(&history).map_err(io(&history))?;
        // The previous push's history file, if it is still to be written.
        self.flush_history()?;
        let pushed_text = areas_file(
            "areas as last pushed (kept untouched to tell drift; do not edit)",
            &plan.meta,
            &plan.pushed,
        );
        if new_generation {
            // Written once the primary has its answer (flush_history), or before the next
            // save or rollback.
            let h = self.history_path(plan.meta.generation);
            self.pending_history = Some((h, pushed_text.clone()));
        }
        self.write_areas("pushed.toml", pushed_text, &plan.pushed_doc, &plan.pushed)?;
        let stored_text = areas_file(
            "synced areas running on this node; a local edit here (then `tandem reload`) runs and is reported to the primary as drift",
            &plan.meta,
            &plan.stored,
        );
        self.write_areas("synced.toml", stored_text, &plan.stored_doc, &plan.stored)?;
        let json = serde_json::to_string_pretty(&plan.meta)
            .map_err(|e| format!("encoding synced.json: {e}"))?;
        let meta = self.path("synced.json");
        write_private(&meta, &json).map_err(io(&meta))?;
        Ok(())
    }

    fn backup(&mut self, plan: &Plan) -> Result<String, String> {
        let dir = self.dir.join("backups");
        let path = dir.join(format!(
            "drift-gen{}-{}.toml",
            plan.previous.generation,
            rfc3339(plan.meta.time).replace(':', "")
        ));
        let mut text = format!(
            "# areas as they ran before an overwrite (they had drifted from generation {})\n",
            plan.previous.generation
        );
        for r in &plan.overwritten {
            let _ = writeln!(text, "\n# ---- area {} ----", r.area);
            text.push_str(&r.text);
        }
        private_dir(&dir)
            .and_then(|()| write_private(&path, &text))
            .map_err(|e| format!("cannot write backup {}: {e}", path.display()))?;
        Ok(path.display().to_string())
    }
}
