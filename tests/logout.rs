//! Issue 28 in the real Envoy: a logout ends the session on every worker (finding 3), two
//! disagreeing subjects authenticate nobody (5), a request whose mesh cookie is refused adopts
//! no app cookie (8), and a storm of listed crumbs is one log line (7).
#![cfg(test)]

mod common;
use common::*;
use std::time::{SystemTime, UNIX_EPOCH};

/// The shipped ingress with two workers. `auth`: `/auth/login?user=U` signals a login as U,
/// `/auth/two` a login with two different subjects, `/auth/logout` a logout.
async fn mesh(extra: &str) -> Mesh {
    let cfg = format!(
        r#"{{"keys":[{{"id":"k1","secret_env":"SESSION_GUARD_KEY"}}],"signal":{{"trusted_clusters":["auth"]}}{extra}}}"#
    );
    Mesh::start(
        |r| {
            let path = r.path_str();
            let reply = Reply::ok();
            if let Some(user) = path.strip_prefix("/auth/login?user=") {
                reply
                    .header("x-session-guard", "login")
                    .header("x-session-guard-subject", user)
            } else if path == "/auth/two" {
                reply
                    .header("x-session-guard", "login")
                    .header("x-session-guard-subject", "alice")
                    .header("x-session-guard-subject", "mallory")
            } else if path == "/auth/logout" {
                reply.header("x-session-guard", "logout")
            } else {
                reply
            }
        },
        |_| Reply::ok(),
        move |b| {
            b.filter_config(cfg)
                .concurrency(2)
                .component_log_level("wasm:info")
        },
    )
    .await
}

async fn login(m: &Mesh, user: &str) -> String {
    let anon = m.new_session().await;
    let r = m
        .get(&format!("/auth/login?user={user}"), Some(&anon))
        .await;
    set_cookie_value(&r, SESSION_COOKIE).expect("rotated on login")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_of_a_logged_out_session_is_refused_by_every_worker() {
    let m = mesh("").await;
    let alice = login(&m, "alice").await;
    // The attack's premise: a copy of the cookie (another tab, a shared device) works.
    let other = login(&m, "bob").await;
    assert_eq!(m.whoami(&alice).await.1.as_deref(), Some("alice"));
    let r = m.get("/auth/logout", Some(&alice)).await;
    assert!(set_cookie(&r, SESSION_COOKIE)
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(m.envoy.counter("session_guard.logout.recorded").await, 1);
    // Each request on a new connection: both workers get to see the copy.
    for _ in 0..8 {
        let (_, subject) = m.whoami(&alice).await;
        assert_eq!(subject, None, "the logged-out copy authenticates nobody");
    }
    assert_eq!(m.envoy.counter("session_guard.logout.refused").await, 8);
    assert_eq!(
        m.envoy
            .counter("session_guard.session.invalid.revoked")
            .await,
        8
    );
    // Another user's session is untouched.
    assert_eq!(m.whoami(&other).await.1.as_deref(), Some("bob"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_different_subjects_authenticate_nobody() {
    let m = mesh("").await;
    let anon = m.new_session().await;
    let r = m.get("/auth/two", Some(&anon)).await;
    assert!(r.header("x-session-guard-subject").is_none());
    let rotated = set_cookie_value(&r, SESSION_COOKIE).expect("still rotated");
    assert_eq!(m.whoami(&rotated).await.1, None);
    assert_eq!(
        m.envoy
            .counter("session_guard.signal.invalid_subject")
            .await,
        1
    );
    // Control: one subject authenticates.
    assert_eq!(
        m.whoami(&login(&m, "alice").await).await.1.as_deref(),
        Some("alice")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_a_refused_mesh_cookie_adopts_no_app_cookie() {
    let until = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + 3600;
    let m = mesh(&format!(r#","app_cookies":{{"adopt_until":{until}}}"#)).await;
    let victim = m.new_session().await;
    let attacker = m.new_session().await;
    let send_with = |cookie: String| {
        let port = m.envoy.port();
        async move { send(port, Req::get("/").header("cookie", cookie)).await }
    };
    // A tossed duplicate mesh cookie: none is used, and the planted app cookie is not adopted.
    send_with(format!(
        "{SESSION_COOKIE}={victim}; {SESSION_COOKIE}={attacker}; PHPSESSID=planted"
    ))
    .await;
    assert_eq!(m.app.last().unwrap().header("cookie"), None);
    assert_eq!(m.envoy.counter("session_guard.app_cookie.adopted").await, 0);
    // Control: on a valid session the window adopts it.
    send_with(format!("{SESSION_COOKIE}={victim}; PHPSESSID=planted")).await;
    assert_eq!(
        m.app.last().unwrap().header("cookie").as_deref(),
        Some("PHPSESSID=planted")
    );
    assert_eq!(m.envoy.counter("session_guard.app_cookie.adopted").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_listed_crumbs_is_one_log_line() {
    let m = mesh("").await;
    let storm = vec!["PHPSESSID=x"; 4000].join("; ");
    let r = send(m.envoy.port(), Req::get("/").header("cookie", &storm)).await;
    assert_eq!(r.status, 200);
    assert_eq!(m.app.last().unwrap().header("cookie"), None);
    assert_eq!(
        m.envoy.counter("session_guard.app_cookie.unbound").await,
        4000
    );
    m.envoy
        .wait_log("app cookies removed: 4000 not bound")
        .await;
    assert_eq!(m.envoy.log().matches("app cookies removed").count(), 1);
}
