//! Every shipped Kubernetes manifest against the published CRD schemas it is meant for
//! (vendored in tests/fixtures/crds/, README.md there names source, version and license), the
//! way the API server checks a `kubectl apply` (tests/openapi/: structural schema, strict
//! fields, the CEL rules they meet). And the checks can fail: wrong manifests are refused.
// Test code throughout (always true under `cargo test`).
#![cfg(test)]

mod openapi;

use std::collections::BTreeMap;
use std::path::Path;

use openapi::Crd;
use serde::Deserialize;
use serde_json::{json, Value as Json};

/// The directories users apply from (each file on its own), every YAML document in them.
const APPLIED_DIRS: [&str; 2] = ["istio", "envoy-gateway"];

/// Which vendored schemas accept each kind: every schema listed must accept the document.
fn schemas_for(kind: &str) -> Vec<(&'static str, &'static str)> {
    match kind {
        "WasmPlugin" => vec![
            ("istio-1.27.9", "wasmplugin.v1alpha1.json"),
            ("istio-1.30.3", "wasmplugin.v1alpha1.json"),
        ],
        "TrafficExtension" => vec![("istio-1.30.3", "trafficextension.v1alpha1.json")],
        "Telemetry" => vec![
            ("istio-1.27.9", "telemetry.v1.json"),
            ("istio-1.30.3", "telemetry.v1.json"),
        ],
        "EnvoyExtensionPolicy" => {
            vec![("envoy-gateway-1.9.0", "envoyextensionpolicy.v1alpha1.json")]
        }
        "EnvoyProxy" => vec![("envoy-gateway-1.9.0", "envoyproxy.v1alpha1.json")],
        "HTTPRoute" => vec![("gateway-api-1.6.1", "httproute.v1.json")],
        "PrometheusRule" => vec![("prometheus-operator-0.82.2", "prometheusrule.v1.json")],
        _ => vec![],
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every document of every YAML file directly in `dir`, as JSON, by file name.
fn documents(dir: &str) -> BTreeMap<String, Vec<Json>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Json> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde_yaml::Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .map(|v| serde_json::to_value(v).unwrap())
            .collect();
        let name = path.strip_prefix(repo()).unwrap().display().to_string();
        out.insert(name, docs);
    }
    out
}

/// Errors of `doc` against the schema in `dir`/`file`; a CEL rule it cannot evaluate fails,
/// except in Gateway API's HTTPRoute (an example route, not the product: its dozens of path
/// and reference rules are left to the API server, and counted here).
fn errors(dir: &str, file: &str, doc: &Json) -> Vec<String> {
    let crd = Crd::load(dir, file);
    let report = crd.validate(doc);
    if dir.starts_with("gateway-api-") {
        println!(
            "{dir}/{file}: {} CEL rules not evaluated",
            report.cel_skipped.len()
        );
    } else {
        assert!(
            report.cel_skipped.is_empty(),
            "{dir}/{file}: CEL rules not evaluated: {:?}",
            report.cel_skipped
        );
    }
    report.errors
}

/// A core kind (Secret, ConfigMap): the fields `kubectl apply` would refuse
/// (only string values under `data`/`stringData`; a known top level).
fn core_errors(doc: &Json) -> Vec<String> {
    let mut errs = Vec::new();
    let known: &[&str] = match doc["kind"].as_str() {
        Some("Secret") => &[
            "apiVersion",
            "kind",
            "metadata",
            "type",
            "data",
            "stringData",
        ],
        Some("ConfigMap") => &["apiVersion", "kind", "metadata", "data", "binaryData"],
        other => return vec![format!("no schema for kind {other:?}")],
    };
    for key in doc.as_object().unwrap().keys() {
        if !known.contains(&key.as_str()) {
            errs.push(format!(".{key}: unknown field"));
        }
    }
    for field in ["data", "stringData"] {
        if let Some(m) = doc[field].as_object() {
            errs.extend(
                m.iter()
                    .filter(|(_, v)| !v.is_string())
                    .map(|(k, _)| format!(".{field}.{k}: not a string")),
            );
        }
    }
    if doc["apiVersion"] != "v1" {
        errs.push("apiVersion is not v1".into());
    }
    errs
}

/// Every document in the applied directories has apiVersion, kind and a name, and the schemas
/// of its kind accept it; prints each manifest with the schema versions it was checked against.
#[test]
fn every_applied_manifest_is_accepted_by_its_published_schema() {
    let mut checked = 0;
    for dir in APPLIED_DIRS {
        for (file, docs) in documents(dir) {
            assert!(!docs.is_empty(), "{file}: no document");
            for doc in &docs {
                let kind = doc["kind"].as_str().unwrap_or_else(|| {
                    panic!("{file}: a document without kind (not applicable as-is)")
                });
                assert!(doc["metadata"]["name"].is_string(), "{file}: no name");
                let schemas = schemas_for(kind);
                let errs: Vec<String> = if schemas.is_empty() {
                    core_errors(doc)
                } else {
                    schemas
                        .iter()
                        .flat_map(|(d, f)| {
                            errors(d, f, doc)
                                .into_iter()
                                .map(move |e| format!("{d}: {e}"))
                        })
                        .collect()
                };
                assert!(errs.is_empty(), "{file} ({kind}) refused: {errs:#?}");
                let against: Vec<String> = schemas.iter().map(|(d, _)| d.to_string()).collect();
                println!("{file}: {kind} accepted by {against:?}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 14, "only {checked} documents found");
}

fn load(file: &str) -> Json {
    let docs = documents(Path::new(file).parent().unwrap().to_str().unwrap());
    docs[file][0].clone()
}

/// FAIL_RELOAD is in the WasmPlugin enum from Istio 1.27: Istio 1.26's CRD refuses the shipped
/// WasmPlugins, and accepts the documented FAIL_CLOSE variant (docs/deploy-istio.md).
#[test]
fn istio_1_26_refuses_fail_reload_and_accepts_the_fail_close_variant() {
    for file in [
        "istio/wasmplugin-gateway.yaml",
        "istio/wasmplugin-sidecar.yaml",
        "istio/wasmplugin-gateway-api.yaml",
        "istio/wasmplugin-waypoint.yaml",
    ] {
        let shipped = load(file);
        let errs = errors("istio-1.26.8", "wasmplugin.v1alpha1.json", &shipped);
        assert_eq!(errs.len(), 1, "{file}: {errs:?}");
        assert!(
            errs[0].starts_with(".spec.failStrategy: \"FAIL_RELOAD\" is not one of"),
            "{errs:?}"
        );
        // The documented variant: sed 's/failStrategy: FAIL_RELOAD/failStrategy: FAIL_CLOSE/'
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let variant = text.replace("failStrategy: FAIL_RELOAD", "failStrategy: FAIL_CLOSE");
        let variant: Json =
            serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(&variant).unwrap())
                .unwrap();
        assert_eq!(variant["spec"]["failStrategy"], "FAIL_CLOSE");
        let errs = errors("istio-1.26.8", "wasmplugin.v1alpha1.json", &variant);
        assert!(errs.is_empty(), "{file} FAIL_CLOSE variant: {errs:?}");
    }
}

/// Mistakes a user could make are refused, each with the field named.
#[test]
fn wrong_manifests_are_refused() {
    let te = load("istio/trafficextension-gateway.yaml");
    let te_schema = ("istio-1.30.3", "trafficextension.v1alpha1.json");
    let refused = |(d, f): (&str, &str), doc: &Json, field: &str| {
        let errs = errors(d, f, doc);
        assert!(
            errs.iter().any(|e| e.contains(field)),
            "{field}: expected refused, got {errs:?}"
        );
    };
    // The WasmPlugin layout in a TrafficExtension: pluginConfig outside spec.wasm.
    let mut doc = te.clone();
    doc["spec"]["pluginConfig"] = doc["spec"]["wasm"]["pluginConfig"].clone();
    refused(te_schema, &doc, ".spec.pluginConfig: unknown field");
    // A misspelt field, an unknown enum value, a bad port.
    let mut doc = te.clone();
    doc["spec"]["wasm"]["failStratgy"] = json!("FAIL_CLOSE");
    refused(te_schema, &doc, ".spec.wasm.failStratgy: unknown field");
    let mut doc = te.clone();
    doc["spec"]["phase"] = json!("AUTHENTICATION");
    refused(te_schema, &doc, ".spec.phase");
    let mut doc = load("istio/trafficextension-sidecar.yaml");
    doc["spec"]["match"][0]["ports"][0]["number"] = json!(70000);
    refused(te_schema, &doc, ".spec.match[0].ports[0].number");
    // selector and targetRefs together; no wasm; HOST with a value; no url.
    let mut doc = te.clone();
    doc["spec"]["targetRefs"] =
        json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]);
    refused(te_schema, &doc, "only one of targetRefs or selector");
    let mut doc = te.clone();
    doc["spec"].as_object_mut().unwrap().remove("wasm");
    refused(te_schema, &doc, "exactly one of wasm or lua");
    let mut doc = te.clone();
    doc["spec"]["wasm"]["vmConfig"]["env"][0]["value"] = json!("inline-secret");
    refused(
        te_schema,
        &doc,
        "value may only be set when valueFrom is INLINE",
    );
    let mut doc = te.clone();
    doc["spec"]["wasm"].as_object_mut().unwrap().remove("url");
    refused(te_schema, &doc, ".spec.wasm.url: required");
    // Envoy Gateway: code type Image without image; failOpen as a string.
    let eep = ("envoy-gateway-1.9.0", "envoyextensionpolicy.v1alpha1.json");
    let mut doc = load("envoy-gateway/extension-policy.yaml");
    doc["spec"]["wasm"][0]["code"]["type"] = json!("HTTP");
    refused(eep, &doc, "If type is HTTP, http field needs to be set");
    let mut doc = load("envoy-gateway/extension-policy.yaml");
    doc["spec"]["wasm"][0]["failOpen"] = json!("false");
    refused(eep, &doc, ".spec.wasm[0].failOpen");
}
