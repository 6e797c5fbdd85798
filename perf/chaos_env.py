"""What the phases of `make chaos` (perf/chaos.py) share: the shipped ingress rendered for a
phase, the echoing upstream Envoy, sessions and their hashes. Standard library only.

No port is picked and handed on: every Envoy binds port 0 (listeners and admin) and the driver
reads what it got (`--admin-address-path`, admin `/listeners`); the Python auth server binds
port 0 in this process and keeps its socket."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path

import common as c
import soak

INGRESS = c.ROOT / "envoy" / "ingress.yaml"
FAULT_WASM = os.environ.get("SESSION_GUARD_FAULT_WASM") or str(c.PROBE_DIR / "session_guard_fault.wasm")
WORK = c.RUN_DIR / "chaos"
COOKIE = "__Host-session"
# base64 of the 16 bytes `sixteen-byte-key`: a key the filter must refuse (< 32 bytes).
SHORT_KEY = "c2l4dGVlbi1ieXRlLWtleQ=="
WASM_FILTER = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
TYPED_EXTENSION_CONFIG = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


def session_hash(sid: str) -> str:
    """The hash log lines and `revoke.sessions` name a session by (src/token: the first 8 bytes
    of SHA-256 over the tag `session-guard session tag` and the 16-byte ID, 16 hex digits);
    `sid` is the ID as upstreams receive it (`x-session-id`, URL-safe base64 without padding)."""
    raw = base64.urlsafe_b64decode(sid + "=" * (-len(sid) % 4))
    return hashlib.sha256(b"session-guard session tag" + raw).digest()[:8].hex()


def shipped_filter_config() -> dict:
    cfg = soak.extract_filter_config(INGRESS.read_text())
    if not cfg:
        raise SystemExit(f"chaos: no filter configuration found in {INGRESS}")
    return cfg


def start_upstream() -> tuple[c.Envoy, dict[str, int]]:
    """perf/upstream.yaml on port 0 everywhere; returns it and its listener ports by name."""
    cfg = c.render(c.PERF / "upstream.yaml", WORK / "upstream.yaml", {
        "UP_ADMIN_PORT": 0, "APP_PORT": 0, "AUTH_PORT": 0, "API_PORT": 0})
    up = c.Envoy("upstream", cfg, 0, 1)
    up.wait_ready()
    return up, up.listener_ports()


def ingress(name: str, upstream: dict[str, int], *, wasm: str = c.GUARD_WASM,
            filter_json: dict | None = None, policy: str | None = None,
            vm_env: dict[str, str] | None = None, auth_timeout: str | None = None,
            ecds: dict | None = None) -> Path:
    """envoy/ingress.yaml as shipped, with: every port 0 except the clusters' (the upstream's
    ports), the wasm path, and per phase: another filter configuration (`filter_json`), a
    `failure_policy`, VM environment `key_values`, a route timeout on /auth/, or the wasm filter
    replaced by an ECDS `config_discovery` filter (`ecds`, as istiod configures a gateway)."""
    text = INGRESS.read_text()
    text = re.sub(r"(port_value:\s*)(9901|10000)\b", r"\g<1>0", text)
    for port, cluster in ((8080, "app"), (8081, "auth"), (8082, "api")):
        text, n = re.subn(rf"(port_value:\s*){port}\b", rf"\g<1>{upstream[cluster]}", text)
        if n != 1:
            raise SystemExit(f"chaos: expected one port {port} in {INGRESS}")
    text = sub1(r"(filename:\s*)\"?[^\"\s}]*session_guard\.wasm\"?",
                lambda m: f'{m.group(1)}"{wasm}"', text)
    if auth_timeout:
        text = sub1(r"route: \{ cluster: auth \}", f"route: {{ cluster: auth, timeout: {auth_timeout} }}", text)
    if ecds is not None:
        # The whole wasm filter entry (up to the router) becomes one flow-style YAML item.
        text = sub1(r"(?ms)^([ \t]*)- name: envoy\.filters\.http\.wasm\n.*?(?=^\1- name: envoy\.filters\.http\.router)",
                    lambda m: f"{m.group(1)}- {json.dumps(ecds)}\n", text)
        text = "node: {id: chaos-gateway, cluster: chaos}\n" + text
    if filter_json is not None:
        text = sub1(r"(?ms)^([ \t]*)value: \|\n.*?(?=^[ \t]*- name: envoy\.filters\.http\.router)",
                    lambda m: f"{m.group(1)}value: {json.dumps(json.dumps(filter_json, separators=(',', ':')))}\n",
                    text)
    if policy:
        text = sub1(r"(?m)^([ \t]*)config:\n(\1  name: session_guard)",
                    lambda m: f"{m.group(1)}config:\n{m.group(1)}  failure_policy: {policy}\n{m.group(2)}", text)
    if vm_env:
        text = sub1(r"(?m)^([ \t]*)host_env_keys:",
                    lambda m: f"{m.group(1)}key_values: {json.dumps(vm_env)}\n{m.group(0)}", text)
    out = WORK / f"{name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def sub1(pattern: str, repl, text: str) -> str:
    text, n = re.subn(pattern, repl, text)
    if n != 1:
        raise SystemExit(f"chaos: pattern {pattern!r} matched {n} times in {INGRESS}, not once")
    return text


def start_front(name: str, config: Path, concurrency: int = 2, env: dict[str, str] | None = None,
                ready: bool = True) -> tuple[c.Envoy, int]:
    front = c.Envoy(name, config, 0, concurrency, env=env, log_level="info")
    if not ready:
        return front, 0
    front.wait_ready()
    return front, front.listener_ports()["ingress"]


def echoed(headers: list[tuple[str, str]], name: str) -> str | None:
    got = c.header(headers, name)
    return got[0] if got else None


def new_session(port: int, path: str = "/chaos/start") -> tuple[str, str]:
    """A fresh anonymous session: (cookie pair `name=value`, the ID the upstream saw)."""
    st, hd, _ = c.http(port, path)
    pair, sid = c.mesh_cookie_from(hd, COOKIE), echoed(hd, "x-echo-sid")
    if st != 200 or not pair or not sid:
        raise SystemExit(f"chaos: no session minted ({st}, cookie {bool(pair)}, sid {bool(sid)})")
    return pair, sid
