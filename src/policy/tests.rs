use super::*;
use crate::config::{parse, Config, Mode};
use crate::set_cookie;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: u64 = 1_800_000_000;

fn cfg(extra: &str) -> Config {
    let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
    parse(json.as_bytes(), &|_| None).unwrap()
}

fn rng() -> impl FnMut() -> Option<[u8; 16]> {
    let mut n = 0u8;
    move || {
        n += 1;
        Some([n; 16])
    }
}

fn view<'a>(cookies: Vec<&'a [u8]>) -> RequestView<'a> {
    RequestView {
        method: b"GET",
        path: Some(b"/"),
        cookies,
        now: NOW,
        ..Default::default()
    }
}

/// A cookie for `s`, scoped as a request without `:authority` is (the views here).
fn cookie_for(c: &Config, s: &Session) -> String {
    let mut s = s.clone();
    s.scope = request_scope(c, None);
    s.client = s.id.client_fingerprint(&token::ua_digest(b""));
    format!(
        "__Host-session={}",
        token::encode(&s, "__Host-session", &c.keys[0]).unwrap()
    )
}

fn counters(r: &Record) -> Vec<&'static str> {
    r.counters.iter().map(|(c, _)| c.name()).collect()
}

fn forward(d: &RequestDecision) -> &RequestEdits {
    match &d.outcome {
        RequestOutcome::Forward(e) => e,
        RequestOutcome::Reply(r) | RequestOutcome::Answer(r) => panic!("unexpected reply {r:?}"),
    }
}

#[test]
fn request_without_cookie_gets_a_minted_session() {
    let c = cfg("");
    let d = decide_request(&c, &view(vec![]), &mut rng());
    // Counted as minted when the response commits it (cache.rs).
    assert!(d.record.counters.is_empty());
    let e = forward(&d);
    assert_eq!(
        e.set,
        vec![("x-session-id".to_string(), SessionId([1; 16]).encoded())]
    );
    assert_eq!(e.cookies, None);
    assert_eq!(d.pending.issue, Issue::Minted);
}

#[test]
fn no_anonymous_sessions_when_disabled() {
    let c = cfg(r#","cookie":{"anonymous":false}"#);
    let d = decide_request(&c, &view(vec![]), &mut rng());
    assert!(d.record.counters.is_empty());
    assert!(forward(&d).set.is_empty());
    assert_eq!(d.pending.session, None);
}

#[test]
fn valid_cookie_is_used_and_removed_from_cookie_header() {
    let c = cfg("");
    let s = Session::new(SessionId([9; 16]), NOW - 10, Some("alice".into()));
    let hdr = format!("a=1; {}; b=2", cookie_for(&c, &s));
    let d = decide_request(&c, &view(vec![hdr.as_bytes()]), &mut rng());
    assert_eq!(counters(&d.record), ["session_guard.session.valid"]);
    let e = forward(&d);
    assert_eq!(e.cookies, Some(vec![b"a=1; b=2".to_vec()]));
    assert_eq!(
        e.set,
        vec![
            ("x-session-id".to_string(), SessionId([9; 16]).encoded()),
            ("x-session-subject".to_string(), "alice".to_string())
        ]
    );
    assert_eq!(d.pending.issue, Issue::None);
}

/// One invalid mesh cookie per reason (for `c`: max_age_s 100, idle_timeout_s 50), with the
/// counter it must move.
fn invalid_cookie_cases(c: &Config) -> Vec<(&'static str, Vec<String>, &'static str)> {
    let fresh = Session::new(SessionId([9; 16]), NOW, None);
    let old = Session::new(SessionId([9; 16]), NOW - 100, None);
    let idle = Session {
        last_used: NOW - 51,
        ..Session::new(SessionId([9; 16]), NOW - 60, None)
    };
    let good = cookie_for(c, &fresh);
    let other_key = crate::config::Key::new("k1", crate::config::Secret::new(vec![0; 32]));
    let forged = format!(
        "__Host-session={}",
        token::encode(&fresh, "__Host-session", &other_key).unwrap()
    );
    vec![
        (
            "forged",
            vec![forged],
            "session_guard.session.invalid.forged",
        ),
        (
            "absolute expiry",
            vec![cookie_for(c, &old)],
            "session_guard.session.invalid.expired_absolute",
        ),
        (
            "idle expiry",
            vec![cookie_for(c, &idle)],
            "session_guard.session.invalid.expired_idle",
        ),
        (
            "unknown key",
            vec![good.replace("v2.k1.", "v2.k2.")],
            "session_guard.session.invalid.unknown_key",
        ),
        (
            "malformed",
            vec!["__Host-session=hello".into()],
            "session_guard.session.invalid.malformed",
        ),
        (
            "duplicate, both valid",
            vec![good.clone(), good.clone()],
            "session_guard.session.invalid.duplicate",
        ),
        (
            "duplicate in one header",
            vec![format!("{good}; {good}")],
            "session_guard.session.invalid.duplicate",
        ),
        (
            "case-variant name fails the MAC",
            vec![good.replace("__Host-session", "__host-session")],
            "session_guard.session.invalid.forged",
        ),
    ]
}

#[test]
fn invalid_cookies_are_counted_by_reason_and_replaced() {
    let c = cfg(r#","cookie":{"max_age_s":100,"idle_timeout_s":50}"#);
    let cases = invalid_cookie_cases(&c);
    for (name, hdrs, counter) in cases {
        let refs: Vec<&[u8]> = hdrs.iter().map(|h| h.as_bytes()).collect();
        let d = decide_request(&c, &view(refs), &mut rng());
        assert_eq!(counters(&d.record), [counter], "{name}");
        assert_eq!(d.pending.issue, Issue::Minted, "{name}");
        let e = forward(&d);
        assert_eq!(
            e.cookies,
            Some(vec![]),
            "{name}: the mesh cookie is never forwarded"
        );
        assert_eq!(
            e.set[0].1,
            SessionId([1; 16]).encoded(),
            "{name}: a fresh session"
        );
    }
}

#[test]
fn active_session_is_reissued_after_a_tenth_of_idle_timeout() {
    let c = cfg("");
    let s = Session::new(SessionId([9; 16]), NOW - 180, None);
    let hdr = cookie_for(&c, &s);
    let d = decide_request(&c, &view(vec![hdr.as_bytes()]), &mut rng());
    assert_eq!(d.pending.issue, Issue::Reissued);
    assert_eq!(d.pending.session.as_ref().unwrap().last_used, NOW);
    assert_eq!(d.pending.session.as_ref().unwrap().id, s.id);
    let r = decide_response(
        &c,
        &d.pending,
        &ResponseView {
            now: NOW,
            ..Default::default()
        },
    );
    let SetCookies::Append(sc) = r.edits.set_cookies else {
        panic!()
    };
    assert!(sc.ends_with("Max-Age=43020"), "{sc}");
}

#[test]
fn url_actions() {
    let strip = cfg("");
    let mut v = view(vec![]);
    v.path = Some(b"/a;jsessionid=1?x=1&jsessionid=2");
    let d = decide_request(&strip, &v, &mut rng());
    assert_eq!(forward(&d).path.as_deref(), Some(&b"/a?x=1"[..]));
    assert_eq!(
        counters(&d.record)[..2],
        [
            "session_guard.url.params_removed",
            "session_guard.url.stripped"
        ]
    );
    assert_eq!(d.record.counters[0].1, 2);

    let redirect = cfg(r#","url":{"action":"redirect"}"#);
    let RequestOutcome::Reply(r) = decide_request(&redirect, &v, &mut rng()).outcome else {
        panic!()
    };
    assert_eq!(r.status, 302);
    assert!(r.headers.contains(&("location", "/a?x=1".to_string())));
    assert!(r
        .headers
        .contains(&("cache-control", "no-store".to_string())));
    v.method = b"POST";
    let d = decide_request(&redirect, &v, &mut rng());
    assert_eq!(
        forward(&d).path.as_deref(),
        Some(&b"/a?x=1"[..]),
        "POST is stripped, not redirected"
    );

    let reject = cfg(r#","url":{"action":"reject"}"#);
    let RequestOutcome::Reply(r) = decide_request(&reject, &v, &mut rng()).outcome else {
        panic!()
    };
    assert_eq!(r.status, 400);
}

#[test]
fn spoofed_headers_removed_and_next_id_only_for_signal_clusters() {
    let c = cfg("");
    let mut v = view(vec![]);
    v.spoofed = vec!["x-session-id", "x-session-subject"];
    let d = decide_request(&c, &v, &mut rng());
    assert_eq!(
        forward(&d).remove,
        vec!["x-session-id", "x-session-subject"]
    );
    assert!(!forward(&d)
        .set
        .iter()
        .any(|(n, _)| n == "x-session-id-next"));
    let mut d = decide_request(&c, &v, &mut rng());
    let (name, next) = grant_signal(&c, &mut d.pending, &mut d.record, &mut rng()).unwrap();
    assert_eq!(name, "x-session-id-next");
    assert!(d.pending.may_signal);
    assert_eq!(Some(next), d.pending.next_id.map(|i| i.encoded()));
}

fn pending(c: &Config, subject: Option<&str>, may_signal: bool) -> Pending {
    let _ = c;
    Pending {
        session: Some(Session::new(
            SessionId([9; 16]),
            NOW - 5,
            subject.map(String::from),
        )),
        issue: Issue::None,
        next_id: Some(SessionId([7; 16])),
        may_signal,
        request_id: "r1".into(),
        now: NOW,
        ..Default::default()
    }
}

fn issued(c: &Config, r: &ResponseDecision) -> Option<Session> {
    let sc = match &r.edits.set_cookies {
        SetCookies::Append(s) => s.clone(),
        SetCookies::Replace(l) => String::from_utf8(l.last().unwrap().clone()).unwrap(),
        SetCookies::Unchanged => return None,
    };
    let v = sc.strip_prefix("__Host-session=")?.split(';').next()?;
    token::decode(v.as_bytes(), b"__Host-session", &c.keys).ok()
}

fn signal_view(sig: &'static [u8], sub: Option<&'static [u8]>) -> ResponseView<'static> {
    ResponseView {
        signals: vec![sig],
        subjects: sub.into_iter().collect(),
        now: NOW,
        ..Default::default()
    }
}

#[test]
fn signal_login_commits_exactly_the_forwarded_next_id() {
    let c = cfg("");
    // login commits exactly the forwarded next id, authenticated.
    let r = decide_response(
        &c,
        &pending(&c, None, true),
        &signal_view(b"login", Some(b"alice")),
    );
    let s = issued(&c, &r).unwrap();
    assert_eq!(
        (s.id, s.subject.as_deref()),
        (SessionId([7; 16]), Some("alice"))
    );
    assert_eq!(counters(&r.record), ["session_guard.rotation.login"]);
    assert_eq!(
        r.edits.remove,
        vec!["x-session-guard", "x-session-guard-subject"]
    );
    assert_eq!(
        r.edits.cache_control.as_deref(),
        Some(&b"private, no-store"[..])
    );
}

#[test]
fn signal_login_with_a_bad_subject_still_rotates_unauthenticated() {
    let c = cfg("");
    // login with a bad subject still rotates, unauthenticated.
    let r = decide_response(
        &c,
        &pending(&c, None, true),
        &signal_view(b"LOGIN", Some(b"bad\x01")),
    );
    let s = issued(&c, &r).unwrap();
    assert_eq!((s.id, s.subject), (SessionId([7; 16]), None));
    assert_eq!(
        counters(&r.record),
        [
            "session_guard.signal.invalid_subject",
            "session_guard.rotation.login"
        ]
    );
}

#[test]
fn signal_privilege_keeps_the_subject_unless_given_a_new_one() {
    let c = cfg("");
    // privilege keeps the subject unless given a new one.
    let r = decide_response(
        &c,
        &pending(&c, Some("bob"), true),
        &signal_view(b"privilege", None),
    );
    let s = issued(&c, &r).unwrap();
    assert_eq!(
        (s.id, s.subject.as_deref()),
        (SessionId([7; 16]), Some("bob"))
    );
    let r = decide_response(
        &c,
        &pending(&c, Some("bob"), true),
        &signal_view(b"privilege", Some(b"root")),
    );
    assert_eq!(issued(&c, &r).unwrap().subject.as_deref(), Some("root"));
}

#[test]
fn signal_logout_expires_the_cookie() {
    let c = cfg("");
    // logout expires.
    let r = decide_response(
        &c,
        &pending(&c, Some("bob"), true),
        &signal_view(b"logout", None),
    );
    assert_eq!(
        r.edits.set_cookies,
        SetCookies::Append(set_cookie::expired_mesh_cookie(&c.cookie))
    );
}

#[test]
fn signal_from_an_untrusted_cluster_is_ignored_removed_counted() {
    let c = cfg("");
    // untrusted: ignored, removed, counted.
    let r = decide_response(
        &c,
        &pending(&c, None, false),
        &signal_view(b"login", Some(b"mallory")),
    );
    assert_eq!(r.edits.set_cookies, SetCookies::Unchanged);
    assert_eq!(r.edits.remove.len(), 2);
    assert_eq!(counters(&r.record), ["session_guard.signal.untrusted"]);
}

#[test]
fn signal_with_conflicting_values_fails_closed() {
    let c = cfg("");
    // conflicting values fail closed.
    let both = ResponseView {
        signals: vec![b"login", b"logout"],
        now: NOW,
        ..Default::default()
    };
    let r = decide_response(&c, &pending(&c, None, true), &both);
    assert_eq!(
        r.edits.set_cookies,
        SetCookies::Append(set_cookie::expired_mesh_cookie(&c.cookie))
    );
}

#[test]
fn signal_with_an_unknown_value_changes_nothing() {
    let c = cfg("");
    // unknown value.
    let r = decide_response(&c, &pending(&c, None, true), &signal_view(b"promote", None));
    assert_eq!(r.edits.set_cookies, SetCookies::Unchanged);
    assert_eq!(counters(&r.record), ["session_guard.signal.unknown"]);
}

#[test]
fn upstream_set_cookies_blocked_hardened_and_kept_several() {
    let c = cfg("");
    let p = Pending {
        issue: Issue::Minted,
        ..pending(&c, None, false)
    };
    let r = decide_response(
        &c,
        &p,
        &ResponseView {
            set_cookies: vec![
                b"__Host-session=evil",
                b"theme=dark",
                b"a=1; Secure; SameSite=Strict",
            ],
            cache_control: Some(std::borrow::Cow::Borrowed(b"public, max-age=60")),
            now: NOW,
            ..Default::default()
        },
    );
    let SetCookies::Replace(l) = &r.edits.set_cookies else {
        panic!()
    };
    assert_eq!(l.len(), 3);
    assert_eq!(l[0], b"theme=dark; Secure; SameSite=Lax");
    assert_eq!(l[1], b"a=1; Secure; SameSite=Strict");
    assert!(l[2].starts_with(b"__Host-session=v2.k1."));
    assert_eq!(
        r.edits.cache_control.as_deref(),
        Some(&b"private, max-age=60"[..])
    );
    assert_eq!(
        counters(&r.record),
        [
            // A response that sets cookies of its own commits, `public` or not.
            "session_guard.session.minted",
            "session_guard.upstream_cookie.blocked",
            "session_guard.upstream_cookie.hardened"
        ]
    );
}

#[test]
fn monitor_mode_decides_the_same() {
    let e = cfg("");
    let m = cfg(r#","mode":"monitor""#);
    assert_eq!(m.mode, Mode::Monitor);
    let mut v = view(vec![b"__Host-session=junk"]);
    v.path = Some(b"/?jsessionid=1");
    let a = decide_request(&e, &v, &mut rng());
    let b = decide_request(&m, &v, &mut rng());
    assert_eq!(counters(&a.record), counters(&b.record));
}

/// Issue 28: a valid session that this proxy's logout denylist holds is revoked; the denylist
/// is asked only for a session valid by every other check.
#[test]
fn a_session_the_logout_denylist_holds_is_revoked() {
    let c = cfg("");
    let s = Session::new(SessionId([4; 16]), NOW - 10, Some("alice".into()));
    let v = cookie_for(&c, &s);
    let asked = std::cell::Cell::new(0);
    let ended = token::session_hash(&s.id);
    let holds = |h: &[u8; 8]| {
        asked.set(asked.get() + 1);
        *h == ended
    };
    for (cookie, denied) in [
        (Some(v.as_str()), true),
        (None, false),
        (Some("__Host-session=x"), false),
    ] {
        let mut req = view(cookie.map(str::as_bytes).into_iter().collect());
        req.denylist = Denylist(Some(&holds));
        let d = decide_request(&c, &req, &mut rng());
        let got = d.pending.session.as_ref().unwrap();
        assert_eq!(d.pending.decision == "revoked", denied, "{cookie:?}");
        assert_ne!(got.id, s.id);
        assert_eq!(got.subject, None, "never alice's");
        assert_eq!(
            counters(&d.record).contains(&"session_guard.logout.refused"),
            denied
        );
    }
    assert_eq!(asked.get(), 1, "asked only for the valid session");
}
