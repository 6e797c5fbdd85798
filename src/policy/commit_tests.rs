//! The commit rule (`cache.rs`) and who gets a pre-login session (`request.rs`): fresh IDs
//! committed only where needed, re-issues never on shared-cacheable responses, nothing of
//! ours on 304/206, exempt paths and CORS preflights.

use super::*;
use crate::config::{parse, Config};
use std::borrow::Cow;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: u64 = 1_800_000_000;

fn cfg(extra: &str) -> Config {
    let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
    parse(json.as_bytes(), &|_| None).unwrap()
}

fn resp<'a>(cc: Option<&'a [u8]>, targeted: Vec<(&'a str, &'a [u8])>) -> ResponseView<'a> {
    ResponseView {
        cache_control: cc.map(Cow::Borrowed),
        targeted_cache: targeted,
        now: NOW,
        ..Default::default()
    }
}

fn pending(issue: Issue) -> Pending {
    Pending {
        session: Some(crate::token::Session::new(SessionId([9; 16]), NOW, None)),
        issue,
        next_id: Some(SessionId([7; 16])),
        may_signal: true,
        request_id: "r".into(),
        now: NOW,
        decision: if issue == Issue::Minted {
            "minted"
        } else {
            "reissued"
        },
        ..Default::default()
    }
}

fn names(r: &Record) -> Vec<&'static str> {
    r.counters.iter().map(|(c, _)| c.name()).collect()
}

fn untouched(d: &ResponseDecision) -> bool {
    d.edits.set_cookies == SetCookies::Unchanged
        && d.edits.cache_control.is_none()
        && d.edits.no_store.is_empty()
        && d.edits.remove.is_empty()
}

#[test]
fn shared_cacheable_reads_cache_control_and_targeted_fields() {
    let cases: &[(Option<&[u8]>, Vec<(&str, &[u8])>, bool)] = &[
        (Some(b"public, max-age=31536000"), vec![], true),
        (Some(b"s-maxage=60"), vec![], true),
        (Some(b"max-age=60, S-MaxAge=0"), vec![], true),
        (Some(b"PUBLIC"), vec![], true),
        (Some(b"public, no-store"), vec![], false),
        (Some(b"public, private"), vec![], false),
        (Some(b"public, private=\"set-cookie\""), vec![], true),
        (Some(b"max-age=60"), vec![], false),
        (Some(b"private, max-age=60"), vec![], false),
        (Some(b"no-cache"), vec![], false),
        (Some(b"publicity"), vec![], false),
        (None, vec![], false),
        (None, vec![("cdn-cache-control", b"max-age=60")], true),
        (None, vec![("surrogate-control", b"max-age=\"30\"")], true),
        (
            None,
            vec![("cloudflare-cdn-cache-control", b"max-age=1")],
            true,
        ),
        (None, vec![("cdn-cache-control", b"max-age=0")], false),
        (None, vec![("cdn-cache-control", b"max-age=x")], false),
        (None, vec![("cdn-cache-control", b"no-store")], false),
        (
            None,
            vec![("cdn-cache-control", b"max-age=60, no-store")],
            false,
        ),
        (
            Some(b"private"),
            vec![("cdn-cache-control", b"max-age=60")],
            true,
        ),
    ];
    for (cc, t, want) in cases {
        let v = resp(*cc, t.clone());
        assert_eq!(shared_cacheable(&v), *want, "{cc:?} {t:?}");
    }
}

#[test]
fn a_fresh_id_is_not_committed_on_a_shared_cacheable_response_which_passes_untouched() {
    let c = cfg("");
    for v in [
        resp(Some(b"public, max-age=31536000"), vec![]),
        resp(Some(b"s-maxage=60"), vec![]),
        resp(None, vec![("cdn-cache-control", b"max-age=600")]),
        resp(None, vec![("surrogate-control", b"max-age=600")]),
        resp(None, vec![("cloudflare-cdn-cache-control", b"max-age=600")]),
    ] {
        let d = decide_response(&c, &pending(Issue::Minted), &v);
        assert!(untouched(&d), "{v:?}");
        assert_eq!(names(&d.record), ["session_guard.session.not_committed"]);
        assert_eq!((d.decision, d.session_hash), ("not_committed", None));
    }
}

#[test]
fn a_fresh_id_is_committed_and_made_uncacheable_everywhere_else() {
    let c = cfg("");
    let own: Vec<&[u8]> = vec![b"theme=dark; Secure; SameSite=Lax"];
    let cases = [
        resp(None, vec![]),
        resp(Some(b"max-age=60"), vec![]),
        resp(Some(b"public, no-store"), vec![]),
        resp(None, vec![("cdn-cache-control", b"max-age=0")]),
        // A response that sets a cookie of its own commits, `public` or not.
        ResponseView {
            set_cookies: own,
            ..resp(
                Some(b"public, max-age=60"),
                vec![("cdn-cache-control", b"max-age=60")],
            )
        },
    ];
    for v in cases {
        let d = decide_response(&c, &pending(Issue::Minted), &v);
        let set = match &d.edits.set_cookies {
            SetCookies::Append(s) => s.clone(),
            SetCookies::Replace(l) => String::from_utf8(l.last().unwrap().clone()).unwrap(),
            SetCookies::Unchanged => panic!("not committed: {v:?}"),
        };
        assert!(set.starts_with("__Host-session=v2.k1."), "{v:?}");
        let cc = d.edits.cache_control.clone().unwrap_or_default();
        assert!(cc.starts_with(b"private"), "{v:?}");
        assert!(!String::from_utf8_lossy(&cc).contains("public"));
        assert_eq!(d.edits.no_store.len(), v.targeted_cache.len());
        assert!(names(&d.record).contains(&"session_guard.session.minted"));
    }
}

#[test]
fn reissue_waits_for_a_response_that_is_not_shared_cacheable() {
    let c = cfg("");
    let d = decide_response(
        &c,
        &pending(Issue::Reissued),
        &resp(Some(b"public"), vec![]),
    );
    assert!(untouched(&d));
    assert!(d.record.counters.is_empty());
    assert_eq!(d.decision, "valid");
    assert!(d.session_hash.is_some(), "the session is still valid");
    let d = decide_response(&c, &pending(Issue::Reissued), &resp(None, vec![]));
    assert!(matches!(d.edits.set_cookies, SetCookies::Append(_)));
    assert_eq!(names(&d.record), ["session_guard.session.reissued"]);
}

#[test]
fn no_cookie_of_ours_on_304_or_206_but_signals_still_rotate() {
    let c = cfg("");
    for status in [&b"304"[..], b"206"] {
        for issue in [Issue::Minted, Issue::Reissued] {
            let v = ResponseView {
                status: Some(status),
                ..resp(None, vec![])
            };
            let d = decide_response(&c, &pending(issue), &v);
            assert!(untouched(&d), "{status:?} {issue:?}");
            // Not even with an app session cookie to bind.
            let v = ResponseView {
                status: Some(status),
                set_cookies: vec![b"JSESSIONID=abc; Path=/"],
                ..resp(None, vec![])
            };
            let d = decide_response(&c, &pending(issue), &v);
            assert!(d.edits.cache_control.is_none(), "{status:?}");
            assert!(!matches!(d.edits.set_cookies, SetCookies::Append(_)));
        }
        let v = ResponseView {
            status: Some(status),
            signals: vec![b"login"],
            subjects: vec![b"alice"],
            ..resp(Some(b"public"), vec![])
        };
        let d = decide_response(&c, &pending(Issue::Minted), &v);
        assert!(matches!(d.edits.set_cookies, SetCookies::Append(_)));
        assert_eq!(d.decision, "rotated_login");
    }
    assert!(partial(Some(b"304")) && partial(Some(b"206")) && !partial(Some(b"200")));
}

#[test]
fn login_and_logout_on_a_public_response_commit_and_are_made_uncacheable() {
    let c = cfg("");
    for (sig, word) in [(&b"login"[..], "rotated_login"), (b"logout", "logout")] {
        let v = ResponseView {
            signals: vec![sig],
            subjects: vec![b"alice"],
            ..resp(
                Some(b"public, s-maxage=600"),
                vec![("cdn-cache-control", b"max-age=60")],
            )
        };
        let d = decide_response(&c, &pending(Issue::Minted), &v);
        assert_eq!(d.decision, word);
        assert!(matches!(d.edits.set_cookies, SetCookies::Append(_)));
        let cc = String::from_utf8(d.edits.cache_control.unwrap()).unwrap();
        assert!(
            cc.starts_with("private") && !cc.contains("s-maxage"),
            "{cc}"
        );
        assert_eq!(d.edits.no_store, ["cdn-cache-control"]);
    }
}

fn req<'a>(method: &'a [u8], path: &'a [u8]) -> RequestView<'a> {
    RequestView {
        method,
        path: Some(path),
        now: NOW,
        ..Default::default()
    }
}

fn ids() -> impl FnMut() -> Option<[u8; 16]> {
    let mut n = 0u8;
    move || {
        n += 1;
        Some([n; 16])
    }
}

fn sends_id(d: &RequestDecision) -> bool {
    let RequestOutcome::Forward(e) = &d.outcome else {
        panic!("reply")
    };
    e.set.iter().any(|(n, _)| n == "x-session-id")
}

#[test]
fn cors_preflights_never_mint() {
    for anonymous in ["true", r#""navigate""#] {
        let c = cfg(&format!(r#","cookie":{{"anonymous":{anonymous}}}"#));
        let mut v = req(b"OPTIONS", b"/api");
        v.cors_request_method = true;
        let d = decide_request(&c, &v, &mut ids());
        assert!(!sends_id(&d) && d.pending.issue == Issue::None);
        assert_eq!(d.pending.session, None);
    }
    let d = decide_request(&cfg(""), &req(b"OPTIONS", b"/api"), &mut ids());
    assert!(sends_id(&d), "a plain OPTIONS is no preflight");
}

#[test]
fn navigate_mints_for_navigations_and_for_responses_that_set_a_cookie() {
    let c = cfg(r#","cookie":{"anonymous":"navigate"}"#);
    let cases: &[(&[u8], Option<&[u8]>, Option<&[u8]>, bool)] = &[
        (b"GET", Some(b"navigate"), None, true),
        (b"POST", Some(b"Navigate"), None, true),
        (b"GET", Some(b"cors"), Some(b"text/html"), false),
        (b"GET", Some(b"no-cors"), None, false),
        (b"GET", None, Some(b"text/html,application/xhtml+xml"), true),
        (b"HEAD", None, Some(b"TEXT/HTML"), true),
        (b"POST", None, Some(b"text/html"), false),
        (b"GET", None, Some(b"application/json"), false),
        (b"GET", None, None, false),
    ];
    for (method, mode, accept, want) in cases {
        let mut v = req(method, b"/");
        v.sec_fetch_mode = *mode;
        v.accept = *accept;
        assert_eq!(navigation(&v), *want, "{method:?} {mode:?} {accept:?}");
        let who = if *want {
            Mints::Anyone
        } else {
            Mints::OnCookie
        };
        assert_eq!(who_mints(&c, &v, false), who);
    }
    let api = decide_request(&c, &req(b"GET", b"/api/x"), &mut ids());
    assert!(api.pending.navigation_only && sends_id(&api));
    // Not committed by a private response without a cookie of its own...
    let r = decide_response(&c, &api.pending, &resp(Some(b"private"), vec![]));
    assert!(untouched(&r));
    assert_eq!(names(&r.record), ["session_guard.session.not_committed"]);
    // ... committed by one that sets a cookie, and by a login.
    let v = ResponseView {
        set_cookies: vec![b"csrf=1; Secure; SameSite=Lax"],
        ..resp(None, vec![])
    };
    let r = decide_response(&c, &api.pending, &v);
    assert!(matches!(r.edits.set_cookies, SetCookies::Append(_)));
    assert_eq!(
        who_mints(&cfg(""), &req(b"GET", b"/"), false),
        Mints::Anyone
    );
    let never = cfg(r#","cookie":{"anonymous":false}"#);
    assert_eq!(who_mints(&never, &req(b"GET", b"/"), false), Mints::Nobody);
    assert_eq!(who_mints(&cfg(""), &req(b"GET", b"/"), true), Mints::Nobody);
}

#[test]
fn exempt_paths_mint_nothing_and_every_defense_still_runs() {
    let c = cfg(r#","exempt":{"paths":["/healthz","/static/"]}"#);
    // No cookie: nothing drawn, nothing forwarded, counted.
    let d = decide_request(&c, &req(b"GET", b"/healthz"), &mut ids());
    assert!(!sends_id(&d));
    assert_eq!(names(&d.record), ["session_guard.exempt"]);
    assert_eq!(d.pending.decision, "exempt");
    let r = decide_response(&c, &d.pending, &resp(Some(b"no-cache"), vec![]));
    assert!(untouched(&r) && r.record.counters.is_empty());
    // The URL defense first, then the match on the stripped path; a planted app cookie and
    // spoofed identity headers are removed; a forged mesh cookie is refused and removed.
    let mut v = req(b"GET", b"/static/app.js;jsessionid=ABC?v=1");
    v.cookies = vec![b"JSESSIONID=planted; __Host-session=forged; a=1"];
    v.spoofed = vec!["x-session-id"];
    let d = decide_request(&c, &v, &mut ids());
    let RequestOutcome::Forward(e) = &d.outcome else {
        panic!()
    };
    assert_eq!(e.path.as_deref(), Some(&b"/static/app.js?v=1"[..]));
    assert_eq!(e.cookies, Some(vec![b"a=1".to_vec()]));
    assert_eq!(e.remove, ["x-session-id"]);
    assert!(e.set.is_empty());
    let n = names(&d.record);
    for want in [
        "session_guard.url.stripped",
        "session_guard.exempt",
        "session_guard.session.invalid.malformed",
        "session_guard.app_cookie.unbound",
        "session_guard.spoofed_headers_removed",
    ] {
        assert!(n.contains(&want), "{want}: {n:?}");
    }
    // An exemption is never matched on the query.
    let d = decide_request(&c, &req(b"GET", b"/admin?next=/healthz"), &mut ids());
    assert!(sends_id(&d) && !names(&d.record).contains(&"session_guard.exempt"));
}
