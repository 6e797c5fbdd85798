//! The request `Cookie` header: find the mesh cookie, and remove it from what upstreams get.
//!
//! A request may carry several `Cookie` headers (HTTP/1) or one joined from HTTP/2 crumbs;
//! both are handled as a list of header values. Cookie names are matched ASCII
//! case-insensitively: a case variant of the mesh cookie's name (`__host-session`) is what a
//! sibling subdomain can plant in browsers that enforce prefixes case-sensitively, so it is
//! treated as a mesh cookie (and fails verification, since the MAC covers the exact name).

/// One `name=value` pair of a Cookie header, as borrowed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crumb<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// The mesh cookies found in a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    /// How many crumbs carried the mesh cookie's name (any case).
    pub count: usize,
    /// The first of them.
    pub first: Option<Crumb<'a>>,
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or(&[])
}

fn crumb(piece: &[u8]) -> Option<Crumb<'_>> {
    let piece = trim(piece);
    let eq = piece.iter().position(|&b| b == b'=')?;
    Some(Crumb {
        name: trim(piece.get(..eq)?),
        value: trim(piece.get(eq + 1..)?),
    })
}

/// Finds the mesh cookie `name` in every Cookie header value. Does not allocate.
pub fn find<'a>(headers: &[&'a [u8]], name: &[u8]) -> Found<'a> {
    let mut found = Found::default();
    for h in headers {
        for piece in h.split(|&b| b == b';') {
            if let Some(c) = crumb(piece) {
                if c.name.eq_ignore_ascii_case(name) {
                    found.count += 1;
                    if found.first.is_none() {
                        found.first = Some(c);
                    }
                }
            }
        }
    }
    found
}

/// A Cookie header value with the mesh cookie removed: `Keep` when it had none, `Drop` when
/// nothing else remains, otherwise the value with every other crumb byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    Keep,
    Drop,
    Replace(Vec<u8>),
}

pub fn without_mesh_cookie(header: &[u8], name: &[u8]) -> Rewrite {
    retain(header, |c| !c.name.eq_ignore_ascii_case(name))
}

/// Every `name=value` crumb of a Cookie header value (pieces without `=` skipped).
pub fn crumbs(header: &[u8]) -> impl Iterator<Item = Crumb<'_>> {
    header.split(|&b| b == b';').filter_map(crumb)
}

/// A Cookie header value without the crumbs `keep` refuses; every kept byte as sent.
/// `keep` is called once per crumb, in order. Pieces without `=` are always kept.
pub fn retain(header: &[u8], mut keep: impl FnMut(&Crumb<'_>) -> bool) -> Rewrite {
    let mut drop_at: Vec<usize> = Vec::new();
    for (i, piece) in header.split(|&b| b == b';').enumerate() {
        if crumb(piece).is_some_and(|c| !keep(&c)) {
            drop_at.push(i);
        }
    }
    if drop_at.is_empty() {
        return Rewrite::Keep;
    }
    rebuild(header, &drop_at)
}

fn rebuild(header: &[u8], drop_at: &[usize]) -> Rewrite {
    let mut out = Vec::with_capacity(header.len());
    let mut first_removed = false;
    let mut kept_any = false;
    // `drop_at` is ascending: one pass, whatever the number of crumbs.
    let mut drops = drop_at.iter().peekable();
    for (i, piece) in header.split(|&b| b == b';').enumerate() {
        if drops.next_if(|&&d| d == i).is_some() {
            if i == 0 {
                first_removed = true;
            }
            continue;
        }
        if kept_any {
            out.push(b';');
        }
        kept_any = true;
        out.extend_from_slice(piece);
    }
    // "sid=x; a=1" must become "a=1", not " a=1".
    let out = if first_removed {
        let start = out
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t'))
            .unwrap_or(out.len());
        out.get(start..).unwrap_or(&[]).to_vec()
    } else {
        out
    };
    if trim(&out).iter().all(|&b| b == b';') {
        Rewrite::Drop
    } else {
        Rewrite::Replace(out)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const N: &[u8] = b"__Host-session";

    #[test]
    fn finds_mesh_cookies_across_headers_and_crumbs() {
        let cases: Vec<(&str, Vec<&[u8]>, usize, Option<&[u8]>)> = vec![
            ("none", vec![b"a=1; b=2"], 0, None),
            (
                "one",
                vec![b"a=1; __Host-session=v1.x; b=2"],
                1,
                Some(b"v1.x"),
            ),
            (
                "two in one header (HTTP/2 crumbs joined)",
                vec![b"__Host-session=A; __Host-session=B"],
                2,
                Some(b"A"),
            ),
            (
                "two headers (HTTP/1)",
                vec![b"__Host-session=A", b"x=1; __Host-session=B"],
                2,
                Some(b"A"),
            ),
            (
                "case variant counts",
                vec![b"__host-session=A"],
                1,
                Some(b"A"),
            ),
            (
                "spaces around = and ;",
                vec![b" a=1 ;  __Host-session = A ;"],
                1,
                Some(b"A"),
            ),
            (
                "name as a value does not count",
                vec![b"x=__Host-session=A"],
                0,
                None,
            ),
            (
                "prefix of another name does not count",
                vec![b"__Host-session2=A"],
                0,
                None,
            ),
            (
                "crumb without = does not count",
                vec![b"__Host-session"],
                0,
                None,
            ),
            (
                "quoted value is kept raw",
                vec![b"__Host-session=\"A\""],
                1,
                Some(b"\"A\""),
            ),
            (
                "bytes 0x80-0xFF",
                vec![b"\xff=\xfe; __Host-session=\xc3\xa9"],
                1,
                Some(b"\xc3\xa9"),
            ),
        ];
        for (name, headers, count, first) in cases {
            let f = find(&headers, N);
            assert_eq!(f.count, count, "{name}");
            assert_eq!(f.first.map(|c| c.value), first, "{name}");
        }
    }

    #[test]
    fn removes_mesh_cookie_and_keeps_others_byte_for_byte() {
        let cases: Vec<(&str, &[u8], Rewrite)> = vec![
            ("no mesh cookie", b"a=1;b=2", Rewrite::Keep),
            ("only the mesh cookie", b"__Host-session=A", Rewrite::Drop),
            (
                "middle",
                b"a=1; __Host-session=A; b=2",
                Rewrite::Replace(b"a=1; b=2".to_vec()),
            ),
            (
                "first",
                b"__Host-session=A; b=2",
                Rewrite::Replace(b"b=2".to_vec()),
            ),
            (
                "last",
                b"a=1;__Host-session=A",
                Rewrite::Replace(b"a=1".to_vec()),
            ),
            (
                "odd spacing of others kept",
                b"a=1 ;b= 2;__Host-session=A;  c=\"q\"",
                Rewrite::Replace(b"a=1 ;b= 2;  c=\"q\"".to_vec()),
            ),
            (
                "duplicates all removed",
                b"__Host-session=A; x=1; __HOST-SESSION=B",
                Rewrite::Replace(b"x=1".to_vec()),
            ),
            (
                "only mesh cookies and separators",
                b"__Host-session=A; ;",
                Rewrite::Drop,
            ),
            (
                "non-ascii others kept",
                b"\xff=\xfe;__Host-session=A",
                Rewrite::Replace(b"\xff=\xfe".to_vec()),
            ),
        ];
        for (name, header, want) in cases {
            assert_eq!(without_mesh_cookie(header, N), want, "{name}");
        }
    }

    proptest! {
        #[test]
        fn rewrite_never_panics_and_never_keeps_the_mesh_cookie(h in proptest::collection::vec(prop_oneof![
            Just(b"__Host-session=A".to_vec()), Just(b";".to_vec()), Just(b" ".to_vec()), Just(b"a=1".to_vec()),
            Just(b"=".to_vec()), proptest::collection::vec(any::<u8>(), 0..4)], 0..20)) {
            let header = h.concat();
            match without_mesh_cookie(&header, N) {
                Rewrite::Keep => prop_assert_eq!(find(&[&header], N).count, 0),
                Rewrite::Drop => {}
                Rewrite::Replace(v) => prop_assert_eq!(find(&[&v], N).count, 0),
            }
        }
    }
}
