//! Monitoring names: Envoy's Prometheus names and the shipped alerts' and dashboard's PromQL,
//! with a matcher for the `.*`-only `__name__` regexes they use.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use super::{repo, str_at, yaml_docs};

/// Envoy's Prometheus name of a stat: `envoy_` + the name with every byte outside
/// `[A-Za-z0-9_]` replaced by `_`.
pub fn prometheus_name(stat: &str) -> String {
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
pub fn promql_regex_matches(re: &str, name: &str) -> bool {
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
pub fn monitoring_exprs() -> Vec<(&'static str, String)> {
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

pub fn dashboard() -> Json {
    let path = repo().join("istio/dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read dashboard.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `{__name__=~"..."}` regexes of an expression.
pub fn name_regexes(expr: &str) -> Vec<String> {
    expr.split("__name__=~\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

/// The plain `session_guard_*` metric names an expression reads (regexes and recording-rule
/// names like `namespace:session_guard_x:rate5m` left out).
pub fn filter_metric_names(expr: &str) -> BTreeSet<String> {
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
pub fn assert_vm_reload_regexes_match(plugin: &str, exported: &BTreeSet<String>, context: &str) {
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
