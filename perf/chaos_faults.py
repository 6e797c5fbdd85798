"""`make chaos`, phases b and c (perf/chaos.py): the auth upstream failing mid-login at volume,
and the VM crashing under each `failure_policy`.

b. The shipped ingress (`--concurrency 2`, /auth/ route timeout 1 s) in front of an auth
   service written here with raw sockets, which fails on purpose by path: `/auth/login-reset`
   reads the request and resets the connection, `-hang` never answers, `-503` answers 503,
   `-5xx` answers 500 *with* the login signal, `-ok` is a normal login (the control). Each
   attempt starts from a fresh anonymous session, tries a login with a user name of its own,
   then asks the app who each cookie is (the upstream echoes x-session-id/-subject): a login is
   all or nothing (a committed cookie is a new ID, the one the auth service was given as
   x-session-id-next, with the subject; a failed one commits nothing), and the pre-login cookie
   stays the same anonymous session, never authenticated.
c. The fault-injection build (`make build-fault`) in the shipped ingress under each policy:
   attackers send `;jsessionid=` and a spoofed `x-session-id` continuously on new connections
   while a burst of requests carrying `x-session-guard-fault: panic` crashes the VMs of both
   workers; then the same build failing at start (SESSION_GUARD_FAULT=start in the VM env)."""

from __future__ import annotations

import random
import socket
import socketserver
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import chaos_env as ce
import common as c

FAULTS = ("ok", "reset", "hang", "503", "5xx")
# What the client must get, and whether the login must be committed.
EXPECT = {"ok": (200, True), "reset": (503, False), "hang": (504, False), "503": (503, False),
          "5xx": (500, True)}
POLICIES = (None, "FAIL_CLOSED", "FAIL_RELOAD", "FAIL_OPEN")
PLANTED, SPOOFED = "/cart;jsessionid=PLANTED?x=1", "attacker-chosen"


class AuthFaults(socketserver.ThreadingTCPServer):
    """The failing auth service; remembers the x-session-id-next each user's login was given."""
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog (5) overflows with 32 logins in flight and hung
    # connections: Envoy's connect then fails (503 UF), a fault of this harness, not measured.
    request_queue_size = 1024

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), AuthHandler)
        self.port = self.server_address[1]
        self.next_by_user: dict[str, str] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()


class AuthHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock, buf = self.request, b""
        while True:  # Envoy keeps upstream connections alive: one request after another
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
            hdr = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            user = hdr.get("x-chaos-user", "")
            with self.server.lock:
                self.server.next_by_user[user] = hdr.get("x-session-id-next", "")
            fault = path.rsplit("login-", 1)[-1].split("?")[0]
            if fault == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()  # zero linger: RST
                return
            if fault == "hang":
                while sock.recv(65536):  # until Envoy gives up (route timeout) and closes
                    pass
                return
            if fault == "503":
                sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                continue
            status = "200 OK" if fault == "ok" else "500 Internal Server Error"
            sock.sendall((f"HTTP/1.1 {status}\r\nx-session-guard: login\r\n"
                          f"x-session-guard-subject: {user}\r\ncontent-length: 0\r\n\r\n").encode())


def login_attempt(port: int, auth: AuthFaults, fault: str, n: int) -> dict:
    pre_pair, pre_sid = ce.new_session(port)
    user = f"u{n}-{fault}"
    st, hd, _ = c.http(port, f"/auth/login-{fault}", {"Cookie": pre_pair, "x-chaos-user": user})
    committed = c.mesh_cookie_from(hd, ce.COOKIE)
    bad = []
    if ce.echoed(hd, "x-session-guard") or ce.echoed(hd, "x-session-guard-subject"):
        bad.append("signal header reached the client")
    if committed:
        _, hd2, _ = c.http(port, "/chaos/who", {"Cookie": committed})
        new_sid, subject = ce.echoed(hd2, "x-echo-sid"), ce.echoed(hd2, "x-echo-subject")
        if not EXPECT[fault][1]:
            bad.append("committed without a login signal")
        if new_sid == pre_sid:
            bad.append("login kept the pre-login ID")
        if subject != user:
            bad.append("half-committed: new ID without its subject")
        with auth.lock:
            if new_sid != auth.next_by_user.get(user):
                bad.append("committed ID is not the x-session-id-next given to auth")
    elif EXPECT[fault][1]:
        bad.append("login signal not committed")
    _, hd3, _ = c.http(port, "/chaos/who", {"Cookie": pre_pair})
    if ce.echoed(hd3, "x-echo-subject"):
        bad.append("pre-login ID authenticated")
    if ce.echoed(hd3, "x-echo-sid") != pre_sid:
        bad.append("pre-login cookie changed meaning")
    return {"fault": fault, "status": st, "committed": bool(committed), "bad": bad}


def run_auth(upstream: dict[str, int]) -> dict:
    per_fault = ce.env_int("CHAOS_LOGINS", 300)
    auth = AuthFaults()
    cfg = ce.ingress("auth", {**upstream, "auth": auth.port}, auth_timeout="1s")
    front, port = ce.start_front("auth", cfg, env={"SESSION_GUARD_KEY": c.random_key()})
    work = [(f, n) for f in FAULTS for n in range(per_fault)]
    random.shuffle(work)  # every fault at once, interleaved
    c.log(f"phase b: {len(work)} login attempts ({per_fault} per fault), 32 at a time")
    t0 = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda w: safe_attempt(port, auth, *w), work))
    wall = time.monotonic() - t0
    counters = front.stats("session_guard")
    front.stop()
    auth.shutdown()
    auth.server_close()
    out = {}
    for f in FAULTS:
        rs = [r for r in results if r["fault"] == f]
        statuses: dict[int, int] = {}
        for r in rs:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        bad: dict[str, int] = {}
        for r in rs:
            for b in r["bad"]:
                bad[b] = bad.get(b, 0) + 1
        out[f] = {"attempts": len(rs), "statuses": statuses,
                  "committed": sum(r["committed"] for r in rs), "violations": bad,
                  "unexpected_status": sum(1 for r in rs if r["status"] != EXPECT[f][0])}
    return {"seconds": wall, "faults": out, "counters": {
        k.replace("wasmcustom.", ""): v for k, v in counters.items() if "rotat" in k or "internal" in k}}


def safe_attempt(port: int, auth: AuthFaults, fault: str, n: int) -> dict:
    try:
        return login_attempt(port, auth, fault, n)
    except (OSError, SystemExit) as e:
        return {"fault": fault, "status": 0, "committed": False, "bad": [f"client error: {e}"[:80]]}


def attack(port: int) -> tuple[int, str]:
    """'refused' (Envoy answered), 'protected' or 'unprotected' (reached the app), 'error'."""
    try:
        st, hd, _ = c.http(port, PLANTED, {"x-session-id": SPOOFED})
    except OSError:
        return 0, "error"
    path = ce.echoed(hd, "x-echo-path")
    if path is None:
        return st, "refused"
    if "jsessionid" in path.lower() or ce.echoed(hd, "x-echo-sid") == SPOOFED:
        return st, "unprotected"
    return st, "protected"


def crash_run(upstream: dict[str, int], policy: str | None, seconds: float) -> dict:
    name = policy or "unset"
    cfg = ce.ingress(f"fault-{name}", upstream, wasm=ce.FAULT_WASM, policy=policy)
    front, port = ce.start_front(f"fault-{name}", cfg, env={"SESSION_GUARD_KEY": c.random_key()})
    baseline = attack(port)[1]
    events: list[tuple[float, str]] = []
    stop = threading.Event()

    def attacker():
        while not stop.is_set():
            _, kind = attack(port)
            events.append((time.monotonic(), kind))

    threads = [threading.Thread(target=attacker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # attacks before the crash
    crashes: dict[str, int] = {}
    first_crash = time.monotonic()
    for _ in range(10):  # new connections: both workers' VMs get one
        try:
            st, hd, _ = c.http(port, "/boom", {"x-session-guard-fault": "panic"})
            key = f"{st}{' reached app' if ce.echoed(hd, 'x-echo-path') else ''}"
        except OSError:
            key = "connection error"
        crashes[key] = crashes.get(key, 0) + 1
        time.sleep(0.1)
    last_crash = time.monotonic()
    time.sleep(max(0.0, seconds - (last_crash - first_crash)))
    stop.set()
    for t in threads:
        t.join()
    end = time.monotonic()
    front.stop()

    def tally(evs):
        out = {"refused": 0, "protected": 0, "unprotected": 0, "error": 0}
        for _, k in evs:
            out[k] += 1
        return out

    after = [e for e in events if e[0] > first_crash]
    healed = next((t - last_crash for t, k in after if t > last_crash and k == "protected"), None)
    return {"policy": name, "baseline": baseline, "crash": crashes, "after": tally(after),
            "last_second": tally([e for e in after if e[0] > end - 1.0]),
            "healed_after_s": healed, "before": tally([e for e in events if e[0] <= first_crash])}


def start_failure(upstream: dict[str, int], policy: str | None) -> dict:
    """The fault build panicking in on_configure: does Envoy serve, and how?"""
    name = policy or "unset"
    cfg = ce.ingress(f"start-{name}", upstream, wasm=ce.FAULT_WASM, policy=policy,
                     vm_env={"SESSION_GUARD_FAULT": "start"})
    front, _ = ce.start_front(f"start-{name}", cfg, env={"SESSION_GUARD_KEY": c.random_key()},
                              ready=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and front.proc.poll() is None:
        try:
            front.admin_port = front.admin_port or int(
                front.admin_file.read_text().strip().rsplit(":", 1)[1])
            if front.admin("/ready").strip() == "LIVE":
                break
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.1)
    if front.proc.poll() is not None:
        return {"policy": name, "result": f"Envoy exits (code {front.proc.returncode}), serves nothing"}
    if time.monotonic() >= deadline:
        front.stop()
        return {"policy": name, "result": "Envoy never ready in 30 s"}
    port = front.listener_ports()["ingress"]
    got = [attack(port) for _ in range(5)]
    front.stop()
    kinds = sorted({f"{st} {k}" for st, k in got})
    return {"policy": name, "result": "Envoy serves: attacks " + ", ".join(kinds)}


def run_crash(upstream: dict[str, int]) -> dict:
    seconds = ce.env_int("CHAOS_FAULT_SECONDS", 6)
    c.log(f"phase c: fault build, each failure_policy: 4 attackers, 10 crashes, {seconds} s watched")
    return {"request": [crash_run(upstream, p, seconds) for p in POLICIES],
            "start": [start_failure(upstream, p) for p in POLICIES]}
