//! What a crashed filter means for traffic, measured rather than assumed: the fault-injection
//! build (`make build-fault`, src/filter/fault.rs) panics on a request carrying
//! `x-session-guard-fault: panic` (or at start with `SESSION_GUARD_FAULT=start`), under each
//! `failure_policy` Envoy offers. docs/design.md's failure table is this test's output.
//!
//! The property that matters: under the shipped choices (Envoy configs: Envoy's default, which
//! fails closed; Istio manifests: `FAIL_RELOAD`) no request ever reaches the app unprotected:
//! a session ID in its URL or a spoofed `x-session-id` never gets through.

// Test code throughout: clippy.toml's allow-*-in-tests cover it.
#![cfg(test)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

const PLANTED: &str = "/cart;jsessionid=PLANTED?x=1";
const SPOOFED: &str = "attacker-chosen";

fn fault_wasm() -> PathBuf {
    let p = std::env::var_os("SESSION_GUARD_FAULT_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            manifest_dir().join("target/wasm32-wasip1/release/session_guard_fault.wasm")
        });
    assert!(
        p.exists(),
        "no fault-injection module at {} (run `make build-fault`)",
        p.display()
    );
    p
}

/// The shipped sidecar with the given `failure_policy` (None: as shipped, Envoy's default).
fn sidecar(app: &Upstream, wasm: PathBuf, policy: Option<&'static str>) -> EnvoyBuilder {
    EnvoyBuilder::shipped("envoy/sidecar.yaml")
        .upstream("app", app)
        .wasm(wasm)
        .edit(move |root| {
            if let Some(policy) = policy {
                let filter = &mut root["static_resources"]["listeners"][0]["filter_chains"][0]
                    ["filters"][0]["typed_config"]["http_filters"][0];
                filter["typed_config"]["config"]["failure_policy"] = policy.into();
            }
        })
}

/// A request an attacker would like to reach the app unprotected.
fn attack() -> Req {
    Req::get(PLANTED).header("x-session-id", SPOOFED)
}

/// How the app saw the last request, if it saw one since `before` requests.
fn reached(app: &Upstream, before: usize) -> Option<Recorded> {
    (app.count() > before).then(|| app.last().expect("recorded"))
}

fn unprotected(r: &Recorded) -> bool {
    lossy(&r.path).contains("jsessionid") || r.header("x-session-id").as_deref() == Some(SPOOFED)
}

/// What happened to the attacks sent after the crash, one every 100 ms for `watch`.
#[derive(Debug, Default)]
struct Outcome {
    crash_status: u16,
    crash_reached_app: bool,
    /// Attacks answered by Envoy without reaching the app (status >= 500).
    refused: usize,
    /// Attacks that reached the app protected (URL stripped, spoofed header removed).
    protected: usize,
    /// Attacks that reached the app unprotected.
    unprotected: usize,
    /// When the first protected one came, after the crash.
    healed_after: Option<Duration>,
}

const WATCH: Duration = Duration::from_secs(3);

async fn crash_then_attack(policy: Option<&'static str>) -> Outcome {
    let app = Upstream::start().await;
    let envoy = sidecar(&app, fault_wasm(), policy).start().await;
    // Before the crash: protected.
    let before = send(envoy.port(), attack()).await;
    assert_eq!(before.status, 200, "{policy:?}: before the crash");
    assert!(!unprotected(&app.last().expect("forwarded")));

    let n = app.count();
    let crash = send(
        envoy.port(),
        Req::get("/boom").header("x-session-guard-fault", "panic"),
    )
    .await;
    let crashed = Instant::now();
    let mut o = Outcome {
        crash_status: crash.status,
        crash_reached_app: reached(&app, n).is_some(),
        ..Outcome::default()
    };
    envoy.wait_log("injected fault (request)").await;
    // Envoy's FAIL_RELOAD waits out a backoff (ReloadConfig, 1 s by default) before it starts
    // a fresh VM, so the watch is longer than that.
    while crashed.elapsed() < WATCH {
        let n = app.count();
        let resp = send(envoy.port(), attack()).await;
        match reached(&app, n).map(|r| unprotected(&r)) {
            None => {
                assert!(
                    resp.status >= 500,
                    "{policy:?}: {} without the app",
                    resp.status
                );
                o.refused += 1;
            }
            Some(true) => o.unprotected += 1,
            Some(false) => {
                o.protected += 1;
                o.healed_after.get_or_insert(crashed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("failure_policy {policy:?}: {o:?}");
    o
}

#[tokio::test(flavor = "multi_thread")]
async fn default_policy_fails_closed_and_stays_closed() {
    // The shipped Envoy configs set no failure_policy: Envoy's default.
    let o = crash_then_attack(None).await;
    assert!(o.crash_status >= 500 && !o.crash_reached_app, "{o:?}");
    assert_eq!((o.protected, o.unprotected), (0, 0), "{o:?}");
    assert!(o.refused > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_closed_refuses_every_later_request() {
    let o = crash_then_attack(Some("FAIL_CLOSED")).await;
    assert!(o.crash_status >= 500 && !o.crash_reached_app, "{o:?}");
    assert_eq!((o.protected, o.unprotected), (0, 0), "{o:?}");
    assert!(o.refused > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_reload_refuses_until_a_fresh_vm_then_protects() {
    // Istio's FAIL_RELOAD (the shipped WasmPlugins) becomes this Envoy failure_policy.
    let o = crash_then_attack(Some("FAIL_RELOAD")).await;
    assert!(o.crash_status >= 500 && !o.crash_reached_app, "{o:?}");
    assert_eq!(o.unprotected, 0, "{o:?}");
    assert!(o.protected > 0, "no fresh VM within {WATCH:?}: {o:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_open_passes_later_requests_unprotected() {
    // Why the docs say never: after a crash, traffic skips the filter altogether.
    let o = crash_then_attack(Some("FAIL_OPEN")).await;
    assert!(
        o.unprotected > 0,
        "FAIL_OPEN no longer passes traffic unprotected after a crash? {o:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_failing_at_start_never_serves_unprotected() {
    let app = Upstream::start().await;
    let builder = sidecar(&app, fault_wasm(), None).edit(|root| {
        let filter = &mut root["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"]["http_filters"][0];
        filter["typed_config"]["config"]["vm_config"]["environment_variables"]["key_values"] =
            serde_yaml::from_str("{SESSION_GUARD_FAULT: start}").expect("yaml");
    });
    let (code, log) = builder.start_expect_failure().await;
    println!("VM failing at start: Envoy exit code {code:?}");
    assert_ne!(code, Some(0), "{log}");
    assert_eq!(app.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_module_has_no_fault_injection() {
    let app = Upstream::start().await;
    let envoy = sidecar(&app, wasm_path(), None).start().await;
    for _ in 0..2 {
        let resp = send(
            envoy.port(),
            Req::get("/x").header("x-session-guard-fault", "panic"),
        )
        .await;
        assert_eq!(resp.status, 200);
    }
    let resp = send(envoy.port(), attack()).await;
    assert_eq!(resp.status, 200);
    assert!(!unprotected(&app.last().expect("forwarded")));
}
