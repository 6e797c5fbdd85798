//! Cookie names as the apps' parsers read them: a crumb of a `Cookie` header is an app
//! session cookie (`app_cookies`) if **any** known parser could read a listed name out of it.
//!
//! Parsers disagree on what a crumb is. Django and Werkzeug decode the header as UTF-8 and
//! `str.strip()` each name (Unicode whitespace, and U+001C-U+001F); .NET trims with
//! `Char.IsWhiteSpace` and compares names with `OrdinalIgnoreCase` (`ı` and `ſ` fold to `I`,
//! `S`); Java's `equalsIgnoreCase` also folds the Kelvin sign to `k`; Rack < 2.2 splits on
//! `,` as well as `;` and percent-decodes names (`+` as space); PHP < 7.4.11 percent-decodes
//! names, and every PHP turns `.`, space and `[` into `_` (and `name[x]` into an array under
//! `name`); Python's `SimpleCookie` (Beaker, old Werkzeug) ends a cookie at whitespace. So a
//! crumb is listed when its name, or a name that a `,` or whitespace starts inside it, reads as
//! a listed name after: trimming whitespace (ASCII, Unicode White_Space in UTF-8, U+FEFF, the
//! Latin-1 bytes 0x85 and 0xA0, every control byte), one percent-decoding, the case folds above
//! and PHP's rewriting. The rule errs on the side of "listed": a listed crumb not bound to the
//! session is removed. docs/app-cookies.md lists the parsers and versions it covers.
//!
//! Runs for every crumb of every request with cookies: a crumb of plain ASCII is compared in
//! place; only a crumb with whitespace, `,`, `%`, `+` or non-ASCII bytes takes the slow path.
//! Here, in the configuration crate (optimized for size, see Cargo.toml), because its tables
//! and slow path are cold code that the filter's crate would build at opt-level 3.

use crate::Config;

/// Whether any known parser could read a listed name out of the crumb `name=value`: the name
/// itself; what follows a separator (`,` or whitespace) inside the name (`x,_session_id`, `x
/// _session_id`); what follows a separator inside the value, up to its `=` (`a=1
/// beaker.session.id=A`).
pub fn suspect(cfg: &Config, name: &[u8], value: &[u8]) -> bool {
    name_listed(cfg, name)
        || after_separators(name, |rest| name_listed(cfg, rest))
        || (!plain_value(value)
            && after_separators(value, |rest| {
                let eq = rest.iter().position(|&b| b == b'=');
                eq.and_then(|i| rest.get(..i))
                    .is_some_and(|n| name_listed(cfg, n))
            }))
}

/// A crumb that is a listed cookie as it stands: printable ASCII, no `%` or `+` in the name,
/// no separator in the value (the only kind `app_cookies.adopt_until` adopts).
pub fn adoptable(cfg: &Config, name: &[u8], value: &[u8]) -> bool {
    name.iter()
        .all(|&b| b.is_ascii_graphic() && b != b'%' && b != b'+')
        && compare(cfg, name)
        && plain_value(value)
}

/// Whether the name, read whole, is a listed one under the rules above (also what the
/// response side uses for an upstream's `Set-Cookie`).
pub fn name_listed(cfg: &Config, name: &[u8]) -> bool {
    let name = trim(name);
    compare(cfg, name)
        || (name
            .iter()
            .any(|&b| b == b'%' || b == b'+' || !b.is_ascii())
            && compare(cfg, trim(&normalize(name))))
}

/// Whether `f` holds for what follows any separator in `b`.
fn after_separators(b: &[u8], mut f: impl FnMut(&[u8]) -> bool) -> bool {
    let mut i = 0;
    while let Some(rest) = b.get(i..).filter(|r| !r.is_empty()) {
        let n = if rest.first() == Some(&b',') {
            1
        } else {
            space_len(rest)
        };
        if n > 0 && f(rest.get(n..).unwrap_or_default()) {
            return true;
        }
        i += n.max(1);
    }
    false
}

/// Whether `name` is listed: ASCII case-insensitively, as PHP rewrites it, and for a PHP
/// array name (`PHPSESSID[x]`) the part before `[`.
fn compare(cfg: &Config, name: &[u8]) -> bool {
    let array = name
        .iter()
        .position(|&b| b == b'[')
        .filter(|&i| name.get(i..).is_some_and(|r| r.contains(&b']')))
        .and_then(|i| name.get(..i));
    cfg.app_cookies
        .names
        .iter()
        .any(|n| same(n.as_bytes(), name) || array.is_some_and(|a| same(n.as_bytes(), a)))
}

fn same(listed: &[u8], name: &[u8]) -> bool {
    listed.len() == name.len() && listed.iter().zip(name).all(|(&a, &b)| canon(a) == canon(b))
}

/// A name byte as PHP's `$_COOKIE` and ASCII case-insensitive comparison read it.
fn canon(b: u8) -> u8 {
    match b {
        b'.' | b' ' | b'[' => b'_',
        b => b.to_ascii_lowercase(),
    }
}

/// The length of the whitespace character at the start of `b` (0: none). Every control byte
/// and space (Java's `trim()`), 0x85 and 0xA0 alone (Latin-1 decoders), and in UTF-8: U+0085,
/// U+00A0, U+1680, U+180E, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF.
fn space_len(b: &[u8]) -> usize {
    match b {
        [0..=0x20 | 0x7f, ..] => 1,
        [0xc2, 0x85 | 0xa0, ..] => 2,
        [0x85 | 0xa0, ..] => 1,
        [0xe1, 0x9a, 0x80, ..] | [0xe1, 0xa0, 0x8e, ..] => 3,
        [0xe2, 0x80, 0x80..=0x8a | 0xa8 | 0xa9 | 0xaf, ..] => 3,
        [0xe2, 0x81, 0x9f, ..] | [0xe3, 0x80, 0x80, ..] | [0xef, 0xbb, 0xbf, ..] => 3,
        _ => 0,
    }
}

fn trim(mut b: &[u8]) -> &[u8] {
    loop {
        let n = space_len(b);
        if n == 0 {
            break;
        }
        b = b.get(n..).unwrap_or_default();
    }
    // At the end: the longest whitespace character that ends `b`.
    while let Some(n) = (1..=3)
        .rev()
        .find(|&n| b.len() >= n && space_len(b.get(b.len() - n..).unwrap_or_default()) == n)
    {
        b = b.get(..b.len() - n).unwrap_or_default();
    }
    b
}

/// A value that no parser splits: printable ASCII without `,`.
fn plain_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b.is_ascii_graphic() && b != b',')
}

/// One pass: one percent-decoding, `+` as space (Rack's and PHP's `urldecode`; a malformed
/// escape stays as it is), and the non-ASCII letters that case-insensitive comparisons fold
/// into ASCII ones: `ı` (U+0131) and `ſ` (U+017F) upper-case to `I` and `S` (.NET
/// `OrdinalIgnoreCase`, Java), the Kelvin sign (U+212A) lower-cases to `k` (Java
/// `equalsIgnoreCase`).
fn normalize(b: &[u8]) -> Vec<u8> {
    let hex = |c: &u8| (*c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(rest) = b.get(i..).filter(|r| !r.is_empty()) {
        let (byte, n) = match rest {
            [b'%', h, l, ..] => match (hex(h), hex(l)) {
                (Some(h), Some(l)) => ((h << 4) | l, 3),
                _ => (b'%', 1),
            },
            [b'+', ..] => (b' ', 1),
            [0xc4, 0xb1, ..] => (b'i', 2),
            [0xc5, 0xbf, ..] => (b's', 2),
            [0xe2, 0x84, 0xaa, ..] => (b'k', 3),
            [c, ..] => (*c, 1),
            [] => break,
        };
        out.push(byte);
        i += n;
    }
    out
}

#[cfg(test)]
#[path = "cookie_names_tests.rs"]
mod tests;
