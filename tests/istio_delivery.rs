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
//!    `gateway-patch.yaml` and the Secret put them there.
//!
//! Naming: istiod's names depend on the Istio version ([`istiod_names`]); the tests use those of
//! Istio 1.30+ ([`ISTIO_MINOR`]). Nothing in the WasmPlugin is substituted: instead the
//! bootstrap's `auth` cluster is *renamed* to the cluster the WasmPlugin trusts, Istio's
//! `outbound|8080||auth.default.svc.cluster.local` (Envoy accepts `|`), so the shipped
//! `pluginConfig` runs verbatim.
//!
//! Local helpers (not in tests/common): a self-removing temp dir, ECDS counter polling, a log
//! line counter, `/server_info` uptime and a matcher for the `.*`-only PromQL name regexes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;

/// The Istio minor version whose istiod naming the e2e tests reproduce (the newest release).
const ISTIO_MINOR: u32 = 30;

const GATEWAY_PLUGIN: &str = "istio/wasmplugin-gateway.yaml";
const SIDECAR_PLUGIN: &str = "istio/wasmplugin-sidecar.yaml";

const TYPED_EXTENSION_CONFIG: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// istiod lists RBAC too: when istio-agent cannot fetch a module it sends an RBAC filter in the
/// plugin's place (deny-all unless the plugin fails open).
const RBAC_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// base64 of the 16 bytes `sixteen-byte-key`: a key the filter must refuse (< 32 bytes).
const SHORT_KEY: &str = "c2l4dGVlbi1ieXRlLWtleQ==";

/// How long an ECDS update may take to be applied (or refused) by Envoy.
const ECDS_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(25);

// ---------------------------------------------------------------------------------------------
// Small local helpers

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "session-guard-istio-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every document of a (multi-document) YAML file, empty documents left out.
fn yaml_docs(path: &Path) -> Vec<Yaml> {
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
fn wasmplugin(file: &str) -> Yaml {
    let mut plugins: Vec<Yaml> = yaml_docs(&repo().join(file))
        .into_iter()
        .filter(|d| d["kind"].as_str() == Some("WasmPlugin"))
        .collect();
    assert_eq!(plugins.len(), 1, "{file}: expected one WasmPlugin");
    plugins.pop().unwrap()
}

fn to_json(v: &Yaml) -> Json {
    serde_json::to_value(v).expect("YAML value as JSON")
}

fn to_yaml(v: &Json) -> Yaml {
    serde_yaml::to_value(v).expect("JSON value as YAML")
}

fn str_at<'a>(v: &'a Yaml, path: &[&str]) -> &'a str {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("no string at {}", path.join(".")))
}

fn seq_mut<'a>(v: &'a mut Yaml, key: &str) -> impl Iterator<Item = &'a mut Yaml> {
    v.get_mut(key)
        .and_then(Yaml::as_sequence_mut)
        .into_iter()
        .flatten()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// istiod: WasmPlugin -> ECDS resource

/// The names istiod gives a WasmPlugin's ECDS resource (= the HTTP filter's name) and its Wasm
/// plugin (`PluginConfig.name`, which Envoy's `wasm.<plugin>.*` stats carry), by Istio version
/// (istio `pilot/pkg/model/extensions.go`, `pilot/pkg/config/kube/extensions/translate.go`).
struct IstioNames {
    resource: String,
    plugin: String,
}

fn istiod_names(namespace: &str, name: &str, istio_minor: u32) -> IstioNames {
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

fn names_of(plugin: &Yaml, istio_minor: u32) -> IstioNames {
    istiod_names(
        str_at(plugin, &["metadata", "namespace"]),
        str_at(plugin, &["metadata", "name"]),
        istio_minor,
    )
}

/// JSON as istiod writes `pluginConfig` (protomarshal.ToJSON of a google.protobuf.Struct):
/// compact, object keys sorted, every number a double (printed without `.0` when integral).
fn protojson_compact(v: &Json) -> String {
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
/// WasmPlugin to a proxy of Istio >= 1.25. Mapping (istio `buildPluginConfig`, `buildVMConfig`,
/// `buildDataSource`):
/// - `metadata.namespace` + `metadata.name` -> resource name and `config.name` ([`istiod_names`])
/// - `pluginName` -> `config.root_id`
/// - `pluginConfig` -> `config.configuration`: a `google.protobuf.StringValue` holding it as
///   compact JSON (absent when `pluginConfig` is empty)
/// - `failStrategy` -> `config.failure_policy`: FAIL_CLOSE (the default) -> FAIL_CLOSED,
///   FAIL_OPEN -> FAIL_OPEN, FAIL_RELOAD -> FAIL_RELOAD (proxies older than 1.25 get only the
///   deprecated `fail_open: <strategy == FAIL_OPEN>`)
/// - `url` -> `vm_config.code.remote.http_uri.uri` (timeout 30s, cluster `_`), `sha256` ->
///   `remote.sha256`; `file://` URLs -> `code.local.filename`
/// - `vm_config.runtime` is always `envoy.wasm.runtime.v8`; no `vm_id`
/// - `vmConfig.env`: INLINE (the default) -> `environment_variables.key_values[name] = value`,
///   HOST -> `environment_variables.host_env_keys` (in order)
/// - plus `key_values` for istio-agent: `ISTIO_META_WASM_IMAGE_PULL_SECRET` (from
///   `imagePullSecret`), `ISTIO_META_WASM_IMAGE_PULL_POLICY` (from `imagePullPolicy`),
///   `ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION` (`metadata.resourceVersion`)
fn istiod_extension_config(plugin: &Yaml, names: &IstioNames) -> Json {
    let spec = &plugin["spec"];
    let namespace = str_at(plugin, &["metadata", "namespace"]);
    assert!(
        matches!(spec["type"].as_str(), None | Some("HTTP")),
        "only HTTP plugins are modelled"
    );

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

    let url = str_at(plugin, &["spec", "url"]);
    let code = if let Some(path) = url.strip_prefix("file://") {
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
    };

    let failure_policy = match spec["failStrategy"].as_str().unwrap_or("FAIL_CLOSE") {
        "FAIL_CLOSE" => "FAIL_CLOSED",
        "FAIL_OPEN" => "FAIL_OPEN",
        "FAIL_RELOAD" => "FAIL_RELOAD",
        other => panic!("unknown failStrategy {other}"),
    };

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

/// What istio-agent hands Envoy instead (istio `pkg/wasm/convert.go`, `rewriteVMConfig`): the
/// remote code becomes the module it pulled, and the `ISTIO_META_*` variables meant for the
/// agent are removed (an emptied `key_values`, and then an emptied `environment_variables`,
/// disappear).
fn istio_agent_localize(mut ec: Json, pulled: &Path) -> Json {
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
fn applied(plugin: &Yaml, resource_version: u64, key_ids: &[&str]) -> Yaml {
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
fn with_short_key(plugin: &Yaml, resource_version: u64) -> Yaml {
    let mut p = plugin.clone();
    p["metadata"]["resourceVersion"] = Yaml::from(resource_version.to_string());
    let keys = p["spec"]["pluginConfig"]["keys"]
        .as_sequence_mut()
        .expect("pluginConfig.keys");
    keys.insert(0, to_yaml(&json!({"id": "k3", "secret": SHORT_KEY})));
    p
}

// ---------------------------------------------------------------------------------------------
// The image: build it, pull it back as istio-agent does

struct Pulled {
    /// The module istio-agent would hand Envoy.
    module: PathBuf,
    _dir: TempDir,
}

fn run_script(script: &str, args: &[&Path], env: &[(&str, &Path)]) -> String {
    let mut cmd = std::process::Command::new(repo().join(script));
    cmd.args(args).current_dir(repo());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `scripts/image.sh` into a temp archive, then `scripts/image-extract.sh` of the reference in
/// the WasmPlugin's `url` (its tag, or its digest which must be the one image.sh printed).
fn build_and_pull(plugin: &Yaml) -> Pulled {
    let dir = TempDir::new("image");
    let archive = dir.path().join("session-guard.oci.tar");
    let wasm = wasm_path();
    let report = run_script(
        "scripts/image.sh",
        &[],
        &[("IMAGE_ARCHIVE", &archive), ("SESSION_GUARD_WASM", &wasm)],
    );
    let field = |name: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("image.sh printed no {name}:\n{report}"))
    };
    let (tag, digest) = (field("tag"), field("digest"));

    let url = str_at(plugin, &["spec", "url"]);
    let reference = url.strip_prefix("oci://").expect("an oci:// url");
    let agent_cache = dir.path().join("istio-agent");
    let out = if let Some((_, pinned)) = reference.split_once('@') {
        assert_eq!(
            pinned, digest,
            "the WasmPlugin pins another image than built"
        );
        run_script("scripts/image-extract.sh", &[&archive, &agent_cache], &[])
    } else {
        let url_tag = reference
            .rsplit_once(':')
            .map(|(_, t)| t)
            .filter(|t| !t.contains('/'))
            .unwrap_or_else(|| panic!("{url}: neither a tag nor a digest"));
        assert_eq!(
            url_tag, tag,
            "the WasmPlugin's url names tag {url_tag}, image.sh builds {tag}"
        );
        run_script(
            "scripts/image-extract.sh",
            &[&archive, &agent_cache, Path::new(url_tag)],
            &[],
        )
    };
    let module = PathBuf::from(out.trim());
    assert_eq!(
        std::fs::read(&module).expect("read the pulled module"),
        std::fs::read(&wasm).expect("read the built module"),
        "the module pulled from the image differs from the built one"
    );
    Pulled { module, _dir: dir }
}

// ---------------------------------------------------------------------------------------------
// The bootstrap and the ECDS file

/// The secret each key id gets in Envoy's environment (32 bytes, different per id).
fn secret_for(id: &str) -> String {
    let raw = format!("{:-<32}", format!("istio-delivery-test-key-{id}"));
    b64(&raw.as_bytes()[..32])
}

/// Envoy's environment as gateway-patch.yaml + the Secret give it: every HOST variable of
/// `vmConfig.env`, holding the secret of the key whose `secret_env` names it.
fn host_env(plugin: &Yaml) -> Vec<(String, String)> {
    let keys = plugin["spec"]["pluginConfig"]["keys"]
        .as_sequence()
        .expect("keys");
    plugin["spec"]["vmConfig"]["env"]
        .as_sequence()
        .expect("vmConfig.env")
        .iter()
        .filter(|e| e["valueFrom"].as_str() == Some("HOST"))
        .map(|e| {
            let name = str_at(e, &["name"]);
            let id = keys
                .iter()
                .find(|k| k["secret_env"].as_str() == Some(name))
                .map_or(name, |k| str_at(k, &["id"]));
            (name.to_owned(), secret_for(id))
        })
        .collect()
}

/// Turns the rendered `envoy/ingress.yaml` into what istiod gives a gateway: the wasm filter
/// (in place, so in the AUTHN position: first) becomes an ECDS `config_discovery` filter named
/// `resource`, reading `ecds_file` instead of ADS; the cluster the shipped filter trusts
/// (`auth`) is renamed to `trusted`, the Istio name the WasmPlugin trusts, in the cluster list
/// and the routes. Also a node id and cluster, which xDS subscriptions require.
fn ecds_bootstrap(root: &mut Yaml, resource: &str, ecds_file: &Path, trusted: &str) {
    root["node"] = to_yaml(&json!({
        "id": "router~127.0.0.1~istio-ingressgateway-test.istio-system~istio-system.svc.cluster.local",
        "cluster": "istio-ingressgateway.istio-system",
    }));
    let discovery = to_yaml(&json!({
        "name": resource,
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": ecds_file.display().to_string(),
                    "watched_directory": {"path": ecds_file.parent().unwrap().display().to_string()},
                },
                "resource_api_version": "V3",
                // As istiod: no traffic before the first configuration (a security filter).
                "initial_fetch_timeout": "0s",
            },
            "type_urls": [WASM_FILTER, RBAC_FILTER],
        },
    }));
    let mut shipped_trusted = None;
    let static_resources = root.get_mut("static_resources").expect("static_resources");
    for listener in seq_mut(static_resources, "listeners") {
        for chain in seq_mut(listener, "filter_chains") {
            for filter in seq_mut(chain, "filters") {
                let Some(hcm) = filter.get_mut("typed_config") else {
                    continue;
                };
                for http_filter in seq_mut(hcm, "http_filters") {
                    if http_filter["name"].as_str() != Some("envoy.filters.http.wasm") {
                        continue;
                    }
                    let cfg: Json = serde_json::from_str(str_at(
                        http_filter,
                        &["typed_config", "config", "configuration", "value"],
                    ))
                    .expect("the shipped filter configuration is JSON");
                    let trusted_list = cfg["signal"]["trusted_clusters"]
                        .as_array()
                        .expect("the shipped ingress trusts a cluster");
                    assert_eq!(trusted_list.len(), 1, "{trusted_list:?}");
                    shipped_trusted = trusted_list[0].as_str().map(str::to_owned);
                    *http_filter = discovery.clone();
                }
                let Some(from) = shipped_trusted.clone() else {
                    continue;
                };
                let Some(route_config) = hcm.get_mut("route_config") else {
                    continue;
                };
                for vhost in seq_mut(route_config, "virtual_hosts") {
                    for route in seq_mut(vhost, "routes") {
                        if route["route"]["cluster"].as_str() == Some(from.as_str()) {
                            route["route"]["cluster"] = Yaml::from(trusted);
                        }
                    }
                }
            }
        }
    }
    let from = shipped_trusted.expect("the shipped ingress has a wasm filter");
    let mut renamed = 0;
    for cluster in seq_mut(static_resources, "clusters") {
        if cluster["name"].as_str() == Some(from.as_str()) {
            cluster["name"] = Yaml::from(trusted);
            cluster["load_assignment"]["cluster_name"] = Yaml::from(trusted);
            renamed += 1;
        }
    }
    assert_eq!(renamed, 1, "cluster {from} not found");
}

/// ECDS counters of one resource (`extension_config_discovery.http_filter.<name>.*`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct EcdsStats {
    update_attempt: u64,
    update_success: u64,
    update_rejected: u64,
    config_reload: u64,
    config_fail: u64,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// Accepted, and every worker runs it (`config_reload` counts only once all have it).
    Applied,
    /// Refused (`config_fail`): Envoy keeps serving the previous configuration.
    Refused,
    /// Accepted without effect: the same `typed_config` as the previous push.
    Unchanged,
}

/// The ECDS "server": a `DiscoveryResponse` file in a directory Envoy watches.
struct Ecds {
    dir: TempDir,
    resource: String,
    version: u64,
    last: Option<Json>,
}

impl Ecds {
    fn new(resource: &str) -> Ecds {
        Ecds {
            dir: TempDir::new("ecds"),
            resource: resource.to_owned(),
            version: 0,
            last: None,
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("ecds.json")
    }

    /// Writes the next version: into a temp file, then renamed over the watched one (Envoy
    /// reloads on a move into `watched_directory`, and never sees a half-written file).
    fn write(&mut self, ec: &Json) {
        assert_eq!(ec["name"].as_str(), Some(self.resource.as_str()));
        self.version += 1;
        let mut resource = ec.clone();
        resource["@type"] = json!(TYPED_EXTENSION_CONFIG);
        let response = json!({
            "version_info": self.version.to_string(),
            "type_url": TYPED_EXTENSION_CONFIG,
            "resources": [resource],
        });
        let tmp = self.dir.path().join(".ecds.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&response).unwrap())
            .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, self.file()).expect("rename the ECDS file into place");
        self.last = Some(ec["typed_config"].clone());
    }

    async fn stats(&self, envoy: &Envoy) -> EcdsStats {
        let counters = envoy.counters().await;
        let get = |s: &str| {
            let name = format!(
                "extension_config_discovery.http_filter.{}.{s}",
                self.resource
            );
            *counters
                .get(&name)
                .unwrap_or_else(|| panic!("no counter {name}"))
        };
        EcdsStats {
            update_attempt: get("update_attempt"),
            update_success: get("update_success"),
            update_rejected: get("update_rejected"),
            config_reload: get("config_reload"),
            config_fail: get("config_fail"),
        }
    }

    /// The version Envoy reports for the resource (a text readout).
    async fn version_text(&self, envoy: &Envoy) -> String {
        let resp = envoy.admin("/stats?format=json&type=TextReadouts").await;
        let json: Json = serde_json::from_slice(&resp.body).expect("stats JSON");
        let name = format!(
            "extension_config_discovery.http_filter.{}.version_text",
            self.resource
        );
        json["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"].as_str() == Some(name.as_str()))
            .and_then(|s| s["value"].as_str())
            .unwrap_or_else(|| panic!("no text readout {name}"))
            .to_owned()
    }

    /// The `version_info` of the resource in admin `/config_dump` (what `istioctl proxy-config
    /// ecds` shows).
    async fn dumped_version(&self, envoy: &Envoy) -> String {
        let resp = envoy.admin("/config_dump?resource=ecds_filters").await;
        let json: Json = serde_json::from_slice(&resp.body).expect("config_dump JSON");
        json["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["ecds_filter"]["name"].as_str() == Some(self.resource.as_str()))
            .and_then(|c| c["version_info"].as_str())
            .unwrap_or_else(|| panic!("{} not in the config dump: {json}", self.resource))
            .to_owned()
    }

    /// Pushes `ec` and waits until Envoy has processed it; returns what Envoy did.
    async fn push(&mut self, envoy: &Envoy, ec: &Json) -> Outcome {
        let before = self.stats(envoy).await;
        let same = self.last.as_ref() == Some(&ec["typed_config"]);
        self.write(ec);
        let deadline = Instant::now() + ECDS_TIMEOUT;
        loop {
            let now = self.stats(envoy).await;
            if now.update_attempt > before.update_attempt {
                assert_eq!(
                    now.update_attempt,
                    before.update_attempt + 1,
                    "one rename, one update"
                );
                // A refused update counts `config_fail` (and `update_rejected`) in the same
                // main-thread step that read the file, so it is visible at once. (Envoy 1.40
                // counts it in `config_reload` too: that counter alone proves nothing.)
                if now.config_fail > before.config_fail {
                    assert_eq!(now.update_rejected, before.update_rejected + 1, "{now:?}");
                    return Outcome::Refused;
                }
                assert_eq!(now.update_success, before.update_success + 1, "{now:?}");
                if same {
                    assert_eq!(now.config_reload, before.config_reload, "{now:?}");
                    return Outcome::Unchanged;
                }
                // Accepted: applied once every worker has swapped its filter factory.
                if now.config_reload > before.config_reload {
                    return Outcome::Applied;
                }
            }
            assert!(
                Instant::now() < deadline,
                "ECDS version {} not processed within {ECDS_TIMEOUT:?} ({now:?}, before \
                 {before:?}); log tail:\n{}",
                self.version,
                tail(&envoy.log(), 40)
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// How many log lines contain `needle`.
fn log_count(envoy: &Envoy, needle: &str) -> usize {
    envoy.log().lines().filter(|l| l.contains(needle)).count()
}

async fn wait_log_count(envoy: &Envoy, needle: &str, at_least: usize) {
    let deadline = Instant::now() + ECDS_TIMEOUT;
    while log_count(envoy, needle) < at_least {
        assert!(
            Instant::now() < deadline,
            "fewer than {at_least} log lines contain {needle:?}; log tail:\n{}",
            tail(&envoy.log(), 40)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The filter's startup line for a key ring: `... configured mode=enforce keys=[k2,k1] ...`.
fn configured_line(key_ids: &[&str]) -> String {
    format!("configured mode=enforce keys=[{}] ", key_ids.join(","))
}

/// Pushes the WasmPlugin with `key_ids` and asserts that Envoy applied it and the filter
/// configured itself with that ring.
async fn roll_out(
    envoy: &Envoy,
    ecds: &mut Ecds,
    plugin: &Yaml,
    pulled: &Path,
    names: &IstioNames,
    key_ids: &[&str],
) {
    let line = configured_line(key_ids);
    let before = log_count(envoy, &line);
    let version = ecds.version + 1;
    let ec = istio_agent_localize(
        istiod_extension_config(&applied(plugin, version, key_ids), names),
        pulled,
    );
    assert_eq!(
        ecds.push(envoy, &ec).await,
        Outcome::Applied,
        "keys {key_ids:?}"
    );
    wait_log_count(envoy, &line, before + 1).await;
    assert_eq!(ecds.version_text(envoy).await, version.to_string());
}

/// `uptime_current_epoch` of admin `/server_info`, in seconds.
async fn uptime_s(envoy: &Envoy) -> f64 {
    let info: Json =
        serde_json::from_slice(&envoy.admin("/server_info").await.body).expect("server_info JSON");
    assert_eq!(info["state"], "LIVE", "{info}");
    assert_eq!(
        info["command_line_options"]["restart_epoch"].as_u64(),
        Some(0),
        "a hot restart happened: {info}"
    );
    info["uptime_current_epoch"]
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("uptime in {info}"))
}

// ---------------------------------------------------------------------------------------------
// Monitoring names

/// Envoy's Prometheus name of a stat: `envoy_` + the name with every byte outside
/// `[A-Za-z0-9_]` replaced by `_`.
fn prometheus_name(stat: &str) -> String {
    let sanitized: String = stat
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("envoy_{sanitized}")
}

/// Whether `name` matches the PromQL (RE2, fully anchored) regex `re`, for the subset the
/// shipped queries use: literals, `.*`, and top-level `|`. Panics on anything else, so a
/// richer regex makes this test grow with it rather than pass blindly.
fn promql_regex_matches(re: &str, name: &str) -> bool {
    fn glob(pattern: &[&str], name: &str) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((&".*", rest)) => (0..=name.len()).any(|i| glob(rest, &name[i..])),
            Some((lit, rest)) => name.strip_prefix(lit).is_some_and(|n| glob(rest, n)),
        }
    }
    re.split('|').any(|alt| {
        let parts: Vec<&str> = alt
            .split(".*")
            .enumerate()
            .flat_map(|(i, lit)| if i == 0 { vec![lit] } else { vec![".*", lit] })
            .filter(|p| !p.is_empty())
            .collect();
        for p in parts.iter().filter(|p| **p != ".*") {
            assert!(
                p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "regex {re:?}: only literals, `.*` and `|` are supported here"
            );
        }
        glob(&parts, name)
    })
}

/// Every PromQL expression of the shipped alerts and dashboard, with the file it is from.
fn monitoring_exprs() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let alerts = yaml_docs(&repo().join("istio/alerts.yaml"));
    for doc in &alerts {
        for group in doc["spec"]["groups"].as_sequence().into_iter().flatten() {
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                out.push(("istio/alerts.yaml", str_at(rule, &["expr"]).to_owned()));
            }
        }
    }
    fn walk(panels: &Json, out: &mut Vec<(&'static str, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(("istio/dashboard.json", expr.to_owned()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let dashboard = dashboard();
    walk(&dashboard["panels"], &mut out);
    assert!(out.len() > 10, "too few expressions found: {out:?}");
    out
}

fn dashboard() -> Json {
    let path = repo().join("istio/dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read dashboard.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `{__name__=~"..."}` regexes of an expression.
fn name_regexes(expr: &str) -> Vec<String> {
    expr.split("__name__=~\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

/// The plain `session_guard_*` metric names an expression reads (regexes and recording-rule
/// names like `namespace:session_guard_x:rate5m` left out).
fn filter_metric_names(expr: &str) -> BTreeSet<String> {
    let mut expr = expr.to_owned();
    for re in name_regexes(&expr) {
        expr = expr.replace(&re, "");
    }
    let bytes = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = expr[from..].find("session_guard_").map(|i| i + from) {
        let end = expr[i..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .map_or(expr.len(), |e| e + i);
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(end).copied();
        let word =
            |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
        if !word(before) && !word(after) {
            out.insert(expr[i..end].to_owned());
        }
        from = end;
    }
    out
}

/// Asserts that every `__name__` regex of the monitoring matches the `vm_reload_<kind>` metric
/// (the kind it names) of the plugin named `plugin`.
fn assert_vm_reload_regexes_match(plugin: &str, exported: &BTreeSet<String>, context: &str) {
    let mut checked = 0;
    for (file, expr) in monitoring_exprs() {
        for re in name_regexes(&expr) {
            let kind = ["success", "failure", "backoff"]
                .into_iter()
                .find(|k| re.ends_with(&format!("vm_reload_{k}")))
                .unwrap_or_else(|| panic!("{file}: unexpected __name__ regex {re}"));
            let name = prometheus_name(&format!("wasm.{plugin}.vm_reload_{kind}"));
            assert!(
                exported.contains(&name),
                "{context}: Envoy does not export {name}"
            );
            assert!(
                promql_regex_matches(&re, &name),
                "{file}: {re} misses {name} ({context}): the alert/panel would never see it"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} regexes checked");
}

// ---------------------------------------------------------------------------------------------
// Traffic helpers

fn cookie_name(plugin: &Yaml) -> String {
    str_at(plugin, &["spec", "pluginConfig", "cookie", "name"]).to_owned()
}

fn trusted_cluster(plugin: &Yaml) -> String {
    let list = plugin["spec"]["pluginConfig"]["signal"]["trusted_clusters"]
        .as_sequence()
        .expect("signal.trusted_clusters");
    assert_eq!(list.len(), 1, "{list:?}");
    list[0].as_str().expect("a cluster name").to_owned()
}

/// GET `path` with the mesh cookie `cookie` (if any); returns the response and what `up` got.
async fn get_via(
    envoy: &Envoy,
    up: &Upstream,
    name: &str,
    path: &str,
    cookie: Option<&str>,
) -> (Resp, Recorded) {
    let before = up.count();
    let mut req = Req::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", cookie_header(&[(name, c), ("theme", "dark")]));
    }
    let resp = send(envoy.port(), req).await;
    assert_eq!(resp.status, 200, "GET {path}: {resp:?}");
    assert_eq!(
        up.count(),
        before + 1,
        "GET {path} did not reach its upstream"
    );
    let got = up.last().expect("recorded");
    if cookie.is_some() {
        assert_eq!(
            got.header_all("cookie"),
            ["theme=dark"],
            "the mesh cookie reached an upstream"
        );
    }
    (resp, got)
}

fn session_id(got: &Recorded) -> String {
    got.header("x-session-id")
        .unwrap_or_else(|| panic!("no x-session-id forwarded: {got:?}"))
}

struct Gateway {
    envoy: Envoy,
    ecds: Ecds,
    app: Upstream,
    auth: Upstream,
    api: Upstream,
}

/// Starts the gateway: `initial` is the first ECDS resource, present before Envoy starts.
async fn start_gateway(plugin: &Yaml, names: &IstioNames, initial: &Json) -> Gateway {
    let (app, auth, api) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let mut ecds = Ecds::new(&names.resource);
    ecds.write(initial);
    let (resource, file, trusted) = (names.resource.clone(), ecds.file(), trusted_cluster(plugin));
    let mut builder = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", &app)
        .upstream("auth", &auth)
        .upstream("api", &api)
        // Only the variables the gateway patch provides.
        .env_remove("SESSION_GUARD_KEY")
        // Two workers: an update counts as applied only once both have it.
        .concurrency(2)
        .edit(move |root| ecds_bootstrap(root, &resource, &file, &trusted));
    for (name, value) in host_env(plugin) {
        builder = builder.env(&name, &value);
    }
    Gateway {
        envoy: builder.start().await,
        ecds,
        app,
        auth,
        api,
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread")]
async fn gateway_wasmplugin_over_ecds_guards_sessions_rotates_keys_and_survives_a_refused_update() {
    let plugin = wasmplugin(GATEWAY_PLUGIN);
    let pulled = build_and_pull(&plugin);
    let names = names_of(&plugin, ISTIO_MINOR);
    let cookie = cookie_name(&plugin);
    let localize =
        |p: &Yaml| istio_agent_localize(istiod_extension_config(p, &names), &pulled.module);

    // Version 1: the key ring [k1].
    let first = localize(&applied(&plugin, 1, &["k1"]));
    assert_eq!(
        first["typed_config"]["config"]["failure_policy"], "FAIL_RELOAD",
        "the shipped failStrategy"
    );
    let Gateway {
        envoy,
        mut ecds,
        app,
        auth,
        api,
    } = start_gateway(&plugin, &names, &first).await;
    let pid = envoy.pid().expect("Envoy's pid");
    let started = Instant::now();
    let uptime_at_start = uptime_s(&envoy).await;
    wait_log_count(&envoy, &configured_line(&["k1"]), 1).await;
    assert_eq!(ecds.version_text(&envoy).await, "1");

    // --- Defense 1: session IDs in URLs never reach an upstream.
    let (resp, got) = get_via(
        &envoy,
        &app,
        &cookie,
        "/shop;jsessionid=AB12?item=3&PHPSESSID=CD34&qty=1",
        None,
    )
    .await;
    assert_eq!(got.path_str(), "/shop?item=3&qty=1");

    // --- Defense 2: the mesh mints the session; its cookie is honoured.
    let a = set_cookie_value(&resp, &cookie).expect("a session minted");
    assert!(a.starts_with("v1.k1."), "signed by k1: {a}");
    let line = set_cookie(&resp, &cookie).unwrap();
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
    let (_, got) = get_via(&envoy, &app, &cookie, "/account", Some(&a)).await;
    assert_eq!(session_id(&got), sid_a, "cookie A carries its session");
    assert!(got.header("x-session-subject").is_none(), "anonymous");

    // --- Defense 3: a login answered by the auth service, trusted under its Istio cluster name
    // (`outbound|8080||auth.default.svc.cluster.local`), rotates the session.
    auth.respond_with(|req| {
        if req.path_str().starts_with("/auth/login") {
            Reply::ok()
                .header("x-session-guard", "login")
                .header("x-session-guard-subject", "alice")
        } else {
            Reply::ok()
        }
    });
    let (resp, seen) = get_via(&envoy, &auth, &cookie, "/auth/login", Some(&a)).await;
    assert_eq!(session_id(&seen), sid_a);
    let next = seen
        .header("x-session-id-next")
        .expect("the trusted auth cluster gets x-session-id-next");
    assert_ne!(next, sid_a);
    assert!(
        resp.header("x-session-guard").is_none()
            && resp.header("x-session-guard-subject").is_none(),
        "signal headers reached the client: {resp:?}"
    );
    let logged_in = set_cookie_value(&resp, &cookie).expect("a new cookie on login");
    assert_ne!(logged_in, a);
    let (_, got) = get_via(&envoy, &app, &cookie, "/account", Some(&logged_in)).await;
    assert_eq!(
        session_id(&got),
        next,
        "the new cookie carries x-session-id-next"
    );
    assert_eq!(got.header("x-session-subject").as_deref(), Some("alice"));
    let (_, got) = get_via(&envoy, &app, &cookie, "/account", Some(&a)).await;
    assert_eq!(session_id(&got), sid_a);
    assert!(
        got.header("x-session-subject").is_none(),
        "the pre-login session became authenticated: {got:?}"
    );
    envoy.wait_counter("session_guard.rotation.login", 1).await;
    // The same signal from a cluster outside trusted_clusters is ignored and counted.
    api.respond_with(|_| {
        Reply::ok()
            .header("x-session-guard", "login")
            .header("x-session-guard-subject", "mallory")
    });
    let (resp, got) = get_via(&envoy, &api, &cookie, "/api/me", Some(&a)).await;
    assert!(got.header("x-session-id-next").is_none(), "{got:?}");
    assert!(resp.header("x-session-guard").is_none(), "{resp:?}");
    assert_eq!(session_id(&got), sid_a, "no rotation");
    envoy
        .wait_counter("session_guard.signal.untrusted", 1)
        .await;
    assert_eq!(envoy.counter("session_guard.rotation.login").await, 1);

    // --- Hot key rotation, by editing the WasmPlugin only (Envoy keeps running).
    // Version 2: [k2, k1]: k2 signs, k1 still verifies.
    roll_out(
        &envoy,
        &mut ecds,
        &plugin,
        &pulled.module,
        &names,
        &["k2", "k1"],
    )
    .await;
    let (_, got) = get_via(&envoy, &app, &cookie, "/", Some(&a)).await;
    assert_eq!(session_id(&got), sid_a, "cookie A (k1) still valid");
    let (resp, got) = get_via(&envoy, &app, &cookie, "/", None).await;
    let b = set_cookie_value(&resp, &cookie).expect("a session minted");
    assert!(b.starts_with("v1.k2."), "new sessions signed by k2: {b}");
    let sid_b = session_id(&got);
    assert_eq!(
        envoy
            .counter("session_guard.session.invalid.unknown_key")
            .await,
        0
    );

    // Version 3: [k2]: cookies signed by k1 are refused, k2's still valid.
    roll_out(&envoy, &mut ecds, &plugin, &pulled.module, &names, &["k2"]).await;
    let (resp, got) = get_via(&envoy, &app, &cookie, "/", Some(&a)).await;
    envoy
        .wait_counter("session_guard.session.invalid.unknown_key", 1)
        .await;
    assert_ne!(session_id(&got), sid_a, "cookie A (k1) must be refused");
    let replaced = set_cookie_value(&resp, &cookie).expect("a new session for the refused cookie");
    assert!(replaced.starts_with("v1.k2."), "{replaced}");
    let (_, got) = get_via(&envoy, &app, &cookie, "/", Some(&b)).await;
    assert_eq!(session_id(&got), sid_b, "cookie B (k2) still valid");

    // --- A refused update: a pluginConfig whose first key is too short.
    let refused = localize(&with_short_key(&plugin, ecds.version + 1));
    let fail_line = "session_guard: invalid configuration: keys[0].secret";
    let fails_before = log_count(&envoy, fail_line);
    assert_eq!(ecds.push(&envoy, &refused).await, Outcome::Refused);
    wait_log_count(&envoy, fail_line, fails_before + 1).await;
    assert!(
        !envoy.log().contains(SHORT_KEY) && !envoy.log().contains("sixteen-byte-key"),
        "the log shows the refused secret"
    );
    assert_eq!(
        ecds.version_text(&envoy).await,
        "3",
        "Envoy reports the last accepted version"
    );
    // ... but its config dump already shows the refused resource (Envoy records what it received
    // before building it): `istioctl proxy-config ecds` is no proof of what runs.
    assert_eq!(ecds.dumped_version(&envoy).await, ecds.version.to_string());
    // Traffic keeps the previous configuration ([k2]): guarded, not failing, not unprotected.
    let (_, got) = get_via(&envoy, &app, &cookie, "/?jsessionid=x", Some(&b)).await;
    assert_eq!(got.path_str(), "/");
    assert_eq!(session_id(&got), sid_b);
    let (resp, _) = get_via(&envoy, &app, &cookie, "/", None).await;
    assert!(set_cookie_value(&resp, &cookie)
        .unwrap()
        .starts_with("v1.k2."));

    // The same WasmPlugin again (a re-push: new resourceVersion, which istio-agent strips, so
    // the same typed_config). Envoy 1.40 compares it with the last resource it *received* (the
    // refused one), skips it as unchanged and ACKs it: the refusal is reported only once, and
    // `version_text` (like the config dump) then names a configuration that never ran. What
    // matters holds: the previous configuration keeps serving. (If a later Envoy refuses it
    // again instead, fine: update istio/RUNBOOK.md#config-refused and this expectation.)
    let again = localize(&with_short_key(&plugin, ecds.version + 1));
    assert_eq!(again["typed_config"], refused["typed_config"]);
    assert_eq!(ecds.push(&envoy, &again).await, Outcome::Unchanged);
    assert_eq!(ecds.version_text(&envoy).await, ecds.version.to_string());
    let (_, got) = get_via(&envoy, &app, &cookie, "/", Some(&b)).await;
    assert_eq!(session_id(&got), sid_b);
    let (resp, _) = get_via(&envoy, &app, &cookie, "/", None).await;
    assert!(set_cookie_value(&resp, &cookie)
        .unwrap()
        .starts_with("v1.k2."));

    // The fix is applied, still without a restart.
    roll_out(
        &envoy,
        &mut ecds,
        &plugin,
        &pulled.module,
        &names,
        &["k2", "k1"],
    )
    .await;
    let (_, got) = get_via(&envoy, &app, &cookie, "/", Some(&b)).await;
    assert_eq!(session_id(&got), sid_b);
    let (_, got) = get_via(&envoy, &app, &cookie, "/", Some(&a)).await;
    assert_eq!(session_id(&got), sid_a, "k1 verifies again");

    // --- One Envoy process throughout.
    assert_eq!(envoy.pid(), Some(pid), "Envoy was restarted");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "Envoy (pid {pid}) is gone"
    );
    let elapsed = started.elapsed().as_secs_f64();
    let uptime = uptime_s(&envoy).await;
    assert!(
        uptime + 2.0 >= uptime_at_start + elapsed.floor(),
        "uptime {uptime}s after {elapsed}s, started at {uptime_at_start}s: Envoy restarted"
    );

    // --- The monitoring reads what this Envoy exports under Istio's naming.
    let prom = envoy.prometheus().await;
    let exported: BTreeSet<String> = prom
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    assert_vm_reload_regexes_match(
        &names.plugin,
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
        .starts_with("v1.k2."));
    session_id(&got);
    assert!(envoy
        .prometheus()
        .await
        .contains("session_guard_session_minted"));
}

/// The conversion itself, on the shipped gateway WasmPlugin and on variants of it.
#[test]
fn wasmplugin_converts_to_the_ecds_resource_istiod_and_istio_agent_produce() {
    let plugin = wasmplugin(GATEWAY_PLUGIN);
    let names = names_of(&plugin, ISTIO_MINOR);
    assert_eq!(
        names.resource,
        "extensions.istio.io/trafficextension/istio-system.session-guard~istio-translated-wasmplugin"
    );
    assert_eq!(
        istiod_names("istio-system", "session-guard", 29).resource,
        "extensions.istio.io/wasmplugin/istio-system.session-guard"
    );
    let ec = istiod_extension_config(&applied(&plugin, 7, &["k2", "k1"]), &names);
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
        str_at(&plugin, &["spec", "url"])
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
        value.starts_with(r#"{"cookie":{"idle_timeout_s":1800,"max_age_s":43200,"name":"__Host-session","same_site":"Lax"},"keys":[{"id":"k2","#),
        "compact, keys sorted, integral numbers: {value}"
    );
    assert_eq!(
        serde_json::from_str::<Json>(value).unwrap(),
        to_json(&plugin["spec"]["pluginConfig"])
    );

    // istio-agent: local code, ISTIO_META_* gone, HOST keys kept.
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

    // Variants: INLINE env, the other fail strategies, no strategy at all.
    let mut p = plugin.clone();
    p["spec"]["vmConfig"]["env"] = to_yaml(&json!([
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": "INLINE", "value": "2"},
        {"name": "C", "valueFrom": "HOST"},
    ]));
    p["spec"]["failStrategy"] = Yaml::from("FAIL_OPEN");
    let ec = istiod_extension_config(&p, &names);
    let config = &ec["typed_config"]["config"];
    assert_eq!(config["failure_policy"], "FAIL_OPEN");
    let local = istio_agent_localize(ec.clone(), Path::new("/m.wasm"));
    assert_eq!(
        local["typed_config"]["config"]["vm_config"]["environment_variables"],
        json!({"host_env_keys": ["C"], "key_values": {"A": "1", "B": "2"}})
    );
    p["spec"]["failStrategy"] = Yaml::from("FAIL_CLOSE");
    assert_eq!(
        istiod_extension_config(&p, &names)["typed_config"]["config"]["failure_policy"],
        "FAIL_CLOSED"
    );
    p["spec"].as_mapping_mut().unwrap().remove("failStrategy");
    p["spec"]["vmConfig"]["env"] = to_yaml(&json!([]));
    let ec = istiod_extension_config(&p, &names);
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
    let dir = repo().join("istio");
    let mut docs: BTreeMap<String, Vec<Yaml>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("read istio/") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
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
        ("wasmplugin-gateway.yaml", "WasmPlugin"),
        ("wasmplugin-sidecar.yaml", "WasmPlugin"),
        ("secret.yaml", "Secret"),
        ("alerts.yaml", "PrometheusRule"),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} missing: {kinds:?}");
    }
    let panels = dashboard()["panels"].as_array().map_or(0, Vec::len);
    assert!(panels > 0, "dashboard.json has no panels");

    // WasmPlugins: every secret_env is a HOST variable; fail closed; AUTHN; same config shape.
    let secret = &docs["secret.yaml"][0];
    let secret_keys: BTreeSet<&str> = secret["stringData"]
        .as_mapping()
        .expect("secret stringData")
        .keys()
        .filter_map(Yaml::as_str)
        .collect();
    let shape = |cfg: &Yaml| -> BTreeMap<String, BTreeSet<String>> {
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
    };
    let mut shapes = Vec::new();
    for (file, patch) in [
        (GATEWAY_PLUGIN, "gateway-patch.yaml"),
        (SIDECAR_PLUGIN, "sidecar-patch.yaml"),
    ] {
        let p = wasmplugin(file);
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
        shapes.push(shape(&spec["pluginConfig"]));
    }
    assert_eq!(
        shapes[0], shapes[1],
        "the WasmPlugins' pluginConfig shapes differ"
    );

    // Monitoring: the VM-reload regexes match the plugin's metric under every Istio naming, for
    // both WasmPlugins.
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
