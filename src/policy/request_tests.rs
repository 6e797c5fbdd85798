//! Unit tests of the request phase's steps.
use super::*;
use crate::config::parse;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn cfg(extra: &str) -> Config {
    let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
    parse(json.as_bytes(), &|_| None).unwrap()
}

fn rec() -> Record {
    Record::new(false, "r".into())
}

#[test]
fn url_defense_strips_redirects_or_rejects() {
    let path = Some(&b"/a?jsessionid=1&x=2"[..]);
    let mut r = rec();
    assert_eq!(
        url_defense(&cfg(""), b"GET", Some(b"/a?x=1"), &mut r),
        UrlStep::Clean
    );
    assert!(r.counters.is_empty());
    assert_eq!(
        url_defense(&cfg(""), b"GET", path, &mut r),
        UrlStep::Forward(b"/a?x=2".to_vec())
    );
    assert_eq!(
        r.logs[0].1,
        "url stripped: 1 session parameter(s) removed request_id=r"
    );
    let redirect = cfg(r#","url":{"action":"redirect"}"#);
    let UrlStep::Reply(l) = url_defense(&redirect, b"HEAD", path, &mut r) else {
        unreachable!()
    };
    assert_eq!(l.0.status, 302);
    assert!(matches!(
        url_defense(&redirect, b"PUT", path, &mut r),
        UrlStep::Forward(_)
    ));
    let reject = cfg(r#","url":{"action":"reject"}"#);
    let UrlStep::Reply(l) = url_defense(&reject, b"PUT", path, &mut r) else {
        unreachable!()
    };
    assert_eq!(l.0.status, 400);
}

#[test]
fn referer_and_cookie_header() {
    let c = cfg("");
    let mut r = rec();
    assert_eq!(scrub_referer(&c, Some(b"https://a/?x=1"), &mut r), None);
    assert_eq!(
        scrub_referer(&c, Some(b"https://a/?phpsessid=1&x=1"), &mut r),
        Some(b"https://a/?x=1".to_vec())
    );
    assert_eq!(r.counters, vec![(Counter::RefererScrubbed, 1)]);
    let hdrs: [&[u8]; 2] = [b"a=1; __Host-session=x", b"__Host-session=y"];
    assert_eq!(cookie_header_without_mesh_cookie(&c, &hdrs, 0, false), None);
    assert_eq!(
        cookie_header_without_mesh_cookie(&c, &hdrs, 2, false),
        Some(vec![b"a=1".to_vec()])
    );
}

#[test]
fn mint_only_without_a_session_and_with_randomness() {
    let c = cfg("");
    let mut r = rec();
    let s = Session::new(SessionId([1; 16]), 5, None);
    let ctx = Ctx {
        now: 9,
        scope: [0; 16],
        host: b"",
        ua: None,
        ticket: Default::default(),
    };
    let kept = mint(
        true,
        Some(s.clone()),
        Issue::None,
        &ctx,
        &mut || Some([2; 16]),
        &mut r,
    );
    assert_eq!(kept, (Some(s), Issue::None));
    let (m, issue) = mint(true, None, Issue::None, &ctx, &mut || Some([2; 16]), &mut r);
    assert_eq!((m.unwrap().id, issue), (SessionId([2; 16]), Issue::Minted));
    assert_eq!(
        mint(
            false,
            None,
            Issue::None,
            &ctx,
            &mut || Some([2; 16]),
            &mut r
        )
        .0,
        None
    );
    assert_eq!(
        mint(true, None, Issue::None, &ctx, &mut || None, &mut r).0,
        None
    );
    // Minted is counted when the response commits (cache.rs).
    assert_eq!(r.counters, vec![(Counter::InternalError, 1)]);
    let _ = c;
}

#[test]
fn upstream_headers_and_spoofed() {
    let c = cfg("");
    let mut r = rec();
    assert!(strip_spoofed(&[], &mut r).is_empty() && r.logs.is_empty());
    assert_eq!(strip_spoofed(&["x-session-id"], &mut r), ["x-session-id"]);
    assert_eq!(upstream_headers(&c, None), vec![]);
    let s = Session::new(SessionId([1; 16]), 5, Some("alice".into()));
    let h = upstream_headers(&c, Some(&s));
    assert_eq!(h[1], ("x-session-subject".to_string(), "alice".to_string()));
}
