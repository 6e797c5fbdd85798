//! The path part of the URL defense: `;name=value` path parameters and ASP.NET cookieless
//! segments (`/(S(<id>))/`), removed on raw bytes, and the check that removing them did not
//! create a segment that Envoy's normalization never saw.
//!
//! Envoy normalizes `:path` (`normalize_path`, `merge_slashes`) *before* any filter, and
//! nothing normalizes it after. Its canonicalizer decodes `%2e` but does not see `..;x` as a
//! dot-segment, nor `/;x/` as `//`. Removing `;jsessionid=x` from those would hand routes,
//! RBAC and every backend a `..` or `//` that was never normalized, so [`write`] reports it and
//! the request is refused.

use super::{hex_val, name_matches, param_name};

/// Path parameters and cookieless segments in `path` that are session carriers.
pub(crate) fn count(path: &[u8], params: &[String]) -> usize {
    path.split(|&b| b == b'/')
        .enumerate()
        .map(|(i, seg)| {
            if i > 0 && is_cookieless(base(seg)) {
                return 1;
            }
            seg.split(|&b| b == b';')
                .skip(1)
                .filter(|p| name_matches(param_name(p), params))
                .count()
        })
        .sum()
}

/// A segment up to its first `;`: a cookieless segment goes with its path parameters, so that
/// stripping parameters can never turn what is left into one (stripping twice == once).
fn base(seg: &[u8]) -> &[u8] {
    seg.split(|&b| b == b';').next().unwrap_or(seg)
}

/// Writes `path` without session carriers; returns whether the result must be refused (see
/// the module comment). Kept bytes are copied exactly as sent.
pub(crate) fn write(out: &mut Vec<u8>, path: &[u8], params: &[String]) -> bool {
    let start = out.len();
    let last = path.split(|&b| b == b'/').count().saturating_sub(1);
    let mut unsafe_path = false;
    let mut segment_removed = false;
    for (i, seg) in path.split(|&b| b == b'/').enumerate() {
        if i > 0 && is_cookieless(base(seg)) {
            segment_removed = true;
            continue;
        }
        if i > 0 {
            out.push(b'/');
        }
        let seg_start = out.len();
        let mut parts = seg.split(|&b| b == b';');
        if let Some(base) = parts.next() {
            out.extend_from_slice(base);
        }
        for p in parts {
            if !name_matches(param_name(p), params) {
                out.push(b';');
                out.extend_from_slice(p);
            }
        }
        let written = out.get(seg_start..).unwrap_or(&[]);
        // An emptied last segment is a trailing slash (`/;jsessionid=x` -> `/`): nothing
        // follows it to merge with or climb from.
        if written != seg && written.is_empty() && i != last {
            unsafe_path = true;
        }
    }
    if out.len() == start && !path.is_empty() {
        if segment_removed {
            // Only cookieless segments: the root.
            out.push(b'/');
        } else {
            // Not a path any more (the client's had no leading `/` either).
            unsafe_path = true;
        }
    }
    let changed = out.get(start..).unwrap_or(&[]) != path || segment_removed;
    unsafe_path || (changed && has_dot_segment(out.get(start..).unwrap_or(&[])))
}

/// Whether any segment is `.` or `..` (literal or `%2e`, any case), as a backend may see it:
/// segments split on `/`, `\` and encoded slashes, each up to its first `;` (Tomcat-style
/// servers drop path parameters before resolving dot-segments).
fn has_dot_segment(path: &[u8]) -> bool {
    let mut seg_start = 0;
    let mut i = 0;
    while i <= path.len() {
        let sep = match path.get(i) {
            None => Some(0),
            Some(b'/' | b'\\') => Some(1),
            Some(b'%') if is_encoded_slash(path.get(i + 1..i + 3)) => Some(3),
            Some(_) => None,
        };
        match sep {
            Some(n) => {
                if is_dots(path.get(seg_start..i).unwrap_or(&[])) {
                    return true;
                }
                i += n.max(1);
                seg_start = i;
            }
            None => i += 1,
        }
    }
    false
}

fn is_encoded_slash(hex: Option<&[u8]>) -> bool {
    matches!(hex, Some([b'2', b'f' | b'F'] | [b'5', b'c' | b'C']))
}

/// `.` or `..` once `%2e` is decoded, looking only before the first `;`.
fn is_dots(seg: &[u8]) -> bool {
    let base = seg.split(|&b| b == b';').next().unwrap_or(&[]);
    let mut dots = 0;
    let mut i = 0;
    while let Some(&b) = base.get(i) {
        let encoded_dot = b == b'%'
            && base.get(i + 1) == Some(&b'2')
            && matches!(base.get(i + 2), Some(b'e' | b'E'));
        if b == b'.' {
            i += 1;
        } else if encoded_dot {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

/// An ASP.NET cookieless-state segment: only `(X(value))` groups (`%28`/`%29` count as
/// parentheses), at least one of them `S` (session), `A` (anonymous ID) or `F` (forms
/// authentication ticket). ASP.NET reads these before routing; no ordinary path looks like one.
pub(crate) fn is_cookieless(seg: &[u8]) -> bool {
    let mut bytes = Decoded { raw: seg, i: 0 };
    let mut carrier = false;
    let mut groups = 0;
    loop {
        match bytes.next() {
            None => return groups > 0 && carrier,
            Some(b'(') => {}
            Some(_) => return false,
        }
        let Some(letter) = bytes.next().filter(u8::is_ascii_alphabetic) else {
            return false;
        };
        carrier |= matches!(letter.to_ascii_uppercase(), b'S' | b'A' | b'F');
        if bytes.next() != Some(b'(') {
            return false;
        }
        loop {
            match bytes.next() {
                Some(b')') => break,
                Some(b'(') | None => return false,
                Some(_) => {}
            }
        }
        if bytes.next() != Some(b')') {
            return false;
        }
        groups += 1;
    }
}

/// Bytes with `%28`/`%29` read as parentheses (nothing else is decoded).
struct Decoded<'a> {
    raw: &'a [u8],
    i: usize,
}

impl Iterator for Decoded<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let b = *self.raw.get(self.i)?;
        if b == b'%' {
            let hi = self.raw.get(self.i + 1).copied().and_then(hex_val);
            let lo = self.raw.get(self.i + 2).copied().and_then(hex_val);
            if let (Some(2), Some(l @ (8 | 9))) = (hi, lo) {
                self.i += 3;
                return Some(if l == 8 { b'(' } else { b')' });
            }
        }
        self.i += 1;
        Some(b)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_in_every_spelling() {
        for p in [
            "/a/../b",
            "/a/./b",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "/a/..;x/b",
            "/a\\..\\b",
            "/a%2f..%2Fb",
            "/a%5c.%5Cb",
            "/..",
        ] {
            assert!(has_dot_segment(p.as_bytes()), "{p}");
        }
        for p in [
            "/a/.../b",
            "/a/.b/c",
            "/a/b.",
            "/a/%2e%2e%2e",
            "/",
            "",
            "/a;..=1",
        ] {
            assert!(!has_dot_segment(p.as_bytes()), "{p}");
        }
    }

    #[test]
    fn cookieless_segments() {
        for s in [
            "(S(abc))",
            "(s(abc))",
            "(A(x))(S(y))(F(z))",
            "%28S%28abc%29%29",
            "(X(1))(F(t))",
        ] {
            assert!(is_cookieless(s.as_bytes()), "{s}");
        }
        for s in [
            "(X(1))",
            "(S(a)",
            "S(a)",
            "(S(a))x",
            "(SS(a))",
            "(S(a(b)))",
            "",
            "()",
        ] {
            assert!(!is_cookieless(s.as_bytes()), "{s}");
        }
    }
}
