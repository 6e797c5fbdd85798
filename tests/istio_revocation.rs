//! Revocation delivered the way Istio delivers it: an edit of the gateway WasmPlugin's
//! `pluginConfig.revoke` (what `scripts/revoke` prints), converted by istiod into the ECDS
//! resource and pushed to a running Envoy with two workers (the emulation of
//! tests/common/istio/, as in tests/istio_delivery.rs, with the built module standing in for the
//! pulled image). Measured: the time from writing the update to the first request refused
//! (printed as `revocation delay: N ms`; the target is under 5 minutes). Checked: once Envoy
//! reports the update applied, every worker refuses the revoked session; sessions not named
//! stay valid; Envoy never restarts.
#![cfg(test)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::access_log::session_hash;
use common::istio::*;
use common::*;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// How often the client tries the revoked cookie while the update travels.
const PROBE: Duration = Duration::from_millis(50);

struct Session {
    cookie: String,
    id: String,
}

struct Scenario {
    plugin: Yaml,
    names: IstioNames,
    cookie: String,
    gw: Gateway,
}

impl Scenario {
    /// The ECDS resource for the shipped WasmPlugin at `version` with `revoke` in its
    /// pluginConfig (`null`: none), as istio-agent hands it to Envoy.
    fn resource(&self, version: u64, revoke: Json) -> Json {
        let mut p = applied(&self.plugin, version, &["k2", "k1"]);
        if !revoke.is_null() {
            p["spec"]["pluginConfig"]["revoke"] = to_yaml(&revoke);
        }
        istio_agent_localize(istiod_extension_config(&p, &self.names), &wasm_path())
    }

    async fn get(&self, up: &Upstream, path: &str, cookie: Option<&str>) -> (Resp, Recorded) {
        get_via(&self.gw.envoy, up, &self.cookie, path, cookie).await
    }

    /// A new session: anonymous, or logged in as `subject` through the trusted auth cluster.
    async fn session(&self, subject: Option<&str>) -> Session {
        let (resp, _) = match subject {
            None => self.get(&self.gw.app, "/", None).await,
            Some(s) => {
                self.get(&self.gw.auth, &format!("/auth/login?user={s}"), None)
                    .await
            }
        };
        let cookie = set_cookie_value(&resp, &self.cookie).expect("a session cookie");
        let (_, got) = self.get(&self.gw.app, "/", Some(&cookie)).await;
        assert_eq!(got.header("x-session-subject").as_deref(), subject);
        Session {
            cookie,
            id: session_id(&got),
        }
    }

    async fn is_valid(&self, s: &Session) -> bool {
        let (_, got) = self.get(&self.gw.app, "/", Some(&s.cookie)).await;
        session_id(&got) == s.id
    }

    /// Writes the update, then tries `victim` every [`PROBE`] until a request is refused:
    /// returns that delay. Then waits until Envoy reports the update applied on every worker
    /// and checks that every new connection (either worker) refuses it.
    async fn revoke(&mut self, revoke: Json, victim: &Session) -> Duration {
        let ec = self.resource(self.gw.ecds.version + 1, revoke);
        let before = self.gw.ecds.stats(&self.gw.envoy).await;
        let written = Instant::now();
        self.gw.ecds.write(&ec);
        let delay = loop {
            if !self.is_valid(victim).await {
                break written.elapsed();
            }
            if written.elapsed() > ECDS_TIMEOUT {
                let stats = self.gw.ecds.stats(&self.gw.envoy).await;
                panic!(
                    "still valid {ECDS_TIMEOUT:?} after the update (ECDS {stats:?}, before \
                     {before:?}); log tail:\n{}",
                    tail(&self.gw.envoy.log(), 40)
                );
            }
            tokio::time::sleep(PROBE).await;
        };
        let deadline = Instant::now() + ECDS_TIMEOUT;
        while self.gw.ecds.stats(&self.gw.envoy).await.config_reload <= before.config_reload {
            assert!(Instant::now() < deadline, "the update never applied");
            tokio::time::sleep(PROBE).await;
        }
        for _ in 0..10 {
            assert!(!self.is_valid(victim).await, "a worker still accepts it");
        }
        delay
    }
}

/// `auth` logs users in: `/auth/login?user=U` signals login as U.
fn auth(r: &Recorded) -> Reply {
    match r.path_str().strip_prefix("/auth/login?user=") {
        Some(user) => Reply::ok()
            .header("x-session-guard", "login")
            .header("x-session-guard-subject", user),
        None => Reply::ok(),
    }
}

/// The gateway on version 1 of the shipped WasmPlugin (no revocation).
async fn start() -> Scenario {
    let plugin = wasmplugin(GATEWAY_PLUGIN);
    let names = names_of(&plugin, ISTIO_MINOR);
    let first = istio_agent_localize(
        istiod_extension_config(&applied(&plugin, 1, &["k2", "k1"]), &names),
        &wasm_path(),
    );
    let gw = start_gateway(&plugin, &names, &first).await;
    gw.auth.respond_with(auth);
    wait_log_count(&gw.envoy, &configured_line(&["k2", "k1"]), 1).await;
    Scenario {
        cookie: cookie_name(&plugin),
        plugin,
        names,
        gw,
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasmplugin_revocation_reaches_every_worker_without_a_restart() {
    let mut s = start().await;
    let pid = s.gw.envoy.pid();
    let stolen = s.session(None).await;
    let bystander = s.session(None).await;
    let alice = s.session(Some("alice")).await;
    let bob = s.session(Some("bob")).await;

    // revoke.sessions: the hash the logs print for the stolen session.
    let delay = s
        .revoke(
            serde_json::json!({"sessions": [session_hash(&stolen.id)]}),
            &stolen,
        )
        .await;
    println!("revocation delay: {} ms", delay.as_millis());
    assert!(delay < Duration::from_secs(300), "M8: under 5 minutes");
    for (name, other) in [("bystander", &bystander), ("alice", &alice), ("bob", &bob)] {
        assert!(s.is_valid(other).await, "{name}'s session was not named");
    }
    s.gw.envoy
        .wait_counter("session_guard.session.invalid.revoked", 1)
        .await;

    // revoke.subjects: alice, everywhere ("log this user out"), the list above kept.
    // A time after alice's session was issued (issue times are whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at = now_s();
    let revoke = serde_json::json!({
        "sessions": [session_hash(&stolen.id)],
        "subjects": {"alice": at},
    });
    let delay = s.revoke(revoke, &alice).await;
    println!("revocation delay: {} ms (subject)", delay.as_millis());
    assert!(
        !s.is_valid(&stolen).await,
        "the earlier revocation still holds"
    );
    for (name, other) in [("bystander", &bystander), ("bob", &bob)] {
        assert!(s.is_valid(other).await, "{name}'s session was not named");
    }
    let again = s.session(Some("alice")).await;
    assert!(
        s.is_valid(&again).await,
        "alice's login after the revocation"
    );
    assert_eq!(s.gw.envoy.pid(), pid, "Envoy restarted");
}
