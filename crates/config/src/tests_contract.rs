//! Unit tests of the settings added with binding and revocation: `url.query_semicolon`,
//! `cookie.scope`, `app_cookies`, `revoke`, `detect`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use super::*;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

/// A configuration with one key and `extra` (`,"field":...` pairs) at the top level.
fn parse_with(extra: &str) -> Result<Config, ConfigError> {
    let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
    parse(json.as_bytes(), &|_| None)
}

#[test]
fn new_settings_default_to_the_contract() {
    let c = parse_with("").unwrap();
    assert!(c.url.query_semicolon);
    assert_eq!(c.scope, Scope::Host);
    assert!(c.app_cookies_enabled());
    let want: Vec<String> = DEFAULT_APP_COOKIES
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    assert_eq!(c.app_cookies.names, want);
    for n in [
        "jsessionid",
        "phpsessid",
        "asp.net_sessionid",
        "connect.sid",
        "cftoken",
        // Issue 28: unambiguous framework defaults.
        ".aspnetcore.session",
        "play_session",
        "beaker.session.id",
    ] {
        assert!(c.app_cookies.names.iter().any(|x| x == n), "{n}");
    }
    assert_eq!(c.app_cookies.adopt_until, None);
    assert_eq!(c.revoke.not_before, None);
    assert!(!c.revoked_session(&[0; 8]));
    assert_eq!(c.subject_revoked_before("alice"), None);
    assert_eq!(c.detect.client_change, ClientChange::Count);
}

#[test]
fn valid_values_are_taken() {
    let c = parse_with(
        r#","url":{"query_semicolon":false},"cookie":{"scope":"shop.example"},
           "app_cookies":{"names":["JSESSIONID","Sid"],"extra_names":["_myapp_session","sid"],
                          "adopt_until":1700000000},
           "revoke":{"not_before":1600000000,"subjects":{"alice":1700000001,"Bob Smith":5},
                     "sessions":["00112233445566AA","ffeeddccbbaa9988"]},
           "detect":{"client_change":"end"}"#,
    )
    .unwrap();
    assert!(!c.url.query_semicolon);
    assert_eq!(c.scope, Scope::Fixed("shop.example".into()));
    assert_eq!(c.app_cookies.names, ["jsessionid", "sid", "_myapp_session"]);
    assert_eq!(c.app_cookies.adopt_until, Some(1_700_000_000));
    assert_eq!(c.revoke.not_before, Some(1_600_000_000));
    assert_eq!(c.subject_revoked_before("alice"), Some(1_700_000_001));
    assert_eq!(c.subject_revoked_before("Bob Smith"), Some(5));
    assert_eq!(c.subject_revoked_before("bob smith"), None);
    assert!(c.revoked_session(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0xaa]));
    assert!(c.revoked_session(&[0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88]));
    assert!(!c.revoked_session(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0xab]));
    assert_eq!(c.detect.client_change, ClientChange::End);
    let off = parse_with(r#","detect":{"client_change":"off"}"#).unwrap();
    assert_eq!(off.detect.client_change, ClientChange::Off);
}

#[test]
fn scope_empty_is_none_and_fixed_is_kept_as_given() {
    let c = parse_with(r#","cookie":{"scope":""}"#).unwrap();
    assert_eq!(c.scope, Scope::None);
    let c = parse_with(r#","cookie":{"scope":"Tenant-A"}"#).unwrap();
    assert_eq!(c.scope, Scope::Fixed("Tenant-A".into()));
    let long = "x".repeat(256);
    let c = parse_with(&format!(r#","cookie":{{"scope":"{long}"}}"#)).unwrap();
    assert_eq!(c.scope, Scope::Fixed(long));
}

#[test]
fn empty_app_cookie_list_turns_binding_off() {
    let c = parse_with(r#","app_cookies":{"names":[]}"#).unwrap();
    assert!(!c.app_cookies_enabled());
    let c = parse_with(r#","app_cookies":{"names":[],"extra_names":["session"]}"#).unwrap();
    assert_eq!(c.app_cookies.names, ["session"]);
}

#[test]
fn default_app_cookies_skip_a_mesh_cookie_of_the_same_name() {
    let c = parse_with(r#","cookie":{"name":"SessionID"}"#).unwrap();
    assert!(!c.app_cookies.names.iter().any(|n| n == "sessionid"));
    assert!(c.app_cookies.names.iter().any(|n| n == "jsessionid"));
}

#[test]
fn ten_thousand_revocations_parse() {
    let sessions: Vec<String> = (0..MAX_REVOKED as u64)
        .map(|i| format!("\"{:016x}\"", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let subjects: Vec<String> = (0..MAX_REVOKED)
        .map(|i| format!("\"user-{i}\":{i}"))
        .collect();
    let c = parse_with(&format!(
        r#","revoke":{{"sessions":[{}],"subjects":{{{}}}}}"#,
        sessions.join(","),
        subjects.join(",")
    ))
    .unwrap();
    for i in [0u64, 1, 4_999, 9_999] {
        let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
        assert!(c.revoked_session(&h), "{i}");
        assert_eq!(c.subject_revoked_before(&format!("user-{i}")), Some(i));
    }
    assert!(!c.revoked_session(&10_000u64.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes()));
    assert_eq!(c.subject_revoked_before("user-10000"), None);
}

#[test]
fn heapsort_sorts() {
    let mut v: Vec<u64> = (0..1000u64).map(|i| i.wrapping_mul(7919) % 613).collect();
    let mut want = v.clone();
    want.sort_unstable();
    super::heapsort(&mut v);
    assert_eq!(v, want);
}

/// Each case's configuration is refused, naming `field`, with a problem.
fn assert_refused(cases: Vec<(&str, String, &str)>) {
    for (name, extra, field) in cases {
        let err = parse_with(&extra).expect_err(name);
        assert_eq!(err.field, field, "{name}: {err}");
        assert!(!err.problem.is_empty(), "{name}");
    }
}

fn many(n: usize, f: &dyn Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(",")
}

#[test]
fn refusals_of_url_scope_and_observe_name_the_field() {
    assert_refused(vec![
        (
            "semicolon type",
            r#","url":{"query_semicolon":"yes"}"#.into(),
            "url.query_semicolon",
        ),
        (
            "scope space",
            r#","cookie":{"scope":"a b"}"#.into(),
            "cookie.scope",
        ),
        (
            "scope non-ascii",
            r#","cookie":{"scope":"é"}"#.into(),
            "cookie.scope",
        ),
        (
            "scope too long",
            format!(r#","cookie":{{"scope":"{}"}}"#, "x".repeat(257)),
            "cookie.scope",
        ),
        (
            "scope type",
            r#","cookie":{"scope":1}"#.into(),
            "cookie.scope",
        ),
        (
            "legacy host space",
            r#","cookie":{"legacy_hosts":["a b"]}"#.into(),
            "cookie.legacy_hosts[0]",
        ),
        (
            "legacy hosts type",
            r#","cookie":{"legacy_hosts":"a"}"#.into(),
            "cookie.legacy_hosts",
        ),
        (
            "filter state type",
            r#","observe":{"filter_state":"on"}"#.into(),
            "observe.filter_state",
        ),
        (
            "observe unknown",
            r#","observe":{"state":true}"#.into(),
            "observe.state",
        ),
    ]);
}

#[test]
fn refusals_of_app_cookies_name_the_field() {
    let names_65 = many(65, &|i| format!("\"c{i}\""));
    assert_refused(vec![
        (
            "app names type",
            r#","app_cookies":{"names":"JSESSIONID"}"#.into(),
            "app_cookies.names",
        ),
        (
            "app name empty",
            r#","app_cookies":{"names":["a",""]}"#.into(),
            "app_cookies.names[1]",
        ),
        (
            "app name bytes",
            r#","app_cookies":{"names":["a=b"]}"#.into(),
            "app_cookies.names[0]",
        ),
        (
            "app name mesh",
            r#","app_cookies":{"names":["__HOST-SESSION"]}"#.into(),
            "app_cookies.names[0]",
        ),
        (
            "extra name mesh",
            r#","app_cookies":{"extra_names":["x","__Host-session"]}"#.into(),
            "app_cookies.extra_names[1]",
        ),
        (
            "extra name bytes",
            r#","app_cookies":{"extra_names":["a;b"]}"#.into(),
            "app_cookies.extra_names[0]",
        ),
        (
            "too many names",
            format!(r#","app_cookies":{{"names":[{names_65}]}}"#),
            "app_cookies.names",
        ),
        (
            "adopt type",
            r#","app_cookies":{"adopt_until":-1}"#.into(),
            "app_cookies.adopt_until",
        ),
        (
            "app unknown",
            r#","app_cookies":{"name":[]}"#.into(),
            "app_cookies.name",
        ),
    ]);
}

#[test]
fn refusals_of_revoke_times_and_subjects_name_the_field() {
    let subjects_10001 = many(10_001, &|i| format!("\"u{i}\":1"));
    assert_refused(vec![
        (
            "not_before type",
            r#","revoke":{"not_before":"2024"}"#.into(),
            "revoke.not_before",
        ),
        (
            "subjects type",
            r#","revoke":{"subjects":[]}"#.into(),
            "revoke.subjects",
        ),
        (
            "subject value",
            r#","revoke":{"subjects":{"a":"x"}}"#.into(),
            "revoke.subjects",
        ),
        (
            "subject empty",
            r#","revoke":{"subjects":{"":1}}"#.into(),
            "revoke.subjects",
        ),
        (
            "subject control",
            r#","revoke":{"subjects":{"a\nb":1}}"#.into(),
            "revoke.subjects",
        ),
        (
            "subject long",
            format!(r#","revoke":{{"subjects":{{"{}":1}}}}"#, "s".repeat(257)),
            "revoke.subjects",
        ),
        (
            "too many subjects",
            format!(r#","revoke":{{"subjects":{{{subjects_10001}}}}}"#),
            "revoke.subjects",
        ),
    ]);
}

#[test]
fn refusals_of_revoked_sessions_name_the_field() {
    let sessions_10001 = many(10_001, &|i| format!("\"{i:016x}\""));
    assert_refused(vec![
        (
            "session short",
            r#","revoke":{"sessions":["0011"]}"#.into(),
            "revoke.sessions[0]",
        ),
        (
            "session non-hex",
            r#","revoke":{"sessions":["00112233445566ag"]}"#.into(),
            "revoke.sessions[0]",
        ),
        (
            "session long",
            r#","revoke":{"sessions":["00112233445566778"]}"#.into(),
            "revoke.sessions[0]",
        ),
        (
            "session type",
            r#","revoke":{"sessions":["0011223344556677",7]}"#.into(),
            "revoke.sessions[1]",
        ),
        (
            "too many sessions",
            format!(r#","revoke":{{"sessions":[{sessions_10001}]}}"#),
            "revoke.sessions",
        ),
        (
            "revoke unknown",
            r#","revoke":{"session":[]}"#.into(),
            "revoke.session",
        ),
    ]);
    let err = parse_with(&format!(r#","revoke":{{"sessions":[{sessions_10001}]}}"#)).unwrap_err();
    assert!(err.problem.contains("10000"), "{err}");
}

#[test]
fn refusals_of_detect_name_the_field() {
    assert_refused(vec![
        (
            "detect value",
            r#","detect":{"client_change":"block"}"#.into(),
            "detect.client_change",
        ),
        (
            "detect case",
            r#","detect":{"client_change":"Count"}"#.into(),
            "detect.client_change",
        ),
        (
            "detect unknown",
            r#","detect":{"client":"off"}"#.into(),
            "detect.client",
        ),
    ]);
}

#[test]
fn refusals_never_quote_subjects_or_session_hashes() {
    for extra in [
        r#","revoke":{"subjects":{"alice\u0001":1}}"#,
        r#","revoke":{"subjects":{"alice":"x"}}"#,
        r#","revoke":{"sessions":["secretsecretsecr"]}"#,
    ] {
        let e = parse_with(extra).unwrap_err().to_string();
        assert!(!e.contains("alice") && !e.contains("secretsecr"), "{e}");
    }
}
