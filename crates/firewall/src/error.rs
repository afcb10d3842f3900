//! Config errors: what is wrong and where (a byte span in the TOML text).

use std::ops::Range;

/// One problem in the config. `span` is a byte range in the TOML text the areas were parsed
/// from (absent when the problem has no place in the file, e.g. a missing node address).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl ConfigError {
    pub fn new(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        ConfigError {
            span,
            message: message.into(),
        }
    }

    pub(crate) fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        // An empty span at 0 is the "no place known" marker of values built in code.
        let span = if span == (0..0) { None } else { Some(span) };
        ConfigError::new(span, message)
    }

    /// 1-based line and column (in characters) of the start of the span in `text`.
    pub fn line_col(&self, text: &str) -> Option<(usize, usize)> {
        self.span.as_ref().map(|s| line_col(text, s.start))
    }

    /// `file:line:col: message`, or `file: message` without a span.
    pub fn located(&self, file: &str, text: &str) -> String {
        match self.line_col(text) {
            Some((line, col)) => format!("{file}:{line}:{col}: {}", self.message),
            None => format!("{file}: {}", self.message),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`; an offset past the end
/// or inside a character is clamped to the nearest character boundary before it.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // "é" is two bytes: the "=" after "bé " is the 4th character.
        assert_eq!(line_col(text, 10), (2, 4));
        assert_eq!(line_col(text, 1000), (3, 1));
        let e = ConfigError::new(Some(6..8), "bad");
        assert_eq!(e.located("fw.toml", text), "fw.toml:2:1: bad");
        assert_eq!(ConfigError::new(None, "x").located("f", text), "f: x");
    }
}
