#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;
use crate::config::parse;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: u64 = 1_800_000_000;

fn cfg(extra: &str) -> Config {
    let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
    parse(json.as_bytes(), &|_| None).unwrap()
}

fn session_with(bound: &[(&str, &str)]) -> Session {
    let mut s = Session::new(SessionId([5; 16]), NOW, None);
    for (n, v) in bound {
        s.bind(s.id.binding(n.as_bytes(), v.as_bytes()));
    }
    s
}

/// The Cookie header the app gets (`None`: no header) and the counters.
fn run(c: &Config, header: &str, s: &mut Session) -> (Option<String>, Vec<&'static str>) {
    let mut rec = Record::new(false, "r".into());
    let mut issue = Issue::None;
    let f = filter_request(
        c,
        &[header.as_bytes()],
        None,
        Some(s),
        &mut issue,
        NOW,
        &mut rec,
    );
    let out = match f.cookies {
        None => Some(header.to_string()),
        Some(list) => list.first().map(|v| String::from_utf8(v.clone()).unwrap()),
    };
    (out, rec.counters.iter().map(|(c, _)| c.name()).collect())
}

#[test]
fn bound_values_pass_byte_for_byte_and_others_are_removed() {
    let c = cfg("");
    let mut s = session_with(&[("PHPSESSID", "good")]);
    let (out, counters) = run(&c, "a=1; PHPSESSID=evil;PHPSESSID=good; b=2", &mut s);
    assert_eq!(out.as_deref(), Some("a=1;PHPSESSID=good; b=2"));
    assert_eq!(counters, vec!["session_guard.app_cookie.unbound"]);
}

/// PHP hands `laravel.session`, `laravel session` and `laravel[session` to the app as
/// `laravel_session`: they are that cookie, and a planted one never passes.
#[test]
fn names_php_rewrites_into_a_listed_name_are_that_name() {
    let c = cfg("");
    let mut s = session_with(&[("laravel_session", "good")]);
    for planted in [
        "laravel.session",
        "laravel session",
        "Laravel[session",
        " laravel_session",
    ] {
        let header = format!("{planted}=EVIL; laravel_session=good");
        let (out, _) = run(&c, &header, &mut s);
        assert_eq!(out.as_deref(), Some("laravel_session=good"), "{planted}");
    }
    // A listed name with a dot: the underscore form is read as it by PHP-style parsers.
    let mut s = session_with(&[]);
    assert_eq!(
        run(&c, "connect_sid=x; k=1", &mut s).0.as_deref(),
        Some("k=1")
    );
}

#[test]
fn a_listed_name_hidden_behind_a_comma_is_removed() {
    let c = cfg("");
    let mut s = session_with(&[]);
    let (out, counters) = run(&c, "a=1, laravel_session=EVIL; b=2", &mut s);
    assert_eq!(out.as_deref(), Some("b=2"));
    assert_eq!(counters, vec!["session_guard.app_cookie.unbound"]);
    // Commas in ordinary values stay.
    assert_eq!(
        run(&c, "a=x,y; b=2", &mut s).0.as_deref(),
        Some("a=x,y; b=2")
    );
}

#[test]
fn adoption_never_replaces_a_bound_value_and_adopts_once() {
    let c = cfg(&format!(r#","app_cookies":{{"adopt_until":{}}}"#, NOW + 60));
    let mut s = session_with(&[("PHPSESSID", "good")]);
    let (out, counters) = run(&c, "PHPSESSID=evil; PHPSESSID=good", &mut s);
    assert_eq!(out.as_deref(), Some("PHPSESSID=good"));
    assert_eq!(counters, vec!["session_guard.app_cookie.unbound"]);
    assert!(s.is_bound(b"PHPSESSID", b"good") && !s.is_bound(b"PHPSESSID", b"evil"));
    // Nothing bound yet: the first value is adopted, a second one is removed.
    let mut s = session_with(&[]);
    let (out, counters) = run(&c, "PHPSESSID=old; PHPSESSID=other", &mut s);
    assert_eq!(out.as_deref(), Some("PHPSESSID=old"));
    assert_eq!(
        counters,
        vec![
            "session_guard.app_cookie.adopted",
            "session_guard.app_cookie.unbound"
        ]
    );
    // After the window, nothing is adopted.
    let closed = cfg(&format!(r#","app_cookies":{{"adopt_until":{}}}"#, NOW));
    let mut s = session_with(&[]);
    assert_eq!(run(&closed, "PHPSESSID=old", &mut s).0, None);
}

#[test]
fn binding_is_off_with_an_empty_list() {
    let c = cfg(r#","app_cookies":{"names":[]}"#);
    let mut s = session_with(&[]);
    assert_eq!(
        run(&c, "PHPSESSID=x", &mut s).0.as_deref(),
        Some("PHPSESSID=x")
    );
}

/// Issue 28: nothing is adopted into a session minted on this request (its mesh cookie was
/// refused, e.g. a tossed duplicate): the planted value is removed instead.
#[test]
fn adoption_only_into_a_session_valid_on_the_request() {
    let c = cfg(&format!(r#","app_cookies":{{"adopt_until":{}}}"#, NOW + 60));
    for (issue, adopted) in [
        (Issue::None, true),
        (Issue::Reissued, true),
        (Issue::Minted, false),
    ] {
        let mut s = session_with(&[]);
        let mut i = issue;
        let mut rec = Record::new(false, "r".into());
        let f = filter_request(
            &c,
            &[b"PHPSESSID=planted"],
            None,
            Some(&mut s),
            &mut i,
            NOW,
            &mut rec,
        );
        assert_eq!(f.kept.len(), usize::from(adopted), "{issue:?}");
        assert_eq!(s.is_bound(b"PHPSESSID", b"planted"), adopted, "{issue:?}");
    }
    // A crumb read as listed only by trimming, decoding or splitting is never adopted.
    for planted in ["\u{a0}PHPSESSID=x", "PHPSESSI%44=x", "a=1 PHPSESSID=x"] {
        let mut s = session_with(&[]);
        let (out, counters) = run(&c, planted, &mut s);
        assert_eq!(out, None, "{planted}");
        assert_eq!(counters, vec!["session_guard.app_cookie.unbound"]);
    }
}

/// Issue 28: a `Cookie` header of 4,000 listed crumbs is one count and one log line.
#[test]
fn repeated_crumbs_are_one_log_line_per_request() {
    let c = cfg("");
    let header = vec!["PHPSESSID=x"; 4000].join("; ");
    let mut s = session_with(&[]);
    let mut rec = Record::new(false, "r".into());
    let mut issue = Issue::None;
    let f = filter_request(
        &c,
        &[header.as_bytes()],
        None,
        Some(&mut s),
        &mut issue,
        NOW,
        &mut rec,
    );
    assert_eq!(f.cookies, Some(vec![]));
    assert_eq!(rec.counters, vec![(Counter::AppCookieUnbound, 4000)]);
    assert_eq!(rec.logs.len(), 1);
    let line = &rec.logs[0].1;
    assert!(
        line.starts_with("app cookies removed: 4000 not bound to the session cookies="),
        "{line}"
    );
    assert_eq!(
        line.matches(',').count(),
        2,
        "at most three value hashes: {line}"
    );
    assert!(
        !line.contains("x;") && !line.contains("=x "),
        "never the value: {line}"
    );
}

/// Issue 28, finding 1: crumbs a parser reads as a listed cookie are removed unless bound; a
/// bound value under its plain name passes.
#[test]
fn crumbs_parsers_read_as_listed_are_removed() {
    let c = cfg("");
    let mut s = session_with(&[("sessionid", "good")]);
    for planted in [
        "\u{2000}sessionid=EVIL",
        "sessionid\u{3000}=EVIL",
        "\u{feff}sessionid=EVIL",
        "x,_session_id=EVIL",
        "_session%5Fid=EVIL",
        "PHPSESSI%44=EVIL",
        "a=1 sessionid=EVIL",
        "ASP.NET_\u{17f}essionId=EVIL",
    ] {
        let header = format!("{planted}; sessionid=good; lang=en");
        let (out, counters) = run(&c, &header, &mut s);
        assert_eq!(out.as_deref(), Some("sessionid=good; lang=en"), "{planted}");
        assert_eq!(
            counters,
            vec!["session_guard.app_cookie.unbound"],
            "{planted}"
        );
    }
}
