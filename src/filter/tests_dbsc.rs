//! DBSC through the filter and the in-memory host: the endpoints are answered in monitor mode
//! too, the offer is written on a login response, and an unbound session's steady path makes
//! exactly the host calls it made without DBSC.

use super::*;
use crate::hostapi::fake::FakeHost;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: u64 = 1_800_000_000;

fn configured(host: &mut FakeHost, extra: &str) -> Root {
    host.config = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#).into_bytes();
    host.now = NOW;
    let mut root = Root::default();
    assert!(root.configure(&*host, &|_| None));
    root
}

fn request(method: &str, path: &str, extra: &[(&str, &str)]) -> FakeHost {
    let mut all = vec![(":method", method), (":path", path), ("x-request-id", "r1")];
    all.extend_from_slice(extra);
    FakeHost::with_request(&all)
}

#[test]
fn the_endpoints_are_answered_in_monitor_mode_too() {
    for mode in ["enforce", "monitor"] {
        let mut host = request("POST", "/.session-guard/dbsc/refresh", &[]);
        let extra = format!(r#","mode":"{mode}","dbsc":{{"enabled":true}}"#);
        let root = configured(&mut host, &extra);
        let mut s = root.stream();
        assert_eq!(s.on_request_headers(&host), Flow::Pause, "{mode}");
        let replies = host.replies.borrow();
        assert_eq!(replies[0].0, 200);
        assert_eq!(
            replies[0].2, b"{\"continue\":false}",
            "no identifier: nothing to echo"
        );
        assert_eq!(host.counter("session_guard.dbsc.ended"), 1);
        assert_eq!(host.counter("session_guard.dbsc.invalid.id"), 1);
    }
}

#[test]
fn a_login_response_offers_registration() {
    let mut host = request("POST", "/login", &[]);
    let root = configured(&mut host, r#","dbsc":{"enabled":true}"#);
    let mut s = root.stream();
    assert_eq!(s.on_request_headers(&host), Flow::Continue);
    host.set_response(&[
        (":status", "302"),
        ("x-session-guard", "login"),
        ("x-session-guard-subject", "alice"),
    ]);
    s.on_response_headers(&host);
    let offer = host.values(Map::Response, "secure-session-registration");
    assert_eq!(offer.len(), 1);
    assert!(offer[0].starts_with("(ES256);path=\"/.session-guard/dbsc/start\";challenge=\""));
    assert_eq!(host.counter("session_guard.dbsc.offered"), 1);
}

/// The host calls of one request and response with a valid unbound, authenticated session.
fn steady(dbsc: &str) -> (usize, usize, Vec<(String, Vec<u8>)>) {
    let mut host = request("GET", "/", &[]);
    let root = configured(&mut host, dbsc);
    // A session minted and authenticated through the filter itself.
    let mut s = root.stream();
    s.on_request_headers(&host);
    host.set_response(&[
        ("x-session-guard", "login"),
        ("x-session-guard-subject", "a"),
    ]);
    s.on_response_headers(&host);
    let set = host.values(Map::Response, "set-cookie");
    let mesh = set
        .iter()
        .find(|c| c.starts_with("__Host-session="))
        .unwrap();
    let cookie = mesh[..mesh.find(';').unwrap()].to_string();
    let mut host2 = request("GET", "/", &[("cookie", &cookie)]);
    host2.config = host.config.clone();
    host2.now = NOW + 1;
    host2.shared = host.shared.clone();
    let mut s = root.stream();
    s.on_request_headers(&host2);
    host2.set_response(&[(":status", "200")]);
    s.on_response_headers(&host2);
    let headers = host2.request.borrow().clone();
    (host2.writes.get(), host2.shared_reads.get(), headers)
}

#[test]
fn an_unbound_session_pays_no_new_host_call() {
    let without = steady("");
    let with = steady(r#","dbsc":{"enabled":true}"#);
    assert_eq!(with.0, without.0, "writes");
    assert_eq!(with.1, without.1, "shared-data reads");
    assert_eq!(with.2, without.2, "what the upstream gets");
}
