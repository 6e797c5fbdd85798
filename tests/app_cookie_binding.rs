//! App cookie binding (issue 12) in the real Envoy, with the recording upstream of
//! tests/common scripting the app's `Set-Cookie`: binding, enforcement, deletion, several
//! cookies, duplicates, carry-over at rotation, logout and the adoption window.
//! (Real frameworks: tests/app_frameworks.rs; bounds, forgery, monitor mode and hostile bytes:
//! tests/app_cookie_limits.rs.)
#![cfg(test)]

mod common;
use common::*;
use std::time::{SystemTime, UNIX_EPOCH};

/// The shipped ingress configuration plus `extra` (`,"key":...`).
fn cfg(extra: &str) -> String {
    format!(
        r#"{{"keys":[{{"id":"k1","secret_env":"SESSION_GUARD_KEY"}}],"signal":{{"trusted_clusters":["auth"]}}{extra}}}"#
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The app: `/set/NAME/VALUE[/NAME/VALUE...]` sets those cookies (`Path=/`), `/del/NAME`
/// deletes with `Max-Age=0`, `/expire/NAME` with an `Expires` in the past; else `200 ok`.
fn app_responder(r: &Recorded) -> Reply {
    let path = r.path_str();
    let parts: Vec<&str> = path.split('/').skip(2).collect();
    let mut reply = Reply::ok();
    if path.starts_with("/set/") {
        for pair in parts.chunks(2) {
            if let [name, value] = pair {
                reply = reply.header("set-cookie", format!("{name}={value}; Path=/"));
            }
        }
    } else if let (true, Some(name)) = (path.starts_with("/del/"), parts.first()) {
        reply = reply.header("set-cookie", format!("{name}=; Max-Age=0; Path=/"));
    } else if let (true, Some(name)) = (path.starts_with("/expire/"), parts.first()) {
        reply = reply.header(
            "set-cookie",
            format!("{name}=deleted; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Path=/"),
        );
    }
    reply
}

/// `auth` answers `/auth/login?user=U` with a login signal, `/auth/logout` with a logout.
fn auth_responder(r: &Recorded) -> Reply {
    let path = r.path_str();
    let reply = Reply::ok();
    if let Some(user) = path.strip_prefix("/auth/login?user=") {
        reply
            .header("x-session-guard", "login")
            .header("x-session-guard-subject", user)
    } else if path.starts_with("/auth/logout") {
        reply.header("x-session-guard", "logout")
    } else {
        reply
    }
}

async fn mesh(config: Option<String>) -> Mesh {
    let m = Mesh::start(
        auth_responder,
        |_: &Recorded| Reply::ok(),
        |b| match config {
            Some(c) => b.filter_config(c),
            None => b,
        },
    )
    .await;
    m.app.respond_with(app_responder);
    m
}

/// The `Cookie` header the app received last (`None`: no such header).
fn app_cookie(m: &Mesh) -> Option<String> {
    m.app
        .last()
        .expect("a request reached the app")
        .header("cookie")
}

/// A browser that has a mesh session with `connect.sid=good` bound to it.
async fn bound_browser(m: &Mesh, wire: Wire) -> Browser {
    let mut b = Browser::new(m.envoy.port(), wire);
    b.jar.set("lang", "en");
    let resp = b.get("/set/connect.sid/good").await;
    assert_eq!(resp.status, 200);
    assert!(
        set_cookie(&resp, SESSION_COOKIE).is_some(),
        "the mesh cookie is issued with the binding"
    );
    assert_eq!(b.jar.get("connect.sid"), Some("good"));
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bound_cookie_passes_byte_for_byte_and_any_other_value_is_removed() {
    let m = mesh(None).await;
    for wire in [Wire::H1, Wire::H2] {
        let mut b = bound_browser(&m, wire).await;
        b.get("/page").await;
        assert_eq!(
            app_cookie(&m).as_deref(),
            Some("lang=en; connect.sid=good"),
            "{wire:?}"
        );
        let unbound = m.envoy.counter("session_guard.app_cookie.unbound").await;
        for evil in ["evil", "good2", "", "\"good\""] {
            b.jar.set("connect.sid", evil);
            b.get("/page").await;
            assert_eq!(
                app_cookie(&m).as_deref(),
                Some("lang=en"),
                "{wire:?} {evil}"
            );
        }
        // A case variant of a listed name is that name.
        b.jar.set("connect.sid", "good");
        b.jar.set("CONNECT.SID", "evil");
        b.get("/page").await;
        assert_eq!(
            app_cookie(&m).as_deref(),
            Some("lang=en; connect.sid=good"),
            "{wire:?}"
        );
        assert!(m.envoy.counter("session_guard.app_cookie.unbound").await >= unbound + 4);
    }
    assert_eq!(m.envoy.counter("session_guard.app_cookie.bound").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_valid_mesh_session_no_app_cookie_passes() {
    let m = mesh(None).await;
    let victim = bound_browser(&m, Wire::H1).await;
    // No mesh cookie at all.
    let cookie = "connect.sid=good; PHPSESSID=p; jsessionid=j; lang=en; sessionid=s";
    send(m.envoy.port(), Req::get("/page").header("cookie", cookie)).await;
    assert_eq!(app_cookie(&m).as_deref(), Some("lang=en"));
    // Another browser's valid mesh session: the value is bound, but not to that session.
    let mut other = Browser::new(m.envoy.port(), Wire::H1);
    other.get("/").await;
    other
        .jar
        .set("connect.sid", victim.jar.get("connect.sid").unwrap());
    other.get("/page").await;
    assert_eq!(app_cookie(&m), None, "the only cookie left was removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_cookie_set_without_a_mesh_session_creates_one() {
    let m = mesh(Some(cfg(r#","cookie":{"anonymous":false}"#))).await;
    let plain = send(m.envoy.port(), Req::get("/")).await;
    assert!(
        set_cookie(&plain, SESSION_COOKIE).is_none(),
        "anonymous: false"
    );
    let mut b = Browser::new(m.envoy.port(), Wire::H1);
    let resp = b.get("/set/PHPSESSID/pre-login-csrf").await;
    assert!(
        set_cookie(&resp, SESSION_COOKIE).is_some(),
        "a session to bind to"
    );
    b.get("/page").await;
    assert_eq!(app_cookie(&m).as_deref(), Some("PHPSESSID=pre-login-csrf"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_set_cookie_deleting_a_bound_cookie_unbinds_it() {
    let m = mesh(None).await;
    let mut b = bound_browser(&m, Wire::H1).await;
    b.get("/set/PHPSESSID/p1").await;
    b.get("/page").await;
    assert_eq!(
        app_cookie(&m).as_deref(),
        Some("lang=en; connect.sid=good; PHPSESSID=p1")
    );
    b.get("/del/connect.sid").await;
    b.get("/expire/PHPSESSID").await;
    assert_eq!(b.jar.get("connect.sid"), None);
    assert_eq!(
        m.envoy.counter("session_guard.app_cookie.released").await,
        2
    );
    // A client that keeps (or replays) the deleted values: they no longer pass.
    b.jar.set("connect.sid", "good");
    b.jar.set("PHPSESSID", "p1");
    b.get("/page").await;
    assert_eq!(app_cookie(&m).as_deref(), Some("lang=en"));
}

#[tokio::test(flavor = "multi_thread")]
async fn several_bound_cookies_pass_in_place_with_the_others_untouched() {
    let m = mesh(None).await;
    let mut b = Browser::new(m.envoy.port(), Wire::H1);
    // One response binding three (and a cookie the mesh does not bind).
    b.get("/set/connect.sid/s%3Aabc.d%2Bef/PHPSESSID/p1/JSESSIONID/J1.node0/theme/dark")
        .await;
    assert_eq!(m.envoy.counter("session_guard.app_cookie.bound").await, 3);
    let mesh_cookie = b.jar.get(SESSION_COOKIE).expect("mesh cookie").to_owned();
    let sent = format!(
        "a=1; connect.sid=s%3Aabc.d%2Bef; {SESSION_COOKIE}={mesh_cookie}; PHPSESSID=p1; \
         b=\"q\"; JSESSIONID=J1.node0;theme=dark"
    );
    send(m.envoy.port(), Req::get("/page").header("cookie", &sent)).await;
    let got = app_cookie(&m).expect("cookies");
    assert_eq!(
        cookie_pairs(&got),
        cookie_pairs(&sent.replace(&format!("{SESSION_COOKIE}={mesh_cookie}; "), "")),
        "{got}"
    );
    assert!(got.starts_with("a=1; connect.sid=s%3Aabc.d%2Bef; PHPSESSID=p1; b=\"q\"; "));
}

#[tokio::test(flavor = "multi_thread")]
async fn of_duplicates_only_the_bound_value_passes() {
    let m = mesh(None).await;
    let b = bound_browser(&m, Wire::H1).await;
    let mesh_cookie = b.jar.get(SESSION_COOKIE).unwrap().to_owned();
    let me = format!("{SESSION_COOKIE}={mesh_cookie}");
    for (sent, expected) in [
        (
            format!("connect.sid=evil; {me}; connect.sid=good"),
            "connect.sid=good",
        ),
        (
            format!("connect.sid=good; {me}; connect.sid=evil"),
            "connect.sid=good",
        ),
        (
            format!("{me}; connect.sid=evil; x=1; connect.sid=evil2"),
            "x=1",
        ),
        (
            format!("Connect.Sid=evil; {me}; connect.sid=good; x=1"),
            "connect.sid=good; x=1",
        ),
    ] {
        for wire in [Wire::H1, Wire::H2] {
            let req = Req::get("/page").header("cookie", &sent);
            match wire {
                Wire::H1 => send(m.envoy.port(), req).await,
                Wire::H2 => send_h2(m.envoy.port(), req).await,
            };
            let got = app_cookie(&m).unwrap_or_default();
            assert_eq!(
                cookie_pairs(&got),
                cookie_pairs(expected),
                "{wire:?}: {sent}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_carries_the_bindings_valid_on_that_request() {
    let m = mesh(None).await;
    let mut b = bound_browser(&m, Wire::H1).await;
    let pre = b.jar.get(SESSION_COOKIE).unwrap().to_owned();
    // The login request carries the bound cookie and a tossed, unbound one.
    let mut at_login = b.clone().toss("PHPSESSID", "tossed", Toss::First);
    let resp = at_login.get("/auth/login?user=alice").await;
    assert_eq!(resp.status, 200);
    let post = at_login
        .jar
        .get(SESSION_COOKIE)
        .expect("rotated")
        .to_owned();
    assert_ne!(post, pre, "the mesh rotated its session");
    b.jar = at_login.jar.clone();
    b.get("/page").await;
    let seen = m.app.last().unwrap();
    assert_eq!(seen.header("x-session-subject").as_deref(), Some("alice"));
    assert_eq!(
        seen.header("cookie").as_deref(),
        Some("lang=en; connect.sid=good"),
        "the app's cart survives the SSO login"
    );
    // What was not bound before the login is not bound after it.
    at_login.get("/page").await;
    assert_eq!(app_cookie(&m).as_deref(), Some("lang=en; connect.sid=good"));
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_the_bindings_with_the_mesh_session() {
    let m = mesh(None).await;
    let mut b = bound_browser(&m, Wire::H1).await;
    b.get("/auth/login?user=alice").await;
    b.get("/page").await;
    assert_eq!(app_cookie(&m).as_deref(), Some("lang=en; connect.sid=good"));
    let resp = b.get("/auth/logout").await;
    let line = set_cookie(&resp, SESSION_COOKIE).expect("the mesh cookie is expired");
    assert_eq!(cookie_attr(&line, "Max-Age").as_deref(), Some("0"));
    assert_eq!(b.jar.get(SESSION_COOKIE), None);
    assert_eq!(
        b.jar.get("connect.sid"),
        Some("good"),
        "the app did not delete it"
    );
    b.get("/page").await;
    let seen = m.app.last().unwrap();
    assert_eq!(seen.header("cookie").as_deref(), Some("lang=en"));
    assert!(seen.header("x-session-subject").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adoption_window_binds_an_unbound_cookie_once() {
    let open = format!(r#","app_cookies":{{"adopt_until":{}}}"#, now() + 3600);
    let m = mesh(Some(cfg(&open))).await;
    let mut b = Browser::new(m.envoy.port(), Wire::H1);
    b.get("/").await;
    // An app session from before the deploy: adopted, not removed.
    b.jar.set("connect.sid", "from-before");
    let resp = b.get("/page").await;
    assert_eq!(app_cookie(&m).as_deref(), Some("connect.sid=from-before"));
    assert!(
        set_cookie(&resp, SESSION_COOKIE).is_some(),
        "the adoption is recorded in the re-issued mesh cookie"
    );
    assert_eq!(m.envoy.counter("session_guard.app_cookie.adopted").await, 1);
    b.get("/page").await;
    assert_eq!(app_cookie(&m).as_deref(), Some("connect.sid=from-before"));
    assert_eq!(
        m.envoy.counter("session_guard.app_cookie.adopted").await,
        1,
        "once"
    );
    drop(m);
    // After the window: removed.
    let closed = format!(r#","app_cookies":{{"adopt_until":{}}}"#, now() - 10);
    let m = mesh(Some(cfg(&closed))).await;
    let mut b = Browser::new(m.envoy.port(), Wire::H1);
    b.get("/").await;
    b.jar.set("connect.sid", "from-before");
    b.get("/page").await;
    assert_eq!(app_cookie(&m), None);
    assert_eq!(m.envoy.counter("session_guard.app_cookie.adopted").await, 0);
    assert_eq!(m.envoy.counter("session_guard.app_cookie.unbound").await, 1);
}
