//! Hot key rotation and revocation under every resource name istiod pushes session-guard
//! with, each in its own real Envoy over ECDS (the emulation of tests/common/istio/, as in
//! tests/istio_delivery.rs, with the built module standing in for the pulled image):
//! - a TrafficExtension of its own (Istio 1.30+): `extensions.istio.io/trafficextension/<ns>.<name>`,
//!   from the shipped `istio/trafficextension-gateway.yaml`;
//! - a WasmPlugin on Istio 1.30+, translated: `…/trafficextension/<ns>.<name>~istio-translated-wasmplugin`;
//! - a WasmPlugin on Istio 1.26–1.29: `extensions.istio.io/wasmplugin/<ns>.<name>`.
//!
//! Envoy's ECDS counters are read under that name (`extension_config_discovery.<name>.*`), so a
//! resource pushed under another name than the filter's never counts as applied.
#![cfg(test)]

mod common;

use common::access_log::session_hash;
use common::istio::*;
use common::*;
use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;

struct Scenario {
    plugin: Yaml,
    names: IstioNames,
    cookie: String,
    gw: Gateway,
}

impl Scenario {
    /// The gateway on version 1 of `plugin` (WasmPlugin layout), key ring [k1].
    async fn start(plugin: Yaml, names: IstioNames) -> Scenario {
        let first = istio_agent_localize(
            istiod_extension_config(&applied(&plugin, 1, &["k1"]), &names),
            &wasm_path(),
        );
        let gw = start_gateway(&plugin, &names, &first).await;
        wait_log_count(&gw.envoy, &configured_line(&["k1"]), 1).await;
        assert_eq!(
            gw.ecds.version_text(&gw.envoy).await,
            "1",
            "{}",
            names.resource
        );
        Scenario {
            cookie: cookie_name(&plugin),
            plugin,
            names,
            gw,
        }
    }

    /// A new session: (cookie, forwarded ID).
    async fn session(&self) -> (String, String) {
        let (resp, got) = get_via(&self.gw.envoy, &self.gw.app, &self.cookie, "/", None).await;
        let cookie = set_cookie_value(&resp, &self.cookie).expect("a session minted");
        (cookie, session_id(&got))
    }

    async fn is_valid(&self, (cookie, id): &(String, String)) -> bool {
        let (_, got) = get_via(
            &self.gw.envoy,
            &self.gw.app,
            &self.cookie,
            "/",
            Some(cookie),
        )
        .await;
        session_id(&got) == *id
    }

    async fn roll_out(&mut self, key_ids: &[&str]) {
        let gw = &mut self.gw;
        roll_out(
            &gw.envoy,
            &mut gw.ecds,
            &self.plugin,
            &wasm_path(),
            &self.names,
            key_ids,
        )
        .await;
    }

    /// Pushes key ring [k2] with `revoke` and waits until Envoy applied it.
    async fn revoke(&mut self, revoke: Json) {
        let mut p = applied(&self.plugin, self.gw.ecds.version + 1, &["k2"]);
        p["spec"]["pluginConfig"]["revoke"] = to_yaml(&revoke);
        let ec = istio_agent_localize(istiod_extension_config(&p, &self.names), &wasm_path());
        assert_eq!(
            self.gw.ecds.push(&self.gw.envoy, &ec).await,
            Outcome::Applied
        );
    }
}

/// k1 → [k2, k1] → [k2] without a restart, then `revoke.sessions`, all under `names`.
async fn rotation_and_revocation_under(plugin: Yaml, names: IstioNames) {
    let mut s = Scenario::start(plugin, names).await;
    let pid = s.gw.envoy.pid();
    let a = s.session().await;
    assert!(a.0.starts_with("v2.k1."), "{}", a.0);

    s.roll_out(&["k2", "k1"]).await;
    assert!(s.is_valid(&a).await, "k1 still verifies");
    let b = s.session().await;
    assert!(b.0.starts_with("v2.k2."), "k2 signs: {}", b.0);

    s.roll_out(&["k2"]).await;
    assert!(!s.is_valid(&a).await, "k1 removed: its cookie is refused");
    s.gw.envoy
        .wait_counter("session_guard.session.invalid.unknown_key", 1)
        .await;
    assert!(s.is_valid(&b).await);

    let c = s.session().await;
    s.revoke(json!({"sessions": [session_hash(&b.1)]})).await;
    for _ in 0..4 {
        assert!(
            !s.is_valid(&b).await,
            "a worker still accepts the revoked session"
        );
    }
    assert!(s.is_valid(&c).await, "a session not named stays valid");
    s.gw.envoy
        .wait_counter("session_guard.session.invalid.revoked", 1)
        .await;
    assert_eq!(s.gw.envoy.pid(), pid, "Envoy restarted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trafficextension_of_its_own_rotates_keys_and_revokes() {
    let te = yaml_docs(&repo().join(GATEWAY_EXTENSION)).remove(0);
    let names = trafficextension_names(&te);
    assert_eq!(
        names.resource,
        "extensions.istio.io/trafficextension/istio-system.session-guard"
    );
    rotation_and_revocation_under(trafficextension_as_wasmplugin(&te), names).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_translated_wasmplugin_on_istio_1_30_rotates_keys_and_revokes() {
    let plugin = wasmplugin(GATEWAY_PLUGIN);
    let names = names_of(&plugin, 30);
    assert!(names.resource.ends_with("~istio-translated-wasmplugin"));
    rotation_and_revocation_under(plugin, names).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasmplugin_on_istio_1_26_to_1_29_rotates_keys_and_revokes() {
    let plugin = wasmplugin(GATEWAY_PLUGIN);
    let names = names_of(&plugin, 29);
    assert_eq!(
        names.resource,
        "extensions.istio.io/wasmplugin/istio-system.session-guard"
    );
    rotation_and_revocation_under(plugin, names).await;
}

/// JSON merge patch (RFC 7386), as `kubectl patch --type merge` applies it.
fn merge(target: &mut Json, patch: &Json) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Json::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// `scripts/revoke --kind trafficextension` patches a TrafficExtension where it keeps its
/// configuration (spec.wasm.pluginConfig), and istiod's resource then carries the revocation.
#[test]
fn scripts_revoke_patches_a_trafficextension_under_spec_wasm() {
    let te = yaml_docs(&repo().join(GATEWAY_EXTENSION)).remove(0);
    let mut current = to_json(&te);
    current["metadata"]["resourceVersion"] = json!("5");
    let tmp = TempDir::new("revoke-te");
    let file = tmp.path().join("te.json");
    std::fs::write(&file, current.to_string()).unwrap();
    let hash = "0123456789abcdef";
    let out = run_script(
        "scripts/revoke",
        &[
            std::path::Path::new("--kind"),
            std::path::Path::new("trafficextension"),
            std::path::Path::new("--session"),
            std::path::Path::new(hash),
            std::path::Path::new("--current-from"),
            &file,
        ],
        &[],
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("kubectl ") && l.contains(" patch trafficextension "))
        .unwrap_or_else(|| panic!("no kubectl patch line:\n{out}"));
    let body = line.rsplit_once(" -p '").unwrap().1.trim_end_matches('\'');
    let patch: Json = serde_json::from_str(body).unwrap();
    assert_eq!(patch["metadata"]["resourceVersion"], "5");
    merge(&mut current, &patch);
    assert!(current["spec"].get("pluginConfig").is_none(), "{current}");
    assert_eq!(
        current["spec"]["wasm"]["pluginConfig"]["revoke"]["sessions"],
        json!([hash])
    );
    let patched = trafficextension_as_wasmplugin(&to_yaml(&current));
    let ec = istiod_extension_config(&patched, &trafficextension_names(&te));
    let value = ec["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    assert!(
        value.contains(&format!(r#""revoke":{{"sessions":["{hash}"]}}"#)),
        "{value}"
    );
}
