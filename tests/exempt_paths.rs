//! Issue 24 in the real Envoy: health checks and exempt paths get no session, `cookie.anonymous:
//! "navigate"` mints only for navigations, and every defense still runs on an exempt path.

// Test code throughout (always true under `cargo test`): see tests/istio_manifests.rs.
#![cfg(test)]

mod common;
use common::*;

const NAME: &str = "__Host-session";

fn config(extra: &str) -> String {
    format!(r#"{{"keys":[{{"id":"k1","secret_env":"SESSION_GUARD_KEY"}}]{extra}}}"#)
}

async fn sidecar(app: &Upstream, extra: &str) -> Envoy {
    EnvoyBuilder::shipped("envoy/sidecar.yaml")
        .upstream("app", app)
        .filter_config(config(extra))
        .start()
        .await
}

/// The shipped ingress exempts `/healthz`: a load balancer probing it 100 times without
/// cookies gets no cookie and mints nothing; the upstream never sees a session header.
#[tokio::test(flavor = "multi_thread")]
async fn healthz_probed_100_times_mints_nothing_on_the_shipped_ingress() {
    let app = Upstream::start().await;
    let envoy = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", &app)
        .start()
        .await;
    // Control: the same probe on a path that is not exempt mints (the test can fail).
    let r = send(envoy.port(), Req::get("/health")).await;
    assert!(
        set_cookie(&r, NAME).is_some(),
        "control: /health is not exempt"
    );
    let minted_before = envoy.counter("session_guard.session.minted").await;
    assert_eq!(minted_before, 1);
    let mut cookies = 0;
    for _ in 0..100 {
        let r = send(envoy.port(), Req::get("/healthz")).await;
        assert_eq!(r.status, 200);
        cookies += r.header_all("set-cookie").len();
    }
    assert_eq!(cookies, 0);
    assert_eq!(
        envoy.counter("session_guard.session.minted").await,
        minted_before
    );
    assert_eq!(envoy.counter("session_guard.exempt").await, 100);
    let seen = app.requests();
    assert!(seen
        .iter()
        .filter(|r| r.path == b"/healthz")
        .all(|r| r.header("x-session-id").is_none()));
}

/// `cookie.anonymous: "navigate"`: API calls and probes (no `Accept: text/html`, no
/// `Sec-Fetch-Mode: navigate`) get no cookie; a navigation does.
#[tokio::test(flavor = "multi_thread")]
async fn navigate_mode_mints_nothing_for_100_probes_and_mints_for_a_navigation() {
    let app = Upstream::start().await;
    let envoy = sidecar(&app, r#","cookie":{"anonymous":"navigate"}"#).await;
    let mut cookies = 0;
    for _ in 0..100 {
        let r = send(envoy.port(), Req::get("/status").header("accept", "*/*")).await;
        cookies += r.header_all("set-cookie").len();
    }
    assert_eq!(cookies, 0);
    assert_eq!(envoy.counter("session_guard.session.minted").await, 0);
    assert_eq!(
        envoy.counter("session_guard.session.not_committed").await,
        100
    );
    // A CORS preflight never even draws an ID.
    let pre = Req::new("OPTIONS", "/api").header("access-control-request-method", "POST");
    let r = send(envoy.port(), pre).await;
    assert!(set_cookie(&r, NAME).is_none());
    assert!(app.last().unwrap().header("x-session-id").is_none());
    // Navigations do get a session (with and without Fetch metadata).
    for req in [
        Req::get("/").header("sec-fetch-mode", "navigate"),
        Req::get("/").header("accept", "text/html,application/xhtml+xml"),
    ] {
        let r = send(envoy.port(), req).await;
        assert!(set_cookie_value(&r, NAME).is_some());
    }
    // So does a non-navigation whose response sets a cookie of its own.
    app.respond_with(|_| Reply::ok().header("set-cookie", "csrf=1; Path=/"));
    let r = send(envoy.port(), Req::get("/api/form")).await;
    assert!(set_cookie_value(&r, NAME).is_some());
    assert_eq!(envoy.counter("session_guard.session.minted").await, 3);
}

/// Whether the filter treated a raw request as exempt: no session header reached the
/// upstream and no mesh cookie came back (a cookieless request mints everywhere else).
async fn exempt_through_envoy(envoy: &Envoy, app: &Upstream, path: &str) -> (bool, Vec<u8>) {
    app.clear();
    let req = format!("GET {path} HTTP/1.1\r\nhost: example.test\r\nconnection: close\r\n\r\n");
    let raw = raw_http1(envoy.port(), req.as_bytes()).await;
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let cookie = head.contains("set-cookie: __host-session=");
    let got = app
        .last()
        .unwrap_or_else(|| panic!("{path}: not forwarded"));
    let forwarded = got.header("x-session-id").is_some();
    assert_eq!(
        cookie, forwarded,
        "{path}: a committed ID is the forwarded one"
    );
    (!forwarded, got.path)
}

/// The unit tests' table (`tests/cases/exempt_paths.json`) through the real Envoy (the
/// sidecar: no path normalization, the filter sees the path as sent), then paths that are
/// exempt only after the URL defense stripped a session parameter.
#[tokio::test(flavor = "multi_thread")]
async fn exempt_path_table_in_envoy() {
    let table: serde_json::Value =
        serde_json::from_str(include_str!("cases/exempt_paths.json")).unwrap();
    let prefixes = table["prefixes"].to_string();
    let app = Upstream::start().await;
    let envoy = sidecar(&app, &format!(r#","exempt":{{"paths":{prefixes}}}"#)).await;
    let mut sent = 0;
    for case in table["cases"].as_array().unwrap() {
        let path = case["path"].as_str().unwrap();
        // Not a request-target a client sends on the wire (a fragment, no path, `*`); a row
        // holding a session parameter is the path *after* the URL defense in the table, which
        // the filter would strip first here (those paths are sent below).
        if !path.starts_with('/') || path.contains('#') || path.contains("jsessionid") {
            continue;
        }
        let (exempt, _) = exempt_through_envoy(&envoy, &app, path).await;
        assert_eq!(exempt, case["exempt"].as_bool().unwrap(), "{path}");
        sent += 1;
    }
    assert!(sent >= 25, "{sent}");
    for (path, upstream) in [
        ("/healthz;jsessionid=ABC", "/healthz"),
        ("/static/app.js?jsessionid=ABC&v=2", "/static/app.js?v=2"),
        ("/static/app.js;jsessionid=ABC", "/static/app.js"),
    ] {
        let (exempt, got) = exempt_through_envoy(&envoy, &app, path).await;
        assert!(exempt, "{path}");
        assert_eq!(got, upstream.as_bytes(), "{path}: stripped first");
    }
    let (exempt, _) = exempt_through_envoy(&envoy, &app, "/admin?x=/static/a").await;
    assert!(!exempt, "the query never matches");
}

/// An exempt path is never a way around a defense: a planted app cookie, a forged or tossed
/// mesh cookie and spoofed identity headers never reach the app; a valid session is still
/// forwarded (and its cookie removed), and nothing is re-issued there.
#[tokio::test(flavor = "multi_thread")]
async fn every_defense_still_runs_on_an_exempt_path() {
    let app = Upstream::start().await;
    let envoy = sidecar(&app, r#","exempt":{"paths":["/static/"]}"#).await;
    for h2 in [false, true] {
        let req = Req::get("/static/app.js")
            .header(
                "cookie",
                "JSESSIONID=planted; __Host-session=forged; theme=dark",
            )
            .header("x-session-id", "attacker")
            .header("x-session-subject", "admin");
        let r = if h2 {
            send_h2(envoy.port(), req).await
        } else {
            send(envoy.port(), req).await
        };
        assert!(r.header_all("set-cookie").is_empty(), "h2={h2}");
        let got = app.last().unwrap();
        assert_eq!(
            got.header("cookie").as_deref(),
            Some("theme=dark"),
            "h2={h2}"
        );
        assert!(got.header("x-session-id").is_none() && got.header("x-session-subject").is_none());
    }
    assert_eq!(envoy.counter("session_guard.app_cookie.unbound").await, 2);
    assert_eq!(
        envoy.counter("session_guard.spoofed_headers_removed").await,
        4
    );
    assert_eq!(
        envoy
            .counter("session_guard.session.invalid.malformed")
            .await,
        2
    );
    // A real session (minted on a page) is forwarded on the exempt path, cookie removed.
    let page = send(envoy.port(), Req::get("/page")).await;
    let value = set_cookie_value(&page, NAME).expect("minted on a page");
    let id = app.last().unwrap().header("x-session-id").unwrap();
    let with = Req::get("/static/app.js").header("cookie", cookie_header(&[(NAME, &value)]));
    let r = send(envoy.port(), with).await;
    assert!(r.header_all("set-cookie").is_empty());
    let got = app.last().unwrap();
    assert_eq!(got.header("x-session-id"), Some(id));
    assert!(got.header("cookie").is_none());
}
