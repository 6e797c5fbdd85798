#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
use super::*;
use crate::config::SameSite;

fn cfg() -> CookieConfig {
    CookieConfig {
        name: "__Host-session".into(),
        same_site: SameSite::Lax,
        secure: true,
        max_age_s: 43_200,
        idle_timeout_s: 1800,
        anonymous: crate::config::Anonymous::Always,
    }
}

#[test]
fn mesh_cookie_has_host_prefix_attributes() {
    assert_eq!(
        mesh_cookie(&cfg(), "v1.k1.a.b", 120),
        "__Host-session=v1.k1.a.b; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=120"
    );
    assert_eq!(
        expired_mesh_cookie(&cfg()),
        "__Host-session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
    );
}

/// Upstream `Set-Cookie` values and what hardening makes of them (session names: `jsessionid`
/// and the mesh cookie's).
fn upstream_cases() -> Vec<(&'static str, &'static [u8], Upstream)> {
    vec![
        (
            "mesh name is blocked",
            b"__Host-session=evil; Path=/",
            Upstream::Block,
        ),
        (
            "mesh name in another case is blocked",
            b"__HOST-SESSION=evil",
            Upstream::Block,
        ),
        (
            "session-like gets all three",
            b"JSESSIONID=abc; Path=/",
            Upstream::Harden(b"JSESSIONID=abc; Path=/; Secure; HttpOnly; SameSite=Lax".to_vec()),
        ),
        (
            "other cookie never gets HttpOnly",
            b"theme=dark",
            Upstream::Harden(b"theme=dark; Secure; SameSite=Lax".to_vec()),
        ),
        (
            "existing attributes respected, any case",
            b"theme=dark; secure; samesite=Strict",
            Upstream::Keep,
        ),
        (
            "SameSite=None kept, Secure added",
            b"t=1; SameSite=None",
            Upstream::Harden(b"t=1; SameSite=None; Secure".to_vec()),
        ),
        (
            "session-like complete is kept",
            b"jsessionid=1; HttpOnly; Secure; SameSite=Lax",
            Upstream::Keep,
        ),
        (
            "trailing semicolon tidied",
            b"a=1;",
            Upstream::Harden(b"a=1; Secure; SameSite=Lax".to_vec()),
        ),
        (
            "value bytes kept",
            b"a=\xff\"x\"; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
            Upstream::Harden(
                b"a=\xff\"x\"; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Secure; SameSite=Lax"
                    .to_vec(),
            ),
        ),
        (
            "attribute named like secure in a value does not count",
            b"a=secure; Path=/",
            Upstream::Harden(b"a=secure; Path=/; Secure; SameSite=Lax".to_vec()),
        ),
    ]
}

#[test]
fn upstream_cookies_are_blocked_or_hardened() {
    let names = vec!["jsessionid".to_string(), "__host-session".to_string()];
    for (name, v, want) in upstream_cases() {
        assert_eq!(harden(v, b"__Host-session", &names, true), want, "{name}");
    }
    assert_eq!(
        harden(b"a=1", b"__Host-session", &names, false),
        Upstream::Harden(b"a=1; SameSite=Lax".to_vec())
    );
}

/// Browsers without RFC 6265bis's nameless-cookie check send `=name=v` back as `name=v`.
#[test]
fn nameless_cookies_that_browsers_return_as_the_mesh_cookie_are_blocked() {
    let names = vec!["jsessionid".to_string(), "__host-session".to_string()];
    let cases: Vec<(&str, &[u8], Upstream)> = vec![
        (
            "nameless cookie carrying the mesh cookie is blocked",
            b"=__Host-session=v1.k1.a.b; Path=/; Secure",
            Upstream::Block,
        ),
        (
            "nameless, whitespace and case variants",
            b" = __HOST-SESSION =v; Path=/",
            Upstream::Block,
        ),
        (
            "nameless without a value",
            b"=__host-session",
            Upstream::Block,
        ),
        (
            "bare mesh name without =",
            b"__Host-session; Path=/",
            Upstream::Block,
        ),
        (
            "nameless cookie of another name is only hardened",
            b"=theme=dark; Secure; SameSite=Lax",
            Upstream::Keep,
        ),
    ];
    for (name, v, want) in cases {
        assert_eq!(harden(v, b"__Host-session", &names, true), want, "{name}");
    }
}

#[test]
fn targeted_cache_fields_are_recognised() {
    for n in [
        "cdn-cache-control",
        "cloudflare-cdn-cache-control",
        "vercel-cdn-cache-control",
        "surrogate-control",
        "edge-control",
    ] {
        assert!(is_targeted_cache_field(n), "{n}");
    }
    for n in [
        "cache-control",
        "x-cache",
        "surrogate-key",
        "cdn-loop",
        "cdn-cache-controls",
    ] {
        assert!(!is_targeted_cache_field(n), "{n}");
    }
}

#[test]
fn cache_control_never_shared_cacheable() {
    let cases: Vec<(&str, Option<&[u8]>, Option<&[u8]>)> = vec![
        ("absent", None, Some(b"private, no-store")),
        ("already private", Some(b"private, max-age=60"), None),
        ("already no-store", Some(b"no-store"), None),
        (
            "public replaced",
            Some(b"public, max-age=3600"),
            Some(b"private, max-age=3600"),
        ),
        (
            "s-maxage removed",
            Some(b"max-age=60, s-maxage=600"),
            Some(b"private, max-age=60"),
        ),
        (
            "private but public too",
            Some(b"private, public"),
            Some(b"private"),
        ),
        (
            "no-cache alone is not enough",
            Some(b"no-cache"),
            Some(b"private, no-cache"),
        ),
        (
            "case-insensitive",
            Some(b"PUBLIC, S-MAXAGE=5, No-Cache"),
            Some(b"private, No-Cache"),
        ),
    ];
    for (name, existing, want) in cases {
        assert_eq!(
            cache_control_with_cookie(existing).as_deref(),
            want,
            "{name}"
        );
    }
}

#[test]
fn app_cookie_deletion_is_recognised() {
    let now = 1_800_000_000;
    for (v, want) in [
        (
            "connect.sid=s%3Aabc; Path=/; HttpOnly",
            Some(("connect.sid", "s%3Aabc", false)),
        ),
        (
            "PHPSESSID=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/",
            Some(("PHPSESSID", "deleted", true)),
        ),
        (
            "sessionid=\"\"; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/",
            Some(("sessionid", "\"\"", true)),
        ),
        (
            "connect.sid=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            Some(("connect.sid", "", true)),
        ),
        (
            "a=1; Expires=Wed, 01 Jan 2053 00:00:00 GMT",
            Some(("a", "1", false)),
        ),
        (
            "a=1; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            Some(("a", "1", false)),
        ),
        ("a=1; Max-Age=-1", Some(("a", "1", true))),
        (
            "a=1; expires=Sunday, 06-Nov-94 08:49:37 GMT",
            Some(("a", "1", true)),
        ),
        (
            "a=1; expires=Sun Nov  6 08:49:37 2094",
            Some(("a", "1", false)),
        ),
        ("a=1; expires=garbage", Some(("a", "1", false))),
        ("a=1; Max-Age=", Some(("a", "1", false))),
        (
            "a=1; Max-Age=abc; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            Some(("a", "1", true)),
        ),
        ("a=1; Max-Age=-", Some(("a", "1", false))),
        ("=x", None),
        ("novalue", None),
    ] {
        let got = parse_app_cookie(v.as_bytes(), now).map(|(n, v, d)| {
            (
                String::from_utf8(n.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
                d,
            )
        });
        let want = want.map(|(n, v, d)| (n.to_string(), v.to_string(), d));
        assert_eq!(got, want, "{v}");
    }
}

#[test]
fn cookie_dates_in_every_browser_form() {
    assert_eq!(http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(
        http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(http_date(b"Sun Nov  6 08:49:37 1994"), Some(784_111_777));
}
