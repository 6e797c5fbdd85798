//! Envoy Gateway's delivery, in a real Envoy: the shipped `envoy-gateway/extension-policy.yaml`
//! becomes the xDS that Envoy Gateway 1.9 produces for an EnvoyExtensionPolicy with `wasm`
//! (its `internal/xds/translator/wasm.go`, read from the v1.9.0 source; docs/deploy-envoy-gateway.md):
//! - one HTTP filter per policy Wasm entry on the listener, named
//!   `envoy.filters.http.wasm/envoyextensionpolicy/<ns>/<policy>/wasm/<index>`, with
//!   `disabled: true`: a filter enabled nowhere runs nowhere;
//! - on every route of the targeted HTTPRoute, `typed_per_filter_config[<that name>]` an
//!   `envoy.config.route.v3.FilterConfig` with an empty `config`, which enables it there;
//! - the Wasm config: `name` (the entry's name), `root_id` (`rootID`), `vm_config` (`vm_id` the
//!   filter's IR name, V8, `environment_variables.host_env_keys` from `env.hostKeys`), the
//!   `config` as a `StringValue` of its JSON, `fail_open` from `failOpen`;
//! - clusters named `httproute/<ns>/<route>/rule/<index>`.
//!
//! The module's code comes from a local file instead of EG's built-in Wasm HTTP server (EG pulls
//! the image and serves the module to its proxies through its `wasm_cluster`); nothing else in
//! the filter's config is substituted. Two routes: the targeted HTTPRoute `app` (rules `/`
//! and `/auth/`), and another HTTPRoute `other` (`/api/`) that no policy targets.
#![cfg(test)]

mod common;

use common::istio::{secret_for, str_at, to_json, yaml_docs, GATEWAY_PLUGIN};
use common::*;
use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;

const WASM_FILTER: &str = "envoy.filters.http.wasm";
const APP: &str = "httproute/default/app/rule/0";
const AUTH: &str = "httproute/default/app/rule/1";
const OTHER: &str = "httproute/default/other/rule/0";

fn policy() -> Yaml {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    yaml_docs(&root.join("envoy-gateway/extension-policy.yaml")).remove(0)
}

/// EG's IR name of the policy's first Wasm entry, and the HTTP filter's name built from it.
fn names(policy: &Yaml) -> (String, String) {
    let ir = format!(
        "envoyextensionpolicy/{}/{}/wasm/0",
        str_at(policy, &["metadata", "namespace"]),
        str_at(policy, &["metadata", "name"])
    );
    (ir.clone(), format!("{WASM_FILTER}/{ir}"))
}

/// The HTTP filter EG puts on the listener for the policy's first Wasm entry.
fn eg_http_filter(policy: &Yaml) -> Json {
    let wasm = to_json(&policy["spec"]["wasm"][0]);
    let (ir, filter_name) = names(policy);
    let mut config = json!({
        "name": wasm["name"].as_str().unwrap_or(&ir),
        "vm_config": {
            "vm_id": ir,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": wasm_path().display().to_string()}},
            "environment_variables": {"host_env_keys": wasm["env"]["hostKeys"]},
        },
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": serde_json::to_string(&wasm["config"]).unwrap(),
        },
        "fail_open": wasm["failOpen"].as_bool().unwrap_or(false),
    });
    if let Some(root_id) = wasm["rootID"].as_str() {
        config["root_id"] = json!(root_id);
    }
    json!({
        "name": filter_name,
        "disabled": true,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    })
}

/// `envoy/ingress.yaml` with EG's shape: its wasm filter replaced by EG's (disabled), its
/// routes renamed to EG's clusters, the filter enabled on the targeted HTTPRoute's routes only.
fn eg_shape(root: &mut Yaml, policy: &Yaml) {
    let filter = common::istio::to_yaml(&eg_http_filter(policy));
    let (_, filter_name) = names(policy);
    let enable = common::istio::to_yaml(&json!({
        filter_name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}
    }));
    let rename = |c: &str| match c {
        "app" => APP,
        "auth" => AUTH,
        "api" => OTHER,
        other => panic!("unexpected cluster {other}"),
    };
    let sr = &mut root["static_resources"];
    let hcm = &mut sr["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"].as_sequence_mut().unwrap();
    let at = filters
        .iter()
        .position(|f| f["name"].as_str() == Some(WASM_FILTER))
        .expect("the shipped wasm filter");
    filters[at] = filter;
    for route in hcm["route_config"]["virtual_hosts"][0]["routes"]
        .as_sequence_mut()
        .unwrap()
    {
        let cluster = rename(route["route"]["cluster"].as_str().unwrap());
        route["route"]["cluster"] = Yaml::from(cluster);
        if cluster != OTHER {
            route["typed_per_filter_config"] = enable.clone();
        }
    }
    for cluster in sr["clusters"].as_sequence_mut().unwrap() {
        let name = rename(cluster["name"].as_str().unwrap());
        cluster["name"] = Yaml::from(name);
        cluster["load_assignment"]["cluster_name"] = Yaml::from(name);
    }
}

struct Eg {
    envoy: Envoy,
    app: Upstream,
    auth: Upstream,
    other: Upstream,
    cookie: String,
}

async fn start() -> Eg {
    let policy = policy();
    let (app, auth, other) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let config = &policy["spec"]["wasm"][0]["config"];
    let mut builder = EnvoyBuilder::shipped("envoy/ingress.yaml")
        .upstream("app", &app)
        .upstream("auth", &auth)
        .upstream("api", &other)
        .env_remove("SESSION_GUARD_KEY");
    // The proxy's environment as envoy-gateway/envoyproxy.yaml gives it.
    for key in config["keys"].as_sequence().unwrap() {
        let var = str_at(key, &["secret_env"]);
        builder = builder.env(var, &secret_for(str_at(key, &["id"])));
    }
    let p = policy.clone();
    let envoy = builder.edit(move |root| eg_shape(root, &p)).start().await;
    let cookie = str_at(config, &["cookie", "name"]).to_owned();
    Eg {
        envoy,
        app,
        auth,
        other,
        cookie,
    }
}

/// The attack, where no policy applies: session IDs in the URL and a client-chosen
/// `x-session-id` reach the upstream of the other HTTPRoute, and nothing is minted.
async fn the_other_route_is_unguarded(eg: &Eg) {
    let req = Req::get("/api/me;jsessionid=AB12?PHPSESSID=CD34").header("x-session-id", "attacker");
    let resp = send(eg.envoy.port(), req).await;
    assert_eq!(resp.status, 200);
    let got = eg.other.last().expect("the other route's upstream");
    assert_eq!(got.path_str(), "/api/me;jsessionid=AB12?PHPSESSID=CD34");
    assert_eq!(got.header("x-session-id").as_deref(), Some("attacker"));
    assert!(set_cookie_value(&resp, &eg.cookie).is_none(), "{resp:?}");
}

/// The same attack on the targeted HTTPRoute: cleaned, a mesh session minted instead.
async fn the_targeted_route_is_guarded(eg: &Eg) -> String {
    let req = Req::get("/shop;jsessionid=AB12?item=3&PHPSESSID=CD34&qty=1")
        .header("x-session-id", "attacker");
    let resp = send(eg.envoy.port(), req).await;
    assert_eq!(resp.status, 200);
    let got = eg.app.last().expect("the app");
    assert_eq!(got.path_str(), "/shop?item=3&qty=1");
    let sid = got.header("x-session-id").expect("a mesh session");
    assert_ne!(sid, "attacker");
    let cookie = set_cookie_value(&resp, &eg.cookie).expect("a session cookie");
    assert!(
        cookie.starts_with("v2.k2."),
        "signed by the first key: {cookie}"
    );
    cookie
}

/// A login answered on the auth rule (`httproute/default/app/rule/1`, trusted) rotates.
async fn a_login_on_the_trusted_rule_rotates(eg: &Eg, anon: &str) {
    eg.auth.respond_with(|_| {
        Reply::ok()
            .header("x-session-guard", "login")
            .header("x-session-guard-subject", "alice")
    });
    let req = Req::get("/auth/login").header("cookie", cookie_header(&[(&eg.cookie, anon)]));
    let resp = send(eg.envoy.port(), req).await;
    let next = eg.auth.last().unwrap().header("x-session-id-next");
    let next = next.expect("the trusted cluster gets x-session-id-next");
    let logged_in = set_cookie_value(&resp, &eg.cookie).expect("rotated");
    assert!(resp.header("x-session-guard").is_none());
    let req = Req::get("/account").header("cookie", cookie_header(&[(&eg.cookie, &logged_in)]));
    send(eg.envoy.port(), req).await;
    let got = eg.app.last().unwrap();
    assert_eq!(got.header("x-session-id"), Some(next));
    assert_eq!(got.header("x-session-subject").as_deref(), Some("alice"));
    eg.envoy
        .wait_counter("session_guard.rotation.login", 1)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_gateway_shape_runs_the_filter_on_the_targeted_route_only() {
    let eg = start().await;
    the_other_route_is_unguarded(&eg).await;
    let anon = the_targeted_route_is_guarded(&eg).await;
    a_login_on_the_trusted_rule_rotates(&eg, &anon).await;
    // The other route again: still untouched, and its requests were never counted.
    the_other_route_is_unguarded(&eg).await;
    assert_eq!(eg.envoy.counter("session_guard.session.minted").await, 1);
    the_module_reports_its_version(&eg).await;
}

/// Which build a proxy runs: the log line at VM start and `session_guard.build.<version>`
/// (the Cargo.toml version, which `make release` and the image tag read too).
async fn the_module_reports_its_version(eg: &Eg) {
    let version = env!("CARGO_PKG_VERSION");
    eg.envoy
        .wait_log(&format!("session-guard {version} VM started"))
        .await;
    let started = eg
        .envoy
        .counter(&format!("session_guard.build.{version}"))
        .await;
    assert!(started >= 1, "session_guard.build.{version} = {started}");
    let prom = eg.envoy.prometheus().await;
    let name = format!("session_guard_build_{}", version.replace(['.', '-'], "_"));
    assert!(prom.contains(&name), "{name} not exported");
}

/// The policy carries the gateway WasmPlugin's configuration (only the trusted cluster is EG's),
/// its hostKeys are the keys' variables, and it fails closed.
#[test]
fn the_policy_is_the_gateway_configuration_for_envoy_gateway() {
    let policy = policy();
    let wasm = &policy["spec"]["wasm"][0];
    assert_eq!(wasm["failOpen"].as_bool(), Some(false));
    assert_eq!(wasm["rootID"].as_str(), Some("session_guard"));
    let code = &wasm["code"];
    let source = &code[str_at(code, &["type"]).to_lowercase().as_str()];
    assert!(
        source["sha256"].as_str().is_some_and(|s| s.len() == 64),
        "{code:?}"
    );
    let mut config = to_json(&wasm["config"]);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let gateway = yaml_docs(&root.join(GATEWAY_PLUGIN)).remove(0);
    let mut istio = to_json(&gateway["spec"]["pluginConfig"]);
    assert_eq!(config["signal"]["trusted_clusters"], json!([AUTH]));
    for c in [&mut config, &mut istio] {
        c["signal"]["trusted_clusters"] = Json::Null;
    }
    assert_eq!(config, istio);
    let vars: Vec<&str> = wasm["env"]["hostKeys"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let wanted: Vec<&str> = wasm["config"]["keys"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| str_at(k, &["secret_env"]))
        .collect();
    assert_eq!(vars, wanted);
    // The route the policy targets is the example HTTPRoute, whose rule 1 is /auth.
    let route = yaml_docs(&root.join("envoy-gateway/httproute.yaml")).remove(0);
    assert_eq!(
        policy["spec"]["targetRefs"][0]["name"],
        route["metadata"]["name"]
    );
    assert_eq!(
        route["spec"]["rules"][1]["backendRefs"][0]["name"].as_str(),
        Some("auth")
    );
}
