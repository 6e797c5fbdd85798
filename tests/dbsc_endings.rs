//! Issue 29 end to end: how a device-bound session ends, and what the endpoints cost and do
//! around it. Logout, `revoke.subjects` and the removal of the signing key end the DBSC session
//! at its next refresh (`{"continue": false}`), for the key holder too; monitor mode (`dbsc.mode`
//! and the global `mode`) answers the endpoints but never holds a request back; an anonymous
//! flood of both endpoints costs no signature verification. (The victim's side:
//! tests/dbsc.rs; the thieves: tests/dbsc_thieves.rs.)
#![cfg(test)]

mod common;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::dbsc::*;
use common::*;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Sleeps into the next second, so that a time taken now lies after every issue time so far.
async fn next_second() {
    let start = now_s();
    while now_s() == start {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Logout expires the mesh cookie and the ticket; the browser's next refresh ends its DBSC
/// session, and so does a refresh by the key holder with the cookies from before the logout
/// (the logged-out session is refused); a copy of those cookies authenticates nobody.
#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_the_dbsc_session_at_the_next_refresh() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = bound_client(&m, "victim", Form::Bare).await;
    let before_logout = victim.clone();
    let resp = victim.get("/auth/logout").await;
    for name in [SESSION_COOKIE, TICKET_COOKIE] {
        let line = set_cookie(&resp, name).unwrap_or_else(|| panic!("{name} expired"));
        assert_eq!(
            cookie_attr(&line, "Max-Age").as_deref(),
            Some("0"),
            "{line}"
        );
    }
    assert_eq!(victim.browser.jar.get(TICKET_COOKIE), None);
    assert_eq!(victim.refresh().await, Outcome::Ended);
    assert!(is_continue_false(&victim.exchanges.last().unwrap().resp));

    let mut copy = before_logout.clone();
    copy.defer = false;
    copy.get("/").await;
    assert_eq!(seen(&m.app).subject, None, "the logged-out copy");
    // Each request on a new connection: both workers get to refuse it.
    for _ in 0..6 {
        let mut holder = before_logout.clone();
        assert_eq!(
            holder.refresh().await,
            Outcome::Ended,
            "the key holder's old cookies"
        );
        let last = &holder.exchanges.last().unwrap().resp;
        assert!(
            is_continue_false(last),
            "{} {}",
            last.status,
            last.body_str()
        );
        assert!(set_cookie(last, TICKET_COOKIE).is_none());
    }
    assert!(m.envoy.counter("session_guard.dbsc.ended").await >= 7);
}

/// `revoke.subjects` (a configuration change, as an operator applies it): the revoked
/// subject's DBSC session ends at its next refresh; another user's refreshes on.
#[tokio::test(flavor = "multi_thread")]
async fn revoke_subjects_ends_the_dbsc_session_at_the_next_refresh() {
    let before = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = bound_client(&before, "victim", Form::Bare).await;
    let mut bob = bound_client(&before, "bob", Form::Bare).await;
    next_second().await;
    let t = now_s();
    let revoke = format!(r#","revoke":{{"subjects":{{"victim":{t}}}}}"#);
    let m = dbsc_mesh(dbsc_config("", &revoke)).await;
    for c in [&mut victim, &mut bob] {
        c.browser.port = m.envoy.port();
    }
    let mut copy = victim.clone();
    copy.defer = false;
    copy.get("/").await;
    assert_eq!(seen(&m.app).subject, None, "revoked, even with a ticket");
    assert_eq!(victim.refresh().await, Outcome::Ended);
    assert!(is_continue_false(&victim.exchanges.last().unwrap().resp));
    assert_eq!(bob.refresh().await, Outcome::Refreshed);
    bob.get("/").await;
    assert_eq!(seen(&m.app).subject.as_deref(), Some("bob"));
}

/// The key that signed the session id is removed from the ring: the id no longer verifies,
/// the next refresh ends the DBSC session.
#[tokio::test(flavor = "multi_thread")]
async fn removing_the_key_ends_the_dbsc_session_at_the_next_refresh() {
    let before = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = bound_client(&before, "victim", Form::Bare).await;
    let config = dbsc_config("", "").replace(r#""id":"k1""#, r#""id":"k2""#);
    let m = dbsc_mesh_tuned(config, |b| {
        b.env(
            "SESSION_GUARD_KEY",
            &STANDARD.encode("another signing key, 32 bytes ++"),
        )
    })
    .await;
    victim.browser.port = m.envoy.port();
    assert_eq!(victim.refresh().await, Outcome::Ended);
    assert!(is_continue_false(&victim.exchanges.last().unwrap().resp));
}

/// `dbsc.mode: monitor`: registration and refresh are served, an unproven request still
/// reaches the app with its identity, and is counted.
#[tokio::test(flavor = "multi_thread")]
async fn dbsc_monitor_mode_serves_the_endpoints_and_forwards_unproven_requests() {
    let m = dbsc_mesh(dbsc_config(r#","mode":"monitor""#, "")).await;
    let mut victim = bound_client(&m, "victim", Form::Bare).await;
    assert_eq!(victim.refresh().await, Outcome::Refreshed);
    victim.browser.jar.remove(TICKET_COOKIE);
    victim.defer = false;
    victim.get("/").await;
    let s = seen(&m.app);
    assert!(s.id.is_some());
    assert_eq!(
        s.subject.as_deref(),
        Some("victim"),
        "monitor forwards the identity"
    );
    assert_eq!(m.envoy.counter("session_guard.dbsc.unproven").await, 1);
    assert_eq!(m.envoy.counter("session_guard.dbsc.registered").await, 1);
}

/// Global `mode: monitor` implies it: a session bound while enforcing refreshes on, and its
/// unproven request passes untouched (the filter changes nothing in monitor mode), counted.
#[tokio::test(flavor = "multi_thread")]
async fn global_monitor_mode_serves_the_endpoints_and_changes_no_request() {
    let enforcing = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = bound_client(&enforcing, "victim", Form::Bare).await;
    let m = dbsc_mesh(dbsc_config("", r#","mode":"monitor""#)).await;
    victim.browser.port = m.envoy.port();
    let before = m.app.count();
    assert_eq!(victim.refresh().await, Outcome::Refreshed);
    assert_eq!(
        m.app.count(),
        before,
        "the endpoint is answered, not forwarded"
    );
    victim.browser.jar.remove(TICKET_COOKIE);
    victim.defer = false;
    victim.get("/").await;
    let s = seen(&m.app);
    assert!(s.cookie(SESSION_COOKIE).is_some(), "byte for byte: {s:?}");
    assert_eq!(m.envoy.counter("session_guard.dbsc.unproven").await, 1);
}

/// Anonymous floods of both endpoints (no cookies, garbage, well-formed JWTs signed by some
/// key, forged ids, an anonymous or an authenticated session with forged challenges) never
/// reach the app, never get a 401/404 or a ticket, always `no-store`, and cost no ECDSA
/// verification: `dbsc.verified` stays 0 until a genuine registration.
#[tokio::test(flavor = "multi_thread")]
async fn an_anonymous_flood_costs_no_signature_verification() {
    let m = dbsc_mesh(dbsc_config("", "")).await;
    let port = m.envoy.port();
    let key = Device::new();
    let forged_id = format!("d1.k1.{}.{}", b64([4u8; 64]), b64([0u8; 16]));
    let anon = set_cookie_value(&send(port, Req::get("/")).await, SESSION_COOKIE).unwrap();
    let mut mallory = DbscClient::new(port);
    let offer = registration(&log_in(&mut mallory, "mallory").await).expect("offered");
    let authed = mallory.browser.cookie_header().unwrap();
    let app_before = m.app.count();

    for round in 0..10 {
        for method in ["GET", "PUT", "HEAD"] {
            for path in [START, REFRESH] {
                let r = send(port, Req::new(method, path)).await;
                assert_eq!(r.status, 405, "{method} {path}");
                assert_eq!(r.header("allow").as_deref(), Some("POST"));
            }
        }
        let forged_jti = format!("{}.{}", now_s(), b64([round as u8; 16]));
        let reqs = [
            (None, start_req(None), 400),
            (None, start_req(Some(&key.registration_jwt("1.AAAA"))), 400),
            (None, start_req(Some("garbage")), 400),
            (
                Some(&anon),
                start_req(Some(&key.registration_jwt(&forged_jti))),
                400,
            ),
            (None, refresh_req(None, None), 200),
            (None, refresh_req(Some("garbage"), Some("a.b.c")), 200),
            (
                None,
                refresh_req(Some(&forged_id), Some(&key.refresh_jwt(&forged_jti))),
                200,
            ),
            (Some(&anon), refresh_req(Some(&forged_id), None), 200),
        ];
        for (cookie, req, status) in reqs {
            let what = format!("{} {:?}", req.path, req.headers);
            let mut req = req;
            if let Some(c) = cookie {
                req = req.header("cookie", format!("{SESSION_COOKIE}={c}"));
            }
            let r = send(port, req).await;
            assert_eq!(r.status, status, "{what}: {}", r.body_str());
            if status == 200 {
                assert!(is_continue_false(&r), "{what}: {}", r.body_str());
            }
            assert!(r
                .header("cache-control")
                .unwrap_or_default()
                .contains("no-store"));
            assert!(set_cookie(&r, TICKET_COOKIE).is_none(), "{what}");
        }
        // An authenticated session, with forged or absent challenges: refused before the
        // signature (403 with a fresh registration challenge, or 400 for a bad JWT).
        for jwt in [
            key.registration_jwt(&forged_jti),
            key.registration_jwt("1.AAAA"),
        ] {
            let r = send(port, start_req(Some(&jwt)).header("cookie", &authed)).await;
            assert_eq!(r.status, 403, "{}", r.body_str());
            assert!(registration(&r).is_some() || !challenges(&r).is_empty());
        }
        let r = send(port, start_req(Some("x.y.z")).header("cookie", &authed)).await;
        assert_eq!(r.status, 400, "{}", r.body_str());
    }
    assert_eq!(
        m.app.count(),
        app_before,
        "no endpoint request was forwarded"
    );
    assert_eq!(m.envoy.counter("session_guard.dbsc.verified").await, 0);
    assert_eq!(m.envoy.counter("session_guard.dbsc.registered").await, 0);
    // Control: the counter counts. The genuine registration verifies once.
    assert_eq!(mallory.register(&offer).await.status, 200);
    assert_eq!(m.envoy.counter("session_guard.dbsc.verified").await, 1);
}

/// `dbsc.require_bound_after_s` (managed fleets): an authenticated session still unbound after
/// that long is invalid; a bound one stays valid.
#[tokio::test(flavor = "multi_thread")]
async fn require_bound_after_ends_unbound_sessions_only() {
    let m = dbsc_mesh(dbsc_config(r#","require_bound_after_s":1"#, "")).await;
    let mut bound = bound_client(&m, "victim", Form::Bare).await;
    let mut unbound = DbscClient::new(m.envoy.port());
    log_in(&mut unbound, "alice").await;
    unbound.get("/").await;
    assert_eq!(seen(&m.app).subject.as_deref(), Some("alice"), "in time");
    // Issue times are whole seconds: two second boundaries put the login more than 1 s back.
    next_second().await;
    next_second().await;
    unbound.get("/").await;
    assert_eq!(seen(&m.app).subject, None, "unbound too long");
    assert!(
        m.envoy
            .counter("session_guard.session.invalid.unbound")
            .await
            >= 1
    );
    bound.get("/").await;
    assert_eq!(
        seen(&m.app).subject.as_deref(),
        Some("victim"),
        "bound: valid"
    );
}

/// Turning DBSC off is a rollback: a bound session is an ordinary one again (its identity
/// reaches the app without a ticket) and the endpoints' paths are the app's.
#[tokio::test(flavor = "multi_thread")]
async fn turning_dbsc_off_is_a_rollback() {
    let on = dbsc_mesh(dbsc_config("", "")).await;
    let mut victim = bound_client(&on, "victim", Form::Bare).await;
    let off =
        dbsc_mesh(dbsc_config("", "").replace(r#""enabled":true"#, r#""enabled":false"#)).await;
    victim.browser.port = off.envoy.port();
    victim.browser.jar.remove(TICKET_COOKIE);
    victim.defer = false;
    victim.get("/").await;
    assert_eq!(seen(&off.app).subject.as_deref(), Some("victim"));
    let before = off.app.count();
    let r = victim
        .browser
        .request(refresh_req(Some(&victim.id()), None))
        .await;
    assert_eq!(
        (r.status, off.app.count()),
        (200, before + 1),
        "forwarded to the app"
    );
    assert!(!is_continue_false(&r));
    assert_eq!(off.envoy.counter("session_guard.dbsc.unproven").await, 0);
}
