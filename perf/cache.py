#!/usr/bin/env python3
"""Behind a cache (`make bench-cache`, run at the end of `make bench`): the figure a site owner
asks first. One mixed workload through Varnish (Debian's `varnish`, `make cache-deps`) in
front of the real Envoy with the shipped envoy/ingress.yaml, for three variants in one run:

  no filter     envoy/ingress.yaml with the Wasm filter removed
  before #24    the filter as it was before issue 24 (commit 42da0ba, `make baseline-wasm`:
                target/baseline/session_guard.wasm); that build has no `exempt` key, so the
                shipped configuration's `exempt` line is left out for it
  new rule      target/wasm32-wasip1/release/session_guard.wasm with the shipped configuration

The workload (seeded, the same requests in the same order for every variant): clients that
arrive without a cookie (a page and its assets), then browse with whatever cookies they were
given: s-maxage pages, assets (public, max-age), private pages, a login through the auth
cluster (POST, the contract's login signal) for some of them; a load balancer probes /healthz
without cookies throughout. The upstream (perf/cache-upstream.yaml) answers each path with its
caching fields. The whole run is done under two VCLs (VCLS below): Varnish's default rules
and a lookup by URL whatever the request's cookies (as CDNs do), both with what
tests/shared_cache.rs adds (cookies dropped on asset paths, as operators do; X-Cache).

Printed, never asserted. Every process binds port 0 and reports it: Envoy through its admin
API, Varnish through `varnishadm debug.listen_address`. Knobs: CACHE_CLIENTS (60),
CACHE_STEPS (14 browsing steps per client), CACHE_SEED (24), CACHE_BASELINE_WASM."""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

BASELINE_WASM = os.environ.get("CACHE_BASELINE_WASM") or str(
    c.ROOT / "target" / "baseline" / "session_guard.wasm")
WORK = c.RUN_DIR / "cache"

# Two VCLs, both with tests/shared_cache.rs's additions (cookies dropped on asset paths,
# revalidation without grace, X-Cache for the reader):
#   builtin  Varnish's default rules: a request with a Cookie is passed (never looked up), a
#            response with Set-Cookie or `private` is not stored.
#   by-url   GET/HEAD looked up by URL whatever cookies the request carries, as CDNs do by
#            default; the response alone decides whether it is stored (same builtin rules).
VCL_HEAD = r"""vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "@PORT@"; }
sub vcl_recv {
    if (req.url ~ "^/(static|assets)/") { unset req.http.Cookie; }
@LOOKUP@}
sub vcl_backend_response {
    set beresp.grace = 0s;
    set beresp.keep = 1h;
}
sub vcl_deliver {
    if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
"""
VCLS = {
    "builtin": VCL_HEAD.replace("@LOOKUP@", ""),
    "by-url": VCL_HEAD.replace("@LOOKUP@", """    if ((req.method == "GET" || req.method == "HEAD") && !req.http.Authorization) {
        return (hash);
    }
"""),
}

STATIC = ["/static/app.js", "/static/app.css", "/static/font.woff2"]


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


# --- the workload -----------------------------------------------------------------------------

def plan(clients: int, steps: int, seed: int) -> list[tuple[int, str, str, str]]:
    """(client, method, path, class) in order; client -1 is the load balancer's probe."""
    rnd = random.Random(seed)
    out: list[tuple[int, str, str, str]] = []

    def page_with_assets(cl: int, path: str) -> None:
        out.append((cl, "GET", path, "page"))
        for a in rnd.sample(STATIC, 2) + [f"/assets/img-{rnd.randrange(30)}.png"]:
            out.append((cl, "GET", a, "asset"))

    for cl in range(clients):
        page_with_assets(cl, rnd.choice(["/", f"/news/{rnd.randrange(30)}"]))  # first visit
        logged_in = False
        for _ in range(steps):
            r = rnd.random()
            if r < 0.45:
                page_with_assets(cl, f"/news/{rnd.randrange(30)}")
            elif r < 0.75:
                out.append((cl, "GET", rnd.choice(["/account", f"/orders/{rnd.randrange(5)}"]),
                            "private"))
            elif r < 0.85 and not logged_in:
                out.append((cl, "POST", "/auth/login", "login"))
                logged_in = True
            else:
                out.append((cl, "GET", f"/assets/img-{rnd.randrange(30)}.png", "asset"))
            if rnd.random() < 0.3:
                out.append((-1, "GET", "/healthz", "health"))
    return out


class Client:
    """A browser's cookie jar for one host (name -> value; Max-Age=0 removes)."""

    def __init__(self) -> None:
        self.jar: dict[str, str] = {}

    def header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items())} if self.jar else {}

    def take(self, set_cookies: list[str]) -> None:
        for sc in set_cookies:
            name, _, value = sc.split(";", 1)[0].strip().partition("=")
            if "max-age=0" in sc.lower().replace(" ", ""):
                self.jar.pop(name, None)
            elif name:
                self.jar[name] = value


def drive(port: int, requests: list[tuple[int, str, str, str]]) -> dict:
    clients: dict[int, Client] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    res = {"requests": 0, "hits": 0, "set_cookie": 0, "bad": 0, "classes": {}}
    for cl, method, path, cls in requests:
        jar = clients.setdefault(cl, Client()) if cl >= 0 else Client()
        headers = jar.header()
        headers["Accept"] = "text/html" if cls in ("page", "private", "login") else "*/*"
        for attempt in (0, 1):
            try:
                conn.request(method, path, body=b"" if method == "POST" else None, headers=headers)
                r = conn.getresponse()
                r.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()  # a closed keep-alive connection: once more on a new one
                if attempt:
                    raise
        sc = r.headers.get_all("Set-Cookie") or []
        jar.take(sc)
        hit = r.headers.get("X-Cache") == "HIT"
        e = res["classes"].setdefault(cls, {"n": 0, "hits": 0, "set_cookie": 0})
        for d in (res, e):
            d["hits"] += hit
            d["set_cookie"] += bool(sc)
        res["requests"] += 1
        e["n"] += 1
        res["bad"] += r.status >= 400
    conn.close()
    return res


# --- the stack --------------------------------------------------------------------------------

class Varnish:
    """varnishd -F with its own -n work dir and admin secret; binds port 0, reports its port."""

    def __init__(self, backend_port: int, vcl: str, work: Path, tag: str):
        self.dir = Path(tempfile.mkdtemp(prefix="session-guard-cache-bench-"))
        self.dir.chmod(0o755)  # varnishd reads the VCL after dropping privileges
        text = VCLS[vcl].replace("@PORT@", str(backend_port))
        (self.dir / "bench.vcl").write_text(text)
        (work / f"varnish-{vcl}.vcl").write_text(text)
        (self.dir / "secret").write_text("session-guard-bench-secret\n")
        self.log = open(work / f"varnishd-{tag}.log", "w")
        self.proc = subprocess.Popen(
            ["varnishd", "-F", "-n", str(self.dir / "n"), "-a", "127.0.0.1:0", "-T", "127.0.0.1:0",
             "-s", "malloc,64m", "-S", str(self.dir / "secret"), "-f", str(self.dir / "bench.vcl")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        c._live.append(self)  # stopped with the Envoys if the driver is interrupted
        self.port = self._wait_port()

    def _wait_port(self, timeout: float = 30.0) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"varnishd exited ({self.proc.returncode}): {c.tail(Path(self.log.name))}")
            out = subprocess.run(["varnishadm", "-n", str(self.dir / "n"), "-t", "2",
                                  "debug.listen_address"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                f = line.split()
                if len(f) == 3 and f[0] == "a0" and f[2].isdigit():
                    return int(f[2])
            time.sleep(0.2)
        raise SystemExit(f"varnishd did not listen in {timeout}s: {c.tail(Path(self.log.name))}")

    def counters(self) -> dict[str, int]:
        out = subprocess.run(["varnishstat", "-n", str(self.dir / "n"), "-1", "-j"],
                             capture_output=True, text=True).stdout
        data = json.loads(out or "{}")
        data = data.get("counters", data)
        return {k: v["value"] for k, v in data.items()
                if isinstance(v, dict) and "value" in v and k.startswith("MAIN.")}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self in c._live:
            c._live.remove(self)


def ingress_config(variant: str, app: int, auth: int, out: Path) -> Path:
    """envoy/ingress.yaml with admin and listener on port 0, the upstream's ports, and the
    variant's filter (none, the pre-issue-24 build without `exempt`, or the new build)."""
    text = (c.ROOT / "envoy" / "ingress.yaml").read_text()
    for old, new in ((9901, 0), (10000, 0), (8080, app), (8081, auth), (8082, app)):
        text, n = re.subn(rf"(port_value:\s*){old}\b", rf"\g<1>{new}", text)
        if n != 1:
            raise SystemExit(f"cache: expected one `port_value: {old}` in envoy/ingress.yaml, found {n}")

    def sub(pattern: str, repl, what: str) -> None:
        nonlocal text
        text, n = re.subn(pattern, repl, text, flags=re.M | re.S)
        if n != 1:
            raise SystemExit(f"cache: {what} not found once in envoy/ingress.yaml")

    if variant == "none":
        sub(r"^(\s*)- name: envoy\.filters\.http\.wasm\n.*?(?=^\1- name: envoy\.filters\.http\.router)",
            "", "the wasm filter")
    else:
        wasm = c.GUARD_WASM if variant == "new" else BASELINE_WASM
        sub(r"(filename:\s*)\"?[^\"\s}]*session_guard\.wasm\"?", lambda m: f'{m.group(1)}"{wasm}"',
            "the wasm filename")
        if variant == "before":
            sub(r',\s*\n\s*"exempt":\s*\{[^}]*\}', "", "the exempt key")
    out.write_text(text)
    return out


def run_variant(variant: str, vcl: str, upstream: c.Envoy, app: int, auth: int,
                requests: list[tuple[int, str, str, str]]) -> dict:
    cfg = ingress_config(variant, app, auth, WORK / f"ingress-{variant}.yaml")
    front = c.Envoy(f"ingress-{variant}", cfg, 0, 1, env={"SESSION_GUARD_KEY": c.random_key()})
    front.wait_ready()
    varnish = None
    try:
        varnish = Varnish(front.listener_ports()["ingress"], vcl, WORK, f"{vcl}-{variant}")
        before = upstream.stats("downstream_rq_total")
        t0 = time.monotonic()
        res = drive(varnish.port, requests)
        res["seconds"] = time.monotonic() - t0
        after = upstream.stats("downstream_rq_total")
        res["origin"] = sum(after[k] - before.get(k, 0) for k in after
                            if re.fullmatch(r"http\.up_(app|auth)\.downstream_rq_total", k))
        res["varnish"] = varnish.counters()
        res["guard"] = {k.replace("wasmcustom.", ""): v for k, v in front.stats("session_guard").items() if v}
    finally:
        if varnish:
            varnish.stop()
        front.stop()
    return res


# --- report -----------------------------------------------------------------------------------

NAMES = {"none": "no filter", "before": "before issue 24 (42da0ba)", "new": "new rule"}


def report(results: dict[str, dict]) -> None:
    c.log(f"\n{'variant':<27} {'requests':>8} {'from cache':>10} {'hit ratio':>9} "
          f"{'origin requests':>15} {'Set-Cookie':>10}")
    for v, r in results.items():
        c.log(f"{NAMES[v]:<27} {r['requests']:>8} {r['hits']:>10} {r['hits'] / r['requests']:>9.1%} "
              f"{r['origin']:>15} {r['set_cookie']:>10}")
    classes = ["asset", "page", "private", "login", "health"]
    c.log("\nserved from cache / requests, by class (Set-Cookie responses in brackets)")
    c.log(f"{'variant':<27} " + " ".join(f"{k:>16}" for k in classes))
    for v, r in results.items():
        cells = []
        for k in classes:
            e = r["classes"].get(k, {"n": 0, "hits": 0, "set_cookie": 0})
            cells.append(f"{e['hits']}/{e['n']} [{e['set_cookie']}]")
        c.log(f"{NAMES[v]:<27} " + " ".join(f"{x:>16}" for x in cells))
    c.log("\nvarnishstat (MAIN.*), and session-guard counters that moved")
    keys = ["client_req", "cache_hit", "cache_miss", "cache_hitpass", "cache_hitmiss", "s_pass",
            "backend_req"]
    for v, r in results.items():
        vs = ", ".join(f"{k} {r['varnish'].get('MAIN.' + k, '-')}" for k in keys)
        c.log(f"  {NAMES[v]}: {vs}")
        if r["guard"]:
            c.log("    " + ", ".join(f"{k}={n}" for k, n in sorted(r["guard"].items())))


def main() -> int:
    c.install_cleanup()
    clients, steps, seed = env_int("CACHE_CLIENTS", 60), env_int("CACHE_STEPS", 14), env_int("CACHE_SEED", 24)
    for f, what in ((c.ENVOY_BIN, "Envoy (make deps)"), (c.GUARD_WASM, "session-guard wasm (make build)"),
                    (BASELINE_WASM, "the pre-issue-24 build (make baseline-wasm)")):
        if not Path(f).exists():
            raise SystemExit(f"missing {what}: {f}")
    if not shutil.which("varnishd"):
        raise SystemExit("missing varnishd (make cache-deps)")
    WORK.mkdir(parents=True, exist_ok=True)
    requests = plan(clients, steps, seed)
    c.log("== session-guard behind a cache (Varnish in front of envoy/ingress.yaml)")
    c.log(f"{len(requests)} requests per variant: {clients} clients, first visit cookieless, then "
          f"{steps} browsing steps each; /healthz probes; seed {seed}")
    up_cfg = WORK / "upstream.yaml"
    shutil.copyfile(c.PERF / "cache-upstream.yaml", up_cfg)
    upstream = c.Envoy("cache-upstream", up_cfg, 0, 1)
    upstream.wait_ready()
    ports = upstream.listener_ports()
    results: dict[str, dict[str, dict]] = {}
    for vcl in VCLS:
        for variant in NAMES:
            r = results.setdefault(vcl, {})[variant] = run_variant(
                variant, vcl, upstream, ports["app"], ports["auth"], requests)
            c.log(f"VCL {vcl}, {NAMES[variant]}: {r['requests']} requests in {r['seconds']:.1f}s"
                  + (f", {r['bad']} with status >= 400" if r["bad"] else ""))
    upstream.stop()
    for vcl, res in results.items():
        c.log(f"\n--- VCL {vcl}")
        report(res)
    (WORK / "result.json").write_text(json.dumps(results, indent=2))
    c.log(f"\n(printed, never asserted; raw results in {WORK / 'result.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
