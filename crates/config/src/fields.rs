//! Field rules shared by both validation files (`validate.rs`, `validate_sessions.rs`):
//! a leaf module, so that `validate` uses `validate_sessions` and both use this, and nothing
//! points back up.

use super::ConfigError;

const MAX_NAME_LEN: usize = 128;

/// Maps a string setting to one of `choices`; absent gives the first.
pub(super) fn choice<T: Copy>(
    field: &str,
    value: Option<&str>,
    choices: &[(&str, T)],
    problem: &str,
) -> Result<T, ConfigError> {
    let mut found = choices
        .iter()
        .filter(|(name, _)| value.is_none_or(|v| v == *name));
    found
        .next()
        .map(|(_, t)| *t)
        .ok_or_else(|| ConfigError::new(field, problem))
}

/// Keeps the first occurrence of each name (a hand-rolled dedup: sorting pulls in several
/// KiB of code for a list of a dozen names).
pub(super) fn dedup(names: Vec<String>) -> Vec<String> {
    let mut unique: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    unique
}

/// Printable ASCII without space.
pub(super) fn is_printable(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
}

/// Names of at most [`MAX_NAME_LEN`] bytes, each accepted by `byte_ok`, lowercased.
pub(super) fn checked_names(
    field: &str,
    names: Vec<String>,
    byte_ok: fn(u8) -> bool,
    what: &str,
) -> Result<Vec<String>, ConfigError> {
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            if n.is_empty() || n.len() > MAX_NAME_LEN || !n.bytes().all(byte_ok) {
                Err(ConfigError::new(
                    format!("{field}[{i}]"),
                    format!("must be 1 to {MAX_NAME_LEN} {what} characters"),
                ))
            } else {
                Ok(n.to_ascii_lowercase())
            }
        })
        .collect()
}
