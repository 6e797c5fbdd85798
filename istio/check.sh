#!/usr/bin/env bash
# Static checks of the Istio deliverables: every istio/*.yaml parses (multi-document), the
# WasmPlugins carry the same filter configuration shape, dashboard.json is JSON, and, when
# promtool is installed (Debian package `prometheus`), alerts.yaml passes `promtool check
# rules` and the unit tests in tests/alerts-test.yaml.
set -euo pipefail
cd "$(dirname "$0")"
py=python3
[ -x ../.venv/bin/python ] && py=../.venv/bin/python
"$py" -c 'import yaml' 2>/dev/null || "$py" -m pip install --quiet --disable-pip-version-check pyyaml
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$py" - "$tmp" <<'PY'
import glob, json, sys, yaml
tmp = sys.argv[1]
docs = {}
for f in sorted(glob.glob("*.yaml") + glob.glob("patches/*.yaml")):
    with open(f) as fh:
        docs[f] = [d for d in yaml.safe_load_all(fh) if d is not None]
    print(f"ok  {f}: {[d.get('kind', '(no kind)') for d in docs[f]]}")
with open("dashboard.json") as fh:
    dash = json.load(fh)
print(f"ok  dashboard.json: {len(dash['panels'])} top-level panels")

def plugin(f):
    (p,) = [d for d in docs[f] if d.get("kind") == "WasmPlugin"]
    return p["spec"]
gw, sc = plugin("wasmplugin-gateway.yaml"), plugin("wasmplugin-sidecar.yaml")
for spec in (gw, sc):
    cfg = spec["pluginConfig"]
    envs = {e["name"] for e in spec["vmConfig"]["env"] if e.get("valueFrom") == "HOST"}
    wanted = {k["secret_env"] for k in cfg["keys"]}
    assert wanted <= envs, f"secret_env without vmConfig.env HOST: {wanted - envs}"
    assert spec["phase"] == "AUTHN" and spec["failStrategy"] != "FAIL_OPEN"
shape = lambda c: {k: sorted(v) if isinstance(v, dict) else None for k, v in c.items()}
assert shape(gw["pluginConfig"]) == shape(sc["pluginConfig"]), "config shapes differ"
for patch in ("gateway-patch.yaml", "sidecar-patch.yaml"):
    (c,) = [c for c in docs["patches/" + patch][0]["spec"]["template"]["spec"]["containers"] if c["name"] == "istio-proxy"]
    names = {e["name"] for e in c["env"]}
    assert wanted <= names, f"{patch} lacks {wanted - names}"
rule = docs["alerts.yaml"][0]
for g in rule["spec"]["groups"]:
    for r in g["rules"]:
        r.pop("annotations", None)
with open(f"{tmp}/rules.yaml", "w") as fh:
    yaml.safe_dump({"groups": rule["spec"]["groups"]}, fh, sort_keys=False)
print("ok  WasmPlugins, patches and keys agree")

# Every dashboard query as a recording rule (Grafana variables filled in), evaluated by
# promtool over every counter on two pods: catches syntax errors and queries that fail at
# run time (e.g. rate() over several metric names yielding same-labelled series).
def walk(ps):
    for p in ps:
        yield p
        yield from walk(p.get("panels", []))
exprs = [t["expr"] for p in walk(dash["panels"]) for t in p.get("targets", [])]
subst = lambda e: (e.replace("$__rate_interval", "5m").replace('"$namespace"', '".*"')
                    .replace('"$pod"', '".*"'))
rules = [{"record": f"dashboard:q{i}", "expr": subst(e)} for i, e in enumerate(exprs)]
with open(f"{tmp}/dash-rules.yaml", "w") as fh:
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, fh)
counters = {m for e in exprs for m in __import__("re").findall(r"session_guard_[a-z_]+", e)}
series = [{"series": f'{m}{{namespace="ns",pod="{pod}"}}', "values": "0+1x30"}
          for m in sorted(counters) for pod in ("gw-1", "gw-2")]
series += [{"series": f'envoy_wasm_ns_session_guard_vm_reload_{k}{{namespace="ns",pod="gw-1"}}',
            "values": "0+1x30"} for k in ("success", "failure")]
test = {"rule_files": ["dash-rules.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series,
                   "promql_expr_test": [{"expr": "count(dashboard:q0)", "eval_time": "20m",
                                         "exp_samples": [{"value": 1}]}]}]}
with open(f"{tmp}/dash-test.yaml", "w") as fh:
    yaml.safe_dump(test, fh)
print(f"ok  dashboard: {len(exprs)} queries written for promtool")
PY

if command -v promtool >/dev/null; then
  "$py" -c 'import sys, yaml; yaml.safe_dump({"groups": yaml.safe_load(open("alerts.yaml"))["spec"]["groups"]}, open(sys.argv[1], "w"))' "$tmp/full.yaml"
  promtool check rules "$tmp/full.yaml"
  cp tests/alerts-test.yaml "$tmp/"
  promtool test rules "$tmp/alerts-test.yaml"
  promtool check rules "$tmp/dash-rules.yaml"
  promtool test rules "$tmp/dash-test.yaml"
else
  echo "promtool not installed (apt-get install prometheus): alert rules only YAML-checked" >&2
fi
