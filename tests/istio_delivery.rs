//! The Istio delivery path, end to end, without Kubernetes: the shipped
//! `istio/wasmplugin-gateway.yaml` reaches a real Envoy 1.40 the way istiod and istio-agent
//! deliver it, and the filter works through it.
//!
//! 1. **Image** (`make image`'s path): `scripts/image.sh` packs the built module into an OCI
//!    archive; `scripts/image-extract.sh` takes it back out the way istio-agent does after a
//!    pull (the tag or digest named by the WasmPlugin's `url`). Envoy runs *that* file.
//! 2. **istiod**: the WasmPlugin, parsed from the shipped YAML (never a second copy), becomes the
//!    ECDS resource istiod sends ([`istiod_extension_config`], field by field as in istio
//!    `pilot/pkg/model/extensions.go`); **istio-agent** rewrites its remote code to the pulled
//!    file and strips its `ISTIO_META_*` variables ([`istio_agent_localize`], as in istio
//!    `pkg/wasm/convert.go`).
//! 3. **Envoy**: `envoy/ingress.yaml` with its wasm filter replaced by the `config_discovery`
//!    filter istiod generates, reading a file (a `DiscoveryResponse`) instead of ADS. Updates
//!    are atomic renames in the watched directory; each is followed by polling Envoy's ECDS
//!    counters, never by sleeping. The signing keys come from Envoy's process environment, as
//!    `istio/patches/gateway-patch.yaml` and the Secret put them there.
//!
//! Naming: istiod's names depend on the Istio version ([`istiod_names`]); the tests use those of
//! Istio 1.30+ ([`ISTIO_MINOR`]). Nothing in the WasmPlugin is substituted: instead the
//! bootstrap's `auth` cluster is *renamed* to the cluster the WasmPlugin trusts, Istio's
//! `outbound|8080||auth.default.svc.cluster.local` (Envoy accepts `|`), so the shipped
//! `pluginConfig` runs verbatim.
//!
//! The emulation (istiod, istio-agent, the ECDS file, the image pull, the monitoring names) is
//! in tests/common/istio/; the checks of it that need no Envoy are in tests/istio_manifests.rs.
//! The long scenario below reads as its phases, one small function each.
// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here, which fail like tests do (rust-clippy#13981).
#![cfg(test)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use common::istio::*;
use common::*;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

// ---------------------------------------------------------------------------------------------
// The gateway scenario, phase by phase

/// What the scenario's phases share: the shipped gateway WasmPlugin, the module pulled from its
/// image, istiod's names for it, and the gateway running it.
struct Scenario {
    plugin: Yaml,
    pulled: Pulled,
    names: IstioNames,
    cookie: String,
    gw: Gateway,
}

/// A session as the client holds it (the cookie) and as upstreams see it (`x-session-id`).
struct Session {
    cookie: String,
    id: String,
}

/// The one Envoy process, as first seen: the scenario ends by checking it never restarted.
struct Process {
    pid: u32,
    started: Instant,
    uptime_at_start: f64,
}

impl Scenario {
    /// istiod's resource for `p`, as istio-agent hands it to Envoy.
    fn localize(&self, p: &Yaml) -> Json {
        istio_agent_localize(istiod_extension_config(p, &self.names), &self.pulled.module)
    }

    /// GET `path` through the gateway; see [`get_via`].
    async fn get(&self, up: &Upstream, path: &str, cookie: Option<&str>) -> (Resp, Recorded) {
        get_via(&self.gw.envoy, up, &self.cookie, path, cookie).await
    }

    /// Pushes the WasmPlugin with `key_ids`; see [`roll_out`].
    async fn roll_out(&mut self, key_ids: &[&str]) {
        let gw = &mut self.gw;
        roll_out(
            &gw.envoy,
            &mut gw.ecds,
            &self.plugin,
            &self.pulled.module,
            &self.names,
            key_ids,
        )
        .await;
    }
}

/// Image, istiod and istio-agent, then the gateway on version 1: the key ring [k1].
async fn start_on_version_1() -> (Scenario, Process) {
    let plugin = wasmplugin(GATEWAY_PLUGIN);
    let pulled = build_and_pull(&plugin);
    let names = names_of(&plugin, ISTIO_MINOR);
    let cookie = cookie_name(&plugin);
    let first = istio_agent_localize(
        istiod_extension_config(&applied(&plugin, 1, &["k1"]), &names),
        &pulled.module,
    );
    assert_eq!(
        first["typed_config"]["config"]["failure_policy"], "FAIL_RELOAD",
        "the shipped failStrategy"
    );
    let gw = start_gateway(&plugin, &names, &first).await;
    let envoy = &gw.envoy;
    let pid = envoy.pid().expect("Envoy's pid");
    let started = Instant::now();
    let uptime_at_start = uptime_s(envoy).await;
    wait_log_count(envoy, &configured_line(&["k1"]), 1).await;
    assert_eq!(gw.ecds.version_text(envoy).await, "1");
    let process = Process {
        pid,
        started,
        uptime_at_start,
    };
    let s = Scenario {
        plugin,
        pulled,
        names,
        cookie,
        gw,
    };
    (s, process)
}

/// Defense 1: session IDs in URLs never reach an upstream. Defense 2: the mesh mints the
/// session; its cookie is honoured. Returns that session (A).
async fn urls_are_cleaned_and_the_mesh_mints_sessions(s: &Scenario) -> Session {
    let (resp, got) = s
        .get(
            &s.gw.app,
            "/shop;jsessionid=AB12?item=3&PHPSESSID=CD34&qty=1",
            None,
        )
        .await;
    assert_eq!(got.path_str(), "/shop?item=3&qty=1");

    let a = set_cookie_value(&resp, &s.cookie).expect("a session minted");
    assert!(a.starts_with("v2.k1."), "signed by k1: {a}");
    let line = set_cookie(&resp, &s.cookie).unwrap();
    assert_eq!(
        cookie_attr(&line, "HttpOnly").as_deref(),
        Some(""),
        "{line}"
    );
    assert_eq!(cookie_attr(&line, "Secure").as_deref(), Some(""), "{line}");
    let sid_a = session_id(&got);
    assert!(
        got.header("x-session-id-next").is_none(),
        "the app is not a trusted cluster: {got:?}"
    );
    let (_, got) = s.get(&s.gw.app, "/account", Some(&a)).await;
    assert_eq!(session_id(&got), sid_a, "cookie A carries its session");
    assert!(got.header("x-session-subject").is_none(), "anonymous");
    Session {
        cookie: a,
        id: sid_a,
    }
}

/// Defense 3: a login answered by the auth service, trusted under its Istio cluster name
/// (`outbound|8080||auth.default.svc.cluster.local`), rotates the session.
async fn a_trusted_login_rotates_the_session(s: &Scenario, a: &Session) {
    let (envoy, app, auth) = (&s.gw.envoy, &s.gw.app, &s.gw.auth);
    auth.respond_with(|req| {
        if req.path_str().starts_with("/auth/login") {
            Reply::ok()
                .header("x-session-guard", "login")
                .header("x-session-guard-subject", "alice")
        } else {
            Reply::ok()
        }
    });
    let (resp, seen) = s.get(auth, "/auth/login", Some(&a.cookie)).await;
    assert_eq!(session_id(&seen), a.id);
    let next = seen
        .header("x-session-id-next")
        .expect("the trusted auth cluster gets x-session-id-next");
    assert_ne!(next, a.id);
    assert!(
        resp.header("x-session-guard").is_none()
            && resp.header("x-session-guard-subject").is_none(),
        "signal headers reached the client: {resp:?}"
    );
    let logged_in = set_cookie_value(&resp, &s.cookie).expect("a new cookie on login");
    assert_ne!(logged_in, a.cookie);
    let (_, got) = s.get(app, "/account", Some(&logged_in)).await;
    assert_eq!(
        session_id(&got),
        next,
        "the new cookie carries x-session-id-next"
    );
    assert_eq!(got.header("x-session-subject").as_deref(), Some("alice"));
    let (_, got) = s.get(app, "/account", Some(&a.cookie)).await;
    assert_eq!(session_id(&got), a.id);
    assert!(
        got.header("x-session-subject").is_none(),
        "the pre-login session became authenticated: {got:?}"
    );
    envoy.wait_counter("session_guard.rotation.login", 1).await;
}

/// The same signal from a cluster outside trusted_clusters is ignored and counted.
async fn an_untrusted_signal_is_ignored(s: &Scenario, a: &Session) {
    let (envoy, api) = (&s.gw.envoy, &s.gw.api);
    api.respond_with(|_| {
        Reply::ok()
            .header("x-session-guard", "login")
            .header("x-session-guard-subject", "mallory")
    });
    let (resp, got) = s.get(api, "/api/me", Some(&a.cookie)).await;
    assert!(got.header("x-session-id-next").is_none(), "{got:?}");
    assert!(resp.header("x-session-guard").is_none(), "{resp:?}");
    assert_eq!(session_id(&got), a.id, "no rotation");
    envoy
        .wait_counter("session_guard.signal.untrusted", 1)
        .await;
    assert_eq!(envoy.counter("session_guard.rotation.login").await, 1);
}

/// Hot key rotation, by editing the WasmPlugin only (Envoy keeps running): version 2 [k2, k1]
/// (k2 signs, k1 still verifies), then version 3 [k2] (k1's cookies refused). Returns a
/// session signed by k2 (B).
async fn keys_rotate_without_a_restart(s: &mut Scenario, a: &Session) -> Session {
    s.roll_out(&["k2", "k1"]).await;
    let (envoy, app) = (&s.gw.envoy, &s.gw.app);
    let (_, got) = s.get(app, "/", Some(&a.cookie)).await;
    assert_eq!(session_id(&got), a.id, "cookie A (k1) still valid");
    let (resp, got) = s.get(app, "/", None).await;
    let b = set_cookie_value(&resp, &s.cookie).expect("a session minted");
    assert!(b.starts_with("v2.k2."), "new sessions signed by k2: {b}");
    let sid_b = session_id(&got);
    assert_eq!(
        envoy
            .counter("session_guard.session.invalid.unknown_key")
            .await,
        0
    );

    s.roll_out(&["k2"]).await;
    let (envoy, app) = (&s.gw.envoy, &s.gw.app);
    let (resp, got) = s.get(app, "/", Some(&a.cookie)).await;
    envoy
        .wait_counter("session_guard.session.invalid.unknown_key", 1)
        .await;
    assert_ne!(session_id(&got), a.id, "cookie A (k1) must be refused");
    let replaced =
        set_cookie_value(&resp, &s.cookie).expect("a new session for the refused cookie");
    assert!(replaced.starts_with("v2.k2."), "{replaced}");
    let (_, got) = s.get(app, "/", Some(&b)).await;
    assert_eq!(session_id(&got), sid_b, "cookie B (k2) still valid");
    Session {
        cookie: b,
        id: sid_b,
    }
}

/// Traffic runs on the [k2] configuration: guarded (a session parameter in `path` is
/// stripped), not failing, not unprotected.
async fn traffic_runs_on_k2(s: &Scenario, b: &Session, path: &str) {
    let (_, got) = s.get(&s.gw.app, path, Some(&b.cookie)).await;
    if path != "/" {
        assert_eq!(got.path_str(), "/");
    }
    assert_eq!(session_id(&got), b.id);
    let (resp, _) = s.get(&s.gw.app, "/", None).await;
    assert!(set_cookie_value(&resp, &s.cookie)
        .unwrap()
        .starts_with("v2.k2."));
}

/// A refused update (a pluginConfig whose first key is too short) leaves the previous
/// configuration serving. Returns the refused resource.
async fn a_refused_update_keeps_the_previous_configuration(s: &mut Scenario, b: &Session) -> Json {
    let refused = s.localize(&with_short_key(&s.plugin, s.gw.ecds.version + 1));
    let fail_line = "session_guard: invalid configuration: keys[0].secret";
    let envoy = &s.gw.envoy;
    let fails_before = log_count(envoy, fail_line);
    assert_eq!(s.gw.ecds.push(envoy, &refused).await, Outcome::Refused);
    wait_log_count(envoy, fail_line, fails_before + 1).await;
    assert!(
        !envoy.log().contains(SHORT_KEY) && !envoy.log().contains("sixteen-byte-key"),
        "the log shows the refused secret"
    );
    assert_eq!(
        s.gw.ecds.version_text(envoy).await,
        "3",
        "Envoy reports the last accepted version"
    );
    // ... but its config dump already shows the refused resource (Envoy records what it received
    // before building it): `istioctl proxy-config ecds` is no proof of what runs.
    assert_eq!(
        s.gw.ecds.dumped_version(envoy).await,
        s.gw.ecds.version.to_string()
    );
    traffic_runs_on_k2(s, b, "/?jsessionid=x").await;
    refused
}

/// The same WasmPlugin again (a re-push: new resourceVersion, which istio-agent strips, so
/// the same typed_config). Envoy 1.40 compares it with the last resource it *received* (the
/// refused one), skips it as unchanged and ACKs it: the refusal is reported only once, and
/// `version_text` (like the config dump) then names a configuration that never ran. What
/// matters holds: the previous configuration keeps serving. (If a later Envoy refuses it
/// again instead, fine: update istio/RUNBOOK.md#config-refused and this expectation.)
async fn the_same_refused_update_again_is_unchanged(s: &mut Scenario, b: &Session, refused: &Json) {
    let again = s.localize(&with_short_key(&s.plugin, s.gw.ecds.version + 1));
    assert_eq!(again["typed_config"], refused["typed_config"]);
    let envoy = &s.gw.envoy;
    assert_eq!(s.gw.ecds.push(envoy, &again).await, Outcome::Unchanged);
    assert_eq!(
        s.gw.ecds.version_text(envoy).await,
        s.gw.ecds.version.to_string()
    );
    traffic_runs_on_k2(s, b, "/").await;
}

/// The fix is applied, still without a restart: [k2, k1] again.
async fn the_fix_is_applied(s: &mut Scenario, a: &Session, b: &Session) {
    s.roll_out(&["k2", "k1"]).await;
    let (_, got) = s.get(&s.gw.app, "/", Some(&b.cookie)).await;
    assert_eq!(session_id(&got), b.id);
    let (_, got) = s.get(&s.gw.app, "/", Some(&a.cookie)).await;
    assert_eq!(session_id(&got), a.id, "k1 verifies again");
}

/// One Envoy process throughout.
async fn envoy_never_restarted(s: &Scenario, p: &Process) {
    let (envoy, pid) = (&s.gw.envoy, p.pid);
    assert_eq!(envoy.pid(), Some(pid), "Envoy was restarted");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "Envoy (pid {pid}) is gone"
    );
    let elapsed = p.started.elapsed().as_secs_f64();
    let uptime = uptime_s(envoy).await;
    let uptime_at_start = p.uptime_at_start;
    assert!(
        uptime + 2.0 >= uptime_at_start + elapsed.floor(),
        "uptime {uptime}s after {elapsed}s, started at {uptime_at_start}s: Envoy restarted"
    );
}

/// The monitoring reads what this Envoy exports under Istio's naming.
async fn the_monitoring_reads_what_envoy_exports(s: &Scenario) {
    let prom = s.gw.envoy.prometheus().await;
    let exported: BTreeSet<String> = prom
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    assert_vm_reload_regexes_match(
        &s.names.plugin,
        &exported,
        &format!("Istio 1.{ISTIO_MINOR} naming"),
    );
    for (file, expr) in monitoring_exprs() {
        for name in filter_metric_names(&expr) {
            assert!(
                exported.contains(&name),
                "{file} reads {name}, which the filter does not export"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread")]
async fn gateway_wasmplugin_over_ecds_guards_sessions_rotates_keys_and_survives_a_refused_update() {
    let (mut s, process) = start_on_version_1().await;
    let a = urls_are_cleaned_and_the_mesh_mints_sessions(&s).await;
    a_trusted_login_rotates_the_session(&s, &a).await;
    an_untrusted_signal_is_ignored(&s, &a).await;
    let b = keys_rotate_without_a_restart(&mut s, &a).await;
    let refused = a_refused_update_keeps_the_previous_configuration(&mut s, &b).await;
    the_same_refused_update_again_is_unchanged(&mut s, &b, &refused).await;
    the_fix_is_applied(&mut s, &a, &b).await;
    envoy_never_restarted(&s, &process).await;
    the_monitoring_reads_what_envoy_exports(&s).await;
}

/// A gateway whose first configuration is refused (a new pod, or a restarted one, meeting a bad
/// WasmPlugin) serves nothing rather than serving unprotected, and recovers once it is fixed.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_gateway_refuses_traffic_until_its_plugin_configuration_is_accepted() {
    let plugin = wasmplugin(GATEWAY_PLUGIN);
    let pulled = build_and_pull(&plugin);
    let names = names_of(&plugin, ISTIO_MINOR);
    let cookie = cookie_name(&plugin);
    let localize =
        |p: &Yaml| istio_agent_localize(istiod_extension_config(p, &names), &pulled.module);

    let Gateway {
        envoy,
        mut ecds,
        app,
        ..
    } = start_gateway(&plugin, &names, &localize(&with_short_key(&plugin, 1))).await;
    // Envoy gives up waiting for an acceptable configuration and opens the listener
    // (istiod's initial_fetch_timeout 0s waits for an answer, not for a good one) ...
    let stats = ecds.stats(&envoy).await;
    assert_eq!(stats.config_fail, 1, "{stats:?}");
    assert_eq!(ecds.version_text(&envoy).await, "");
    envoy
        .wait_log("session_guard: invalid configuration: keys[0].secret")
        .await;
    // ... but with no filter configuration every request is refused; none reaches the app.
    for path in ["/", "/shop?jsessionid=1"] {
        let resp = send(envoy.port(), Req::get(path)).await;
        assert_eq!(resp.status, 500, "GET {path}: {resp:?}");
        assert!(set_cookie_value(&resp, &cookie).is_none());
    }
    assert_eq!(app.count(), 0, "a request passed without the filter");
    // The filter never started, so it exports no counters: what SessionGuardNotLoaded sees.
    let prom = envoy.prometheus().await;
    assert!(
        !prom.lines().any(|l| l.starts_with("session_guard_")),
        "{prom}"
    );

    roll_out(
        &envoy,
        &mut ecds,
        &plugin,
        &pulled.module,
        &names,
        &["k2", "k1"],
    )
    .await;
    let (resp, got) = get_via(&envoy, &app, &cookie, "/shop?jsessionid=1", None).await;
    assert_eq!(got.path_str(), "/shop");
    assert!(set_cookie_value(&resp, &cookie)
        .unwrap()
        .starts_with("v2.k2."));
    session_id(&got);
    assert!(envoy
        .prometheus()
        .await
        .contains("session_guard_session_minted"));
}
