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
steady <= 2x, anonymous <= 3x, login <= 3x; wasm size <= 200 KiB.
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

LISTENERS = ("none", "empty", "guard")
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
}
TARGETS = {"steady": 2.0, "anonymous": 3.0, "login": 3.0}
WASM_LIMIT = 200 * 1024


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

    up_admin, app_port, auth_port, api_port, admin, p_none, p_empty, p_guard = c.free_ports(8)
    ports = {"none": p_none, "empty": p_empty, "guard": p_guard}
    up_cfg = c.render(c.PERF / "upstream.yaml", work / "upstream.yaml", {
        "UP_ADMIN_PORT": up_admin, "APP_PORT": app_port, "AUTH_PORT": auth_port, "API_PORT": api_port})
    subs = {"ADMIN_PORT": admin, "PORT_NONE": p_none, "PORT_EMPTY": p_empty, "PORT_GUARD": p_guard,
            "APP_PORT": app_port, "AUTH_PORT": auth_port, "EMPTY_WASM": c.EMPTY_WASM,
            "GUARD_WASM": c.GUARD_WASM}

    result: dict = {"guard_wasm_bytes": guard_size, "empty_wasm_bytes": empty_size,
                    "rounds": args.rounds, "duration_s": args.duration,
                    "connections": args.connections, "classes": {}}

    # --- memory probes: cold RSS of configurations with/without each Wasm listener --------
    if not args.no_mem_probe:
        result["memory_probe"] = memory_probe(work, subs, env, envoy_cpus)

    # --- the bench pair ---------------------------------------------------------------------
    upstream = c.Envoy("upstream", up_cfg, up_admin, args.upstream_concurrency, cpus=load_cpus)
    bench_cfg = c.render(c.PERF / "envoy-bench.yaml", work / "envoy-bench.yaml", subs)
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

    def request_headers(cls: str, fresh: bool = False) -> dict[str, str]:
        """The class's Cookie header. fresh: a newly minted session, so that no class runs into
        the re-issue the filter does once a session is a tenth of its idle timeout old (3 min
        by default): re-issue is amortised over minutes in real traffic, not per request."""
        nonlocal cookie
        spec = CLASSES[cls][1]
        if spec is None:
            return {}
        if fresh and spec in ("valid", "tampered"):
            _st, hd, _ = c.http(ports["guard"], "/app/page?x=1")
            cookie = c.mesh_cookie_from(hd, COOKIE) or cookie
        return {"Cookie": {"valid": cookie, "tampered": tamper(cookie)}.get(spec, spec)}

    # --- warm up: every class once on every listener (V8 tiers up the hot paths, pools fill) ---
    if args.warmup > 0:
        for cls in classes:
            for name in LISTENERS:
                c.run_wrk(ports[name], CLASSES[cls][0], duration=args.warmup,
                          connections=args.connections, headers=request_headers(cls), cpus=load_cpus)

    # --- measure --------------------------------------------------------------------------
    all_runs: dict[str, dict[str, list[dict]]] = {}
    for cls in classes:
        path = CLASSES[cls][0]
        hdrs = request_headers(cls, fresh=True)
        runs: dict[str, list[dict]] = {n: [] for n in LISTENERS}
        all_runs[cls] = runs
        counter_delta: dict[str, int] = {}
        guard_requests = 0
        for rnd in range(args.rounds):
            order = LISTENERS[rnd % 3:] + LISTENERS[:rnd % 3]
            for name in order:
                before_ctr = bench.stats("session_guard") if name == "guard" else None
                (cpu0, wait0), t0 = c.thread_sched_ns(bench.pid, worker), time.monotonic()
                r = c.run_wrk(ports[name], path, duration=args.duration,
                              connections=args.connections, headers=hdrs, cpus=load_cpus)
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
                    for k, v in after.items():
                        counter_delta[k] = counter_delta.get(k, 0) + v - before_ctr.get(k, 0)
                    guard_requests += r["requests"]
        result["classes"][cls] = summarize(cls, runs, counter_delta, guard_requests)
        c.log(f"   measured {cls}: " + ", ".join(
            f"{n} {statistics.median(x['rps'] for x in runs[n]):.0f} rps" for n in LISTENERS))

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
    for name in LISTENERS:
        rs = runs[name]
        s["listeners"][name] = {
            "rps": med([r["rps"] for r in rs]),
            "rps_min": min(r["rps"] for r in rs), "rps_max": max(r["rps"] for r in rs),
            "p50_us": med([r["p50_us"] for r in rs]), "p99_us": med([r["p99_us"] for r in rs]),
            "cpu_us_per_req": med([r["cpu_us_per_req"] for r in rs]),
            "util": med([r["util"] for r in rs]), "runq": med([r["runq"] for r in rs]),
            "bad": sum(r["bad"] for r in rs), "requests": sum(r["requests"] for r in rs),
        }
    for name in ("empty", "guard"):
        s[f"{name}_extra_us"] = med([1e6 / b["rps"] - 1e6 / a["rps"] for a, b in zip(runs["none"], runs[name])])
        s[f"{name}_extra_cpu_us"] = med([b["cpu_us_per_req"] - a["cpu_us_per_req"]
                                         for a, b in zip(runs["none"], runs[name])])
    if guard_requests:
        s["counters_per_request"] = {k.replace("wasmcustom.", ""): round(v / guard_requests, 3)
                                     for k, v in sorted(counters.items()) if v}
    return s


def report(result: dict, classes: list[str], args) -> None:
    c.log("\n== throughput and latency (medians over rounds; 1 worker; wrk -t1 "
          f"-c{args.connections}, {args.duration:g}s runs)")
    c.log(f"{'class':<10} {'listener':<7} {'req/s':>9} {'(min-max)':>15} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'cpu us/req':>10} {'util':>5} {'runq':>5} {'bad':>5}")
    for cls in classes:
        for name in LISTENERS:
            x = result["classes"][cls]["listeners"][name]
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
    size = result["guard_wasm_bytes"]
    c.log(f"wasm size: {size} bytes = {size / 1024:.1f} KiB (target <= 200 KiB: "
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
