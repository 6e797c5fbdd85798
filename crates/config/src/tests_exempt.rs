//! `exempt.paths` and `cookie.anonymous: "navigate"`: parsing, refusals, and the matching
//! table (the same table runs through the real Envoy in `tests/exempt_paths.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn parse_with(extra: &str) -> Result<Config, ConfigError> {
    let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
    parse(json.as_bytes(), &|_| None)
}

/// The table (`tests/cases/exempt_paths.json`): paths as the filter sees them after the URL
/// defense, and whether they are exempt under its prefixes. `tests/exempt_paths.rs` sends
/// the same table through the real Envoy.
fn table() -> (Vec<String>, Vec<(String, bool)>) {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/cases/exempt_paths.json")).unwrap();
    let prefixes = v["prefixes"].as_array().unwrap();
    let cases = v["cases"].as_array().unwrap();
    (
        prefixes
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect(),
        cases
            .iter()
            .map(|c| {
                (
                    c["path"].as_str().unwrap().to_string(),
                    c["exempt"].as_bool().unwrap(),
                )
            })
            .collect(),
    )
}

#[test]
fn exempt_paths_match_at_segment_boundaries_on_the_path_only() {
    let (prefixes, cases) = table();
    let list = serde_json::to_string(&prefixes).unwrap();
    let c = parse_with(&format!(r#","exempt":{{"paths":{list}}}"#)).unwrap();
    assert!(cases.len() >= 25);
    for (path, want) in cases {
        assert_eq!(c.exempt(path.as_bytes()), want, "{path}");
    }
    assert!(!parse_with("").unwrap().exempt(b"/healthz"));
    let root = parse_with(r#","exempt":{"paths":["/"]}"#).unwrap();
    assert!(root.exempt(b"/anything") && !root.exempt(b"/a/../b"));
}

#[test]
fn anonymous_takes_true_false_or_navigate() {
    for (v, want) in [
        ("true", Anonymous::Always),
        ("false", Anonymous::Never),
        (r#""navigate""#, Anonymous::Navigate),
    ] {
        let c = parse_with(&format!(r#","cookie":{{"anonymous":{v}}}"#)).unwrap();
        assert_eq!(c.cookie.anonymous, want, "{v}");
    }
}

#[test]
fn refusals_name_the_field_and_never_quote_the_value() {
    let cases = [
        (r#"{"paths":["static/"]}"#, "exempt.paths[0]"),
        (r#"{"paths":["/ok","/a/../b"]}"#, "exempt.paths[1]"),
        (r#"{"paths":["/a%2fsecretword"]}"#, "exempt.paths[0]"),
        (r#"{"paths":["/a?secretword"]}"#, "exempt.paths[0]"),
        (r#"{"paths":["/a#secretword"]}"#, "exempt.paths[0]"),
        (r#"{"paths":["/a secretword"]}"#, "exempt.paths[0]"),
        (r#"{"paths":[""]}"#, "exempt.paths[0]"),
        (r#"{"paths":["/a\\secretword"]}"#, "exempt.paths[0]"),
        (r#"{"paths":"/healthz"}"#, "exempt.paths"),
        (r#"{"paths":[1]}"#, "exempt.paths[0]"),
        (r#"{"path":["/healthz"]}"#, "exempt.path"),
        (r#"[]"#, "exempt"),
    ];
    for (json, field) in cases {
        let err = parse_with(&format!(r#","exempt":{json}"#)).expect_err(json);
        assert_eq!(err.field, field, "{json}: {err}");
        assert!(!err.to_string().contains("secretword"), "{err}");
    }
    let many: Vec<String> = (0..65).map(|i| format!(r#""/p{i}""#)).collect();
    let err = parse_with(&format!(r#","exempt":{{"paths":[{}]}}"#, many.join(","))).unwrap_err();
    assert_eq!(err.field, "exempt.paths");
    for bad in [r#""always""#, "1", r#""Navigate""#] {
        let err = parse_with(&format!(r#","cookie":{{"anonymous":{bad}}}"#)).unwrap_err();
        assert_eq!(err.field, "cookie.anonymous", "{bad}");
    }
}
