//! Unit tests of the configuration: defaults, accepted values and refusals.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
use super::*;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
const SHORT: &str = "c2hvcnQtc2VjcmV0"; // 12 bytes

fn env(name: &str) -> Option<String> {
    (name == "SG_KEY").then(|| KEY.to_string())
}

fn parse_str(s: &str) -> Result<Config, ConfigError> {
    parse(s.as_bytes(), &env)
}

#[test]
fn minimal_config_gets_contract_defaults() {
    let c = parse_str(&format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#)).unwrap();
    assert_eq!(c.mode, Mode::Enforce);
    assert_eq!(c.cookie.name, "__Host-session");
    assert_eq!(c.cookie.same_site, SameSite::Lax);
    assert!(c.cookie.secure);
    assert_eq!(c.cookie.max_age_s, 43_200);
    assert_eq!(c.cookie.idle_timeout_s, 1_800);
    assert_eq!(c.cookie.anonymous, Anonymous::Always);
    assert!(c.exempt_paths.is_empty());
    assert_eq!(c.url.action, UrlAction::Strip);
    for p in [
        "jsessionid",
        "phpsessid",
        "asp.net_sessionid",
        "aspsessionid",
        "connect.sid",
        "laravel_session",
        "sessionid",
        "_session_id",
        "cfid",
        "cftoken",
        "__host-session",
    ] {
        assert!(c.url.params.iter().any(|x| x == p), "missing default {p}");
    }
    assert!(!c.url.params.iter().any(|x| x == "session_id"));
    assert_eq!(c.signal.header, "x-session-guard");
    assert_eq!(c.signal.subject_header, "x-session-guard-subject");
    assert!(c.signal.trusted_clusters.is_empty());
    assert_eq!(c.upstream.session_header, "x-session-id");
    assert_eq!(c.upstream.subject_header, "x-session-subject");
    assert_eq!(c.upstream.next_session_header, "x-session-id-next");
    assert_eq!(c.keys[0].secret.expose().len(), 32);
}

#[test]
fn secret_env_reads_the_vm_environment() {
    let c = parse_str(r#"{"keys":[{"id":"k1","secret_env":"SG_KEY"}]}"#).unwrap();
    assert_eq!(
        c.keys[0].secret.expose(),
        b"0123456789abcdef0123456789abcdef"
    );
}

#[test]
fn params_replace_and_extra_params_extend() {
    let c = parse_str(&format!(
        r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}],"url":{{"params":["SID"],"extra_params":["Token_X"]}}}}"#
    ))
    .unwrap();
    assert_eq!(c.url.params, vec!["sid", "token_x", "__host-session"]);
}

#[test]
fn refused_configurations_name_field_and_problem() {
    let k = format!(r#"{{"id":"k1","secret":"{KEY}"}}"#);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown top-level field",
            format!(r#"{{"keys":[{k}],"modee":"x"}}"#),
            "modee",
        ),
        (
            "unknown nested field",
            format!(r#"{{"keys":[{k}],"cookie":{{"nam":"x"}}}}"#),
            "cookie",
        ),
        ("no keys", r#"{"keys":[]}"#.into(), "keys"),
        ("keys missing", r#"{}"#.into(), "keys"),
        (
            "short key",
            format!(r#"{{"keys":[{{"id":"k1","secret":"{SHORT}"}}]}}"#),
            "keys[0].secret",
        ),
        (
            "not base64",
            r#"{"keys":[{"id":"k1","secret":"!!!not base64!!!"}]}"#.into(),
            "keys[0].secret",
        ),
        (
            "unset env",
            r#"{"keys":[{"id":"k1","secret_env":"NOPE"}]}"#.into(),
            "keys[0].secret_env",
        ),
        (
            "duplicate id",
            format!(r#"{{"keys":[{k},{k}]}}"#),
            "keys[1].id",
        ),
        (
            "bad same_site",
            format!(r#"{{"keys":[{k}],"cookie":{{"same_site":"Sideways"}}}}"#),
            "cookie.same_site",
        ),
        (
            "None without Secure",
            format!(
                r#"{{"keys":[{k}],"cookie":{{"same_site":"None","secure":false,"name":"sg"}}}}"#
            ),
            "cookie.same_site",
        ),
        (
            "__Host- without Secure",
            format!(r#"{{"keys":[{k}],"cookie":{{"secure":false}}}}"#),
            "cookie.secure",
        ),
        (
            "wrong type",
            format!(r#"{{"keys":[{k}],"cookie":{{"max_age_s":"long"}}}}"#),
            "cookie.max_age_s",
        ),
        (
            "zero idle",
            format!(r#"{{"keys":[{k}],"cookie":{{"idle_timeout_s":0}}}}"#),
            "cookie.idle_timeout_s",
        ),
        (
            "bad mode",
            format!(r#"{{"keys":[{k}],"mode":"audit"}}"#),
            "mode",
        ),
        (
            "bad action",
            format!(r#"{{"keys":[{k}],"url":{{"action":"drop"}}}}"#),
            "url.action",
        ),
        (
            "bad key id",
            format!(r#"{{"keys":[{{"id":"k 1","secret":"{KEY}"}}]}}"#),
            "keys[0].id",
        ),
        (
            "both secret forms",
            format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}","secret_env":"SG_KEY"}}]}}"#),
            "keys[0]",
        ),
        (
            "bad header",
            format!(r#"{{"keys":[{k}],"signal":{{"header":"x y"}}}}"#),
            "signal.header",
        ),
        ("not json", "{".into(), "configuration"),
        (
            "empty field name",
            format!(r#"{{"keys":[{k}],"":2}}"#),
            "\"\"",
        ),
        ("empty", "".into(), "configuration"),
    ];
    for (name, json, field) in cases {
        let err = parse_str(&json).expect_err(name);
        assert!(
            err.field.starts_with(field),
            "{name}: field {:?} should start with {field:?} ({err})",
            err.field
        );
        assert!(!err.problem.is_empty(), "{name}");
    }
}

#[test]
fn errors_and_debug_never_contain_secrets() {
    let bad_b64 = "c2VjcmV0LXNlY3JldC1zZWNyZXQ$$$";
    let e = parse_str(&format!(
        r#"{{"keys":[{{"id":"k1","secret":"{bad_b64}"}}]}}"#
    ))
    .unwrap_err();
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    let e = parse_str(r#"{"keys":[{"id":"k1","secret":1234567890123}]}"#).unwrap_err();
    assert!(!e.to_string().contains("1234567890123"), "{e}");
    let e = parse_str(&format!(r#"{{"keys":[{{"id":"k1","secret":"{SHORT}"}}]}}"#)).unwrap_err();
    assert!(!e.to_string().contains(SHORT), "{e}");
    let c = parse_str(&format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#)).unwrap();
    let dbg = format!("{c:?}");
    assert!(
        !dbg.contains(KEY) && !dbg.contains("0123456789abcdef"),
        "{dbg}"
    );
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn trusted_clusters_gate_signals() {
    let c = parse_str(&format!(
        r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}],"signal":{{"trusted_clusters":["auth"]}}}}"#
    ))
    .unwrap();
    assert!(c.cluster_may_signal(Some(b"auth")));
    assert!(!c.cluster_may_signal(Some(b"app")));
    assert!(!c.cluster_may_signal(None));
    let open = parse_str(&format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#)).unwrap();
    assert!(open.cluster_may_signal(None));
    assert!(open.cluster_may_signal(Some(b"anything")));
}
