#!/usr/bin/env python3
"""session-guard benchmark driver (`make bench`).

One bench Envoy (--concurrency 1) has three listeners in front of the same upstream
(perf/envoy-bench.yaml): `none` (router only), `empty` (an empty Proxy-Wasm filter, the floor any
Wasm filter pays) and `guard` (session-guard). A second Envoy (perf/upstream.yaml) is the cheap
upstream, answering with direct_response, so every filter sees a real upstream response.

For each traffic class, interleaved rounds run a short wrk on each listener (rotating the order),
all with the same request, and report requests/s and latency. The cost of a filter is read as
extra worker time per request over `none`:

    extra_us = 1e6/rps_listener - 1e6/rps_none

Method: the bench Envoy has ONE worker thread and is pinned to its own CPU (wrk and the upstream
Envoy share the other one); wrk keeps enough connections open that the worker always has work.
At saturation the worker runs at 100 % CPU, so 1/rps is the worker time one request costs;
the difference to `none` removes the proxy's own cost (codec, router, upstream pool), leaving
what the filter adds. "100 %" is an assumption, so the driver also measures the worker thread
itself (/proc/<pid>/task/<tid>/schedstat): its CPU time per request (the same quantity, measured
directly instead of inferred), its utilization, and the time it sat runnable waiting for a CPU.
When utilization is under 90 % (a shared machine, or wake-up latency in a VM), 1/rps also counts
idle time and overstates every extra; the verdict then uses the CPU-time figure and says so.

Extras are computed per round from back-to-back runs (paired, so slow drift cancels) and the
median over rounds is reported; rps, latency and CPU/request are medians over rounds. Latency
is at saturation (closed loop, 64 connections), so p50 is mostly queueing: compare listeners,
not absolute values.

On a machine shared with other work, the driver runs in its own session (common.own_session) and
raises that session's scheduler priority (BENCH_NICE, default -10), so other sessions' processes
do not sit on the bench's CPUs; set BENCH_NICE= to leave priorities alone.

Targets (printed, never asserted): extra cost of session-guard vs the empty filter's extra:
steady <= 2.5x, anonymous <= 3x, login <= 4x; session-guard <= 1.15x the `calls` probe (the same
host calls as session-guard's steady request, no computation: the floor); wasm size <= 320 KiB (256 KiB before DBSC).

DBSC: every session-guard listener runs with "dbsc": {"enabled": true}; `steady` is an unbound
session's request (no new host call: CALLS_SEQ; the `nodbsc` listener, DBSC off, gives the A/B),
`authed`/`bound` a logged-in session without and with a device key and its ticket, `refresh` the
refresh endpoint (one ES256 verify; perf/dbsc.py registers the key and signs the proof).

BENCH_VARIANTS=name=path.wasm,... adds one listener per extra session-guard build (same config),
measured in the same interleaved rounds as `guard`: the A/B tool for compiler settings and levers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import dbsc  # noqa: E402

LISTENERS = ("none", "empty", "guard")
# The probe listener: perf/hostcall-probe making exactly the host calls session-guard makes on a
# steady request, in its order (request: header map, clock, counter, 2 filter-state writes, cookie
# removal, x-session-id, routed cluster; response: header map), no computation. Measured in the
# steady class only; guard/calls is the "floor ratio" (how much of the cost is ours).
CALLS_SEQ = "req_map+time+shared+metric+prop+prop2+rm_cookie+set_sid+cluster+resp_map"
# Listeners measured in the steady class only: the probe above, and `nodbsc`, session-guard with
# the guard listener's configuration less DBSC (guard - nodbsc: what DBSC on costs an unbound
# session's request, paired per round; it should be nothing).
STEADY_ONLY = ("calls", "nodbsc")
FLOOR_TARGET = 1.15
COOKIE = "__Host-session"
FORGED = f"{COOKIE}=v1.k1.AAAA.BBBB"

# class -> (path, cookie, description); cookie: "valid" (a session minted by the guard listener
# before the runs), "tampered" (that cookie with one character of its value flipped: well-formed,
# the signature check fails), None (no Cookie header) or a literal Cookie header.
CLASSES = {
    "steady":    ("/app/page?x=1", "valid", "valid mesh cookie, clean URL: verify + forward"),
    "anonymous": ("/app/page?x=1", None, "no cookie: mint a session every request"),
    "url":       ("/?jsessionid=ABC&x=1", "valid", "valid cookie + session ID in the query: verify + strip"),
    "forged":    ("/app/page?x=1", "tampered", "tampered cookie (bad signature): reject + mint"),
    "malformed": ("/app/page?x=1", FORGED, "cookie v1.k1.AAAA.BBBB (not a token): reject + mint"),
    "login":     ("/auth/login", "valid", "valid cookie, auth upstream answers the login signal: rotate"),
    "binding":   ("/app/page?x=1", "bound", "valid cookie + one bound app cookie (connect.sid): verify both"),
    "revoke10k": ("/app/page?x=1", "valid", "steady, on a listener whose config revokes 10,000 sessions + 10,000 subjects"),
    "authed":    ("/app/page?x=1", "dbsc-authed", "a logged-in session (alice), not bound: verify + subject header; bound's comparison"),
    "bound":     ("/app/page?x=1", "dbsc-bound", "DBSC: alice's session bound to a device key + its valid ticket: verify + ticket check"),
    "refresh":   (f"{dbsc.DBSC_PATH}/refresh", "dbsc-refresh", "DBSC refresh (POST): id + session + challenge MACs, one ES256 verify, new ticket"),
}
# Classes sent with another method than GET (wrk replays the same request).
CLASS_METHOD = {"refresh": "POST"}
# Classes measured on another listener than `guard` (same wasm, another configuration).
CLASS_LISTENER = {"revoke10k": "revoke"}
APP_COOKIE = "connect.sid"
TARGETS = {"steady": 2.5, "anonymous": 3.0, "login": 4.0}
WASM_LIMIT = 320 * 1024  # 256 KiB until DBSC (issue 29: ES256 verify, +57.5 KB)


def env_num(name: str, default, cast=int):
    v = os.environ.get(name)
    return cast(v) if v not in (None, "") else default


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=env_num("BENCH_ROUNDS", 3))
    ap.add_argument("--duration", type=int, default=env_num("BENCH_DURATION", 4),
                    help="seconds per wrk run (wrk takes whole seconds)")
    ap.add_argument("--connections", type=int, default=env_num("BENCH_CONNECTIONS", 64))
    ap.add_argument("--warmup", type=int, default=env_num("BENCH_WARMUP", 1),
                    help="seconds of warm-up per listener and class before measuring (0: none)")
    ap.add_argument("--classes", default=os.environ.get("BENCH_CLASSES", ",".join(CLASSES)))
    ap.add_argument("--nice", default=os.environ.get("BENCH_NICE", "-10"),
                    help="scheduler priority for this session's processes ('' to leave alone)")
    ap.add_argument("--pin", default=os.environ.get("BENCH_PIN", "auto"),
                    help="auto|off: pin the bench Envoy to the last CPU, wrk+upstream to the others")
    ap.add_argument("--upstream-concurrency", type=int, default=env_num("BENCH_UPSTREAM_CONCURRENCY", 1))
    ap.add_argument("--no-mem-probe", action="store_true",
                    default=os.environ.get("BENCH_MEM_PROBE", "1") == "0")
    ap.add_argument("--hostcalls", action="store_true",
                    default=os.environ.get("BENCH_HOSTCALLS", "0") == "1",
                    help="instead of the classes, price single host calls with perf/hostcall-probe")
    ap.add_argument("--calls", type=int, default=env_num("BENCH_CALLS", 25),
                    help="--hostcalls: calls per request")
    ap.add_argument("--json", default=os.environ.get("BENCH_JSON", str(c.RUN_DIR / "bench" / "result.json")))
    return ap.parse_args()


def cpu_plan(pin: str) -> tuple[str | None, str | None]:
    """(bench Envoy CPUs, wrk + upstream CPUs)."""
    if pin == "off" or c.NCPU < 2 or not c.taskset_prefix("0"):
        return None, None
    last = c.NCPU - 1
    return str(last), ",".join(str(i) for i in range(last))


def kib(n: int) -> str:
    return f"{n / 1024:.1f} MiB"


def main() -> int:
    args = parse_args()
    c.own_session()
    c.install_cleanup()
    if args.hostcalls:
        return hostcalls_main(args)
    classes = [k.strip() for k in args.classes.split(",") if k.strip()]
    for k in classes:
        if k not in CLASSES:
            raise SystemExit(f"unknown class {k!r}; known: {', '.join(CLASSES)}")
    for f, what in ((c.ENVOY_BIN, "Envoy (make deps)"), (c.GUARD_WASM, "session-guard wasm (make build)"),
                    (c.EMPTY_WASM, "empty filter wasm (make bench builds it)")):
        if not Path(f).exists():
            raise SystemExit(f"missing {what}: {f}")

    work = c.RUN_DIR / "bench"
    work.mkdir(parents=True, exist_ok=True)
    env = {"SESSION_GUARD_KEY": c.random_key()}
    envoy_cpus, load_cpus = cpu_plan(args.pin)
    t_start = time.time()
    prio = c.raise_priority(int(args.nice)) if args.nice not in ("", None) else "priority unchanged"

    guard_size = Path(c.GUARD_WASM).stat().st_size
    empty_size = Path(c.EMPTY_WASM).stat().st_size
    c.log("== session-guard bench")
    c.log(f"envoy: {c.ENVOY_BIN}")
    c.log(f"session-guard wasm: {c.GUARD_WASM} ({guard_size} bytes = {guard_size / 1024:.1f} KiB)")
    c.log(f"empty filter wasm:  {c.EMPTY_WASM} ({empty_size} bytes = {empty_size / 1024:.1f} KiB)")
    c.log(f"cpus: {c.NCPU}; bench Envoy on cpu {envoy_cpus or 'any'}, wrk + upstream on cpu "
          f"{load_cpus or 'any'}; {args.rounds} rounds x {args.duration:g}s, wrk -t1 -c{args.connections}; {prio}")

    variants = parse_variants(os.environ.get("BENCH_VARIANTS", ""))
    # The native build (docs/native.md) as one more listener: the same configuration through
    # envoy.filters.http.dynamic_modules. BENCH_NATIVE: the .so (`make bench` passes the
    # `make build-native` output; empty: no native listener).
    native = os.environ.get("BENCH_NATIVE", "")
    if native:
        so = Path(native).resolve()
        if so.name != "libsession_guard.so" or not so.is_file():
            raise SystemExit(f"BENCH_NATIVE: {native!r} is not an existing libsession_guard.so")
        variants["native"] = str(so)
        env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = str(so.parent)
    for name, path in variants.items():
        size = Path(path).stat().st_size
        c.log(f"variant {name}: {path} ({size} bytes = {size / 1024:.1f} KiB)")
    extra = [n for n in ("revoke", "calls", "nodbsc") if any(
        CLASS_LISTENER.get(k) == n or (n in STEADY_ONLY and k == "steady") for k in classes)]
    extra += list(variants)
    if "calls" in extra and not Path(PROBE_WASM).exists():
        raise SystemExit(f"missing hostcall probe (make bench builds it): {PROBE_WASM}")
    up_admin, app_port, auth_port, api_port, admin, p_none, p_empty, p_guard, *p_extra = c.free_ports(8 + len(extra))
    ports = {"none": p_none, "empty": p_empty, "guard": p_guard, **dict(zip(extra, p_extra))}
    up_cfg = c.render(c.PERF / "upstream.yaml", work / "upstream.yaml", {
        "UP_ADMIN_PORT": up_admin, "APP_PORT": app_port, "AUTH_PORT": auth_port, "API_PORT": api_port})
    subs = {"ADMIN_PORT": admin, "PORT_NONE": p_none, "PORT_EMPTY": p_empty, "PORT_GUARD": p_guard,
            "APP_PORT": app_port, "AUTH_PORT": auth_port, "EMPTY_WASM": c.EMPTY_WASM,
            "GUARD_WASM": c.GUARD_WASM}

    result: dict = {"guard_wasm_bytes": guard_size, "empty_wasm_bytes": empty_size,
                    "rounds": args.rounds, "duration_s": args.duration,
                    "connections": args.connections, "classes": {},
                    "variants": {n: Path(p).stat().st_size for n, p in variants.items()}}

    # --- memory probes: cold RSS of configurations with/without each Wasm listener --------
    if not args.no_mem_probe:
        result["memory_probe"] = memory_probe(work, subs, env, envoy_cpus)

    # --- the bench pair ---------------------------------------------------------------------
    upstream = c.Envoy("upstream", up_cfg, up_admin, args.upstream_concurrency, cpus=load_cpus)
    tpl = work / "envoy-bench.tpl.yaml"
    tpl.write_text(with_extra_listeners((c.PERF / "envoy-bench.yaml").read_text(), ports, variants, extra))
    bench_cfg = c.render(tpl, work / "envoy-bench.yaml", subs)
    bench = c.Envoy("bench", bench_cfg, admin, 1, cpus=envoy_cpus, env=env)
    upstream.wait_ready()
    bench.wait_ready()
    workers = bench.worker_tids()
    if len(workers) != 1:
        raise SystemExit(f"expected one worker thread in the bench Envoy, found {workers}")
    worker = workers[0]
    rss_start = bench.rss_kib()
    wasm_stats_start = bench.stats("wasm")

    # --- probe each class once on the guard listener; get a valid cookie -------------------
    cookie, probes = probe(ports["guard"])
    result["probes"] = probes
    bound = bind_app_cookie(ports["guard"], cookie) if "binding" in classes else None
    result["probes"]["binding"] = bound and bound[2]
    # DBSC (the guard listener's configuration has it on): a device key registered through
    # login + start, checked on the guard listener and every variant (native included).
    device, authed = None, None
    if any(CLASSES[k][1] in ("dbsc-bound", "dbsc-refresh") for k in classes):
        device = dbsc_probe(ports, ["guard", *variants], result["probes"])
        if device is None:
            dropped = [k for k in classes if CLASSES[k][1] in ("dbsc-bound", "dbsc-refresh")]
            c.log(f"WARNING: no device-bound session could be registered: classes {', '.join(dropped)} not run")
            classes = [k for k in classes if k not in dropped]

    def request_headers(cls: str, fresh: bool = False) -> dict[str, str]:
        """The class's Cookie header. fresh: a newly minted session, so that no class runs into
        the re-issue the filter does once a session is a tenth of its idle timeout old (3 min
        by default): re-issue is amortised over minutes in real traffic, not per request."""
        nonlocal cookie, bound, device, authed
        spec = CLASSES[cls][1]
        if spec is None:
            return {}
        if spec == "dbsc-authed":
            if fresh or authed is None:
                authed = dbsc.login(ports["guard"])[0] or authed or cookie
            return {"Cookie": authed}
        if spec.startswith("dbsc-"):
            # fresh: a new login and registration (a new session, ticket and challenge).
            if fresh:
                device = dbsc.register(ports["guard"])[0] or device
            return device.steady_headers() if spec == "dbsc-bound" else device.refresh_headers()
        if fresh and spec in ("valid", "tampered", "bound"):
            _st, hd, _ = c.http(ports["guard"], "/app/page?x=1")
            cookie = c.mesh_cookie_from(hd, COOKIE) or cookie
            if spec == "bound":
                bound = bind_app_cookie(ports["guard"], cookie)
        if spec == "bound":
            return {"Cookie": f"{bound[0]}; {bound[1]}" if bound else cookie}
        return {"Cookie": {"valid": cookie, "tampered": tamper(cookie)}.get(spec, spec)}

    def class_listeners(cls: str) -> tuple[str, ...]:
        """(none, empty, the class's guard listener, variants..., calls for steady)."""
        g = CLASS_LISTENER.get(cls, "guard")
        more = tuple(variants) if g == "guard" else ()
        return ("none", "empty", g) + more + (STEADY_ONLY if cls == "steady" else ())

    # --- warm up: every class once on every listener (V8 tiers up the hot paths, pools fill) ---
    if args.warmup > 0:
        for cls in classes:
            for name in class_listeners(cls):
                c.run_wrk(ports[name], CLASSES[cls][0], duration=args.warmup, connections=args.connections,
                          headers=request_headers(cls), cpus=load_cpus, method=CLASS_METHOD.get(cls, "GET"))

    # --- measure --------------------------------------------------------------------------
    all_runs: dict[str, dict[str, list[dict]]] = {}
    for cls in classes:
        path = CLASSES[cls][0]
        hdrs = request_headers(cls, fresh=True)
        names = class_listeners(cls)
        guard_name = names[2]
        runs: dict[str, list[dict]] = {n: [] for n in names}
        all_runs[cls] = runs
        counter_delta: dict[str, int] = {}
        guard_requests = 0
        for rnd in range(args.rounds):
            k = rnd % len(names)
            for name in names[k:] + names[:k]:
                before_ctr = bench.stats("session_guard") if name == guard_name else None
                (cpu0, wait0), t0 = c.thread_sched_ns(bench.pid, worker), time.monotonic()
                r = c.run_wrk(ports[name], path, duration=args.duration, connections=args.connections,
                              headers=hdrs, cpus=load_cpus, method=CLASS_METHOD.get(cls, "GET"))
                (cpu1, wait1), t1 = c.thread_sched_ns(bench.pid, worker), time.monotonic()
                secs = r["duration_us"] / 1e6
                r["rps"] = r["requests"] / secs if secs else 0.0
                r["cpu_us_per_req"] = (cpu1 - cpu0) / 1e3 / max(r["requests"], 1)
                r["util"] = (cpu1 - cpu0) / 1e9 / (t1 - t0)
                r["runq"] = (wait1 - wait0) / 1e9 / (t1 - t0)
                r["bad"] = r["non2xx3xx"] + r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
                r.pop("stdout", None)
                runs[name].append(r)
                if before_ctr is not None:
                    after = bench.stats("session_guard")
                    for key, v in after.items():
                        counter_delta[key] = counter_delta.get(key, 0) + v - before_ctr.get(key, 0)
                    guard_requests += r["requests"]
        if guard_name != "guard":  # summaries name the class's guard listener `guard`
            runs["guard"] = runs.pop(guard_name)
        result["classes"][cls] = summarize(cls, runs, counter_delta, guard_requests)
        c.log(f"   measured {cls}: " + ", ".join(
            f"{n} {statistics.median(x['rps'] for x in runs[n]):.0f} rps" for n in runs))

    # The empty filter does the same thing whatever the request (no host calls; the SDK only
    # dispatches the callbacks), so its extra is one quantity: pooled over every class and round
    # it is a far steadier denominator than one class's three samples.
    floor_1rps = [1e6 / b["rps"] - 1e6 / a["rps"] for r in all_runs.values()
                  for a, b in zip(r["none"], r["empty"])]
    floor_cpu = [b["cpu_us_per_req"] - a["cpu_us_per_req"] for r in all_runs.values()
                 for a, b in zip(r["none"], r["empty"])]
    result["floor"] = {"empty_extra_us": statistics.median(floor_1rps),
                       "empty_extra_cpu_us": statistics.median(floor_cpu), "samples": len(floor_cpu)}
    fl = result["floor"]
    for cs in result["classes"].values():
        cs["ratio"] = cs["guard_extra_us"] / fl["empty_extra_us"] if fl["empty_extra_us"] > 0 else float("nan")
        cs["ratio_cpu"] = (cs["guard_extra_cpu_us"] / fl["empty_extra_cpu_us"]
                           if fl["empty_extra_cpu_us"] > 0 else float("nan"))
    rss_end = bench.rss_kib()
    wasm_stats_end = bench.stats("wasm")
    result["rss_kib"] = {"start": rss_start, "end": rss_end}
    result["wasm_stats"] = {"start": wasm_stats_start, "end": wasm_stats_end}
    try:
        result["admin_memory"] = json.loads(bench.admin("/memory"))
    except Exception:  # noqa: BLE001 - informational only
        result["admin_memory"] = {}
    bench_log = c.tail(bench.log_path, 2000)
    bench.stop()
    upstream.stop()

    report(result, classes, args)
    result["elapsed_s"] = time.time() - t_start
    c.log(f"\n(total {result['elapsed_s']:.0f}s; raw results: {args.json}; Envoy logs: {work})")
    panics = [ln for ln in bench_log.splitlines() if "panicked" in ln or "wasm log" in ln and "error" in ln]
    if panics:
        c.log("Envoy log lines mentioning Wasm errors/panics (first 5):")
        for ln in panics[:5]:
            c.log("  " + ln[:300])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


def parse_variants(spec: str) -> dict[str, str]:
    """BENCH_VARIANTS: `name=path.wasm,...` -> {name: absolute path}."""
    out: dict[str, str] = {}
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        name, _, path = item.partition("=")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,15}", name) or not Path(path).is_file():
            raise SystemExit(f"BENCH_VARIANTS: {item!r} is not name=existing.wasm (name: a-z0-9_-)")
        if name in ("none", "empty", "guard", "calls", "revoke", "native", "nodbsc"):
            raise SystemExit(f"BENCH_VARIANTS: {name!r} is a reserved listener name")
        out[name] = str(Path(path).resolve())
    return out


def revoke_config() -> str:
    """The bench config (DBSC on, as on the guard listener) plus 10,000 revoked session hashes
    and 10,000 revoked subjects (none of them the bench's sessions: the class measures the
    lookups, not a refusal)."""
    rnd = __import__("random").Random(14)
    sessions = [f"{rnd.getrandbits(64):016x}" for _ in range(10_000)]
    subjects = {f"user{i}@example.com": 1_700_000_000 + i for i in range(10_000)}
    return json.dumps({"keys": [{"id": "k1", "secret_env": "SESSION_GUARD_KEY"}],
                       "signal": {"trusted_clusters": ["auth"]},
                       "revoke": {"sessions": sessions, "subjects": subjects},
                       "dbsc": {"enabled": True}}, separators=(",", ":"))


def with_extra_listeners(tpl: str, ports: dict[str, int], variants: dict[str, str], extra: list[str]) -> str:
    """envoy-bench.yaml with more listeners copied from its guard block: one per variant (another
    wasm), `revoke` (another configuration) and `calls` (the hostcall probe, CALLS_SEQ)."""
    m = re.search(r"(?ms)^[ \t]*# BEGIN guard\n(.*?)^[ \t]*# END guard\n", tpl)
    if not m:
        raise SystemExit("envoy-bench.yaml: no guard block")
    block = m.group(1)
    out = []
    for name in extra:
        b = (block.replace("- name: guard\n", f"- name: {name}\n")
             .replace("port_value: @PORT_GUARD@", f"port_value: {ports[name]}")
             .replace("stat_prefix: guard\n", f"stat_prefix: {name}\n")
             .replace("vm_id: session_guard\n", f"vm_id: {name}\n"))
        if name == "native":
            b = to_dynamic_module(b)
        wasm = variants.get(name, PROBE_WASM if name == "calls" else "@GUARD_WASM@")
        b = b.replace("@GUARD_WASM@", wasm)
        conf = {"calls": f"seq={CALLS_SEQ}:1", "revoke": revoke_config() if name == "revoke" else None,
                "nodbsc": without_dbsc(block) if name == "nodbsc" else None}.get(name)
        if conf is not None:
            b, n = re.subn(r"(value: \|\n([ \t]+))\{.*\}\n", lambda mm: mm.group(1) + conf + "\n", b)
            if n != 1:
                raise SystemExit("envoy-bench.yaml: guard block has no configuration value to replace")
        out.append(b)
    return tpl[:m.end()] + "".join(out) + tpl[m.end():]


def without_dbsc(block: str) -> str:
    """The guard block's configuration with DBSC off (the `nodbsc` listener)."""
    m = re.search(r"value: \|\n[ \t]+(\{.*\})\n", block)
    if not m:
        raise SystemExit("envoy-bench.yaml: guard block has no configuration value")
    conf = json.loads(m.group(1))
    conf.pop("dbsc", None)
    return json.dumps(conf, separators=(",", ":"))


def to_dynamic_module(block: str) -> str:
    """The guard block's Wasm filter as the native build's dynamic-module filter, same JSON."""
    def native(m: re.Match) -> str:
        ind = m.group(1)
        return (f"{ind}- name: envoy.filters.http.dynamic_modules\n"
                f"{ind}  typed_config:\n"
                f'{ind}    "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter\n'
                f"{ind}    dynamic_module_config: {{name: session_guard}}\n"
                f"{ind}    filter_name: session_guard\n"
                f"{ind}    filter_config:\n"
                f'{ind}      "@type": type.googleapis.com/google.protobuf.StringValue\n'
                f"{ind}      value: |\n{ind}        {m.group(2)}\n")
    out, n = re.subn(r"(?ms)^([ \t]*)- name: envoy\.filters\.http\.wasm\n.*?value: \|\n[ \t]+(\{.*?\})\n",
                     native, block)
    if n != 1:
        raise SystemExit("envoy-bench.yaml: guard block has no Wasm filter to replace")
    return out


def bind_app_cookie(port: int, cookie: str) -> tuple[str, str, dict] | None:
    """A mesh cookie with `connect.sid` bound to it: /app/bind makes the upstream set that app
    cookie, so the filter binds it and re-issues the mesh cookie. (new mesh pair, app pair, check)."""
    _st, hd, _ = c.http(port, "/app/bind", {"Cookie": cookie})
    mesh = c.mesh_cookie_from(hd, COOKIE)
    app = next((v.split(";", 1)[0] for v in c.header(hd, "set-cookie") if v.startswith(APP_COOKIE + "=")), None)
    if not (mesh and app):
        c.log("WARNING: /app/bind did not return both a re-issued mesh cookie and the app cookie; "
              "the binding class does not exercise app-cookie binding")
        return None
    _st, hd, _ = c.http(port, "/app/page?x=1", {"Cookie": f"{mesh}; {app}"})
    echoed = (c.header(hd, "x-echo-cookie") or [""])[0]
    check = {"app_cookie_forwarded": app in echoed, "mesh_cookie_forwarded": COOKIE in echoed}
    c.log(f"  binding    {'ok' if check['app_cookie_forwarded'] and not check['mesh_cookie_forwarded'] else 'NOT AS INTENDED'}: {json.dumps(check)}")
    return mesh, app, check


def dbsc_probe(ports: dict[str, int], listeners: list[str], probes: dict) -> dbsc.BoundSession | None:
    """Register a device key on the guard listener (login, then `<dbsc.path>/start`), then send
    one bound request and one refresh to each listener running session-guard: do they take the
    path the `bound` and `refresh` classes measure? Informational, like `probe`."""
    device, seen = dbsc.register(ports["guard"])
    probes["dbsc_registration"] = seen
    c.log(f"  {'register':<10} {'ok' if device else 'NOT AS INTENDED'}: {json.dumps(seen)}")
    if device is None:
        return None
    for name in listeners:
        seen, ok = dbsc.check(ports[name], device, CLASSES["refresh"][0])
        probes[f"dbsc_{name}"] = seen
        for cls in ("bound", "refresh"):
            c.log(f"  {cls:<10} {'ok' if ok[cls] else 'NOT AS INTENDED'} on {name}: {json.dumps(seen[cls])}")
    return device


def tamper(pair: str) -> str:
    """Flip one character in the middle of the cookie's value: still well-formed, bad signature."""
    name, _, value = pair.partition("=")
    i = len(value) // 2
    return f"{name}={value[:i]}{'B' if value[i] == 'A' else 'A'}{value[i + 1:]}"


def probe(port: int) -> tuple[str, dict]:
    """One request per class on the guard listener: obtain a valid cookie and check that the
    filter takes the path each class is meant to measure (informational, never fatal)."""
    out: dict = {}
    st, hd, _ = c.http(port, "/app/page?x=1")
    cookie = c.mesh_cookie_from(hd, COOKIE)
    minted_sid = (c.header(hd, "x-echo-sid") or [None])[0]
    out["anonymous"] = {"status": st, "set_cookie": bool(cookie), "upstream_sid": bool(minted_sid)}
    if not cookie:
        c.log("WARNING: the guard listener minted no session cookie (filter not active yet?); "
              "using a placeholder cookie, the classes below do not exercise session-guard.")
        cookie = f"{COOKIE}=v1.k1.placeholder.placeholder"
    checks = {
        "steady": ("/app/page?x=1", {"Cookie": cookie}),
        "url": ("/?jsessionid=ABC&x=1", {"Cookie": cookie}),
        "forged": ("/app/page?x=1", {"Cookie": tamper(cookie)}),
        "malformed": ("/app/page?x=1", {"Cookie": FORGED}),
        "login": ("/auth/login", {"Cookie": cookie}),
    }
    for cls, (path, hdrs) in checks.items():
        st, hd, _ = c.http(port, path, hdrs)
        sid = (c.header(hd, "x-echo-sid") or [None])[0]
        out[cls] = {
            "status": st,
            "set_cookie": bool(c.mesh_cookie_from(hd, COOKIE)),
            "upstream_path": (c.header(hd, "x-echo-path") or [None])[0],
            "upstream_sid_same_as_minted": (sid == minted_sid) if sid and minted_sid else None,
            "signal_header_leaked": bool(c.header(hd, "x-session-guard")),
        }
    fresh = lambda k: out[k]["set_cookie"] and out[k]["upstream_sid_same_as_minted"] is False  # noqa: E731
    expect = {
        "anonymous": out["anonymous"]["set_cookie"] and out["anonymous"]["upstream_sid"],
        "steady": out["steady"]["upstream_sid_same_as_minted"] is True,
        "url": out["url"]["upstream_path"] == "/?x=1" and out["url"]["upstream_sid_same_as_minted"] is True,
        "forged": fresh("forged"),
        "malformed": fresh("malformed"),
        "login": out["login"]["set_cookie"] and not out["login"]["signal_header_leaked"],
    }
    c.log("probe (one request per class on the guard listener: does the filter take the intended path?)")
    for cls in expect:
        c.log(f"  {cls:<10} {'ok' if expect[cls] else 'NOT AS INTENDED'}: {json.dumps(out[cls])}")
    out["as_intended"] = expect
    return cookie, out


def memory_probe(work: Path, subs: dict, env: dict, cpus: str | None) -> dict:
    """Cold-start RSS of the bench Envoy with only `none`, `none+empty`, `none+guard`, at
    --concurrency 1 and 2. Envoy runs one VM per plugin on the main thread plus one per worker,
    so per-worker VM memory = [RSS(c2) - RSS(c1)] of a config minus the same for `none` alone."""
    variants = {"none": ("empty", "guard"), "empty": ("guard",), "guard": ("empty",)}
    out: dict = {}
    for conc in (1, 4):
        for name, cut in variants.items():
            (admin,) = c.free_ports(1)
            s = dict(subs, ADMIN_PORT=admin)
            cfg = c.render(c.PERF / "envoy-bench.yaml", work / f"mem-{name}-c{conc}.yaml", s, cut=cut)
            e = c.Envoy(f"mem-{name}-c{conc}", cfg, admin, conc, cpus=cpus, env=env)
            try:
                e.wait_ready()
                time.sleep(1.0)  # let background compilation settle
                out[f"{name}_c{conc}"] = e.rss_kib()
            finally:
                e.stop()
    for name in ("empty", "guard"):
        out[f"{name}_vm_per_worker_kib"] = ((out[f"{name}_c4"] - out[f"{name}_c1"])
                                            - (out["none_c4"] - out["none_c1"])) / 3
        out[f"{name}_total_c1_kib"] = out[f"{name}_c1"] - out["none_c1"]
    return out


def summarize(cls: str, runs: dict[str, list[dict]], counters: dict[str, int], guard_requests: int) -> dict:
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    s: dict = {"listeners": {}, "counters_per_request": {}}
    for name, rs in runs.items():
        s["listeners"][name] = {
            "rps": med([r["rps"] for r in rs]),
            "rps_min": min(r["rps"] for r in rs), "rps_max": max(r["rps"] for r in rs),
            "p50_us": med([r["p50_us"] for r in rs]), "p99_us": med([r["p99_us"] for r in rs]),
            "cpu_us_per_req": med([r["cpu_us_per_req"] for r in rs]),
            "util": med([r["util"] for r in rs]), "runq": med([r["runq"] for r in rs]),
            "bad": sum(r["bad"] for r in rs), "requests": sum(r["requests"] for r in rs),
        }
    for name in runs:
        if name == "none":
            continue
        s[f"{name}_extra_us"] = med([1e6 / b["rps"] - 1e6 / a["rps"] for a, b in zip(runs["none"], runs[name])])
        s[f"{name}_extra_cpu_us"] = med([b["cpu_us_per_req"] - a["cpu_us_per_req"]
                                         for a, b in zip(runs["none"], runs[name])])
    if "nodbsc" in runs:  # DBSC on (guard) minus off (nodbsc), paired per round
        s["dbsc_on_minus_off_cpu_us"] = med([g["cpu_us_per_req"] - o["cpu_us_per_req"]
                                             for g, o in zip(runs["guard"], runs["nodbsc"])])
        s["dbsc_on_minus_off_us"] = med([1e6 / g["rps"] - 1e6 / o["rps"] for g, o in zip(runs["guard"], runs["nodbsc"])])
    if "calls" in runs:  # the floor ratio, paired per round: guard's extra / the probe's extra
        s["floor_ratio_cpu"] = med([(g["cpu_us_per_req"] - n["cpu_us_per_req"]) /
                                    max(p["cpu_us_per_req"] - n["cpu_us_per_req"], 1e-9)
                                    for n, g, p in zip(runs["none"], runs["guard"], runs["calls"])])
        s["floor_ratio"] = med([(1e6 / g["rps"] - 1e6 / n["rps"]) / max(1e6 / p["rps"] - 1e6 / n["rps"], 1e-9)
                                for n, g, p in zip(runs["none"], runs["guard"], runs["calls"])])
    if guard_requests:
        s["counters_per_request"] = {k.replace("wasmcustom.", ""): round(v / guard_requests, 3)
                                     for k, v in sorted(counters.items()) if v}
    return s


def report_extras(result: dict, classes: list[str]) -> None:
    """The floor ratio (steady: guard vs the `calls` probe) and the variants' ratios."""
    fl = result["floor"]
    st = result["classes"].get("steady", {})
    if "floor_ratio_cpu" in st:
        fr = st["floor_ratio_cpu"]
        c.log(f"floor ratio (steady): session-guard extra / the `calls` probe's extra (same host calls, "
              f"no computation; paired per round): {fr:.2f}x by cpu, {st['floor_ratio']:.2f}x by 1/rps "
              f"(target <= {FLOOR_TARGET}x by cpu: {'PASS' if fr <= FLOOR_TARGET else 'MISS'}); the probe's "
              f"extra {st['calls_extra_cpu_us']:.1f} us = {st['calls_extra_cpu_us'] / fl['empty_extra_cpu_us']:.2f}x "
              f"the empty filter")
    names = [n for n in result.get("variants", {})]
    if not names:
        return
    c.log("variants (ratio to the empty filter by cpu; same rounds as `guard`):")
    c.log(f"{'class':<10} {'guard':>7} " + " ".join(f"{n:>9}" for n in names))
    for cls in classes:
        s = result["classes"][cls]
        row = [s.get(f"{n}_extra_cpu_us") for n in names]
        c.log(f"{cls:<10} {s['ratio_cpu']:>6.2f}x " + " ".join(
            f"{(v / fl['empty_extra_cpu_us']):>8.2f}x" if v is not None else f"{'-':>9}" for v in row))
    c.log("  size: " + ", ".join(f"{n} {b / 1024:.1f} KiB" for n, b in result["variants"].items()))
    if "native" in names:
        c.log("native build vs Wasm (cpu us of extra worker time per request; req/s as a share of no filter):")
        c.log(f"{'class':<10} {'guard':>8} {'native':>8} {'guard rps':>10} {'native rps':>11}")
        for cls in classes:
            s = result["classes"][cls]
            li = s["listeners"]
            none_rps = li["none"]["rps"] or float("nan")
            c.log(f"{cls:<10} {s['guard_extra_cpu_us']:>8.1f} {s.get('native_extra_cpu_us', float('nan')):>8.1f} "
                  f"{li['guard']['rps'] / none_rps:>9.0%} {li.get('native', {}).get('rps', float('nan')) / none_rps:>10.0%}")


def report_dbsc(result: dict, classes: list[str]) -> None:
    """DBSC's costs from the classes (every class ran with dbsc.enabled on the guard listener)."""
    cs = result["classes"]
    if not ({"bound", "refresh", "authed"} & set(cs)) and "dbsc_on_minus_off_cpu_us" not in cs.get("steady", {}):
        return
    fl = result["floor"]["empty_extra_cpu_us"]
    builds = ["guard"] + (["native"] if "native" in result.get("variants", {}) else [])
    st = cs.get("steady", {})
    if "dbsc_on_minus_off_cpu_us" in st:
        d = st["dbsc_on_minus_off_cpu_us"]
        c.log(f"DBSC on, unbound session (steady, guard - nodbsc, paired per round): {d:+.1f} us by cpu "
              f"({d / fl:+.2f}x), {st['dbsc_on_minus_off_us']:+.1f} us by 1/rps; no host call is added "
              f"(CALLS_SEQ, tests/bench_probe.rs)")
    if not ({"bound", "refresh", "authed"} & set(cs)):
        return
    c.log("DBSC (dbsc.enabled on every session-guard listener: `authed` is a logged-in unbound session's")
    c.log("request, `bound` the same bound to a device key, with its ticket; `steady` is anonymous):")
    base = "authed" if "authed" in cs else "steady"
    for b in builds:
        line = []
        if "bound" in cs and base in cs:
            d = cs["bound"][f"{b}_extra_cpu_us"] - cs[base][f"{b}_extra_cpu_us"]
            line.append(f"bound - {base} {d:+.1f} us ({d / fl:+.2f}x; difference of medians, not paired)")
        if "refresh" in cs:
            li = cs["refresh"]["listeners"]
            line.append(f"refresh {li[b]['cpu_us_per_req']:.1f} us of worker cpu per request "
                        f"(none {li['none']['cpu_us_per_req']:.1f}), {li[b]['rps']:.0f} refreshes/s")
        c.log(f"  {b:<6} " + "; ".join(line))
    if "refresh" in cs:
        c.log("  refresh: answered by the filter itself (one ES256 verify), while `none` and `empty` forward the")
        c.log("  POST to the app: its extra over `none` is its cost minus the upstream trip it does not make.")
        c.log("  wrk replays one signed proof: valid until its challenge expires (ticket_ttl_s + 60 s)")


def report(result: dict, classes: list[str], args) -> None:
    c.log("\n== throughput and latency (medians over rounds; 1 worker; wrk -t1 "
          f"-c{args.connections}, {args.duration:g}s runs)")
    c.log(f"{'class':<10} {'listener':<7} {'req/s':>9} {'(min-max)':>15} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'cpu us/req':>10} {'util':>5} {'runq':>5} {'bad':>5}")
    for cls in classes:
        for name, x in result["classes"][cls]["listeners"].items():
            c.log(f"{cls:<10} {name:<7} {x['rps']:>9.0f} {x['rps_min']:>7.0f}-{x['rps_max']:<7.0f} "
                  f"{x['p50_us'] / 1000:>8.2f} {x['p99_us'] / 1000:>8.2f} {x['cpu_us_per_req']:>10.1f} "
                  f"{x['util'] * 100:>4.0f}% {x['runq'] * 100:>4.0f}% {x['bad']:>5}")
    c.log("  cpu us/req, util: the worker thread's CPU time per request and share of wall time; runq: share of")
    c.log("  wall time it waited for a CPU (other load); bad: non-2xx/3xx + socket errors (should be 0)")

    c.log("\n== extra worker time per request over no filter (us; paired per round, median)")
    c.log("   1/rps: 1e6/rps_listener - 1e6/rps_none, exact when the worker is at 100 % CPU;")
    c.log("   cpu:   the worker thread's own CPU time per request, same difference (no saturation needed)")
    c.log(f"{'class':<10} {'empty':>7} {'guard':>7} {'ratio':>6} | {'empty':>7} {'guard':>7} {'ratio':>6} |"
          f" {'target':>7} {'verdict':<16}")
    c.log(f"{'':<10} {'1/rps':>7} {'1/rps':>7} {'':>6} | {'cpu':>7} {'cpu':>7} {'':>6} |")
    for cls in classes:
        s = result["classes"][cls]
        tgt = TARGETS.get(cls)
        util = min(s["listeners"][n]["util"] for n in LISTENERS)
        method = "1/rps" if util >= 0.9 else "cpu"
        ratio = s["ratio"] if method == "1/rps" else s["ratio_cpu"]
        s["verdict_method"] = method
        verdict = "-"
        if tgt:
            s["verdict"] = verdict = "PASS" if ratio <= tgt else "MISS"
            verdict += f" (by {method})"
        c.log(f"{cls:<10} {s['empty_extra_us']:>7.1f} {s['guard_extra_us']:>7.1f} {s['ratio']:>5.2f}x | "
              f"{s['empty_extra_cpu_us']:>7.1f} {s['guard_extra_cpu_us']:>7.1f} {s['ratio_cpu']:>5.2f}x | "
              f"{('<= %gx' % tgt) if tgt else '':>7} {verdict:<16}")
    fl = result["floor"]
    c.log(f"   ratio = guard extra / the empty filter's extra pooled over all classes and rounds "
          f"({fl['empty_extra_us']:.1f} us by 1/rps, {fl['empty_extra_cpu_us']:.1f} us by cpu, "
          f"{fl['samples']} pairs);")
    c.log("   the verdict uses 1/rps only if every listener's worker util was >= 90 % in that class, else cpu")
    report_extras(result, classes)
    report_dbsc(result, classes)
    size = result["guard_wasm_bytes"]
    c.log(f"wasm size: {size} bytes = {size / 1024:.1f} KiB (target <= {WASM_LIMIT // 1024} KiB: "
          f"{'PASS' if size <= WASM_LIMIT else 'MISS'}); empty filter {result['empty_wasm_bytes'] / 1024:.1f} KiB")

    c.log("\n== session-guard counters per request, by class (what the filter decided)")
    for cls in classes:
        cp = result["classes"][cls]["counters_per_request"]
        c.log(f"{cls:<10} " + (", ".join(f"{k}={v:g}" for k, v in cp.items()) or "(no session_guard counters moved)"))

    c.log("\n== memory")
    r = result["rss_kib"]
    c.log(f"bench Envoy VmRSS (3 listeners, 1 worker): before traffic {kib(r['start'])}, "
          f"after {kib(r['end'])} (+{kib(r['end'] - r['start'])})")
    mp = result.get("memory_probe")
    if mp:
        c.log("cold-start VmRSS of one-listener configs (concurrency 1 / 4): " + ", ".join(
            f"{n} {kib(mp[n + '_c1'])} / {kib(mp[n + '_c4'])}" for n in ("none", "empty", "guard")))
        c.log(f"VM memory per extra worker ((c4-c1)/3 over `none`): empty {kib(mp['empty_vm_per_worker_kib'])}, "
              f"session-guard {kib(mp['guard_vm_per_worker_kib'])}")
        c.log(f"plugin alone at c1 over `none` (V8 engine start + module + VMs): empty "
              f"{kib(mp['empty_total_c1_kib'])}, session-guard {kib(mp['guard_total_c1_kib'])}")
    ws = result["wasm_stats"]["end"]
    c.log("admin /stats matching 'wasm' (after; Envoy exposes VM counts, not VM memory): " + (", ".join(
        f"{k}={v}" for k, v in sorted(ws.items()) if "wasmcustom" not in k) or "(none)"))
    am = result.get("admin_memory") or {}
    if am:
        c.log("admin /memory (Envoy heap; Wasm linear memory is mmap'd by V8, not in here): " + ", ".join(
            f"{k}={int(am[k]) / 1048576:.1f} MiB" for k in ("allocated", "heap_size", "pageheap_free_bytes")
            if k in am))


PROBE_WASM = str(c.PROBE_DIR / "hostcall_probe.wasm")
PROBE_OPS = {
    "none": "the probe module doing nothing (its floor)",
    "req_headers_map": "get_map_bytes(request headers): whole map",
    "req_header_one": "get_map_value_bytes(request headers, cookie)",
    "resp_headers_map": "get_map_bytes(response headers): whole map",
    "property_cluster": "get_property(xds.cluster_name)",
    "time": "get_current_time",
    "random": "WASI random_get, 16 bytes",
    "metric": "increment_metric",
    "set_header": "set_map_value_bytes(request header)",
    "hmac": "HMAC-SHA256 of 120 bytes, keyed per use (pure Wasm)",
    "hmac_prekeyed": "HMAC-SHA256 of 120 bytes, keyed state cloned (pure Wasm)",
    "cluster_once": "get_property(xds.cluster_name) once: the first read resolves the route",
    "steady_calls": "session-guard's host calls on a steady request, once (no compute)",
    "steady_cluster_last": "the same calls, xds.cluster_name read after the header edits",
}
# Probe configurations of the ops that are not a single probe op name.
PROBE_ALIASES = {
    "cluster_once": "seq=cluster",
    "steady_cluster_last": "seq=req_map+time+rm_cookie+set_sid+metric+cluster+resp_map+resp_time",
}
ONCE = {"steady_calls", "cluster_once", "steady_cluster_last"}  # done once per request


def hostcalls_main(args) -> int:
    """Price single host calls: one listener per op (each doing the op `--calls` times per
    request), the steady request (valid-looking cookie, clean URL), interleaved rounds.
    Price of one call = (extra(op) - extra(none)) / calls, extra as in the class bench."""
    for f, what in ((c.ENVOY_BIN, "Envoy (make deps)"), (PROBE_WASM, "hostcall probe (make bench builds it)")):
        if not Path(f).exists():
            raise SystemExit(f"missing {what}: {f}")
    work = c.RUN_DIR / "bench"
    work.mkdir(parents=True, exist_ok=True)
    envoy_cpus, load_cpus = cpu_plan(args.pin)
    prio = c.raise_priority(int(args.nice)) if args.nice not in ("", None) else "priority unchanged"
    # BENCH_PROBE_OPS: a comma list to price instead of the default set; `seq=a+b+...` runs a
    # sequence of single calls once per request (steps: see perf/hostcall-probe/src/lib.rs).
    ops = [o.strip() for o in os.environ.get("BENCH_PROBE_OPS", ",".join(PROBE_OPS)).split(",") if o.strip()]
    if "none" not in ops:
        ops.insert(0, "none")
    up_admin, app_port, auth_port, api_port, admin, p_none, p_guard, *probe_ports = c.free_ports(7 + len(ops))
    ports = {"no filter": p_none, **dict(zip(ops, probe_ports)), "session-guard": p_guard}
    c.log(f"== host-call pricing: {args.calls} calls per request, {args.rounds} rounds x {args.duration}s, "
          f"wrk -t1 -c{args.connections}; bench Envoy on cpu {envoy_cpus or 'any'}; {prio}")
    tpl = (c.PERF / "envoy-hostcalls.yaml").read_text()
    m = re.search(r"(?ms)^[ \t]*# BEGIN probe\n(.*?)^[ \t]*# END probe\n", tpl)
    if not m:
        raise SystemExit("envoy-hostcalls.yaml: no probe block")
    once = lambda op: op in ONCE or op.startswith("seq=")  # noqa: E731
    blocks = "".join(m.group(1).replace("@PROBE_NAME@", f"op{i}").replace("@PROBE_PORT@", str(ports[op]))
                     .replace("@PROBE_CONFIG@", f"{PROBE_ALIASES.get(op, op)}:{1 if once(op) else args.calls}")
                     for i, op in enumerate(ops))
    (work / "hostcalls.tpl.yaml").write_text(tpl[:m.start()] + blocks + tpl[m.end():])
    cfg = c.render(work / "hostcalls.tpl.yaml", work / "hostcalls.yaml", {
        "ADMIN_PORT": admin, "PORT_NONE": p_none, "PORT_GUARD": p_guard, "APP_PORT": app_port,
        "AUTH_PORT": auth_port, "PROBE_WASM": PROBE_WASM, "GUARD_WASM": c.GUARD_WASM})
    up_cfg = c.render(c.PERF / "upstream.yaml", work / "upstream.yaml", {
        "UP_ADMIN_PORT": up_admin, "APP_PORT": app_port, "AUTH_PORT": auth_port, "API_PORT": api_port})
    upstream = c.Envoy("upstream", up_cfg, up_admin, args.upstream_concurrency, cpus=load_cpus)
    bench = c.Envoy("hostcalls", cfg, admin, 1, cpus=envoy_cpus, env={"SESSION_GUARD_KEY": c.random_key()})
    upstream.wait_ready()
    bench.wait_ready()
    (worker,) = bench.worker_tids()
    # The steady request: a valid session cookie (minted by session-guard), a clean URL.
    _st, hd, _ = c.http(p_guard, "/app/page?x=1")
    cookie = c.mesh_cookie_from(hd, COOKIE) or f"{COOKIE}=v1.k1.{'A' * 60}.{'B' * 43}"
    path, hdrs = "/app/page?x=1", {"Cookie": cookie}
    names = list(ports)
    for name in names:
        if args.warmup > 0:
            c.run_wrk(ports[name], path, duration=args.warmup, connections=args.connections,
                      headers=hdrs, cpus=load_cpus)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            cpu0, t0 = c.thread_cpu_ns(bench.pid, worker), time.monotonic()
            r = c.run_wrk(ports[name], path, duration=args.duration, connections=args.connections,
                          headers=hdrs, cpus=load_cpus)
            cpu1, t1 = c.thread_cpu_ns(bench.pid, worker), time.monotonic()
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            r["cpu_us_per_req"] = (cpu1 - cpu0) / 1e3 / max(r["requests"], 1)
            r["util"] = (cpu1 - cpu0) / 1e9 / (t1 - t0)
            r.pop("stdout", None)
            runs[name].append(r)
    bench.stop()
    upstream.stop()
    med = statistics.median
    base = runs["no filter"]
    shown = ops + ["session-guard"]
    extra = {n: med([b["cpu_us_per_req"] - a["cpu_us_per_req"] for a, b in zip(base, runs[n])]) for n in shown}
    extra_rps = {n: med([1e6 / b["rps"] - 1e6 / a["rps"] for a, b in zip(base, runs[n])]) for n in shown}
    c.log(f"\n{'op':<20} {'req/s':>7} {'util':>5} {'extra/req cpu':>13} {'per call cpu':>12} "
          f"{'per call 1/rps':>14}  what")
    c.log(f"{'no filter':<20} {med([r['rps'] for r in base]):>7.0f} "
          f"{med([r['util'] for r in base]) * 100:>4.0f}% {0:>13.1f} {'':>12} {'':>14}  router only")
    def paired(a: str, b: str, key: str = "cpu_us_per_req") -> float:
        """Median over rounds of b - a, both measured in the same round (drift cancels)."""
        if key == "rps":
            return med([1e6 / y["rps"] - 1e6 / x["rps"] for x, y in zip(runs[a], runs[b])])
        return med([y[key] - x[key] for x, y in zip(runs[a], runs[b])])

    for n in shown:
        k = 1 if once(n) else args.calls
        single = n not in ("none", "session-guard")
        per = paired("none", n) / k if single else float("nan")
        per_rps = paired("none", n, "rps") / k if single else float("nan")
        what = PROBE_OPS.get(n, "the real filter, steady request" if n == "session-guard" else "sequence, once")
        c.log(f"{n:<20} {med([r['rps'] for r in runs[n]]):>7.0f} {med([r['util'] for r in runs[n]]) * 100:>4.0f}% "
              f"{extra[n]:>13.1f} {per:>12.2f} {per_rps:>14.2f}  {what}")
    c.log("  extra/req: worker CPU us per request over `no filter`; per call: (op - `none`) / "
          f"{args.calls} (/1 for the ops done once); all medians of differences within a round")
    if "steady_calls" in extra:
        floor = paired("no filter", "none")
        calls = paired("none", "steady_calls")
        rest = paired("steady_calls", "session-guard")
        c.log(f"  session-guard steady ~ Wasm floor {floor:.1f} + its host calls {calls:.1f} + "
              f"the rest (its own Wasm computation) {rest:.1f} us (paired medians; the real filter's "
              f"extra: {extra['session-guard']:.1f} us)")
    if "steady_cluster_last" in extra and "steady_calls" in extra:
        c.log(f"  reading xds.cluster_name after the header edits instead of before: "
              f"{-paired('steady_calls', 'steady_cluster_last'):+.1f} us per request saved")
    result = {"calls": args.calls, "extra_cpu_us": extra, "extra_1rps_us": extra_rps,
              "runs": {n: [{k: v for k, v in r.items()} for r in rs] for n, rs in runs.items()}}
    out = Path(args.json).with_name("hostcalls.json")
    out.write_text(json.dumps(result, indent=2))
    c.log(f"(raw results: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
