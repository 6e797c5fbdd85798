//! Traffic keeps flowing while configuration is pushed: the gateway as Istio delivers it (ECDS,
//! two workers, tests/common/istio/), clients each holding one session and sending requests
//! back to back, while an update lands every 250 ms: key-ring rotations, a revocation of one
//! victim session, and an invalid configuration that Envoy must refuse, keeping the last good
//! one. Counted: non-2xx answers, connection errors, and sessions wrongly refused (the app saw
//! another ID than the client's session). Only the victim's session may end, and it must.
//! (`make chaos` holds the same for 60 s at volume; this is the small scale kept in `make test`.)

// Test code throughout: clippy.toml's allow-*-in-tests cover it.
#![cfg(test)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::access_log::session_hash;
use common::istio::*;
use common::*;
use serde_json::{json, Value as Json};

const CLIENTS: usize = 6;
const PUSHES: u64 = 16;
const EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    non_2xx: AtomicU64,
    errors: AtomicU64,
    wrongly_refused: AtomicU64,
}

/// One client: its session, kept up to date from `Set-Cookie` (the sliding re-issue) like a
/// browser, on requests sent back to back until `stop`.
async fn client(
    port: u16,
    name: String,
    cookie: String,
    id: String,
    stop: Arc<AtomicBool>,
    t: Arc<Tally>,
) {
    let mut cookie = cookie;
    while !stop.load(Ordering::Relaxed) {
        let req = Req::get("/").header("cookie", format!("{name}={cookie}"));
        t.requests.fetch_add(1, Ordering::Relaxed);
        match try_send(port, req).await {
            Err(_) => {
                t.errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(resp) if !(200..300).contains(&resp.status) => {
                t.non_2xx.fetch_add(1, Ordering::Relaxed);
            }
            Ok(resp) => {
                if resp.header("x-echo-session").as_deref() != Some(id.as_str()) {
                    t.wrongly_refused.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(v) = set_cookie_value(&resp, &name).filter(|v| !v.is_empty()) {
                    cookie = v;
                }
            }
        }
    }
}

/// The session ID the app saw for a request with this cookie (the clients run meanwhile, so
/// the app's last recorded request may be another's).
async fn echoed(port: u16, name: &str, cookie: &str) -> String {
    let resp = send(
        port,
        Req::get("/").header("cookie", format!("{name}={cookie}")),
    )
    .await;
    assert_eq!(resp.status, 200);
    resp.header("x-echo-session").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_survive_key_rotations_revocations_and_a_refused_push_under_load() {
    let plugin = wasmplugin(GATEWAY_PLUGIN);
    let names = names_of(&plugin, ISTIO_MINOR);
    let resource = |version: u64, ring: &[&str], revoke: &Json| {
        let mut p = applied(&plugin, version, ring);
        if !revoke.is_null() {
            p["spec"]["pluginConfig"]["revoke"] = to_yaml(revoke);
        }
        istio_agent_localize(istiod_extension_config(&p, &names), &wasm_path())
    };
    let mut gw = start_gateway(&plugin, &names, &resource(1, &["k1", "k2"], &Json::Null)).await;
    // The app echoes the session it was given, so each client checks its own.
    gw.app.respond_with(|r| {
        Reply::ok().header(
            "x-echo-session",
            r.header("x-session-id").unwrap_or_default(),
        )
    });
    let name = cookie_name(&plugin);
    let mut sessions = Vec::new();
    for _ in 0..=CLIENTS {
        let (resp, got) = get_via(&gw.envoy, &gw.app, &name, "/", None).await;
        sessions.push((
            set_cookie_value(&resp, &name).expect("minted"),
            session_id(&got),
        ));
    }
    let (victim_cookie, victim_id) = sessions.pop().expect("a victim");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let port = gw.envoy.port();
    let tasks: Vec<_> = sessions
        .iter()
        .map(|(c, id)| {
            let args = (
                name.clone(),
                c.clone(),
                id.clone(),
                stop.clone(),
                tally.clone(),
            );
            tokio::spawn(client(port, args.0, args.1, args.2, args.3, args.4))
        })
        .collect();

    // Rotations alternate the signing key (both keys always verify); the victim is revoked
    // from the 4th push on; every 5th push is invalid (a short first key) and must be refused.
    let revoked = json!({"sessions": [session_hash(&victim_id)]});
    let before = gw.ecds.stats(&gw.envoy).await;
    let mut invalid = 0;
    for push in 0..PUSHES {
        let version = gw.ecds.version + 1;
        let ring: &[&str] = if push % 2 == 0 {
            &["k2", "k1"]
        } else {
            &["k1", "k2"]
        };
        let revoke = if push >= 3 {
            revoked.clone()
        } else {
            Json::Null
        };
        let ec = if push % 5 == 4 {
            invalid += 1;
            istio_agent_localize(
                istiod_extension_config(&with_short_key(&plugin, version), &names),
                &wasm_path(),
            )
        } else {
            resource(version, ring, &revoke)
        };
        gw.ecds.write(&ec);
        tokio::time::sleep(EVERY).await;
    }
    // Every rename is one ECDS update (tests/common/istio/xds.rs); wait until Envoy has read
    // them all, then until the revocation holds on both workers (new connections land on
    // either), then stop the clients.
    let deadline = Instant::now() + ECDS_TIMEOUT;
    loop {
        let s = gw.ecds.stats(&gw.envoy).await;
        if s.update_attempt >= before.update_attempt + PUSHES {
            break;
        }
        assert!(Instant::now() < deadline, "pushes not all read: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut refused_in_a_row = 0;
    while refused_in_a_row < 10 {
        let seen = echoed(port, &name, &victim_cookie).await;
        refused_in_a_row = if seen == victim_id {
            0
        } else {
            refused_in_a_row + 1
        };
        assert!(
            Instant::now() < deadline,
            "the victim's session is still valid"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    let after = gw.ecds.stats(&gw.envoy).await;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "{} requests during {PUSHES} pushes ({invalid} invalid): non-2xx {}, errors {}, \
         wrongly refused {}; ECDS {after:?}",
        n(&tally.requests),
        n(&tally.non_2xx),
        n(&tally.errors),
        n(&tally.wrongly_refused)
    );
    assert!(n(&tally.requests) > PUSHES, "the clients hardly ran");
    assert_eq!(n(&tally.non_2xx), 0);
    assert_eq!(n(&tally.errors), 0);
    assert_eq!(n(&tally.wrongly_refused), 0);
    assert_eq!(after.config_fail - before.config_fail, invalid, "{after:?}");

    // The last good configuration (with both keys) still serves every other session.
    for (cookie, id) in &sessions {
        let (_, got) = get_via(&gw.envoy, &gw.app, &name, "/", Some(cookie)).await;
        assert_eq!(&session_id(&got), id);
    }
}
