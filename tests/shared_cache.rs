//! Issue 24's proof: a real shared cache (Varnish, Debian's `varnish`) in front of the real
//! Envoy with the filter. Cookieless origin fetches of `public` and `s-maxage` responses are
//! stored and served to everyone; pages that need a session and logins never are; a 304
//! revalidation never leaves a cookie in the stored object.
//!
//! The control comes first: the same requests through the filter as it was before issue 24
//! (built from commit 42da0ba by `scripts/baseline-wasm.sh`) show the cache storing nothing,
//! because every origin fetch minted a session and got `Set-Cookie` and `private`.

// Test code throughout (always true under `cargo test`): see tests/istio_manifests.rs.
#![cfg(test)]

mod common;
use common::*;

use std::path::PathBuf;
use std::time::{Duration, Instant};

const NAME: &str = "__Host-session";

/// Varnish's default rules (builtin VCL), plus what a site in front of an app typically adds:
/// cookies play no part in static assets; stale objects are revalidated with a conditional
/// fetch (`keep`, no grace: the 304 merges synchronously); `X-Cache` for the reader.
const VCL: &str = r#"
sub vcl_recv {
    if (req.url ~ "^/assets/") { unset req.http.Cookie; }
}
sub vcl_backend_response {
    set beresp.grace = 0s;
    set beresp.keep = 1h;
}
sub vcl_deliver {
    if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
"#;

/// The filter's configuration in both runs (valid for the old build too).
const CONFIG: &str = r#"{"keys":[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}],"signal":{"trusted_clusters":["auth"]}}"#;

fn baseline_wasm() -> PathBuf {
    let path = std::env::var_os("SESSION_GUARD_BASELINE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/baseline/session_guard.wasm")
        });
    assert!(
        path.is_file(),
        "{}: the pre-issue-24 build is missing (run scripts/baseline-wasm.sh; `make test` does)",
        path.display()
    );
    path
}

fn app_reply(r: &Recorded) -> Reply {
    match r.path_str().as_str() {
        "/assets/app.js" => Reply::ok().header("cache-control", "public, max-age=600"),
        "/page" => Reply::ok().header("cache-control", "s-maxage=600"),
        "/assets/etag.js" if r.header("if-none-match").as_deref() == Some("\"v1\"") => {
            Reply::status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", "public, max-age=1")
        }
        "/assets/etag.js" => Reply::ok()
            .header("etag", "\"v1\"")
            .header("cache-control", "public, max-age=1"),
        // A page that needs a session: the app says nothing about caching.
        _ => Reply::ok(),
    }
}

/// An SSO callback (a GET) that logs in; the auth upstream even marks it `public`.
fn auth_reply(_: &Recorded) -> Reply {
    Reply::ok()
        .header("x-session-guard", "login")
        .header("x-session-guard-subject", "alice")
        .header("cache-control", "public, max-age=600")
}

async fn stack(wasm: Option<PathBuf>) -> (Mesh, Varnish) {
    let mesh = Mesh::start(
        auth_reply,
        |_| Reply::ok(),
        move |b| {
            let b = b.filter_config(CONFIG);
            match wasm {
                None => b,
                Some(w) => b.wasm(w.clone()).edit(move |root| set_wasm(root, &w)),
            }
        },
    )
    .await;
    mesh.app.respond_with(app_reply);
    let varnish = Varnish::start(mesh.envoy.port(), VCL).await;
    (mesh, varnish)
}

fn set_wasm(root: &mut serde_yaml::Value, wasm: &std::path::Path) {
    let filters = &mut root["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    let mut set = 0;
    for f in filters.as_sequence_mut().into_iter().flatten() {
        if f["name"].as_str() != Some("envoy.filters.http.wasm") {
            continue;
        }
        let local = &mut f["typed_config"]["config"]["vm_config"]["code"]["local"];
        local["filename"] = serde_yaml::Value::from(wasm.display().to_string());
        set += 1;
    }
    assert_eq!(set, 1, "envoy/ingress.yaml has one wasm filter");
}

/// Every response on which the mesh sets its cookie is uncacheable by shared caches (F6).
fn uncacheable_if_cookie(r: &Resp) {
    if set_cookie(r, NAME).is_some() {
        let cc = r.header("cache-control").unwrap_or_default();
        assert!(
            (cc.contains("private") || cc.contains("no-store"))
                && !cc.contains("public")
                && !cc.contains("s-maxage"),
            "{cc}"
        );
    }
}

async fn get(v: &Varnish, path: &str, cookie: Option<&str>) -> Resp {
    let mut req = Req::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = send(v.port(), req).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body_str());
    uncacheable_if_cookie(&r);
    r
}

fn origin_hits(up: &Upstream, path: &str) -> usize {
    up.requests()
        .iter()
        .filter(|r| r.path_str() == path)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn baseline_before_issue_24_the_cache_stores_nothing() {
    let (mesh, varnish) = stack(Some(baseline_wasm())).await;
    for path in ["/assets/app.js", "/page"] {
        for _ in 0..3 {
            let r = get(&varnish, path, None).await;
            assert!(set_cookie(&r, NAME).is_some(), "{path}: the old rule mints");
            assert_eq!(r.header("x-cache").as_deref(), Some("MISS"));
        }
        assert_eq!(
            origin_hits(&mesh.app, path),
            3,
            "{path}: every fetch reaches the origin"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn public_and_s_maxage_responses_are_cached_and_carry_no_cookie() {
    let (mesh, varnish) = stack(None).await;
    for path in ["/assets/app.js", "/page"] {
        for i in 0..3 {
            let r = get(&varnish, path, None).await;
            assert!(r.header_all("set-cookie").is_empty(), "{path}");
            let want = if i == 0 { "MISS" } else { "HIT" };
            assert_eq!(r.header("x-cache").as_deref(), Some(want), "{path} #{i}");
        }
        assert_eq!(
            origin_hits(&mesh.app, path),
            1,
            "{path}: the origin sees one fetch"
        );
    }
    let cc = get(&varnish, "/assets/app.js", None)
        .await
        .header("cache-control");
    assert_eq!(
        cc.as_deref(),
        Some("public, max-age=600"),
        "passed byte for byte"
    );
    assert_eq!(
        mesh.envoy
            .counter("session_guard.session.not_committed")
            .await,
        2
    );
    assert_eq!(mesh.envoy.counter("session_guard.session.minted").await, 0);

    // A browser with a valid session (minted on a private page) still gets the cached asset,
    // and keeps its session.
    let page = get(&varnish, "/account", None).await;
    let value = set_cookie_value(&page, NAME).expect("a private page commits");
    let cookie = cookie_header(&[(NAME, &value)]);
    let r = get(&varnish, "/assets/app.js", Some(&cookie)).await;
    assert_eq!(r.header("x-cache").as_deref(), Some("HIT"));
    assert!(r.header_all("set-cookie").is_empty());
    assert_eq!(origin_hits(&mesh.app, "/assets/app.js"), 1);
    let back = get(&varnish, "/account", Some(&cookie)).await;
    assert!(
        set_cookie(&back, NAME).is_none(),
        "still valid: nothing to re-issue"
    );
    assert!(mesh.app.last().unwrap().header("x-session-id").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_that_need_a_session_and_logins_are_never_served_from_the_cache() {
    let (mesh, varnish) = stack(None).await;
    for (path, up) in [("/account", &mesh.app), ("/auth/callback", &mesh.auth)] {
        let a = get(&varnish, path, None).await;
        let b = get(&varnish, path, None).await;
        let (ca, cb) = (set_cookie_value(&a, NAME), set_cookie_value(&b, NAME));
        assert!(
            ca.is_some() && cb.is_some(),
            "{path}: each client gets its own session"
        );
        assert_ne!(
            ca, cb,
            "{path}: a second client never gets the first's cookie"
        );
        assert_eq!(b.header("x-cache").as_deref(), Some("MISS"), "{path}");
        assert_eq!(origin_hits(up, path), 2, "{path}");
    }
    assert_eq!(mesh.envoy.counter("session_guard.rotation.login").await, 2);
}

/// The stored public object is revalidated (Varnish sends `If-None-Match`, the origin answers
/// 304 through the mesh, Varnish merges the 304's fields into the object): no cookie of the
/// mesh may be merged there, or every later client would get it.
#[tokio::test(flavor = "multi_thread")]
async fn a_304_revalidation_leaves_no_cookie_in_the_stored_object() {
    let (mesh, varnish) = stack(None).await;
    let first = get(&varnish, "/assets/etag.js", None).await;
    assert!(first.header_all("set-cookie").is_empty());
    let conditional = |up: &Upstream| {
        up.requests()
            .iter()
            .any(|r| r.path_str() == "/assets/etag.js" && r.header("if-none-match").is_some())
    };
    // Wait for the object to go stale (max-age=1) and Varnish to revalidate it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !conditional(&mesh.app) {
        assert!(
            Instant::now() < deadline,
            "no revalidation: {}",
            varnish.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = get(&varnish, "/assets/etag.js", None).await;
        assert!(
            r.header_all("set-cookie").is_empty(),
            "served with a cookie"
        );
    }
    // The stored object, served from the cache to the next clients: still no cookie.
    for _ in 0..3 {
        let r = get(&varnish, "/assets/etag.js", None).await;
        assert!(r.header_all("set-cookie").is_empty());
        assert_eq!(r.header("etag").as_deref(), Some("\"v1\""));
    }
    assert!(
        mesh.envoy
            .counter("session_guard.session.not_committed")
            .await
            >= 2
    );
    assert_eq!(mesh.envoy.counter("session_guard.session.minted").await, 0);
}
