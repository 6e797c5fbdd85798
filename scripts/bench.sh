#!/usr/bin/env bash
# `make bench` (after `make build deps bench-deps`): session-guard's cost over an empty Wasm
# filter and over no filter, per traffic class, on one Envoy worker. bench/run.py explains the
# method; bench/README.md how to read the output. Takes about 4 to 5 minutes.
#
# Knobs (environment): BENCH_ROUNDS (3), BENCH_DURATION (4 s per run), BENCH_CONNECTIONS (64),
# BENCH_WARMUP (1 s per listener and class), BENCH_CLASSES (steady,anonymous,url,forged,
# malformed,login), BENCH_PIN (auto|off), BENCH_NICE (-10, '' to leave priorities alone),
# BENCH_MEM_PROBE (1), BENCH_JSON (.run/bench/result.json).
# `scripts/bench.sh --hostcalls` (BENCH_HOSTCALLS=1; BENCH_CALLS, default 25): price single host
# calls (header maps, properties, time, random, metrics, header writes) and an HMAC, ~2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python3
[ -x "$PY" ] || PY=python3

# The empty filter: the floor any Proxy-Wasm filter pays (its own crate and target dir).
cargo build --quiet --release --target wasm32-wasip1 --manifest-path bench/empty-filter/Cargo.toml
# `--hostcalls` (or BENCH_HOSTCALLS=1) prices single host calls instead, with its own probe.
if [[ " $* " == *" --hostcalls "* || "${BENCH_HOSTCALLS:-0}" == 1 ]]; then
  cargo build --quiet --release --target wasm32-wasip1 --manifest-path bench/hostcall-probe/Cargo.toml
fi

# The driver runs in its own session so that BENCH_NICE raises the priority of the bench's
# processes only (Linux shares CPU between sessions' autogroups before nice applies). A new
# session has no terminal: forward Ctrl-C / TERM so it still stops its Envoys.
setsid "$PY" bench/run.py "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
rc=0
while :; do
  wait "$child" && rc=0 || rc=$?
  kill -0 "$child" 2>/dev/null || break
done
exit "$rc"
