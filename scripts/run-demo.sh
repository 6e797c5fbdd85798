#!/usr/bin/env bash
# `make run`: the session-guard demo on this machine.
#   demo/app.py (cluster app) and demo/auth.py (cluster auth) and a second app.py as the API,
#   plus a legacy Express app with its own session cookie (tests/apps/express, cluster legacy,
#   route /legacy/), behind Envoy with envoy/ingress.yaml and the built filter. Ctrl-C stops
#   all of it.
# Ports can be moved when busy:
#   DEMO_LISTEN_PORT (10000) DEMO_ADMIN_PORT (9901) DEMO_APP_PORT (8080) DEMO_AUTH_PORT (8081)
#   DEMO_API_PORT (8082) DEMO_LEGACY_PORT (8083)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

LISTEN=${DEMO_LISTEN_PORT:-10000}
ADMIN=${DEMO_ADMIN_PORT:-9901}
APP=${DEMO_APP_PORT:-8080}
AUTH=${DEMO_AUTH_PORT:-8081}
API=${DEMO_API_PORT:-8082}
LEGACY=${DEMO_LEGACY_PORT:-8083}
PY=${DEMO_PYTHON:-$ROOT/.venv/bin/python}
ENVOY=${ENVOY_BIN:-$ROOT/.venv/bin/envoy}
WASM=${SESSION_GUARD_WASM:-$ROOT/target/wasm32-wasip1/release/session_guard.wasm}
RUN=$ROOT/.run/demo

die() { echo "run-demo: $*" >&2; exit 1; }

[ -x "$PY" ] || die "no Python at $PY (run 'make deps', or set DEMO_PYTHON)"
[ -x "$ENVOY" ] || die "no Envoy at $ENVOY (run 'make deps')"
[ -f "$WASM" ] || die "no filter at $WASM (run 'make build')"
command -v curl >/dev/null || die "curl is needed"
command -v node >/dev/null || die "node is needed for the legacy app (run 'make apps-deps')"
[ -d tests/apps/express/node_modules/express-session ] ||
  die "the legacy app's packages are missing (run 'make apps-deps')"

mkdir -p "$RUN"
# One demo at a time: they would share .run/demo (config, logs).
exec 9>"$RUN/lock"
flock -n 9 || die "another run-demo.sh is running (it holds $RUN/lock); stop it with Ctrl-C"

# Fail before starting anything if a port is taken: a half-started demo behind somebody
# else's server on 8080 would show confusing results.
for var in DEMO_LISTEN_PORT:$LISTEN DEMO_ADMIN_PORT:$ADMIN DEMO_APP_PORT:$APP \
           DEMO_AUTH_PORT:$AUTH DEMO_API_PORT:$API DEMO_LEGACY_PORT:$LEGACY; do
  p=${var#*:}
  if ! "$PY" - "$p" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
  then
    who=$(ss -ltnpH "sport = :$p" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\).*/\1/p' | head -1 || true)
    die "port $p is taken${who:+ by $who}; free it, or move it: ${var%%:*}=<free port> make run"
  fi
done

# A fresh signing key per run (sessions from an earlier run stop verifying, as they should).
# Set SESSION_GUARD_KEY yourself to keep sessions across restarts.
if [ -z "${SESSION_GUARD_KEY:-}" ]; then
  SESSION_GUARD_KEY=$(head -c 32 /dev/urandom | base64)
  key_note="a fresh random key"
else
  key_note="SESSION_GUARD_KEY from your environment"
fi
export SESSION_GUARD_KEY

# The shipped config with this run's ports and the absolute wasm path. Each substitution
# must hit exactly once, or the shipped file changed shape and we say so instead of guessing.
CONFIG=$RUN/ingress.yaml
cp envoy/ingress.yaml "$CONFIG"
subst() { # subst FROM TO
  local n
  n=$(grep -cF -- "$1" "$CONFIG" || true)
  [ "$n" = 1 ] || die "envoy/ingress.yaml: expected '$1' once, found it $n times"
  FROM=$1 TO=$2 "$PY" -c 'import os,sys; p=sys.argv[1]; s=open(p).read(); open(p,"w").write(s.replace(os.environ["FROM"], os.environ["TO"]))' "$CONFIG"
}
subst "port_value: 9901 }" "port_value: $ADMIN }"
subst "port_value: 10000 }" "port_value: $LISTEN }"
subst "port_value: 8080 }" "port_value: $APP }"
subst "port_value: 8081 }" "port_value: $AUTH }"
subst "port_value: 8082 }" "port_value: $API }"
subst "filename: target/wasm32-wasip1/release/session_guard.wasm" "filename: $WASM"
# The legacy app: a route /legacy/ before the catch-all, and its cluster (a copy of `app`'s).
catch_all='              - match: { prefix: / }'
subst "$catch_all" "              - match: { prefix: /legacy/ }
                route: { cluster: legacy }
$catch_all"
legacy_cluster="  - name: legacy
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: legacy
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $LEGACY } } }
"
printf '%s' "$legacy_cluster" >>"$CONFIG"

PIDS=()
cleanup() {
  # Kill first, talk after: with stdout gone (a closed pipe) an echo would end this shell
  # before the children are stopped.
  trap - INT TERM EXIT
  trap '' PIPE
  if [ "${#PIDS[@]}" -gt 0 ]; then
    kill "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
    echo "run-demo: stopped (pids ${PIDS[*]})" >&2 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() { # start NAME CMD...: in the background, output to .run/demo/NAME.log
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  PIDS+=("$!")
}
start app "$PY" -u demo/app.py "$APP" app
start auth "$PY" -u demo/auth.py "$AUTH"
start api "$PY" -u demo/app.py "$API" api
start legacy env APP_PREFIX=/legacy node tests/apps/express/app.js "$LEGACY"
start envoy "$ENVOY" -c "$CONFIG" --disable-hot-restart \
  --log-level warn --component-log-level wasm:info

# Ready = every process alive and requests through Envoy reaching the app and the legacy app.
serves() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$LISTEN$1" 2>/dev/null)" = 200 ]; }
deadline=$((SECONDS + 30))
until serves /whoami && serves /legacy/me; do
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      name=(app auth api legacy envoy); log=$RUN/${name[$i]}.log
      echo "run-demo: ${name[$i]} exited at startup; last lines of $log:" >&2
      tail -n 30 "$log" >&2
      exit 1
    fi
  done
  if [ $SECONDS -ge $deadline ]; then
    echo "run-demo: Envoy did not serve within 30 s; last lines of $RUN/envoy.log:" >&2
    tail -n 30 "$RUN/envoy.log" >&2
    exit 1
  fi
  sleep 0.2
done

U=http://localhost:$LISTEN
attack=scripts/demo-attack.sh
[ "$LEGACY" = 8083 ] || attack="DEMO_LEGACY_PORT=$LEGACY $attack"
[ "$LISTEN" = 10000 ] || attack="DEMO_LISTEN_PORT=$LISTEN $attack"
cookie_check=$(curl -s -D - -o /dev/null "$U/whoami" | grep -ci '^set-cookie: __Host-session=' || true)
cat <<EOF

session-guard demo is up ($key_note; logs in .run/demo/).
  Envoy   http://127.0.0.1:$LISTEN  (admin 127.0.0.1:$ADMIN)
  app     127.0.0.1:$APP   auth 127.0.0.1:$AUTH (/auth/)   api 127.0.0.1:$API (/api/)
  legacy  127.0.0.1:$LEGACY (/legacy/: Express with its own connect.sid session, no regenerate at login)

Open in a browser:  http://127.0.0.1:$LISTEN/
  (Chromium keeps the Secure cookie over plain HTTP on 127.0.0.1 and localhost.)

Try with curl (curl keeps Secure cookies on http only for "localhost", hence the host name):
  # An anonymous request: the mesh mints a signed __Host-session cookie; the app only sees x-session-id
  curl -si $U/whoami
  # A session ID in the URL never reaches the app (path shows page=2 only)
  curl -s '$U/whoami?jsessionid=ATTACKER&page=2'
  # A cookie the mesh did not sign is never forwarded: a new anonymous session is minted instead
  curl -si -b '__Host-session=v1.forged' $U/whoami
  # Log in with a cookie jar, and watch the session ID change (rotation)
  curl -s -c /tmp/sg.jar -b /tmp/sg.jar $U/whoami
  curl -si -c /tmp/sg.jar -b /tmp/sg.jar -d 'username=alice&password=demo' $U/auth/login
  curl -s -c /tmp/sg.jar -b /tmp/sg.jar $U/whoami
  # The app's own cookie gets Secure and SameSite from the mesh
  curl -si $U/ | grep -i set-cookie
  # The legacy app's own session cookie is bound to the mesh session that received it
  curl -s -c /tmp/sg-legacy.jar -b /tmp/sg-legacy.jar $U/legacy/login-form >/dev/null
  curl -s -c /tmp/sg-legacy.jar -b /tmp/sg-legacy.jar -d 'user=alice&password=demo' $U/legacy/login
  curl -s -c /tmp/sg-legacy.jar -b /tmp/sg-legacy.jar $U/legacy/me
  # What the mesh decided, as counters
  curl -s '127.0.0.1:$ADMIN/stats?filter=session_guard'

The session fixation attack, step by step, against this demo (in another terminal):
  $attack

EOF
if [ "$cookie_check" = 0 ]; then
  echo "WARNING: the mesh set no __Host-session cookie: the filter looks inactive (see .run/demo/envoy.log)."
  echo
fi
echo "Showing the auth service's and the filter's log lines. Ctrl-C stops everything."
tail -n 0 -F "$RUN/auth.log" "$RUN/envoy.log" &
PIDS+=("$!")
# Stop as soon as any demo process dies, so a crashed Envoy is not hidden behind a live tail.
wait -n "${PIDS[@]:0:5}" || true
echo "run-demo: a demo process exited; see .run/demo/*.log" >&2
exit 1
