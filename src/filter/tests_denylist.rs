//! Issue 28: a logout ends the session on every worker of the proxy, across configuration
//! pushes, until its absolute expiry; mesh names in trailers never pass.

use super::*;
use crate::hostapi::fake::FakeHost;
use std::cell::RefCell;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: u64 = 1_800_000_000;

/// A worker: its own root (configured now: a fresh root is also what a configuration push
/// gives), sharing the proxy's shared data.
fn worker(shared: &FakeHost, extra: &str) -> (FakeHost, Root) {
    let host = FakeHost {
        config: format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#).into_bytes(),
        now: NOW,
        shared: std::rc::Rc::clone(&shared.shared),
        ..FakeHost::default()
    };
    let mut root = Root::default();
    assert!(root.configure(&host, &|_| None));
    (host, root)
}

/// One exchange: the request's cookie (if any), the response's headers. Returns the
/// `x-session-id` the upstream got and the mesh cookie set on the response (if any).
fn exchange(
    host: &FakeHost,
    root: &Root,
    cookie: Option<&str>,
    response: &[(&str, &str)],
) -> (Option<String>, Option<String>) {
    let mut req = vec![(":method", "GET"), (":path", "/"), (":authority", "a")];
    let c = cookie.map(|c| format!("__Host-session={c}"));
    if let Some(c) = &c {
        req.push(("cookie", c));
    }
    *host.request.borrow_mut() = req
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    let mut s = root.stream();
    s.on_request_headers(host);
    host.set_response(response);
    s.on_response_headers(host);
    let id = host.values(Map::Request, "x-session-id").pop();
    let set = host
        .values(Map::Response, "set-cookie")
        .pop()
        .and_then(|v| {
            let v = v.strip_prefix("__Host-session=")?.split(';').next()?;
            (!v.is_empty()).then(|| v.to_string())
        });
    (id, set)
}

#[test]
fn a_logout_ends_every_copy_on_every_worker_and_across_a_push() {
    let proxy = FakeHost::default();
    let (w1, r1) = worker(&proxy, "");
    let (_, cookie) = exchange(&w1, &r1, None, &[]);
    let cookie = cookie.unwrap();
    let (id, _) = exchange(&w1, &r1, Some(&cookie), &[]);
    let (_, other) = exchange(&w1, &r1, None, &[]);
    let other = other.unwrap();
    // The copy in another tab still works before the logout.
    assert_eq!(
        w1.shared_reads.get(),
        1,
        "one lookup, for the valid session"
    );
    exchange(&w1, &r1, Some(&cookie), &[("x-session-guard", "logout")]);
    assert_eq!(w1.counter("session_guard.logout.recorded"), 1);
    assert_eq!(proxy.shared.borrow().len(), 1, "one bucket written");
    // Another worker, configured after the logout (a configuration push looks the same).
    let (w2, r2) = worker(&proxy, "");
    w2.draws.set(100); // the fake CSPRNG counts: another worker draws other IDs
    let (replayed, fresh) = exchange(&w2, &r2, Some(&cookie), &[]);
    assert_ne!(
        replayed, id,
        "the ended session never reaches the app again"
    );
    assert!(fresh.is_some(), "a new anonymous session instead");
    assert_eq!(w2.counter("session_guard.logout.refused"), 1);
    assert_eq!(w2.counter("session_guard.session.invalid.revoked"), 1);
    assert!(w2
        .logs
        .borrow()
        .iter()
        .any(|(_, l)| l.starts_with("session cookie invalid: revoked session=")));
    // Another session is untouched.
    let (_, none) = exchange(&w2, &r2, Some(&other), &[]);
    assert_eq!(none, None, "valid, nothing re-issued");
    assert_eq!(w2.counter("session_guard.session.valid"), 1);
    // The steady path without a session reads no shared data.
    let reads = w2.shared_reads.get();
    exchange(&w2, &r2, None, &[]);
    assert_eq!(w2.shared_reads.get(), reads);
}

#[test]
fn monitor_mode_records_nothing_and_expired_entries_end() {
    let proxy = FakeHost::default();
    let (w, r) = worker(&proxy, r#","mode":"monitor""#);
    exchange(&w, &r, None, &[("x-session-guard", "logout")]);
    assert!(proxy.shared.borrow().is_empty());
    // Entries end at the session's absolute expiry: a bucket of expired entries is no denial.
    let (w, r) = worker(&proxy, "");
    let (_, cookie) = exchange(&w, &r, None, &[]);
    let cookie = cookie.unwrap();
    exchange(&w, &r, Some(&cookie), &[("x-session-guard", "logout")]);
    let (bucket, _) = proxy.shared.borrow().values().next().cloned().unwrap();
    let expiry = u64::from_be_bytes(bucket[8..16].try_into().unwrap());
    assert_eq!(expiry, NOW + 43_200, "issued_at + cookie.max_age_s");
    assert!(!crate::policy::denylist::contains(
        &bucket,
        &bucket[..8].try_into().unwrap(),
        expiry
    ));
}

#[test]
fn a_full_bucket_leaves_the_session_valid_counted_and_logged() {
    let proxy = FakeHost::default();
    let (w, r) = worker(&proxy, "");
    let (_, cookie) = exchange(&w, &r, None, &[]);
    let cookie = cookie.unwrap();
    // Fill every bucket with live entries of other sessions.
    for b in 0..=255u8 {
        let mut v = Vec::new();
        for n in 0..16u8 {
            v.extend_from_slice(&[b, n, 1, 1, 1, 1, 1, 1]);
            v.extend_from_slice(&(NOW + 1000).to_be_bytes());
        }
        let key = crate::policy::denylist::bucket_key(&[b, 0, 0, 0, 0, 0, 0, 0]);
        let key = String::from_utf8(key.to_vec()).unwrap();
        proxy.shared.borrow_mut().insert(key, (v, 1));
    }
    exchange(&w, &r, Some(&cookie), &[("x-session-guard", "logout")]);
    assert_eq!(w.counter("session_guard.logout.denylist_full"), 1);
    assert_eq!(w.counter("session_guard.logout.recorded"), 0);
    assert!(w.logs.borrow().iter().any(|(_, l)| l
        .starts_with("logout not recorded (denylist full or unavailable): the session stays valid until its absolute expiry session=")));
    let (_, none) = exchange(&w, &r, Some(&cookie), &[]);
    assert_eq!(none, None, "documented direction: still valid");
}

#[test]
fn mesh_names_in_trailers_are_removed() {
    let proxy = FakeHost::default();
    let (w, r) = worker(&proxy, "");
    let mut s = r.stream();
    *w.response_trailers.borrow_mut() = vec![
        ("x-session-guard".into(), b"login".to_vec()),
        ("x-session-guard-subject".into(), b"admin".to_vec()),
        ("grpc-status".into(), b"0".to_vec()),
    ];
    *w.request_trailers.borrow_mut() = vec![
        ("x-session-subject".into(), b"admin".to_vec()),
        ("x-session-id".into(), b"x".to_vec()),
        ("x-session-id-next".into(), b"x".to_vec()),
        ("te".into(), b"trailers".to_vec()),
    ];
    assert_eq!(s.on_trailers(&w, Map::ResponseTrailers), Flow::Continue);
    assert_eq!(s.on_trailers(&w, Map::RequestTrailers), Flow::Continue);
    let names = |m: &RefCell<Vec<(String, Vec<u8>)>>| -> Vec<String> {
        m.borrow().iter().map(|(n, _)| n.clone()).collect()
    };
    assert_eq!(names(&w.response_trailers), ["grpc-status"]);
    assert_eq!(names(&w.request_trailers), ["te"]);
    // Monitor mode leaves them.
    let (m, r) = worker(&proxy, r#","mode":"monitor""#);
    *m.response_trailers.borrow_mut() = vec![("x-session-guard".into(), b"login".to_vec())];
    r.stream().on_trailers(&m, Map::ResponseTrailers);
    assert_eq!(names(&m.response_trailers), ["x-session-guard"]);
}

/// Issue 28 ("Also"): a cookie name a sibling host can set is accepted with a warning.
#[test]
fn a_name_without_the_host_prefix_is_warned_about() {
    let proxy = FakeHost::default();
    let warned = |extra: &str| {
        let (w, _) = worker(&proxy, extra);
        let logs = w.logs.borrow();
        logs.iter()
            .any(|(l, m)| *l == LogLevel::Warn && m.contains("no __Host- prefix"))
    };
    assert!(!warned(""));
    assert!(warned(r#","cookie":{"name":"sg","scope":"tenant-a"}"#));
}
