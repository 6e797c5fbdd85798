//! Defense 1: session IDs never travel in URLs.
//!
//! Parameters are removed on raw bytes: only a parameter's *name* is percent-decoded (for
//! the comparison); every byte that is kept is copied exactly as the client sent it, so
//! invalid percent sequences, `+`, empty elements and bytes 0x80-0xFF survive untouched.
//! Nothing is parsed and re-serialized.

/// The outcome of a rewrite that removed at least one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    pub value: Vec<u8>,
    /// Number of parameters removed (query and path parameters, cookieless segments).
    pub removed: usize,
    /// Stripping the path left a segment that is empty, `.` or `..` where the client's path
    /// had none (e.g. `/pub/%2e%2e;jsessionid=x/admin` -> `/pub/%2e%2e/admin`). Envoy
    /// normalized the path *before* this filter and nothing normalizes it again, so such a
    /// path would reach routes, RBAC and the app un-normalized: the request must be refused.
    pub unsafe_path: bool,
}

/// Strips listed parameters from a request target (`:path`); `;` separates query parameters
/// too. `None` when nothing matched; that path does not allocate.
pub fn strip_path(path: &[u8], params: &[String]) -> Option<Stripped> {
    strip_path_with(path, params, true)
}

/// [`strip_path`] with the choice of whether `;` separates query parameters (Rack before 3.0,
/// Perl's CGI.pm) as well as `&`.
pub fn strip_path_with(path: &[u8], params: &[String], query_semicolon: bool) -> Option<Stripped> {
    let (before_fragment, fragment) = split_fragment(path);
    let (p, q) = split_query(before_fragment);
    let in_path = path::count(p, params);
    let removed = in_path + q.map_or(0, |q| count_query(q, params, query_semicolon));
    if removed == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(path.len());
    let unsafe_path = if in_path > 0 {
        path::write(&mut out, p, params)
    } else {
        out.extend_from_slice(p);
        false
    };
    if let Some(q) = q {
        write_query(&mut out, q, params, query_semicolon);
    }
    if let Some(f) = fragment {
        out.push(b'#');
        out.extend_from_slice(f);
    }
    Some(Stripped {
        value: out,
        removed,
        unsafe_path,
    })
}

/// Strips listed parameters from a `Referer` value: an absolute URL (`scheme://authority`
/// kept verbatim) or, failing that, a path.
pub fn strip_referer(referer: &[u8], params: &[String], query_semicolon: bool) -> Option<Stripped> {
    let start = authority_end(referer);
    let (head, rest) = referer.split_at_checked(start)?;
    let s = strip_path_with(rest, params, query_semicolon)?;
    let mut value = Vec::with_capacity(head.len() + s.value.len());
    value.extend_from_slice(head);
    value.extend_from_slice(&s.value);
    Some(Stripped {
        value,
        removed: s.removed,
        unsafe_path: false,
    })
}

#[doc(hidden)]
pub mod oracle;
mod path;

/// Whether a raw (possibly percent-encoded) parameter name is one of `params` (lowercase).
pub fn name_matches(raw: &[u8], params: &[String]) -> bool {
    // Decoding never lengthens a name, so shorter raw names cannot match.
    params.iter().any(|p| {
        let t = p.as_bytes();
        t.len() <= raw.len() && decoded_eq_ignore_case(raw, t)
    })
}

/// Makes a clean path safe for a `Location` header: bytes outside visible ASCII are
/// percent-encoded (a browser would send them encoded anyway).
pub fn location_value(path: &[u8]) -> String {
    // `//evil.example/` or `/\evil.example/` in a Location is another host: collapse the
    // leading run of slashes and backslashes to one slash, so the redirect stays on this site.
    let start = path
        .iter()
        .position(|b| !matches!(b, b'/' | b'\\'))
        .unwrap_or(path.len());
    let rest = path.get(start..).unwrap_or(&[]);
    let mut s = String::with_capacity(path.len() + 1);
    if start > 0 || !path.starts_with(b"/") {
        s.push('/');
    }
    for &b in rest {
        if (0x21..0x7f).contains(&b) {
            s.push(char::from(b));
        } else {
            s.push('%');
            s.push(hex_digit(b >> 4));
            s.push(hex_digit(b & 0x0f));
        }
    }
    s
}

fn hex_digit(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
}

fn authority_end(v: &[u8]) -> usize {
    let Some(scheme_end) = v.windows(3).position(|w| w == b"://") else {
        return 0;
    };
    // A scheme is letters, digits, '+', '-', '.'; otherwise "://" is inside a path.
    let scheme_ok = v.get(..scheme_end).is_some_and(|s| {
        !s.is_empty()
            && s.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
    });
    if !scheme_ok {
        return 0;
    }
    let after = scheme_end + 3;
    let tail = v.get(after..).unwrap_or(&[]);
    after
        + tail
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(tail.len())
}

fn split_fragment(v: &[u8]) -> (&[u8], Option<&[u8]>) {
    match v.iter().position(|&b| b == b'#') {
        Some(i) => (v.get(..i).unwrap_or(v), Some(v.get(i + 1..).unwrap_or(&[]))),
        None => (v, None),
    }
}

fn split_query(v: &[u8]) -> (&[u8], Option<&[u8]>) {
    match v.iter().position(|&b| b == b'?') {
        Some(i) => (v.get(..i).unwrap_or(v), Some(v.get(i + 1..).unwrap_or(&[]))),
        None => (v, None),
    }
}

pub(crate) fn param_name(param: &[u8]) -> &[u8] {
    match param.iter().position(|&b| b == b'=') {
        Some(i) => param.get(..i).unwrap_or(param),
        None => param,
    }
}

fn is_query_sep(b: u8, semicolon: bool) -> bool {
    b == b'&' || (semicolon && b == b';')
}

fn count_query(q: &[u8], params: &[String], semicolon: bool) -> usize {
    q.split(|&b| is_query_sep(b, semicolon))
        .filter(|p| name_matches(param_name(p), params))
        .count()
}

/// Writes the kept query parameters, each after the separator the client put before it
/// (`&` or `;`), the first after `?`.
fn write_query(out: &mut Vec<u8>, q: &[u8], params: &[String], semicolon: bool) {
    let mut first = true;
    let mut sep = b'&';
    let mut rest = q;
    loop {
        let end = rest
            .iter()
            .position(|&b| is_query_sep(b, semicolon))
            .unwrap_or(rest.len());
        let p = rest.get(..end).unwrap_or(&[]);
        if !name_matches(param_name(p), params) {
            out.push(if first { b'?' } else { sep });
            first = false;
            out.extend_from_slice(p);
        }
        match rest.get(end) {
            Some(&b) => {
                sep = b;
                rest = rest.get(end + 1..).unwrap_or(&[]);
            }
            None => break,
        }
    }
}

pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `raw` on the fly and compares it, ASCII case-insensitively, with the
/// lowercase `target`. Invalid percent sequences compare as their literal bytes.
fn decoded_eq_ignore_case(raw: &[u8], target: &[u8]) -> bool {
    let mut i = 0;
    let mut t = target.iter();
    let mut leading = true;
    while let Some(&b) = raw.get(i) {
        let hi = raw.get(i + 1).copied().and_then(hex_val);
        let lo = raw.get(i + 2).copied().and_then(hex_val);
        let (c, used) = match (b, hi, lo) {
            (b'%', Some(h), Some(l)) => ((h << 4) | l, 3),
            (b'+', _, _) => (b' ', 1),
            _ => (b, 1),
        };
        i += used;
        // As PHP reads names: leading spaces are dropped and a NUL ends the name, so
        // `?%20PHPSESSID=` and `?PHPSESSID%00x=` reach `$_GET['PHPSESSID']`.
        if leading && c == b' ' {
            continue;
        }
        leading = false;
        if c == 0 {
            break;
        }
        match t.next() {
            Some(&want) if c.to_ascii_lowercase() == want => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
pub(crate) mod tests {
    use super::*;
    use crate::config::DEFAULT_URL_PARAMS;
    use proptest::prelude::*;
    use serde::Deserialize;

    /// The shared table: the same cases run here and through the real Envoy
    /// (tests/url_defense.rs).
    #[derive(Deserialize)]
    pub struct Case {
        pub name: String,
        pub path: String,
        pub want: String,
        pub removed: usize,
        #[serde(default)]
        pub refused: bool,
    }

    pub fn cases() -> Vec<Case> {
        serde_json::from_str(include_str!("../../tests/cases/url_strip.json")).unwrap()
    }

    pub fn default_params() -> Vec<String> {
        let mut v: Vec<String> = DEFAULT_URL_PARAMS.iter().map(|s| s.to_string()).collect();
        v.push("__host-session".into());
        v
    }

    #[test]
    fn shared_table_of_url_cases() {
        let params = default_params();
        for c in cases() {
            let got = strip_path(c.path.as_bytes(), &params);
            match got {
                None => assert_eq!(
                    (c.path.as_str(), 0),
                    (c.want.as_str(), c.removed),
                    "{}: unchanged, but the table expects a rewrite",
                    c.name
                ),
                Some(s) => {
                    assert_eq!(s.unsafe_path, c.refused, "{}", c.name);
                    if !c.refused {
                        assert_eq!(String::from_utf8_lossy(&s.value), c.want, "{}", c.name);
                    }
                    assert_eq!(s.removed, c.removed, "{}", c.name);
                }
            }
        }
    }

    #[test]
    fn hostile_urls_get_a_defined_outcome() {
        let params = default_params();
        let cases: Vec<(&str, Vec<u8>, Option<Vec<u8>>)> = vec![
            (
                "bytes 0x80-0xFF kept verbatim",
                b"/caf\xc3\xa9;jsessionid=1?\xff=\xfe&phpsessid=2".to_vec(),
                Some(b"/caf\xc3\xa9?\xff=\xfe".to_vec()),
            ),
            ("semicolon storm", b"/a;;;;;;/b;;=;=;".to_vec(), None),
            (
                "equals storm",
                b"/?====&jsessionid====".to_vec(),
                Some(b"/?====".to_vec()),
            ),
            ("truncated percent", b"/?jsessionid%".to_vec(), None),
            ("percent at end of name", b"/?jsessionid%4".to_vec(), None),
        ];
        for (name, input, want) in cases {
            assert_eq!(strip_path(&input, &params).map(|s| s.value), want, "{name}");
        }
        let long: Vec<u8> = [
            b"/?".to_vec(),
            b"a=1&".repeat(15_000),
            b"jsessionid=x".to_vec(),
        ]
        .concat();
        let s = strip_path(&long, &params).unwrap();
        assert_eq!(s.removed, 1);
        assert_eq!(s.value.len(), long.len() - "&jsessionid=x".len());
        let many: Vec<u8> = [b"/?".to_vec(), b"jsessionid=x&".repeat(5000)].concat();
        let s = strip_path(&many, &params).unwrap();
        assert_eq!(s.removed, 5000);
        assert_eq!(
            s.value, b"/?",
            "the trailing empty element is not a parameter and stays"
        );
    }

    #[test]
    fn referer_is_scrubbed_with_authority_kept() {
        let params = default_params();
        let cases: Vec<(&str, &str, Option<&str>)> = vec![
            (
                "absolute url",
                "https://shop.example/cart;jsessionid=AB?x=1&JSESSIONID=CD",
                Some("https://shop.example/cart?x=1"),
            ),
            (
                "query right after authority",
                "https://h.example?phpsessid=1",
                Some("https://h.example"),
            ),
            ("no parameters", "https://h.example/a?b=c", None),
            ("relative", "/a?sessionid=1&b", Some("/a?b")),
            (
                "authority lookalike in path",
                "/x://y/?jsessionid=1",
                Some("/x://y/"),
            ),
        ];
        for (name, input, want) in cases {
            let got = strip_referer(input.as_bytes(), &params, true)
                .map(|s| String::from_utf8(s.value).unwrap());
            assert_eq!(got.as_deref(), want, "{name}");
        }
    }

    #[test]
    fn location_is_ascii_and_stays_on_this_site() {
        assert_eq!(location_value(b"/caf\xc3\xa9 x?a=1"), "/caf%C3%A9%20x?a=1");
        assert_eq!(location_value(b"//evil.example/x"), "/evil.example/x");
        assert_eq!(location_value(b"/\\evil.example/"), "/evil.example/");
        assert_eq!(location_value(b"/\\/\\/"), "/");
        assert_eq!(location_value(b"?a=1"), "/?a=1");
    }

    #[test]
    fn names_match_as_php_reads_them() {
        let params = default_params();
        for (raw, want) in [
            ("%20PHPSESSID", true),
            ("+PHPSESSID", true),
            ("++%20phpsessid", true),
            ("PHPSESSID%00x", true),
            ("PHP+SESSID", false),
            ("PHPSESSID+", false),
            ("xPHPSESSID", false),
        ] {
            assert_eq!(name_matches(raw.as_bytes(), &params), want, "{raw}");
        }
    }

    fn arb_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"jsessionid".to_vec()),
            Just(b"JSESSIONID".to_vec()),
            Just(b"%6Asessionid".to_vec()),
            Just(b"phpsessid".to_vec()),
            Just(b"a".to_vec()),
            Just(b"=".to_vec()),
            Just(b";".to_vec()),
            Just(b"&".to_vec()),
            Just(b"?".to_vec()),
            Just(b"/".to_vec()),
            Just(b".".to_vec()),
            Just(b"%2e".to_vec()),
            Just(b"%2F".to_vec()),
            Just(b"\\".to_vec()),
            Just(b"(S(x))".to_vec()),
            Just(b"%".to_vec()),
            Just(b"%zz".to_vec()),
            Just(b"+".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..3),
        ]
    }

    fn contains_listed(path: &[u8], params: &[String]) -> bool {
        let (p, q) = split_query(split_fragment(path).0);
        path::count(p, params) > 0 || q.is_some_and(|q| count_query(q, params, true) > 0)
    }

    proptest! {
        #[test]
        fn stripping_is_idempotent_and_complete(pieces in proptest::collection::vec(arb_piece(), 0..40)) {
            let params = default_params();
            let path: Vec<u8> = pieces.concat();
            let once = strip_path(&path, &params).map(|s| s.value).unwrap_or_else(|| path.clone());
            prop_assert!(!contains_listed(&once, &params));
            prop_assert!(strip_path(&once, &params).is_none(), "twice == once");
        }

        #[test]
        fn stripping_never_creates_a_dot_or_empty_segment(pieces in proptest::collection::vec(arb_piece(), 0..40)) {
            let params = default_params();
            let path: Vec<u8> = [b"/".to_vec(), pieces.concat()].concat();
            if let Some(s) = strip_path(&path, &params) {
                if !s.unsafe_path {
                    prop_assert!(!oracle::creates_dot_or_empty(&path, &s.value), "{:?} -> {:?}",
                        String::from_utf8_lossy(&path), String::from_utf8_lossy(&s.value));
                }
            }
        }

        #[test]
        fn other_elements_are_kept_byte_for_byte(
            keep in proptest::collection::vec("[a-z0-9%+._~-]{0,8}(=[^&#;/?]{0,8})?", 1..10),
            drop_at in proptest::collection::vec(any::<bool>(), 1..10),
        ) {
            let params = default_params();
            let mut elems = Vec::new();
            for (i, k) in keep.iter().enumerate() {
                if drop_at.get(i).copied().unwrap_or(false) {
                    elems.push("jsessionid=zz".to_string());
                }
                elems.push(k.clone());
            }
            let kept: Vec<&String> = keep.iter().filter(|k| !name_matches(param_name(k.as_bytes()), &params)).collect();
            let path = format!("/p?{}", elems.join("&"));
            let out = strip_path(path.as_bytes(), &params).map(|s| s.value).unwrap_or_else(|| path.clone().into_bytes());
            let want = if kept.is_empty() { "/p".to_string() } else {
                format!("/p?{}", kept.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("&"))
            };
            prop_assert_eq!(String::from_utf8_lossy(&out).to_string(), want);
        }
    }
}
