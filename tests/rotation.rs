//! Defense 3 in the real Envoy: rotation on the auth upstream's signal, and the session
//! fixation attack shown dead, end to end.

mod common;
use common::*;

const NAME: &str = "__Host-session";

/// `auth` answers like a login handler: `/auth/login?user=U` signals login as U.
fn auth_responder(r: &Recorded) -> Reply {
    let path = r.path_str();
    let query = path
        .split_once('?')
        .map(|(_, q)| q.to_string())
        .unwrap_or_default();
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{k}=")).map(str::to_string))
    };
    let mut reply = Reply::status(303).header("location", "/");
    if path.starts_with("/auth/login") {
        reply = reply.header("x-session-guard", "login");
        if let Some(u) = param("user") {
            reply = reply.header("x-session-guard-subject", u);
        }
    } else if path.starts_with("/auth/elevate") {
        reply = reply.header("x-session-guard", "privilege");
        if let Some(u) = param("user") {
            reply = reply.header("x-session-guard-subject", u);
        }
    } else if path.starts_with("/auth/logout") {
        reply = reply.header("x-session-guard", "logout");
    } else if path.starts_with("/auth/raw") {
        reply = reply
            .header("x-session-guard", "login")
            .header("x-session-guard-subject", b"caf\xc3\xa9");
    }
    reply
}

/// The shared [`Mesh`]; `api` is an app that tries to log users in itself: its signal must
/// be ignored.
async fn mesh(config: Option<&str>) -> Mesh {
    let api = |_: &Recorded| {
        Reply::ok()
            .header("x-session-guard", "login")
            .header("x-session-guard-subject", "mallory")
    };
    Mesh::start(auth_responder, api, |b| match config {
        Some(c) => b.filter_config(c),
        None => b,
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn login_commits_exactly_the_forwarded_next_id_as_the_subject() {
    let m = mesh(None).await;
    let pre = m.new_session().await;
    let (pre_id, _) = m.whoami(&pre).await;
    let resp = m.get("/auth/login?user=alice", Some(&pre)).await;
    assert_eq!(resp.status, 303);
    let seen = m.auth.last().unwrap();
    let next = seen
        .header("x-session-id-next")
        .expect("auth gets x-session-id-next");
    assert_eq!(
        seen.header("x-session-id").as_deref(),
        Some(pre_id.as_str())
    );
    assert_ne!(next, pre_id);
    assert!(
        resp.header("x-session-guard").is_none(),
        "signal headers never reach the client"
    );
    assert!(resp.header("x-session-guard-subject").is_none());
    let line = set_cookie(&resp, NAME).expect("rotated cookie");
    assert_eq!(cookie_attr(&line, "HttpOnly").as_deref(), Some(""));
    assert!(resp.header("cache-control").unwrap().contains("no-store"));
    let post = set_cookie_value(&resp, NAME).unwrap();
    assert_eq!(m.whoami(&post).await, (next, Some("alice".to_string())));
    let (id, subject) = m.whoami(&pre).await;
    assert_eq!(
        id, pre_id,
        "the pre-login session stays what it was: anonymous"
    );
    assert_eq!(subject, None);
    assert!(
        m.app.last().unwrap().header("x-session-id-next").is_none(),
        "app may not signal"
    );
    assert_eq!(m.envoy.counter("session_guard.rotation.login").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_without_a_prior_session_still_commits_the_next_id() {
    let m = mesh(Some(
        r#"{"keys":[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}],"cookie":{"anonymous":false},"signal":{"trusted_clusters":["auth"]}}"#,
    ))
    .await;
    let resp = m.get("/auth/login?user=bob", None).await;
    let next = m.auth.last().unwrap().header("x-session-id-next").unwrap();
    assert!(m.auth.last().unwrap().header("x-session-id").is_none());
    let v = set_cookie_value(&resp, NAME).unwrap();
    assert_eq!(m.whoami(&v).await, (next, Some("bob".to_string())));
}

#[tokio::test(flavor = "multi_thread")]
async fn privilege_rotates_and_keeps_the_subject_unless_given() {
    let m = mesh(None).await;
    let pre = m.new_session().await;
    let alice = set_cookie_value(&m.get("/auth/login?user=alice", Some(&pre)).await, NAME).unwrap();
    let (alice_id, _) = m.whoami(&alice).await;
    let resp = m.get("/auth/elevate", Some(&alice)).await;
    let elevated = set_cookie_value(&resp, NAME).unwrap();
    let (id, subject) = m.whoami(&elevated).await;
    assert_ne!(id, alice_id);
    assert_eq!(subject.as_deref(), Some("alice"));
    let resp = m
        .get("/auth/elevate?user=alice-admin", Some(&elevated))
        .await;
    let admin = set_cookie_value(&resp, NAME).unwrap();
    assert_eq!(m.whoami(&admin).await.1.as_deref(), Some("alice-admin"));
    assert_eq!(m.envoy.counter("session_guard.rotation.privilege").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_expires_the_cookie() {
    let m = mesh(None).await;
    let pre = m.new_session().await;
    let alice = set_cookie_value(&m.get("/auth/login?user=alice", Some(&pre)).await, NAME).unwrap();
    let resp = m.get("/auth/logout", Some(&alice)).await;
    let line = set_cookie(&resp, NAME).unwrap();
    assert_eq!(cookie_attr(&line, "Max-Age").as_deref(), Some("0"));
    assert_eq!(set_cookie_value(&resp, NAME).as_deref(), Some(""));
    assert!(resp.header("cache-control").is_some());
    // The browser drops the cookie; the next request starts anonymous.
    let next = m.get("/", None).await;
    assert!(set_cookie_value(&next, NAME).is_some());
    assert!(m.app.last().unwrap().header("x-session-subject").is_none());
    assert_eq!(m.envoy.counter("session_guard.logout").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_from_untrusted_clusters_are_ignored_removed_and_counted() {
    let m = mesh(None).await;
    let pre = m.new_session().await;
    let resp = m.get("/api/profile", Some(&pre)).await;
    assert!(m.api.last().unwrap().header("x-session-id-next").is_none());
    assert!(resp.header("x-session-guard").is_none());
    assert!(resp.header("x-session-guard-subject").is_none());
    assert!(set_cookie(&resp, NAME).is_none(), "no rotation");
    assert_eq!(m.whoami(&pre).await.1, None, "not logged in as mallory");
    assert_eq!(m.envoy.counter("session_guard.signal.untrusted").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_subjects_are_refused_and_login_still_rotates() {
    let m = mesh(None).await;
    for path in [
        "/auth/login",
        "/auth/raw",
        &format!("/auth/login?user={}", "a".repeat(257)),
    ] {
        let pre = m.new_session().await;
        let (pre_id, _) = m.whoami(&pre).await;
        let resp = m.get(path, Some(&pre)).await;
        let post = set_cookie_value(&resp, NAME).expect("rotated anyway");
        let (id, subject) = m.whoami(&post).await;
        assert_ne!(id, pre_id, "{path}");
        assert_eq!(subject, None, "{path}: not authenticated");
    }
    assert_eq!(
        m.envoy
            .counter("session_guard.signal.invalid_subject")
            .await,
        3
    );
    assert_eq!(m.envoy.counter("session_guard.rotation.login").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_trusted_clusters_means_every_cluster_may_signal() {
    let m = mesh(Some(
        r#"{"keys":[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}]}"#,
    ))
    .await;
    let pre = m.new_session().await;
    let resp = m.get("/api/x", Some(&pre)).await;
    assert!(m.api.last().unwrap().header("x-session-id-next").is_some());
    let post = set_cookie_value(&resp, NAME).unwrap();
    assert_eq!(m.whoami(&post).await.1.as_deref(), Some("mallory"));
}

/// The attack this project exists for. The attacker gets a real mesh session, plants it on
/// the victim (as a cookie; through `?jsessionid=`; as a tossed duplicate cookie), the victim
/// logs in, and the attacker replays what was planted: never authenticated.
#[tokio::test(flavor = "multi_thread")]
async fn session_fixation_attack_fails_at_login() {
    let m = mesh(None).await;

    // 1. The attacker obtains a genuine session from the mesh.
    let planted = m.new_session().await;
    let (planted_id, _) = m.whoami(&planted).await;

    // 2a. Planted as the victim's cookie; the victim logs in with it.
    let resp = m.get("/auth/login?user=victim", Some(&planted)).await;
    assert_eq!(
        m.auth.last().unwrap().header("x-session-id").as_deref(),
        Some(planted_id.as_str())
    );
    let victim = set_cookie_value(&resp, NAME).unwrap();
    let (victim_id, victim_subject) = m.whoami(&victim).await;
    assert_eq!(
        victim_subject.as_deref(),
        Some("victim"),
        "the victim is logged in"
    );
    assert_ne!(victim_id, planted_id, "with a new session ID");
    // 3. The attacker replays the planted cookie: still the anonymous pre-login session.
    let (id, subject) = m.whoami(&planted).await;
    assert_eq!(
        (id.as_str(), subject),
        (planted_id.as_str(), None),
        "attacker not authenticated"
    );

    // 2b. Planted through the URL: the link never carries an ID to the app or the auth service.
    let link = format!("/auth/login?user=victim2&jsessionid={planted_id}");
    let resp = send(m.envoy.port(), Req::get(&link)).await;
    let seen = m.auth.last().unwrap();
    assert_eq!(seen.path_str(), "/auth/login?user=victim2");
    assert_ne!(
        seen.header("x-session-id").as_deref(),
        Some(planted_id.as_str())
    );
    let victim2 = set_cookie_value(&resp, NAME).unwrap();
    assert_eq!(m.whoami(&victim2).await.1.as_deref(), Some("victim2"));
    assert_eq!(
        m.whoami(&planted).await.1,
        None,
        "attacker not authenticated"
    );

    // 2c. Tossed as a duplicate cookie next to the victim's own session (a sibling subdomain
    // can add one; the browser then sends both).
    let own = m.new_session().await;
    let req = Req::get("/auth/login?user=victim3")
        .header("cookie", format!("{NAME}={own}; __host-session={planted}"));
    let resp = send(m.envoy.port(), req).await;
    let seen = m.auth.last().unwrap();
    assert_ne!(
        seen.header("x-session-id").as_deref(),
        Some(planted_id.as_str())
    );
    let victim3 = set_cookie_value(&resp, NAME).unwrap();
    assert_eq!(m.whoami(&victim3).await.1.as_deref(), Some("victim3"));
    assert_eq!(
        m.whoami(&planted).await.1,
        None,
        "attacker not authenticated"
    );
    assert_eq!(
        m.envoy
            .counter("session_guard.session.invalid.duplicate")
            .await,
        1
    );

    // No upstream ever saw the planted ID as authenticated.
    for r in m.app.requests() {
        if r.header("x-session-id").as_deref() == Some(planted_id.as_str()) {
            assert!(r.header("x-session-subject").is_none());
        }
    }
}

/// The routed cluster is decided on the stripped path: `/auth;jsessionid=x/login` routes to
/// `auth` only once the path parameter is gone, and its login must be honoured. (Envoy
/// resolved the route before the filter stripped the path, so `auth` gets no
/// `x-session-id-next` here; the rotation still commits a fresh ID.)
#[tokio::test(flavor = "multi_thread")]
async fn signal_trust_follows_the_route_of_the_stripped_path() {
    let m = mesh(None).await;
    let pre = m.new_session().await;
    let resp = m
        .get("/auth;jsessionid=planted/login?user=alice", Some(&pre))
        .await;
    let seen = m.auth.last().expect("routed to auth after the strip");
    assert_eq!(seen.path_str(), "/auth/login?user=alice");
    let pre_id = seen.header("x-session-id").unwrap();
    let post = set_cookie_value(&resp, NAME).expect("rotated");
    let (id, subject) = m.whoami(&post).await;
    assert_ne!(id, pre_id);
    assert_eq!(subject.as_deref(), Some("alice"));
    assert_eq!(
        m.whoami(&pre).await.1,
        None,
        "the planted pre-login ID stays anonymous"
    );
    assert_eq!(m.envoy.counter("session_guard.signal.untrusted").await, 0);
    assert_eq!(m.envoy.counter("session_guard.rotation.login").await, 1);
}
