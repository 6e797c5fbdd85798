"""`make chaos`, phase a: load held while configuration pushes land (perf/chaos.py).

The shipped ingress with its wasm filter replaced by what istiod gives a gateway: an ECDS
`config_discovery` filter, here fed from a `DiscoveryResponse` file renamed into a directory
Envoy watches (`path_config_source` + `watched_directory`, as tests/common/istio/xds.rs does).
The resource is the gateway WasmPlugin's (istio/wasmplugin-gateway.yaml): key ring k2, k1 from
the proxy's environment, `failure_policy: FAIL_RELOAD`, and the ingress's filter configuration.

While wrk holds a steady rate through Envoy with CHAOS_SESSIONS valid sessions, an update lands
every 500 ms: key-ring rotations ([k2,k1] <-> [k1,k2]: both keys stay, so no session in use
loses its key), revocation-list changes (`revoke.sessions`: decoy hashes, and from the middle
of the run one victim's hash), and one invalid configuration (a 16-byte key) that Envoy must
refuse while the last good one keeps running. The victim is probed by the driver every 100 ms
on its own connection: kept before the revoking push was written, refused once it is applied."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time

import chaos_env as ce
import common as c

PLUGIN = "istio-system.session-guard~istio-translated-wasmplugin"
RESOURCE = f"extensions.istio.io/trafficextension/{PLUGIN}"
KEY_ENV = {"k1": "SESSION_GUARD_KEY_K1", "k2": "SESSION_GUARD_KEY_K2"}
PERIOD = 0.5


class Ecds:
    """The ECDS "server": versions of one resource written to a file Envoy watches."""

    def __init__(self) -> None:
        self.dir = ce.WORK / "ecds"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file = self.dir / "ecds.json"
        self.version = 0

    def discovery_filter(self) -> dict:
        return {"name": RESOURCE, "config_discovery": {
            "config_source": {
                "path_config_source": {"path": str(self.file),
                                       "watched_directory": {"path": str(self.dir)}},
                "resource_api_version": "V3",
                "initial_fetch_timeout": "0s"},  # as istiod: no traffic before a config
            "type_urls": [ce.WASM_FILTER]}}

    def write(self, filter_json: dict, key_envs: list[str]) -> None:
        self.version += 1
        config = {
            "name": PLUGIN, "root_id": "session_guard",
            "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": c.GUARD_WASM}},
                          "environment_variables": {"host_env_keys": key_envs}},
            "failure_policy": "FAIL_RELOAD",
            "configuration": {"@type": ce.STRING_VALUE,
                              "value": json.dumps(filter_json, separators=(",", ":"))}}
        resource = {"@type": ce.TYPED_EXTENSION_CONFIG, "name": RESOURCE,
                    "typed_config": {"@type": ce.WASM_FILTER, "config": config}}
        tmp = self.dir / ".ecds.json.tmp"
        tmp.write_text(json.dumps({"version_info": str(self.version),
                                   "type_url": ce.TYPED_EXTENSION_CONFIG, "resources": [resource]}))
        os.rename(tmp, self.file)  # atomic: Envoy never reads half a file

    def stats(self, envoy: c.Envoy) -> dict[str, int]:
        prefix = f"extension_config_discovery.http_filter.{RESOURCE}."
        got = {}
        for line in envoy.admin("/stats?filter=extension_config_discovery").splitlines():
            name, _, val = line.partition(": ")
            if name.startswith(prefix) and val.strip().isdigit():
                got[name[len(prefix):]] = int(val)
        return got

    def version_text(self, envoy: c.Envoy) -> str:
        """The version Envoy runs (a text readout; the config dump shows the last *received*
        one, refused or not)."""
        name = f"extension_config_discovery.http_filter.{RESOURCE}.version_text"
        stats = json.loads(envoy.admin("/stats?format=json&type=TextReadouts")).get("stats", [])
        return next((s.get("value", "") for s in stats if s.get("name") == name), "")

    def wait(self, envoy: c.Envoy, before: dict[str, int], timeout: float = 20.0) -> str:
        """'applied' (every worker runs it), 'refused' (config_fail) or 'timeout'."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.stats(envoy)
            if now.get("update_attempt", 0) > before.get("update_attempt", 0):
                if now.get("config_fail", 0) > before.get("config_fail", 0):
                    return "refused"
                if now.get("config_reload", 0) > before.get("config_reload", 0):
                    return "applied"
            time.sleep(0.01)
        return "timeout"


def filter_config(base: dict, order: list[str], revoked: list[str], invalid: bool = False) -> dict:
    cfg = json.loads(json.dumps(base))
    cfg["keys"] = [{"id": k, "secret_env": KEY_ENV[k]} for k in order]
    if invalid:
        cfg["keys"].insert(0, {"id": "k3", "secret": ce.SHORT_KEY})
    if revoked:
        cfg["revoke"] = {"sessions": revoked}
    return cfg


def run(upstream: dict[str, int]) -> dict:
    seconds = ce.env_int("CHAOS_SECONDS", 60)
    rate = ce.env_int("CHAOS_RATE", 1000)
    n_sessions = ce.env_int("CHAOS_SESSIONS", 64)
    conns, threads = 16, 2
    base = ce.shipped_filter_config()
    ecds = Ecds()
    order, decoys = ["k2", "k1"], [os.urandom(8).hex() for _ in range(16)]
    ecds.write(filter_config(base, order, decoys), [KEY_ENV[k] for k in order])
    cfg = ce.ingress("push", upstream, ecds=ecds.discovery_filter())
    keys = {env: c.random_key() for env in KEY_ENV.values()}
    front, port = ce.start_front("push", cfg, env=keys)
    if ecds.wait(front, {}) != "applied":
        raise SystemExit("chaos: the first ECDS configuration was not applied")

    sessions = [ce.new_session(port) for _ in range(n_sessions)]
    victim_cookie, victim_sid = ce.new_session(port)
    victim_hash = ce.session_hash(victim_sid)
    sess_file = ce.WORK / "sessions.txt"
    sess_file.write_text("".join(f"{i} {pair} {sid}\n" for i, (pair, sid) in enumerate(sessions)))
    c.log(f"phase a: {seconds} s at {rate} req/s (wrk -t{threads} -c{conns}, paced), "
          f"{n_sessions} sessions + 1 victim, an ECDS update every {PERIOD * 1000:.0f} ms")

    filt_before = front.stats("session_guard")
    res: dict = {}
    delay_ms = max(1, round(conns * 1000 / rate))
    wrk = threading.Thread(target=lambda: res.update(c.run_wrk(
        port, "/", duration=seconds, connections=conns, threads=threads,
        script=c.PERF / "wrk" / "chaos.lua", script_args=[str(delay_ms), str(sess_file), str(threads)])),
        daemon=True)  # an interrupted run does not wait for it: kill_children stops wrk
    probes: list[tuple[float, bool, int]] = []
    stop = threading.Event()

    def probe_victim():
        while not stop.is_set():
            try:
                st, hd, _ = c.http(port, "/chaos/victim", {"Cookie": victim_cookie})
                probes.append((time.monotonic(), ce.echoed(hd, "x-echo-sid") == victim_sid, st))
            except OSError:
                probes.append((time.monotonic(), False, 0))
            stop.wait(0.1)

    prober = threading.Thread(target=probe_victim, daemon=True)
    wrk.start()
    prober.start()
    pushes, t_written, t_applied = [], None, None
    n_total = int((seconds - 2) / PERIOD)
    invalid_at, revoke_at = max(2, n_total // 3), max(3, n_total // 2)
    revoked: list[str] = decoys
    kept_after_invalid = None
    t0 = time.monotonic()
    for i in range(1, n_total + 1):
        kind = ("invalid" if i == invalid_at else "revoke victim" if i == revoke_at
                else "key rotation" if i % 2 else "revocation list")
        if kind == "key rotation":
            order = order[::-1]
        elif kind == "revocation list":
            revoked = [os.urandom(8).hex() for _ in range(16)] + (
                [victim_hash] if t_written else [])
        elif kind == "revoke victim":
            revoked = revoked + [victim_hash]
        before = ecds.stats(front)
        started = time.monotonic()
        ecds.write(filter_config(base, order, revoked, invalid=kind == "invalid"),
                   [KEY_ENV[k] for k in order])
        if kind == "revoke victim":
            t_written = started
        outcome = ecds.wait(front, before)
        done = time.monotonic()
        if kind == "revoke victim" and outcome == "applied":
            t_applied = done
        if kind == "invalid":
            kept_after_invalid = ecds.version_text(front) == str(ecds.version - 1)
        pushes.append((kind, outcome, done - started))
        time.sleep(max(0.0, t0 + i * PERIOD - time.monotonic()))
    wrk.join()
    stop.set()
    prober.join()
    ecds_end = ecds.stats(front)
    filt_end = front.stats("session_guard")
    alive = front.proc.poll() is None
    front.stop()

    before_w = [p for p in probes if t_written is None or p[0] < t_written]
    after_a = [p for p in probes if t_applied is not None and p[0] > t_applied]
    lat = sorted(d for _, o, d in pushes if o == "applied")
    counters = {k.replace("wasmcustom.", ""): filt_end[k] - filt_before.get(k, 0)
                for k in filt_end if filt_end[k] - filt_before.get(k, 0)}
    return {
        "wrk": {k: v for k, v in res.items() if k != "stdout"}, "seconds": seconds, "rate": rate,
        "sessions": n_sessions, "pushes": pushes, "ecds": ecds_end,
        "kept_after_invalid": kept_after_invalid, "envoy_alive": alive,
        "apply_p50_ms": statistics.median(lat) * 1000 if lat else None,
        "apply_max_ms": lat[-1] * 1000 if lat else None,
        "victim": {"before_revocation": len(before_w),
                   "refused_before_revocation": sum(1 for p in before_w if not p[1]),
                   "after_applied": len(after_a),
                   "kept_after_applied": sum(1 for p in after_a if p[1]),
                   "non200": sum(1 for p in probes if p[2] != 200)},
        "counters": counters,
    }
