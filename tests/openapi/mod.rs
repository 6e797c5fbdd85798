//! A structural validator for the OpenAPI v3 subset Kubernetes CRDs use (`openAPIV3Schema`), so
//! the shipped manifests are checked against the published CRDs vendored in
//! tests/fixtures/crds/ without a cluster. What the API server does on `kubectl apply` (field
//! validation `Strict`, kubectl's default): types, `nullable`, `properties` (an unknown field is
//! an error unless `x-kubernetes-preserve-unknown-fields`), `additionalProperties`, `required`,
//! `enum`, `pattern`, string lengths, numeric bounds, item and property counts, `oneOf` /
//! `anyOf` / `allOf` / `not`, `x-kubernetes-int-or-string`.
//!
//! CEL rules (`x-kubernetes-validations`) are not a language this can run. The rules the
//! shipped manifests meet are evaluated by [`cel`], keyed by their exact text; any other rule
//! met is recorded in [`Report::cel_skipped`], which the tests require to be empty, so a new
//! rule in a newer CRD is noticed rather than passed silently.

use serde_json::Value as Json;

/// The errors and the CEL rules met that could not be evaluated.
#[derive(Default, Debug)]
pub struct Report {
    pub errors: Vec<String>,
    pub cel_skipped: Vec<String>,
}

/// A vendored CRD version: `tests/fixtures/crds/<dir>/<kind>.<version>.json`.
pub struct Crd {
    pub group: String,
    pub kind: String,
    pub version: String,
    pub schema: Json,
}

impl Crd {
    pub fn load(dir: &str, file: &str) -> Crd {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/crds")
            .join(dir)
            .join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut v: Json = serde_json::from_str(&text).expect("CRD schema JSON");
        Crd {
            group: v["group"].as_str().unwrap().to_owned(),
            kind: v["kind"].as_str().unwrap().to_owned(),
            version: v["version"].as_str().unwrap().to_owned(),
            schema: v["openAPIV3Schema"].take(),
        }
    }

    /// `apiVersion` as a manifest writes it.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// Validates one document (apiVersion and kind must be this CRD's).
    pub fn validate(&self, doc: &Json) -> Report {
        let mut r = Report::default();
        if doc["apiVersion"].as_str() != Some(self.api_version().as_str())
            || doc["kind"].as_str() != Some(self.kind.as_str())
        {
            r.errors.push(format!(
                "apiVersion/kind {}/{} is not {} {}",
                doc["apiVersion"],
                doc["kind"],
                self.api_version(),
                self.kind
            ));
        }
        check(&self.schema, doc, "", &mut r);
        r
    }
}

fn type_ok(ty: &str, v: &Json) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "number" => v.is_number(),
        _ => false,
    }
}

/// `value` at `path` against `schema`, errors into `r`.
pub fn check(schema: &Json, value: &Json, path: &str, r: &mut Report) {
    if value.is_null() && schema["nullable"] == Json::Bool(true) {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == Json::Bool(true) {
        if !(type_ok("integer", value) || value.is_string()) {
            r.errors.push(format!("{path}: not an integer or a string"));
        }
    } else if let Some(ty) = schema["type"].as_str() {
        if !type_ok(ty, value) {
            r.errors
                .push(format!("{path}: {value} is not of type {ty}"));
            return;
        }
    }
    scalar_checks(schema, value, path, r);
    combinators(schema, value, path, r);
    match value {
        Json::Object(map) => object_checks(schema, map, path, r),
        Json::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64() {
                if items.len() as u64 > max {
                    r.errors.push(format!("{path}: more than {max} items"));
                }
            }
            if let Some(min) = schema["minItems"].as_u64() {
                if (items.len() as u64) < min {
                    r.errors.push(format!("{path}: fewer than {min} items"));
                }
            }
            if schema["items"].is_object() {
                for (i, item) in items.iter().enumerate() {
                    check(&schema["items"], item, &format!("{path}[{i}]"), r);
                }
            }
        }
        _ => {}
    }
    if let Some(rules) = schema["x-kubernetes-validations"].as_array() {
        for rule in rules {
            let text = rule["rule"].as_str().unwrap_or_default();
            match cel(text, value) {
                Some(true) => {}
                Some(false) => r.errors.push(format!(
                    "{path}: {}",
                    rule["message"].as_str().unwrap_or(text)
                )),
                None => r.cel_skipped.push(format!("{path}: {text}")),
            }
        }
    }
}

fn scalar_checks(schema: &Json, value: &Json, path: &str, r: &mut Report) {
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            r.errors
                .push(format!("{path}: {value} is not one of {options:?}"));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if schema["maxLength"].as_u64().is_some_and(|m| len > m) {
            r.errors.push(format!("{path}: longer than maxLength"));
        }
        if schema["minLength"].as_u64().is_some_and(|m| len < m) {
            r.errors.push(format!("{path}: shorter than minLength"));
        }
        if let Some(p) = schema["pattern"].as_str() {
            let re = regex::Regex::new(p).unwrap_or_else(|e| panic!("pattern {p}: {e}"));
            if !re.is_match(s) {
                r.errors.push(format!("{path}: {s:?} does not match {p}"));
            }
        }
    }
    if let Some(n) = value.as_f64() {
        if schema["maximum"].as_f64().is_some_and(|m| n > m) {
            r.errors.push(format!("{path}: {n} above maximum"));
        }
        if schema["minimum"].as_f64().is_some_and(|m| n < m) {
            r.errors.push(format!("{path}: {n} below minimum"));
        }
    }
}

fn combinators(schema: &Json, value: &Json, path: &str, r: &mut Report) {
    let passes = |s: &Json| {
        let mut sub = Report::default();
        check_shallow(s, value, path, &mut sub);
        sub.errors.is_empty()
    };
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            check_shallow(s, value, path, r);
        }
    }
    if let Some(any) = schema["anyOf"].as_array() {
        if !any.iter().any(passes) {
            r.errors.push(format!("{path}: matches none of anyOf"));
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let n = one.iter().filter(|s| passes(s)).count();
        if n != 1 {
            r.errors
                .push(format!("{path}: matches {n} of oneOf, not exactly one"));
        }
    }
    if schema["not"].is_object() && passes(&schema["not"]) {
        r.errors.push(format!("{path}: matches the `not` schema"));
    }
}

/// Inside `oneOf` / `anyOf` / `allOf` / `not`, structural schemas only constrain values
/// (`required`, `enum`, ...): unknown fields are judged by the enclosing schema.
fn check_shallow(schema: &Json, value: &Json, path: &str, r: &mut Report) {
    let mut s = schema.clone();
    if let Some(m) = s.as_object_mut() {
        m.insert(
            "x-kubernetes-preserve-unknown-fields".into(),
            Json::Bool(true),
        );
    }
    check(&s, value, path, r);
}

fn object_checks(schema: &Json, map: &serde_json::Map<String, Json>, path: &str, r: &mut Report) {
    if let Some(required) = schema["required"].as_array() {
        for key in required.iter().filter_map(Json::as_str) {
            if !map.contains_key(key) {
                r.errors.push(format!("{path}.{key}: required"));
            }
        }
    }
    if let Some(max) = schema["maxProperties"].as_u64() {
        if map.len() as u64 > max {
            r.errors.push(format!("{path}: more than {max} properties"));
        }
    }
    let props = schema["properties"].as_object();
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Json::Bool(true);
    for (key, v) in map {
        // The API server's own fields (metadata: ObjectMeta), whatever the CRD schema says.
        if path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
            continue;
        }
        let at = format!("{path}.{key}");
        match props.and_then(|p| p.get(key)) {
            Some(s) => check(s, v, &at, r),
            None => match &schema["additionalProperties"] {
                Json::Object(_) => check(&schema["additionalProperties"], v, &at, r),
                Json::Bool(true) => {}
                _ if preserve => {}
                _ => r.errors.push(format!("{at}: unknown field")),
            },
        }
    }
}

/// The CEL rules the shipped manifests meet, evaluated; `None` for any other rule.
fn cel(rule: &str, v: &Json) -> Option<bool> {
    let rule = rule.trim();
    istio_cel(rule, v)
        .or_else(|| envoy_gateway_cel(rule, v))
        .or_else(|| envoy_proxy_cel(rule, v))
}

fn istio_cel(rule: &str, v: &Json) -> Option<bool> {
    let has = |k: &str| v.get(k).is_some();
    let s = v.as_str().unwrap_or_default();
    Some(match rule {
        // Istio: selector or targetRefs; wasm or lua; env values; label matchers; references.
        "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1" => {
            !(has("selector") && has("targetRefs"))
        }
        "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1" => {
            [has("selector"), has("targetRef"), has("targetRefs")]
                .iter()
                .filter(|b| **b)
                .count()
                <= 1
        }
        "has(self.wasm) != has(self.lua)" => has("wasm") != has("lua"),
        "(has(self.valueFrom) ? self.valueFrom : \"\") != \"HOST\" || !has(self.value)" => {
            v["valueFrom"].as_str() != Some("HOST") || !has("value")
        }
        "!self.contains(\"*\")" => !s.contains('*'),
        "self.all(key, !key.contains(\"*\"))" => v
            .as_object()
            .is_some_and(|m| m.keys().all(|k| !k.contains('*'))),
        "self.all(key, key.size() != 0)" => v
            .as_object()
            .is_some_and(|m| m.keys().all(|k| !k.is_empty())),
        "self.size() == 0" => s.is_empty(),
        // Istio: a url's scheme (every shipped url is oci://, which the rule accepts).
        r if r.starts_with("isURL(self) ? (url(self).getScheme() in [") => {
            ["oci://", "http://", "https://", "file://"]
                .iter()
                .any(|p| s.starts_with(p))
                || !s.contains("://")
        }
        _ => return None,
    })
}

fn envoy_gateway_cel(rule: &str, v: &Json) -> Option<bool> {
    let has = |k: &str| v.get(k).is_some();
    const GW: &str = "gateway.networking.k8s.io";
    const ROUTE_KINDS: [&str; 7] = [
        "Gateway",
        "ListenerSet",
        "HTTPRoute",
        "GRPCRoute",
        "UDPRoute",
        "TCPRoute",
        "TLSRoute",
    ];
    let refs = v["targetRefs"].as_array().cloned().unwrap_or_default();
    let kind_ok = |r: &Json| ROUTE_KINDS.iter().any(|k| r["kind"] == *k);
    Some(match rule {
        // Envoy Gateway policies: what they may target.
        "(has(self.targetRef) && !has(self.targetRefs)) || (!has(self.targetRef) && has(self.targetRefs)) || (has(self.targetSelectors) && self.targetSelectors.size() > 0)" => {
            has("targetRef") != has("targetRefs")
                || v["targetSelectors"].as_array().is_some_and(|a| !a.is_empty())
        }
        "has(self.targetRef) ? self.targetRef.group == 'gateway.networking.k8s.io' : true" => {
            !has("targetRef") || v["targetRef"]["group"] == GW
        }
        "has(self.targetRef) ? self.targetRef.kind in ['Gateway', 'ListenerSet', 'HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute'] : true" => {
            !has("targetRef") || kind_ok(&v["targetRef"])
        }
        "has(self.targetRefs) ? self.targetRefs.all(ref, ref.group == 'gateway.networking.k8s.io') : true" => {
            refs.iter().all(|r| r["group"] == GW)
        }
        "has(self.targetRefs) ? self.targetRefs.all(ref, ref.kind in ['Gateway', 'ListenerSet', 'HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute']) : true" => {
            refs.iter().all(kind_ok)
        }
        r if r.starts_with("!has(self.mergeType) || ") && !has("mergeType") => true,
        // Envoy Gateway: the code source's type names the field that is set.
        "self.type == 'HTTP' ? has(self.http) : !has(self.http)" => {
            (v["type"] == "HTTP") == has("http")
        }
        "self.type == 'Image' ? has(self.image) : !has(self.image)" => {
            (v["type"] == "Image") == has("image")
        }
        "self.type == 'ConfigMap' ? has(self.configMap) : !has(self.configMap)" => {
            (v["type"] == "ConfigMap") == has("configMap")
        }
        _ => return None,
    })
}

fn envoy_proxy_cel(rule: &str, v: &Json) -> Option<bool> {
    let has = |k: &str| v.get(k).is_some();
    Some(match rule {
        // EnvoyProxy: one of before/after; image or repository; deployment or daemonset.
        "(has(self.before) || has(self.after))" => has("before") || has("after"),
        "(has(self.before) && !has(self.after)) || (!has(self.before) && has(self.after))" => {
            has("before") != has("after")
        }
        "!has(self.image) || !has(self.imageRepository)" => {
            !(has("image") && has("imageRepository"))
        }
        "((has(self.envoyDeployment) && !has(self.envoyDaemonSet)) || (!has(self.envoyDeployment) && has(self.envoyDaemonSet))) || (!has(self.envoyDeployment) && !has(self.envoyDaemonSet))" => {
            !(has("envoyDeployment") && has("envoyDaemonSet"))
        }
        "((has(self.envoyHpa) && !has(self.envoyDaemonSet)) || (!has(self.envoyHpa) && has(self.envoyDaemonSet))) || (!has(self.envoyHpa) && !has(self.envoyDaemonSet))" => {
            !(has("envoyHpa") && has("envoyDaemonSet"))
        }
        "!(has(self.mergeGateways) && self.mergeGateways && has(self.mergeBackends))" => {
            !(v["mergeGateways"] == true && has("mergeBackends"))
        }
        _ => return None,
    })
}
