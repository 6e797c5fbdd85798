#!/usr/bin/env python3
"""Bounded soak of session-guard through the shipped ingress config (`make soak`).

Envoy runs envoy/ingress.yaml with --concurrency 2 (ports and the wasm path substituted; the key
comes from SESSION_GUARD_KEY in its environment). Upstreams app/auth/api are a second Envoy
answering with direct_response (perf/upstream.yaml): /auth/login signals `login` for alice,
/auth/logout signals `logout`, /api/spoof is an untrusted cluster trying to signal a login.
Every upstream response echoes what the upstream received, so the driver checks the contract on
every response, not only statuses.

Traffic: wrk, 2 threads, round-robin over the classes below, SOAK_REQUESTS requests in total
(default 200000) after a warm-up of SOAK_WARMUP requests (default 5 % of that, at least 2000).

Expected status per class: 200 for everything, except `url`, whose expected status follows the
configured url.action: strip 200 (forwarded), redirect 302, reject 400 (those replies are the
filter's own, counted under `local`). Anything else is an unexpected status.

Classes (request -> what the contract requires; checked when mode is `enforce`):
  anon         no cookie            -> a session is minted: Set-Cookie, x-session-id upstream
  valid        valid mesh cookie    -> the same session ID upstream; mesh cookie not forwarded
  forged_sig   valid value, 1 char flipped  -> not accepted, new session minted
  forged_junk  `v1.k1.AAAA.BBBB`    -> not accepted, new session minted
  url          ;jsessionid= and ?JSESSIONID=&PHPSESSID= with keep=1 -> upstream sees neither
               session parameter, keeps keep=1, and the cookie's session
  login        /auth/login          -> rotation cookie set; x-session-id-next sent to auth;
                                       signal headers never reach the client
  logout       /auth/logout         -> cookie expired (Max-Age=0)
  spoof        /api/spoof (untrusted signal) -> ignored: session kept, no next ID sent to api
  duplicate    two valid mesh cookies -> neither accepted, new session minted
  all          no x-session-guard* response header reaches the client; no mesh cookie upstream

Memory: Envoy's VmRSS is sampled during the run. The baseline is taken after the warm-up (V8
has compiled and tiered up, pools and stats exist); growth from there to the end of the run must
stay under SOAK_RSS_GROWTH_MIB (default 16 MiB). A per-request leak of ~80 bytes in one of the
two VMs over 200k requests crosses that; normal allocator and V8 heap jitter stays well below.

Exit status: 0 only if all requests completed within SOAK_MAX_SECONDS (900; keep it under the
idle timeout, as wrk replays the same cookies), there were no unexpected statuses, no socket errors, no contract
violations (SOAK_CHECK_CONTRACT=0 turns those into a report only), no Wasm panic in Envoy's log,
and RSS growth within the threshold.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


def extract_filter_config(text: str) -> dict | None:
    """The session-guard JSON from the StringValue `value:` in a YAML config (block or inline)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "google.protobuf.StringValue" not in line:
            continue
        for j in range(i + 1, min(i + 8, len(lines))):
            m = re.match(r"^(\s*)value:\s*(.*)$", lines[j])
            if not m:
                continue
            indent, rest = len(m.group(1)), m.group(2).strip()
            if rest.startswith("|") or rest.startswith(">"):
                body = []
                for ln in lines[j + 1:]:
                    if ln.strip() and len(ln) - len(ln.lstrip()) <= indent:
                        break
                    body.append(ln)
                raw = "\n".join(body)
            elif rest.startswith("'"):
                raw = rest[1:-1].replace("''", "'")
            elif rest.startswith('"'):
                raw = json.loads(rest)
            else:
                raw = rest
            try:
                return json.loads(raw)
            except ValueError:
                return None
    return None


def render_ingress(src: Path, out: Path, ports: dict[int, int]) -> Path:
    text = src.read_text()
    for old, new in ports.items():
        text, n = re.subn(rf"(port_value:\s*){old}\b", rf"\g<1>{new}", text)
        if n != 1:
            raise SystemExit(f"soak: expected one `port_value: {old}` in {src}, found {n}")
    text, n = re.subn(r"(filename:\s*)\"?[^\"\s}]*session_guard\.wasm\"?",
                      lambda m: f'{m.group(1)}"{c.GUARD_WASM}"', text)
    if n < 1:
        raise SystemExit(f"soak: no session_guard.wasm filename in {src}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def main() -> int:
    c.install_cleanup()
    total = env_int("SOAK_REQUESTS", 200_000)
    warm = env_int("SOAK_WARMUP", max(2000, total // 20))
    threads = env_int("SOAK_THREADS", 2)
    conns = env_int("SOAK_CONNECTIONS", 32)
    rss_limit_mib = float(os.environ.get("SOAK_RSS_GROWTH_MIB", "16"))
    # wrk's -d: a cap in case a thread stalls. Keep it under the idle timeout (1800 s by
    # default): wrk replays the same cookies, which would expire as idle after that.
    max_seconds = env_int("SOAK_MAX_SECONDS", 900)
    check_contract = os.environ.get("SOAK_CHECK_CONTRACT", "1") != "0"
    src = Path(os.environ.get("SOAK_CONFIG") or c.ROOT / "envoy" / "ingress.yaml")
    for f, what in ((c.ENVOY_BIN, "Envoy (make deps)"), (c.GUARD_WASM, "session-guard wasm (make build)"),
                    (src, "ingress config")):
        if not Path(f).exists():
            raise SystemExit(f"missing {what}: {f}")

    cfg = extract_filter_config(src.read_text()) or {}
    mode = cfg.get("mode", "enforce")
    action = (cfg.get("url") or {}).get("action", "strip")
    cookie_cfg = cfg.get("cookie") or {}
    cookie_name = cookie_cfg.get("name", "__Host-session")
    mint = cookie_cfg.get("anonymous", True)
    url_status = {"strip": 200, "redirect": 302, "reject": 400}.get(action, 200)
    enforce = mode == "enforce"

    work = c.RUN_DIR / "soak"
    work.mkdir(parents=True, exist_ok=True)
    up_admin, app, auth, api, admin, listen = c.free_ports(6)
    up_cfg = c.render(c.PERF / "upstream.yaml", work / "upstream.yaml", {
        "UP_ADMIN_PORT": up_admin, "APP_PORT": app, "AUTH_PORT": auth, "API_PORT": api})
    front_cfg = render_ingress(src, work / "ingress.yaml",
                               {10000: listen, 9901: admin, 8080: app, 8081: auth, 8082: api})
    c.log("== session-guard soak")
    c.log(f"config: {src} (mode {mode}, url.action {action}, cookie {cookie_name}, "
          f"anonymous {mint}); wasm {c.GUARD_WASM} ({Path(c.GUARD_WASM).stat().st_size} bytes)")
    c.log(f"Envoy --concurrency 2; wrk -t{threads} -c{conns}; {total} requests after {warm} warm-up")

    upstream = c.Envoy("upstream", up_cfg, up_admin, 1)
    front = c.Envoy("ingress", front_cfg, admin, 2, env={"SESSION_GUARD_KEY": c.random_key()})
    upstream.wait_ready()
    front.wait_ready()
    rss_cold = front.rss_kib()

    # Two independent valid sessions, and the ID the upstream sees for the second.
    # (anonymous sessions if the config mints them, else sessions from a login)
    cookies = []
    for _ in range(2):
        _st, hd, _ = c.http(listen, "/soak/start")
        got = c.mesh_cookie_from(hd, cookie_name)
        if not got:
            _st, hd, _ = c.http(listen, "/auth/login")
            got = c.mesh_cookie_from(hd, cookie_name)
        cookies.append(got)
    active = all(cookies)
    if not active:
        c.log("WARNING: no session cookie minted (filter not active?); using placeholders")
        cookies = [f"{cookie_name}=v1.k1.placeholder{i}.placeholder" for i in range(2)]
    _st, hd, _ = c.http(listen, "/soak/start", {"Cookie": cookies[1]})
    sid = (c.header(hd, "x-echo-sid") or ["(none)"])[0]

    done_file = work / "wrk-done"

    def run(quota_total: int) -> dict:
        per_thread = max(1, -(-quota_total // threads))
        args = [str(per_thread), cookies[0], cookies[1], sid, cookie_name, str(url_status),
                "1" if (enforce and check_contract) else "0", "1" if mint else "0", str(done_file)]
        return c.run_wrk(listen, "/", duration=max_seconds, connections=conns, threads=threads,
                         script=c.PERF / "wrk" / "soak.lua", script_args=args, done_file=done_file)

    run(warm)
    rss_base = front.rss_kib()
    ctr_base = front.stats("session_guard")
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sampler():
        t0 = time.monotonic()
        while not stop.is_set():
            try:
                samples.append((time.monotonic() - t0, front.rss_kib()))
            except OSError:
                return
            stop.wait(0.5)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    t0 = time.monotonic()
    res = run(total)
    wall = time.monotonic() - t0
    stop.set()
    th.join()
    rss_end = front.rss_kib()
    ctr_end = front.stats("session_guard")
    log_text = c.tail(front.log_path, 100000)
    front_alive = front.proc.poll() is None
    front.stop()
    upstream.stop()

    # --- report -------------------------------------------------------------------------------
    classes = res["classes"]
    unexpected = sum(e["bad_status"] for e in classes.values())
    violations = {f"{cls}.{k}": n for cls, e in classes.items() for k, n in e["violations"].items()}
    sock_err = res["err_connect"] + res["err_read"] + res["err_write"] + res["err_timeout"]
    done = sum(e["n"] for e in classes.values())
    c.log(f"\n{'class':<12} {'requests':>9} {'statuses':<22} {'unexpected':>10}  contract violations")
    for cls in sorted(classes):
        e = classes[cls]
        sts = ",".join(f"{k}:{v}" for k, v in sorted(e["status"].items()))
        vio = ", ".join(f"{k}={v}" for k, v in sorted(e["violations"].items())) or "-"
        c.log(f"{cls:<12} {e['n']:>9} {sts:<22} {e['bad_status']:>10}  {vio}")
    rps = done / wall if wall else 0
    c.log(f"total {done} requests in {wall:.1f}s = {rps:.0f} req/s; latency p50 "
          f"{res['p50_us'] / 1000:.2f} ms, p99 {res['p99_us'] / 1000:.2f} ms; socket errors {sock_err}")

    growth = (rss_end - rss_base) / 1024
    c.log(f"\nEnvoy VmRSS: cold {rss_cold / 1024:.1f} MiB, after warm-up (baseline) {rss_base / 1024:.1f} MiB, "
          f"end {rss_end / 1024:.1f} MiB; growth {growth:+.1f} MiB (limit {rss_limit_mib:g} MiB); "
          f"{(rss_end - rss_base) * 1024 / max(done, 1):+.1f} bytes/request")
    if samples:
        step = max(1, len(samples) // 8)
        picks = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
        c.log("  samples: " + ", ".join(f"{t:.0f}s {k / 1024:.1f}" for t, k in picks) + " (MiB)")
    delta = {k.replace("wasmcustom.", ""): ctr_end[k] - ctr_base.get(k, 0) for k in ctr_end
             if ctr_end[k] - ctr_base.get(k, 0)}
    c.log("session_guard counters during the run: " + (
        ", ".join(f"{k}={v}" for k, v in sorted(delta.items())) or "(none moved)"))
    panics = [ln for ln in log_text.splitlines() if re.search(r"panick|wasm.*(critical|failed)", ln, re.I)]
    c.log(f"Envoy log: {len(panics)} lines mentioning a Wasm panic/failure" + (
        ":\n  " + "\n  ".join(ln[:300] for ln in panics[:5]) if panics else ""))

    failures = []
    if done < total:
        failures.append(f"only {done} of {total} requests within SOAK_MAX_SECONDS={max_seconds}")
    if not active:
        failures.append("the filter minted no session cookie")
    if unexpected:
        failures.append(f"{unexpected} unexpected statuses")
    if sock_err:
        failures.append(f"{sock_err} socket errors")
    if violations and check_contract:
        failures.append(f"{sum(violations.values())} contract violations")
    if panics:
        failures.append("Wasm panic/failure in Envoy's log")
    if not front_alive:
        failures.append("Envoy exited during the soak")
    if growth > rss_limit_mib:
        failures.append(f"RSS grew {growth:.1f} MiB > {rss_limit_mib:g} MiB")
    Path(work / "result.json").write_text(json.dumps({
        "requests": done, "seconds": wall, "rps": rps, "classes": classes, "rss_kib": {
            "cold": rss_cold, "baseline": rss_base, "end": rss_end, "samples": samples},
        "counters": delta, "failures": failures}, indent=2))
    c.log(f"\nSOAK {'FAIL: ' + '; '.join(failures) if failures else 'PASS'} (details: {work})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
