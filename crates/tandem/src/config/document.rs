//! One parse per config file: the text becomes a spanned TOML tree once, and each owner
//! deserializes its own tables from that tree (see `raw.rs`); nothing parses the text again.
//!
//! Every parsed file gets its own range of byte offsets, unique in the process: the tree's
//! spans are shifted by a base no other file shares. So typed tables taken from several files
//! and composed into one config (a peer runs its own file's node-local tables with the synced
//! areas from its state dir) still know which file and line each value came from, and an
//! error found at any later stage (a typed field, a firewall rule, a VIP checked against the
//! kernel) prints that file's FILE:LINE:COL.

use super::error::{ConfigError, ConfigErrors};
use serde::de::DeserializeOwned;
use serde::Deserialize as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use toml::de::{DeArray, DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// The next free offset: each parsed file takes `len + 1` offsets from here.
static NEXT_BASE: AtomicUsize = AtomicUsize::new(1);

/// One file as read, and where its offsets start.
#[derive(Debug)]
struct SourceFile {
    path: PathBuf,
    text: String,
    base: usize,
}

impl SourceFile {
    fn holds(&self, offset: usize) -> bool {
        offset >= self.base && offset <= self.base + self.text.len()
    }
}

/// The files a config's values came from: turns a span into FILE:LINE:COL.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<Arc<SourceFile>>,
}

impl Sources {
    /// Adds the files of `other` (a composed config locates values from both).
    pub fn merge(&mut self, other: &Sources) {
        for f in &other.files {
            if !self.files.iter().any(|x| Arc::ptr_eq(x, f)) {
                self.files.push(f.clone());
            }
        }
    }

    fn source_of(&self, offset: usize) -> Option<&SourceFile> {
        self.files.iter().map(Arc::as_ref).find(|s| s.holds(offset))
    }

    /// The file a span lies in.
    pub fn file_of(&self, span: &Range<usize>) -> Option<&Path> {
        self.source_of(span.start).map(|s| s.path.as_path())
    }

    /// The first file (the node's own, for a composed config).
    pub fn first(&self) -> Option<&Path> {
        self.files.first().map(|s| s.path.as_path())
    }

    /// A message located at a span: FILE:LINE:COL, or the first file alone without a span.
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        let found = span
            .filter(|s| *s != (0..0))
            .and_then(|s| self.source_of(s.start).map(|f| (f, s.start)));
        match found {
            Some((f, offset)) => {
                let (line, col) = firewall::line_col(&f.text, offset - f.base);
                ConfigError {
                    file: f.path.clone(),
                    line,
                    col,
                    message,
                }
            }
            None => ConfigError::unlocated(self.first().unwrap_or(Path::new("")), message),
        }
    }
}

fn shift_span(span: Range<usize>, base: usize) -> Range<usize> {
    span.start + base..span.end + base
}

fn shift_table(t: DeTable<'_>, base: usize) -> DeTable<'_> {
    t.into_iter()
        .map(|(k, v)| {
            let key = Spanned::new(shift_span(k.span(), base), k.into_inner());
            (key, shift(v, base))
        })
        .collect()
}

/// The same value with every span (keys included) moved by `base`.
fn shift(v: Spanned<DeValue<'_>>, base: usize) -> Spanned<DeValue<'_>> {
    let span = shift_span(v.span(), base);
    let inner = match v.into_inner() {
        DeValue::Table(t) => DeValue::Table(shift_table(t, base)),
        DeValue::Array(a) => {
            let mut out = DeArray::new();
            for item in a.iter().cloned() {
                out.push(shift(item, base));
            }
            DeValue::Array(out)
        }
        other => other,
    };
    Spanned::new(span, inner)
}

/// A parsed file's tree, while its owners take their tables from it.
pub struct Tree<'i> {
    root: DeTable<'i>,
    sources: Sources,
}

impl Tree<'_> {
    /// The top-level keys and the spans of the keys.
    pub fn keys(&self) -> impl Iterator<Item = (&str, Range<usize>)> {
        self.root.keys().map(|k| (k.get_ref().as_ref(), k.span()))
    }

    /// Where each top-level key's value starts (for an array of tables, its first table).
    fn starts(&self) -> Vec<(&str, usize)> {
        let mut v: Vec<(&str, usize)> = self
            .root
            .iter()
            .map(|(k, v)| {
                let mut start = v.span().start.min(k.span().start);
                if let DeValue::Array(a) = v.get_ref() {
                    for item in a.iter() {
                        start = start.min(item.span().start);
                    }
                }
                (k.get_ref().as_ref(), start)
            })
            .collect();
        v.sort_by_key(|(_, s)| *s);
        v
    }

    /// The lines (first, last) of a top-level key in the file: from where its value starts to
    /// where the next top-level key starts (TOML gives a table's header, not its end).
    pub fn lines_of(&self, key: &str) -> Option<(usize, usize)> {
        let starts = self.starts();
        let i = starts.iter().position(|(k, _)| *k == key)?;
        let line = |offset: usize| self.sources.error(Some(offset..offset + 1), "").line;
        let first = line(starts[i].1);
        let last = match starts.get(i + 1) {
            Some((_, next)) => line(*next).saturating_sub(1),
            None => usize::MAX,
        };
        Some((first, last.max(first)))
    }

    /// Takes the value of one top-level key out of the tree and deserializes it; None when
    /// absent. (Taken, not copied: a 100 000-entry alias is not cloned on every reload.)
    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, ConfigError> {
        let Some(v) = self.root.remove(key) else {
            return Ok(None);
        };
        let span = v.span();
        T::deserialize(ValueDeserializer::from(v))
            .map(Some)
            .map_err(|e| self.de_error(&e, span))
    }

    /// Takes the given top-level keys (those present) out of the tree and deserializes them
    /// as one table.
    pub fn take_table<T: DeserializeOwned>(&mut self, keys: &[&str]) -> Result<T, ConfigError> {
        let mut t = DeTable::new();
        let mut span: Option<Range<usize>> = None;
        for key in keys {
            if let Some((k, v)) = self.root.remove_entry(*key) {
                let s = v.span();
                span = Some(span.map_or(s.clone(), |x| x.start.min(s.start)..x.end.max(s.end)));
                t.insert(k, v);
            }
        }
        let span = span.unwrap_or(0..0);
        let v = Spanned::new(span.clone(), DeValue::Table(t));
        T::deserialize(ValueDeserializer::from(v)).map_err(|e| self.de_error(&e, span))
    }

    /// The whole tree as plain TOML values (what areas are hashed and compared as).
    pub fn plain(&self) -> toml::Table {
        let v = Spanned::new(0..0, DeValue::Table(self.root.clone()));
        // A tree the parser built always deserializes into plain TOML.
        toml::Table::deserialize(ValueDeserializer::from(v)).unwrap_or_default()
    }

    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        self.sources.error(span, message)
    }

    fn de_error(&self, e: &toml::de::Error, fallback: Range<usize>) -> ConfigError {
        self.error(
            Some(e.span().unwrap_or(fallback)),
            e.message().trim_end().to_string(),
        )
    }
}

/// Parses one file's text once and hands the tree to `take`, which deserializes what it
/// needs; returns the file's [`Sources`] with what `take` returned. A syntax error is located
/// in the file.
pub fn parse<R>(
    path: &Path,
    text: String,
    take: impl FnOnce(&mut Tree<'_>) -> R,
) -> Result<(Sources, R), ConfigErrors> {
    let base = NEXT_BASE.fetch_add(text.len() + 1, Ordering::Relaxed);
    let file = Arc::new(SourceFile {
        path: path.to_path_buf(),
        text,
        base,
    });
    let sources = Sources {
        files: vec![file.clone()],
    };
    match DeTable::parse(&file.text) {
        Ok(root) => {
            let mut tree = Tree {
                root: shift_table(root.into_inner(), base),
                sources,
            };
            let r = take(&mut tree);
            Ok((tree.sources, r))
        }
        Err(e) => {
            let span = e.span().map(|s| shift_span(s, base));
            Err(ConfigErrors(vec![
                sources.error(span, e.message().trim_end().to_string())
            ]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Node {
        name: Spanned<String>,
    }

    #[test]
    fn spans_of_two_files_never_collide_and_locate_in_their_own_file() {
        let (s1, n1) = parse(Path::new("a.toml"), "[node]\nname = \"a\"\n".into(), |t| {
            t.take::<Node>("node")
        })
        .expect("a");
        let (s2, n2) = parse(
            Path::new("b.toml"),
            "\n\n[node]\n  name = \"b\"\n".into(),
            |t| t.take::<Node>("node"),
        )
        .expect("b");
        let (n1, n2) = (
            n1.expect("ok").expect("node"),
            n2.expect("ok").expect("node"),
        );
        let mut all = s1.clone();
        all.merge(&s2);
        assert_eq!(
            all.error(Some(n1.name.span()), "x").to_string(),
            "a.toml:2:8: x"
        );
        assert_eq!(
            all.error(Some(n2.name.span()), "y").to_string(),
            "b.toml:4:10: y"
        );
        assert_eq!(all.file_of(&n2.name.span()), Some(Path::new("b.toml")));
    }

    #[test]
    fn type_and_syntax_errors_are_located() {
        let (_, r) = parse(Path::new("c.toml"), "[node]\nname = 5\n".into(), |t| {
            t.take::<Node>("node")
        })
        .expect("parses");
        let e = r.err().expect("type error").to_string();
        assert!(e.starts_with("c.toml:2:8: "), "{e}");
        let e = parse(Path::new("d.toml"), "[node\n".into(), |_| ())
            .expect_err("syntax error")
            .to_string();
        assert!(e.starts_with("d.toml:1:"), "{e}");
    }

    #[test]
    fn a_key_spans_to_the_next_one() {
        let text =
            "a = 1\n[[rules]]\nx = 1\ny = 2\n\n[[rules]]\nx = 3\n\n[nat]\nz = 1\n[nat.o]\nq = 2\n";
        let (_, (rules, nat)) = parse(Path::new("p.toml"), text.into(), |t| {
            (t.lines_of("rules"), t.lines_of("nat"))
        })
        .expect("parses");
        assert_eq!(rules, Some((2, 8)));
        assert_eq!(nat.map(|n| n.0), Some(9));
    }
}
