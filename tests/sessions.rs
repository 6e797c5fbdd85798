//! Defense 2 in the real Envoy: the only session an upstream sees was minted by the mesh.
// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here, which fail like tests do (rust-clippy#13981).
#![cfg(test)]

mod common;
use common::*;
use std::time::Duration;

const NAME: &str = "__Host-session";
/// A second 32-byte key (base64), for key-ring tests.
const OTHER_KEY: &str = "b3RoZXItc2Vzc2lvbi1ndWFyZC1rZXktMDEyMzQ1Njc=";

fn cfg(keys: &str, extra: &str) -> String {
    format!(r#"{{"keys":{keys}{extra}}}"#)
}

fn k1() -> &'static str {
    r#"[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}]"#
}

async fn ingress(config: String) -> (Upstream, Envoy) {
    let app = Upstream::start().await;
    let envoy = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", &app)
        .filter_config(config)
        .start()
        .await;
    (app, envoy)
}

/// Mints a session; returns (cookie value, the x-session-id the upstream saw).
async fn mint(envoy: &Envoy, app: &Upstream) -> (String, String) {
    let resp = send(envoy.port(), Req::get("/")).await;
    assert_eq!(resp.status, 200);
    let value = set_cookie_value(&resp, NAME).expect("a minted cookie");
    let id = app
        .last()
        .unwrap()
        .header("x-session-id")
        .expect("x-session-id");
    (value, id)
}

async fn with_cookie(envoy: &Envoy, cookie: &str) -> Resp {
    send(envoy.port(), Req::get("/page").header("cookie", cookie)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn mint_sets_a_host_only_secure_cookie_and_an_opaque_id() {
    let (app, envoy) = ingress(cfg(k1(), "")).await;
    let resp = send(envoy.port(), Req::get("/")).await;
    let line = set_cookie(&resp, NAME).expect("Set-Cookie for the mesh cookie");
    assert_eq!(cookie_attr(&line, "Path").as_deref(), Some("/"));
    assert_eq!(cookie_attr(&line, "Secure").as_deref(), Some(""));
    assert_eq!(cookie_attr(&line, "HttpOnly").as_deref(), Some(""));
    assert_eq!(cookie_attr(&line, "SameSite").as_deref(), Some("Lax"));
    assert_eq!(cookie_attr(&line, "Max-Age").as_deref(), Some("43200"));
    assert_eq!(cookie_attr(&line, "Domain"), None, "__Host- forbids Domain");
    let value = set_cookie_value(&resp, NAME).unwrap();
    assert!(
        value.starts_with("v2.k1.") && value.len() <= 4096,
        "{value}"
    );
    let cc = resp.header("cache-control").unwrap();
    assert!(cc.contains("no-store") || cc.contains("private"), "{cc}");
    assert!(!cc.contains("public"));
    let id = app.last().unwrap().header("x-session-id").unwrap();
    assert_eq!(id.len(), 22, "128 bits, base64url");
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(app.last().unwrap().header("x-session-subject").is_none());
    assert!(
        !value.contains(&id),
        "the ID is not readable in the cookie as such"
    );
    // Each anonymous request without a cookie gets its own session.
    let (_, id2) = mint(&envoy, &app).await;
    assert_ne!(id, id2);
    assert_eq!(envoy.counter("session_guard.session.minted").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_cookie_is_replayed_as_the_same_session_and_never_forwarded() {
    let (app, envoy) = ingress(cfg(k1(), "")).await;
    let (value, id) = mint(&envoy, &app).await;
    let resp = with_cookie(&envoy, &format!("a=1; {NAME}={value}; b=\"two\"")).await;
    assert_eq!(resp.status, 200);
    assert!(
        set_cookie(&resp, NAME).is_none(),
        "no cookie on every response"
    );
    assert!(
        resp.header("cache-control").is_none(),
        "cacheability untouched"
    );
    let got = app.last().unwrap();
    assert_eq!(got.header("x-session-id").as_deref(), Some(id.as_str()));
    assert_eq!(got.header_all("cookie"), vec!["a=1; b=\"two\""]);
    // Only the mesh cookie: the Cookie header disappears.
    with_cookie(&envoy, &format!("{NAME}={value}")).await;
    assert!(app.last().unwrap().header("cookie").is_none());
    assert_eq!(envoy.counter("session_guard.session.valid").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_foreign_and_malformed_cookies_are_refused_by_reason() {
    let (app, envoy) = ingress(cfg(k1(), "")).await;
    let (value, id) = mint(&envoy, &app).await;
    // Same key id, another secret: what an attacker without the key can produce at best.
    let other = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", &app)
        .env("SESSION_GUARD_KEY", OTHER_KEY)
        .start()
        .await;
    let (foreign, _) = mint(&other, &app).await;
    drop(other);
    let mut tampered = value.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let cases = [
        ("tampered byte", tampered.clone(), "forged"),
        ("signed by another secret", foreign, "forged"),
        (
            "unknown key id",
            value.replacen("v2.k1.", "v2.k9.", 1),
            "unknown_key",
        ),
        ("not ours", "abc123".to_string(), "malformed"),
        ("oversized", "v".repeat(5000), "oversized"),
    ];
    for (name, bad, reason) in cases {
        app.clear();
        let before = envoy
            .counter(&format!("session_guard.session.invalid.{reason}"))
            .await;
        let resp = with_cookie(&envoy, &format!("{NAME}={bad}; keep=1")).await;
        assert_eq!(resp.status, 200, "{name}");
        let got = app.last().unwrap();
        assert_ne!(
            got.header("x-session-id").as_deref(),
            Some(id.as_str()),
            "{name}"
        );
        assert_eq!(
            got.header_all("cookie"),
            vec!["keep=1"],
            "{name}: never forwarded"
        );
        assert!(
            set_cookie_value(&resp, NAME).is_some(),
            "{name}: a fresh session"
        );
        assert_eq!(
            envoy
                .counter(&format!("session_guard.session.invalid.{reason}"))
                .await,
            before + 1,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_ring_first_signs_all_verify() {
    let old_ring = r#"[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}]"#;
    let new_ring = format!(
        r#"[{{"id":"k2","secret":"{OTHER_KEY}"}},{{"id":"k1","secret_env":"SESSION_GUARD_KEY"}}]"#
    );
    let only_new = format!(r#"[{{"id":"k2","secret":"{OTHER_KEY}"}}]"#);
    let (app, old) = ingress(cfg(old_ring, "")).await;
    let (v1, id1) = mint(&old, &app).await;
    drop(old);
    let (app, ring) = ingress(cfg(&new_ring, "")).await;
    with_cookie(&ring, &format!("{NAME}={v1}")).await;
    assert_eq!(
        app.last().unwrap().header("x-session-id").as_deref(),
        Some(id1.as_str())
    );
    let (v2, _) = mint(&ring, &app).await;
    assert!(v2.starts_with("v2.k2."), "the first key signs: {v2}");
    drop(ring);
    let (app, new) = ingress(cfg(&only_new, "")).await;
    with_cookie(&new, &format!("{NAME}={v1}")).await;
    assert_ne!(
        app.last().unwrap().header("x-session-id").as_deref(),
        Some(id1.as_str())
    );
    assert_eq!(
        new.counter("session_guard.session.invalid.unknown_key")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_absolute_expiry() {
    // Times are whole seconds in the cookie, so the margins below are a second wide.
    let (app, envoy) = ingress(cfg(k1(), r#","cookie":{"max_age_s":6,"idle_timeout_s":2}"#)).await;
    let (idle_value, idle_id) = mint(&envoy, &app).await;
    let (mut busy, busy_id) = mint(&envoy, &app).await;
    let start = std::time::Instant::now();
    let mut checked_idle = false;
    let mut expired_after = None;
    // Keep one session busy: its cookie is re-issued (same ID) as it is used, until its
    // absolute lifetime ends it.
    while start.elapsed() < Duration::from_secs(9) {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let resp = with_cookie(&envoy, &format!("{NAME}={busy}")).await;
        let id = app.last().unwrap().header("x-session-id").unwrap();
        if id != busy_id {
            expired_after = Some(start.elapsed());
            break;
        }
        if let Some(v) = set_cookie_value(&resp, NAME) {
            let line = set_cookie(&resp, NAME).unwrap();
            let max_age: u64 = cookie_attr(&line, "Max-Age").unwrap().parse().unwrap();
            assert!(
                max_age <= 6,
                "a re-issue keeps the absolute lifetime: {line}"
            );
            busy = v;
        }
        if !checked_idle && start.elapsed() > Duration::from_millis(3100) {
            // Unused for more than 2 s.
            with_cookie(&envoy, &format!("{NAME}={idle_value}")).await;
            assert_ne!(
                app.last().unwrap().header("x-session-id"),
                Some(idle_id.clone())
            );
            assert_eq!(
                envoy
                    .counter("session_guard.session.invalid.expired_idle")
                    .await,
                1
            );
            checked_idle = true;
        }
    }
    assert!(checked_idle);
    let after = expired_after.expect("the busy session ended");
    assert!(
        after > Duration::from_secs(4),
        "not before its lifetime: {after:?}"
    );
    assert!(envoy.counter("session_guard.session.reissued").await >= 2);
    assert_eq!(
        envoy
            .counter("session_guard.session.invalid.expired_absolute")
            .await,
        1
    );
    assert_eq!(
        envoy
            .counter("session_guard.session.invalid.expired_idle")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_session_headers_from_clients_are_removed() {
    let (app, envoy) = ingress(cfg(
        k1(),
        r#","cookie":{"anonymous":false},"signal":{"trusted_clusters":["auth"]}"#,
    ))
    .await;
    send(
        envoy.port(),
        Req::get("/")
            .header("x-session-id", "attacker-chosen")
            .header("x-session-subject", "admin")
            .header("x-session-id-next", "attacker-next")
            // Some CGI/WSGI/Rack stacks read `_` and `-` alike.
            .header("x_session_subject", "admin")
            .header("x_session-id", "attacker-chosen"),
    )
    .await;
    let got = app.last().unwrap();
    for h in ["x_session_subject", "x_session-id"] {
        assert!(got.header(h).is_none(), "{h} must not reach the upstream");
    }
    // `app` may not signal, so the mesh sends no x-session-id-next there either.
    for h in ["x-session-id", "x-session-subject", "x-session-id-next"] {
        assert!(got.header(h).is_none(), "{h} must not reach the upstream");
    }
    assert_eq!(
        envoy.counter("session_guard.spoofed_headers_removed").await,
        5
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_mesh_cookies_are_a_fixation_attempt_in_http1_and_http2() {
    let (app, envoy) = ingress(cfg(k1(), "")).await;
    let (a, id_a) = mint(&envoy, &app).await;
    let (b, id_b) = mint(&envoy, &app).await;
    let requests = [
        (
            "one header",
            Req::get("/").header("cookie", format!("{NAME}={a}; {NAME}={b}")),
            false,
        ),
        (
            "two HTTP/1 headers",
            Req::get("/")
                .header("cookie", format!("{NAME}={a}"))
                .header("cookie", format!("x=1; {NAME}={b}")),
            false,
        ),
        (
            "HTTP/2 crumbs",
            Req::get("/")
                .header("cookie", format!("{NAME}={a}"))
                .header("cookie", "x=1")
                .header("cookie", format!("{NAME}={b}")),
            true,
        ),
        (
            "case-variant tossed cookie",
            Req::get("/").header("cookie", format!("__host-session={b}; {NAME}={a}")),
            false,
        ),
    ];
    for (i, (name, req, h2)) in requests.into_iter().enumerate() {
        let resp = if h2 {
            send_h2(envoy.port(), req).await
        } else {
            send(envoy.port(), req).await
        };
        assert_eq!(resp.status, 200, "{name}");
        let got = app.last().unwrap();
        let id = got.header("x-session-id").unwrap();
        assert!(
            id != id_a && id != id_b,
            "{name}: neither planted session is used"
        );
        assert!(
            set_cookie_value(&resp, NAME).is_some(),
            "{name}: a fresh session"
        );
        for c in got.header_all("cookie") {
            assert!(
                !c.to_ascii_lowercase().contains("__host-session"),
                "{name}: {c}"
            );
        }
        assert_eq!(
            envoy
                .counter("session_guard.session.invalid.duplicate")
                .await,
            i as u64 + 1,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_cookies_are_blocked_or_hardened_and_stay_several() {
    let (app, envoy) = ingress(cfg(k1(), "")).await;
    app.respond_with(|_| {
        Reply::ok()
            .header("set-cookie", format!("{NAME}=upstream-chosen; Path=/"))
            .header("set-cookie", "JSESSIONID=abc; Path=/")
            .header("set-cookie", "theme=dark")
            .header("set-cookie", "done=1; Secure; HttpOnly; SameSite=Strict")
            .header("cache-control", "public, max-age=600, s-maxage=3600")
    });
    let resp = send(envoy.port(), Req::get("/")).await;
    let all = resp.header_all("set-cookie");
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.contains(&"JSESSIONID=abc; Path=/; Secure; HttpOnly; SameSite=Lax".to_string()));
    assert!(all.contains(&"theme=dark; Secure; SameSite=Lax".to_string()));
    assert!(all.contains(&"done=1; Secure; HttpOnly; SameSite=Strict".to_string()));
    let ours = set_cookies(&resp, NAME);
    assert_eq!(ours.len(), 1);
    assert!(
        ours[0].starts_with(&format!("{NAME}=v2.k1.")),
        "the upstream's value is gone"
    );
    let cc = resp.header("cache-control").unwrap();
    assert!(
        !cc.contains("public") && !cc.contains("s-maxage") && cc.contains("private"),
        "{cc}"
    );
    assert_eq!(
        envoy.counter("session_guard.upstream_cookie.blocked").await,
        1
    );
    assert_eq!(
        envoy
            .counter("session_guard.upstream_cookie.hardened")
            .await,
        2
    );
    // Without a mesh cookie to set, the upstream's caching stays as it was.
    let (value, _) = {
        app.respond_with(|_| Reply::ok());
        mint(&envoy, &app).await
    };
    app.respond_with(|_| Reply::ok().header("cache-control", "public, max-age=60"));
    let resp = with_cookie(&envoy, &format!("{NAME}={value}")).await;
    assert_eq!(
        resp.header("cache-control").as_deref(),
        Some("public, max-age=60")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_changes_nothing_but_counts_everything() {
    let (app, envoy) = ingress(cfg(k1(), r#","mode":"monitor""#)).await;
    app.respond_with(|_| Reply::ok().header("set-cookie", "theme=dark"));
    let req = Req::get("/a;jsessionid=1?x=1")
        .header("cookie", format!("{NAME}=forged; other=1"))
        .header("x-session-id", "spoof");
    let resp = send(envoy.port(), req).await;
    assert_eq!(resp.status, 200);
    let got = app.last().unwrap();
    assert_eq!(got.path_str(), "/a;jsessionid=1?x=1");
    assert_eq!(
        got.header_all("cookie"),
        vec![format!("{NAME}=forged; other=1")]
    );
    assert_eq!(got.header("x-session-id").as_deref(), Some("spoof"));
    assert_eq!(resp.header_all("set-cookie"), vec!["theme=dark"]);
    assert!(resp.header("cache-control").is_none());
    for (c, n) in [
        ("session_guard.url.stripped", 1),
        ("session_guard.session.invalid.malformed", 1),
        ("session_guard.session.minted", 1),
        ("session_guard.spoofed_headers_removed", 1),
        ("session_guard.upstream_cookie.hardened", 1),
    ] {
        assert_eq!(envoy.counter(c).await, n, "{c}");
    }
}
