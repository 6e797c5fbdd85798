#!/usr/bin/env bash
# Session fixation, step by step, against the running demo (`make run` in another terminal).
# Exit 0: the attack failed, as it must behind session-guard. Exit 1: the attack worked.
# Exit 2: the demo is not reachable or the mesh is not minting sessions.
#   DEMO_URL (default http://localhost:$DEMO_LISTEN_PORT, port 10000)
# curl keeps Secure cookies on plain HTTP only for the host name "localhost": keep it.
set -euo pipefail
URL=${DEMO_URL:-http://localhost:${DEMO_LISTEN_PORT:-10000}}
COOKIE=${SESSION_GUARD_COOKIE:-__Host-session}
PY=$(command -v python3 || echo "$(dirname "$0")/../.venv/bin/python")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
A=$WORK/attacker.jar
B=$WORK/victim.jar

if [ -t 1 ]; then B1=$'\033[1m' RED=$'\033[31m' GREEN=$'\033[32m' N=$'\033[0m'; else B1= RED= GREEN= N=; fi
step() { printf '\n%s== %s%s\n' "$B1" "$*" "$N"; }
say() { printf '   %s\n' "$*"; }
fail() { printf '\n%sATTACK SUCCEEDED: %s%s\n' "$RED" "$*" "$N"; exit 1; }
field() { # field KEY < json: one value of /whoami's JSON ("null" when absent)
  "$PY" -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("null" if v is None else v)' "$1"
}
jar_value() { # the mesh cookie's value in a curl cookie jar (empty when none)
  awk -v n="$COOKIE" -F'\t' '$6 == n { v = $7 } END { print v }' "$1" 2>/dev/null || true
}
whoami() { curl -sS --fail "$@" "$URL/whoami"; }

if ! curl -s -o /dev/null --max-time 5 "$URL/whoami"; then
  echo "demo-attack: nothing answers at $URL; start the demo with 'make run' first." >&2
  exit 2
fi

step "1. The attacker visits the site and gets a real, mesh-signed session"
out=$(whoami -c "$A")
PLANTED=$(jar_value "$A")
ATTACKER_SID=$(field session_id <<<"$out")
say "the app saw: $out"
if [ -z "$PLANTED" ]; then
  echo "demo-attack: the mesh set no $COOKIE cookie; is the filter active? (make build; make run)" >&2
  exit 2
fi
say "attacker's cookie: $COOKIE=${PLANTED:0:40}...  (session $ATTACKER_SID)"

step "2. The attacker plants that cookie in the victim's browser"
say "(e.g. through a sibling subdomain, an injected header, or a shared computer)"
grep -F "$COOKIE" "$A" >"$B"
out=$(whoami -b "$B" -c "$B")
say "the victim now browses in the attacker's session: $(field session_id <<<"$out")"
[ "$(field session_id <<<"$out")" = "$ATTACKER_SID" ] || say "(the mesh already refused the planted cookie)"

step "3. The victim logs in (POST /auth/login as 'victim')"
headers=$(curl -sS -o /dev/null -D - -b "$B" -c "$B" \
  --data 'username=victim&password=demo' "$URL/auth/login" | tr -d '\r')
say "$(head -1 <<<"$headers")"
grep -i '^set-cookie: '"$COOKIE" <<<"$headers" | sed 's/=\([^;]\{20\}\)[^;]*/=\1.../; s/^/   /' || true
if grep -qi '^x-session-guard' <<<"$headers"; then
  fail "the auth service's signal header reached the client"
fi
say "(the auth service's x-session-guard: login signal was consumed by the mesh, not shown)"

step "4. The victim's cookie changed at login (rotation)"
VICTIM_COOKIE=$(jar_value "$B")
out=$(whoami -b "$B" -c "$B")
VICTIM_SID=$(field session_id <<<"$out")
say "planted: ${PLANTED:0:40}...  (session $ATTACKER_SID)"
say "victim:  ${VICTIM_COOKIE:0:40}...  (session $VICTIM_SID)"
say "the app sees the victim as: $(field subject <<<"$out")"
[ "$(field subject <<<"$out")" = victim ] || {
  echo "demo-attack: the victim is not logged in after login: $out" >&2; exit 2; }
[ "$VICTIM_COOKIE" != "$PLANTED" ] || fail "the victim still holds the planted cookie after login"
[ "$VICTIM_SID" != "$ATTACKER_SID" ] || fail "the session ID did not change at login"

step "5. The attacker replays the planted cookie"
out=$(curl -sS --fail -b "$COOKIE=$PLANTED" "$URL/whoami")
say "the app saw: $out"
subject=$(field subject <<<"$out")
[ "$subject" = null ] || fail "the planted cookie is authenticated as '$subject'"
[ "$(field session_id <<<"$out")" != "$VICTIM_SID" ] || fail "the planted cookie reaches the victim's session"
say "-> anonymous: the session the attacker knows never became the victim's."

step "6. Variant: the session ID planted in a link (?jsessionid=ATTACKER, ;jsessionid=ATTACKER)"
for path in '/whoami?jsessionid=ATTACKER&page=2' '/whoami;jsessionid=ATTACKER?page=2'; do
  out=$(curl -sS --fail -b "$B" "$URL$path")
  seen=$(field path <<<"$out")
  say "link $path  ->  the app saw the path $seen"
  case "$seen" in *ATTACKER* | *jsessionid*) fail "a session ID in the URL reached the app";; esac
done

printf '\n%sThe attack failed: session-guard rotated the session at login and stripped URL session IDs.%s\n' "$GREEN" "$N"
