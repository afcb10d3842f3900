//! Secrets given inline or in a file, and paths relative to the config file that names them.

use super::Errors;
use std::ops::Range;
use toml::Spanned;

/// A secret given inline or in a file (exactly one of the two), at least `min` bytes; a file's
/// trailing newline is not part of it. None (with an error) when it cannot be had; None
/// without an error when neither is set and `min` is 0 (an optional secret).
pub fn secret(
    errs: &mut Errors<'_>,
    table: Range<usize>,
    inline: (&Option<Spanned<String>>, &str),
    from_file: (&Option<Spanned<String>>, &str),
    min: usize,
) -> Option<Vec<u8>> {
    let too_short = |what: String| {
        if min <= 1 {
            format!("{what} must not be empty")
        } else {
            format!("{what} must be at least {min} bytes")
        }
    };
    match (inline.0, from_file.0) {
        (Some(v), None) => {
            if v.get_ref().len() < min.max(1) {
                errs.at(v.span(), too_short(inline.1.to_string()));
            }
            Some(v.get_ref().as_bytes().to_vec())
        }
        (None, Some(f)) => {
            let path = errs.resolve(f);
            warn_if_shared(&path, from_file.1);
            match std::fs::read(&path) {
                Ok(mut bytes) => {
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    if bytes.len() < min.max(1) {
                        errs.at(
                            f.span(),
                            too_short(format!("{} {}", from_file.1, path.display())),
                        );
                    }
                    Some(bytes)
                }
                Err(e) => {
                    errs.at(
                        f.span(),
                        format!("cannot read {} {}: {e}", from_file.1, path.display()),
                    );
                    None
                }
            }
        }
        (Some(v), Some(_)) => {
            errs.at(
                v.span(),
                format!("set {} or {}, not both", inline.1, from_file.1),
            );
            None
        }
        (None, None) => {
            if min > 0 {
                errs.at(
                    table,
                    format!("{} or {} is required", inline.1, from_file.1),
                );
            }
            None
        }
    }
}

/// A secret file others can read is the admin's to fix; say so (it still works).
pub(super) fn warn_if_shared(path: &std::path::Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{what} {} can be read by others (mode {:o}): `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
}
