//! istiod and istio-agent, emulated without Kubernetes: the shipped WasmPlugin becomes the
//! ECDS resource istiod sends ([`istiod_extension_config`], field by field as in istio
//! `pilot/pkg/model/extensions.go`), which istio-agent localizes ([`istio_agent_localize`], as
//! in istio `pkg/wasm/convert.go`). The rooms below: [`xds`] (the gateway's ECDS bootstrap and
//! the file-based ECDS "server"), [`gateway`] (the image pull, the gateway, its traffic) and
//! [`monitoring`] (Prometheus names and the shipped PromQL). All reachable as
//! `common::istio::*`.
//!
//! Naming: istiod's names depend on the Istio version ([`istiod_names`]); the tests use those of
//! Istio 1.30+ ([`ISTIO_MINOR`]).

pub mod gateway;
pub mod monitoring;
pub mod xds;

pub use gateway::*;
pub use monitoring::*;
pub use xds::*;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;

use super::unique_dir;

/// The Istio minor version whose istiod naming the e2e tests reproduce (the newest release).
pub const ISTIO_MINOR: u32 = 30;

pub const GATEWAY_PLUGIN: &str = "istio/wasmplugin-gateway.yaml";
pub const GATEWAY_EXTENSION: &str = "istio/trafficextension-gateway.yaml";
pub const SIDECAR_PLUGIN: &str = "istio/wasmplugin-sidecar.yaml";

pub const TYPED_EXTENSION_CONFIG: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
pub const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// istiod lists RBAC too: when istio-agent cannot fetch a module it sends an RBAC filter in the
/// plugin's place (deny-all unless the plugin fails open).
pub const RBAC_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
pub const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// base64 of the 16 bytes `sixteen-byte-key`: a key the filter must refuse (< 32 bytes).
pub const SHORT_KEY: &str = "c2l4dGVlbi1ieXRlLWtleQ==";

// ---------------------------------------------------------------------------------------------
// Small helpers

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(unique_dir(&format!("istio-{tag}")))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every document of a (multi-document) YAML file, empty documents left out.
pub fn yaml_docs(path: &Path) -> Vec<Yaml> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .enumerate()
        .map(|(i, doc)| {
            Yaml::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: document {i}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The one WasmPlugin in a shipped file.
pub fn wasmplugin(file: &str) -> Yaml {
    let mut plugins: Vec<Yaml> = yaml_docs(&repo().join(file))
        .into_iter()
        .filter(|d| d["kind"].as_str() == Some("WasmPlugin"))
        .collect();
    assert_eq!(plugins.len(), 1, "{file}: expected one WasmPlugin");
    plugins.pop().unwrap()
}

pub fn to_json(v: &Yaml) -> Json {
    serde_json::to_value(v).expect("YAML value as JSON")
}

pub fn to_yaml(v: &Json) -> Yaml {
    serde_yaml::to_value(v).expect("JSON value as YAML")
}

pub fn str_at<'a>(v: &'a Yaml, path: &[&str]) -> &'a str {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("no string at {}", path.join(".")))
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// istiod: WasmPlugin -> ECDS resource

/// The names istiod gives a WasmPlugin's ECDS resource (= the HTTP filter's name) and its Wasm
/// plugin (`PluginConfig.name`, which Envoy's `wasm.<plugin>.*` stats carry), by Istio version
/// (istio `pilot/pkg/model/extensions.go`, `pilot/pkg/config/kube/extensions/translate.go`).
pub struct IstioNames {
    pub resource: String,
    pub plugin: String,
}

pub fn istiod_names(namespace: &str, name: &str, istio_minor: u32) -> IstioNames {
    let plugin = format!("{namespace}.{name}");
    match istio_minor {
        0..=20 => IstioNames {
            resource: plugin.clone(),
            plugin,
        },
        // The prefix's typo is Istio's own (fixed in 1.26).
        21..=25 => IstioNames {
            resource: format!("extenstions.istio.io/wasmplugin/{plugin}"),
            plugin,
        },
        26..=29 => IstioNames {
            resource: format!("extensions.istio.io/wasmplugin/{plugin}"),
            plugin,
        },
        // 1.30 translates each WasmPlugin into a TrafficExtension named
        // `<name>~istio-translated-wasmplugin`, and names everything after that.
        _ => {
            let plugin = format!("{plugin}~istio-translated-wasmplugin");
            IstioNames {
                resource: format!("extensions.istio.io/trafficextension/{plugin}"),
                plugin,
            }
        }
    }
}

/// The names istiod (1.30+) gives a TrafficExtension of its own: no translation marker.
pub fn trafficextension_names(te: &Yaml) -> IstioNames {
    let plugin = format!(
        "{}.{}",
        str_at(te, &["metadata", "namespace"]),
        str_at(te, &["metadata", "name"])
    );
    IstioNames {
        resource: format!("extensions.istio.io/trafficextension/{plugin}"),
        plugin,
    }
}

/// A TrafficExtension in the WasmPlugin layout: `spec.wasm.*` moved up into `spec`. istiod 1.30
/// builds both through one path (it translates every WasmPlugin into a TrafficExtension, and
/// `spec.wasm` has the WasmPlugin's fields: istio/api `extensions/v1alpha1`), so this is what
/// [`istiod_extension_config`] and the gateway helpers read.
pub fn trafficextension_as_wasmplugin(te: &Yaml) -> Yaml {
    assert_eq!(te["kind"].as_str(), Some("TrafficExtension"), "{te:?}");
    let mut p = te.clone();
    p["kind"] = Yaml::from("WasmPlugin");
    let spec = p["spec"].as_mapping_mut().expect("spec");
    let wasm = spec
        .remove("wasm")
        .expect("a Wasm TrafficExtension")
        .as_mapping()
        .cloned()
        .expect("spec.wasm");
    for (k, v) in wasm {
        assert!(!spec.contains_key(&k), "{k:?} both in spec and spec.wasm");
        spec.insert(k, v);
    }
    p
}

pub fn names_of(plugin: &Yaml, istio_minor: u32) -> IstioNames {
    istiod_names(
        str_at(plugin, &["metadata", "namespace"]),
        str_at(plugin, &["metadata", "name"]),
        istio_minor,
    )
}

/// JSON as istiod writes `pluginConfig` (protomarshal.ToJSON of a google.protobuf.Struct):
/// compact, object keys sorted, every number a double (printed without `.0` when integral).
pub fn protojson_compact(v: &Json) -> String {
    match v {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Json::String(k.clone()), protojson_compact(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Json::Array(items) => {
            let items: Vec<String> = items.iter().map(protojson_compact).collect();
            format!("[{}]", items.join(","))
        }
        Json::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The ECDS resource (an `envoy.config.core.v3.TypedExtensionConfig`) istiod sends for an HTTP
/// WasmPlugin (or, flattened by [`trafficextension_as_wasmplugin`], a TrafficExtension) to a
/// proxy of Istio >= 1.26 (the oldest release supported). Mapping (istio `buildPluginConfig`, `buildVMConfig`,
/// `buildDataSource`):
/// - `metadata.namespace` + `metadata.name` -> resource name and `config.name` ([`istiod_names`])
/// - `pluginName` -> `config.root_id`
/// - `pluginConfig` -> `config.configuration`: a `google.protobuf.StringValue` holding it as
///   compact JSON (absent when `pluginConfig` is empty)
/// - `failStrategy` -> `config.failure_policy`: FAIL_CLOSE (the default) -> FAIL_CLOSED,
///   FAIL_OPEN -> FAIL_OPEN, FAIL_RELOAD -> FAIL_RELOAD (a value of Istio 1.27+)
/// - `url` -> `vm_config.code.remote.http_uri.uri` (timeout 30s, cluster `_`), `sha256` ->
///   `remote.sha256`; `file://` URLs -> `code.local.filename`
/// - `vm_config.runtime` is always `envoy.wasm.runtime.v8`; no `vm_id`
/// - `vmConfig.env`: INLINE (the default) -> `environment_variables.key_values[name] = value`,
///   HOST -> `environment_variables.host_env_keys` (in order)
/// - plus `key_values` for istio-agent: `ISTIO_META_WASM_IMAGE_PULL_SECRET` (from
///   `imagePullSecret`), `ISTIO_META_WASM_IMAGE_PULL_POLICY` (from `imagePullPolicy`),
///   `ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION` (`metadata.resourceVersion`)
pub fn istiod_extension_config(plugin: &Yaml, names: &IstioNames) -> Json {
    let spec = &plugin["spec"];
    assert!(
        matches!(spec["type"].as_str(), None | Some("HTTP")),
        "only HTTP plugins are modelled"
    );
    let environment = vm_environment(plugin);
    let code = vm_code(plugin);
    let failure_policy = failure_policy(spec);

    let mut config = json!({
        "name": names.plugin,
        "root_id": spec["pluginName"].as_str().unwrap_or_default(),
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": code,
            "environment_variables": environment,
        },
        "failure_policy": failure_policy,
    });
    let plugin_config = to_json(&spec["pluginConfig"]);
    if plugin_config.as_object().is_some_and(|m| !m.is_empty()) {
        config["configuration"] =
            json!({"@type": STRING_VALUE, "value": protojson_compact(&plugin_config)});
    }
    json!({
        "name": names.resource,
        "typed_config": {"@type": WASM_FILTER, "config": config},
    })
}

/// `vm_config.environment_variables`: the `ISTIO_META_*` values istio-agent reads, then
/// `vmConfig.env` (INLINE into `key_values`, HOST into `host_env_keys`).
fn vm_environment(plugin: &Yaml) -> Json {
    let spec = &plugin["spec"];
    let namespace = str_at(plugin, &["metadata", "namespace"]);
    let mut key_values = serde_json::Map::new();
    if let Some(secret) = spec["imagePullSecret"].as_str().filter(|s| !s.is_empty()) {
        key_values.insert(
            "ISTIO_META_WASM_IMAGE_PULL_SECRET".into(),
            json!(format!("kubernetes://{namespace}/{secret}")),
        );
    }
    if let Some(policy) = spec["imagePullPolicy"]
        .as_str()
        .filter(|p| *p != "UNSPECIFIED_POLICY")
    {
        key_values.insert("ISTIO_META_WASM_IMAGE_PULL_POLICY".into(), json!(policy));
    }
    key_values.insert(
        "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION".into(),
        json!(plugin["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()),
    );
    let mut environment = json!({});
    let env = spec["vmConfig"]["env"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    if !env.is_empty() {
        let mut host_env_keys = Vec::new();
        for e in &env {
            let name = str_at(e, &["name"]).to_owned();
            match e["valueFrom"].as_str().unwrap_or("INLINE") {
                "INLINE" => {
                    key_values.insert(name, json!(e["value"].as_str().unwrap_or_default()));
                }
                "HOST" => host_env_keys.push(json!(name)),
                other => panic!("vmConfig.env {name}: unknown valueFrom {other}"),
            }
        }
        if !host_env_keys.is_empty() {
            environment["host_env_keys"] = Json::Array(host_env_keys);
        }
    }
    environment["key_values"] = Json::Object(key_values);
    environment
}

/// `vm_config.code`: remote (`oci://`, `http(s)://`) or local (`file://`).
fn vm_code(plugin: &Yaml) -> Json {
    let spec = &plugin["spec"];
    let url = str_at(plugin, &["spec", "url"]);
    if let Some(path) = url.strip_prefix("file://") {
        json!({"local": {"filename": path}})
    } else {
        assert!(
            ["oci://", "http://", "https://"]
                .iter()
                .any(|s| url.starts_with(s)),
            "url {url}: scheme not modelled"
        );
        json!({"remote": {
            "http_uri": {"uri": url, "timeout": "30s", "cluster": "_"},
            "sha256": spec["sha256"].as_str().unwrap_or_default(),
        }})
    }
}

/// `failStrategy` as Envoy's `failure_policy` (proxies of Istio >= 1.26).
fn failure_policy(spec: &Yaml) -> &'static str {
    match spec["failStrategy"].as_str().unwrap_or("FAIL_CLOSE") {
        "FAIL_CLOSE" => "FAIL_CLOSED",
        "FAIL_OPEN" => "FAIL_OPEN",
        "FAIL_RELOAD" => "FAIL_RELOAD",
        other => panic!("unknown failStrategy {other}"),
    }
}

/// What istio-agent hands Envoy instead (istio `pkg/wasm/convert.go`, `rewriteVMConfig`): the
/// remote code becomes the module it pulled, and the `ISTIO_META_*` variables meant for the
/// agent are removed (an emptied `key_values`, and then an emptied `environment_variables`,
/// disappear).
pub fn istio_agent_localize(mut ec: Json, pulled: &Path) -> Json {
    let vm = &mut ec["typed_config"]["config"]["vm_config"];
    assert!(
        vm["code"]["remote"]["http_uri"]["uri"].is_string(),
        "istio-agent only rewrites remote code: {vm}"
    );
    vm["code"] = json!({"local": {"filename": pulled.display().to_string()}});
    let vm = vm.as_object_mut().expect("vm_config object");
    if let Some(env) = vm
        .get_mut("environment_variables")
        .and_then(Json::as_object_mut)
    {
        if let Some(kv) = env.get_mut("key_values").and_then(Json::as_object_mut) {
            kv.retain(|k, _| !k.starts_with("ISTIO_META_"));
        }
        let no_kv = env
            .get("key_values")
            .and_then(Json::as_object)
            .is_none_or(|m| m.is_empty());
        let no_host = env
            .get("host_env_keys")
            .and_then(Json::as_array)
            .is_none_or(|a| a.is_empty());
        if no_kv && no_host {
            vm.remove("environment_variables");
        } else if no_kv {
            env.remove("key_values");
        }
    }
    ec
}

/// The shipped WasmPlugin as the operator would apply it: `metadata.resourceVersion` set (the
/// API server does), and `pluginConfig.keys` reduced/reordered to `key_ids` (entries taken from
/// the shipped list, so the `secret_env` names are the manifest's).
pub fn applied(plugin: &Yaml, resource_version: u64, key_ids: &[&str]) -> Yaml {
    let mut p = plugin.clone();
    p["metadata"]["resourceVersion"] = Yaml::from(resource_version.to_string());
    let shipped = plugin["spec"]["pluginConfig"]["keys"]
        .as_sequence()
        .expect("pluginConfig.keys");
    let keys: Vec<Yaml> = key_ids
        .iter()
        .map(|id| {
            shipped
                .iter()
                .find(|k| k["id"].as_str() == Some(id))
                .unwrap_or_else(|| panic!("the shipped key ring has no key {id}"))
                .clone()
        })
        .collect();
    p["spec"]["pluginConfig"]["keys"] = Yaml::Sequence(keys);
    p
}

/// The WasmPlugin with an operator's mistake: a first key given inline that is too short.
pub fn with_short_key(plugin: &Yaml, resource_version: u64) -> Yaml {
    let mut p = plugin.clone();
    p["metadata"]["resourceVersion"] = Yaml::from(resource_version.to_string());
    let keys = p["spec"]["pluginConfig"]["keys"]
        .as_sequence_mut()
        .expect("pluginConfig.keys");
    keys.insert(0, to_yaml(&json!({"id": "k3", "secret": SHORT_KEY})));
    p
}
