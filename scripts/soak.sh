#!/usr/bin/env bash
# `make soak` (after `make build deps`): a bounded soak of session-guard through the shipped
# ingress config (envoy/ingress.yaml) with Envoy --concurrency 2 and mixed traffic; fails on any
# unexpected status, contract violation, Wasm panic, or RSS growth over the threshold.
# See bench/soak.py for the classes, the expectations and the threshold.
#
# Knobs (environment): SOAK_REQUESTS (200000), SOAK_WARMUP (5 %), SOAK_CONNECTIONS (32),
# SOAK_THREADS (2), SOAK_RSS_GROWTH_MIB (16), SOAK_CHECK_CONTRACT (1), SOAK_CONFIG
# (envoy/ingress.yaml), SOAK_MAX_SECONDS (900: the run must finish within it; keep it under the
# filter's idle timeout, 1800 s, because wrk replays the same cookies).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { echo "soak: wrk not found (make bench-deps installs it)" >&2; exit 1; }
PY=.venv/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" bench/soak.py "$@"
