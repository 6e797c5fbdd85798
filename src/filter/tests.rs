//! The filter against the in-memory host: what it writes, what it counts, what it logs.

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

fn request(headers: &[(&str, &str)]) -> FakeHost {
    let mut all = vec![(":method", "GET"), (":path", "/"), ("x-request-id", "r1")];
    all.extend_from_slice(headers);
    FakeHost::with_request(&all)
}

fn one(host: &FakeHost, map: Map, name: &str) -> String {
    let v = host.values(map, name);
    assert_eq!(v.len(), 1, "{name}: {v:?}");
    v[0].clone()
}

#[test]
fn configure_defines_counters_and_refuses_bad_config() {
    let mut host = FakeHost::default();
    configured(&mut host, "");
    assert_eq!(host.counters.borrow().len(), Counter::ALL.len());
    assert!(host.logs.borrow()[0].1.contains("configured mode=enforce"));
    let bad = FakeHost {
        config: br#"{"keys":[]}"#.to_vec(),
        ..FakeHost::default()
    };
    assert!(!Root::default().configure(&bad, &|_| None));
    assert_eq!(bad.logs.borrow()[0].0, LogLevel::Error);
    // A stream of a refused plugin passes through untouched.
    let mut s = Root::default().stream();
    assert_eq!(s.on_request_headers(&bad), Flow::Continue);
    assert_eq!(bad.writes.get(), 0);
}

#[test]
fn enforce_mode_applies_request_and_response_edits() {
    let mut host = request(&[
        ("cookie", "a=1"),
        ("x-session-id", "spoofed"),
        ("x_session_subject", "root"),
    ]);
    let root = configured(&mut host, "");
    let mut s = root.stream();
    host.request.borrow_mut()[1].1 = b"/p;jsessionid=1?x=1".to_vec();
    assert_eq!(s.on_request_headers(&host), Flow::Continue);
    assert_eq!(one(&host, Map::Request, ":path"), "/p?x=1");
    assert_eq!(one(&host, Map::Request, "cookie"), "a=1");
    assert!(host.values(Map::Request, "x_session_subject").is_empty());
    let id = one(&host, Map::Request, "x-session-id");
    assert_ne!(id, "spoofed");
    let next = one(&host, Map::Request, "x-session-id-next");
    // Drawn and forwarded; counted as minted only when a response commits it.
    assert_eq!(host.counter("session_guard.session.minted"), 0);
    assert_eq!(host.counter("session_guard.spoofed_headers_removed"), 2);

    host.set_response(&[
        ("x-session-guard", "login"),
        ("x-session-guard-subject", "alice"),
    ]);
    assert_eq!(s.on_response_headers(&host), Flow::Continue);
    assert!(host.values(Map::Response, "x-session-guard").is_empty());
    let set = one(&host, Map::Response, "set-cookie");
    assert!(set.starts_with("__Host-session=v2.k1."), "{set}");
    assert_eq!(
        one(&host, Map::Response, "cache-control"),
        "private, no-store"
    );
    assert_eq!(host.counter("session_guard.rotation.login"), 1);
    // The committed session is the one announced as next.
    let v = set
        .trim_start_matches("__Host-session=")
        .split(';')
        .next()
        .unwrap();
    let cfg = crate::config::parse(&host.config, &|_| None).unwrap();
    let s = crate::token::decode(v.as_bytes(), b"__Host-session", &cfg.keys).unwrap();
    assert_eq!(
        (s.id.encoded(), s.subject.as_deref()),
        (next, Some("alice"))
    );
    assert!(host.logs.borrow().iter().all(|(_, l)| !l.contains(&id)));
}

#[test]
fn monitor_mode_counts_and_logs_but_writes_nothing() {
    let mut host = request(&[("cookie", "__Host-session=junk"), ("x-session-id", "x")]);
    let root = configured(&mut host, r#","mode":"monitor","url":{"action":"reject"}"#);
    host.request.borrow_mut()[1].1 = b"/?jsessionid=1".to_vec();
    let mut s = root.stream();
    assert_eq!(
        s.on_request_headers(&host),
        Flow::Continue,
        "no local reply"
    );
    host.set_response(&[("x-session-guard", "logout"), ("set-cookie", "a=1")]);
    assert_eq!(s.on_response_headers(&host), Flow::Continue);
    assert_eq!(host.writes.get(), 0);
    assert!(host.replies.borrow().is_empty());
    for c in ["url.rejected", "logout"] {
        assert_eq!(host.counter(&format!("session_guard.{c}")), 1, "{c}");
    }
    // The URL defense answers first: the cookie was not looked at.
    assert_eq!(host.counter("session_guard.session.invalid.malformed"), 0);
    let logs = host.logs.borrow();
    assert!(logs.iter().any(|(_, l)| l.ends_with("request_id=r1")));
}

#[test]
fn local_replies_pause_the_stream() {
    let mut host = request(&[]);
    let root = configured(&mut host, r#","url":{"action":"redirect"}"#);
    host.request.borrow_mut()[1].1 = b"/a?jsessionid=1".to_vec();
    let mut s = root.stream();
    assert_eq!(s.on_request_headers(&host), Flow::Pause);
    assert_eq!(host.replies.borrow()[0].0, 302);
    // No response phase after a local reply.
    host.set_response(&[("x-session-guard", "login")]);
    s.on_response_headers(&host);
    assert_eq!(host.writes.get(), 0);
    // A refused local reply is counted; the request continues.
    host.fail_local_reply = true;
    let mut s = root.stream();
    assert_eq!(s.on_request_headers(&host), Flow::Continue);
    assert_eq!(host.counter("session_guard.internal_error"), 1);
}

#[test]
fn host_failures_are_counted_and_the_request_continues() {
    let mut host = request(&[("cookie", "a=1; __Host-session=x")]);
    let root = configured(&mut host, "");
    host.fail_writes = true;
    let mut s = root.stream();
    assert_eq!(s.on_request_headers(&host), Flow::Continue);
    // The filter state, the request's edits and the next-ID header: three failures.
    assert_eq!(host.counter("session_guard.internal_error"), 3);
    assert!(host
        .logs
        .borrow()
        .iter()
        .any(|(l, m)| *l == LogLevel::Warn && m.contains("host call failed")));
    host.set_response(&[]);
    assert_eq!(s.on_response_headers(&host), Flow::Continue);
    assert_eq!(host.counter("session_guard.internal_error"), 4);

    // Unreadable headers and no randomness: nothing decided, nothing minted, counted.
    host.fail_writes = false;
    host.fail_reads = true;
    let mut s = root.stream();
    assert_eq!(s.on_request_headers(&host), Flow::Continue);
    assert_eq!(host.counter("session_guard.internal_error"), 5);
    host.fail_reads = false;
    host.no_random = true;
    let mut s = root.stream();
    s.on_request_headers(&host);
    assert_eq!(host.counter("session_guard.session.minted"), 1);
    assert_eq!(host.counter("session_guard.internal_error"), 7);
}

#[test]
fn trust_is_read_from_the_cluster_property() {
    let trusted = r#","signal":{"trusted_clusters":["auth"]}"#;
    let mut host = request(&[]);
    let root = configured(&mut host, trusted);
    // Routed to "app": no next ID; the answer from "app" is not trusted.
    host.properties = vec![("xds.cluster_name".into(), b"app".to_vec())];
    let mut s = root.stream();
    s.on_request_headers(&host);
    assert!(host.values(Map::Request, "x-session-id-next").is_empty());
    host.set_response(&[("x-session-guard", "login")]);
    s.on_response_headers(&host);
    assert_eq!(host.counter("session_guard.signal.untrusted"), 1);
    assert!(host.values(Map::Response, "x-session-guard").is_empty());
    assert_eq!(host.counter("session_guard.rotation.login"), 0);

    // Routed to "app", answered by "auth" (re-routed after the filter): trusted.
    let mut s = root.stream();
    s.on_request_headers(&host);
    host.properties = vec![("xds.cluster_name".into(), b"auth".to_vec())];
    host.set_response(&[("x-session-guard", "login")]);
    s.on_response_headers(&host);
    assert_eq!(host.counter("session_guard.rotation.login"), 1);
    let mut s = root.stream();
    s.on_request_headers(&host);
    assert_eq!(host.values(Map::Request, "x-session-id-next").len(), 1);
}

#[test]
fn response_phase_hardens_cookies_and_joins_cache_control() {
    let mut host = request(&[]);
    let root = configured(&mut host, "");
    host.level = Some(LogLevel::Info);
    let mut s = root.stream();
    s.on_request_headers(&host);
    host.set_response(&[
        ("set-cookie", "theme=dark"),
        ("set-cookie", "__Host-session=evil"),
        ("cache-control", "public"),
        ("cache-control", "max-age=60"),
    ]);
    s.on_response_headers(&host);
    let set = host.values(Map::Response, "set-cookie");
    assert_eq!(set.len(), 2);
    assert_eq!(set[0], "theme=dark; Secure; SameSite=Lax");
    assert!(set[1].starts_with("__Host-session=v2."));
    assert_eq!(
        one(&host, Map::Response, "cache-control"),
        "private, max-age=60"
    );
    // Debug lines are not built when the host would drop them.
    assert!(host
        .logs
        .borrow()
        .iter()
        .all(|(l, _)| *l != LogLevel::Debug));
}

#[test]
fn views_read_headers_once() {
    let host = request(&[]);
    let root_cfg = crate::config::parse(
        format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]}}"#).as_bytes(),
        &|_| None,
    )
    .unwrap();
    let mut h = host.request.borrow().clone();
    h.push(("x-session-id".into(), b"1".to_vec()));
    h.push(("x_session_id".into(), b"2".to_vec()));
    h.push(("x-session-id".into(), b"3".to_vec()));
    let h = crate::wire::HeaderMap::from_headers(&h);
    let v = request_view(&root_cfg, &h, false, 7);
    assert_eq!((v.method, v.path, v.now), (&b"GET"[..], Some(&b"/"[..]), 7));
    assert_eq!(v.spoofed, ["x-session-id", "x_session_id"]);
    assert!(same_header_name("x_session-id", "x-session_id"));
    assert!(!same_header_name("x-session-id", "x-session-ix"));
}

#[test]
fn filter_state_carries_the_hash_and_decision_unless_turned_off() {
    let mut host = request(&[]);
    let root = configured(&mut host, "");
    let mut s = root.stream();
    s.on_request_headers(&host);
    let set = host.set_properties.borrow().clone();
    let get = |k: &str| set.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(
        get("session_guard.decision").as_deref(),
        Some(&b"minted"[..])
    );
    let hash = get("session_guard.session").unwrap();
    assert_eq!(hash.len(), 16);
    assert!(hash.iter().all(u8::is_ascii_hexdigit));
    let id = one(&host, Map::Request, "x-session-id");
    assert!(
        !String::from_utf8_lossy(&hash).contains(&id),
        "never the ID"
    );

    let mut off = request(&[]);
    let root = configured(&mut off, r#","observe":{"filter_state":false}"#);
    root.stream().on_request_headers(&off);
    assert!(off.set_properties.borrow().is_empty());
}

/// A cookieless origin fetch of a public asset: the fresh ID is forwarded, the response
/// passes byte for byte, and that ID is never valid afterwards (it was never signed).
#[test]
fn shared_cacheable_response_passes_byte_for_byte_and_its_id_is_never_valid() {
    let mut host = request(&[]);
    let root = configured(&mut host, "");
    let mut s = root.stream();
    s.on_request_headers(&host);
    let first = one(&host, Map::Request, "x-session-id");
    let upstream = [
        (":status", "200"),
        ("cache-control", "public, max-age=31536000"),
        ("cdn-cache-control", "max-age=600"),
    ];
    host.set_response(&upstream);
    let writes = host.writes.get();
    s.on_response_headers(&host);
    let got: Vec<(String, Vec<u8>)> = host.response.borrow().clone();
    let want: Vec<(String, Vec<u8>)> = upstream
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(host.counter("session_guard.session.not_committed"), 1);
    assert_eq!(host.counter("session_guard.session.minted"), 0);
    // Only the filter state changed (decision not_committed, no session hash).
    assert!(host.writes.get() - writes <= 2);

    // The browser comes back without a cookie (none was set): a new ID, never the first.
    let mut host2 = request(&[]);
    host2.now = NOW;
    host2.draws.set(host.draws.get());
    let mut s2 = root.stream();
    s2.on_request_headers(&host2);
    assert_ne!(one(&host2, Map::Request, "x-session-id"), first);
    // And an attacker who learnt the uncommitted ID cannot present it: it was never signed.
    let forged = format!("__Host-session={first}");
    let mut host3 = request(&[("cookie", &forged)]);
    host3.now = NOW;
    host3.draws.set(100);
    let mut s3 = root.stream();
    s3.on_request_headers(&host3);
    assert_ne!(one(&host3, Map::Request, "x-session-id"), first);
    assert!(host3.values(Map::Request, "cookie").is_empty());
}

/// A private page on the same kind of request commits: cookie set, response uncacheable.
#[test]
fn private_response_commits_the_fresh_id() {
    let mut host = request(&[]);
    let root = configured(&mut host, "");
    let mut s = root.stream();
    s.on_request_headers(&host);
    let id = one(&host, Map::Request, "x-session-id");
    host.set_response(&[(":status", "200"), ("cache-control", "max-age=60")]);
    s.on_response_headers(&host);
    let set = one(&host, Map::Response, "set-cookie");
    assert!(set.starts_with("__Host-session=v2.k1."), "{set}");
    assert_eq!(
        one(&host, Map::Response, "cache-control"),
        "private, max-age=60"
    );
    assert_eq!(host.counter("session_guard.session.minted"), 1);
    // The committed cookie carries the forwarded ID.
    let cookie = set.split(';').next().unwrap().to_string();
    let mut back = request(&[("cookie", &cookie)]);
    back.now = NOW;
    let mut s2 = root.stream();
    s2.on_request_headers(&back);
    assert_eq!(one(&back, Map::Request, "x-session-id"), id);
}
