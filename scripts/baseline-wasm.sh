#!/bin/sh
# Builds session-guard as it was before issue 24 (deferred commit, exempt paths) from commit
# 42da0ba into target/baseline/session_guard.wasm: the control of tests/shared_cache.rs (the
# cache stores nothing) and the "before" column of the cache figure in `make bench`.
# Rebuilt only when missing. Needs the repository's history (a git checkout).
set -eu
rev=42da0ba
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/baseline/session_guard.wasm"
if [ -f "$out" ] && [ "$(cat "$root/target/baseline/rev" 2>/dev/null)" = "$rev" ]; then
  exit 0
fi
src="$root/target/baseline/src"
rm -rf "$src"
mkdir -p "$src"
git -C "$root" archive "$rev" | tar -x -C "$src"
(cd "$src" && CARGO_TARGET_DIR="$root/target/baseline/target" \
  cargo build --quiet --release --target wasm32-wasip1 -p session-guard-wasm)
cp "$root/target/baseline/target/wasm32-wasip1/release/session_guard_wasm.wasm" "$out"
echo "$rev" > "$root/target/baseline/rev"
echo "built $out (session-guard at $rev, before issue 24)"
