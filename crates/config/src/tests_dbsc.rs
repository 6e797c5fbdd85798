//! Unit tests of the `dbsc` section: defaults, accepted values, and every refusal naming its
//! field without quoting the value.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use super::*;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn parse_with(extra: &str) -> Result<Config, ConfigError> {
    let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
    parse(json.as_bytes(), &|_| None)
}

#[test]
fn dbsc_is_off_by_default_with_the_contract_defaults() {
    let d = parse_with("").unwrap().dbsc;
    assert!(!d.enabled);
    assert_eq!(d.endpoint(b"/.session-guard/dbsc/start"), None);
    let d = parse_with(r#","dbsc":{"enabled":true}"#).unwrap().dbsc;
    assert_eq!(d.start_path, "/.session-guard/dbsc/start");
    assert_eq!(d.refresh_path, "/.session-guard/dbsc/refresh");
    assert_eq!((d.ticket_ttl_s, d.offer), (900, Offer::Login));
    assert_eq!((d.require_bound_after_s, d.monitor), (None, false));
    assert_eq!(
        d.endpoint(b"/.session-guard/dbsc/start"),
        Some(Endpoint::Start)
    );
    assert_eq!(
        d.endpoint(b"/.session-guard/dbsc/refresh?a=1"),
        Some(Endpoint::Refresh)
    );
    assert_eq!(d.endpoint(b"/.session-guard/dbsc/refresh/x"), None);
    assert_eq!(d.endpoint(b"/.session-guard/dbsc"), None);
    let c = parse_with(r#","dbsc":{"enabled":true}"#).unwrap();
    assert!(c.summary().ends_with(" dbsc=on"));
}

#[test]
fn dbsc_values_are_taken() {
    let d = parse_with(
        r#","dbsc":{"enabled":true,"path":"/auth/dbsc","ticket_ttl_s":180,"offer":"authenticated",
                    "require_bound_after_s":60,"mode":"monitor"}"#,
    )
    .unwrap()
    .dbsc;
    assert_eq!(d.endpoint(b"/auth/dbsc/refresh"), Some(Endpoint::Refresh));
    assert_eq!((d.ticket_ttl_s, d.offer), (180, Offer::Authenticated));
    assert_eq!((d.require_bound_after_s, d.monitor), (Some(60), true));
    let c = parse_with(r#","dbsc":{"enabled":true,"ticket_ttl_s":209}"#).unwrap();
    assert!(c.warning().unwrap().contains("signing quota"));
    let c = parse_with(r#","dbsc":{"enabled":true,"ticket_ttl_s":210}"#).unwrap();
    assert_eq!(c.warning(), None);
    // The global monitor mode implies DBSC monitor.
    let c = parse_with(r#","mode":"monitor","dbsc":{"enabled":true}"#).unwrap();
    assert!(c.dbsc.monitor);
}

#[test]
fn bad_dbsc_values_are_refused_naming_the_field() {
    let cases = [
        (r#"{"enabled":"yes"}"#, "dbsc.enabled"),
        (r#"{"path":"relative"}"#, "dbsc.path"),
        (r#"{"path":"/trailing/"}"#, "dbsc.path"),
        (r#"{"path":"/a/../b"}"#, "dbsc.path"),
        (r#"{"path":"/a%2e"}"#, "dbsc.path"),
        (r#"{"path":"/a?b"}"#, "dbsc.path"),
        (r#"{"ticket_ttl_s":179}"#, "dbsc.ticket_ttl_s"),
        (r#"{"ticket_ttl_s":86401}"#, "dbsc.ticket_ttl_s"),
        (r#"{"offer":"always"}"#, "dbsc.offer"),
        (r#"{"mode":"off"}"#, "dbsc.mode"),
        (
            r#"{"require_bound_after_s":0}"#,
            "dbsc.require_bound_after_s",
        ),
        (
            r#"{"require_bound_after_s":-1}"#,
            "dbsc.require_bound_after_s",
        ),
        (r#"{"unknown":1}"#, "dbsc.unknown"),
    ];
    for (section, field) in cases {
        let err = parse_with(&format!(r#","dbsc":{section}"#)).unwrap_err();
        assert_eq!(err.field, field, "{section}");
        assert!(!err.to_string().contains("relative"), "{err}");
    }
    let err = parse_with(r#","cookie":{"secure":false,"name":"sg"},"dbsc":{"enabled":true}"#)
        .unwrap_err();
    assert_eq!(err.field, "dbsc.enabled");
}
