//! Defense 1 in the real Envoy: session IDs never travel in URLs to an upstream.
//! The table in tests/cases/url_strip.json is the same one the unit tests run.
// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here, which fail like tests do (rust-clippy#13981).
#![cfg(test)]

mod common;
use common::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    path: String,
    want: String,
    removed: u64,
    #[serde(default)]
    refused: bool,
}

fn cases() -> Vec<Case> {
    serde_json::from_str(include_str!("cases/url_strip.json")).unwrap()
}

async fn sidecar(extra: &str) -> (Upstream, Envoy) {
    let app = Upstream::start().await;
    let cfg = format!(r#"{{"keys":[{{"id":"k1","secret_env":"SESSION_GUARD_KEY"}}]{extra}}}"#);
    let envoy = EnvoyBuilder::shipped("envoy/sidecar.yaml")
        .upstream("app", &app)
        .filter_config(cfg)
        .start()
        .await;
    (app, envoy)
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_table_of_url_cases_through_envoy() {
    let (app, envoy) = sidecar("").await;
    let mut removed_total = 0;
    for h2 in [false, true] {
        for c in cases() {
            app.clear();
            let resp = if h2 {
                send_h2(envoy.port(), Req::get(&c.path)).await
            } else {
                send(envoy.port(), Req::get(&c.path)).await
            };
            removed_total += c.removed;
            if c.refused {
                assert_eq!(resp.status, 400, "{} (h2={h2})", c.name);
                assert_eq!(app.count(), 0, "{}: nothing forwarded", c.name);
                continue;
            }
            assert_eq!(resp.status, 200, "{} (h2={h2})", c.name);
            let got = app.last().expect("forwarded");
            assert_eq!(got.path_str(), c.want, "{} (h2={h2})", c.name);
        }
    }
    assert_eq!(
        envoy.counter("session_guard.url.params_removed").await,
        removed_total
    );
    let count = |f: fn(&Case) -> bool| 2 * cases().iter().filter(|c| f(c)).count() as u64;
    assert_eq!(
        envoy.counter("session_guard.url.stripped").await,
        count(|c| c.removed > 0 && !c.refused)
    );
    assert_eq!(
        envoy.counter("session_guard.url.unsafe_path").await,
        count(|c| c.refused)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn referer_is_scrubbed_of_the_same_parameters() {
    let (app, envoy) = sidecar("").await;
    send(
        envoy.port(),
        Req::get("/next").header(
            "referer",
            "https://shop.example/cart;jsessionid=AB?x=1&PHPSESSID=CD&y=%zz",
        ),
    )
    .await;
    assert_eq!(
        app.last().unwrap().header("referer").as_deref(),
        Some("https://shop.example/cart?x=1&y=%zz")
    );
    send(
        envoy.port(),
        Req::get("/next").header("referer", "https://shop.example/clean?a=1"),
    )
    .await;
    assert_eq!(
        app.last().unwrap().header("referer").as_deref(),
        Some("https://shop.example/clean?a=1")
    );
    assert_eq!(envoy.counter("session_guard.referer.scrubbed").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_answers_get_and_head_with_the_clean_url_and_strips_other_methods() {
    let (app, envoy) = sidecar(r#","url":{"action":"redirect"}"#).await;
    for method in ["GET", "HEAD"] {
        let resp = send(
            envoy.port(),
            Req::new(method, "/a;jsessionid=1/b?x=1&jsessionid=2"),
        )
        .await;
        assert_eq!(resp.status, 302, "{method}");
        assert_eq!(
            resp.header("location").as_deref(),
            Some("/a/b?x=1"),
            "{method}"
        );
        assert_eq!(resp.header("cache-control").as_deref(), Some("no-store"));
        assert!(
            resp.header("set-cookie").is_none(),
            "no session for a redirect"
        );
    }
    assert_eq!(app.count(), 0, "nothing forwarded for GET/HEAD");
    // Never an open redirect: `//host` and `/\host` would leave the site.
    for target in [
        &b"//evil.example/;jsessionid=1"[..],
        b"/\\evil.example/;jsessionid=1",
    ] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let raw = String::from_utf8_lossy(&raw_http1(envoy.port(), &req).await).to_lowercase();
        assert!(raw.starts_with("http/1.1 302"), "{raw}");
        assert!(raw.contains("\r\nlocation: /evil.example/\r\n"), "{raw}");
    }
    let resp = send(envoy.port(), Req::post("/form?jsessionid=1&k=v", "body=1")).await;
    assert_eq!(resp.status, 200);
    let got = app.last().unwrap();
    assert_eq!(got.path_str(), "/form?k=v");
    assert_eq!(got.body, b"body=1");
    assert_eq!(envoy.counter("session_guard.url.redirected").await, 4);
    assert_eq!(envoy.counter("session_guard.url.stripped").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn reject_answers_400_and_forwards_nothing() {
    let (app, envoy) = sidecar(r#","url":{"action":"reject"}"#).await;
    for method in ["GET", "POST"] {
        let resp = send(envoy.port(), Req::new(method, "/login;JSESSIONID=abc")).await;
        assert_eq!(resp.status, 400);
        assert!(resp
            .body_str()
            .contains("session identifiers are not accepted"));
        assert!(resp
            .header("content-type")
            .unwrap()
            .starts_with("text/plain"));
    }
    assert_eq!(app.count(), 0);
    let resp = send(envoy.port(), Req::get("/clean?session_id=cs_1")).await;
    assert_eq!(
        resp.status, 200,
        "a generic session_id is not a session parameter"
    );
    assert_eq!(envoy.counter("session_guard.url.rejected").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_params_replace_and_extend_the_defaults() {
    let (app, envoy) = sidecar(r#","url":{"params":["sid"],"extra_params":["token"]}"#).await;
    send(
        envoy.port(),
        Req::get("/a?sid=1&token=2&jsessionid=3&__Host-session=4"),
    )
    .await;
    assert_eq!(app.last().unwrap().path_str(), "/a?jsessionid=3");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_urls_get_a_defined_outcome_and_never_break_the_worker() {
    let (app, envoy) = sidecar("").await;
    // Bytes 0x80-0xFF in the request-target: Envoy forwards them; http::Uri cannot carry them.
    let raw = raw_http1(
        envoy.port(),
        b"GET /caf\xc3\xa9;jsessionid=1?\xff=\xfe&phpsessid=2 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let status = raw_status(&raw);
    match status {
        Some(200) => assert_eq!(app.last().unwrap().path, b"/caf\xc3\xa9?\xff=\xfe"),
        Some(400) => assert_eq!(app.count(), 0, "Envoy refused the bytes itself"),
        other => panic!("unexpected status {other:?}"),
    }
    let long = format!("/?{}jsessionid=x", "a=1&".repeat(14_000));
    let resp = send(envoy.port(), Req::get(&long)).await;
    // Envoy's default header limit is 60 KiB: a longer target is refused before the filter.
    if resp.status == 200 {
        let want = format!("/?{}", "a=1&".repeat(14_000));
        assert_eq!(app.last().unwrap().path_str(), want.trim_end_matches('&'));
    } else {
        assert_eq!(resp.status, 431);
    }
    let many = format!("/?{}", "jsessionid=x&a&".repeat(3_000));
    let resp = send(envoy.port(), Req::get(&many)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        app.last().unwrap().path_str(),
        format!("/?{}", "a&".repeat(3_000))
    );
    for storm in [
        "/;;;;;;;;;;;;/;=;=;=",
        "/?========&&&&&&",
        "/%%%%%?%zz=%",
        "/?jsessionid%",
    ] {
        let resp = send(envoy.port(), Req::get(storm)).await;
        assert_eq!(resp.status, 200, "{storm}");
        assert_eq!(app.last().unwrap().path_str(), storm, "untouched: {storm}");
    }
    // The worker is still healthy: a normal request is served with a session.
    let resp = send(envoy.port(), Req::get("/ok")).await;
    assert_eq!(resp.status, 200);
    assert!(app.last().unwrap().header("x-session-id").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_counts_url_parameters_but_forwards_the_url_as_sent() {
    let (app, envoy) = sidecar(r#","mode":"monitor","url":{"action":"reject"}"#).await;
    let resp = send(envoy.port(), Req::get("/a;jsessionid=1?jsessionid=2")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        app.last().unwrap().path_str(),
        "/a;jsessionid=1?jsessionid=2"
    );
    assert_eq!(envoy.counter("session_guard.url.rejected").await, 1);
    assert_eq!(envoy.counter("session_guard.url.params_removed").await, 2);
}
