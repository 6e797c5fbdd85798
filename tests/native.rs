//! The native build's shipped configuration, envoy/sidecar-native.yaml, in the real Envoy with
//! the built `libsession_guard.so` (`make build-native`): it loads (the ABI version matches),
//! serves with the same decisions, counters and filter state as the Wasm build, and a bad
//! filter configuration is refused naming the field. (Every other e2e test runs against the
//! native build too with `SESSION_GUARD_BUILD=native`, `make test-native`.)
// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here, which fail like tests do (rust-clippy#13981).
#![cfg(test)]

mod common;

use common::access_log::{session_hash, wait_access_lines};
use common::*;

const SHIPPED: &str = "envoy/sidecar-native.yaml";

#[tokio::test]
async fn sidecar_native_loads_with_a_matching_abi_and_guards_sessions() {
    let app = Upstream::start().await;
    let envoy = EnvoyBuilder::shipped(SHIPPED)
        .upstream("app", &app)
        .log_level("info")
        .start()
        .await;
    let log = envoy.wait_log("ABI version").await;
    assert!(
        log.contains("ABI version v0.2.0 matched"),
        "the module's ABI version does not match Envoy's:\n{}",
        tail(&log, 30)
    );

    // A session ID in the URL is stripped; the first request mints a mesh session.
    let resp = send(envoy.port(), Req::get("/a;jsessionid=attacker?x=1")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let got = app.last().expect("forwarded");
    assert_eq!(got.path, b"/a?x=1");
    let value = set_cookie_value(&resp, SESSION_COOKIE).expect("a minted mesh cookie");
    let id = got.header("x-session-id").expect("the session id upstream");

    // A client-sent x-session-id is a spoof: removed, and the mesh's own sent instead.
    let cookie = cookie_header(&[(SESSION_COOKIE, &value)]);
    let resp = send(
        envoy.port(),
        Req::get("/b")
            .header("cookie", cookie)
            .header("x-session-id", "forged"),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        app.last().expect("forwarded").header("x-session-id"),
        Some(id.clone())
    );

    // Envoy names a dynamic module's counters `dynamicmodulescustom.<name>`.
    let all = envoy.counters().await;
    assert_eq!(
        all.get("dynamicmodulescustom.session_guard.url.stripped"),
        Some(&1)
    );
    assert_eq!(envoy.counter("session_guard.url.stripped").await, 1);
    assert_eq!(envoy.counter("session_guard.session.minted").await, 1);
    assert_eq!(envoy.counter("session_guard.session.valid").await, 1);
    assert_eq!(
        envoy.counter("session_guard.spoofed_headers_removed").await,
        1
    );
    assert_eq!(envoy.counter("session_guard.internal_error").await, 0);

    // The access log reads the filter state without Wasm's `wasm.` prefix.
    let lines = wait_access_lines(&envoy, 2).await;
    assert_eq!(lines[0].decision, "minted", "{}", lines[0].raw);
    assert_eq!(lines[1].decision, "valid", "{}", lines[1].raw);
    assert_eq!(lines[1].session, session_hash(&id), "{}", lines[1].raw);
}

#[tokio::test]
async fn sidecar_native_refuses_an_invalid_filter_configuration_naming_the_field() {
    let (code, log) = EnvoyBuilder::shipped(SHIPPED)
        .filter_config(r#"{"keys":[{"id":"k1","secret_env":"SESSION_GUARD_KEY"}],"mode":"x"}"#)
        .log_level("info")
        .start_expect_failure()
        .await;
    assert_ne!(code, Some(0), "{}", tail(&log, 20));
    assert!(
        log.lines()
            .any(|l| l.contains("session_guard: invalid configuration:") && l.contains("mode")),
        "no line naming `mode`:\n{}",
        tail(&log, 30)
    );
}

#[tokio::test]
async fn sidecar_native_refuses_to_start_without_its_key() {
    let (code, log) = EnvoyBuilder::shipped(SHIPPED)
        .env_remove("SESSION_GUARD_KEY")
        .log_level("info")
        .start_expect_failure()
        .await;
    assert_ne!(code, Some(0), "{}", tail(&log, 20));
    assert!(
        log.contains("session_guard: invalid configuration:"),
        "{}",
        tail(&log, 30)
    );
}

/// Envoy only warns when a module's ABI version differs from its own; the module refuses an
/// Envoy older than 1.40 itself, so the listener is refused with a clear line, never run on a
/// mismatched ABI. Needs Envoy 1.39 (`SESSION_GUARD_OLD_ENVOY`, default the `make
/// test-compat` wheel): `make test-native` installs it and runs this test.
#[tokio::test]
#[ignore = "needs Envoy 1.39: make test-native runs it"]
async fn envoy_1_39_refuses_the_module_with_a_clear_line() {
    let old = std::env::var_os("SESSION_GUARD_OLD_ENVOY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-compat/1.39.3/bin/envoy")
        });
    assert!(old.exists(), "no Envoy 1.39 at {}", old.display());
    let (code, log) = EnvoyBuilder::shipped(SHIPPED)
        .envoy_bin(old)
        .log_level("info")
        .start_expect_failure()
        .await;
    assert_ne!(code, Some(0), "{}", tail(&log, 20));
    assert!(
        log.contains("session_guard: this module needs Envoy 1.40 or later"),
        "{}",
        tail(&log, 30)
    );
}
