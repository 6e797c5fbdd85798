//! Device Bound Session Credentials with a real browser: Debian's Chromium 148, headless, with
//! DBSC and its software key provider switched on (the flags in tests/browser/dbsc.mjs),
//! against the real Envoy running the built filter: the shipped envoy/ingress.yaml, with the
//! filter's JSON as shipped plus `dbsc` (`enabled`, the smallest `ticket_ttl_s`, 180 s) for the
//! DBSC tests. The app and auth upstreams are the test's own recording upstreams, so every
//! header the app received is on record (identity, `Secure-Session-Skipped`).
//!
//! tests/browser/dbsc.mjs takes one command per line and reports what Chromium saw, including
//! its own DBSC events from the DevTools protocol (`Network.deviceBoundSessionEventOccurred`:
//! creation, refresh, termination) and how each request used the session (`Deferred`, ...).
//! The test drives the scenario and asserts. It never waits for a ticket to expire: removing
//! the ticket from the browser's jar (as an expiry would) makes Chromium defer the next request
//! and refresh at once. Timings are never asserted.
//!
//! Shown: without DBSC, cookies copied from the browser authenticate another client (the theft
//! works); with DBSC, Chromium registers, the filter counts it, requests are deferred and carry
//! a fresh ticket, the app never sees an unproven request from the browser while refresh
//! works; copied cookies authenticate only with a valid ticket; a login while bound keeps the
//! browser's DBSC session refreshing for the new session ID; a refresh answered 503 (an
//! Envoy fault filter in front of session-guard, switched on at runtime through the admin
//! interface) releases the browser's requests unproven with `Secure-Session-Skipped`; a logout
//! ends the browser's DBSC session (`{"continue": false}` at its next refresh).
//!
//! Needs: `make build`, `make deps`, Debian `chromium`, node 20+ and npm. Without
//! /usr/bin/chromium the tests are skipped, unless SESSION_GUARD_REQUIRE_BROWSER is set (as
//! `make test` does): then they fail.
// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here, which fail like tests do (rust-clippy#13981).
#![cfg(test)]

mod common;

#[path = "browser/chromium.rs"]
mod chromium;

use std::path::PathBuf;

use chromium::{chromium_present, Chromium};
use common::{send, set_cookie, EnvoyBuilder, Mesh, Recorded, Reply, Req};
use serde_json::{json, Value};

const COOKIE: &str = "__Host-session";
const TICKET: &str = "__Host-session-bound";
const REFRESH_PATH: &str = "/.session-guard/dbsc/refresh";
/// The Envoy runtime key the test's fault filter reads: percent of refreshes answered 503.
const FAULT_KEY: &str = "session_guard_test.dbsc_refresh_abort_percent";

/// The auth upstream: the demo's form (same ids as demo/auth.py), a login signalled to the
/// mesh with the form's username as the subject, and a logout.
fn auth(r: &Recorded) -> Reply {
    let path = r.path_str();
    let redirect = |signal: &str| {
        Reply::status(303)
            .header("location", "/")
            .header("cache-control", "no-store")
            .header("x-session-guard", signal)
    };
    match (r.method.as_str(), path.as_str()) {
        ("POST", "/auth/login") => {
            let body = r.body_str();
            let user = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("username="))
                .unwrap_or("nobody")
                .to_owned();
            redirect("login").header("x-session-guard-subject", user)
        }
        (_, "/auth/logout") => redirect("logout"),
        _ => Reply::status(200)
            .header("content-type", "text/html")
            .header("cache-control", "no-store")
            .body(
                "<form method=post action=/auth/login><input id=username name=username>\
                 <input id=password name=password type=password>\
                 <button id=submit type=submit>Log in</button></form>",
            ),
    }
}

/// The app: a page showing what it received from the mesh, as JSON in `<pre id="seen">`.
fn app(r: &Recorded) -> Reply {
    let seen = json!({
        "subject": r.header("x-session-subject"),
        "session_id": r.header("x-session-id"),
        "skipped": r.header("secure-session-skipped"),
        "cookie": r.header("cookie"),
        "path": r.path_str(),
    });
    let html = seen.to_string().replace('<', "&lt;");
    Reply::status(200)
        .header("content-type", "text/html")
        .header("cache-control", "private, no-store")
        .body(format!("<pre id=\"seen\">{html}</pre>"))
}

/// The shipped ingress's filter JSON with `dbsc` on, the smallest ticket lifetime.
fn dbsc_filter_json() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("envoy/ingress.yaml");
    let root: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hcm =
        &root["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let wasm = hcm["http_filters"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|f| f["name"].as_str() == Some("envoy.filters.http.wasm"))
        .expect("the wasm filter in envoy/ingress.yaml");
    let text = wasm["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    let mut json: Value = serde_json::from_str(text).unwrap();
    json["dbsc"] = json!({"enabled": true, "ticket_ttl_s": 180});
    json.to_string()
}

/// An Envoy fault filter in front of session-guard that answers the refresh endpoint 503 for
/// the percentage of requests in runtime key [`FAULT_KEY`] (0 until the test sets it through
/// admin `/runtime_modify`, which needs the admin runtime layer added here). The filter answers
/// DBSC requests itself, before routing, so a failing refresh must come from in front of it.
fn refresh_fault(root: &mut serde_yaml::Value) {
    let fault: serde_yaml::Value = serde_yaml::from_str(&format!(
        r#"
name: envoy.filters.http.fault
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
  abort:
    http_status: 503
    percentage: {{ numerator: 0, denominator: HUNDRED }}
  abort_percent_runtime: {FAULT_KEY}
  headers:
  - name: ":path"
    string_match: {{ exact: "{REFRESH_PATH}" }}
"#
    ))
    .unwrap();
    root["layered_runtime"] =
        serde_yaml::from_str("layers: [{name: admin, admin_layer: {}}]").unwrap();
    let listener = &mut root["static_resources"]["listeners"][0];
    let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["http_filters"]
        .as_sequence_mut()
        .unwrap()
        .insert(0, fault);
}

async fn start_mesh(dbsc: bool, fault: bool) -> Mesh {
    let api = |_: &Recorded| Reply::ok();
    let mesh = Mesh::start(auth, api, move |b: EnvoyBuilder| {
        let b = b.concurrency(2).component_log_level("wasm:info");
        let b = if dbsc {
            b.filter_config(dbsc_filter_json())
        } else {
            b
        };
        if fault {
            b.edit(refresh_fault)
        } else {
            b
        }
    })
    .await;
    mesh.app.respond_with(app);
    mesh
}

/// A plain HTTP client (no browser state) sending `cookies` as a thief would: the same URL,
/// its own User-Agent. Returns what the app received, if the request reached it.
async fn thief(mesh: &Mesh, cookies: &[(&str, &str)]) -> (common::Resp, Recorded) {
    let before = mesh.app.count();
    let cookie = common::cookie_header(cookies);
    let resp = send(
        mesh.envoy.port(),
        Req::get("/whoami")
            .header("host", format!("127.0.0.1:{}", mesh.envoy.port()))
            .header("user-agent", "curl/8.0 (thief)")
            .header("cookie", cookie),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(
        mesh.app.count(),
        before + 1,
        "the app got the thief's request"
    );
    (resp, mesh.app.last().unwrap())
}

fn from_chromium(r: &Recorded) -> bool {
    r.header("user-agent")
        .is_some_and(|ua| ua.contains("Chrome"))
}

/// A counter of the filter (`session_guard.` + `name`).
async fn counter(mesh: &Mesh, name: &str) -> u64 {
    mesh.envoy.counter(&format!("session_guard.{name}")).await
}

/// The filter's DBSC counters, for the test's output (what Chromium made the filter do).
async fn report_counters(mesh: &Mesh) {
    let all = mesh.envoy.filter_counters().await;
    let dbsc: Vec<String> = all
        .iter()
        .filter(|(k, _)| k.starts_with("session_guard.dbsc."))
        .map(|(k, v)| format!("{}={v}", k.trim_start_matches("session_guard.dbsc.")))
        .collect();
    eprintln!("filter counters: {}", dbsc.join(" "));
}

/// The value of cookie `name` in the browser's jar (it must be there).
async fn jar(chromium: &mut Chromium, name: &str) -> String {
    let c = chromium.cookie(name).await;
    let c = c.unwrap_or_else(|| panic!("the browser holds no {name}"));
    c["value"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dbsc_cookies_copied_from_chromium_authenticate_another_client() {
    if !chromium_present() {
        return;
    }
    let mesh = start_mesh(false, false).await;
    let mut chromium = Chromium::start(&mesh.envoy.url("")).await;

    chromium.goto("/").await;
    let after = chromium.login("alice").await;
    assert_eq!(after["seen"]["subject"], "alice", "{after:#}");
    let page = chromium.goto("/whoami").await;
    assert_eq!(page["seen"]["subject"], "alice");

    // DBSC is off: nothing offered, nothing registered, no ticket; the browser has the flags.
    assert!(chromium.events("creation").await.is_empty());
    assert_eq!(counter(&mesh, "dbsc.offered").await, 0);
    assert!(chromium.cookie(TICKET).await.is_none());

    // The theft: the mesh cookie copied off the browser authenticates a plain client.
    let stolen = jar(&mut chromium, COOKIE).await;
    let (_, seen) = thief(&mesh, &[(COOKIE, &stolen)]).await;
    assert_eq!(seen.header("x-session-subject").as_deref(), Some("alice"));
    chromium.call(json!({"cmd": "close"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dbsc_chromium_binds_the_session_refreshes_its_ticket_and_a_stolen_cookie_dies() {
    if !chromium_present() {
        return;
    }
    let mesh = start_mesh(true, false).await;
    let mut chromium = Chromium::start(&mesh.envoy.url("")).await;

    chromium.goto("/").await;
    let after = chromium.login("alice").await;
    assert_eq!(after["seen"]["subject"], "alice", "{after:#}");

    // Registration: Chromium created a DBSC session from the login's offer, the filter counted
    // it, and the browser holds the ticket the session craves.
    let created = chromium.wait_event("creation", 1).await;
    let created = &created[0];
    assert_eq!(created["succeeded"], true, "{created:#}");
    let session = &created["creationEventDetails"]["newSession"];
    let dbsc_id = created["sessionId"].as_str().unwrap().to_owned();
    assert!(dbsc_id.starts_with("d1."), "{created:#}");
    assert!(
        session["refreshUrl"]
            .as_str()
            .unwrap()
            .ends_with(REFRESH_PATH),
        "{session:#}"
    );
    assert_eq!(session["cookieCravings"][0]["name"], TICKET, "{session:#}");
    assert_eq!(
        mesh.envoy
            .wait_counter("session_guard.dbsc.registered", 1)
            .await,
        1
    );
    assert!(counter(&mesh, "dbsc.offered").await >= 1);
    let ticket = chromium.cookie(TICKET).await.expect("the ticket");
    assert_eq!(ticket["httpOnly"], true, "{ticket}");
    assert_eq!(ticket["secure"], true, "{ticket}");
    assert_eq!(ticket["path"], "/", "{ticket}");

    // From here on, every request the browser makes must reach the app with the identity.
    mesh.app.clear();
    let page = chromium.goto("/whoami").await;
    assert_eq!(page["seen"]["subject"], "alice", "{page:#}");

    // Copied cookies: with the ticket (while it is valid) they still work; without it, the
    // session is unproven: no identity reaches the app, and nothing is minted.
    let stolen = jar(&mut chromium, COOKIE).await;
    let stolen_ticket = jar(&mut chromium, TICKET).await;
    let (_, seen) = thief(&mesh, &[(COOKIE, &stolen), (TICKET, &stolen_ticket)]).await;
    assert_eq!(seen.header("x-session-subject").as_deref(), Some("alice"));
    let (resp, seen) = thief(&mesh, &[(COOKIE, &stolen)]).await;
    assert_eq!(seen.header("x-session-subject"), None, "{seen:?}");
    assert_eq!(seen.header("x-session-id"), None, "{seen:?}");
    assert!(set_cookie(&resp, COOKIE).is_none(), "{resp:?}");
    assert_eq!(counter(&mesh, "dbsc.unproven").await, 1);

    // The ticket gone from the browser (as after its expiry): Chromium defers the next
    // request, refreshes (proving the key), and sends it with the new ticket.
    let refreshed = counter(&mesh, "dbsc.refreshed").await;
    chromium.clear_cookie(TICKET).await;
    let page = chromium.goto("/whoami").await;
    assert_eq!(page["usages"][0][0], "Deferred", "{page:#}");
    assert_eq!(page["seen"]["subject"], "alice", "{page:#}");
    assert!(counter(&mesh, "dbsc.refreshed").await > refreshed);
    let refresh = chromium.wait_event("refresh", 1).await;
    let last = refresh.last().unwrap();
    assert_eq!(
        last["refreshEventDetails"]["refreshResult"], "Refreshed",
        "{last:#}"
    );
    assert!(chromium.cookie(TICKET).await.is_some());

    // A login while bound (proven): the mesh rotates the session ID and keeps the binding, so
    // nothing is offered again and Chromium's DBSC session goes on refreshing for the new ID.
    let offered = counter(&mesh, "dbsc.offered").await;
    let again = chromium.login("alice").await;
    assert_eq!(again["seen"]["subject"], "alice", "{again:#}");
    assert_ne!(
        again["seen"]["session_id"], page["seen"]["session_id"],
        "rotated"
    );
    assert_eq!(counter(&mesh, "dbsc.offered").await, offered);
    let refreshed = counter(&mesh, "dbsc.refreshed").await;
    chromium.clear_cookie(TICKET).await;
    let page = chromium.goto("/whoami").await;
    assert_eq!(page["usages"][0][0], "Deferred", "{page:#}");
    assert_eq!(page["seen"]["subject"], "alice", "{page:#}");
    assert_eq!(page["seen"]["session_id"], again["seen"]["session_id"]);
    assert!(counter(&mesh, "dbsc.refreshed").await > refreshed);
    assert_eq!(counter(&mesh, "dbsc.registered").await, 1);

    // The app never saw an unproven request from the browser while refresh worked.
    let browser: Vec<Recorded> = mesh
        .app
        .requests()
        .into_iter()
        .filter(from_chromium)
        .collect();
    assert!(!browser.is_empty());
    for r in &browser {
        assert_eq!(
            r.header("x-session-subject").as_deref(),
            Some("alice"),
            "{r:?}"
        );
        assert_eq!(r.header("secure-session-skipped"), None, "{r:?}");
        let cookie = r.header("cookie").unwrap_or_default();
        assert!(
            !cookie.contains(TICKET),
            "the ticket reached the app: {r:?}"
        );
    }
    assert_eq!(counter(&mesh, "dbsc.unproven").await, 1, "only the thief's");

    // Logout: the mesh expires both cookies; the browser's next request is deferred, the
    // refresh finds no session and answers {"continue": false}: Chromium ends the session.
    // The thief's copy of the session that logs out, taken just before.
    let stolen = jar(&mut chromium, COOKIE).await;
    let stolen_ticket = jar(&mut chromium, TICKET).await;
    let ended = counter(&mesh, "dbsc.ended").await;
    let out = chromium.goto("/auth/logout").await;
    assert_eq!(out["seen"]["subject"], Value::Null, "{out:#}");
    let gone = chromium.wait_event("termination", 1).await;
    // Chromium 148 names the reason `ServerRequested` when the body also carries the
    // `session_identifier` (the filter echoes it), `InvalidSessionParams` for a bare
    // `{"continue": false}`.
    let reason = gone[0]["terminationEventDetails"]["deletionReason"].as_str();
    assert_eq!(reason, Some("ServerRequested"), "{gone:#?}");
    assert!(counter(&mesh, "dbsc.ended").await > ended);

    // Afterwards the browser no longer defers nor refreshes, and the stolen pair is dead.
    let refreshes = chromium.events("refresh").await.len();
    let page = chromium.goto("/whoami").await;
    assert_eq!(page["seen"]["subject"], Value::Null, "{page:#}");
    let used: Vec<&Value> = page["usages"][0].as_array().unwrap().iter().collect();
    assert!(!used.contains(&&json!("Deferred")), "{page:#}");
    assert_eq!(chromium.events("refresh").await.len(), refreshes);
    let (_, seen) = thief(&mesh, &[(COOKIE, &stolen), (TICKET, &stolen_ticket)]).await;
    assert_eq!(
        seen.header("x-session-subject"),
        None,
        "logged out: {seen:?}"
    );
    report_counters(&mesh).await;
    chromium.call(json!({"cmd": "close"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dbsc_a_failing_refresh_releases_the_browsers_requests_unproven() {
    if !chromium_present() {
        return;
    }
    let mesh = start_mesh(true, true).await;
    let mut chromium = Chromium::start(&mesh.envoy.url("")).await;
    chromium.goto("/").await;
    chromium.login("alice").await;
    let created = chromium.wait_event("creation", 1).await;
    let dbsc_id = created[0]["sessionId"].as_str().unwrap().to_owned();
    let page = chromium.goto("/whoami").await;
    assert_eq!(page["seen"]["subject"], "alice", "{page:#}");

    // Every refresh now gets 503 from the fault filter in front of session-guard.
    let admin = mesh.envoy.admin_port();
    let on = send(
        admin,
        Req::post(&format!("/runtime_modify?{FAULT_KEY}=100"), ""),
    )
    .await;
    assert_eq!(on.status, 200, "{}", on.body_str());
    let unproven = counter(&mesh, "dbsc.unproven").await;
    chromium.clear_cookie(TICKET).await;
    mesh.app.clear();
    let page = chromium.goto("/whoami").await;
    assert_eq!(page["usages"][0][0], "Deferred", "{page:#}");
    let refresh = chromium.wait_event("refresh", 1).await;
    let last = refresh.last().unwrap();
    assert_eq!(
        last["refreshEventDetails"]["refreshResult"], "ServerError",
        "{last:#}"
    );
    assert!(
        mesh.envoy
            .counter("http.ingress.fault.aborts_injected")
            .await
            >= 1
    );

    // Chromium released the request without the ticket, saying why; the filter forwarded it
    // unproven: no identity reached the app.
    assert_eq!(page["seen"]["subject"], Value::Null, "{page:#}");
    let r = mesh
        .app
        .requests()
        .into_iter()
        .find(|r| from_chromium(r) && r.path_str() == "/whoami");
    let r = r.expect("the browser's request reached the app");
    let skipped = r
        .header("secure-session-skipped")
        .expect("Secure-Session-Skipped");
    assert_eq!(
        skipped,
        format!("server_error;session_identifier=\"{dbsc_id}\"")
    );
    assert_eq!(r.header("x-session-subject"), None, "{r:?}");
    assert_eq!(r.header("x-session-id"), None, "{r:?}");
    assert!(counter(&mesh, "dbsc.unproven").await > unproven);

    // What Chromium does once refreshes work again is reported, not asserted: it may back off.
    let off = send(
        admin,
        Req::post(&format!("/runtime_modify?{FAULT_KEY}=0"), ""),
    )
    .await;
    assert_eq!(off.status, 200, "{}", off.body_str());
    let page = chromium.goto("/whoami").await;
    eprintln!("after the fault: {page}");
    eprintln!(
        "DBSC events: {}",
        chromium.call(json!({"cmd": "events"})).await
    );
    report_counters(&mesh).await;
    chromium.call(json!({"cmd": "close"})).await;
}
