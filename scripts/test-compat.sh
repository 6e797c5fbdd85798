#!/usr/bin/env bash
# `make test-compat`: the end-to-end suite against each Envoy of COMPAT_VERSIONS, each the
# `envoy` of its own virtualenv COMPAT_VENVS/<version> (the Makefile installs them), then a
# table: version | V8 | result. A wheel built without the V8 runtime cannot run the filter
# at all, so it is reported as SKIP, not as a failure. Exit 1 if any version with V8 fails.
#
# Environment: COMPAT_VERSIONS (space separated), COMPAT_VENVS (default .venv-compat),
# SESSION_GUARD_WASM (the Makefile exports it), COMPAT_TEST_THREADS (default 2: the machine
# is shared and every e2e test starts its own Envoy).
set -uo pipefail
cd "$(dirname "$0")/.."
VENVS="${COMPAT_VENVS:-.venv-compat}"
VERSIONS="${COMPAT_VERSIONS:?set COMPAT_VERSIONS, e.g. \"1.39.3 1.40.0\"}"
WASM="${SESSION_GUARD_WASM:-$PWD/target/wasm32-wasip1/release/session_guard.wasm}"
THREADS="${COMPAT_TEST_THREADS:-2}"
# Any 32 bytes: validation runs the filter's configuration check, which reads the key.
VALIDATE_KEY="$(printf 'compat-validate-key-0123456789ab' | base64)"

[ -f "$WASM" ] || { echo "test-compat: no filter at $WASM (run make build)"; exit 1; }

# The shipped sidecar bootstrap with the filter's path made absolute, for `--mode validate`.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed "s#filename: target/wasm32-wasip1/release/session_guard.wasm#filename: $WASM#" \
  envoy/sidecar.yaml >"$work/sidecar.yaml"
grep -q "filename: $WASM" "$work/sidecar.yaml" ||
  { echo "test-compat: envoy/sidecar.yaml no longer names the wasm path this script replaces"; exit 1; }

# Prints yes / no / error for the V8 runtime of Envoy binary $1; the log goes to $2.
# `--mode validate` creates the filter's Wasm VM, so a build without V8 says so here.
v8_runtime() {
  if SESSION_GUARD_KEY="$VALIDATE_KEY" "$1" --mode validate -c "$work/sidecar.yaml" \
    --log-level warning >"$2" 2>&1; then
    echo yes
  elif grep -q "compiled without support for" "$2"; then
    echo no
  else
    echo error
  fi
}

# "passed failed ignored" summed over every `test result:` line of cargo's output $1.
sum_results() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i;
         if ($(i+1) ~ /^ignored/) g += $i } }
       END { printf "%d %d %d", p, f, g }' "$1"
}

echo "test-compat: compiling the test binaries once"
cargo test --profile test-opt --tests --no-run --quiet || exit 1

rows=()
status=0
for v in $VERSIONS; do
  envoy="$PWD/$VENVS/$v/bin/envoy"
  log_dir="$VENVS/$v"
  if [ ! -x "$envoy" ]; then
    rows+=("$v|?|FAILED: no $envoy (make $VENVS/$v/.installed)")
    status=1
    continue
  fi
  v8="$(v8_runtime "$envoy" "$log_dir/validate.log")"
  case "$v8" in
    no)
      echo "SKIP $v: no V8 runtime (Envoy was compiled without support for envoy.wasm.runtime.v8)"
      rows+=("$v|no|SKIP: no V8 runtime")
      continue ;;
    error)
      echo "test-compat: $v refused envoy/sidecar.yaml; $log_dir/validate.log:"
      tail -n 5 "$log_dir/validate.log"
      rows+=("$v|?|FAILED: --mode validate refused envoy/sidecar.yaml")
      status=1
      continue ;;
  esac
  echo "test-compat: Envoy $v ($("$envoy" --version | grep -o '[0-9a-f]\{40\}/[0-9.]*' || true))"
  ENVOY_BIN="$envoy" SESSION_GUARD_WASM="$WASM" cargo test --profile test-opt --tests \
    --no-fail-fast -- --test-threads="$THREADS" >"$log_dir/test.log" 2>&1
  rc=$?
  read -r passed failed ignored <<<"$(sum_results "$log_dir/test.log")"
  failing="$(grep -E '^test .* \.\.\. FAILED$' "$log_dir/test.log" | awk '{print $2}' | paste -sd, -)"
  if [ "$rc" -eq 0 ]; then
    result="passed: $passed passed, $failed failed, $ignored ignored"
  else
    result="FAILED: $passed passed, $failed failed, $ignored ignored; ${failing:-see log} ($log_dir/test.log)"
    status=1
  fi
  echo "  $result"
  rows+=("$v|yes|$result")
done

echo
echo "| Envoy | V8 | result |"
echo "|---|---|---|"
for r in "${rows[@]}"; do
  IFS='|' read -r v v8 result <<<"$r"
  echo "| $v | $v8 | $result |"
done
exit "$status"
