#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;
use crate::config::parse;
use crate::cookies;
use crate::token::SessionId;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: u64 = 1_800_000_000;
const HOST: &[u8] = b"tenant-a.example.com";

fn cfg_with(extra: &str) -> Config {
    let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
    parse(json.as_bytes(), &|_| None).unwrap()
}

fn cfg() -> Config {
    cfg_with("")
}

fn ctx(c: &Config, host: &'static [u8], ua: &[u8]) -> Ctx<'static> {
    Ctx {
        now: NOW,
        scope: super::super::request_scope(c, Some(host)),
        host,
        ua: (c.detect.client_change != ClientChange::Off).then(|| token::ua_digest(ua)),
        ticket: Default::default(),
    }
}

fn check_at<'a>(c: &Config, headers: &[&'a [u8]], x: &Ctx<'_>) -> CookieCheck<'a> {
    verify_mesh_cookie(c, &cookies::find(headers, b"__Host-session"), x)
}

fn check<'a>(c: &Config, headers: &[&'a [u8]]) -> CookieCheck<'a> {
    check_at(c, headers, &ctx(c, HOST, b"UA"))
}

/// A session minted on HOST by a client with User-Agent "UA".
fn minted(c: &Config, issued: u64, subject: Option<&str>) -> Session {
    let mut s = Session::new(SessionId([3; 16]), issued, subject.map(String::from));
    s.scope = super::super::request_scope(c, Some(HOST));
    s.client = s.id.client_fingerprint(&token::ua_digest(b"UA"));
    s
}

fn cookie(c: &Config, s: &Session) -> String {
    let v = token::encode(s, "__Host-session", &c.keys[0]).unwrap();
    format!("__Host-session={v}")
}

fn reason(check: CookieCheck<'_>) -> Option<Invalid> {
    match check {
        CookieCheck::Invalid { reason, .. } => Some(reason),
        _ => None,
    }
}

#[test]
fn outcomes() {
    let c = cfg();
    assert_eq!(check(&c, &[b"a=1"]), CookieCheck::Absent);
    let fresh = minted(&c, NOW - 1, None);
    let good = cookie(&c, &fresh);
    assert_eq!(
        check(&c, &[good.as_bytes()]),
        CookieCheck::Valid {
            session: fresh,
            reissue: false,
            client_changed: false
        }
    );
    let two = format!("{good}; {good}");
    assert_eq!(check(&c, &[two.as_bytes()]), CookieCheck::Duplicate(2));
    assert_eq!(
        check(&c, &[b"__Host-session=junk"]),
        CookieCheck::Invalid {
            reason: Invalid::Malformed,
            value: b"junk",
            session: None
        }
    );
    let old = cookie(&c, &minted(&c, NOW - 43_201, None));
    assert!(matches!(
        reason(check(&c, &[old.as_bytes()])),
        Some(Invalid::ExpiredAbsolute | Invalid::ExpiredIdle)
    ));
}

#[test]
fn a_session_belongs_to_its_scope() {
    let c = cfg();
    let v = cookie(&c, &minted(&c, NOW - 1, Some("alice")));
    let valid = |host: &'static [u8]| {
        matches!(
            check_at(&c, &[v.as_bytes()], &ctx(&c, host, b"UA")),
            CookieCheck::Valid { .. }
        )
    };
    assert!(valid(b"tenant-a.example.com"));
    assert!(valid(b"Tenant-A.Example.com:8443"));
    assert!(
        !valid(b"tenant-a.example.com."),
        "a trailing dot is another host to Envoy"
    );
    assert!(!valid(b"tenant-b.example.com"));
    let other = check_at(
        &c,
        &[v.as_bytes()],
        &ctx(&c, b"tenant-b.example.com", b"UA"),
    );
    assert_eq!(reason(other), Some(Invalid::WrongScope));
    // A fixed scope shared by two hosts; none at all.
    let fixed = cfg_with(r#","cookie":{"scope":"tenant-a"}"#);
    let mut s = minted(&fixed, NOW - 1, None);
    s.scope = token::scope_digest(b"tenant-a");
    let v = cookie(&fixed, &s);
    for host in [&b"a.example"[..], b"b.example"] {
        let x = Ctx {
            host,
            ..ctx(&fixed, b"x", b"UA")
        };
        assert!(matches!(
            check_at(&fixed, &[v.as_bytes()], &x),
            CookieCheck::Valid { .. }
        ));
    }
    let none = cfg_with(r#","cookie":{"scope":""}"#);
    assert_eq!(
        reason(check_at(
            &none,
            &[v.as_bytes()],
            &ctx(&none, b"a.example", b"UA")
        )),
        Some(Invalid::WrongScope),
        "minted for tenant-a, not for no scope"
    );
}

#[test]
fn revocation_by_time_subject_and_hash() {
    let s = minted(&cfg(), NOW - 100, Some("alice"));
    let hash = token::hex16(&token::session_hash(&s.id));
    let cases = [
        (format!(r#","revoke":{{"not_before":{}}}"#, NOW - 50), true),
        (
            format!(r#","revoke":{{"not_before":{}}}"#, NOW - 100),
            false,
        ),
        (
            format!(r#","revoke":{{"subjects":{{"alice":{}}}}}"#, NOW),
            true,
        ),
        (
            format!(r#","revoke":{{"subjects":{{"bob":{}}}}}"#, NOW),
            false,
        ),
        (format!(r#","revoke":{{"sessions":["{hash}"]}}"#), true),
        (
            format!(r#","revoke":{{"sessions":["{}"]}}"#, hash.to_uppercase()),
            true,
        ),
        (
            r#","revoke":{"sessions":["0000000000000000"]}"#.to_string(),
            false,
        ),
    ];
    for (extra, revoked) in cases {
        let c = cfg_with(&extra);
        let v = cookie(&c, &s);
        let got = check(&c, &[v.as_bytes()]);
        assert_eq!(
            reason(got.clone()) == Some(Invalid::Revoked),
            revoked,
            "{extra}"
        );
        if revoked {
            let CookieCheck::Invalid { session, .. } = got else {
                unreachable!()
            };
            assert_eq!(
                session,
                Some(token::session_hash(&s.id)),
                "logged by its hash"
            );
        }
    }
}

#[test]
fn client_change_counted_ended_or_ignored() {
    let count = cfg();
    let s = minted(&count, NOW - 1, None);
    let v = cookie(&count, &s);
    let other = ctx(&count, HOST, b"curl/8");
    assert!(matches!(
        check_at(&count, &[v.as_bytes()], &other),
        CookieCheck::Valid {
            client_changed: true,
            reissue: false,
            ..
        }
    ));
    // A stolen cookie replayed later (its cookie due for re-issue) still says client_changed.
    let later = cookie(&count, &minted(&count, NOW - 600, None));
    let got = check_at(&count, &[later.as_bytes()], &other);
    assert!(matches!(
        got,
        CookieCheck::Valid {
            reissue: true,
            client_changed: true,
            ..
        }
    ));
    assert_eq!(got.decision(), "client_changed");
    let end = cfg_with(r#","detect":{"client_change":"end"}"#);
    let got = check_at(&end, &[v.as_bytes()], &ctx(&end, HOST, b"curl/8"));
    assert_eq!(reason(got), Some(Invalid::ClientChanged));
    let off = cfg_with(r#","detect":{"client_change":"off"}"#);
    let got = check_at(&off, &[v.as_bytes()], &ctx(&off, HOST, b"curl/8"));
    assert!(matches!(
        got,
        CookieCheck::Valid {
            client_changed: false,
            ..
        }
    ));
    // A session without a recorded client gets one (and its cookie re-issued).
    let mut bare = s.clone();
    bare.client = [0; token::CLIENT_LEN];
    let v = cookie(&count, &bare);
    let CookieCheck::Valid {
        session,
        reissue,
        client_changed,
    } = check(&count, &[v.as_bytes()])
    else {
        unreachable!()
    };
    assert!(reissue && !client_changed);
    assert_eq!(session.client, s.client);
}

#[test]
fn version_1_cookies_only_on_legacy_hosts() {
    let c = cfg_with(r#","cookie":{"legacy_hosts":["Tenant-A.example.com"]}"#);
    // A 0.1.0 value, as token::decode reads it: legacy, no scope.
    let mut legacy = minted(&c, NOW - 1, Some("alice"));
    legacy.legacy = true;
    let check_legacy = |host: &'static [u8]| {
        let mut s = legacy.clone();
        let x = ctx(&c, host, b"UA");
        (check_scope(&c, &mut s, &x), s)
    };
    let (ok, upgraded) = check_legacy(HOST);
    assert_eq!(ok, Ok(true), "accepted and re-issued");
    assert!(!upgraded.legacy);
    assert_eq!(upgraded.scope, super::super::request_scope(&c, Some(HOST)));
    assert_eq!(
        check_legacy(b"tenant-b.example.com").0,
        Err(Invalid::WrongScope)
    );
    let strict = cfg();
    let mut s = legacy.clone();
    assert_eq!(
        check_scope(&strict, &mut s, &ctx(&strict, HOST, b"UA")),
        Err(Invalid::WrongScope)
    );
}

#[test]
fn reissue_advances_last_use_and_is_recorded() {
    let c = cfg();
    let hdr = cookie(&c, &minted(&c, NOW - 600, None));
    let CookieCheck::Valid {
        session,
        reissue,
        client_changed,
    } = check(&c, &[hdr.as_bytes()])
    else {
        unreachable!()
    };
    assert!(reissue);
    assert_eq!((session.issued_at, session.last_used), (NOW - 600, NOW));
    let mut rec = Record::new(true, "r".into());
    let check = CookieCheck::Valid {
        session,
        reissue,
        client_changed,
    };
    let (s, issue) = adopt_session(check, &mut rec);
    assert_eq!((s.is_some(), issue), (true, Issue::Reissued));
    // Re-issues are counted when a response carries the cookie (cache.rs).
    assert_eq!(rec.counters, vec![(Counter::SessionValid, 1)]);
    assert!(rec.logs[0].1.starts_with("session re-issue due session="));
}

#[test]
fn refusals_are_counted_and_logged_without_the_value() {
    let mut rec = Record::new(false, "r".into());
    let check = CookieCheck::Invalid {
        reason: Invalid::Forged,
        value: b"secret-value",
        session: None,
    };
    assert_eq!(adopt_session(check, &mut rec), (None, Issue::None));
    assert_eq!(rec.counters, vec![(Counter::InvalidForged, 1)]);
    let (level, line) = &rec.logs[0];
    assert_eq!(*level, super::super::Level::Info);
    assert!(line.starts_with("session cookie invalid: forged cookie="));
    assert!(line.ends_with(" request_id=r") && !line.contains("secret-value"));
    let revoked = CookieCheck::Invalid {
        reason: Invalid::Revoked,
        value: b"v",
        session: Some([0xab; 8]),
    };
    adopt_session(revoked, &mut rec);
    assert_eq!(rec.counters[1], (Counter::InvalidRevoked, 1));
    assert!(rec.logs[1]
        .1
        .starts_with("session cookie invalid: revoked session=abababababababab"));
}
