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
