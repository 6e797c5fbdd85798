#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;
use crate::parse;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn cfg() -> Config {
    let json = format!(
        r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}],"app_cookies":{{"extra_names":["beaker.session.id"]}}}}"#
    );
    parse(json.as_bytes(), &|_| None).unwrap()
}

/// `name=value` split at the first `=`, as the filter's crumb reader does.
fn crumb(c: &[u8]) -> (&[u8], &[u8]) {
    let eq = c.iter().position(|&b| b == b'=').unwrap();
    (&c[..eq], &c[eq + 1..])
}

/// Every crumb here is read as a listed cookie by at least one parser (named).
#[test]
fn crumbs_some_parser_reads_as_a_listed_cookie() {
    let c = cfg();
    let cases: &[(&[u8], &str)] = &[
        (b"sessionid=A", "all"),
        (b"SessionID=A", "case-insensitive parsers"),
        ("\u{2000}sessionid=A".as_bytes(), "Django str.strip"),
        (
            "\u{0085}sessionid=A".as_bytes(),
            "Django str.strip (U+0085)",
        ),
        (
            "\u{00a0}sessionid=A".as_bytes(),
            "Django str.strip (U+00A0)",
        ),
        ("\u{3000}sessionid=A".as_bytes(), "Werkzeug strip (U+3000)"),
        ("sessionid\u{2029}=A".as_bytes(), "Django strip, trailing"),
        ("\u{1680}sessionid=A".as_bytes(), "U+1680"),
        (
            "\u{200a}\u{202f}\u{205f}sessionid=A".as_bytes(),
            "a run of spaces",
        ),
        (
            "\u{feff}sessionid=A".as_bytes(),
            ".NET Framework Trim (BOM)",
        ),
        (b"\x1csessionid=A", "Python isspace U+001C"),
        (b"\x1fsessionid\x0b=A", "Python isspace U+001F, VT"),
        (b"\x85sessionid=A", "Latin-1 decoders: NEL"),
        (b"\xa0sessionid=A", "Latin-1 decoders: NBSP"),
        (b"\x00PHPSESSID=A", "Java trim (controls)"),
        (b"x,_session_id=A", "Rack < 2.2 splits on ,"),
        (b"x, _session_id=A", "Rack < 2.2 splits on , and spaces"),
        (
            b"x _session_id=A",
            "SimpleCookie ends a cookie at whitespace",
        ),
        (
            "x\u{2000}sessionid=A".as_bytes(),
            "a Unicode space as separator",
        ),
        (b"_session%5Fid=A", "Rack < 2.2 decodes names"),
        (b"PHPSESSI%44=A", "PHP < 7.4.11 decodes names"),
        (b"phpsess%69d=A", "decoded, then case"),
        (b"laravel+session=A", "+ as space, then PHP's _"),
        (b"%20PHPSESSID=A", "decoded space, trimmed"),
        (b"%E2%80%80sessionid=A", "decoded Unicode space, trimmed"),
        (b"laravel.session=A", "PHP: . becomes _"),
        (b"laravel[session=A", "PHP: [ becomes _"),
        (b"PHPSESSID[x]=A", "PHP array under PHPSESSID"),
        (
            "ASP.NET_\u{017f}essionId=A".as_bytes(),
            ".NET OrdinalIgnoreCase (long s)",
        ),
        (
            "ASP.NET_Sess\u{0131}onId=A".as_bytes(),
            ".NET OrdinalIgnoreCase (dotless i)",
        ),
        (
            b"a=1 beaker.session.id=A",
            "SimpleCookie: whitespace in a value",
        ),
        (b"a=1\tbeaker.session.id=A", "SimpleCookie: tab in a value"),
        (b"a=1,_session_id=A", "Rack < 2.2: , in a value"),
        (
            b"a=1, laravel_session=A",
            "Rack < 2.2: , and space in a value",
        ),
        (
            "a=1\u{3000}sessionid=A".as_bytes(),
            "a Unicode space in a value",
        ),
        (b"a=x y,z PHPSESSI%44=A", "decoded after a split"),
    ];
    for (crumb_bytes, parser) in cases {
        let (name, value) = crumb(crumb_bytes);
        assert!(
            suspect(&c, name, value),
            "{} ({parser})",
            String::from_utf8_lossy(crumb_bytes)
        );
    }
}

/// Ordinary cookies stay ordinary (and are never removed).
#[test]
fn ordinary_crumbs_are_not_listed() {
    let c = cfg();
    let cases: &[&[u8]] = &[
        b"lang=en",
        b"sessionidx=A",
        b"xsessionid=A",
        b"session=A",
        b"a=x,y",
        b"a=1 2",
        b"a=sessionid",
        b"a=1, b=2",
        b"a=1 x=sessionid",
        b"pref=%7B%22a%22%3A1%7D",
        "caf\u{e9}=1".as_bytes(),
        "x=\u{e9}t\u{e9}".as_bytes(),
        b"PHPSESSID]x[=A",
        b"_ga=GA1.1.123.456",
    ];
    for crumb_bytes in cases {
        let (name, value) = crumb(crumb_bytes);
        assert!(
            !suspect(&c, name, value),
            "{}",
            String::from_utf8_lossy(crumb_bytes)
        );
    }
}

#[test]
fn only_a_plain_crumb_is_adoptable() {
    let c = cfg();
    assert!(adoptable(&c, b"PHPSESSID", b"abc"));
    assert!(adoptable(&c, b"laravel.session", b"abc"));
    for (n, v) in [
        (&b"\xa0PHPSESSID"[..], &b"a"[..]),
        (b"PHPSESSI%44", b"a"),
        (b"x,_session_id", b"a"),
        (b"a", b"1 sessionid=A"),
        (b"PHPSESSID", b"1 sessionid=A"),
        (b"PHPSESSID", b"1,_session_id=A"),
    ] {
        assert!(!adoptable(&c, n, v), "{}", String::from_utf8_lossy(n));
    }
}

#[test]
fn whitespace_helpers() {
    assert_eq!(trim("\u{2000} a \u{3000}\u{feff}".as_bytes()), b"a");
    assert_eq!(trim(b"\xa0\x85a\x85"), b"a");
    assert_eq!(trim(b"   "), b"");
    assert_eq!(trim(b""), b"");
    let mut seen = Vec::new();
    after_separators(b"a,b c\xe3\x80\x80d", |r| {
        seen.push(r.to_vec());
        false
    });
    assert_eq!(
        seen,
        vec![
            b"b c\xe3\x80\x80d".to_vec(),
            b"c\xe3\x80\x80d".to_vec(),
            b"d".to_vec()
        ]
    );
    assert_eq!(normalize(b"a%41+%zz%4"), b"aA %zz%4");
    assert_eq!(normalize("\u{0131}\u{017f}\u{212a}x".as_bytes()), b"iskx");
}
