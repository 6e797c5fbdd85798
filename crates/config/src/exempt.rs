//! `exempt.paths`: path prefixes (health checks, static assets) on which the filter mints and
//! re-issues nothing and leaves caching fields alone. Every defense still runs there.
//!
//! Matching is deliberately narrow, so an exemption is never a way to reach another path:
//! the path only (never the query: oauth2-proxy's CVE-2025-54576 matched a route regex
//! against the query), at a segment boundary (`/static` matches `/static` and `/static/x`,
//! never `/statics`), case-sensitive, and a path that an upstream could still resolve
//! elsewhere (a segment starting with `.`, a backslash, a percent-encoded byte) is never
//! exempt.

use super::ConfigError;

const MAX_PATHS: usize = 64;
const MAX_LEN: usize = 256;

/// Validates the prefixes. Errors name the entry (`exempt.paths[2]`), never quote it.
pub(super) fn paths(raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_PATHS {
        return Err(super::validate_sessions::too_many(
            "exempt.paths",
            raw.len(),
            MAX_PATHS,
        ));
    }
    for (i, p) in raw.iter().enumerate() {
        if refusal(p) {
            return Err(ConfigError::new(
                format!("exempt.paths[{i}]"),
                "must be a path prefix: start with /, at most 256 visible ASCII characters, \
                 without .., %, ?, # or \\ (it is matched against the decoded path only)",
            ));
        }
    }
    Ok(raw)
}

fn refusal(p: &str) -> bool {
    let b = p.as_bytes();
    // Bytes, not `str::contains`: the substring searcher costs kilobytes of wasm.
    !p.starts_with('/')
        || b.len() > MAX_LEN
        || !b
            .iter()
            .all(|&c| c.is_ascii_graphic() && !matches!(c, b'%' | b'?' | b'#' | b'\\'))
        || b.windows(2).any(|w| w == b"..")
}

/// Whether `path` (`:path`, after the URL defense; its query is ignored) is under one of
/// `prefixes`, at a segment boundary, and cannot be resolved elsewhere by an upstream.
pub(super) fn matches(prefixes: &[String], path: &[u8]) -> bool {
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let path = path.get(..end).unwrap_or_default();
    prefixes.iter().any(|p| under(p.as_bytes(), path)) && !ambiguous(path)
}

fn under(prefix: &[u8], path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    rest.is_empty() || prefix.ends_with(b"/") || rest.starts_with(b"/")
}

/// A path an upstream might resolve elsewhere: a segment starting with `.` (`.`, `..`, `..;`,
/// also hidden names such as `/.well-known`), a backslash, or any percent-encoded byte (`%2e`,
/// `%2f`, `%5c` and friends; decoding is the upstream's business). Never exempt: such a path
/// gets the ordinary commit rule, which still keeps a `public` response cookie-free.
fn ambiguous(path: &[u8]) -> bool {
    path.iter().any(|&b| b == b'%' || b == b'\\') || path.windows(2).any(|w| w == b"/.")
}
