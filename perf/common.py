"""Shared plumbing for perf/run.py and perf/soak.py: ports, config rendering, Envoy
processes, /proc sampling, admin stats and the wrk wrapper. Standard library only."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PERF = ROOT / "perf"
RUN_DIR = ROOT / ".run"  # gitignored
ENVOY_BIN = os.environ.get("ENVOY_BIN") or str(ROOT / ".venv" / "bin" / "envoy")
GUARD_WASM = os.environ.get("SESSION_GUARD_WASM") or str(
    ROOT / "target" / "wasm32-wasip1" / "release" / "session_guard.wasm"
)
# The probe crates are workspace members outside default-members: `make bench` builds them into
# the workspace's target directory.
PROBE_DIR = ROOT / "target" / "wasm32-wasip1" / "release"
EMPTY_WASM = str(PROBE_DIR / "empty_filter.wasm")
WRK = os.environ.get("WRK_BIN", "wrk")
NCPU = os.cpu_count() or 1


def log(msg: str) -> None:
    print(msg, flush=True)


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def render(template: Path | str, out: Path, subs: dict[str, str], cut: tuple[str, ...] = ()) -> Path:
    """Token substitution (@NAME@) plus removal of '# BEGIN x' .. '# END x' blocks for x in cut."""
    text = Path(template).read_text()
    for name in cut:
        text, n = re.subn(rf"(?ms)^[ \t]*# BEGIN {name}\n.*?^[ \t]*# END {name}\n", "", text)
        if n != 1:
            raise SystemExit(f"render: block {name!r} not found once in {template}")
    for key, val in subs.items():
        text = text.replace(f"@{key}@", str(val))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise SystemExit(f"render: unsubstituted placeholders {sorted(set(left))} in {template}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def taskset_prefix(cpus: str | None) -> list[str]:
    if not cpus:
        return []
    if subprocess.run(["sh", "-c", "command -v taskset"], capture_output=True).returncode != 0:
        return []
    return ["taskset", "-c", cpus]


class Envoy:
    """One Envoy process (the .venv wrapper execv's the real binary, so pid is Envoy's)."""

    def __init__(self, name: str, config: Path, admin_port: int, concurrency: int,
                 cpus: str | None = None, env: dict[str, str] | None = None,
                 log_level: str = "warning"):
        self.name, self.config, self.admin_port = name, config, admin_port
        self.log_path = config.with_suffix(".log")
        cmd = taskset_prefix(cpus) + [
            ENVOY_BIN, "-c", str(config), "--concurrency", str(concurrency),
            "--disable-hot-restart", "-l", log_level, "--log-path", str(self.log_path),
        ]
        # admin_port 0: the config's admin binds port 0 and Envoy writes the address it got to
        # a file (no port picked by us and handed on: nothing else can take it in between).
        self.admin_file = config.with_suffix(".admin")
        if admin_port == 0:
            self.admin_file.unlink(missing_ok=True)
            cmd += ["--admin-address-path", str(self.admin_file)]
        full_env = dict(os.environ)
        full_env.update(env or {})
        # Same session as the driver (no setsid): it shares the driver's scheduler autogroup,
        # whose priority perf/run.py may raise (see raise_priority).
        with open(config.with_suffix(".out"), "w") as out:
            self.proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        _live.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name}: Envoy exited ({self.proc.returncode}); log "
                                 f"{self.log_path}:\n{tail(self.log_path)}\n"
                                 f"{tail(self.config.with_suffix('.out'))}")
            if self.admin_port == 0:
                try:
                    self.admin_port = int(self.admin_file.read_text().strip().rsplit(":", 1)[1])
                except (OSError, ValueError, IndexError):
                    time.sleep(0.1)
                    continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name}: Envoy not ready in {timeout}s; log:\n{tail(self.log_path)}")

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
            return r.read().decode()

    def listener_ports(self) -> dict[str, int]:
        """Listener name -> the port it is bound to (listeners configured with port 0)."""
        out = {}
        for ls in json.loads(self.admin("/listeners?format=json"))["listener_statuses"]:
            out[ls["name"]] = ls["local_address"]["socket_address"]["port_value"]
        return out

    def stats(self, contains: str | None = None) -> dict[str, int]:
        """Counters and gauges (histograms skipped) from admin /stats, optionally filtered."""
        out: dict[str, int] = {}
        for line in self.admin("/stats").splitlines():
            name, _, val = line.partition(": ")
            if contains and contains not in name:
                continue
            try:
                out[name] = int(val)
            except ValueError:
                pass
        return out

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")

    def threads(self) -> dict[str, list[int]]:
        """comm -> [tid, ...] for Envoy's threads (workers are 'wrk:worker_N')."""
        out: dict[str, list[int]] = {}
        for t in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                comm = (t / "comm").read_text().strip()
            except OSError:
                continue
            out.setdefault(comm, []).append(int(t.name))
        return out

    def worker_tids(self) -> list[int]:
        return sorted(tid for comm, tids in self.threads().items()
                      if comm.startswith("wrk:worker") for tid in tids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in _live:
            _live.remove(self)


_live: list[Envoy] = []


def stop_all() -> None:
    for e in list(_live):
        e.stop()


def install_cleanup() -> None:
    import atexit

    atexit.register(stop_all)

    def on_signal(signum, _frame):
        stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def thread_cpu_ns(pid: int, tid: int) -> int:
    """CPU time (ns) the thread has run, from /proc/<pid>/task/<tid>/schedstat."""
    return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])


def thread_sched_ns(pid: int, tid: int) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for a CPU) for one thread."""
    f = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
    return int(f[0]), int(f[1])


def own_session() -> None:
    """Continue this driver in a session of its own, so that raise_priority changes the bench's
    processes only (with autogroups Linux shares CPU between sessions before nice applies).
    A new session has no terminal, so the parent stays in the caller's session, forwards Ctrl-C
    and TERM to the child (which then stops its Envoys) and exits with the child's status.
    Returns in the child; a process that already leads its session just continues."""
    if os.getsid(0) == os.getpid():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        os.setsid()
        return

    def forward(_signum, _frame):
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def raise_priority(nice: int) -> str:
    """Give this process's scheduler autogroup (and so every child not started in a new
    session: Envoys, wrk) priority `nice` over the rest of the machine. With autogroups
    (kernel.sched_autogroup_enabled=1) CPU is shared between sessions first, so a plain `nice`
    does nothing against other sessions' work. Only done when this process leads its own
    session (own_session), never to a caller's session; the group
    goes away with the session. Returns what was done, for the log."""
    if os.getsid(0) != os.getpid():
        return "priority unchanged (not a session leader)"
    ag = Path("/proc/self/autogroup")
    try:
        if ag.exists():
            ag.write_text(str(nice))
            return f"scheduler autogroup nice {nice} ({ag.read_text().strip()})"
        os.nice(nice)
        return f"nice {nice}"
    except OSError as e:
        return f"priority unchanged ({e.strerror})"


def process_cpu_ns(pid: int) -> int:
    total = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((t / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass
    return total


def http(port: int, path: str, headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, list[tuple[str, str]], bytes]:
    """One plain HTTP/1.1 request, no redirects followed; headers as a list (Set-Cookie repeats)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read()
    finally:
        conn.close()


def header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


def mesh_cookie_from(headers: list[tuple[str, str]], cookie_name: str) -> str | None:
    """The `name=value` pair of the mesh cookie set in a response (not an expiry)."""
    for v in header(headers, "set-cookie"):
        pair = v.split(";", 1)[0].strip()
        name, _, value = pair.partition("=")
        if name == cookie_name and value and "max-age=0" not in v.lower():
            return pair
    return None


def run_wrk(port: int, path: str, *, duration: float, connections: int, threads: int = 1,
            headers: dict[str, str] | None = None, script: Path | None = None,
            script_args: list[str] | None = None, cpus: str | None = None,
            timeout_s: int = 10, done_file: Path | None = None, method: str = "GET") -> dict:
    """Run wrk; its Lua done() prints one JSON line prefixed 'WRKJSON ' which is returned,
    plus 'non2xx3xx' parsed from wrk's own summary. method: another than GET is passed to the
    script as WRK_METHOD (wrk has no flag for it; perf/wrk/report.lua reads it)."""
    cmd = taskset_prefix(cpus) + [
        WRK, f"-t{threads}", f"-c{connections}", f"-d{duration}s", f"--timeout={timeout_s}s",
        "-s", str(script or PERF / "wrk" / "report.lua"),
    ]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    if script_args:
        cmd += ["--"] + script_args
    env = dict(os.environ, WRK_METHOD=method) if method != "GET" else None
    if done_file is None:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        stdout, stderr, rc = p.stdout, p.stderr, p.returncode
    else:
        # wrk's main thread sleeps for the whole -d even when every thread has stopped: the
        # script appends a line to done_file per finished thread, then we interrupt wrk (SIGINT
        # makes it print its results as usual). Signalled by pid, nothing else.
        Path(done_file).unlink(missing_ok=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + duration + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                finished = len(Path(done_file).read_text().splitlines())
            except OSError:
                finished = 0
            if finished >= threads:
                time.sleep(0.2)  # let in-flight responses land
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.1)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        rc = proc.returncode
    if rc != 0:
        raise SystemExit(f"wrk failed ({rc}): {' '.join(cmd)}\n{stdout}\n{stderr}")
    res = None
    for line in stdout.splitlines():
        if line.startswith("WRKJSON "):
            res = json.loads(line[len("WRKJSON "):])
    if res is None:
        raise SystemExit(f"wrk printed no result: {' '.join(cmd)}\n{stdout}\n{stderr}")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", stdout)
    res["non2xx3xx"] = int(m.group(1)) if m else 0
    res["stdout"] = stdout
    return res
