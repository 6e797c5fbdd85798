//! The Istio manifests, checked without Envoy (fast): every file in istio/ parses and the
//! manifests agree with each other; the shipped WasmPlugin converts to the ECDS resource istiod
//! and istio-agent produce; the monitoring's PromQL name regexes match what Envoy exports under
//! every Istio naming. The same conversion then runs in a real Envoy in tests/istio_delivery.rs.
// Test code throughout (always true under `cargo test`): so clippy.toml's allow-*-in-tests also
// cover the helpers here, which fail like tests do (rust-clippy#13981).
#![cfg(test)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::istio::*;
use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;

/// The conversion itself, on the shipped gateway WasmPlugin and on variants of it.
#[test]
fn wasmplugin_converts_to_the_ecds_resource_istiod_and_istio_agent_produce() {
    let plugin = wasmplugin(GATEWAY_PLUGIN);
    let names = names_of(&plugin, ISTIO_MINOR);
    let ec = istiod_converts_the_shipped_plugin(&plugin, &names);
    istio_agent_localizes_it(ec);
    variants_convert_too(&plugin, &names);
}

/// istiod: the resource name and every field of the shipped gateway WasmPlugin's resource.
fn istiod_converts_the_shipped_plugin(plugin: &Yaml, names: &IstioNames) -> Json {
    assert_eq!(
        names.resource,
        "extensions.istio.io/trafficextension/istio-system.session-guard~istio-translated-wasmplugin"
    );
    assert_eq!(
        istiod_names("istio-system", "session-guard", 29).resource,
        "extensions.istio.io/wasmplugin/istio-system.session-guard"
    );
    let ec = istiod_extension_config(&applied(plugin, 7, &["k2", "k1"]), names);
    let config = &ec["typed_config"]["config"];
    assert_eq!(ec["typed_config"]["@type"], WASM_FILTER);
    assert_eq!(
        config["name"],
        "istio-system.session-guard~istio-translated-wasmplugin"
    );
    assert_eq!(config["root_id"], "session_guard");
    assert_eq!(config["failure_policy"], "FAIL_RELOAD");
    assert_eq!(config["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(
        config["vm_config"]["code"]["remote"]["http_uri"]["uri"],
        str_at(plugin, &["spec", "url"])
    );
    let env = &config["vm_config"]["environment_variables"];
    assert_eq!(
        env["host_env_keys"],
        json!(["SESSION_GUARD_KEY_K2", "SESSION_GUARD_KEY_K1"])
    );
    assert_eq!(
        env["key_values"],
        json!({
            "ISTIO_META_WASM_IMAGE_PULL_POLICY": "IfNotPresent",
            "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "7",
        })
    );
    assert_eq!(config["configuration"]["@type"], STRING_VALUE);
    let value = config["configuration"]["value"].as_str().unwrap();
    assert!(
        value.starts_with(r#"{"cookie":{"idle_timeout_s":1800,"max_age_s":43200,"name":"__Host-session","same_site":"Lax"},"exempt":{"paths":["/healthz","/static/"]},"keys":[{"id":"k2","#),
        "compact, keys sorted, integral numbers: {value}"
    );
    assert_eq!(
        serde_json::from_str::<Json>(value).unwrap(),
        to_json(&plugin["spec"]["pluginConfig"])
    );
    ec
}

/// istio-agent: local code, ISTIO_META_* gone, HOST keys kept.
fn istio_agent_localizes_it(ec: Json) {
    let local = istio_agent_localize(ec, Path::new("/var/lib/istio/data/x.wasm"));
    let vm = &local["typed_config"]["config"]["vm_config"];
    assert_eq!(
        vm["code"],
        json!({"local": {"filename": "/var/lib/istio/data/x.wasm"}})
    );
    assert_eq!(
        vm["environment_variables"],
        json!({"host_env_keys": ["SESSION_GUARD_KEY_K2", "SESSION_GUARD_KEY_K1"]})
    );
}

/// Variants: INLINE env, the other fail strategies, no strategy at all.
fn variants_convert_too(plugin: &Yaml, names: &IstioNames) {
    let mut p = plugin.clone();
    p["spec"]["vmConfig"]["env"] = to_yaml(&json!([
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": "INLINE", "value": "2"},
        {"name": "C", "valueFrom": "HOST"},
    ]));
    p["spec"]["failStrategy"] = Yaml::from("FAIL_OPEN");
    let ec = istiod_extension_config(&p, names);
    let config = &ec["typed_config"]["config"];
    assert_eq!(config["failure_policy"], "FAIL_OPEN");
    let local = istio_agent_localize(ec.clone(), Path::new("/m.wasm"));
    assert_eq!(
        local["typed_config"]["config"]["vm_config"]["environment_variables"],
        json!({"host_env_keys": ["C"], "key_values": {"A": "1", "B": "2"}})
    );
    p["spec"]["failStrategy"] = Yaml::from("FAIL_CLOSE");
    assert_eq!(
        istiod_extension_config(&p, names)["typed_config"]["config"]["failure_policy"],
        "FAIL_CLOSED"
    );
    p["spec"].as_mapping_mut().unwrap().remove("failStrategy");
    p["spec"]["vmConfig"]["env"] = to_yaml(&json!([]));
    let ec = istiod_extension_config(&p, names);
    assert_eq!(
        ec["typed_config"]["config"]["failure_policy"],
        "FAIL_CLOSED"
    );
    let local = istio_agent_localize(ec, Path::new("/m.wasm"));
    assert!(
        local["typed_config"]["config"]["vm_config"]
            .get("environment_variables")
            .is_none(),
        "{local}"
    );
}

/// Every file in istio/ parses (YAML: all documents; the dashboard: JSON), and the manifests
/// agree with each other (what istio/check.sh checks, without Python or promtool).
#[test]
fn istio_manifests_parse_and_agree() {
    let docs = every_file_parses();
    wasmplugins_agree_with_their_patches_and_the_secret(&docs);
    vm_reload_regexes_match_under_every_istio_naming();
}

/// Every YAML file (all its documents) and the dashboard parse; the expected kinds are there.
fn every_file_parses() -> BTreeMap<String, Vec<Yaml>> {
    let mut docs: BTreeMap<String, Vec<Yaml>> = BTreeMap::new();
    let entries = ["istio", "istio/patches", "istio/tests"]
        .iter()
        .flat_map(|d| std::fs::read_dir(repo().join(d)).expect("read istio/"));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            continue;
        }
        let name = path
            .strip_prefix(repo())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {
                let d = yaml_docs(&path);
                assert!(!d.is_empty(), "{name} has no document");
                docs.insert(name, d);
            }
            Some("json") => {
                let text = std::fs::read_to_string(&path).unwrap();
                serde_json::from_str::<Json>(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            Some("md" | "sh") => {}
            _ => panic!("istio/{name}: unexpected file type; teach this test to check it"),
        }
    }
    for (name, ds) in &docs {
        for d in ds {
            if d["kind"].is_string() {
                assert!(d["apiVersion"].is_string(), "{name}: {d:?}");
                assert!(d["metadata"]["name"].is_string(), "{name}: {d:?}");
            }
        }
    }
    let kinds: BTreeSet<(&str, &str)> = docs
        .iter()
        .flat_map(|(n, ds)| {
            ds.iter()
                .filter_map(move |d| Some((n.as_str(), d["kind"].as_str()?)))
        })
        .collect();
    for expected in [
        ("istio/wasmplugin-gateway.yaml", "WasmPlugin"),
        ("istio/wasmplugin-sidecar.yaml", "WasmPlugin"),
        ("istio/trafficextension-gateway.yaml", "TrafficExtension"),
        ("istio/trafficextension-sidecar.yaml", "TrafficExtension"),
        ("istio/trafficextension-waypoint.yaml", "TrafficExtension"),
        ("istio/secret.yaml", "Secret"),
        ("istio/alerts.yaml", "PrometheusRule"),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} missing: {kinds:?}");
    }
    let panels = dashboard()["panels"].as_array().map_or(0, Vec::len);
    assert!(panels > 0, "dashboard.json has no panels");
    docs
}

/// WasmPlugins: every secret_env is a HOST variable; fail closed; AUTHN; same config shape.
fn wasmplugins_agree_with_their_patches_and_the_secret(docs: &BTreeMap<String, Vec<Yaml>>) {
    let secret = &docs["istio/secret.yaml"][0];
    let secret_keys: BTreeSet<&str> = secret["stringData"]
        .as_mapping()
        .expect("secret stringData")
        .keys()
        .filter_map(Yaml::as_str)
        .collect();
    let mut shapes = Vec::new();
    for (file, patch) in [
        (GATEWAY_PLUGIN, "istio/patches/gateway-patch.yaml"),
        (SIDECAR_PLUGIN, "istio/patches/sidecar-patch.yaml"),
    ] {
        let p = wasmplugin(file);
        let wanted = secret_envs_are_host_variables(file, &p);
        // The patch puts each of them into istio-proxy's env from the Secret.
        let containers = docs[patch][0]["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .unwrap();
        let proxy = containers
            .iter()
            .find(|c| c["name"].as_str() == Some("istio-proxy"))
            .unwrap_or_else(|| panic!("{patch}: no istio-proxy container"));
        for var in &wanted {
            let e = proxy["env"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|e| e["name"].as_str() == Some(var))
                .unwrap_or_else(|| panic!("{patch} does not set {var}"));
            let r = &e["valueFrom"]["secretKeyRef"];
            assert_eq!(r["name"], secret["metadata"]["name"], "{patch}: {var}");
            assert!(
                secret_keys.contains(str_at(r, &["key"])),
                "{patch}: {var} reads a key the Secret lacks"
            );
        }
        // istiod can express the plugin (the conversion panics on what it cannot).
        istiod_extension_config(&p, &names_of(&p, ISTIO_MINOR));
        shapes.push(config_shape(&p["spec"]["pluginConfig"]));
    }
    assert_eq!(
        shapes[0], shapes[1],
        "the WasmPlugins' pluginConfig shapes differ"
    );
}

/// The plugin is an AUTHN, fail-closed `session_guard`, and every `secret_env` of its key ring
/// is a HOST variable of `vmConfig.env`; returns those variables.
fn secret_envs_are_host_variables<'a>(file: &str, p: &'a Yaml) -> BTreeSet<&'a str> {
    let spec = &p["spec"];
    assert_eq!(spec["phase"].as_str(), Some("AUTHN"), "{file}");
    assert_ne!(spec["failStrategy"].as_str(), Some("FAIL_OPEN"), "{file}");
    assert_eq!(spec["pluginName"].as_str(), Some("session_guard"), "{file}");
    let host: BTreeSet<&str> = spec["vmConfig"]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|e| e["valueFrom"].as_str() == Some("HOST"))
        .map(|e| str_at(e, &["name"]))
        .collect();
    let wanted: BTreeSet<&str> = spec["pluginConfig"]["keys"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| str_at(k, &["secret_env"]))
        .collect();
    assert!(
        wanted.is_subset(&host),
        "{file}: {wanted:?} not all HOST in {host:?}"
    );
    wanted
}

/// A pluginConfig's shape: each top-level key with the keys of its object value.
fn config_shape(cfg: &Yaml) -> BTreeMap<String, BTreeSet<String>> {
    cfg.as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let inner = v
                .as_mapping()
                .map(|m| {
                    m.keys()
                        .filter_map(Yaml::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            (k.as_str().unwrap().to_owned(), inner)
        })
        .collect()
}

/// Monitoring: the VM-reload regexes match the plugin's metric under every Istio naming, for
/// both WasmPlugins.
fn vm_reload_regexes_match_under_every_istio_naming() {
    for file in [GATEWAY_PLUGIN, SIDECAR_PLUGIN] {
        let p = wasmplugin(file);
        for minor in [20, 21, 26, 30] {
            let plugin_name = names_of(&p, minor).plugin;
            let exported: BTreeSet<String> = ["success", "failure", "backoff"]
                .iter()
                .map(|k| prometheus_name(&format!("wasm.{plugin_name}.vm_reload_{k}")))
                .collect();
            assert_vm_reload_regexes_match(
                &plugin_name,
                &exported,
                &format!("{file}, Istio 1.{minor}"),
            );
        }
    }
}

#[test]
fn promql_name_regex_subset() {
    assert!(promql_regex_matches("a_.*b", "a_xxb"));
    assert!(promql_regex_matches("a_.*b", "a_b"));
    assert!(!promql_regex_matches("a_.*b", "a_bc"), "anchored");
    assert!(!promql_regex_matches("a_.*b", "xa_b"), "anchored");
    assert!(promql_regex_matches("x|a_.*b", "x"));
    assert!(promql_regex_matches(
        "envoy_wasm_.*session_guard.*_vm_reload_success",
        "envoy_wasm_istio_system_session_guard_istio_translated_wasmplugin_vm_reload_success"
    ));
    assert!(!promql_regex_matches(
        "envoy_wasm_.*session_guard_vm_reload_success",
        "envoy_wasm_istio_system_session_guard_istio_translated_wasmplugin_vm_reload_success"
    ));
    assert_eq!(
        filter_metric_names(
            r#"sum(rate(session_guard_url_stripped[5m])) / namespace:session_guard_x:rate5m + rate({__name__=~"envoy_wasm_.*session_guard.*_vm_reload_success"}[5m])"#
        ),
        BTreeSet::from(["session_guard_url_stripped".to_owned()])
    );
}

/// Each TrafficExtension (Istio 1.30+) is its WasmPlugin counterpart (1.27-1.29) in the new
/// layout: the same targeting, phase and, under `spec.wasm`, the same module, configuration,
/// keys and fail behaviour, so choosing by release changes nothing else.
#[test]
fn trafficextensions_mirror_their_wasmplugins() {
    const FLAT: [&str; 7] = [
        "url",
        "imagePullPolicy",
        "pluginName",
        "type",
        "failStrategy",
        "pluginConfig",
        "vmConfig",
    ];
    for variant in ["gateway", "sidecar", "gateway-api", "waypoint"] {
        let te_file = format!("istio/trafficextension-{variant}.yaml");
        let te = yaml_docs(&repo().join(&te_file)).remove(0);
        let wp = wasmplugin(&format!("istio/wasmplugin-{variant}.yaml"));
        assert_eq!(te["kind"].as_str(), Some("TrafficExtension"));
        assert_eq!(te["metadata"], wp["metadata"], "{te_file}");
        let (t, w) = (&te["spec"], &wp["spec"]);
        for key in ["selector", "targetRefs", "match", "phase", "priority"] {
            assert_eq!(t[key], w[key], "{te_file}: spec.{key}");
        }
        for key in FLAT {
            assert_eq!(t["wasm"][key], w[key], "{te_file}: spec.wasm.{key}");
        }
        assert_eq!(t["wasm"]["failStrategy"].as_str(), Some("FAIL_RELOAD"));
        // istiod builds the same filter from both; only the names differ.
        let mut from_te = istiod_extension_config(
            &trafficextension_as_wasmplugin(&te),
            &trafficextension_names(&te),
        );
        let mut from_wp = istiod_extension_config(&wp, &names_of(&wp, ISTIO_MINOR));
        for ec in [&mut from_te, &mut from_wp] {
            ec["typed_config"]["config"]["name"] = Json::Null;
            ec["name"] = Json::Null;
        }
        assert_eq!(from_te, from_wp, "{te_file}");
        secret_envs_are_host_variables(&te_file, &wp);
        assert_eq!(
            config_shape(&t["wasm"]["pluginConfig"]),
            config_shape(&wasmplugin(GATEWAY_PLUGIN)["spec"]["pluginConfig"]),
            "{te_file}"
        );
    }
}

/// The Gateway API and waypoint manifests target by `targetRefs` only (a waypoint: a Service,
/// SERVER traffic), and istio/gateway-api-options.yaml gives their generated Deployments the
/// keys they read.
#[test]
fn gateway_api_and_waypoint_manifests_target_by_reference() {
    let waypoint = yaml_docs(&repo().join("istio/trafficextension-waypoint.yaml")).remove(0);
    assert_eq!(
        waypoint["spec"]["targetRefs"][0]["kind"].as_str(),
        Some("Service")
    );
    assert_eq!(
        waypoint["spec"]["match"][0]["mode"].as_str(),
        Some("SERVER")
    );
    assert!(waypoint["spec"]["selector"].is_null());
    let gw_api = yaml_docs(&repo().join("istio/trafficextension-gateway-api.yaml")).remove(0);
    assert_eq!(
        gw_api["spec"]["targetRefs"][0]["kind"].as_str(),
        Some("Gateway")
    );
    // The generated Deployments get the keys through the ConfigMap's `deployment` patch.
    let options = yaml_docs(&repo().join("istio/gateway-api-options.yaml")).remove(0);
    let patch: Yaml = serde_yaml::from_str(str_at(&options, &["data", "deployment"])).unwrap();
    let proxy = &patch["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(proxy["name"].as_str(), Some("istio-proxy"));
    let env: BTreeSet<&str> = proxy["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| str_at(e, &["name"]))
        .collect();
    let waypoint_plugin = wasmplugin("istio/wasmplugin-waypoint.yaml");
    let wanted = secret_envs_are_host_variables("waypoint", &waypoint_plugin);
    assert_eq!(env, wanted);
    for (name, e) in ["SESSION_GUARD_KEY_K2", "SESSION_GUARD_KEY_K1"]
        .iter()
        .zip(proxy["env"].as_sequence().unwrap())
    {
        assert_eq!(e["name"].as_str(), Some(*name));
        assert_eq!(
            e["valueFrom"]["secretKeyRef"]["name"].as_str(),
            Some("session-guard-keys")
        );
    }
}
