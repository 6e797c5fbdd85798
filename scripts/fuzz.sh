#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600; `make fuzz-smoke` passes 20).
# cargo-fuzz needs nightly flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP=1,
# since this machine has no nightly toolchain to fetch.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-600}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
TARGETS="${FUZZ_TARGETS:-url_strip cookie_header cookie_value session_payload set_cookie config policy header_map dbsc_proof}"
for t in $TARGETS; do
  mkdir -p "fuzz/corpus/$t"
  echo "fuzz: $t for ${SECONDS_EACH}s"
  cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -max_len=65536 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|panicked|SUMMARY" || true
  test "${PIPESTATUS[0]}" -eq 0 || { echo "fuzz: $t FAILED"; exit 1; }
done
