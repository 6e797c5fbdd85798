//! The gateway's xDS side: the bootstrap istiod gives it (an ECDS `config_discovery` filter)
//! and the ECDS "server", a `DiscoveryResponse` file in a directory Envoy watches. Updates are
//! atomic renames, each followed by polling Envoy's ECDS counters, never by sleeping.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;

use super::super::{seq_mut, tail, Envoy, POLL};
use super::{
    applied, istio_agent_localize, istiod_extension_config, str_at, to_yaml, IstioNames, TempDir,
    RBAC_FILTER, TYPED_EXTENSION_CONFIG, WASM_FILTER,
};

/// How long an ECDS update may take to be applied (or refused) by Envoy.
pub const ECDS_TIMEOUT: Duration = Duration::from_secs(20);

/// Turns the rendered `envoy/ingress.yaml` into what istiod gives a gateway: the wasm filter
/// (in place, so in the AUTHN position: first) becomes an ECDS `config_discovery` filter named
/// `resource`, reading `ecds_file` instead of ADS; the cluster the shipped filter trusts
/// (`auth`) is renamed to `trusted`, the Istio name the WasmPlugin trusts, in the cluster list
/// and the routes. Also a node id and cluster, which xDS subscriptions require.
pub fn ecds_bootstrap(root: &mut Yaml, resource: &str, ecds_file: &Path, trusted: &str) {
    root["node"] = to_yaml(&json!({
        "id": "router~127.0.0.1~istio-ingressgateway-test.istio-system~istio-system.svc.cluster.local",
        "cluster": "istio-ingressgateway.istio-system",
    }));
    let discovery = discovery_filter(resource, ecds_file);
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

/// The HTTP filter istiod puts in the plugin's place: an ECDS `config_discovery` named
/// `resource`, here reading `ecds_file` (and watching its directory) instead of ADS.
fn discovery_filter(resource: &str, ecds_file: &Path) -> Yaml {
    to_yaml(&json!({
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
    }))
}

/// ECDS counters of one resource (`extension_config_discovery.http_filter.<name>.*`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EcdsStats {
    pub update_attempt: u64,
    pub update_success: u64,
    pub update_rejected: u64,
    pub config_reload: u64,
    pub config_fail: u64,
}

#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Accepted, and every worker runs it (`config_reload` counts only once all have it).
    Applied,
    /// Refused (`config_fail`): Envoy keeps serving the previous configuration.
    Refused,
    /// Accepted without effect: the same `typed_config` as the previous push.
    Unchanged,
}

/// The ECDS "server": a `DiscoveryResponse` file in a directory Envoy watches.
pub struct Ecds {
    dir: TempDir,
    resource: String,
    /// The version of the last push (`version_info`, counted from 1).
    pub version: u64,
    last: Option<Json>,
}

impl Ecds {
    pub fn new(resource: &str) -> Ecds {
        Ecds {
            dir: TempDir::new("ecds"),
            resource: resource.to_owned(),
            version: 0,
            last: None,
        }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("ecds.json")
    }

    /// Writes the next version: into a temp file, then renamed over the watched one (Envoy
    /// reloads on a move into `watched_directory`, and never sees a half-written file).
    pub fn write(&mut self, ec: &Json) {
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

    pub async fn stats(&self, envoy: &Envoy) -> EcdsStats {
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
    pub async fn version_text(&self, envoy: &Envoy) -> String {
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
    pub async fn dumped_version(&self, envoy: &Envoy) -> String {
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
    pub async fn push(&mut self, envoy: &Envoy, ec: &Json) -> Outcome {
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
pub fn log_count(envoy: &Envoy, needle: &str) -> usize {
    envoy.log().lines().filter(|l| l.contains(needle)).count()
}

pub async fn wait_log_count(envoy: &Envoy, needle: &str, at_least: usize) {
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
pub fn configured_line(key_ids: &[&str]) -> String {
    format!("configured mode=enforce keys=[{}] ", key_ids.join(","))
}

/// Pushes the WasmPlugin with `key_ids` and asserts that Envoy applied it and the filter
/// configured itself with that ring.
pub async fn roll_out(
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
