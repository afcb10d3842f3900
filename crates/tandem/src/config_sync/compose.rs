//! The config a peer runs: its own file's tables, with each synced area taken from the stored
//! synced copy unless the own file's version was edited since the last sync (that edit runs,
//! and is drift). Composed as data: parsed tables from both files, each value still located
//! in its own file, never text spliced together.

use super::status::rfc3339;
use super::store::FileStore;
use crate::config::{
    annotate, AreaNote, Config, ConfigErrors, ParsedFile, Provenance, Role, RunningArea,
};
use configsync::area::{self, Area};
use configsync::book::{self, Origin, SyncedMeta};
use configsync::peer::Store;
use std::collections::BTreeMap;
use std::path::Path;

/// Where an area came from, in messages and `config show`.
pub fn origin_text(o: &Origin, own_file: &Path) -> String {
    match o {
        Origin::Own => format!("own file {}", own_file.display()),
        Origin::Synced {
            source,
            generation,
            time,
        } => format!(
            "synced from {source}, generation {generation}, {}",
            rfc3339(*time)
        ),
        Origin::LocalEdit { generation } => format!(
            "LOCAL EDIT in {} (differs from synced generation {generation}: drift)",
            own_file.display()
        ),
        Origin::EditedCopy { generation } => {
            format!("EDITED synced.toml (differs from synced generation {generation}: drift)")
        }
    }
}

/// Composes own file + stored synced areas and builds the config; errors in a synced area
/// name the area and where it came from. `known`: the canonical text of `stored`'s areas
/// where the caller has them (a candidate's), so they are not serialized again.
pub fn compose(
    own: &ParsedFile,
    own_file: &Path,
    meta: &SyncedMeta,
    stored: (&ParsedFile, &BTreeMap<Area, String>),
    pushed: &toml::Table,
) -> Result<Config, ConfigErrors> {
    let (stored, known) = stored;
    let running = book::resolve_known(&own.plain, &stored.plain, pushed, meta, known);
    let mut composed = own.clone();
    for r in &running {
        if meta.areas.contains_key(&r.area)
            && matches!(r.origin, Origin::Synced { .. } | Origin::EditedCopy { .. })
        {
            composed.take_area(r.area, stored);
        }
    }
    let notes: Vec<AreaNote> = match stored.sources.first() {
        Some(file) => stored
            .area_lines()
            .iter()
            .map(|(a, first, last)| AreaNote {
                file: file.to_path_buf(),
                lines: (*first, *last),
                note: format!(
                    "area {a}: {}",
                    running
                        .iter()
                        .find(|r| r.area == *a)
                        .map(|r| origin_text(&r.origin, own_file))
                        .unwrap_or_default()
                ),
            })
            .collect(),
        None => Vec::new(),
    };
    let mut cfg = Config::build(composed, own_file).map_err(|e| annotate(e, &notes))?;
    cfg.area_notes = notes;
    cfg.provenance = Some(Provenance {
        meta: meta.clone(),
        areas: running
            .iter()
            .map(|r| RunningArea {
                area: r.area,
                origin: r.origin.clone(),
                items: r.items,
                hash: area::hash(&r.text),
                drift: r.drift.clone(),
            })
            .collect(),
    });
    Ok(cfg)
}

/// The config a node runs: its own file, and on a peer that has received areas, those areas
/// composed in (see the module doc). Start-up and `tandem reload` both load this way. Returns
/// the own file as parsed too (a push composes with it).
pub fn load_running(path: &Path) -> anyhow::Result<(Config, ParsedFile)> {
    let own = ParsedFile::read(path)?;
    let cfg = Config::build(own.clone(), path)?;
    let Some(s) = cfg.sync.as_ref().filter(|s| s.role == Role::Peer) else {
        return Ok((cfg, own));
    };
    let mut store = FileStore::new(&s.state_dir);
    let Some(meta) = store.meta().map_err(anyhow::Error::msg)? else {
        return Ok((cfg, own));
    };
    let stored = store.parsed(&store.path("synced.toml"))?;
    let pushed = store.parsed(&store.path("pushed.toml"))?.plain;
    let cfg = compose(&own, path, &meta, (&stored, &BTreeMap::new()), &pushed)?;
    Ok((cfg, own))
}
