#!/usr/bin/env bash
# Session fixation, step by step, against the running demo (`make run` in another terminal).
# Part 1 plants the mesh's own session cookie; part 2 tosses a legacy app's OWN session cookie
# (Express, connect.sid, under /legacy/), first straight at the app, then through the mesh.
# Exit 0: the attacks failed, as they must behind session-guard. Exit 1: an attack worked
# through the mesh. Exit 2: the demo is not reachable or the mesh is not minting sessions.
#   DEMO_URL (default http://localhost:$DEMO_LISTEN_PORT, port 10000)
#   DEMO_LEGACY_URL (default http://127.0.0.1:$DEMO_LEGACY_PORT, port 8083): the legacy app itself
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

# --- part 2: a legacy app that keeps its own session cookie --------------------------------
LEGACY=$URL/legacy
LEGACY_DIRECT=${DEMO_LEGACY_URL:-http://127.0.0.1:${DEMO_LEGACY_PORT:-8083}}/legacy
APPC=connect.sid
cookie_of() { # cookie_of JAR NAME: the value of cookie NAME in a curl jar (empty when none)
  awk -v n="$2" -F'\t' '$6 == n { v = $7 } END { print v }' "$1" 2>/dev/null || true
}
plant() { # plant JAR URL NAME VALUE: a cookie for URL's host with Path=/legacy/, which a
  # browser (and curl) sends before the app's own Path=/ cookie of that name
  local h=${2#*://}; h=${h%%/*}; h=${h%%:*}
  printf '%s\tFALSE\t/legacy/\tFALSE\t0\t%s\t%s\n' "$h" "$3" "$4" >>"$1"
}
# legacy_attack VICTIM_BASE ATTACKER_BASE: the four steps; sets LOGIN VICTIM_ME ATTACKER_ME
# PLANTED_ME (who the planted ID is, asked of the app itself).
legacy_attack() {
  local v=$WORK/legacy-victim.jar a=$WORK/legacy-attacker.jar planted
  rm -f "$v" "$a"
  curl -sS --fail -o /dev/null -b "$a" -c "$a" "$2/login-form"
  planted=$(cookie_of "$a" "$APPC")
  [ -n "$planted" ] || { echo "demo-attack: $2 set no $APPC cookie" >&2; exit 2; }
  plant "$v" "$1" lang en
  plant "$v" "$1" "$APPC" "$planted"
  curl -sS --fail -o /dev/null -b "$v" -c "$v" "$1/login-form"
  LOGIN=$(curl -sS -b "$v" -c "$v" --data 'user=victim&password=victim-pass' "$1/login" | tr -d '\n')
  VICTIM_ME=$(curl -sS --fail -b "$v" -c "$v" "$1/me" | tr -d '\n')
  ATTACKER_ME=$(curl -sS --fail -b "$a" -c "$a" "$2/me" | tr -d '\n')
  PLANTED_ME=$(curl -sS --fail -b "$APPC=$planted" "$LEGACY_DIRECT/me" | tr -d '\n')
  say "attacker's genuine cookie: $APPC=${planted:0:30}...  (from $2)"
}
if ! curl -s -o /dev/null --max-time 5 --fail "$LEGACY/me"; then
  echo "demo-attack: no legacy app at $LEGACY (an older demo? restart 'make run')" >&2
  exit 2
fi

step "7. A legacy app with its own session cookie (Express, connect.sid), attacked directly"
say "its login stores the user in the existing session, no regenerate: the textbook bug."
say "(the demo exposes the app's own port, $LEGACY_DIRECT, to show the difference)"
legacy_attack "$LEGACY_DIRECT" "$LEGACY_DIRECT"
say "the attacker tosses it into the victim's browser (e.g. Domain=.example.com, Path=/legacy/)"
say "the victim logs in: $LOGIN; the victim's /me: $VICTIM_ME"
say "the attacker's /me: $ATTACKER_ME"
if [ "$ATTACKER_ME" = victim ]; then
  say "-> ${RED}without the mesh the attack works${N}: the attacker is logged in as the victim."
else
  say "(the direct attack did not work: the app is not the vulnerable one this demo expects)"
fi

for source in mesh app; do
  if [ "$source" = mesh ]; then
    step "8. The same attack through the mesh ($LEGACY/), the attacker a normal visitor"
    legacy_attack "$LEGACY" "$LEGACY"
  else
    step "9. Again through the mesh, with a cookie the attacker got from the app itself"
    legacy_attack "$LEGACY" "$LEGACY_DIRECT"
  fi
  say "the victim logs in: $LOGIN; the victim's /me: $VICTIM_ME"
  [ "$VICTIM_ME" = victim ] || {
    echo "demo-attack: the victim is not logged in through the mesh: $VICTIM_ME" >&2; exit 2; }
  say "the attacker's /me: $ATTACKER_ME; the app says the planted ID is: $PLANTED_ME"
  [ "$ATTACKER_ME" = anonymous ] || fail "the tossed $APPC is logged in as '$ATTACKER_ME' ($source cookie)"
  [ "$PLANTED_ME" = anonymous ] || fail "the app logged the planted $APPC in as '$PLANTED_ME'"
  say "-> anonymous: the tossed $APPC was not bound to the victim's mesh session, so the mesh"
  say "   removed it; the app gave the victim a fresh session, bound to the victim's browser."
done

printf '\n%sThe attacks failed: session-guard rotated the session at login, stripped URL session IDs and let only app cookies bound to the browser reach the legacy app.%s\n' "$GREEN" "$N"
